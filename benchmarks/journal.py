"""Journal benchmarks (issue: jbd2), one run, ratios against the kernel in the same run.

Acceptance line of the issue:
  1 GiB sequential write and 10,000 small files (with and without fsync each) under
  data=journal / ordered / writeback / no journal, and the same on a kernel loop mount with
  the same options; recovery of a journal holding 40 MiB of logged blocks vs
  `e2fsck -E journal_only -y` on the same image.
  Must: ordered within 20% of writeback for large writes; data=journal no worse than the
  kernel's data=journal/ordered ratio; recovery within 3x of e2fsck's time (whole process).
  Goals: ordered within 10% of writeback; recovery as fast as e2fsck.

What is timed (each run in a fresh subprocess, on a fresh 4 KiB-block image with a 128 MiB
journal, or without a journal for the "no journal" rows):
  ours    ext4kit.open(img, "r+", data=MODE) .. writes through fs.open(path, "wb") file
          objects .. fs.close() (final commit + checkpoint); the fsync variant calls
          f.flush(); f.raw.fsync() after each small file (fs.open returns a BufferedWriter,
          which has no fsync; Ext4File.fsync commits the running transaction).
  kernel  mount -o loop,rw,noinit_itable,data=MODE .. os.write / os.fsync per file (fsync
          variant) or one fsync (big file) / syncfs (small files) .. umount.
  So open/mount and close/umount are inside the timed part on both sides; Python start-up
  and imports are not (the whole-process time of ours is in the notes).
Small files: 4 KiB each, in 10 directories (as in write.py).
Recovery: ext4kit writes RECOVER_MIB MiB with data=journal (commit=3600, so only size and
  the final fs.commit() commit) and the process ends with os._exit, leaving the log full
  and the file system needing recovery. Full (not sparse) copies per run: `python -m
  ext4kit recover A` and `e2fsck -E journal_only -y B`, whole processes, the order rotated,
  best of RECOVER_REPEAT. Ours is timed with a bytecode cache (as a pip install has; the
  cache goes to bench-out/pycache) and, when this environment sets
  PYTHONDONTWRITEBYTECODE, also as set here (every module compiled at every start).
  Afterwards the images must be identical to e2fsck's but for the superblock's s_wtime,
  s_kbytes_written and checksum, every replayed block must hold the log's copy, and
  `e2fsck -fn` must be clean.

Knobs (environment): BENCH_JOURNAL_MIB (1024), BENCH_JOURNAL_FILES (10000),
BENCH_JOURNAL_FSYNC_FILES (2000, or FILES if smaller: the kernel needs ~7 ms per fsync'ed
file here, 70+ s per mode for 10,000), BENCH_JOURNAL_RECOVER_MIB (40), BENCH_JOURNAL_REPEAT
(1: one run of every write row), BENCH_JOURNAL_RECOVER_REPEAT (5), BENCH_JOURNAL_MODES
(journal,ordered,writeback,none), BENCH_JOURNAL_KEEP (keep the recovery images).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import EXT4KIT, KERNEL_MOUNT_OPTS, can_mount, run, scratch
from common import payload as _payload

BIG_MIB = int(os.environ.get("BENCH_JOURNAL_MIB", "1024"))
FILES = int(os.environ.get("BENCH_JOURNAL_FILES", "10000"))
# the kernel needs ~7 ms per fsync'ed file here (70+ s for 10,000 in each mode), ours more:
# 2,000 files keep the four fsync rows to a few minutes
FSYNC_FILES = int(os.environ.get("BENCH_JOURNAL_FSYNC_FILES", str(min(FILES, 2000))))
RECOVER_MIB = int(os.environ.get("BENCH_JOURNAL_RECOVER_MIB", "40"))
REPEAT = int(os.environ.get("BENCH_JOURNAL_REPEAT", "1"))
RECOVER_REPEAT = int(os.environ.get("BENCH_JOURNAL_RECOVER_REPEAT", "5"))
MODES = tuple(os.environ.get("BENCH_JOURNAL_MODES", "journal,ordered,writeback,none").split(","))
JOURNAL_MIB = 128
BLOCK = 4096
CHUNK = 1 << 20
SMALL_SIZE = 4096
SMALL_DIRS = 10

MODE_LABEL = {"journal": "data=journal", "ordered": "data=ordered",
              "writeback": "data=writeback", "none": "no journal"}


# ---------------------------------------------------------------------------- images
def _image_size_mib() -> int:
    return max(1024, BIG_MIB * 2 + 512)


def _mkfs_ours(img: Path, mode: str, size_mib: int) -> None:
    from ext4kit.mkfs import mkfs

    if img.exists():
        img.unlink()
    if mode == "none":
        mkfs(img, f"{size_mib}M", block_size=BLOCK, features="^has_journal")
    else:
        mkfs(img, f"{size_mib}M", block_size=BLOCK, journal_size_mib=JOURNAL_MIB)


def _mkfs_kernel(img: Path, mode: str, size_mib: int) -> None:
    if img.exists():
        img.unlink()
    extra = ["-O", "^has_journal"] if mode == "none" else ["-J", f"size={JOURNAL_MIB}"]
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", str(BLOCK), *extra, str(img),
         f"{size_mib}M"])


def _mount_opts(mode: str) -> str:
    return KERNEL_MOUNT_OPTS if mode == "none" else f"{KERNEL_MOUNT_OPTS},data={mode}"


# ---------------------------------------------------------------------------- workers
# `python benchmarks/journal.py --worker KIND MODE TARGET N` prints {"t": timed seconds}

def _ours_open(img: str, mode: str, **kw):
    import ext4kit

    if mode == "none":
        return ext4kit.open(img, "r+", **kw)
    return ext4kit.open(img, "r+", data=mode, **kw)


def _worker(kind: str, mode: str, target: str, n: int) -> float:
    small = _payload(SMALL_SIZE)
    chunk = _payload(CHUNK)
    per_dir = max(1, n // SMALL_DIRS)
    if kind == "ours-big":
        import ext4kit  # noqa: F401  (import outside the timed part)

        t0 = time.perf_counter()
        fs = _ours_open(target, mode)
        with fs.open("/big", "wb") as f:
            for _ in range(n):
                f.write(chunk)
        fs.close()
        return time.perf_counter() - t0
    if kind in ("ours-small", "ours-small-fsync"):
        import ext4kit  # noqa: F401

        sync_each = kind.endswith("fsync")
        t0 = time.perf_counter()
        fs = _ours_open(target, mode)
        for d in range(SMALL_DIRS):
            fs.mkdir(f"/d{d:02d}")
            for i in range(per_dir):
                with fs.open(f"/d{d:02d}/f{i:05d}", "wb") as f:
                    f.write(small)
                    if sync_each:
                        f.flush()
                        f.raw.fsync()
        fs.close()
        return time.perf_counter() - t0
    if kind == "ours-dirty":  # recovery image: a full log, then "crash"
        fs = _ours_open(target, "journal", commit=3600)
        f = fs.open("/replay.bin", "wb")
        for _ in range(n):
            f.write(chunk)
        f.flush()
        fs.commit()  # committed to the log, never checkpointed: the process just ends
        os._exit(0)
    if kind.startswith("kernel-"):
        mnt = Path(tempfile.mkdtemp(prefix="e4k-jmnt-"))
        mounted = False
        try:
            t0 = time.perf_counter()
            subprocess.run(["mount", "-o", f"loop,{_mount_opts(mode)}", target, str(mnt)],
                           check=True, capture_output=True)
            mounted = True
            if kind == "kernel-big":
                fd = os.open(mnt / "big", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    for _ in range(n):
                        os.write(fd, chunk)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                sync_each = kind.endswith("fsync")
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                for d in range(SMALL_DIRS):
                    sub = mnt / f"d{d:02d}"
                    os.mkdir(sub)
                    for i in range(per_dir):
                        fd = os.open(sub / f"f{i:05d}", flags, 0o644)
                        try:
                            os.write(fd, small)
                            if sync_each:
                                os.fsync(fd)
                        finally:
                            os.close(fd)
                dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)  # ext4: a full journal commit, like syncfs
                finally:
                    os.close(dfd)
            subprocess.run(["umount", str(mnt)], check=True, capture_output=True)
            mounted = False
            return time.perf_counter() - t0
        finally:
            if mounted:
                subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
            with contextlib.suppress(OSError):
                mnt.rmdir()
    raise SystemExit(f"unknown worker {kind}")


def _run_worker(kind: str, mode: str, target: Path, n: int) -> tuple[float, float]:
    """(timed part, whole process) of one worker subprocess."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--worker", kind, mode, str(target), str(n)],
                       capture_output=True, text=True)
    whole = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"worker {kind} {mode} n={n} exited {p.returncode}: "
                           f"{p.stderr.strip()[-1500:]}")
    return json.loads(p.stdout)["t"], whole


def _detach_stale_loops(img: Path) -> None:
    """A failed run must not leave the image attached to a loop device."""
    p = subprocess.run(["losetup", "-j", str(img)], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        dev = line.split(":", 1)[0]
        if dev:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


# ---------------------------------------------------------------------------- write rows
def _measure(work: Path, workload: str, mode: str, n: int) -> dict:
    """Best of REPEAT runs of ours and the kernel (alternately, fresh image per run)."""
    size = _image_size_mib() if workload == "big" else 1024
    best = {"ours": float("inf"), "ours_whole": float("inf"), "kernel": float("inf")}
    kind = {"big": "big", "small": "small", "fsync": "small-fsync"}[workload]
    for _ in range(REPEAT):
        for who in ("ours", "kernel"):
            img = work / f"{who}-{workload}-{mode}.img"
            try:
                if who == "ours":
                    _mkfs_ours(img, mode, size)
                    os.sync()
                    t, whole = _run_worker(f"ours-{kind}", mode, img, n)
                    best["ours_whole"] = min(best["ours_whole"], whole)
                    chk = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True,
                                         text=True)
                    if chk.returncode != 0:
                        raise RuntimeError(f"e2fsck -fn after ours {workload}/{mode}: "
                                           f"{chk.stdout[-400:]}")
                else:
                    _mkfs_kernel(img, mode, size)
                    os.sync()
                    t, _ = _run_worker(f"kernel-{kind}", mode, img, n)
            finally:
                _detach_stale_loops(img)
                with contextlib.suppress(FileNotFoundError):
                    img.unlink()
            best[who] = min(best[who], t)
    return best


def _write_rows(results: dict) -> list[dict]:
    rows = []
    for workload, n in (("big", BIG_MIB), ("small", FILES), ("fsync", FSYNC_FILES)):
        for mode in MODES:
            b = results.get((workload, mode))
            if b is None:
                continue
            if workload == "big":
                name = f"{BIG_MIB} MiB sequential write, {MODE_LABEL[mode]}"
                ours_rate, ref_rate = BIG_MIB * CHUNK / b["ours"] / 1e6, BIG_MIB * CHUNK / b["kernel"] / 1e6
                unit = "MB/s"
            else:
                what = "fsync each" if workload == "fsync" else "no fsync"
                name = f"{n} x 4 KiB files ({what}), {MODE_LABEL[mode]}"
                ours_rate, ref_rate = n / b["ours"], n / b["kernel"]
                unit = "files/s"
            ratio = ours_rate / ref_rate
            rows.append({"name": name, "ours_s": b["ours"], "ref_s": b["kernel"], "ratio": ratio,
                         "ours_whole_s": b["ours_whole"], "ours_rate": ours_rate,
                         "ref_rate": ref_rate, "unit": unit,
                         "must": "(vs kernel: info)", "goal": "", "ok": None,
                         "note": f"{ours_rate:,.0f} vs {ref_rate:,.0f} {unit}, ratio = ours / "
                                 f"kernel throughput; ours whole process {b['ours_whole']:.2f} s"})
    return rows


def _check_rows(results: dict) -> list[dict]:
    rows = []
    o, w = results.get(("big", "ordered")), results.get(("big", "writeback"))
    if o and w:
        r = o["ours"] / w["ours"]
        k = o["kernel"] / w["kernel"]
        rows.append({"name": f"MUST ordered vs writeback, {BIG_MIB} MiB write (ours, time ratio)",
                     "ours_s": o["ours"], "ref_s": w["ours"], "ratio": r,
                     "must": "ordered/writeback <= 1.2", "goal": "<= 1.1",
                     "ok": r <= 1.2, "goal_met": r <= 1.1,
                     "note": f"kernel's ordered/writeback {k:.2f}"})
    for workload, label in (("big", f"{BIG_MIB} MiB write"), ("small", f"{FILES} files"),
                            ("fsync", f"{FSYNC_FILES} files, fsync each")):
        jr, od = results.get((workload, "journal")), results.get((workload, "ordered"))
        if not (jr and od):
            continue
        ours = jr["ours"] / od["ours"]
        kern = jr["kernel"] / od["kernel"]
        rows.append({"name": f"MUST data=journal/ordered time, ours vs kernel's, {label}",
                     "ours_s": jr["ours"], "ref_s": od["ours"], "ratio": ours / kern,
                     "ours_journal_over_ordered": ours, "kernel_journal_over_ordered": kern,
                     "must": "ours j/o <= kernel j/o (ratio <= 1)", "goal": "(none stated)",
                     "ok": ours <= kern, "goal_met": None,
                     "note": f"ours j/o {ours:.2f} (ours_s = journal, ref_s = ordered), "
                             f"kernel j/o {kern:.2f}"})
    return rows


# ---------------------------------------------------------------------------- recovery
def _replay_plan(img: Path) -> tuple[dict[int, bytes], int, int]:
    """(home block -> contents that replay writes, committed transactions, logged blocks)
    of the log of ``img``, read only."""
    import ext4kit
    from ext4kit.jbd2.log import JournalArea, plan_replay, scan

    with warnings.catch_warnings():  # "needs recovery": that is the point here
        warnings.simplefilter("ignore")
        fs = ext4kit.open(img)
    with fs:
        area = JournalArea.of(fs)
        jsb = area.read_superblock()
        res = scan(area, jsb)
        plan = plan_replay(area, jsb, res)
        return dict(plan.blocks), len(res.committed), sum(len(t.tags) for t in res.committed)


# primary superblock fields that e2fsck and ext4kit set differently after the same replay:
# s_wtime, s_kbytes_written, s_wtime_hi, s_checksum (offsets inside the 1024-byte superblock)
_SB_VOLATILE = ((0x30, 4), (0x178, 8), (0x274, 1), (0x3FC, 4))
_SB_FLAGS = ((0x60, 4),)  # s_feature_incompat: needs_recovery is cleared after replay


def _masked(blk: int, data: bytes, extra: tuple = ()) -> bytes:
    """Block ``blk`` with the volatile primary-superblock fields zeroed."""
    if blk != 1024 // BLOCK:
        return data
    buf = bytearray(data)
    base = 1024 % BLOCK
    for off, n in _SB_VOLATILE + extra:
        buf[base + off : base + off + n] = bytes(n)
    return bytes(buf)


def _differing_blocks(a: Path, b: Path) -> list[int]:
    """Blocks that differ between two images of equal size (volatile superblock fields
    aside)."""
    out = []
    step = 256 * BLOCK
    with open(a, "rb") as fa, open(b, "rb") as fb:
        pos = 0
        while True:
            da, db = fa.read(step), fb.read(step)
            if not da and not db:
                break
            if da != db:
                for i in range(0, max(len(da), len(db)), BLOCK):
                    blk = (pos + i) // BLOCK
                    if _masked(blk, da[i : i + BLOCK]) != _masked(blk, db[i : i + BLOCK]):
                        out.append(blk)
            pos += step
    return out


def _read_block(path: Path, blk: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(blk * BLOCK)
        return f.read(BLOCK)


def _copy_image(src: Path, dst: Path) -> None:
    """A full copy: blocks that replay overwrites must exist (holes would make both tools
    allocate in the host file system while writing and flushing)."""
    run(["cp", "--sparse=never", str(src), str(dst)])


def _python_envs(work: Path) -> dict[str, dict[str, str]]:
    """Environments for timing `ext4kit recover`: "installed" caches bytecode (as a pip
    install does; the cache goes to bench-out, not into src/), and, when this environment
    sets PYTHONDONTWRITEBYTECODE, "as set here" compiles every module at every start."""
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(work.parent / "pycache")
    envs = {"installed": cached}
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        envs["no bytecode cache"] = dict(os.environ)
    return envs


def bench_recovery() -> list[dict]:
    name = (f"recovery of a {RECOVER_MIB} MiB data=journal log: `ext4kit recover` vs "
            "`e2fsck -E journal_only -y` (whole process)")
    work = scratch("journal-recover")
    pristine = work / "dirty.img"
    _mkfs_ours(pristine, "journal", max(512, RECOVER_MIB * 4 + JOURNAL_MIB))
    _run_worker_exit(pristine, RECOVER_MIB)
    blocks, ntxn, ntags = _replay_plan(pristine)
    logged_mib = ntags * BLOCK / (1 << 20)
    if logged_mib < RECOVER_MIB * 0.95:
        raise RuntimeError(f"the log holds only {logged_mib:.1f} MiB of logged blocks")
    envs = _python_envs(work)
    copies = {who: work / f"{i}.img" for i, who in enumerate([*envs, "e2fsck"])}
    # warm the bytecode cache (and the page cache of the tools) once, untimed
    _copy_image(pristine, copies["e2fsck"])
    subprocess.run([*EXT4KIT, "recover", str(copies["e2fsck"])], check=True,
                   capture_output=True, env=envs["installed"])
    best = dict.fromkeys(copies, float("inf"))
    order = list(copies)
    for i in range(RECOVER_REPEAT):
        for copy in copies.values():
            _copy_image(pristine, copy)
        os.sync()
        for who in order[i % len(order):] + order[: i % len(order)]:  # rotate who goes first
            copy = copies[who]
            t0 = time.perf_counter()
            if who == "e2fsck":
                p = subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(copy)],
                                   capture_output=True, text=True)
                if p.returncode not in (0, 1):
                    raise RuntimeError(f"e2fsck -E journal_only exited {p.returncode}: "
                                       f"{p.stdout}")
            else:
                subprocess.run([*EXT4KIT, "recover", str(copy)], check=True,
                               capture_output=True, env=envs[who])
            best[who] = min(best[who], time.perf_counter() - t0)
    # the replays leave identical images (but for the superblock's write time, lifetime
    # writes and checksum), and every replayed block holds the log's copy
    problems = []
    for who in envs:
        mismatched = _differing_blocks(copies[who], copies["e2fsck"])
        not_logged = [blk for blk in sorted(blocks)
                      if _masked(blk, _read_block(copies[who], blk), _SB_FLAGS)
                      != _masked(blk, blocks[blk], _SB_FLAGS)]
        fsck = subprocess.run(["e2fsck", "-fn", str(copies[who])], capture_output=True)
        if mismatched or not_logged or fsck.returncode:
            problems.append(f"{who}: {len(mismatched)} blocks differ from e2fsck's image "
                            f"(first {mismatched[:5]}), {len(not_logged)} replayed blocks from "
                            f"the log, e2fsck -fn exit {fsck.returncode}")
    if os.environ.get("BENCH_JOURNAL_KEEP"):
        print(f"  kept {work}; {problems}")
    else:
        shutil.rmtree(work)
        shutil.rmtree(work.parent / "pycache", ignore_errors=True)
    if problems:
        raise RuntimeError("recovery results differ: " + "; ".join(problems))
    rows = []
    ref = best["e2fsck"]
    for who in envs:
        ratio = best[who] / ref
        first = who == "installed"
        rows.append({
            "name": (f"MUST {name}" if first else
                     f"{name}, {who} (PYTHONDONTWRITEBYTECODE=1 as set here)"),
            "ours_s": best[who], "ref_s": ref, "ratio": ratio,
            "must": "time ratio <= 3", "goal": "<= 1", "ok": ratio <= 3, "goal_met": ratio <= 1,
            "replayed_blocks": len(blocks), "logged_blocks": ntags, "transactions": ntxn,
            "python_env": who,
            "note": (f"{ntxn} transactions, {ntags} logged blocks ({logged_mib:.1f} MiB), "
                     f"{len(blocks)} blocks replayed, images identical to e2fsck's but "
                     f"s_wtime/s_kbytes_written/checksum; " if first else "")
                    + f"e2fsck {logged_mib * 1.048576 / ref:,.0f} MB/s, ours "
                      f"{logged_mib * 1.048576 / best[who]:,.0f} MB/s; best of "
                      f"{RECOVER_REPEAT}, alternating"})
    return rows


def _run_worker_exit(img: Path, mib: int) -> None:
    subprocess.run([sys.executable, __file__, "--worker", "ours-dirty", "journal", str(img),
                    str(mib)], check=True, capture_output=True)


# ---------------------------------------------------------------------------- table
def _status(r: dict) -> str:
    if r.get("ok") is None:
        return "info"
    s = "must OK" if r["ok"] else "MUST FAILED"
    gm = r.get("goal_met")
    if gm is not None:
        s += ", goal met" if gm else ", goal not met"
    return s


def print_table(rows: list[dict]) -> None:
    print("| benchmark | ext4kit | kernel / reference | ratio | must / goal | status |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r.get("ours_s") is None:
            print(f"| {r['name']} | - | - | - | | skipped: {r.get('note', '')} |")
            continue
        ours, ref = f"{r['ours_s']:.2f} s", f"{r['ref_s']:.2f} s"
        if r.get("unit"):
            ours += f" ({r['ours_rate']:,.0f} {r['unit']})"
            ref += f" ({r['ref_rate']:,.0f} {r['unit']})"
        mg = r.get("must", "") + (f" / {r['goal']}" if r.get("goal") else "")
        extra = "" if r.get("unit") else f" ({r.get('note', '')})"
        print(f"| {r['name']} | {ours} | {ref} | {r['ratio']:.3f}{extra} | {mg} | "
              f"{_status(r)} |")
    sys.stdout.flush()


def main() -> list[dict]:
    why = can_mount()
    rows: list[dict] = []
    if why:
        rows.append({"name": "journal write rows", "ours_s": None, "ref_s": None, "ratio": None,
                     "ok": None, "note": f"kernel comparison skipped: {why}"})
    else:
        work = scratch("journal-write")
        results: dict = {}
        try:
            for workload, n in (("big", BIG_MIB), ("small", FILES), ("fsync", FSYNC_FILES)):
                for mode in MODES:
                    t0 = time.perf_counter()
                    results[(workload, mode)] = _measure(work, workload, mode, n)
                    b = results[(workload, mode)]
                    print(f"  [{workload} {mode}: ours {b['ours']:.2f} s, kernel "
                          f"{b['kernel']:.2f} s; {time.perf_counter() - t0:.0f} s]", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows += _write_rows(results)
        rows += _check_rows(results)
    rows += bench_recovery()
    print_table(rows)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        print(json.dumps({"t": _worker(sys.argv[2], sys.argv[3], sys.argv[4],
                                       int(sys.argv[5]))}))
    else:
        for r in main():
            print(r)
