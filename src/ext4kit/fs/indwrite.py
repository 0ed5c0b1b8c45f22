"""ext2/ext3 indirect block maps (see mapper.py for the shared conventions).

Layout: i_block holds 12 direct pointers, then the single (12), double (13) and triple (14)
indirect block pointers; an indirect block is an array of ``block_size // 4`` little-endian
32-bit block numbers, 0 meaning a hole.

Placement follows ext2: the goal of a hole is the block after the nearest mapped block
before it (else the inode's group); indirect blocks created for a hole are allocated first,
from that goal, so they sit right before the data they map and a sequentially written file
is one contiguous stretch. Each hole takes one allocator call per contiguous run, bounded
by the pointers left in its indirect block; pointers are written as numpy slices.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptError
from .alloc import NoSpace
from .mapper import Mapped, Mapper

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from ..ondisk.inode import Inode

NDIR = 12
_PREV_SEARCH_BUDGET = 64  # indirect blocks read while looking for an allocation goal


class IndirectMapper(Mapper):
    supports_uninit = False

    # ------------------------------------------------------------------ geometry
    @property
    def per(self) -> int:
        return self.fs.block_size // 4

    def limit(self) -> int:
        """Number of logical blocks the format can map (triple-indirect limit, and logical
        block numbers are 32-bit)."""
        per = self.per
        return min(NDIR + per + per * per + per**3, 1 << 32)

    def _path(self, lblk: int) -> list[int]:
        """Offsets from i_block down to the pointer of ``lblk`` (ext2_block_to_path)."""
        per = self.per
        if lblk < NDIR:
            return [lblk]
        n = lblk - NDIR
        if n < per:
            return [12, n]
        n -= per
        if n < per * per:
            return [13, n // per, n % per]
        n -= per * per
        if n < per**3:
            return [14, n // (per * per), (n // per) % per, n % per]
        raise OSError(errno.EFBIG, f"logical block {lblk} beyond the indirect map limit")

    @staticmethod
    def _root_levels(idx: int) -> int:
        """Indirect levels below i_block[idx] (0: a data pointer)."""
        return 0 if idx < NDIR else idx - NDIR + 1

    def _root_base(self, idx: int) -> int:
        per = self.per
        if idx < NDIR:
            return idx
        return NDIR + sum(per**k for k in range(1, idx - NDIR + 1))

    # ------------------------------------------------------------------ block access
    def _check_ptr(self, inode: Inode, blk: int, what: str) -> None:
        fs = self.fs
        if blk < fs.sb.f["s_first_data_block"] or blk >= fs.blocks_count:
            raise CorruptError(f"inode {inode.ino}: {what} {blk} outside the file system")

    def _check_arr(self, inode: Inode, arr: np.ndarray) -> None:
        fs = self.fs
        nz = arr[arr != 0]
        if nz.size and (int(nz.min()) < fs.sb.f["s_first_data_block"]
                        or int(nz.max()) >= fs.blocks_count):
            bad = nz[(nz < fs.sb.f["s_first_data_block"]) | (nz >= fs.blocks_count)]
            raise CorruptError(f"inode {inode.ino}: block pointer {int(bad[0])} outside the file system")

    def _read(self, inode: Inode, blk: int) -> np.ndarray:
        """Pointers of indirect block ``blk`` (a read-only view)."""
        self._check_ptr(inode, blk, "indirect block")
        return np.frombuffer(self.fs.read_block(blk), dtype="<u4")

    def _writable(self, h: Handle, blk: int) -> np.ndarray:
        buf = h.get_write_access(blk)
        h.dirty_metadata(blk)
        return np.frombuffer(buf, dtype="<u4")

    @staticmethod
    def _get_ptrs(inode: Inode) -> list[int]:
        return list(struct.unpack("<15I", inode.i_block))

    @staticmethod
    def _set_ptrs(inode: Inode, ptrs: list[int]) -> None:
        inode.f["i_block"] = struct.pack("<15I", *ptrs)

    # ------------------------------------------------------------------ interface
    def init_inode(self, inode: Inode) -> None:
        inode.f["i_block"] = bytes(60)

    def mark_written(self, h: Handle, inode: Inode, lblk: int, count: int) -> None:
        return None  # indirect maps have no unwritten blocks

    def allocate(self, h: Handle, inode: Inode, lblk: int, count: int, *,
                 uninit: bool = False) -> list[Mapped]:
        if uninit:
            raise ValueError("indirect block maps cannot hold unwritten (uninit) blocks")
        if lblk < 0 or count < 0:
            raise ValueError("negative logical block or count")
        if count == 0:
            return []
        if lblk + count > self.limit():
            raise OSError(errno.EFBIG, "file too large for an indirect block map")
        ptrs = self._get_ptrs(inode)
        out: list[Mapped] = []
        goal = _Goal()
        try:
            pos, end = lblk, lblk + count
            while pos < end:
                pos = self._allocate_chunk(h, inode, ptrs, pos, end, out, goal)
        finally:
            self._set_ptrs(inode, ptrs)
            self.fs.invalidate_map(inode.ino)
        return _merge(out)

    def truncate(self, h: Handle, inode: Inode, lblk: int) -> None:
        if lblk < 0:
            raise ValueError("negative logical block")
        self._unmap(h, inode, lblk, self.limit())

    def punch(self, h: Handle, inode: Inode, lblk: int, count: int) -> None:
        if lblk < 0 or count < 0:
            raise ValueError("negative logical block or count")
        self._unmap(h, inode, lblk, min(lblk + count, self.limit()))

    # ------------------------------------------------------------------ allocation
    def _allocate_chunk(self, h: Handle, inode: Inode, ptrs: list[int], pos: int, end: int,
                        out: list[Mapped], goal: _Goal) -> int:
        """Map [pos, min(end, end of pos's pointer array)); returns where it stopped."""
        fs = self.fs
        path = self._path(pos)
        idx0 = path[-1]
        first = pos - idx0  # logical block of pointer 0 of this array
        n_here = NDIR if len(path) == 1 else self.per
        stop = min(end, first + n_here)
        i1 = stop - first

        # resolve the existing chain of indirect blocks down to the leaf
        chain: list[int] = []  # chain[k]: block at depth k+1 (0 = missing)
        if len(path) > 1:
            blk = ptrs[path[0]]
            chain.append(blk)
            for k in range(1, len(path) - 1):
                if blk == 0:
                    chain.append(0)
                    continue
                blk = int(self._read(inode, blk)[path[k]])
                chain.append(blk)
        if len(path) == 1:
            leaf = np.array(ptrs[:NDIR], dtype=np.int64)
        elif chain[-1]:
            leaf = self._read(inode, chain[-1]).astype(np.int64)
        else:
            leaf = np.zeros(n_here, dtype=np.int64)
        sub = leaf[idx0:i1]
        self._check_arr(inode, sub)

        if sub.all():
            for lg, pb, ln in _runs(sub, pos):
                out.append(Mapped(lg, pb, ln, False, False))
            goal.blk = int(sub[-1]) + 1
            return stop

        # there are holes: settle the goal, then create the missing indirect blocks
        if goal.blk < 0:
            first_hole = pos + int(np.argmin(sub != 0))
            nz = np.flatnonzero(sub[: first_hole - pos])
            if nz.size:
                goal.blk = int(sub[nz[-1]]) + 1
            else:
                prev = self._prev_phys(inode, ptrs, first_hole)
                goal.blk = prev + 1 if prev is not None else fs.inode_goal(inode)

        created: list[int] = []  # depths (indexes into chain) created here
        try:
            for k in range(len(chain)):
                if chain[k]:
                    continue
                blk, _ = fs.alloc.allocate_blocks(h, goal.blk, 1)
                h.get_create_access(blk)  # zeroed: all holes
                h.dirty_metadata(blk)
                fs.add_i_blocks(inode, 1)
                chain[k] = blk
                created.append(k)
                self._link(h, ptrs, chain, path, k, blk)
                goal.blk = blk + 1

            leaf_w = None
            if len(path) > 1:
                leaf_w = self._writable(h, chain[-1])
            mask = leaf[idx0:i1] != 0
            edges = (np.flatnonzero(np.diff(mask.view(np.int8))) + 1 + idx0).tolist()
            for i, j in zip([idx0, *edges], [*edges, i1]):
                if leaf[i]:
                    for lg, pb, ln in _runs(leaf[i:j], first + i):
                        out.append(Mapped(lg, pb, ln, False, False))
                    goal.blk = int(leaf[j - 1]) + 1
                    continue
                # hole [i, j): one allocator call per contiguous run
                while i < j:
                    start, n = fs.alloc.allocate_blocks(h, goal.blk, j - i)
                    vals = np.arange(start, start + n, dtype=np.int64)
                    leaf[i : i + n] = vals
                    if leaf_w is None:
                        ptrs[i : i + n] = vals.tolist()
                    else:
                        leaf_w[i : i + n] = vals
                    fs.add_i_blocks(inode, n)
                    out.append(Mapped(first + i, start, n, False, True))
                    goal.blk = start + n
                    i += n
        except NoSpace:
            # new indirect blocks still empty are unlinked and freed (bottom-up)
            for k in reversed(created):
                if self._read(inode, chain[k]).any():
                    break
                self._link(h, ptrs, chain, path, k, 0)
                fs.free_file_blocks(h, inode, chain[k], 1, metadata=True)
                fs.add_i_blocks(inode, -1)
            raise
        return stop

    def _link(self, h: Handle, ptrs: list[int], chain: list[int], path: list[int], k: int,
              value: int) -> None:
        """Set the pointer to chain[k] (in i_block or in its parent indirect block)."""
        if k == 0:
            ptrs[path[0]] = value
        else:
            self._writable(h, chain[k - 1])[path[k]] = value

    def _prev_phys(self, inode: Inode, ptrs: list[int], lblk: int) -> int | None:
        """Physical block of the nearest mapped logical block before ``lblk`` (bounded)."""
        if lblk <= 0:
            return None
        budget = [_PREV_SEARCH_BUDGET]

        def last_in(blk: int, levels: int, limit: int | None = None) -> int | None:
            if levels == 0:
                return blk
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            arr = self._read(inode, blk)
            if limit is not None:
                arr = arr[:limit]
            for i in np.flatnonzero(arr)[::-1].tolist():
                r = last_in(int(arr[i]), levels - 1)
                if r is not None:
                    return r
                if budget[0] <= 0:
                    return None
            return None

        path = self._path(lblk)
        # blocks along the path of lblk, searching left of it at each depth, deepest first
        blks = []
        if len(path) > 1:
            blk = ptrs[path[0]]
            for k in range(1, len(path)):
                if not blk:
                    break
                blks.append((blk, len(path) - k, path[k]))
                if k < len(path) - 1:
                    blk = int(self._read(inode, blk)[path[k]])
        for blk, levels, off in reversed(blks):
            r = last_in(blk, levels, off)
            if r is not None:
                return r
            if budget[0] <= 0:
                return None
        for idx in range(path[0] - 1, -1, -1):
            p = ptrs[idx]
            if p:
                r = last_in(p, self._root_levels(idx))
                if r is not None:
                    return r
                if budget[0] <= 0:
                    return None
        return None

    # ------------------------------------------------------------------ unmapping
    def _unmap(self, h: Handle, inode: Inode, lo: int, hi: int) -> None:
        """Free every block mapped at logical [lo, hi), and indirect blocks left empty."""
        if hi <= lo:
            return
        fs = self.fs
        ptrs = self._get_ptrs(inode)
        data: list[np.ndarray] = []
        meta: list[int] = []
        try:
            for idx in range(15):
                p = ptrs[idx]
                if not p:
                    continue
                levels = self._root_levels(idx)
                base = self._root_base(idx)
                span = self.per**levels
                if base >= hi or base + span <= lo:
                    continue
                if levels == 0:
                    self._check_ptr(inode, p, "block pointer")
                    data.append(np.array([p], dtype=np.int64))
                    ptrs[idx] = 0
                elif self._unmap_node(h, inode, p, levels, base, lo, hi, data, meta):
                    meta.append(p)
                    ptrs[idx] = 0
        finally:
            self._set_ptrs(inode, ptrs)
            fs.invalidate_map(inode.ino)
        if data:
            blocks = np.sort(np.concatenate(data))
            if blocks.size > 1 and not np.all(np.diff(blocks)):
                raise CorruptError(f"inode {inode.ino}: a block is mapped twice")
            is_dir = inode.is_dir()
            for start, n in _block_runs(blocks):
                fs.free_file_blocks(h, inode, start, n, metadata=is_dir)
            fs.add_i_blocks(inode, -int(blocks.size))
        for start, n in _block_runs(np.sort(np.array(meta, dtype=np.int64))):
            fs.free_file_blocks(h, inode, start, n, metadata=True)
        fs.add_i_blocks(inode, -len(meta))

    def _unmap_node(self, h: Handle, inode: Inode, blk: int, levels: int, base: int,
                    lo: int, hi: int, data: list[np.ndarray], meta: list[int]) -> bool:
        """Unmap [lo, hi) below indirect block ``blk`` (``levels`` >= 1 levels, pointer 0
        maps logical ``base``). Returns True when the block is left all zero (the caller
        frees it and clears its pointer)."""
        arr = self._read(inode, blk)
        span = self.per ** (levels - 1)
        i0 = max(0, (lo - base) // span)
        i1 = min(self.per, -(-(hi - base) // span))
        sel = arr[i0:i1]
        nz = np.flatnonzero(sel)
        if nz.size:
            self._check_arr(inode, sel)
            w = None
            if levels == 1:
                data.append(sel[nz].astype(np.int64))
                w = self._writable(h, blk)
                w[i0:i1] = 0
            else:
                for i in (nz + i0).tolist():
                    child = int(arr[i])
                    cbase = base + i * span
                    if self._unmap_node(h, inode, child, levels - 1, cbase, lo, hi, data, meta):
                        meta.append(child)
                        if w is None:
                            w = self._writable(h, blk)
                        w[i] = 0
            if w is not None:
                return not w.any()
        return not arr.any()


class _Goal:
    """Allocation goal while walking a range: the block after the last mapped one seen
    (-1 until known)."""

    __slots__ = ("blk",)

    def __init__(self) -> None:
        self.blk = -1


def _runs(arr: np.ndarray, logical: int) -> list[tuple[int, int, int]]:
    """(logical, physical, length) of the physically contiguous runs of a pointer vector
    without holes."""
    if arr.size == 0:
        return []
    a = arr.astype(np.int64)
    brk = np.flatnonzero(np.diff(a) != 1) + 1
    starts = [0, *brk.tolist()]
    ends = [*brk.tolist(), len(a)]
    return [(logical + s, int(a[s]), e - s) for s, e in zip(starts, ends)]


def _block_runs(blocks: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) runs of a sorted vector of block numbers."""
    if blocks.size == 0:
        return []
    brk = np.flatnonzero(np.diff(blocks) != 1) + 1
    starts = [0, *brk.tolist()]
    ends = [*brk.tolist(), len(blocks)]
    return [(int(blocks[s]), e - s) for s, e in zip(starts, ends)]


def _merge(out: list[Mapped]) -> list[Mapped]:
    merged: list[Mapped] = []
    for m in out:
        if merged:
            p = merged[-1]
            if (p.new == m.new and p.logical + p.length == m.logical
                    and p.physical + p.length == m.physical):
                merged[-1] = p._replace(length=p.length + m.length)
                continue
        merged.append(m)
    return merged
