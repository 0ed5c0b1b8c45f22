"""Block and inode allocation: group layout, bitmaps (incl. lazily-initialised groups),
goal-based allocators, and the free counts they keep in step.

One code path per fact: a bitmap change, its group's free count, the bitmap checksum and
the group descriptor checksum are all written by ``_commit_group`` through the running
handle; the superblock totals are derived from the groups in ``sync_superblock_counts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptError
from ..ondisk.csum import crc32c_raw
from ..ondisk.groupdesc import (
    BG_BLOCK_UNINIT,
    BG_INODE_UNINIT,
    group_desc_checksum,
)

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from .filesystem import FileSystem


class NoSpace(Exception):
    """Raised inside the allocators; the public API turns it into OSError(ENOSPC)."""


@dataclass
class GroupLayout:
    first: int  # first block of the group
    count: int  # blocks in the group
    overhead: list[tuple[int, int]]  # (start, length) of fs metadata inside the group


def group_first_block(fs: FileSystem, g: int) -> int:
    return fs.sb.f["s_first_data_block"] + g * fs.sb.f["s_blocks_per_group"]


def blocks_in_group(fs: FileSystem, g: int) -> int:
    first = group_first_block(fs, g)
    return min(fs.sb.f["s_blocks_per_group"], fs.blocks_count - first)


def super_and_desc_blocks(fs: FileSystem, g: int) -> list[tuple[int, int]]:
    """Ranges in group ``g`` used by a superblock copy and (old or meta_bg) descriptors."""
    sb = fs.sb
    first = group_first_block(fs, g)
    dpb = fs.block_size // sb.desc_size
    desc_blocks = (fs.group_count + dpb - 1) // dpb
    has_super = sb.is_sparse_group(g)
    out: list[tuple[int, int]] = []
    n = 0
    if has_super:
        n = 1
    if sb.has_incompat("meta_bg"):
        old_desc = sb.f["s_first_meta_bg"]
    else:
        old_desc = desc_blocks + sb.f["s_reserved_gdt_blocks"]
    mg = g // dpb
    if not sb.has_incompat("meta_bg") or mg < sb.f["s_first_meta_bg"]:
        if has_super:
            n += old_desc
        if n:
            out.append((first, n))
    else:
        if n:
            out.append((first, n))
        if g % dpb in (0, 1, dpb - 1):
            out.append((first + (1 if has_super else 0), 1))
    # group 0 with 1 KiB blocks: block 0 (boot block) precedes the group and is not ours
    return out


def inode_table_blocks(fs: FileSystem) -> int:
    return (fs.inodes_per_group * fs.inode_size + fs.block_size - 1) // fs.block_size


def group_layout(fs: FileSystem, g: int) -> GroupLayout:
    first = group_first_block(fs, g)
    count = blocks_in_group(fs, g)
    ranges = list(super_and_desc_blocks(fs, g))
    end = first + count
    for gd in fs.groups:
        for blk, n in ((gd.block_bitmap, 1), (gd.inode_bitmap, 1),
                       (gd.inode_table, inode_table_blocks(fs))):
            if blk < end and blk + n > first:
                s = max(blk, first)
                ranges.append((s, min(blk + n, end) - s))
    return GroupLayout(first, count, ranges)


class Allocator:
    """Bitmaps are cached per group as numpy bool arrays and written back via handles."""

    def __init__(self, fs: FileSystem):
        self.fs = fs
        self._bbm: dict[int, np.ndarray] = {}
        self._ibm: dict[int, np.ndarray] = {}
        self.last_group = 0
        # blocks freed by the running transaction: free in the bitmap, but not handed out
        # again until that transaction commits (ext4 keeps them out of the buddy cache), or
        # data written into them before the commit would overwrite a file that a crash
        # brings back. Without a journal there is nothing to wait for.
        self.defer_reuse = fs.sb.has_compat("has_journal")
        self._busy: dict[int, np.ndarray] = {}

    def release_busy(self) -> None:
        """The transaction that freed them has committed: the blocks may be reused."""
        self._busy.clear()

    # --------------------------------------------------------------- bitmaps
    def _bits(self, raw: bytes, n: int) -> np.ndarray:
        return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:n].astype(bool)

    def block_bitmap(self, g: int) -> np.ndarray:
        bm = self._bbm.get(g)
        if bm is not None:
            return bm
        fs = self.fs
        gd = fs.groups[g]
        n = blocks_in_group(fs, g)
        if gd.flags & BG_BLOCK_UNINIT:
            bm = np.zeros(n, dtype=bool)
            lay = group_layout(fs, g)
            for s, ln in lay.overhead:
                bm[s - lay.first : s - lay.first + ln] = True
        else:
            bm = self._bits(fs.read_block(gd.block_bitmap), n).copy()
        self._bbm[g] = bm
        return bm

    def inode_bitmap(self, g: int) -> np.ndarray:
        bm = self._ibm.get(g)
        if bm is not None:
            return bm
        fs = self.fs
        gd = fs.groups[g]
        n = fs.inodes_per_group
        if gd.flags & BG_INODE_UNINIT:
            bm = np.zeros(n, dtype=bool)
        else:
            bm = self._bits(fs.read_block(gd.inode_bitmap), n).copy()
        self._ibm[g] = bm
        return bm

    def _write_block_bitmap(self, h: Handle, g: int) -> None:
        fs = self.fs
        gd = fs.groups[g]
        bm = self._bbm[g]
        buf = h.get_write_access(gd.block_bitmap)
        bits = np.ones(fs.block_size * 8, dtype=bool)  # padding bits past the group end are 1
        bits[: len(bm)] = bm
        buf[:] = np.packbits(bits, bitorder="little").tobytes()
        h.dirty_metadata(gd.block_bitmap)
        if fs.sb.metadata_csum:
            nbytes = fs.sb.f["s_clusters_per_group"] // 8
            c = crc32c_raw(fs.csum_seed, bytes(buf[:nbytes]))
            gd.f["bg_block_bitmap_csum_lo"] = c & 0xFFFF
            if gd.is64:
                gd.f["bg_block_bitmap_csum_hi"] = c >> 16

    def _write_inode_bitmap(self, h: Handle, g: int) -> None:
        fs = self.fs
        gd = fs.groups[g]
        bm = self._ibm[g]
        buf = h.get_write_access(gd.inode_bitmap)
        bits = np.ones(fs.block_size * 8, dtype=bool)
        bits[: len(bm)] = bm
        buf[:] = np.packbits(bits, bitorder="little").tobytes()
        h.dirty_metadata(gd.inode_bitmap)
        if fs.sb.metadata_csum:
            nbytes = fs.inodes_per_group // 8
            c = crc32c_raw(fs.csum_seed, bytes(buf[:nbytes]))
            gd.f["bg_inode_bitmap_csum_lo"] = c & 0xFFFF
            if gd.is64:
                gd.f["bg_inode_bitmap_csum_hi"] = c >> 16

    def write_group_desc(self, h: Handle, g: int) -> None:
        """Pack descriptor ``g`` (with its checksum) into the primary descriptor block."""
        fs = self.fs
        gd = fs.groups[g]
        blk, off = fs.group_desc_location(g)
        dsz = fs.sb.desc_size
        raw = bytearray(gd.pack(dsz))
        if fs.sb.metadata_csum or fs.sb.gdt_csum:
            gd.f["bg_checksum"] = group_desc_checksum(
                bytes(raw), g, dsz, metadata_csum=fs.sb.metadata_csum, csum_seed=fs.csum_seed,
                uuid=fs.sb.f["s_uuid"])
            raw = bytearray(gd.pack(dsz))
        buf = h.get_write_access(blk)
        buf[off : off + dsz] = raw
        h.dirty_metadata(blk)

    @staticmethod
    def _set_split(gd, base: str, value: int, width: int) -> None:
        gd.f[base + "_lo"] = value & ((1 << width) - 1)
        if gd.is64:
            gd.f[base + "_hi"] = value >> width

    # --------------------------------------------------------------- blocks
    def allocate_blocks(self, h: Handle, goal: int, count: int, *, min_count: int = 1) -> tuple[int, int]:
        """Allocate up to ``count`` contiguous blocks at or after ``goal`` (wrapping).

        Returns (first block, number allocated >= min_count). Raises NoSpace.
        """
        fs = self.fs
        if count <= 0:
            raise ValueError("count must be positive")
        first_data = fs.sb.f["s_first_data_block"]
        if not (first_data <= goal < fs.blocks_count):
            goal = first_data
        bpg = fs.sb.f["s_blocks_per_group"]
        g0 = (goal - first_data) // bpg
        ngroups = fs.group_count
        for step in range(ngroups + 1):
            g = (g0 + step) % ngroups
            gd = fs.groups[g]
            if gd.free_blocks_count < min_count and not (gd.flags & BG_BLOCK_UNINIT):
                continue
            bm = self.block_bitmap(g)
            busy = self._busy.get(g)
            search = bm if busy is None else bm | busy
            first = group_first_block(fs, g)
            start_off = goal - first if step == 0 else 0
            found = _find_run(search, start_off, count, min_count)
            if found is None and step == 0 and start_off:
                found = _find_run(search, 0, count, min_count)
            if found is None:
                continue
            off, n = found
            bm[off : off + n] = True
            self._after_block_change(h, g, -n)
            return first + off, n
        if self._busy:
            # only blocks freed by the running transaction are left: use them rather than
            # fail (the kernel would force a commit and retry outside the handle)
            self._busy.clear()
            return self.allocate_blocks(h, goal, count, min_count=min_count)
        raise NoSpace("no free blocks")

    def free_blocks(self, h: Handle, start: int, count: int) -> None:
        fs = self.fs
        first_data = fs.sb.f["s_first_data_block"]
        bpg = fs.sb.f["s_blocks_per_group"]
        while count > 0:
            g = (start - first_data) // bpg
            if g < 0 or g >= fs.group_count:
                raise CorruptError(f"freeing block {start} outside the file system")
            first = group_first_block(fs, g)
            n = min(count, first + blocks_in_group(fs, g) - start)
            bm = self.block_bitmap(g)
            seg = bm[start - first : start - first + n]
            if not seg.all():
                raise CorruptError(f"freeing blocks {start}..{start + n - 1} that are already free")
            seg[:] = False
            if self.defer_reuse:
                busy = self._busy.get(g)
                if busy is None:
                    busy = self._busy[g] = np.zeros(len(bm), dtype=bool)
                busy[start - first : start - first + n] = True
            self._after_block_change(h, g, n)
            start += n
            count -= n

    def _after_block_change(self, h: Handle, g: int, delta: int) -> None:
        gd = self.fs.groups[g]
        gd.f["bg_flags"] &= ~BG_BLOCK_UNINIT
        self._set_split(gd, "bg_free_blocks_count", gd.free_blocks_count + delta, 16)
        self._write_block_bitmap(h, g)
        self.write_group_desc(h, g)
        self.fs.free_blocks_delta += delta

    # --------------------------------------------------------------- inodes
    def allocate_inode(self, h: Handle, parent_ino: int, is_dir: bool) -> int:
        """Directories go to a group with room and few directories (Orlov-like spread from
        the parent); other inodes stay in the parent's group when they can."""
        fs = self.fs
        ipg = fs.inodes_per_group
        ngroups = fs.group_count
        pg = (parent_ino - 1) // ipg if parent_ino else 0
        if is_dir and ngroups > 1:
            avg_free = sum(gd.free_inodes_count for gd in fs.groups) / ngroups
            order = sorted(
                range(ngroups),
                key=lambda g: (fs.groups[g].free_inodes_count < avg_free,
                               fs.groups[g].used_dirs_count, (g - pg) % ngroups))
        else:
            order = [(pg + i) % ngroups for i in range(ngroups)]
        first_ino = fs.sb.first_ino
        for g in order:
            gd = fs.groups[g]
            if gd.free_inodes_count == 0:
                continue
            bm = self.inode_bitmap(g)
            lo = first_ino - 1 if g == 0 else 0
            idx = lo + int(bm[lo:].argmin())
            if bm[idx]:
                continue
            bm[idx] = True
            gd.f["bg_flags"] &= ~BG_INODE_UNINIT
            self._set_split(gd, "bg_free_inodes_count", gd.free_inodes_count - 1, 16)
            if is_dir:
                self._set_split(gd, "bg_used_dirs_count", gd.used_dirs_count + 1, 16)
            if fs.sb.metadata_csum or fs.sb.gdt_csum:
                used_limit = ipg - gd.itable_unused
                if idx + 1 > used_limit:
                    self._set_split(gd, "bg_itable_unused", ipg - (idx + 1), 16)
            self._write_inode_bitmap(h, g)
            self.write_group_desc(h, g)
            fs.free_inodes_delta -= 1
            return g * ipg + idx + 1
        raise NoSpace("no free inodes")

    def free_inode(self, h: Handle, ino: int, is_dir: bool) -> None:
        fs = self.fs
        g, idx = divmod(ino - 1, fs.inodes_per_group)
        bm = self.inode_bitmap(g)
        if not bm[idx]:
            raise CorruptError(f"freeing inode {ino} that is already free")
        bm[idx] = False
        gd = fs.groups[g]
        self._set_split(gd, "bg_free_inodes_count", gd.free_inodes_count + 1, 16)
        if is_dir:
            self._set_split(gd, "bg_used_dirs_count", max(0, gd.used_dirs_count - 1), 16)
        self._write_inode_bitmap(h, g)
        self.write_group_desc(h, g)
        fs.free_inodes_delta += 1


def _find_run(bm: np.ndarray, start: int, want: int, min_count: int) -> tuple[int, int] | None:
    """First free run at/after ``start`` of length ``want`` (or the longest >= min_count)."""
    free = ~bm[start:]
    i = int(free.argmax())
    if not free[i]:
        return None
    if i + want <= len(free) and (want == 1 or free[i : i + want].all()):  # common case
        return start + i, want
    # run starts/ends of free bits
    d = np.diff(np.concatenate(([0], free.view(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    lens = ends - starts
    ok = np.flatnonzero(lens >= want)
    if ok.size:
        i = int(ok[0])
        return start + int(starts[i]), want
    i = int(np.argmax(lens))
    if lens[i] >= min_count:
        return start + int(starts[i]), int(lens[i])
    return None
