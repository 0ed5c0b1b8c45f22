"""ext4kit fsck against every f_* image of e2fsprogs' test suite (../shared/e2fsprogs-tests).

For each image, three verdicts (the acceptance criteria of the fsck issue):
  (a) detect:  ``ext4kit fsck -fn`` exits non-zero exactly when ``e2fsck -fn`` does;
  (b) repair:  after ``ext4kit fsck -fy``, ``e2fsck -fn`` exits 0 and a second
               ``ext4kit fsck -fy`` exits 0;
  (c) exit:    the repairing run's exit code equals the oracle's (``expect_exit_1`` of the
               ``oracle`` file, else expect.1's "Exit status is N"); where the oracle's
               first run is not ``-yf`` (its ``how=`` line: ``-p``, ``-pf``, ``-fn``,
               ``-y``, ``-yfb8193``), ours runs with the same switches for this verdict.
Images e2fsck cannot open at all (its -fn exits 8, oracle 8: f_detect_xfs, f_crashdisk)
pass (b) when ours refuses them the same way and leaves them unchanged.
Images where we do not match yet are listed below, each with its reason; they are strict
xfails (an entry must go once the image passes). ``EXT4KIT_FSCK_REPORT=1`` prints the
per-class pass rates at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ext4kit.fsck import fsck  # noqa: E402
from test_e2fsprogs_images import CORPUS, _decompress  # noqa: E402

E2FSCK = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
if not Path(E2FSCK).exists():
    pytest.skip("e2fsck not installed", allow_module_level=True)

NAMES = sorted(p.name for p in CORPUS.iterdir()
               if p.is_dir() and p.name.startswith("f_") and any(p.glob("image.*")))

# ------------------------------------------------------------------ known differences
DETECT_FAILS: dict[str, str] = {}
REPAIR_FAILS: dict[str, str] = {}
EXIT_FAILS: dict[str, str] = {}


def _load_fails() -> None:
    """The repair / exit-code lists are measured (see the report); kept in one file."""
    path = Path(__file__).with_name("fsck_known_failures.txt")
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, name, reason = line.split(None, 2)
        {"repair": REPAIR_FAILS, "exit": EXIT_FAILS, "detect": DETECT_FAILS}[kind][name] = reason


_load_fails()

# ------------------------------------------------------------------ running
_lock = threading.Lock()
_results: dict[str, dict] = {}
_tmp: list[Path] = []


def _oracle_exit(name: str) -> int | None:
    folder = CORPUS / name
    o = folder / "oracle"
    if o.exists():
        m = re.search(r"^expect_exit_1=(\d+)", o.read_text(), re.M)
        if m:
            return int(m.group(1))
    m = re.search(r"Exit status is (\d+)", (folder / "expect.1").read_text())
    return int(m.group(1)) if m else None


def _oracle_run(name: str) -> tuple[str, bool, int | None] | None:
    """(mode, force, backup superblock) of the oracle's first e2fsck run, from its
    ``how=`` line (``-pf``, ``-p``, ``-fn``, ``-y``, ``-yfb8193`` ...); None for the
    default ``-yf`` or a run we have no switch for (``-E unshare_blocks``, ``bmap2extent``)."""
    o = CORPUS / name / "oracle"
    if not o.exists():
        return None
    m = re.search(r"^how=(?:run_e2fsck: e2fsck|)\s*(-\S+)(?: -N|;| once)", o.read_text(), re.M)
    if not m or "-E" in o.read_text().split("how=", 1)[1].split("\n", 1)[0]:
        return None
    opts = m.group(1).lstrip("-")
    sb = re.search(r"b(\d+)", opts)
    flags = re.sub(r"b\d+", "", opts)
    mode = "p" if "p" in flags or "a" in flags else "n" if "n" in flags else "y"
    run = (mode, "f" in flags, int(sb.group(1)) if sb else None)
    return None if run == ("y", True, None) else run


def _style(name: str) -> str:
    o = CORPUS / name / "oracle"
    if o.exists():
        m = re.search(r"^fs_style=(\S+)", o.read_text(), re.M)
        if m:
            return "ext4" if "ext4" in m.group(1) else m.group(1)
    return "?"


def _e2fsck_n(img: Path) -> int:
    try:
        return subprocess.run([E2FSCK, "-fn", str(img)], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=10).returncode
    except subprocess.TimeoutExpired:
        return 8  # e2fsck did not finish: counts as "not clean"


def _fsck_rc(img: Path, mode: str, force: bool = True, superblock: int | None = None) -> int:
    # a child process: a hang or a crash in one image cannot stall the suite
    code = ("import sys; from ext4kit.fsck import fsck; "
            f"sys.exit(fsck(sys.argv[1], {mode!r}, force={force!r}, superblock={superblock!r}).exit_code)")
    try:
        return subprocess.run([sys.executable, "-c", code, str(img)], capture_output=True,
                              timeout=60).returncode
    except subprocess.TimeoutExpired:
        return -1


def result(name: str, base: Path) -> dict:
    with _lock:
        if name in _results:
            return _results[name]
    pristine = base / f"{name}.img"
    _decompress(CORPUS / name, pristine)
    e2_n = _e2fsck_n(pristine)
    ours_n = fsck(pristine, "n").exit_code
    work = base / f"{name}.work.img"
    subprocess.run(["cp", "--sparse=always", str(pristine), str(work)], check=True)
    os.chmod(work, 0o644)
    rc1 = _fsck_rc(work, "y")
    unchanged = work.read_bytes() == pristine.read_bytes() if e2_n == 8 else False
    after = _e2fsck_n(work)
    rc2 = _fsck_rc(work, "y")
    # (c) compares the oracle's own first run (-p, -pf, -fn, -y ...) when it is not -yf
    run = _oracle_run(name)
    rc_oracle_run = rc1
    if run is not None:
        subprocess.run(["cp", "--sparse=always", str(pristine), str(work)], check=True)
        rc_oracle_run = _fsck_rc(work, *run)
    work.unlink()
    pristine.unlink()
    res = {"e2_n": e2_n, "ours_n": ours_n, "rc1": rc1, "after": after, "rc2": rc2,
           "unchanged": unchanged, "run": run, "rc_oracle_run": rc_oracle_run,
           "oracle": _oracle_exit(name), "style": _style(name)}
    with _lock:
        _results[name] = res
    return res


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fsck-images")


def _params(fails: dict[str, str]) -> list:
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=fails[n]))
            if n in fails else n for n in NAMES]


@pytest.mark.parametrize("name", _params(DETECT_FAILS))
def test_detect(name: str, base: Path) -> None:
    r = result(name, base)
    assert (r["ours_n"] != 0) == (r["e2_n"] != 0), r


def repaired(r: dict) -> bool:
    """(b); for an image e2fsck itself cannot open (its -fn exits 8: not an ext file
    system), the same refusal from us with the image left byte for byte as it was."""
    if r["e2_n"] == 8 and r["oracle"] == 8:
        return r["rc1"] == 8 and r["unchanged"]
    return r["after"] == 0 and r["rc2"] == 0


@pytest.mark.parametrize("name", _params(REPAIR_FAILS))
def test_repair(name: str, base: Path) -> None:
    r = result(name, base)
    assert repaired(r), r


@pytest.mark.parametrize("name", _params(EXIT_FAILS))
def test_exit_code(name: str, base: Path) -> None:
    r = result(name, base)
    assert r["rc_oracle_run"] == r["oracle"], r


def _write_fails() -> None:
    """EXT4KIT_FSCK_WRITE=1: rewrite fsck_known_failures.txt from this run's results
    (after a full run of this file; the detect list of this file stays as written)."""
    lines = ["# measured fsck -fy results on e2fsprogs' f_* images (tests/test_fsck_images.py)",
             "# regenerate: EXT4KIT_FSCK_WRITE=1 pytest tests/test_fsck_images.py",
             "# kind name reason"]
    for name in sorted(_results):
        r = _results[name]
        if (r["ours_n"] != 0) != (r["e2_n"] != 0):
            lines.append(f"detect {name} ext4kit fsck -fn exits {r['ours_n']}, e2fsck -fn {r['e2_n']}")
        if not repaired(r):
            lines.append(f"repair {name} after ext4kit fsck -fy (exit {r['rc1']}) e2fsck -fn exits "
                         f"{'TIMEOUT' if r['after'] == 8 and r['e2_n'] != 8 else r['after']}, "
                         f"second run exits {r['rc2']}")
        if r["rc_oracle_run"] != r["oracle"]:
            how = "-fy" if r["run"] is None else "the oracle's run"
            lines.append(f"exit {name} repairing run ({how}) exits {r['rc_oracle_run']}, e2fsck's oracle {r['oracle']}")
    Path(__file__).with_name("fsck_known_failures.txt").write_text("\n".join(lines) + "\n")


def test_zz_report() -> None:
    """Per-class pass rates (printed with -s and EXT4KIT_FSCK_REPORT=1)."""
    if os.environ.get("EXT4KIT_FSCK_WRITE") and len(_results) == len(NAMES):
        _write_fails()
    if not os.environ.get("EXT4KIT_FSCK_REPORT"):
        return
    classes: dict[str, list[int]] = {}
    for r in _results.values():
        c = classes.setdefault(r["style"], [0, 0, 0, 0])
        c[0] += 1
        c[1] += (r["ours_n"] != 0) == (r["e2_n"] != 0)
        c[2] += repaired(r)
        c[3] += r["rc_oracle_run"] == r["oracle"]
    for k, (n, a, b, c3) in sorted(classes.items()):
        print(f"{k}: (1a) {a}/{n}  (1b) {b}/{n}  (1c) {c3}/{n}")
