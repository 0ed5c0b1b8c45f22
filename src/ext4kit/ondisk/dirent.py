"""Directory entries (linear blocks), the checksum tail, and htree (dx) node layouts.

Linear: inode u32, rec_len u16, name_len u8, file_type u8 (filetype feature; else name_len
is u16), name. Tail (metadata_csum): a fake 12-byte entry with ft 0xDE whose last u32 is
crc32c(inode_seed, block[:-12]).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from .csum import crc32c_raw

DIRENT = struct.Struct("<IHBB")
DIRENT_OLD = struct.Struct("<IHH")
TAIL_SIZE = 12
TAIL_FT = 0xDE
DX_ROOT_INFO = struct.Struct("<IBBBB")  # reserved_zero, hash_version, info_length, indirect_levels, unused_flags
DX_COUNTLIMIT = struct.Struct("<HH")  # limit, count
DX_ENTRY = struct.Struct("<II")  # hash, block
DX_TAIL = struct.Struct("<II")  # reserved, checksum

DX_HASH_LEGACY = 0
DX_HASH_HALF_MD4 = 1
DX_HASH_TEA = 2
DX_HASH_LEGACY_UNSIGNED = 3
DX_HASH_HALF_MD4_UNSIGNED = 4
DX_HASH_TEA_UNSIGNED = 5
DX_HASH_SIPHASH = 6
HASH_NAMES = {0: "legacy", 1: "half_md4", 2: "tea", 3: "legacy_unsigned",
              4: "half_md4_unsigned", 5: "tea_unsigned", 6: "siphash"}


class DirEntry(NamedTuple):
    offset: int  # byte offset in the block (or inline buffer)
    inode: int
    rec_len: int
    name: bytes
    file_type: int


def rec_len_from_disk(value: int, block_size: int) -> int:
    if block_size < 65536:
        return value
    if value == 65535 or value == 0:
        return block_size
    return (value & 65532) | ((value & 3) << 16)


class _BadRecord(Exception):
    pass


def _records(buf: bytes | memoryview, block_size: int, filetype: bool, start: int = 0
             ) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, inode, rec_len, name_len, file_type) of each record of one block; raises
    _BadRecord (with the reason) at the first malformed one."""
    off = start
    end = len(buf)
    while off < end:
        if off + 8 > end:
            raise _BadRecord(f"directory entry at offset {off} overruns the block")
        if filetype:
            ino, rl, nl, ft = DIRENT.unpack_from(buf, off)
        else:
            ino, rl, nl = DIRENT_OLD.unpack_from(buf, off)
            nl &= 0xFF
            ft = 0
        rl = rec_len_from_disk(rl, block_size)
        if rl < 8 or rl % 4 or off + rl > end:
            raise _BadRecord(f"bad rec_len {rl} at offset {off}")
        if 8 + nl > rl:
            raise _BadRecord(f"name_len {nl} exceeds rec_len {rl} at offset {off}")
        yield off, ino, rl, nl, ft
        off += rl


def parse_block(
    buf: bytes | memoryview, block_size: int, filetype: bool, *, start: int = 0
) -> tuple[list[DirEntry], str | None]:
    """Every entry of one directory block (including deleted ones with inode 0).

    Returns (entries, error): error describes the first malformed record; entries before
    it are returned.
    """
    out: list[DirEntry] = []
    try:
        for off, ino, rl, nl, ft in _records(buf, block_size, filetype, start):
            out.append(DirEntry(off, ino, rl, bytes(buf[off + 8 : off + 8 + nl]), ft))
    except _BadRecord as exc:
        return out, str(exc)
    return out, None


def find_name(buf: bytes | memoryview, name: bytes, block_size: int, filetype: bool
              ) -> tuple[DirEntry | None, str | None]:
    """The live entry called ``name`` in one block, without decoding every entry: a
    substring search rules most blocks out, a header walk confirms a candidate.
    Returns (entry or None, error of the first malformed record met on the walk)."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    if data.find(name, 8) < 0:
        return None, None
    nlen = len(name)
    try:
        for off, ino, rl, nl, ft in _records(data, block_size, filetype):
            if ino and nl == nlen and data[off + 8 : off + 8 + nl] == name:
                return DirEntry(off, ino, rl, name, ft), None
    except _BadRecord as exc:
        return None, str(exc)
    return None, None


def has_tail(buf: bytes | memoryview) -> bool:
    n = len(buf)
    if n < TAIL_SIZE:
        return False
    ino, rl, nl, ft = DIRENT.unpack_from(buf, n - TAIL_SIZE)
    return ino == 0 and rl == TAIL_SIZE and nl == 0 and ft == TAIL_FT


def leaf_checksum(inode_seed: int, buf: bytes | memoryview) -> int:
    return crc32c_raw(inode_seed, buf[: len(buf) - TAIL_SIZE])


def stored_leaf_checksum(buf: bytes | memoryview) -> int:
    return struct.unpack_from("<I", buf, len(buf) - 4)[0]


def dx_node_checksum(inode_seed: int, buf: bytes | memoryview, count_offset: int, count: int, limit: int) -> int:
    size = count_offset + 8 * count
    c = crc32c_raw(inode_seed, buf[:size])
    tail_off = count_offset + 8 * limit
    c = crc32c_raw(c, bytes(buf[tail_off : tail_off + 4]) + b"\0\0\0\0")
    return c


def stored_dx_checksum(buf: bytes | memoryview, count_offset: int, limit: int) -> int:
    return struct.unpack_from("<I", buf, count_offset + 8 * limit + 4)[0]


# --- building (pack) -------------------------------------------------------------------
def pack_entry(inode: int, rec_len: int, name: bytes, file_type: int, filetype: bool = True) -> bytes:
    """One linear entry padded to ``rec_len`` (block sizes below 64 KiB)."""
    if filetype:
        head = DIRENT.pack(inode, rec_len, len(name), file_type)
    else:
        head = DIRENT_OLD.pack(inode, rec_len, len(name))
    out = head + name
    return out + bytes(rec_len - len(out))


def dirent_size(name_len: int) -> int:
    """Bytes an entry with a ``name_len``-byte name needs (EXT4_DIR_REC_LEN)."""
    return (8 + name_len + 3) & ~3


def pack_block(entries: list[tuple[int, bytes, int]], block_size: int, filetype: bool = True,
               csum_tail: bool = False) -> bytearray:
    """A linear directory block holding (inode, name, file_type) entries in order; the last
    entry takes the remaining room; with ``csum_tail`` the 12-byte tail is reserved (its
    checksum stays zero until ``set_leaf_checksum``). An empty list gives one unused entry."""
    end = block_size - (TAIL_SIZE if csum_tail else 0)
    buf = bytearray(block_size)
    if not entries:
        entries = [(0, b"", 0)]
    off = 0
    for i, (ino, name, ft) in enumerate(entries):
        rl = end - off if i == len(entries) - 1 else dirent_size(len(name))
        buf[off : off + rl] = pack_entry(ino, rl, name, ft, filetype)
        off += rl
    if csum_tail:
        buf[end:] = DIRENT.pack(0, TAIL_SIZE, 0, TAIL_FT) + b"\0\0\0\0"
    return buf


def set_leaf_checksum(buf: bytearray, inode_seed: int) -> int:
    c = leaf_checksum(inode_seed, memoryview(buf))
    struct.pack_into("<I", buf, len(buf) - 4, c)
    return c
