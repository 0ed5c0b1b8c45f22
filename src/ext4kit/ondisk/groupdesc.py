"""Block group descriptors (32 bytes, or s_desc_size with 64bit) and their checksums.

metadata_csum: crc32c(seed, le32 group || desc with bg_checksum zeroed) & 0xFFFF.
uninit_bg (gdt_csum): crc16(~0, uuid || le32 group || desc without bg_checksum).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .csum import crc16, crc32c_raw
from .fields import Layout

LAYOUT32 = Layout(
    [
        ("bg_block_bitmap_lo", "I"),
        ("bg_inode_bitmap_lo", "I"),
        ("bg_inode_table_lo", "I"),
        ("bg_free_blocks_count_lo", "H"),
        ("bg_free_inodes_count_lo", "H"),
        ("bg_used_dirs_count_lo", "H"),
        ("bg_flags", "H"),
        ("bg_exclude_bitmap_lo", "I"),
        ("bg_block_bitmap_csum_lo", "H"),
        ("bg_inode_bitmap_csum_lo", "H"),
        ("bg_itable_unused_lo", "H"),
        ("bg_checksum", "H"),
    ]
)
LAYOUT64 = Layout(
    [
        ("bg_block_bitmap_hi", "I"),
        ("bg_inode_bitmap_hi", "I"),
        ("bg_inode_table_hi", "I"),
        ("bg_free_blocks_count_hi", "H"),
        ("bg_free_inodes_count_hi", "H"),
        ("bg_used_dirs_count_hi", "H"),
        ("bg_itable_unused_hi", "H"),
        ("bg_exclude_bitmap_hi", "I"),
        ("bg_block_bitmap_csum_hi", "H"),
        ("bg_inode_bitmap_csum_hi", "H"),
        ("bg_reserved", "I"),
    ]
)
CHECKSUM_OFFSET = 0x1E

BG_INODE_UNINIT = 0x1
BG_BLOCK_UNINIT = 0x2
BG_INODE_ZEROED = 0x4
_LE32 = struct.Struct("<I")


@dataclass
class GroupDesc:
    number: int
    f: dict[str, Any]
    is64: bool

    @classmethod
    def parse(cls, buf: bytes | memoryview, offset: int, number: int, desc_size: int) -> GroupDesc:
        f = LAYOUT32.unpack(buf, offset)
        is64 = desc_size >= 64
        if is64:
            f.update(LAYOUT64.unpack(buf, offset + 32))
        return cls(number, f, is64)

    def _get(self, base: str) -> int:
        lo = self.f[base + "_lo"]
        if self.is64:
            hi = self.f[base + "_hi"]
            width = 16 if isinstance(lo, int) and base.endswith(("count", "unused", "csum")) else 32
            return lo | (hi << width)
        return lo

    @property
    def block_bitmap(self) -> int:
        return self._get("bg_block_bitmap")

    @property
    def inode_bitmap(self) -> int:
        return self._get("bg_inode_bitmap")

    @property
    def inode_table(self) -> int:
        return self._get("bg_inode_table")

    @property
    def free_blocks_count(self) -> int:
        return self._get("bg_free_blocks_count")

    @property
    def free_inodes_count(self) -> int:
        return self._get("bg_free_inodes_count")

    @property
    def used_dirs_count(self) -> int:
        return self._get("bg_used_dirs_count")

    @property
    def itable_unused(self) -> int:
        return self._get("bg_itable_unused")

    @property
    def exclude_bitmap(self) -> int:
        return self._get("bg_exclude_bitmap")

    @property
    def block_bitmap_csum(self) -> int:
        return self._get("bg_block_bitmap_csum")

    @property
    def inode_bitmap_csum(self) -> int:
        return self._get("bg_inode_bitmap_csum")

    @property
    def flags(self) -> int:
        return self.f["bg_flags"]

    def flag_names(self) -> list[str]:
        names = []
        if self.flags & BG_INODE_UNINIT:
            names.append("INODE_UNINIT")
        if self.flags & BG_BLOCK_UNINIT:
            names.append("BLOCK_UNINIT")
        if self.flags & BG_INODE_ZEROED:
            names.append("ITABLE_ZEROED")
        return names

    def pack(self, desc_size: int) -> bytes:
        buf = bytearray(desc_size)
        LAYOUT32.pack_into(buf, 0, self.f)
        if desc_size >= 64:
            LAYOUT64.pack_into(buf, 32, self.f)
        return bytes(buf)


def group_desc_checksum(
    raw: bytes | memoryview, group: int, desc_size: int, *, metadata_csum: bool,
    csum_seed: int = 0, uuid: bytes = b""
) -> int:
    """The bg_checksum value a descriptor ``raw`` (desc_size bytes) should carry."""
    raw = bytes(raw[:desc_size])
    if metadata_csum:
        c = crc32c_raw(csum_seed, _LE32.pack(group))
        c = crc32c_raw(c, raw[:CHECKSUM_OFFSET] + b"\0\0" + raw[CHECKSUM_OFFSET + 2 :])
        return c & 0xFFFF
    c = crc16(0xFFFF, uuid)
    c = crc16(c, _LE32.pack(group))
    c = crc16(c, raw[:CHECKSUM_OFFSET])
    if desc_size > 32:
        c = crc16(c, raw[32:desc_size])
    return c
