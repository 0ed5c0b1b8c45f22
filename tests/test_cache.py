"""Page cache and delayed allocation (fs/cache.py): the zero-length file after
replace-by-rename without fsync, and what auto_da_alloc / nodelalloc change about it;
the flusher on an injected clock; memory pressure; reads and statvfs of delayed data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ext4kit
from wtools import assert_fsck_clean, make_image

OLD = b"old content\n" * 500
NEW = b"new content!\n" * 700


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _crash_copy(img: Path, name: str) -> Path:
    """What the disk holds if the power goes now (the FileDevice writes through)."""
    out = img.with_name(name)
    shutil.copyfile(img, out)
    return out


def _after_recovery(crash: Path) -> dict[str, bytes]:
    with ext4kit.open(crash, "r+") as fs:  # replays the journal, like a mount
        files = {n: fs.read_bytes("/" + n) for n in fs.listdir("/") if n != "lost+found"}
    assert_fsck_clean(crash)
    return files


def _with_old_file(tmp_path: Path, **opts) -> tuple[Path, Clock]:
    img = make_image(tmp_path / "fs.img", "ext4", "32M")
    with ext4kit.open(img, "r+") as fs:
        fs.write_bytes("/f", OLD)
    return img, Clock()


@pytest.mark.parametrize("options,expect", [
    ("noauto_da_alloc", "empty"),          # the zero-length file
    ("auto_da_alloc", "new"),              # rename over a file writes the data back first
    ("nodelalloc,noauto_da_alloc", "new"),  # blocks allocated at write: same transaction
    ("data=journal", "new"),               # data=journal has no delalloc
])
def test_rename_replace_without_fsync(tmp_path, options, expect):
    img, clock = _with_old_file(tmp_path)
    fs = ext4kit.open(img, "r+", clock=clock, options=options)
    try:
        fs.write_bytes("/f.tmp", NEW)
        fs.rename("/f.tmp", "/f")
        clock.t += 6  # the journal's 5 s commit timer fires; the 30 s flusher does not
        fs.run_timers()
        crash = _crash_copy(img, "crash.img")
        clock.t += 60  # later the flusher would have written it: too late for the crash
        fs.run_timers()
    finally:
        fs.close()
    files = _after_recovery(crash)
    assert set(files) == {"f"}
    assert files["f"] == {"empty": b"", "new": NEW}[expect]
    assert _after_recovery(_crash_copy(img, "clean.img"))["f"] == NEW


@pytest.mark.parametrize("options,expect", [("noauto_da_alloc", b""), ("auto_da_alloc", NEW)])
def test_truncate_write_close_without_fsync(tmp_path, options, expect):
    """open(O_TRUNC) + write + close: auto_da_alloc writes back on the close."""
    img, clock = _with_old_file(tmp_path)
    fs = ext4kit.open(img, "r+", clock=clock, options=options)
    try:
        with fs.open("/f", "wb") as f:
            f.write(NEW)
        clock.t += 6
        fs.run_timers()
        crash = _crash_copy(img, "crash.img")
    finally:
        fs.close()
    assert _after_recovery(crash)["f"] == expect


def test_rename_replace_with_fsync_is_durable(tmp_path):
    img, clock = _with_old_file(tmp_path)
    fs = ext4kit.open(img, "r+", clock=clock, options="noauto_da_alloc")
    try:
        with fs.open("/f.tmp", "wb") as f:
            f.write(NEW)
            f.fsync()
        fs.rename("/f.tmp", "/f")
        fs.sync()
        crash = _crash_copy(img, "crash.img")
    finally:
        fs.close()
    assert _after_recovery(crash)["f"] == NEW


def test_flusher_follows_the_injected_clock(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "32M")
    clock = Clock()
    fs = ext4kit.open(img, "r+", clock=clock)
    try:
        fs.write_bytes("/a", NEW)
        assert fs.stat("/a").st_size == len(NEW)  # i_size
        assert fs.disk_inode(fs._resolve_ino("/a", True)).size == 0  # i_disksize
        assert fs.read_bytes("/a") == NEW
        states = {}
        for step in (4, 10, 29, 31, 36, 42):
            clock.t = 1000.0 + step
            fs.run_timers()
            states[step] = _after_recovery(_crash_copy(img, f"c{step}.img")).get("a")
        # created at once (commit at 5 s); data written back by the flusher that runs after
        # the page is 30 s old (its 5 s period: at 35 s), committed 5 s after that
        assert states[4] is None
        assert states[10] == states[29] == states[31] == states[36] == b""
        assert states[42] == NEW
    finally:
        fs.close()


def test_memory_pressure_writes_back(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "64M")
    clock = Clock()
    with ext4kit.open(img, "r+", clock=clock, dirty_limit=1 << 20) as fs:
        with fs.open("/big", "wb") as f:
            for i in range(6):
                f.write(bytes([i]) * (512 << 10))
        ino = fs._resolve_ino("/big", True)
        assert fs.disk_inode(ino).size >= 2 << 20  # written back before any sync
        assert fs.cache.dirty_bytes <= 1 << 20
        data = fs.read_bytes("/big")
        assert data == b"".join(bytes([i]) * (512 << 10) for i in range(6))
    assert_fsck_clean(img)


def test_reads_stat_and_statvfs_see_delayed_data(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "32M", block_size=1024)
    with ext4kit.open(img, "r+") as fs:
        before = fs.statvfs().f_bfree
        with fs.open("/x", "wb") as f:
            f.write(b"a" * 5000)
            f.seek(20_000)
            f.write(b"b" * 100)
            f.seek(2000)
            f.write(b"c" * 10)
        f = fs.open("/x", "r+b")
        f.seek(19_990)
        f.write(b"d" * 20)  # joins the second run across a block boundary
        f.close()
        want = bytearray(20_100)
        want[:5000] = b"a" * 5000
        want[2000:2010] = b"c" * 10
        want[20_000:] = b"b" * 100
        want[19_990:20_010] = b"d" * 20
        assert fs.read_bytes("/x") == want
        assert fs.stat("/x").st_size == 20_100
        assert fs.statvfs().f_bfree <= before - 6  # 5 + 2 blocks reserved
        fs.truncate("/x", 19_995)
        assert fs.read_bytes("/x") == want[:19_995]
        fs.truncate("/x", 30_000)
        assert fs.read_bytes("/x") == bytes(want[:19_995]) + bytes(30_000 - 19_995)
        fs.sync()
        assert not fs.cache.files
    assert_fsck_clean(img)
    with ext4kit.open(img) as fs:
        assert fs.read_bytes("/x") == bytes(want[:19_995]) + bytes(30_000 - 19_995)


def test_unlink_discards_delayed_data(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "32M")
    with ext4kit.open(img, "r+") as fs:
        free = fs.statvfs().f_bfree
        fs.write_bytes("/gone", b"z" * 100_000)
        fs.unlink("/gone")
        assert not fs.cache.files and fs.cache.reserved == 0 and fs.cache.dirty_bytes == 0
        assert fs.statvfs().f_bfree == free
    assert_fsck_clean(img)


def test_data_journal_refuses_explicit_delalloc(tmp_path):
    img = make_image(tmp_path / "fs.img", "ext4", "32M")
    with pytest.raises(ValueError):
        ext4kit.open(img, "r+", options="data=journal,delalloc")
