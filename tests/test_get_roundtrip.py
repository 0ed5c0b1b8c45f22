"""``ext4kit get/ls/cat`` against images built from generated trees (see conftest.py).

Acceptance: for every image configuration ``ext4kit get IMAGE / OUT`` reproduces the
source tree exactly (content, holes, types, modes, mtimes, symlinks, hard links, device
numbers, user xattrs, owners when root). A top-level ``lost+found`` is ignored.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

import images
import treegen
from treecompare import compare_paths, compare_trees

MAX_SHOWN = 60
IS_ROOT = os.geteuid() == 0


def _fail_text(what: str, diffs: list[str], proc: subprocess.CompletedProcess | None = None
               ) -> str:
    lines = [f"{what}: {len(diffs)} difference(s)", *diffs[:MAX_SHOWN]]
    if len(diffs) > MAX_SHOWN:
        lines.append(f"... and {len(diffs) - MAX_SHOWN} more")
    if proc is not None and proc.stderr:
        lines.append("stderr: " + proc.stderr.decode(errors="replace")[-3000:])
    return "\n".join(lines)


def _check_ok(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, (
        f"{what} exited {proc.returncode}\nstderr: {proc.stderr.decode(errors='replace')}")


# --- the fixtures themselves -------------------------------------------------------------

def test_image_properties(image):
    """The images really contain what the round trip is meant to exercise."""
    n = images.extent_count(image.path, "/" + treegen.FRAG_FILE)
    assert n >= images.MIN_FRAG_EXTENTS, f"{image.id}: frag.bin has {n} extents"
    if image.config.htree or image.config.kernel:
        assert images.has_htree(image.path, "/many"), f"{image.id}: /many is not indexed"
    print(f"{image.id}: built in {image.build_seconds:.1f}s, frag.bin has {n} extents")


@pytest.mark.root
def test_image_matches_kernel_view(image, tmp_path):
    """Sanity check of the fixture, independent of ext4kit: the kernel's view of the image
    (read-only loop mount) equals the expected tree. If this fails, the image builder is
    wrong, not the reader."""
    if not IS_ROOT:
        pytest.skip("needs root for a loop mount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-o", "ro,loop", image.path, mnt], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"loop mount failed: {p.stderr.decode(errors='replace').strip()}")
    try:
        diffs = compare_trees(image.expected, mnt)
    finally:
        subprocess.run(["umount", mnt], check=True)
    assert not diffs, _fail_text(f"kernel view of {image.id}", diffs)


# --- get ----------------------------------------------------------------------------------

def test_get_root_roundtrip(image, run_cli, tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = run_cli("get", image.path, "/", out)
    elapsed = time.monotonic() - t0
    _check_ok(proc, f"ext4kit get {image.id} / OUT")
    diffs = compare_trees(image.expected, out)
    if proc.stderr:
        diffs.append(f"unexpected output on stderr for a clean image: {proc.stderr[:500]!r}")
    assert not diffs, _fail_text(f"get {image.id} / OUT", diffs, proc)
    print(f"{image.id}: get / took {elapsed:.1f}s")


SINGLE_FILES = [
    "hello.txt",
    "empty.txt",
    "sizes/random_100k.bin",
    "sizes/4097.bin",
    treegen.FRAG_FILE,
    treegen.SPARSE_FILE,
    "sparse/all_hole.bin",
    "unicode/日本語/ファイル.txt",
    "long/" + "é" * 127 + "x",
    "many/entry_02999" + "_x" * (2999 % 23),
    "modes/setuid",
    "modes/none",
    "times/y2100",
    "times/pre1970",
    "xattr/big.txt",
    "links/slow200",
    "links/fast",
    "special/fifo",
]


def test_get_single_files(image, run_cli, tmp_path):
    """``get IMAGE /path DEST`` for one file at a time: DEST becomes the file."""
    diffs = []
    for i, rel in enumerate(SINGLE_FILES):
        dest = tmp_path / f"single{i}"
        proc = run_cli("get", image.path, "/" + rel, dest)
        if proc.returncode != 0:
            diffs.append(f"{rel!r}: exit {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
            continue
        diffs += [f"{rel!r} -> {d}" for d in compare_paths(image.expected / rel, dest)]
    assert not diffs, _fail_text(f"single-file get from {image.id}", diffs)


def test_get_file_into_existing_dir(image, run_cli, tmp_path):
    dest = tmp_path / "existing"
    dest.mkdir()
    rel = "unicode/Ελληνικά/αρχείο.txt"
    proc = run_cli("get", image.path, "/" + rel, dest)
    _check_ok(proc, "get FILE EXISTING_DIR")
    diffs = compare_paths(image.expected / rel, dest / "αρχείο.txt")
    assert not diffs, _fail_text("get into an existing directory", diffs, proc)


@pytest.mark.parametrize("sub", ["unicode", "hardlinks", "links", "xattr", "modes"])
def test_get_subtree(image, run_cli, tmp_path, sub):
    out = tmp_path / "sub"
    proc = run_cli("get", image.path, "/" + sub, out)
    _check_ok(proc, f"get /{sub}")
    diffs = compare_trees(image.expected / sub, out, ignore_top=())
    assert not diffs, _fail_text(f"get {image.id} /{sub}", diffs, proc)


# --- ls -----------------------------------------------------------------------------------

def _parse_long(line: str) -> dict:
    # mode nlink uid gid size date time name[ -> target]; devices: "major, minor" as size
    mode, nlink, uid, gid, rest = line.split(maxsplit=4)
    if mode[0] in "cb":
        major, minor, _date, _time, name = rest.split(maxsplit=4)
        size = f"{major.rstrip(',')} {minor}"
    else:
        size, _date, _time, name = rest.split(maxsplit=3)
    if mode[0] == "l":
        name = name.split(" -> ", 1)[0]
    return {"mode": mode, "nlink": int(nlink), "uid": int(uid), "gid": int(gid),
            "size": size, "name": name}


def test_ls_root_long(image, run_cli):
    proc = run_cli("ls", image.path, "/", "-l")
    _check_ok(proc, "ls / -l")
    lines = proc.stdout.decode().splitlines()
    got = {e["name"]: e for e in map(_parse_long, lines)}
    want = sorted(os.listdir(image.expected)) + ["lost+found"]
    assert sorted(got) == sorted(want)
    diffs = []
    for name in os.listdir(image.expected):
        st = os.lstat(image.expected / name)
        e = got[name]
        if e["mode"] != stat.filemode(st.st_mode):
            diffs.append(f"{name}: mode {e['mode']} != {stat.filemode(st.st_mode)}")
        if IS_ROOT and (e["uid"], e["gid"]) != (st.st_uid, st.st_gid):
            diffs.append(f"{name}: owner {e['uid']}:{e['gid']} != {st.st_uid}:{st.st_gid}")
        if stat.S_ISREG(st.st_mode) and e["size"] != str(st.st_size):
            diffs.append(f"{name}: size {e['size']} != {st.st_size}")
        if stat.S_ISDIR(st.st_mode):
            nsub = sum(1 for c in os.scandir(image.expected / name) if c.is_dir(
                follow_symlinks=False))
            if e["nlink"] != 2 + nsub:
                diffs.append(f"{name}: nlink {e['nlink']} != {2 + nsub}")
    assert not diffs, _fail_text(f"ls -l / of {image.id}", diffs, proc)


@pytest.mark.parametrize("sub", ["sizes", "special", "hardlinks/other", "times"])
def test_ls_long_details(image, run_cli, sub):
    proc = run_cli("ls", image.path, "/" + sub, "-l")
    _check_ok(proc, f"ls /{sub} -l")
    got = {e["name"]: e for e in map(_parse_long, proc.stdout.decode().splitlines())}
    exp_dir = image.expected / sub
    assert sorted(got) == sorted(os.listdir(exp_dir))
    diffs = []
    for name, e in got.items():
        st = os.lstat(exp_dir / name)
        want_size = (f"{os.major(st.st_rdev)} {os.minor(st.st_rdev)}"
                     if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                     else str(st.st_size))
        if (e["mode"], e["nlink"], e["size"]) != (stat.filemode(st.st_mode), st.st_nlink,
                                                  want_size):
            diffs.append(f"{name}: got {e}, want mode {stat.filemode(st.st_mode)} nlink "
                         f"{st.st_nlink} size {want_size}")
    assert not diffs, _fail_text(f"ls -l /{sub} of {image.id}", diffs, proc)


def test_ls_big_directory(image, run_cli):
    proc = run_cli("ls", image.path, "/many")
    _check_ok(proc, "ls /many")
    got = proc.stdout.decode().splitlines()
    want = sorted(os.listdir(image.expected / "many"))
    assert len(got) == len(want)
    assert sorted(got) == want


# --- cat ----------------------------------------------------------------------------------

CAT_FILES = [
    "hello.txt",
    "empty.txt",
    "sizes/1.bin",
    "sizes/60.bin",
    "sizes/4096.bin",
    "sizes/random_3m.bin",
    "sizes/zeros_64k.bin",
    treegen.FRAG_FILE,
    "sparse/tail_hole.bin",
    "sparse/leading_hole.bin",
    "unicode/emoji_😀🎉🚀.txt",
    "long/" + "字" * 85 + "/" + "D" * 254 + "1",
    "many/entry_00000",
    "many/entry_01234" + "_x" * (1234 % 23),
    "many/entry_02999" + "_x" * (2999 % 23),
    "hardlinks/other/c.txt",
    "modes/none",
]


def test_cat(image, run_cli):
    diffs = []
    for rel in CAT_FILES:
        proc = run_cli("cat", image.path, "/" + rel)
        want = (image.expected / rel).read_bytes()
        if proc.returncode != 0:
            diffs.append(f"{rel!r}: exit {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
        elif proc.stdout != want:
            diffs.append(f"{rel!r}: {len(proc.stdout)} bytes (sha1 "
                         f"{hashlib.sha1(proc.stdout).hexdigest()[:12]}), want {len(want)} "
                         f"(sha1 {hashlib.sha1(want).hexdigest()[:12]})")
    assert not diffs, _fail_text(f"cat from {image.id}", diffs)


def test_cat_follows_symlinks_inside_image(image, run_cli):
    want = (image.expected / "links/target.txt").read_bytes()
    for link in ("links/fast", "links/len60", "links/slow200"):
        proc = run_cli("cat", image.path, "/" + link)
        _check_ok(proc, f"cat /{link}")
        assert proc.stdout == want, link


def test_cat_missing_and_directory(image, run_cli):
    proc = run_cli("cat", image.path, "/does/not/exist")
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr
    proc = run_cli("cat", image.path, "/sizes")
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr


# --- containment --------------------------------------------------------------------------

def _snapshot(root: Path, exclude: Path) -> dict[bytes, tuple]:
    """Everything observable under ``root`` except inside ``exclude``: metadata, content,
    symlink targets, xattr names."""
    root_b, excl = os.fsencode(root), os.fsencode(exclude)
    paths = [root_b]
    for dirpath, dirnames, filenames in os.walk(root_b):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != excl]
        paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
    snap: dict[bytes, tuple] = {}
    for p in paths:
        st = os.lstat(p)
        extra: object = None
        if stat.S_ISREG(st.st_mode):
            extra = hashlib.sha256(Path(os.fsdecode(p)).read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(p)
        xattrs = () if stat.S_ISLNK(st.st_mode) else tuple(sorted(
            os.listxattr(p, follow_symlinks=False)))
        snap[p] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                   st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink, extra, xattrs)
    return snap


def _diff_snapshots(before: dict, after: dict) -> list[str]:
    out = []
    for p in sorted(before.keys() | after.keys()):
        if p not in after:
            out.append(f"{os.fsdecode(p)!r}: removed")
        elif p not in before:
            out.append(f"{os.fsdecode(p)!r}: created outside the destination")
        elif before[p] != after[p]:
            out.append(f"{os.fsdecode(p)!r}: changed {before[p]} -> {after[p]}")
    return out


@pytest.fixture
def arena(tmp_path):
    """tmp/work/out (destination, created empty so that its creation does not count as a
    change of tmp/work), tmp/work/sentinel and tmp/abs_sentinel (must stay untouched),
    tmp/img (the hostile image, which must not change either)."""
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    for d in (work / "sentinel", tmp_path / "abs_sentinel", tmp_path / "img"):
        d.mkdir(parents=True)
        (d / "keep.txt").write_bytes(b"keep me\n")
        os.chmod(d / "keep.txt", 0o644)
    return tmp_path


def test_containment_symlinks(arena, run_cli):
    """Symlinks pointing outside are created as symlinks (verbatim), never followed."""
    img = arena / "img" / "symlinks.img"
    links = images.build_symlink_trap_image(img, arena / "img", arena / "abs_sentinel")
    out = arena / "work" / "out"
    before = _snapshot(arena, out)
    proc = run_cli("get", img, "/", out)
    after = _snapshot(arena, out)
    problems = _diff_snapshots(before, after)
    _check_ok(proc, "get of an image with escaping symlinks")
    for name, target in links.items():
        p = out / name
        if not p.is_symlink():
            problems.append(f"{name}: not created as a symlink")
        elif os.readlink(p) != target:
            problems.append(f"{name}: target {os.readlink(p)!r} != {target!r}")
    assert (out / "d" / "f").read_bytes() == b"legit\n"
    assert not problems, _fail_text("symlink containment", problems, proc)


def test_containment_symlink_then_directory_of_same_name(arena, run_cli):
    """A symlink, then a directory with the same name holding a file: the file must not
    land where the symlink points (the command may fail, but not write outside)."""
    img = arena / "img" / "dup.img"
    images.build_dupname_image(img, arena / "img", arena / "abs_sentinel")
    out = arena / "work" / "out"
    before = _snapshot(arena, out)
    proc = run_cli("get", img, "/", out)
    problems = _diff_snapshots(before, _snapshot(arena, out))
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    assert not (arena / "abs_sentinel" / "pwned").exists()
    assert not (arena / "work" / "sentinel" / "pwned").exists()
    for name in ("abs_dir", "up"):
        p = out / name
        if p.is_symlink():
            continue  # the symlink won; the directory must then have been refused
        if p.exists() and not p.is_dir():
            problems.append(f"{name}: neither a symlink nor a directory")
    assert not problems, _fail_text("duplicate-name containment", problems, proc)


def test_containment_bad_names(arena, run_cli):
    """Entries named '..', '.', 'a/b', '../escape', '../../escape2' and an absolute path
    (no kernel would create them): nothing may be written outside the destination."""
    img = arena / "img" / "badnames.img"
    abs_escape = arena / "abs_escape"
    images.build_badname_image(img, arena / "img", abs_escape)
    out = arena / "work" / "out"
    before = _snapshot(arena, out)
    proc = run_cli("get", img, "/", out)
    problems = _diff_snapshots(before, _snapshot(arena, out))
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    for p in (abs_escape, arena / "work" / "escape", arena / "work" / "escape2",
              arena / "escape", arena / "escape2"):
        if os.path.lexists(p):
            problems.append(f"{p} was created")
    if out.exists():
        assert (out / "top.txt").read_bytes() == b"top\n" or proc.returncode != 0
    assert not problems, _fail_text("bad-name containment", problems, proc)
