"""Directory edits the checker makes as repairs (e2fsck's ext2fs_link / ext2fs_unlink,
expand_directory and allocate_dir_block): add or remove an entry, give a directory a new
empty block at the end or in a hole, mapping it through extents (any depth, when the leaf
has room) or block pointers (direct, indirect, double and triple indirect)."""

from __future__ import annotations

import struct

from ..ondisk import dirent as de
from ..ondisk import extent as ext
from .context import Context
from .repair import Allocator, RepairError
from .state import FT_DIR, U16, U32, State, flags_of, generation_of, size_of

EXTENTS_FL = 0x80000
INDEX_FL = 0x1000
HUGE_FILE_FL = 0x40000
_DIRENT = struct.Struct("<IHBB")


# ---------------------------------------------------------------------- block contents
def empty_dir_block(ctx: Context, ino: int = 0, parent: int = 0) -> bytearray:
    """A new directory block: '.' and '..' when ``ino`` is given, else one unused entry."""
    ft = FT_DIR if ctx.filetype else 0
    entries = [(ino, b".", ft), (parent, b"..", ft)] if ino else []
    return bytearray(de.pack_block(entries, ctx.bs, ctx.filetype, csum_tail=ctx.metadata_csum))


def _add_iblocks(ctx: Context, raw: bytearray, nblocks: int) -> None:
    unit = 1 if (flags_of(raw) & HUGE_FILE_FL and ctx.huge_file) else ctx.bs // 512
    val = U32.unpack_from(raw, 28)[0] | (U16.unpack_from(raw, 116)[0] << 32 if ctx.huge_file else 0)
    val += nblocks * unit
    U32.pack_into(raw, 28, val & 0xFFFFFFFF)
    if ctx.huge_file:
        U16.pack_into(raw, 116, (val >> 32) & 0xFFFF)


# ---------------------------------------------------------------------- mapping
def map_new_block(ctx: Context, st: State, al: Allocator, ino: int, raw: bytearray, lblk: int,
                  blk: int) -> int:
    """Map logical block ``lblk`` (currently unmapped) of ``ino`` to ``blk``; returns how
    many mapping blocks (indirect / extent) had to be allocated."""
    if flags_of(raw) & EXTENTS_FL:
        _map_extent(ctx, ino, raw, lblk, blk)
        return 0
    return _map_indirect(ctx, al, raw, lblk, blk)


def _map_indirect(ctx: Context, al: Allocator, raw: bytearray, lblk: int, blk: int) -> int:
    apb = ctx.bs // 4
    if lblk < 12:
        U32.pack_into(raw, 40 + 4 * lblk, blk)
        return 0
    lblk -= 12
    depth = 1
    span = apb
    while lblk >= span:
        lblk -= span
        depth += 1
        span *= apb
        if depth > 3:
            raise RepairError("directory block beyond the triple indirect block")
    new = 0
    holder: bytearray = raw  # the inode, then each indirect block on the way down
    holder_blk = 0
    slot_off = 40 + 4 * (11 + depth)  # i_block[12], [13] or [14]
    for _level in range(depth):
        cur = U32.unpack_from(holder, slot_off)[0]
        if not cur or not ctx.valid_block(cur):
            cur = al.block(blk)
            new += 1
            ctx.write_block(cur, bytes(ctx.bs))
            U32.pack_into(holder, slot_off, cur)
            if holder_blk:
                ctx.write_block(holder_blk, holder)
        holder_blk = cur
        holder = bytearray(ctx.block(cur))
        span //= apb
        idx, lblk = divmod(lblk, span)
        slot_off = 4 * idx
    U32.pack_into(holder, slot_off, blk)
    ctx.write_block(holder_blk, holder)
    if new:
        _add_iblocks(ctx, raw, new)
    return new


def _leaf_insert(node: bytearray, base: int, lblk: int, blk: int) -> bool:
    """Insert (or merge) a one-block extent into the leaf node at ``base``; False when full."""
    _, entries, eh_max, _, _ = ext.HEADER.unpack_from(node, base)
    ents = []
    for i in range(entries):
        el, ln, hi, lo = ext.ENTRY.unpack_from(node, base + 12 + 12 * i)
        ents.append([el, ln, lo | hi << 32])
    for e in ents:
        ln = e[1] if e[1] <= 32768 else e[1] - 32768
        if e[1] <= 32768 and e[0] + ln == lblk and e[2] + ln == blk and ln < 32768:
            e[1] += 1
            break
        if e[1] <= 32768 and lblk + 1 == e[0] and blk + 1 == e[2] and ln < 32768:
            e[0], e[2], e[1] = lblk, blk, e[1] + 1
            break
    else:
        if entries >= eh_max:
            return False
        ents.append([lblk, 1, blk])
        ents.sort()
    for i, (el, ln, start) in enumerate(ents):
        ext.ENTRY.pack_into(node, base + 12 + 12 * i, el, ln, start >> 32, start & 0xFFFFFFFF)
    U16.pack_into(node, base + 2, len(ents))
    return True


def _map_extent(ctx: Context, ino: int, raw: bytearray, lblk: int, blk: int) -> None:
    magic, entries, eh_max, depth, _ = ext.HEADER.unpack_from(raw, 40)
    if magic != 0xF30A:
        raise RepairError("bad extent header")
    if depth == 0:
        if not _leaf_insert(raw, 40, lblk, blk):
            raise RepairError("no room in the inode's extent root")
        return
    # walk down: (block number, buffer) of each index node; the root lives in the inode
    node: bytearray = raw
    base = 40
    node_blk = 0
    path: list[tuple[int, bytearray, int, int]] = []  # (node blk or 0, buf, base, chosen index)
    gen = generation_of(raw)
    while True:
        _, entries, eh_max, depth, _ = ext.HEADER.unpack_from(node, base)
        if depth == 0:
            break
        if entries == 0:
            raise RepairError("empty extent index node")
        pick = 0
        for i in range(entries):
            eb = U32.unpack_from(node, base + 12 + 12 * i)[0]
            if eb <= lblk:
                pick = i
        path.append((node_blk, node, base, pick))
        _, lo, hi, _ = ext.INDEX.unpack_from(node, base + 12 + 12 * pick)
        child = lo | hi << 32
        if not ctx.valid_block(child):
            raise RepairError("bad extent index")
        node_blk = child
        node = bytearray(ctx.block(child))
        base = 0
    if not _leaf_insert(node, 0, lblk, blk):
        raise RepairError("extent leaf is full")
    ctx.write_extent_block(node_blk, node, ino, gen)
    # a block before the first key of its index entry: lower the keys on the way down
    for nblk, nbuf, nbase, pick in reversed(path):
        off = nbase + 12 + 12 * pick
        if U32.unpack_from(nbuf, off)[0] > lblk:
            U32.pack_into(nbuf, off, lblk)
            if nblk:
                ctx.write_extent_block(nblk, nbuf, ino, gen)


# ---------------------------------------------------------------------- growing
def add_dir_block(ctx: Context, st: State, al: Allocator, ino: int, lblk: int,
                  parent: int = 0) -> int:
    """Give directory ``ino`` a new empty block at ``lblk`` (a hole, or the end); lblk 0
    gets '.' and '..' (``parent``). Returns the new block."""
    raw = st.inodes.get(ino)
    if raw is None:
        raise RepairError(f"directory {ino} is not in use")
    blocks = st.dirs.setdefault(ino, [])
    goal = 0
    for lb, pb in blocks:
        if pb and lb < lblk:
            goal = pb + 1
    if not goal:
        goal = ctx.group_first((ino - 1) // ctx.ipg)
    blk = al.block(goal)
    try:
        map_new_block(ctx, st, al, ino, raw, lblk, blk)
    except RepairError:
        _unclaim(al, st, blk)
        raise
    buf = empty_dir_block(ctx, ino if lblk == 0 else 0, parent)
    ctx.write_dir_block(blk, buf, ino, generation_of(raw))
    _add_iblocks(ctx, raw, 1)
    if size_of(raw) < (lblk + 1) * ctx.bs:
        U32.pack_into(raw, 4, ((lblk + 1) * ctx.bs) & 0xFFFFFFFF)
        U32.pack_into(raw, 108, ((lblk + 1) * ctx.bs) >> 32)
    for i, (lb, _pb) in enumerate(blocks):
        if lb == lblk:
            blocks[i] = (lblk, blk)
            break
    else:
        blocks.append((lblk, blk))
        blocks.sort()
    st.changed.add(ino)
    return blk


def _unclaim(al: Allocator, st: State, blk: int) -> None:
    bm = al._block_map()
    bm[blk] = False
    try:
        st.extra_blocks.remove(blk)
    except ValueError:
        pass


def expand_dir(ctx: Context, st: State, al: Allocator, ino: int) -> int:
    """e2fsck_expand_directory: one more empty block (the first hole, else the end)."""
    blocks = st.dirs.get(ino, [])
    for lb, pb in blocks:
        if not pb:
            return add_dir_block(ctx, st, al, ino, lb)
    last = max((lb for lb, _ in blocks), default=-1)
    return add_dir_block(ctx, st, al, ino, last + 1)


# ---------------------------------------------------------------------- entries
class DirEditor:
    """Adds and removes entries, remembering which blocks are full (reconnecting thousands
    of inodes must not rescan lost+found each time)."""

    def __init__(self, ctx: Context, st: State, al: Allocator):
        self.ctx = ctx
        self.st = st
        self.al = al
        self.room: dict[tuple[int, int], int] = {}  # (dir, lblk) -> largest free slot

    def _scan(self, buf: bytearray, end: int) -> int:
        bs = self.ctx.bs
        off = 0
        best = 0
        while off + 8 <= end:
            ino, rl_raw, nl, _ = _DIRENT.unpack_from(buf, off)
            rl = de.rec_len_from_disk(rl_raw, bs)
            if rl < 8 or off + rl > end:
                return 0
            used = de.dirent_size(nl) if ino else 0
            best = max(best, rl - used)
            off += rl
        return best

    def link(self, dino: int, name: bytes, target: int, ft: int) -> bool:
        """Add ``name`` -> ``target`` to ``dino`` when a block has room; False when full.
        In an htree directory the entry goes in the leaf its hash belongs to; when that
        leaf is full (or the index cannot be followed) the index is dropped first (the
        directory stays valid, linear)."""
        ctx, st = self.ctx, self.st
        raw = st.inodes.get(dino)
        if raw is None or dino not in st.dirs:
            raise RepairError(f"directory {dino} cannot take entries")
        if not ctx.filetype:
            ft = 0
        if flags_of(raw) & INDEX_FL:
            leaf = self._dx_leaf(dino, raw, name)
            if leaf is not None:
                blocks = dict(st.dirs[dino])
                pblk = blocks.get(leaf, 0)
                if pblk and self._insert(dino, raw, leaf, pblk, name, target, ft):
                    return True
            self.drop_index(dino, raw)
        for lblk, pblk in st.dirs[dino]:
            if not pblk:
                continue
            if self._insert(dino, raw, lblk, pblk, name, target, ft):
                return True
        return False

    def _dx_leaf(self, dino: int, raw: bytearray, name: bytes) -> int | None:
        """The logical block of the htree leaf where ``name`` belongs (None: cannot tell)."""
        from ..ondisk.dxhash import dx_hash

        ctx, st = self.ctx, self.st
        blocks = dict(st.dirs[dino])
        if not blocks.get(0):
            return None
        node = ctx.block(blocks[0])
        reserved, hv, info_len, levels, _ = de.DX_ROOT_INFO.unpack_from(node, 24)
        if reserved or info_len != 8 or hv > 2 or levels > 2:
            return None
        if ctx.sb.f["s_flags"] & 2:
            hv += 3
        h = dx_hash(name, hv, ctx.sb.f["s_hash_seed"])[0]
        coff = 32
        for level in range(levels + 1):
            limit, count = de.DX_COUNTLIMIT.unpack_from(node, coff)
            if count == 0 or count > limit or coff + 8 * count > ctx.bs:
                return None
            pick = U32.unpack_from(node, coff + 4)[0]
            for i in range(1, count):
                eh, eb = de.DX_ENTRY.unpack_from(node, coff + 8 * i)
                if eh > h:
                    break
                pick = eb
            pick &= 0x0FFFFFFF
            if level == levels:
                return pick
            child = blocks.get(pick)
            if not child:
                return None
            node = ctx.block(child)
            coff = 8
        return None

    def drop_index(self, dino: int, raw: bytearray) -> None:
        """Make an htree directory linear: clear INDEX_FL and turn the index nodes into
        empty directory blocks (the root keeps '.' and '..')."""
        ctx, st = self.ctx, self.st
        blocks = dict(st.dirs.get(dino, []))
        nodes = {0}
        root = blocks.get(0)
        if root:
            buf = ctx.block(root)
            levels = buf[24 + 6]
            todo = [(0, levels)] if levels else []
            while todo:
                lb, lv = todo.pop()
                pb = blocks.get(lb)
                if not pb:
                    continue
                node = ctx.block(pb)
                coff = 32 if lb == 0 else 8
                limit, count = de.DX_COUNTLIMIT.unpack_from(node, coff)
                for i in range(min(count, limit, (ctx.bs - coff) // 8)):
                    cb = U32.unpack_from(node, coff + 8 * i + 4)[0] & 0x0FFFFFFF
                    if cb in blocks and cb not in nodes:
                        nodes.add(cb)
                        if lv > 1:
                            todo.append((cb, lv - 1))
        U32.pack_into(raw, 32, flags_of(raw) & ~INDEX_FL)
        st.changed.add(dino)
        gen = generation_of(raw)
        ftd = FT_DIR if ctx.filetype else 0
        for lb in sorted(nodes):
            pb = blocks.get(lb)
            if not pb:
                continue
            if lb == 0:
                dotdot = U32.unpack_from(ctx.block(pb), 12)[0]
                nb = empty_dir_block(ctx, dino, dotdot)
                nb[7] = ftd
            else:
                nb = empty_dir_block(ctx)
            ctx.write_dir_block(pb, nb, dino, gen)
            self.room.pop((dino, lb), None)

    def _insert(self, dino: int, raw: bytearray, lblk: int, pblk: int, name: bytes, target: int,
                ft: int) -> bool:
        ctx = self.ctx
        bs = ctx.bs
        need = de.dirent_size(len(name))
        known = self.room.get((dino, lblk))
        if known is not None and known < need:
            return False
        buf = bytearray(ctx.block(pblk))
        end = bs - (de.TAIL_SIZE if ctx.metadata_csum and de.has_tail(memoryview(buf)) else 0)
        off = 0
        k = 0
        done = False
        while off + 8 <= end:
            ino, rl_raw, nl, _ = _DIRENT.unpack_from(buf, off)
            rl = de.rec_len_from_disk(rl_raw, bs)
            if rl < 8 or off + rl > end:
                break
            first = lblk == 0 and k < 2  # '.' and '..' keep their places
            used = de.dirent_size(nl) if ino or first else 0
            if rl - used >= need and not (lblk == 0 and k == 0):
                if used:
                    U16.pack_into(buf, off + 4, used)
                    noff, nrl = off + used, rl - used
                else:
                    noff, nrl = off, rl
                buf[noff: noff + nrl] = de.pack_entry(target, nrl, name, ft, ctx.filetype)
                ctx.write_dir_block(pblk, buf, dino, generation_of(raw))
                done = True
                break
            off += rl
            k += 1
        self.room[(dino, lblk)] = self._scan(buf, end)
        return done

    def unlink(self, dino: int, name: bytes, target: int) -> bool:
        """Remove the entry ``name`` (-> ``target``) from ``dino`` (ext2fs_unlink)."""
        ctx, st = self.ctx, self.st
        raw = st.inodes.get(dino)
        if raw is None:
            return False
        bs = ctx.bs
        for lblk, pblk in st.dirs.get(dino, []):
            if not pblk:
                continue
            buf = bytearray(ctx.block(pblk))
            end = bs - (de.TAIL_SIZE if ctx.metadata_csum and de.has_tail(memoryview(buf)) else 0)
            off = 0
            prev = -1
            while off + 8 <= end:
                ino, rl_raw, nl, _ = _DIRENT.unpack_from(buf, off)
                rl = de.rec_len_from_disk(rl_raw, bs)
                if rl < 8 or off + rl > end:
                    break
                if ino and ino == target and bytes(buf[off + 8: off + 8 + nl]) == name:
                    if prev >= 0:
                        prl = de.rec_len_from_disk(U16.unpack_from(buf, prev + 4)[0], bs)
                        U16.pack_into(buf, prev + 4, prl + rl)
                    else:
                        U32.pack_into(buf, off, 0)
                    ctx.write_dir_block(pblk, buf, dino, generation_of(raw))
                    self.room.pop((dino, lblk), None)
                    return True
                prev = off
                off += rl
        return False
