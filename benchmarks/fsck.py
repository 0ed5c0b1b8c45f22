"""fsck benchmark: ``ext4kit fsck -fn`` against ``e2fsck -fn``.

1. a 2 GiB ext4 image holding 100,000 small files (built with mke2fs -d): wall time of
   both checkers and ext4kit's peak RSS (target: within 10x of e2fsck, goal 3x; < 300 MB);
2. a 1 TiB sparse, near-empty ext4 image (lazy inode tables): ext4kit under 5 s.

Usage: python benchmarks/fsck.py [--files N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

E2FSCK = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"


def timed(cmd: list[str]) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS of the child in KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, p.returncode, max(after, before)


def ours(img: Path) -> list[str]:
    return [sys.executable, "-m", "ext4kit", "fsck", "-fn", str(img)]


def build_tree(root: Path, files: int) -> None:
    per_dir = 1000
    for i in range(files):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir()
        (d / f"f{i:06d}").write_bytes(b"x" * (i % 3000))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="fsck-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    img = work / "2g.img"
    if not img.exists():
        tree = work / "tree"
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir()
        build_tree(tree, args.files)
        subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", "-d", str(tree), str(img), "2G"], check=True)
        shutil.rmtree(tree)
    e_t, e_rc, _ = timed([E2FSCK, "-fn", str(img)])
    o_t, o_rc, o_rss = timed(ours(img))
    print(f"2 GiB, {args.files} files: e2fsck -fn {e_t:.2f}s (exit {e_rc}), "
          f"ext4kit fsck -fn {o_t:.2f}s (exit {o_rc}), ratio {o_t / e_t:.1f}x, "
          f"peak RSS {o_rss / 1024:.0f} MB")
    big = work / "1t.img"
    if not big.exists():
        subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=1",
                        str(big), "1T"], check=True)
    e_t, e_rc, _ = timed([E2FSCK, "-fn", str(big)])
    o_t, o_rc, o_rss = timed(ours(big))
    print(f"1 TiB sparse, empty: e2fsck -fn {e_t:.2f}s (exit {e_rc}), "
          f"ext4kit fsck -fn {o_t:.2f}s (exit {o_rc}), peak RSS {o_rss / 1024:.0f} MB")
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
