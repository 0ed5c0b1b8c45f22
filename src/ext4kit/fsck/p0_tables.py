"""Where each group's block bitmap, inode bitmap and inode table live, and moving them when
that place is invalid (e2fsck: ext2fs_check_desc at open, check_super_block's location
checks, pass 1's mark_table_blocks conflicts and handle_fs_bad_blocks / new_table_block
after the inode scan).

A location outside its group (anywhere outside the file system with flex_bg) is reported
by pass 0 and, when the fix is accepted, forgotten (set to 0); a location that collides
with other file system metadata (a superblock / descriptor copy or an earlier group's
table, in e2fsck's marking order) is reported as a conflict. Either way, once pass 1 has
found every block in use, the table gets a new home: the first free run of blocks in its
group (its flex group, then anywhere, with flex_bg); a conflicting table is copied there,
a forgotten one starts zeroed, and pass 5 then rebuilds the bitmaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..fs import alloc
from ..fs.filesystem import FileSystem
from . import problems as P
from .context import Abort, Context
from .state import State

KINDS = ("bb", "ib", "it")
FIELD = {"bb": "bg_block_bitmap", "ib": "bg_inode_bitmap", "it": "bg_inode_table"}
NAME = {"bb": "block bitmap", "ib": "inode bitmap", "it": "inode table"}


@dataclass
class TablePlan:
    """What pass 0 decided about the group tables of one run."""

    # (group, kind) -> old location (0: nothing worth copying) for tables to move
    move: dict[tuple[int, str], int] = field(default_factory=dict)
    # (start, length) claims pass 1 made for tables e2fsck does not mark (conflicts)
    unclaim: list[tuple[int, int]] = field(default_factory=list)


def _loc(gd: object, kind: str) -> int:
    return int(getattr(gd, {"bb": "block_bitmap", "ib": "inode_bitmap", "it": "inode_table"}[kind]))


def _group_range(fs: FileSystem, g: int) -> tuple[int, int]:
    first = alloc.group_first_block(fs, g)
    return first, first + alloc.blocks_in_group(fs, g) - 1


def _itable_blocks(fs: FileSystem) -> int:
    return alloc.inode_table_blocks(fs)


def check_desc(fs: FileSystem) -> str | None:
    """ext2fs_check_desc: None when every group's bitmaps and inode table lie inside the
    group (the file system with flex_bg) and collide with nothing, else what is wrong."""
    sb = fs.sb
    flex = sb.has_incompat("flex_bg")
    fdb = sb.f["s_first_data_block"]
    last_fs = fs.blocks_count - 1
    itb = _itable_blocks(fs)
    starts: list[int] = []
    lens: list[int] = []
    table: list[bool] = []
    try:
        for g in range(fs.group_count):
            for s, n in alloc.super_and_desc_blocks(fs, g):
                starts.append(s)
                lens.append(n)
                table.append(False)
    except Exception:  # noqa: BLE001 - geometry problems are pass 0's
        pass
    for g, gd in enumerate(fs.groups):
        first, last = (fdb, last_fs) if flex else _group_range(fs, g)
        for kind in ("bb", "ib", "it"):
            blk = _loc(gd, kind)
            n = itb if kind == "it" else 1
            if blk < first or blk + n - 1 > last:
                return f"bad block for {NAME[kind]}"
            starts.append(blk)
            lens.append(n)
            table.append(True)
    if _overlaps(starts, lens, table):
        return "group metadata blocks overlap"
    return None


def _overlaps(starts: list[int], lens: list[int], table: list[bool]) -> bool:
    """Any table interval overlapping another interval."""
    if not starts:
        return False
    s = np.asarray(starts, dtype=np.int64)
    e = s + np.asarray(lens, dtype=np.int64)
    t = np.asarray(table, dtype=bool)
    order = np.lexsort((~t, s))
    s, e, t = s[order], e[order], t[order]
    runmax = np.maximum.accumulate(e)
    hit = np.nonzero(s[1:] < runmax[:-1])[0] + 1
    if len(hit) == 0:
        return False
    if t[hit].any():
        return True
    # an overlap between two superblock / descriptor ranges only counts when a table
    # is part of the same cluster
    for i in hit:
        j = i - 1
        while j >= 0 and e[j] <= s[i]:
            j -= 1
        if j >= 0 and t[j]:
            return True
    return False


def check_locations(ctx: Context) -> TablePlan:
    """check_super_block's location checks and pass 1's mark_table_blocks conflicts."""
    fs = ctx.fs
    plan = TablePlan()
    flex = ctx.sb.has_incompat("flex_bg")
    itb = ctx.itable_blocks
    for g in range(ctx.ngroups):
        gd = ctx.groups[g]
        if flex:
            first, last = ctx.first_data_block, ctx.blocks_count - 1
        else:
            first, last = _group_range(fs, g)
        for kind, code in (("bb", P.BB_NOT_GROUP), ("ib", P.IB_NOT_GROUP), ("it", P.ITABLE_NOT_GROUP)):
            blk = _loc(gd, kind)
            n = itb if kind == "it" else 1
            if blk < first or blk + n - 1 > last:
                if ctx.ask(code, group=g, block=blk):
                    ctx.set_gd(g, FIELD[kind], 0)
                    blk = 0
                else:
                    ctx.bad_tables.add(g)
                    continue
            if blk == 0:
                if ctx.writable:
                    plan.move[(g, kind)] = 0
                else:
                    ctx.bad_tables.add(g)
    _conflicts(ctx, plan)
    return plan


def _conflicts(ctx: Context, plan: TablePlan) -> None:
    """mark_table_blocks: in group order, each group's superblock / descriptor copies are
    marked, then its inode table, block bitmap and inode bitmap are each tested against
    what is already marked; a table that collides is not marked and is to be moved."""
    fs = ctx.fs
    itb = ctx.itable_blocks
    items: list[tuple[int, str, int, int]] = []  # (group, kind, start, length) in order
    for g in range(ctx.ngroups):
        try:
            for s, n in alloc.super_and_desc_blocks(fs, g):
                items.append((g, "sb", s, n))
        except Exception:  # noqa: BLE001
            pass
        if g in ctx.bad_tables:
            continue
        gd = ctx.groups[g]
        for kind in ("it", "bb", "ib"):
            if (g, kind) in plan.move:
                continue
            blk = _loc(gd, kind)
            n = itb if kind == "it" else 1
            if blk and ctx.first_data_block <= blk and blk + n <= ctx.blocks_count:
                items.append((g, kind, blk, n))
    if not items:
        return
    st_a = np.asarray([it[2] for it in items], dtype=np.int64)
    en_a = st_a + np.asarray([it[3] for it in items], dtype=np.int64)
    order = np.argsort(st_a, kind="stable")
    ss, ee = st_a[order], en_a[order]
    runmax = np.maximum.accumulate(ee)
    if not (ss[1:] < runmax[:-1]).any():
        return
    # the intervals that overlap some other one: replay the marking over just those
    involved = np.zeros(len(items), dtype=bool)
    for k in np.nonzero(ss[1:] < runmax[:-1])[0] + 1:
        i = int(order[k])
        involved[i] = True
        j = k - 1
        while j >= 0 and runmax[j] > ss[k]:
            if ee[j] > ss[k]:
                involved[int(order[j])] = True
            j -= 1
    marked: set[int] = set()
    codes = {"it": P.ITABLE_CONFLICT, "bb": P.BB_CONFLICT, "ib": P.IB_CONFLICT}
    for idx, (g, kind, blk, n) in enumerate(items):
        if not involved[idx]:
            continue
        rng = range(blk, blk + n)
        if kind == "sb":
            marked.update(rng)
            continue
        clash = [b for b in rng if b in marked]
        if not clash:
            marked.update(rng)
            continue
        marked.update(rng)
        plan.unclaim.append((blk, n))
        if ctx.ask(codes[kind], group=g, block=clash[0]) and ctx.writable:
            plan.move[(g, kind)] = blk


def drop_claims(st: State, plan: TablePlan) -> None:
    """Forget pass 1's metadata claims for tables e2fsck does not mark (one claim per
    conflicting table: the other owner of the blocks keeps its own)."""
    if not plan.unclaim:
        return
    want = list(plan.unclaim)
    for i in range(len(st.run_start)):
        if st.run_owner[i] != 0:
            continue
        key = (st.run_start[i], st.run_len[i])
        if key in want:
            want.remove(key)
            st.run_len[i] = 0
            if not want:
                break


def _free_run(bm: np.ndarray, start: int, finish: int, num: int, total: int) -> int | None:
    """ext2fs_get_free_blocks2 over ``bm`` (True = in use): the first b in [start, finish)
    with blocks b .. b+num-1 free and inside the file system."""
    hi = min(finish + num - 1, total)
    if start >= hi:
        return None
    free = ~bm[start:hi]
    if len(free) < num:
        return None
    cs = np.concatenate(([0], np.cumsum(free, dtype=np.int64)))
    ok = np.nonzero(cs[num:] - cs[:-num] == num)[0]
    ok = ok[ok + start < finish]
    return int(ok[0]) + start if len(ok) else None


def relocate(ctx: Context, st: State, bm: np.ndarray, mark: object, plan: TablePlan) -> None:
    """handle_fs_bad_blocks: give every table in ``plan.move`` a new home (``bm`` is the
    in-use block map after pass 1, ``mark(b)`` records a block the repair now uses)."""
    if not plan.move or not ctx.writable:
        return
    fs = ctx.fs
    sb = ctx.sb
    flex = sb.has_incompat("flex_bg")
    total = ctx.blocks_count
    for g in range(ctx.ngroups):
        for kind in ("bb", "ib", "it"):
            if (g, kind) not in plan.move:
                continue
            old = plan.move[(g, kind)]
            num = ctx.itable_blocks if kind == "it" else 1
            if flex:
                size = 1 << sb.f["s_log_groups_per_flex"]
                fg = g // size
                first = alloc.group_first_block(fs, size * fg)
                last_grp = min(g | (size - 1), ctx.ngroups - 1)
                last = _group_range(fs, last_grp)[1]
            else:
                first, last = _group_range(fs, g)
            new = _free_run(bm, first, last, num, total)
            if new is None and flex:
                new = _free_run(bm, ctx.first_data_block, total, num, total)
            if new is None:
                ctx.ask(P.RELOC_NO_SPACE, group=g, what=NAME[kind], count=num)
                raise Abort(f"no space to relocate group {g}'s {NAME[kind]}")
            if old:
                ctx.ask(P.RELOC_FROM_TO, group=g, what=NAME[kind], block=old, new=new)
                data = [ctx.block(old + i) if 0 <= old + i < total else bytes(ctx.bs)
                        for i in range(num)]
            else:
                ctx.ask(P.RELOC_TO, group=g, what=NAME[kind], new=new)
                data = [bytes(ctx.bs)] * num
            bm[new: new + num] = True
            for i in range(num):
                mark(new + i)  # type: ignore[operator]
                ctx.write_block(new + i, data[i])
            ctx.set_gd(g, FIELD[kind], new)
