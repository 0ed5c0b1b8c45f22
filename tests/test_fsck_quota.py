"""fsck's quota accounting (src/ext4kit/fsck/quota.py) against e2fsprogs.

Images made by mke2fs (-O quota, with and without project quota, populated with -d so the
quota files hold several ids) must be judged clean; usage made inconsistent with debugfs
(a changed owner, group or project, a quota file with a broken header, more ids than the
quota file has blocks for) must be found exactly when e2fsck finds it, and after our -y
e2fsck -fn must be clean, a second run must exit 0, and the quota files must say what
e2fsck's own repair makes them say.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ext4kit.fsck import fsck
from ext4kit.fsck import problems as P
from ext4kit.fsck.quota import Dquot, build_quota_file

E2FSCK = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
DEBUGFS = shutil.which("debugfs") or "/usr/sbin/debugfs"
TUNE2FS = shutil.which("tune2fs") or "/usr/sbin/tune2fs"
HAVE_E2FS = all(Path(p).exists() for p in (E2FSCK, MKE2FS, DEBUGFS, TUNE2FS))
pytestmark = pytest.mark.skipif(not HAVE_E2FS, reason="e2fsprogs not installed")


def e2fsck_n(img: Path) -> int:
    return subprocess.run([E2FSCK, "-fn", str(img)], capture_output=True, timeout=120).returncode


def debugfs(img: Path, *cmds: str, write: bool = False) -> str:
    """Run debugfs commands (one: its output alone; several: through -f -)."""
    args = [DEBUGFS] + (["-w"] if write else [])
    if len(cmds) == 1:
        r = subprocess.run(args + ["-R", cmds[0], str(img)], capture_output=True, timeout=120)
    else:
        r = subprocess.run(args + ["-f", "-", str(img)], input="\n".join(cmds).encode(),
                           capture_output=True, timeout=120)
    return r.stdout.decode(errors="replace")


def lq(img: Path, kind: str) -> list[str]:
    out = debugfs(img, f"lq {kind}")
    return [ln for ln in out.splitlines() if ln.strip() and ln.split()[0].isdigit()]


def populate(src: Path, owners: list[tuple[int, int]], chown: bool = True) -> None:
    """Files of several sizes, owned by ``owners`` (uid, gid) in turn."""
    src.mkdir()
    (src / "sub").mkdir()
    for i, (uid, gid) in enumerate(owners):
        p = src / ("sub" if i % 3 == 0 else ".") / f"f{i}"
        p.write_bytes(os.urandom(1000 * (i % 5)) + b"x" * (i * 3000))
        if chown:
            os.chown(p, uid, gid)
    (src / "big").write_bytes(b"\1" * 300_000)


def mkfs(img: Path, opts: str, src: Path | None = None, bs: int = 4096, isize: int = 256,
         size: str = "16M") -> Path:
    """mke2fs with ``opts``; when populated (-d, whose quota files mke2fs 1.47 leaves
    empty), the quota feature is added afterwards by tune2fs, which counts the usage."""
    feats = opts.split(",")
    quota = [f for f in feats if f in ("quota", "project")]
    cmd = [MKE2FS, "-q", "-F", "-t", "ext4", "-b", str(bs), "-I", str(isize)]
    if src is not None:
        cmd += ["-O", ",".join([f for f in feats if f not in quota] or ["^quota"]), "-d", str(src)]
    else:
        cmd += ["-O", opts]
    subprocess.run(cmd + [str(img), size], check=True, capture_output=True)
    if src is not None and quota:
        if "project" in quota:
            subprocess.run([TUNE2FS, "-O", "project", str(img)], check=True, capture_output=True)
        q = "usrquota,grpquota" + (",prjquota" if "project" in quota else "")
        subprocess.run([TUNE2FS, "-O", "quota", "-Q", q, str(img)], check=True, capture_output=True)
    return img


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def repair_like_e2fsck(img: Path, tmp: Path) -> None:
    """Our -y repairs, e2fsck agrees afterwards, a second run is clean, and the quota
    files say what e2fsck's own repair of the same image makes them say."""
    ref = tmp / "ref.img"
    shutil.copyfile(img, ref)
    subprocess.run([E2FSCK, "-fy", str(ref)], capture_output=True, timeout=120)
    rep = fsck(img, "y")
    assert rep.exit_code == 1, rep.text_lines()
    assert e2fsck_n(img) == 0
    assert fsck(img, "y").exit_code == 0
    for kind in ("user", "group", "project"):
        assert lq(img, kind) == lq(ref, kind), kind


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


# ----------------------------------------------------------------------------- clean images
@pytest.mark.parametrize("opts,bs,isize", [
    ("quota", 4096, 256),
    ("quota,project", 1024, 256),
    ("quota,^extent,^flex_bg,^64bit", 1024, 128),
    ("quota,project,metadata_csum,^has_journal", 4096, 256),
    ("quota,metadata_csum,^has_journal", 1024, 256),
])
def test_fresh_mke2fs_quota_image_is_clean(tmp_path: Path, opts: str, bs: int, isize: int) -> None:
    src = tmp_path / "src"
    populate(src, [(0, 0), (1000, 100), (1001, 100), (70000, 5), (1000, 7)], chown=os.geteuid() == 0)
    img = mkfs(tmp_path / "a.img", opts, src, bs, isize)
    assert e2fsck_n(img) == 0
    before = digest(img)
    rep = fsck(img, "n")
    assert rep.exit_code == 0, rep.text_lines()
    assert digest(img) == before
    # an empty one too
    img2 = mkfs(tmp_path / "b.img", opts, None, bs, isize)
    assert fsck(img2, "n").exit_code == 0


# ----------------------------------------------------------------------------- inconsistencies
@needs_root
def test_changed_owner_found_and_repaired(tmp_path: Path) -> None:
    src = tmp_path / "src"
    populate(src, [(0, 0), (1000, 100), (1001, 100), (1000, 7)])
    img = mkfs(tmp_path / "a.img", "quota", src)
    debugfs(img, "sif /f1 uid 4242", "sif /f2 gid 4243", write=True)
    assert e2fsck_n(img) == 4
    before = digest(img)
    rep = fsck(img, "n")
    assert rep.exit_code == 4
    assert digest(img) == before  # -n never writes
    codes = {f.code for f in rep.findings}
    assert {P.QUOTA_USAGE, P.QUOTA_MISSING, P.QUOTA_UPDATE} <= codes
    upd = [f.location["qtype"] for f in rep.findings if f.code == P.QUOTA_UPDATE]
    assert upd == [0, 1]
    repair_like_e2fsck(img, tmp_path)


def test_project_quota_image_has_no_quota_findings(tmp_path: Path) -> None:
    src = tmp_path / "src"
    populate(src, [(0, 0)] * 4, chown=False)
    img = mkfs(tmp_path / "a.img", "quota,project", src, 1024)
    assert e2fsck_n(img) == 0
    rep = fsck(img, "n")
    assert not [f for f in rep.findings if f.code in (P.QUOTA_USAGE, P.QUOTA_MISSING,
                                                     P.QUOTA_FILE_BAD, P.QUOTA_UPDATE)]


def test_project_quota_found_and_repaired(tmp_path: Path) -> None:
    src = tmp_path / "src"
    populate(src, [(0, 0)] * 4, chown=False)
    img = mkfs(tmp_path / "a.img", "quota,project", src, 1024)
    debugfs(img, "sif /f1 projid 77", "sif /big projid 78", write=True)
    assert e2fsck_n(img) == 4
    rep = fsck(img, "n")
    assert rep.exit_code == 4
    assert [f.location["qtype"] for f in rep.findings if f.code == P.QUOTA_UPDATE] == [2]
    repair_like_e2fsck(img, tmp_path)


@pytest.mark.parametrize("bs", [1024, 4096])
def test_many_new_ids_grow_the_quota_file(tmp_path: Path, bs: int) -> None:
    """Ids spread over every byte of the tree need many more quota blocks than the file
    mke2fs made has: the rewrite maps new blocks (counted in pass 5)."""
    src = tmp_path / "src"
    populate(src, [(0, 0)] * 30, chown=False)
    img = mkfs(tmp_path / "a.img", "quota", src, bs)
    cmds = []
    for i in range(30):
        d = "sub/" if i % 3 == 0 else ""
        cmds.append(f"sif /{d}f{i} uid {(i + 1) << 24 | (i * 7) << 16 | i << 8 | i}")
    debugfs(img, *cmds, write=True)
    assert e2fsck_n(img) == 4
    assert fsck(img, "n").exit_code == 4
    repair_like_e2fsck(img, tmp_path)


# header / info / tree damage: (offset in the file, value); e2fsck 1.47 refuses a wrong
# version, a byte-swapped magic, an info block pointing past the file and tree references
# past it, but not a wrong magic (ours follows); version 0 is read with 48-byte entries
DAMAGE = {
    "magic": (0, 0),
    "be_magic": (0, 0x111FC0D9),
    "version7": (4, 7),
    "version0": (4, 0),
    "blocks": (20, 0xFFFF),
    "free_blk": (24, 9),
    "tree_ref": (1024, 60),
    "tree_loop": (1024, 1),
}


@pytest.mark.parametrize("what", sorted(DAMAGE))
def test_damaged_quota_file(tmp_path: Path, what: str) -> None:
    src = tmp_path / "src"
    populate(src, [(0, 0)] * 3, chown=False)
    img = mkfs(tmp_path / "a.img", "quota", src)
    first = int(debugfs(img, "blocks <3>").split()[0])
    off, value = DAMAGE[what]
    with open(img, "r+b") as f:
        f.seek(first * 4096 + off)
        f.write(value.to_bytes(4, "little"))
    want = e2fsck_n(img)
    rep = fsck(img, "n")
    assert rep.exit_code == want, rep.text_lines()
    if want:
        repair_like_e2fsck(img, tmp_path)


def test_ea_inode_values_are_charged_to_their_owner(tmp_path: Path) -> None:
    """EA inodes: the owner is charged their blocks and one inode each, the EA inode
    itself nothing (checked against e2fsck's own repair)."""
    src = tmp_path / "src"
    populate(src, [(0, 0)] * 3, chown=False)
    img = mkfs(tmp_path / "a.img", "quota,ea_inode", src)
    val = tmp_path / "val"
    val.write_bytes(os.urandom(20000))
    debugfs(img, f"ea_set -f {val} /f1 user.big", write=True)
    want = e2fsck_n(img)
    assert (fsck(img, "n").exit_code == 0) == (want == 0)
    subprocess.run([E2FSCK, "-fy", str(img)], capture_output=True, timeout=120)
    assert e2fsck_n(img) == 0
    rep = fsck(img, "n")
    assert rep.exit_code == 0, rep.text_lines()


# ----------------------------------------------------------------------------- the format
def test_build_quota_file_layout() -> None:
    """Ids 0, 34, 100 make e2fsck's six-block file: header, 4 tree blocks, one data block;
    an id with neither usage nor limits is not written (e2fsprogs deletes it)."""
    dq = [Dquot(100, space=2048, inodes=2, bsoft=32, bhard=50), Dquot(0, space=13312, inodes=2),
          Dquot(34, space=1024, inodes=1), Dquot(77)]
    data = build_quota_file(0, dq, 604800, 604800)
    assert len(data) == 6 * 1024
    magic, version, bgrace, igrace, flags, blocks, free_blk, free_entry = struct.unpack_from("<8I", data, 0)
    assert (magic, version, bgrace, blocks, free_blk, free_entry) == (0xD9C01F11, 1, 604800, 6, 0, 5)
    assert int.from_bytes(data[5 * 1024 + 8: 5 * 1024 + 10], "little") == 3  # entries
    ids = [struct.unpack_from("<I", data, 5 * 1024 + 16 + 72 * i)[0] for i in range(3)]
    assert ids == [0, 34, 100]
    assert Dquot.unpack(data, 5 * 1024 + 16 + 72 * 2) == dq[0]
    assert len(build_quota_file(1, [Dquot(0)], 1, 2)) == 2 * 1024  # header and an empty root
    # a full data block leaves the free-entry list; the 15th id gets a new block
    many = build_quota_file(2, [Dquot(i, inodes=1) for i in range(15)], 1, 2)
    assert struct.unpack_from("<I", many, 20)[0] == 7


def test_orphan_release_adjusts_quota_silently(tmp_path: Path) -> None:
    """An unlinked-but-open file on the orphan list: releasing it takes its blocks and
    inode off its ids in the quota files without a quota question (as e2fsck does)."""
    src = tmp_path / "src"
    populate(src, [(0, 0)] * 4, chown=False)
    img = mkfs(tmp_path / "a.img", "quota", src)
    ino = int(debugfs(img, "stat /big").split("Inode:")[1].split()[0])
    debugfs(img, "sif /big uid 1234", "sif /big gid 1234", write=True)
    subprocess.run([E2FSCK, "-fy", str(img)], capture_output=True, timeout=120)  # quota now counts /big
    debugfs(img, "unlink /big", f"sif <{ino}> links_count 0", f"ssv last_orphan {ino}", write=True)
    ref = tmp_path / "ref.img"
    shutil.copyfile(img, ref)
    subprocess.run([E2FSCK, "-fy", str(ref)], capture_output=True, timeout=120)
    rep = fsck(img, "y")
    assert any(f.code == P.ORPHAN_CLEAR for f in rep.findings)
    assert not [f for f in rep.findings if f.code in (P.QUOTA_USAGE, P.QUOTA_MISSING, P.QUOTA_UPDATE)]
    assert e2fsck_n(img) == 0
    assert fsck(img, "y").exit_code == 0
    for kind in ("user", "group"):
        assert lq(img, kind) == lq(ref, kind), kind
    # the released file was all id 1234 had: no usage, no limits, so no entry
    assert not [ln for ln in lq(img, "user") if ln.split()[0] == "1234"]
