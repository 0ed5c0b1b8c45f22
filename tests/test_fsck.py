"""ext4kit fsck: API, CLI, exit codes, and the seed crash cases of the append example.

The append example: a file with one 4 KiB block gets a second block appended. The update
touches three things: the new data block, the inode (size + extent) and the block bitmap
(with the group / superblock free counts). A crash can leave any subset on disk; the six
partial states and fsck's verdict on each:

| on disk            | verdict under -n | -y repair                                          |
|--------------------|------------------|----------------------------------------------------|
| data only          | clean (0)        | nothing to do: the block is free and unreferenced   |
| inode only         | errors (4)       | bitmap rebuilt from the inodes: block marked in use |
| bitmap only        | errors (4)       | leak reclaimed: block freed, counts fixed            |
| inode + bitmap     | clean (0)        | UNDETECTABLE: metadata is consistent and points at  |
|                    |                  | whatever the data block held before (no checksum on |
|                    |                  | file data in ext4); documented, not a fsck bug      |
| inode + data       | errors (4)       | bitmap rebuilt from the inodes                      |
| bitmap + data      | errors (4)       | orphan block freed (leak reclaimed)                 |
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ext4kit
from ext4kit.fsck import PROBLEMS, fsck
from ext4kit.fsck import problems as P

E2FSCK = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
HAVE_E2FS = Path(E2FSCK).exists() and Path(MKE2FS).exists()
needs_e2fs = pytest.mark.skipif(not HAVE_E2FS, reason="e2fsprogs not installed")
BS = 4096


def e2fsck_n(img: Path) -> int:
    return subprocess.run([E2FSCK, "-fn", str(img)], capture_output=True, timeout=60).returncode


def mkimg(path: Path, opts: str = "^has_journal", size: str = "16M") -> Path:
    subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", "-b", str(BS), "-O", opts, str(path), size],
                   check=True, capture_output=True)
    return path


# ----------------------------------------------------------------------------- basics
def test_problem_table_is_one_table() -> None:
    codes = [p.code for p in PROBLEMS.values()]
    assert len(codes) == len(set(codes))
    for p in PROBLEMS.values():
        assert p.message and p.name
        assert (p.code >> 16) in range(6)
        assert p.prompt or p.flags & (P.INFO | P.NO_FIX)


@needs_e2fs
def test_clean_fresh_image(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "a.img", "has_journal")
    with ext4kit.open(img, "r+") as fs:
        fs.makedirs("/d/e")
        for i in range(50):
            fs.write_bytes(f"/d/f{i}", b"x" * (i * 300))
        fs.symlink("d/f1", "/link")
    assert e2fsck_n(img) == 0
    before = img.read_bytes()
    rep = fsck(img, "n")
    assert rep.exit_code == 0, rep.text_lines()
    assert img.read_bytes() == before  # -n never writes
    assert fsck(img, "y").exit_code == 0
    assert ext4kit.fsck(img).exit_code == 0


@needs_e2fs
def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "a.img")
    with ext4kit.open(img, "r+") as fs:
        fs.write_bytes("/f", b"y" * 10000)
    # leak a block: mark block in the bitmap of group 0 that nobody uses
    with ext4kit.open(img) as fs:
        bb = fs.groups[0].block_bitmap
    raw = bytearray(img.read_bytes())
    off = bb * BS + 400  # block 3200: free in a fresh 16 MiB image
    raw[off] |= 0x01
    img.write_bytes(bytes(raw))
    exe = [sys.executable, "-m", "ext4kit"]
    p = subprocess.run(exe + ["fsck", "-fn", "--json", str(img)], capture_output=True, text=True)
    assert p.returncode == 4, p.stderr
    doc = json.loads(p.stdout)
    names = {f["problem"] for f in doc["findings"]}
    assert "BLOCK_BITMAP_DIFF" in names
    diff = next(f for f in doc["findings"] if f["problem"] == "BLOCK_BITMAP_DIFF")
    assert diff["fix"] == "Fix" and diff["answer"] == "no" and "-3200" in diff["message"]
    p = subprocess.run(exe + ["fsck", "-fy", str(img)], capture_output=True, text=True)
    assert p.returncode == 1, p.stdout + p.stderr
    assert e2fsck_n(img) == 0
    assert subprocess.run(exe + ["fsck", "-fy", str(img)], capture_output=True).returncode == 0
    assert subprocess.run(exe + ["fsck", "-n", "-y", str(img)], capture_output=True).returncode == 16
    assert subprocess.run(exe + ["fsck", "-fn", str(tmp_path / "missing")], capture_output=True).returncode == 8


@needs_e2fs
def test_without_f_a_clean_file_system_is_skipped_like_e2fsck(tmp_path: Path) -> None:
    """No -f: a clean file system is not checked ("clean, U/N files, B/T blocks", exit 0,
    the same line as e2fsck's); with errors recorded, or a leak under -f, it is."""
    img = mkimg(tmp_path / "a.img")
    exe = [sys.executable, "-m", "ext4kit", "fsck"]
    with ext4kit.open(img) as fs:
        bb = fs.groups[0].block_bitmap
    raw = bytearray(img.read_bytes())
    raw[bb * BS + 400] |= 0x01  # a leaked block: only a full check sees it
    img.write_bytes(bytes(raw))
    p = subprocess.run(exe + ["-n", str(img)], capture_output=True, text=True)
    e2 = subprocess.run([E2FSCK, "-n", str(img)], capture_output=True, text=True)
    assert p.returncode == e2.returncode == 0
    assert p.stdout.strip().splitlines()[-1] == e2.stdout.strip().splitlines()[-1]
    assert subprocess.run(exe + ["-fn", str(img)], capture_output=True).returncode == 4
    raw = bytearray(img.read_bytes())
    raw[1024 + 0x3A] |= 0x02  # s_state: errors
    img.write_bytes(bytes(raw))
    assert subprocess.run(exe + ["-n", str(img)], capture_output=True).returncode == 4


def test_progress_bar_appears_only_for_long_checks() -> None:
    from ext4kit.fsck.progress import TerminalProgress

    now = [0.0]
    bar = TerminalProgress(delay=0.5, clock=lambda: now[0])
    bar(1, 0, 10)
    assert bar.bar is None  # a short check prints nothing extra
    now[0] = 1.0
    bar(1, 5, 10)
    assert bar.bar is not None
    task = bar.bar.tasks[0]
    assert task.completed == 5 and task.total == 10 and task.description == "Pass 1: inodes"
    bar(2, 3, 4)
    assert bar.bar.tasks[0].description == "Pass 2: directories"
    bar.close()
    assert bar.bar is None


@needs_e2fs
def test_preen_fixes_safe_problems(tmp_path: Path) -> None:
    img = mkimg(tmp_path / "a.img")
    with ext4kit.open(img, "r+") as fs:
        fs.write_bytes("/f", b"z" * 5000)
    with ext4kit.open(img) as fs:
        ino = fs.inode_of("/f").ino
        blk, off = fs.inode_location(ino)
    raw = bytearray(img.read_bytes())
    # wrong i_blocks (PREEN_OK) -> fixed by -p, exit 1
    raw[blk * BS + off + 28] = 40
    img.write_bytes(bytes(raw))
    rep = fsck(img, "p")
    assert rep.exit_code == 1, rep.text_lines()
    assert e2fsck_n(img) == 0


@needs_e2fs
def test_not_ext(tmp_path: Path) -> None:
    img = tmp_path / "zero.img"
    img.write_bytes(bytes(1 << 20))
    rep = fsck(img, "n")
    assert rep.exit_code == 8


# ----------------------------------------------------------------------------- crash cases
@pytest.fixture(scope="module")
def append_states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not HAVE_E2FS:
        pytest.skip("e2fsprogs not installed")
    base = tmp_path_factory.mktemp("append")
    before = mkimg(base / "before.img")
    with ext4kit.open(before, "r+") as fs:
        fs.write_bytes("/file", b"A" * BS)
    after = base / "after.img"
    shutil.copy(before, after)
    with ext4kit.open(after, "r+") as fs:
        with fs.open("/file", "ab") as f:
            f.write(b"B" * BS)
    a = before.read_bytes()
    b = after.read_bytes()
    changed = [i for i in range(len(a) // BS) if a[i * BS:(i + 1) * BS] != b[i * BS:(i + 1) * BS]]
    with ext4kit.open(after) as fs:
        inode = fs.inode_of("/file")
        data_blk = fs.block_map(inode).lookup(1)
        inode_blk, _ = fs.inode_location(inode.ino)
    assert data_blk in changed and inode_blk in changed
    groups = {"data": [data_blk], "inode": [inode_blk],
              "bitmap": [c for c in changed if c not in (data_blk, inode_blk)]}
    assert groups["bitmap"], "the append must change the block bitmap"
    return {"before": a, "after": b, "groups": groups, "dir": base, "data_blk": data_blk}


def _state(st: dict, parts: tuple[str, ...], name: str) -> Path:
    img = bytearray(st["before"])  # type: ignore[arg-type]
    after = st["after"]
    for part in parts:
        for blk in st["groups"][part]:  # type: ignore[index]
            img[blk * BS:(blk + 1) * BS] = after[blk * BS:(blk + 1) * BS]  # type: ignore[index]
    path = Path(st["dir"]) / f"{name}.img"  # type: ignore[arg-type]
    path.write_bytes(bytes(img))
    return path


CASES = {
    ("data",): (0, None),
    ("inode",): (4, "BLOCK_BITMAP_DIFF"),
    ("bitmap",): (4, "BLOCK_BITMAP_DIFF"),
    ("bitmap", "inode"): (0, None),  # undetectable: see the module docstring
    ("data", "inode"): (4, "BLOCK_BITMAP_DIFF"),
    ("bitmap", "data"): (4, "BLOCK_BITMAP_DIFF"),
}


@needs_e2fs
@pytest.mark.parametrize("parts", list(CASES), ids=["+".join(p) for p in CASES])
def test_append_crash_state(append_states: dict, parts: tuple[str, ...]) -> None:
    want_rc, want_problem = CASES[parts]
    img = _state(append_states, parts, "_".join(parts))
    e2 = e2fsck_n(img)
    rep = fsck(img, "n")
    assert (rep.exit_code != 0) == (e2 != 0), rep.text_lines()
    assert rep.exit_code == want_rc, rep.text_lines()
    if want_problem:
        diff = next(f for f in rep.findings if f.problem.name == want_problem)
        blk = append_states["data_blk"]
        sign = "+" if "inode" in parts else "-"
        assert f"{sign}{blk}" in diff.message
    fixed = fsck(img, "y")
    assert fixed.exit_code == (1 if want_rc else 0), fixed.text_lines()
    assert e2fsck_n(img) == 0
    assert fsck(img, "y").exit_code == 0
    with ext4kit.open(img) as fs:
        data = fs.read_bytes("/file")
        inode = fs.inode_of("/file")
        used = fs.block_map(inode).lookup(1)
    if "inode" in parts:
        assert len(data) == 2 * BS and used == append_states["data_blk"]
        if "data" in parts:
            assert data == b"A" * BS + b"B" * BS
    else:
        assert data == b"A" * BS


def test_all_states_enumerated() -> None:
    subsets = [tuple(sorted(c)) for n in (1, 2) for c in itertools.combinations(("data", "inode", "bitmap"), n)]
    assert sorted(subsets) == sorted(CASES)


@needs_e2fs
def test_preen_leaves_extent_tree_optimisation_alone(tmp_path: Path) -> None:
    """Pass 1E's "could be narrower" is answered no by -p without a word (PREEN_NO), as
    e2fsck -p does; -y optimises it (f_quota_extent_opt)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_e2fsprogs_images import CORPUS, _decompress

    if not (CORPUS / "f_quota_extent_opt").exists():
        pytest.skip("e2fsprogs test images not present")
    img = tmp_path / "q.img"
    _decompress(CORPUS / "f_quota_extent_opt", img)
    ref = tmp_path / "r.img"
    shutil.copyfile(img, ref)
    e2 = subprocess.run([E2FSCK, "-fp", str(ref)], capture_output=True, text=True)
    rep = fsck(img, "p")
    assert rep.exit_code == e2.returncode
    assert not any(f.code == P.EXTENT_CAN_NARROW for f in rep.findings)
    rep = fsck(img, "y")
    assert any(f.code == P.EXTENT_CAN_NARROW and f.answer for f in rep.findings)
    assert e2fsck_n(img) == 0
