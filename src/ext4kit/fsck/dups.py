"""Pass 1B-1D: blocks claimed twice — found with a sort over all claims (no per-block
map), then each inode holding such blocks is offered a clone (private copies), or, when
cloning fails, deletion.

As e2fsck does, every multiply-claimed block keeps a count of the inode references still
on it; cloning one reference lowers the count, and once a block has a single reference
left (and is not file system metadata) it is no longer a duplicate: the last holder keeps
the original. An inode whose duplicates were all resolved by earlier clones is left alone.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

import numpy as np

from . import problems as P
from .context import Context
from .repair import Allocator, RepairError
from .state import U16, U32, State, flags_of, generation_of

EXTENTS_FL = 0x80000
BAD_INO = 1
RESIZE_INO = 7


class Dups:
    """The multiply-claimed blocks: who holds them and how many inode references remain."""

    def __init__(self) -> None:
        self.by_owner: dict[int, tuple[np.ndarray, set[int]]] = {}
        self.num_bad: dict[int, int] = {}  # block -> inode references not yet cloned
        self.meta: set[int] = set()  # duplicate blocks that are file system metadata

    def is_dup(self, b: int) -> bool:
        return b in self.num_bad and (self.num_bad[b] > 1 or b in self.meta)


def find_dups(st: State) -> Dups:
    """The duplicates among all claims (owner 0 = file system metadata)."""
    d = Dups()
    starts = np.asarray(st.run_start, dtype=np.int64)
    lens = np.asarray(st.run_len, dtype=np.int64)
    owners = np.asarray(st.run_owner, dtype=np.int64)
    if st.cleared:
        keep = ~np.isin(owners, np.fromiter(st.cleared, dtype=np.int64))
        starts, lens, owners = starts[keep], lens[keep], owners[keep]
    if len(starts) < 2:
        return d
    order = np.argsort(starts, kind="stable")
    starts, lens, owners = starts[order], lens[order], owners[order]
    ends = starts + lens
    runmax = np.maximum.accumulate(ends)
    overlap = np.nonzero(starts[1:] < runmax[:-1])[0] + 1
    if len(overlap) == 0:
        return d
    # clusters of mutually overlapping runs
    new_cluster = np.ones(len(starts), dtype=bool)
    new_cluster[1:] = starts[1:] >= runmax[:-1]
    cid = np.cumsum(new_cluster) - 1
    involved = np.unique(cid[overlap])
    out: dict[int, tuple[list[np.ndarray], set[int]]] = {}
    for c in involved.tolist():
        idx = np.nonzero(cid == c)[0]
        blks = np.concatenate([np.arange(starts[i], ends[i]) for i in idx])
        own = np.concatenate([np.full(lens[i], owners[i]) for i in idx])
        if len(blks) > 50_000_000:
            continue
        o = np.argsort(blks, kind="stable")
        blks, own = blks[o], own[o]
        same = blks[1:] == blks[:-1]
        dupmask = np.zeros(len(blks), dtype=bool)
        dupmask[1:] |= same
        dupmask[:-1] |= same
        db, do = blks[dupmask], own[dupmask]
        ib = db[do != 0]
        ub, cnt = np.unique(ib, return_counts=True)
        d.num_bad.update(zip(ub.tolist(), cnt.tolist()))
        mb = np.unique(db[do == 0]).tolist()
        d.meta.update(mb)
        for b in mb:
            d.num_bad.setdefault(b, 0)
        for ow in np.unique(do).tolist():
            mine = np.unique(db[do == ow])
            others = set(np.unique(do[np.isin(db, mine)]).tolist()) - {ow}
            lst, oset = out.setdefault(ow, ([], set()))
            lst.append(mine)
            oset |= others
    d.by_owner = {k: (np.unique(np.concatenate(v[0])), v[1]) for k, v in out.items()}
    return d


def pass1b(ctx: Context, st: State, al: Allocator) -> None:
    if ctx.sb.has_ro("shared_blocks"):
        return
    d = find_dups(st)
    if not d.by_owner:
        return
    meta = d.by_owner.pop(0, None)
    if meta is not None and 0 in meta[1] and len(meta[1]) == 1:
        # metadata overlapping metadata: bitmaps / tables of two groups collide
        ctx.ask(P.REPAIR_FAILED, why=f"group metadata blocks overlap ({len(meta[0])} blocks)")
    for ino in sorted(d.by_owner):
        if ino in (BAD_INO, RESIZE_INO) or ino in st.cleared:
            continue
        blocks, others = d.by_owner[ino]
        blist = blocks.tolist()
        has_meta = any(b in d.meta for b in blist)
        file_ok = not has_meta and all(d.num_bad.get(b, 0) <= 1 for b in blist)
        sharers = sorted(o for o in others if o != 0)
        if file_ok and (len(sharers) + (1 if has_meta else 0)) != 0:
            ctx.ask(P.DUP_DEALT, ino=ino)
            continue
        shared = ", ".join((["<filesystem metadata>"] if has_meta else []) + [str(o) for o in sharers]) or "itself"
        why = "not cloned"
        if ctx.ask(P.DUP_BLOCKS, ino=ino, count=len(blist), shared=shared):
            asked = ctx.report.findings[-1] if ctx.report.findings else None
            try:
                clone(ctx, st, al, ino, d)
                continue
            except RepairError as exc:
                why = str(exc)
            # the clone failed: deleting the file is the fix; declining leaves the error
            if ctx.ask(P.DUP_DELETE, ino=ino, why=why):
                delete_file(ctx, st, ino, d)
            elif asked is not None:
                asked.failed = why
            continue
        if ctx.ask(P.DUP_DELETE, ino=ino, why=why):
            delete_file(ctx, st, ino, d)


def delete_file(ctx: Context, st: State, ino: int, d: Dups) -> None:
    """Clear the inode; its references on duplicate blocks are released (pass 5 frees
    the blocks only it held)."""
    for b, n in Counter(_claimed_blocks(st, ino, d)).items():
        d.num_bad[b] = d.num_bad.get(b, 0) - n
    raw = st.inodes.get(ino)
    if raw is None:
        raw = ctx.read_inode(ino)
        st.inodes[ino] = raw
    U16.pack_into(raw, 26, 0)
    U32.pack_into(raw, 20, ctx.now)
    st.cleared.add(ino)
    st.dirs.pop(ino, None)
    st.inline_dirs.discard(ino)
    st.changed.add(ino)


def _claimed_blocks(st: State, ino: int, d: Dups) -> list[int]:
    """The duplicate blocks in ``ino``'s claims, once per claim."""
    keys = sorted(d.num_bad)
    out: list[int] = []
    for s, n, o in zip(st.run_start, st.run_len, st.run_owner):
        if o != ino:
            continue
        i = bisect_left(keys, s)
        while i < len(keys) and keys[i] < s + n:
            out.append(keys[i])
            i += 1
    return out


class _Txn:
    """The writes and allocations of one clone, undone when it fails half way."""

    def __init__(self, ctx: Context, al: Allocator):
        self.ctx = ctx
        self.al = al
        self.prev: dict[int, bytearray | None] = {}
        self.new: list[int] = []

    def write(self, blk: int, data: bytes | bytearray) -> None:
        if blk not in self.prev:
            self.prev[blk] = self.ctx.dirty.get(blk)
        self.ctx.write_block(blk, data)

    def alloc(self, length: int) -> int:
        s = alloc_run(self.al, length)
        self.new.extend(range(s, s + length))
        return s

    def undo(self) -> None:
        for blk, old in self.prev.items():
            if old is None:
                self.ctx.dirty.pop(blk, None)
            else:
                self.ctx.dirty[blk] = old
            self.ctx._cache.pop(blk, None)
        bm = self.al._block_map()
        gone = set(self.new)
        for b in gone:
            bm[b] = False
        self.al.st.extra_blocks = [b for b in self.al.st.extra_blocks if b not in gone]


def clone(ctx: Context, st: State, al: Allocator, ino: int, d: Dups) -> None:
    """Give ``ino`` private copies of the references it holds on duplicate blocks: data
    blocks and the map's own blocks (indirect blocks, extent tree nodes) alike, at any
    depth. A shared map block is copied with its pointers already redirected; the other
    owners keep the original. An extent whose run holds a duplicate moves as a whole to a
    new run (no extent is split)."""
    raw0 = st.inodes.get(ino)
    if raw0 is None:
        raise RepairError("inode not loaded")
    raw = bytearray(raw0)
    num_bad = dict(d.num_bad)
    moved: list[tuple[int, int]] = []  # (old, new), once per reference given a copy
    dir_map: dict[int, int] = {}  # logical block -> new physical block (directories)
    gen = generation_of(raw)
    per = ctx.bs // 4
    tx = _Txn(ctx, al)

    def dup(b: int) -> bool:
        return b in num_bad and (num_bad[b] > 1 or b in d.meta)

    def take(b: int) -> None:
        if b in num_bad:
            num_bad[b] -= 1

    def copy_run(start: int, length: int, lblk: int) -> int:
        new = tx.alloc(length)
        for k in range(length):
            b = start + k
            tx.write(new + k, ctx.block(b) if b < ctx.blocks_count else bytes(ctx.bs))
            moved.append((b, new + k))
            take(b)
            if lblk >= 0:
                dir_map[lblk + k] = new + k
        return new

    def ind(blk: int, level: int, base: int) -> int:
        target = blk
        if dup(blk):
            target = tx.alloc(1)
            moved.append((blk, target))
            take(blk)
        buf = bytearray(ctx.block(blk))
        changed = target != blk
        span = per ** (level - 1)
        for i in range(per):
            p = U32.unpack_from(buf, 4 * i)[0]
            if not p or not ctx.valid_block(p):
                continue
            if level > 1:
                q = ind(p, level - 1, base + i * span)
            else:
                q = copy_run(p, 1, base + i) if dup(p) else p
            if q != p:
                U32.pack_into(buf, 4 * i, q)
                changed = True
        if changed:
            tx.write(target, buf)
        return target

    def ext_node(buf: bytearray, base: int, room: int, depth_left: int) -> bool:
        if int.from_bytes(buf[base: base + 2], "little") != 0xF30A or depth_left < 0:
            return False
        entries = int.from_bytes(buf[base + 2: base + 4], "little")
        depth = int.from_bytes(buf[base + 6: base + 8], "little")
        changed = False
        for i in range(min(entries, (room - 12) // 12)):
            off = base + 12 + 12 * i
            if depth:
                child = U32.unpack_from(buf, off + 4)[0] | int.from_bytes(buf[off + 8: off + 10], "little") << 32
                if not ctx.valid_block(child):
                    continue
                target = child
                if dup(child):
                    target = tx.alloc(1)
                    moved.append((child, target))
                    take(child)
                cbuf = bytearray(ctx.block(child))
                cchanged = ext_node(cbuf, 0, ctx.bs, depth_left - 1)
                if cchanged or target != child:
                    tx.write(target, _with_csum(ctx, cbuf, ino, gen))
                if target != child:
                    U32.pack_into(buf, off + 4, target & 0xFFFFFFFF)
                    buf[off + 8: off + 10] = (target >> 32).to_bytes(2, "little")
                    changed = True
            else:
                lblk = U32.unpack_from(buf, off)[0]
                ln = int.from_bytes(buf[off + 4: off + 6], "little")
                length = ln - 32768 if ln > 32768 else ln
                start = U32.unpack_from(buf, off + 8)[0] | int.from_bytes(buf[off + 6: off + 8], "little") << 32
                if not length or start + length > ctx.blocks_count:
                    continue
                if not any(dup(b) for b in range(start, start + length)):
                    continue
                new = copy_run(start, length, lblk)
                buf[off + 6: off + 8] = (new >> 32).to_bytes(2, "little")
                U32.pack_into(buf, off + 8, new & 0xFFFFFFFF)
                changed = True
        return changed

    try:
        if flags_of(raw) & EXTENTS_FL:
            iblock = bytearray(raw[40:100])
            if ext_node(iblock, 0, 60, 8):
                raw[40:100] = iblock
        else:
            for i in range(12):
                b = U32.unpack_from(raw, 40 + 4 * i)[0]
                if b and ctx.valid_block(b) and dup(b):
                    U32.pack_into(raw, 40 + 4 * i, copy_run(b, 1, i))
            base = 12
            for i, level in ((12, 1), (13, 2), (14, 3)):
                b = U32.unpack_from(raw, 40 + 4 * i)[0]
                if b and ctx.valid_block(b):
                    nb = ind(b, level, base)
                    if nb != b:
                        U32.pack_into(raw, 40 + 4 * i, nb)
                base += per ** level
    except RepairError:
        tx.undo()
        raise
    if not moved:
        return
    raw0[:] = raw
    d.num_bad = num_bad
    _drop_claim_refs(st, ino, [old for old, _new in moved])
    newset = {new for _old, new in moved}
    for new in sorted(newset):
        st.claim(new, 1, ino)
    st.extra_blocks = [b for b in st.extra_blocks if b not in newset]
    if ino in st.dirs and dir_map:
        st.dirs[ino] = [(lb, dir_map.get(lb, pb)) for lb, pb in st.dirs[ino]]
    st.changed.add(ino)


def _with_csum(ctx: Context, buf: bytearray, ino: int, gen: int) -> bytearray:
    """An extent node with its checksum tail set (as write_extent_block would)."""
    if ctx.metadata_csum:
        from ..ondisk import extent as ext

        eh_max = int.from_bytes(buf[4:6], "little")
        if ext.tail_offset(eh_max) + 4 <= len(buf):
            ext.set_node_checksum(buf, ctx.inode_seed(ino, gen), eh_max)
    return buf


def alloc_run(al: Allocator, length: int) -> int:
    bm = al._block_map()
    free = ~bm
    if length == 1:
        return al.block(0)
    # first run of `length` free blocks
    f = free.astype(np.int8)
    dd = np.diff(np.concatenate(([0], f, [0])))
    starts = np.nonzero(dd == 1)[0]
    ends = np.nonzero(dd == -1)[0]
    ok = np.nonzero(ends - starts >= length)[0]
    if len(ok) == 0:
        raise RepairError(f"no {length} contiguous free blocks to clone into")
    s = int(starts[ok[0]])
    bm[s: s + length] = True
    al.st.extra_blocks.extend(range(s, s + length))
    return s


def _drop_claim(st: State, ino: int, start: int, length: int) -> None:
    """Remove ``ino``'s claim on [start, start+length) (split runs as needed)."""
    ns, nl, no = [], [], []
    end = start + length
    for s, n, o in zip(st.run_start, st.run_len, st.run_owner):
        if o != ino or s >= end or s + n <= start:
            ns.append(s)
            nl.append(n)
            no.append(o)
            continue
        if s < start:
            ns.append(s)
            nl.append(start - s)
            no.append(o)
        if s + n > end:
            ns.append(end)
            nl.append(s + n - end)
            no.append(o)
    st.run_start, st.run_len, st.run_owner = ns, nl, no


def _drop_claims(st: State, ino: int, blocks: list[int]) -> None:
    """Remove ``ino``'s claim on each of the sorted ``blocks`` (one pass over the runs)."""
    ns, nl, no = [], [], []
    for s, n, o in zip(st.run_start, st.run_len, st.run_owner):
        i = bisect_left(blocks, s) if o == ino else len(blocks)
        if i >= len(blocks) or blocks[i] >= s + n:
            ns.append(s)
            nl.append(n)
            no.append(o)
            continue
        cur = s
        while i < len(blocks) and blocks[i] < s + n:
            b = blocks[i]
            if b > cur:
                ns.append(cur)
                nl.append(b - cur)
                no.append(o)
            cur = b + 1
            i += 1
        if cur < s + n:
            ns.append(cur)
            nl.append(s + n - cur)
            no.append(o)
    st.run_start, st.run_len, st.run_owner = ns, nl, no


def _drop_claim_refs(st: State, ino: int, blocks: list[int]) -> None:
    """Remove one of ``ino``'s claims on each entry of ``blocks`` (a block listed twice
    loses two claims: an inode may hold the same block twice)."""
    pending = Counter(blocks)
    keys = sorted(pending)
    ns, nl, no = [], [], []
    for s, n, o in zip(st.run_start, st.run_len, st.run_owner):
        if o != ino:
            ns.append(s)
            nl.append(n)
            no.append(o)
            continue
        i = bisect_left(keys, s)
        cut: list[int] = []
        while i < len(keys) and keys[i] < s + n:
            b = keys[i]
            if pending[b] > 0:
                cut.append(b)
                pending[b] -= 1
            i += 1
        cur = s
        for b in cut:
            if b > cur:
                ns.append(cur)
                nl.append(b - cur)
                no.append(o)
            cur = b + 1
        if cur < s + n:
            ns.append(cur)
            nl.append(s + n - cur)
            no.append(o)
    st.run_start, st.run_len, st.run_owner = ns, nl, no
