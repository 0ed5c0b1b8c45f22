"""jbd2 replay against the reference implementations (acceptance of the "jbd2 journal" issue).

1. Ours replayed by others: random work in every data mode x commit protocol, sync(), the
   device abandoned without unmount; `e2fsck -fy`, a kernel mount and `ext4kit recover`
   each give the model's tree and leave `e2fsck -fn` clean; our replay is also compared
   block by block with `e2fsck -E journal_only`.
2. Theirs replayed by us: a journal the kernel wrote (image copied while mounted) and every
   j_* image of e2fsprogs' tests: `ext4kit recover` and `e2fsck -E journal_only` leave the
   same blocks (the primary superblock's write time / kbytes-written / checksum aside).
3. Log shapes: transactions spanning many descriptor blocks (1 KiB blocks), escaped blocks,
   a transaction wrapping the end of the log, revoke across transactions, transactions
   larger than the log, checkpoints forced by a full log, and a crash after every single
   write of a commit (RecordingDevice prefixes).
4. A read-only open replays the journal in memory: `ls`/`cat`/`get` show the recovered
   tree and the image's bytes do not change.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import os
import random
import stat as _stat
import subprocess
import sys
import tarfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import ext4kit
from ext4kit.blockdev import MemoryDevice, RecordingDevice
from ext4kit.fs.filesystem import FileSystem
from ext4kit.jbd2.log import JournalArea, recover, scan
from ext4kit.mkfs import mkfs
from ext4kit.ondisk import jbd2 as j
from ext4kit.ondisk.superblock import Superblock
from fsmodel import Model, host_snapshot, image_snapshot
from wtools import assert_fsck_clean, can_mount, fsck, kernel_mount, make_image

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("EXT4KIT_E2FS_TESTS", REPO.parent / "shared" / "e2fsprogs-tests"))
EXT4KIT = [sys.executable, "-m", "ext4kit"]
NO_MOUNT = can_mount()

# Fields of the primary superblock e2fsck rewrites on its own account when it replays
# (ext2fs_close: write time, kbytes written; the checksum follows them).
VOLATILE = {"s_wtime", "s_wtime_hi", "s_kbytes_written", "s_checksum"}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# =========================================================================== helpers
_ZERO = bytes(1 << 20)


def _copy(src: Path, dst: Path) -> Path:
    """A sparse copy (the disk this runs on is shared)."""
    with open(src, "rb") as f, open(dst, "wb") as g:
        while chunk := f.read(1 << 20):
            if chunk == _ZERO[: len(chunk)]:
                g.seek(len(chunk), os.SEEK_CUR)
            else:
                g.write(chunk)
        g.truncate(f.tell())
    os.chmod(dst, 0o644)
    return dst


@pytest.fixture(autouse=True)
def _drop_images(tmp_path):
    """Images are deleted when the test ends, pass or fail (keep them: EXT4KIT_KEEP=1)."""
    yield
    if not os.environ.get("EXT4KIT_KEEP"):
        for p in tmp_path.rglob("*"):
            if p.is_file() and p.stat().st_size > (1 << 20):
                p.unlink()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*cmd: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def e2fsck_journal_only(img: Path) -> subprocess.CompletedProcess:
    """e2fsck's journal replay and nothing else (no -f: -E journal_only then stops after
    the replay)."""
    return _run("e2fsck", "-y", "-E", "journal_only", str(img))


def ext4kit_recover(img: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*EXT4KIT, "recover", str(img)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def block_differences(a: Path, b: Path, ignore: set[str] = VOLATILE) -> list[str]:
    """Every difference between two images, by 1 KiB unit; the primary superblock is
    compared field by field without ``ignore`` (each side's checksum must be valid)."""
    da = np.fromfile(a, dtype=np.uint8)
    db = np.fromfile(b, dtype=np.uint8)
    out = []
    if len(da) != len(db):
        return [f"sizes differ: {len(da)} != {len(db)}"]
    units = (da != db).reshape(-1, 1024)
    for u in np.nonzero(units.any(axis=1))[0]:
        if u == 1:
            sa = Superblock.parse(da[1024:2048].tobytes(), verify=False)
            sb = Superblock.parse(db[1024:2048].tobytes(), verify=False)
            for k in sa.f:
                if k not in ignore and sa.f[k] != sb.f[k]:
                    out.append(f"superblock {k}: {sa.f[k]!r} != {sb.f[k]!r}")
            for who, s in ((a.name, sa), (b.name, sb)):
                if s.metadata_csum and not s.checksum_ok():
                    out.append(f"{who}: superblock checksum does not match")
            continue
        out.append(f"bytes {u * 1024}..{u * 1024 + 1023}: {int(units[u].sum())} differ")
    return out


def _jsb(img: Path) -> j.JournalSuperblock:
    with FileSystem._on_device(img, writable=False) as raw:
        return JournalArea.of(raw).read_superblock()


def _snap(img: Path, mtimes: dict | None = None) -> dict:
    with ext4kit.open(img) as fs:
        return image_snapshot(fs, mtimes or {})


def _assert_same(got: dict, want: dict, who: str) -> None:
    if got == want:
        return
    lines = []
    for p in sorted(set(got) | set(want)):
        g, w = got.get(p), want.get(p)
        if g != w:
            short = lambda v: None if v is None else v[:5] + (len(v[5]), v[6], v[7])  # noqa: E731
            lines.append(f"{p!r}: {who} {short(g)} want {short(w)}")
    raise AssertionError(f"{who} differs:\n" + "\n".join(lines[:20]))


# --------------------------------------------------------------- random work + model
NAMES = [b"a", b"b", b"c", b"dd", b"e" * 40, b"f" * 200]


def _errno_of(fn) -> int | None:
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return None


_LPF = b"/lost+found"


def random_work(fs, model: Model, rng: random.Random, steps: int, bs: int) -> None:
    """``steps`` random operations applied to the image and the model alike (each must
    succeed or fail with the model's errno)."""

    def any_path(kinds=("dir", "file", "link", "fifo")) -> bytes:
        return rng.choice(model.paths(kinds) + [b"/nope"])

    def new_path() -> bytes:
        return rng.choice(model.paths(("dir",))).rstrip(b"/") + b"/" + rng.choice(NAMES)

    def check(expect, real) -> None:
        got = _errno_of(real)
        assert got == expect, f"expected errno {expect}, got {got}"

    for _ in range(steps):
        op = rng.choice(["mkdir", "mkdir", "write", "write", "write", "append", "truncate",
                         "unlink", "rmdir", "rename", "symlink", "link", "chmod", "xattr",
                         "sync"])
        if op == "mkdir":
            p = new_path()
            check(model.mkdir(p, 0o755), partial(fs.mkdir, p, 0o755))
        elif op == "write":
            p = new_path() if rng.random() < 0.7 else any_path(("file",))
            payload = bytes([rng.randrange(1, 256)]) * rng.choice([0, 1, 100, 4096, 5000,
                                                                    3 * bs + 7, 70000])
            check(model.write_new(p, payload), partial(fs.write_bytes, p, payload))
        elif op == "append":
            p = any_path(("file",))
            node = model.lookup(p)
            payload = bytes([rng.randrange(1, 256)]) * rng.choice([10, 5000])

            def real(p: bytes = p, payload: bytes = payload) -> None:
                with fs.open(p, "ab") as f:
                    f.write(payload)
            if node == errno.ENOENT:
                check(model.write_new(p, payload), real)
            else:
                off = len(node.data) if not isinstance(node, int) and node.kind == "file" else 0
                check(model.write(p, off, payload), real)
        elif op == "truncate":
            p = any_path(("file",))
            n = rng.choice([0, 1, bs - 1, bs + 1, 50000])
            check(model.truncate(p, n), partial(fs.truncate, p, n))
        elif op == "unlink":
            p = any_path(("file", "link", "fifo"))
            check(model.unlink(p), partial(fs.unlink, p))
        elif op == "rmdir":
            p = any_path(("dir",))
            if p not in (b"/", _LPF):  # e2fsck -fy would make /lost+found again
                check(model.rmdir(p), partial(fs.rmdir, p))
        elif op == "rename":
            src = any_path()
            dst = new_path() if rng.random() < 0.6 else any_path()
            if b"/" not in (src, dst) and _LPF not in (src, dst):
                check(model.rename(src, dst), partial(fs.rename, src, dst))
        elif op == "symlink":
            p = new_path()
            tgt = rng.choice([b"a", b"../b", b"x" * 70])
            check(model.symlink(tgt, p), partial(fs.symlink, tgt, p))
        elif op == "link":
            src, dst = any_path(("file",)), new_path()
            check(model.link(src, dst), partial(fs.link, src, dst))
        elif op == "chmod":
            p = any_path(("dir", "file"))
            m = rng.choice([0o600, 0o755, 0o2775])
            check(model.chmod(p, m), partial(fs.chmod, p, m))
        elif op == "xattr":
            p = any_path(("dir", "file"))
            v = bytes(rng.randrange(256) for _ in range(rng.choice([3, 150])))
            check(model.setxattr(p, "user.k", v), partial(fs.setxattr, p, "user.k", v))
        else:
            fs.sync()


def _abandon(fs) -> None:
    """Power cut: the device is closed without unmounting (no checkpoint, no clean flag)."""
    fs.dev.close()


# =========================================================================== 1. ours
PROTOCOLS = {
    # name: (fs kind, block size, mount options)
    "sync-csum": ("ext4", 4096, "barrier,journal_checksum"),
    "async": ("ext4", 1024, "journal_async_commit"),
    "nocsum": ("ext4-nocsum", 4096, "nojournal_checksum"),
    # no metadata_csum: journal_checksum is the v1 commit-block crc32 (COMPAT_CHECKSUM)
    "v1": ("ext4-nocsum", 4096, "journal_checksum"),
    "v1-async": ("ext4-nocsum", 1024, "journal_async_commit"),
}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("data", ["journal", "ordered", "writeback"])
def test_our_log_replayed_by_e2fsck_kernel_and_us(tmp_path, data, protocol):
    kind, bs, opts = PROTOCOLS[protocol]
    img = make_image(tmp_path / "fs.img", kind, "24M", block_size=bs, inodes=2048)
    model = Model()
    rng = random.Random(f"{data}-{protocol}")
    fs = ext4kit.open(img, "r+", options=f"data={data},{opts}")
    random_work(fs, model, rng, 150, bs)
    fs.sync()
    crash = _copy(img, tmp_path / "crash.img")
    _abandon(fs)
    want = model.snapshot()
    mt = {p: v[7] for p, v in want.items()}

    jsb = _jsb(crash)
    assert jsb.s_start != 0, "nothing left in the log: the test would prove nothing"
    assert jsb.has_csum_v2or3 == (protocol in ("sync-csum", "async"))
    assert jsb.has_compat(j.FEATURE_COMPAT_CHECKSUM) == protocol.startswith("v1")
    assert jsb.has_incompat(j.FEATURE_INCOMPAT_ASYNC_COMMIT) == protocol.endswith("async")
    with FileSystem._on_device(crash, writable=False) as raw:
        assert raw.sb.has_incompat("needs_recovery")

    # 4. a read-only open sees the recovered tree and writes nothing
    digest = _sha(crash)
    with ext4kit.open(crash) as ro:
        assert ro.journal_replayed is not None and ro.journal_replayed.blocks
        _assert_same(image_snapshot(ro, mt), want, "read-only replay")
    assert _sha(crash) == digest

    ours = _copy(crash, tmp_path / "ours.img")
    r = ext4kit_recover(ours)
    assert r.returncode == 0, r.stderr
    _assert_same(_snap(ours, mt), want, "ext4kit recover")
    assert_fsck_clean(ours)

    e2_only = _copy(crash, tmp_path / "e2only.img")
    r = e2fsck_journal_only(e2_only)
    assert r.returncode == 0, r.stdout + r.stderr
    assert block_differences(ours, e2_only) == []

    theirs = _copy(crash, tmp_path / "theirs.img")
    r = _run("e2fsck", "-fy", str(theirs))
    assert r.returncode in (0, 1), r.stdout
    assert "recovering journal" in r.stdout
    _assert_same(_snap(theirs, mt), want, "e2fsck -fy")
    assert_fsck_clean(theirs)

    if NO_MOUNT is None:
        kern = _copy(crash, tmp_path / "kernel.img")
        with kernel_mount(kern, tmp_path / "mnt", "rw") as m:
            seen = host_snapshot(str(m), mt)
        _assert_same(seen, want, "kernel mount")
        assert_fsck_clean(kern)


# =========================================================================== 2. theirs
def _kernel_journal_image(tmp_path: Path, mkfs_args: list[str], mount_opts: str) -> tuple[Path, dict]:
    img = tmp_path / "k.img"
    subprocess.run(["mke2fs", "-q", "-F", *mkfs_args, str(img), "32M"], check=True,
                   capture_output=True)
    mnt = tmp_path / "kmnt"
    with kernel_mount(img, mnt, f"rw,commit=600,{mount_opts}") as m:
        (m / "d").mkdir()
        for i in range(40):
            (m / "d" / f"f{i:03d}").write_bytes(bytes([i + 1]) * (700 * i + 1))
        (m / "big").write_bytes(os.urandom(300_000))
        os.symlink("d/f001", m / "sym")
        os.setxattr(m / "big", "user.x", b"v" * 100)
        for i in range(0, 40, 3):
            (m / "d" / f"f{i:03d}").unlink()
        os.rename(m / "d" / "f001", m / "moved")
        os.mkdir(m / "e")
        subprocess.run(["sync", "-f", str(m / "big")], check=True)
        seen = host_snapshot(str(m), {})
        crash = _copy(img, tmp_path / "kcrash.img")
    return crash, seen


@pytest.mark.skipif(NO_MOUNT is not None, reason=str(NO_MOUNT))
@pytest.mark.parametrize("variant", ["ext4-4k-ordered", "ext4-1k-journal"])
def test_kernel_journal_replayed_like_e2fsck(tmp_path, variant):
    args, opts = {"ext4-4k-ordered": (["-t", "ext4", "-b", "4096"], "data=ordered"),
                  "ext4-1k-journal": (["-t", "ext4", "-b", "1024"], "data=journal")}[variant]
    crash, seen = _kernel_journal_image(tmp_path, args, opts)
    assert _jsb(crash).s_start != 0, "the kernel left nothing in its log"
    with ext4kit.open(crash) as ro:  # in-memory replay shows the kernel's tree
        assert ro.journal_replayed is not None
        _assert_same(image_snapshot(ro, {}), seen, "read-only replay of the kernel's log")

    ours = _copy(crash, tmp_path / "ours.img")
    r = ext4kit_recover(ours)
    assert r.returncode == 0, r.stderr
    assert "replayed" in r.stdout
    only = _copy(crash, tmp_path / "only.img")
    assert e2fsck_journal_only(only).returncode == 0
    assert block_differences(ours, only) == []
    _assert_same(_snap(ours), seen, "ext4kit recover")

    # a full e2fsck -fy: same tree; of the blocks, only the fields e2fsck recomputes
    full = _copy(crash, tmp_path / "full.img")
    r = _run("e2fsck", "-fy", str(full))
    assert r.returncode in (0, 1), r.stdout
    _assert_same(_snap(full), seen, "e2fsck -fy")
    # the kernel keeps the superblock's free counts lazily (per-cpu counters, written at
    # unmount): e2fsck's pass 5 corrects them ("Free blocks count wrong"); it also resets
    # the mount count and stamps its check time. Every other byte is the same.
    diffs = block_differences(ours, full, VOLATILE | {
        "s_free_blocks_count_lo", "s_free_blocks_count_hi", "s_free_inodes_count",
        "s_lastcheck", "s_lastcheck_hi", "s_mnt_count"})
    assert diffs == [], diffs
    assert_fsck_clean(ours)
    assert_fsck_clean(full)


def _decompress(folder: Path, dst: Path) -> None:
    if (folder / "image.gz").exists():
        data = gzip.decompress((folder / "image.gz").read_bytes())
    elif (folder / "image.bz2").exists():
        data = bz2.decompress((folder / "image.bz2").read_bytes())
    else:
        with tarfile.open(folder / "image.tar.bz2", "r:bz2") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(".img") and m.isfile())
            f = tar.extractfile(member)
            assert f is not None
            data = f.read()
    with open(dst, "wb") as g:
        for off in range(0, len(data), 1 << 20):
            chunk = data[off : off + (1 << 20)]
            if chunk == _ZERO[: len(chunk)]:
                g.seek(len(chunk), os.SEEK_CUR)
            else:
                g.write(chunk)
        g.truncate(len(data))


# every j_* image, and the f_* images whose journal needs recovery
J_IMAGES = sorted(p.name for p in CORPUS.iterdir()
                  if p.name.startswith("j_") or p.name in ("f_jnl_32bit", "f_jnl_64bit",
                                                           "f_journal")) \
    if CORPUS.is_dir() else []
# e2fsck's verdict on each damaged log, which ours must repeat (None: a clean replay)
J_VERDICT = {
    "j_corrupt_commit_csum": "corrupt",   # sync commit, bad commit checksum: txn dropped, ERROR_FS
    "j_corrupt_commit_tid": None,         # a commit block of another tid ends the log
    "j_corrupt_descr_csum": "failed",     # bad descriptor checksum, newer commit: nothing replayed
    "j_corrupt_journal_block": "failed",  # bad data block checksum: all but that block replayed
    "j_corrupt_revoke_block": None,       # bad r_count in an uncommitted transaction
    "j_corrupt_revoke_csum": None,        # bad revoke checksum in an uncommitted transaction
    "j_corrupt_revoke_rcount": "failed",  # r_count beyond the block: EINVAL, nothing replayed
    "j_corrupt_ext_jnl_sb_block": "refused",  # external journal: neither side touches the image
}
# images where we still differ from e2fsck (strict: the entry must go once they match)
J_KNOWN_DIFFERENCES: dict[str, str] = {
    "f_journal": (
        "the journal inode (12, a visible /journal of an old ext3) has size 0: e2fsck falls "
        "back to the superblock's s_jnl_blocks backup (and rewrites the inode from it), we "
        "refuse ('does not map all of its blocks'); e2fsck -E journal_only then also "
        "clears orphans and moves /journal to a hidden inode, which is not replay"),
}


@pytest.mark.skipif(not J_IMAGES, reason=f"e2fsprogs test images not found at {CORPUS}")
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=J_KNOWN_DIFFERENCES[n]))
    if n in J_KNOWN_DIFFERENCES else n for n in J_IMAGES])
def test_e2fsprogs_journal_image_replayed_like_e2fsck(tmp_path, name):
    orig = tmp_path / "orig.img"
    _decompress(CORPUS / name, orig)
    theirs = _copy(orig, tmp_path / "theirs.img")
    ours = _copy(orig, tmp_path / "ours.img")
    e2 = e2fsck_journal_only(theirs)
    us = ext4kit_recover(ours)
    verdict = J_VERDICT.get(name)
    e2_text = e2.stdout + e2.stderr
    if verdict == "refused":
        assert e2.returncode >= 8 and us.returncode == 8, (e2_text, us.stderr)
        assert _sha(ours) == _sha(theirs) == _sha(orig)
        return
    assert e2.returncode == 0 and us.returncode == 0, (e2_text, us.stdout, us.stderr)
    assert block_differences(ours, theirs) == []
    assert ("RECOVERY FAILED" in us.stdout) == (verdict == "failed"), us.stdout
    assert ("Journal checksum error" in e2_text or "Invalid argument" in e2_text) == \
        (verdict == "failed"), e2_text
    assert ("was corrupt" in e2_text) == (verdict == "corrupt") == ("was corrupt" in us.stdout)

    # the read-only view of the original shows what recovery produces, and writes nothing
    digest = _sha(orig)
    with ext4kit.open(orig) as ro:
        assert ro.journal_replayed is not None
        with ext4kit.open(ours) as rec:
            assert image_snapshot(ro, {}) == image_snapshot(rec, {})
    assert _sha(orig) == digest


# =========================================================================== 3. shapes
def _crash_and_compare(img: Path, tmp_path: Path, tag: str) -> Path:
    """A crash copy of ``img`` replayed by us and by e2fsck: the same blocks. Returns ours."""
    crash = _copy(img, tmp_path / f"{tag}.crash")
    ours = _copy(crash, tmp_path / f"{tag}.ours")
    theirs = _copy(crash, tmp_path / f"{tag}.theirs")
    with FileSystem._on_device(ours, writable=True) as raw:
        plan = recover(raw)
    assert plan is not None and plan.error is None and plan.failed_commit is None
    assert e2fsck_journal_only(theirs).returncode == 0
    assert block_differences(ours, theirs) == []
    assert_fsck_clean(ours)
    return ours


def _scan(img: Path):
    with FileSystem._on_device(img, writable=False) as raw:
        area = JournalArea.of(raw)
        return scan(area, area.read_superblock())


MAGIC_BLOCK = j.JBD2_MAGIC.to_bytes(4, "big")


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum", "ext3"])
def test_multi_descriptor_transaction_with_escapes(tmp_path, kind):
    """1 KiB blocks, data=journal: one transaction logs hundreds of blocks (62 tags per
    descriptor with csum_v3, more without), some of them beginning with the jbd2 magic."""
    img = make_image(tmp_path / "fs.img", kind, "24M", block_size=1024)
    fs = ext4kit.open(img, "r+", data="journal", commit=3600)
    payload = b"".join((MAGIC_BLOCK if i % 3 == 0 else b"data") + bytes([i % 251]) * 1020
                       for i in range(300))
    fs.write_bytes("/m", payload)
    for i in range(80):
        fs.write_bytes(f"/small{i}", bytes([i + 1]) * 100)
    fs.sync()
    res = _scan(img)
    assert any(t.descriptors >= 3 for t in res.committed), [t.descriptors for t in res.committed]
    assert any(tag.escaped for t in res.committed for _, tag in t.tags)
    ours = _crash_and_compare(img, tmp_path, "md")
    fs.close()
    with ext4kit.open(ours) as fs2:
        assert fs2.read_bytes("/m") == payload
        assert fs2.read_bytes("/small79") == bytes([80]) * 100


def test_transaction_wrapping_the_end_of_the_log(tmp_path):
    """A 1 MiB log of 1 KiB blocks: commits until a committed transaction starts near the
    end and finishes at the start of the log; that crash state replays like e2fsck's."""
    img = tmp_path / "w.img"
    mkfs(img, "32M", fs_type="ext4", block_size=1024, journal_size_mib=1)
    fs = ext4kit.open(img, "r+", data="journal", commit=3600)
    found = False
    for i in range(400):
        fs.write_bytes(f"/w{i % 50}", bytes([i % 255 + 1]) * 7000)
        fs.sync()
        res = _scan(img)
        if any(t.commit_block is not None and t.commit_block < t.start for t in res.committed):
            found = True
            break
    assert found, "no transaction wrapped"
    expect = {f"/w{k}": fs.read_bytes(f"/w{k}") for k in range(min(i + 1, 50))}
    ours = _crash_and_compare(img, tmp_path, "wrap")
    fs.close()
    with ext4kit.open(ours) as fs2:
        assert {p: fs2.read_bytes(p) for p in expect} == expect


def test_revoke_across_transactions_replayed_like_e2fsck(tmp_path):
    """Directory blocks logged in txn N, freed (revoked) in N+1, reused as file data in
    N+2: neither replay may write the old directory block over the data."""
    img = make_image(tmp_path / "fs.img", "ext4", "24M", block_size=1024)
    fs = ext4kit.open(img, "r+")
    fs.mkdir("/dir")
    for i in range(60):
        fs.write_bytes(f"/dir/entry-with-a-long-name-{i:04d}", b"")
    fs.sync()
    ino = fs.stat("/dir").st_ino
    dir_blocks = {r.physical + k for r in fs.block_map(fs.get_inode(ino)).runs
                  for k in range(r.length)}
    for i in range(60):
        fs.unlink(f"/dir/entry-with-a-long-name-{i:04d}")
    fs.rmdir("/dir")
    fs.sync()
    payload = b"DATA" * 256 * 12
    fs.write_bytes("/file", payload)
    fs.sync()
    ino = fs.stat("/file").st_ino
    file_blocks = {r.physical + k for r in fs.block_map(fs.get_inode(ino)).runs
                   for k in range(r.length)}
    assert dir_blocks & file_blocks, "the directory blocks were not reused"
    res = _scan(img)
    logged = {tag.blocknr for t in res.committed for _, tag in t.tags}
    revoked = {b for t in res.committed for b in t.revokes}
    assert dir_blocks & file_blocks & logged & revoked
    ours = _crash_and_compare(img, tmp_path, "rv")
    fs.close()
    with ext4kit.open(ours) as fs2:
        assert fs2.read_bytes("/file") == payload


@pytest.mark.parametrize("data", ["journal", "ordered"])
def test_transaction_larger_than_the_log(tmp_path, data):
    """One operation logs more than the whole 1 MiB log holds: no error, no deadlock, a
    consistent image, and crash copies around it replay to the committed state."""
    img = tmp_path / "big.img"
    mkfs(img, "32M", fs_type="ext4", block_size=1024, journal_size_mib=1)
    fs = ext4kit.open(img, "r+", data=data, commit=3600)
    fs.write_bytes("/before", b"b" * 5000)
    fs.sync()
    big = os.urandom(3 << 20)
    fs.write_bytes("/big", big)
    fs.write_bytes("/after", b"a" * 5000)
    fs.sync()
    ours = _crash_and_compare(img, tmp_path, "big")
    fs.close()
    assert_fsck_clean(img)
    for image in (img, ours):
        with ext4kit.open(image) as fs2:
            assert fs2.read_bytes("/big") == big
            assert fs2.read_bytes("/after") == b"a" * 5000


def test_full_log_forces_checkpoints(tmp_path):
    img = tmp_path / "f.img"
    mkfs(img, "32M", fs_type="ext4", block_size=1024, journal_size_mib=1)
    fs = ext4kit.open(img, "r+", data="journal", commit=3600)
    for i in range(120):
        fs.write_bytes(f"/f{i % 30}", bytes([i % 255 + 1]) * 20000)
        fs.sync()
    assert fs.journal.checkpoints >= 3
    expect = {f"/f{k}": fs.read_bytes(f"/f{k}") for k in range(30)}
    ours = _crash_and_compare(img, tmp_path, "full")
    fs.close()
    assert_fsck_clean(img)
    with ext4kit.open(ours) as fs2:
        assert {p: fs2.read_bytes(p) for p in expect} == expect


def _setup_base(tmp_path: Path, data: str) -> bytes:
    img = make_image(tmp_path / "base.img", "ext4", "16M", block_size=1024, inodes=512)
    with ext4kit.open(img, "r+", data=data) as fs:
        fs.mkdir("/old")
        for i in range(6):
            fs.write_bytes(f"/old/f{i}", bytes([i + 1]) * (1500 * i + 10))
        fs.write_bytes("/victim", b"v" * 3000)
    return img.read_bytes()


@pytest.mark.parametrize("data,rewrite", [
    ("ordered", False), ("journal", False), ("writeback", False), ("journal", True),
    ("ordered", True),  # blocks freed by the running transaction are not reused before it commits
], ids=["ordered", "journal", "writeback", "journal-rewrite", "ordered-rewrite"])
def test_crash_after_every_write_of_a_commit(tmp_path, data, rewrite):
    """Record every write of one operation batch and its commit; for each prefix (power
    cut after block k of the writes in issue order) our replay gives the tree before or after the commit and e2fsck
    -fn is clean; e2fsck -fy on a sample of prefixes gives the same tree as ours.
    (data=writeback promises nothing about file contents: only names, sizes, modes.)"""
    base = _setup_base(tmp_path, data)
    rec = RecordingDevice(MemoryDevice(base))
    fs = ext4kit.open(rec, "r+", data=data, commit=3600)
    fs.mkdir("/new")
    fs.write_bytes("/new/file", b"N" * 9000)
    fs.rename("/old/f2", "/new/moved")
    fs.unlink("/victim")
    fs.symlink("/new/file", "/old/link")
    fs.truncate("/old/f4", 0)  # blocks freed by the transaction
    if rewrite:
        fs.write_bytes("/old/f5", b"R" * 100)  # rewrite: old blocks freed, new allocated
    fs.setxattr("/new", "user.t", b"x" * 60)
    fs.sync()
    post_live = image_snapshot(fs, {})
    # the writes in issue order, block by block: a cut inside a multi-block write (a
    # descriptor with its logged blocks, a run of home blocks) is a torn write
    bs = 1024
    writes = [(w.offset + i, w.data[i : i + bs]) for w in rec.trace.writes()
              for i in range(0, len(w.data), bs)]
    assert len(writes) >= 10
    pre_img = tmp_path / "pre.img"
    pre_img.write_bytes(base)
    pre = _snap(pre_img)

    def view(s: dict) -> dict:
        if data != "writeback":
            return s
        return {p: v[:5] + (len(v[5]),) + v[6:] for p, v in s.items()}

    states = {"pre": view(pre), "post": view(post_live)}
    buf = bytearray(base)
    seen = []
    img = tmp_path / "cut.img"
    for k in range(len(writes) + 1):
        if k:
            off, piece = writes[k - 1]
            buf[off : off + len(piece)] = piece
        img.write_bytes(buf)
        with FileSystem._on_device(img, writable=True) as raw:
            plan = recover(raw)
        assert plan is not None and plan.error is None and plan.failed_commit is None
        got = view(_snap(img))
        which = [name for name, s in states.items() if s == got]
        assert which, f"after write {k} of {len(writes)}: neither the pre- nor post-commit tree"
        seen.append(which[0])
        r = fsck(img)
        assert r.returncode == 0, f"after write {k}: e2fsck -fn exit {r.returncode}\n{r.stdout[-2000:]}"
        if k % 9 == 4 or k == len(writes):
            other = tmp_path / "cut-e2.img"
            other.write_bytes(buf)
            r = _run("e2fsck", "-fy", str(other))
            assert r.returncode in (0, 1), r.stdout
            assert view(_snap(other)) == got
    assert seen[0] == "pre" and seen[-1] == "post"
    assert seen == sorted(seen, key=lambda s: s == "post"), "a later cut went back in time"


# =========================================================================== 4. read-only
def test_read_only_commands_show_the_recovered_tree(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "24M")
    fs = ext4kit.open(img, "r+")
    fs.mkdir("/sub")
    fs.write_bytes("/sub/hello", b"hello from the log\n")
    fs.write_bytes("/gone", b"x")
    fs.sync()
    fs.close()
    fs = ext4kit.open(img, "r+")
    fs.write_bytes("/sub/new", b"only in the journal\n" * 300)
    fs.unlink("/gone")
    fs.rename("/sub/hello", "/hello")
    fs.sync()
    crash = _copy(img, tmp_path / "crash.img")
    _abandon(fs)
    digest = _sha(crash)
    # as on disk (no replay), the new names do not exist yet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FileSystem._on_device(crash, writable=False) as raw:
            assert not raw.exists("/sub/new") and raw.exists("/gone")
    with pytest.warns(UserWarning, match="replayed in memory"):
        with ext4kit.open(crash) as ro:
            assert ro.read_bytes("/sub/new") == b"only in the journal\n" * 300
            assert not ro.exists("/gone")
    r = subprocess.run([*EXT4KIT, "ls", str(crash), "/"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0 and "hello" in r.stdout and "gone" not in r.stdout, r
    r = subprocess.run([*EXT4KIT, "cat", str(crash), "/hello"], capture_output=True,
                       cwd=REPO)
    assert r.returncode == 0 and r.stdout == b"hello from the log\n", r
    out = tmp_path / "out"
    r = subprocess.run([*EXT4KIT, "get", str(crash), "/", str(out)], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert (out / "sub" / "new").read_bytes() == b"only in the journal\n" * 300
    assert sorted(p.name for p in out.iterdir()) == ["hello", "lost+found", "sub"]
    assert _sha(crash) == digest
    assert _stat.S_ISDIR(os.lstat(out / "sub").st_mode)


# =========================================================================== v1 checksums
def _convert_to_v1_checksums(img: Path, corrupt_last: bool) -> None:
    """Give a checksum-less log the old COMPAT_CHECKSUM format: each commit block carries
    crc32_be over its transaction's descriptor and data blocks (as kernels before csum_v2
    wrote it). ``corrupt_last``: then damage one data block of the last transaction."""
    from ext4kit.jbd2.log import crc32_be

    with FileSystem._on_device(img, writable=True) as raw:
        area = JournalArea.of(raw)
        jsb = area.read_superblock()
        assert not jsb.has_csum_v2or3
        res = scan(area, jsb)
        assert len(res.committed) >= 2
        for t in res.committed:
            crc = 0xFFFFFFFF
            tags = iter(t.tags)
            for p in t.descriptor_at:
                buf = area.read(p)
                crc = crc32_be(crc, buf)
                for _ in j.parse_descriptor_tags(buf, jsb.tag_format):
                    q, _tag = next(tags)
                    crc = crc32_be(crc, area.read(q))
            assert t.commit_block is not None
            cb = j.parse_commit_block(area.read(t.commit_block))
            cb.h_chksum_type, cb.h_chksum_size = j.CHECKSUM_CRC32, j.CRC32_CHKSUM_SIZE
            cb.h_chksum = [crc] + [0] * 7
            area.write(t.commit_block, j.pack_commit_block(cb, raw.block_size))
        jsb.s_feature_compat |= j.FEATURE_COMPAT_CHECKSUM
        area.write_superblock(jsb)
        if corrupt_last:
            q, _tag = res.committed[-1].tags[-1]
            blk = bytearray(area.read(q))
            blk[100] ^= 0xFF
            area.write(q, bytes(blk))


def _damage_last_logged_block(img: Path) -> None:
    with FileSystem._on_device(img, writable=True) as raw:
        area = JournalArea.of(raw)
        res = scan(area, area.read_superblock())
        q, _tag = res.committed[-1].tags[-1]
        blk = bytearray(area.read(q))
        blk[100] ^= 0xFF
        area.write(q, bytes(blk))


@pytest.mark.parametrize("writer", ["converted", "ours"])
@pytest.mark.parametrize("corrupt", [False, True], ids=["intact", "damaged"])
def test_v1_transaction_checksums_like_e2fsck(tmp_path, corrupt, writer):
    """v1 (COMPAT_CHECKSUM) logs: converted from a checksum-less log, or written by us
    (journal_checksum on a file system without metadata_csum, as the kernel does)."""
    img = make_image(tmp_path / "fs.img", "ext4-nocsum", "24M", block_size=1024)
    opts = "nojournal_checksum" if writer == "converted" else "journal_checksum"
    fs = ext4kit.open(img, "r+", options=opts, commit=3600)
    for i in range(3):
        fs.write_bytes(f"/f{i}", bytes([i + 1]) * 3000)
        fs.mkdir(f"/d{i}")
        fs.sync()
    crash = _copy(img, tmp_path / "crash.img")
    _abandon(fs)
    if writer == "converted":
        _convert_to_v1_checksums(crash, corrupt)
    else:
        jsb = _jsb(crash)
        assert jsb.has_compat(j.FEATURE_COMPAT_CHECKSUM) and not jsb.has_csum_v2or3
        with FileSystem._on_device(crash, writable=False) as raw:
            area = JournalArea.of(raw)
            for t in scan(area, jsb).committed:
                assert t.commit_block is not None
                cb = j.parse_commit_block(area.read(t.commit_block))
                assert (cb.h_chksum_type, cb.h_chksum_size) == (j.CHECKSUM_CRC32,
                                                                j.CRC32_CHKSUM_SIZE)
        if corrupt:
            _damage_last_logged_block(crash)
        logdump = _run("debugfs", "-R", "logdump", str(crash))
        assert "commit block" in logdump.stdout and "bad" not in logdump.stdout.lower()
    ours = _copy(crash, tmp_path / "ours.img")
    theirs = _copy(crash, tmp_path / "theirs.img")
    r = e2fsck_journal_only(theirs)
    assert r.returncode == 0
    with FileSystem._on_device(ours, writable=True) as raw:
        plan = recover(raw)
    assert plan is not None
    assert block_differences(ours, theirs) == []
    assert ("was corrupt" in r.stdout) == corrupt == (plan.failed_commit is not None)
    with ext4kit.open(ours) as fs2:
        assert fs2.exists("/d1") and fs2.exists("/d2") != corrupt


def test_sequence_numbers_wrap_past_2_32(tmp_path):
    """Transaction ids are 32-bit and wrap: a log whose ids run through 0xFFFFFFFF -> 0
    is written, scanned and replayed like e2fsck does."""
    img = make_image(tmp_path / "fs.img", "ext4", "24M", block_size=1024)
    with FileSystem._on_device(img, writable=True) as raw:
        area = JournalArea.of(raw)
        jsb = area.read_superblock()
        jsb.s_sequence = 0xFFFFFFFA
        area.write_superblock(jsb)
    fs = ext4kit.open(img, "r+", commit=3600)
    for i in range(12):
        fs.write_bytes(f"/f{i}", bytes([i + 1]) * 2000)
        fs.sync()
    res = _scan(img)
    seqs = [t.sequence & 0xFFFFFFFF for t in res.committed]
    assert 0xFFFFFFFF in seqs and 0 in seqs, seqs
    ours = _crash_and_compare(img, tmp_path, "tid")
    fs.close()
    assert_fsck_clean(img)
    with ext4kit.open(ours) as fs2:
        assert fs2.read_bytes("/f11") == bytes([12]) * 2000
