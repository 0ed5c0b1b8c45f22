"""Quota accounting (e2fsck's quota context, pass "6"): the usage every quota id really
has, compared with the usage the quota files (QFMT_VFS_V1, the v2 radix-tree format)
record, and the quota files rewritten when they disagree.

Usage is counted as e2fsck counts it in pass 1: every in-use inode that is the root or not
reserved (below ``s_first_ino``), except the project quota file, the orphan file and
EA-value inodes, is charged its blocks in bytes (``i_blocks`` in 512-byte units, which
includes the blocks of the EA inodes it references) and one inode plus one per EA inode
it references. Inodes pass 2 or 4 cleared are not charged.

Orphan inodes released before pass 1 (``process_orphans``) are subtracted from the
recorded usage without a question, as e2fsck's orphan release does (it rewrites the quota
files then); a remaining difference is reported and, when accepted, every quota file of
that type is rewritten from the computed usage, keeping the recorded limits.

Quota file layout (little endian, 1 KiB quota blocks whatever the file system block size):
block 0 holds the header (magic, version 1) and the info (grace times, flags, number of
blocks, first free block, first block with a free entry); block 1 is the root of a
4-level tree of 256 block references indexed by the id's bytes (most significant
first); the last level points to data blocks: a 16-byte header then 14 entries of 72
bytes (id, pad, inode hard/soft limit, inodes, space hard/soft limit, space, btime, itime).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import Ext4Error
from ..fs.blockmap import BlockMap, inode_block_map
from ..ondisk import xattr as xa
from ..ondisk.inode import Inode
from ..ondisk.superblock import SUPERBLOCK_OFFSET, Superblock
from . import problems as P
from .state import S_IFMT, S_IFREG, U16, U32, State, file_acl_of, flags_of, links_of, size_of

if TYPE_CHECKING:
    from .context import Context
    from .repair import Allocator

QT_BLKSIZE = 1024
QT_TREEOFF = 1
QT_TREEDEPTH = 4
DQDH = struct.Struct("<IIHHI")  # next_free, prev_free, entries, pad1, pad2
DQBLK = struct.Struct("<IIQQQQQQQQ")  # id, pad, ihard, isoft, curinodes, bhard, bsoft, curspace, btime, itime
DQBLK_R0 = struct.Struct("<IIIIIIQQQ")  # version 0: id, ihard, isoft, curinodes, bhard, bsoft, curspace, btime, itime
ENTRY_SIZE = DQBLK.size  # 72
ENTRIES_PER_BLOCK = (QT_BLKSIZE - DQDH.size) // ENTRY_SIZE  # 14
HEADER = struct.Struct("<II")
INFO = struct.Struct("<IIIIII")  # bgrace, igrace, flags, blocks, free_blk, free_entry
V2_VERSION_R0 = 0
V2_VERSION_R1 = 1
MAGICS = (0xD9C01F11, 0xD9C01927, 0xD9C03F14)
SB_FIELDS = ("s_usr_quota_inum", "s_grp_quota_inum", "s_prj_quota_inum")
TYPE_NAMES = ("user", "group", "project")
MAX_DQ_TIME = 7 * 24 * 3600
MAX_IQ_TIME = 7 * 24 * 3600
MAX_QUOTA_FILE = 1 << 31

EA_INODE_FL = 0x200000
HUGE_FILE_FL = 0x40000
INLINE_DATA_FL = 0x10000000


class QuotaFileError(Exception):
    pass


@dataclass
class Dquot:
    id: int
    ihard: int = 0
    isoft: int = 0
    inodes: int = 0
    bhard: int = 0
    bsoft: int = 0
    space: int = 0
    btime: int = 0
    itime: int = 0

    @classmethod
    def unpack(cls, buf: bytes | bytearray, off: int, version: int = V2_VERSION_R1) -> Dquot:
        if version == V2_VERSION_R0:
            (qid, ihard, isoft, inodes, bhard, bsoft, space, btime, itime) = DQBLK_R0.unpack_from(buf, off)
            size = DQBLK_R0.size
        else:
            (qid, _pad, ihard, isoft, inodes, bhard, bsoft, space, btime, itime) = DQBLK.unpack_from(buf, off)
            size = DQBLK.size
        if itime == 1 and not any(buf[off: off + size - 8]):
            itime = 0  # the marker keeping an all-zero entry from looking unused
        return cls(qid, ihard, isoft, inodes, bhard, bsoft, space, btime, itime)

    def pack(self) -> bytes:
        m = (1 << 64) - 1
        raw = DQBLK.pack(self.id & 0xFFFFFFFF, 0, self.ihard & m, self.isoft & m, self.inodes & m,
                         self.bhard & m, self.bsoft & m, self.space & m, self.btime & m, self.itime & m)
        if not any(raw):
            raw = DQBLK.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
        return raw


@dataclass
class QuotaFile:
    """What one quota file records: its entries in tree order (an id found twice is
    compared twice and its last entry's limits are kept, as e2fsck does) and its grace
    times."""
    entries: list[Dquot] = field(default_factory=list)
    bgrace: int = MAX_DQ_TIME
    igrace: int = MAX_IQ_TIME


# ---------------------------------------------------------------------- reading
def _file_reader(ctx: Context, ino: int, raw: bytes | bytearray
                 ) -> tuple[Callable[[int], bytes], int, BlockMap]:
    """A function reading quota block ``n`` of the file (holes read as zeros), the file
    size and its block map."""
    if not mode_is_reg(raw):
        raise QuotaFileError("not a regular file")
    try:
        inode = Inode.parse(ino, bytes(raw))
    except (Ext4Error, ValueError, struct.error) as exc:
        raise QuotaFileError(f"unparsable inode: {exc}") from exc
    if flags_of(raw) & INLINE_DATA_FL:
        raise QuotaFileError("inline data")
    try:
        bmap = inode_block_map(ctx.fs, inode)
    except (Ext4Error, ValueError, IndexError) as exc:
        raise QuotaFileError(f"unreadable block map: {exc}") from exc
    size = size_of(raw)
    bs = ctx.bs

    def read(n: int) -> bytes:
        off = n * QT_BLKSIZE
        if off + QT_BLKSIZE > size:
            # e2fsck's short read: the missing part is zero
            if off >= size:
                return bytes(QT_BLKSIZE)
        lblk, within = divmod(off, bs)
        pblk = bmap.lookup(lblk)
        if pblk is None or not ctx.valid_block(pblk):
            data = bytes(QT_BLKSIZE)
        else:
            data = ctx.block(pblk)[within: within + QT_BLKSIZE]
        if off + QT_BLKSIZE > size:
            data = data[: size - off] + bytes(off + QT_BLKSIZE - size)
        return data

    return read, size, bmap


def mode_is_reg(raw: bytes | bytearray) -> bool:
    return U16.unpack_from(raw, 0)[0] & S_IFMT == S_IFREG


def read_quota_file(ctx: Context, qtype: int, ino: int, raw: bytes | bytearray) -> QuotaFile:
    """Parse a v2 quota file (revision 0 or 1); QuotaFileError when e2fsck could not
    open or scan it."""
    read, size, _ = _file_reader(ctx, ino, raw)
    blk0 = read(0)
    magic, version = HEADER.unpack_from(blk0, 0)
    # like e2fsprogs: only a byte-swapped magic is refused, the version must be known
    if int.from_bytes(magic.to_bytes(4, "little"), "big") == MAGICS[qtype]:
        raise QuotaFileError("quota file stored in the wrong endianness")
    if version not in (V2_VERSION_R0, V2_VERSION_R1):
        raise QuotaFileError(f"unknown version {version}")
    esize = DQBLK_R0.size if version == V2_VERSION_R0 else DQBLK.size
    per_block = (QT_BLKSIZE - DQDH.size) // esize
    bgrace, igrace, _flags, blocks, free_blk, free_entry = INFO.unpack_from(blk0, HEADER.size)
    if size > MAX_QUOTA_FILE or blocks > (size + QT_BLKSIZE - 1) // QT_BLKSIZE:
        raise QuotaFileError(f"file size {size} but {blocks} quota blocks")
    if free_blk >= blocks or free_entry >= blocks:
        raise QuotaFileError("free block list points past the file")
    qf = QuotaFile(bgrace=bgrace, igrace=igrace)
    seen_tree: set[int] = set()
    seen_data: set[int] = set()

    def walk(blk: int, depth: int) -> None:
        buf = read(blk)
        refs = struct.unpack_from("<256I", buf, 0)
        for ref in refs:
            if ref == 0:
                continue
            if ref >= blocks or ref < QT_TREEOFF:
                raise QuotaFileError(f"illegal reference {ref} (file has {blocks} blocks)")
            if depth == QT_TREEDEPTH - 1:
                if ref in seen_data:
                    continue
                if ref in seen_tree:
                    raise QuotaFileError(f"block {ref} is both a tree block and a data block")
                seen_data.add(ref)
                data = read(ref)
                for i in range(per_block):
                    off = DQDH.size + i * esize
                    if any(data[off: off + esize]):
                        qf.entries.append(Dquot.unpack(data, off, version))
            else:
                if ref in seen_tree or ref in seen_data:
                    raise QuotaFileError(f"tree block {ref} referenced twice")
                seen_tree.add(ref)
                walk(ref, depth + 1)

    if blocks > QT_TREEOFF:
        seen_tree.add(QT_TREEOFF)
        walk(QT_TREEOFF, 0)
    return qf


# ---------------------------------------------------------------------- writing
def build_quota_file(qtype: int, dquots: list[Dquot], bgrace: int, igrace: int) -> bytes:
    """The quota file e2fsck's quota_write_inode writes: entries inserted in id order into
    a fresh tree, blocks allocated in the order the insertion asks for them."""
    blocks: list[bytearray] = [bytearray(QT_BLKSIZE), bytearray(QT_BLKSIZE)]
    free_entry = 0

    def new_block() -> int:
        blocks.append(bytearray(QT_BLKSIZE))
        return len(blocks) - 1

    for dq in sorted(dquots, key=lambda d: d.id):
        if not (dq.space or dq.inodes or dq.bsoft or dq.isoft or dq.bhard or dq.ihard):
            continue  # e2fsprogs deletes (does not write) an id with no usage and no limits
        node = QT_TREEOFF
        for depth in range(QT_TREEDEPTH - 1):
            idx = (dq.id >> ((QT_TREEDEPTH - 1 - depth) * 8)) & 0xFF
            child = U32.unpack_from(blocks[node], idx * 4)[0]
            if not child:
                child = new_block()
                U32.pack_into(blocks[node], idx * 4, child)
            node = child
        idx = dq.id & 0xFF
        if U32.unpack_from(blocks[node], idx * 4)[0]:
            continue  # the id is already present (cannot happen: ids are unique)
        if free_entry:
            dblk = free_entry
        else:
            dblk = new_block()
            free_entry = dblk
        data = blocks[dblk]
        nentries = U16.unpack_from(data, 8)[0]
        if nentries + 1 >= ENTRIES_PER_BLOCK:
            free_entry = 0  # the block is full: off the free-entry list
        U16.pack_into(data, 8, nentries + 1)
        for i in range(ENTRIES_PER_BLOCK):
            off = DQDH.size + i * ENTRY_SIZE
            if not any(data[off: off + ENTRY_SIZE]):
                data[off: off + ENTRY_SIZE] = dq.pack()
                break
        U32.pack_into(blocks[node], idx * 4, dblk)
    head = blocks[0]
    HEADER.pack_into(head, 0, MAGICS[qtype], V2_VERSION_R1)
    INFO.pack_into(head, HEADER.size, bgrace, igrace, 0, len(blocks), 0, free_entry)
    return b"".join(bytes(b) for b in blocks)


def _update_grace(dq: Dquot, now: int, bgrace: int, igrace: int) -> None:
    if dq.bsoft and (dq.space + 1023) >> 10 > dq.bsoft:
        if not dq.btime:
            dq.btime = now + bgrace
    else:
        dq.btime = 0
    if dq.isoft and dq.inodes > dq.isoft:
        if not dq.itime:
            dq.itime = now + igrace
    else:
        dq.itime = 0


def write_quota_file(ctx: Context, st: State, al: Allocator, ino: int, data: bytes) -> str | None:
    """Store ``data`` as the content of quota inode ``ino`` (reusing its blocks, mapping new
    ones when it needs more); the reason when that cannot be done."""
    from .repair import RepairError, map_block

    raw = st.inodes.get(ino)
    if raw is None or ino in st.cleared:
        return "the quota inode is not in use"
    try:
        _, _, bmap = _file_reader(ctx, ino, raw)
    except QuotaFileError as exc:
        return str(exc)
    bs = ctx.bs
    need = (len(data) + bs - 1) // bs
    mapped: dict[int, int] = {}
    last = -1
    for r in bmap.runs:
        if r.uninit:
            return "the quota file has unwritten extents"
        for i in range(r.length):
            mapped[r.logical + i] = r.physical + i
        last = max(last, r.logical + r.length - 1)
    new: list[tuple[int, int]] = []
    goal = max(mapped.values(), default=ctx.group_first((ino - 1) // ctx.ipg)) + 1
    try:
        for lblk in range(need):
            if lblk not in mapped:
                blk = al.block(goal if ctx.valid_block(goal) else 0)
                map_block(ctx, raw, lblk, blk)
                mapped[lblk] = blk
                new.append((lblk, blk))
                goal = blk + 1
    except RepairError as exc:
        # undo: the blocks taken stay unused
        for _, blk in new:
            if blk in st.extra_blocks:
                st.extra_blocks.remove(blk)
        return str(exc)
    for lblk in range(max(need, last + 1)):
        pblk = mapped.get(lblk)
        if pblk is None:
            continue
        chunk = data[lblk * bs: (lblk + 1) * bs]
        ctx.write_block(pblk, chunk + bytes(bs - len(chunk)))
    if new:
        unit = bs // 512
        blocks = U32.unpack_from(raw, 28)[0] | (U16.unpack_from(raw, 116)[0] << 32 if ctx.huge_file else 0)
        if flags_of(raw) & HUGE_FILE_FL and ctx.huge_file:
            blocks += len(new)
        else:
            blocks += len(new) * unit
        U32.pack_into(raw, 28, blocks & 0xFFFFFFFF)
        if ctx.huge_file:
            U16.pack_into(raw, 116, (blocks >> 32) & 0xFFFF)
    size = max(need, last + 1) * bs
    U32.pack_into(raw, 4, size & 0xFFFFFFFF)
    U32.pack_into(raw, 108, size >> 32)
    now = ctx.now
    U32.pack_into(raw, 12, now)  # ctime
    U32.pack_into(raw, 16, now)  # mtime
    st.changed.add(ino)
    ctx.write_inode(ino, raw)
    return None


# ---------------------------------------------------------------------- usage
def stat_blocks(ctx: Context, raw: bytes | bytearray) -> int:
    """i_blocks in 512-byte units (ext2fs_get_stat_i_blocks)."""
    n = U32.unpack_from(raw, 28)[0]
    if ctx.huge_file:
        n += U16.unpack_from(raw, 116)[0] << 32
        if flags_of(raw) & HUGE_FILE_FL:
            n *= ctx.bs // 512
    return n


def quota_ids(ctx: Context, raw: bytes | bytearray) -> tuple[int, int, int]:
    uid = U16.unpack_from(raw, 2)[0] | U16.unpack_from(raw, 120)[0] << 16
    gid = U16.unpack_from(raw, 24)[0] | U16.unpack_from(raw, 122)[0] << 16
    prj = 0
    if len(raw) >= 160 and ctx.isz > 128:
        extra = U16.unpack_from(raw, 128)[0]
        if 128 + extra >= 160:
            prj = U32.unpack_from(raw, 156)[0]
    return uid, gid, prj


def _ea_inode_refs(ctx: Context, raw: bytes | bytearray, block_refs: dict[int, int]) -> int:
    """EA inodes this inode's xattrs (in the inode and in its block) reference."""
    n = 0
    if ctx.isz > 128:
        extra = U16.unpack_from(raw, 128)[0]
        hoff = 128 + extra
        if not extra & 3 and hoff + 4 <= ctx.isz and U32.unpack_from(raw, hoff)[0] == xa.XATTR_MAGIC:
            off = hoff + 4
            while off + 16 <= ctx.isz and U32.unpack_from(raw, off)[0] != 0:
                nl, _idx, _voff, vinum, _vsize, _h = xa.ENTRY.unpack_from(raw, off)
                if vinum:
                    n += 1
                off += (16 + nl + 3) & ~3
    acl = file_acl_of(raw, ctx.is64)
    if acl and ctx.valid_block(acl):
        if acl not in block_refs:
            cnt = 0
            try:
                buf = ctx.block(acl)
                if U32.unpack_from(buf, 0)[0] == xa.XATTR_MAGIC:
                    entries, err = xa.parse_entries(buf, 32, ctx.bs)
                    if not err:
                        cnt = sum(1 for e in entries if e.value_inum)
            except (IndexError, OSError, struct.error):
                cnt = 0
            block_refs[acl] = cnt
        n += block_refs[acl]
    return n


def counted(ctx: Context, ino: int, raw: bytes | bytearray, prj_ino: int, orphan_file: int) -> bool:
    """Whether e2fsck charges this (in-use) inode to its quota ids."""
    if ino != 2 and ino < ctx.first_ino:
        return False
    if ino == prj_ino or ino == orphan_file:
        return False
    return not flags_of(raw) & EA_INODE_FL


def compute_usage(ctx: Context, st: State, types: list[int]) -> list[dict[int, list[int]]]:
    """Per quota type: id -> [space in bytes, inodes]."""
    sb = ctx.sb
    prj_ino = sb.f.get("s_prj_quota_inum", 0) or 0
    orphan_file = sb.f.get("s_orphan_file_inum", 0) or 0
    ea_inode = bool(sb.f["s_feature_incompat"] & 0x400)
    usage: list[dict[int, list[int]]] = [{}, {}, {}]
    block_refs: dict[int, int] = {}
    cleared = st.cleared
    for ino, raw in st.inodes.items():
        if ino in cleared or not counted(ctx, ino, raw, prj_ino, orphan_file):
            continue
        space = stat_blocks(ctx, raw) * 512
        inodes = 1 + (_ea_inode_refs(ctx, raw, block_refs) if ea_inode else 0)
        ids = quota_ids(ctx, raw)
        for t in types:
            u = usage[t].setdefault(ids[t], [0, 0])
            u[0] += space
            u[1] += inodes
    return usage


# ---------------------------------------------------------------------- orphans
def _orphan_deltas(ctx: Context, st: State, types: list[int]) -> list[dict[int, list[int]]] | None:
    """What releasing this run's orphan list took from each id (e2fsck subtracts it from
    the quota files as it releases them). None when no list was released here."""
    if not ctx.writable or ctx.sb.f["s_last_orphan"]:
        return None
    try:
        disk_sb = Superblock.parse(ctx.dev.read(SUPERBLOCK_OFFSET, 1024), verify=False)
    except Ext4Error:
        return None
    head = disk_sb.f["s_last_orphan"]
    if not head or disk_sb.f["s_state"] & 2:
        return None
    prj_ino = ctx.sb.f.get("s_prj_quota_inum", 0) or 0
    orphan_file = ctx.sb.f.get("s_orphan_file_inum", 0) or 0
    deltas: list[dict[int, list[int]]] = [{}, {}, {}]
    seen: set[int] = set()
    ino = head
    while ino:
        if ino < ctx.first_ino or ino > ctx.inodes_count or ino in seen or len(seen) > 1 << 20:
            return None  # e2fsck drops its quota changes when the list is bad
        seen.add(ino)
        blk, off = ctx.inode_location(ino)
        if not 0 < blk < ctx.blocks_count:
            return None
        old = ctx.dev.read(blk * ctx.bs + off, ctx.isz)
        if len(old) < ctx.isz:
            return None
        nxt = U32.unpack_from(old, 20)[0]
        if counted(ctx, ino, old, prj_ino, orphan_file):
            new = st.inodes.get(ino) if ino not in st.cleared else None
            d_space = stat_blocks(ctx, old) * 512
            d_inodes = 1
            if new is not None and links_of(new):
                d_space -= stat_blocks(ctx, new) * 512
                d_inodes = 0
            old_ids = quota_ids(ctx, old)
            for t in types:
                d = deltas[t].setdefault(old_ids[t], [0, 0])
                d[0] += d_space
                d[1] += d_inodes
        ino = nxt
    return deltas


# ---------------------------------------------------------------------- the check
def check_quota(ctx: Context, st: State, al: Allocator) -> None:
    """Compare every quota file with the usage counted; offer to rewrite the ones that differ."""
    sb = ctx.sb
    if not sb.has_ro("quota"):
        return
    types = [t for t in range(3) if sb.f.get(SB_FIELDS[t], 0)]
    if not types:
        return
    usage = compute_usage(ctx, st, types)
    deltas = _orphan_deltas(ctx, st, types)
    now = ctx.now
    for t in types:
        qino = sb.f[SB_FIELDS[t]]
        raw = st.inodes.get(qino) if qino not in st.cleared else None
        if raw is None and 0 < qino <= ctx.inodes_count:
            raw = ctx.read_inode(qino)
        qf: QuotaFile | None = None
        why: str | None = None
        if raw is None:
            why = f"quota inode {qino} is invalid"
        else:
            try:
                qf = read_quota_file(ctx, t, qino, raw)
            except QuotaFileError as exc:
                why = str(exc)
            except (Ext4Error, IndexError, OSError, struct.error) as exc:
                why = f"unreadable: {exc}"
        mem: dict[int, Dquot] = {}
        for qid, (space, inodes) in usage[t].items():
            mem[qid] = Dquot(qid, space=space, inodes=inodes)
        inconsistent = False
        orphan_changed = False
        if qf is not None:
            recorded = qf.entries
            if deltas is not None and deltas[t]:
                recorded = _apply_deltas(recorded, deltas[t])
                orphan_changed = True
            seen: set[int] = set()
            for dq in recorded:
                m = mem.get(dq.id)
                if m is None:
                    m = mem[dq.id] = Dquot(dq.id)
                seen.add(dq.id)
                if m.space != dq.space or m.inodes != dq.inodes:
                    inconsistent = True
                    ctx.ask(P.QUOTA_USAGE, qtype=t, id=dq.id, space=m.space, inodes=m.inodes,
                            want_space=dq.space, want_inodes=dq.inodes)
                m.ihard, m.isoft, m.bhard, m.bsoft = dq.ihard, dq.isoft, dq.bhard, dq.bsoft
                m.btime, m.itime = 0, 0
            for qid in sorted(set(mem) - seen):
                inconsistent = True
                ctx.ask(P.QUOTA_MISSING, qtype=t, id=qid)
        else:
            ctx.ask(P.QUOTA_FILE_BAD, qtype=t, ino=qino, why=why)
        if not (inconsistent or qf is None or orphan_changed):
            continue
        asked = inconsistent or qf is None
        if asked:
            if not ctx.ask(P.QUOTA_UPDATE, qtype=t, name=TYPE_NAMES[t]):
                continue
        elif not ctx.writable:
            continue
        bgrace = qf.bgrace if qf is not None else MAX_DQ_TIME
        igrace = qf.igrace if qf is not None else MAX_IQ_TIME
        dquots = list(mem.values())
        for dq in dquots:
            _update_grace(dq, now, bgrace, igrace)
        data = build_quota_file(t, dquots, bgrace, igrace)
        err = write_quota_file(ctx, st, al, qino, data)
        if err is not None and asked:
            ctx.fail(f"cannot rewrite the {TYPE_NAMES[t]} quota file: {err}")


def _apply_deltas(entries: list[Dquot], delta: dict[int, list[int]]) -> list[Dquot]:
    out: list[Dquot] = []
    done: set[int] = set()
    for dq in entries:
        d = delta.get(dq.id)
        if d is not None and dq.id not in done:
            done.add(dq.id)
            dq = Dquot(dq.id, dq.ihard, dq.isoft, dq.inodes - d[1], dq.bhard, dq.bsoft,
                       dq.space - d[0], dq.btime, dq.itime)
        out.append(dq)
    for qid in sorted(set(delta) - done):
        d = delta[qid]
        out.append(Dquot(qid, inodes=-d[1], space=-d[0]))
    return out
