"""WritableFileSystem: an image opened "r+". Every metadata change goes through a handle
of the journal (today InPlaceJournal; the jbd2 journal replaces only its commit).

Reads see the running transaction (the buffer cache serves dirty blocks first). Superblock
free totals are derived from the group descriptors at commit, in one place.
"""

from __future__ import annotations

from typing import Any

from ..blockdev import BlockDevice
from ..errors import CorruptError, UnsupportedFeatureError
from ..jbd2 import BufferCache, Handle, InPlaceJournal
from ..ondisk.superblock import SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE
from .alloc import Allocator
from .filesystem import FileSystem


class WritableFileSystem(FileSystem):
    def __init__(self, dev: BlockDevice, **kw: Any):
        super().__init__(dev, **kw)
        if self.problems:
            raise CorruptError(f"refusing to write to a damaged file system: {self.problems[0]}")
        unsupported = [n for n in self.sb.unknown_incompat()]
        if unsupported:
            raise UnsupportedFeatureError("cannot write with feature(s): " + ", ".join(unsupported))
        self.buffers = BufferCache(dev, self.block_size)
        self.journal = InPlaceJournal(dev, self.buffers)
        self.alloc = Allocator(self)

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
