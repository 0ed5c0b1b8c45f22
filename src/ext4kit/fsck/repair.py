"""Repairs that create things: free blocks and inodes (from what pass 1 found in use, as
e2fsck allocates from its own maps), directory entries (with room made or the directory
grown) and new directories (lost+found, a new root)."""

from __future__ import annotations

import numpy as np

from ..ondisk import dirent as de
from ..ondisk import extent as ext
from .context import Context
from .state import FT_DIR, S_IFDIR, U16, U32, State, flags_of

EXTENTS_FL = 0x80000
INDEX_FL = 0x1000


class RepairError(Exception):
    pass


def claimed_blocks(ctx: Context, st: State) -> np.ndarray:
    """One bool per block: claimed by an inode pass 1 kept (not cleared), by metadata, or
    by a repair. The claims are merged into disjoint runs first (vectorised)."""
    n = ctx.blocks_count
    start = np.asarray(st.run_start, dtype=np.int64)
    end = start + np.asarray(st.run_len, dtype=np.int64)
    if st.cleared and len(start):
        keep = ~np.isin(np.asarray(st.run_owner, dtype=np.int64),
                        np.fromiter(st.cleared, dtype=np.int64, count=len(st.cleared)))
        start, end = start[keep], end[keep]
    start = np.clip(start, 0, n)
    end = np.clip(end, 0, n)
    ok = end > start
    start, end = start[ok], end[ok]
    bm = np.zeros(n, dtype=bool)
    if len(start):
        order = np.argsort(start, kind="stable")
        start, end = start[order], np.maximum.accumulate(end[order])
        first = np.ones(len(start), dtype=bool)
        first[1:] = start[1:] > end[:-1]
        heads = np.nonzero(first)[0]
        tails = np.append(heads[1:] - 1, len(start) - 1)
        diff = np.zeros(n + 1, dtype=np.int8)
        diff[start[heads]] = 1
        np.subtract.at(diff, end[tails], 1)
        bm = np.cumsum(diff[:-1], dtype=np.int8) > 0
    bm[: ctx.first_data_block] = True
    if st.extra_blocks:
        bm[np.asarray(st.extra_blocks, dtype=np.int64)] = True
    return bm


class Allocator:
    def __init__(self, ctx: Context, st: State):
        self.ctx = ctx
        self.st = st
        self._blocks: np.ndarray | None = None

    def _block_map(self) -> np.ndarray:
        if self._blocks is None:
            self._blocks = claimed_blocks(self.ctx, self.st)
        return self._blocks

    def block(self, goal: int = 0) -> int:
        bm = self._block_map()
        free = np.nonzero(~bm[goal:])[0]
        if len(free) == 0:
            free = np.nonzero(~bm)[0]
            if len(free) == 0:
                raise RepairError("no free blocks")
            b = int(free[0])
        else:
            b = int(free[0]) + goal
        bm[b] = True
        self.st.extra_blocks.append(b)
        return b

    def inode(self) -> int:
        ctx, st = self.ctx, self.st
        for ino in range(ctx.first_ino, ctx.inodes_count + 1):
            if (ino not in st.inodes or ino in st.cleared) and ino not in st.bb_inodes:
                g = (ino - 1) // ctx.ipg
                if ctx.groups[g].inode_table == 0:
                    continue
                st.cleared.discard(ino)
                return ino
        raise RepairError("no free inodes")


def new_dir_inode(ctx: Context, st: State, al: Allocator, ino: int, parent: int) -> None:
    """Make ``ino`` an empty directory (one block) whose '..' is ``parent``."""
    blk = al.block(ctx.group_first((ino - 1) // ctx.ipg))
    bs = ctx.bs
    tail = ctx.metadata_csum
    ft = FT_DIR if ctx.filetype else 0
    buf = de.pack_block([(ino, b".", ft), (parent, b"..", ft)], bs, ctx.filetype, csum_tail=tail)
    raw = bytearray(ctx.isz)
    U16.pack_into(raw, 0, S_IFDIR | 0o755 if ino != 11 else S_IFDIR | 0o700)
    U16.pack_into(raw, 26, 2)
    U32.pack_into(raw, 4, bs)
    now = ctx.now
    for off in (8, 12, 16):
        U32.pack_into(raw, off, now)
    U32.pack_into(raw, 28, bs // 512)
    if ctx.isz > 128:
        U16.pack_into(raw, 128, min(32, ctx.isz - 128))
    if ctx.extents:
        U32.pack_into(raw, 32, EXTENTS_FL)
        node = ext.pack_node([ext.pack_leaf(0, 1, blk)], 4, 0, 60)
        raw[40:100] = node
    else:
        U32.pack_into(raw, 40, blk)
    st.inodes[ino] = raw
    st.changed.add(ino)
    st.cleared.discard(ino)
    st.dirs[ino] = [(0, blk)]
    ctx.write_dir_block(blk, bytearray(buf), ino, 0)
    st.refs[ino] = st.refs.get(ino, 0) + 1  # '.'
    st.refs[parent] = st.refs.get(parent, 0) + 1  # '..'
    st.dotdot[ino] = parent


def map_block(ctx: Context, raw: bytearray, lblk: int, blk: int) -> None:
    """Map logical block ``lblk`` of a small file to ``blk`` (depth-0 extents or direct
    pointers only)."""
    if flags_of(raw) & EXTENTS_FL:
        magic, entries, eh_max, depth, _ = ext.HEADER.unpack_from(raw, 40)
        if depth != 0:
            raise RepairError("cannot grow a directory with an extent tree deeper than 0")
        if entries:
            el, ln, hi, lo = ext.ENTRY.unpack_from(raw, 40 + 12 * entries)
            start = lo | hi << 32
            if el + ln == lblk and start + ln == blk and ln < 32768:
                ext.ENTRY.pack_into(raw, 40 + 12 * entries, el, ln + 1, hi, lo)
                return
        if entries >= eh_max:
            raise RepairError("no room in the inode's extent root")
        raw[52 + 12 * entries: 64 + 12 * entries] = ext.pack_leaf(lblk, 1, blk)
        U16.pack_into(raw, 42, entries + 1)
        return
    if lblk >= 12:
        raise RepairError("cannot grow a directory past its direct blocks")
    U32.pack_into(raw, 40 + 4 * lblk, blk)
