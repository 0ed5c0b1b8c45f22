"""Extent-tree maintenance (see mapper.py for the shared conventions).

The tree is handled the way the kernel does it, one path at a time: a lookup reads the
nodes from the in-inode root down to the leaf covering a logical block (``_path``), the
leaf's entry list is edited in memory, and ``_store`` writes it back, which is where the
structural work happens:

- a node that overflows splits in two (an append puts only the new entries in the new
  node, so a sequentially grown file keeps full leaves; otherwise the entries are halved)
  and the parent gets an index entry for the new node, which can split the parent too;
- a root that overflows grows the tree: its entries move to a new block and the root
  becomes an index with one entry (depth + 1);
- a node left empty is freed (revoked) and its index entry removed from the parent;
- an index key always equals the first logical block of its child (e2fsck insists), so a
  changed first entry updates the keys up the path.

Every change that needs new tree blocks allocates all of them before touching anything
(``_reserve``), so NoSpace leaves the tree as it was. After removals the tree shrinks its
depth while the root holds one index entry whose child fits into the root.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from ..errors import CorruptError
from ..ondisk import extent as ext
from ..ondisk.extent import Extent, ExtentIndex
from ..ondisk.inode import EXTENTS_FL
from .alloc import NoSpace
from .mapper import Mapped, Mapper

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from ..ondisk.inode import Inode

INIT_MAX = ext.EXT_INIT_MAX_LEN  # 32768 blocks in a written extent
UNINIT_MAX = ext.EXT_INIT_MAX_LEN - 1  # 32767 in an unwritten one
ROOT_MAX = 4  # entries in the 60-byte i_block root
MAX_LBLK = 1 << 32  # logical block numbers are 32-bit
WRITE_MAX_DEPTH = ext.MAX_DEPTH  # the kernel refuses deeper trees
READ_MAX_DEPTH = 32  # as the reader (blockmap.MAX_READ_DEPTH): bounded walks


def _max_len(uninit: bool) -> int:
    return UNINIT_MAX if uninit else INIT_MAX


def _key(e: Extent | ExtentIndex) -> int:
    return e.block


def _end(e: Extent) -> int:
    return e.block + e.length


def _mergeable(a: Extent, b: Extent) -> bool:
    return (a.uninit == b.uninit and a.block + a.length == b.block
            and a.start + a.length == b.start and a.length + b.length <= _max_len(a.uninit))


def _merge_all(entries: list[Extent]) -> list[Extent]:
    """Merge neighbouring extents that are logically and physically contiguous."""
    out: list[Extent] = []
    for e in entries:
        if out and _mergeable(out[-1], e):
            p = out[-1]
            out[-1] = Extent(p.block, p.length + e.length, p.start, p.uninit)
        else:
            out.append(e)
    return out


class _Node:
    """One node of a path: ``blk`` None for the in-inode root; ``pos`` the entry the
    path follows (leaf: the last extent starting at or before the looked-up block, -1
    when there is none)."""

    __slots__ = ("blk", "depth", "max", "entries", "pos", "fresh")

    def __init__(self, blk: int | None, depth: int, eh_max: int, entries: list, pos: int = 0,
                 fresh: bool = False):
        self.blk = blk
        self.depth = depth
        self.max = eh_max
        self.entries = entries
        self.pos = pos
        self.fresh = fresh


class ExtentMapper(Mapper):
    supports_uninit = True

    def init_inode(self, inode: Inode) -> None:
        inode.f["i_block"] = bytes(ext.pack_node([], ROOT_MAX, 0, 60))
        inode.set_flag(EXTENTS_FL)

    # ================================================================== reading
    @property
    def _node_max(self) -> int:
        return (self.fs.block_size - 12) // 12

    def _root(self, inode: Inode) -> _Node:
        raw = inode.i_block
        if not inode.flags & EXTENTS_FL and not any(raw):
            # an inode whose map was never set up (e.g. a slow symlink): start one
            self.init_inode(inode)
            raw = inode.i_block
        hdr = ext.parse_header(raw)
        if hdr.magic != ext.EXT4_EXT_MAGIC:
            raise CorruptError(f"inode {inode.ino}: bad extent header magic {hdr.magic:#x}")
        if hdr.depth > READ_MAX_DEPTH:
            raise CorruptError(f"inode {inode.ino}: extent tree depth {hdr.depth} too large")
        if not 0 < hdr.max <= ROOT_MAX or hdr.entries > hdr.max:
            raise CorruptError(f"inode {inode.ino}: bad extent root (entries {hdr.entries}, "
                               f"max {hdr.max})")
        if hdr.depth and not hdr.entries:
            raise CorruptError(f"inode {inode.ino}: empty extent index in the inode")
        entries = (ext.parse_leaves(raw, hdr.entries) if hdr.depth == 0
                   else ext.parse_indexes(raw, hdr.entries))
        self._check_entries(inode, entries, hdr.depth, "in inode")
        return _Node(None, hdr.depth, hdr.max, entries)

    def _read_node(self, inode: Inode, blk: int, depth: int) -> _Node:
        fs = self.fs
        if blk < fs.sb.f["s_first_data_block"] or blk >= fs.blocks_count:
            raise CorruptError(f"inode {inode.ino}: extent node block {blk} outside the "
                               "file system")
        raw = fs.read_block(blk)
        hdr = ext.parse_header(raw)
        if hdr.magic != ext.EXT4_EXT_MAGIC:
            raise CorruptError(f"inode {inode.ino}: bad extent magic in block {blk}")
        if hdr.depth != depth:
            raise CorruptError(f"inode {inode.ino}: extent node {blk} has depth {hdr.depth}, "
                               f"expected {depth}")
        if not 0 < hdr.max <= self._node_max or hdr.entries > hdr.max:
            raise CorruptError(f"inode {inode.ino}: bad extent header in block {blk}")
        if hdr.entries == 0:
            raise CorruptError(f"inode {inode.ino}: empty extent node {blk}")
        entries = (ext.parse_leaves(raw, hdr.entries) if depth == 0
                   else ext.parse_indexes(raw, hdr.entries))
        self._check_entries(inode, entries, depth, f"block {blk}")
        return _Node(blk, depth, hdr.max, entries)

    def _check_entries(self, inode: Inode, entries: list, depth: int, where: str) -> None:
        prev = -1
        for e in entries:
            if e.block < prev:
                raise CorruptError(f"inode {inode.ino}: extent node {where} out of order")
            if depth == 0:
                if e.length == 0:
                    raise CorruptError(f"inode {inode.ino}: empty extent in {where}")
                if e.start < self.fs.sb.f["s_first_data_block"] or \
                        e.start + e.length > self.fs.blocks_count:
                    raise CorruptError(f"inode {inode.ino}: extent in {where} outside the "
                                       "file system")
                prev = e.block + e.length
            else:
                prev = e.block + 1

    def _path(self, inode: Inode, lblk: int) -> list[_Node]:
        """Nodes from the root to the leaf that covers ``lblk`` (depth-bounded)."""
        node = self._root(inode)
        path = [node]
        seen: set[int] = set()
        while node.depth > 0:
            keys = [e.block for e in node.entries]
            node.pos = max(0, bisect_right(keys, lblk) - 1)
            child = node.entries[node.pos].leaf
            if child in seen:
                raise CorruptError(f"inode {inode.ino}: extent tree loop at block {child}")
            seen.add(child)
            nxt = self._read_node(inode, child, node.depth - 1)
            if nxt.entries[0].block < node.entries[node.pos].block:
                # a child starting before its key would make holes look bigger than they are
                raise CorruptError(f"inode {inode.ino}: extent node {child} starts before "
                                   "its index key")
            node = nxt
            path.append(node)
        node.pos = bisect_right([e.block for e in node.entries], lblk) - 1
        return path

    @staticmethod
    def _next_key(path: list[_Node]) -> int:
        """First logical block mapped after the path's leaf (MAX_LBLK when none)."""
        for node in reversed(path[:-1]):
            if node.pos + 1 < len(node.entries):
                return node.entries[node.pos + 1].block
        return MAX_LBLK

    # ================================================================== writing nodes
    def _write(self, h: Handle, inode: Inode, node: _Node) -> None:
        if node.depth == 0:
            packed = [ext.pack_leaf(e.block, e.length, e.start, e.uninit) for e in node.entries]
        else:
            packed = [ext.pack_index(e.block, e.leaf) for e in node.entries]
        if node.blk is None:
            inode.f["i_block"] = bytes(ext.pack_node(packed, node.max, node.depth, 60))
            return
        fs = self.fs
        data = ext.pack_node(packed, node.max, node.depth, fs.block_size)
        if fs.sb.metadata_csum:
            ext.set_node_checksum(data, fs.inode_seed(inode), node.max)
        if node.fresh:
            buf = h.get_create_access(node.blk)
            node.fresh = False
        else:
            buf = h.get_write_access(node.blk)
        buf[:] = data
        h.dirty_metadata(node.blk)

    def _reserve(self, h: Handle, inode: Inode, path: list[_Node], level: int, extra: int,
                 goal: int) -> list[int]:
        """Allocate every tree block that storing ``extra`` more entries in path[level]
        can need (0 when it has room). All or nothing: NoSpace frees what it got."""
        node = path[level]
        if len(node.entries) + extra <= node.max:
            return []
        need = 0
        i = level
        while True:
            need += 1  # node i splits (or, the root, grows)
            if i == 0:
                break
            parent = path[i - 1]
            if len(parent.entries) < parent.max:
                break
            i -= 1
        if path[0].depth + (1 if i == 0 else 0) > WRITE_MAX_DEPTH:
            raise NoSpace("extent tree would be deeper than the kernel allows")
        got: list[int] = []
        try:
            while len(got) < need:
                start, n = self.fs.alloc.allocate_blocks(h, goal, need - len(got))
                got.extend(range(start, start + n))
                goal = start + n
        except NoSpace:
            for b in got:
                self.fs.alloc.free_blocks(h, b, 1)
            raise
        return got

    def _take(self, inode: Inode, pool: list[int]) -> int:
        if not pool:
            raise AssertionError("extent tree block reservation too small")
        self.fs.add_i_blocks(inode, 1)
        return pool.pop(0)

    def _release(self, h: Handle, pool: list[int]) -> None:
        for b in pool:
            self.fs.alloc.free_blocks(h, b, 1)
        pool.clear()

    def _free_node(self, h: Handle, inode: Inode, blk: int) -> None:
        self.fs.free_file_blocks(h, inode, blk, 1, metadata=True)
        self.fs.add_i_blocks(inode, -1)

    def _store(self, h: Handle, inode: Inode, path: list[_Node], level: int, entries: list,
               pool: list[int], append: bool = False) -> None:
        """Make ``entries`` the content of path[level]: write it, splitting, growing,
        freeing and fixing parent keys as needed (see the module docstring)."""
        node = path[level]
        if not entries:
            if level == 0:
                node.depth, node.max, node.entries = 0, ROOT_MAX, []
                self._write(h, inode, node)
                return
            parent = path[level - 1]
            assert node.blk is not None  # below the root every node is a block
            self._free_node(h, inode, node.blk)
            pe = parent.entries[: parent.pos] + parent.entries[parent.pos + 1 :]
            self._store(h, inode, path, level - 1, pe, pool)
            return
        if len(entries) <= node.max:
            node.entries = entries
            self._write(h, inode, node)
            if level > 0:
                parent = path[level - 1]
                if parent.entries[parent.pos].block != entries[0].block:
                    assert node.blk is not None
                    pe = list(parent.entries)
                    pe[parent.pos] = ExtentIndex(entries[0].block, node.blk)
                    self._store(h, inode, path, level - 1, pe, pool)
            return
        if level == 0:  # grow in depth: the root's entries move to a new block
            blk = self._take(inode, pool)
            child = _Node(blk, node.depth, self._node_max, entries, fresh=True)
            self._write(h, inode, child)
            node.depth += 1
            node.entries = [ExtentIndex(entries[0].block, blk)]
            self._write(h, inode, node)
            return
        cut = node.max if append else len(entries) // 2
        left, right = entries[:cut], entries[cut:]
        blk = self._take(inode, pool)
        new = _Node(blk, node.depth, self._node_max, right, fresh=True)
        self._write(h, inode, new)
        node.entries = left
        self._write(h, inode, node)
        parent = path[level - 1]
        assert node.blk is not None
        pe = list(parent.entries)
        pe[parent.pos] = ExtentIndex(left[0].block, node.blk)
        pe.insert(parent.pos + 1, ExtentIndex(right[0].block, blk))
        self._store(h, inode, path, level - 1, pe, pool,
                    append=parent.pos + 1 == len(parent.entries))

    def _store_leaf(self, h: Handle, inode: Inode, path: list[_Node], entries: list[Extent],
                    goal: int, append: bool = False) -> None:
        """Store a leaf's new entries, reserving the tree blocks an overflow needs first."""
        level = len(path) - 1
        pool = self._reserve(h, inode, path, level, len(entries) - len(path[level].entries),
                             goal)
        try:
            self._store(h, inode, path, level, entries, pool, append)
        finally:
            self._release(h, pool)

    def _shrink(self, h: Handle, inode: Inode) -> None:
        """While the root is an index with one entry whose child fits in the root, pull
        the child's entries up and free its block (the tree gets one level shallower)."""
        while True:
            root = self._root(inode)
            if root.depth == 0 or len(root.entries) != 1:
                return
            blk = root.entries[0].leaf
            child = self._read_node(inode, blk, root.depth - 1)
            if len(child.entries) > root.max:
                return
            root.depth = child.depth
            root.entries = child.entries
            self._write(h, inode, root)
            self._free_node(h, inode, blk)

    # ================================================================== operations
    def allocate(self, h: Handle, inode: Inode, lblk: int, count: int, *,
                 uninit: bool = False) -> list[Mapped]:
        if count <= 0:
            return []
        end = lblk + count
        if lblk < 0 or end > MAX_LBLK:
            raise ValueError(f"logical blocks {lblk}..{end - 1} out of the extent range")
        out: list[Mapped] = []
        cur = lblk
        try:
            while cur < end:
                path = self._path(inode, cur)
                leaf = path[-1]
                ents = leaf.entries
                pos = leaf.pos
                if pos >= 0 and _end(ents[pos]) > cur:  # mapped already
                    e = ents[pos]
                    n = min(_end(e), end) - cur
                    out.append(Mapped(cur, e.start + cur - e.block, n, e.uninit, False))
                    cur += n
                    continue
                nxt = ents[pos + 1].block if pos + 1 < len(ents) else self._next_key(path)
                want = min(end, nxt) - cur
                if pos >= 0:
                    goal = ents[pos].start + cur - ents[pos].block
                else:
                    goal = self.fs.inode_goal(inode)
                start, n = self._map_new(h, inode, path, cur, want, goal, uninit)
                out.append(Mapped(cur, start, n, uninit, True))
                cur += n
        finally:
            self.fs.invalidate_map(inode.ino)
        return out

    def _map_new(self, h: Handle, inode: Inode, path: list[_Node], cur: int, want: int,
                 goal: int, uninit: bool) -> tuple[int, int]:
        """Allocate up to ``want`` blocks for the hole at ``cur`` and insert their extent
        (merging with its neighbours). Returns (first physical block, number mapped)."""
        fs = self.fs
        start, n = fs.alloc.allocate_blocks(h, goal, min(want, _max_len(uninit)))
        leaf = path[-1]
        ents = leaf.entries
        pos = leaf.pos + 1
        new = ents[:pos] + [Extent(cur, n, start, uninit)] + ents[pos:]
        lo = max(0, pos - 1)
        new = new[:lo] + _merge_all(new[lo : pos + 2]) + new[pos + 2 :]
        try:
            self._store_leaf(h, inode, path, new, start + n, append=pos == len(ents))
        except BaseException:
            fs.alloc.free_blocks(h, start, n)
            raise
        fs.add_i_blocks(inode, n)
        return start, n

    def mark_written(self, h: Handle, inode: Inode, lblk: int, count: int) -> None:
        end = lblk + count
        cur = lblk
        try:
            while cur < end:
                path = self._path(inode, cur)
                leaf = path[-1]
                ents = leaf.entries
                pos = leaf.pos
                if pos < 0 or _end(ents[pos]) <= cur:  # a hole: skip to the next extent
                    cur = ents[pos + 1].block if pos + 1 < len(ents) else self._next_key(path)
                    continue
                e = ents[pos]
                stop = min(_end(e), end)
                if not e.uninit:
                    cur = stop
                    continue
                pieces = []
                if e.block < cur:
                    pieces.append(Extent(e.block, cur - e.block, e.start, True))
                pieces.append(Extent(cur, stop - cur, e.start + cur - e.block, False))
                if stop < _end(e):
                    pieces.append(Extent(stop, _end(e) - stop, e.start + stop - e.block, True))
                new = ents[:pos] + pieces + ents[pos + 1 :]
                lo = max(0, pos - 1)
                hi = pos + len(pieces) + 1
                new = new[:lo] + _merge_all(new[lo:hi]) + new[hi:]
                self._store_leaf(h, inode, path, new, e.start)
                cur = stop
            self._shrink(h, inode)
        finally:
            self.fs.invalidate_map(inode.ino)

    def truncate(self, h: Handle, inode: Inode, lblk: int) -> None:
        self._remove(h, inode, max(0, lblk), MAX_LBLK)

    def punch(self, h: Handle, inode: Inode, lblk: int, count: int) -> None:
        if count > 0:
            self._remove(h, inode, max(0, lblk), min(MAX_LBLK, lblk + count))

    def _remove(self, h: Handle, inode: Inode, first: int, end: int) -> None:
        """Unmap [first, end), one leaf at a time from the left."""
        fs = self.fs
        meta = inode.is_dir()
        cur = first
        try:
            while cur < end:
                path = self._path(inode, cur)
                leaf = path[-1]
                nxt = self._next_key(path)
                new: list[Extent] = []
                frees: list[tuple[int, int]] = []
                for e in leaf.entries:
                    s, t = max(e.block, first), min(_end(e), end)
                    if s >= t:
                        new.append(e)
                        continue
                    if e.block < s:
                        new.append(Extent(e.block, s - e.block, e.start, e.uninit))
                    if t < _end(e):
                        new.append(Extent(t, _end(e) - t, e.start + t - e.block, e.uninit))
                    frees.append((e.start + s - e.block, t - s))
                if frees:
                    self._store_leaf(h, inode, path, new, frees[0][0])
                    for start, n in frees:
                        fs.free_file_blocks(h, inode, start, n, metadata=meta)
                        fs.add_i_blocks(inode, -n)
                if nxt <= cur:
                    raise CorruptError(f"inode {inode.ino}: extent index keys out of order")
                cur = nxt
            self._shrink(h, inode)
        finally:
            fs.invalidate_map(inode.ino)
