"""Pass 1B-1D: blocks claimed twice — found with a sort over all claims (no per-block
map), then each inode holding such blocks is offered a clone (private copies)."""

from __future__ import annotations

import numpy as np

from . import problems as P
from .context import Context
from .repair import Allocator, RepairError
from .state import U32, State, flags_of, generation_of

EXTENTS_FL = 0x80000


def find_dups(st: State) -> dict[int, tuple[np.ndarray, set[int]]]:
    """owner -> (its multiply-claimed blocks, the other owners), for every owner involved."""
    starts = np.asarray(st.run_start, dtype=np.int64)
    lens = np.asarray(st.run_len, dtype=np.int64)
    owners = np.asarray(st.run_owner, dtype=np.int64)
    if st.cleared:
        keep = ~np.isin(owners, np.fromiter(st.cleared, dtype=np.int64))
        starts, lens, owners = starts[keep], lens[keep], owners[keep]
    if len(starts) < 2:
        return {}
    order = np.argsort(starts, kind="stable")
    starts, lens, owners = starts[order], lens[order], owners[order]
    ends = starts + lens
    runmax = np.maximum.accumulate(ends)
    overlap = np.nonzero(starts[1:] < runmax[:-1])[0] + 1
    if len(overlap) == 0:
        return {}
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
        for ow in np.unique(do).tolist():
            mine = np.unique(db[do == ow])
            others = set(np.unique(do[np.isin(db, mine)]).tolist()) - {ow}
            if not others:
                # the same owner twice (e.g. two extents of one file overlap)
                others = {ow}
            lst, oset = out.setdefault(ow, ([], set()))
            lst.append(mine)
            oset |= others
    return {k: (np.unique(np.concatenate(v[0])), v[1]) for k, v in out.items()}


def pass1b(ctx: Context, st: State, al: Allocator) -> None:
    if ctx.sb.has_ro("shared_blocks"):
        return
    dups = find_dups(st)
    if not dups:
        return
    meta = dups.pop(0, None)
    if meta is not None and 0 in meta[1] and len(meta[1]) == 1:
        # metadata overlapping metadata: bitmaps / tables of two groups collide
        ctx.ask(P.REPAIR_FAILED, why=f"group metadata blocks overlap ({len(meta[0])} blocks)")
    remaining = dict(dups)
    for ino in sorted(remaining):
        blocks, others = remaining[ino]
        shared = ", ".join("<filesystem metadata>" if o == 0 else str(o) for o in sorted(others))
        if ctx.ask(P.DUP_BLOCKS, ino=ino, count=len(blocks), shared=shared):
            # clone unless every other claimant is already gone or cloned
            live = [o for o in others if o == 0 or (o in remaining and o != ino)]
            if not live and 0 not in others:
                continue
            try:
                clone(ctx, st, al, ino, set(blocks.tolist()))
            except RepairError as exc:
                ctx.fail(str(exc))
                continue
            remaining.pop(ino, None)


def clone(ctx: Context, st: State, al: Allocator, ino: int, dup: set[int]) -> None:
    """Give ``ino`` private copies of its blocks in ``dup``: data blocks and the map's own
    blocks (indirect blocks, extent tree nodes) alike, at any depth. A shared map block
    is copied with its pointers already redirected; the other owners keep the original."""
    raw = st.inodes.get(ino)
    if raw is None:
        raise RepairError("inode not loaded")
    moved: dict[int, int] = {}  # old block -> new block, for every block given a copy
    gen = generation_of(raw)
    per = ctx.bs // 4

    def copy_run(start: int, length: int) -> int:
        new = alloc_run(al, length)
        for k in range(length):
            b = start + k
            ctx.write_block(new + k, ctx.block(b) if b < ctx.blocks_count else bytes(ctx.bs))
            moved[b] = new + k
        return new

    def ind(blk: int, level: int) -> int:
        buf = bytearray(ctx.block(blk))
        changed = False
        for i in range(per):
            p = U32.unpack_from(buf, 4 * i)[0]
            if not p or not ctx.valid_block(p):
                continue
            q = ind(p, level - 1) if level > 1 else (copy_run(p, 1) if p in dup else p)
            if q != p:
                U32.pack_into(buf, 4 * i, q)
                changed = True
        target = blk
        if blk in dup:
            target = alloc_run(al, 1)
            moved[blk] = target
            changed = True
        if changed:
            ctx.write_block(target, buf)
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
                cbuf = bytearray(ctx.block(child))
                cchanged = ext_node(cbuf, 0, ctx.bs, depth_left - 1)
                target = child
                if child in dup:
                    target = alloc_run(al, 1)
                    moved[child] = target
                    cchanged = True
                if cchanged:
                    ctx.write_extent_block(target, cbuf, ino, gen)
                if target != child:
                    U32.pack_into(buf, off + 4, target & 0xFFFFFFFF)
                    buf[off + 8: off + 10] = (target >> 32).to_bytes(2, "little")
                    changed = True
            else:
                ln = int.from_bytes(buf[off + 4: off + 6], "little")
                length = ln - 32768 if ln > 32768 else ln
                start = U32.unpack_from(buf, off + 8)[0] | int.from_bytes(buf[off + 6: off + 8], "little") << 32
                if not length or start + length > ctx.blocks_count:
                    continue
                if not any(b in dup for b in range(start, start + length)):
                    continue
                new = copy_run(start, length)
                buf[off + 6: off + 8] = (new >> 32).to_bytes(2, "little")
                U32.pack_into(buf, off + 8, new & 0xFFFFFFFF)
                changed = True
        return changed

    if flags_of(raw) & EXTENTS_FL:
        iblock = bytearray(raw[40:100])
        if ext_node(iblock, 0, 60, 8):
            raw[40:100] = iblock
    else:
        for i in range(12):
            b = U32.unpack_from(raw, 40 + 4 * i)[0]
            if b in dup and ctx.valid_block(b):
                U32.pack_into(raw, 40 + 4 * i, copy_run(b, 1))
        for i, level in ((12, 1), (13, 2), (14, 3)):
            b = U32.unpack_from(raw, 40 + 4 * i)[0]
            if b and ctx.valid_block(b):
                nb = ind(b, level)
                if nb != b:
                    U32.pack_into(raw, 40 + 4 * i, nb)
    if not moved:
        return
    _drop_claims(st, ino, sorted(moved))
    newset = set(moved.values())
    for new in sorted(newset):
        st.claim(new, 1, ino)
    st.extra_blocks = [b for b in st.extra_blocks if b not in newset]
    if ino in st.dirs:
        st.dirs[ino] = [(lb, moved.get(pb, pb)) for lb, pb in st.dirs[ino]]
    st.changed.add(ino)


def alloc_run(al: Allocator, length: int) -> int:
    bm = al._block_map()
    free = ~bm
    if length == 1:
        return al.block(0)
    # first run of `length` free blocks
    f = free.astype(np.int8)
    d = np.diff(np.concatenate(([0], f, [0])))
    starts = np.nonzero(d == 1)[0]
    ends = np.nonzero(d == -1)[0]
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
    from bisect import bisect_left

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
