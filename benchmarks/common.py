"""Shared helpers for `make bench`: timing whole processes, building images, kernel mounts."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXT4KIT = [sys.executable, "-m", "ext4kit"]
# kernel mounts: no background inode-table zeroing (ext4lazyinit) during the timed part
KERNEL_MOUNT_OPTS = "rw,noinit_itable"


def payload(n: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def timed(cmd: list[str], repeat: int = 3, setup=None, stdout=subprocess.DEVNULL) -> float:
    """Best wall time of ``repeat`` runs of a whole process (setup() before each run)."""
    best = float("inf")
    for _ in range(repeat):
        if setup:
            setup()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.PIPE)
        best = min(best, time.perf_counter() - t0)
    return best


def timed_pair(ours, ref, repeat: int = 3, setup=None) -> tuple[float, float]:
    """Best times of two commands run alternately (ours, ref, ours, ref...).

    ``ours``/``ref`` map the run index to a command, so each run can write to a fresh
    directory: deleting a large tree right before a run slows the host file system for
    whichever tool runs next, so outputs are removed only after all runs.
    """
    best = [float("inf"), float("inf")]
    for i in range(repeat):
        for k, make in enumerate((ours, ref)):
            if setup:
                setup()
            os.sync()
            t0 = time.perf_counter()
            subprocess.run(make(i), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def drop_caches() -> None:
    """Drop the page cache so every run reads from the device (needs root)."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def can_mount() -> str | None:
    """None when kernel loop mounts work here, else the reason."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("mount") or not Path("/dev/loop-control").exists():
        return "no loop device support"
    return None


@contextlib.contextmanager
def loop_mount(image: Path, options: str = "ro"):
    mnt = Path(tempfile.mkdtemp(prefix="e4k-mnt-"))
    mounted = False
    try:
        subprocess.run(["mount", "-o", f"loop,{options}", str(image), str(mnt)], check=True,
                       capture_output=True)
        mounted = True
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def scratch(name: str) -> Path:
    base = Path(os.environ.get("EXT4KIT_BENCH_DIR", ROOT / "bench-out"))
    d = base / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d
