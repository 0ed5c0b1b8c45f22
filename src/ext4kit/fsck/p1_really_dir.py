"""Pass 1 heuristic (e2fsck's check_is_really_dir): an inode whose mode says device, fifo or
socket but whose first block starts with '.' and '..' entries of a directory is taken to be
a directory with a damaged mode."""

from __future__ import annotations

import struct

import numpy as np

from ..ondisk import dirent as de
from ..ondisk import xattr as xa
from .context import Context
from .state import (
    ROOT_INO,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    U16,
    U32,
    State,
    flags_of,
    links_of,
    mode_of,
)

EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
_HDR = struct.Struct("<HHHHI")
_IDX = struct.Struct("<IIHH")
_ENT = struct.Struct("<IHHI")
INLINE_DOTDOT = 4
MIN_INLINE = 60


def _claimed(st: State, blocks: list[int]) -> bool:
    """True when any of ``blocks`` is already claimed (e2fsck's block_found_map so far)."""
    if not st.run_start or not blocks:
        return False
    s = np.asarray(st.run_start, dtype=np.int64)
    e = s + np.asarray(st.run_len, dtype=np.int64)
    for b in blocks:
        if bool(np.any((s <= b) & (b < e))):
            return True
    return False


def _extent_block0(ctx: Context, raw: bytearray) -> int | None:
    """The physical block of logical block 0 of an extent-mapped inode (None: unmapped or
    the tree cannot be read)."""
    node: bytes | bytearray = bytes(raw[40:100])
    for _level in range(8):
        magic, entries, _mx, depth, _g = _HDR.unpack_from(node, 0)
        if magic != 0xF30A or entries == 0 or 12 + 12 * entries > len(node):
            return None
        if depth == 0:
            for i in range(entries):
                lblk, ln, hi, lo = _ENT.unpack_from(node, 12 + 12 * i)
                length = ln - 32768 if ln > 32768 else ln
                if lblk <= 0 < lblk + length:
                    return lo | hi << 32
            return None
        child = None
        for i in range(entries):
            lblk, lo, hi, _u = _IDX.unpack_from(node, 12 + 12 * i)
            if lblk > 0:
                break
            child = lo | hi << 32
        if child is None or not ctx.valid_block(child):
            return None
        try:
            node = ctx.block(child)
        except (IndexError, OSError):
            return None
    return None


def _inline_size(ctx: Context, raw: bytearray) -> int | None:
    """Inline data size (60 + the system.data value), None without a system.data entry."""
    if ctx.isz <= 128:
        return None
    extra = U16.unpack_from(raw, 128)[0]
    hoff = 128 + extra
    if extra & 3 or hoff + 4 > ctx.isz or U32.unpack_from(raw, hoff)[0] != xa.XATTR_MAGIC:
        return None
    entries, _err = xa.parse_entries(bytes(raw[: ctx.isz]), hoff + 4, ctx.isz)
    for e in entries:
        if e.name_index == 7 and e.name == b"data":
            return MIN_INLINE + e.value_size
    return None


def looks_like_dir(ctx: Context, st: State, ino: int, raw: bytearray) -> bool:
    """True when the non-directory inode ``ino`` looks like a directory."""
    mode = mode_of(raw)
    ftype = mode & S_IFMT
    if ftype in (S_IFDIR, S_IFREG, S_IFLNK) or U32.unpack_from(raw, 40)[0] == 0:
        return False
    flags = flags_of(raw)
    not_device = 0
    if ctx.inline_data and flags & INLINE_DATA_FL:
        size = _inline_size(ctx, raw)
        if size is None or size & 3:
            return False
        dotdot = U32.unpack_from(raw, 40)[0]
        d_ino, d_rl_raw = struct.unpack_from("<IH", raw, 40 + INLINE_DOTDOT)
        rl = de.rec_len_from_disk(d_rl_raw, ctx.bs)
        count = ctx.inodes_count
        if (dotdot >= count or (dotdot < ctx.first_ino and dotdot != ROOT_INO)
                or d_ino >= count or (d_ino < ctx.first_ino and d_ino != 0)
                or rl > MIN_INLINE - INLINE_DOTDOT):
            return False
        return True
    if ctx.extents and flags & EXTENTS_FL:
        blk0 = _extent_block0(ctx, raw)
        if blk0 is None:
            return False
        not_device += 1
        check: list[int] = []
    else:
        ptrs = struct.unpack_from("<15I", raw, 40)
        check = []
        for i, b in enumerate(ptrs):
            if not b:
                continue
            if i >= 4:
                not_device += 1
            if not ctx.valid_block(b):
                return False
            check.append(b)
        blk0 = ptrs[0]
    if ftype in (S_IFCHR, S_IFBLK) and links_of(raw) == 1 and not not_device:
        return False
    if not ctx.valid_block(blk0):
        return False
    try:
        buf = ctx.block(blk0)
    except (IndexError, OSError):
        return False
    d_ino, rl_raw, nl = struct.unpack_from("<IHB", buf, 0)
    rl = de.rec_len_from_disk(rl_raw, ctx.bs)
    if nl != 1 or buf[8:9] != b"." or d_ino != ino or rl < 12 or rl % 4 or rl >= ctx.bs - 12:
        return False
    if rl + 12 > ctx.bs:
        return False
    _d2, rl2_raw, nl2 = struct.unpack_from("<IHB", buf, rl)
    rl2 = de.rec_len_from_disk(rl2_raw, ctx.bs)
    if nl2 != 2 or buf[rl + 8: rl + 10] != b".." or rl2 < 12 or rl2 % 4:
        return False
    # the block-map pointers must not be blocks other inodes already hold (checked last:
    # it is the expensive test and the directory look-alike above is rare)
    return not _claimed(st, check)


def set_dir_mode(raw: bytearray) -> None:
    U16.pack_into(raw, 0, (mode_of(raw) & 0o7777) | S_IFDIR)
