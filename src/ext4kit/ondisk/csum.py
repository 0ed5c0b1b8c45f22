"""Checksums used by ext4 and jbd2: raw CRC32C (kernel ``crc32c_le`` semantics) and CRC16.

ext4 seeds and chains CRC32C without the final inversion, so ``crc32c_raw(seed, data)``
matches ``ext4_chksum``. The heavy lifting is done by the C-accelerated ``crc32c`` package.
"""

from __future__ import annotations

import crc32c as _crc32c

_MASK = 0xFFFFFFFF


def crc32c_raw(seed: int, data: bytes | bytearray | memoryview) -> int:
    """CRC32C update with no pre/post inversion (Linux ``crc32c_le(seed, data)``)."""
    return _crc32c.crc32c(data, value=seed ^ _MASK) ^ _MASK


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
