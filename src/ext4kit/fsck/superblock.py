"""Before pass 1: superblock and group descriptor sanity (geometry, counts, locations,
checksums, uninit flags) and the orphan list."""

from __future__ import annotations

from ..ondisk.groupdesc import BG_BLOCK_UNINIT, BG_INODE_UNINIT, BG_INODE_ZEROED
from ..ondisk.superblock import COMPAT, INCOMPAT, RO_COMPAT
from . import problems as P
from .context import Abort, Context
from .state import U16, U32, links_of

MAX_ORPHANS = 100000


def check_super(ctx: Context) -> None:
    sb = ctx.sb
    f = sb.f
    ctx.bad_tables = set()
    unknown = []
    for field, known, tag in (("s_feature_compat", COMPAT, "C"), ("s_feature_incompat", INCOMPAT, "I"),
                              ("s_feature_ro_compat", RO_COMPAT, "R")):
        v = f[field]
        unknown += [f"FEATURE_{tag}{b}" for b in range(32) if v >> b & 1 and (1 << b) not in known]
    if unknown:
        ctx.ask(P.UNSUPPORTED_FEATURES, names=" ".join(unknown))
        raise Abort("unsupported file system features: " + " ".join(unknown))
    want_inodes = ctx.ngroups * ctx.ipg
    if f["s_inodes_count"] != want_inodes and want_inodes < 1 << 32:
        if ctx.ask(P.INODE_COUNT_WRONG, value=f["s_inodes_count"], want=want_inodes):
            f["s_inodes_count"] = want_inodes
            ctx.inodes_count = want_inodes
            ctx.dirty_super()
    if sb.metadata_csum and not sb.checksum_ok():
        if ctx.ask(P.SB_CSUM):
            ctx.dirty_super()
    if f["s_rev_level"] and ctx.isz > 128:
        for field in ("min", "want"):
            v = f[f"s_{field}_extra_isize"]
            if v > ctx.isz - 128 or v & 3 or (v and v < 4):
                want = min(32, ctx.isz - 128)
                if ctx.ask(P.SB_EXTRA_ISIZE, field=field, value=v, want=want):
                    f[f"s_{field}_extra_isize"] = want
                    ctx.dirty_super()
    flex = sb.has_incompat("flex_bg")
    for g in range(ctx.ngroups):
        gd = ctx.groups[g]
        first = ctx.group_first(g)
        last = first + ctx.group_blocks(g) - 1
        if flex:
            first, last = ctx.first_data_block, ctx.blocks_count - 1
        for _what, blk, n, code in (("bb", gd.block_bitmap, 1, P.BB_NOT_GROUP),
                                   ("ib", gd.inode_bitmap, 1, P.IB_NOT_GROUP),
                                   ("it", gd.inode_table, ctx.itable_blocks, P.ITABLE_NOT_GROUP)):
            if blk < first or blk + n - 1 > last:
                ctx.ask(code, group=g, block=blk)
                ctx.bad_tables.add(g)
        if ctx.csum_feature:
            want = ctx.gd_checksum(g)
            if want != gd.f["bg_checksum"]:
                if ctx.ask(P.GD_CSUM, group=g, value=gd.f["bg_checksum"], want=want):
                    ctx.dirty_group(g)
            if gd.itable_unused > ctx.ipg:
                if ctx.ask(P.GD_ITABLE_UNUSED, group=g, value=gd.itable_unused):
                    ctx.set_gd(g, "bg_itable_unused", 0)
                    gd.f["bg_flags"] = gd.flags & ~BG_INODE_UNINIT
        elif gd.flags & (BG_BLOCK_UNINIT | BG_INODE_UNINIT) or gd.itable_unused:
            if ctx.ask(P.GD_UNINIT_FLAGS, group=g):
                gd.f["bg_flags"] = gd.flags & ~(BG_BLOCK_UNINIT | BG_INODE_UNINIT | BG_INODE_ZEROED)
                ctx.set_gd(g, "bg_itable_unused", 0)
        if g == ctx.ngroups - 1 and ctx.csum_feature and gd.flags & BG_BLOCK_UNINIT:
            if ctx.ask(P.LAST_GROUP_BLOCK_UNINIT, group=g):
                gd.f["bg_flags"] = gd.flags & ~BG_BLOCK_UNINIT
                ctx.dirty_group(g)
        if gd.free_blocks_count > ctx.group_blocks(g):
            if ctx.ask(P.GD_FREE_BLOCKS_BAD, group=g, value=gd.free_blocks_count):
                pass  # pass 5 sets the counted value
        if gd.free_inodes_count > ctx.ipg:
            if ctx.ask(P.GD_FREE_INODES_BAD, group=g, value=gd.free_inodes_count):
                pass
    if ctx.writable and f["s_creator_os"] == 1 and sb.has_incompat("filetype"):
        if ctx.ask(P.HURD_FILETYPE):
            f["s_feature_incompat"] &= ~0x2
            ctx.dirty_super()
    if not sb.has_compat("has_journal") and sb.has_incompat("needs_recovery"):
        if ctx.ask(P.JOURNAL_RECOVER_SET):
            f["s_feature_incompat"] &= ~0x4
            ctx.dirty_super()


def process_orphans(ctx: Context) -> None:
    """Release the inodes on the orphan list (as the kernel would at mount), -p / -y only."""
    sb = ctx.sb
    ino = sb.f["s_last_orphan"]
    if not ino or not ctx.writable:
        return
    sb.f["s_last_orphan"] = 0
    ctx.dirty_super()
    if sb.f["s_state"] & 2:
        return  # errors: the list cannot be trusted; the full check cleans up
    seen: set[int] = set()
    while ino:
        if ino < ctx.first_ino or ino > ctx.inodes_count or ino in seen or len(seen) > MAX_ORPHANS:
            ctx.ask(P.ORPHAN_BAD_INODE if seen else P.ORPHAN_BAD_HEAD, ino=ino)
            return
        seen.add(ino)
        raw = ctx.read_inode(ino)
        nxt = U32.unpack_from(raw, 20)[0]
        mode = U16.unpack_from(raw, 0)[0]
        size = U32.unpack_from(raw, 4)[0] | U32.unpack_from(raw, 108)[0] << 32
        if links_of(raw) == 0:
            if ctx.ask(P.ORPHAN_CLEAR, action="Clearing", ino=ino, mode=mode, size=size):
                U32.pack_into(raw, 20, ctx.now)
                ctx.write_inode(ino, raw)
        else:
            # in use: the truncate it waited for is left to pass 1's size checks
            if ctx.ask(P.ORPHAN_CLEAR, action="Keeping (in use)", ino=ino, mode=mode, size=size):
                U32.pack_into(raw, 20, 0)
                ctx.write_inode(ino, raw)
        ino = nxt
