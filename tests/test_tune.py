"""``ext4kit tune``: removing and adding the journal, against tune2fs 1.47 itself.

The oracle is the real tool: the same image is changed by ``tune2fs`` (with
E2FSPROGS_FAKE_TIME, so its timestamps are ours) and by ext4kit, and the two images must be
byte-identical except ``s_kbytes_written`` (libext2fs counts its own I/O there). Every
result is also ``e2fsck -fn`` clean, and dumpe2fs / debugfs logdump / our ``journal``
command read the journal that was made. Refusals (needs_recovery, a journal already there,
unsupported features, bad sizes, unreadable or read-only images) end with one error line,
the e2fsprogs exit code, and the image untouched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import ext4kit
from ext4kit.fs.alloc import group_first_block
from ext4kit.ondisk.superblock import LAYOUT as SB_LAYOUT
from ext4kit.tune import TuneError, tune
from wtools import assert_fsck_clean, can_mount, debugfs, kernel_mount, make_image

NOW = 1_700_000_500
NO_MOUNT = can_mount()
needs_mount = pytest.mark.skipif(NO_MOUNT is not None, reason=str(NO_MOUNT))

# (id, make_image kind, block size)
KINDS = [("ext4-4k", "ext4", 4096), ("ext4-1k", "ext4", 1024), ("ext3", "ext3", 1024),
         ("ext4-nocsum", "ext4-nocsum", 4096)]
KIND_IDS = [k[0] for k in KINDS]


# ----------------------------------------------------------------------------- helpers
def tune2fs(image: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(NOW))
    r = subprocess.run(["tune2fs", *args, str(image)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def dumpe2fs_h(image: Path) -> dict[str, str]:
    r = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        key, sep, val = line.partition(":")
        if sep:
            out[key.strip()] = val.strip()
    return out


def journal_blockcount(image: Path, bs: int) -> int:
    """Blocks the journal inode holds (data and map blocks), as debugfs sees them."""
    m = re.search(r"Blockcount: (\d+)", debugfs(image, "stat <8>"))
    assert m, "no journal inode"
    return int(m.group(1)) // (bs // 512)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def superblock_offsets(image: Path) -> list[int]:
    with ext4kit.open(image) as fs:
        bs = fs.block_size
        return [1024] + [group_first_block(fs, g) * bs for g in range(1, fs.group_count)
                         if fs.sb.is_sparse_group(g)]


def assert_same_as_tune2fs(ours: Path, theirs: Path) -> None:
    """Byte-identical images, except s_kbytes_written (and so the checksum) in the
    superblock copies."""
    a, b = ours.read_bytes(), theirs.read_bytes()
    assert len(a) == len(b)
    sb_offs = superblock_offsets(theirs)
    bs = ext4kit.open(theirs).block_size
    allowed = {off // bs for off in sb_offs}
    chunk = 1 << 20
    bad = []
    for off in range(0, len(a), chunk):
        if a[off : off + chunk] != b[off : off + chunk]:
            bad += [blk // bs for blk in range(off, min(off + chunk, len(a)), bs)
                    if a[blk : blk + bs] != b[blk : blk + bs]]
    assert set(bad) <= allowed, f"blocks differing from tune2fs's result: {bad[:20]}"
    for off in sb_offs:
        x, y = SB_LAYOUT.unpack(a[off : off + 1024]), SB_LAYOUT.unpack(b[off : off + 1024])
        diff = {k: (x[k], y[k]) for k in x if x[k] != y[k]}
        diff.pop("s_kbytes_written", None)
        diff.pop("s_checksum", None)
        assert not diff, f"superblock at byte {off}: ours vs tune2fs {diff}"


def sb_fields(image: Path) -> dict:
    with open(image, "rb") as f:
        f.seek(1024)
        return SB_LAYOUT.unpack(f.read(1024))


def one_error_line(proc: subprocess.CompletedProcess, rc: int, contains: str = "") -> str:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == rc, (proc.returncode, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert contains in lines[0], err
    return lines[0]


# ----------------------------------------------------------------------------- remove
@pytest.mark.parametrize("kind,bs", [k[1:] for k in KINDS], ids=KIND_IDS)
def test_remove_journal_like_tune2fs(tmp_path, run_cli, kind, bs):
    img = make_image(tmp_path / "fs.img", kind, "64M", block_size=bs)
    with ext4kit.open(img, "r+") as fs:  # some files, so the bitmaps are not pristine
        fs.mkdir("/d")
        for i in range(20):
            fs.write_bytes(f"/d/f{i}", bytes([i]) * (1000 + 3000 * i))
    ref = tmp_path / "ref.img"
    shutil.copy(img, ref)
    before = dumpe2fs_h(img)
    held = journal_blockcount(img, bs)
    jsize = int(before["Total journal blocks"])
    assert held >= jsize

    res = tune(img, ["^has_journal"], now=NOW)
    assert res.removed_blocks == held
    tune2fs(ref, "-O", "^has_journal")
    assert_same_as_tune2fs(img, ref)

    assert_fsck_clean(img)
    after = dumpe2fs_h(img)
    assert "has_journal" not in after["Filesystem features"].split()
    assert "Journal inode" not in after and "Total journal blocks" not in after
    assert int(after["Free blocks"]) - int(before["Free blocks"]) == held
    assert int(after["Overhead clusters"]) == int(before["Overhead clusters"]) - jsize
    sb = sb_fields(img)
    assert sb["s_journal_inum"] == 0 and sb["s_jnl_blocks"] == [0] * 17
    assert "Inode: 8   Type: bad type" in debugfs(img, "stat <8>")
    with ext4kit.open(img) as fs:  # the files are all still there
        assert fs.read_bytes("/d/f19") == bytes([19]) * (1000 + 3000 * 19)

    # already without a journal: nothing to do (tune2fs: the same)
    h = sha(img)
    proc = run_cli("tune", "-O", "^has_journal", img)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert sha(img) == h


# ----------------------------------------------------------------------------- add
# On 64M images the default journal is 4 MiB for both block sizes: -J size=4 must give
# the same, once (ext3); 16 MiB is checked everywhere.
ADD_CASES = [(k, s) for k in KINDS for s in (None, 16)] + [(KINDS[2], 4)]


@pytest.mark.parametrize("kind,bs,size", [(k[1], k[2], s) for k, s in ADD_CASES],
                         ids=[f"{k[0]}-{'default' if s is None else f'{s}M'}"
                              for k, s in ADD_CASES])
def test_add_journal_like_tune2fs(tmp_path, kind, bs, size):
    img = make_image(tmp_path / "fs.img", kind, "64M", block_size=bs,
                     features=("^has_journal",))
    with ext4kit.open(img, "r+") as fs:
        for i in range(12):
            fs.write_bytes(f"/f{i}", bytes([i + 1]) * (5000 * i + 1))
        for i in range(0, 12, 3):
            fs.unlink(f"/f{i}")  # holes in the free space
    ref = tmp_path / "ref.img"
    shutil.copy(img, ref)
    free_before = int(dumpe2fs_h(img)["Free blocks"])

    opts = None if size is None else f"size={size}"
    res = tune(img, ["has_journal"] if size is None else [], opts, now=NOW)
    tune2fs(ref, *(["-O", "has_journal"] if size is None else ["-J", opts]))

    expect = {4096: 1024, 1024: 4096}[bs] if size is None else size * 1024 * 1024 // bs
    assert res.journal_blocks == expect
    ours, theirs = sb_fields(img), sb_fields(ref)
    for key in ("s_journal_inum", "s_jnl_blocks", "s_jnl_backup_type", "s_feature_compat",
                "s_overhead_clusters", "s_free_blocks_count_lo"):
        assert ours[key] == theirs[key], key
    assert ours["s_jnl_blocks"][16] == expect * bs and ours["s_jnl_backup_type"] == 1
    assert_same_as_tune2fs(img, ref)

    assert_fsck_clean(img)
    info = dumpe2fs_h(img)
    assert "has_journal" in info["Filesystem features"].split()
    assert info["Journal inode"] == "8" and info["Journal backup"] == "inode blocks"
    assert int(info["Total journal blocks"]) == expect
    assert info["Journal sequence"] == "0x00000001" and info["Journal start"] == "0"
    held = journal_blockcount(img, bs)
    assert free_before - int(info["Free blocks"]) == held >= expect
    log = debugfs(img, "logdump")
    assert "Journal starts at block 0, transaction 1" in log
    assert "Found expected sequence" not in log and "bad" not in log.lower()


def test_add_journal_needing_an_extent_leaf(tmp_path):
    """Without flex_bg a 40 MiB journal crosses 6 groups: 6 extents, so the in-inode root
    splits. The leaf block goes where libext2fs puts it (before the first extent) and the
    stale root slots tune2fs copies into s_jnl_blocks are reproduced."""
    img = make_image(tmp_path / "fs.img", "ext4", "200M", block_size=1024,
                     features=("^flex_bg", "^has_journal"))
    ref = tmp_path / "ref.img"
    shutil.copy(img, ref)
    res = tune(img, [], "size=40", now=NOW)
    assert res.journal_blocks == 40960
    tune2fs(ref, "-J", "size=40")
    assert "(ETB0)" in debugfs(img, "stat <8>")
    assert sb_fields(img)["s_jnl_blocks"] == sb_fields(ref)["s_jnl_blocks"]
    assert_same_as_tune2fs(img, ref)
    assert_fsck_clean(img)
    # and the whole tree goes again
    tune(img, ["^has_journal"], now=NOW)
    tune2fs(ref, "-O", "^has_journal")
    assert_same_as_tune2fs(img, ref)
    assert_fsck_clean(img)


def test_cli_add_then_write_through_the_new_journal(tmp_path, run_cli):
    img = make_image(tmp_path / "fs.img", "ext4", "64M", block_size=1024,
                     features=("^has_journal",))
    proc = run_cli("tune", "-O", "has_journal", "-J", "size=8", img)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "Creating journal inode: done (8192 blocks)"
    assert not proc.stderr
    out = run_cli("journal", img).stdout.decode()
    assert "Journal: 8192 blocks of 1024 bytes, first 1" in out and "(clean)" in out
    # our writer now logs through it (jbd2), and e2fsck agrees with the result
    with ext4kit.open(img, "r+") as fs:
        assert type(fs.journal).__name__ == "Jbd2Journal"
        fs.mkdir("/new")
        fs.write_bytes("/new/file", b"journalled\n" * 500)
    assert_fsck_clean(img)
    with ext4kit.open(img) as fs:
        assert fs.read_bytes("/new/file") == b"journalled\n" * 500
    # and the whole journal can go again: back to the counts we started from
    proc = run_cli("tune", "-O", "^has_journal", img)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("Journal removed: 8192 blocks freed")
    assert_fsck_clean(img)


def test_remove_and_add_in_one_command(tmp_path, run_cli):
    """tune2fs -O ^has_journal -J size=N: the journal is removed, then a new one made."""
    img = make_image(tmp_path / "fs.img", "ext3", "64M", block_size=1024)
    ref = tmp_path / "ref.img"
    shutil.copy(img, ref)
    res = tune(img, ["^has_journal"], "size=5", now=NOW)
    assert res.removed_blocks > 4096 and res.journal_blocks == 5120
    tune2fs(ref, "-O", "^has_journal", "-J", "size=5")
    assert_same_as_tune2fs(img, ref)
    assert_fsck_clean(img)


# ----------------------------------------------------------------------------- refusals
def test_refuses_when_the_journal_needs_recovery(tmp_path, run_cli):
    img = make_image(tmp_path / "fs.img", "ext4", "32M", block_size=1024)
    fs = ext4kit.open(img, "r+")
    fs.write_bytes("/logged", b"x" * 5000)
    fs.sync()  # committed to the log, not checkpointed: a crash now needs recovery
    crash = tmp_path / "crash.img"
    shutil.copy(img, crash)
    fs.close()
    assert "needs_recovery" in dumpe2fs_h(crash)["Filesystem features"]
    h = sha(crash)
    line = one_error_line(run_cli("tune", "-O", "^has_journal", crash), 1, "needs_recovery")
    assert "Please run e2fsck" in line
    assert sha(crash) == h
    # after a replay it goes, and what was logged is there
    assert run_cli("recover", crash).returncode == 0
    proc = run_cli("tune", "-O", "^has_journal", crash)
    assert proc.returncode == 0, proc.stderr
    assert_fsck_clean(crash)
    with ext4kit.open(crash) as ro:
        assert ro.read_bytes("/logged") == b"x" * 5000


def test_refusals_and_usage_errors(tmp_path, run_cli):
    img = make_image(tmp_path / "fs.img", "ext4", "32M", block_size=4096)
    nj = make_image(tmp_path / "nj.img", "ext4", "32M", block_size=4096,
                    features=("^has_journal",))
    hashes = {img: sha(img), nj: sha(nj)}
    api_cases = [  # (image, -O, -J, exit code, message)
        (img, ["has_journal"], None, 1, "The filesystem already has a journal."),
        (img, ["frobnicate"], None, 1, "Invalid filesystem option set: frobnicate"),
        (img, ["inline_data"], None, 1, "Setting filesystem feature 'inline_data' not supported"),
        (img, ["^extent"], None, 1, "Clearing filesystem feature 'extent' not supported"),
        (img, ["none"], None, 1, "Clearing filesystem feature"),
        (img, [], "device=/dev/sdz1", 1, "external journal"),
        (img, [], "size=abc", 16, "bad journal option"),
        (img, [], "flavour=mint", 16, "bad journal option"),
        (img, [], None, 16, "nothing to do"),
        (nj, [], "size=1", 1, "must be between 1024 and 10240000 blocks"),
        (nj, [], "size=20", 1, "Total journal size too big for filesystem."),
    ]
    for image, feats, jopts, rc, text in api_cases:
        with pytest.raises(TuneError) as exc:
            tune(image, feats, jopts)
        assert exc.value.exit_code == rc and text in str(exc.value), (feats, jopts, exc.value)
        assert sha(image) == hashes[image], (feats, jopts)
    # features already in the wanted state: nothing to do, like tune2fs
    assert tune(img, ["extent,dir_index", "+filetype"]).messages == []
    assert sha(img) == hashes[img]

    # the CLI: one line, e2fsprogs exit codes, no traceback
    one_error_line(run_cli("tune", "-J", "size=4", img), 1, "already has a journal")
    for args in (["-J", "size=abc"], []):
        proc = run_cli("tune", *args, img)
        assert proc.returncode == 16 and b"Traceback" not in proc.stderr, (args, proc.stderr)
    assert sha(img) == hashes[img]
    one_error_line(run_cli("tune", "-O", "^has_journal", tmp_path / "missing.img"), 8,
                   "No such file")
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 16))
    one_error_line(run_cli("tune", "-O", "^has_journal", junk), 8, "not an ext2/ext3/ext4")


def test_refuses_an_external_journal(tmp_path, run_cli):
    img = make_image(tmp_path / "fs.img", "ext4", "32M", block_size=4096)
    subprocess.run(["debugfs", "-w", "-R", "ssv journal_inum 0", str(img)],
                   capture_output=True, check=True)
    subprocess.run(["debugfs", "-w", "-R", "ssv journal_dev 0x801", str(img)],
                   capture_output=True, check=True)
    h = sha(img)
    one_error_line(run_cli("tune", "-O", "^has_journal", img), 1, "external")
    assert sha(img) == h


def test_read_only_image(tmp_path, run_cli):
    img = make_image(tmp_path / "fs.img", "ext4", "32M", block_size=4096)
    img.chmod(0o444)
    h = sha(img)
    cmd = ["tune", "-O", "^has_journal", str(img)]
    if os.geteuid() == 0:  # root ignores file modes: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: cannot make a file read-only for us")
        import sys

        proc = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
             "--inh-caps=-dac_override,-dac_read_search",
             sys.executable, "-m", "ext4kit", *cmd], capture_output=True, timeout=60)
    else:
        proc = run_cli(*cmd)
    one_error_line(proc, 8, "Permission denied")
    assert sha(img) == h


# ----------------------------------------------------------------------------- kernel
@needs_mount
def test_kernel_mounts_after_add_and_remove(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "64M", block_size=4096,
                     features=("^has_journal",))
    tune(img, ["has_journal"], "size=8")
    mnt = tmp_path / "mnt"
    with kernel_mount(img, mnt, "rw") as m:
        (m / "k").write_bytes(b"kernel wrote this\n" * 1000)
        os.sync()
    assert_fsck_clean(img)
    assert dumpe2fs_h(img)["Journal sequence"] != "0x00000001"  # the kernel used the log
    tune(img, ["^has_journal"])
    assert_fsck_clean(img)
    with kernel_mount(img, mnt, "rw") as m:
        assert (m / "k").read_bytes() == b"kernel wrote this\n" * 1000
        (m / "k2").write_bytes(b"no journal\n")
    assert_fsck_clean(img)
    assert "has_journal" not in dumpe2fs_h(img)["Filesystem features"].split()
