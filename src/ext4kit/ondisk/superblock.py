"""The ext4 superblock (1024 bytes at byte offset 1024) and its feature flags.

Field names follow Documentation/filesystems/ext4/super.rst. The checksum (metadata_csum)
is CRC32C over the first 1020 bytes, seeded with ~0.
"""

from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass
from typing import Any

from ..errors import ChecksumError, NotExtError
from .csum import crc32c_raw
from .fields import Layout

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
EXT4_MAGIC = 0xEF53

LAYOUT = Layout(
    [
        ("s_inodes_count", "I"),
        ("s_blocks_count_lo", "I"),
        ("s_r_blocks_count_lo", "I"),
        ("s_free_blocks_count_lo", "I"),
        ("s_free_inodes_count", "I"),
        ("s_first_data_block", "I"),
        ("s_log_block_size", "I"),
        ("s_log_cluster_size", "I"),
        ("s_blocks_per_group", "I"),
        ("s_clusters_per_group", "I"),
        ("s_inodes_per_group", "I"),
        ("s_mtime", "I"),
        ("s_wtime", "I"),
        ("s_mnt_count", "H"),
        ("s_max_mnt_count", "h"),
        ("s_magic", "H"),
        ("s_state", "H"),
        ("s_errors", "H"),
        ("s_minor_rev_level", "H"),
        ("s_lastcheck", "I"),
        ("s_checkinterval", "I"),
        ("s_creator_os", "I"),
        ("s_rev_level", "I"),
        ("s_def_resuid", "H"),
        ("s_def_resgid", "H"),
        ("s_first_ino", "I"),
        ("s_inode_size", "H"),
        ("s_block_group_nr", "H"),
        ("s_feature_compat", "I"),
        ("s_feature_incompat", "I"),
        ("s_feature_ro_compat", "I"),
        ("s_uuid", "16s"),
        ("s_volume_name", "16s"),
        ("s_last_mounted", "64s"),
        ("s_algorithm_usage_bitmap", "I"),
        ("s_prealloc_blocks", "B"),
        ("s_prealloc_dir_blocks", "B"),
        ("s_reserved_gdt_blocks", "H"),
        ("s_journal_uuid", "16s"),
        ("s_journal_inum", "I"),
        ("s_journal_dev", "I"),
        ("s_last_orphan", "I"),
        ("s_hash_seed", "4*I"),
        ("s_def_hash_version", "B"),
        ("s_jnl_backup_type", "B"),
        ("s_desc_size", "H"),
        ("s_default_mount_opts", "I"),
        ("s_first_meta_bg", "I"),
        ("s_mkfs_time", "I"),
        ("s_jnl_blocks", "17*I"),
        ("s_blocks_count_hi", "I"),
        ("s_r_blocks_count_hi", "I"),
        ("s_free_blocks_count_hi", "I"),
        ("s_min_extra_isize", "H"),
        ("s_want_extra_isize", "H"),
        ("s_flags", "I"),
        ("s_raid_stride", "H"),
        ("s_mmp_interval", "H"),
        ("s_mmp_block", "Q"),
        ("s_raid_stripe_width", "I"),
        ("s_log_groups_per_flex", "B"),
        ("s_checksum_type", "B"),
        ("s_encryption_level", "B"),
        ("s_reserved_pad", "B"),
        ("s_kbytes_written", "Q"),
        ("s_snapshot_inum", "I"),
        ("s_snapshot_id", "I"),
        ("s_snapshot_r_blocks_count", "Q"),
        ("s_snapshot_list", "I"),
        ("s_error_count", "I"),
        ("s_first_error_time", "I"),
        ("s_first_error_ino", "I"),
        ("s_first_error_block", "Q"),
        ("s_first_error_func", "32s"),
        ("s_first_error_line", "I"),
        ("s_last_error_time", "I"),
        ("s_last_error_ino", "I"),
        ("s_last_error_line", "I"),
        ("s_last_error_block", "Q"),
        ("s_last_error_func", "32s"),
        ("s_mount_opts", "64s"),
        ("s_usr_quota_inum", "I"),
        ("s_grp_quota_inum", "I"),
        ("s_overhead_clusters", "I"),
        ("s_backup_bgs", "2*I"),
        ("s_encrypt_algos", "4s"),
        ("s_encrypt_pw_salt", "16s"),
        ("s_lpf_ino", "I"),
        ("s_prj_quota_inum", "I"),
        ("s_checksum_seed", "I"),
        ("s_wtime_hi", "B"),
        ("s_mtime_hi", "B"),
        ("s_mkfs_time_hi", "B"),
        ("s_lastcheck_hi", "B"),
        ("s_first_error_time_hi", "B"),
        ("s_last_error_time_hi", "B"),
        ("s_first_error_errcode", "B"),
        ("s_last_error_errcode", "B"),
        ("s_encoding", "H"),
        ("s_encoding_flags", "H"),
        ("s_orphan_file_inum", "I"),
        ("s_reserved", "376s"),
        ("s_checksum", "I"),
    ],
    size=SUPERBLOCK_SIZE,
)
assert LAYOUT.offsets["s_checksum"] == 0x3FC, hex(LAYOUT.offsets["s_checksum"])
assert LAYOUT.offsets["s_orphan_file_inum"] == 0x280

# --- feature flags -------------------------------------------------------------------
COMPAT = {
    0x1: "dir_prealloc",
    0x2: "imagic_inodes",
    0x4: "has_journal",
    0x8: "ext_attr",
    0x10: "resize_inode",
    0x20: "dir_index",
    0x40: "lazy_bg",
    0x80: "exclude_inode",
    0x100: "snapshot_bitmap",
    0x200: "sparse_super2",
    0x400: "fast_commit",
    0x800: "stable_inodes",
    0x1000: "orphan_file",
}
INCOMPAT = {
    0x1: "compression",
    0x2: "filetype",
    0x4: "needs_recovery",
    0x8: "journal_dev",
    0x10: "meta_bg",
    0x40: "extent",
    0x80: "64bit",
    0x100: "mmp",
    0x200: "flex_bg",
    0x400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}
RO_COMPAT = {
    0x1: "sparse_super",
    0x2: "large_file",
    0x4: "btree_dir",
    0x8: "huge_file",
    0x10: "uninit_bg",
    0x20: "dir_nlink",
    0x40: "extra_isize",
    0x80: "has_snapshot",
    0x100: "quota",
    0x200: "bigalloc",
    0x400: "metadata_csum",
    0x800: "replica",
    0x1000: "read-only",
    0x2000: "project",
    0x4000: "shared_blocks",
    0x8000: "verity",
    0x10000: "orphan_present",
}
FEATURE_BITS: dict[str, tuple[str, int]] = {}
for _kind, _tbl in (("compat", COMPAT), ("incompat", INCOMPAT), ("ro_compat", RO_COMPAT)):
    for _bit, _name in _tbl.items():
        FEATURE_BITS[_name] = (_kind, _bit)

# Incompat features the read path understands. Anything else: refuse with its name.
READ_INCOMPAT_SUPPORTED = {
    "filetype", "needs_recovery", "meta_bg", "extent", "64bit", "mmp", "flex_bg",
    "ea_inode", "metadata_csum_seed", "large_dir", "inline_data",
}
# Read-only access is still allowed with these (names stay readable or are opaque).
READ_INCOMPAT_READONLY_OK = {"encrypt", "casefold"}

STATE_VALID = 0x1
STATE_ERROR = 0x2
STATE_ORPHANS = 0x4

FLAG_SIGNED_HASH = 0x1
FLAG_UNSIGNED_HASH = 0x2

CREATOR_OS = {0: "Linux", 1: "Hurd", 2: "Masix", 3: "FreeBSD", 4: "Lites"}
ERRORS_BEHAVIOUR = {1: "Continue", 2: "Remount read-only", 3: "Panic"}


def _feature_names(mask: int, table: dict[int, str], prefix: str) -> list[str]:
    names = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(table.get(bit, f"FEATURE_{prefix}{bit.bit_length() - 1}"))
        bit <<= 1
    return names


@dataclass
class Superblock:
    """Decoded superblock. ``raw`` keeps the original bytes; fields live in ``f``."""

    f: dict[str, Any]
    raw: bytes

    # --- decoding -------------------------------------------------------------------
    @classmethod
    def parse(cls, buf: bytes, verify: bool = True) -> Superblock:
        if len(buf) < SUPERBLOCK_SIZE:
            raise NotExtError("image too small to hold an ext2/3/4 superblock")
        f = LAYOUT.unpack(buf)
        if f["s_magic"] != EXT4_MAGIC:
            raise NotExtError("bad magic number in superblock (not an ext2/ext3/ext4 file system)")
        sb = cls(f, bytes(buf[:SUPERBLOCK_SIZE]))
        sb.validate_geometry()
        if verify and sb.has_ro("metadata_csum") and not sb.checksum_ok():
            raise ChecksumError("superblock checksum does not match superblock")
        return sb

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["f"][name]
        except KeyError:
            raise AttributeError(name) from None

    def checksum_ok(self) -> bool:
        return self.compute_checksum() == self.f["s_checksum"]

    def compute_checksum(self) -> int:
        return crc32c_raw(0xFFFFFFFF, self.raw[:0x3FC])

    def pack(self) -> bytes:
        buf = bytearray(SUPERBLOCK_SIZE)
        LAYOUT.pack_into(buf, 0, self.f)
        if self.has_ro("metadata_csum"):
            self.f["s_checksum"] = crc32c_raw(0xFFFFFFFF, bytes(buf[:0x3FC]))
            LAYOUT.pack_into(buf, 0, self.f)
        self.raw = bytes(buf)
        return self.raw

    def validate_geometry(self) -> None:
        f = self.f
        if f["s_log_block_size"] > 6:
            raise NotExtError(f"corrupt superblock: block size 2^{10 + f['s_log_block_size']} too large")
        if f["s_inodes_per_group"] == 0 or f["s_blocks_per_group"] == 0:
            raise NotExtError("corrupt superblock: zero blocks or inodes per group")
        if f["s_rev_level"] >= 1:
            isz = f["s_inode_size"]
            if isz < 128 or isz > self.block_size or isz & (isz - 1):
                raise NotExtError(f"corrupt superblock: invalid inode size {isz}")
        if self.blocks_count <= f["s_first_data_block"]:
            raise NotExtError("corrupt superblock: block count not above first data block")
        if f["s_blocks_per_group"] > 8 * self.block_size and not self.has_ro("bigalloc"):
            raise NotExtError("corrupt superblock: blocks per group exceeds bitmap size")
        if f["s_inodes_per_group"] > 8 * self.block_size:
            raise NotExtError("corrupt superblock: inodes per group exceeds bitmap size")
        if self.has_incompat("64bit"):
            ds = f["s_desc_size"]
            if ds < 32 or ds > 1024 or ds & (ds - 1):
                raise NotExtError(f"corrupt superblock: invalid group descriptor size {ds}")
        ngroups = self.group_count
        if ngroups * f["s_inodes_per_group"] < f["s_inodes_count"] - 0 and f["s_inodes_count"] > ngroups * f["s_inodes_per_group"]:
            raise NotExtError("corrupt superblock: inode count exceeds groups * inodes per group")

    # --- derived geometry ----------------------------------------------------------------
    @property
    def block_size(self) -> int:
        return 1024 << self.f["s_log_block_size"]

    @property
    def cluster_size(self) -> int:
        if self.has_ro("bigalloc"):
            return 1024 << self.f["s_log_cluster_size"]
        return self.block_size

    @property
    def blocks_count(self) -> int:
        hi = self.f["s_blocks_count_hi"] if self.has_incompat("64bit") else 0
        return self.f["s_blocks_count_lo"] | (hi << 32)

    @property
    def r_blocks_count(self) -> int:
        hi = self.f["s_r_blocks_count_hi"] if self.has_incompat("64bit") else 0
        return self.f["s_r_blocks_count_lo"] | (hi << 32)

    @property
    def free_blocks_count(self) -> int:
        hi = self.f["s_free_blocks_count_hi"] if self.has_incompat("64bit") else 0
        return self.f["s_free_blocks_count_lo"] | (hi << 32)

    @free_blocks_count.setter
    def free_blocks_count(self, n: int) -> None:
        self.f["s_free_blocks_count_lo"] = n & 0xFFFFFFFF
        if self.has_incompat("64bit"):
            self.f["s_free_blocks_count_hi"] = n >> 32

    @property
    def group_count(self) -> int:
        f = self.f
        return (self.blocks_count - f["s_first_data_block"] + f["s_blocks_per_group"] - 1) // f[
            "s_blocks_per_group"
        ]

    @property
    def inode_size(self) -> int:
        return self.f["s_inode_size"] if self.f["s_rev_level"] >= 1 else 128

    @property
    def first_ino(self) -> int:
        return self.f["s_first_ino"] if self.f["s_rev_level"] >= 1 else 11

    @property
    def desc_size(self) -> int:
        if self.has_incompat("64bit"):
            return self.f["s_desc_size"]
        return 32

    @property
    def uuid(self) -> _uuid.UUID:
        return _uuid.UUID(bytes=self.f["s_uuid"])

    @property
    def volume_name(self) -> str:
        return self.f["s_volume_name"].split(b"\0", 1)[0].decode("utf-8", "replace")

    @property
    def last_mounted(self) -> str:
        return self.f["s_last_mounted"].split(b"\0", 1)[0].decode("utf-8", "replace")

    @property
    def csum_seed(self) -> int:
        """Seed for every metadata_csum checksum (fs UUID, or the stored seed)."""
        if self.has_incompat("metadata_csum_seed"):
            return self.f["s_checksum_seed"]
        return crc32c_raw(0xFFFFFFFF, self.f["s_uuid"])

    # --- features ---------------------------------------------------------------------
    def has_compat(self, name: str) -> bool:
        return bool(self.f["s_feature_compat"] & FEATURE_BITS[name][1])

    def has_incompat(self, name: str) -> bool:
        return bool(self.f["s_feature_incompat"] & FEATURE_BITS[name][1])

    def has_ro(self, name: str) -> bool:
        return bool(self.f["s_feature_ro_compat"] & FEATURE_BITS[name][1])

    def has_feature(self, name: str) -> bool:
        kind, bit = FEATURE_BITS[name]
        return bool(self.f["s_feature_" + kind] & bit)

    @property
    def metadata_csum(self) -> bool:
        return self.has_ro("metadata_csum")

    @property
    def gdt_csum(self) -> bool:
        return self.has_ro("uninit_bg") and not self.has_ro("metadata_csum")

    def feature_list(self) -> list[str]:
        """Features in dumpe2fs order: compat, incompat, ro_compat, each by bit."""
        f = self.f
        return (
            _feature_names(f["s_feature_compat"], COMPAT, "COMPAT_")
            + _feature_names(f["s_feature_incompat"], INCOMPAT, "INCOMPAT_")
            + _feature_names(f["s_feature_ro_compat"], RO_COMPAT, "RO_COMPAT_")
        )

    def unknown_incompat(self) -> list[str]:
        return [n for n in _feature_names(self.f["s_feature_incompat"], INCOMPAT, "INCOMPAT_")
                if n not in READ_INCOMPAT_SUPPORTED]

    # --- times ------------------------------------------------------------------------
    def time(self, field: str) -> int:
        """A superblock timestamp with its *_hi byte (year 2038+) applied."""
        lo = self.f["s_" + field]
        hi_name = "s_" + field + "_hi"
        hi = self.f.get(hi_name, 0)
        return lo | (hi << 32)

    def is_sparse_group(self, group: int) -> bool:
        """True if ``group`` holds a superblock backup (sparse_super / sparse_super2 rules)."""
        return group_has_super(group, sparse_super=self.has_ro("sparse_super"),
                               sparse_super2=self.has_compat("sparse_super2"),
                               backup_bgs=self.f["s_backup_bgs"])


def group_has_super(group: int, *, sparse_super: bool, sparse_super2: bool,
                    backup_bgs: list[int] | tuple[int, ...] = ()) -> bool:
    """True if block group ``group`` holds the superblock or a backup of it.

    sparse_super2: only the groups named in s_backup_bgs; sparse_super: groups 0, 1 and
    powers of 3, 5 and 7; neither: every group.
    """
    if group == 0:
        return True
    if sparse_super2:
        return group in backup_bgs
    if group <= 1 or not sparse_super:
        return True
    if not group & 1:
        return False
    for base in (3, 5, 7):
        g = group
        while g % base == 0:
            g //= base
        if g == 1:
            return True
    return False
