"""The handle/transaction API: what reaches the device, in which order, with which barriers."""

from __future__ import annotations

import pytest

from ext4kit.blockdev import MemoryDevice, RecordingDevice
from ext4kit.jbd2 import BufferCache, InPlaceJournal

BS = 1024


def make():
    rec = RecordingDevice(MemoryDevice(64 * BS))
    cache = BufferCache(rec, BS)
    return rec, cache, InPlaceJournal(rec, cache)


def test_nothing_reaches_the_device_before_commit():
    rec, cache, j = make()
    with j.start() as h:
        buf = h.get_write_access(5)
        buf[0:3] = b"abc"
        h.dirty_metadata(5)
    assert rec.trace.writes() == []
    assert cache.read(5)[:3] == b"abc"  # readers see the transaction's view
    j.commit()
    assert rec.inner.read(5 * BS, 3) == b"abc"


def test_data_is_flushed_before_metadata():
    rec, cache, j = make()
    with j.start() as h:
        h.write_data(9, b"D" * BS)
        m = h.get_write_access(3)
        m[0] = 1
        h.dirty_metadata(3)
    j.commit()
    kinds = [(op.kind, op.offset // BS if op.kind == "W" else None) for op in rec.trace.ops]
    assert kinds == [("W", 9), ("F", None), ("W", 3), ("F", None)]


def test_many_handles_join_one_transaction():
    rec, cache, j = make()
    for i in range(10):
        with j.start() as h:
            b = h.get_write_access(i)
            b[0] = i
            h.dirty_metadata(i)
    assert j.running is not None and len(j.running.metadata) == 10
    tid = j.commit()
    assert tid == 1 and len(rec.trace.writes()) == 10 and j.running is None


def test_forget_drops_update_and_revokes():
    rec, cache, j = make()
    with j.start() as h:
        b = h.get_write_access(7)
        b[0] = 0xFF
        h.dirty_metadata(7)
        h.forget(7)
        assert 7 in h.txn.revoked
    j.commit()
    assert rec.inner.read(7 * BS, 1) == b"\0"


def test_dirty_without_access_and_commit_with_open_handle_are_errors():
    rec, cache, j = make()
    h = j.start()
    with pytest.raises(RuntimeError):
        h.dirty_metadata(4)
    with pytest.raises(RuntimeError):
        j.commit()
    h.stop()
    with pytest.raises(RuntimeError):
        h.get_write_access(1)


def test_barrier_off_leaves_out_flushes():
    rec = RecordingDevice(MemoryDevice(64 * BS))
    cache = BufferCache(rec, BS)
    j = InPlaceJournal(rec, cache, barrier=False)
    with j.start() as h:
        h.write_data(2, b"x" * BS)
        h.get_write_access(1)
        h.dirty_metadata(1)
    j.commit()
    assert all(op.kind == "W" for op in rec.trace.ops)
