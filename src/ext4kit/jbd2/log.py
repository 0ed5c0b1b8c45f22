"""The journal's on-disk area and recovery (scan, revoke, replay), as jbd2 and e2fsck do it.

The journal is the file of inode ``s_journal_inum`` (an external journal device is not
supported). Journal block numbers are logical blocks of that file; block 0 holds the
journal superblock, the circular log runs from ``s_first`` to ``s_maxlen`` (minus a
fast-commit area, which recovery refuses).

Recovery follows ``fs/jbd2/recovery.c`` (the copy e2fsck 1.47 uses) rule for rule, in its
three passes over the log from ``s_start``/``s_sequence``:

  1. scan: follow descriptor / revoke / commit blocks while each carries the jbd2 magic
     and the expected sequence number; each commit block ends a transaction. With
     csum_v2/v3:
       - a descriptor or revoke block whose tail checksum is wrong makes the next commit
         block decide: older than the previous commit (stale blocks of an earlier lap)
         ends the log there; otherwise recovery FAILS (e2fsck: "Journal checksum error";
         nothing is replayed, the file system is marked not clean);
       - a commit block whose checksum is wrong ends the log before that transaction; with
         synchronous commits that is a corrupt journal (e2fsck: "Journal transaction N was
         corrupt, replay was aborted", s_errno -> the file system's ERROR_FS state), with
         journal_async_commit an interrupted commit (the scan goes on, but nothing from
         that transaction on is replayed); a commit older than the previous one ends the
         log quietly.
     With v1 checksums (COMPAT_CHECKSUM) the commit block carries a crc32_be over the
     descriptor and data blocks of its transaction.
  2. revoke: every revoke record of the transactions to replay (block -> newest tid); an
     r_count beyond the block makes recovery FAIL (EINVAL).
  3. replay: every logged block in log order, unless a revoke from the same or a later
     transaction covers it; a block whose tag checksum is wrong is skipped (the rest is
     replayed) and recovery reports a checksum error at the end.
After a successful replay s_start = 0 and s_sequence = first unreplayed tid + 1 (no stale
commit block can match); after a failed one s_start = 0 with s_sequence left alone and the
file system superblock loses its "clean" state. needs_recovery is cleared either way.
Time is proportional to the log, not the disk.

``ReplayOverlay`` lays the blocks replay would write over a read-only device: a read-only
open of an image whose journal needs recovery shows the recovered file system (as the
kernel's read-only mount does) without writing to the image. ``recover(as_mount=True)``
applies the kernel's rule at mount instead of e2fsck's: a failed recovery raises and leaves
the journal for e2fsck.
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_right
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..blockdev import BlockDevice
from ..errors import CorruptError, UnsupportedFeatureError
from ..ondisk import jbd2 as j
from ..ondisk.csum import crc32c_raw

if TYPE_CHECKING:
    from ..fs.filesystem import FileSystem

EXT2_VALID_FS = 0x1
EXT2_ERROR_FS = 0x2
_EINVAL = 22


class JournalArea:
    """Journal block I/O: logical journal block -> device offset.

    The journal file's mapping is kept as extents (journal block, physical block, length):
    a run of consecutive journal blocks is read or written with one device call per
    physically contiguous piece (usually one: mkfs allocates the journal contiguously)."""

    def __init__(self, dev: BlockDevice, block_size: int,
                 extents: list[tuple[int, int, int]]):
        self.dev = dev
        self.bs = block_size
        extents = sorted(extents)
        self._lstart = [e[0] for e in extents]
        self._pstart = [e[1] for e in extents]
        self._len = [e[2] for e in extents]
        self._n = extents[-1][0] + extents[-1][2] if extents else 0

    @classmethod
    def of(cls, fs: FileSystem) -> JournalArea:
        sb = fs.sb
        if sb.f["s_journal_dev"] or not sb.f["s_journal_inum"] or any(sb.f["s_journal_uuid"]):
            raise UnsupportedFeatureError("external journal devices are not supported")
        ji = fs.get_inode(sb.f["s_journal_inum"])
        n = ji.size // fs.block_size
        if n > fs.blocks_count:
            raise CorruptError(f"the journal inode claims {n} blocks, more than the file system")
        clipped = []
        for run in fs.block_map(ji).runs:
            lo = min(run.logical, n)
            hi = min(run.logical + run.length, n)
            if hi > lo:
                clipped.append((lo, run.physical + lo - run.logical, hi - lo))
        clipped.sort()
        extents: list[tuple[int, int, int]] = []
        at = 0
        for lo, phys, length in clipped:
            if lo < at:  # overlapping runs (a damaged map): the later run wins
                return cls._of_overlapping(fs, clipped, n)
            if lo > at:
                raise CorruptError("the journal inode does not map all of its blocks")
            if extents and extents[-1][1] + extents[-1][2] == phys:
                e = extents[-1]
                extents[-1] = (e[0], e[1], e[2] + length)
            else:
                extents.append((lo, phys, length))
            at = lo + length
        if n == 0 or at != n:
            raise CorruptError("the journal inode does not map all of its blocks")
        cls._check_inside(fs, extents)
        return cls(fs.dev, fs.block_size, extents)

    @classmethod
    def _of_overlapping(cls, fs: FileSystem, clipped: list[tuple[int, int, int]],
                        n: int) -> JournalArea:
        phys = [-1] * n
        for lo, p, length in clipped:
            phys[lo : lo + length] = range(p, p + length)
        if -1 in phys:
            raise CorruptError("the journal inode does not map all of its blocks")
        extents: list[tuple[int, int, int]] = []
        for i, p in enumerate(phys):
            if extents and extents[-1][1] + extents[-1][2] == p:
                e = extents[-1]
                extents[-1] = (e[0], e[1], e[2] + 1)
            else:
                extents.append((i, p, 1))
        cls._check_inside(fs, extents)
        return cls(fs.dev, fs.block_size, extents)

    @staticmethod
    def _check_inside(fs: FileSystem, extents: list[tuple[int, int, int]]) -> None:
        for _lo, p, length in extents:
            if p <= 0 or p + length > fs.blocks_count:
                raise CorruptError("the journal inode maps blocks outside the file system")

    def __len__(self) -> int:
        return self._n

    def physical(self, jblk: int) -> int:
        """The file system block holding journal block ``jblk``."""
        if not 0 <= jblk < self._n:
            raise CorruptError(f"journal block {jblk} outside the journal")
        i = bisect_right(self._lstart, jblk) - 1
        return self._pstart[i] + jblk - self._lstart[i]

    def _pieces(self, jblk: int, count: int) -> Iterator[tuple[int, int]]:
        """(physical block, blocks) pieces of journal blocks jblk .. jblk + count - 1."""
        if count <= 0:
            return
        if not (0 <= jblk and jblk + count <= self._n):
            bad = jblk if not 0 <= jblk < self._n else self._n
            raise CorruptError(f"journal block {bad} outside the journal")
        i = bisect_right(self._lstart, jblk) - 1
        while count > 0:
            off = jblk - self._lstart[i]
            k = min(count, self._len[i] - off)
            yield self._pstart[i] + off, k
            jblk += k
            count -= k
            i += 1

    def read(self, jblk: int) -> bytes:
        return self.dev.read_exact(self.physical(jblk) * self.bs, self.bs)

    def read_blocks(self, jblk: int, count: int) -> bytes:
        """Journal blocks jblk .. jblk + count - 1 (no wrap), one read per extent piece."""
        bs = self.bs
        parts = [self.dev.read_exact(p * bs, k * bs) for p, k in self._pieces(jblk, count)]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto_blocks(self, jblk: int, count: int, buf: memoryview) -> memoryview:
        """Journal blocks jblk .. jblk + count - 1 (no wrap) read into ``buf`` (reused by
        the caller: no fresh memory per read); returns the filled part."""
        bs = self.bs
        readinto = getattr(self.dev, "readinto", None)
        done = 0
        for p, k in self._pieces(jblk, count):
            part = buf[done : done + k * bs]
            if readinto is None or readinto(p * bs, part) != k * bs:
                part[:] = self.dev.read_exact(p * bs, k * bs)
            done += k * bs
        return buf[:done]

    def write(self, jblk: int, data: bytes | bytearray | memoryview) -> None:
        self.dev.write(self.physical(jblk) * self.bs, data)

    def write_blocks(self, jblk: int, data: bytes | bytearray | memoryview) -> None:
        """Consecutive journal blocks from ``jblk`` (no wrap), one write per extent piece."""
        bs = self.bs
        mv = memoryview(data)
        done = 0
        for p, k in self._pieces(jblk, len(mv) // bs):
            self.dev.write(p * bs, mv[done : done + k * bs])
            done += k * bs

    def read_superblock(self) -> j.JournalSuperblock:
        jsb = j.JournalSuperblock.parse(self.read(0))
        if jsb.s_blocksize != self.bs:
            raise CorruptError(f"journal block size {jsb.s_blocksize} differs from the file "
                               f"system's {self.bs}")
        if not (1 <= jsb.s_first < jsb.s_maxlen <= self._n):
            raise CorruptError(f"journal superblock: first {jsb.s_first} / maxlen "
                               f"{jsb.s_maxlen} do not fit the journal ({self._n} blocks)")
        if not jsb.checksum_ok():
            raise CorruptError("journal superblock checksum does not match")
        return jsb

    def write_superblock(self, jsb: j.JournalSuperblock) -> None:
        block = bytearray(self.read(0))
        block[: j.SUPERBLOCK_SIZE] = jsb.pack()
        self.write(0, block)


@dataclass
class LoggedTxn:
    sequence: int
    start: int  # journal block of its first block
    tags: list[tuple[int, j.BlockTag]] = field(default_factory=list)  # (journal block, tag)
    revokes: list[int] = field(default_factory=list)
    descriptors: int = 0
    revoke_blocks: int = 0
    commit_block: int | None = None
    commit_time: tuple[int, int] = (0, 0)
    committed: bool = False  # replayed (its commit block was found and accepted)
    problem: str | None = None  # what is wrong inside this transaction
    descriptor_at: list[int] = field(default_factory=list)  # journal blocks
    revoke_at: list[int] = field(default_factory=list)
    descriptor_tags: list[int] = field(default_factory=list)  # tags of each descriptor
    descriptor_ok: list[bool] = field(default_factory=list)  # its tail checksum held


@dataclass
class ScanResult:
    start: int
    first_sequence: int
    transactions: list[LoggedTxn]
    end_reason: str
    blocks_scanned: int
    end_sequence: int = 0  # info->end_transaction: the first tid not replayed
    error: str | None = None  # recovery fails (nothing is replayed)
    failed_commit: int | None = None  # a synchronous commit block with a bad checksum

    @property
    def committed(self) -> list[LoggedTxn]:
        return [t for t in self.transactions if t.committed]


# --- v1 transaction checksums: the kernel's crc32_be (MSB first, poly 0x04C11DB7, no
# inversion), computed with zlib's reflected CRC over bit-reversed bytes
_REV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _rev32(x: int) -> int:
    return int(f"{x & 0xFFFFFFFF:032b}"[::-1], 2)


def crc32_be(crc: int, data: bytes | bytearray | memoryview) -> int:
    return _rev32(zlib.crc32(bytes(data).translate(_REV8), _rev32(crc) ^ 0xFFFFFFFF) ^ 0xFFFFFFFF)


_TAG3 = struct.Struct(">IIII")
_TAG = struct.Struct(">IHH")
_BE32 = struct.Struct(">I")


def _parse_tags(buf: bytes, fmt: j.TagFormat) -> list[j.BlockTag]:
    """``jbd2.parse_descriptor_tags`` (the kernel's count_tags() walk), inlined: the scan
    parses every tag of the log once."""
    limit = len(buf) - fmt.tail_bytes
    tb = fmt.tag_bytes
    v3, is64 = fmt.csum_v3, fmt.is64
    tag_cls = j.BlockTag
    out: list[j.BlockTag] = []
    off = j.HEADER_SIZE
    while off + tb <= limit:
        if v3:
            lo, flags, hi, csum = _TAG3.unpack_from(buf, off)
        else:
            lo, csum, flags = _TAG.unpack_from(buf, off)
            hi = _BE32.unpack_from(buf, off + 8)[0] if is64 else 0
        off += tb
        if flags & j.FLAG_SAME_UUID:
            tag = tag_cls(lo | (hi << 32) if is64 else lo, flags, csum)
        else:
            tag = tag_cls(lo | (hi << 32) if is64 else lo, flags, csum,
                          bytes(buf[off : off + j.UUID_SIZE]))
            off += j.UUID_SIZE
        out.append(tag)
        if flags & j.FLAG_LAST_TAG:
            break
    return out


def _wrapped_pieces(pos: int, n: int, first: int, end: int) -> Iterator[tuple[int, int]]:
    """(first journal block, blocks) pieces of the n log blocks from ``pos``, following
    the wrap of the circular log (the kernel's wrap(): one subtraction per step)."""
    span = end - first
    while n > 0:
        k = max(1, min(n, end - pos))
        yield pos, k
        pos += k
        if pos >= end:
            pos -= span
        n -= k


def _read_wrapped(area: JournalArea, pos: int, n: int, first: int, end: int
                  ) -> Iterator[tuple[int, bytes]]:
    """(first journal block, bytes) of the n log blocks from ``pos``, as few reads as the
    layout allows."""
    for start, k in _wrapped_pieces(pos, n, first, end):
        yield start, area.read_blocks(start, k)


def scan(area: JournalArea, jsb: j.JournalSuperblock) -> ScanResult:
    """Pass 1 (PASS_SCAN): the transactions in the log and where replay must stop."""
    fmt = jsb.tag_format
    csum = jsb.has_csum_v2or3
    seed = jsb.csum_seed if csum else 0
    v1 = jsb.has_compat(j.FEATURE_COMPAT_CHECKSUM)
    async_commit = jsb.has_incompat(j.FEATURE_INCOMPAT_ASYNC_COMMIT)
    pos = jsb.s_start
    next_id = jsb.s_sequence
    txns: list[LoggedTxn] = []
    res = ScanResult(pos, next_id, txns, "", 0)
    if pos == 0:
        res.end_reason = "journal is empty (clean)"
        res.end_sequence = next_id
        return res
    end_tid: int | None = None
    need_check_commit_time = False
    last_commit_time = 0
    crc32_sum = 0xFFFFFFFF
    limit = 2 * (jsb.s_maxlen + 1)  # the kernel has no bound; hostile logs get one
    first = jsb.s_first
    end = jsb.log_blocks
    span = end - first
    reason = ""
    stop = ""  # why replay stops early even though the walk went on

    def txn(here: int) -> LoggedTxn:
        if not txns or txns[-1].sequence != next_id:
            txns.append(LoggedTxn(next_id, here))
        return txns[-1]

    while True:
        if res.blocks_scanned > limit:
            reason = "the log runs on past its own length (end of log)"
            break
        here = pos
        if pos >= jsb.s_maxlen:
            res.error = reason = "corrupted journal superblock (log position outside the journal)"
            break
        try:
            buf = area.read(pos)
        except CorruptError as exc:
            res.error = reason = str(exc)
            break
        res.blocks_scanned += 1
        pos += 1
        if pos >= end:
            pos -= span
        magic, btype, seq = struct.unpack_from(">III", buf, 0)
        if magic != j.JBD2_MAGIC:
            reason = f"no journal block at {here} (end of log)"
            break
        if seq != next_id & 0xFFFFFFFF:
            reason = f"block {here} has sequence {seq}, expected {next_id & 0xFFFFFFFF} (end of log)"
            break
        if btype == j.BLOCKTYPE_DESCRIPTOR:
            t = txn(here)
            t.descriptors += 1
            t.descriptor_at.append(here)
            ok = not csum or j.verify_block_tail(buf, seed)
            t.descriptor_ok.append(ok)
            if not ok:
                need_check_commit_time = True
                t.problem = f"descriptor block {here} checksum mismatch"
            # count_tags(): the tags up to LAST_TAG or the end of the usable area
            tags = _parse_tags(buf, fmt)
            n = len(tags)
            t.descriptor_tags.append(n)
            p = pos
            for tag in tags:
                t.tags.append((p, tag))
                p += 1
                if p >= end:
                    p -= span
            res.blocks_scanned += n
            if v1 and not need_check_commit_time and end_tid is None:
                # calc_chksums(): crc32_be over the descriptor and the blocks it tags
                crc32_sum = crc32_be(crc32_sum, buf)
                saved = crc32_sum
                try:
                    for _at, data in _read_wrapped(area, pos, n, first, end):
                        crc32_sum = crc32_be(crc32_sum, data)
                except CorruptError:
                    # block by block, as the kernel: the scan goes on after the block
                    # that could not be read
                    crc32_sum = saved
                    for _ in range(n):
                        io_block = pos
                        pos += 1
                        if pos >= end:
                            pos -= span
                        try:
                            crc32_sum = crc32_be(crc32_sum, area.read(io_block))
                        except CorruptError:
                            t.problem = "logged block outside the journal"
                            break
                    continue
            pos += n
            if pos >= end:
                pos -= span
            continue
        if btype == j.BLOCKTYPE_COMMIT:
            t = txn(here)
            cb = j.parse_commit_block(buf)
            t.commit_block = here
            t.commit_time = (cb.h_commit_sec, cb.h_commit_nsec)
            commit_time = cb.h_commit_sec
            if need_check_commit_time:
                if commit_time >= last_commit_time:
                    res.error = reason = (f"journal checksum error in transaction {next_id} "
                                          f"({t.problem or 'revoke block checksum mismatch'})")
                    break
                reason = (f"transaction {next_id} has a bad checksum and an older commit "
                          "time: stale blocks (end of log)")
                break
            chksum_error = False
            if v1:
                if end_tid is not None:
                    res.failed_commit = end_tid
                    stop = (f"journal transaction {end_tid} was corrupt (commit block "
                            "checksum mismatch), replay was aborted")
                    continue  # the kernel's `break` leaves only the switch
                found = cb.h_chksum[0]
                if not ((crc32_sum == found and cb.h_chksum_type == j.CHECKSUM_CRC32
                         and cb.h_chksum_size == j.CRC32_CHKSUM_SIZE)
                        or (cb.h_chksum_type == 0 and cb.h_chksum_size == 0 and found == 0)):
                    chksum_error = True
                crc32_sum = 0xFFFFFFFF
            if chksum_error or (csum and not j.verify_commit_block(buf, seed)):
                t.problem = f"commit block {here} checksum mismatch"
                if commit_time < last_commit_time:
                    reason = (f"commit block {here} has a bad checksum and an older commit "
                              "time: stale blocks (end of log)")
                    break
                end_tid = next_id
                if not async_commit:
                    res.failed_commit = next_id
                    stop = (f"journal transaction {next_id} was corrupt (commit block {here} "
                            "checksum mismatch), replay was aborted")
                    continue  # the kernel's `break` leaves only the switch
                stop = (f"transaction {next_id}: commit block {here} checksum mismatch "
                        "(async commit: an interrupted commit, not replayed)")
            last_commit_time = commit_time
            next_id += 1
            continue
        if btype == j.BLOCKTYPE_REVOKE:
            t = txn(here)
            t.revoke_blocks += 1
            t.revoke_at.append(here)
            if csum and not j.verify_block_tail(buf, seed):
                need_check_commit_time = True
                t.problem = f"revoke block {here} checksum mismatch"
            t.revokes.extend(_revoke_records(buf, fmt, strict=False))
            continue
        reason = f"block {here} has unexpected type {btype} (end of log)"
        break
    if end_tid is None:
        end_tid = next_id
    res.end_sequence = end_tid
    res.end_reason = f"RECOVERY FAILED: {res.error}" if res.error else (stop or reason)
    for t in txns:
        t.committed = (t.commit_block is not None and res.error is None
                       and _tid_lt(t.sequence, end_tid))
    return res


def _tid_lt(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def _revoke_records(buf: bytes, fmt: j.TagFormat, *, strict: bool) -> list[int]:
    """scan_revoke_records(): r_count beyond the block is EINVAL (``strict``) or nothing."""
    rcount = struct.unpack_from(">I", buf, 12)[0]
    if rcount > len(buf) - fmt.tail_bytes:
        if strict:
            raise CorruptError(f"revoke block r_count {rcount} out of range")
        return []
    rec = fmt.revoke_record_bytes
    off = j.REVOKE_HEADER_SIZE
    out = []
    code = ">Q" if rec == 8 else ">I"
    while off + rec <= rcount:
        out.append(struct.unpack_from(code, buf, off)[0])
        off += rec
    return out


class ReplayedBlocks(MutableMapping[int, bytes]):
    """home block -> the contents replay puts there, read from the log when asked (a
    read-only open of an image with a large log does not hold the log in memory)."""

    def __init__(self, area: JournalArea | None = None):
        self.area = area
        self._src: dict[int, tuple[int, bool]] = {}  # home block -> (journal block, escaped)
        self._data: dict[int, bytes] = {}

    def set_source(self, blk: int, jblk: int, escaped: bool) -> None:
        self._data.pop(blk, None)
        self._src[blk] = (jblk, escaped)

    def source(self, blk: int) -> tuple[int, bool] | None:
        """(journal block, escaped) when the contents are read from the log."""
        return self._src.get(blk)

    def __getitem__(self, blk: int) -> bytes:
        data = self._data.get(blk)
        if data is not None:
            return data
        jblk, escaped = self._src[blk]
        assert self.area is not None
        return j.unescape_block(self.area.read(jblk), escaped)

    def __setitem__(self, blk: int, data: bytes) -> None:
        self._src.pop(blk, None)
        self._data[blk] = bytes(data)

    def __delitem__(self, blk: int) -> None:
        if self._src.pop(blk, None) is None:
            del self._data[blk]

    def __contains__(self, blk: object) -> bool:
        return blk in self._src or blk in self._data

    def __iter__(self) -> Iterator[int]:
        yield from list(self._src)
        yield from list(self._data)

    def __len__(self) -> int:
        return len(self._src) + len(self._data)

    def copy(self) -> ReplayedBlocks:
        out = ReplayedBlocks(self.area)
        out._src = dict(self._src)
        out._data = dict(self._data)
        return out


@dataclass
class Replay:
    scan: ScanResult
    blocks: ReplayedBlocks  # home block -> contents to write
    revoked_skips: int
    end_sequence: int  # first sequence after the replayed transactions
    error: str | None = None  # recovery failed (e2fsck: checksum error / invalid argument)
    bad_blocks: list[int] = field(default_factory=list)  # skipped: tag checksum mismatch

    @property
    def failed_commit(self) -> int | None:
        return self.scan.failed_commit

    @property
    def summary(self) -> str:
        n = len(self.scan.committed)
        out = (f"replayed {n} transaction{'s' if n != 1 else ''}, {len(self.blocks)} blocks "
               f"({self.revoked_skips} revoked copies skipped); {self.scan.end_reason}")
        if self.error:
            out += f"; RECOVERY FAILED: {self.error}"
        return out


def plan_replay(area: JournalArea, jsb: j.JournalSuperblock, result: ScanResult) -> Replay:
    """Passes 2 and 3 (PASS_REVOKE, PASS_REPLAY) without writing: what replay would put
    where. ``error`` is set when the kernel's recovery would return an error; the blocks
    are then those it had written before the error. With csum_v2/v3 the logged blocks of
    each descriptor are read with one device read (into one reused buffer: fresh memory
    per read costs more than the read) and their tag checksums verified."""
    fmt = jsb.tag_format
    csum = jsb.has_csum_v2or3
    seed = jsb.csum_seed if csum else 0
    bs = area.bs
    plan = Replay(result, ReplayedBlocks(area), 0, result.end_sequence, result.error)
    if result.error:
        return plan
    committed = result.committed
    revoked: dict[int, int] = {}
    try:
        for t in committed:  # pass 2
            for p in t.revoke_at:
                for b in _revoke_records(area.read(p), fmt, strict=True):
                    if revoked.get(b, -1) < t.sequence:
                        revoked[b] = t.sequence
    except CorruptError as exc:
        plan.error = f"invalid argument: {exc}"
        result.end_reason += f"; RECOVERY FAILED: {plan.error}"
        return plan
    blocks = plan.blocks
    first, end = jsb.s_first, jsb.log_blocks
    n_area = len(area)
    mask = 0xFFFFFFFF if fmt.csum_v3 else 0xFFFF
    buf = memoryview(bytearray(bs * (max((n for t in committed for n in t.descriptor_tags),
                                        default=0) if csum else 0)))
    for t in committed:  # pass 3
        seq = t.sequence
        # a tag checksum is crc32c(crc32c(seed, be32 sequence), block): the first part
        # once per transaction
        seq_seed = crc32c_raw(seed, struct.pack(">I", seq & 0xFFFFFFFF)) if csum else 0
        at = 0
        for p, ntags, ok in zip(t.descriptor_at, t.descriptor_tags, t.descriptor_ok):
            if not ok:
                plan.error = f"invalid checksum recovering descriptor block {p} in log"
                result.end_reason += f"; RECOVERY FAILED: {plan.error}"
                return plan
            tags = t.tags[at : at + ntags]
            at += ntags
            if not tags:
                continue
            data: dict[int, memoryview] = {}  # journal block -> its contents
            if csum:
                used = 0
                try:
                    for start, k in _wrapped_pieces(tags[0][0], ntags, first, end):
                        got = area.readinto_blocks(start, k, buf[used : used + k * bs])
                        for i in range(k):
                            data[start + i] = got[i * bs : (i + 1) * bs]
                        used += k * bs
                except CorruptError:
                    pass  # the blocks outside the journal fail one by one below
            for io_block, tag in tags:
                if not 0 <= io_block < n_area:
                    plan.error = f"I/O error recovering block {io_block} in log"
                    continue
                if revoked.get(tag.blocknr, -1) >= seq:
                    plan.revoked_skips += 1
                    continue
                if csum:
                    mv = data.get(io_block)
                    if mv is None:
                        mv = memoryview(area.read(io_block))
                    if crc32c_raw(seq_seed, mv) & mask != tag.checksum:
                        plan.bad_blocks.append(tag.blocknr)
                        plan.error = f"invalid checksum recovering data block {tag.blocknr} in log"
                        continue
                blocks.set_source(tag.blocknr, io_block, tag.escaped)
    if plan.error:
        result.end_reason += f"; RECOVERY FAILED: {plan.error}"
    return plan


def plan_for(fs: FileSystem) -> tuple[JournalArea, j.JournalSuperblock, Replay] | None:
    """What recovery of ``fs`` would do (None when it has no journal). Refuses fast-commit
    logs and external journals."""
    if not fs.sb.has_compat("has_journal"):
        return None
    area = JournalArea.of(fs)
    jsb = area.read_superblock()
    if jsb.has_incompat(j.FEATURE_INCOMPAT_FAST_COMMIT) and jsb.s_start:
        raise UnsupportedFeatureError(
            "the journal has fast-commit blocks: replay it with e2fsck or a kernel mount")
    result = scan(area, jsb)
    return area, jsb, plan_replay(area, jsb, result)


_RUN_MAX = 256  # blocks per home write (1 MiB with 4 KiB blocks)


def write_blocks_home(dev: BlockDevice, block_size: int, blocks: ReplayedBlocks) -> int:
    """Write the replayed blocks in block order: a run of consecutive home blocks whose
    copies are consecutive (unescaped) log blocks is read with one read into a reused
    buffer and written with one write. Returns the number of writes."""
    bs = block_size
    order = sorted(blocks)
    area = blocks.area
    buf = memoryview(bytearray(bs * min(_RUN_MAX, max(len(order), 1))))
    writes = 0
    i = 0
    n = len(order)
    while i < n:
        blk = order[i]
        src = blocks.source(blk)
        k = 1
        if src is not None and not src[1] and area is not None:
            jblk = src[0]
            while k < _RUN_MAX and i + k < n and order[i + k] == blk + k \
                    and blocks.source(order[i + k]) == (jblk + k, False):
                k += 1
            data: bytes | memoryview = area.readinto_blocks(jblk, k, buf)
        else:
            data = blocks[blk]
        dev.write(blk * bs, data)
        writes += 1
        i += k
    return writes


def recover(fs: FileSystem, *, write: bool = True, as_mount: bool = False) -> Replay | None:
    """Replay the journal of ``fs`` onto its device (``write``) the way ``e2fsck`` does:
    write the blocks, mark the journal empty, clear needs_recovery; after a failed
    recovery the file system is marked not clean, after a corrupt synchronous commit it
    is marked with errors. Returns what was replayed (None when there is no journal).

    ``as_mount``: the kernel's rule at mount instead: a failed recovery (or a corrupt
    commit) writes what it replayed, leaves the journal as it is and raises CorruptError.
    """
    got = plan_for(fs)
    if got is None:
        return None
    area, jsb, plan = got
    if not write:
        return plan
    bs = fs.block_size
    for blk in plan.blocks:
        if not 0 <= blk < fs.blocks_count:
            raise CorruptError(f"journal replays block {blk} outside the file system")
    write_blocks_home(fs.dev, bs, plan.blocks)
    fs.dev.flush()
    failed = plan.error is not None
    if as_mount and (failed or plan.failed_commit is not None):
        why = plan.error or f"transaction {plan.failed_commit} is corrupt"
        raise CorruptError(f"journal recovery failed: {why} (run e2fsck or 'ext4kit recover')")
    errno = jsb.s_errno
    if jsb.s_start or errno:
        if jsb.s_start and not failed:
            jsb.s_sequence = (plan.end_sequence + 1) & 0xFFFFFFFF  # no stale commit matches
        jsb.s_start = 0
        if plan.failed_commit is not None:
            errno = -_EINVAL
        jsb.s_errno = 0  # handed to the file system's state below
        area.write_superblock(jsb)
    from ..ondisk.superblock import SUPERBLOCK_OFFSET, Superblock

    raw = fs.dev.read_exact(SUPERBLOCK_OFFSET, 1024)
    sb = Superblock.parse(raw, verify=False)
    sb.f["s_feature_incompat"] &= ~0x4
    if failed:
        sb.f["s_state"] &= ~EXT2_VALID_FS
    if errno:
        sb.f["s_state"] |= EXT2_ERROR_FS
    fs.dev.write(SUPERBLOCK_OFFSET, sb.pack())
    fs.dev.flush()
    return plan


class ReplayOverlay(BlockDevice):
    """A read-only view of ``inner`` with the journal's replayed blocks laid over it:
    a read-only open sees the recovered file system and the image is never written."""

    def __init__(self, inner: BlockDevice, block_size: int,
                 blocks: MutableMapping[int, bytes]):
        self.inner = inner
        self.bs = block_size
        self.blocks = blocks
        self.read_only = True
        self.sector_size = inner.sector_size

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, offset: int, length: int) -> bytes:
        data = self.inner.read(offset, length)
        if not self.blocks or length <= 0:
            return data
        bs = self.bs
        first, last = offset // bs, (offset + len(data) - 1) // bs
        if last - first + 1 < len(self.blocks):
            hits = [b for b in range(first, last + 1) if b in self.blocks]
        else:
            hits = sorted(b for b in list(self.blocks) if first <= b <= last)
        if not hits:
            return data
        out = bytearray(data)
        for b in hits:
            s = max(b * bs, offset)
            e = min((b + 1) * bs, offset + len(data))
            out[s - offset : e - offset] = self.blocks[b][s - b * bs : e - b * bs]
        return bytes(out)

    def readinto(self, offset: int, buf: memoryview) -> int:
        bs = self.bs
        n = len(buf)
        inner_readinto = getattr(self.inner, "readinto", None)
        if inner_readinto is not None and n > 0 and not any(
                b in self.blocks for b in range(offset // bs, (offset + n - 1) // bs + 1)):
            return int(inner_readinto(offset, buf))
        data = self.read(offset, n)
        buf[: len(data)] = data
        return len(data)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raise PermissionError("the replayed view of a journal is read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.inner.close()
