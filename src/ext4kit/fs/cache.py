"""Page cache with delayed allocation (ext4's ``delalloc``).

A buffered write lands here and nothing is allocated: the file's in-memory size (the
kernel's ``i_size``) grows while the size on disk (``i_disksize``) stays where the last
writeback left it. Blocks are allocated, and the on-disk size moved, only at writeback:

* on ``fsync`` of the file, ``sync``, and unmount (``close``);
* by the flusher, every ``dirty_writeback`` seconds, for files dirtied more than
  ``dirty_expire`` seconds ago (the kernel's defaults: 5 s and 30 s);
* under memory pressure, when more than ``dirty_limit`` bytes are dirty;
* by ``auto_da_alloc`` (ext4's heuristic for applications that do not fsync): before a
  rename over an existing file, the source's data; on the last close of a file that was
  truncated to zero, its data. ``noauto_da_alloc`` switches both off;
* when space is short (ext4's "nonda switch"): the file system writes back and then
  allocates at write time, so ENOSPC is reported by ``write`` and never lost at writeback.

All times come from the file system's clock, so tests and the crash lab are deterministic.
This is what lets a power cut after the rename's commit and before the writeback leave a
zero-length file: the directory entry and the inode (size 0) are journaled; the data never
was.
"""

from __future__ import annotations

import bisect
import errno
from typing import TYPE_CHECKING

from ..errors import fs_oserror
from .alloc import NoSpace

if TYPE_CHECKING:
    from .writer import WritableFileSystem

DIRTY_EXPIRE = 30.0
DIRTY_WRITEBACK = 5.0
DIRTY_LIMIT = 64 << 20
FREE_WATERMARK = 256  # blocks: below this (plus what is dirty) writes allocate at once
WRITEBACK_CHUNK = 8 << 20  # bytes written back per handle (large files span handles)


class DirtyFile:
    """A file's cached state: dirty block runs keyed by first logical block."""

    __slots__ = ("ino", "size", "disksize", "runs", "starts", "dirtied", "da_alloc_close",
                 "reserved")

    def __init__(self, ino: int, size: int):
        self.ino = ino
        self.size = size  # i_size: what stat and read see
        self.disksize = size  # i_disksize: what the inode on disk says
        self.runs: dict[int, bytearray] = {}  # first block -> bytes (whole blocks)
        self.starts: list[int] = []  # sorted keys of runs
        self.dirtied: float | None = None  # clock time of the oldest unwritten change
        self.da_alloc_close = False
        self.reserved = 0  # blocks counted against free space until writeback


class PageCache:
    def __init__(self, fs: WritableFileSystem, *, clock: object, dirty_expire: float = DIRTY_EXPIRE,
                 dirty_writeback: float = DIRTY_WRITEBACK, dirty_limit: int = DIRTY_LIMIT):
        self.fs = fs
        self.clock = clock
        self.bs = fs.block_size
        self.dirty_expire = dirty_expire
        self.dirty_writeback = dirty_writeback
        self.dirty_limit = dirty_limit
        self.files: dict[int, DirtyFile] = {}
        self.dirty_bytes = 0
        self.reserved = 0
        self.next_flush = self._now() + dirty_writeback
        self._busy = False  # writeback in progress: no nested flusher runs

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator]

    # ------------------------------------------------------------------ queries
    def get(self, ino: int) -> DirtyFile | None:
        return self.files.get(ino)

    def track(self, ino: int, size: int) -> DirtyFile:
        cf = self.files.get(ino)
        if cf is None:
            cf = self.files[ino] = DirtyFile(ino, size)
        return cf

    def has_dirty(self, ino: int) -> bool:
        cf = self.files.get(ino)
        return cf is not None and bool(cf.runs)

    def overlay(self, ino: int, offset: int, out: memoryview) -> None:
        """Copy cached bytes over ``out`` (file bytes from ``offset``)."""
        cf = self.files.get(ino)
        if cf is None or not cf.runs:
            return
        bs = self.bs
        end = offset + len(out)
        i = max(0, bisect.bisect_right(cf.starts, offset // bs) - 1)
        for start in cf.starts[i:]:
            rs = start * bs
            if rs >= end:
                break
            data = cf.runs[start]
            re = rs + len(data)
            s, e = max(rs, offset), min(re, end)
            if s < e:
                out[s - offset : e - offset] = data[s - rs : e - rs]

    # ------------------------------------------------------------------ writing
    def low_on_space(self, nbytes: int) -> bool:
        """ext4_nonda_switch: too little free space to promise delayed allocations."""
        fs = self.fs
        free = sum(gd.free_blocks_count for gd in fs.groups)
        want = self.reserved + -(-nbytes // self.bs) + 1
        return 2 * free < 3 * want or free < want + FREE_WATERMARK

    def write(self, ino: int, size: int, pos: int, data: memoryview) -> None:
        """Cache ``data`` at ``pos`` of inode ``ino`` (whose on-disk size is ``size`` when
        it is not cached yet). The caller journals the mtime/ctime change."""
        cf = self.files.get(ino)
        if cf is None:
            cf = self.files[ino] = DirtyFile(ino, size)
        bs = self.bs
        n = len(data)
        end = pos + n
        first = pos // bs
        last_excl = -(-end // bs)
        # runs touching [first, last_excl] (adjacent ones merge too)
        i = bisect.bisect_left(cf.starts, first)
        if i > 0:
            prev = cf.starts[i - 1]
            if prev + len(cf.runs[prev]) // bs >= first:
                i -= 1
        j = i
        while j < len(cf.starts) and cf.starts[j] <= last_excl:
            j += 1
        touching = cf.starts[i:j]
        start = touching[0] if len(touching) == 1 else -1
        buf = cf.runs[start] if start >= 0 else bytearray()
        rs, re_ = start * bs, start * bs + len(buf)
        if start >= 0 and rs <= pos <= re_ and end <= re_:
            buf[pos - rs : end - rs] = data  # inside one run: overwrite in place
        elif start >= 0 and rs <= pos <= re_ and not (
                end % bs and (last_excl - 1) * bs < cf.size):
            # growing a run at its end (sequential writes)
            old_len = len(buf)
            buf[pos - rs :] = data
            if len(buf) % bs:
                buf += bytes(bs - len(buf) % bs)
            self._account(cf, start + old_len // bs, len(buf) // bs - old_len // bs)
            self.dirty_bytes += len(buf) - old_len
        else:
            new_first = min([first] + touching)
            new_end = max([last_excl] + [s + len(cf.runs[s]) // bs for s in touching])
            buf = bytearray((new_end - new_first) * bs)
            covered: set[int] = set()
            for s in touching:
                old = cf.runs.pop(s)
                buf[(s - new_first) * bs : (s - new_first) * bs + len(old)] = old
                covered.update(range(s, s + len(old) // bs))
                self.dirty_bytes -= len(old)
            del cf.starts[i:j]
            # partial blocks at the edges that no run held: what the file holds there now
            for blk, partial in ((first, pos % bs), (last_excl - 1, end % bs)):
                if partial and blk not in covered and blk * bs < cf.size:
                    buf[(blk - new_first) * bs : (blk - new_first + 1) * bs] = \
                        self._file_block(ino, blk, cf)
            buf[pos - new_first * bs : end - new_first * bs] = data
            cf.runs[new_first] = buf
            bisect.insort(cf.starts, new_first)
            self.dirty_bytes += len(buf)
            new_blocks = [b for b in range(first, last_excl) if b not in covered]
            if new_blocks:
                self._account(cf, new_blocks[0], len(new_blocks), exact=new_blocks)
        if end > cf.size:
            cf.size = end
        if cf.dirtied is None:
            cf.dirtied = self._now()

    def _file_block(self, ino: int, blk: int, cf: DirtyFile) -> bytes:
        """Block ``blk`` of the file as on disk (zeros past the on-disk size or in holes)."""
        bs = self.bs
        out = bytearray(bs)
        if blk * bs < cf.disksize:
            inode = self.fs.disk_inode(ino)
            n = min(bs, cf.disksize - blk * bs)
            self.fs.disk_readinto(inode, blk * bs, memoryview(out)[:n])
        return bytes(out)

    def _account(self, cf: DirtyFile, first: int, count: int,
                 exact: list[int] | None = None) -> None:
        """Reserve the blocks among these that the file does not have on disk yet."""
        bs = self.bs
        mapped_end = -(-cf.disksize // bs)
        blocks = exact if exact is not None else range(first, first + count)
        below = [b for b in blocks if b < mapped_end]
        need = len(blocks) - len(below)
        if below:
            inode = self.fs.disk_inode(cf.ino)
            lo = below[0]
            runs = self.fs.block_map(inode).overlapping(lo, below[-1] - lo + 1)
            have: set[int] = set()
            for r in runs:
                have.update(range(r.logical, r.logical + r.length))
            need += sum(1 for b in below if b not in have)
        cf.reserved += need
        self.reserved += need

    def truncate(self, ino: int, length: int) -> DirtyFile | None:
        """Drop cached bytes at and past ``length``; the caller truncates the disk."""
        cf = self.files.get(ino)
        if cf is None:
            return None
        bs = self.bs
        keep = -(-length // bs)
        for start in list(cf.starts):
            buf = cf.runs[start]
            nblk = len(buf) // bs
            if start >= keep:
                self._drop_run(cf, start)
            elif start + nblk > keep:
                cut = (keep - start) * bs
                self.dirty_bytes -= len(buf) - cut
                released = nblk - (keep - start)
                del buf[cut:]
                self._release(cf, min(released, cf.reserved))
            if length % bs and start < keep <= start + len(cf.runs.get(start, b"")) // bs:
                buf = cf.runs[start]
                tail = length - start * bs
                buf[tail:] = bytes(len(buf) - tail)
        cf.size = length
        if not cf.runs:
            cf.dirtied = None
        return cf

    def _drop_run(self, cf: DirtyFile, start: int) -> None:
        buf = cf.runs.pop(start)
        cf.starts.remove(start)
        self.dirty_bytes -= len(buf)
        self._release(cf, min(len(buf) // self.bs, cf.reserved))

    def _release(self, cf: DirtyFile, n: int) -> None:
        cf.reserved -= n
        self.reserved -= n

    def discard(self, ino: int) -> None:
        """The inode is gone: forget its pages without writing them."""
        cf = self.files.pop(ino, None)
        if cf is not None:
            self.dirty_bytes -= sum(len(b) for b in cf.runs.values())
            self.reserved -= cf.reserved

    def forget_if_clean(self, ino: int) -> None:
        cf = self.files.get(ino)
        if cf is not None and not cf.runs and cf.size == cf.disksize and not cf.da_alloc_close:
            del self.files[ino]

    # ------------------------------------------------------------------ writeback
    def writeback(self, ino: int) -> None:
        """Allocate and write the file's dirty data; the on-disk size follows."""
        cf = self.files.get(ino)
        if cf is None:
            return
        fs = self.fs
        bs = self.bs
        was_busy, self._busy = self._busy, True
        try:
            while cf.starts:
                start = cf.starts[0]
                buf = cf.runs[start]
                mv = memoryview(buf)
                base = start * bs
                # one handle per chunk, so a huge file does not make one huge transaction
                for off in range(0, len(buf), WRITEBACK_CHUNK):
                    pos = base + off
                    end = min(pos + WRITEBACK_CHUNK, base + len(buf), cf.size)
                    if end <= pos:
                        break
                    try:
                        with fs.start() as h:
                            inode = fs.disk_inode(ino)
                            fs.inode_write(h, inode, pos, mv[off : off + end - pos], touch=False)
                    except NoSpace:
                        # as a failed kernel writeback: the data is lost, the error reported
                        mv.release()
                        for s in list(cf.starts):
                            self._drop_run(cf, s)
                        cf.size = max(cf.disksize, min(cf.size, pos))
                        fs.after_handle()
                        raise fs_oserror(errno.ENOSPC) from None
                    fs.after_handle()
                mv.release()
                self._drop_run(cf, start)  # on its way to disk: no longer cached
            if cf.size > cf.disksize:  # a hole at the end (seek past the end, write nothing)
                with fs.start() as h:
                    inode = fs.disk_inode(ino)
                    if cf.disksize % bs:
                        fs._zero_tail(h, inode, cf.disksize)
                    cf.disksize = cf.size
                    inode.set_size(cf.size)
                    fs.write_inode(h, inode)
                fs.after_handle()
            self._release(cf, cf.reserved)
            cf.dirtied = None
            cf.da_alloc_close = False
            self.forget_if_clean(ino)
        finally:
            self._busy = was_busy

    def writeback_all(self) -> None:
        for ino in sorted(self.files, key=lambda i: self.files[i].dirtied or 0.0):
            self.writeback(ino)

    def run_flusher(self) -> None:
        """The background flusher: expired files on its period, everything over the limit."""
        if self._busy or not self.files:
            return
        now = self._now()
        if self.dirty_bytes > self.dirty_limit:
            for ino in sorted(self.files, key=lambda i: self.files[i].dirtied or 0.0):
                self.writeback(ino)
                if self.dirty_bytes <= self.dirty_limit // 2:
                    break
        if now >= self.next_flush:
            self.next_flush = now + self.dirty_writeback
            for ino, cf in sorted(self.files.items(), key=lambda kv: kv[1].dirtied or 0.0):
                if cf.dirtied is not None and now - cf.dirtied >= self.dirty_expire:
                    self.writeback(ino)
