"""mkfs: make an empty ext2/ext3/ext4 file system exactly the way mke2fs 1.47 does.

Owns option resolution (the stock mke2fs.conf), geometry (ext2fs_initialize), block
placement (alloc_tables, mkdir, res_gdt, mkjournal, fallocate) and writing the metadata.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import os
import stat as _stat
import struct
import time
import uuid as _uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Ext4Error, UnsupportedFeatureError
from .ondisk import dirent as _dirent
from .ondisk import extent as _extent
from .ondisk import inode as _inode
from .ondisk.csum import crc32c_raw
from .ondisk.groupdesc import (
    BG_BLOCK_UNINIT,
    BG_INODE_UNINIT,
    BG_INODE_ZEROED,
    LAYOUT32,
    LAYOUT64,
    group_desc_checksum,
)
from .ondisk.jbd2 import JournalSuperblock
from .ondisk.superblock import FEATURE_BITS, group_has_super
from .ondisk.superblock import LAYOUT as SB_LAYOUT

__all__ = ["mkfs", "MkfsResult", "MkfsParameterError", "parse_size", "FEATURES_SUPPORTED"]


class MkfsParameterError(Ext4Error, ValueError):
    """An mkfs argument is invalid (bad size, unknown feature, conflicting options)."""

    exit_code = 16


# =======================================================================================
# The stock /etc/mke2fs.conf of e2fsprogs 1.47 (the one on this machine), as data
# =======================================================================================
BASE_FEATURES = "sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr"
PROFILE_DEFAULTS: dict[str, Any] = {
    "blocksize": 4096, "inode_size": 256, "inode_ratio": 16384, "flex_bg_size": 16,
    "reserved_ratio": 5.0,
}
PROFILE_FS_TYPES: dict[str, dict[str, Any]] = {
    "ext3": {"features": "has_journal"},
    "ext4": {"features": "has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,"
                         "dir_nlink,extra_isize"},
    "small": {"blocksize": 1024, "inode_ratio": 4096},
    "floppy": {"blocksize": 1024, "inode_ratio": 8192},
    "big": {"inode_ratio": 32768},
    "huge": {"inode_ratio": 65536},
}
FS_TYPES = ("ext2", "ext3", "ext4")

# Feature names mkfs accepts: layout features it implements, and flag-only features.
FEATURES_SUPPORTED = frozenset({
    "has_journal", "ext_attr", "resize_inode", "dir_index", "sparse_super2", "stable_inodes",
    "filetype", "extent", "64bit", "flex_bg", "ea_inode", "metadata_csum_seed", "large_dir",
    "encrypt", "sparse_super", "large_file", "huge_file", "uninit_bg", "dir_nlink",
    "extra_isize", "metadata_csum", "inline_data",
})
FEATURE_ALIASES = {"extents": "extent", "uninit_groups": "uninit_bg", "gdt_csum": "uninit_bg",
                   "csum_seed": "metadata_csum_seed", "journal": "has_journal",
                   "dir_prealloc": "dir_prealloc", "largedir": "large_dir"}

DEFM_XATTR_USER = 0x4
DEFM_ACL = 0x8
ERRORS_CONTINUE = 1
FLAGS_SIGNED_HASH = 0x1
JNL_BACKUP_BLOCKS = 1
CRC32C_CHKSUM = 1
HASH_HALF_MD4 = 1
GOOD_OLD_FIRST_INO = 11
ROOT_INO, BAD_INO, RESIZE_INO, JOURNAL_INO, LPF_INO = 2, 1, 7, 8, 11
JBD2_MIN_JOURNAL_BLOCKS = 1024
EXT_INIT_MAX_LEN = 32768
MAX_32 = (1 << 32) - 1
S_IFDIR, S_IFREG = 0o040000, 0o100000
_GD32, _GD64 = LAYOUT32.struct, LAYOUT64.struct
_BLKGETSIZE64 = 0x80081272
_BLKZEROOUT = 0x127F


# =======================================================================================
# Sizes and features
# =======================================================================================
def parse_size(text: str | int, log_block_size: int) -> int:
    """mke2fs's parse_num_blocks2: a bare number counts blocks of 1 KiB << log_block_size;
    K/M/G/T suffixes are bytes (powers of 1024) and 's' 512-byte sectors."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    suffix = s[-1:] if s and not s[-1].isdigit() else ""
    digits = s[: len(s) - len(suffix)]
    try:
        num = int(digits, 0)
    except ValueError:
        raise MkfsParameterError(f"invalid size '{text}'") from None
    if num < 0:
        raise MkfsParameterError(f"invalid size '{text}'")
    shift = {"t": 30, "g": 20, "m": 10, "k": 0}.get(suffix.lower())
    if shift is not None:
        return (num << shift) >> log_block_size
    if suffix == "s":
        return num >> (1 + log_block_size)
    if suffix:
        raise MkfsParameterError(f"invalid size '{text}' (suffixes: K, M, G, T, s)")
    return num


def _canon_feature(name: str) -> str:
    n = FEATURE_ALIASES.get(name, name)
    if n not in FEATURE_BITS:
        raise MkfsParameterError(f"invalid filesystem option set: unknown feature '{name}'")
    return n


def edit_features(feats: set[str], spec: str | Iterable[str]) -> None:
    """e2p_edit_feature: words separated by commas or blanks; '^' or '-' clears, '+' (or
    nothing) sets; 'none'/'clear' clears everything."""
    words: list[str] = []
    items = [spec] if isinstance(spec, str) else list(spec)
    for item in items:
        words += [w for w in item.replace("\t", ",").replace(" ", ",").split(",") if w]
    for w in words:
        if w.lower() in ("none", "clear"):
            feats.clear()
            continue
        neg = w[0] in "^-"
        name = _canon_feature(w[1:] if w[0] in "^-+" else w)
        if neg:
            feats.discard(name)
        else:
            feats.add(name)


# =======================================================================================
# Parameters (mke2fs PRS) and geometry (ext2fs_initialize)
# =======================================================================================
@dataclass
class Geometry:
    block_size: int
    log_bs: int
    blocks_count: int
    r_blocks_count: int
    first_data_block: int
    blocks_per_group: int
    group_count: int
    desc_size: int  # 32 or 64
    desc_per_block: int
    desc_blocks: int
    inodes_per_group: int
    inode_blocks_per_group: int
    inodes_count: int
    inode_size: int
    reserved_gdt_blocks: int
    log_groups_per_flex: int
    features: set[str]
    backup_bgs: list[int] = field(default_factory=lambda: [0, 0])

    def has(self, name: str) -> bool:
        return name in self.features

    @property
    def csum_flag(self) -> bool:
        return self.has("metadata_csum") or self.has("uninit_bg")

    @property
    def addr_per_block(self) -> int:
        return self.block_size // 4

    def group_first_block(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def group_last_block(self, g: int) -> int:
        if g == self.group_count - 1:
            return self.blocks_count - 1
        return self.group_first_block(g) + self.blocks_per_group - 1

    def group_blocks(self, g: int) -> int:
        if g == self.group_count - 1:
            rem = (self.blocks_count - self.first_data_block) % self.blocks_per_group
            return rem or self.blocks_per_group
        return self.blocks_per_group

    def group_of_block(self, b: int) -> int:
        return (b - self.first_data_block) // self.blocks_per_group

    def bg_has_super(self, g: int) -> bool:
        return _bg_has_super(g, self.features, self.backup_bgs)

    def backup_groups(self) -> list[int]:
        """Groups other than 0 holding superblock + GDT backups, ascending."""
        if self.has("sparse_super2"):
            return sorted({g for g in self.backup_bgs if 0 < g < self.group_count})
        if not self.has("sparse_super"):
            return list(range(1, self.group_count))
        out = {1} if self.group_count > 1 else set()
        for base in (3, 5, 7):
            p = base
            while p < self.group_count:
                out.add(p)
                p *= base
        return sorted(out)

    def super_and_bgd(self, g: int) -> tuple[int | None, int | None, int]:
        """(superblock block or None, first GDT block or None, used blocks) of group g."""
        gb = self.group_first_block(g)
        if gb == 0 and self.block_size == 1024:
            gb = 1
        if not self.bg_has_super(g):
            return None, None, 0
        return gb, gb + 1, 1 + self.desc_blocks + self.reserved_gdt_blocks


def _bg_has_super(g: int, feats: set[str], backup_bgs: list[int]) -> bool:
    return group_has_super(g, sparse_super="sparse_super" in feats,
                           sparse_super2="sparse_super2" in feats, backup_bgs=backup_bgs)


def _place_bitmap(used, start_blk: int, group_blk: int, last_blk: int, what: str) -> int:
    """One free block for a bitmap: from the flex_bg goal, else from the group start."""
    b = used.get_free_blocks(start_blk, last_blk, 1)
    if b is None:
        b = used.get_free_blocks(group_blk, last_blk, 1)
    if b is None:
        raise Ext4Error(f"cannot place the {what}")
    used.mark(b)
    return b


def _div_ceil(a: int, b: int) -> int:
    return -(-a // b)


def _calc_reserved_gdt_blocks(blocks: int, fdb: int, bpg: int, gdpb: int, desc_blocks: int,
                              apb: int) -> int:
    max_blocks = 0xFFFFFFFF
    if blocks < max_blocks // 1024:
        max_blocks = blocks * 1024
    rsv_groups = _div_ceil(max_blocks - fdb, bpg)
    rsv_gdb = _div_ceil(rsv_groups, gdpb) - desc_blocks
    if rsv_gdb < 0 or rsv_gdb > apb:  # unsigned arithmetic in C
        rsv_gdb = apb
    return rsv_gdb


def _initialize(*, log_bs: int, blocks: int, r_blocks: int, inodes: int, inode_size: int,
                feats: set[str], log_flex: int, reserved_ratio_src: tuple[int, int],
                backup_bgs: list[int]) -> Geometry:
    """ext2fs_initialize: groups, inodes per group, reserved GDT, last-group trimming."""
    bs = 1024 << log_bs
    fdb = 0 if log_bs else 1
    bpg = bs * 8
    first_ino = GOOD_OLD_FIRST_INO
    param_blocks = blocks
    is64 = "64bit" in feats
    desc_size = 64 if is64 else 32
    gdpb = bs // desc_size
    apb = bs // 4
    while True:  # retry:
        groups = _div_ceil(blocks - fdb, bpg)
        if groups <= 0:
            raise MkfsParameterError("file system too small (no block group fits)")
        desc_blocks = _div_ceil(groups, gdpb)
        i = 1 if bs >= 4096 else 4096 // bs
        if is64 and blocks // i >= (1 << 32):
            icount = inodes or MAX_32
        else:
            icount = inodes or blocks // i
        if icount < first_ino + 1:
            icount = first_ino + 1
        ipg = _div_ceil(icount, groups)
        if ipg > bs * 8:
            if bpg >= 256:
                bpg -= 8
                blocks = param_blocks
                continue
            raise MkfsParameterError("too many inodes for this file system size (raise -i or lower -N)")
        max_ipg = (1 << 16) - bs // inode_size
        if ipg > max_ipg:
            ipg = max_ipg
        while True:  # ipg_retry:
            s_ipg = ipg
            ibpg = _div_ceil(s_ipg * inode_size, bs)
            s_ipg = ibpg * bs // inode_size
            if s_ipg < 8:
                s_ipg = 8
            s_ipg &= ~7
            ibpg = _div_ceil(s_ipg * inode_size, bs)
            if s_ipg * groups > MAX_32:
                ipg -= 1
                continue
            break
        rsv = 0
        if "resize_inode" in feats:
            rsv = _calc_reserved_gdt_blocks(blocks, fdb, bpg, gdpb, desc_blocks, apb)
        if rsv + desc_blocks > bpg * 3 // 4:
            raise UnsupportedFeatureError(
                "this geometry needs meta_bg (group descriptors would fill 3/4 of a group); "
                "ext4kit mkfs does not support meta_bg: use a larger block size")
        overhead = 3 + ibpg + rsv + desc_blocks
        if overhead > bpg:
            raise MkfsParameterError("too many inodes for this file system size (raise -i or lower -N)")
        overhead = 2 + ibpg
        if "sparse_super2" in feats:
            has_bg = (backup_bgs[0] != 0) if groups == 2 else (backup_bgs[1] != 0)
        else:
            has_bg = _bg_has_super(groups - 1, feats, backup_bgs)
        if has_bg:
            overhead += 1 + desc_blocks + rsv
        rem = (blocks - fdb) % bpg
        if groups == 1 and rem and rem < overhead:
            raise MkfsParameterError("file system too small for its metadata")
        if rem and rem < overhead + 50:
            blocks -= rem
            ratio = 100.0 * reserved_ratio_src[0] / reserved_ratio_src[1]
            r_blocks = int(ratio * blocks / 100.0)
            continue
        break
    bb = list(backup_bgs)
    if "sparse_super2" in feats:
        if bb[0] >= groups:
            bb[0] = groups - 1
        if bb[1] >= groups:
            bb[1] = groups - 1
        if bb[0] == bb[1]:
            bb[1] = 0
        if bb[0] > bb[1]:
            bb[0], bb[1] = bb[1], bb[0]
    return Geometry(
        block_size=bs, log_bs=log_bs, blocks_count=blocks, r_blocks_count=r_blocks,
        first_data_block=fdb, blocks_per_group=bpg, group_count=groups, desc_size=desc_size,
        desc_per_block=gdpb, desc_blocks=desc_blocks, inodes_per_group=s_ipg,
        inode_blocks_per_group=ibpg, inodes_count=s_ipg * groups, inode_size=inode_size,
        reserved_gdt_blocks=rsv, log_groups_per_flex=log_flex, features=set(feats),
        backup_bgs=bb,
    )


# =======================================================================================
# The block allocator: used intervals, with libext2fs's search semantics
# =======================================================================================
class UsedBlocks:
    """Sorted, merged used intervals [start, end) — the block bitmap without a bitmap."""

    def __init__(self, blocks_count: int, first_data_block: int):
        self.total = blocks_count
        self.fdb = first_data_block
        self.starts: list[int] = []
        self.ends: list[int] = []

    def mark(self, start: int, n: int = 1) -> None:
        if n <= 0:
            return
        end = start + n
        s, e = self.starts, self.ends
        i = bisect.bisect_left(e, start)  # first interval that ends at/after start
        j = bisect.bisect_right(s, end)  # intervals starting after end are untouched
        if i < j:
            start = min(start, s[i])
            end = max(end, e[j - 1])
        s[i:j] = [start]
        e[i:j] = [end]

    def count(self, lo: int, hi: int) -> int:
        """Used blocks in [lo, hi)."""
        n = 0
        i = bisect.bisect_right(self.ends, lo)
        while i < len(self.starts) and self.starts[i] < hi:
            n += min(self.ends[i], hi) - max(self.starts[i], lo)
            i += 1
        return n

    def intervals(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out = []
        i = bisect.bisect_right(self.ends, lo)
        while i < len(self.starts) and self.starts[i] < hi:
            out.append((max(self.starts[i], lo), min(self.ends[i], hi)))
            i += 1
        return out

    def _next_used(self, b: int) -> tuple[int, int] | None:
        """The interval containing b or the first one after it."""
        i = bisect.bisect_right(self.ends, b)
        if i < len(self.starts):
            return self.starts[i], self.ends[i]
        return None

    def first_free(self, b: int, last: int) -> int | None:
        """ext2fs_find_first_zero_block_bitmap2 over [b, last]."""
        iv = self._next_used(b)
        if iv is not None and iv[0] <= b:
            b = iv[1]
        return b if b <= last else None

    def free_run_end(self, b: int, limit: int) -> int:
        """First used block in [b, limit), or limit."""
        iv = self._next_used(b)
        if iv is None or iv[0] >= limit:
            return limit
        return max(iv[0], b)

    def _first_fit(self, b: int, num: int) -> int | None:
        while True:
            if b + num - 1 >= self.total:
                return None
            iv = self._next_used(b)
            if iv is None or iv[0] >= b + num:
                return b
            b = max(b, iv[1]) if iv[0] <= b else iv[1]

    def get_free_blocks(self, start: int, finish: int, num: int) -> int | None:
        """ext2fs_get_free_blocks2: the first b tried from ``start`` (wrapping only when
        finish <= start) with [b, b+num) free; candidates stop before ``finish``."""
        b = start or self.fdb
        if not finish:
            finish = start
        num = num or 1
        if finish > start:
            p = self._first_fit(b, num)
            return p if p is not None and p < finish else None
        p = self._first_fit(b, num)
        if p is not None:
            return p
        p = self._first_fit(self.fdb, num)
        return p if p is not None and p < finish else None

    def new_block(self, goal: int) -> int:
        """ext2fs_new_block2: first free block at/after goal, wrapping to the start."""
        if not goal or goal >= self.total:
            goal = self.fdb
        b = self.first_free(goal, self.total - 1)
        if b is None and goal != self.fdb:
            b = self.first_free(self.fdb, goal - 1)
        if b is None:
            raise Ext4Error("could not allocate a block: file system full")
        return b

    def new_range(self, goal: int, length: int) -> tuple[int, int]:
        """ext2fs_new_range(flags=0): first free block at/after goal and the free run
        from it, at most ``length`` long."""
        start = self.first_free(goal, self.total - 1)
        if start is None:
            start = self.first_free(self.fdb, self.total - 1)
            if start is None:
                raise Ext4Error("could not allocate blocks: file system full")
        end = self.free_run_end(start, min(start + length, self.total))
        return start, end - start


# =======================================================================================
# The file system under construction
# =======================================================================================
@dataclass
class GroupState:
    block_bitmap: int = 0
    inode_bitmap: int = 0
    inode_table: int = 0
    free_blocks: int = 0
    free_inodes: int = 0
    used_dirs: int = 0
    flags: int = 0
    itable_unused: int = 0


@dataclass
class MkfsResult:
    """What mkfs made: the geometry and where the interesting things went."""

    path: str
    geometry: Geometry
    uuid: _uuid.UUID
    free_blocks: int
    free_inodes: int
    overhead_clusters: int
    journal_blocks: int
    seconds: float = 0.0


class _Builder:
    def __init__(self, geo: Geometry, *, now: int, fs_uuid: bytes, hash_seed: bytes,
                 label: bytes, root_owner: tuple[int, int], itable_zeroed: bool,
                 journal_blocks: int):
        self.geo = geo
        self.now = now
        self.uuid = fs_uuid
        self.hash_seed = hash_seed
        self.label = label
        self.root_owner = root_owner
        self.itable_zeroed = itable_zeroed
        self.journal_blocks = journal_blocks
        self.used = UsedBlocks(geo.blocks_count, geo.first_data_block)
        self.groups = [GroupState() for _ in range(geo.group_count)]
        self.free_blocks_total = 0
        self.writes: dict[int, bytes] = {}  # block number -> whole-block content
        self.sub_writes: list[tuple[int, bytes]] = []  # (byte offset, bytes)
        self.inodes: dict[int, bytearray] = {}
        self.used_inodes: set[int] = set()
        self.overhead = 0
        self.jnl_blocks_backup: list[int] = [0] * 17
        self.zero_ranges: list[tuple[int, int]] = []  # (block, count) to zero on devices
        self.journal_runs: list[tuple[int, int]] = []  # (block, count) of journal blocks
        self.kbytes_written = 0
        if geo.has("metadata_csum_seed") or geo.has("metadata_csum"):
            self.fs_seed = crc32c_raw(0xFFFFFFFF, fs_uuid)
        else:
            self.fs_seed = 0

    # --- block accounting (ext2fs_block_alloc_stats) -----------------------------------
    def alloc_stats(self, blk: int, n: int = 1) -> None:
        self.used.mark(blk, n)
        self._account(blk, n)

    def _account(self, blk: int, n: int) -> None:
        """Free counts of the groups [blk, blk+n) lies in drop; they lose BLOCK_UNINIT."""
        geo = self.geo
        while n > 0:
            g = geo.group_of_block(blk)
            k = min(n, geo.group_last_block(g) - blk + 1)
            gs = self.groups[g]
            gs.free_blocks -= k
            gs.flags &= ~BG_BLOCK_UNINIT
            self.free_blocks_total -= k
            blk += k
            n -= k

    def alloc_block(self, goal: int) -> int:
        b = self.used.new_block(goal)
        self.alloc_stats(b)
        return b

    def inode_alloc_stats(self, ino: int, is_dir: bool = False) -> None:
        geo = self.geo
        g = (ino - 1) // geo.inodes_per_group
        gs = self.groups[g]
        gs.free_inodes -= 1
        if is_dir:
            gs.used_dirs += 1
        gs.flags &= ~BG_INODE_UNINIT
        if geo.csum_flag:
            first_unused = geo.inodes_per_group - gs.itable_unused + g * geo.inodes_per_group + 1
            if ino >= first_unused:
                gs.itable_unused = g * geo.inodes_per_group + geo.inodes_per_group - ino
        self.used_inodes.add(ino)

    # --- steps, in mke2fs order ----------------------------------------------------------
    def init_groups(self) -> None:
        """ext2fs_initialize's group loop: flags, itable_unused, reserved sb/GDT blocks."""
        geo = self.geo
        reserved_inos = GOOD_OLD_FIRST_INO
        flex = geo.log_groups_per_flex > 0
        total = 0
        for g, gs in enumerate(self.groups):
            if geo.csum_flag:
                if g != geo.group_count - 1:
                    gs.flags |= BG_BLOCK_UNINIT
                gs.flags |= BG_INODE_UNINIT
                n = geo.inodes_per_group
                if reserved_inos:
                    if n > reserved_inos:
                        n -= reserved_inos
                        reserved_inos = 0
                    else:
                        reserved_inos -= n
                        n = 0
                gs.itable_unused = n
            sb_blk, gdt_blk, used_blks = geo.super_and_bgd(g)
            if sb_blk is not None or g == 0:
                self.used.mark(sb_blk if sb_blk is not None else 0)
            if gdt_blk is not None:
                n = geo.desc_blocks + geo.reserved_gdt_blocks
                n = min(n, geo.blocks_count - gdt_blk)
                self.used.mark(gdt_blk, n)
            numblocks = geo.group_blocks(g) - 2 - geo.inode_blocks_per_group - used_blks
            if flex:
                numblocks += 2 + geo.inode_blocks_per_group
            gs.free_blocks = numblocks
            gs.free_inodes = geo.inodes_per_group
            total += numblocks
        self.free_blocks_total = total

    def _flexbg_offset(self, group: int, start_blk: int, rem_grp: int, elem_size: int) -> int:
        geo = self.geo
        flexbg_size = 1 << geo.log_groups_per_flex
        flexbg = group // flexbg_size
        size = rem_grp * elem_size
        if size > geo.blocks_per_group // 4:
            size = geo.blocks_per_group // 4
        if start_blk and start_blk < geo.blocks_count:
            r = self.used.get_free_blocks(start_blk, start_blk + size, elem_size)
            if r is not None:
                return r
        start_blk = geo.group_first_block(flexbg_size * flexbg)
        last_grp = group | (flexbg_size - 1)
        if last_grp > geo.group_count - 1:
            last_grp = geo.group_count - 1
        last_blk = geo.group_last_block(last_grp)
        for s, n in ((start_blk, size), (start_blk, elem_size), (0, elem_size)):
            r = self.used.get_free_blocks(s, last_blk, n)
            if r is not None:
                return r
        return 0

    def allocate_tables(self) -> None:
        """ext2fs_allocate_tables / ext2fs_allocate_group_table (no RAID stride)."""
        geo = self.geo
        used = self.used
        flexbg_size = (1 << geo.log_groups_per_flex) if (
            geo.has("flex_bg") and geo.log_groups_per_flex) else 0
        ibpg = geo.inode_blocks_per_group
        for g, gs in enumerate(self.groups):
            group_blk = geo.group_first_block(g)
            last_blk = geo.group_last_block(g)
            last_grp = 0
            rem_grps = 0
            table_offset = 0
            if flexbg_size:
                last_grp = min(g | (flexbg_size - 1), geo.group_count - 1)
                rem_grps = last_grp - g + 1
            start_blk = group_blk
            if flexbg_size:
                prev = 0
                table_offset = flexbg_size
                if g % flexbg_size:
                    prev = self.groups[g - 1].block_bitmap + 1
                elif last_grp == geo.group_count - 1:
                    table_offset = last_grp & (flexbg_size - 1)
                    table_offset = flexbg_size if table_offset == 0 else table_offset + 1
                start_blk = self._flexbg_offset(g, prev, rem_grps, 1)
                last_blk = geo.group_last_block(last_grp)
            # block bitmap
            b = _place_bitmap(used, start_blk, group_blk, last_blk, f"block bitmap of group {g}")
            gs.block_bitmap = b
            if flexbg_size:
                self._account(b, 1)
                prev = (self.groups[g - 1].inode_bitmap + 1) if g % flexbg_size else b + table_offset
                start_blk = self._flexbg_offset(g, prev, rem_grps, 1)
                last_blk = geo.group_last_block(last_grp)
            # inode bitmap
            b = _place_bitmap(used, start_blk, group_blk, last_blk, f"inode bitmap of group {g}")
            gs.inode_bitmap = b
            if flexbg_size:
                self._account(b, 1)
                if g % flexbg_size:
                    prev = self.groups[g - 1].inode_table + ibpg
                else:
                    prev = gs.inode_bitmap + table_offset
                group_blk = self._flexbg_offset(g, prev, rem_grps, ibpg)
                last_blk = geo.group_last_block(last_grp)
            # inode table
            table = used.get_free_blocks(group_blk, last_blk, ibpg)
            if table is None:
                raise Ext4Error(f"cannot place the inode table of group {g}")
            used.mark(table, ibpg)
            if flexbg_size:
                self._account(table, ibpg)
            gs.inode_table = table

    def write_inode_tables(self) -> None:
        """Flags as write_inode_tables(lazy_itable_init=1); reserved inodes get checksums."""
        geo = self.geo
        for gs in self.groups:
            if self.itable_zeroed:
                gs.flags |= BG_INODE_ZEROED
        # What mke2fs zeroes on a device that does not read back zeros after discard.
        if not self.itable_zeroed:
            for gs in self.groups:
                n = _div_ceil((geo.inodes_per_group - gs.itable_unused) * geo.inode_size,
                              geo.block_size)
                if n:
                    self.zero_ranges.append((gs.inode_table, n))
        if geo.has("metadata_csum"):
            for ino in range(1, GOOD_OLD_FIRST_INO):
                self.inodes[ino] = _inode.pack_inode({}, geo.inode_size)

    def _new_inode_fields(self, mode: int, links: int, size: int, nblocks: int, flags: int,
                          i_block: bytes, uid: int = 0, gid: int = 0) -> dict[str, Any]:
        """ext2fs_write_new_inode: times set, large inodes get extra_isize and crtime."""
        geo = self.geo
        f: dict[str, Any] = {
            "i_mode": mode, "i_uid": uid & 0xFFFF, "l_i_uid_high": uid >> 16,
            "i_gid": gid & 0xFFFF, "l_i_gid_high": gid >> 16,
            "i_size_lo": size & 0xFFFFFFFF, "i_size_high": size >> 32,
            "i_atime": self.now, "i_ctime": self.now, "i_mtime": self.now,
            "i_links_count": links, "i_flags": flags, "i_block": i_block,
        }
        f.update(self._iblocks(nblocks))
        if geo.inode_size > 128:
            f["i_extra_isize"] = 32
            f["i_crtime"] = self.now
        return f

    def _iblocks(self, nblocks: int) -> dict[str, int]:
        n512 = nblocks * (self.geo.block_size // 512)
        return {"i_blocks_lo": n512 & 0xFFFFFFFF, "l_i_blocks_high": n512 >> 32}

    def _dir_iblock(self, blocks: list[int]) -> tuple[bytes, int]:
        """i_block for a directory of the given (contiguous-run) blocks, and its flags."""
        if self.geo.has("extent"):
            entries = []
            runs = _runs(blocks)
            if len(runs) > 4:
                raise Ext4Error("directory too fragmented for an in-inode extent tree")
            for lblk, pblk, n in runs:
                entries.append(_extent.pack_leaf(lblk, n, pblk))
            return bytes(_extent.pack_node(entries, 4, 0, 60)), _inode.EXTENTS_FL
        if len(blocks) > 12:
            raise Ext4Error("directory too large for direct blocks")
        return struct.pack(f"<{len(blocks)}I", *blocks) + bytes(60 - 4 * len(blocks)), 0

    def _dir_block(self, ino: int, entries: list[tuple[int, bytes, int]]) -> bytearray:
        geo = self.geo
        csum = geo.has("metadata_csum")
        buf = _dirent.pack_block(entries, geo.block_size, geo.has("filetype"), csum)
        if csum:
            _dirent.set_leaf_checksum(buf, _inode.inode_csum_seed(self.fs_seed, ino, 0))
        return buf

    def create_dirs(self) -> None:
        """create_root_dir + create_lost_and_found (ext2fs_mkdir, ext2fs_expand_dir).

        With inline_data, lost+found is made inline and its first expansion converts it
        to one block (allocated from the start of the file system), so it ends up one
        block smaller."""
        geo = self.geo
        ft_dir = 2 if geo.has("filetype") else 0
        inline = geo.has("inline_data")
        # mkdir goal: the first block of the inode's (flex) group -> group 0
        root_blk = self.alloc_block(geo.group_first_block(0))
        self.inode_alloc_stats(ROOT_INO, is_dir=True)
        lpf_blocks: list[int] = []
        if not inline:
            lpf_blocks.append(self.alloc_block(geo.group_first_block(0)))
        self.inode_alloc_stats(LPF_INO, is_dir=True)
        lpf_size = 0
        for _ in range(1, 12):
            lpf_size += geo.block_size
            if lpf_size >= 16 * 1024 and lpf_size >= 2 * geo.block_size:
                break
            goal = lpf_blocks[-1] if lpf_blocks else 0
            lpf_blocks.append(self.alloc_block(goal))
        root_entries = [(ROOT_INO, b".", ft_dir), (ROOT_INO, b"..", ft_dir),
                        (LPF_INO, b"lost+found", ft_dir)]
        self.writes[root_blk] = bytes(self._dir_block(ROOT_INO, root_entries))
        first = [(LPF_INO, b".", ft_dir), (ROOT_INO, b"..", ft_dir)]
        if inline:  # the converted inline directory keeps its empty tail entry
            first.append((0, b"", 0))
        self.writes[lpf_blocks[0]] = bytes(self._dir_block(LPF_INO, first))
        for b in lpf_blocks[1:]:
            self.writes[b] = bytes(self._dir_block(LPF_INO, []))
        ib, fl = self._dir_iblock([root_blk])
        uid, gid = self.root_owner
        self._set_inode(ROOT_INO, self._new_inode_fields(
            S_IFDIR | 0o755, 3, geo.block_size, 1, fl, ib, uid, gid))
        ib, fl = self._dir_iblock(lpf_blocks)
        self._set_inode(LPF_INO, self._new_inode_fields(
            S_IFDIR | 0o700, 2, geo.block_size * len(lpf_blocks), len(lpf_blocks), fl, ib))
        if inline:  # the emptied in-inode xattr area (it held system.data) keeps its magic
            off = 128 + 32
            self.inodes[LPF_INO][off : off + 4] = struct.pack("<I", 0xEA020000)

    def reserve_inodes(self) -> None:
        for ino in range(ROOT_INO + 1, GOOD_OLD_FIRST_INO):
            self.inode_alloc_stats(ino)
        # create_bad_block_inode: an empty bad blocks list
        self.inode_alloc_stats(BAD_INO)
        f = {"i_atime": self.now, "i_mtime": self.now, "i_ctime": self.now}
        self._set_inode(BAD_INO, f)

    def create_resize_inode(self) -> None:
        """ext2fs_create_resize_inode: a DIND block listing the reserved GDT blocks, each
        primary reserved GDT block listing its backups."""
        geo = self.geo
        rsv = geo.reserved_gdt_blocks  # may be 0 on a tiny file system: the inode is made anyway
        apb = geo.addr_per_block
        goal = geo.first_data_block + geo.desc_blocks + rsv + 2 + geo.inode_blocks_per_group
        dind_blk = self.alloc_block(goal)
        dind = [0] * apb
        nblocks = 1
        backups = geo.backup_groups()
        for rsv_off in range(rsv):
            gdt_off = (geo.desc_blocks + rsv_off) % apb
            gdt_blk = geo.first_data_block + 1 + geo.desc_blocks + rsv_off
            dind[gdt_off] = gdt_blk
            nblocks += 1
            lst = [(gdt_blk + grp * geo.blocks_per_group) & 0xFFFFFFFF for grp in backups]
            nblocks += len(lst)
            self.writes[gdt_blk] = struct.pack(f"<{len(lst)}I", *lst) + bytes(
                geo.block_size - 4 * len(lst))
        self.writes[dind_blk] = struct.pack(f"<{apb}I", *dind)
        size = (apb * apb + apb + 12) * geo.block_size
        if size >> 32:
            geo.features.add("large_file")
        i_block = bytearray(60)
        struct.pack_into("<I", i_block, 13 * 4, dind_blk)
        self._set_inode(RESIZE_INO, self._new_inode_fields(
            S_IFREG | 0o600, 1, size, nblocks, 0, bytes(i_block)))

    def _midpoint_journal_block(self) -> int:
        geo = self.geo
        group = geo.group_of_block((geo.blocks_count - geo.first_data_block) // 2)
        log_flex = 1 << geo.log_groups_per_flex
        if geo.log_groups_per_flex and group > log_flex:
            group = group & ~(log_flex - 1)
            while group < geo.group_count and self.groups[group].free_blocks == 0:
                group += 1
            if group == geo.group_count:
                group = 0
            start = group
        else:
            start = group - 1 if group > 0 else group
        end = group + 1 if group + 1 < geo.group_count else group
        group = start
        for i in range(start + 1, end + 1):
            if self.groups[i].free_blocks > self.groups[group].free_blocks:
                group = i
        return geo.group_first_block(group)

    def create_journal(self) -> None:
        """ext2fs_add_journal_inode3 -> write_journal_inode (ext2fs_fallocate)."""
        geo = self.geo
        n = self.journal_blocks
        if geo.has("extent"):
            i_block, nblocks, first = self._journal_extents(n)
            flags = _inode.EXTENTS_FL
        else:
            i_block, nblocks, first = self._journal_indirect(n)
            flags = 0
        size = n * geo.block_size
        jsb = JournalSuperblock(s_blocksize=geo.block_size, s_maxlen=n, s_first=1,
                                s_sequence=1, s_uuid=self.uuid, s_nr_users=1)
        self.writes[first] = jsb.pack() + bytes(geo.block_size - 1024)
        self._set_inode(JOURNAL_INO, self._new_inode_fields(
            S_IFREG | 0o600, 1, size, nblocks, flags, i_block))
        words = list(struct.unpack("<15I", i_block))
        self.jnl_blocks_backup = words + [size >> 32, size & 0xFFFFFFFF]

    def _journal_extents(self, n: int) -> tuple[bytes, int, int]:
        geo = self.geo
        mid = self._midpoint_journal_block()
        first_free = self.used.first_free(mid, geo.blocks_count - 1)
        goal = geo.first_data_block if first_free is None else first_free
        extents: list[tuple[int, int, int]] = []
        etb: int | None = None
        leaf_max = (geo.block_size - 12) // 12
        lblk = 0
        pblk = goal
        while lblk < n:
            fill = min(n - lblk, EXT_INIT_MAX_LEN)
            start, plen = self.used.new_range(pblk, fill)
            self.alloc_stats(start, plen)
            self.journal_runs.append((start, plen))
            extents.append((lblk, start, plen))
            if len(extents) == 5 and etb is None:
                # extent_node_split: the new leaf goes just before the first extent
                etb = self.alloc_block(max(extents[0][1] - 1, 0))
            if len(extents) > leaf_max:
                raise UnsupportedFeatureError("journal needs a deeper extent tree than one leaf")
            lblk += plen
            pblk = start + plen
            if pblk >= geo.blocks_count:
                pblk = geo.first_data_block
        leaves = [_extent.pack_leaf(lb, ln, pb) for lb, pb, ln in extents]
        nblocks = n
        if etb is None:
            root = _extent.pack_node(leaves, 4, 0, 60)
        else:
            nblocks += 1
            leaf = _extent.pack_node(leaves, leaf_max, 0, geo.block_size)
            if geo.has("metadata_csum"):
                _extent.set_node_checksum(
                    leaf, _inode.inode_csum_seed(self.fs_seed, JOURNAL_INO, 0), leaf_max)
            self.writes[etb] = bytes(leaf)
            # The root was split in place: mke2fs leaves the old extents 2-4 in slots 1-3.
            root = _extent.pack_node([_extent.pack_index(0, etb)] + leaves[1:4], 4, 1, 60)
            root[2:4] = struct.pack("<H", 1)
        return bytes(root), nblocks, extents[0][1]

    def _journal_indirect(self, n: int) -> tuple[bytes, int, int]:
        """ext2fs_bmap2(BMAP_ALLOC) block by block: every allocation is the first free
        block after the previous one; an index block comes just before the data it maps."""
        geo = self.geo
        apb = geo.addr_per_block
        i_block = [0] * 15
        index: dict[tuple[int, ...], list[int]] = {}  # path -> the index block's entries
        where: dict[tuple[int, ...], int] = {}  # path -> the index block's number
        cursor = geo.group_first_block(0)
        total = 0

        def alloc_run(count: int) -> list[int]:
            nonlocal cursor, total
            out: list[int] = []
            while len(out) < count:
                b = self.used.new_block(cursor)
                end = self.used.free_run_end(b, min(b + count - len(out), geo.blocks_count))
                self.alloc_stats(b, end - b)
                self.journal_runs.append((b, end - b))
                out.extend(range(b, end))
                cursor = end - 1
            total += count
            return out

        lblk = 0
        while lblk < n:
            if lblk < 12:
                k = min(12 - lblk, n - lblk)
                i_block[lblk : lblk + k] = alloc_run(k)
                lblk += k
                continue
            rel = lblk - 12
            if rel < apb:
                key: tuple[int, ...] = (12,)
                idx = [rel]
            elif rel < apb + apb * apb:
                rel -= apb
                key = (13,)
                idx = [rel // apb, rel % apb]
            else:
                rel -= apb + apb * apb
                key = (14,)
                idx = [rel // (apb * apb), (rel // apb) % apb, rel % apb]
            if i_block[key[0]] == 0:  # index blocks are made top-down, then the data
                i_block[key[0]] = where[key] = alloc_run(1)[0]
                index[key] = [0] * apb
            for ix in idx[:-1]:
                child = key + (ix,)
                if index[key][ix] == 0:
                    index[key][ix] = where[child] = alloc_run(1)[0]
                    index[child] = [0] * apb
                key = child
            k = min(apb - idx[-1], n - lblk)
            index[key][idx[-1] : idx[-1] + k] = alloc_run(k)
            lblk += k
        for key, arr in index.items():
            self.writes[where[key]] = struct.pack(f"<{apb}I", *arr)
        return struct.pack("<15I", *i_block), total, i_block[0]

    # --- inodes ------------------------------------------------------------------------
    def _set_inode(self, ino: int, fields: dict[str, Any]) -> None:
        self.inodes[ino] = _inode.pack_inode(fields, self.geo.inode_size)

    def _finish_inodes(self) -> None:
        geo = self.geo
        for ino, buf in self.inodes.items():
            if geo.has("metadata_csum"):
                _inode.set_inode_checksum(buf, ino, self.fs_seed)
            g = (ino - 1) // geo.inodes_per_group
            idx = (ino - 1) % geo.inodes_per_group
            off = self.groups[g].inode_table * geo.block_size + idx * geo.inode_size
            self.sub_writes.append((off, bytes(buf)))

    # --- bitmaps, descriptors, superblocks (ext2fs_flush) ------------------------------
    def _block_bitmap(self, g: int, cache: dict) -> bytes:
        geo = self.geo
        lo = geo.group_first_block(g)
        hi = lo + geo.blocks_per_group
        ivs = tuple((a - lo, b - lo) for a, b in self.used.intervals(lo, min(hi, geo.blocks_count)))
        pad_from = 0
        if g == geo.group_count - 1:
            pad_from = (geo.blocks_count - geo.first_data_block) % geo.blocks_per_group
        key = (ivs, pad_from)
        hit = cache.get(key)
        if hit is not None:
            return hit
        nbytes = geo.blocks_per_group // 8
        bits = bytearray(nbytes)
        for a, b in ivs:
            _set_bits(bits, a, b)
        out = bytearray(b"\xff" * geo.block_size)
        out[:nbytes] = bits
        if pad_from:
            _set_bits(out, pad_from, geo.block_size * 8)
        res = bytes(out)
        cache[key] = res
        return res

    def flush(self) -> list[tuple[int, bytes]]:
        """Bitmaps and group descriptors (ext2fs_flush) plus every block written so far."""
        geo = self.geo
        csum = geo.has("metadata_csum")
        nbytes_b = geo.blocks_per_group // 8
        nbytes_i = geo.inodes_per_group // 8
        bcache: dict = {}
        empty_ibm = bytes(nbytes_i) + b"\xff" * (geo.block_size - nbytes_i)
        bb_csum = [0] * geo.group_count
        ib_csum = [0] * geo.group_count
        for g, gs in enumerate(self.groups):
            if not (geo.csum_flag and gs.flags & BG_BLOCK_UNINIT):
                bm = self._block_bitmap(g, bcache)
                self.writes[gs.block_bitmap] = bm
                if csum:
                    bb_csum[g] = crc32c_raw(self.fs_seed, bm[:nbytes_b])
            if not (geo.csum_flag and gs.flags & BG_INODE_UNINIT):
                first = g * geo.inodes_per_group + 1
                used = sorted(i - first for i in self.used_inodes
                              if first <= i < first + geo.inodes_per_group)
                if used:
                    bits = bytearray(empty_ibm)
                    for i in used:
                        bits[i >> 3] |= 1 << (i & 7)
                    ibm = bytes(bits)
                else:
                    ibm = empty_ibm
                self.writes[gs.inode_bitmap] = ibm
                if csum:
                    ib_csum[g] = crc32c_raw(self.fs_seed, ibm[:nbytes_i])
        # group descriptors
        ds = geo.desc_size
        is64 = ds >= 64
        gdt = bytearray(geo.desc_blocks * geo.block_size)
        for g, gs in enumerate(self.groups):
            f = {
                "bg_block_bitmap_lo": gs.block_bitmap & 0xFFFFFFFF,
                "bg_inode_bitmap_lo": gs.inode_bitmap & 0xFFFFFFFF,
                "bg_inode_table_lo": gs.inode_table & 0xFFFFFFFF,
                "bg_free_blocks_count_lo": gs.free_blocks & 0xFFFF,
                "bg_free_inodes_count_lo": gs.free_inodes & 0xFFFF,
                "bg_used_dirs_count_lo": gs.used_dirs & 0xFFFF,
                "bg_flags": gs.flags,
                "bg_exclude_bitmap_lo": 0,
                "bg_block_bitmap_csum_lo": bb_csum[g] & 0xFFFF,
                "bg_inode_bitmap_csum_lo": ib_csum[g] & 0xFFFF,
                "bg_itable_unused_lo": gs.itable_unused & 0xFFFF,
                "bg_checksum": 0,
                "bg_block_bitmap_hi": gs.block_bitmap >> 32,
                "bg_inode_bitmap_hi": gs.inode_bitmap >> 32,
                "bg_inode_table_hi": gs.inode_table >> 32,
                "bg_free_blocks_count_hi": gs.free_blocks >> 16,
                "bg_free_inodes_count_hi": gs.free_inodes >> 16,
                "bg_used_dirs_count_hi": gs.used_dirs >> 16,
                "bg_itable_unused_hi": gs.itable_unused >> 16,
                "bg_exclude_bitmap_hi": 0,
                "bg_block_bitmap_csum_hi": bb_csum[g] >> 16,
                "bg_inode_bitmap_csum_hi": ib_csum[g] >> 16,
                "bg_reserved": 0,
            }
            raw = bytearray(ds)
            _GD32.pack_into(raw, 0, *(f[n] for n in LAYOUT32.names))
            if is64:
                _GD64.pack_into(raw, 32, *(f[n] for n in LAYOUT64.names))
            if geo.csum_flag:
                c = group_desc_checksum(bytes(raw), g, ds, metadata_csum=csum, csum_seed=self.fs_seed,
                                        uuid=self.uuid)
                struct.pack_into("<H", raw, 0x1E, c)
            gdt[g * ds : (g + 1) * ds] = raw
        gdt_bytes = bytes(gdt)
        out: list[tuple[int, bytes]] = [(blk * geo.block_size, data)
                                        for blk, data in self.writes.items()]
        out += self.sub_writes
        for g in [0] + geo.backup_groups():
            _, gdt_blk, _ = geo.super_and_bgd(g)
            assert gdt_blk is not None
            out.append((gdt_blk * geo.block_size, gdt_bytes))
        return out

    def superblocks(self) -> list[tuple[int, bytes]]:
        """The primary (byte 1024) and the backups: mke2fs writes the backups with the
        state cleared and s_block_group_nr set."""
        geo = self.geo
        csum = geo.has("metadata_csum")
        sb = self._superblock()
        out = [(1024, _pack_sb(sb, csum))]
        for g in geo.backup_groups():
            sb_blk, _, _ = geo.super_and_bgd(g)
            assert sb_blk is not None
            f = dict(sb)
            f["s_block_group_nr"] = min(g, 0xFFFF)
            f["s_state"] = 0
            out.append((sb_blk * geo.block_size, _pack_sb(f, csum)))
        return out

    def _superblock(self) -> dict[str, Any]:
        geo = self.geo
        f = _empty_sb()
        feats = geo.features
        compat = incompat = ro = 0
        for name in feats:
            kind, bit = FEATURE_BITS[name]
            if kind == "compat":
                compat |= bit
            elif kind == "incompat":
                incompat |= bit
            else:
                ro |= bit
        now = self.now
        f.update({
            "s_inodes_count": geo.inodes_count,
            "s_blocks_count_lo": geo.blocks_count & 0xFFFFFFFF,
            "s_blocks_count_hi": geo.blocks_count >> 32 if geo.has("64bit") else 0,
            "s_r_blocks_count_lo": geo.r_blocks_count & 0xFFFFFFFF,
            "s_r_blocks_count_hi": geo.r_blocks_count >> 32 if geo.has("64bit") else 0,
            "s_free_blocks_count_lo": self.free_blocks_total & 0xFFFFFFFF,
            "s_free_blocks_count_hi": self.free_blocks_total >> 32 if geo.has("64bit") else 0,
            "s_free_inodes_count": geo.inodes_count - len(self.used_inodes),
            "s_first_data_block": geo.first_data_block,
            "s_log_block_size": geo.log_bs,
            "s_log_cluster_size": geo.log_bs,
            "s_blocks_per_group": geo.blocks_per_group,
            "s_clusters_per_group": geo.blocks_per_group,
            "s_inodes_per_group": geo.inodes_per_group,
            "s_wtime": now & 0xFFFFFFFF, "s_wtime_hi": now >> 32,
            "s_mnt_count": 0,
            "s_max_mnt_count": -1,
            "s_magic": 0xEF53,
            "s_state": 1,
            "s_errors": ERRORS_CONTINUE,
            "s_lastcheck": now & 0xFFFFFFFF, "s_lastcheck_hi": now >> 32,
            "s_mkfs_time": now & 0xFFFFFFFF, "s_mkfs_time_hi": now >> 32,
            "s_creator_os": 0,
            "s_rev_level": 1,
            "s_first_ino": GOOD_OLD_FIRST_INO,
            "s_inode_size": geo.inode_size,
            "s_feature_compat": compat,
            "s_feature_incompat": incompat,
            "s_feature_ro_compat": ro,
            "s_uuid": self.uuid,
            "s_volume_name": self.label.ljust(16, b"\0"),
            "s_reserved_gdt_blocks": geo.reserved_gdt_blocks,
            "s_hash_seed": list(struct.unpack("<4I", self.hash_seed)),
            "s_def_hash_version": HASH_HALF_MD4,
            "s_desc_size": 64 if geo.has("64bit") else 0,
            "s_default_mount_opts": DEFM_XATTR_USER | DEFM_ACL,
            "s_flags": FLAGS_SIGNED_HASH,
            "s_log_groups_per_flex": geo.log_groups_per_flex,
            "s_overhead_clusters": self.overhead,
            "s_kbytes_written": self.kbytes_written,
        })
        if geo.inode_size >= 160:
            f["s_min_extra_isize"] = f["s_want_extra_isize"] = 32
        if geo.has("has_journal"):
            f["s_journal_inum"] = JOURNAL_INO
            f["s_jnl_blocks"] = self.jnl_blocks_backup
            f["s_jnl_backup_type"] = JNL_BACKUP_BLOCKS
        if geo.has("metadata_csum"):
            f["s_checksum_type"] = CRC32C_CHKSUM
        if geo.has("metadata_csum_seed"):
            f["s_checksum_seed"] = crc32c_raw(0xFFFFFFFF, self.uuid)
        if geo.has("sparse_super2"):
            f["s_backup_bgs"] = list(geo.backup_bgs)
        if geo.has("encrypt"):
            f["s_encrypt_algos"] = bytes([1, 4, 0, 0])  # AES-256-XTS, AES-256-CTS
        return f


def _pack_sb(f: dict[str, Any], csum: bool) -> bytes:
    buf = bytearray(1024)
    SB_LAYOUT.pack_into(buf, 0, f)
    if csum:
        c = crc32c_raw(0xFFFFFFFF, bytes(buf[:0x3FC]))
        struct.pack_into("<I", buf, 0x3FC, c)
    return bytes(buf)


def _empty_sb() -> dict[str, Any]:
    """Every superblock field at zero (bytes for strings, lists for arrays)."""
    return SB_LAYOUT.unpack(bytes(1024))


def _set_bits(buf: bytearray, a: int, b: int) -> None:
    """Set bits [a, b) of a little-endian bitmap."""
    if a >= b:
        return
    fa, fb = (a + 7) // 8, b // 8
    if fa <= fb:
        buf[fa:fb] = b"\xff" * (fb - fa)
        for i in range(a, min(fa * 8, b)):
            buf[i >> 3] |= 1 << (i & 7)
        for i in range(max(fb * 8, a), b):
            buf[i >> 3] |= 1 << (i & 7)
    else:
        for i in range(a, b):
            buf[i >> 3] |= 1 << (i & 7)


def _runs(blocks: Sequence[int]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for lblk, b in enumerate(blocks):
        if out and out[-1][1] + out[-1][2] == b:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + 1)
        else:
            out.append((lblk, b, 1))
    return out


def _default_journal_size(blocks: int) -> int:
    if blocks < 2048:
        return -1
    for limit, size in ((32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192),
                        (4096 * 1024, 16384), (8192 * 1024, 32768), (16384 * 1024, 65536),
                        (32768 * 1024, 131072)):
        if blocks < limit:
            return size
    return 262144


# =======================================================================================
# The public entry point
# =======================================================================================
def mkfs(
    image: str | os.PathLike,
    size: str | int | None = None,
    *,
    fs_type: str = "ext4",
    block_size: int | None = None,
    inodes: int | None = None,
    bytes_per_inode: int | None = None,
    inode_size: int | None = None,
    journal_size_mib: int | None = None,
    features: Sequence[str] | str = (),
    label: str | None = None,
    uuid: str | _uuid.UUID | None = None,
    root_owner: tuple[int, int] | str | None = None,
    reserved_percent: float | None = None,
    hash_seed: str | _uuid.UUID | None = None,
    source_dir: str | os.PathLike | None = None,
    now: int | None = None,
) -> MkfsResult:
    """Make an ext2/3/4 file system on ``image`` (a file, created or resized, or a block
    device) the way ``mke2fs -t fs_type`` 1.47 with the stock mke2fs.conf does.

    ``size``: mke2fs syntax — K/M/G/T suffixes are bytes; a bare number counts blocks of
    ``block_size`` (or of 1 KiB when ``block_size`` is not given, as mke2fs); None uses the
    size of an existing file or device. ``features`` are ``-O`` words (``^name`` clears).
    ``now`` fixes every timestamp (mke2fs's E2FSPROGS_FAKE_TIME); ``hash_seed`` is
    ``-E hash_seed=``.
    """
    t0 = time.monotonic()
    if source_dir is not None and not os.path.isdir(source_dir):
        raise MkfsParameterError(f"-d {os.fspath(source_dir)}: not a directory")
    if fs_type not in FS_TYPES:
        raise MkfsParameterError(f"unknown file system type '{fs_type}' (ext2, ext3, ext4)")
    path = os.fspath(image)

    # ---- the target: file (created/resized) or block device ----------------------------
    st = None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    is_dev = st is not None and _stat.S_ISBLK(st.st_mode)
    if st is not None and not is_dev and not _stat.S_ISREG(st.st_mode):
        raise MkfsParameterError("not a regular file or block device")
    dev_bytes = 0
    if is_dev:
        try:  # O_EXCL on a block device fails while it is mounted (as mke2fs's check)
            fd = os.open(path, os.O_RDONLY | os.O_EXCL)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise MkfsParameterError("device is in use (mounted?); not making a file "
                                         "system on it") from None
            raise
        try:
            dev_bytes = struct.unpack("Q", fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8))[0]
        finally:
            os.close(fd)
    elif st is not None:
        dev_bytes = st.st_size
        loop = _loop_device_of(path)
        if loop:
            raise MkfsParameterError(f"in use by {loop}; not making a file system on it")

    # ---- block size and size in blocks (mke2fs PRS) ------------------------------------
    if block_size is not None:
        if block_size not in (1024, 2048, 4096, 8192, 16384, 32768, 65536):
            raise MkfsParameterError(f"invalid block size {block_size}")
        if block_size > os.sysconf("SC_PAGESIZE"):
            raise MkfsParameterError(f"{block_size}-byte blocks too big for this system")
    log_cli = (block_size.bit_length() - 11) if block_size else 0
    unit = 1024 << log_cli
    if size is None or size == "":
        if not dev_bytes:
            raise MkfsParameterError("no size given and the image has no size")
        fs_blocks = dev_bytes // unit
        page = os.sysconf("SC_PAGESIZE")
        if page > unit:
            fs_blocks &= ~(page // unit - 1)
    else:
        fs_blocks = parse_size(size, log_cli)
        if not fs_blocks:
            raise MkfsParameterError(f"invalid size '{size}'")
        if is_dev and fs_blocks * unit > dev_bytes:
            raise MkfsParameterError("file system larger than the device")

    meg = (1024 * 1024) // unit
    if fs_blocks < 3 * meg:
        size_type = "floppy"
    elif fs_blocks < 512 * meg:
        size_type = "small"
    elif fs_blocks < 4 * 1024 * 1024 * meg:
        size_type = "default"
    elif fs_blocks < 16 * 1024 * 1024 * meg:
        size_type = "big"
    else:
        size_type = "huge"
    types = [fs_type] + ([size_type] if size_type in PROFILE_FS_TYPES else [])

    def profile(opt: str) -> Any:
        v = PROFILE_DEFAULTS.get(opt)
        for t in types:
            v = PROFILE_FS_TYPES.get(t, {}).get(opt, v)
        return v

    feats: set[str] = set()
    edit_features(feats, BASE_FEATURES)
    for t in types:
        spec = PROFILE_FS_TYPES.get(t, {}).get("features")
        if spec:
            edit_features(feats, spec)
    if isinstance(features, str):
        features = [features]
    if features:
        edit_features(feats, ",".join(features))

    if block_size is None:
        bs = int(profile("blocksize"))
        fs_blocks //= bs // 1024
    else:
        bs = block_size
    log_bs = bs.bit_length() - 11

    if fs_blocks > MAX_32 and "64bit" in feats:
        feats.discard("resize_inode")
    if fs_blocks > MAX_32 and "64bit" not in feats:
        raise MkfsParameterError(f"size of the file system ({fs_blocks} blocks) is too big to be "
                                 f"expressed in 32 bits using a block size of {bs}; enable 64bit")
    if fs_blocks > (1 << (log_bs + 10 + 3 + 32)) - 1:
        raise MkfsParameterError("file system too big for this block size")
    if journal_size_mib is not None:
        if journal_size_mib <= 0:
            raise MkfsParameterError("journal size must be a positive number of MiB")
        feats.add("has_journal")

    unsupported = sorted(feats - FEATURES_SUPPORTED)
    if unsupported:
        raise UnsupportedFeatureError(
            f"mkfs: feature(s) {', '.join(unsupported)} not supported by ext4kit mkfs")
    reserved_ratio = float(profile("reserved_ratio") if reserved_percent is None else reserved_percent)
    if not 0 <= reserved_ratio <= 50:
        raise MkfsParameterError(f"invalid reserved blocks percent {reserved_percent}")
    if "64bit" in feats and "extent" not in feats:
        raise MkfsParameterError("extents must be enabled for a 64-bit file system (-O extent)")
    if bytes_per_inode is not None:
        if not 1024 <= bytes_per_inode <= 65536 * 1024:
            raise MkfsParameterError(f"invalid inode ratio {bytes_per_inode} (min 1024/max 67108864)")
        inode_ratio = bytes_per_inode
    else:
        inode_ratio = int(profile("inode_ratio"))
        if inode_ratio < bs:
            inode_ratio = bs
    if "metadata_csum" in feats and "uninit_bg" in feats:
        feats.discard("uninit_bg")
    if "metadata_csum_seed" in feats and "metadata_csum" not in feats:
        raise MkfsParameterError("the metadata_csum_seed feature requires the metadata_csum feature")
    if "resize_inode" in feats and "sparse_super" not in feats:
        raise MkfsParameterError("reserved online resize blocks not supported on a non-sparse "
                                 "file system (add -O ^resize_inode)")
    isz = inode_size if inode_size is not None else int(profile("inode_size"))
    if isz < 128 or isz > bs or isz & (isz - 1):
        raise MkfsParameterError(f"invalid inode size {isz} (min 128/max {bs})")
    if "inline_data" in feats and isz == 128:
        raise MkfsParameterError("128 byte inodes are too small for inline data; specify larger size")
    log_flex = 0
    if "flex_bg" in feats:
        log_flex = int(profile("flex_bg_size")).bit_length() - 1

    if inodes is not None:
        if inodes <= 0 or inodes > MAX_32:
            raise MkfsParameterError(f"bad number of inodes {inodes}")
        num_inodes = inodes
    else:
        num_inodes = fs_blocks * bs // inode_ratio
        if num_inodes > MAX_32:
            if "64bit" not in feats:
                raise MkfsParameterError(f"too many inodes ({num_inodes}), raise inode ratio?")
            num_inodes = MAX_32
    if num_inodes * isz >= fs_blocks * bs:
        raise MkfsParameterError(f"inode_size ({isz}) * inodes_count ({num_inodes}) too big for a "
                                 f"file system with {fs_blocks} blocks; raise -i or lower -N")
    r_blocks = int(reserved_ratio * fs_blocks / 100.0)
    backup_bgs = [1, 0xFFFFFFFF] if "sparse_super2" in feats else [0, 0]

    geo = _initialize(log_bs=log_bs, blocks=fs_blocks, r_blocks=r_blocks, inodes=num_inodes,
                      inode_size=isz, feats=feats, log_flex=log_flex,
                      reserved_ratio_src=(r_blocks, fs_blocks), backup_bgs=backup_bgs)

    if geo.inodes_count < LPF_INO:
        raise MkfsParameterError(f"only {geo.inodes_count} inodes: no inode left for "
                                 "lost+found (the file system is too small; raise -N)")

    # ---- journal size (figure_journal_size) -------------------------------------------
    journal_blocks = 0
    if geo.has("has_journal"):
        journal_blocks = _default_journal_size(geo.blocks_count)
        if journal_size_mib is not None:
            journal_blocks = journal_size_mib * 1024 // (bs // 1024)
            if not JBD2_MIN_JOURNAL_BLOCKS <= journal_blocks <= 10240000:
                raise MkfsParameterError(f"the requested journal size is {journal_blocks} blocks; it "
                                         "must be between 1024 and 10240000 blocks")
        if journal_blocks < 0:
            journal_blocks = 0  # file system too small for a journal: none (as mke2fs)

    # ---- identity ---------------------------------------------------------------------
    fs_uuid = _parse_uuid(uuid) if uuid is not None else _uuid.uuid4().bytes
    seed = _parse_uuid(hash_seed) if hash_seed is not None else _uuid.uuid4().bytes
    if label is not None:
        lab = os.fsencode(label)
        if len(lab) > 16:
            lab = lab[:16]
    else:
        lab = b""
    owner = _parse_owner(root_owner)
    stamp = int(time.time()) if now is None else int(now)
    # mke2fs discards an existing target first; on a file that reads back zeros, so the
    # inode tables count as zeroed (ITABLE_ZEROED). A new, empty file is not discarded.
    itable_zeroed = (not is_dev) and dev_bytes > 0

    b = _Builder(geo, now=stamp, fs_uuid=fs_uuid, hash_seed=seed, label=lab, root_owner=owner,
                 itable_zeroed=itable_zeroed, journal_blocks=journal_blocks)
    b.init_groups()
    if journal_blocks and journal_size_mib is not None and journal_blocks > b.free_blocks_total // 2:
        raise MkfsParameterError("journal size too big for the file system")
    b.allocate_tables()
    b.overhead = b.used.count(geo.first_data_block, geo.blocks_count)
    b.write_inode_tables()
    b.create_dirs()
    b.reserve_inodes()
    if geo.has("resize_inode"):
        b.create_resize_inode()
    if journal_blocks:
        b.overhead += journal_blocks
        b.create_journal()
    elif geo.has("has_journal"):
        geo.features.discard("has_journal")
    b.overhead += geo.first_data_block
    b._finish_inodes()

    # ---- write ------------------------------------------------------------------------
    total_bytes = fs_blocks * bs if size is not None else geo.blocks_count * bs
    _write_image(path, b, is_dev=is_dev, file_bytes=max(total_bytes, geo.blocks_count * bs))
    if source_dir is not None:
        _populate(path, source_dir)
    return MkfsResult(
        path=path, geometry=geo, uuid=_uuid.UUID(bytes=fs_uuid),
        free_blocks=b.free_blocks_total, free_inodes=geo.inodes_count - len(b.used_inodes),
        overhead_clusters=b.overhead, journal_blocks=journal_blocks,
        seconds=time.monotonic() - t0,
    )


def _populate(path: str, source_dir: str | os.PathLike) -> None:
    """mkfs -d: copy the tree's contents into the new root (the root takes the source
    directory's mode, owner and times, as mke2fs -d does)."""
    from .fs.writer import WritableFileSystem
    from .populate import Populator

    fs = WritableFileSystem.open_writable(path)
    try:
        Populator(fs).put(os.path.join(os.fsencode(source_dir), b"."), "/")
        st = os.stat(source_dir)
        with fs._op() as h:
            root = fs.get_inode(2)
            root.set_mode(_stat.S_IFDIR | (st.st_mode & 0o7777))
            root.set_uid(st.st_uid)
            root.set_gid(st.st_gid)
            root.set_time_ns("atime", st.st_atime_ns)
            root.set_time_ns("mtime", st.st_mtime_ns)
            fs.write_inode(h, root)
    finally:
        fs.close()


def _loop_device_of(path: str) -> str | None:
    """The loop device backed by this file, if any (so a mounted image is not destroyed)."""
    real = os.path.realpath(path)
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return None
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing == real:
            return f"/dev/{name}"
    return None


def _parse_uuid(v: str | _uuid.UUID) -> bytes:
    if isinstance(v, _uuid.UUID):
        return v.bytes
    s = str(v).strip().lower()
    if s in ("null", "clear"):
        return bytes(16)
    if s == "random":
        return _uuid.uuid4().bytes
    if s == "time":
        return _uuid.uuid1().bytes
    try:
        return _uuid.UUID(s).bytes
    except ValueError:
        raise MkfsParameterError(f"could not parse UUID: {v}") from None


def _parse_owner(v: tuple[int, int] | str | None) -> tuple[int, int]:
    if v is None:
        return 0, 0
    if isinstance(v, str):
        parts = v.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            uid, gid = int(parts[0], 0), int(parts[1], 0)
        except ValueError:
            raise MkfsParameterError(f"invalid root_owner '{v}' (UID:GID)") from None
    else:
        uid, gid = v
    if not (0 <= uid <= MAX_32 and 0 <= gid <= MAX_32):
        raise MkfsParameterError(f"invalid root_owner {uid}:{gid}")
    return uid, gid


# =======================================================================================
# Writing: coalesced pwritev of the metadata only
# =======================================================================================
_IOV_MAX = 1024


def _write_image(path: str, b: _Builder, *, is_dev: bool, file_bytes: int) -> None:
    geo = b.geo
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_EXCL if is_dev else os.O_CREAT
    fd = os.open(path, flags, 0o666)
    try:
        if is_dev:
            _zero_device_areas(fd, b)
        else:
            os.ftruncate(fd, 0)
            os.ftruncate(fd, file_bytes)
        pieces = b.flush()
        # s_kbytes_written: mke2fs starts it at 1 and adds what its io channel wrote before
        # the superblocks; ours is everything else we write (not byte-identical to mke2fs).
        if _kbytes_feature(geo):
            b.kbytes_written = 1 + (sum(len(p) for _, p in pieces) >> 10)
        pieces += b.superblocks()
        _pwrite_all(fd, pieces)
        if is_dev:
            os.fsync(fd)
    finally:
        os.close(fd)


def _kbytes_feature(geo: Geometry) -> bool:
    return any(geo.has(n) for n in ("flex_bg", "huge_file", "uninit_bg", "dir_nlink",
                                     "metadata_csum", "extra_isize"))


def _pwrite_all(fd: int, pieces: list[tuple[int, bytes]]) -> None:
    pieces.sort(key=lambda p: p[0])
    i = 0
    n = len(pieces)
    while i < n:
        off, data = pieces[i]
        iov = [data]
        end = off + len(data)
        j = i + 1
        while j < n and pieces[j][0] == end and len(iov) < _IOV_MAX:
            iov.append(pieces[j][1])
            end += len(pieces[j][1])
            j += 1
        _pwritev_full(fd, iov, off)
        i = j


def _pwritev_full(fd: int, iov: list[bytes], off: int) -> None:
    total = sum(len(x) for x in iov)
    done = os.pwritev(fd, iov, off)
    if done == total:
        return
    buf = memoryview(b"".join(iov))
    while done < total:
        k = os.pwrite(fd, buf[done:], off + done)
        if k <= 0:
            raise OSError(errno.EIO, "short write")
        done += k


def _zero_device_areas(fd: int, b: _Builder) -> None:
    """On a block device nothing reads back as zero: zero what mke2fs zeroes (old
    superblock sectors, the used part of the inode tables, the journal, the device end)."""
    geo = b.geo
    bs = geo.block_size
    ranges = [(0, 4096)]
    for blk, n in b.zero_ranges:
        ranges.append((blk * bs, n * bs))
    for blk, n in b.journal_runs:
        ranges.append((blk * bs, n * bs))
    rsv = max(65536 // bs, 1)
    blocks = geo.blocks_count
    start = blocks & ~(rsv - 1)
    if start > rsv:
        start -= rsv
    if start > 0:
        ranges.append((start * bs, (blocks - start) * bs))
    for off, length in ranges:
        _zero_range(fd, off, length)


def _zero_range(fd: int, off: int, length: int) -> None:
    try:
        fcntl.ioctl(fd, _BLKZEROOUT, struct.pack("QQ", off, length))
        return
    except OSError:
        pass
    chunk = bytes(min(length, 1 << 20))
    done = 0
    while done < length:
        k = min(len(chunk), length - done)
        os.pwrite(fd, chunk[:k], off + done)
        done += k
