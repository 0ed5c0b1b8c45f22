"""The ext4 inode (128 bytes + i_extra_isize + in-inode xattr space) and its checksum.

Checksum (metadata_csum): crc32c(inode_seed, inode bytes with i_checksum_lo/hi zeroed),
where inode_seed = crc32c(crc32c(fs_seed, le32 ino), le32 i_generation).
"""

from __future__ import annotations

import stat as _stat
import struct
from dataclasses import dataclass
from typing import Any

from .csum import crc32c_raw
from .fields import Layout

GOOD_OLD_INODE_SIZE = 128

LAYOUT = Layout(
    [
        ("i_mode", "H"),
        ("i_uid", "H"),
        ("i_size_lo", "I"),
        ("i_atime", "I"),
        ("i_ctime", "I"),
        ("i_mtime", "I"),
        ("i_dtime", "I"),
        ("i_gid", "H"),
        ("i_links_count", "H"),
        ("i_blocks_lo", "I"),
        ("i_flags", "I"),
        ("l_i_version", "I"),
        ("i_block", "60s"),
        ("i_generation", "I"),
        ("i_file_acl_lo", "I"),
        ("i_size_high", "I"),
        ("i_obso_faddr", "I"),
        ("l_i_blocks_high", "H"),
        ("l_i_file_acl_high", "H"),
        ("l_i_uid_high", "H"),
        ("l_i_gid_high", "H"),
        ("l_i_checksum_lo", "H"),
        ("l_i_reserved", "H"),
    ]
)
assert LAYOUT.size == 128
EXTRA = struct.Struct("<HHIIIIIII")  # extra_isize, checksum_hi, ctime/mtime/atime_extra, crtime, crtime_extra, version_hi, projid
EXTRA_FIELDS = (
    "i_extra_isize", "i_checksum_hi", "i_ctime_extra", "i_mtime_extra", "i_atime_extra",
    "i_crtime", "i_crtime_extra", "i_version_hi", "i_projid",
)
EXTRA_OFFSETS = dict(zip(EXTRA_FIELDS, (0, 2, 4, 8, 12, 16, 20, 24, 28)))
CHECKSUM_LO_OFFSET = 0x7C
CHECKSUM_HI_OFFSET = 0x82

# i_flags
SECRM_FL = 0x1
UNRM_FL = 0x2
COMPR_FL = 0x4
SYNC_FL = 0x8
IMMUTABLE_FL = 0x10
APPEND_FL = 0x20
NODUMP_FL = 0x40
NOATIME_FL = 0x80
ENCRYPT_FL = 0x800
INDEX_FL = 0x1000
IMAGIC_FL = 0x2000
JOURNAL_DATA_FL = 0x4000
NOTAIL_FL = 0x8000
DIRSYNC_FL = 0x10000
TOPDIR_FL = 0x20000
HUGE_FILE_FL = 0x40000
EXTENTS_FL = 0x80000
VERITY_FL = 0x100000
EA_INODE_FL = 0x200000
INLINE_DATA_FL = 0x10000000
PROJINHERIT_FL = 0x20000000
CASEFOLD_FL = 0x40000000

FLAG_NAMES = {
    SECRM_FL: "secrm", UNRM_FL: "unrm", COMPR_FL: "compr", SYNC_FL: "sync",
    IMMUTABLE_FL: "immutable", APPEND_FL: "append", NODUMP_FL: "nodump",
    NOATIME_FL: "noatime", ENCRYPT_FL: "encrypt", INDEX_FL: "index", IMAGIC_FL: "imagic",
    JOURNAL_DATA_FL: "journal_data", NOTAIL_FL: "notail", DIRSYNC_FL: "dirsync",
    TOPDIR_FL: "topdir", HUGE_FILE_FL: "huge_file", EXTENTS_FL: "extents",
    VERITY_FL: "verity", EA_INODE_FL: "ea_inode", INLINE_DATA_FL: "inline_data",
    PROJINHERIT_FL: "projinherit", CASEFOLD_FL: "casefold",
}

# directory entry file types (filetype feature)
FT_UNKNOWN, FT_REG_FILE, FT_DIR, FT_CHRDEV, FT_BLKDEV, FT_FIFO, FT_SOCK, FT_SYMLINK = range(8)
FT_FROM_MODE = {
    _stat.S_IFREG: FT_REG_FILE, _stat.S_IFDIR: FT_DIR, _stat.S_IFCHR: FT_CHRDEV,
    _stat.S_IFBLK: FT_BLKDEV, _stat.S_IFIFO: FT_FIFO, _stat.S_IFSOCK: FT_SOCK,
    _stat.S_IFLNK: FT_SYMLINK,
}

_LE32 = struct.Struct("<I")


def decode_time(seconds: int, extra: int | None) -> tuple[int, int]:
    """(seconds, nanoseconds) from a 32-bit signed time and its *_extra word (epoch + ns)."""
    sec = seconds - (1 << 32) if seconds & 0x80000000 else seconds
    if extra is None:
        return sec, 0
    sec += (extra & 3) << 32
    return sec, extra >> 2


def encode_time(sec: int, nsec: int) -> tuple[int, int]:
    """Inverse of decode_time: (le32 seconds, extra)."""
    epoch = ((sec - (-(1 << 31))) >> 32) & 3
    lo = sec & 0xFFFFFFFF
    return lo, (nsec << 2) | epoch


@dataclass
class Inode:
    """One decoded inode. ``raw`` holds all s_inode_size bytes of it."""

    ino: int
    f: dict[str, Any]
    raw: bytes

    @classmethod
    def parse(cls, ino: int, raw: bytes) -> Inode:
        f = LAYOUT.unpack(raw)
        extra_isize = 0
        if len(raw) > GOOD_OLD_INODE_SIZE:
            extra_isize = struct.unpack_from("<H", raw, 128)[0]
            if extra_isize & 3 or GOOD_OLD_INODE_SIZE + extra_isize > len(raw):
                extra_isize = 0  # corrupt: treat as none (fsck reports it)
        vals: dict[str, int | None] = {k: None for k in EXTRA_FIELDS}
        if extra_isize:
            tail = raw[128 : 128 + extra_isize] + bytes(EXTRA.size)
            unpacked = EXTRA.unpack_from(tail, 0)
            for name, v in zip(EXTRA_FIELDS, unpacked):
                if EXTRA_OFFSETS[name] + 2 <= extra_isize:
                    vals[name] = v
        vals["i_extra_isize"] = extra_isize
        f.update(vals)
        return cls(ino, f, raw)

    # --- size / type ---------------------------------------------------------------------
    @property
    def mode(self) -> int:
        return self.f["i_mode"]

    @property
    def file_type(self) -> int:
        return self.f["i_mode"] & 0o170000

    def is_dir(self) -> bool:
        return self.file_type == _stat.S_IFDIR

    def is_reg(self) -> bool:
        return self.file_type == _stat.S_IFREG

    def is_symlink(self) -> bool:
        return self.file_type == _stat.S_IFLNK

    @property
    def size(self) -> int:
        return self.f["i_size_lo"] | (self.f["i_size_high"] << 32)

    @property
    def flags(self) -> int:
        return self.f["i_flags"]

    @property
    def links_count(self) -> int:
        return self.f["i_links_count"]

    @property
    def uid(self) -> int:
        return self.f["i_uid"] | (self.f["l_i_uid_high"] << 16)

    @property
    def gid(self) -> int:
        return self.f["i_gid"] | (self.f["l_i_gid_high"] << 16)

    @property
    def generation(self) -> int:
        return self.f["i_generation"]

    @property
    def file_acl(self) -> int:
        return self.f["i_file_acl_lo"] | (self.f["l_i_file_acl_high"] << 32)

    @property
    def extra_isize(self) -> int:
        return self.f["i_extra_isize"]

    @property
    def i_block(self) -> bytes:
        return self.f["i_block"]

    def blocks_512(self, huge_file: bool, block_size: int) -> int:
        """i_blocks in 512-byte units (decoding huge_file)."""
        n = self.f["i_blocks_lo"]
        if huge_file:
            n |= self.f["l_i_blocks_high"] << 32
            if self.flags & HUGE_FILE_FL:
                n *= block_size // 512
        return n

    def has_flag(self, flag: int) -> bool:
        return bool(self.f["i_flags"] & flag)

    # --- time ----------------------------------------------------------------------------
    def time_ns(self, which: str) -> int:
        """'atime' | 'mtime' | 'ctime' | 'crtime' as integer nanoseconds since the epoch."""
        sec = self.f["i_" + which]
        if sec is None:
            return 0
        sec, ns = decode_time(sec, self.f.get("i_" + which + "_extra"))
        return sec * 1_000_000_000 + ns

    @property
    def dtime(self) -> int:
        return self.f["i_dtime"]

    # --- device numbers ------------------------------------------------------------------
    def rdev(self) -> tuple[int, int]:
        """(major, minor) of a device inode (old or new encoding in i_block)."""
        b0, b1 = struct.unpack_from("<II", self.f["i_block"], 0)
        if b0:
            return (b0 >> 8) & 0xFF, b0 & 0xFF
        return (b1 & 0xFFF00) >> 8, (b1 & 0xFF) | ((b1 >> 12) & 0xFFF00)

    # --- changing fields (writers call these, then FileSystem.write_inode) ----------------
    def set_mode(self, mode: int) -> None:
        self.f["i_mode"] = mode & 0xFFFF

    def set_size(self, size: int) -> None:
        self.f["i_size_lo"] = size & 0xFFFFFFFF
        self.f["i_size_high"] = size >> 32

    def set_uid(self, uid: int) -> None:
        self.f["i_uid"] = uid & 0xFFFF
        self.f["l_i_uid_high"] = (uid >> 16) & 0xFFFF

    def set_gid(self, gid: int) -> None:
        self.f["i_gid"] = gid & 0xFFFF
        self.f["l_i_gid_high"] = (gid >> 16) & 0xFFFF

    def set_links(self, n: int) -> None:
        self.f["i_links_count"] = n

    def set_file_acl(self, blk: int) -> None:
        self.f["i_file_acl_lo"] = blk & 0xFFFFFFFF
        self.f["l_i_file_acl_high"] = blk >> 32

    def set_flag(self, flag: int, on: bool = True) -> None:
        if on:
            self.f["i_flags"] |= flag
        else:
            self.f["i_flags"] &= ~flag

    def set_blocks_512(self, n: int, huge_file: bool, block_size: int) -> None:
        """Store i_blocks (512-byte units); past 2^48 sectors use HUGE_FILE_FL units."""
        if n < (1 << 32) or (huge_file and n < (1 << 48)):
            self.f["i_blocks_lo"] = n & 0xFFFFFFFF
            self.f["l_i_blocks_high"] = n >> 32 if huge_file else 0
            self.f["i_flags"] &= ~HUGE_FILE_FL
            return
        if not huge_file:
            raise ValueError("i_blocks overflow without huge_file")
        units = n // (block_size // 512)
        self.f["i_blocks_lo"] = units & 0xFFFFFFFF
        self.f["l_i_blocks_high"] = units >> 32
        self.f["i_flags"] |= HUGE_FILE_FL

    def set_time_ns(self, which: str, ns: int) -> None:
        """'atime' | 'mtime' | 'ctime' | 'crtime' from integer nanoseconds (kept to what
        the inode can hold: without an *_extra field, whole seconds only)."""
        if which == "crtime" and self.f.get("i_crtime") is None:
            return  # a small inode has no creation time
        sec, nsec = divmod(ns, 1_000_000_000)
        lo, extra = encode_time(sec, nsec)
        self.f["i_" + which] = lo
        if self.f.get("i_" + which + "_extra") is not None:
            self.f["i_" + which + "_extra"] = extra

    def set_rdev(self, major: int, minor: int) -> None:
        """Device number in i_block: old encoding when it fits, else the new one (as Linux)."""
        blk = bytearray(60)
        if major < 256 and minor < 256:
            struct.pack_into("<I", blk, 0, (major << 8) | minor)
        else:
            struct.pack_into("<I", blk, 4, (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12))
        self.f["i_block"] = bytes(blk)

    def repack(self) -> bytearray:
        """The inode's bytes with ``f`` applied over ``raw`` (the in-inode xattr area and
        anything past the known fields are kept); the checksum is left to the caller."""
        buf = bytearray(self.raw)
        f = dict(self.f)
        LAYOUT.pack_into(buf, 0, {k: f[k] for k in LAYOUT.names})
        extra = f.get("i_extra_isize") or 0
        if len(buf) > GOOD_OLD_INODE_SIZE and extra:
            for name in EXTRA_FIELDS:
                off = EXTRA_OFFSETS[name]
                width = 2 if name in ("i_extra_isize", "i_checksum_hi") else 4
                if off + width <= extra and f.get(name) is not None:
                    struct.pack_into("<H" if width == 2 else "<I", buf, 128 + off, f[name])
        return buf

    # --- checksum ------------------------------------------------------------------------
    def checksum_fits_hi(self) -> bool:
        return len(self.raw) > GOOD_OLD_INODE_SIZE and self.extra_isize >= 4

    def stored_checksum(self) -> int:
        c = self.f["l_i_checksum_lo"]
        if self.checksum_fits_hi():
            c |= (self.f["i_checksum_hi"] or 0) << 16
        return c

    def compute_checksum(self, fs_seed: int) -> int:
        seed = inode_csum_seed(fs_seed, self.ino, self.generation)
        buf = bytearray(self.raw)
        buf[CHECKSUM_LO_OFFSET : CHECKSUM_LO_OFFSET + 2] = b"\0\0"
        fits_hi = self.checksum_fits_hi()
        if fits_hi:
            buf[CHECKSUM_HI_OFFSET : CHECKSUM_HI_OFFSET + 2] = b"\0\0"
        c = crc32c_raw(seed, buf)
        return c if fits_hi else c & 0xFFFF

    def checksum_ok(self, fs_seed: int) -> bool:
        return self.compute_checksum(fs_seed) == self.stored_checksum()


def inode_csum_seed(fs_seed: int, ino: int, generation: int) -> int:
    c = crc32c_raw(fs_seed, _LE32.pack(ino))
    return crc32c_raw(c, _LE32.pack(generation))


# --- building (pack) -------------------------------------------------------------------
def pack_inode(fields: dict[str, Any], inode_size: int) -> bytearray:
    """``inode_size`` bytes for an inode: LAYOUT fields (missing ones are 0) and, when
    ``i_extra_isize`` is given, the extra fields it covers. The checksum is left zero
    (see ``set_inode_checksum``)."""
    f: dict[str, Any] = {name: 0 for name in LAYOUT.names}
    f["i_block"] = bytes(60)
    f.update({k: v for k, v in fields.items() if k in f})
    buf = bytearray(inode_size)
    LAYOUT.pack_into(buf, 0, f)
    extra = fields.get("i_extra_isize", 0) or 0
    if inode_size > GOOD_OLD_INODE_SIZE and extra:
        vals = [fields.get(name, 0) or 0 for name in EXTRA_FIELDS]
        vals[0] = extra
        tail = EXTRA.pack(*vals)[:extra]
        buf[GOOD_OLD_INODE_SIZE : GOOD_OLD_INODE_SIZE + len(tail)] = tail
    return buf


def set_inode_checksum(buf: bytearray, ino: int, fs_seed: int) -> int:
    """Store the metadata_csum checksum of the packed inode ``buf`` (lo, and hi when
    i_extra_isize covers it); returns the checksum."""
    generation = struct.unpack_from("<I", buf, 0x64)[0]
    extra = struct.unpack_from("<H", buf, 128)[0] if len(buf) > GOOD_OLD_INODE_SIZE else 0
    fits_hi = len(buf) > GOOD_OLD_INODE_SIZE and not extra & 3 and \
        GOOD_OLD_INODE_SIZE + extra <= len(buf) and extra >= 4
    struct.pack_into("<H", buf, CHECKSUM_LO_OFFSET, 0)
    if fits_hi:
        struct.pack_into("<H", buf, CHECKSUM_HI_OFFSET, 0)
    c = crc32c_raw(inode_csum_seed(fs_seed, ino, generation), buf)
    if not fits_hi:
        c &= 0xFFFF
    struct.pack_into("<H", buf, CHECKSUM_LO_OFFSET, c & 0xFFFF)
    if fits_hi:
        struct.pack_into("<H", buf, CHECKSUM_HI_OFFSET, c >> 16)
    return c
