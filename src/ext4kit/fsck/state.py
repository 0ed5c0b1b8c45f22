"""What pass 1 learns and later passes use (plain containers, no objects per inode)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000

# directory entry file types
FT_UNKNOWN, FT_REG, FT_DIR, FT_CHR, FT_BLK, FT_FIFO, FT_SOCK, FT_SYMLINK = range(8)
FT_OF_MODE = {S_IFREG: FT_REG, S_IFDIR: FT_DIR, S_IFCHR: FT_CHR, S_IFBLK: FT_BLK,
              S_IFIFO: FT_FIFO, S_IFSOCK: FT_SOCK, S_IFLNK: FT_SYMLINK}

ROOT_INO = 2
BAD_INO = 1
RESIZE_INO = 7
JOURNAL_INO = 8

U16 = struct.Struct("<H")
U32 = struct.Struct("<I")


def mode_of(raw: bytes | bytearray) -> int:
    return U16.unpack_from(raw, 0)[0]


def links_of(raw: bytes | bytearray) -> int:
    return U16.unpack_from(raw, 26)[0]


def flags_of(raw: bytes | bytearray) -> int:
    return U32.unpack_from(raw, 32)[0]


def size_of(raw: bytes | bytearray) -> int:
    return U32.unpack_from(raw, 4)[0] | (U32.unpack_from(raw, 108)[0] << 32)


def set_size(raw: bytearray, size: int) -> None:
    U32.pack_into(raw, 4, size & 0xFFFFFFFF)
    U32.pack_into(raw, 108, size >> 32)


def generation_of(raw: bytes | bytearray) -> int:
    return U32.unpack_from(raw, 100)[0]


def file_acl_of(raw: bytes | bytearray, is64: bool) -> int:
    lo = U32.unpack_from(raw, 104)[0]
    return lo | (U16.unpack_from(raw, 118)[0] << 32) if is64 else lo


@dataclass
class State:
    # in-use inodes (i_links_count > 0, plus reserved inodes with content): raw bytes
    inodes: dict[int, bytearray] = field(default_factory=dict)
    # inodes whose raw bytes were changed by a repair (written back at the end)
    changed: set[int] = field(default_factory=set)
    dirs: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # ino -> [(lblk, pblk)]
    inline_dirs: set[int] = field(default_factory=set)
    bad: dict[int, str] = field(default_factory=dict)  # inodes pass 2 must judge (reason)
    cleared: set[int] = field(default_factory=set)
    # block claims: (start, length, owner); owner 0 = file system metadata
    run_start: list[int] = field(default_factory=list)
    run_len: list[int] = field(default_factory=list)
    run_owner: list[int] = field(default_factory=list)
    ea_refs: dict[int, int] = field(default_factory=dict)  # xattr block -> inodes using it
    ea_owner: dict[int, list[int]] = field(default_factory=dict)
    # EA inode -> references from xattr entries (e_value_inum) of inodes that keep them
    ea_inode_refs: dict[int, int] = field(default_factory=dict)
    # inodes stored in inode-table blocks the bad blocks inode lists: pass 1 skips them,
    # they stay marked in use and entries naming them are cleared (e2fsck's inode_bb_map)
    bb_inodes: set[int] = field(default_factory=set)
    extra_blocks: list[int] = field(default_factory=list)  # allocated by repairs
    freed_blocks: list[int] = field(default_factory=list)  # released by repairs
    # pass 2 results
    parent: dict[int, int] = field(default_factory=dict)  # dir -> the dir holding its entry
    dotdot: dict[int, int] = field(default_factory=dict)  # dir -> its '..'
    refs: dict[int, int] = field(default_factory=dict)  # inode -> entries pointing to it
    lost_found: int = 0
    dup_blocks: np.ndarray | None = None
    # arrays.InodeArrays of ``inodes`` kept between passes (refreshed from ``changed``)
    arrays: object = None

    def claim(self, start: int, length: int, owner: int) -> None:
        self.run_start.append(start)
        self.run_len.append(length)
        self.run_owner.append(owner)

    def is_dir(self, ino: int) -> bool:
        return ino in self.dirs or ino in self.inline_dirs
