"""RecordingDevice: wraps any device and records every write (with its bytes), every flush
and user marks, in order, with sequence numbers. The crash lab derives crash states from it.

Trace file format (little-endian), documented in docs/CRASH-LAB.md:
    header  b"E4KTRACE" u32 version(=1) u64 device_size
    record  u8 kind ('W'|'F'|'M') u64 seq, then
            W: u64 offset, u32 length, length bytes
            F: nothing
            M: u16 length, UTF-8 label
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from .base import BlockDevice

_MAGIC = b"E4KTRACE"
_HDR = struct.Struct("<8sIQ")
_REC = struct.Struct("<cQ")
_W = struct.Struct("<QI")
_M = struct.Struct("<H")


@dataclass(frozen=True)
class TraceOp:
    kind: str  # "W" write, "F" flush, "M" mark
    seq: int
    offset: int = 0
    data: bytes = b""
    label: str = ""


@dataclass
class Trace:
    device_size: int
    ops: list[TraceOp] = field(default_factory=list)

    def writes(self) -> list[TraceOp]:
        return [op for op in self.ops if op.kind == "W"]

    def epochs(self) -> list[list[TraceOp]]:
        """Writes grouped by the flushes between them (the last group may be open)."""
        groups: list[list[TraceOp]] = [[]]
        for op in self.ops:
            if op.kind == "W":
                groups[-1].append(op)
            elif op.kind == "F":
                groups.append([])
        return groups

    def save(self, fp: BinaryIO) -> None:
        fp.write(_HDR.pack(_MAGIC, 1, self.device_size))
        for op in self.ops:
            fp.write(_REC.pack(op.kind.encode(), op.seq))
            if op.kind == "W":
                fp.write(_W.pack(op.offset, len(op.data)))
                fp.write(op.data)
            elif op.kind == "M":
                lab = op.label.encode()
                fp.write(_M.pack(len(lab)))
                fp.write(lab)

    @classmethod
    def load(cls, fp: BinaryIO) -> Trace:
        hdr = fp.read(_HDR.size)
        if len(hdr) != _HDR.size:
            raise ValueError("trace file truncated")
        magic, version, size = _HDR.unpack(hdr)
        if magic != _MAGIC or version != 1:
            raise ValueError("not an ext4kit trace file")
        trace = cls(size)
        while True:
            rec = fp.read(_REC.size)
            if not rec:
                break
            if len(rec) != _REC.size:
                raise ValueError("trace file truncated")
            kind_b, seq = _REC.unpack(rec)
            kind = kind_b.decode()
            if kind == "W":
                off, n = _W.unpack(fp.read(_W.size))
                data = fp.read(n)
                if len(data) != n:
                    raise ValueError("trace file truncated")
                trace.ops.append(TraceOp("W", seq, off, data))
            elif kind == "F":
                trace.ops.append(TraceOp("F", seq))
            elif kind == "M":
                (n,) = _M.unpack(fp.read(_M.size))
                trace.ops.append(TraceOp("M", seq, label=fp.read(n).decode()))
            else:
                raise ValueError(f"bad trace record kind {kind!r}")
        return trace


class RecordingDevice(BlockDevice):
    """Pass-through device that appends every write/flush to a Trace."""

    def __init__(self, inner: BlockDevice):
        self.inner = inner
        self.read_only = inner.read_only
        self.sector_size = inner.sector_size
        self.trace = Trace(inner.size)
        self._seq = 0

    @property
    def size(self) -> int:
        return self.inner.size

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def write(self, offset: int, data) -> None:
        self.inner.write(offset, data)
        self.trace.ops.append(TraceOp("W", self._next(), offset, bytes(data)))

    def flush(self) -> None:
        self.inner.flush()
        self.trace.ops.append(TraceOp("F", self._next()))

    def mark(self, label: str) -> None:
        self.trace.ops.append(TraceOp("M", self._next(), label=label))

    def close(self) -> None:
        self.inner.close()
