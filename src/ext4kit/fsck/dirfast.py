"""Pass 2's array path: directory blocks with nothing to report are checked a chunk of
blocks at a time with numpy; every other block goes through ``Pass2.check_block``.

A block takes the array path when every entry passes what ``check_block`` would check
without finding anything: the rec_len chain (lengths, alignment, ending exactly at the
block end or the checksum tail), name lengths, '.' and '..' first in logical block 0,
inode numbers in range, in use, not in an uninitialised inode-table tail, not waiting
for pass 2's judgement, names without '/' or NUL and not '.'/'..', file types that
match the inode, no name twice in the block, and the leaf checksum. Anything else (htree
nodes, encrypted directories, a 64 KiB block size) is the per-block path's business.

The walk of the rec_len chains runs for all blocks of a chunk at once: one numpy step per
entry *position* (the longest chain), not per entry. What the path learns is applied in
block order by ``Pass2.run`` so that "first entry wins" rules (a directory's parent) see
blocks in the same order as the per-block path.
"""

from __future__ import annotations

import numpy as np

from ..ondisk import dirent as de
from .arrays import InodeArrays
from .context import Context
from .scan import live_inodes
from .state import FT_OF_MODE, ROOT_INO, State, flags_of

INDEX_FL = 0x1000
ENCRYPT_FL = 0x800
CHUNK = 4096  # directory blocks per array step
ENABLED = True  # tests turn the array path off to compare its verdicts with check_block's
_PRIME = np.uint64(0x100000001B3)

# file type wanted for each (mode >> 12)
_FT_OF_HI = np.zeros(16, dtype=np.uint8)
for _m, _ft in FT_OF_MODE.items():
    _FT_OF_HI[_m >> 12] = _ft


class Chunk:
    """The array verdict on a run of directory blocks (in work order)."""

    def __init__(self, fast: np.ndarray, targets: list[np.ndarray], subdirs: list[list[tuple[int, bytes]]],
                 dotdot: dict[int, int]):
        self.fast = fast  # per block: no finding
        self.targets = targets  # per block: inode numbers its entries count (incl. '.' and '..')
        self.subdirs = subdirs  # per block: (dir inode, name) of entries naming a directory
        self.dotdot = dotdot  # block index -> '..' inode (logical block 0 only)


def classify(ctx: Context, st: State, work: list[tuple[int, int, int]],
             dx_blocks: dict[int, set[int]], htree_bad: set[int]) -> Chunk:
    """Which of ``work``'s (pblk, ino, lblk) blocks the array path vouches for."""
    bs = ctx.bs
    nb = len(work)
    arrs = InodeArrays.of(st)
    alive = arrs.live(st)
    fast = np.zeros(nb, dtype=bool)
    empty: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * nb
    if bs >= 65536 or nb == 0 or not ENABLED:
        return Chunk(fast, empty, [[] for _ in range(nb)], {})
    # ---- per block: eligibility, its bytes, where its entries end
    datas: list[bytes] = []
    cand = np.zeros(nb, dtype=bool)
    ends = np.zeros(nb, dtype=np.int64)
    zero = bytes(bs)
    csum = ctx.metadata_csum
    for i, (pblk, ino, lblk) in enumerate(work):
        raw = st.inodes.get(ino)
        data = zero
        ok = raw is not None and pblk != 0 and ino not in st.cleared \
            and not (flags_of(raw) & ENCRYPT_FL) \
            and not (lblk in dx_blocks.get(ino, ()) and ino not in htree_bad)
        if ok:
            try:
                data = ctx.block(pblk)
            except (IndexError, OSError):
                ok = False
        end = bs
        if ok and csum:
            mv = memoryview(data)
            if not de.has_tail(mv):
                ok = False
            else:
                assert raw is not None
                end = bs - de.TAIL_SIZE
                gen = raw[100] | raw[101] << 8 | raw[102] << 16 | raw[103] << 24
                ok = de.leaf_checksum(ctx.inode_seed(ino, gen), mv) == de.stored_leaf_checksum(mv)
        datas.append(data if ok else zero)
        cand[i] = ok
        ends[i] = i * bs + end
    buf = np.frombuffer(b"".join(datas), dtype=np.uint8)
    u16 = buf.view("<u2")
    u32 = buf.view("<u4")
    # ---- walk every block's rec_len chain at once
    cur = np.arange(nb, dtype=np.int64) * bs
    active = cand.copy()
    pos_l: list[np.ndarray] = []
    blk_l: list[np.ndarray] = []
    idx_l: list[np.ndarray] = []
    step = 0
    ok_blk = cand.copy()
    while True:
        act = np.nonzero(active)[0]
        if not len(act):
            break
        pos = cur[act]
        rl = u16[pos // 2 + 2].astype(np.int64)
        nl = buf[pos + 6].astype(np.int64)
        nxt = pos + rl
        bad = (rl < 12) | (rl % 4 != 0) | (nxt > ends[act]) | (8 + nl > rl)
        if bad.any():
            ok_blk[act[bad]] = False
            active[act[bad]] = False
        good = ~bad
        pos_l.append(pos[good])
        blk_l.append(act[good])
        idx_l.append(np.full(int(good.sum()), step, dtype=np.int64))
        cur[act] = nxt
        done = good & (nxt == ends[act])
        active[act[done]] = False
        step += 1
    if not pos_l:
        return Chunk(fast, empty, [[] for _ in range(nb)], {})
    pos = np.concatenate(pos_l)
    blk = np.concatenate(blk_l)
    idx = np.concatenate(idx_l)
    keep = ok_blk[blk]
    pos, blk, idx = pos[keep], blk[keep], idx[keep]
    order = np.lexsort((idx, blk))
    pos, blk, idx = pos[order], blk[order], idx[order]
    dino = u32[pos // 4].astype(np.int64)
    rl = u16[pos // 2 + 2].astype(np.int64)
    nl = buf[pos + 6].astype(np.int64)
    ft = buf[pos + 7]
    c0 = buf[pos + 8]
    c1 = buf[np.minimum(pos + 9, len(buf) - 1)]
    lblk0 = np.fromiter((w[2] == 0 for w in work), dtype=bool, count=nb)
    dir_ino = np.fromiter((w[1] for w in work), dtype=np.int64, count=nb)
    first = lblk0[blk] & (idx == 0)
    second = lblk0[blk] & (idx == 1)
    ordinary = ~(first | second)
    bad = np.zeros(len(pos), dtype=bool)
    # '.' then '..' at the start of logical block 0 (rec_len of '.' exactly 12)
    bad |= first & ((dino != dir_ino[blk]) | (nl != 1) | (c0 != 0x2E) | (rl != 12))
    bad |= second & ((nl != 2) | (c0 != 0x2E) | (c1 != 0x2E))
    # a block 0 needs both
    nents = np.bincount(blk, minlength=nb)
    short0 = lblk0 & (nents < 2)
    # ordinary entries naming an inode
    live = ordinary & (dino != 0)
    n_ino = ctx.inodes_count
    inrange = ((dino == ROOT_INO) | (dino >= ctx.first_ino)) & (dino <= n_ino)
    bad |= live & ~inrange
    if ctx.special_inodes:
        bad |= live & np.isin(dino, np.asarray(sorted(ctx.special_inodes), dtype=np.int64))
    d = np.where(live & inrange, dino, 0)
    bad |= live & (nl == 0)
    bad |= live & (d == ROOT_INO)
    bad |= live & ((nl == 1) & (c0 == 0x2E) | (nl == 2) & (c0 == 0x2E) & (c1 == 0x2E))
    found, at = arrs.find(d)
    found &= alive[at]
    tmode = np.where(found, arrs.mode[at], 0)
    used = found & ((arrs.links[at] != 0) | (d < ctx.first_ino))
    bad |= live & ~used
    if ctx.csum_feature:
        lv = np.asarray([live_inodes(ctx, k) for k in range(ctx.ngroups)], dtype=np.int64)
        g = np.where(live, (d - 1) // ctx.ipg, 0)
        gi = np.minimum(g, len(lv) - 1)
        bad |= live & ((g >= len(lv)) | ((d - 1) % ctx.ipg >= lv[gi]))
    if st.bad:
        pend = np.fromiter(st.bad.keys(), dtype=np.int64, count=len(st.bad))
        bad |= live & np.isin(d, pend)
    want_ft = _FT_OF_HI[tmode >> 12] if ctx.filetype else np.zeros(len(d), dtype=np.uint8)
    bad |= live & (ft != want_ft)
    # names: no '/' or NUL; a hash of each for the duplicate check
    maxnl = int(nl[live].max()) if live.any() else 0
    h = nl.astype(np.uint64)
    last = len(buf) - 1
    for k in range(maxnl):
        inname = k < nl
        c = buf[np.minimum(pos + 8 + k, last)]
        bad |= live & inname & ((c == 0x2F) | (c == 0))
        h = np.where(inname, (h ^ c.astype(np.uint64)) * _PRIME, h)
    li = np.nonzero(live)[0]
    if len(li) > 1:
        o = np.lexsort((h[li], blk[li]))
        s = li[o]
        same = (blk[s[1:]] == blk[s[:-1]]) & (h[s[1:]] == h[s[:-1]])
        bad[s[1:][same]] = True  # a duplicate name (or a hash collision): per-block path
    badblk = np.zeros(nb, dtype=bool)
    badblk[blk[bad]] = True
    fast = ok_blk & ~badblk & ~short0
    # ---- what the fast blocks count
    counted = first | second & (dino != 0) | live
    bounds = np.searchsorted(blk, np.arange(nb + 1))
    tgt_all = np.where(counted, dino, -1)
    targets = list(empty)
    subdirs: list[list[tuple[int, bytes]]] = [[] for _ in range(nb)]
    dotdot: dict[int, int] = {}
    dset = [*st.dirs, *st.inline_dirs]
    named = live & (np.isin(d, np.asarray(dset, dtype=np.int64)) | (dir_ino[blk] == ROOT_INO))
    for i in np.nonzero(fast)[0].tolist():
        a, b = int(bounds[i]), int(bounds[i + 1])
        t = tgt_all[a:b]
        targets[i] = t[t >= 0]
        if lblk0[i]:
            dotdot[i] = int(dino[a + 1])
        for j in (np.nonzero(named[a:b])[0] + a).tolist():
            p = int(pos[j])
            subdirs[i].append((int(dino[j]), bytes(buf[p + 8: p + 8 + int(nl[j])])))
    return Chunk(fast, targets, subdirs, dotdot)


def apply(st: State, chunk: Chunk, i: int, ino: int, cleared_at: int, counts: list[np.ndarray]) -> bool:
    """Record fast block ``i`` of directory ``ino`` as ``check_block`` would; False when
    something learnt since ``classify`` (a directory already has a parent, an inode was
    cleared since) sends it to the per-block path instead."""
    if len(st.cleared) != cleared_at:
        tg = chunk.targets[i]
        if len(tg) and np.isin(tg, np.fromiter(st.cleared, dtype=np.int64, count=len(st.cleared))).any():
            return False
    dirs, inline, parent = st.dirs, st.inline_dirs, st.parent
    seen: set[int] = set()
    for t, _name in chunk.subdirs[i]:
        if (t in dirs or t in inline) and (parent.get(t) or t in seen):
            return False
        seen.add(t)
    for t, name in chunk.subdirs[i]:
        if t in dirs or t in inline:
            parent[t] = ino
        if ino == ROOT_INO and name == b"lost+found":
            st.lost_found = t
    if i in chunk.dotdot:
        st.dotdot[ino] = chunk.dotdot[i]
    counts.append(chunk.targets[i])
    return True


def merge_counts(st: State, counts: list[np.ndarray]) -> None:
    """Add the fast blocks' entry counts to ``st.refs``."""
    if not counts:
        return
    allt = np.concatenate(counts)
    refs = st.refs
    if refs:  # what the per-block path counted so far joins in
        allt = np.concatenate([allt, np.repeat(np.fromiter(refs.keys(), dtype=np.int64, count=len(refs)),
                                               np.fromiter(refs.values(), dtype=np.int64, count=len(refs)))])
    allt.sort()
    cut = np.flatnonzero(allt[1:] != allt[:-1]) + 1
    keys = allt[np.concatenate(([0], cut))]
    n = np.diff(np.concatenate(([0], cut, [len(allt)])))
    refs.update(zip(keys.tolist(), n.tolist()))
