"""Before the journal is replayed: is the journal the superblock names usable?

Follows e2fsck's journal checks: the journal inode (regular, linked, every block of its
size mapped inside the file system, at least 1024 blocks; else the backup copy of its
block map in the superblock, else the journal is deleted), the journal superblock (magic,
block type, features, checksum, block size, length; a corrupt one is rewritten empty),
V2 fields left in a V1 superblock, a journal present while ``has_journal`` is clear, and
the superblock's backup of the journal inode's block map.
"""

from __future__ import annotations

import struct

from ..ondisk.csum import crc32c_raw
from ..ondisk.inode import Inode
from . import problems as P
from .context import Context
from .state import U16, U32

JBD2_MAGIC = 0xC03B3998
MIN_JOURNAL_BLOCKS = 1024
V1_SB_SIZE = 0x24
KNOWN_INCOMPAT = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20
KNOWN_ROCOMPAT = 0
_BE = struct.Struct(">I")

COMPAT_HAS_JOURNAL = 0x4
INCOMPAT_RECOVER = 0x4
INCOMPAT_JOURNAL_DEV = 0x8


def _be(buf: bytes | bytearray, off: int) -> int:
    return int(_BE.unpack_from(buf, off)[0])


def _journal_blocks(ctx: Context, ino: int, raw: bytes | bytearray) -> tuple[list[int] | None, str]:
    """Physical blocks of the journal (logical order), or None and why it is unusable."""
    mode = U16.unpack_from(raw, 0)[0]
    if not U16.unpack_from(raw, 26)[0]:
        return None, "not in use"
    if mode & 0o170000 != 0o100000:
        return None, "not a regular file"
    size = U32.unpack_from(raw, 4)[0] | U32.unpack_from(raw, 108)[0] << 32
    n = size // ctx.bs
    if n < MIN_JOURNAL_BLOCKS:
        return None, "too small"
    if n > ctx.blocks_count:
        return None, "larger than the file system"
    try:
        inode = Inode.parse(ino, bytes(raw[:ctx.isz]))
        runs = ctx.fs.block_map(inode).runs
    except Exception as exc:  # noqa: BLE001 - any unreadable map makes the journal unusable
        return None, f"unreadable block map ({exc})"
    out: list[int] = []
    lo, hi = ctx.first_data_block, ctx.blocks_count
    for r in runs:
        if r.logical != len(out):
            break  # a hole ends the journal
        if r.physical < lo or r.physical + r.length > hi or r.physical == 0:
            return None, "block outside the file system"
        out.extend(range(r.physical, r.physical + min(r.length, n - len(out))))
        if len(out) >= n:
            break
    if len(out) < n:
        return None, "too small (holes in its block map)"
    return out, ""


def _fix_bad_inode(ctx: Context, why: str) -> bool:
    """The journal is unusable: delete it (e2fsck's fix_bad_inode). True when done."""
    f = ctx.sb.f
    has = bool(f["s_feature_compat"] & COMPAT_HAS_JOURNAL)
    if has or f["s_journal_inum"]:
        if ctx.ask(P.JOURNAL_INODE_BAD, ino=f["s_journal_inum"], why=why):
            f["s_feature_compat"] &= ~COMPAT_HAS_JOURNAL
            f["s_journal_inum"] = 0
            f["s_jnl_blocks"] = [0] * 17
            f["s_feature_incompat"] &= ~INCOMPAT_RECOVER
            ctx.dirty_super()
            return True
        ctx.journal_unusable = True  # type: ignore[attr-defined]
        return False
    if f["s_feature_incompat"] & INCOMPAT_RECOVER:
        if ctx.ask(P.JOURNAL_RECOVER_SET):
            f["s_feature_incompat"] &= ~INCOMPAT_RECOVER
            ctx.dirty_super()
    return True


def _reset_super(ctx: Context, blk: int, jsb: bytes, total: int) -> None:
    buf = bytearray(ctx.bs)
    if _be(jsb, 0) == JBD2_MAGIC and _be(jsb, 4) == 3:
        buf[0:8] = jsb[0:8]
    else:
        _BE.pack_into(buf, 0, JBD2_MAGIC)
        _BE.pack_into(buf, 4, 4)
    _BE.pack_into(buf, 12, ctx.bs)
    _BE.pack_into(buf, 16, total)
    _BE.pack_into(buf, 20, 1)
    _BE.pack_into(buf, 24, (ctx.now * 2654435761) & 0xFFFFFFFF or 1)
    ctx.write_block(blk, buf)


def _sb_problem(jsb: bytes, bs: int, total: int) -> tuple[str, str | None]:
    """("corrupt" | "unsupported" | "v1fields" | "multifs" | "", why)."""
    if _be(jsb, 0) != JBD2_MAGIC:
        return "nomagic", "no journal superblock magic"
    btype = _be(jsb, 4)
    compat, incompat, rocompat = _be(jsb, 0x24), _be(jsb, 0x28), _be(jsb, 0x2C)
    nr_users = _be(jsb, 0x40)
    if btype == 3:
        if compat or incompat or rocompat or nr_users:
            return "v1fields", None
        incompat = rocompat = compat = 0
    elif btype == 4:
        if nr_users > 1:
            return "multifs", None
    elif btype in (1, 2, 5):
        return "corrupt", f"block type {btype}"
    else:
        return "unsupported", f"unknown journal superblock version {btype}"
    if incompat & ~KNOWN_INCOMPAT:
        return "unsupported", f"unknown incompatible journal features {incompat & ~KNOWN_INCOMPAT:#x}"
    if rocompat & ~KNOWN_ROCOMPAT:
        return "unsupported", f"unknown read-only journal features {rocompat:#x}"
    csum23 = incompat & 0x18
    if csum23 == 0x18:
        return "corrupt", "both checksum v2 and v3"
    if csum23 and compat & 1:
        return "corrupt", "checksum v1 with v2/v3"
    if csum23:
        if jsb[0x50] != 4:
            return "corrupt", "bad checksum type"
        tmp = bytearray(jsb[:1024])
        want = _be(tmp, 0xFC)
        tmp[0xFC:0x100] = bytes(4)
        if crc32c_raw(0xFFFFFFFF, bytes(tmp)) != want:
            return "corrupt", "journal superblock checksum does not match"
    if _be(jsb, 12) != bs:
        return "corrupt", "block size does not match the file system"
    if _be(jsb, 16) > total:
        return "corrupt", "journal too short"
    return "", None


def check_journal(ctx: Context) -> None:
    f = ctx.sb.f
    has = bool(f["s_feature_compat"] & COMPAT_HAS_JOURNAL)
    recover = bool(f["s_feature_incompat"] & INCOMPAT_RECOVER)
    ino = f["s_journal_inum"]
    if f["s_feature_incompat"] & INCOMPAT_JOURNAL_DEV:
        return
    if not has and not recover and ino == 0 and f["s_journal_dev"] == 0 and not any(f["s_journal_uuid"]):
        return
    if ino == 0:
        if f["s_journal_dev"] or any(f["s_journal_uuid"]):
            return  # an external journal: not ours to check
        _fix_bad_inode(ctx, "no journal inode")
        return
    if ino > ctx.inodes_count:
        _fix_bad_inode(ctx, "inode number out of range")
        return
    raw = ctx.read_inode(ino)
    blocks, why = _journal_blocks(ctx, ino, raw)
    if blocks is None and f["s_jnl_backup_type"] == 1:
        b = bytearray(len(raw))
        for i, v in enumerate(f["s_jnl_blocks"][:15]):
            U32.pack_into(b, 40 + 4 * i, v)
        U32.pack_into(b, 108, f["s_jnl_blocks"][15])
        U32.pack_into(b, 4, f["s_jnl_blocks"][16])
        U16.pack_into(b, 26, 1)
        U16.pack_into(b, 0, 0o100600)
        if b[40:42] == b"\x0a\xf3":  # an extent header: the journal used extents
            U32.pack_into(b, 32, 0x80000)
        if ctx.isz > 128:
            U16.pack_into(b, 128, min(32, ctx.isz - 128))
        bb, _ = _journal_blocks(ctx, ino, b)
        if bb is not None:
            if ctx.ask(P.JOURNAL_FROM_BACKUP, ino=ino):
                nb = bytearray(raw)
                nb[0:len(b)] = b
                U32.pack_into(nb, 28, (len(bb) * ctx.bs) // 512 & 0xFFFFFFFF)
                ctx.write_inode(ino, nb)
                ctx.restart = True
            blocks = bb
    if blocks is None:
        _fix_bad_inode(ctx, why)
        return
    jsb = ctx.block(blocks[0])
    kind, jwhy = _sb_problem(jsb, ctx.bs, len(blocks))
    if kind == "nomagic":
        _fix_bad_inode(ctx, jwhy or "")
        return
    if kind == "v1fields" or (kind == "multifs" and not any(f["s_journal_uuid"])):
        if ctx.ask(P.JOURNAL_V2_FIELDS):
            buf = bytearray(jsb)
            buf[V1_SB_SIZE:] = bytes(len(buf) - V1_SB_SIZE)
            ctx.write_block(blocks[0], buf)
            jsb = bytes(buf)
            kind, jwhy = _sb_problem(jsb, ctx.bs, len(blocks))
        elif kind == "multifs":
            ctx.ask(P.JOURNAL_MULTIFS)
            return
    if kind == "multifs":
        ctx.ask(P.JOURNAL_MULTIFS)
        return
    if kind == "unsupported":
        ctx.ask(P.JOURNAL_UNSUPPORTED, why=jwhy)
        return
    if kind == "corrupt":
        if has:
            if ctx.ask(P.JOURNAL_SB_CORRUPT, why=jwhy):
                _reset_super(ctx, blocks[0], jsb, len(blocks))
                if recover:
                    f["s_feature_incompat"] &= ~INCOMPAT_RECOVER
                    ctx.dirty_super()
            return
        _fix_bad_inode(ctx, jwhy or "")
        return
    if not has:
        if ctx.ask(P.JOURNAL_HAS_JOURNAL, ino=ino):
            f["s_journal_inum"] = 0
            f["s_journal_dev"] = 0
            f["s_journal_uuid"] = bytes(16)
            f["s_feature_incompat"] &= ~INCOMPAT_RECOVER
            ctx.dirty_super()
        return
    if not recover and _be(jsb, 28) != 0:
        # the log holds transactions but the file system does not ask for recovery
        if ctx.ask(P.JOURNAL_RUN_ANYWAY):
            f["s_feature_incompat"] |= INCOMPAT_RECOVER
            ctx.dirty_super()
            ctx.replay_wanted = True  # type: ignore[attr-defined]


def check_journal_backup(ctx: Context) -> None:
    """Keep the superblock's copy of the journal inode's block map current (-p / -y)."""
    f = ctx.sb.f
    if not ctx.writable or not f["s_journal_inum"] or not f["s_feature_compat"] & COMPAT_HAS_JOURNAL:
        return
    if f["s_journal_inum"] > ctx.inodes_count:
        return
    raw = ctx.read_inode(f["s_journal_inum"])
    iblock = [U32.unpack_from(raw, 40 + 4 * i)[0] for i in range(15)]
    if f["s_jnl_backup_type"] == 0 or (f["s_jnl_backup_type"] == 1 and list(f["s_jnl_blocks"][:15]) != iblock):
        if ctx.ask(P.JOURNAL_BACKUP):
            f["s_jnl_blocks"] = iblock + [U32.unpack_from(raw, 108)[0], U32.unpack_from(raw, 4)[0]]
            f["s_jnl_backup_type"] = 1
            ctx.dirty_super()
