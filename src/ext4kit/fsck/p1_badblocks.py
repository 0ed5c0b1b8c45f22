"""Pass 1: the blocks listed in the bad blocks inode (e2fsck's process_bad_block). A bad
block that is file system metadata is reported by what it is: the primary superblock or
descriptors can only be dropped from the list, a backup copy is noted, a bitmap or inode
table would have to move (which we cannot do)."""

from __future__ import annotations

from .context import Context
from .state import State


def where(ctx: Context, blk: int) -> tuple[str, int]:
    """What file system metadata ``blk`` is: (kind, group); kind "" when none."""
    sb = ctx.sb
    dpb = ctx.bs // sb.desc_size
    desc_blocks = (ctx.ngroups + dpb - 1) // dpb
    first = ctx.first_data_block
    for g in range(ctx.ngroups):
        if sb.is_sparse_group(g):
            if blk == first:
                return ("primary_super" if g == 0 else "backup_super"), g
            if first < blk <= first + desc_blocks:
                return ("primary_gdt" if g == 0 else "backup_gdt"), g
        gd = ctx.groups[g]
        if blk == gd.block_bitmap:
            return "block_bitmap", g
        if blk == gd.inode_bitmap:
            return "inode_bitmap", g
        if gd.inode_table <= blk < gd.inode_table + ctx.itable_blocks:
            return "inode_table", g
        first += ctx.bpg
    return "", -1


def claimed(st: State, blk: int, extra: list[tuple[int, int]]) -> bool:
    """True when ``blk`` is already in use (claims so far, plus ``extra`` runs)."""
    for s, n in extra:
        if s <= blk < s + n:
            return True
    return any(s <= blk < s + n for s, n in zip(st.run_start, st.run_len))


def listed_blocks(ctx: Context) -> list[int]:
    """The valid blocks the bad blocks inode lists (its data blocks), read before the
    inode scan so inodes lying in a listed inode-table block can be skipped."""
    import struct

    try:
        raw = ctx.read_inode(1)
    except (IndexError, OSError):
        return []
    mode = struct.unpack_from("<H", raw, 0)[0]
    flags = struct.unpack_from("<I", raw, 32)[0]
    if (mode and mode & 0o170000 != 0o100000) or flags & (0x80000 | 0x10000000):
        return []
    ptrs = struct.unpack_from("<15I", raw, 40)
    out = [b for b in ptrs[:12] if b and ctx.valid_block(b)]
    per = ctx.bs // 4
    budget = [4096]

    def walk(blk: int, level: int) -> None:
        if not ctx.valid_block(blk) or budget[0] <= 0:
            return
        budget[0] -= 1
        try:
            words = struct.unpack_from(f"<{per}I", ctx.block(blk))
        except (IndexError, OSError):
            return
        for w in words:
            if not w:
                continue
            if level == 1:
                if ctx.valid_block(w):
                    out.append(w)
            else:
                walk(w, level - 1)

    for slot, level in ((12, 1), (13, 2), (14, 3)):
        if ptrs[slot]:
            walk(ptrs[slot], level)
    return out


def inodes_in_bad_blocks(ctx: Context, blocks: list[int]) -> set[int]:
    """Inodes stored in inode-table blocks the bad blocks inode lists (e2fsck skips them
    in pass 1 and keeps them marked in use)."""
    out: set[int] = set()
    per_block = ctx.bs // ctx.isz
    if not per_block:
        return out
    for b in set(blocks):
        kind, g = where(ctx, b)
        if kind != "inode_table":
            continue
        first = g * ctx.ipg + (b - ctx.groups[g].inode_table) * per_block + 1
        out.update(i for i in range(first, first + per_block) if i <= min((g + 1) * ctx.ipg, ctx.inodes_count))
    return out


def relocate_tables(ctx: Context, st: State, todo: list[tuple[int, str, int]]) -> None:
    """Move group bitmaps that lie on listed bad blocks to free blocks (the group's own
    first, else anywhere); the contents are copied, the descriptor updated."""
    from .dups import _drop_claims
    from .repair import Allocator

    if not todo:
        return
    bm = Allocator(ctx, st)._block_map()
    for g, kind, old in todo:
        first = ctx.group_first(g)
        last = first + ctx.group_blocks(g)
        free = (~bm[first:last]).nonzero()[0]
        if len(free):
            new = first + int(free[0])
        else:
            anyfree = (~bm[: ctx.blocks_count]).nonzero()[0]
            if not len(anyfree):
                continue  # nowhere to go: the next run asks again
            new = int(anyfree[0])
        bm[new] = True
        try:
            data = ctx.block(old)
        except (IndexError, OSError):
            data = bytes(ctx.bs)
        ctx.write_block(new, data)
        ctx.set_gd(g, "bg_block_bitmap" if kind == "block_bitmap" else "bg_inode_bitmap", new)
        _drop_claims(st, 0, [old])
        st.claim(new, 1, 0)
        ctx.dirty_super()
