"""Pass 1: every inode — mode, flags, dtime, size, i_blocks, block maps (extent trees and
indirect maps), inline data, xattr blocks; records block claims for pass 1B and pass 5 and
directory blocks for pass 2."""

from __future__ import annotations

import struct

import numpy as np

from ..fs import alloc
from ..ondisk import extent as ext
from ..ondisk import xattr as xa
from . import fastpath
from . import problems as P
from .context import Context
from .dups import _drop_claims
from .p1_badblocks import claimed, inodes_in_bad_blocks, listed_blocks, relocate_tables, where
from .p1_extents import blocks_needed, build_tree, max_extent_depth
from .p1_really_dir import looks_like_dir, set_dir_mode
from .p1_xattr import (
    apply_pending,
    check_large_ea_inode,
    ea_inode_ref,
    entry_hash_ok,
    inline_ea_ok,
    set_ea_inode_ref,
)
from .scan import scan
from .state import (
    BAD_INO,
    JOURNAL_INO,
    RESIZE_INO,
    ROOT_INO,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    U16,
    U32,
    State,
    file_acl_of,
    flags_of,
    generation_of,
    links_of,
    mode_of,
    set_size,
    size_of,
)

EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
INDEX_FL = 0x1000
IMAGIC_FL = 0x2000
HUGE_FILE_FL = 0x40000
IMMUTABLE_FL = 0x10
APPEND_FL = 0x20
COMPR_FL = 0x4
ENCRYPT_FL = 0x800
VERITY_FL = 0x100000
EA_INODE_FL = 0x200000
EXT_MAGIC = 0xF30A
MAX_EXTENT_DEPTH = 5
_HDR = struct.Struct("<HHHHI")
_ENT = struct.Struct("<IHHI")
_IDX = struct.Struct("<IIHH")

_KIND = {S_IFCHR: "character device", S_IFBLK: "block device", S_IFIFO: "named pipe",
         S_IFSOCK: "socket"}


def max_indirect_size(bs: int) -> int:
    ppb = bs // 4
    return (12 + ppb + ppb * ppb + ppb * ppb * ppb) * bs


def header_ok(buf: bytes | bytearray, off: int, size: int) -> str | None:
    """None when the extent header at ``off`` (node of ``size`` bytes) verifies, else why."""
    magic, entries, eh_max, depth, _ = _HDR.unpack_from(buf, off)
    if magic != EXT_MAGIC:
        return "bad magic"
    if entries > eh_max:
        return "entries > max"
    want = (size - 12) // 12
    if eh_max > want or eh_max < want - 2:
        return "bad max"
    return None


class BlockWalk:
    """The block claims and counters of one inode (like e2fsck's process_block_struct)."""

    __slots__ = ("ino", "raw", "is_dir", "is_reg", "num_blocks", "last_block", "last_init", "leaf_last",
                 "dir_blocks", "illegal", "clear", "modified", "runs", "gen", "rebuild", "extents",
                 "nodes")

    def __init__(self, ino: int, raw: bytearray, is_dir: bool, is_reg: bool):
        self.ino = ino
        self.raw = raw
        self.is_dir = is_dir
        self.is_reg = is_reg
        self.num_blocks = 0
        self.last_block = -1
        self.leaf_last = -1
        self.last_init = -1
        self.dir_blocks: list[tuple[int, int]] = []
        self.illegal = 0
        self.clear = False
        self.modified = False
        self.runs: list[tuple[int, int]] = []
        self.gen = generation_of(raw)
        self.rebuild = False  # the extent tree is to be rebuilt (leaf records, node blocks)
        self.extents: list[bytes] = []
        self.nodes: list[int] = []


class Pass1:
    def __init__(self, ctx: Context, st: State):
        self.ctx = ctx
        self.st = st
        sb = ctx.sb
        self.bad_tables: set[int] = ctx.bad_tables
        self.quota_inos = {sb.f[k] for k in ("s_usr_quota_inum", "s_grp_quota_inum", "s_prj_quota_inum")
                           if sb.f.get(k)} if sb.has_ro("quota") else set()
        self.journal_ino = sb.f["s_journal_inum"] if sb.has_compat("has_journal") else 0
        self.max_ind = max_indirect_size(ctx.bs)
        self.ea_quota: dict[int, int] = {}
        self.ea_pending: dict[int, bytearray] = {}
        self.rebuilds: list[tuple[int, list[bytes], list[int]]] = []
        self.relocs: list[tuple[int, str, int]] = []  # bitmaps on bad blocks to move

    # ------------------------------------------------------------------ metadata
    def mark_metadata(self) -> None:
        ctx, st = self.ctx, self.st
        fs = ctx.fs
        if ctx.first_data_block:
            pass  # block 0 of a 1 KiB file system is the boot block, outside every group
        for g in range(ctx.ngroups):
            try:
                for s, n in alloc.super_and_desc_blocks(fs, g):
                    st.claim(s, n, 0)
            except Exception:  # noqa: BLE001 - geometry already reported in pass 0
                pass
            gd = ctx.groups[g]
            if g in self.bad_tables:
                continue
            for blk, n in ((gd.block_bitmap, 1), (gd.inode_bitmap, 1), (gd.inode_table, ctx.itable_blocks)):
                if blk and blk + n <= ctx.blocks_count:
                    st.claim(blk, n, 0)

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        self.mark_metadata()
        self.st.bb_inodes = inodes_in_bad_blocks(self.ctx, listed_blocks(self.ctx))
        self.st.bb_inodes.discard(BAD_INO)
        for ino, raw, csum_ok in scan(self.ctx, self.fast_rows):
            self.check_inode(ino, bytearray(raw), csum_ok)

    def fast_rows(self, rows: np.ndarray, inos: np.ndarray) -> np.ndarray:
        """The array path (fastpath.py) for the common regular file; the mask it took."""
        special = {self.journal_ino, *self.quota_inos} - {0}
        cand = fastpath.simple_mask(self.ctx, rows, inos)
        if self.st.bb_inodes:
            cand &= ~np.isin(inos, np.fromiter(self.st.bb_inodes, dtype=np.int64))
        if special:
            cand &= ~np.isin(inos, np.fromiter(special, dtype=np.int64))
        took = np.zeros(len(inos), dtype=bool)
        idx = np.nonzero(cand)[0]
        if len(idx):
            took[idx] = fastpath.take(self.ctx, self.st, rows[idx], inos[idx])
        return took

    def write(self, ino: int, raw: bytearray) -> None:
        self.st.inodes[ino] = raw
        self.st.changed.add(ino)

    def clear_inode(self, ino: int, raw: bytearray) -> None:
        """e2fsck_clear_inode: links 0, dtime now; the blocks are released in pass 5."""
        U16.pack_into(raw, 26, 0)
        U32.pack_into(raw, 20, self.ctx.now)
        if ino < self.ctx.first_ino:
            raw[40:100] = bytes(60)
        self.st.cleared.add(ino)
        self.st.dirs.pop(ino, None)
        self.st.inline_dirs.discard(ino)
        self.write(ino, raw)

    def finish(self, ino: int, raw: bytearray, csum_ok: bool) -> None:
        if not csum_ok and ino not in self.st.changed and ino not in self.st.cleared:
            if self.ctx.ask(P.INODE_CSUM, ino=ino):
                self.write(ino, raw)

    def check_inode(self, ino: int, raw: bytearray, csum_ok: bool) -> None:
        ctx, st = self.ctx, self.st
        if ino in st.bb_inodes:
            return  # in a bad inode-table block: not read (e2fsck's inode_bb_map)
        links = links_of(raw)
        mode = mode_of(raw)
        dtime = U32.unpack_from(raw, 20)[0]
        if ino >= ctx.first_ino and links == 0 and ino not in self.quota_inos:
            if dtime == 0 and mode != 0:
                if ctx.ask(P.ZERO_DTIME, ino=ino):
                    U32.pack_into(raw, 20, ctx.now)
                    self.write(ino, raw)
                    st.inodes.pop(ino, None)
                    return
            self.finish(ino, raw, csum_ok)
            st.inodes.pop(ino, None)
            return
        if ino == BAD_INO:
            self.check_bad_blocks_inode(raw)
            self.finish(ino, raw, csum_ok)
            return
        if ino == ROOT_INO:
            if mode & S_IFMT != S_IFDIR:
                if mode == 0 and links == 0 and not any(raw[40:100]):
                    return  # nothing there: pass 3 reports the missing root
                if ctx.ask(P.ROOT_NOT_DIR):
                    self.clear_inode(ino, raw)
                    return
            elif dtime and links:
                if ctx.ask(P.ROOT_DTIME):
                    U32.pack_into(raw, 20, 0)
                    self.write(ino, raw)
            if links == 0 and mode & S_IFMT == S_IFDIR:
                # e2fsck checks the root whatever its link count; pass 4 fixes the count
                pass
        elif ino == JOURNAL_INO or (ino == self.journal_ino and ino >= ctx.first_ino):
            if ino == self.journal_ino:
                if mode & S_IFMT != S_IFREG:
                    if ctx.ask(P.JOURNAL_INODE_BAD, ino=ino, why="not a regular file"):
                        U16.pack_into(raw, 0, S_IFREG | (mode & 0o7777))
                        self.write(ino, raw)
                self.check_blocks(ino, raw)
                st.inodes[ino] = raw
                self.finish(ino, raw, csum_ok)
                return
            if links or U32.unpack_from(raw, 28)[0] or U32.unpack_from(raw, 40)[0]:
                if ctx.ask(P.HAS_JOURNAL_CLEAR, ino=ino):
                    raw[:] = bytes(len(raw))
                    self.write(ino, raw)
                    st.cleared.add(ino)
                else:
                    st.inodes[ino] = raw
                    self.check_blocks(ino, raw)
            self.finish(ino, raw, csum_ok)
            return
        elif ino in self.quota_inos:
            st.inodes[ino] = raw
            self.check_blocks(ino, raw)
            self.finish(ino, raw, csum_ok)
            return
        elif ino < ctx.first_ino:
            bad = False
            if ino == 5:
                bad = mode & S_IFMT == S_IFDIR
            elif ino == RESIZE_INO:
                bad = mode != 0 and mode & S_IFMT != S_IFREG
            elif ino in (3, 4) and not ctx.sb.has_ro("quota"):
                bad = False
                if links or U32.unpack_from(raw, 28)[0] or U32.unpack_from(raw, 40)[0]:
                    bad = mode != 0 and mode & S_IFMT != S_IFREG
            else:
                bad = mode != 0
            if bad and ctx.ask(P.RESERVED_BAD_MODE, ino=ino, mode=mode):
                U16.pack_into(raw, 0, 0)
                self.write(ino, raw)
            if ino == RESIZE_INO:
                self.check_resize_inode(raw)
            else:
                st.inodes[ino] = raw
                self.check_blocks(ino, raw)
            self.finish(ino, raw, csum_ok)
            return
        if links == 0:
            # the root with no links (pass 4 fixes the count)
            pass
        # ---------------------------------------------------------- a regular in-use inode
        st.inodes[ino] = raw
        if dtime and ino != ROOT_INO:
            if ctx.ask(P.SET_DTIME, ino=ino):
                U32.pack_into(raw, 20, 0)
                self.write(ino, raw)
        flags = flags_of(raw)
        if flags & IMAGIC_FL and not ctx.sb.has_compat("imagic_inodes"):
            if ctx.ask(P.IMAGIC, ino=ino):
                U32.pack_into(raw, 32, flags & ~IMAGIC_FL)
                flags &= ~IMAGIC_FL
                self.write(ino, raw)
        if ctx.isz > 128:
            extra = U16.unpack_from(raw, 128)[0]
            if extra and (extra < 4 or extra > ctx.isz - 128 or extra & 3):
                if ctx.ask(P.EXTRA_ISIZE, ino=ino, value=extra):
                    want = ctx.sb.f.get("s_want_extra_isize") or 32
                    if want < 4 or want > ctx.isz - 128 or want & 3:
                        want = min(32, ctx.isz - 128)
                    U16.pack_into(raw, 128, want)
                    self.write(ino, raw)
        ftype = mode & S_IFMT
        if flags & INLINE_DATA_FL and not ctx.inline_data:
            if ctx.ask(P.INLINE_FEATURE, ino=ino):
                self.clear_inode(ino, raw)
                return
        if flags & INLINE_DATA_FL and ctx.inline_data and ino >= ctx.first_ino and not inline_ea_ok(ctx, raw):
            if ctx.ask(P.INLINE_NO_EA, ino=ino):
                set_size(raw, 0)
                flags &= ~INLINE_DATA_FL
                U32.pack_into(raw, 32, flags)
                raw[40:100] = bytes(60)
                self.write(ino, raw)
        if flags & EXTENTS_FL and not ctx.extents:
            if ftype in (S_IFREG, S_IFDIR, S_IFLNK) and header_ok(raw, 40, 60) is None:
                if ctx.ask(P.EXTENT_FEATURE, ino=ino):
                    ctx.sb.f["s_feature_incompat"] |= 0x40
                    ctx.extents = True
                    ctx.dirty_super()
            elif ctx.ask(P.EXTENT_HEADER, ino=ino, block=0, depth=0, why="extent flag set without the extent feature"):
                self.clear_inode(ino, raw)
                return
        if (ctx.extents and not flags & (EXTENTS_FL | INLINE_DATA_FL)
                and ftype in (S_IFREG, S_IFDIR) and header_ok(raw, 40, 60) is None
                and U16.unpack_from(raw, 46)[0] <= MAX_EXTENT_DEPTH):
            if ctx.ask(P.EXTENTS_FL_MISSING, ino=ino):
                flags |= EXTENTS_FL
                U32.pack_into(raw, 32, flags)
                self.write(ino, raw)
        if ftype not in (S_IFDIR, S_IFREG, S_IFLNK) and looks_like_dir(ctx, st, ino, raw):
            if ctx.ask(P.TREAT_AS_DIRECTORY, ino=ino, what=_KIND.get(ftype, "special file")):
                set_dir_mode(raw)
                self.write(ino, raw)
                mode = mode_of(raw)
                ftype = S_IFDIR
        if flags & INDEX_FL and (ftype != S_IFDIR or not ctx.dir_index):
            if ctx.ask(P.HTREE_NO_FEATURE, ino=ino):
                flags &= ~INDEX_FL
                U32.pack_into(raw, 32, flags)
                self.write(ino, raw)
        if ftype == S_IFDIR:
            if flags & INLINE_DATA_FL:
                st.inline_dirs.add(ino)
            else:
                st.dirs[ino] = []
        elif ftype == S_IFREG:
            pass
        elif ftype in (S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
            if not check_device(raw):
                st.bad[ino] = "device"
            else:
                self.check_special(ino, raw, flags)
        elif ftype == S_IFLNK:
            why = self.check_symlink(ino, raw)
            if why is not None:
                st.bad[ino] = "symlink: " + why
        else:
            st.bad[ino] = "mode"
        if not self.misc_checks(ino, raw, flags, ftype):
            pass
        self.check_blocks(ino, raw)
        self.finish(ino, raw, csum_ok)

    def misc_checks(self, ino: int, raw: bytearray, flags: int, ftype: int) -> bool:
        ctx, st = self.ctx, self.st
        if U32.unpack_from(raw, 112)[0]:  # i_faddr
            st.bad.setdefault(ino, "faddr")
        if not ctx.huge_file and U16.unpack_from(raw, 116)[0] and ctx.sb.f["s_creator_os"] == 0:
            st.bad.setdefault(ino, "blocks_hi")
        if not ctx.is64 and U16.unpack_from(raw, 118)[0] and ctx.sb.f["s_creator_os"] == 0:
            st.bad.setdefault(ino, "file_acl_hi")
        acl = file_acl_of(raw, ctx.is64)
        if acl and (not ctx.has_xattr or not ctx.valid_block(acl)):
            st.bad.setdefault(ino, "file_acl")
        if ftype == S_IFDIR and U32.unpack_from(raw, 108)[0] and not ctx.largedir:
            st.bad.setdefault(ino, "dir_size_high")
        return True

    def check_special(self, ino: int, raw: bytearray, flags: int) -> None:
        ctx = self.ctx
        if flags & (IMMUTABLE_FL | APPEND_FL):
            if ctx.ask(P.BAD_DEVICE, ino=ino, what="special file with immutable/append flag"):
                U32.pack_into(raw, 32, flags & ~(IMMUTABLE_FL | APPEND_FL))
                self.write(ino, raw)
        if size_of(raw):
            if ctx.ask(P.BAD_I_SIZE, ino=ino, value=size_of(raw), want=0):
                set_size(raw, 0)
                self.write(ino, raw)

    # ------------------------------------------------------------------ symlinks
    def check_symlink(self, ino: int, raw: bytearray) -> str | None:
        ctx = self.ctx
        size = size_of(raw)
        flags = flags_of(raw)
        if U32.unpack_from(raw, 108)[0] or size == 0:
            return "bad size"
        if flags & INDEX_FL:
            return "index flag"
        if flags & INLINE_DATA_FL:
            return None  # checked with inline data
        if size < 60:  # fast symlink
            if flags & EXTENTS_FL:
                return "fast symlink with extents flag"
            buf = bytes(raw[40:100])
            buflen = 60
        else:
            if flags & EXTENTS_FL:
                if header_ok(raw, 40, 60) is not None:
                    return "bad extent header"
                magic, entries, eh_max, depth, _ = _HDR.unpack_from(raw, 40)
                if entries != 1 or depth != 0:
                    return "extent tree"
                lblk, ln, hi, lo = _ENT.unpack_from(raw, 52)
                if lblk != 0 or ln != 1:
                    return "extent"
                blk = lo | hi << 32
            else:
                blk = U32.unpack_from(raw, 40)[0]
                if any(raw[44:100]):
                    return "block map"
            if not ctx.valid_block(blk):
                return "bad block"
            try:
                buf = ctx.block(blk)
            except (IndexError, OSError):
                return "unreadable"
            buflen = ctx.bs
        if flags & ENCRYPT_FL:
            ln = U16.unpack_from(buf, 0)[0] + 2
        else:
            z = buf.find(b"\0", 0, buflen)
            ln = buflen if z < 0 else z
        if ln >= buflen:
            return "not terminated"
        if ln != size:
            return "length"
        return None

    # ------------------------------------------------------------------ reserved inodes
    def check_bad_blocks_inode(self, raw: bytearray) -> None:
        ctx, st = self.ctx, self.st
        mode = mode_of(raw)
        flags = flags_of(raw)
        if (mode and mode & S_IFMT != S_IFREG) or flags & (EXTENTS_FL | INLINE_DATA_FL):
            if ctx.ask(P.BAD_BLOCKS_INODE, ino=BAD_INO, why="bad mode or flags"):
                raw[:] = bytes(len(raw))
                self.write(BAD_INO, raw)
            return
        st.inodes[BAD_INO] = raw
        self.check_blocks(BAD_INO, raw)

    def check_resize_inode(self, raw: bytearray) -> None:
        ctx, st = self.ctx, self.st
        if not ctx.sb.has_compat("resize_inode"):
            if any(raw[40:100]) or links_of(raw):
                if ctx.ask(P.RESIZE_INODE_INVALID, why="resize_inode is not enabled, but the resize inode is not clear"):
                    raw[:] = bytes(len(raw))
                    self.write(RESIZE_INO, raw)
            return
        st.inodes[RESIZE_INO] = raw
        dind = U32.unpack_from(raw, 40 + 13 * 4)[0]
        if any(raw[40: 40 + 13 * 4]) or any(raw[40 + 14 * 4: 100]) or not ctx.valid_block(dind):
            if ctx.ask(P.RESIZE_INODE_INVALID, why="bad block map"):
                # e2fsck recreates it; we clear it and its feature reference stays for mke2fs-style rebuilders
                ctx.fail("recreating the resize inode is not supported")
            return
        st.claim(dind, 1, RESIZE_INO)
        # i_blocks counts the double-indirect block, the reserved descriptor blocks it
        # lists and their backups (the rest are claimed as group metadata in pass 5)
        n = 1
        try:
            dbuf = ctx.block(dind)
            per = ctx.bs // 4
            dwords = list(struct.unpack_from(f"<{per}I", dbuf))
            for di, e in enumerate(dwords):
                if not e:
                    continue
                if not ctx.valid_block(e):
                    if ctx.ask(P.ILLEGAL_BLOCK, lblk=12 + per + per * di, block=e, ino=RESIZE_INO):
                        nb = bytearray(ctx.block(dind))
                        U32.pack_into(nb, 4 * di, 0)
                        ctx.write_block(dind, nb)
                    continue
                n += 1
                words = list(struct.unpack_from(f"<{per}I", ctx.block(e)))
                for wi, x in enumerate(words):
                    if not x:
                        continue
                    if ctx.valid_block(x):
                        n += 1
                    elif ctx.ask(P.ILLEGAL_BLOCK, lblk=12 + per + per * di + wi, block=x, ino=RESIZE_INO):
                        nb = bytearray(ctx.block(e))
                        U32.pack_into(nb, 4 * wi, 0)
                        ctx.write_block(e, nb)
        except (IndexError, OSError):
            return
        want = n * (ctx.bs // 512)
        have = U32.unpack_from(raw, 28)[0]
        if have != want and ctx.ask(P.BAD_I_BLOCKS, ino=RESIZE_INO, value=have, want=want):
            U32.pack_into(raw, 28, want)
            self.write(RESIZE_INO, raw)

    # ------------------------------------------------------------------ blocks
    def has_valid_blocks(self, raw: bytearray) -> bool:
        mode = mode_of(raw) & S_IFMT
        if mode not in (S_IFDIR, S_IFREG, S_IFLNK):
            return False
        flags = flags_of(raw)
        if mode == S_IFLNK:
            if file_acl_of(raw, self.ctx.is64) == 0:
                if U32.unpack_from(raw, 28)[0] == 0:
                    return False
            else:
                size = size_of(raw)
                if size >= 60:
                    return True
                if size > 4 and U32.unpack_from(raw, 44)[0] == 0:
                    return True
                return False
        if flags & INLINE_DATA_FL:
            return False
        return True

    def check_blocks(self, ino: int, raw: bytearray) -> None:
        ctx, st = self.ctx, self.st
        mode = mode_of(raw) & S_IFMT
        flags = flags_of(raw)
        w = BlockWalk(ino, raw, mode == S_IFDIR, mode == S_IFREG)
        acl = file_acl_of(raw, ctx.is64)
        if acl and ctx.has_xattr and ctx.valid_block(acl):
            if self.check_ea_block(ino, raw, acl):
                w.num_blocks += 1 + self.ea_quota.get(acl, 0)
        w.num_blocks += self.check_ibody_ea(ino, raw)
        if w.clear:
            self.clear_inode(ino, raw)
            return
        if ino == BAD_INO:
            self.walk_indirect(w, bad_blocks=True)
        elif self.has_valid_blocks(raw):
            if flags & EXTENTS_FL and ctx.extents:
                self.walk_extents(w)
            else:
                self.walk_indirect(w)
        elif flags & INLINE_DATA_FL and mode == S_IFDIR:
            pass
        if w.clear:
            self.clear_inode(ino, raw)
            return
        for s, n in w.runs:
            st.claim(s, n, ino)
        if w.rebuild and w.extents:
            self.rebuilds.append((ino, w.extents, w.nodes))
        if w.modified:
            self.write(ino, raw)
        if w.is_dir and ino in st.dirs:
            if not w.dir_blocks:
                if ctx.ask(P.ZERO_LENGTH_DIR, ino=ino):
                    self.clear_inode(ino, raw)
                    # its claims go with it
                    return
            st.dirs[ino] = w.dir_blocks
        self.check_size(w, raw, flags)
        # i_blocks
        want = w.num_blocks
        huge = ctx.huge_file and flags & HUGE_FILE_FL
        if not huge:
            want *= ctx.bs // 512
        have = U32.unpack_from(raw, 28)[0]
        if ctx.huge_file:
            have |= U16.unpack_from(raw, 116)[0] << 32
        if ino != BAD_INO and (have != want or (huge and U16.unpack_from(raw, 116)[0])):
            if ctx.sb.f["s_creator_os"] != 1 and ctx.ask(P.BAD_I_BLOCKS, ino=ino, value=have, want=want):
                U32.pack_into(raw, 28, want & 0xFFFFFFFF)
                if ctx.huge_file:
                    U16.pack_into(raw, 116, want >> 32)
                if huge:
                    U32.pack_into(raw, 32, flags & ~HUGE_FILE_FL)
                self.write(ino, raw)

    def check_size(self, w: BlockWalk, raw: bytearray, flags: int) -> None:
        ctx = self.ctx
        size = size_of(raw)
        mode = mode_of(raw) & S_IFMT
        if mode == S_IFLNK:
            return
        bad = False
        if w.is_dir:
            if flags & INLINE_DATA_FL:
                return
            nblock = (size & 0xFFFFFFFF) // ctx.bs
            if size & (ctx.bs - 1):
                bad = True
            elif nblock > w.last_block + 1:
                bad = True
            elif nblock < w.last_block + 1:
                if (w.last_block + 1) - nblock > ctx.sb.f["s_prealloc_dir_blocks"]:
                    bad = True
        elif w.ino != BAD_INO and (mode == S_IFREG or w.ino < ctx.first_ino):
            if flags & INLINE_DATA_FL:
                return
            if w.last_init >= 0 and size < w.last_init * ctx.bs and not flags & VERITY_FL:
                bad = True
            elif not (ctx.extents and flags & EXTENTS_FL) and size > self.max_ind:
                bad = True
            elif ctx.extents and flags & EXTENTS_FL and size > (1 << (32 + ctx.bs.bit_length() - 1)) - 1:
                bad = True
        if bad:
            want = (w.last_block + 1) * ctx.bs
            if w.is_dir:
                want &= 0xFFFFFFFF
            if ctx.ask(P.BAD_I_SIZE, ino=w.ino, value=size, want=want):
                set_size(raw, want)
                if mode == S_IFREG:
                    self.note_large_file(want)
                self.write(w.ino, raw)

    def note_large_file(self, size: int) -> None:
        """libext2fs' ext2fs_inode_size_set: a regular file of 2 GiB or more turns on
        large_file (and a revision 0 file system becomes dynamic)."""
        ctx = self.ctx
        f = ctx.sb.f
        if size < 0x80000000 or (ctx.sb.has_ro("large_file") and f["s_rev_level"] > 0):
            return
        f["s_feature_ro_compat"] |= 0x2
        if f["s_rev_level"] == 0:
            f["s_rev_level"] = 1
            f["s_first_ino"] = 11
            f["s_inode_size"] = 128
        ctx.dirty_super()

    # ------------------------------------------------------------------ xattrs
    def check_ibody_ea(self, ino: int, raw: bytearray) -> int:
        """Check the in-inode xattr area (e2fsck's check_ea_in_inode); returns the blocks
        charged to the inode for EA-inode values."""
        ctx = self.ctx
        if ctx.isz <= 128:
            return 0
        extra = U16.unpack_from(raw, 128)[0]
        hoff = 128 + extra
        if extra & 3 or hoff + 4 > ctx.isz or U32.unpack_from(raw, hoff)[0] != xa.XATTR_MAGIC:
            return 0
        storage = ctx.isz - hoff
        used = bytearray(storage)
        start = hoff + 4
        remain = storage - 4
        off = start
        quota = 0
        problem: int | None = None
        why = ""
        value = 0

        def alloc(a: int, n: int) -> bool:
            if a < 0 or a + n > storage or any(used[a: a + n]):
                return True
            used[a: a + n] = b"\1" * n
            return False

        alloc(0, 4)
        vinums: list[int] = []
        while remain >= 16 and off + 4 <= ctx.isz and U32.unpack_from(raw, off)[0] != 0:
            if off + 16 > ctx.isz:
                problem, why = P.EA_INODE_BAD, "entry overruns the inode"
                break
            nl, idx, voff, vinum, vsize, ehash = xa.ENTRY.unpack_from(raw, off)
            elen = (16 + nl + 3) & ~3
            if alloc(off - hoff, elen):
                problem, why = P.EA_INODE_BAD, "allocation collision"
                break
            remain -= 16
            if ((nl + 3) & ~3) > remain:
                problem, why = P.EA_INODE_BAD, "name length"
                break
            remain -= (nl + 3) & ~3
            name = bytes(raw[off + 16: off + 16 + nl])
            if vinum == 0:
                if vsize > remain:
                    problem, why = P.EA_INODE_BAD, "value size"
                    break
                if vsize and alloc(4 + voff, (vsize + 3) & ~3):
                    problem, why = P.EA_INODE_BAD, "allocation collision"
                    break
                val = bytes(raw[start + voff: start + voff + vsize])
                if ehash != 0 and not entry_hash_ok(ehash, name, val):
                    problem, value = P.ATTR_HASH, ehash
                    break
                remain -= vsize
            else:
                code, value, q = check_large_ea_inode(ctx, self.st, ino, raw, name, vinum, vsize, ehash,
                                                      self.ea_pending)
                if code:
                    problem = code
                    break
                quota += q
                vinums.append(vinum)
            off += elen
        if problem is None and off - hoff + 4 <= storage and alloc(off - hoff, 4):
            problem, why = P.EA_INODE_BAD, "allocation collision"
        if problem is not None:
            if ctx.ask(problem, ino=ino, why=why, value=value):
                U32.pack_into(raw, hoff, 0)
                self.write(ino, raw)
                return 0
        self.count_ea_inode_refs(raw, start, ctx.isz)
        return quota

    def count_ea_inode_refs(self, buf: bytes | bytearray, start: int, end: int) -> None:
        """e2fsck's inc_ea_inode_refs: one reference per entry naming a value inode."""
        refs = self.st.ea_inode_refs
        off = start
        while off + 16 <= end and U32.unpack_from(buf, off)[0] != 0:
            nl, _idx, _voff, vinum, _vsize, _h = xa.ENTRY.unpack_from(buf, off)
            if vinum:
                refs[vinum] = refs.get(vinum, 0) + 1
            off += (16 + nl + 3) & ~3

    def check_ea_block(self, ino: int, raw: bytearray, blk: int) -> bool:
        """True when the inode keeps its xattr block (it counts in i_blocks)."""
        ctx, st = self.ctx, self.st
        if blk in st.ea_refs:
            st.ea_refs[blk] += 1
            st.ea_owner[blk].append(ino)
            return True
        try:
            buf = bytearray(ctx.block(blk))
        except (IndexError, OSError):
            buf = bytearray(ctx.bs)
        bs = ctx.bs
        magic, refcount, nblocks, _h, _c, _r = xa.BLOCK_HEADER.unpack_from(buf, 0)
        problem: int | None = None
        why = ""
        value = 0
        q = 1
        if magic != xa.XATTR_MAGIC:
            problem, why = P.EA_BLOCK_BAD, "bad magic"
        elif nblocks != 1:
            problem, why = P.EA_BLOCK_BAD, "h_blocks is not 1"
        else:
            used = bytearray(bs)

            def alloc(a: int, n: int) -> bool:
                if a < 0 or a + n > bs or any(used[a: a + n]):
                    return True
                used[a: a + n] = b"\1" * n
                return False

            alloc(0, 32)
            off = 32
            while off + 4 <= bs and U32.unpack_from(buf, off)[0] != 0:
                if off + 16 > bs:
                    problem, why = P.EA_BLOCK_BAD, "allocation collision"
                    break
                nl, idx, voff, vinum, vsize, ehash = xa.ENTRY.unpack_from(buf, off)
                if alloc(off, (16 + nl + 3) & ~3):
                    problem, why = P.EA_BLOCK_BAD, "allocation collision"
                    break
                if idx == 0:
                    problem, why = P.EA_BLOCK_BAD, "bad name"
                    break
                name = bytes(buf[off + 16: off + 16 + nl])
                if vinum == 0:
                    if voff + vsize > bs:
                        problem, why = P.EA_BLOCK_BAD, "value out of the block"
                        break
                    if vsize and alloc(voff, (vsize + 3) & ~3):
                        problem, why = P.EA_BLOCK_BAD, "allocation collision"
                        break
                    if not entry_hash_ok(ehash, name, bytes(buf[voff: voff + vsize])):
                        if ctx.ask(P.ATTR_HASH, ino=ino, value=ehash):
                            problem = -1  # cleared
                            break
                else:
                    code, value, eq = check_large_ea_inode(ctx, st, ino, raw, name, vinum, vsize, ehash,
                                                           self.ea_pending)
                    if code:
                        if ctx.ask(code, ino=ino, value=value, block=blk):
                            problem = -1
                            break
                    q += eq
                off += (16 + nl + 3) & ~3
            else:
                if alloc(off, 4):
                    problem, why = P.EA_BLOCK_BAD, "allocation collision"
        if problem is not None:
            if problem == -1 or ctx.ask(problem, ino=ino, block=blk, why=why, value=value):
                U32.pack_into(raw, 104, 0)
                if ctx.is64:
                    U16.pack_into(raw, 118, 0)
                self.write(ino, raw)
                return False
            if magic != xa.XATTR_MAGIC or nblocks != 1:
                return False
        if ctx.metadata_csum and problem is None:
            want = xa.block_checksum(ctx.csum_seed, blk, bytes(buf))
            if want != _c:
                if ctx.ask(P.EA_CSUM, ino=ino, block=blk):
                    U32.pack_into(buf, xa.CHECKSUM_OFFSET, want)
                    ctx.write_block(blk, buf)
        self.ea_quota[blk] = q - 1
        self.count_ea_inode_refs(buf, 32, bs)
        st.ea_refs[blk] = 1
        st.ea_owner[blk] = [ino]
        st.claim(blk, 1, ino)
        return True

    def check_ea_refcounts(self) -> None:
        ctx, st = self.ctx, self.st
        apply_pending(ctx, st, self.ea_pending)
        relocate_tables(ctx, st, self.relocs)
        self.relocs = []
        self.rebuild_extent_trees()
        for blk, _n in st.ea_refs.items():
            owners = [i for i in st.ea_owner[blk] if i not in st.cleared]
            buf = ctx.block(blk)
            have = U32.unpack_from(buf, 4)[0]
            if have != len(owners) and owners:
                if ctx.ask(P.EA_REFCOUNT, block=blk, value=have, want=len(owners)):
                    nb = bytearray(buf)
                    U32.pack_into(nb, 4, len(owners))
                    if ctx.metadata_csum:
                        U32.pack_into(nb, xa.CHECKSUM_OFFSET, xa.block_checksum(ctx.csum_seed, blk, memoryview(nb)))
                    ctx.write_block(blk, nb)
        self.check_ea_inodes()

    def rebuild_extent_trees(self) -> None:
        """Pass 1E for the trees found too deep: repack each tree into its own old node
        blocks (only when none of them is claimed twice) and release the rest."""
        ctx, st = self.ctx, self.st
        todo, self.rebuilds = self.rebuilds, []
        if not todo:
            return
        starts = np.asarray(st.run_start, dtype=np.int64)
        ends = starts + np.asarray(st.run_len, dtype=np.int64)
        for ino, extents, nodes in todo:
            raw = st.inodes.get(ino)
            if raw is None or ino in st.cleared or not nodes:
                continue
            if blocks_needed(len(extents), ctx.bs) > len(nodes):
                continue
            if any(int(np.count_nonzero((starts <= b) & (b < ends))) > 1 for b in nodes):
                continue  # a node block is shared: pass 1B deals with it first
            root, used = build_tree(ctx, extents, nodes, ino, generation_of(raw))
            raw[40:100] = root
            freed = sorted(set(nodes) - set(used))
            if freed:
                _drop_claims(st, ino, freed)
                unit = 1 if ctx.huge_file and flags_of(raw) & HUGE_FILE_FL else ctx.bs // 512
                have = U32.unpack_from(raw, 28)[0] | (U16.unpack_from(raw, 116)[0] << 32 if ctx.huge_file else 0)
                want = max(0, have - len(freed) * unit)
                U32.pack_into(raw, 28, want & 0xFFFFFFFF)
                if ctx.huge_file:
                    U16.pack_into(raw, 116, want >> 32)
            self.write(ino, raw)

    def check_ea_inodes(self) -> None:
        """The reference counts of EA inodes (e2fsck does this in pass 4: an EA inode with
        references counts as linked once, and its stored count must match)."""
        ctx, st = self.ctx, self.st
        for ino in sorted(st.ea_inode_refs):
            raw = st.inodes.get(ino)
            if raw is None or ino in st.cleared or not flags_of(raw) & EA_INODE_FL:
                continue
            actual = st.ea_inode_refs[ino]
            if links_of(raw) != 1:
                if ctx.ask(P.BAD_REF_COUNT, ino=ino, value=links_of(raw), want=1):
                    U16.pack_into(raw, 26, 1)
                    self.write(ino, raw)
            have = ea_inode_ref(raw)
            if have != actual and U32.unpack_from(raw, 12)[0] != U32.unpack_from(raw, 8)[0]:
                if ctx.ask(P.EA_INODE_REF, ino=ino, value=have, want=actual):
                    set_ea_inode_ref(raw, actual)
                    self.write(ino, raw)

    # ------------------------------------------------------------------ extent trees
    def walk_extents(self, w: BlockWalk) -> None:
        ctx = self.ctx
        raw = w.raw
        why = header_ok(raw, 40, 60)
        depth = U16.unpack_from(raw, 46)[0]
        if why is None and depth > 32:
            why = f"depth {depth} too deep"
        elif why is None and depth > max_extent_depth(ctx.bs):
            if ctx.ask(P.EXTENT_TOO_DEEP, ino=w.ino, value=depth, want=max_extent_depth(ctx.bs)):
                w.rebuild = ctx.writable
        if why is not None:
            if ctx.ask(P.EXTENT_HEADER, ino=w.ino, block=0, depth=depth, why=why):
                w.clear = True
            return
        node = memoryview(raw)[40:100]
        self.walk_node(w, node, None, depth, 0, 0, [0])

    def walk_node(self, w: BlockWalk, node, blk: int | None, depth: int, start: int, end: int,
                  state: list[int]) -> bool:
        """Check one node; True when it was changed (the caller writes it)."""
        ctx = self.ctx
        magic, entries, eh_max, d, _ = _HDR.unpack_from(node, 0)
        changed = False
        keep: list[bytes] = []
        eof_block = (size_of(w.raw) + ctx.bs - 1) // ctx.bs
        is_leaf = depth == 0
        start_block = start
        i = 0
        while i < entries:
            off = 12 + 12 * i
            i += 1
            entry = bytes(node[off: off + 12])
            if is_leaf:
                lblk, ln, hi, lo = _ENT.unpack(entry)
                pblk = lo | hi << 32
                uninit = ln > 32768
                length = ln - 32768 if uninit else ln
            else:
                lblk, lo, hi, _u = _IDX.unpack(entry)
                pblk = lo | hi << 32
                uninit = False
                length = 1
            last = lblk + length - 1
            problem = None
            if pblk == 0 or not ctx.valid_block(pblk):
                problem = P.EXTENT_BAD_START
            elif lblk < start_block:
                problem = P.EXTENT_ORDER
            elif is_leaf and length and lblk <= w.leaf_last:
                problem = P.EXTENT_COLLISION
            elif is_leaf and end and last > end and not (last > eof_block and (uninit or flags_of(w.raw) & VERITY_FL)):
                problem = P.EXTENT_END_OOB
            elif is_leaf and length == 0:
                problem = P.EXTENT_ZERO_LEN
            elif is_leaf and pblk + length > ctx.blocks_count:
                problem = P.EXTENT_ENDS_BEYOND
            elif is_leaf and w.is_dir and not ctx.largedir and not U32.unpack_from(w.raw, 108)[0] \
                    and lblk + length > (1 << (21 - (ctx.bs.bit_length() - 11))):
                problem = P.DIR_TOO_BIG
            if problem is not None:
                if ctx.ask(problem, ino=w.ino, lblk=lblk, block=pblk, len=length):
                    changed = True
                    continue
                keep.append(entry)
                continue
            keep.append(entry)
            if is_leaf:
                if length == 0:
                    continue
                if w.rebuild:
                    w.extents.append(entry)
                if w.is_dir:
                    nb = len(w.dir_blocks)
                    if lblk + length > 1 << 22:
                        length = max(0, min(length, (1 << 22) - lblk))
                    prev = w.dir_blocks[-1][0] if nb else -1
                    for hole in range(prev + 1, lblk):
                        w.dir_blocks.append((hole, 0))
                    for k in range(length):
                        w.dir_blocks.append((lblk + k, pblk + k))
                w.runs.append((pblk, length))
                w.num_blocks += length
                start_block = last
                w.leaf_last = max(w.leaf_last, last)
                w.last_block = max(w.last_block, last)
                if not uninit and not w.is_dir:
                    w.last_init = max(w.last_init, last)
                if uninit and w.is_dir:
                    pass
            else:
                # next index's start bounds this child
                if i < entries:
                    nxt = _IDX.unpack_from(node, 12 + 12 * i)[0]
                else:
                    nxt = end
                try:
                    child = bytearray(ctx.block(pblk))
                except (IndexError, OSError):
                    child = bytearray(ctx.bs)
                why = header_ok(child, 0, ctx.bs)
                cdepth = U16.unpack_from(child, 6)[0]
                if why is None and cdepth != depth - 1:
                    why = f"depth {cdepth}, expected {depth - 1}"
                if why is not None:
                    if ctx.ask(P.EXTENT_HEADER, ino=w.ino, block=pblk, depth=depth - 1, why=why):
                        keep.pop()
                        changed = True
                    continue
                csum_bad = False
                if ctx.metadata_csum:
                    emax = U16.unpack_from(child, 4)[0]
                    toff = ext.tail_offset(emax)
                    if toff + 4 <= ctx.bs:
                        seed = ctx.inode_seed(w.ino, w.gen)
                        csum_bad = ext.node_checksum(seed, memoryview(child), emax) != U32.unpack_from(child, toff)[0]
                cent = U16.unpack_from(child, 2)[0]
                if cent:
                    first_l = U32.unpack_from(child, 12)[0]
                    if first_l != lblk:
                        if ctx.ask(P.EXTENT_IDX_START, ino=w.ino, value=lblk, want=first_l):
                            keep[-1] = _IDX.pack(first_l, lo, hi, 0)
                            changed = True
                            lblk = first_l
                child_changed = self.walk_node(w, memoryview(child), pblk, depth - 1, lblk, nxt, state)
                if U16.unpack_from(child, 2)[0] == 0 and child_changed:
                    # emptied: drop the index too (e2fsck deletes the empty node)
                    keep.pop()
                    changed = True
                    continue
                if child_changed:
                    ctx.write_extent_block(pblk, child, w.ino, w.gen)
                elif csum_bad:
                    if ctx.ask(P.EXTENT_CSUM, ino=w.ino, block=pblk):
                        ctx.write_extent_block(pblk, child, w.ino, w.gen)
                w.runs.append((pblk, 1))
                w.num_blocks += 1
                if w.rebuild:
                    w.nodes.append(pblk)
                start_block = max(start_block, lblk)
        if changed:
            hdr = bytearray(node[:12])
            U16.pack_into(hdr, 2, len(keep))
            node[:12] = hdr
            for k, e in enumerate(keep):
                node[12 + 12 * k: 24 + 12 * k] = e
            for k in range(len(keep), entries):
                node[12 + 12 * k: 24 + 12 * k] = bytes(12)
            if blk is None:
                w.modified = True
                if not keep:
                    # an empty root: depth 0
                    U16.pack_into(w.raw, 46, 0)
        return changed

    # ------------------------------------------------------------------ indirect maps
    def walk_indirect(self, w: BlockWalk, bad_blocks: bool = False) -> None:
        ctx = self.ctx
        raw = w.raw
        ptrs = list(struct.unpack_from("<15I", raw, 40))
        for i in range(12):
            b = ptrs[i]
            if b:
                if not self.check_ptr(w, b, i, raw, 40 + 4 * i):
                    continue
                self.data_block(w, i, b)
        ppb = ctx.bs // 4
        base = 12
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            b = ptrs[slot]
            if b and not w.clear:
                if self.check_ptr(w, b, -level, raw, 40 + 4 * slot):
                    self.walk_ind(w, b, level, base, bad_blocks)
            base += ppb ** level

    def check_ptr(self, w: BlockWalk, b: int, lblk: int, buf: bytearray, off: int,
                  data: bool | None = None) -> bool:
        """e2fsck's process_block checks of one pointer (``data``: a data block, else a
        map block; by default told by the sign of ``lblk``): False when it is not kept."""
        ctx = self.ctx
        if data is None:
            data = lblk >= 0
        if w.ino == BAD_INO:
            return self.bad_block_ptr(w, b, lblk, buf, off, data)
        problem: int | None = None
        what = ""
        if w.ino != BAD_INO:
            bits = ctx.bs.bit_length() - 1 - 10
            max_blocks = 1 << (31 - bits)
            if w.is_dir and data and not ctx.largedir and lblk > 1 << (21 - bits):
                problem, what = P.TOOBIG_BLOCK, "directory"
            if w.is_dir and w.num_blocks + 1 >= max_blocks:
                problem, what = P.TOOBIG_BLOCK, "directory"
            if w.is_reg and w.num_blocks + 1 >= max_blocks:
                problem, what = P.TOOBIG_BLOCK, "file"
            if not w.is_dir and not w.is_reg and data and lblk > 0:
                problem, what = P.TOOBIG_BLOCK, "symlink"
        if not ctx.valid_block(b):
            problem = P.ILLEGAL_BLOCK
        if problem is None:
            return True
        w.illegal += 1
        if w.illegal % 12 == 0 and w.illegal:
            if ctx.ask(P.TOO_MANY_BAD_BLOCKS, ino=w.ino):
                w.clear = True
                return False
        if ctx.ask(problem, ino=w.ino, lblk=lblk, block=b, what=what):
            U32.pack_into(buf, off, 0)
            if buf is w.raw:
                w.modified = True
            return False
        return False

    def bad_block_ptr(self, w: BlockWalk, b: int, lblk: int, buf: bytearray, off: int,
                      data: bool) -> bool:
        """A pointer of the bad blocks inode (e2fsck's process_bad_block)."""
        ctx = self.ctx

        def clear(code: int, **loc: object) -> bool:
            if ctx.ask(code, block=b, lblk=lblk, **loc):
                U32.pack_into(buf, off, 0)
                if buf is w.raw:
                    w.modified = True
            return False

        if not ctx.valid_block(b):
            return clear(P.BB_ILLEGAL_BLOCK)
        kind, g = where(ctx, b)
        if not data:
            if kind or claimed(self.st, b, w.runs):
                return clear(P.BB_METABLOCK)
            return True
        if not kind and not claimed(self.st, b, w.runs):
            return True
        if kind in ("primary_super", "primary_gdt"):
            what = "primary superblock" if kind == "primary_super" else "primary group descriptors block"
            return clear(P.BB_PRIMARY, what=what)
        if kind in ("backup_super", "backup_gdt"):
            what = "superblock" if kind == "backup_super" else "copy of the group descriptors"
            ctx.ask(P.BB_BACKUP, group=g, what=what, block=b)
            return False
        if kind in ("block_bitmap", "inode_bitmap"):
            if ctx.ask(P.BB_TABLE, group=g, what=kind.replace("_", " "), block=b):
                self.relocs.append((g, kind, b))
            return True  # it stays listed (and in use) wherever the bitmap goes
        if kind == "inode_table":
            return False
        # one of the bad blocks inode's own indirect blocks
        return clear(P.BB_METABLOCK)

    def data_block(self, w: BlockWalk, lblk: int, b: int) -> None:
        w.num_blocks += 1
        if w.runs and w.runs[-1][0] + w.runs[-1][1] == b:
            w.runs[-1] = (w.runs[-1][0], w.runs[-1][1] + 1)
        else:
            w.runs.append((b, 1))
        if w.is_dir:
            prev = w.dir_blocks[-1][0] if w.dir_blocks else -1
            if lblk - prev < 1 << 16:
                for hole in range(prev + 1, lblk):
                    w.dir_blocks.append((hole, 0))
            w.dir_blocks.append((lblk, b))
        w.last_block = lblk
        w.last_init = lblk

    def walk_ind(self, w: BlockWalk, blk: int, level: int, base: int, bad_blocks: bool) -> None:
        ctx = self.ctx
        if w.clear:
            return
        w.num_blocks += 1
        w.runs.append((blk, 1))
        try:
            buf = bytearray(ctx.block(blk))
        except (IndexError, OSError):
            return
        arr = np.frombuffer(bytes(buf), dtype="<u4")
        nz = np.nonzero(arr)[0]
        if len(nz) == 0:
            return
        vals = arr[nz]
        valid = (vals >= ctx.first_data_block) & (vals < ctx.blocks_count)
        changed = False
        span = (ctx.bs // 4) ** (level - 1)
        bits = ctx.bs.bit_length() - 1 - 10
        roomy = w.is_reg and w.ino != BAD_INO and w.num_blocks + len(nz) + 2 < 1 << (31 - bits)
        if level == 1 and valid.all() and roomy:
            # fast path: a full run of data pointers
            for i, b in zip(nz.tolist(), vals.tolist()):
                self.data_block(w, base + i, b)
            return
        for i, b in zip(nz.tolist(), vals.tolist()):
            if w.clear:
                break
            if not roomy or not (ctx.first_data_block <= b < ctx.blocks_count):
                if not self.check_ptr(w, b, base + i * span, buf, 4 * i, data=level == 1):
                    if U32.unpack_from(buf, 4 * i)[0] == 0:
                        changed = True
                    continue
            if level == 1:
                self.data_block(w, base + i, b)
            else:
                self.walk_ind(w, b, level - 1, base + i * span, bad_blocks)
        if changed and not w.clear:
            ctx.write_block(blk, buf)


def check_device(raw: bytearray) -> bool:
    flags = flags_of(raw)
    if flags & (INDEX_FL | EXTENTS_FL):
        return False
    if flags & INLINE_DATA_FL:
        return False
    if flags & (IMMUTABLE_FL | APPEND_FL):
        if any(raw[40 + 16: 100]):
            return False
    return True
