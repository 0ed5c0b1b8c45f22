"""WritableFileSystem: an image opened "r+". Every metadata change goes through a handle
of the journal (today InPlaceJournal; the jbd2 journal replaces only its commit).

Reads see the running transaction (the buffer cache serves dirty blocks first). Superblock
free totals are derived from the group descriptors at commit, in one place.
"""

from __future__ import annotations

import os
import stat as _stat
import time
from typing import Any

from ..blockdev import BlockDevice
from ..errors import CorruptError, UnsupportedFeatureError
from ..jbd2 import BufferCache, Handle, InPlaceJournal
from ..ondisk import inode as _inode
from ..ondisk.inode import Inode
from ..ondisk.superblock import SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE
from .alloc import Allocator, group_first_block
from .filesystem import FileSystem
from .mapper import Mapper
from .ops import WriteOps

# flags a new inode takes from its directory (ext4's EXT4_FL_INHERITED)
_INHERITED_FLAGS = (_inode.SECRM_FL | _inode.UNRM_FL | _inode.COMPR_FL | _inode.SYNC_FL
                    | _inode.NODUMP_FL | _inode.NOATIME_FL | _inode.NOTAIL_FL
                    | _inode.JOURNAL_DATA_FL | _inode.DIRSYNC_FL | _inode.TOPDIR_FL
                    | _inode.PROJINHERIT_FL)


class WritableFileSystem(WriteOps, FileSystem):
    def __init__(self, dev: BlockDevice, **kw: Any):
        super().__init__(dev, **kw)
        if self.problems:
            raise CorruptError(f"refusing to write to a damaged file system: {self.problems[0]}")
        if self.sb.has_incompat("needs_recovery"):
            raise UnsupportedFeatureError(
                "the journal needs recovery: replay it first (e2fsck or a kernel mount)")
        unsupported = [n for n in self.sb.unknown_incompat()]
        if unsupported:
            raise UnsupportedFeatureError("cannot write with feature(s): " + ", ".join(unsupported))
        self.buffers = BufferCache(dev, self.block_size)
        self.journal = InPlaceJournal(dev, self.buffers)
        self.alloc = Allocator(self)
        self._extent_mapper: Mapper | None = None
        self._indirect_mapper: Mapper | None = None
        self._open_counts: dict[int, int] = {}
        self._icache: dict[int, Inode] = {}
        if self.sb.f["s_last_orphan"]:
            self.process_orphans()
            self.commit()

    @classmethod
    def open_writable(cls, image: Any, **options: Any) -> WritableFileSystem:
        return cls._on_device(image, writable=True, **options)

    # reads go through the buffer cache so they see uncommitted changes
    def read_block(self, blk: int, cache: bool = True) -> bytes:
        if not hasattr(self, "buffers"):
            return super().read_block(blk, cache)
        if blk < 0 or blk >= self.blocks_count:
            raise CorruptError(f"block {blk} outside the file system")
        return bytes(self.buffers.read(blk))

    def read_blocks(self, blk: int, count: int) -> bytes:
        if not hasattr(self, "buffers"):
            return super().read_blocks(blk, count)
        dirty = self.buffers.dirty
        if dirty and any(b in dirty for b in range(blk, blk + count)):
            return b"".join(self.read_block(b) for b in range(blk, blk + count))
        return super().read_blocks(blk, count)

    # ------------------------------------------------------------------ inodes
    def inode_seed(self, inode: Inode) -> int:
        """Seed of the inode's own metadata checksums (extent nodes, dir blocks, ...)."""
        return _inode.inode_csum_seed(self.csum_seed, inode.ino, inode.generation)

    def get_inode(self, ino: int) -> Inode:
        """Inodes this process wrote come from a cache (already verified, already packed);
        callers get their own copy to change."""
        cached = self._icache.get(ino) if hasattr(self, "_icache") else None
        if cached is None:
            inode = super().get_inode(ino)
            if hasattr(self, "_icache"):
                self._remember_inode(inode)
            return inode
        return Inode(ino, dict(cached.f), cached.raw)

    def _remember_inode(self, inode: Inode) -> None:
        c = self._icache
        c[inode.ino] = Inode(inode.ino, dict(inode.f), inode.raw)
        if len(c) > 8192:
            del c[next(iter(c))]

    def write_inode(self, h: Handle, inode: Inode) -> None:
        """Pack ``inode.f`` into its inode-table slot (checksum set) through the handle."""
        buf = inode.repack()
        if self.sb.metadata_csum:
            _inode.set_inode_checksum(buf, inode.ino, self.csum_seed)
        inode.raw = bytes(buf)
        self._remember_inode(inode)
        blk, off = self.inode_location(inode.ino)
        tb = h.get_write_access(blk)
        tb[off : off + self.inode_size] = buf
        h.dirty_metadata(blk)

    def new_inode(self, h: Handle, mode: int, parent: Inode | None, *, uid: int = 0,
                  gid: int = 0, now_ns: int | None = None) -> Inode:
        """Allocate and initialise an inode (links 0: the caller links it). Files,
        directories and slow symlinks get an empty block map of the file system's kind."""
        is_dir = _stat.S_ISDIR(mode)
        ino = self.alloc.allocate_inode(h, parent.ino if parent else 0, is_dir)
        size = self.inode_size
        fields: dict[str, Any] = {"i_mode": mode & 0xFFFF,
                                  "i_generation": int.from_bytes(os.urandom(4), "little")}
        if size > 128:
            extra = self.sb.f["s_want_extra_isize"] or 32
            fields["i_extra_isize"] = min(extra, size - 128)
            fields.update({k: 0 for k in _inode.EXTRA_FIELDS if k != "i_extra_isize"})
        raw = bytes(_inode.pack_inode(fields, size))
        inode = Inode.parse(ino, raw)
        inode.set_uid(uid)
        inode.set_gid(gid)
        if parent is not None:
            inherit = parent.flags & _INHERITED_FLAGS
            if not is_dir:
                inherit &= ~(_inode.DIRSYNC_FL | _inode.TOPDIR_FL)
            inode.set_flag(inherit)
        now = time.time_ns() if now_ns is None else now_ns
        for which in ("atime", "mtime", "ctime", "crtime"):
            inode.set_time_ns(which, now)
        if _stat.S_ISREG(mode) or is_dir:
            self.mapper(inode).init_inode(inode)
        return inode

    def inode_goal(self, inode: Inode) -> int:
        """Default allocation goal for an inode's blocks: its group's first data block
        past the (flex_bg-packed) metadata."""
        g = (inode.ino - 1) // self.inodes_per_group
        if self.sb.has_incompat("flex_bg"):
            size = 1 << self.sb.f["s_log_groups_per_flex"]
            g = g - g % size
        return group_first_block(self, g)

    # ------------------------------------------------------------------ block maps
    def mapper(self, inode: Inode) -> Mapper:
        if inode.flags & _inode.EXTENTS_FL or (
                inode.f["i_blocks_lo"] == 0 and not any(inode.i_block)
                and self.sb.has_incompat("extent") and not inode.flags & _inode.INLINE_DATA_FL):
            if self._extent_mapper is None:
                from .extwrite import ExtentMapper
                self._extent_mapper = ExtentMapper(self)
            return self._extent_mapper
        if self._indirect_mapper is None:
            from .indwrite import IndirectMapper
            self._indirect_mapper = IndirectMapper(self)
        return self._indirect_mapper

    def invalidate_map(self, ino: int) -> None:
        old = self._bmap_cache.pop(ino, None)
        if old is not None:
            self._bmap_cache_runs -= len(old[1].runs)

    def add_i_blocks(self, inode: Inode, fs_blocks: int) -> None:
        """i_blocks += fs_blocks file-system blocks (may be negative)."""
        huge = self.sb.has_ro("huge_file")
        n = inode.blocks_512(huge, self.block_size) + fs_blocks * (self.block_size // 512)
        if n < 0:
            raise CorruptError(f"inode {inode.ino}: i_blocks would become negative")
        inode.set_blocks_512(n, huge, self.block_size)

    def free_file_blocks(self, h: Handle, inode: Inode, start: int, count: int, *,
                         metadata: bool) -> None:
        """Free blocks of an inode. Metadata blocks (tree nodes, directory blocks, xattr
        blocks) are forgotten by the journal: a revoke keeps replay off their new owner."""
        self.alloc.free_blocks(h, start, count)
        if metadata:
            for b in range(start, start + count):
                h.forget(b)
        else:
            for b in range(start, start + count):
                self.buffers.drop(b)

    def write_data(self, h: Handle, pblk: int, data: bytes | bytearray | memoryview) -> None:
        """File data for consecutive blocks from ``pblk`` (len a multiple of the block size)."""
        h.write_data(pblk, data)

    def start(self) -> Handle:
        return self.journal.start()

    def sync_superblock_counts(self, h: Handle) -> None:
        """Superblock free totals := sums over the group descriptors; write the superblock."""
        sb = self.sb
        free_blocks = sum(gd.free_blocks_count for gd in self.groups)
        free_inodes = sum(gd.free_inodes_count for gd in self.groups)
        sb.f["s_free_blocks_count_lo"] = free_blocks & 0xFFFFFFFF
        if sb.has_incompat("64bit"):
            sb.f["s_free_blocks_count_hi"] = free_blocks >> 32
        sb.f["s_free_inodes_count"] = free_inodes
        self.write_superblock(h)
        self.free_blocks_delta = self.free_inodes_delta = 0

    def write_superblock(self, h: Handle) -> None:
        raw = self.sb.pack()
        blk = SUPERBLOCK_OFFSET // self.block_size
        off = SUPERBLOCK_OFFSET % self.block_size
        buf = h.get_write_access(blk)
        buf[off : off + SUPERBLOCK_SIZE] = raw
        h.dirty_metadata(blk)

    def commit(self) -> None:
        if self.journal.running is not None and (self.free_blocks_delta or self.free_inodes_delta
                                                  or self.journal.running.metadata):
            with self.start() as h:
                self.sync_superblock_counts(h)
        self.journal.commit()

    def close(self) -> None:
        try:
            if hasattr(self, "journal"):
                self.commit()
        finally:
            super().close()
