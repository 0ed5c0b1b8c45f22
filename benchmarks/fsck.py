"""fsck benchmark: ``ext4kit fsck -fn`` against ``e2fsck -fn``.

1. a 2 GiB ext4 image holding 100,000 small files (built with mke2fs -d): wall time of
   both checkers (best of 3) and ext4kit's peak RSS (must: within 10x of e2fsck and
   < 300 MB; goal 3x);
2. a 1 TiB sparse, near-empty ext4 image (lazy inode tables): ext4kit under 5 s.

Suite interface of benchmarks/run.py: ``main()`` returns a list of result dicts.
Standalone: python benchmarks/fsck.py [--files N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

E2FSCK = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
FILES = 100_000
REPEAT = 3


def _one(cmd: list[str]) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in KiB) of one run in a fresh child."""
    # the child's own maxrss: wrap it so earlier children do not mask the figure
    wrap = [sys.executable, "-c",
            "import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "dt = time.perf_counter() - t; "
            "print(dt, r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)", *cmd]
    out = subprocess.run(wrap, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def timed(cmd: list[str], repeat: int = REPEAT) -> tuple[float, int, int]:
    """Best time, last exit code, highest peak RSS (KiB) over ``repeat`` runs."""
    best, rc, rss = float("inf"), 0, 0
    for _ in range(repeat):
        t, rc, r = _one(cmd)
        best, rss = min(best, t), max(rss, r)
    return best, rc, rss


def ours(img: Path) -> list[str]:
    return [sys.executable, "-m", "ext4kit", "fsck", "-fn", str(img)]


def build_tree(root: Path, files: int) -> None:
    per_dir = 1000
    for i in range(files):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir()
        (d / f"f{i:06d}").write_bytes(b"x" * (i % 3000))


def bench_files(work: Path, files: int) -> dict:
    name = f"fsck -fn: 2 GiB ext4, {files:,} files vs e2fsck -fn"
    img = work / f"2g-{files}.img"
    if not img.exists():
        tree = work / "tree"
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir()
        build_tree(tree, files)
        subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", "-d", str(tree), str(img), "2G"], check=True)
        shutil.rmtree(tree)
    e_t, e_rc, _ = timed([E2FSCK, "-fn", str(img)])
    o_t, o_rc, o_rss = timed(ours(img))
    ratio = o_t / e_t
    mb = o_rss / 1024
    ok = ratio <= 10 and mb < 300 and o_rc == e_rc == 0
    return {"name": name, "ours_s": o_t, "ref_s": e_t, "ratio": ratio,
            "must": "ratio <= 10, peak RSS < 300 MB", "goal": "ratio <= 3",
            "ok": ok, "goal_met": ratio <= 3, "peak_rss_mb": mb,
            "note": f"exit codes ours {o_rc} / e2fsck {e_rc}; ours peak RSS {mb:.0f} MB"}


def bench_sparse(work: Path) -> dict:
    name = "fsck -fn: 1 TiB sparse near-empty ext4 (lazy inode tables)"
    big = work / "1t.img"
    if not big.exists():
        subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=1,lazy_journal_init=1",
                        str(big), "1T"], check=True)
    e_t, e_rc, _ = timed([E2FSCK, "-fn", str(big)], repeat=1)
    o_t, o_rc, o_rss = timed(ours(big), repeat=1)
    big.unlink()
    return {"name": name, "ours_s": o_t, "ref_s": e_t, "ratio": o_t / e_t,
            "must": "ours < 5 s", "goal": "ours < 5 s", "ok": o_t < 5 and o_rc == 0,
            "goal_met": o_t < 5,
            "note": f"exit codes ours {o_rc} / e2fsck {e_rc}; ours peak RSS {o_rss / 1024:.0f} MB"}


def main(files: int = FILES, keep: Path | None = None) -> list[dict]:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    work = Path(keep or tempfile.mkdtemp(prefix="fsck-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return [bench_files(work, files), bench_sparse(work)]
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=FILES)
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.time()
    for r in main(args.files, args.keep):
        print(r)
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)
