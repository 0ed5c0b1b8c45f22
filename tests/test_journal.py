"""The jbd2 journal: our logs replayed by e2fsck and by us, the kernel's replayed by us,
revoke, escaping, wrap-around, torn tails, data modes."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import ext4kit
from ext4kit.errors import CorruptError
from ext4kit.fs.filesystem import FileSystem
from ext4kit.jbd2.log import JournalArea, recover, scan
from ext4kit.ondisk import jbd2 as j
from wtools import assert_fsck_clean, can_mount, kernel_mount, make_image


def _crash_copy(img: Path, name: str) -> Path:
    """The image as a power cut would leave it now (everything written so far)."""
    out = img.with_name(name)
    shutil.copyfile(img, out)
    return out


def _e2fsck_replay(img: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["e2fsck", "-fy", str(img)], capture_output=True, text=True, timeout=300)


def _files(fs) -> dict[str, bytes]:
    out = {}
    for top, _dirs, files in fs.walk("/"):
        for f in files:
            p = top.rstrip("/") + "/" + f
            if not fs.lstat(p).st_mode & 0o170000 == 0o100000:
                continue
            out[p] = fs.read_bytes(p)
    return out


KINDS = [("ext4", 4096), ("ext4", 1024), ("ext3", 1024), ("ext4-nocsum", 4096)]


@pytest.mark.parametrize("data", ["ordered", "journal", "writeback"])
@pytest.mark.parametrize("kind,bs", KINDS, ids=[f"{k}-{b}" for k, b in KINDS])
def test_committed_transactions_survive_and_replay(tmp_path, kind, bs, data):
    img = make_image(tmp_path / "j.img", kind, "48M", block_size=bs)
    fs = ext4kit.open(img, "r+", data=data)
    fs.mkdir("/d")
    for i in range(30):
        fs.write_bytes(f"/d/f{i}", bytes([i + 1]) * (3000 + 700 * i))
    fs.close()
    assert_fsck_clean(img)
    fs = ext4kit.open(img, "r+", data=data)
    for i in range(0, 30, 2):
        fs.unlink(f"/d/f{i}")
    fs.mkdir("/e")
    for i in range(10):
        fs.write_bytes(f"/e/g{i}", bytes([100 + i]) * 9000)
    fs.rename("/d/f1", "/e/moved")
    fs.sync()  # committed to the log, nothing checkpointed: a crash now must keep it
    crash = _crash_copy(img, "crash.img")
    with ext4kit.open(crash) as ro:  # read-only: the log is replayed in memory, warns
        assert ro.sb.has_incompat("needs_recovery")
    expect = _files(fs)
    fs.close()
    assert_fsck_clean(img)
    # e2fsck replays our log
    theirs = _crash_copy(crash, "theirs.img")
    r = _e2fsck_replay(theirs)
    assert r.returncode in (0, 1), r.stdout
    assert "recovering journal" in r.stdout
    assert_fsck_clean(theirs)
    # we replay our log
    with ext4kit.open(crash, "r+") as fs2:
        assert _files(fs2) == expect
    assert_fsck_clean(crash)
    with ext4kit.open(theirs) as fs3:
        assert _files(fs3) == expect


def test_recovery_scan_and_logdump_shape(tmp_path):
    img = make_image(tmp_path / "j.img", "ext4", "32M")
    fs = ext4kit.open(img, "r+")
    for i in range(3):
        fs.write_bytes(f"/f{i}", b"x" * 100)
        fs.sync()
    crash = _crash_copy(img, "c.img")
    fs.close()
    with ext4kit.open(crash) as ro:
        area = JournalArea.of(ro)
        jsb = area.read_superblock()
        assert jsb.has_incompat(j.FEATURE_INCOMPAT_CSUM_V3)
        assert jsb.has_incompat(j.FEATURE_INCOMPAT_64BIT)
        res = scan(area, jsb)
    assert [t.committed for t in res.transactions] == [True, True, True]
    seqs = [t.sequence for t in res.transactions]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    out = subprocess.run(["debugfs", "-R", "logdump", str(crash)], capture_output=True,
                         text=True).stdout
    for s in seqs:
        assert f"Found expected sequence {s}, type 2 (commit block)" in out


def test_torn_commit_is_ignored(tmp_path):
    """A transaction whose commit block is garbage (torn write) is not replayed; the ones
    before it are."""
    img = make_image(tmp_path / "j.img", "ext4", "32M")
    fs = ext4kit.open(img, "r+")
    fs.write_bytes("/a", b"A" * 5000)
    fs.sync()
    fs.write_bytes("/b", b"B" * 5000)
    fs.sync()
    crash = _crash_copy(img, "c.img")
    fs.close()
    with FileSystem._on_device(crash, writable=True) as raw:
        area = JournalArea.of(raw)
        res = scan(area, area.read_superblock())
        last = res.transactions[-1]
        blk = bytearray(area.read(last.commit_block))
        blk[100:200] = b"\xff" * 100  # torn: checksum no longer matches
        area.write(last.commit_block, bytes(blk))
    # a synchronous commit whose commit block does not verify is a corrupt journal
    # (kernel / e2fsck): the transaction is dropped and the file system marked with errors
    theirs = _crash_copy(crash, "t.img")
    r = subprocess.run(["e2fsck", "-y", "-E", "journal_only", str(theirs)],
                       capture_output=True, text=True)
    assert "was corrupt" in r.stdout
    # a mount refuses a corrupt journal (jbd2_journal_load: -EFSCORRUPTED); e2fsck and
    # 'ext4kit recover' replay what is good and mark the file system
    with pytest.raises(CorruptError, match="is corrupt"):
        ext4kit.open(crash, "r+")
    assert subprocess.run([sys.executable, "-m", "ext4kit", "recover", str(crash)],
                          capture_output=True).returncode == 0
    with ext4kit.open(crash, "r+") as fs2:
        assert fs2.read_bytes("/a") == b"A" * 5000
        assert not fs2.exists("/b")
        assert fs2.sb.f["s_state"] & 2  # EXT2_ERROR_FS, as e2fsck leaves it
    with ext4kit.open(theirs) as fs3:
        assert fs3.read_bytes("/a") == b"A" * 5000
        assert not fs3.exists("/b")


def test_escaped_blocks_round_trip(tmp_path):
    """data=journal: a data block that begins with the jbd2 magic is logged escaped and
    replayed with its magic back (by us and by e2fsck)."""
    img = make_image(tmp_path / "j.img", "ext4", "32M")
    magic_block = struct.pack(">I", j.JBD2_MAGIC) + b"\x01" * 4092
    fs = ext4kit.open(img, "r+", data="journal")
    fs.write_bytes("/m", magic_block * 3)
    fs.sync()
    crash = _crash_copy(img, "c.img")
    fs.close()
    with ext4kit.open(crash) as ro:
        area = JournalArea.of(ro)
        res = scan(area, area.read_superblock())
        flags = [tag.flags for t in res.transactions for _, tag in t.tags]
        assert any(f & j.FLAG_ESCAPE for f in flags)
    theirs = _crash_copy(crash, "t.img")
    _e2fsck_replay(theirs)
    with ext4kit.open(crash, "r+") as fs2:
        assert fs2.read_bytes("/m") == magic_block * 3
    with ext4kit.open(theirs) as fs3:
        assert fs3.read_bytes("/m") == magic_block * 3


@pytest.mark.parametrize("revoke", [True, False])
def test_revoke_protects_reused_directory_block(tmp_path, revoke):
    """A directory block is logged, freed (rmdir) and reused as file data; after a crash,
    replay must not write the old directory block over the file (the revoke case).
    With norevoke the stale copy wins: that is the failure revoke records exist for."""
    img = make_image(tmp_path / "j.img", "ext4", "32M")
    fs = ext4kit.open(img, "r+", revoke=revoke)
    fs.mkdir("/dir")
    for i in range(40):
        fs.write_bytes(f"/dir/entry-with-a-long-name-{i:04d}", b"")
    fs.sync()  # the directory's blocks are in the log
    dir_blocks = [r.physical + k for r in fs.block_map(fs.get_inode(fs.stat("/dir").st_ino)).runs
                  for k in range(r.length)]
    for i in range(40):
        fs.unlink(f"/dir/entry-with-a-long-name-{i:04d}")
    fs.rmdir("/dir")
    fs.sync()
    payload = b"DATA" * (fs.block_size // 4)
    fs.write_bytes("/file", payload * 4)
    fs.sync()
    file_blocks = [r.physical + k for r in fs.block_map(fs.get_inode(fs.stat("/file").st_ino)).runs
                   for k in range(r.length)]
    assert set(dir_blocks) & set(file_blocks), "the directory block was not reused"
    crash = _crash_copy(img, "c.img")
    fs.close()
    with ext4kit.open(crash, "r+") as fs2:
        content = fs2.read_bytes("/file")
    if revoke:
        assert content == payload * 4
        assert_fsck_clean(crash)
    else:
        assert content != payload * 4  # stale directory bytes replayed over the data


def test_wraparound_many_transactions_small_journal(tmp_path):
    """A 1 MiB journal (1024 blocks of 1 KiB) wraps many times; a crash copy after each
    few commits replays to exactly the committed state."""
    img = tmp_path / "w.img"
    from ext4kit.mkfs import mkfs
    mkfs(img, "32M", fs_type="ext4", block_size=1024, journal_size_mib=1)
    fs = ext4kit.open(img, "r+")
    heads = set()
    for round_ in range(12):
        for i in range(25):
            fs.write_bytes(f"/r{round_}-{i}", bytes([round_ + 1]) * 1500)
            if i % 5 == 4:
                fs.sync()
        heads.add(fs.journal.head)
        if round_ % 4 == 3:
            crash = _crash_copy(img, f"c{round_}.img")
            expect = _files(fs)
            with ext4kit.open(crash, "r+") as fs2:
                assert _files(fs2) == expect
            assert_fsck_clean(crash)
            theirs = _crash_copy(img, f"t{round_}.img")
            r = _e2fsck_replay(theirs)
            assert r.returncode in (0, 1), r.stdout
            assert_fsck_clean(theirs)
    assert fs.journal.seq > 60
    fs.close()
    assert_fsck_clean(img)


def test_async_commit_without_barrier_relies_on_checksums(tmp_path):
    """journal_async_commit: the commit block may reach the disk before a block it covers.
    Replay follows the kernel / e2fsck rule: that block's tag checksum fails, it is
    skipped, the rest of the transaction is replayed and recovery reports a checksum
    error (the file system is left marked not clean). Ours and e2fsck's agree byte for
    byte."""
    from test_journal_replay import block_differences, e2fsck_journal_only

    img = make_image(tmp_path / "j.img", "ext4", "32M")
    fs = ext4kit.open(img, "r+", options="journal_async_commit")
    fs.write_bytes("/a", b"a" * 10000)
    fs.sync()
    crash = _crash_copy(img, "c.img")
    fs.close()
    with ext4kit.open(crash) as ro:
        area = JournalArea.of(ro)
        jsb = area.read_superblock()
        assert jsb.has_incompat(j.FEATURE_INCOMPAT_ASYNC_COMMIT)
        res = scan(area, jsb)
        t = res.transactions[-1]
        # lose one logged block (as if the commit block reached the disk before it)
        p, lost = t.tags[0]
    with FileSystem._on_device(crash, writable=True) as raw:
        JournalArea.of(raw).write(p, bytes(raw.block_size))
    theirs = _crash_copy(crash, "t.img")
    mounted = _crash_copy(crash, "m.img")
    r = e2fsck_journal_only(theirs)
    assert "Journal checksum error" in r.stdout + r.stderr
    with FileSystem._on_device(crash, writable=True) as raw:
        plan = recover(raw)
    assert plan is not None and plan.bad_blocks == [lost.blocknr] and plan.error
    assert block_differences(crash, theirs) == []
    with FileSystem._on_device(crash, writable=False) as ro:
        assert not ro.sb.f["s_state"] & 1  # not clean: e2fsck must check it
    # a mount refuses such a log (the kernel's rule) and leaves the journal for e2fsck
    with FileSystem._on_device(mounted, writable=True) as raw:
        with pytest.raises(CorruptError, match="journal recovery failed"):
            recover(raw, as_mount=True)
        assert JournalArea.of(raw).read_superblock().s_start != 0


def test_async_commit_v1_drops_the_torn_transaction(tmp_path):
    """Without metadata_csum, journal_async_commit (which implies journal_checksum) writes
    the v1 transaction checksum, as the kernel does: a commit block that reached the disk
    before one of its blocks fails its crc32, and that transaction is not replayed (an
    interrupted async commit, not an error). The earlier ones are; ours and e2fsck's
    replays agree byte for byte and the file system is clean."""
    from test_journal_replay import block_differences, e2fsck_journal_only

    img = make_image(tmp_path / "j.img", "ext4-nocsum", "32M")
    fs = ext4kit.open(img, "r+", options="journal_async_commit")
    fs.write_bytes("/a", b"a" * 10000)
    fs.sync()
    fs.write_bytes("/b", b"b" * 10000)
    fs.sync()
    crash = _crash_copy(img, "c.img")
    fs.close()
    with ext4kit.open(crash) as ro:
        area = JournalArea.of(ro)
        jsb = area.read_superblock()
        assert jsb.has_compat(j.FEATURE_COMPAT_CHECKSUM) and not jsb.has_csum_v2or3
        assert jsb.has_incompat(j.FEATURE_INCOMPAT_ASYNC_COMMIT)
        res = scan(area, jsb)
        assert all(t.committed for t in res.transactions)
        p, _lost = res.transactions[-1].tags[-1]
    with FileSystem._on_device(crash, writable=True) as raw:
        JournalArea.of(raw).write(p, bytes(raw.block_size))
    theirs = _crash_copy(crash, "t.img")
    r = e2fsck_journal_only(theirs)
    assert r.returncode == 0, r.stdout + r.stderr
    with FileSystem._on_device(crash, writable=True) as raw:
        plan = recover(raw)
    assert plan is not None and plan.error is None and plan.failed_commit is None
    assert not plan.scan.transactions[-1].committed
    assert block_differences(crash, theirs) == []
    assert_fsck_clean(crash)
    with ext4kit.open(crash) as fs2:
        assert fs2.read_bytes("/a") == b"a" * 10000 and not fs2.exists("/b")


def test_writeback_data_durable_at_fsync_but_unordered(tmp_path):
    """data=writeback: fsync writes and waits for the file data before it commits (the
    kernel's file_write_and_wait_range), so fsync returns with the data durable; a
    background (timer) commit does not wait: its data is written after the flush that
    makes the log blocks durable, next to the commit block, so it may reach the disk
    after the commit block (no ordering)."""
    from ext4kit.blockdev import MemoryDevice, RecordingDevice

    img = make_image(tmp_path / "j.img", "ext4", "32M")
    rec = RecordingDevice(MemoryDevice(img.read_bytes()))
    now = [0.0]
    fs = ext4kit.open(rec, "r+", data="writeback", delalloc=False, clock=lambda: now[0])
    bs = fs.block_size
    payload = bytes(range(256)) * 64  # 4 blocks

    def data_and_flushes(path, start):
        ops = rec.trace.ops[start:]
        run = fs.block_map(fs.get_inode(fs.lstat(path).st_ino)).runs[0]
        data_at = [i for i, op in enumerate(ops)
                   if op.kind == "W" and op.offset == run.physical * bs]
        flushes = [i for i, op in enumerate(ops) if op.kind == "F"]
        assert len(data_at) == 1 and ops[data_at[0]].data == payload  # one write, the run
        assert ops[-1].kind == "F"  # the commit's final flush
        return data_at[0], flushes

    with fs.open("/f", "wb") as f:
        f.write(payload)
        start = len(rec.trace.ops)
        f.fsync()
    at, flushes = data_and_flushes("/f", start)
    assert not any(i < at for i in flushes)  # waited for: before the log's flush

    start = len(rec.trace.ops)
    with fs.open("/g", "wb") as f:
        f.write(payload)
    now[0] += 6  # the commit timer fires
    fs.run_timers()
    at, flushes = data_and_flushes("/g", start)
    assert any(i < at for i in flushes)  # the log's flush came first: unordered
    fs.close()


def test_group_commit_by_clock(tmp_path):
    now = [0.0]
    img = make_image(tmp_path / "j.img", "ext4", "32M")
    fs = ext4kit.open(img, "r+", commit=5, clock=lambda: now[0])
    fs.write_bytes("/a", b"1")
    fs.write_bytes("/b", b"2")
    assert fs.journal.running is not None and fs.journal.committed == []
    now[0] = 6.0
    fs.write_bytes("/c", b"3")  # the transaction is 6 s old: committed after this op
    assert len(fs.journal.committed) == 1
    fs.close()
    assert_fsck_clean(img)


@pytest.mark.skipif(can_mount() is not None, reason=str(can_mount()))
def test_we_replay_the_kernels_journal(tmp_path):
    """The kernel writes files and commits (sync) without checkpointing; a copy of the
    image taken while mounted is a crash image. Our replay and e2fsck's agree."""
    img = tmp_path / "k.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(img), "64M"], check=True)
    mnt = tmp_path / "mnt"
    with kernel_mount(img, mnt, "rw,commit=60") as m:
        for i in range(20):
            (m / f"k{i}").write_bytes(bytes([i + 1]) * (5000 + i * 1000))
        (m / "sub").mkdir()
        (m / "sub" / "x").write_bytes(b"x" * 12345)
        subprocess.run(["sync", "-f", str(m / "sub" / "x")], check=True)
        crash = _crash_copy(img, "kcrash.img")
    assert_fsck_clean(img)
    with FileSystem._on_device(crash, writable=False) as ro:
        assert ro.sb.has_incompat("needs_recovery")
        area = JournalArea.of(ro)
        res = scan(area, area.read_superblock())
    assert res.committed, "the kernel's log had no committed transaction"
    theirs = _crash_copy(crash, "ktheirs.img")
    r = subprocess.run(["e2fsck", "-fy", "-E", "journal_only", str(theirs)],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stdout
    ours = _crash_copy(crash, "kours.img")
    with ext4kit.open(ours, "r+") as fs:
        got = _files(fs)
    assert got[f"/k{19}"] == bytes([20]) * (5000 + 19 * 1000)
    assert got["/sub/x"] == b"x" * 12345
    assert_fsck_clean(ours)
    with ext4kit.open(theirs) as fs:
        assert _files(fs) == got
