"""Logical -> physical block mapping for a file: extent trees and ext2/3 indirect maps.

Both produce a sorted list of ``Run(logical, physical, length, uninit)``; holes are the gaps.
Walks are bounded: depth, visited blocks, and run count are all limited, so a hostile
image cannot loop or exhaust memory.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ChecksumError, CorruptError
from ..ondisk import extent as ext
from ..ondisk.inode import Inode, inode_csum_seed

if TYPE_CHECKING:
    import numpy as np

    from .filesystem import FileSystem


# The kernel refuses trees deeper than ext.MAX_DEPTH (5), but e2fsprogs reads them and
# e2fsck -n calls such a file system clean (it only offers to flatten the tree), so the
# reader accepts deeper ones; the walk stays bounded by this and by the visited-node budget.
MAX_READ_DEPTH = 32


class Run(NamedTuple):
    logical: int
    physical: int
    length: int
    uninit: bool


class BlockMap:
    """The runs of one file, with fast lookup of the runs overlapping a logical range."""

    def __init__(self, runs: list[Run]):
        runs.sort(key=lambda r: r.logical)
        self.runs = runs
        self._starts = [r.logical for r in runs]

    def overlapping(self, first: int, count: int) -> list[Run]:
        """Runs intersecting logical blocks [first, first+count)."""
        i = bisect_right(self._starts, first) - 1
        if i < 0:
            i = 0
        out = []
        end = first + count
        runs = self.runs
        while i < len(runs) and runs[i].logical < end:
            r = runs[i]
            if r.logical + r.length > first:
                out.append(r)
            i += 1
        return out

    def lookup(self, logical: int) -> int | None:
        for r in self.overlapping(logical, 1):
            return r.physical + (logical - r.logical)
        return None

    @property
    def allocated_blocks(self) -> int:
        return sum(r.length for r in self.runs)


def _check_range(fs: FileSystem, start: int, length: int, what: str) -> None:
    if start < fs.sb.f["s_first_data_block"] or start + length > fs.blocks_count or length <= 0:
        raise CorruptError(
            f"{what}: block range {start}..{start + length - 1} outside the file system"
        )


def extent_runs(fs: FileSystem, inode: Inode) -> list[Run]:
    """Walk an extent tree of any depth (bounded), verifying node checksums."""
    root = inode.i_block
    hdr = ext.parse_header(root)
    if hdr.magic != ext.EXT4_EXT_MAGIC:
        raise CorruptError(f"inode {inode.ino}: bad extent header magic {hdr.magic:#x}")
    if hdr.depth > MAX_READ_DEPTH:
        raise CorruptError(f"inode {inode.ino}: extent tree depth {hdr.depth} too large")
    if hdr.entries > hdr.max or hdr.max > 4:
        raise CorruptError(f"inode {inode.ino}: extent header entries {hdr.entries} > max {hdr.max}")
    seed = None
    if fs.sb.metadata_csum:
        seed = inode_csum_seed(fs.csum_seed, inode.ino, inode.generation)
    # each run holds >= 1 block, counted in i_blocks (unwritten extents past EOF included)
    size_blocks = (inode.size + fs.block_size - 1) // fs.block_size
    held = inode.blocks_512(fs.sb.has_ro("huge_file"), fs.block_size) // (fs.block_size // 512)
    max_blocks = min(max(size_blocks, held), fs.blocks_count) + 16
    runs: list[Run] = []
    visited: set[int] = set()
    bs = fs.block_size
    max_entries = (bs - 12) // 12

    def walk(buf: bytes, h: ext.ExtentHeader, expect_depth: int, where: str) -> None:
        if h.depth != expect_depth:
            raise CorruptError(f"inode {inode.ino}: extent node {where} has depth {h.depth}, expected {expect_depth}")
        if h.depth == 0:
            for e in ext.parse_leaves(buf, h.entries):
                if e.length == 0:
                    continue
                _check_range(fs, e.start, e.length, f"inode {inode.ino} extent")
                runs.append(Run(e.block, e.start, e.length, e.uninit))
                if len(runs) > max_blocks:
                    raise CorruptError(f"inode {inode.ino}: more extents than the file has blocks")
            return
        for ix in ext.parse_indexes(buf, h.entries):
            _check_range(fs, ix.leaf, 1, f"inode {inode.ino} extent index")
            if ix.leaf in visited:
                raise CorruptError(f"inode {inode.ino}: extent tree loop at block {ix.leaf}")
            visited.add(ix.leaf)
            if len(visited) > max_blocks:
                raise CorruptError(f"inode {inode.ino}: extent tree larger than the file")
            child = fs.read_block(ix.leaf)
            ch = ext.parse_header(child)
            if ch.magic != ext.EXT4_EXT_MAGIC:
                raise CorruptError(f"inode {inode.ino}: bad extent magic in block {ix.leaf}")
            if ch.entries > ch.max or ch.max > max_entries:
                raise CorruptError(f"inode {inode.ino}: bad extent header in block {ix.leaf}")
            if seed is not None:
                want = ext.node_checksum(seed, child, ch.max)
                if want != ext.stored_node_checksum(child, ch.max):
                    fs.report_checksum(ChecksumError(
                        f"inode {inode.ino}: extent block {ix.leaf} checksum mismatch"))
            walk(child, ch, expect_depth - 1, f"block {ix.leaf}")

    walk(root, hdr, hdr.depth, "in inode")
    return runs


def indirect_runs(fs: FileSystem, inode: Inode) -> list[Run]:
    import numpy as np  # here, not at import: most commands never read an indirect map
    """ext2/ext3 block map: 12 direct pointers, then single/double/triple indirect."""
    bs = fs.block_size
    per = bs // 4
    ptrs = struct.unpack("<15I", inode.i_block)
    nblocks = (inode.size + bs - 1) // bs
    runs: list[Run] = []
    blocks_count = fs.blocks_count
    first_data = fs.sb.f["s_first_data_block"]
    budget = [nblocks + 3 * per + 16]

    def add_pointers(logical: int, arr: np.ndarray) -> None:
        # Coalesce a vector of pointers (0 = hole) into runs.
        if arr.size == 0:
            return
        arr = arr.astype(np.int64)
        nz = arr != 0
        if not nz.any():
            return
        bad = nz & ((arr < first_data) | (arr >= blocks_count))
        if bad.any():
            i = int(np.argmax(bad))
            raise CorruptError(f"inode {inode.ino}: block pointer {int(arr[i])} outside the file system")
        idx = np.nonzero(nz)[0]
        vals = arr[idx]
        # break where index or value is not consecutive
        brk = np.nonzero((np.diff(idx) != 1) | (np.diff(vals) != 1))[0] + 1
        starts = np.concatenate(([0], brk))
        ends = np.concatenate((brk, [len(idx)]))
        for s, e in zip(starts.tolist(), ends.tolist()):
            runs.append(Run(logical + int(idx[s]), int(vals[s]), e - s, False))

    visited: set[int] = set()

    def read_ptrs(blk: int) -> np.ndarray:
        budget[0] -= 1
        if budget[0] < 0:
            raise CorruptError(f"inode {inode.ino}: indirect map larger than the file")
        if blk < first_data or blk >= blocks_count:
            raise CorruptError(f"inode {inode.ino}: indirect block {blk} outside the file system")
        # a file never uses one indirect block twice; refusing it keeps the map (and its
        # memory) proportional to the distinct blocks of the image
        if blk in visited:
            raise CorruptError(f"inode {inode.ino}: indirect block {blk} used twice (loop)")
        visited.add(blk)
        return np.frombuffer(fs.read_block(blk), dtype="<u4")

    add_pointers(0, np.array(ptrs[:12], dtype=np.int64)[: max(0, min(12, nblocks))])
    logical = 12

    def walk(blk: int, level: int, logical: int) -> None:
        if logical >= nblocks:
            return
        arr = read_ptrs(blk)
        if level == 1:
            add_pointers(logical, arr[: max(0, min(per, nblocks - logical))])
            return
        for i in np.nonzero(arr)[0].tolist():
            child_logical = logical + i * per ** (level - 1)
            if child_logical >= nblocks:
                break
            walk(int(arr[i]), level - 1, child_logical)

    for level, ptr in ((1, ptrs[12]), (2, ptrs[13]), (3, ptrs[14])):
        if ptr and logical < nblocks:
            walk(ptr, level, logical)
        logical += per**level
    return runs


def inode_block_map(fs: FileSystem, inode: Inode) -> BlockMap:
    from ..ondisk.inode import EXTENTS_FL, INLINE_DATA_FL

    if inode.flags & INLINE_DATA_FL:
        return BlockMap([])
    if not (inode.is_reg() or inode.is_dir() or inode.is_symlink()):
        return BlockMap([])  # devices keep their number in i_block; fifos, sockets: nothing
    if inode.is_symlink() and fs._is_fast_symlink(inode):
        return BlockMap([])  # the target itself lives in i_block
    if inode.flags & EXTENTS_FL:
        return BlockMap(extent_runs(fs, inode))
    return BlockMap(indirect_runs(fs, inode))
