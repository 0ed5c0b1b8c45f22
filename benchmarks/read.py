"""Read-path benchmarks (issue: foundation).

1. `ext4kit get` of a 100,000-file image vs `debugfs -R "rdump / OUT"`  (must: <=5x, goal: <=2x)
2. reading one 1 GiB file: `ext4kit cat` vs `cat` from a kernel loop mount, page cache
   dropped before each run (must: >= 1/4 of the kernel's throughput, goal: >= 1/2)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from common import EXT4KIT, can_mount, drop_caches, loop_mount, run, scratch, timed, timed_pair

N_FILES = int(os.environ.get("BENCH_FILES", "100000"))
BIG_MIB = int(os.environ.get("BENCH_BIG_MIB", "1024"))


def build_many_files_tree(root: Path, n: int) -> None:
    per_dir = 1000
    payload = os.urandom(8192)
    for d in range((n + per_dir - 1) // per_dir):
        sub = root / f"d{d:04d}"
        sub.mkdir(parents=True)
        for i in range(min(per_dir, n - d * per_dir)):
            size = (i * 37) % 6000
            (sub / f"file-{i:05d}.dat").write_bytes(payload[:size])


def bench_many_files() -> dict:
    work = scratch("read-many")
    src = work / "src"
    build_many_files_tree(src, N_FILES)
    img = work / "many.img"
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-N", str(N_FILES + 4096), "-d", str(src), str(img), "2G"])
    shutil.rmtree(src)

    def ours(i: int) -> list[str]:
        return [*EXT4KIT, "get", str(img), "/", str(work / f"ours-{i}")]

    def ref(i: int) -> list[str]:
        (work / f"debugfs-{i}").mkdir()
        return ["debugfs", "-R", f"rdump / {work / f'debugfs-{i}'}", str(img)]

    t_ours, t_debugfs = timed_pair(ours, ref)
    shutil.rmtree(work)
    return {
        "name": f"get {N_FILES} files vs debugfs rdump",
        "ours_s": t_ours, "ref_s": t_debugfs, "ratio": t_ours / t_debugfs,
        "must": "ratio <= 5", "goal": "ratio <= 2", "ok": t_ours / t_debugfs <= 5,
    }


def bench_big_file() -> dict:
    work = scratch("read-big")
    src = work / "src"
    src.mkdir()
    chunk = os.urandom(1 << 20)
    with open(src / "big.bin", "wb") as f:
        for _ in range(BIG_MIB):
            f.write(chunk)
    img = work / "big.img"
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(src), str(img), f"{BIG_MIB + 256}M"])
    shutil.rmtree(src)
    nbytes = BIG_MIB << 20
    t_ours = timed([*EXT4KIT, "cat", str(img), "/big.bin"], setup=drop_caches)
    result = {"name": f"read one {BIG_MIB} MiB file vs kernel loop mount (cold cache)",
              "ours_s": t_ours, "ours_MBps": nbytes / t_ours / 1e6}
    why = can_mount()
    if why:
        result.update(ref_s=None, ratio=None, ok=None, note=f"kernel comparison skipped: {why}")
    else:
        with loop_mount(img) as mnt:
            t_k = timed(["cat", str(mnt / "big.bin")], setup=drop_caches)
        result.update(ref_s=t_k, ref_MBps=nbytes / t_k / 1e6,
                      ratio=(nbytes / t_ours) / (nbytes / t_k),
                      must="throughput ratio >= 0.25", goal="throughput ratio >= 0.5",
                      ok=t_k / t_ours >= 0.25)
        result["ratio"] = t_k / t_ours  # our throughput / kernel throughput
    shutil.rmtree(work)
    return result


def main() -> list[dict]:
    return [bench_many_files(), bench_big_file()]


if __name__ == "__main__":
    for r in main():
        print(r)
