"""Pass 5: block and inode bitmaps rebuilt from what passes 1-4 found, compared with the
disk group by group (array operations), then the group and superblock counts, uninit
flags, padding and bitmap checksums."""

from __future__ import annotations

import numpy as np

from ..fs import alloc
from ..ondisk.groupdesc import BG_BLOCK_UNINIT, BG_INODE_UNINIT
from . import problems as P
from .arrays import used_inodes
from .context import Context, pack_bits, unpack_bits
from .state import State


def _ranges(idx: np.ndarray, sign: str, base: int) -> list[tuple[int, int, str]]:
    if len(idx) == 0:
        return []
    idx = idx + base
    breaks = np.nonzero(np.diff(idx) != 1)[0]
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    return [(int(s), int(e), sign) for s, e in zip(starts, ends)]


def _fmt(ranges: list[tuple[int, int, str]], limit: int = 40) -> str:
    parts = []
    for s, e, sign in sorted(ranges)[:limit]:
        parts.append(f"{sign}{s}" if s == e else f"{sign}({s}--{e})")
    if len(ranges) > limit:
        parts.append(f"... ({len(ranges) - limit} more)")
    return " ".join(parts)


class Pass5:
    def __init__(self, ctx: Context, st: State):
        self.ctx = ctx
        self.st = st

    def used_runs(self) -> tuple[np.ndarray, np.ndarray]:
        st = self.st
        starts = np.asarray(st.run_start, dtype=np.int64)
        lens = np.asarray(st.run_len, dtype=np.int64)
        owners = np.asarray(st.run_owner, dtype=np.int64)
        if st.cleared:
            keep = ~np.isin(owners, np.fromiter(st.cleared, dtype=np.int64))
            starts, lens = starts[keep], lens[keep]
        if st.extra_blocks:
            starts = np.concatenate((starts, np.asarray(st.extra_blocks, dtype=np.int64)))
            lens = np.concatenate((lens, np.ones(len(st.extra_blocks), dtype=np.int64)))
        order = np.argsort(starts, kind="stable")
        return starts[order], lens[order]

    def expected_group(self, g: int, starts: np.ndarray, ends: np.ndarray,
                       maxend: np.ndarray) -> np.ndarray:
        ctx = self.ctx
        first = ctx.group_first(g)
        n = ctx.group_blocks(g)
        last = first + n
        bits = np.zeros(n + 1, dtype=np.int32)
        # runs that start before the group end and end after the group start
        hi = int(np.searchsorted(starts, last, side="left"))
        # every run with index < hi and end > first
        lo = int(np.searchsorted(maxend[:hi], first, side="right")) if hi else 0
        s = starts[lo:hi]
        e = ends[lo:hi]
        m = e > first
        s, e = s[m], e[m]
        if len(s):
            s = np.clip(s, first, last) - first
            e = np.clip(e, first, last) - first
            np.add.at(bits, s, 1)
            np.add.at(bits, e, -1)
        used = np.cumsum(bits[:n]) > 0
        return used

    def run(self) -> None:
        self.check_blocks()
        self.check_inodes()

    def uninit_overhead(self, g: int) -> list[tuple[int, int]]:
        """What a BLOCK_UNINIT group's bitmap implicitly holds (alloc.group_layout's
        overhead): its superblock / descriptor copies and every group's bitmaps and inode
        table lying in it. The bitmaps / tables are indexed once for all groups."""
        ctx = self.ctx
        idx = self.__dict__.get("_meta_by_group")
        if idx is None:
            idx = {}
            itb = ctx.itable_blocks
            for gd in ctx.groups:
                for blk, n in ((gd.block_bitmap, 1), (gd.inode_bitmap, 1), (gd.inode_table, itb)):
                    if not (ctx.first_data_block <= blk < ctx.blocks_count):
                        continue
                    end = min(blk + n, ctx.blocks_count)
                    b = blk
                    while b < end:
                        k = ctx.group_of_block(b)
                        gend = min(ctx.group_first(k) + ctx.bpg, end)
                        idx.setdefault(k, []).append((b, gend - b))
                        b = gend
            self._meta_by_group = idx
        return list(alloc.super_and_desc_blocks(ctx.fs, g)) + idx.get(g, [])

    # ------------------------------------------------------------------ blocks
    def check_blocks(self) -> None:
        ctx, st = self.ctx, self.st
        starts, lens = self.used_runs()
        ends = starts + lens
        maxend = np.maximum.accumulate(ends) if len(ends) else ends
        freed = set(st.freed_blocks)
        diffs: list[tuple[int, int, str]] = []
        expected: dict[int, np.ndarray] = {}
        bad_groups: list[int] = []
        total_free = 0
        free_counts: list[int] = []
        bad_tables = ctx.bad_tables
        for g in range(ctx.ngroups):
            gd = ctx.groups[g]
            n = ctx.group_blocks(g)
            first = ctx.group_first(g)
            want = self.expected_group(g, starts, ends, maxend)
            if freed:
                for b in freed:
                    if first <= b < first + n:
                        want[b - first] = False
            uninit = ctx.csum_feature and gd.flags & BG_BLOCK_UNINIT
            if uninit:
                have = np.zeros(n, dtype=bool)
                try:
                    for s0, ln in self.uninit_overhead(g):
                        have[max(0, s0 - first): s0 - first + ln] = True
                except Exception:  # noqa: BLE001
                    pass
                raw = None
            elif ctx.valid_block(gd.block_bitmap) and g not in bad_tables:
                raw = ctx.block(gd.block_bitmap)
                have = unpack_bits(raw, n)
            else:
                raw = None
                have = np.zeros(n, dtype=bool)
            if not np.array_equal(have, want):
                d = np.nonzero(have != want)[0]
                plus = d[want[d]]
                minus = d[~want[d]]
                diffs += _ranges(plus, "+", first)
                diffs += _ranges(minus, "-", first)
                bad_groups.append(g)
            expected[g] = want
            nfree = int(n - np.count_nonzero(want))
            free_counts.append(nfree)
            total_free += nfree
            # padding past the end of the file system in the last group
            if raw is not None and g == ctx.ngroups - 1 and n < ctx.bpg:
                pad = unpack_bits(raw, ctx.bpg)[n:]
                if not pad.all() and g not in bad_groups:
                    if ctx.ask(P.BLOCK_BITMAP_PADDING, group=g):
                        bad_groups.append(g)
            elif raw is not None and g not in bad_groups and not _tail_set(raw, ctx.bpg // 8):
                if ctx.ask(P.BLOCK_BITMAP_PADDING, group=g):
                    bad_groups.append(g)
            if raw is not None and ctx.metadata_csum and g not in bad_groups:
                nbytes = ctx.sb.f["s_clusters_per_group"] // 8
                c = ctx.bitmap_csum(raw, nbytes)
                stored = gd.block_bitmap_csum
                if not gd.is64 or ctx.sb.desc_size < 64:
                    c &= 0xFFFF
                if c != stored:
                    if ctx.ask(P.BLOCK_BITMAP_CSUM, group=g):
                        bad_groups.append(g)
            if not bad_groups or bad_groups[-1] != g:
                del expected[g]  # only rewritten bitmaps are kept (memory on huge images)
        if diffs:
            fix = ctx.ask(P.BLOCK_BITMAP_DIFF, diff=_fmt(diffs), count=len(diffs))
        else:
            fix = True
        if fix and ctx.writable:
            for g in sorted(set(bad_groups)):
                self.write_block_bitmap(g, expected[g])
        for g in range(ctx.ngroups):
            gd = ctx.groups[g]
            if gd.free_blocks_count != free_counts[g]:
                if ctx.ask(P.FREE_BLOCKS_GROUP, group=g, value=gd.free_blocks_count, want=free_counts[g]):
                    ctx.set_gd(g, "bg_free_blocks_count", free_counts[g])
        sbfree = ctx.sb.free_blocks_count
        if sbfree != total_free:
            if ctx.ask(P.FREE_BLOCKS, value=sbfree, want=total_free):
                ctx.sb.free_blocks_count = total_free
                ctx.dirty_super()

    def write_block_bitmap(self, g: int, want: np.ndarray) -> None:
        ctx = self.ctx
        gd = ctx.groups[g]
        if not ctx.valid_block(gd.block_bitmap):
            ctx.fail(f"group {g} has no valid block bitmap block")
            return
        data = pack_bits(want, ctx.bs)
        ctx.write_block(gd.block_bitmap, data)
        if gd.flags & BG_BLOCK_UNINIT:
            gd.f["bg_flags"] = gd.flags & ~BG_BLOCK_UNINIT
        if ctx.metadata_csum:
            c = ctx.bitmap_csum(data, ctx.sb.f["s_clusters_per_group"] // 8)
            ctx.set_gd(g, "bg_block_bitmap_csum", c)
        ctx.dirty_group(g)

    # ------------------------------------------------------------------ inodes
    def check_inodes(self) -> None:
        ctx, st = self.ctx, self.st
        ipg = ctx.ipg
        used_inos = used_inodes(ctx, st)
        dir_inos = [i for i in list(st.dirs) + list(st.inline_dirs) if i not in st.cleared]
        reserved = np.arange(1, min(ctx.first_ino, ctx.inodes_count + 1), dtype=np.int64)
        used_arr = np.concatenate([reserved, used_inos[used_inos > len(reserved)]])
        dir_arr = np.asarray(sorted(set(dir_inos)), dtype=np.int64)
        grp_of_used = (used_arr - 1) // ipg
        grp_of_dir = (dir_arr - 1) // ipg
        dir_counts = np.bincount(grp_of_dir, minlength=ctx.ngroups) if len(dir_arr) else np.zeros(ctx.ngroups, dtype=np.int64)
        bounds = np.searchsorted(grp_of_used, np.arange(ctx.ngroups + 1))
        diffs: list[tuple[int, int, str]] = []
        bad_groups: list[int] = []
        expected: dict[int, np.ndarray] = {}
        free_counts: list[int] = []
        total_free = 0
        bad_tables = ctx.bad_tables
        tails: list[int] = []
        last_used_of: list[int] = []
        for g in range(ctx.ngroups):
            gd = ctx.groups[g]
            idx = used_arr[bounds[g]: bounds[g + 1]] - 1 - g * ipg
            want = np.zeros(ipg, dtype=bool)
            want[idx] = True
            uninit = ctx.csum_feature and gd.flags & BG_INODE_UNINIT
            raw = None
            if uninit:
                have = np.zeros(ipg, dtype=bool)
            elif ctx.valid_block(gd.inode_bitmap) and g not in bad_tables:
                raw = ctx.block(gd.inode_bitmap)
                have = unpack_bits(raw, ipg)
            else:
                have = np.zeros(ipg, dtype=bool)
            if not np.array_equal(have, want):
                d = np.nonzero(have != want)[0]
                diffs += _ranges(d[want[d]], "+", g * ipg + 1)
                diffs += _ranges(d[~want[d]], "-", g * ipg + 1)
                bad_groups.append(g)
            expected[g] = want
            last_used_of.append(int(idx.max()) + 1 if len(idx) else 0)
            nfree = int(ipg - len(idx))
            free_counts.append(nfree)
            total_free += nfree
            if raw is not None and g not in bad_groups and not _tail_set(raw, ipg // 8):
                tails.append(g)
            if raw is not None and ctx.metadata_csum and g not in bad_groups:
                c = ctx.bitmap_csum(raw, ipg // 8)
                if not gd.is64 or ctx.sb.desc_size < 64:
                    c &= 0xFFFF
                if c != gd.inode_bitmap_csum:
                    if ctx.ask(P.INODE_BITMAP_CSUM, group=g):
                        bad_groups.append(g)
            if (not bad_groups or bad_groups[-1] != g) and (not tails or tails[-1] != g):
                del expected[g]
        if tails and ctx.ask(P.INODE_BITMAP_PADDING, group=tails[0]):
            bad_groups += tails
        if diffs:
            fix = ctx.ask(P.INODE_BITMAP_DIFF, diff=_fmt(diffs), count=len(diffs))
        else:
            fix = True
        if fix and ctx.writable:
            for g in sorted(set(bad_groups)):
                self.write_inode_bitmap(g, expected[g])
        for g in range(ctx.ngroups):
            gd = ctx.groups[g]
            if gd.free_inodes_count != free_counts[g]:
                if ctx.ask(P.FREE_INODES_GROUP, group=g, value=gd.free_inodes_count, want=free_counts[g]):
                    ctx.set_gd(g, "bg_free_inodes_count", free_counts[g])
            if gd.used_dirs_count != int(dir_counts[g]):
                if ctx.ask(P.DIRS_GROUP, group=g, value=gd.used_dirs_count, want=int(dir_counts[g])):
                    ctx.set_gd(g, "bg_used_dirs_count", int(dir_counts[g]))
            if ctx.csum_feature and not gd.flags & BG_INODE_UNINIT:
                last_used = last_used_of[g]
                if ipg - gd.itable_unused < last_used:
                    if ctx.ask(P.ITABLE_UNUSED_WRONG, group=g, value=gd.itable_unused, want=ipg - last_used):
                        ctx.set_gd(g, "bg_itable_unused", ipg - last_used)
        sbfree = ctx.sb.f["s_free_inodes_count"]
        if sbfree != total_free:
            if ctx.ask(P.FREE_INODES, value=sbfree, want=total_free):
                ctx.sb.f["s_free_inodes_count"] = total_free
                ctx.dirty_super()

    def write_inode_bitmap(self, g: int, want: np.ndarray) -> None:
        ctx = self.ctx
        gd = ctx.groups[g]
        if not ctx.valid_block(gd.inode_bitmap):
            ctx.fail(f"group {g} has no valid inode bitmap block")
            return
        data = pack_bits(want, ctx.bs)
        ctx.write_block(gd.inode_bitmap, data)
        if gd.flags & BG_INODE_UNINIT:
            gd.f["bg_flags"] = gd.flags & ~BG_INODE_UNINIT
            # the table was never initialised: zero it so no stale inode reappears
            ctx.set_gd(g, "bg_itable_unused", 0)
        if ctx.metadata_csum:
            c = ctx.bitmap_csum(data, ctx.ipg // 8)
            ctx.set_gd(g, "bg_inode_bitmap_csum", c)
        ctx.dirty_group(g)


def _tail_set(raw: bytes, nbytes: int) -> bool:
    """The bytes of a bitmap block past the group's bits are all ones (as written)."""
    tail = raw[nbytes:]
    return not tail or tail.count(0xFF) == len(tail)
