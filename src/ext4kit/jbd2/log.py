"""The journal's on-disk area and recovery (scan, revoke, replay), as jbd2 and e2fsck do it.

The journal is the file of inode ``s_journal_inum`` (an external journal device is not
supported). Journal block numbers are logical blocks of that file; block 0 holds the
journal superblock, the circular log runs from ``s_first`` to ``s_maxlen`` (minus a
fast-commit area, which recovery refuses).

Recovery, three passes over the log from ``s_start``/``s_sequence``:
  1. scan: follow descriptor / revoke / commit blocks while each carries the expected
     sequence number and a valid checksum. A transaction counts only when its commit block
     is found and valid, and (with csum_v2/v3) every logged block matches its tag's
     checksum: a torn or garbage tail, or a commit written before its blocks
     (async_commit), ends the log there. Stale blocks from older laps carry older
     sequence numbers and end the scan too.
  2. revoke: every revoke record of the committed transactions (block -> newest tid).
  3. replay: the newest logged copy of each block, unless a revoke in the same or a later
     transaction covers it, is written home; then a flush.
Time is proportional to the log, not the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptError, UnsupportedFeatureError
from ..ondisk import jbd2 as j

if TYPE_CHECKING:
    from ..blockdev import BlockDevice
    from ..fs.filesystem import FileSystem


class JournalArea:
    """Journal block I/O: logical journal block -> device offset."""

    def __init__(self, dev: BlockDevice, block_size: int, phys: np.ndarray):
        self.dev = dev
        self.bs = block_size
        self.phys = phys  # physical block of each journal block

    @classmethod
    def of(cls, fs: FileSystem) -> JournalArea:
        sb = fs.sb
        if sb.f["s_journal_dev"] or not sb.f["s_journal_inum"]:
            raise UnsupportedFeatureError("external journal devices are not supported")
        ji = fs.get_inode(sb.f["s_journal_inum"])
        n = ji.size // fs.block_size
        phys = np.zeros(n, dtype=np.int64)
        mapped = np.zeros(n, dtype=bool)
        for run in fs.block_map(ji).runs:
            lo = min(run.logical, n)
            hi = min(run.logical + run.length, n)
            if hi > lo:
                phys[lo:hi] = np.arange(run.physical + lo - run.logical,
                                        run.physical + hi - run.logical)
                mapped[lo:hi] = True
        if n == 0 or not mapped.all():
            raise CorruptError("the journal inode does not map all of its blocks")
        return cls(fs.dev, fs.block_size, phys)

    def __len__(self) -> int:
        return len(self.phys)

    def read(self, jblk: int) -> bytes:
        if not 0 <= jblk < len(self.phys):
            raise CorruptError(f"journal block {jblk} outside the journal")
        return self.dev.read_exact(int(self.phys[jblk]) * self.bs, self.bs)

    def write(self, jblk: int, data: bytes | bytearray) -> None:
        self.dev.write(int(self.phys[jblk]) * self.bs, data)

    def read_superblock(self) -> j.JournalSuperblock:
        jsb = j.JournalSuperblock.parse(self.read(0))
        if jsb.s_blocksize != self.bs:
            raise CorruptError(f"journal block size {jsb.s_blocksize} differs from the file "
                               f"system's {self.bs}")
        if not (1 <= jsb.s_first < jsb.s_maxlen <= len(self.phys)):
            raise CorruptError(f"journal superblock: first {jsb.s_first} / maxlen "
                               f"{jsb.s_maxlen} do not fit the journal ({len(self.phys)} blocks)")
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
    committed: bool = False
    problem: str | None = None  # why the scan stopped inside this transaction


@dataclass
class ScanResult:
    start: int
    first_sequence: int
    transactions: list[LoggedTxn]
    end_reason: str
    blocks_scanned: int

    @property
    def committed(self) -> list[LoggedTxn]:
        return [t for t in self.transactions if t.committed]


def _wrap(jsb: j.JournalSuperblock, pos: int) -> int:
    end = jsb.log_blocks
    if pos >= end:
        pos = jsb.s_first + (pos - end)
    return pos


def scan(area: JournalArea, jsb: j.JournalSuperblock) -> ScanResult:
    """Pass 1: the transactions in the log, in order (the last may be uncommitted)."""
    if jsb.has_incompat(j.FEATURE_INCOMPAT_FAST_COMMIT) and jsb.s_start:
        # fast-commit blocks may follow: we replay only full transactions and say so
        pass
    fmt = jsb.tag_format
    seed = jsb.csum_seed if fmt.has_csum else None
    pos = jsb.s_start
    seq = jsb.s_sequence
    txns: list[LoggedTxn] = []
    if pos == 0:
        return ScanResult(0, seq, [], "journal is empty (clean)", 0)
    capacity = jsb.log_blocks - jsb.s_first
    scanned = 0
    cur: LoggedTxn | None = None
    reason = ""
    while True:
        if scanned > capacity:
            reason = "log wrapped onto itself"
            break
        buf = area.read(pos)
        scanned += 1
        hdr = j.parse_header(buf)
        if hdr.h_magic != j.JBD2_MAGIC:
            reason = f"no journal block at {pos} (end of log)"
            break
        if hdr.h_sequence != (seq & 0xFFFFFFFF):
            reason = f"block {pos} has sequence {hdr.h_sequence}, expected {seq} (end of log)"
            break
        if cur is None:
            cur = LoggedTxn(seq, pos)
            txns.append(cur)
        bt = hdr.h_blocktype
        if bt == j.BLOCKTYPE_DESCRIPTOR:
            if seed is not None and not j.verify_block_tail(buf, seed):
                cur.problem = reason = f"descriptor block {pos} checksum mismatch"
                break
            tags = j.parse_descriptor_tags(buf, fmt)
            cur.descriptors += 1
            p = pos
            bad = None
            for tag in tags:
                p = _wrap(jsb, p + 1)
                cur.tags.append((p, tag))
                if seed is not None:
                    if not j.verify_tag_checksum(tag, fmt, seed, seq, area.read(p)):
                        bad = f"logged block {p} (for block {tag.blocknr}) checksum mismatch"
            scanned += len(tags)
            if bad:
                cur.problem = reason = bad
                break
            pos = _wrap(jsb, p + 1)
        elif bt == j.BLOCKTYPE_REVOKE:
            if seed is not None and not j.verify_block_tail(buf, seed):
                cur.problem = reason = f"revoke block {pos} checksum mismatch"
                break
            try:
                rb = j.parse_revoke_block(buf, fmt)
            except CorruptError as exc:
                cur.problem = reason = f"revoke block {pos}: {exc}"
                break
            cur.revokes.extend(rb.blocks)
            cur.revoke_blocks += 1
            pos = _wrap(jsb, pos + 1)
        elif bt == j.BLOCKTYPE_COMMIT:
            if seed is not None and not j.verify_commit_block(buf, seed):
                cur.problem = reason = f"commit block {pos} checksum mismatch"
                break
            cb = j.parse_commit_block(buf)
            cur.commit_block = pos
            cur.commit_time = (cb.h_commit_sec, cb.h_commit_nsec)
            cur.committed = True
            cur = None
            seq += 1
            pos = _wrap(jsb, pos + 1)
        else:
            reason = f"block {pos} has unexpected type {bt} (end of log)"
            break
    return ScanResult(jsb.s_start, jsb.s_sequence, txns, reason, scanned)


@dataclass
class Replay:
    scan: ScanResult
    blocks: dict[int, bytes]  # home block -> contents to write
    revoked_skips: int
    end_sequence: int  # first sequence after the replayed transactions


def plan_replay(area: JournalArea, jsb: j.JournalSuperblock, result: ScanResult) -> Replay:
    """Passes 2 and 3 without writing: what replay would put where."""
    committed = result.committed
    revoked: dict[int, int] = {}
    for t in committed:  # pass 2
        for b in t.revokes:
            if revoked.get(b, -1) < t.sequence:
                revoked[b] = t.sequence
    latest: dict[int, tuple[int, bool]] = {}
    skips = 0
    for t in committed:  # pass 3
        for p, tag in t.tags:
            if revoked.get(tag.blocknr, -1) >= t.sequence:
                skips += 1
                continue
            latest[tag.blocknr] = (p, tag.escaped)
    blocks = {b: j.unescape_block(area.read(p), esc) for b, (p, esc) in latest.items()}
    end = committed[-1].sequence + 1 if committed else result.first_sequence
    return Replay(result, blocks, skips, end)


def recover(fs: FileSystem, *, write: bool = True) -> Replay | None:
    """Replay the journal of ``fs`` onto its device (``write``), mark the journal empty and
    clear needs_recovery. Returns what was replayed (None when there is no journal)."""
    if not fs.sb.has_compat("has_journal"):
        return None
    area = JournalArea.of(fs)
    jsb = area.read_superblock()
    if jsb.has_incompat(j.FEATURE_INCOMPAT_FAST_COMMIT) and jsb.s_start:
        raise UnsupportedFeatureError(
            "the journal has fast-commit blocks: replay it with e2fsck or a kernel mount")
    result = scan(area, jsb)
    plan = plan_replay(area, jsb, result)
    if not write:
        return plan
    bs = fs.block_size
    for blk in sorted(plan.blocks):
        if not 0 <= blk < fs.blocks_count:
            raise CorruptError(f"journal replays block {blk} outside the file system")
        fs.dev.write(blk * bs, plan.blocks[blk])
    fs.dev.flush()
    if jsb.s_start:
        jsb.s_start = 0
        jsb.s_sequence = plan.end_sequence + 1  # skip one: no stale block can match
        area.write_superblock(jsb)
    # needs_recovery off in the (possibly just replayed) primary superblock
    from ..ondisk.superblock import SUPERBLOCK_OFFSET, Superblock

    raw = fs.dev.read_exact(SUPERBLOCK_OFFSET, 1024)
    sb = Superblock.parse(raw, verify=False)
    sb.f["s_feature_incompat"] &= ~0x4
    fs.dev.write(SUPERBLOCK_OFFSET, sb.pack())
    fs.dev.flush()
    return plan
