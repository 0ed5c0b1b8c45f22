"""The crash lab's core: record a workload, cut the trace into epochs, derive crash states
as copy-on-write overlays, recover each in memory, check it, count outcome classes.

    result = run_lab(LabConfig("append", mode="ordered"))
    result.outcomes            # {"consistent": 37, "fsync_lost": 0, ...}

See docs/CRASH-LAB.md for the model.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import os
import pickle
import random
import shutil
import signal
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..blockdev import MemoryDevice, RecordingDevice, Trace
from ..blockdev.recording import TraceOp
from ..errors import Ext4Error
from ..fs.filesystem import FileSystem
from .check import CheckResult, E2fsckChecker, QuickChecker, make_checker, repair
from .overlay import PAGE, Overlay, nonzero_pages
from .workloads import Ctx, FakeClock, get

MODES = ("nojournal", "journal", "ordered", "writeback")
STATE_KINDS = ("prefix", "reorder", "torn")
CLASSES = ("consistent", "inconsistent", "fsync_lost", "garbage_data", "zero_length",
           "atomicity", "repaired")
EXHAUSTIVE_MAX = 12
SECTOR = 512


@dataclass
class LabConfig:
    workload: str
    mode: str = "ordered"
    options: str = ""  # mount options, comma separated (-o)
    states: tuple[str, ...] = STATE_KINDS
    max_states: int = 500
    seed: int = 0
    jobs: int = 1
    oracle: str | None = None  # "e2fsck": e2fsck -fn on every distinct state
    oracle_sample: int = 4  # without --oracle: e2fsck on this many distinct states
    checker: str = "quick"
    fs_kind: str = "ext4-nocsum"  # ext4 | ext4-nocsum | ext3
    size: str = "16M"
    params: dict[str, Any] = field(default_factory=dict)  # workload parameters (fsync=True)
    repair: bool = True  # nojournal: try e2fsck -fy on inconsistent states

    def label(self) -> str:
        w = self.workload + ("".join(f" --{k}" for k, v in sorted(self.params.items()) if v is True))
        return f"{w}, {self.mode}" + (f", {self.options}" if self.options else "")


@dataclass(frozen=True)
class State:
    id: int
    kind: str
    epoch: int
    writes: tuple[int, ...]  # indices into Recording.writes, applied in this order
    torn: tuple[int, tuple[int, ...]] | None  # (write index, sectors that persisted)
    crash_seq: int  # fsync/sync marks before this trace position had returned


@dataclass
class StateResult:
    state: int
    verdict: str  # consistent | inconsistent
    classes: list[str]
    details: list[tuple[str, str]]  # (class, detail)
    digest: str = ""


@dataclass
class Recording:
    base: bytes
    trace: Trace
    ctx: Ctx
    writes: list[TraceOp]  # the trace's W ops, in order, one per page (split_write)
    epoch_of: list[int]  # epoch of each write
    epoch_end: list[int]  # seq of the flush closing each epoch (last: after the trace)
    journal_blocks: set[int]
    options: dict[str, Any]


@dataclass
class LabResult:
    config: LabConfig
    recording: Recording
    states: list[State]
    results: list[StateResult]
    seconds: float
    checks: int  # distinct recovered images checked
    oracle_runs: int = 0
    workers: int = 0  # worker processes forked (0: all states evaluated in this process)

    @property
    def outcomes(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for r in self.results:
            c.update(set(r.classes))
        return {k: c.get(k, 0) for k in CLASSES}

    def violations(self) -> list[dict[str, Any]]:
        out = []
        for r in self.results:
            for cls, detail in r.details:
                out.append({"state": r.state, "class": cls, "detail": detail})
        return out

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {"workload": cfg.workload, "mode": cfg.mode, "options": cfg.options,
                "params": cfg.params, "states": len(self.states), "outcomes": self.outcomes,
                "violations": self.violations(), "seconds": round(self.seconds, 3),
                "distinct_images_checked": self.checks}


# ------------------------------------------------------------------ images
_BASE_CACHE: dict[tuple[Any, ...], bytes] = {}

FS_KINDS = {"ext4": ("ext4", ""), "ext4-nocsum": ("ext4", "^metadata_csum"),
            "ext3": ("ext3", "")}


def make_base(cfg: LabConfig) -> bytes:
    """A fresh file system, the workload's setup on it, unmounted cleanly: the base image."""
    from ..mkfs import mkfs

    wl = get(cfg.workload)
    # the setup mounts with the run's journal checksum setting: the journal superblock
    # keeps the checksum feature a mount sets
    jcsum = bool(mount_options(cfg).get("journal_checksum"))
    key = (cfg.fs_kind, cfg.size, cfg.mode == "nojournal", cfg.workload, jcsum,
           tuple(sorted(cfg.params.items())), cfg.seed)
    got = _BASE_CACHE.get(key)
    if got is not None:
        return got
    fs_type, feats = FS_KINDS[cfg.fs_kind]
    if cfg.mode == "nojournal":
        feats = ",".join(filter(None, [feats, "^has_journal"]))
    tmp = tempfile.mkdtemp(prefix="ext4kit-crash-")
    try:
        path = os.path.join(tmp, "base.img")
        mkfs(path, cfg.size, fs_type=fs_type, block_size=4096, features=feats,
             now=1_700_000_000, uuid="c7a5c7a5-0000-4000-8000-00000000c7a5",
             hash_seed="c7a5c7a5-0000-4000-8000-0000000000ff")
        with open(path, "rb") as f:
            raw = f.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dev = MemoryDevice(raw)
    if wl.setup is not None:
        fs = FileSystem.open_image(dev, "r+", **({} if cfg.mode == "nojournal" else
                                                 {"journal_checksum": jcsum}))
        wl.setup(Ctx(fs, None, random.Random(cfg.seed), dict(cfg.params)))
        fs.close()
    base = bytes(dev.buf)
    _BASE_CACHE[key] = base
    return base


def mount_options(cfg: LabConfig) -> dict[str, Any]:
    from ..fs.writer import parse_mount_options

    opts = parse_mount_options(cfg.options)
    if cfg.mode != "nojournal":
        opts["data"] = cfg.mode
    elif "data" in opts:
        opts.pop("data")
    # the kernel's default: no journal checksums unless asked for (or metadata_csum)
    opts.setdefault("journal_checksum", False)
    return opts


def record(cfg: LabConfig) -> Recording:
    base = make_base(cfg)
    wl = get(cfg.workload)
    dev = RecordingDevice(MemoryDevice(base))
    opts = mount_options(cfg)
    clock = FakeClock()
    fs = FileSystem.open_image(dev, "r+", clock=clock, **opts)
    ctx = Ctx(fs, dev, random.Random(cfg.seed), dict(cfg.params), clock)
    ctx.adopt()
    dev.mark("mounted")
    wl.run(ctx)
    dev.mark("power cut")
    # (no unmount: the power is cut here; what the caches still hold is lost)
    trace = dev.trace
    writes: list[TraceOp] = []
    epoch_of: list[int] = []
    epoch_end: list[int] = []
    e = 0
    for op in trace.ops:
        if op.kind == "W":
            for piece in split_write(op):
                writes.append(piece)
                epoch_of.append(e)
        elif op.kind == "F":
            epoch_end.append(op.seq)
            e += 1
    epoch_end.append(trace.ops[-1].seq + 1 if trace.ops else 1)
    jblocks: set[int] = set()
    with FileSystem(MemoryDevice(base), owns_dev=False) as ro:
        assert ro.block_size == PAGE, "the crash lab works on 4 KiB-block images"
        if ro.sb.has_compat("has_journal"):
            ji = ro.get_inode(ro.sb.f["s_journal_inum"])
            for r in ro.block_map(ji).runs:
                jblocks.update(range(r.physical, r.physical + r.length))
    return Recording(base, trace, ctx, writes, epoch_of, epoch_end, jblocks, opts)


def split_write(op: TraceOp) -> list[TraceOp]:
    """A write of several pages as one write per page (each keeps the write's seq): a
    disk does not persist a request atomically or in order, so each page is a unit of
    the crash states -- whether the file system issued the pages one by one or
    coalesced them into one request."""
    end = op.offset + len(op.data)
    if op.offset // PAGE == (end - 1) // PAGE:
        return [op]
    out = []
    pos = op.offset
    while pos < end:
        nxt = min(end, (pos // PAGE + 1) * PAGE)
        out.append(TraceOp("W", op.seq, pos, op.data[pos - op.offset : nxt - op.offset]))
        pos = nxt
    return out


# ------------------------------------------------------------------ states
def enumerate_states(rec: Recording, cfg: LabConfig) -> list[State]:
    rng = random.Random(cfg.seed)
    n_epochs = len(rec.epoch_end)
    by_epoch: list[list[int]] = [[] for _ in range(n_epochs)]
    for i, e in enumerate(rec.epoch_of):
        by_epoch[e].append(i)
    seen: set[Any] = set()
    out: list[State] = []
    before: list[int] = []

    def add(kind: str, epoch: int, chosen: list[int],
            torn: tuple[int, tuple[int, ...]] | None = None) -> None:
        key = (frozenset(before) | frozenset(chosen), torn)
        if key in seen:
            return
        seen.add(key)
        out.append(State(len(out), kind, epoch, tuple(before + sorted(chosen)), torn,
                         rec.epoch_end[epoch]))

    for k in range(n_epochs):
        cur = by_epoch[k]
        if "prefix" in cfg.states:
            add("prefix", k, [])
        if "reorder" in cfg.states and cur:
            if len(cur) <= EXHAUSTIVE_MAX:
                for r in range(len(cur) + 1):
                    for combo in itertools.combinations(cur, r):
                        add("reorder", k, list(combo))
            else:
                for r in range(len(cur) + 1):  # in issue order first
                    add("reorder", k, cur[:r])
                tries = 0
                budget = cfg.max_states
                while budget > 0 and tries < cfg.max_states * 4:
                    tries += 1
                    sub = [w for w in cur if rng.random() < 0.5]
                    n0 = len(out)
                    add("reorder", k, sub)
                    budget -= len(out) - n0
        if "torn" in cfg.states and cur:
            for pos, w in enumerate(cur):
                nsec = -(-len(rec.writes[w].data) // SECTOR)
                if nsec < 2:
                    continue
                picks: set[tuple[int, ...]] = set()
                for j in sorted({1, nsec // 2, nsec - 1}):
                    picks.add(tuple(range(j)))  # a prefix of the sectors reached the disk
                picks.add(tuple(s for s in range(nsec) if rng.random() < 0.5))
                for secs in sorted(picks):
                    if 0 < len(secs) < nsec:
                        add("torn", k, cur[:pos], (w, secs))
        if "prefix" in cfg.states and k == n_epochs - 1 and cur:
            add("prefix", k, cur)  # the end of the trace: everything written reached the disk
        before.extend(cur)
    return out


# ------------------------------------------------------------------ evaluation
MISSING = None


class _Error(bytes):
    """Content that could not be read (its text says why)."""


Entry = tuple[CheckResult, dict[str, Any], bool | None]  # memo: verdict, files, repaired


class Evaluator:
    """Builds, recovers and checks states; one per process (memoised by image digest).

    The memo key of a state is the digest of its recovered image (a clean journal's log
    blocks left out) plus why the mount was refused, if it was. ``shared``: a directory
    through which forked workers share memo entries, so a distinct image is checked once
    per run, not once per worker."""

    def __init__(self, rec: Recording, cfg: LabConfig):
        self.rec = rec
        self.cfg = cfg
        self.base_dev = Overlay(rec.base)
        self.checker = make_checker(cfg.checker, self.base_dev)
        self.oracle = E2fsckChecker() if cfg.oracle == "e2fsck" else None
        self.sampler = E2fsckChecker()
        self.memo: dict[bytes, Entry] = {}
        self.shared: str | None = None
        self.oracle_runs = 0
        self.nojournal = cfg.mode == "nojournal"
        # overlay after all writes of epochs < k
        self._epoch_pages: dict[int, dict[int, bytes]] = {}
        self._build_epoch_bases()
        self.paths = sorted(rec.ctx.versions)
        # after a mount the journal is empty: its log blocks no longer matter
        bs = 4096
        jpages = sorted(b * bs // PAGE for b in rec.journal_blocks)
        self.skip = frozenset(jpages[1:])
        self._write_pages: list[list[tuple[int, Any]]] | None = None
        self._epoch_keys: list[dict[int, Any]] = []

    def _build_epoch_bases(self) -> None:
        ov = Overlay(self.rec.base)
        k = 0
        self._epoch_pages[0] = {}
        self._epoch_start = [0]
        for i, w in enumerate(self.rec.writes):
            while self.rec.epoch_of[i] > k:
                k += 1
                self._epoch_pages[k] = dict(ov.pages)
                self._epoch_start.append(i)
            ov.write(w.offset, w.data)
        while k < len(self.rec.epoch_end) - 1:
            k += 1
            self._epoch_pages[k] = dict(ov.pages)
            self._epoch_start.append(len(self.rec.writes))

    def build(self, st: State) -> Overlay:
        """The state's image before recovery."""
        ov = Overlay(self.rec.base, self._epoch_pages[st.epoch])
        start = self._epoch_start[st.epoch]
        writes = self.rec.writes
        for i in st.writes:
            if i >= start:
                ov.write(writes[i].offset, writes[i].data)
        if st.torn is not None:
            w = writes[st.torn[0]]
            for s in st.torn[1]:
                ov.write(w.offset + s * SECTOR, w.data[s * SECTOR : (s + 1) * SECTOR])
        return ov

    # ---------------------------------------------------------- de-duplication
    def _prepare_keys(self) -> None:
        """Per write, what it does to each page it touches: a full page becomes content
        (its hash; None when equal to the base image's page); a partial page becomes a
        function of the write and the page's previous content."""
        base = self.rec.base
        out: list[list[tuple[int, Any]]] = []
        for i, w in enumerate(self.rec.writes):
            pages: list[tuple[int, Any]] = []
            off, data = w.offset, w.data
            pos = 0
            while pos < len(data):
                p = (off + pos) // PAGE
                s = off + pos - p * PAGE
                take = min(PAGE - s, len(data) - pos)
                if s == 0 and take == PAGE:
                    page = bytes(data[pos : pos + PAGE])
                    same = page == base[p * PAGE : (p + 1) * PAGE]
                    pages.append((p, None if same else
                                  ("f", hashlib.blake2b(page, digest_size=16).digest())))
                else:
                    pages.append((p, ("p", i)))
                pos += take
            out.append(pages)
        self._write_pages = out
        m: dict[int, Any] = {}
        self._epoch_keys = [dict(m)]
        k = 0
        for i in range(len(self.rec.writes)):
            while self.rec.epoch_of[i] > k:
                k += 1
                self._epoch_keys.append(dict(m))
            self._apply_key(m, i)
        while k < len(self.rec.epoch_end) - 1:
            k += 1
            self._epoch_keys.append(dict(m))

    def _apply_key(self, m: dict[int, Any], i: int) -> None:
        assert self._write_pages is not None
        for p, cid in self._write_pages[i]:
            if cid is None:
                m.pop(p, None)
            elif cid[0] == "p":
                m[p] = (cid, m.get(p))
            else:
                m[p] = cid

    def image_key(self, st: State) -> tuple[int, frozenset[tuple[int, Any]]]:
        """Equal keys, equal images before recovery and the same crash point -- so the
        same result. Cheaper than building the state: no page is copied or hashed."""
        if self._write_pages is None:
            self._prepare_keys()
        assert self._write_pages is not None
        m = dict(self._epoch_keys[st.epoch])
        start = self._epoch_start[st.epoch]
        for i in st.writes:
            if i >= start:
                self._apply_key(m, i)
        if st.torn is not None:
            w, secs = st.torn
            for p, _cid in self._write_pages[w]:
                m[p] = ("t", w, secs, m.get(p))
        return st.crash_seq, frozenset(m.items())

    # ---------------------------------------------------------- recovery, check
    def mount(self, ov: Overlay) -> str | None:
        """What mounting does before anything else: ext4kit's journal recovery (as
        ``ext4kit.open(..., "r+")`` runs it), or, when the superblock does not ask for
        recovery, discarding the log as the kernel does. Returns why the kernel would
        refuse the mount (a failed recovery), else None."""
        from ..jbd2.log import JournalArea, recover

        if self.nojournal:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fs = FileSystem(ov, owns_dev=False)
            if fs.sb.has_incompat("needs_recovery"):
                plan = recover(fs, write=True)
                if plan is not None and plan.error:
                    return f"journal recovery failed: {plan.error} (the kernel refuses the mount)"
                if plan is not None and plan.failed_commit is not None:
                    return (f"journal transaction {plan.failed_commit} was corrupt, replay was "
                            f"aborted (the kernel refuses the mount)")
            elif fs.sb.has_compat("has_journal"):
                area = JournalArea.of(fs)
                jsb = area.read_superblock()
                if jsb.s_start:  # "JBD2: Clearing recovery information on journal"
                    jsb.s_start = 0
                    area.write_superblock(jsb)
        except Ext4Error as exc:
            return f"journal recovery failed: {exc}"
        return None

    def observe(self, ov: Overlay) -> dict[str, Any]:
        """Each model path: (inode, content) or MISSING or an _Error."""
        out: dict[str, Any] = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fs = FileSystem(ov, owns_dev=False)
        except Ext4Error as exc:
            return {p: _Error(f"cannot open: {exc}".encode()) for p in self.paths}
        for p in self.paths:
            try:
                st = fs.lstat(p)
            except FileNotFoundError:
                out[p] = MISSING
                continue
            except (OSError, Ext4Error) as exc:
                out[p] = _Error(f"lookup: {exc}".encode())
                continue
            try:
                out[p] = (st.st_ino, fs.read_bytes(p))
            except (OSError, Ext4Error) as exc:
                out[p] = (st.st_ino, _Error(f"read: {exc}".encode()))
        return out

    def recover(self, st: State) -> tuple[Overlay, bytes, str | None]:
        """The state built and mounted: (image, memo key, why the mount was refused)."""
        ov = self.build(st)
        note = self.mount(ov)
        key = ov.digest(self.skip)
        if note is not None:
            key = hashlib.blake2b(key + note.encode(), digest_size=16).digest()
        return ov, key, note

    def _lookup(self, key: bytes) -> Entry | None:
        got = self.memo.get(key)
        if got is None and self.shared is not None:
            try:
                with open(os.path.join(self.shared, key.hex()), "rb") as f:
                    got = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError):
                return None
            self.memo[key] = got
        return got

    def _store(self, key: bytes, entry: Entry) -> None:
        self.memo[key] = entry
        if self.shared is not None:
            path = os.path.join(self.shared, key.hex())
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "wb") as f:
                pickle.dump(entry, f, pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)

    def judge(self, ov: Overlay, note: str | None, extra: CheckResult | None = None,
              res: CheckResult | None = None) -> Entry:
        """Check a recovered image: (metadata verdict, what the files hold, repaired)."""
        if res is None:
            res = self.checker.check(ov) if note is None else CheckResult(False, [note])
        if extra is None and self.oracle is not None:
            extra = self.oracle.check(ov)
            self.oracle_runs += 1
        if extra is not None and not extra.ok:
            res = CheckResult(False, res.problems + extra.problems, res.checker + "+e2fsck")
        repaired = None
        if not res.ok and (self.nojournal or note is not None) and self.cfg.repair:
            repaired = repair(ov)
        return res, self.observe(ov), repaired

    def evaluate(self, st: State) -> StateResult:
        ov, key, note = self.recover(st)
        entry = self._lookup(key)
        if entry is None:
            entry = self.judge(ov, note)
            self._store(key, entry)
        return self.result(st, entry, key)

    def sample(self, st: State) -> Entry | None:
        """``e2fsck -fn`` on the state's recovered image too. Returns the corrected memo
        entry when e2fsck finds what the checker did not, else None."""
        ov, key, note = self.recover(st)
        entry = self._lookup(key)
        extra = self.sampler.check(ov)
        self.oracle_runs += 1
        if extra.ok and entry is not None:
            return None
        entry = self.judge(ov, note, extra, entry[0] if entry is not None else None)
        self._store(key, entry)
        return entry

    def result(self, st: State, entry: Entry, key: bytes) -> StateResult:
        res, obs, repaired = entry
        classes = ["consistent" if res.ok else "inconsistent"]
        details: list[tuple[str, str]] = []
        if not res.ok:
            details.append(("inconsistent", "; ".join(res.problems[:4])))
            if repaired:
                classes.append("repaired")
        for cls, detail in self.classify(obs, st.crash_seq):
            if cls not in classes:
                classes.append(cls)
            details.append((cls, detail))
        return StateResult(st.id, classes[0], classes, details, key.hex())

    def classify(self, obs: dict[str, Any], crash_seq: int) -> list[tuple[str, str]]:
        ctx = self.rec.ctx
        floor: dict[str, int] = {}
        for d in ctx.durable:
            if d.seq < crash_seq:
                for p, idx in d.versions.items():
                    floor[p] = max(floor.get(p, 0), idx)
        out: list[tuple[str, str]] = []
        rename_dsts = {r.dst: r for r in ctx.renames if r.old_dst_ino is not None}
        for p in self.paths:
            versions = ctx.versions[p]
            lo = floor.get(p, 0)
            got = obs.get(p)
            content = got[1] if isinstance(got, tuple) else got
            if isinstance(content, _Error):
                out.append(("garbage_data", f"{p}: {bytes(content).decode(errors='replace')}"))
                continue
            if content in versions[lo:]:
                continue
            shown = "missing" if content is None else f"{len(content)} bytes"
            if content is None and p in rename_dsts and None not in versions:
                out.append(("atomicity", f"{p}: neither the old nor the new file after "
                                         f"rename {rename_dsts[p].src} -> {p}"))
            elif content in versions[:lo]:
                out.append(("fsync_lost", f"{p}: an older version ({shown}) after the "
                                          f"fsync of version {lo} returned"))
            elif content is None:
                out.append(("fsync_lost", f"{p}: missing, though it was durable"))
            else:
                if content == b"":
                    out.append(("zero_length", f"{p}: empty, but it only ever had content"))
                else:
                    out.append(("garbage_data", f"{p}: {shown} that the workload never wrote"
                                                + _diff_hint(content, versions)))
                if lo > 0:
                    out.append(("fsync_lost", f"{p}: not the version whose fsync returned"))
        for r in ctx.renames:
            a, b = obs.get(r.src), obs.get(r.dst)
            if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == r.ino:
                out.append(("atomicity", f"both {r.src} and {r.dst} name inode {r.ino}"))
        return out


def _diff_hint(content: bytes, versions: list[bytes | None]) -> str:
    best = None
    for v in versions:
        if v is None or len(v) != len(content):
            continue
        bad = [i // PAGE for i in range(0, len(v), SECTOR) if v[i : i + SECTOR] != content[i : i + SECTOR]]
        if best is None or len(bad) < len(best):
            best = bad
    if best:
        return f" (differs from a version of its size in block(s) {sorted(set(best))})"
    return ""


# ------------------------------------------------------------------ running
# --jobs N: states are evaluated in this process until the rest is estimated (at the
# recent or the average rate, whichever is slower; re-estimated every PROBE_SECONDS) to
# take at least PARALLEL_MIN_SECONDS on one core; then the workers are forked for the rest
# (forking costs a few ms: they inherit everything). A chunk is >= CHUNK_SECONDS of work.
PROBE_SECONDS = 0.02
PARALLEL_MIN_SECONDS = 0.25
CHUNK_SECONDS = 0.02

# What forked workers inherit (never pickled): the evaluator (recording, base image, epoch
# overlays, checker) and the states; a task is only a (start, end) range of ``order``.
_JOB: tuple[Evaluator, list[State], list[int]] | None = None


def _run_chunk(bounds: tuple[int, int]) -> tuple[int, int, bytes, list[Any], int]:
    """Evaluate states order[lo:hi] in a worker. Returns small data only: per state an
    index into a table of the distinct results of the chunk."""
    assert _JOB is not None
    ev, states, order = _JOB
    lo, hi = bounds
    table: dict[tuple[Any, ...], int] = {}
    idx = array.array("I")
    runs = ev.oracle_runs
    for j in range(lo, hi):
        r = ev.evaluate(states[order[j]])
        payload = (r.verdict, tuple(r.classes), tuple(r.details), r.digest)
        idx.append(table.setdefault(payload, len(table)))
    return lo, hi, idx.tobytes(), list(table), ev.oracle_runs - runs


def chunk_bounds(lo: int, n: int, jobs: int, min_size: int = 1) -> list[tuple[int, int]]:
    """Contiguous ranges of [lo, n), largest first (guided scheduling): neighbouring states
    share recovered images, and the small chunks at the end even out the workers."""
    out = []
    while lo < n:
        size = max(min_size, (n - lo) // (2 * jobs), 1)
        out.append((lo, min(n, lo + size)))
        lo += size
    return out


def _fork_workers(jobs: int, tasks: list[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Run ``fn`` over ``tasks`` in ``jobs`` processes forked once (they inherit everything,
    nothing big is pickled; no pool threads). Yields the results as they come; a worker
    takes the next task when it hands in one."""
    from multiprocessing.connection import Pipe, wait

    procs: list[tuple[int, Any]] = []
    try:
        for _ in range(min(jobs, len(tasks))):
            parent_end, child_end = Pipe()
            pid = os.fork()
            if pid == 0:  # the worker
                code = 0
                try:
                    parent_end.close()
                    for _pid, other in procs:
                        other.close()
                    while True:
                        task = child_end.recv()
                        if task is None:
                            break
                        try:
                            child_end.send((True, fn(task)))
                        except Exception:  # noqa: BLE001 - handed to the parent
                            import traceback

                            child_end.send((False, traceback.format_exc()))
                except BaseException:  # noqa: BLE001 - the parent went away
                    code = 1
                finally:
                    os._exit(code)
            child_end.close()
            procs.append((pid, parent_end))
        todo = iter(tasks)
        busy: dict[Any, Any] = {}
        for _pid, conn in procs:
            busy[conn] = conn
            conn.send(next(todo))
        while busy:
            for ready in wait(list(busy)):
                conn = busy[ready]
                try:
                    ok, got = conn.recv()
                except EOFError:
                    raise RuntimeError("a crash-lab worker died") from None
                if not ok:
                    raise RuntimeError(f"a crash-lab worker failed:\n{got}")
                nxt = next(todo, None)
                conn.send(nxt)
                if nxt is None:
                    del busy[conn]
                yield got
    finally:
        for _pid, conn in procs:
            try:
                conn.close()
            except OSError:
                pass
        for pid, _conn in procs:
            try:
                if os.waitpid(pid, os.WNOHANG) == (0, 0):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _evaluate_parallel(ev: Evaluator, states: list[State], order: list[int], start: int,
                       jobs: int, min_chunk: int, results: list[StateResult | None],
                       progress: Callable[[int], None] | None) -> int:
    """Evaluate states order[start:] in forked workers; returns their e2fsck runs."""
    global _JOB
    shared = tempfile.mkdtemp(prefix="ext4kit-crash-memo-")
    ev.shared = shared
    _JOB = (ev, states, order)
    runs = 0
    done = start
    try:
        for lo, hi, raw, table, n_runs in _fork_workers(
                jobs, chunk_bounds(start, len(order), jobs, min_chunk), _run_chunk):
            idx = array.array("I")
            idx.frombytes(raw)
            made = [StateResult(-1, v, list(c), list(d), h) for v, c, d, h in table]
            for j, t in zip(range(lo, hi), idx):
                r = made[t]
                sid = order[j]
                results[sid] = StateResult(sid, r.verdict, r.classes, r.details, r.digest)
            runs += n_runs
            done += hi - lo
            if progress:
                progress(done)
    finally:
        _JOB = None
    return runs


def run_lab(cfg: LabConfig, progress: Callable[[int, int], None] | None = None,
            export: str | os.PathLike | None = None) -> LabResult:
    t0 = time.perf_counter()
    rec = record(cfg)
    states = enumerate_states(rec, cfg)
    ev = Evaluator(rec, cfg)
    # states whose images (before recovery) and crash points are equal have one result:
    # evaluate one of each
    first: dict[Any, int] = {}
    order: list[int] = []
    dup_of: dict[int, int] = {}
    for st in states:
        key = ev.image_key(st)
        got = first.get(key)
        if got is None:
            first[key] = st.id
            order.append(st.id)
        else:
            dup_of[st.id] = got
    results: list[StateResult | None] = [None] * len(states)
    n_states = len(states)
    n_todo = len(order)
    report = None if progress is None else (lambda done: progress(done, n_todo))
    workers = 0
    t_start = t_mark = time.perf_counter()
    j_mark = 0
    per_state = 0.0
    probing = cfg.jobs > 1 and n_todo >= 2 * cfg.jobs and hasattr(os, "fork")
    j = 0
    while j < n_todo:
        if probing and j >= 2 and j > j_mark:
            now = time.perf_counter()
            if now - t_mark >= PROBE_SECONDS:
                per_state = max((now - t_start) / j, (now - t_mark) / (j - j_mark))
                if per_state * (n_todo - j) >= PARALLEL_MIN_SECONDS:
                    workers = min(cfg.jobs, n_todo - j)
                    break
                t_mark, j_mark = now, j
        sid = order[j]
        results[sid] = ev.evaluate(states[sid])
        j += 1
        if report and (j % 16 == 0 or j == n_todo):
            report(j)
    oracle_runs = ev.oracle_runs
    try:
        if workers:
            min_chunk = max(1, int(CHUNK_SECONDS / per_state))
            oracle_runs += _evaluate_parallel(ev, states, order, j, workers, min_chunk,
                                              results, report)
        for sid, rep in dup_of.items():
            r = results[rep]
            assert r is not None
            results[sid] = StateResult(sid, r.verdict, r.classes, r.details, r.digest)
        final: list[StateResult] = [r for r in results if r is not None]
        assert len(final) == n_states
        # e2fsck -fn on a sample: the first distinct recovered images in state order (the
        # same ones however the states were split over workers)
        if cfg.oracle is None and cfg.oracle_sample > 0:
            runs0 = ev.oracle_runs
            picked: dict[str, int] = {}
            for r in final:
                if r.digest not in picked:
                    picked[r.digest] = r.state
                    if len(picked) >= cfg.oracle_sample:
                        break
            for digest, sid in picked.items():
                entry = ev.sample(states[sid])
                if entry is not None:
                    mkey = bytes.fromhex(digest)
                    for i, r in enumerate(final):
                        if r.digest == digest:
                            final[i] = ev.result(states[i], entry, mkey)
            oracle_runs += ev.oracle_runs - runs0
    finally:
        if ev.shared is not None:
            shutil.rmtree(ev.shared, ignore_errors=True)
            ev.shared = None
    checks = len({r.digest for r in final})
    out = LabResult(cfg, rec, states, final, time.perf_counter() - t0, checks, oracle_runs,
                    workers)
    if export is not None:
        export_states(out, export, ev)
    return out


def export_states(result: LabResult, directory: str | os.PathLike,
                  ev: Evaluator | None = None) -> None:
    """Every explored state as an image (before recovery) and DIR/manifest.json."""
    import json

    ev = ev or Evaluator(result.recording, result.config)
    os.makedirs(directory, exist_ok=True)
    nz = nonzero_pages(result.recording.base)
    manifest = []
    for st, r in zip(result.states, result.results):
        name = f"state-{st.id:05d}.img"
        ev.build(st).save(os.path.join(directory, name), nz)
        w = result.recording.writes
        manifest.append({
            "image": name, "verdict": r.verdict, "classes": r.classes, "kind": st.kind,
            "epoch": st.epoch,
            "writes": [{"seq": w[i].seq, "offset": w[i].offset, "length": len(w[i].data)}
                       for i in st.writes],
            "torn": None if st.torn is None else {"seq": w[st.torn[0]].seq,
                                                  "sectors": list(st.torn[1])},
            "details": [{"class": c, "detail": d} for c, d in r.details]})
    cfg = result.config
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump({"workload": cfg.workload, "mode": cfg.mode, "options": cfg.options,
                   "journal": cfg.mode != "nojournal", "states": manifest}, f, indent=1)


__all__ = ["LabConfig", "LabResult", "State", "StateResult", "run_lab", "record",
           "enumerate_states", "Evaluator", "export_states", "QuickChecker", "MODES", "CLASSES"]
