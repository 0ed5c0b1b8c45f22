"""``ext4kit info``: the superblock and journal summary ``dumpe2fs -h`` prints, field for
field (same labels, same value formatting, same print conditions as e2fsprogs 1.47.0),
plus a machine-friendly dict for ``--json`` and a one-line-per-group summary.

Rules come from e2fsprogs lib/e2p/ls.c (list_super2), lib/e2p/ljs.c
(e2p_list_journal_super) and misc/dumpe2fs.c, checked against the installed dumpe2fs.
Differences on purpose: every label is padded with spaces to column 26 (dumpe2fs 1.47.0
pads "Inode size:" and "Journal device:" with a tab), no value ends in a space, and what
dumpe2fs reports on stderr (unreadable journal, MMP or bad-blocks inode) becomes a final
"Warning: ..." line. Like dumpe2fs 1.47.0 the text ignores the *_hi bytes of superblock
timestamps; the JSON form gives full 64-bit times.
"""

from __future__ import annotations

import grp
import json as _json
import pwd
import struct
import time
import uuid as _uuid
from typing import Any

from ..ondisk import jbd2
from ..ondisk.csum import crc32c_raw
from ..ondisk.groupdesc import group_desc_checksum
from ..ondisk.superblock import group_has_super

LABEL_WIDTH = 26  # value column of dumpe2fs output

# --- e2p name tables (lib/e2p/feature.c, as the installed dumpe2fs names them) ----------
_E2P_COMPAT = {
    0x1: "dir_prealloc", 0x2: "imagic_inodes", 0x4: "has_journal", 0x8: "ext_attr",
    0x10: "resize_inode", 0x20: "dir_index", 0x40: "lazy_bg", 0x100: "snapshot_bitmap",
    0x200: "sparse_super2", 0x400: "fast_commit", 0x800: "stable_inodes",
    0x1000: "orphan_file",
}
_E2P_INCOMPAT = {
    0x1: "compression", 0x2: "filetype", 0x4: "needs_recovery", 0x8: "journal_dev",
    0x10: "meta_bg", 0x40: "extent", 0x80: "64bit", 0x100: "mmp", 0x200: "flex_bg",
    0x400: "ea_inode", 0x1000: "dirdata", 0x2000: "metadata_csum_seed",
    0x4000: "large_dir", 0x8000: "inline_data", 0x10000: "encrypt", 0x20000: "casefold",
}
_E2P_RO_COMPAT = {
    0x1: "sparse_super", 0x2: "large_file", 0x8: "huge_file", 0x10: "uninit_bg",
    0x20: "dir_nlink", 0x40: "extra_isize", 0x100: "quota", 0x200: "bigalloc",
    0x400: "metadata_csum", 0x800: "replica", 0x1000: "read-only", 0x2000: "project",
    0x4000: "shared_blocks", 0x8000: "verity", 0x10000: "orphan_present",
}
_E2P_JOURNAL: tuple[dict[int, str], ...] = (
    {0x1: "journal_checksum"},
    {0x1: "journal_incompat_revoke", 0x2: "journal_64bit", 0x4: "journal_async_commit",
     0x8: "journal_checksum_v2", 0x10: "journal_checksum_v3"},
    {},
)
_FEATURE_LETTER = "CIR"

# Bits the code below tests directly.
_COMPAT_HAS_JOURNAL = 0x4
_COMPAT_DIR_INDEX = 0x20
_COMPAT_SPARSE_SUPER2 = 0x200
_COMPAT_FAST_COMMIT = 0x400
_COMPAT_ORPHAN_FILE = 0x1000
_INCOMPAT_JOURNAL_DEV = 0x8
_INCOMPAT_META_BG = 0x10
_INCOMPAT_64BIT = 0x80
_INCOMPAT_MMP = 0x100
_INCOMPAT_CSUM_SEED = 0x2000
_INCOMPAT_CASEFOLD = 0x20000
_RO_SPARSE_SUPER = 0x1
_RO_GDT_CSUM = 0x10
_RO_BIGALLOC = 0x200
_RO_METADATA_CSUM = 0x400

_SUPER_FLAGS = ((0x1, "signed_directory_hash"), (0x2, "unsigned_directory_hash"),
                (0x4, "test_filesystem"))
_MNTOPTS = {
    0x1: "debug", 0x2: "bsdgroups", 0x4: "user_xattr", 0x8: "acl", 0x10: "uid16",
    0x20: "journal_data", 0x40: "journal_data_ordered", 0x60: "journal_data_writeback",
    0x100: "nobarrier", 0x200: "block_validity", 0x400: "discard", 0x800: "nodelalloc",
}
_JMODE = 0x60
_ERRORS = {1: "Continue", 2: "Remount read-only", 3: "Panic"}
_OS = {0: "Linux", 1: "Hurd", 2: "Masix", 3: "FreeBSD", 4: "Lites"}
_HASH = {0: "legacy", 1: "half_md4", 2: "tea"}
_ENCODING = {1: "utf8-12.1"}
_ERRCODES = ["", "UNKNOWN", "EIO", "ENOMEM", "EFSBADCRC", "EFSCORRUPTED", "ENOSPC",
             "ENOKEY", "EROFS", "EFBIG", "EEXIST", "ERANGE", "EOVERFLOW", "EBUSY",
             "ENOTDIR", "ENOTEMPTY", "ESHUTDOWN", "EFAULT"]
_QUOTA_LABELS = (("User quota inode", "s_usr_quota_inum"),
                 ("Group quota inode", "s_grp_quota_inum"),
                 ("Project quota inode", "s_prj_quota_inum"))

_MMP_MAGIC = 0x004D4D50
_MMP = struct.Struct("<IIQ64s32sH")
_MMP_CHECKSUM_OFFSET = 1020
_BAD_INO = 1
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


# =======================================================================================
# Small formatting helpers mirroring lib/e2p
# =======================================================================================
def _bit_names(mask: int, table: dict[int, str], letter: str) -> list[str]:
    return [table.get(1 << b, f"FEATURE_{letter}{b}") for b in range(32) if mask & (1 << b)]


def fs_feature_names(f: dict[str, Any]) -> list[str]:
    """Feature names in dumpe2fs order and spelling (compat, incompat, ro_compat)."""
    return (_bit_names(f["s_feature_compat"], _E2P_COMPAT, "C")
            + _bit_names(f["s_feature_incompat"], _E2P_INCOMPAT, "I")
            + _bit_names(f["s_feature_ro_compat"], _E2P_RO_COMPAT, "R"))


def journal_feature_names(jsb: jbd2.JournalSuperblock) -> list[str]:
    out: list[str] = []
    masks = (jsb.s_feature_compat, jsb.s_feature_incompat, jsb.s_feature_ro_compat)
    for i, mask in enumerate(masks):
        out += _bit_names(mask, _E2P_JOURNAL[i], _FEATURE_LETTER[i])
    return out


def mount_option_names(mask: int) -> list[str]:
    out = []
    if mask & _JMODE:
        out.append(_MNTOPTS[mask & _JMODE])
    for b in range(32):
        m = 1 << b
        if m & _JMODE or not mask & m:
            continue
        out.append(_MNTOPTS.get(m, f"MNTOPT_{b}"))
    return out


def _cstr(raw: bytes) -> str:
    """A fixed-size on-disk string up to its first NUL (printf "%.*s")."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def _null_uuid(raw: bytes) -> bool:
    return not any(raw[:16])


def _uuid_str(raw: bytes) -> str:
    if _null_uuid(raw):
        return "<none>"
    return str(_uuid.UUID(bytes=bytes(raw[:16])))


def _uuid_or_none(raw: bytes) -> str | None:
    return None if _null_uuid(raw) else _uuid_str(raw)


def _ctime(t: int) -> str:
    try:
        return time.ctime(t)
    except (OverflowError, OSError, ValueError):
        return "(null)"


def _s32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v & 0x80000000 else v


def interval_string(secs: int) -> str:
    """Check-interval text: '<none>', or e.g. '6 months, 1 week, 2 days, 3:04:05'."""
    if secs == 0:
        return "<none>"
    parts = []
    for unit, name in ((86400 * 30, "month"), (86400 * 7, "week"), (86400, "day")):
        if secs >= unit:
            n, secs = divmod(secs, unit)
            parts.append(f"{n} {name}{'s' if n > 1 else ''}")
    if secs > 0:
        h, rest = divmod(secs, 3600)
        m, s = divmod(rest, 60)
        parts.append(f"{h}:{m:02d}:{s:02d}")
    return ", ".join(parts)


def lifetime_writes(kb: int) -> str:
    """s_kbytes_written rounded to a unit (the rounding add wraps at 64 bits, as in C)."""
    if kb < 1 << 13:
        return f"{kb} kB"
    for limit, shift, unit in ((23, 10, "MB"), (33, 20, "GB"), (43, 30, "TB"), (64, 40, "PB")):
        if kb < 1 << limit or unit == "PB":
            return f"{((kb + (1 << (shift - 1))) & _U64) >> shift} {unit}"
    raise AssertionError("unreachable")


def _user(uid: int) -> str:
    try:
        return f"{uid} (user {pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"{uid} (user unknown)"


def _group(gid: int) -> str:
    try:
        return f"{gid} (group {grp.getgrgid(gid).gr_name})"
    except KeyError:
        return f"{gid} (group unknown)"


def _shl(value: int, shift: int) -> int:
    """A 32-bit C shift as x86 runs it (the count taken mod 32), printed unsigned."""
    return (value << (shift & 31)) & _U32


def _hex_alt08(v: int) -> str:
    """C's "%#08x": zero prints without the 0x prefix."""
    return f"{v:#08x}" if v else "00000000"


# =======================================================================================
# Reading what the summary needs beyond the superblock
# =======================================================================================
class _Extra:
    """Journal superblock, MMP block and bad-block list, with the reasons for any gap."""

    def __init__(self) -> None:
        self.jsb: jbd2.JournalSuperblock | None = None
        self.journal_external = False
        self.mmp: dict[str, Any] | None = None
        self.bad_blocks: list[int] | None = None
        self.warnings: list[str] = []
        self.exited = False  # dumpe2fs would have exited after the journal lines


def _blocks_count(f: dict[str, Any]) -> int:
    hi = f["s_blocks_count_hi"] if f["s_feature_incompat"] & _INCOMPAT_64BIT else 0
    return f["s_blocks_count_lo"] | (hi << 32)


def _read_journal_sb(fs: Any, extra: _Extra) -> None:
    f = fs.sb.f
    if f["s_feature_incompat"] & _INCOMPAT_JOURNAL_DEV:
        # An external journal device: the journal superblock is the block after the
        # ext4 superblock, read 1024 bytes at (first_data_block + 1) * block_size.
        extra.journal_external = True
        try:
            raw = fs.dev.read((f["s_first_data_block"] + 1) * fs.block_size, 1024)
        except Exception as e:  # report it; a read-only command never crashes
            extra.warnings.append(f"while reading journal superblock: {e}")
            return
        raw = bytes(raw).ljust(1024, b"\0")
        hdr = jbd2.parse_header(raw)
        if not hdr.valid or hdr.h_blocktype != jbd2.BLOCKTYPE_SUPERBLOCK_V2:
            extra.warnings.append("Couldn't find journal superblock magic numbers")
            return
    elif f["s_feature_compat"] & _COMPAT_HAS_JOURNAL and f["s_journal_inum"]:
        try:
            inode = fs.get_inode(f["s_journal_inum"])
            _check_inode_csum(fs, inode)
            raw = bytes(fs.inode_read(inode, 0, 1024)).ljust(1024, b"\0")
        except Exception as e:
            extra.warnings.append(f"while reading journal inode: {e}")
            return
        if not jbd2.parse_header(raw).valid:
            extra.warnings.append("Journal superblock magic number invalid!")
            return
    else:
        return
    extra.jsb = jbd2.JournalSuperblock.parse(raw, check_magic=False)


def _check_inode_csum(fs: Any, inode: Any) -> None:
    """libext2fs refuses an inode whose metadata_csum checksum is wrong (unless it is all
    zeros, or the image was opened ignoring checksum errors): so do we, here."""
    f = fs.sb.f
    if not f["s_feature_ro_compat"] & _RO_METADATA_CSUM or _open_needs_csum_retry(f, fs.sb.raw):
        return
    if not inode.checksum_ok(fs.sb.csum_seed) and any(bytes(inode.raw[:128])):
        raise ValueError("Inode checksum does not match inode")


def _read_mmp(fs: Any, extra: _Extra) -> None:
    f = fs.sb.f
    blk = f["s_mmp_block"]
    if not (f["s_feature_incompat"] & _INCOMPAT_MMP) or not blk:
        return
    if blk <= f["s_first_data_block"] or blk >= _blocks_count(f):
        extra.warnings.append(f"reading MMP block {blk}: MMP: invalid MMP block number")
        return
    try:
        raw = bytes(fs.read_block(blk))
    except Exception as e:
        extra.warnings.append(f"reading MMP block {blk}: {e}")
        return
    if len(raw) < 1024:
        extra.warnings.append(f"reading MMP block {blk}: short read")
        return
    if f["s_feature_ro_compat"] & _RO_METADATA_CSUM and not _open_needs_csum_retry(f, fs.sb.raw):
        stored = struct.unpack_from("<I", raw, _MMP_CHECKSUM_OFFSET)[0]
        if crc32c_raw(fs.sb.csum_seed, raw[:_MMP_CHECKSUM_OFFSET]) != stored:
            extra.warnings.append(f"reading MMP block {blk}: MMP: block checksum does not match")
            return
    magic, seq, mtime, node, bdev, interval = _MMP.unpack_from(raw, 0)
    if magic != _MMP_MAGIC:
        extra.warnings.append(f"reading MMP block {blk}: MMP: invalid magic number")
        return
    extra.mmp = {"block": blk, "magic": magic, "check_interval": interval, "sequence": seq,
                 "time": mtime, "node_name": _cstr(node), "device_name": _cstr(bdev)}


def _read_bad_blocks(fs: Any, extra: _Extra) -> None:
    """The bad-blocks inode's list as libext2fs reads it: data blocks inside the file
    system, sorted, no repeats; an indirect block outside the file system fails the read
    (dumpe2fs then prints neither the list nor the empty line that ends the header)."""
    f = fs.sb.f
    first, total = f["s_first_data_block"], _blocks_count(f)
    found: set[int] = set()
    try:
        inode = fs.get_inode(_BAD_INO)
        _check_inode_csum(fs, inode)
        flags = inode.flags
        if flags & _INLINE_DATA_FL:
            raise ValueError("bad blocks inode has inline data")
        if flags & _EXTENTS_FL:
            for _logical, phys, length, _uninit in fs.inode_block_map(inode) or []:
                found.update(range(max(phys, first, 1), min(phys + length, total)))
                if len(found) > _MAX_BAD_BLOCKS:
                    raise ValueError("bad block list too long")
        else:
            _walk_block_map(fs, bytes(inode.i_block), first, total, found)
    except Exception as e:
        extra.warnings.append(f"while reading the bad blocks inode: {e}")
        return
    extra.bad_blocks = sorted(found)


_EXTENTS_FL = 0x80000
_INLINE_DATA_FL = 0x10000000
_MAX_MAP_BLOCKS = 1 << 14  # indirect blocks read from one hostile map at most
_MAX_BAD_BLOCKS = 1 << 21


def _walk_block_map(fs: Any, i_block: bytes, first: int, total: int, found: set[int]) -> None:
    """ext2 direct/indirect pointers of i_block: add in-range data blocks to ``found``;
    raise on an indirect block outside [first, total) as ext2fs_block_iterate does."""
    ptrs = struct.unpack("<15I", i_block[:60])
    found.update(p for p in ptrs[:12] if p and first <= p < total)
    per = fs.block_size // 4
    budget = [_MAX_MAP_BLOCKS]
    errors: list[str] = []
    names = {1: "indirect", 2: "double indirect", 3: "triple indirect"}

    def walk(blk: int, level: int) -> None:
        if not first <= blk < total:
            errors.append(f"illegal {names[level]} block {blk} found")
            return
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError("block map too large")
        entries = struct.unpack(f"<{per}I", bytes(fs.read_block(blk))[: per * 4])
        if level == 1:
            found.update(p for p in entries if p and first <= p < total)
            if len(found) > _MAX_BAD_BLOCKS:
                raise ValueError("bad block list too long")
            return
        for p in entries:
            if p:
                walk(p, level - 1)
                if errors:
                    return

    for level, ptr in ((1, ptrs[12]), (2, ptrs[13]), (3, ptrs[14])):
        if ptr:
            walk(ptr, level)
    if errors:
        raise ValueError(errors[0])


def _gather(fs: Any) -> _Extra:
    """What dumpe2fs -h reads after the superblock, in its order, stopping where it does."""
    extra = _Extra()
    _read_journal_sb(fs, extra)
    if extra.warnings:
        extra.exited = True  # dumpe2fs exits when it cannot read the journal superblock
        return extra
    if extra.journal_external:
        return extra  # dumpe2fs skips MMP and bad blocks for an external journal device
    _read_mmp(fs, extra)
    _read_bad_blocks(fs, extra)
    return extra


# =======================================================================================
# dumpe2fs -h fields
# =======================================================================================
def _super_fields(f: dict[str, Any]) -> list[tuple[str, str]]:
    """list_super2(): every superblock line dumpe2fs -h prints, in its order."""
    out: list[tuple[str, str]] = []
    add = out.append
    compat, incompat, ro = f["s_feature_compat"], f["s_feature_incompat"], f["s_feature_ro_compat"]
    is64 = bool(incompat & _INCOMPAT_64BIT)
    bigalloc = bool(ro & _RO_BIGALLOC)
    rev = f["s_rev_level"]
    block_size = _shl(1024, f["s_log_block_size"])
    inode_size = 128 if rev == 0 else f["s_inode_size"]

    add(("Filesystem volume name", _cstr(f["s_volume_name"]) if f["s_volume_name"][0] else "<none>"))
    add(("Last mounted on",
         _cstr(f["s_last_mounted"]) if f["s_last_mounted"][0] else "<not available>"))
    add(("Filesystem UUID", _uuid_str(f["s_uuid"])))
    add(("Filesystem magic number", f"0x{f['s_magic']:04X}"))
    kind = {0: "original", 1: "dynamic"}.get(rev, "unknown")
    add(("Filesystem revision #", f"{_s32(rev)} ({kind})"))
    add(("Filesystem features", " ".join(fs_feature_names(f)) or "(none)"))
    if f["s_flags"]:
        names = [n for bit, n in _SUPER_FLAGS if f["s_flags"] & bit]
        add(("Filesystem flags", " ".join(names) if names else "(none)"))
    add(("Default mount options", " ".join(mount_option_names(f["s_default_mount_opts"])) or "(none)"))
    if f["s_mount_opts"][0]:
        add(("Mount options", _cstr(f["s_mount_opts"])))
    state = "clean" if f["s_state"] & 1 else "not clean"
    if f["s_state"] & 2:
        state += " with errors"
    add(("Filesystem state", state))
    add(("Errors behavior", _ERRORS.get(f["s_errors"], "Unknown (continue)")))
    add(("Filesystem OS type", _OS.get(f["s_creator_os"], "(unknown os)")))
    add(("Inode count", str(f["s_inodes_count"])))
    add(("Block count", str(_blocks_count(f))))
    rhi = f["s_r_blocks_count_hi"] if is64 else 0
    add(("Reserved block count", str(f["s_r_blocks_count_lo"] | (rhi << 32))))
    if f["s_overhead_clusters"]:
        add(("Overhead clusters", str(f["s_overhead_clusters"])))
    fhi = f["s_free_blocks_count_hi"] if is64 else 0
    add(("Free blocks", str(f["s_free_blocks_count_lo"] | (fhi << 32))))
    add(("Free inodes", str(f["s_free_inodes_count"])))
    add(("First block", str(f["s_first_data_block"])))
    add(("Block size", str(block_size)))
    cluster = _shl(1024, f["s_log_cluster_size"])
    add(("Cluster size" if bigalloc else "Fragment size", str(cluster)))
    if is64:
        add(("Group descriptor size", str(f["s_desc_size"])))
    if f["s_reserved_gdt_blocks"]:
        add(("Reserved GDT blocks", str(f["s_reserved_gdt_blocks"])))
    add(("Blocks per group", str(f["s_blocks_per_group"])))
    add(("Clusters per group" if bigalloc else "Fragments per group", str(f["s_clusters_per_group"])))
    add(("Inodes per group", str(f["s_inodes_per_group"])))
    ibpg = (((f["s_inodes_per_group"] * inode_size) & _U32) + block_size - 1) & _U32
    add(("Inode blocks per group", str(ibpg // block_size if block_size else 0)))
    if f["s_raid_stride"]:
        add(("RAID stride", str(f["s_raid_stride"])))
    if f["s_raid_stripe_width"]:
        add(("RAID stripe width", str(f["s_raid_stripe_width"])))
    if f["s_first_meta_bg"]:
        add(("First meta block group", str(f["s_first_meta_bg"])))
    if f["s_log_groups_per_flex"]:
        add(("Flex block group size", str(_shl(1, f["s_log_groups_per_flex"]))))
    # dumpe2fs 1.47.0 reads only the low 32 bits of each timestamp.
    if f["s_mkfs_time"]:
        add(("Filesystem created", _ctime(f["s_mkfs_time"])))
    add(("Last mount time", _ctime(f["s_mtime"]) if f["s_mtime"] else "n/a"))
    add(("Last write time", _ctime(f["s_wtime"])))
    add(("Mount count", str(f["s_mnt_count"])))
    add(("Maximum mount count", str(f["s_max_mnt_count"])))
    add(("Last checked", _ctime(f["s_lastcheck"])))
    add(("Check interval", f"{f['s_checkinterval']} ({interval_string(f['s_checkinterval'])})"))
    if f["s_checkinterval"]:
        # C adds the two u32 fields in 32 bits before widening to time_t
        add(("Next check after", _ctime((f["s_lastcheck"] + f["s_checkinterval"]) & _U32)))
    if f["s_kbytes_written"]:
        add(("Lifetime writes", lifetime_writes(f["s_kbytes_written"])))
    add(("Reserved blocks uid", _user(f["s_def_resuid"])))
    add(("Reserved blocks gid", _group(f["s_def_resgid"])))
    if rev >= 1:
        add(("First inode", str(_s32(f["s_first_ino"]))))
        add(("Inode size", str(f["s_inode_size"])))
        if f["s_min_extra_isize"]:
            add(("Required extra isize", str(f["s_min_extra_isize"])))
        if f["s_want_extra_isize"]:
            add(("Desired extra isize", str(f["s_want_extra_isize"])))
    if not _null_uuid(f["s_journal_uuid"]):
        add(("Journal UUID", _uuid_str(f["s_journal_uuid"])))
    if f["s_journal_inum"]:
        add(("Journal inode", str(f["s_journal_inum"])))
    if f["s_journal_dev"]:
        add(("Journal device", f"0x{f['s_journal_dev']:04x}"))
    if f["s_last_orphan"]:
        add(("First orphan inode", str(f["s_last_orphan"])))
    if compat & _COMPAT_DIR_INDEX or f["s_def_hash_version"]:
        hv = f["s_def_hash_version"]
        add(("Default directory hash", _HASH.get(hv, f"HASHALG_{hv}")))
    seed = struct.pack("<4I", *f["s_hash_seed"])
    if not _null_uuid(seed):
        add(("Directory Hash Seed", _uuid_str(seed)))
    if f["s_jnl_backup_type"]:
        jt = f["s_jnl_backup_type"]
        add(("Journal backup", "inode blocks" if jt == 1 else f"type {jt}"))
    bgs = f["s_backup_bgs"]
    if bgs[0] or bgs[1]:
        add(("Backup block groups", " ".join(str(b) for b in bgs if b)))
    if f["s_snapshot_inum"]:
        add(("Snapshot inode", str(f["s_snapshot_inum"])))
        add(("Snapshot ID", str(f["s_snapshot_id"])))
        add(("Snapshot reserved blocks", str(f["s_snapshot_r_blocks_count"])))
    if f["s_snapshot_list"]:
        add(("Snapshot list head", str(f["s_snapshot_list"])))
    if f["s_error_count"]:
        add(("FS Error count", str(f["s_error_count"])))
    for which, title in (("first", "First"), ("last", "Last")):
        if not f[f"s_{which}_error_time"]:
            continue
        add((f"{title} error time", _ctime(f[f"s_{which}_error_time"])))
        add((f"{title} error function", _cstr(f[f"s_{which}_error_func"])))
        add((f"{title} error line #", str(f[f"s_{which}_error_line"])))
        if f[f"s_{which}_error_ino"]:
            add((f"{title} error inode #", str(f[f"s_{which}_error_ino"])))
        if f[f"s_{which}_error_block"]:
            add((f"{title} error block #", str(f[f"s_{which}_error_block"])))
        code = f[f"s_{which}_error_errcode"]
        if code:
            add((f"{title} error err",
                 _ERRCODES[code] if code < len(_ERRCODES) else f"UNKNOWN_ERRCODE_{code}"))
    if incompat & _INCOMPAT_MMP:
        add(("MMP block number", str(f["s_mmp_block"])))
        add(("MMP update interval", str(f["s_mmp_interval"])))
    for label, name in _QUOTA_LABELS:
        if f[name]:
            add((label, str(f[name])))
    if ro & _RO_METADATA_CSUM:
        add(("Checksum type", "crc32c" if f["s_checksum_type"] == 1 else "unknown"))
        add(("Checksum", f"0x{f['s_checksum']:08x}"))
    if not _null_uuid(f["s_encrypt_pw_salt"]):
        add(("Encryption PW Salt", _uuid_str(f["s_encrypt_pw_salt"])))
    if incompat & _INCOMPAT_CSUM_SEED:
        add(("Checksum seed", f"0x{f['s_checksum_seed']:08x}"))
    if incompat & _INCOMPAT_CASEFOLD:
        enc = f["s_encoding"]
        add(("Character encoding", _ENCODING.get(enc, f"UNKNOWN_ENCODING_{enc}")))
    if compat & _COMPAT_ORPHAN_FILE:
        add(("Orphan file inode", str(f["s_orphan_file_inum"])))
    return out


def _journal_fc_blocks(jsb: jbd2.JournalSuperblock, fs_fast_commit: bool) -> int:
    # dumpe2fs counts fast-commit blocks when the *file system* has fast_commit.
    if not fs_fast_commit:
        return 0
    return jsb.s_num_fc_blks or jbd2.DEFAULT_FAST_COMMIT_BLOCKS


def journal_fields(jsb: jbd2.JournalSuperblock, fs_block_size: int,
                   fs_fast_commit: bool) -> list[tuple[str, str]]:
    """e2p_list_journal_super(): the journal lines of dumpe2fs -h."""
    out: list[tuple[str, str]] = []
    add = out.append
    add(("Journal features", " ".join(journal_feature_names(jsb)) or "(none)"))
    size = ((jsb.s_blocksize // 1024) * jsb.s_maxlen) & _U32
    add(("Total journal size", f"{size}k" if size < 8192 else f"{size >> 10}M"))
    if jsb.s_blocksize != fs_block_size:
        add(("Journal block size", str(jsb.s_blocksize)))
    fc = _journal_fc_blocks(jsb, fs_fast_commit)
    log_blocks = (jsb.s_maxlen - fc) & _U32
    add(("Total journal blocks", str((log_blocks + fc) & _U32)))
    add(("Max transaction length", str(log_blocks)))
    add(("Fast commit length", str(fc)))
    if jsb.s_first != 1:
        add(("Journal first block", str(jsb.s_first)))
    add(("Journal sequence", f"0x{jsb.s_sequence:08x}"))
    add(("Journal start", str(jsb.s_start)))
    if jsb.s_nr_users != 1:
        add(("Journal number of users", str(jsb.s_nr_users)))
    if jsb.s_feature_compat & jbd2.FEATURE_COMPAT_CHECKSUM:
        add(("Journal checksum type", "crc32"))
    if jsb.s_feature_incompat & (jbd2.FEATURE_INCOMPAT_CSUM_V2 | jbd2.FEATURE_INCOMPAT_CSUM_V3):
        add(("Journal checksum type",
             "crc32c" if jsb.s_checksum_type == jbd2.CHECKSUM_CRC32C else "unknown"))
        add(("Journal checksum", f"0x{jsb.s_checksum:08x}"))
    if jsb.s_nr_users > 1 or not _null_uuid(jsb.s_users[:16]):
        for i in range(min(jsb.s_nr_users, jbd2.USERS_MAX)):
            # continuation lines carry no label
            add(("Journal users" if i == 0 else "", _uuid_str(jsb.s_users[i * 16 : i * 16 + 16])))
    if jsb.s_errno:
        add(("Journal errno", str(jsb.s_errno)))
    return out


def _fields_and_extra(fs: Any) -> tuple[list[tuple[str, str]], _Extra]:
    f = fs.sb.f
    fields = _super_fields(f)
    extra = _gather(fs)
    if extra.jsb is not None:
        fields += journal_fields(extra.jsb, fs.block_size,
                                 bool(f["s_feature_compat"] & _COMPAT_FAST_COMMIT))
    return fields, extra


def superblock_fields(fs: Any) -> list[tuple[str, str]]:
    """(label, value) pairs exactly as ``dumpe2fs -h`` prints them (superblock, then the
    journal superblock). A label of "" continues the previous field on its own line."""
    return _fields_and_extra(fs)[0]


def _mmp_lines(mmp: dict[str, Any]) -> list[str]:
    return [
        "MMP_block:",
        f"    mmp_magic: 0x{mmp['magic']:x}",
        f"    mmp_check_interval: {mmp['check_interval']}",
        f"    mmp_sequence: {_hex_alt08(mmp['sequence'])}",
        f"    mmp_update_date: {_ctime(mmp['time'])}",
        f"    mmp_update_time: {mmp['time']}",
        f"    mmp_node_name: {mmp['node_name']}",
        f"    mmp_device_name: {mmp['device_name']}",
    ]


def format_field(label: str, value: str) -> str:
    """dumpe2fs layout: "label:" padded with spaces so the value starts at column 26."""
    if not label:
        return " " * LABEL_WIDTH + value
    head = label + ":"
    return head + " " * max(1, LABEL_WIDTH - len(head)) + value


def header_lines(fs: Any) -> list[str]:
    """Every line of ``dumpe2fs -h`` output: fields, MMP block, bad blocks, warnings."""
    fields, extra = _fields_and_extra(fs)
    lines = [format_field(label, value) for label, value in fields]
    if extra.mmp is not None:
        lines += _mmp_lines(extra.mmp)
    if extra.bad_blocks is not None:
        # dumpe2fs ends the header with the bad-block list, or an empty line for none
        bad = extra.bad_blocks
        lines.append("Bad blocks: " + ", ".join(map(str, bad)) if bad else "")
    if not extra.exited and _open_needs_csum_retry(fs.sb.f, fs.sb.raw):
        # dumpe2fs opened the image only by ignoring checksum errors and says so
        lines += ["*** Run e2fsck now!", ""]
    lines += [f"Warning: {w}" for w in extra.warnings]
    return lines


def _open_needs_csum_retry(f: dict[str, Any], raw: bytes) -> bool:
    """metadata_csum superblock with an unknown checksum type or a wrong checksum."""
    if not f["s_feature_ro_compat"] & _RO_METADATA_CSUM:
        return False
    if f["s_checksum_type"] != 1:
        return True
    return crc32c_raw(0xFFFFFFFF, bytes(raw[:0x3FC])) != f["s_checksum"]


# =======================================================================================
# Per-group summary
# =======================================================================================
def _has_super(f: dict[str, Any], group: int) -> bool:
    """True when ``group`` holds the superblock or a backup (sparse_super/sparse_super2)."""
    return group_has_super(group, sparse_super=bool(f["s_feature_ro_compat"] & _RO_SPARSE_SUPER),
                           sparse_super2=bool(f["s_feature_compat"] & _COMPAT_SPARSE_SUPER2),
                           backup_bgs=f["s_backup_bgs"])


def _desc_csum_ok(fs: Any, g: Any) -> bool | None:
    f = fs.sb.f
    ro = f["s_feature_ro_compat"]
    if not ro & (_RO_METADATA_CSUM | _RO_GDT_CSUM):
        return None
    desc_size = fs.sb.desc_size
    try:
        raw = g.pack(desc_size)
        want = group_desc_checksum(raw, g.number, desc_size,
                                   metadata_csum=bool(ro & _RO_METADATA_CSUM),
                                   csum_seed=fs.sb.csum_seed, uuid=f["s_uuid"])
    except Exception:
        return None
    return want == g.f["bg_checksum"]


def group_records(fs: Any) -> list[dict[str, Any]]:
    f = fs.sb.f
    total = _blocks_count(f)
    first = f["s_first_data_block"]
    bpg = f["s_blocks_per_group"]
    ipg = f["s_inodes_per_group"]
    ro = f["s_feature_ro_compat"]
    csums = bool(ro & (_RO_METADATA_CSUM | _RO_GDT_CSUM))
    itable_blocks = (ipg * fs.sb.inode_size + fs.block_size - 1) // fs.block_size
    out = []
    for g in fs.groups:
        n = g.number
        start = first + n * bpg
        end = min(start + bpg, total) - 1
        rec: dict[str, Any] = {
            "group": n,
            "first_block": start,
            "last_block": end,
            "superblock": ("primary" if n == 0 else "backup") if _has_super(f, n) else None,
            "block_bitmap": g.block_bitmap,
            "inode_bitmap": g.inode_bitmap,
            "inode_table": g.inode_table,
            "inode_table_blocks": itable_blocks,
            "free_blocks": g.free_blocks_count,
            "free_inodes": g.free_inodes_count,
            "used_dirs": g.used_dirs_count,
            "unused_inodes": g.itable_unused,
            "flags": g.flag_names(),
        }
        if csums:
            rec["checksum"] = g.f["bg_checksum"]
            rec["checksum_ok"] = _desc_csum_ok(fs, g)
        if ro & _RO_METADATA_CSUM:
            rec["block_bitmap_csum"] = g.block_bitmap_csum
            rec["inode_bitmap_csum"] = g.inode_bitmap_csum
        out.append(rec)
    return out


def group_lines(fs: Any) -> list[str]:
    """One compact line per block group."""
    lines = []
    for r in group_records(fs):
        sb = {"primary": " [sb]", "backup": " [sb backup]", None: ""}[r["superblock"]]
        it_end = r["inode_table"] + r["inode_table_blocks"] - 1
        line = (f"Group {r['group']}: blocks {r['first_block']}-{r['last_block']}{sb}"
                f" bbitmap {r['block_bitmap']} ibitmap {r['inode_bitmap']}"
                f" itable {r['inode_table']}-{it_end}"
                f" free {r['free_blocks']} blocks {r['free_inodes']} inodes"
                f" dirs {r['used_dirs']} unused {r['unused_inodes']}")
        if r["flags"]:
            line += " [" + ", ".join(r["flags"]) + "]"
        if "checksum" in r:
            line += f" csum 0x{r['checksum']:04x}"
            if r["checksum_ok"] is False:
                line += " (bad)"
        if "block_bitmap_csum" in r:
            line += f" bbitmap_csum 0x{r['block_bitmap_csum']:08x}"
            line += f" ibitmap_csum 0x{r['inode_bitmap_csum']:08x}"
        lines.append(line)
    return lines


# =======================================================================================
# JSON
# =======================================================================================
def _time(f: dict[str, Any], name: str) -> int:
    return f[name] | (f.get(name + "_hi", 0) << 32)


def _journal_dict(jsb: jbd2.JournalSuperblock, fs_fast_commit: bool) -> dict[str, Any]:
    fc = _journal_fc_blocks(jsb, fs_fast_commit)
    d: dict[str, Any] = {
        "version": 2 if jsb.is_v2 else 1,
        "features": journal_feature_names(jsb),
        "block_size": jsb.s_blocksize,
        "total_blocks": jsb.s_maxlen,
        "size_bytes": jsb.s_blocksize * jsb.s_maxlen,
        "max_transaction_blocks": jsb.s_maxlen - fc,
        "fast_commit_blocks": fc,
        "first_block": jsb.s_first,
        "sequence": jsb.s_sequence,
        "start": jsb.s_start,
        "errno": jsb.s_errno,
        "nr_users": jsb.s_nr_users,
        "uuid": _uuid_or_none(jsb.s_uuid),
    }
    if jsb.has_csum_v2or3:
        d["checksum_type"] = jbd2.CHECKSUM_TYPE_NAMES.get(jsb.s_checksum_type, "unknown")
        d["checksum"] = jsb.s_checksum
        d["checksum_ok"] = jsb.checksum_ok()
    if jsb.s_nr_users > 1 or not _null_uuid(jsb.s_users[:16]):
        d["users"] = [_uuid_str(u) for u in jsb.users]
    return d


def info_dict(fs: Any, groups: bool = False) -> dict[str, Any]:
    """Machine-friendly summary: numbers as ints, names as lists, times as epoch seconds
    (64-bit, *_hi bytes applied), journal as a sub-dict, groups on request."""
    f = fs.sb.f
    compat, incompat, ro = f["s_feature_compat"], f["s_feature_incompat"], f["s_feature_ro_compat"]
    is64 = bool(incompat & _INCOMPAT_64BIT)
    hi = (lambda name: f[name + "_hi"]) if is64 else (lambda name: 0)
    extra = _gather(fs)
    d: dict[str, Any] = {
        "volume_name": _cstr(f["s_volume_name"]),
        "last_mounted": _cstr(f["s_last_mounted"]),
        "uuid": _uuid_or_none(f["s_uuid"]),
        "magic": f["s_magic"],
        "revision": f["s_rev_level"],
        "minor_revision": f["s_minor_rev_level"],
        "features": fs_feature_names(f),
        "flags": [n for bit, n in _SUPER_FLAGS if f["s_flags"] & bit],
        "default_mount_options": mount_option_names(f["s_default_mount_opts"]),
        "mount_options": _cstr(f["s_mount_opts"]),
        "state": {"clean": bool(f["s_state"] & 1), "errors": bool(f["s_state"] & 2),
                  "orphans": bool(f["s_state"] & 4), "raw": f["s_state"]},
        "errors_behavior": _ERRORS.get(f["s_errors"], "Unknown (continue)"),
        "creator_os": _OS.get(f["s_creator_os"], "(unknown os)"),
        "inodes_count": f["s_inodes_count"],
        "blocks_count": _blocks_count(f),
        "reserved_blocks_count": f["s_r_blocks_count_lo"] | (hi("s_r_blocks_count") << 32),
        "overhead_clusters": f["s_overhead_clusters"],
        "free_blocks_count": f["s_free_blocks_count_lo"] | (hi("s_free_blocks_count") << 32),
        "free_inodes_count": f["s_free_inodes_count"],
        "first_data_block": f["s_first_data_block"],
        "block_size": fs.block_size,
        "cluster_size": fs.sb.cluster_size,
        "desc_size": fs.sb.desc_size,
        "reserved_gdt_blocks": f["s_reserved_gdt_blocks"],
        "blocks_per_group": f["s_blocks_per_group"],
        "clusters_per_group": f["s_clusters_per_group"],
        "inodes_per_group": f["s_inodes_per_group"],
        "inode_blocks_per_group":
            (f["s_inodes_per_group"] * fs.sb.inode_size + fs.block_size - 1) // fs.block_size,
        "group_count": len(fs.groups),
        "raid_stride": f["s_raid_stride"],
        "raid_stripe_width": f["s_raid_stripe_width"],
        "first_meta_bg": f["s_first_meta_bg"],
        "flex_bg_size": 1 << f["s_log_groups_per_flex"] if f["s_log_groups_per_flex"] < 32 else 0,
        "mkfs_time": _time(f, "s_mkfs_time"),
        "mount_time": _time(f, "s_mtime"),
        "write_time": _time(f, "s_wtime"),
        "mount_count": f["s_mnt_count"],
        "max_mount_count": f["s_max_mnt_count"],
        "last_check": _time(f, "s_lastcheck"),
        "check_interval": f["s_checkinterval"],
        "kbytes_written": f["s_kbytes_written"],
        "reserved_uid": f["s_def_resuid"],
        "reserved_gid": f["s_def_resgid"],
        "first_ino": fs.sb.first_ino,
        "inode_size": fs.sb.inode_size,
        "min_extra_isize": f["s_min_extra_isize"],
        "want_extra_isize": f["s_want_extra_isize"],
        "journal_uuid": _uuid_or_none(f["s_journal_uuid"]),
        "journal_inum": f["s_journal_inum"],
        "journal_dev": f["s_journal_dev"],
        "last_orphan": f["s_last_orphan"],
        "default_hash": _HASH.get(f["s_def_hash_version"], f"HASHALG_{f['s_def_hash_version']}"),
        "hash_seed": _uuid_or_none(struct.pack("<4I", *f["s_hash_seed"])),
        "journal_backup_type": f["s_jnl_backup_type"],
        "backup_bgs": list(f["s_backup_bgs"]),
        "error_count": f["s_error_count"],
        "quota_inodes": {"user": f["s_usr_quota_inum"], "group": f["s_grp_quota_inum"],
                         "project": f["s_prj_quota_inum"]},
        "orphan_file_inum": f["s_orphan_file_inum"] if compat & _COMPAT_ORPHAN_FILE else 0,
    }
    for which in ("first", "last"):
        if f[f"s_{which}_error_time"]:
            code = f[f"s_{which}_error_errcode"]
            d[f"{which}_error"] = {
                "time": _time(f, f"s_{which}_error_time"),
                "function": _cstr(f[f"s_{which}_error_func"]),
                "line": f[f"s_{which}_error_line"],
                "inode": f[f"s_{which}_error_ino"],
                "block": f[f"s_{which}_error_block"],
                "errcode": (_ERRCODES[code] if code < len(_ERRCODES) else f"UNKNOWN_ERRCODE_{code}")
                if code else None,
            }
    if ro & _RO_METADATA_CSUM:
        d["checksum_type"] = "crc32c" if f["s_checksum_type"] == 1 else "unknown"
        d["checksum"] = f["s_checksum"]
        d["checksum_ok"] = fs.sb.checksum_ok()
    if incompat & _INCOMPAT_CSUM_SEED:
        d["checksum_seed"] = f["s_checksum_seed"]
    if incompat & _INCOMPAT_CASEFOLD:
        d["encoding"] = _ENCODING.get(f["s_encoding"], f"UNKNOWN_ENCODING_{f['s_encoding']}")
        d["encoding_flags"] = f["s_encoding_flags"]
    if incompat & _INCOMPAT_MMP:
        d["mmp"] = {"block": f["s_mmp_block"], "update_interval": f["s_mmp_interval"]}
        if extra.mmp is not None:
            d["mmp"].update({k: v for k, v in extra.mmp.items() if k != "block"})
    d["journal"] = (_journal_dict(extra.jsb, bool(compat & _COMPAT_FAST_COMMIT))
                    if extra.jsb is not None else None)
    if extra.journal_external and d["journal"] is not None:
        d["journal"]["external_device"] = True
    d["bad_blocks"] = extra.bad_blocks or []
    d["warnings"] = extra.warnings
    if groups:
        d["groups"] = group_records(fs)
    return d


# =======================================================================================
# CLI entry
# =======================================================================================
def render_info(fs: Any, json: bool = False, groups: bool = False) -> str:
    """Text for ``ext4kit info``: dumpe2fs -h style lines (plus one line per group with
    ``groups``), or a JSON document with ``json``. No final newline: print it with one
    and the text is byte for byte what dumpe2fs -h prints (apart from its two tabs)."""
    if json:
        return _json.dumps(info_dict(fs, groups=groups), indent=2)
    lines = header_lines(fs)
    if groups:
        if lines and lines[-1]:
            lines.append("")
        lines += group_lines(fs)
    return "\n".join(lines)
