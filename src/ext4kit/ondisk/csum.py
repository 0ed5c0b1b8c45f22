"""Checksums used by ext4 and jbd2: raw CRC32C (kernel ``crc32c_le`` semantics) and CRC16.

ext4 seeds and chains CRC32C without the final inversion, so ``crc32c_raw(seed, data)``
matches ``ext4_chksum``. The heavy lifting is done by the C-accelerated ``crc32c`` package.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _load_crc32c() -> ModuleType:
    """The ``crc32c`` package's C extension without the package's ``__init__``, which
    imports ``importlib.metadata`` only to learn its version (~20 ms of every command's
    start-up); the plain import when the layout is not the one expected."""
    try:
        import importlib.machinery
        import importlib.util
        import os

        spec = importlib.util.find_spec("crc32c")
        where = list(spec.submodule_search_locations or []) if spec else []
        for d in where:
            for f in os.listdir(d):
                if f.startswith("_crc32c.") and f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                    ext = importlib.util.spec_from_file_location("crc32c._crc32c", os.path.join(d, f))
                    if ext is not None and ext.loader is not None:
                        mod = importlib.util.module_from_spec(ext)
                        ext.loader.exec_module(mod)
                        if hasattr(mod, "crc32c"):
                            return mod
    except (ImportError, OSError):
        pass
    import crc32c

    return crc32c


_crc32c = _load_crc32c()

_MASK = 0xFFFFFFFF


def crc32c_raw(seed: int, data: bytes | bytearray | memoryview) -> int:
    """CRC32C update with no pre/post inversion (Linux ``crc32c_le(seed, data)``)."""
    return _crc32c.crc32c(data, value=seed ^ _MASK) ^ _MASK


_ZERO_SHIFT: dict[int, list[list[int]]] = {}


def _zero_shift_tables(width: int) -> list[list[int]]:
    """Per seed byte k: ``crc32c_raw(b << 8k, bytes(width))`` for b in 0..255 (the map
    from a seed to its CRC over ``width`` zero bytes is linear over GF(2))."""
    t = _ZERO_SHIFT.get(width)
    if t is None:
        zeros = bytes(width)
        t = [[crc32c_raw(b << (8 * k), zeros) for b in range(256)] for k in range(4)]
        _ZERO_SHIFT[width] = t
    return t


_TABLE: list = []


def _byte_table() -> np.ndarray:
    import numpy as np

    if not _TABLE:
        _TABLE.append(np.asarray([crc32c_raw(0, bytes([b])) ^ crc32c_raw(0, b"\0") for b in range(256)],
                                 dtype=np.uint32))
    return _TABLE[0]


def crc32c_raw_rows(seeds: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``crc32c_raw(seeds[i], rows[i])`` for every row of a uint8 matrix: one C call per
    row from seed 0, then each row's own seed folded in by linearity
    (``crc(s, d) = crc(0, d) ^ crc(s, zeros(len(d)))``)."""
    import numpy as np

    n, width = rows.shape
    if width <= 16:  # short rows: table-driven, a column at a time for all rows
        crc = np.asarray(seeds, dtype=np.uint32).copy()
        t = _byte_table()
        for k in range(width):
            crc = t[(crc ^ rows[:, k]) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
        return crc
    mv = memoryview(np.ascontiguousarray(rows, dtype=np.uint8).tobytes())
    f = _crc32c.crc32c
    base = np.fromiter((f(mv[a: a + width], _MASK) for a in range(0, n * width, width)),
                       dtype=np.uint32, count=n) ^ np.uint32(_MASK)
    s = np.asarray(seeds, dtype=np.uint32)
    zt = _zero_shift_tables(width)
    for k in range(4):
        base ^= np.asarray(zt[k], dtype=np.uint32)[(s >> np.uint32(8 * k)) & np.uint32(0xFF)]
    return base


def _make_crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16_TABLE = _make_crc16_table()


def crc16(seed: int, data: bytes | bytearray | memoryview) -> int:
    """CRC16 (ANSI, reflected poly 0xA001) as used by the uninit_bg/gdt_csum feature."""
    crc = seed & 0xFFFF
    tbl = _CRC16_TABLE
    for b in bytes(data):
        crc = (crc >> 8) ^ tbl[(crc ^ b) & 0xFF]
    return crc
