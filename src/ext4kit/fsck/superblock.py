"""Before pass 1: superblock and group descriptor sanity (geometry, counts, locations,
checksums, uninit flags) and the orphan list."""

from __future__ import annotations

from ..ondisk.groupdesc import BG_BLOCK_UNINIT, BG_INODE_UNINIT, BG_INODE_ZEROED
from ..ondisk.superblock import COMPAT, INCOMPAT, RO_COMPAT
from . import problems as P
from .context import Abort, Context
from .p0_orphans import release_inode, truncate_inode
from .p0_tables import TablePlan, check_locations
from .state import U16, U32, links_of

MAX_ORPHANS = 100000
COMPAT_RESIZE_INODE = 0x10
INCOMPAT_META_BG = 0x10


def check_super(ctx: Context) -> TablePlan:
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
    if sb.has_incompat("meta_bg"):
        dpb = ctx.bs // sb.desc_size
        desc_blocks = (ctx.ngroups + dpb - 1) // dpb
        if f["s_first_meta_bg"] > desc_blocks:
            if ctx.ask(P.FIRST_META_BG_TOO_BIG, value=f["s_first_meta_bg"], want=desc_blocks):
                f["s_feature_incompat"] &= ~INCOMPAT_META_BG
                f["s_first_meta_bg"] = 0
                ctx.dirty_super()
    plan = check_locations(ctx)
    for g in range(ctx.ngroups):
        gd = ctx.groups[g]
        if ctx.csum_feature:
            want = ctx.gd_checksum(g)
            if want != gd.f["bg_checksum"]:
                if ctx.ask(P.GD_CSUM, group=g, value=gd.f["bg_checksum"], want=want):
                    # e2fsck: a descriptor that fails its checksum cannot be trusted
                    # about lazily-initialised parts: they are all checked
                    gd.f["bg_flags"] = gd.flags & ~(BG_BLOCK_UNINIT | BG_INODE_UNINIT)
                    ctx.set_gd(g, "bg_itable_unused", 0)
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
    # the start of e2fsck's check_resize_inode (pass 1 checks the inode itself)
    if sb.has_compat("resize_inode") and sb.has_incompat("meta_bg"):
        if ctx.ask(P.DISABLE_RESIZE_INODE):
            f["s_feature_compat"] &= ~COMPAT_RESIZE_INODE
            f["s_reserved_gdt_blocks"] = 0
            ctx.dirty_super()
    if not sb.has_compat("resize_inode") and f["s_reserved_gdt_blocks"]:
        if ctx.ask(P.NONZERO_RESERVED_GDT_BLOCKS, value=f["s_reserved_gdt_blocks"]):
            f["s_reserved_gdt_blocks"] = 0
            ctx.dirty_super()
    return plan


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
                if nxt and (nxt < ctx.first_ino or nxt > ctx.inodes_count):
                    ctx.ask(P.ORPHAN_BAD_INODE, ino=nxt)
                    return
                # e2fsck's release_orphan_inode: blocks and inode back to the bitmaps
                release_inode(ctx, ino, raw)
                U32.pack_into(raw, 20, ctx.now)
                ctx.write_inode(ino, raw)
        else:
            # in use: the truncate it waited for
            if ctx.ask(P.ORPHAN_CLEAR, action="Truncating", ino=ino, mode=mode, size=size):
                if nxt and (nxt < ctx.first_ino or nxt > ctx.inodes_count):
                    ctx.ask(P.ORPHAN_BAD_INODE, ino=nxt)
                    return
                # the blocks past i_size go (what cannot be trimmed here: pass 1 judges)
                truncate_inode(ctx, ino, raw)
                U32.pack_into(raw, 20, 0)
                ctx.write_inode(ino, raw)
        ino = nxt
