"""Workloads: what a crash-lab run does to the file system, and the model the checks use.

A workload is a Python function ``run(ctx)`` over :class:`Ctx`, optionally with a
``setup(ctx)`` that builds the starting image (committed and unmounted cleanly, so it is
the base every crash state starts from). ``ctx`` wraps the file-system API and keeps the
model the checks need: every version of every regular file path (as the program saw it),
the fsyncs and syncs that returned, and each rename. Each step and each returned
fsync/sync leaves a mark in the trace.

Add your own with :func:`register`::

    @register("my-workload", "one line for the help")
    def my_workload(ctx):
        ctx.write("/f", b"x" * 5000)
        ctx.fsync("/f")
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..blockdev import RecordingDevice

BLOCK = 4096


@dataclass
class RenameRecord:
    seq: int  # trace position of the rename's step mark
    src: str
    dst: str
    ino: int  # the inode that moved
    old_dst_ino: int | None  # the inode the destination named before


@dataclass
class Durable:
    seq: int  # trace position of the mark: the fsync/sync returned here
    path: str | None  # None: sync (every path)
    versions: dict[str, int]  # path -> index of the version made durable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Ctx:
    fs: Any
    dev: RecordingDevice | None
    rng: random.Random
    params: dict[str, Any] = field(default_factory=dict)
    clock: FakeClock = field(default_factory=FakeClock)
    versions: dict[str, list[bytes | None]] = field(default_factory=dict)
    durable: list[Durable] = field(default_factory=list)
    renames: list[RenameRecord] = field(default_factory=list)
    steps: list[tuple[int, str]] = field(default_factory=list)

    # -------------------------------------------------------------- model plumbing
    def _seq(self) -> int:
        return self.dev._seq if self.dev is not None else 0

    def mark(self, label: str) -> int:
        if self.dev is not None:
            self.dev.mark(label)
        return self._seq()

    def step(self, label: str) -> None:
        self.steps.append((self.mark("step " + label), label))

    def _now(self, path: str) -> bytes | None:
        vs = self.versions.get(path)
        return vs[-1] if vs else None

    def _set(self, path: str, content: bytes | None) -> None:
        vs = self.versions.setdefault(path, [None])
        if vs[-1] != content:
            vs.append(content)

    def adopt(self) -> None:
        """Take every regular file of the (set-up) file system into the model, durable."""
        for top, _dirs, files in self.fs.walk("/"):
            for name in files:
                p = top.rstrip("/") + "/" + name
                if p.startswith("/lost+found"):
                    continue
                self.versions[p] = [self.fs.read_bytes(p)]

    # -------------------------------------------------------------- operations
    def write(self, path: str, data: bytes) -> None:
        """open(path, "wb").write(data); close: the path shows b"" then data."""
        self.step(f"write {path} ({len(data)} bytes)")
        existed = self.fs.exists(path)
        with self.fs.open(path, "wb") as f:
            if existed or path not in self.versions:
                self._set(path, b"")
            f.write(data)
        self._set(path, data)

    def append(self, path: str, data: bytes) -> None:
        self.step(f"append {path} ({len(data)} bytes)")
        with self.fs.open(path, "ab") as f:
            f.write(data)
        self._set(path, (self._now(path) or b"") + data)

    def fsync(self, path: str) -> None:
        self.step(f"fsync {path}")
        with self.fs.open(path, "rb+") as f:
            f.raw.fsync()
        seq = self.mark(f"fsync {path}")
        idx = len(self.versions[path]) - 1 if path in self.versions else 0
        self.durable.append(Durable(seq, path, {path: idx} if path in self.versions else {}))

    def fsync_dir(self, path: str) -> None:
        """fsync of a directory: commits the running transaction (its entries)."""
        self.step(f"fsync dir {path}")
        self.fs.commit()
        seq = self.mark(f"fsync {path}/")
        prefix = path.rstrip("/") + "/"
        vs = {p: len(v) - 1 for p, v in self.versions.items()
              if p.startswith(prefix) and "/" not in p[len(prefix):] and v[-1] in (None, )}
        self.durable.append(Durable(seq, path, vs))

    def sync(self) -> None:
        self.step("sync")
        self.fs.sync()
        seq = self.mark("sync")
        self.durable.append(Durable(seq, None, {p: len(v) - 1 for p, v in self.versions.items()}))

    def sleep(self, seconds: float) -> None:
        """Let time pass: the journal's commit timer and the flusher run (as in the kernel)."""
        self.step(f"sleep {seconds:g}s")
        self.clock.now += seconds
        run = getattr(self.fs, "run_timers", None)
        if run is not None:
            run()
        elif self.fs.journal.should_commit():
            self.fs.commit()

    def rename(self, src: str, dst: str) -> None:
        self.step(f"rename {src} {dst}")
        ino = self.fs.lstat(src).st_ino
        old = self.fs.lstat(dst).st_ino if self.fs.lexists(dst) else None
        self.fs.rename(src, dst)
        self.renames.append(RenameRecord(self._seq(), src, dst, ino, old))
        if src in self.versions:
            content = self._now(src)
            self._set(dst, content)
            self._set(src, None)

    def unlink(self, path: str) -> None:
        self.step(f"unlink {path}")
        self.fs.unlink(path)
        self._set(path, None)

    def mkdir(self, path: str) -> None:
        self.step(f"mkdir {path}")
        self.fs.mkdir(path)

    def rmdir(self, path: str) -> None:
        self.step(f"rmdir {path}")
        self.fs.rmdir(path)

    def create_empty(self, path: str) -> None:
        self.step(f"create {path}")
        with self.fs.open(path, "xb"):
            pass
        self._set(path, b"")


# ------------------------------------------------------------------ registry
@dataclass
class Workload:
    name: str
    help: str
    run: Callable[[Ctx], None]
    setup: Callable[[Ctx], None] | None = None
    params: tuple[str, ...] = ()  # parameters it understands (e.g. "fsync")


WORKLOADS: dict[str, Workload] = {}


def register(name: str, help: str = "", *, setup: Callable[[Ctx], None] | None = None,
             params: tuple[str, ...] = ()) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def deco(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        WORKLOADS[name] = Workload(name, help or (fn.__doc__ or "").strip().split("\n")[0],
                                   fn, setup, params)
        return fn
    return deco


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r} (one of {', '.join(sorted(WORKLOADS))})") from None


def _pattern(tag: int, n: int) -> bytes:
    """Recognisable, non-zero content (garbage is easy to tell apart from it)."""
    unit = (f"<{tag:02x}>".encode() * 1024)[:BLOCK]
    return (unit * (n // BLOCK + 1))[:n]


# ------------------------------------------------------------------ built-in workloads
def _append_setup(ctx: Ctx) -> None:
    ctx.fs.write_bytes("/file", _pattern(1, BLOCK))


@register("append", "a file with one 4 KiB block gets a second block appended; 40 s later "
          "(the flusher wrote it back, the journal's timer committed) an fsync",
          setup=_append_setup)
def append(ctx: Ctx) -> None:
    ctx.append("/file", _pattern(2, BLOCK))
    # the background path, 5 s at a time: at 30 s the flusher writes the page back (the
    # block is allocated, its data submitted), at 35 s the journal's timer commits without
    # waiting for that data (what data=writeback does not order); then the fsync
    for _ in range(8):
        ctx.sleep(5)
    ctx.fsync("/file")


@register("create-files", "six new files of 1-12 KiB; two of them fsynced, then a sync")
def create_files(ctx: Ctx) -> None:
    ctx.mkdir("/d")
    for i in range(6):
        ctx.write(f"/d/f{i}", _pattern(10 + i, 1024 + 2300 * i))
        if i in (1, 4):
            ctx.fsync(f"/d/f{i}")
    ctx.sync()


def _rr_setup(ctx: Ctx) -> None:
    ctx.fs.write_bytes("/config", _pattern(1, 6000))


@register("rename-replace", "new content written to a temp file and renamed over an existing "
          "file, without fsync (--fsync: fsync the temp file, then the directory)",
          setup=_rr_setup, params=("fsync",))
def rename_replace(ctx: Ctx) -> None:
    fsync = bool(ctx.params.get("fsync"))
    ctx.write("/config.tmp", _pattern(2, 7000))
    if fsync:
        ctx.fsync("/config.tmp")
    ctx.rename("/config.tmp", "/config")
    if fsync:
        ctx.fsync_dir("/")
        ctx.durable[-1].versions["/config"] = len(ctx.versions["/config"]) - 1
    else:
        ctx.sleep(5.5)  # the journal's commit timer fires; the flusher (30 s) has not


@register("delete-reuse", "a directory's block is freed and reused as a new file's data "
          "(the revoke case)")
def delete_reuse(ctx: Ctx) -> None:
    ctx.mkdir("/dir")
    names = [f"/dir/entry-with-a-long-name-{i:04d}" for i in range(40)]
    ctx.step("create 40 entries")
    for n in names:
        ctx.fs.write_bytes(n, b"")
        ctx._set(n, b"")
    ctx.sync()  # the directory block is in the log
    ctx.step("delete them and the directory")
    for n in names:
        ctx.fs.unlink(n)
        ctx._set(n, None)
    ctx.rmdir("/dir")
    ctx.sync()  # freed (and revoked) in a committed transaction
    ctx.write("/file", _pattern(7, 4 * BLOCK))
    ctx.fsync("/file")  # the file's data reuses the directory's block


@register("mixed", "seeded random creates, writes, appends, renames, unlinks, fsyncs")
def mixed(ctx: Ctx) -> None:
    rng = ctx.rng
    ctx.mkdir("/m")
    live: list[str] = []
    n = 0
    for _ in range(int(ctx.params.get("ops", 14))):
        op = rng.choice(["create", "create", "append", "write", "rename", "unlink", "fsync",
                         "sleep"])
        if op == "create" or not live:
            n += 1
            p = f"/m/f{n}"
            ctx.write(p, _pattern(n, rng.randrange(1, 3 * BLOCK)))
            live.append(p)
        elif op == "append":
            p = rng.choice(live)
            ctx.append(p, _pattern(50 + n, rng.randrange(1, 2 * BLOCK)))
        elif op == "write":
            p = rng.choice(live)
            ctx.write(p, _pattern(100 + n, rng.randrange(1, 2 * BLOCK)))
        elif op == "rename":
            src = rng.choice(live)
            if len(live) > 1 and rng.random() < 0.5:
                dst = rng.choice([x for x in live if x != src])
                live.remove(dst)
            else:
                n += 1
                dst = f"/m/f{n}"
            ctx.rename(src, dst)
            live[live.index(src)] = dst
        elif op == "unlink":
            p = rng.choice(live)
            ctx.unlink(p)
            live.remove(p)
        elif op == "fsync":
            ctx.fsync(rng.choice(live))
        else:
            ctx.sleep(5.5)
