"""ext4kit fsck against every f_* image of e2fsprogs' test suite (../shared/e2fsprogs-tests).

For each image, three verdicts (the acceptance criteria of the fsck issue):
  (a) detect:  ``ext4kit fsck -fn`` exits non-zero exactly when ``e2fsck -fn`` does;
  (b) repair:  after ``ext4kit fsck -fy``, ``e2fsck -fn`` exits 0 and a second
               ``ext4kit fsck -fy`` exits 0;
  (c) exit:    the repairing run's exit code equals the oracle's (``expect_exit_1`` of the
               ``oracle`` file, else expect.1's "Exit status is N").
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
DETECT_FAILS: dict[str, str] = {
    "f_quota": "quota usage accounting not checked",
    "f_short_encrypted_dirent": "encrypted directory entry checks not implemented",
}
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


def _fsck_rc(img: Path, mode: str) -> int:
    # a child process: a hang or a crash in one image cannot stall the suite
    code = ("import sys; from ext4kit.fsck import fsck; "
            f"sys.exit(fsck(sys.argv[1], {mode!r}).exit_code)")
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
    after = _e2fsck_n(work)
    rc2 = _fsck_rc(work, "y")
    work.unlink()
    pristine.unlink()
    res = {"e2_n": e2_n, "ours_n": ours_n, "rc1": rc1, "after": after, "rc2": rc2,
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


@pytest.mark.parametrize("name", _params(REPAIR_FAILS))
def test_repair(name: str, base: Path) -> None:
    r = result(name, base)
    assert r["after"] == 0 and r["rc2"] == 0, r


@pytest.mark.parametrize("name", _params(EXIT_FAILS))
def test_exit_code(name: str, base: Path) -> None:
    r = result(name, base)
    assert r["rc1"] == r["oracle"], r


def test_zz_report() -> None:
    """Per-class pass rates (printed with -s and EXT4KIT_FSCK_REPORT=1)."""
    if not os.environ.get("EXT4KIT_FSCK_REPORT"):
        return
    classes: dict[str, list[int]] = {}
    for r in _results.values():
        c = classes.setdefault(r["style"], [0, 0, 0, 0])
        c[0] += 1
        c[1] += (r["ours_n"] != 0) == (r["e2_n"] != 0)
        c[2] += r["after"] == 0 and r["rc2"] == 0
        c[3] += r["rc1"] == r["oracle"]
    for k, (n, a, b, c3) in sorted(classes.items()):
        print(f"{k}: (1a) {a}/{n}  (1b) {b}/{n}  (1c) {c3}/{n}")
