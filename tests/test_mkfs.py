"""mkfs against mke2fs 1.47: the oracles are e2fsck, dumpe2fs, the kernel and mke2fs itself.

For every configuration:
  (a) ``e2fsck -fn`` exits 0 and prints nothing but its pass lines;
  (b) as root: the kernel mounts it, ``statvfs`` equals that of the mke2fs image, a file
      written through the kernel reads back through ext4kit, and e2fsck is still clean;
  (c) ``dumpe2fs -h`` equals mke2fs's field by field except UUID, hash seed, times,
      checksums, lifetime writes and mount counts; the per-group lines of ``dumpe2fs``
      (locations, free counts, flags) are identical once checksums are masked;
  (d) ext4kit's reader lists / with lost+found;
  (e) with the same UUID, hash seed and time (E2FSPROGS_FAKE_TIME) the image is byte for
      byte mke2fs's, except s_kbytes_written (mke2fs counts its io channel's writes) and
      the superblock checksum covering it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid as _uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import ext4kit
from ext4kit import UnsupportedFeatureError
from ext4kit.mkfs import MkfsParameterError, mkfs, parse_size

pytestmark = pytest.mark.skipif(shutil.which("mke2fs") is None, reason="e2fsprogs not installed")

FIXED_UUID = "01234567-89ab-cdef-0123-456789abcdef"
FIXED_SEED = "11111111-2222-3333-4444-555555555555"
FIXED_NOW = 1700000000


@dataclass(frozen=True)
class Case:
    id: str
    size: str
    mke2fs: tuple[str, ...]
    kw: dict = field(default_factory=dict)
    mount: bool = True


CASES = (
    Case("ext4-8M", "8M", ("-t", "ext4")),
    Case("ext4-300M-1k", "300M", ("-t", "ext4", "-b", "1024"), {"block_size": 1024}),
    Case("ext4-2G", "2G", ("-t", "ext4")),
    Case("ext4-1T", "1T", ("-t", "ext4")),
    Case("ext3-300M", "300M", ("-t", "ext3"), {"fs_type": "ext3"}),
    Case("ext3-1G-4k", "1G", ("-t", "ext3", "-b", "4096"), {"fs_type": "ext3", "block_size": 4096}),
    Case("ext2-300M", "300M", ("-t", "ext2"), {"fs_type": "ext2"}),
    Case("ext3-9G-1k-J1000-tind", "9G", ("-t", "ext3", "-b", "1024", "-J", "size=1000"),
         {"fs_type": "ext3", "block_size": 1024, "journal_size_mib": 1000}, mount=False),
    Case("ext4-4G-J1024", "4G", ("-t", "ext4", "-J", "size=1024"), {"journal_size_mib": 1024}),
    Case("ext4-1G-N-I128", "1G", ("-t", "ext4", "-N", "100000", "-I", "128"),
         {"inodes": 100000, "inode_size": 128}),
    Case("ext4-1G-J64-L", "1G", ("-t", "ext4", "-J", "size=64", "-L", "data"),
         {"journal_size_mib": 64, "label": "data"}),
    Case("ext4-600M-nocsum-no64-noflex", "600M", ("-t", "ext4", "-O", "^metadata_csum,^64bit,^flex_bg"),
         {"features": ["^metadata_csum,^64bit,^flex_bg"]}),
    Case("ext4-300M-uninit_bg-noresize", "300M", ("-t", "ext4", "-O", "^metadata_csum,uninit_bg,^resize_inode"),
         {"features": ["^metadata_csum", "uninit_bg", "^resize_inode"]}),
    Case("ext4-64M-inline-owner", "64M", ("-t", "ext4", "-O", "inline_data", "-i", "8192",
                                          "-E", "root_owner=1000:1001"),
         {"features": ["inline_data"], "bytes_per_inode": 8192, "root_owner": "1000:1001"}),
    Case("ext4-1G-sparse_super2", "1G", ("-t", "ext4", "-O", "sparse_super2"), {"features": ["sparse_super2"]}),
    Case("ext4-3M-floppy", "3M", ("-t", "ext4")),
    Case("ext4-150K-tiny-nojournal", "150K", ("-t", "ext4")),  # too small for a journal
)
IDS = [c.id for c in CASES]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _mke2fs(path: Path, case: Case, *, fixed: bool) -> None:
    """The reference image. lazy_journal_init only spares the disk: mke2fs would otherwise
    zero the journal with fallocate(ZERO_RANGE), which allocates it (1 GiB for 1 TiB); the
    bytes are zero either way."""
    eopts = ["lazy_journal_init=1"]
    rest: list[str] = []
    args = list(case.mke2fs)
    i = 0
    while i < len(args):
        if args[i] == "-E":
            eopts.append(args[i + 1])
            i += 2
        else:
            rest.append(args[i])
            i += 1
    env = dict(os.environ)
    if fixed:
        eopts.append(f"hash_seed={FIXED_SEED}")
        rest += ["-U", FIXED_UUID]
        env["E2FSPROGS_FAKE_TIME"] = str(FIXED_NOW)
    args = rest + ["-E", ",".join(eopts)]
    r = _run(["mke2fs", "-F", "-q", *args, str(path), case.size], env=env)
    assert r.returncode == 0, r.stderr


@dataclass
class Built:
    case: Case
    ours: Path  # default identity (random UUID, current time)
    ours_fixed: Path  # fixed UUID / hash seed / time
    ref: Path  # mke2fs with the fixed identity
    seconds: float


@pytest.fixture(scope="session")
def mkfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mkfs")


_BUILT: dict[str, Built] = {}


def built(case: Case, base: Path) -> Built:
    if case.id not in _BUILT:
        d = base / case.id
        d.mkdir()
        t = time.monotonic()
        mkfs(d / "ours.img", case.size, **case.kw)
        secs = time.monotonic() - t
        mkfs(d / "fixed.img", case.size, uuid=FIXED_UUID, hash_seed=FIXED_SEED, now=FIXED_NOW, **case.kw)
        _mke2fs(d / "ref.img", case, fixed=True)
        _BUILT[case.id] = Built(case, d / "ours.img", d / "fixed.img", d / "ref.img", secs)
    return _BUILT[case.id]


# --- (a) e2fsck ------------------------------------------------------------------------
_FSCK_OK = re.compile(r"^(Pass [1-5][A-Z]?: .*|.*: \d+/\d+ files \(.*\), \d+/\d+ blocks)$")


def assert_fsck_clean(img: Path) -> None:
    r = _run(["e2fsck", "-fn", str(img)])
    assert r.returncode == 0, r.stdout + r.stderr
    noise = [ln for ln in r.stdout.splitlines() if ln.strip() and not _FSCK_OK.match(ln)]
    assert not noise, "\n".join(noise)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_e2fsck_clean(case: Case, mkfs_dir: Path) -> None:
    b = built(case, mkfs_dir)
    assert_fsck_clean(b.ours)
    assert_fsck_clean(b.ours_fixed)


# --- (c) dumpe2fs ----------------------------------------------------------------------
_HDR_EXCLUDED = {
    "Filesystem UUID", "Directory Hash Seed", "Filesystem created", "Last mount time",
    "Last write time", "Last checked", "Checksum", "Lifetime writes", "Mount count",
    "Journal checksum",
}


def dumpe2fs_header(img: Path) -> dict[str, str]:
    r = _run(["dumpe2fs", "-h", str(img)])
    assert r.returncode == 0, r.stderr
    out: dict[str, str] = {}
    for ln in r.stdout.splitlines():
        if ":" in ln:
            k, v = ln.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def dumpe2fs_groups(img: Path) -> list[str]:
    r = _run(["dumpe2fs", str(img)])
    assert r.returncode == 0, r.stderr
    text = r.stdout[r.stdout.index("\nGroup 0:") + 1 :]
    return [re.sub(r"csum 0x[0-9a-f]+", "csum *", ln) for ln in text.splitlines()]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dumpe2fs_matches_mke2fs(case: Case, mkfs_dir: Path) -> None:
    b = built(case, mkfs_dir)
    ours, ref = dumpe2fs_header(b.ours), dumpe2fs_header(b.ref)
    for key in ("Inode count", "Block count", "Free blocks", "Free inodes", "Overhead clusters",
                "Reserved GDT blocks", "Filesystem features"):
        assert key in ref or key == "Reserved GDT blocks" or key == "Overhead clusters", key
    diff = {k: (ours.get(k), ref.get(k)) for k in set(ours) | set(ref)
            if k not in _HDR_EXCLUDED and ours.get(k) != ref.get(k)}
    assert not diff, diff
    assert ours["Filesystem UUID"] != ref["Filesystem UUID"]  # ours really was random
    assert dumpe2fs_groups(b.ours) == dumpe2fs_groups(b.ref)


# --- (e) byte for byte -----------------------------------------------------------------
def _data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    out, off = [], 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        out.append((d, h))
        off = h
    return out


def differing_kib(a: Path, b: Path) -> list[int]:
    """Offsets of the 1 KiB pieces that differ (holes read as zeros)."""
    diffs: list[int] = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        size = max(os.fstat(fa.fileno()).st_size, os.fstat(fb.fileno()).st_size)
        regions = _data_regions(fa.fileno(), size) + _data_regions(fb.fileno(), size)
        for start, end in sorted(regions):
            off = start & ~1023
            while off < end:
                n = min(end - off, 1 << 20)
                x = os.pread(fa.fileno(), n, off).ljust(n, b"\0")
                y = os.pread(fb.fileno(), n, off).ljust(n, b"\0")
                if x != y:
                    diffs += [off + k for k in range(0, n, 1024) if x[k : k + 1024] != y[k : k + 1024]]
                off += n
    return sorted(set(diffs))


_KBYTES = set(range(0x178, 0x180)) | set(range(0x3FC, 0x400))  # s_kbytes_written, s_checksum


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_byte_identical_to_mke2fs(case: Case, mkfs_dir: Path) -> None:
    b = built(case, mkfs_dir)
    assert b.ours_fixed.stat().st_size == b.ref.stat().st_size
    unexpected = []
    with open(b.ref, "rb") as fr, open(b.ours_fixed, "rb") as fo:
        for off in differing_kib(b.ref, b.ours_fixed):
            x, y = os.pread(fr.fileno(), 1024, off), os.pread(fo.fileno(), 1024, off)
            where = {i for i in range(len(x)) if x[i] != y[i]}
            is_sb = x[0x38:0x3A] == b"\x53\xef"
            if not (is_sb and where <= _KBYTES):
                unexpected.append((off, sorted(where)[:8]))
    assert not unexpected, unexpected[:10]


# --- (d) our reader ---------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reader_lists_root(case: Case, mkfs_dir: Path) -> None:
    b = built(case, mkfs_dir)
    fs = ext4kit.open(str(b.ours))
    try:
        assert sorted(fs.listdir("/")) == ["lost+found"]
        assert fs.listdir("/lost+found") == []
        st = fs.stat("/")
        if "root_owner" in case.kw:
            assert (st.st_uid, st.st_gid) == (1000, 1001)
        assert not fs.problems, fs.problems
    finally:
        fs.close()


def test_timings(mkfs_dir: Path) -> None:
    """Wall time of mkfs vs mke2fs for the sizes in the brief (printed, not asserted)."""
    lines = []
    for size in ("8M", "2G", "1T"):
        p = mkfs_dir / f"timing-{size}.img"
        q = mkfs_dir / f"timing-{size}.ref"
        t = time.monotonic()
        r = _run([sys.executable, "-c", f"from ext4kit.mkfs import mkfs; mkfs({str(p)!r}, {size!r})"],
                 env=dict(os.environ, PYTHONPATH=str(Path(ext4kit.__file__).parent.parent)))
        ours = time.monotonic() - t
        assert r.returncode == 0, r.stderr
        t = time.monotonic()
        _run(["mke2fs", "-F", "-q", "-t", "ext4", str(q), size])  # as a user runs it
        ref = time.monotonic() - t
        lines.append(f"{size}: ext4kit mkfs {ours:.3f}s (whole process), mke2fs {ref:.3f}s")
        p.unlink()
        q.unlink()
    print("\n" + "\n".join(lines))


# --- (b) the kernel -----------------------------------------------------------------------
def _mount_or_skip(img: Path, mnt: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("kernel mount needs root")
    mnt.mkdir(exist_ok=True)
    # noinit_itable: no background inode-table zeroing into the sparse image
    r = _run(["mount", "-o", "loop,noinit_itable", str(img), str(mnt)])
    if r.returncode != 0:
        pytest.skip(f"kernel loop mount unavailable: {r.stderr.strip()}")


def _statvfs(mnt: Path) -> tuple:
    s = os.statvfs(mnt)
    return (s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
            s.f_favail, s.f_namemax)


@pytest.mark.root
@pytest.mark.parametrize("case", [c for c in CASES if c.mount], ids=[c.id for c in CASES if c.mount])
def test_kernel_mount(case: Case, mkfs_dir: Path) -> None:
    d = mkfs_dir / case.id / "mount"
    d.mkdir(exist_ok=True)
    ours, ref = d / "ours.img", d / "ref.img"
    mkfs(ours, case.size, **case.kw)
    _mke2fs(ref, case, fixed=False)
    stats = {}
    for name, img in (("ref", ref), ("ours", ours)):
        mnt = d / f"mnt-{name}"
        _mount_or_skip(img, mnt)
        try:
            stats[name] = _statvfs(mnt)
            if name == "ours":
                room = stats[name][4] * stats[name][1] // 2  # half of f_bavail
                payload = os.urandom(min(300_000, room))
                with pytest.raises(MkfsParameterError, match="in use"):
                    mkfs(ours, case.size, **case.kw)  # never over a mounted image
                (mnt / "hello.bin").write_bytes(payload)
                (mnt / "dir").mkdir()
                (mnt / "dir" / "note.txt").write_text("written by the kernel\n")
                os.sync()
        finally:
            r = _run(["umount", str(mnt)])
            assert r.returncode == 0, r.stderr
    assert stats["ours"] == stats["ref"]
    assert_fsck_clean(ours)
    fs = ext4kit.open(str(ours))
    try:
        assert sorted(fs.listdir("/")) == ["dir", "hello.bin", "lost+found"]
        assert fs.read_bytes("/hello.bin") == payload
        assert fs.read_bytes("/dir/note.txt") == b"written by the kernel\n"
    finally:
        fs.close()


# --- behaviour and errors ---------------------------------------------------------------
def test_existing_file_is_discarded_and_resized(tmp_path: Path) -> None:
    img = tmp_path / "old.img"
    img.write_bytes(os.urandom(1 << 20) * 3)  # junk, and the wrong size
    r = mkfs(img, "64M", uuid=FIXED_UUID, hash_seed=FIXED_SEED, now=FIXED_NOW)
    assert img.stat().st_size == 64 << 20
    assert r.geometry.block_size == 1024  # "small": 1 KiB blocks, like mke2fs
    assert_fsck_clean(img)
    # mke2fs discards an existing file, so its inode tables count as zeroed
    ref = tmp_path / "ref.img"
    ref.write_bytes(b"x" * 4096)
    _mke2fs(ref, Case("x", "64M", ("-t", "ext4")), fixed=True)
    assert dumpe2fs_groups(img) == dumpe2fs_groups(ref)
    assert "ITABLE_ZEROED" in "\n".join(dumpe2fs_groups(img))


def test_size_parsing() -> None:
    assert parse_size("8M", 0) == 8192
    assert parse_size("8M", 2) == 2048
    assert parse_size("1T", 2) == 1 << 28
    assert parse_size("4096", 2) == 4096  # a bare number counts blocks
    assert parse_size("0x10", 0) == 16
    assert parse_size("2048s", 0) == 1024
    for bad in ("12Q", "abc", "-5", "1MB"):
        with pytest.raises(MkfsParameterError):
            parse_size(bad, 0)


def test_bare_size_counts_blocks(tmp_path: Path) -> None:
    r = mkfs(tmp_path / "a.img", "16384", block_size=4096)
    assert r.geometry.blocks_count == 16384
    r = mkfs(tmp_path / "b.img", "1048576")  # no -b: 1 KiB units (mke2fs), then 4 KiB blocks
    assert (r.geometry.block_size, r.geometry.blocks_count) == (4096, 262144)
    r = mkfs(tmp_path / "c.img", "65536")  # 64 MiB is "small": 1 KiB blocks
    assert (r.geometry.block_size, r.geometry.blocks_count) == (1024, 65536)


@pytest.mark.parametrize("kw, exc", [
    ({"features": ["frobnicate"]}, MkfsParameterError),
    ({"features": ["bigalloc"]}, UnsupportedFeatureError),
    ({"features": ["^extent"]}, MkfsParameterError),  # 64bit needs extents
    ({"fs_type": "xfs"}, MkfsParameterError),
    ({"block_size": 3000}, MkfsParameterError),
    ({"inode_size": 100}, MkfsParameterError),
    ({"features": ["inline_data"], "inode_size": 128}, MkfsParameterError),
    ({"journal_size_mib": 1, "block_size": 4096}, MkfsParameterError),  # < 1024 blocks
    ({"journal_size_mib": 60}, MkfsParameterError),  # more than half of 64 MiB
    ({"uuid": "not-a-uuid"}, MkfsParameterError),
    ({"root_owner": "12"}, MkfsParameterError),
    ({"source_dir": "/etc/hostname"}, MkfsParameterError),  # -d needs a directory
    ({"size": "100K"}, MkfsParameterError),  # 8 inodes: none left for lost+found
    ({"size": "0"}, MkfsParameterError),
])
def test_bad_arguments(tmp_path: Path, kw: dict, exc: type) -> None:
    kw = {"size": "64M", **kw}
    with pytest.raises(exc):
        mkfs(tmp_path / "bad.img", **kw)


def test_cli_mkfs(tmp_path: Path, run_cli) -> None:
    img = tmp_path / "cli.img"
    r = run_cli("mkfs", str(img), "64M", "-t", "ext4", "-b", "4096", "-O", "^metadata_csum,^64bit",
            "-L", "clilabel", "-U", FIXED_UUID, "-I", "256", "-i", "16384", "-N", "5000",
            "-J", "size=4", "-E", "root_owner=7:8")
    assert r.returncode == 0, r.stderr.decode()
    assert_fsck_clean(img)
    hdr = dumpe2fs_header(img)
    assert hdr["Filesystem volume name"] == "clilabel"
    assert hdr["Filesystem UUID"] == FIXED_UUID
    assert "metadata_csum" not in hdr["Filesystem features"]
    assert hdr["Total journal size"] == "4096k"
    assert run_cli("mkfs", str(img), "64M", "-O", "frobnicate").returncode == 16
    assert run_cli("mkfs", str(img), "64M", "-O", "bigalloc").returncode == 8
    assert run_cli("mkfs", str(img), "64M", "-t", "xfs").returncode == 16
    r = run_cli("mkfs", str(img), "64M", "-d", str(img))  # -d needs a directory
    assert r.returncode == 16 and b"is a file" in r.stderr


@pytest.mark.root
def test_block_device(tmp_path: Path) -> None:
    """A loop device full of junk: used as is (no discard), still clean and mountable."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup")
    backing = tmp_path / "junk.img"
    backing.write_bytes(os.urandom(1 << 20) * 96)
    r = _run(["losetup", "-f", "--show", str(backing)])
    if r.returncode != 0:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        for kw in ({}, {"fs_type": "ext3", "block_size": 4096}):
            res = mkfs(dev, **kw)
            assert res.geometry.blocks_count * res.geometry.block_size == 96 << 20
            assert_fsck_clean(Path(dev))
            assert "ITABLE_ZEROED" not in "\n".join(dumpe2fs_groups(Path(dev)))
    finally:
        _run(["losetup", "-d", dev])


def test_random_identity(tmp_path: Path) -> None:
    a = mkfs(tmp_path / "a.img", "8M")
    b = mkfs(tmp_path / "b.img", "8M")
    assert a.uuid != b.uuid and a.uuid.version == 4
    assert isinstance(a.uuid, _uuid.UUID)
