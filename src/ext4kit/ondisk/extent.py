"""Extent tree nodes: header, leaf extents, index entries, and the tail checksum.

A node lives in i_block (60 bytes, up to 4 entries) or in a whole block, where the 4-byte
ext4_extent_tail after eh_max entries holds crc32c(inode_seed, node bytes before it).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .csum import crc32c_raw

EXT4_EXT_MAGIC = 0xF30A
EXT_INIT_MAX_LEN = 1 << 15
MAX_DEPTH = 5

HEADER = struct.Struct("<HHHHI")  # magic, entries, max, depth, generation
ENTRY = struct.Struct("<IHHI")  # leaf: ee_block, ee_len, ee_start_hi, ee_start_lo
INDEX = struct.Struct("<IIHH")  # index: ei_block, ei_leaf_lo, ei_leaf_hi, ei_unused
TAIL = struct.Struct("<I")


class ExtentHeader(NamedTuple):
    magic: int
    entries: int
    max: int
    depth: int
    generation: int


class Extent(NamedTuple):
    """A leaf extent: ``length`` blocks at logical ``block`` map to physical ``start``."""

    block: int
    length: int
    start: int
    uninit: bool


class ExtentIndex(NamedTuple):
    block: int
    leaf: int


def parse_header(buf: bytes | memoryview, offset: int = 0) -> ExtentHeader:
    return ExtentHeader(*HEADER.unpack_from(buf, offset))


def parse_leaves(buf: bytes | memoryview, count: int, offset: int = 12) -> list[Extent]:
    out = []
    for i in range(count):
        blk, ln, hi, lo = ENTRY.unpack_from(buf, offset + 12 * i)
        if ln > EXT_INIT_MAX_LEN:
            out.append(Extent(blk, ln - EXT_INIT_MAX_LEN, lo | (hi << 32), True))
        else:
            out.append(Extent(blk, ln, lo | (hi << 32), False))
    return out


def parse_indexes(buf: bytes | memoryview, count: int, offset: int = 12) -> list[ExtentIndex]:
    out = []
    for i in range(count):
        blk, lo, hi, _ = INDEX.unpack_from(buf, offset + 12 * i)
        out.append(ExtentIndex(blk, lo | (hi << 32)))
    return out


def tail_offset(eh_max: int) -> int:
    return 12 + 12 * eh_max


def node_checksum(inode_seed: int, block: bytes | memoryview, eh_max: int) -> int:
    return crc32c_raw(inode_seed, block[: tail_offset(eh_max)])


def stored_node_checksum(block: bytes | memoryview, eh_max: int) -> int:
    return TAIL.unpack_from(block, tail_offset(eh_max))[0]


# --- building (pack) -------------------------------------------------------------------
def pack_header(entries: int, eh_max: int, depth: int, generation: int = 0) -> bytes:
    return HEADER.pack(EXT4_EXT_MAGIC, entries, eh_max, depth, generation)


def pack_leaf(block: int, length: int, start: int, uninit: bool = False) -> bytes:
    """One 12-byte leaf extent (``length`` <= 32768, or <= 32767 when ``uninit``)."""
    ln = length + EXT_INIT_MAX_LEN if uninit else length
    return ENTRY.pack(block, ln, start >> 32, start & 0xFFFFFFFF)


def pack_index(block: int, leaf: int) -> bytes:
    return INDEX.pack(block, leaf & 0xFFFFFFFF, leaf >> 32, 0)


def pack_node(entries: list[bytes], eh_max: int, depth: int, size: int) -> bytearray:
    """A node of ``size`` bytes (60 for i_block, else a block): header + entries."""
    if len(entries) > eh_max:
        raise ValueError(f"{len(entries)} entries do not fit a node of {eh_max}")
    buf = bytearray(size)
    buf[:12] = pack_header(len(entries), eh_max, depth)
    for i, e in enumerate(entries):
        buf[12 + 12 * i : 24 + 12 * i] = e
    return buf


def set_node_checksum(block: bytearray, inode_seed: int, eh_max: int) -> int:
    """Store the ext4_extent_tail checksum of a block-sized node."""
    c = node_checksum(inode_seed, memoryview(block), eh_max)
    TAIL.pack_into(block, tail_offset(eh_max), c)
    return c
