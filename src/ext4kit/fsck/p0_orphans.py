"""Releasing an orphan inode the way e2fsck's release_orphan_inodes does: the blocks of a
deleted (link count 0) orphan — data, extent tree nodes or indirect blocks, and its
extended attribute block when no other inode shares it — and the inode itself are
returned to the on-disk bitmaps, with the group and superblock counts kept in step, so
that pass 5 finds nothing left to fix."""

from __future__ import annotations

import struct

import numpy as np

from ..ondisk import extent as ext
from ..ondisk import xattr as xa
from ..ondisk.groupdesc import BG_BLOCK_UNINIT, BG_INODE_UNINIT
from .context import Context, pack_bits, unpack_bits
from .state import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, U16, U32, file_acl_of, flags_of

EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
MAX_NODES = 1 << 16


class _Bad(Exception):
    pass


def inode_blocks(ctx: Context, raw: bytes | bytearray) -> list[tuple[int, int]]:
    """Every (start, length) the inode's block map holds, its map blocks included;
    raises _Bad when the map points outside the file system or loops."""
    mode = U16.unpack_from(raw, 0)[0] & S_IFMT
    flags = flags_of(raw)
    if flags & INLINE_DATA_FL or mode not in (S_IFREG, S_IFDIR, S_IFLNK):
        return []
    nblocks = U32.unpack_from(raw, 28)[0]
    if mode == S_IFLNK and not flags & EXTENTS_FL and nblocks == 0:
        return []  # a fast symlink: the target lives in i_block
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    total = ctx.blocks_count
    fdb = ctx.first_data_block

    def ok(blk: int, n: int = 1) -> None:
        if n <= 0 or blk < fdb or blk + n > total:
            raise _Bad(f"block {blk} out of range")

    if flags & EXTENTS_FL:
        def walk(buf: bytes, off: int, depth_left: int) -> None:
            magic, entries, eh_max, depth, _ = ext.HEADER.unpack_from(buf, off)
            if magic != ext.EXT4_EXT_MAGIC or entries > eh_max or depth > ext.MAX_DEPTH:
                raise _Bad("bad extent node")
            for i in range(entries):
                p = off + 12 + 12 * i
                if depth == 0:
                    _lblk, ln, hi, lo = ext.ENTRY.unpack_from(buf, p)
                    if ln > ext.EXT_INIT_MAX_LEN:
                        ln -= ext.EXT_INIT_MAX_LEN
                    start = lo | hi << 32
                    if ln:
                        ok(start, ln)
                        out.append((start, ln))
                else:
                    _lblk, leaf_lo, leaf_hi, _ = ext.INDEX.unpack_from(buf, p)
                    child = leaf_lo | leaf_hi << 32
                    ok(child)
                    if child in seen or len(seen) > MAX_NODES:
                        raise _Bad("extent tree loops")
                    seen.add(child)
                    out.append((child, 1))
                    walk(ctx.block(child), 0, depth_left - 1)

        walk(bytes(raw[40:100]), 0, ext.MAX_DEPTH)
        return out
    per = ctx.bs // 4

    def ind(blk: int, level: int) -> None:
        ok(blk)
        if blk in seen or len(seen) > MAX_NODES:
            raise _Bad("indirect map loops")
        seen.add(blk)
        out.append((blk, 1))
        ptrs = np.frombuffer(ctx.block(blk), dtype="<u4", count=per)
        for p in ptrs[ptrs != 0].tolist():
            if level == 1:
                ok(int(p))
                out.append((int(p), 1))
            else:
                ind(int(p), level - 1)

    ptrs = struct.unpack_from("<15I", raw, 40)
    for p in ptrs[:12]:
        if p:
            ok(p)
            out.append((p, 1))
    for level, p in ((1, ptrs[12]), (2, ptrs[13]), (3, ptrs[14])):
        if p:
            ind(p, level)
    return out


def release_inode(ctx: Context, ino: int, raw: bytes | bytearray) -> bool:
    """Free a deleted orphan's blocks and the inode in the bitmaps and counts; False
    (nothing changed) when its block map cannot be trusted — pass 1 / 5 then decide."""
    try:
        runs = inode_blocks(ctx, raw)
    except _Bad:
        return False
    acl = file_acl_of(raw, ctx.is64)
    if acl and ctx.valid_block(acl):
        buf = bytearray(ctx.block(acl))
        if U32.unpack_from(buf, 0)[0] == xa.XATTR_MAGIC:
            refs = U32.unpack_from(buf, 4)[0]
            if refs > 1:
                U32.pack_into(buf, 4, refs - 1)
                _write_ea(ctx, acl, buf)
            else:
                runs.append((acl, 1))
    free_blocks(ctx, blocks_of(runs))
    g, idx = divmod(ino - 1, ctx.ipg)
    gd = ctx.groups[g]
    if not (ctx.csum_feature and gd.flags & BG_INODE_UNINIT) and ctx.valid_block(gd.inode_bitmap):
        bm = bytearray(ctx.block(gd.inode_bitmap))
        if bm[idx >> 3] >> (idx & 7) & 1:
            bm[idx >> 3] &= ~(1 << (idx & 7)) & 0xFF
            ctx.write_block(gd.inode_bitmap, bm)
            if ctx.metadata_csum:
                ctx.set_gd(g, "bg_inode_bitmap_csum", ctx.bitmap_csum(bm, ctx.ipg // 8))
            ctx.set_gd(g, "bg_free_inodes_count", min(ctx.ipg, gd.free_inodes_count + 1))
            if U16.unpack_from(raw, 0)[0] & S_IFMT == S_IFDIR and gd.used_dirs_count:
                ctx.set_gd(g, "bg_used_dirs_count", gd.used_dirs_count - 1)
            ctx.sb.f["s_free_inodes_count"] = min(ctx.inodes_count, ctx.sb.f["s_free_inodes_count"] + 1)
    ctx.dirty_super()
    return True


def blocks_of(runs: list[tuple[int, int]]) -> np.ndarray:
    """The distinct block numbers of (start, length) runs, sorted."""
    if not runs:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in runs]))


def free_blocks(ctx: Context, blocks: np.ndarray) -> int:
    """Mark the (distinct) ``blocks`` free in their groups' on-disk bitmaps, bitmap checksums
    and group / superblock free counts (e2fsck's ext2fs_block_alloc_stats: such frees are
    not bitmap differences for pass 5); returns how many were in use. Groups whose
    bitmap is uninitialised or unusable are left to pass 5."""
    if not len(blocks):
        return 0
    groups = (blocks - ctx.first_data_block) // ctx.bpg
    total = 0
    for g in np.unique(groups).tolist():
        total += _free_in_group(ctx, int(g), blocks[groups == g])
    if total:
        ctx.sb.free_blocks_count += total
        ctx.dirty_super()
    return total


def _free_in_group(ctx: Context, g: int, blocks: np.ndarray) -> int:
    if not 0 <= g < ctx.ngroups:
        return 0
    gd = ctx.groups[g]
    if (ctx.csum_feature and gd.flags & BG_BLOCK_UNINIT) or not ctx.valid_block(gd.block_bitmap) \
            or g in ctx.bad_tables:
        return 0
    n = ctx.group_blocks(g)
    raw = ctx.block(gd.block_bitmap)
    bits = unpack_bits(raw, n)
    idx = blocks - ctx.group_first(g)
    idx = idx[(idx >= 0) & (idx < n)]
    was = int(np.count_nonzero(bits[idx]))
    if not was:
        return 0
    bits[idx] = False
    data = bytearray(pack_bits(bits, ctx.bs))
    # keep whatever the block held past the group's bits (pass 5 judges the padding)
    nbytes = (n + 7) // 8
    tail_from = n // 8 if n % 8 == 0 else nbytes
    data[tail_from:] = raw[tail_from:]
    if n % 8:
        keep = raw[n // 8] & ~((1 << (n % 8)) - 1) & 0xFF
        data[n // 8] = (data[n // 8] & ((1 << (n % 8)) - 1)) | keep
    ctx.write_block(gd.block_bitmap, data)
    if ctx.metadata_csum:
        ctx.set_gd(g, "bg_block_bitmap_csum",
                   ctx.bitmap_csum(data, ctx.sb.f["s_clusters_per_group"] // 8))
    ctx.set_gd(g, "bg_free_blocks_count", min(n, gd.free_blocks_count + was))
    return was


def _write_ea(ctx: Context, blk: int, buf: bytearray) -> None:
    if ctx.metadata_csum:
        U32.pack_into(buf, xa.CHECKSUM_OFFSET, xa.block_checksum(ctx.csum_seed, blk, bytes(buf)))
    ctx.write_block(blk, buf)


HUGE_FILE_FL = 0x40000


def truncate_inode(ctx: Context, ino: int, raw: bytearray) -> bool:
    """e2fsck's release_inode_blocks for an orphan still in use: the blocks past i_size
    go back to the bitmaps and ``raw``'s map and i_blocks are trimmed to match. Only for
    indirect maps and extent trees held in the inode; False (nothing done) otherwise."""
    mode = U16.unpack_from(raw, 0)[0] & S_IFMT
    flags = flags_of(raw)
    if flags & INLINE_DATA_FL or mode not in (S_IFREG, S_IFDIR, S_IFLNK):
        return False
    if mode == S_IFLNK and not flags & EXTENTS_FL and U32.unpack_from(raw, 28)[0] == 0:
        return False
    size = U32.unpack_from(raw, 4)[0] | U32.unpack_from(raw, 108)[0] << 32
    keep = (size + ctx.bs - 1) // ctx.bs
    freed: list[tuple[int, int]] = []
    try:
        if flags & EXTENTS_FL:
            if not _trim_extents(ctx, raw, keep, freed):
                return False
        else:
            _trim_indirect(ctx, raw, keep, freed)
    except _Bad:
        return False
    if not freed:
        return True
    blocks = blocks_of(freed)
    free_blocks(ctx, blocks)
    n = len(blocks)
    unit = 1 if flags & HUGE_FILE_FL else ctx.bs // 512
    have = U32.unpack_from(raw, 28)[0] | U16.unpack_from(raw, 116)[0] << 32
    have = max(0, have - n * unit)
    U32.pack_into(raw, 28, have & 0xFFFFFFFF)
    U16.pack_into(raw, 116, have >> 32 & 0xFFFF)
    return True


def _trim_extents(ctx: Context, raw: bytearray, keep: int, freed: list[tuple[int, int]]) -> bool:
    magic, entries, eh_max, depth, gen = ext.HEADER.unpack_from(raw, 40)
    if magic != ext.EXT4_EXT_MAGIC or entries > eh_max or eh_max > 4:
        raise _Bad("bad extent root")
    if depth != 0:
        return False  # a tree with its own blocks: left to pass 1
    kept: list[bytes] = []
    for i in range(entries):
        p = 52 + 12 * i
        lblk, ln, hi, lo = ext.ENTRY.unpack_from(raw, p)
        uninit = ln > ext.EXT_INIT_MAX_LEN
        n = ln - ext.EXT_INIT_MAX_LEN if uninit else ln
        start = lo | hi << 32
        if n and (start < ctx.first_data_block or start + n > ctx.blocks_count):
            raise _Bad("extent out of range")
        if lblk >= keep:
            if n:
                freed.append((start, n))
            continue
        if lblk + n > keep:
            cut = keep - lblk
            freed.append((start + cut, n - cut))
            n = cut
        kept.append(ext.pack_leaf(lblk, n, start, uninit))
    if len(kept) == entries and not freed:
        return True
    raw[40:52] = ext.HEADER.pack(magic, len(kept), eh_max, 0, gen)
    body = b"".join(kept)
    raw[52:100] = body + bytes(48 - len(body))
    return True


def _trim_indirect(ctx: Context, raw: bytearray, keep: int, freed: list[tuple[int, int]]) -> None:
    per = ctx.bs // 4
    seen: set[int] = set()

    def check(blk: int) -> None:
        if blk < ctx.first_data_block or blk >= ctx.blocks_count:
            raise _Bad(f"block {blk} out of range")

    def whole(blk: int, level: int) -> None:
        """Free ``blk`` and everything under it."""
        check(blk)
        freed.append((blk, 1))
        if level == 0:
            return
        if blk in seen or len(seen) > MAX_NODES:
            raise _Bad("indirect map loops")
        seen.add(blk)
        ptrs = np.frombuffer(ctx.block(blk), dtype="<u4", count=per)
        for p in ptrs[ptrs != 0].tolist():
            whole(int(p), level - 1)

    def part(blk: int, level: int, base: int) -> bool:
        """Trim the subtree at ``blk`` (logical ``base``); True when it became empty."""
        check(blk)
        if blk in seen or len(seen) > MAX_NODES:
            raise _Bad("indirect map loops")
        seen.add(blk)
        buf = bytearray(ctx.block(blk))
        span = per ** (level - 1)
        changed = False
        for i in range(per):
            p = U32.unpack_from(buf, 4 * i)[0]
            if not p:
                continue
            lb = base + i * span
            if lb >= keep:
                whole(p, level - 1)
                U32.pack_into(buf, 4 * i, 0)
                changed = True
            elif level > 1 and lb + span > keep:
                if part(p, level - 1, lb):
                    freed.append((p, 1))
                    U32.pack_into(buf, 4 * i, 0)
                    changed = True
        if changed:
            ctx.write_block(blk, buf)
        return not any(buf)

    for i in range(12):
        p = U32.unpack_from(raw, 40 + 4 * i)[0]
        if p and i >= keep:
            check(p)
            freed.append((p, 1))
            U32.pack_into(raw, 40 + 4 * i, 0)
    base = 12
    for level, slot in ((1, 12), (2, 13), (3, 14)):
        p = U32.unpack_from(raw, 40 + 4 * slot)[0]
        span = per ** level
        if p:
            if base >= keep:
                whole(p, level)
                U32.pack_into(raw, 40 + 4 * slot, 0)
            elif base + span > keep and part(p, level, base):
                freed.append((p, 1))
                U32.pack_into(raw, 40 + 4 * slot, 0)
        base += span
