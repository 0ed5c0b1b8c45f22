"""Block-device layer: file/memory devices, the recording trace and its file format."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext4kit.blockdev import FileDevice, MemoryDevice, RecordingDevice, Trace
from ext4kit.errors import TruncatedImageError


def test_file_device_roundtrip(tmp_path):
    p = tmp_path / "dev.img"
    p.write_bytes(bytes(8192))
    with FileDevice(p, writable=True) as dev:
        assert dev.size == 8192 and dev.sector_size == 512
        dev.write(1000, b"hello")
        dev.flush()
        assert dev.read(998, 9) == b"\0\0hello\0\0"
    with FileDevice(p) as dev:
        assert dev.read_only
        with pytest.raises(PermissionError):
            dev.write(0, b"x")
        with pytest.raises(TruncatedImageError):
            dev.read_exact(8000, 500)


def test_memory_device_bounds():
    dev = MemoryDevice(1024)
    dev.write(1020, b"abcd")
    with pytest.raises(OSError):
        dev.write(1022, b"abcd")
    assert dev.read(1020, 10) == b"abcd"


ops = st.lists(
    st.one_of(
        st.tuples(st.just("W"), st.integers(0, 4000), st.binary(min_size=1, max_size=96)),
        st.tuples(st.just("F"), st.just(0), st.just(b"")),
        st.tuples(st.just("M"), st.just(0), st.text(max_size=20).map(str.encode)),
    ),
    max_size=40,
)


@given(ops)
def test_recording_trace_roundtrip_and_replay(seq):
    base = MemoryDevice(4096)
    rec = RecordingDevice(base)
    for kind, off, data in seq:
        if kind == "W":
            rec.write(off, data[: 4096 - off] or b"x" if off < 4096 else b"")
        elif kind == "F":
            rec.flush()
        else:
            rec.mark(data.decode())
    # the trace is complete and ordered
    seqs = [op.seq for op in rec.trace.ops]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    buf = io.BytesIO()
    rec.trace.save(buf)
    buf.seek(0)
    loaded = Trace.load(buf)
    assert loaded.ops == rec.trace.ops and loaded.device_size == 4096
    # replaying every write onto a blank device reproduces the device
    replay = MemoryDevice(4096)
    for op in loaded.writes():
        replay.write(op.offset, op.data)
    assert replay.buf == base.buf
    # epochs split at flushes
    assert len(loaded.epochs()) == 1 + sum(1 for op in loaded.ops if op.kind == "F")


def test_trace_rejects_garbage():
    with pytest.raises(ValueError):
        Trace.load(io.BytesIO(b"not a trace at all"))
