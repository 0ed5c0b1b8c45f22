"""Helpers for tests that feed broken or hostile images to ext4kit: run the CLI under a
time and memory limit, judge how a command ended, and sweep an image through the API.

A command ends well when it finishes in time, shows no traceback and no "internal error"
(an unexpected exception), prefixes every stderr line with ``ext4kit: ``, and, when it
fails, prints exactly one error line (``ext4kit: warning:`` lines may come with it) and
exits 1 (path), 4 (corrupt) or 8 (operational).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from ext4kit.errors import Ext4Error
from ext4kit.fs import dirs

CLI_TIMEOUT = 30
MEMORY_LIMIT = 1 << 30  # address space of one CLI run: unbounded allocation fails, visibly

# Sets the limit in the child itself (no preexec_fn: the callers run in threads).
_LAUNCH = (
    "import resource, runpy, sys\n"
    "lim = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_AS, (lim, lim))\n"
    "sys.argv[0] = 'ext4kit'\n"
    "runpy.run_module('ext4kit', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class CliRun:
    args: list[str]
    rc: int | None  # None: did not finish within the timeout (killed)
    stdout: bytes
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"ext4kit {' '.join(self.args)} -> rc={self.rc} in {self.seconds:.1f}s\n"
                f"stderr:\n{self.stderr[-3000:]}")


def run_cli(*args: str, timeout: float = CLI_TIMEOUT) -> CliRun:
    """``python -m ext4kit ARGS`` with a timeout and an address-space limit."""
    env = dict(os.environ)
    env.pop("EXT4KIT_DEBUG", None)
    env["OPENBLAS_NUM_THREADS"] = "1"  # numpy's BLAS threads reserve address space
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", _LAUNCH, str(MEMORY_LIMIT), *args],
                           capture_output=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        rc, out = None, exc.stdout or b""
        err = (exc.stderr or b"").decode(errors="replace")
    return CliRun([str(a) for a in args], rc, out, err, time.monotonic() - t0)


def cli_problems(run: CliRun) -> list[str]:
    """What is wrong with how a command ended (empty: a clean success or a clean error)."""
    if run.rc is None:
        return [f"did not finish within {CLI_TIMEOUT}s (loop or unbounded work?)"]
    out = []
    if "Traceback" in run.stderr:
        out.append("traceback on stderr")
    if "internal error" in run.stderr:
        out.append("'internal error' (an unexpected exception) on stderr")
    if "MemoryError" in run.stderr:
        out.append(f"ran out of its {MEMORY_LIMIT >> 20} MiB address space (unbounded allocation?)")
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    unprefixed = [ln for ln in lines if not ln.startswith("ext4kit: ")]
    if unprefixed:
        out.append(f"stderr lines without the 'ext4kit: ' prefix: {unprefixed[:3]}")
    errors = [ln for ln in lines
              if ln.startswith("ext4kit: ") and not ln.startswith("ext4kit: warning:")]
    if run.rc == 0:
        if errors:
            out.append(f"exit 0 but error lines: {errors[:3]}")
    else:
        if run.rc not in (1, 4, 8):
            out.append(f"exit code {run.rc} not in (1, 4, 8)")
        if len(errors) != 1:
            out.append(f"{len(errors)} error lines instead of exactly one: {errors[:3]}")
    return out


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(f"API sweep took longer than {self.seconds}s (loop?)")


def sweep_any(fs, seconds: float = 60, max_read: int = 64 << 20) -> int:
    """Touch everything reachable by inode number (names may be unusable as paths): stat,
    xattrs, symlink targets, file data (the first ``max_read`` bytes), then walk by path.
    Only Ext4Error / OSError may come out of a single step, and the whole sweep must end
    within ``seconds``. Returns how many directory entries it looked at."""
    deadline = Deadline(seconds)
    try:
        stack = [fs.get_inode(2)]
    except Ext4Error:
        return 0
    seen: set[int] = set()
    count = 0
    while stack:
        deadline.check()
        d = stack.pop()
        if d.ino in seen:
            continue
        seen.add(d.ino)
        try:
            entries = list(dirs.iter_entries(fs, d))
        except (Ext4Error, OSError):
            continue
        for e in entries:
            deadline.check()
            count += 1
            try:
                inode = fs.get_inode(e.inode)
                fs.stat_inode(inode)
                fs.xattrs_of(inode)
                fs.block_map(inode)
                if inode.is_dir():
                    stack.append(inode)
                elif inode.is_symlink():
                    fs._readlink_inode(inode)
                elif inode.is_reg():
                    size = fs.data_size(inode)
                    pos = 0
                    while pos < min(size, max_read):
                        fs.inode_read(inode, pos, 4 << 20)
                        pos += 4 << 20
            except (Ext4Error, OSError):
                continue
    try:
        for _top, _dirs, _files in fs.walk("/"):
            deadline.check()
    except (Ext4Error, OSError):
        pass
    return count
