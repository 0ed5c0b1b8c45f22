"""Handles and transactions: the one path every metadata change takes.

A caller does::

    with journal.start() as h:            # a handle joins the running transaction
        buf = h.get_write_access(blk)      # a mutable copy of the block, owned by the txn
        buf[0:4] = ...
        h.dirty_metadata(blk)              # the block belongs to the transaction now
        h.forget(old_blk)                  # a freed metadata block (revoke in the journal)
        h.write_data(blk, data)            # file data; ordering decided by the data mode

``commit()`` is the only place that decides what reaches the device and in which order.
InPlaceJournal (used for file systems without a journal) writes ordered data, flushes,
writes metadata in place and flushes. The jbd2 journal will subclass it and change only
``commit`` (log + commit block + checkpoint), which is why the API is split this way.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..blockdev import BlockDevice


class BufferCache:
    """Block-sized buffers: clean ones are an LRU read cache, dirty ones stay until written."""

    def __init__(self, dev: BlockDevice, block_size: int, capacity: int = 8192):
        self.dev = dev
        self.block_size = block_size
        self.capacity = capacity
        self.clean: OrderedDict[int, bytes] = OrderedDict()
        self.dirty: dict[int, bytearray] = {}
        self.pinned: dict[int, bytes] = {}  # committed to the journal, not yet home

    def read(self, blk: int) -> bytes | bytearray:
        buf = self.dirty.get(blk)
        if buf is not None:
            return buf
        data = self.pinned.get(blk)
        if data is not None:
            return data
        data = self.clean.get(blk)
        if data is not None:
            self.clean.move_to_end(blk)
            return data
        bs = self.block_size
        data = self.dev.read_exact(blk * bs, bs)
        self.clean[blk] = data
        if len(self.clean) > self.capacity:
            self.clean.popitem(last=False)
        return data

    def writable(self, blk: int, *, create: bool = False) -> bytearray:
        buf = self.dirty.get(blk)
        if buf is None:
            if create:
                buf = bytearray(self.block_size)
            else:
                buf = bytearray(self.read(blk))
            self.dirty[blk] = buf
            self.clean.pop(blk, None)
        return buf

    def written(self, blk: int) -> None:
        """The dirty buffer reached the device: keep it as a clean cached copy."""
        buf = self.dirty.pop(blk, None)
        if buf is not None:
            self.clean[blk] = bytes(buf)
            if len(self.clean) > self.capacity:
                self.clean.popitem(last=False)

    def drop(self, blk: int) -> None:
        self.dirty.pop(blk, None)
        self.clean.pop(blk, None)
        self.pinned.pop(blk, None)

    def pin(self, blk: int) -> None:
        """The dirty buffer is committed to the journal: keep it until checkpoint."""
        buf = self.dirty.pop(blk, None)
        if buf is not None:
            self.pinned[blk] = bytes(buf)
            self.clean.pop(blk, None)

    def unpin(self, blocks: set[int]) -> None:
        """Checkpointed: the home copies are current; keep them as clean cache entries."""
        for blk in blocks:
            data = self.pinned.pop(blk, None)
            if data is not None and blk not in self.dirty:
                self.clean[blk] = data
        while len(self.clean) > self.capacity:
            self.clean.popitem(last=False)


@dataclass
class Transaction:
    tid: int
    metadata: dict[int, bytearray] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)
    # file data held until commit (data=journal: logged; data=writeback: written at commit),
    # one view per block into the copy taken when it was submitted
    data: dict[int, bytes | memoryview] = field(default_factory=dict)
    data_blocks: int = 0  # data blocks already written (ordered): flushed before metadata
    handles: int = 0  # open handles
    started: float | None = None  # journal clock at its first handle (group commit age)
    state: str = "running"  # running -> committing -> committed


class Handle:
    """One atomic operation's view of the running transaction."""

    def __init__(self, journal: InPlaceJournal, txn: Transaction):
        self.journal = journal
        self.txn = txn
        self.closed = False

    def get_write_access(self, blk: int) -> bytearray:
        self._check()
        buf = self.journal.cache.writable(blk)
        self.txn.metadata[blk] = buf
        self.txn.revoked.discard(blk)
        return buf

    def get_create_access(self, blk: int) -> bytearray:
        """A freshly allocated metadata block: zeroed, never read from the device."""
        self._check()
        buf = self.journal.cache.writable(blk, create=True)
        buf[:] = bytes(len(buf))
        self.txn.metadata[blk] = buf
        self.txn.revoked.discard(blk)
        self.txn.data.pop(blk, None)
        return buf

    def dirty_metadata(self, blk: int) -> None:
        self._check()
        if blk not in self.txn.metadata:
            raise RuntimeError(f"block {blk} dirtied without get_write_access")

    def forget(self, blk: int) -> None:
        """A metadata block was freed: its buffered update is dropped and it is revoked."""
        self._check()
        self.txn.metadata.pop(blk, None)
        self.journal.cache.drop(blk)
        self.txn.revoked.add(blk)
        self.journal.on_forget(blk)

    def write_data(self, blk: int, data: bytes | bytearray | memoryview) -> None:
        """File data for consecutive blocks from ``blk`` (whole blocks). When it reaches
        the device relative to the metadata is the journal's data mode (``submit_data``)."""
        self._check()
        bs = self.journal.cache.block_size
        if len(data) % bs or not len(data):
            raise ValueError("data writes are whole blocks")
        n = len(data) // bs
        cache = self.journal.cache
        for b in range(blk, blk + n):
            if b in self.txn.metadata:  # a metadata block reused for data in this txn
                del self.txn.metadata[b]
            cache.dirty.pop(b, None)
            cache.clean.pop(b, None)
        self.journal.submit_data(self.txn, blk, data)
    def _check(self) -> None:
        if self.closed:
            raise RuntimeError("handle already stopped")

    def stop(self) -> None:
        if not self.closed:
            self.closed = True
            self.journal._stop(self)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InPlaceJournal:
    """Transactions without a log: at commit, data first, then metadata in place.

    Order at commit (each step states its barrier):
      1. file data blocks of the transaction            (ordered before metadata)
      2. flush                                          (data durable before pointers)
      3. metadata blocks at their home locations
      4. flush                                          (the transaction is durable)
    A crash between 3's writes can leave metadata half-updated: that is what a file system
    without a journal risks, and what fsck and the crash lab show.
    """

    def __init__(self, dev: BlockDevice, cache: BufferCache, *, barrier: bool = True):
        self.dev = dev
        self.cache = cache
        self.barrier = barrier
        self._tids = itertools.count(1)
        self.running: Transaction | None = None
        self.committed: list[int] = []

    def start(self) -> Handle:
        if self.running is None:
            self.running = Transaction(next(self._tids))
        self.running.handles += 1
        return Handle(self, self.running)

    def _stop(self, handle: Handle) -> None:
        handle.txn.handles -= 1

    def on_forget(self, blk: int) -> None:
        """A metadata block was freed (nothing is logged without a journal)."""

    def should_commit(self) -> bool:
        """Group commit: is the running transaction due? (Without a journal: when big.)"""
        return self.running is not None and len(self.running.metadata) >= 8192

    def pending_data_block(self, blk: int) -> bytes | None:
        return None

    def has_pending_data(self) -> bool:
        return False

    def close(self) -> None:
        if self.running is not None and self.running.handles == 0:
            self.commit()

    def submit_data(self, txn: Transaction, blk: int, data: bytes | bytearray | memoryview) -> None:
        """Ordered data: written now, and the flush at commit puts it on stable storage
        before any metadata that points at it."""
        self.dev.write(blk * self.cache.block_size, data)
        txn.data_blocks += len(data) // self.cache.block_size

    def _flush(self) -> None:
        if self.barrier:
            self.dev.flush()

    def commit(self, *, wait_data: bool = False) -> int | None:
        """Commit the running transaction (waits for no handle: callers commit between ops).
        ``wait_data``: fsync/sync/unmount, which write and wait for file data before the
        commit (matters only for data=writeback, whose background commits do not)."""
        txn = self.running
        if txn is None:
            return None
        self.wait_data = wait_data
        if txn.handles:
            raise RuntimeError("commit with open handles")
        self.running = None
        txn.state = "committing"
        self.write_transaction(txn)
        txn.state = "committed"
        self.committed.append(txn.tid)
        return txn.tid

    def write_transaction(self, txn: Transaction) -> None:
        bs = self.cache.block_size
        for blk in sorted(txn.data):
            self.dev.write(blk * bs, txn.data[blk])
        if txn.data or txn.data_blocks:
            self._flush()
        for blk in sorted(txn.metadata):
            self.dev.write(blk * bs, txn.metadata[blk])
            self.cache.written(blk)
        if txn.metadata:
            self._flush()


RUN_MAX_BLOCKS = 1024  # blocks joined into one device write (bounds the temporary copy)


def write_runs(dev: BlockDevice, block_size: int,
               blocks: Mapping[int, bytes | bytearray | memoryview]) -> int:
    """Write ``blocks`` (home block -> contents) in block order, each run of consecutive
    blocks with one device write. Returns the number of writes."""
    order = sorted(blocks)
    writes = 0
    i = 0
    n = len(order)
    while i < n:
        k = i + 1
        while k < n and order[k] == order[k - 1] + 1 and k - i < RUN_MAX_BLOCKS:
            k += 1
        if k - i == 1:
            dev.write(order[i] * block_size, blocks[order[i]])
        else:
            dev.write(order[i] * block_size, b"".join([blocks[b] for b in order[i:k]]))
        writes += 1
        i = k
    return writes
