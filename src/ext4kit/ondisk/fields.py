"""A tiny helper for fixed-layout little-endian structures described by a field table.

Each structure lists ``(name, code)`` in on-disk order, where code is a ``struct`` code
("B", "H", "I", "Q", "h") or "Ns" for an N-byte string. Arrays are "N*I" etc.
The table compiles into one precompiled ``struct.Struct``.
"""

from __future__ import annotations

import struct
from typing import Any


class Layout:
    def __init__(self, fields: list[tuple[str, str]], size: int | None = None):
        fmt = "<"
        self.names: list[str] = []
        self.arrays: dict[str, int] = {}
        self.offsets: dict[str, int] = {}
        off = 0
        for name, code in fields:
            self.offsets[name] = off
            if "*" in code:
                n, c = code.split("*")
                fmt += f"{n}{c}"
                self.arrays[name] = int(n)
                off += int(n) * struct.calcsize("<" + c)
            else:
                fmt += code
                off += struct.calcsize("<" + code)
            self.names.append(name)
        if size is not None:
            if off > size:
                raise AssertionError(f"layout overflows {size}: {off}")
            if off < size:
                fmt += f"{size - off}x"
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size

    def unpack(self, buf: bytes | bytearray | memoryview, offset: int = 0) -> dict[str, Any]:
        vals = self.struct.unpack_from(buf, offset)
        if not self.arrays:
            return dict(zip(self.names, vals))
        out: dict[str, Any] = {}
        i = 0
        for name in self.names:
            n = self.arrays.get(name)
            if n is None:
                out[name] = vals[i]
                i += 1
            else:
                out[name] = list(vals[i : i + n])
                i += n
        return out

    def pack_into(self, buf: bytearray, offset: int, values: dict[str, Any]) -> None:
        flat: list[Any] = []
        for name in self.names:
            v = values[name]
            if name in self.arrays:
                flat.extend(v)
            else:
                flat.append(v)
        self.struct.pack_into(buf, offset, *flat)
