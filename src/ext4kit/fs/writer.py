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
from .cache import PageCache
from .filesystem import FileSystem
from .mapper import Mapper
from .ops import WriteOps

# flags a new inode takes from its directory (ext4's EXT4_FL_INHERITED)
_INHERITED_FLAGS = (_inode.SECRM_FL | _inode.UNRM_FL | _inode.COMPR_FL | _inode.SYNC_FL
                    | _inode.NODUMP_FL | _inode.NOATIME_FL | _inode.NOTAIL_FL
                    | _inode.JOURNAL_DATA_FL | _inode.DIRSYNC_FL | _inode.TOPDIR_FL
                    | _inode.PROJINHERIT_FL)


def parse_mount_options(text: str | None, **given: Any) -> dict[str, Any]:
    """``mount -o`` style options (data=journal,commit=1,barrier=0,...) merged with keyword
    options (keywords win). Unknown words raise ValueError."""
    opts: dict[str, Any] = {}
    for word in filter(None, (text or "").split(",")):
        key, eq, val = word.partition("=")
        if key == "data" and val in ("journal", "ordered", "writeback"):
            opts["data"] = val
        elif key == "commit" and eq:
            opts["commit"] = float(val) if val else 5.0
        elif key in ("barrier", "nobarrier"):
            opts["barrier"] = key == "barrier" and val != "0"
        elif key in ("journal_checksum", "nojournal_checksum"):
            opts["journal_checksum"] = key == "journal_checksum"
        elif key == "journal_async_commit":
            opts["journal_async_commit"] = True
            opts["journal_checksum"] = True
        elif key in ("norevoke", "revoke"):
            opts["revoke"] = key == "revoke"
        elif key in ("delalloc", "nodelalloc"):
            opts["delalloc"] = key == "delalloc"
        elif key in ("auto_da_alloc", "noauto_da_alloc"):
            opts["auto_da_alloc"] = key == "auto_da_alloc"
        else:
            raise ValueError(f"unknown mount option '{word}'")
    opts.update({k: v for k, v in given.items() if v is not None})
    return opts


JOURNAL_OPTIONS = ("data", "commit", "barrier", "journal_checksum", "journal_async_commit",
                   "revoke", "delalloc", "auto_da_alloc", "clock", "options", "dirty_expire",
                   "dirty_writeback", "dirty_limit")


class WritableFileSystem(WriteOps, FileSystem):
    def __init__(self, dev: BlockDevice, **kw: Any):
        given = {k: kw.pop(k) for k in JOURNAL_OPTIONS if k in kw}
        opts = parse_mount_options(given.pop("options", None), **given)
        super().__init__(dev, **kw)
        if self.problems:
            raise CorruptError(f"refusing to write to a damaged file system: {self.problems[0]}")
        unsupported = [n for n in self.sb.unknown_incompat()]
        if unsupported:
            raise UnsupportedFeatureError("cannot write with feature(s): " + ", ".join(unsupported))
        self.mount_options = opts
        if self.sb.has_incompat("needs_recovery"):
            self._recover()
        self.clock = opts.get("clock", time.monotonic)
        self.cache: PageCache | None = None
        self.auto_da_alloc = bool(opts.get("auto_da_alloc", True))
        self.buffers = BufferCache(dev, self.block_size)
        barrier = opts.get("barrier", True)
        self.journal: InPlaceJournal
        if self.sb.has_compat("has_journal"):
            from ..jbd2.journal import Jbd2Journal

            self.journal = Jbd2Journal(
                self, self.buffers, barrier=barrier, data=opts.get("data", "ordered"),
                # as the kernel: checksums with metadata_csum (v3) or when asked for (v1)
                journal_checksum=opts.get("journal_checksum", False),
                async_commit=opts.get("journal_async_commit", False),
                revoke=opts.get("revoke", True), commit_interval=opts.get("commit", 5.0),
                **({"clock": opts["clock"]} if "clock" in opts else {}))
            self._set_needs_recovery(True)
        else:
            if opts.get("data", "ordered") == "journal":
                raise UnsupportedFeatureError("data=journal needs a journal")
            self.journal = InPlaceJournal(dev, self.buffers, barrier=barrier)
        self.alloc = Allocator(self)
        self._extent_mapper: Mapper | None = None
        self._indirect_mapper: Mapper | None = None
        self._open_counts: dict[int, int] = {}
        self._icache: dict[int, Inode] = {}
        if opts.get("delalloc", True) and opts.get("data", "ordered") != "journal":
            # data=journal has no delayed allocation (as in ext4)
            self.cache = PageCache(self, clock=self.clock, **{
                k: opts[k] for k in ("dirty_expire", "dirty_writeback", "dirty_limit")
                if k in opts})
        elif opts.get("delalloc") and opts.get("data") == "journal":
            raise ValueError("data=journal and delalloc cannot be used together")
        if self.sb.f["s_last_orphan"]:
            self.process_orphans()
            self.commit()

    def _recover(self) -> None:
        """Replay the journal a crash left (as the kernel does at mount), then reload."""
        from ..jbd2.log import recover

        recover(self, write=True, as_mount=True)  # a bad journal refuses the mount
        self._cache.clear()
        self._bmap_cache.clear()
        self._bmap_cache_runs = 0
        self._dirent_cache.clear()
        self._load_superblock(None)
        self._load_group_descriptors()
        if self.problems:
            raise CorruptError(f"after journal replay: {self.problems[0]}")

    def _set_needs_recovery(self, on: bool) -> None:
        """The superblock flag written in place (not logged), as ext4 does at mount and at
        a clean unmount."""
        if on:
            self.sb.f["s_feature_incompat"] |= 0x4
        else:
            self.sb.f["s_feature_incompat"] &= ~0x4
        raw = self.sb.pack()
        self.dev.write(SUPERBLOCK_OFFSET, raw)
        blk = SUPERBLOCK_OFFSET // self.block_size
        off = SUPERBLOCK_OFFSET % self.block_size
        dirty = self.buffers.dirty.get(blk)
        if dirty is not None:
            dirty[off : off + SUPERBLOCK_SIZE] = raw
        pinned = self.buffers.pinned.get(blk)
        if pinned is not None:
            self.buffers.pinned[blk] = pinned[:off] + raw + pinned[off + SUPERBLOCK_SIZE :]
        self.buffers.clean.pop(blk, None)
        if self.journal.barrier:
            self.dev.flush()

    def read_data_block(self, phys: int) -> bytes:
        """One block of file data as the file sees it (journal-pending data included)."""
        pending = self.journal.pending_data_block(phys)
        if pending is not None:
            return pending
        return self.dev.read_exact(phys * self.block_size, self.block_size)

    def inode_readinto(self, inode: Inode, offset: int, out: memoryview) -> int:
        """File bytes as the file's users see them: disk, journal-pending data, then the
        page cache's dirty bytes on top."""
        n = self.disk_readinto(inode, offset, out)
        cache = getattr(self, "cache", None)
        if cache is not None:
            cache.overlay(inode.ino, offset, out)
        return n

    def disk_readinto(self, inode: Inode, offset: int, out: memoryview) -> int:
        """File bytes as written to the device (or pending in the journal)."""
        n = super().inode_readinto(inode, offset, out)
        if hasattr(self, "journal") and self.journal.has_pending_data() and \
                not inode.flags & _inode.INLINE_DATA_FL:
            bs = self.block_size
            first = offset // bs
            last = (offset + len(out) - 1) // bs
            for run in self.block_map(inode).overlapping(first, last - first + 1):
                if run.uninit:
                    continue
                for lb in range(max(run.logical, first), min(run.logical + run.length, last + 1)):
                    data = self.journal.pending_data_block(run.physical + lb - run.logical)
                    if data is None:
                        continue
                    s = max(lb * bs, offset)
                    e = min((lb + 1) * bs, offset + len(out))
                    out[s - offset : e - offset] = data[s - lb * bs : e - lb * bs]
        return n

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
        dirty, pinned = self.buffers.dirty, self.buffers.pinned
        if (dirty or pinned) and any(b in dirty or b in pinned for b in range(blk, blk + count)):
            return b"".join(self.read_block(b) for b in range(blk, blk + count))
        return super().read_blocks(blk, count)

    # ------------------------------------------------------------------ inodes
    def inode_seed(self, inode: Inode) -> int:
        """Seed of the inode's own metadata checksums (extent nodes, dir blocks, ...)."""
        return _inode.inode_csum_seed(self.csum_seed, inode.ino, inode.generation)

    def get_inode(self, ino: int) -> Inode:
        """The inode as its users see it: i_size includes data delayed in the page cache.
        Callers get their own copy to change."""
        inode = self.disk_inode(ino)
        cache = getattr(self, "cache", None)
        cf = cache.get(ino) if cache is not None else None
        if cf is not None:
            inode.set_size(cf.size)  # i_size (with delayed data), not i_disksize
        return inode

    def disk_inode(self, ino: int) -> Inode:
        """The inode as it is (to be) on disk (i_disksize). Inodes this process wrote come
        from a cache (already verified, already packed)."""
        icache = getattr(self, "_icache", None)  # not yet there while the reader initialises
        cached = icache.get(ino) if icache is not None else None
        if cached is None:
            inode = super().get_inode(ino)
            if icache is not None:
                self._remember_inode(inode)
            return inode
        return Inode(ino, dict(cached.f), cached.raw)

    def _remember_inode(self, inode: Inode) -> None:
        c = self._icache
        c[inode.ino] = Inode(inode.ino, dict(inode.f), inode.raw)
        if len(c) > 8192:
            del c[next(iter(c))]

    def write_inode(self, h: Handle, inode: Inode) -> None:
        """Pack ``inode.f`` into its inode-table slot (checksum set) through the handle.
        With delayed data in the page cache the slot gets i_disksize, not i_size."""
        cf = self.cache.get(inode.ino) if self.cache is not None else None
        if cf is not None:
            if cf.runs or cf.size != cf.disksize:
                inode.set_size(cf.disksize)
            else:  # nothing delayed: the caller's size is the truth
                cf.size = cf.disksize = inode.size
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
        sb.free_blocks_count = free_blocks
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

    def after_handle(self) -> None:
        """Group commit once a transaction is old or big enough (jbd2's commit timer)."""
        if self.journal.should_commit():
            self.commit()

    def run_timers(self) -> None:
        """What the kernel's background threads would have done by now on ``clock``: the
        journal's commit timer and the page cache's flusher. Runs after every operation;
        call it after advancing an injected clock to let time pass."""
        self.after_handle()
        if self.cache is not None:
            self.cache.run_flusher()
            self.after_handle()

    def writeback(self, ino: int | None = None) -> None:
        """Write back delayed data (one inode, or all): blocks are allocated now."""
        if self.cache is not None:
            if ino is None:
                self.cache.writeback_all()
            else:
                self.cache.writeback(ino)

    def fsync_inode(self, ino: int) -> None:
        self.writeback(ino)
        self.commit(wait_data=True)

    def commit(self, *, wait_data: bool = False) -> None:
        """Commit the running transaction. ``wait_data``: an fsync/sync/unmount commit
        (file data written and waited for first, also in data=writeback)."""
        if self.journal.running is not None and (self.free_blocks_delta or self.free_inodes_delta
                                                  or self.journal.running.metadata):
            with self.start() as h:
                self.sync_superblock_counts(h)
        self.journal.commit(wait_data=wait_data)
        self.alloc.release_busy()

    def close(self) -> None:
        """Unmount: commit, checkpoint the journal, clear needs_recovery."""
        try:
            if hasattr(self, "journal"):
                lost: OSError | None = None
                try:
                    self.writeback()
                except OSError as exc:  # ENOSPC at writeback: unmount anyway, then report
                    lost = exc
                self.commit(wait_data=True)
                self.journal.close()
                if self.sb.has_compat("has_journal"):
                    self._set_needs_recovery(False)
                if lost is not None:
                    raise lost
        finally:
            super().close()
