#!/usr/bin/env python3
"""Crash lab throughput: crash states checked per second per core on a 16 MiB image.

    benchmarks/crash.py [--quick]

Rows: the in-process checker (states/s on one core, then with --jobs 2), and with
--oracle e2fsck (e2fsck -fn on every distinct recovered image). A state costs: build the
overlay, recover it, digest it; the check itself runs once per distinct recovered image
(a clean journal's log blocks are left out of the digest, so most states share one).
Must: 50 states/s/core; goal: 200.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import warnings  # noqa: E402

from ext4kit.crash import LabConfig, run_lab  # noqa: E402
from ext4kit.crash.lab import _BASE_CACHE, enumerate_states, record  # noqa: E402

warnings.simplefilter("ignore")


def measure(cfg: LabConfig) -> tuple[int, float, float, int]:
    """(states, seconds for the whole run, seconds spent on states, distinct checks)."""
    _BASE_CACHE.clear()
    record(cfg)  # builds and caches the base image (mkfs + the workload's setup)
    t0 = time.perf_counter()
    rec = record(cfg)  # what run_lab does before the states: record the workload
    n = len(enumerate_states(rec, cfg))
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = run_lab(cfg)
    total = time.perf_counter() - t0
    assert len(res.states) == n
    return n, total, max(1e-9, total - t_setup), res.checks


def main() -> int:
    quick = "--quick" in sys.argv
    cores = os.cpu_count() or 1
    rows = []
    cases = [("append", "ordered", ""), ("delete-reuse", "ordered", ""),
             ("mixed", "ordered", ""), ("append", "nojournal", "")]
    if quick:
        cases = cases[:1] + cases[2:3]
    for wl, mode, opts in cases:
        for jobs in ([1, 2] if cores >= 2 else [1]):
            cfg = LabConfig(wl, mode=mode, options=opts, jobs=jobs, oracle_sample=0)
            n, total, per, checks = measure(cfg)
            rows.append((f"{wl}, {mode}", f"quick, jobs={jobs}", n, checks, total,
                         n / per / jobs, n / per))
    for wl, mode in [("append", "ordered"), ("append", "nojournal")]:
        cfg = LabConfig(wl, mode=mode, oracle="e2fsck", repair=False)
        n, total, per, checks = measure(cfg)
        rows.append((f"{wl}, {mode}", "--oracle e2fsck", n, checks, total, n / per, n / per))
    print(f"{'workload':<22} {'checker':<18} {'states':>7} {'distinct':>8} {'seconds':>8} "
          f"{'states/s/core':>14} {'states/s':>9}")
    for name, how, n, checks, total, per_core, rate in rows:
        print(f"{name:<22} {how:<18} {n:>7} {checks:>8} {total:>8.2f} {per_core:>14.0f} "
              f"{rate:>9.0f}")
    print("\nmust: 50 states/s/core, goal: 200 (in-process checker, 16 MiB image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
