"""Writing extended attributes: the in-inode area and the external xattr block.

Layout (what the kernel and e2fsprogs read back):

- In-inode ("ibody"): at 128 + i_extra_isize a le32 magic 0xEA020000, then the entries
  (16-byte header + name padded to 4, terminated by a zero u32); values are packed at the
  end of the inode, each padded to 4 bytes, e_value_offs relative to the first entry.
- Block: 32-byte header (magic, h_refcount, h_blocks=1, h_hash, h_checksum), entries sorted
  by (name index, name length, name) from offset 32, zero u32 terminator, values packed
  from the end of the block (offsets relative to the block start).
- e_hash: name bytes folded with shift 5, then the padded value's le32 words with shift 16;
  h_hash folds the entry hashes with shift 16 (0 if any entry hash is 0).
- h_checksum (metadata_csum): crc32c(fs seed, le64 block number || block, checksum zeroed).

Placement follows the kernel: a value goes in the inode when it fits there, otherwise in
the block (and leaves the other place). A block shared by several inodes (h_refcount > 1)
is never changed for one of them: it is copied (copy-on-write).

POSIX ACLs arrive in the Linux xattr format (version 2, 8-byte entries) and are stored in
ext4's compact format (version 1, 4-byte entries for the *_OBJ/MASK/OTHER tags).
Values stored in EA inodes (ea_inode feature) are kept as they are but cannot be changed.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CorruptError, fs_oserror
from ..ondisk import xattr as xa
from ..ondisk.inode import GOOD_OLD_INODE_SIZE, Inode
from .alloc import NoSpace
from .xattrs import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
)

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from .writer import WritableFileSystem

XATTR_CREATE = getattr(os, "XATTR_CREATE", 1)
XATTR_REPLACE = getattr(os, "XATTR_REPLACE", 2)
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536

INDEX_USER = 1
INDEX_ACL_ACCESS = 2
INDEX_ACL_DEFAULT = 3
INDEX_TRUSTED = 4
INDEX_SECURITY = 6
INDEX_SYSTEM = 7

SYSTEM_DATA = (INDEX_SYSTEM, b"data")  # the inline-data body (internal)

_PREFIXES = (("user.", INDEX_USER), ("trusted.", INDEX_TRUSTED), ("security.", INDEX_SECURITY))
_ACL_NAMES = {"system.posix_acl_access": INDEX_ACL_ACCESS,
              "system.posix_acl_default": INDEX_ACL_DEFAULT}

_MAGIC = struct.Struct("<I")
_HEADER_SIZE = xa.BLOCK_HEADER.size  # 32
_ENTRY_SIZE = xa.ENTRY.size  # 16


# ======================================================================================
# attribute sets
# ======================================================================================
@dataclass(frozen=True)
class Attr:
    index: int
    name: bytes
    value: bytes
    value_inum: int = 0  # value in an EA inode (kept verbatim, never rewritten)
    value_size: int = 0  # for value_inum entries
    inum_hash: int = 0  # e_hash of a value_inum entry

    @property
    def key(self) -> tuple[int, bytes]:
        return (self.index, self.name)

    def entry_len(self) -> int:
        return (_ENTRY_SIZE + len(self.name) + 3) & ~3

    def value_len(self) -> int:
        return 0 if self.value_inum else (len(self.value) + 3) & ~3

    def space(self) -> int:
        return self.entry_len() + self.value_len()


def _sort_key(a: Attr) -> tuple[int, int, bytes]:
    return (a.index, len(a.name), a.name)


def entry_hash(name: bytes, value: bytes) -> int:
    """e_hash of an entry whose value is stored in place."""
    h = 0
    for c in name:
        h = ((h << 5) ^ (h >> 27) ^ c) & 0xFFFFFFFF
    if value:
        padded = value + bytes(-len(value) % 4)
        for (w,) in struct.iter_unpack("<I", padded):
            h = ((h << 16) ^ (h >> 16) ^ w) & 0xFFFFFFFF
    return h


def block_hash(hashes: list[int]) -> int:
    h = 0
    for eh in hashes:
        if not eh:
            return 0
        h = ((h << 16) ^ (h >> 16) ^ eh) & 0xFFFFFFFF
    return h


def _attrs_from(buf: bytes, start: int, end: int, base: int, where: str) -> list[Attr]:
    entries, err = xa.parse_entries(buf, start, end)
    if err:
        raise CorruptError(f"{where}: {err}")
    out = []
    for e in entries:
        if e.value_inum:
            out.append(Attr(e.name_index, e.name, b"", e.value_inum, e.value_size, e.hash))
            continue
        vs = base + e.value_offs
        if e.value_size and (vs < start or vs + e.value_size > end):
            raise CorruptError(f"{where}: value of {e.full_name} out of bounds")
        out.append(Attr(e.name_index, e.name, bytes(buf[vs : vs + e.value_size])))
    return out


# ======================================================================================
# in-inode area
# ======================================================================================
def ibody_range(inode: Inode) -> tuple[int, int] | None:
    """(start, end) of the in-inode xattr area (start = the magic), or None if none."""
    raw = inode.raw
    extra = inode.extra_isize or 0
    if len(raw) <= GOOD_OLD_INODE_SIZE or not extra:
        return None
    start = GOOD_OLD_INODE_SIZE + extra
    if start + 8 > len(raw):
        return None
    return start, len(raw)


def ibody_capacity(inode: Inode) -> int:
    """Bytes available to entries + values in the inode (0 when there is no area)."""
    r = ibody_range(inode)
    return 0 if r is None else r[1] - r[0] - 8  # magic + terminator


def read_ibody(inode: Inode) -> list[Attr]:
    r = ibody_range(inode)
    if r is None:
        return []
    start, end = r
    raw = inode.raw
    if _MAGIC.unpack_from(raw, start)[0] != xa.XATTR_MAGIC:
        return []
    return _attrs_from(raw, start + 4, end, start + 4, f"inode {inode.ino} in-inode xattrs")


def _fits(attrs: list[Attr], capacity: int) -> bool:
    return sum(a.space() for a in attrs) <= capacity


def _pack_entries(buf: bytearray, attrs: list[Attr], first: int, value_end: int,
                  base: int) -> list[int]:
    """Write entries from ``first`` and values downwards from ``value_end`` (both absolute
    in ``buf``); e_value_offs relative to ``base``. Returns the entry hashes."""
    off = first
    vend = value_end
    hashes = []
    for a in attrs:
        if a.value_inum:
            voff, vsize, h = 0, a.value_size, a.inum_hash
        else:
            vsize = len(a.value)
            if vsize:
                vend -= a.value_len()
                buf[vend : vend + vsize] = a.value
                voff = vend - base
            else:
                voff = 0
            h = entry_hash(a.name, a.value)
        xa.ENTRY.pack_into(buf, off, len(a.name), a.index, voff, a.value_inum, vsize, h)
        buf[off + _ENTRY_SIZE : off + _ENTRY_SIZE + len(a.name)] = a.name
        off += a.entry_len()
        hashes.append(h)
    if off + 4 > vend:
        raise AssertionError("xattr area overflow")  # callers check _fits first
    return hashes


def write_ibody(inode: Inode, attrs: list[Attr]) -> None:
    """Replace the in-inode attributes in ``inode.raw`` (in memory)."""
    r = ibody_range(inode)
    if r is None:
        if attrs:
            raise AssertionError("no in-inode xattr area")
        return
    start, end = r
    area = bytearray(end - start)
    if attrs:
        _MAGIC.pack_into(area, 0, xa.XATTR_MAGIC)
        _pack_entries(area, sorted(attrs, key=_sort_key), 4, len(area), 4)
    inode.raw = bytes(inode.raw[:start]) + bytes(area)


# ======================================================================================
# the external block
# ======================================================================================
@dataclass
class BlockState:
    blk: int
    refcount: int
    attrs: list[Attr]


def read_block_attrs(fs: WritableFileSystem, inode: Inode) -> BlockState | None:
    blk = inode.file_acl
    if not blk:
        return None
    if blk >= fs.blocks_count or blk < fs.sb.f["s_first_data_block"]:
        raise CorruptError(f"inode {inode.ino}: xattr block {blk} out of range")
    buf = fs.read_block(blk)
    magic, refs, nblocks, _h, _c, _ = xa.BLOCK_HEADER.unpack_from(buf, 0)
    if magic != xa.XATTR_MAGIC or nblocks != 1:
        raise CorruptError(f"inode {inode.ino}: bad xattr block {blk} header")
    attrs = _attrs_from(buf, _HEADER_SIZE, len(buf), 0, f"xattr block {blk}")
    return BlockState(blk, refs, attrs)


def block_capacity(fs: WritableFileSystem) -> int:
    return fs.block_size - _HEADER_SIZE - 4


def _pack_block(fs: WritableFileSystem, buf: bytearray, blk: int, refcount: int,
                attrs: list[Attr]) -> None:
    buf[:] = bytes(len(buf))
    hashes = _pack_entries(buf, sorted(attrs, key=_sort_key), _HEADER_SIZE, len(buf), 0)
    xa.BLOCK_HEADER.pack_into(buf, 0, xa.XATTR_MAGIC, refcount, 1, block_hash(hashes), 0,
                              bytes(12))
    _set_block_csum(fs, buf, blk)


def _set_block_csum(fs: WritableFileSystem, buf: bytearray, blk: int) -> None:
    if fs.sb.metadata_csum:
        struct.pack_into("<I", buf, xa.CHECKSUM_OFFSET, xa.block_checksum(fs.csum_seed, blk, bytes(buf)))


def _release_block(fs: WritableFileSystem, h: Handle, inode: Inode, st: BlockState) -> None:
    """Drop this inode's reference to its xattr block (freed at refcount 0); clears
    i_file_acl and takes the block out of i_blocks."""
    if st.refcount <= 1:
        fs.free_file_blocks(h, inode, st.blk, 1, metadata=True)
    else:
        buf = h.get_write_access(st.blk)
        struct.pack_into("<I", buf, 4, st.refcount - 1)
        _set_block_csum(fs, buf, st.blk)
        h.dirty_metadata(st.blk)
    inode.set_file_acl(0)
    fs.add_i_blocks(inode, -1)


def _store_block(fs: WritableFileSystem, h: Handle, inode: Inode, st: BlockState | None,
                 attrs: list[Attr]) -> None:
    """Make the inode's block hold exactly ``attrs`` (none: release it)."""
    if st is not None and sorted(st.attrs, key=_sort_key) == sorted(attrs, key=_sort_key):
        return
    if not attrs:
        if st is not None:
            _release_block(fs, h, inode, st)
        return
    if st is not None and st.refcount <= 1:
        buf = h.get_write_access(st.blk)
        _pack_block(fs, buf, st.blk, 1, attrs)
        h.dirty_metadata(st.blk)
        return
    # a new block: none yet, or copy-on-write of a shared one
    try:
        blk, _n = fs.alloc.allocate_blocks(h, fs.inode_goal(inode), 1)
    except NoSpace:
        raise fs_oserror(errno.ENOSPC, None, "no space for an xattr block") from None
    buf = h.get_create_access(blk)
    _pack_block(fs, buf, blk, 1, attrs)
    h.dirty_metadata(blk)
    if st is not None:
        _release_block(fs, h, inode, st)
    inode.set_file_acl(blk)
    fs.add_i_blocks(inode, 1)


# ======================================================================================
# names and ACLs
# ======================================================================================
def split_name(name: str | bytes) -> tuple[int, bytes]:
    """(name index, stored suffix) of a user-visible attribute name; raises like os."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    full = os.fsencode(name)
    if len(full) > XATTR_NAME_MAX:
        raise fs_oserror(errno.ERANGE, None, f"xattr name too long: {name!r}")
    if name in _ACL_NAMES:
        return _ACL_NAMES[name], b""
    for prefix, index in _PREFIXES:
        if name.startswith(prefix):
            suffix = os.fsencode(name[len(prefix):])
            if not suffix:
                raise fs_oserror(errno.EINVAL, None, f"empty xattr name: {name!r}")
            return index, suffix
    raise fs_oserror(errno.EOPNOTSUPP, None, f"xattr namespace not supported: {name!r}")


_ACL_XATTR_VERSION = 2
_EXT4_ACL_VERSION = 1


def xattr_to_ext4_acl(value: bytes) -> bytes | None:
    """Linux posix_acl xattr (version 2) -> ext4 on-disk ACL; None for an empty ACL.
    Invalid ACLs raise EINVAL (the kernel's posix_acl_from_xattr + posix_acl_valid)."""
    def bad(why: str) -> OSError:
        return fs_oserror(errno.EINVAL, None, f"invalid POSIX ACL: {why}")

    if len(value) < 4:
        raise bad("too short")
    if struct.unpack_from("<I", value, 0)[0] != _ACL_XATTR_VERSION:
        raise bad("unsupported version")
    if (len(value) - 4) % 8:
        raise bad("size is not a whole number of entries")
    count = (len(value) - 4) // 8
    if count == 0:
        return None
    out = [struct.pack("<I", _EXT4_ACL_VERSION)]
    state = ACL_USER_OBJ
    needs_mask = False
    for i in range(count):
        tag, perm, ident = struct.unpack_from("<HHI", value, 4 + 8 * i)
        if perm & ~7:
            raise bad(f"permission bits {perm:#x}")
        if tag == ACL_USER_OBJ and state == ACL_USER_OBJ:
            state = ACL_USER
        elif tag == ACL_USER and state == ACL_USER:
            needs_mask = True
        elif tag == ACL_GROUP_OBJ and state == ACL_USER:
            state = ACL_GROUP
        elif tag == ACL_GROUP and state == ACL_GROUP:
            needs_mask = True
        elif tag == ACL_MASK and state == ACL_GROUP:
            state = ACL_OTHER
        elif tag == ACL_OTHER and (state == ACL_OTHER or (state == ACL_GROUP and not needs_mask)):
            state = 0
        else:
            raise bad(f"entry {i} (tag {tag:#x}) out of order or unknown")
        if tag in (ACL_USER, ACL_GROUP):
            out.append(struct.pack("<HHI", tag, perm, ident))
        else:
            out.append(struct.pack("<HH", tag, perm))
    if state != 0:
        raise bad("incomplete")
    return b"".join(out)


# ======================================================================================
# public API
# ======================================================================================
def _load(fs: WritableFileSystem, inode: Inode) -> tuple[list[Attr], BlockState | None]:
    return read_ibody(inode), read_block_attrs(fs, inode)


def _touch(inode: Inode, now_ns: int | None) -> None:
    inode.set_time_ns("ctime", time.time_ns() if now_ns is None else now_ns)


def _find(attrs: list[Attr], key: tuple[int, bytes]) -> Attr | None:
    for a in attrs:
        if a.key == key:
            return a
    return None


def _without(attrs: list[Attr], key: tuple[int, bytes]) -> list[Attr]:
    return [a for a in attrs if a.key != key]


def set_raw(fs: WritableFileSystem, h: Handle, inode: Inode, index: int, name: bytes,
            value: bytes, flags: int = 0, *, inode_only: bool = False) -> None:
    """Store one attribute given by (index, suffix) with its on-disk value; changes
    ``inode`` in memory only (the caller writes it). ``inode_only``: the in-inode area or
    ENOSPC (system.data)."""
    if len(name) > XATTR_NAME_MAX:
        raise fs_oserror(errno.ERANGE, None, "xattr name too long")
    key = (index, name)
    ibody, st = _load(fs, inode)
    block = st.attrs if st is not None else []
    old = _find(ibody, key) or _find(block, key)
    if old is None and flags & XATTR_REPLACE:
        raise fs_oserror(errno.ENODATA, None, "no such attribute")
    if old is not None and flags & XATTR_CREATE:
        raise fs_oserror(errno.EEXIST, None, "attribute exists")
    if old is not None and old.value_inum:
        raise fs_oserror(errno.EOPNOTSUPP, None, "attribute value lives in an EA inode")
    new = Attr(index, name, bytes(value))
    if len(value) > XATTR_SIZE_MAX:
        raise fs_oserror(errno.E2BIG, None, "xattr value too large")
    ib2 = _without(ibody, key) + [new]
    if ibody_range(inode) is not None and _fits(ib2, ibody_capacity(inode)):
        _store_block(fs, h, inode, st, _without(block, key))
        write_ibody(inode, ib2)
        return
    if inode_only:
        raise fs_oserror(errno.ENOSPC, None, "no room in the inode")
    bl2 = _without(block, key) + [new]
    if not _fits(bl2, block_capacity(fs)):
        raise fs_oserror(errno.ENOSPC, None, "xattr does not fit")
    _store_block(fs, h, inode, st, bl2)
    if _find(ibody, key) is not None:
        write_ibody(inode, _without(ibody, key))


def remove_raw(fs: WritableFileSystem, h: Handle, inode: Inode, index: int,
               name: bytes) -> None:
    """Remove one attribute by (index, suffix); ENODATA when missing. In memory only."""
    key = (index, name)
    ibody, st = _load(fs, inode)
    old_i = _find(ibody, key)
    old_b = _find(st.attrs, key) if st is not None else None
    if old_i is None and old_b is None:
        raise fs_oserror(errno.ENODATA, None, "no such attribute")
    if (old_i or old_b).value_inum:  # type: ignore[union-attr]
        raise fs_oserror(errno.EOPNOTSUPP, None, "attribute value lives in an EA inode")
    if old_i is not None:
        write_ibody(inode, _without(ibody, key))
    if old_b is not None and st is not None:
        _store_block(fs, h, inode, st, _without(st.attrs, key))


def get_raw(fs: WritableFileSystem, inode: Inode, index: int, name: bytes) -> bytes | None:
    ibody, st = _load(fs, inode)
    a = _find(ibody, (index, name)) or (_find(st.attrs, (index, name)) if st else None)
    return None if a is None else a.value


def _check_user_namespace(inode: Inode, index: int) -> None:
    """user.* attributes belong to regular files and directories only (the kernel's
    xattr_permission: EPERM for writes on symlinks, devices, fifos and sockets)."""
    if index == INDEX_USER and not (inode.is_reg() or inode.is_dir()):
        raise fs_oserror(errno.EPERM, None, "user.* attributes need a file or directory")


def set_xattr(fs: WritableFileSystem, h: Handle, inode: Inode, name: str | bytes,
              value: bytes, flags: int = 0, *, now_ns: int | None = None) -> None:
    """os.setxattr semantics on ``inode``; writes the inode (ctime updated)."""
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise fs_oserror(errno.EINVAL, None, f"bad xattr flags {flags:#x}")
    index, suffix = split_name(name)
    _check_user_namespace(inode, index)
    value = bytes(value)
    if len(value) > XATTR_SIZE_MAX:
        raise fs_oserror(errno.E2BIG, None, "xattr value too large")
    if index in (INDEX_ACL_ACCESS, INDEX_ACL_DEFAULT):
        if index == INDEX_ACL_DEFAULT and not inode.is_dir():
            raise fs_oserror(errno.EACCES, None, "default ACL on a non-directory")
        disk = xattr_to_ext4_acl(value)
        if disk is None:  # an empty ACL removes it (as the kernel)
            try:
                remove_raw(fs, h, inode, index, suffix)
            except OSError as exc:
                if exc.errno != errno.ENODATA or flags & XATTR_REPLACE:
                    raise
                return
        else:
            set_raw(fs, h, inode, index, suffix, disk, flags)
    else:
        set_raw(fs, h, inode, index, suffix, value, flags)
    _touch(inode, now_ns)
    fs.write_inode(h, inode)


def remove_xattr(fs: WritableFileSystem, h: Handle, inode: Inode, name: str | bytes, *,
                 now_ns: int | None = None) -> None:
    """os.removexattr semantics on ``inode``; writes the inode (ctime updated)."""
    index, suffix = split_name(name)
    _check_user_namespace(inode, index)
    remove_raw(fs, h, inode, index, suffix)
    _touch(inode, now_ns)
    fs.write_inode(h, inode)


def drop_all_xattrs(fs: WritableFileSystem, h: Handle, inode: Inode) -> None:
    """For a deleted inode: release its xattr block (refcount; freed at 0) and clear the
    in-inode area. Writes the inode."""
    blk = inode.file_acl
    if blk:
        refs = None
        if fs.sb.f["s_first_data_block"] <= blk < fs.blocks_count:
            magic, refs, nblocks = struct.unpack_from("<III", fs.read_block(blk), 0)
            if magic != xa.XATTR_MAGIC or nblocks != 1:
                refs = None
        if refs is not None:
            _release_block(fs, h, inode, BlockState(blk, refs, []))
        else:  # not a valid xattr block: forget the pointer, free nothing (fsck's job)
            inode.set_file_acl(0)
    if ibody_range(inode) is not None:
        write_ibody(inode, [])
    fs.write_inode(h, inode)
