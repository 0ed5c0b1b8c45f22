"""Pass 1 helpers for extended attributes: entry hashes (both the unsigned and the old
signed-char name hash e2fsprogs accepts) and the checks of an entry whose value lives in
an EA inode (e2fsck's check_large_ea_inode)."""

from __future__ import annotations

import struct

from . import problems as P
from .context import Context
from .state import U16, U32, State, flags_of, generation_of

EA_INODE_FL = 0x200000


def _rot(h: int, shift: int) -> int:
    return ((h << shift) | (h >> (32 - shift))) & 0xFFFFFFFF


def name_hash(name: bytes, signed: bool = False) -> int:
    h = 0
    for c in name:
        if signed and c >= 0x80:
            c |= 0xFFFFFF00
        h = ((h << 5) ^ (h >> 27) ^ c) & 0xFFFFFFFF
    return h


def value_hash(h: int, value: bytes) -> int:
    if value:
        padded = bytes(value) + bytes(-len(value) % 4)
        for (w,) in struct.iter_unpack("<I", padded):
            h = ((h << 16) ^ (h >> 16) ^ w) & 0xFFFFFFFF
    return h


def entry_hash_ok(stored: int, name: bytes, value: bytes) -> bool:
    """True when ``stored`` is the hash of an in-place entry (either name-hash flavour)."""
    if stored == value_hash(name_hash(name), value):
        return True
    return stored == value_hash(name_hash(name, signed=True), value)


def ea_inode_entry_hash_ok(stored: int, name: bytes, ea_hash: int) -> bool:
    for signed in (False, True):
        h = name_hash(name, signed)
        if stored == ((h << 16) ^ (h >> 16) ^ ea_hash) & 0xFFFFFFFF:
            return True
    return False


def read_inode(ctx: Context, st: State, ino: int, pending: dict[int, bytearray]) -> bytearray:
    raw = st.inodes.get(ino)
    if raw is not None:
        return raw
    raw = pending.get(ino)
    if raw is not None:
        return raw
    return ctx.read_inode(ino)


def check_large_ea_inode(ctx: Context, st: State, ino: int, parent: bytearray, name: bytes,
                         vinum: int, vsize: int, stored_hash: int,
                         pending: dict[int, bytearray]) -> tuple[int, int, int]:
    """(problem code or 0, its value, quota blocks) for an entry whose value is in inode
    ``vinum``; fixes a missing EA_INODE flag on the value inode when allowed (an inode the
    scan has not reached yet is kept in ``pending`` and applied by ``apply_pending``)."""
    if vinum < ctx.first_ino or vinum > ctx.inodes_count:
        return P.ATTR_VALUE_EA_INODE, vinum, 0
    try:
        ea = read_inode(ctx, st, vinum, pending)
    except (IndexError, OSError):
        return P.ATTR_VALUE_EA_INODE, vinum, 0
    ea_hash = U32.unpack_from(ea, 8)[0]  # i_atime holds the value's hash
    quota = 0
    if ea_inode_entry_hash_ok(stored_hash, name, ea_hash):
        quota = (vsize + ctx.bs - 1) // ctx.bs
    elif U32.unpack_from(ea, 16)[0] == ino and generation_of(ea) == generation_of(parent):
        quota = 0  # an old Lustre-style reference (i_mtime names the parent)
    elif not flags_of(ea) & EA_INODE_FL:
        return P.ATTR_VALUE_EA_INODE, vinum, 0
    else:
        return P.ATTR_HASH, stored_hash, 0
    if not flags_of(ea) & EA_INODE_FL:
        if ctx.ask(P.ATTR_SET_EA_INODE_FL, ino=ino, value=vinum):
            U32.pack_into(ea, 32, flags_of(ea) | EA_INODE_FL)
            if vinum in st.inodes:
                st.changed.add(vinum)
            else:
                pending[vinum] = ea
        else:
            return P.ATTR_NO_EA_INODE_FL, vinum, 0
    return 0, 0, quota


def ea_inode_ref(raw: bytearray) -> int:
    """The reference count an EA inode stores (i_ctime high, i_version low)."""
    return U32.unpack_from(raw, 12)[0] << 32 | U32.unpack_from(raw, 36)[0]


def set_ea_inode_ref(raw: bytearray, count: int) -> None:
    U32.pack_into(raw, 12, (count >> 32) & 0xFFFFFFFF)
    U32.pack_into(raw, 36, count & 0xFFFFFFFF)


def apply_pending(ctx: Context, st: State, pending: dict[int, bytearray]) -> None:
    """After the scan: set EA_INODE_FL on the value inodes fixed before they were read."""
    for ino, fixed in pending.items():
        raw = st.inodes.get(ino)
        if raw is not None:
            U32.pack_into(raw, 32, flags_of(raw) | EA_INODE_FL)
            st.changed.add(ino)
        elif ctx.writable:
            ctx.write_inode(ino, fixed)
    pending.clear()


def _find_data(buf: bytes, start: int, end: int, values: int, values_end: int,
               ea_inode: bool) -> bool | None:
    """Walk the entries from ``start`` (values relative to ``values``): True when a
    system.data entry is there, False when not, None when the entries are corrupt
    (libext2fs' read_xattrs_from_buffer refuses them)."""
    off = start
    found = False
    remain = end - start
    first_value = values_end
    while off + 4 <= end and U32.unpack_from(buf, off)[0] != 0:
        if off + 16 > end:
            return None
        nl, idx, voff, vinum, vsize, _h = struct.unpack_from("<BBHIII", buf, off)
        elen = (16 + nl + 3) & ~3
        if elen > remain:
            return None
        remain -= elen
        if vinum and not ea_inode:
            return None
        if vinum == 0:
            if vsize > remain:
                return None
            if values + voff + vsize > values_end:
                return None
            if vsize:
                first_value = min(first_value, values + voff)
            remain -= vsize
        if idx == 7 and buf[off + 16: off + 16 + nl] == b"data":
            found = True
        off += elen
    if off + 4 > end:
        return None
    if off + 4 > first_value:
        return None
    return found


def inline_ea_ok(ctx: Context, raw: bytearray) -> bool:
    """True when the inline-data inode has a readable system.data attribute (e2fsck's
    get_inline_data_ea_size succeeds)."""
    isz = ctx.isz
    buf = bytes(raw[:isz])
    if isz > 128:
        extra = U16.unpack_from(buf, 128)[0]
        hoff = 128 + extra
        if not extra & 3 and hoff + 4 <= isz and U32.unpack_from(buf, hoff)[0] == 0xEA020000:
            r = _find_data(buf, hoff + 4, isz, hoff + 4, isz, ctx.sb.has_incompat("ea_inode"))
            if r is None:
                return False
            if r:
                return True
    acl = U32.unpack_from(buf, 104)[0]
    if ctx.is64:
        acl |= U16.unpack_from(buf, 118)[0] << 32
    if not acl:
        return False
    if not ctx.valid_block(acl):
        return False
    try:
        blk = ctx.block(acl)
    except (IndexError, OSError):
        return False
    if U32.unpack_from(blk, 0)[0] != 0xEA020000 or U32.unpack_from(blk, 8)[0] != 1:
        return False
    r = _find_data(blk, 32, ctx.bs, 0, ctx.bs, ctx.sb.has_incompat("ea_inode"))
    return bool(r)
