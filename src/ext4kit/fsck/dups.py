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
    """Give ``ino`` private copies of its blocks in ``dup`` (depth-0 extents, direct and
    single-indirect maps)."""
    raw = st.inodes.get(ino)
    if raw is None:
        raise RepairError("inode not loaded")
    new_runs: list[tuple[int, int]] = []
    if flags_of(raw) & EXTENTS_FL:
        entries = int.from_bytes(raw[42:44], "little")
        depth = int.from_bytes(raw[46:48], "little")
        if depth:
            raise RepairError("cloning blocks of deep extent trees is not supported")
        for i in range(entries):
            off = 52 + 12 * i
            U32.unpack_from(raw, off)[0]
            ln = int.from_bytes(raw[off + 4: off + 6], "little")
            length = ln - 32768 if ln > 32768 else ln
            start = int.from_bytes(raw[off + 8: off + 12], "little") | int.from_bytes(raw[off + 6: off + 8], "little") << 32
            if not any(b in dup for b in range(start, start + length)):
                continue
            newstart = alloc_run(al, length)
            for k in range(length):
                ctx.write_block(newstart + k, ctx.block(start + k) if start + k < ctx.blocks_count else bytes(ctx.bs))
            raw[off + 6: off + 8] = (newstart >> 32).to_bytes(2, "little")
            U32.pack_into(raw, off + 8, newstart & 0xFFFFFFFF)
            new_runs.append((newstart, length))
            _drop_claim(st, ino, start, length)
    else:
        for i in range(12):
            b = U32.unpack_from(raw, 40 + 4 * i)[0]
            if b in dup:
                nb = al.block(b)
                ctx.write_block(nb, ctx.block(b))
                U32.pack_into(raw, 40 + 4 * i, nb)
                new_runs.append((nb, 1))
                _drop_claim(st, ino, b, 1)
        left = dup - {b for b in dup if False}
        ind = U32.unpack_from(raw, 40 + 48)[0]
        rest = {b for b in left if not any(r[0] == b for r in new_runs)}
        if ind and rest:
            raise RepairError("cloning blocks mapped through indirect blocks is not supported")
    for s, n in new_runs:
        st.claim(s, n, ino)
        for k in range(n):
            if s + k in st.extra_blocks:
                st.extra_blocks.remove(s + k)
    st.changed.add(ino)
    _ = generation_of(raw)


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
