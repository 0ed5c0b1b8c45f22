"""Pass 1E: extent trees that could be narrower or shallower (e2fsck's
e2fsck_check_rebuild_extents / e2fsck_should_rebuild_extents and rebuild_extents).

For every extent-mapped inode with an index level, the entries and capacity of each
tree level are counted (root = level 0). A level whose spare capacity exceeds one node
block "could be narrower"; a level holding fewer entries than some level above it could
hold "could be shorter". Either is offered as an optimisation (not an error: ``-n`` and
``-p`` leave it and exit 0; the rewrite does not count as a fix for the exit code).

The rebuild collects the leaf extents (merging contiguous ones), writes the smallest
packed tree into the inode's old node blocks (the packed tree never needs more) and
releases the blocks left over, lowering i_blocks so the quota check sees the new usage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import problems as P
from .arrays import InodeArrays
from .context import Context
from .dups import _drop_claims
from .p0_orphans import free_blocks
from .p1_extents import _ENT, _HDR, _IDX, EXT_MAGIC, blocks_needed, build_tree, max_extent_depth
from .state import U16, U32, flags_of, generation_of

EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
HUGE_FILE_FL = 0x40000
_INIT_MAX = 32768
BG_BLOCK_UNINIT = 0x2


class _Tree:
    """One inode's tree as found: per-level counts, leaf extents, node blocks."""

    __slots__ = ("num", "cap", "extents", "nodes", "ok")

    def __init__(self, depth: int) -> None:
        self.num = [0] * (depth + 1)
        self.cap = [0] * (depth + 1)
        self.extents: list[tuple[int, int, int, bool]] = []  # lblk, len, pblk, uninit
        self.nodes: list[int] = []
        self.ok = True


def _node_ok(buf: bytes | memoryview, size: int, depth: int) -> bool:
    magic, entries, eh_max, d, _ = _HDR.unpack_from(buf, 0)
    return (magic == EXT_MAGIC and d == depth and 0 < eh_max <= (size - 12) // 12
            and entries <= eh_max)


def _scan(ctx: Context, node: bytes | memoryview, level: int, depth: int, t: _Tree) -> None:
    _m, entries, eh_max, _d, _g = _HDR.unpack_from(node, 0)
    t.num[level] += entries
    t.cap[level] += eh_max
    if level and entries < eh_max:
        t.cap[level] -= 1  # e2fsck's allowance for the entry a split leaves free
    for i in range(entries):
        off = 12 + 12 * i
        if depth == level:
            lblk, ln, hi, lo = _ENT.unpack_from(node, off)
            uninit = ln > _INIT_MAX
            length = ln - _INIT_MAX if uninit else ln
            if length:
                t.extents.append((lblk, length, lo | hi << 32, uninit))
            continue
        _l, lo, hi, _u = _IDX.unpack_from(node, off)
        pblk = lo | hi << 32
        if not ctx.valid_block(pblk):
            t.ok = False
            continue
        try:
            child = ctx.block(pblk)
        except (IndexError, OSError):
            t.ok = False
            continue
        if not _node_ok(child, ctx.bs, depth - level - 1):
            t.ok = False
            continue
        t.nodes.append(pblk)
        _scan(ctx, child, level + 1, depth, t)


def _verdict(t: _Tree, per_block: int) -> tuple[int, int] | None:
    """(problem, level) when the tree could be narrower or shallower."""
    for i in range(len(t.num)):
        if t.cap[i] - t.num[i] > per_block:
            return P.EXTENT_CAN_NARROW, i
        for j in range(i):
            if t.num[i] < t.cap[j]:
                return P.EXTENT_CAN_COLLAPSE, i
    return None


def _merged(extents: list[tuple[int, int, int, bool]]) -> list[bytes] | None:
    out: list[list[Any]] = []
    end = -1
    for lblk, length, pblk, uninit in extents:
        if lblk <= end:
            return None  # out of order or overlapping: leave the tree alone
        end = lblk + length - 1
        if out:
            pl, plen, pp, pu = out[-1]
            limit = _INIT_MAX - 1 if uninit else _INIT_MAX
            if pu == uninit and pl + plen == lblk and pp + plen == pblk and plen + length <= limit:
                out[-1][1] = plen + length
                continue
        out.append([lblk, length, pblk, uninit])
    return [_ENT.pack(lb, ln + (_INIT_MAX if un else 0), pb >> 32, pb & 0xFFFFFFFF)
            for lb, ln, pb, un in out]


def pass1e(ctx: Context, st: Any) -> None:
    if not ctx.extents:
        return
    per_block = (ctx.bs - 12) // 12
    max_depth = max_extent_depth(ctx.bs)
    todo: list[tuple[int, _Tree]] = []
    arrs = InodeArrays.of(st)
    # only trees with index levels can be narrowed or shortened
    for ino in arrs.inos[(arrs.depth > 0) & (arrs.links > 0)].tolist():
        raw = st.inodes[ino]
        if ino in st.cleared or U16.unpack_from(raw, 26)[0] == 0:
            continue
        fl = flags_of(raw)
        if not fl & EXTENTS_FL or fl & INLINE_DATA_FL:
            continue
        magic, entries, eh_max, depth, _g = _HDR.unpack_from(raw, 40)
        if magic != EXT_MAGIC or depth == 0 or depth > max_depth or eh_max > 4 or entries > eh_max:
            continue
        t = _Tree(depth)
        _scan(ctx, memoryview(raw)[40:100], 0, depth, t)
        if not t.ok:
            continue
        found = _verdict(t, per_block)
        if found is None:
            continue
        code, level = found
        if ctx.ask(code, ino=ino, level=level) and ctx.writable:
            todo.append((ino, t))
    if todo:
        _rebuild(ctx, st, todo)


def _rebuild(ctx: Context, st: Any, todo: list[tuple[int, _Tree]]) -> None:
    if ctx.sb.has_ro("bigalloc"):
        return  # node blocks are freed by the cluster there: not handled
    starts = np.asarray(st.run_start, dtype=np.int64)
    ends = starts + np.asarray(st.run_len, dtype=np.int64)
    for ino, t in todo:
        raw = st.inodes.get(ino)
        if raw is None or not t.nodes:
            continue
        extents = _merged(t.extents)
        if extents is None or blocks_needed(len(extents), ctx.bs) > len(t.nodes):
            continue
        if any(int(np.count_nonzero((starts <= b) & (b < ends))) != 1 for b in t.nodes):
            continue  # a node block is shared (or unclaimed): leave it
        root, used = build_tree(ctx, extents, t.nodes, ino, generation_of(raw))
        raw[40:100] = root
        freed = sorted(set(t.nodes) - set(used))
        if freed:
            _drop_claims(st, ino, freed)
            free_blocks(ctx, np.asarray(freed, dtype=np.int64))
            unit = 1 if ctx.huge_file and flags_of(raw) & HUGE_FILE_FL else ctx.bs // 512
            have = U32.unpack_from(raw, 28)[0] | (U16.unpack_from(raw, 116)[0] << 32 if ctx.huge_file else 0)
            want = max(0, have - len(freed) * unit)
            U32.pack_into(raw, 28, want & 0xFFFFFFFF)
            if ctx.huge_file:
                U16.pack_into(raw, 116, want >> 32)
        st.inodes[ino] = raw
        st.changed.add(ino)
