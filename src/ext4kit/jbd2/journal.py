"""The jbd2 journal: transactions logged in jbd2's on-disk format, checkpointed lazily.

Commit of one transaction (every device write and flush is explicit; ``barrier=False``
leaves the flushes out):

  ordered data (``data=ordered``) was written when it was submitted;
  0. first commit after a clean state: journal superblock with s_start/s_sequence
  1. revoke blocks, then descriptor blocks each followed by the blocks it tags (metadata,
     and with ``data=journal`` file data), escaped when they begin with the jbd2 magic
  2. flush                   -- unless journal_async_commit (then recovery relies on the
                                tag and commit checksums to spot a commit that got ahead)
     (data=writeback: the file data of the transaction is written here, unordered
     against the commit block: it may reach the disk after it, as in the kernel)
  3. commit block: metadata_csum -> CSUM_V3 (tags, descriptor tails and commit block
     carry crc32c); otherwise journal_checksum (implied by journal_async_commit) ->
     COMPAT_CHECKSUM v1: the commit block carries crc32_be over the transaction's
     descriptor and logged blocks (the kernel's set_journal_csum_feature_set)
  4. flush                   -- the transaction is durable (data=writeback data too)
Each descriptor and the blocks it tags are written with one device write (two when the
log wraps); checkpoints and data=writeback data write runs of consecutive home blocks
with one write each.

Committed blocks stay pinned in the buffer cache until a checkpoint writes them home:
when the log runs short, after ``checkpoint_interval`` seconds, and at unmount. A
checkpoint writes the blocks, flushes, then moves the log tail in the journal superblock.
A transaction larger than the whole log (one operation logging more than the journal
holds) is split: checkpoint, its file data written home first, its metadata logged alone
(or, if even that does not fit, written in place after the checkpoint).
A block freed while an older copy sits in the log gets a revoke record (``norevoke`` turns
that off, for the crash lab to show why it exists) and is dropped from the checkpoint.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UnsupportedFeatureError
from ..ondisk import jbd2 as j
from ..ondisk.csum import crc32c_raw
from .log import JournalArea, crc32_be
from .transaction import BufferCache, Handle, InPlaceJournal, Transaction, write_runs

if TYPE_CHECKING:
    from ..fs.filesystem import FileSystem

DATA_MODES = ("journal", "ordered", "writeback")
_MAGIC = struct.pack(">I", j.JBD2_MAGIC)
_TAG3 = struct.Struct(">IIII")
_TAG = struct.Struct(">IHH")
_BE32 = struct.Struct(">I")


class JournalFull(Exception):
    """A single transaction does not fit in the log (no longer raised: such a transaction
    is split, see ``Jbd2Journal._shrink_oversized``; kept for callers that catch it)."""


class Jbd2Journal(InPlaceJournal):
    def __init__(self, fs: FileSystem, cache: BufferCache, *, barrier: bool = True,
                 data: str = "ordered", journal_checksum: bool = True,
                 async_commit: bool = False, revoke: bool = True, commit_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(fs.dev, cache, barrier=barrier)
        if data not in DATA_MODES:
            raise ValueError(f"data={data}: one of {', '.join(DATA_MODES)}")
        self.fs = fs
        self.area = JournalArea.of(fs)
        self.jsb = self.area.read_superblock()
        if self.jsb.s_start:
            raise UnsupportedFeatureError("the journal needs recovery first")
        if self.jsb.has_incompat(j.FEATURE_INCOMPAT_FAST_COMMIT):
            raise UnsupportedFeatureError("fast-commit journals are not supported for writing")
        self.data_mode = data
        self.async_commit = async_commit
        self.revoke_enabled = revoke
        self.commit_interval = commit_interval
        self.clock = clock
        jsb = self.jsb
        # features as the kernel sets them at mount (set_journal_csum_feature_set):
        # metadata_csum -> csum_v3; else journal_checksum (journal_async_commit implies
        # it) -> the v1 transaction checksum (COMPAT_CHECKSUM); else none
        if fs.sb.has_incompat("64bit"):
            jsb.s_feature_incompat |= j.FEATURE_INCOMPAT_64BIT
        jsb.s_feature_compat &= ~j.FEATURE_COMPAT_CHECKSUM
        jsb.s_feature_incompat &= ~(j.FEATURE_INCOMPAT_CSUM_V2 | j.FEATURE_INCOMPAT_CSUM_V3
                                    | j.FEATURE_INCOMPAT_ASYNC_COMMIT)
        if fs.sb.metadata_csum:
            jsb.s_feature_incompat |= j.FEATURE_INCOMPAT_CSUM_V3
            jsb.s_checksum_type = j.CHECKSUM_CRC32C
        elif journal_checksum or async_commit:
            jsb.s_feature_compat |= j.FEATURE_COMPAT_CHECKSUM
        if async_commit:
            jsb.s_feature_incompat |= j.FEATURE_INCOMPAT_ASYNC_COMMIT
        self.v1 = jsb.has_compat(j.FEATURE_COMPAT_CHECKSUM)
        self.fmt = jsb.tag_format
        self.seed = jsb.csum_seed if self.fmt.has_csum else None
        self.uuid = bytes(jsb.s_uuid)
        self.first = jsb.s_first
        self.end = jsb.log_blocks
        self.capacity = self.end - self.first
        self.max_txn_blocks = max(16, self.capacity // 4)  # j_max_transaction_buffers
        self.seq = jsb.s_sequence
        self.head = self.first  # next free log block
        self.used = 0  # log blocks held by committed, not yet checkpointed transactions
        self.clean = True  # nothing in the log: the next commit writes s_start first
        self.pending: set[int] = set()  # pinned blocks awaiting checkpoint
        self.pending_data: dict[int, bytes | memoryview] = {}  # data=journal, awaiting checkpoint
        self.last_checkpoint = clock()
        self.checkpoints = 0  # checkpoints that wrote anything (statistics, tests)
        self.oversized_in_place = 0  # transactions too big even for an empty log
        self.area.write_superblock(jsb)
        self._flush()

    # ------------------------------------------------------------------ handles
    def start(self) -> Handle:
        h = super().start()
        if h.txn.started is None:
            h.txn.started = self.clock()
        return h

    def should_commit(self) -> bool:
        txn = self.running
        if txn is None:
            return False
        size = len(txn.metadata) + len(txn.data) + len(txn.revoked) // 64
        if size >= self.max_txn_blocks:
            return True
        return txn.started is not None and self.clock() - txn.started >= self.commit_interval

    def on_forget(self, blk: int) -> None:
        """A freed metadata block: an older logged copy must never be checkpointed."""
        self.pending.discard(blk)
        self.cache.pinned.pop(blk, None)
        self.pending_data.pop(blk, None)

    def submit_data(self, txn: Transaction, blk: int, data: bytes | bytearray | memoryview) -> None:
        bs = self.cache.block_size
        if self.data_mode == "ordered":
            super().submit_data(txn, blk, data)
            for b in range(blk, blk + len(data) // bs):
                self.pending_data.pop(b, None)
            return
        # journal: logged with the metadata; writeback: written at commit, unordered
        # against the commit block. A view per block into one immutable copy (none is
        # taken when the caller's data is a bytes object already).
        mv = memoryview(data)
        if not isinstance(mv.obj, bytes):
            mv = memoryview(bytes(mv))
        tdata = txn.data
        for i in range(len(mv) // bs):
            tdata[blk + i] = mv[i * bs : (i + 1) * bs]

    def pending_data_block(self, blk: int) -> bytes | None:
        """File data not yet at home (data=journal / writeback): the read path overlays it."""
        txn = self.running
        data = txn.data.get(blk) if txn is not None else None
        if data is None:
            data = self.pending_data.get(blk)
        return data if data is None or isinstance(data, bytes) else bytes(data)

    def has_pending_data(self) -> bool:
        return bool(self.pending_data) or (self.running is not None and bool(self.running.data))

    # ------------------------------------------------------------------ commit
    def _log_blocks_needed(self, txn: Transaction) -> int:
        n_meta = len(txn.metadata) + (len(txn.data) if self.data_mode == "journal" else 0)
        per_desc = self.fmt.descriptor_capacity(self.cache.block_size) or 1
        n_desc = -(-n_meta // per_desc)
        revokes = sorted(txn.revoked) if self.revoke_enabled else []
        per_rev = self.fmt.revoke_capacity(self.cache.block_size) or 1
        n_rev = -(-len(revokes) // per_rev)
        return n_meta + n_desc + n_rev + 1

    def _log_write(self, pos: int, run: bytes) -> int:
        """Write consecutive log blocks from ``pos`` (one write, two when the log wraps);
        returns the log position after them."""
        bs = self.cache.block_size
        mv = memoryview(run)
        while len(mv):
            k = min(len(mv) // bs, self.end - pos)
            self.area.write_blocks(pos, mv[: k * bs])
            mv = mv[k * bs :]
            pos += k
            if pos >= self.end:
                pos = self.first
        return pos

    def _pack_descriptor(self, seq: int, entries: list[tuple[int, int, int]]) -> bytes:
        """``jbd2.pack_descriptor_block`` for (block, flags, checksum) entries: the first
        tag carries the journal UUID, the others SAME_UUID, the last LAST_TAG."""
        bs = self.cache.block_size
        fmt = self.fmt
        buf = bytearray(bs)
        buf[: j.HEADER_SIZE] = j.pack_header(j.BLOCKTYPE_DESCRIPTOR, seq)
        off = j.HEADER_SIZE
        tb = fmt.tag_bytes
        last = len(entries) - 1
        v3, is64 = fmt.csum_v3, fmt.is64
        for i, (blk, flags, csum) in enumerate(entries):
            flags = (flags & ~(j.FLAG_LAST_TAG | j.FLAG_SAME_UUID)) \
                | (j.FLAG_SAME_UUID if i else 0) | (j.FLAG_LAST_TAG if i == last else 0)
            if blk >> 32 and not is64:
                raise ValueError(f"block {blk} needs the journal 64bit feature")
            if v3:
                _TAG3.pack_into(buf, off, blk & 0xFFFFFFFF, flags, blk >> 32 if is64 else 0,
                                csum & 0xFFFFFFFF)
            else:
                _TAG.pack_into(buf, off, blk & 0xFFFFFFFF, csum & 0xFFFF, flags & 0xFFFF)
                if is64:
                    _BE32.pack_into(buf, off + 8, blk >> 32)
            off += tb
            if not i:
                buf[off : off + j.UUID_SIZE] = self.uuid
                off += j.UUID_SIZE
        if off > bs - fmt.tail_bytes:
            raise ValueError(f"{len(entries)} tags do not fit in one descriptor block")
        if fmt.has_csum:
            assert self.seed is not None
            j.set_block_tail_checksum(buf, self.seed)
        return bytes(buf)

    def write_transaction(self, txn: Transaction) -> None:
        bs = self.cache.block_size
        logged_data = self.data_mode == "journal"
        if not txn.metadata and not txn.revoked and (not txn.data or not logged_data):
            if txn.data:  # data=writeback file data alone: nothing to log
                write_runs(self.dev, bs, txn.data)
            if txn.data or txn.data_blocks:
                self._flush()
            return
        if self.clock() - self.last_checkpoint >= self.commit_interval * 6:
            # lazily, like the kernel (whose committed metadata goes home with the block
            # device's writeback, ~30 s later): earlier transactions, never the new one
            self.checkpoint()
        need = self._log_blocks_needed(txn)
        if need > self.capacity:
            need = self._shrink_oversized(txn)
            if need == 0:
                return
        if self.capacity - self.used < need:
            self.checkpoint()
        seq = self.seq
        if self.clean:
            # the log starts here: point the superblock at it before anything is logged
            self.jsb.s_start = self.head
            self.jsb.s_sequence = seq & 0xFFFFFFFF
            if txn.revoked and self.revoke_enabled:
                self.jsb.s_feature_incompat |= j.FEATURE_INCOMPAT_REVOKE
            self.area.write_superblock(self.jsb)
            self.clean = False
        elif txn.revoked and self.revoke_enabled and \
                not self.jsb.has_incompat(j.FEATURE_INCOMPAT_REVOKE):
            self.jsb.s_feature_incompat |= j.FEATURE_INCOMPAT_REVOKE
            self.area.write_superblock(self.jsb)
        start_head = self.head
        pos = self.head
        # 1a. revoke records
        if self.revoke_enabled and txn.revoked:
            per = self.fmt.revoke_capacity(bs)
            recs = sorted(txn.revoked)
            blocks = [j.pack_revoke_block(seq, recs[i : i + per], self.fmt, bs, self.seed)
                      for i in range(0, len(recs), per)]
            pos = self._log_write(pos, b"".join(blocks))
        # 1b. descriptors + logged blocks: each descriptor and its blocks in one write
        items: list[tuple[int, bytes | memoryview]] = [
            (b, bytes(txn.metadata[b])) for b in sorted(txn.metadata)]
        if logged_data:
            items += [(b, txn.data[b]) for b in sorted(txn.data)]
        per = self.fmt.descriptor_capacity(bs)
        crc32_sum = 0xFFFFFFFF  # v1: crc32_be over every descriptor and logged block
        if self.seed is not None:
            seq_seed = crc32c_raw(self.seed, _BE32.pack(seq & 0xFFFFFFFF))
            mask = 0xFFFFFFFF if self.fmt.csum_v3 else 0xFFFF
        for i in range(0, len(items), per):
            chunk = items[i : i + per]
            entries = []
            run: list[bytes | memoryview] = [b""]
            for blk, data in chunk:
                if data[:4] == _MAGIC:  # escaped: stored with its first 4 bytes zeroed
                    body: bytes | memoryview = b"\0\0\0\0" + bytes(data[4:])
                    flags = j.FLAG_ESCAPE
                else:
                    body, flags = data, 0
                csum = crc32c_raw(seq_seed, body) & mask if self.seed is not None else 0
                entries.append((blk, flags, csum))
                run.append(body)
            run[0] = self._pack_descriptor(seq, entries)
            joined = b"".join(run)
            if self.v1:
                crc32_sum = crc32_be(crc32_sum, joined)
            pos = self._log_write(pos, joined)
        # data=writeback: fsync/sync wait for the file data before committing (the kernel's
        # file_write_and_wait_range); a background commit (timer, size) does not, so its
        # data is not ordered against the commit block (it may get there first)
        waited = getattr(self, "wait_data", False)
        if not logged_data and txn.data and waited:
            write_runs(self.dev, bs, txn.data)
        # 2. everything before the commit block is durable (unless async commit)
        if not self.async_commit:
            self._flush()
        if not logged_data and txn.data and not waited:
            write_runs(self.dev, bs, txn.data)
        # 3. commit block
        now = time.time_ns()
        commit = j.CommitBlock(seq, h_commit_sec=now // 1_000_000_000,
                               h_commit_nsec=now % 1_000_000_000)
        if self.v1:
            commit.h_chksum_type = j.CHECKSUM_CRC32
            commit.h_chksum_size = j.CRC32_CHKSUM_SIZE
            commit.h_chksum[0] = crc32_sum
        pos = self._log_write(pos, j.pack_commit_block(commit, bs, self.seed))
        # 4. durable
        self._flush()
        self.used += need
        self.head = pos
        assert pos == (start_head - self.first + need) % self.capacity + self.first
        self.seq = seq + 1
        # committed metadata stays pinned until checkpoint
        for blk in txn.metadata:
            self.cache.pin(blk)
            self.pending.add(blk)
        if logged_data:
            self.pending_data.update(txn.data)

    def _shrink_oversized(self, txn: Transaction) -> int:
        """A transaction larger than the whole log (one operation that logs more blocks
        than the journal holds: the kernel splits such writes into many handles, our
        operations are one handle each). Checkpoint so the log is empty (no older logged
        copy can be replayed over what follows), then write its file data home first, as
        data=ordered would, and log the metadata alone. When even the metadata does not
        fit, it is written in place like a journal-less commit (data, flush, metadata,
        flush): correct unless the power fails inside it. Returns the log blocks still to
        write (0: done)."""
        bs = self.cache.block_size
        self.checkpoint()
        if txn.data:
            write_runs(self.dev, bs, txn.data)
            self._flush()
            txn.data = {}
        need = self._log_blocks_needed(txn)
        if need <= self.capacity:
            return need
        for blk in sorted(txn.metadata):
            self.dev.write(blk * bs, txn.metadata[blk])
            self.cache.written(blk)
        self._flush()
        self.oversized_in_place += 1
        return 0

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> None:
        """Write every committed block home, flush, then mark the log empty (s_start = 0;
        the next commit starts a new log at the head)."""
        home: dict[int, bytes | memoryview] = {}
        pinned = self.cache.pinned
        for blk in self.pending:
            data = pinned.get(blk)
            if data is not None:
                home[blk] = data
        home.update(self.pending_data)
        write_runs(self.dev, self.cache.block_size, home)
        if self.pending or self.pending_data:
            self._flush()
            self.checkpoints += 1
        self.cache.unpin(self.pending)
        self.pending.clear()
        self.pending_data.clear()
        self.used = 0
        self.last_checkpoint = self.clock()
        if not self.clean:
            self.jsb.s_sequence = self.seq & 0xFFFFFFFF
            self.jsb.s_start = 0
            self.clean = True
            self.area.write_superblock(self.jsb)
            self._flush()

    def close(self) -> None:
        """Unmount: commit what is running, checkpoint everything, leave the journal empty."""
        if self.running is not None and self.running.handles == 0:
            self.commit()
        self.checkpoint()
