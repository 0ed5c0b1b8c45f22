"""Rebuilding an inode's extent tree from its leaf extents (e2fsck's pass 1E), used when
the tree is deeper than any tree the file system can need.

The new tree is packed full and placed in the inode's old tree blocks (a tree deeper
than needed always has at least as many node blocks as the packed tree); the blocks left
over are released."""

from __future__ import annotations

import struct

from .context import Context

EXT_MAGIC = 0xF30A
_HDR = struct.Struct("<HHHHI")
_ENT = struct.Struct("<IHHI")
_IDX = struct.Struct("<IIHH")


def _log2(n: int) -> int:
    return n.bit_length() - 1


def max_extent_depth(bs: int) -> int:
    """The deepest tree a file can need (libext2fs' ext2fs_max_extent_depth)."""
    iblock_extents = (60 - 12) // 12
    per_block = (bs - 12) // 12
    return 1 + (_log2((1 << 32) - 1) - _log2(iblock_extents)) // _log2(per_block)


def leaf_entry(lblk: int, ln_raw: int, pblk: int) -> bytes:
    return _ENT.pack(lblk, ln_raw, pblk >> 32, pblk & 0xFFFFFFFF)


def _node(entries: list[bytes], eh_max: int, depth: int, size: int) -> bytearray:
    buf = bytearray(size)
    _HDR.pack_into(buf, 0, EXT_MAGIC, len(entries), eh_max, depth, 0)
    for i, e in enumerate(entries):
        buf[12 + 12 * i: 24 + 12 * i] = e
    return buf


def blocks_needed(n: int, bs: int) -> int:
    """Node blocks of a packed tree over ``n`` leaf extents."""
    per = (bs - 12) // 12
    total = 0
    while n > 4:
        n = (n + per - 1) // per
        total += n
    return total


def build_tree(ctx: Context, extents: list[bytes], blocks: list[int], ino: int,
               generation: int) -> tuple[bytes, list[int]]:
    """Write a packed tree over ``extents`` (12-byte leaf records in logical order) into
    ``blocks``; returns the inode's new i_block and the blocks used."""
    bs = ctx.bs
    per = (bs - 12) // 12
    level = list(extents)
    depth = 0
    used: list[int] = []
    free = sorted(blocks)
    while len(level) > 4:
        nxt: list[bytes] = []
        for i in range(0, len(level), per):
            chunk = level[i: i + per]
            blk = free.pop(0)
            used.append(blk)
            ctx.write_extent_block(blk, _node(chunk, per, depth, bs), ino, generation)
            first = _ENT.unpack(chunk[0])[0]
            nxt.append(_IDX.pack(first, blk & 0xFFFFFFFF, blk >> 32, 0))
        level = nxt
        depth += 1
    return bytes(_node(level, 4, depth, 60)), used
