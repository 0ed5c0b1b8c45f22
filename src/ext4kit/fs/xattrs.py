"""Reading extended attributes of an inode: in-inode area, external block, EA inodes.

ACLs are stored in ext4's compact format on disk and returned in the Linux
``system.posix_acl_*`` xattr format, as the kernel does.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import ChecksumError, CorruptError
from ..ondisk import xattr as xa
from ..ondisk.inode import GOOD_OLD_INODE_SIZE, Inode

if TYPE_CHECKING:
    from .filesystem import FileSystem

MAX_EA_INODE_VALUE = 64 << 20


def read_xattrs(fs: FileSystem, inode: Inode) -> dict[str, bytes]:
    """All attributes of ``inode`` as {full name: raw on-disk value}, in-inode ones first."""
    out: dict[str, bytes] = {}
    raw = inode.raw
    if len(raw) > GOOD_OLD_INODE_SIZE and inode.extra_isize:
        start = GOOD_OLD_INODE_SIZE + inode.extra_isize
        if start + 4 <= len(raw) and struct.unpack_from("<I", raw, start)[0] == xa.XATTR_MAGIC:
            first = start + 4
            entries, err = xa.parse_entries(raw, first, len(raw))
            for e in entries:
                v = _value(fs, inode, e, raw, first, len(raw))
                if v is not None:
                    out[e.full_name] = v
            if err:
                fs.report_corruption(CorruptError(f"inode {inode.ino}: in-inode xattrs: {err}"))
    blk = inode.file_acl
    if blk:
        if blk >= fs.blocks_count or blk < fs.sb.f["s_first_data_block"]:
            fs.report_corruption(CorruptError(f"inode {inode.ino}: xattr block {blk} out of range"))
            return out
        buf = fs.read_block(blk)
        magic, _refs, nblocks, _h, csum, _ = xa.BLOCK_HEADER.unpack_from(buf, 0)
        if magic != xa.XATTR_MAGIC or nblocks != 1:
            fs.report_corruption(CorruptError(f"inode {inode.ino}: bad xattr block {blk} header"))
            return out
        if fs.sb.metadata_csum and xa.block_checksum(fs.csum_seed, blk, buf) != csum:
            fs.report_checksum(ChecksumError(f"xattr block {blk}: checksum mismatch"))
        entries, err = xa.parse_entries(buf, xa.BLOCK_HEADER.size, len(buf))
        for e in entries:
            if e.full_name not in out:
                v = _value(fs, inode, e, buf, 0, len(buf))
                if v is not None:
                    out[e.full_name] = v
        if err:
            fs.report_corruption(CorruptError(f"xattr block {blk}: {err}"))
    return out


def _value(fs: FileSystem, inode: Inode, e: xa.XattrEntry, buf: bytes, base: int,
           end: int) -> bytes | None:
    """The value of one entry, or None (reported) when the image cannot deliver it."""
    if e.value_inum:
        try:
            if e.value_size > MAX_EA_INODE_VALUE:
                raise CorruptError(f"value of {e.value_size} bytes")
            if e.value_inum == inode.ino:
                raise CorruptError("value inode is the inode itself")
            vino = fs.get_inode(e.value_inum)
            return fs.inode_read(vino, 0, min(e.value_size, vino.size))
        except CorruptError as exc:
            fs.report_corruption(CorruptError(
                f"inode {inode.ino}: xattr {e.full_name} in inode {e.value_inum}: {exc}"))
            return None
    start = base + e.value_offs
    if start + e.value_size > end:
        fs.report_corruption(CorruptError(f"inode {inode.ino}: xattr {e.full_name} value out of bounds"))
        return None
    return bytes(buf[start : start + e.value_size])


# --- POSIX ACL translation ------------------------------------------------------------
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20
_ACL_UNDEFINED_ID = 0xFFFFFFFF


def ext4_acl_to_xattr(value: bytes) -> bytes:
    """ext4 on-disk ACL (version 1, short/long entries) -> Linux posix_acl xattr (version 2)."""
    if len(value) < 4 or struct.unpack_from("<I", value, 0)[0] != 1:
        raise CorruptError("bad ACL header")
    out = [struct.pack("<I", 2)]
    off = 4
    while off < len(value):
        if off + 4 > len(value):
            raise CorruptError("truncated ACL entry")
        tag, perm = struct.unpack_from("<HH", value, off)
        if tag in (ACL_USER, ACL_GROUP):
            if off + 8 > len(value):
                raise CorruptError("truncated ACL entry")
            (ident,) = struct.unpack_from("<I", value, off + 4)
            off += 8
        else:
            ident = _ACL_UNDEFINED_ID
            off += 4
        out.append(struct.pack("<HHI", tag, perm, ident))
    return b"".join(out)


def user_visible(name: str) -> bool:
    """Names listxattr shows (the inline-data body is internal)."""
    return name != "system.data"


def present_value(name: str, value: bytes) -> bytes:
    if name in ("system.posix_acl_access", "system.posix_acl_default"):
        return ext4_acl_to_xattr(value)
    return value
