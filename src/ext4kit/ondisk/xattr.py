"""Extended attributes: in-inode (after i_extra_isize) and external block formats.

Entry: e_name_len u8, e_name_index u8, e_value_offs u16, e_value_inum u32, e_value_size u32,
e_hash u32, name (padded to 4). Block header is 32 bytes; block checksum is
crc32c(fs_seed, le64 blocknr || block with h_checksum zeroed).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .csum import crc32c_raw

XATTR_MAGIC = 0xEA020000
BLOCK_HEADER = struct.Struct("<IIIII12s")  # magic, refcount, blocks, hash, checksum, reserved
ENTRY = struct.Struct("<BBHIII")
CHECKSUM_OFFSET = 16

PREFIXES = {
    1: "user.",
    2: "system.posix_acl_access",
    3: "system.posix_acl_default",
    4: "trusted.",
    6: "security.",
    7: "system.",
    8: "system.richacl",
}


class XattrEntry(NamedTuple):
    name_index: int
    name: bytes
    value_offs: int
    value_inum: int
    value_size: int
    hash: int

    @property
    def full_name(self) -> str:
        prefix = PREFIXES.get(self.name_index)
        suffix = self.name.decode("utf-8", "surrogateescape")
        if prefix is None:
            return f"unknown{self.name_index}.{suffix}"
        return prefix + suffix


def parse_entries(buf: bytes | memoryview, start: int, end: int) -> tuple[list[XattrEntry], str | None]:
    """Entries from ``start`` until a zero u32 terminator (bounded by ``end``)."""
    out: list[XattrEntry] = []
    off = start
    while off + 4 <= end:
        if struct.unpack_from("<I", buf, off)[0] == 0:
            return out, None
        if off + ENTRY.size > end:
            return out, f"xattr entry at {off} overruns its area"
        nl, idx, voff, vinum, vsize, h = ENTRY.unpack_from(buf, off)
        name_end = off + ENTRY.size + nl
        if name_end > end:
            return out, f"xattr name at {off} overruns its area"
        out.append(XattrEntry(idx, bytes(buf[off + ENTRY.size : name_end]), voff, vinum, vsize, h))
        off += (ENTRY.size + nl + 3) & ~3
    return out, "xattr entry list not terminated"


def block_checksum(fs_seed: int, blocknr: int, block: bytes | memoryview) -> int:
    c = crc32c_raw(fs_seed, struct.pack("<Q", blocknr))
    buf = bytearray(block)
    buf[CHECKSUM_OFFSET : CHECKSUM_OFFSET + 4] = b"\0\0\0\0"
    return crc32c_raw(c, buf)
