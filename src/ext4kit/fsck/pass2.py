"""Pass 2: directory structure — every entry of every directory block (rec_len, name_len,
inode range, file type, '.', '..', duplicates), leaf and htree checksums, htree validity,
and the inodes pass 1 found doubtful (judged when an entry reaches them)."""

from __future__ import annotations

import struct

from ..ondisk import dirent as de
from ..ondisk.dxhash import dx_hash
from ..ondisk.groupdesc import BG_INODE_UNINIT
from . import dirfast
from . import problems as P
from .context import Context
from .p2_dirops import add_dir_block
from .repair import Allocator, RepairError
from .scan import live_inodes
from .state import (
    FT_DIR,
    FT_OF_MODE,
    ROOT_INO,
    S_IFMT,
    U16,
    U32,
    State,
    file_acl_of,
    flags_of,
    generation_of,
    mode_of,
)

INDEX_FL = 0x1000
ENCRYPT_FL = 0x800
_DIRENT = de.DIRENT


class Pass2:
    def __init__(self, ctx: Context, st: State, al: Allocator | None = None):
        self.ctx = ctx
        self.st = st
        self.al = al  # for the blocks repairs allocate (one is made when none is given)
        self.htree_bad: set[int] = set()
        self.dx_blocks: dict[int, set[int]] = {}  # dir -> lblks that are htree nodes

    def run(self) -> None:
        ctx, st = self.ctx, self.st
        for ino in sorted(st.dirs):
            raw = st.inodes.get(ino)
            if raw is not None and flags_of(raw) & INDEX_FL and ctx.dir_index:
                self.check_htree(ino, raw)
        work: list[tuple[int, int, int]] = []
        for ino, blocks in st.dirs.items():
            for lblk, pblk in blocks:
                work.append((pblk, ino, lblk))
        work.sort()
        # blocks with nothing to report: the array path (dirfast.py), in block order
        counts: list = []
        chunk = None
        cleared_at = 0
        for k, (pblk, ino, lblk) in enumerate(work):
            if ino in st.cleared:
                continue
            if k % dirfast.CHUNK == 0:
                if ctx.progress is not None:
                    ctx.progress(2, k, len(work))
                chunk = dirfast.classify(ctx, st, work[k: k + dirfast.CHUNK],
                                         self.dx_blocks, self.htree_bad)
                cleared_at = len(st.cleared)
            if chunk is not None and chunk.fast[k % dirfast.CHUNK] and \
                    dirfast.apply(st, chunk, k % dirfast.CHUNK, ino, cleared_at, counts):
                continue
            if pblk == 0:
                if ctx.ask(P.DIR_HOLE, ino=ino, lblk=lblk):
                    if not self.fill_hole(ino, lblk):
                        ctx.fail("allocating directory blocks is not supported here")
                continue
            self.check_block(ino, lblk, pblk)
        dirfast.merge_counts(st, counts)
        for ino in sorted(st.inline_dirs):
            if ino not in st.cleared:
                self.check_inline_dir(ino)
        for ino in sorted(self.htree_bad):
            self.clear_htree(ino)

    # ------------------------------------------------------------------ bad inodes
    def process_bad_inode(self, ino: int) -> bool:
        """True when the inode was cleared (the entry must go)."""
        ctx, st = self.ctx, self.st
        why = st.bad.pop(ino, None)
        raw = st.inodes.get(ino)
        if why is None or raw is None:
            return False
        mode = mode_of(raw)
        ftype = mode & S_IFMT
        problem = None
        loc: dict = {"ino": ino, "mode": mode}
        if ftype not in FT_OF_MODE:
            problem = P.BAD_MODE
        elif why == "device":
            problem = P.BAD_DEVICE
            loc["what"] = {0o020000: "character device", 0o060000: "block device",
                           0o010000: "fifo", 0o140000: "socket"}.get(ftype, "device")
        elif why.startswith("symlink"):
            problem = P.BAD_SYMLINK
            loc["why"] = why[9:]
        if problem is not None:
            if ctx.ask(problem, **loc):
                self.deallocate(ino)
                return True
        changed = False
        if U32.unpack_from(raw, 112)[0]:
            if ctx.ask(P.INODE_BAD_FIELDS, ino=ino):
                U32.pack_into(raw, 112, 0)
                changed = True
        if not ctx.huge_file and U16.unpack_from(raw, 116)[0] and ctx.sb.f["s_creator_os"] == 0:
            if ctx.ask(P.BLOCKS_HI, ino=ino, value=U16.unpack_from(raw, 116)[0]):
                U16.pack_into(raw, 116, 0)
                changed = True
        if not ctx.is64 and U16.unpack_from(raw, 118)[0] and ctx.sb.f["s_creator_os"] == 0:
            if ctx.ask(P.FILE_ACL_BAD, ino=ino, value=U16.unpack_from(raw, 118)[0] << 32):
                U16.pack_into(raw, 118, 0)
                changed = True
        acl = file_acl_of(raw, ctx.is64)
        if acl and (not ctx.has_xattr or not ctx.valid_block(acl)):
            if ctx.ask(P.FILE_ACL_BAD, ino=ino, value=acl):
                U32.pack_into(raw, 104, 0)
                if ctx.is64:
                    U16.pack_into(raw, 118, 0)
                changed = True
        if ftype == 0o040000 and U32.unpack_from(raw, 108)[0] and not ctx.largedir:
            if ctx.ask(P.BAD_I_SIZE, ino=ino, value=U32.unpack_from(raw, 108)[0] << 32, want=0):
                U32.pack_into(raw, 108, 0)
                changed = True
        if changed:
            st.changed.add(ino)
        return False

    def deallocate(self, ino: int) -> None:
        """Clear an inode (its blocks are released in pass 5)."""
        st = self.st
        raw = st.inodes.get(ino)
        if raw is None:
            return
        U16.pack_into(raw, 26, 0)
        U32.pack_into(raw, 20, self.ctx.now)
        st.changed.add(ino)
        st.cleared.add(ino)
        st.dirs.pop(ino, None)
        st.inline_dirs.discard(ino)

    # ------------------------------------------------------------------ one block
    def check_block(self, ino: int, lblk: int, pblk: int) -> None:
        ctx, st = self.ctx, self.st
        bs = ctx.bs
        raw = st.inodes.get(ino)
        if raw is None:
            return
        try:
            buf = bytearray(ctx.block(pblk))
        except (IndexError, OSError):
            return
        is_dx = lblk in self.dx_blocks.get(ino, ()) and ino not in self.htree_bad
        is_dx_root = lblk == 0 and is_dx
        encrypted = bool(flags_of(raw) & ENCRYPT_FL)
        modified = False
        csum_bad = False
        want_tail = False
        end = bs
        if ctx.metadata_csum and not is_dx:
            if de.has_tail(memoryview(buf)):
                end = bs - de.TAIL_SIZE
                seed = ctx.inode_seed(ino, generation_of(raw))
                csum_bad = de.leaf_checksum(seed, memoryview(buf)) != de.stored_leaf_checksum(memoryview(buf))
            elif self.chain_corrupt(buf):
                # e2fsck counts a block whose rec_len chain is broken as having a tail:
                # its entries end before the tail, which is written with the repairs
                end = bs - de.TAIL_SIZE
                want_tail = True
            elif not (is_dx and not is_dx_root):
                if self.make_tail_room(buf):
                    if ctx.ask(P.DIR_NO_TAIL, ino=ino, lblk=lblk):
                        self.insert_tail(buf)
                        modified = True
                        end = bs - de.TAIL_SIZE
                else:
                    if ctx.ask(P.DIR_NO_TAIL, ino=ino, lblk=lblk):
                        ctx.fail("no room for a checksum tail")
        if is_dx and not is_dx_root:
            # an interior htree node: one empty entry spanning the block
            return
        off = 0
        prev = -1
        dot_state = 0 if lblk == 0 else 2
        names: set[bytes] = set()
        inodes, cleared_set, bad_map, refs = st.inodes, st.cleared, st.bad, st.refs
        dirs, inline_dirs = st.dirs, st.inline_dirs
        first_ino, filetype = ctx.first_ino, ctx.filetype
        check_uninit = ctx.csum_feature
        ipg = ctx.ipg
        live: list[int] = []
        if check_uninit:
            live = self.__dict__.get("_live") or []
            if not live:
                live = self._live = [live_inodes(ctx, k) for k in range(ctx.ngroups)]
        while off < end:
            if off + 8 > end:
                if ctx.ask(P.DIR_CORRUPTED, ino=ino, lblk=lblk, offset=off):
                    self.salvage_tail(buf, prev, off, end)
                    modified = True
                break
            dino, rl_raw, nl, ft = _DIRENT.unpack_from(buf, off)
            rl = de.rec_len_from_disk(rl_raw, bs)
            bad = (off + rl > end or rl < 12 or rl % 4 or 8 + nl > rl)
            if bad:
                if ctx.ask(P.DIR_CORRUPTED, ino=ino, lblk=lblk, offset=off):
                    nxt = self.salvage(buf, prev, off, end, rl, nl, dino)
                    modified = True
                    if nxt is None:
                        continue
                    off = nxt
                    continue
                break
            name = bytes(buf[off + 8: off + 8 + nl])
            cleared = False
            if dot_state == 0:
                # e2fsck's check_dot: a missing or misnamed first entry becomes '.'
                created = False
                dproblem = None
                if dino == 0:
                    dproblem = P.MISSING_DOT
                elif name != b".":
                    dproblem = P.FIRST_NOT_DOT
                if dproblem is not None and ctx.ask(dproblem, ino=ino, target=dino,
                                                    name=name.decode("utf-8", "backslashreplace")):
                    _DIRENT.pack_into(buf, off, ino, rl_raw, 1, FT_DIR if ctx.filetype else 0)
                    buf[off + 8: off + 12] = b".\0\0\0"
                    dino, name = ino, b"."
                    modified = created = True
                if dino != ino and ctx.ask(P.BAD_DOT, ino=ino, target=dino):
                    U32.pack_into(buf, off, ino)
                    dino = ino
                    modified = True
                if rl - 12 > 12 and not is_dx_root:
                    if created or ctx.ask(P.SPLIT_DOT, ino=ino, dir=ino):
                        U16.pack_into(buf, off + 4, 12)
                        # a following '..' stays for the next step to check
                        if bytes(buf[off + 20: off + 23]) != b"..\0":
                            _DIRENT.pack_into(buf, off + 12, 0, rl - 12, 0, 0)
                        rl = 12
                        modified = True
                dot_state = 1
                if dino:
                    st.refs[dino] = st.refs.get(dino, 0) + 1
                prev = off
                off += rl
                continue
            if dot_state == 1:
                dot_state = 2
                dproblem = None
                if dino == 0:
                    dproblem = P.MISSING_DOT_DOT
                elif name != b"..":
                    dproblem = P.FIRST_NOT_DOT_DOT
                if dproblem is not None:
                    if ctx.ask(dproblem, ino=ino, target=dino, name=name.decode("utf-8", "backslashreplace")):
                        # e2fsck turns this entry into '..' of the root for now; the parent
                        # is not known yet ('..' stays unknown: pass 3 fixes the entry)
                        _DIRENT.pack_into(buf, off, ROOT_INO, rl_raw, 2, FT_DIR if ctx.filetype else 0)
                        buf[off + 8: off + 12] = b"..\0\0"
                        refs[ROOT_INO] = refs.get(ROOT_INO, 0) + 1
                        modified = True
                    st.dotdot[ino] = 0
                    prev = off
                    off += rl
                    continue
                st.dotdot[ino] = dino
                if dino:
                    st.refs[dino] = st.refs.get(dino, 0) + 1
                prev = off
                off += rl
                continue
            if dino == 0:
                prev = off
                off += rl
                continue
            # ordinary entry
            problem = None
            if dino == ino:
                problem = P.ENTRY_LINK_DOT
            elif (dino != ROOT_INO and dino < ctx.first_ino) or dino > ctx.inodes_count \
                    or dino in ctx.special_inodes:
                problem = P.ENTRY_BAD_INODE
            elif name == b".":
                problem = P.DUP_DOT
            elif name == b"..":
                problem = P.DUP_DOT_DOT
            elif nl == 0:
                problem = P.NULL_NAME
            elif check_uninit and (dino - 1) // ipg < len(live) and (dino - 1) % ipg >= live[(dino - 1) // ipg]:
                g = (dino - 1) // ctx.ipg
                if ctx.ask(P.INOREF_IN_UNINIT, group=g, **_loc(name, ino, dino)):
                    self.uninit_fix(g, dino)
                    live = self._live = [live_inodes(ctx, k) for k in range(ctx.ngroups)]
                    ctx.restart = True
                    st.refs[dino] = st.refs.get(dino, 0) + 1
                    prev = off
                    off += rl
                    continue
                problem = P.ENTRY_UNUSED_INODE
            elif (traw := inodes.get(dino)) is None or dino in cleared_set or \
                    (not (traw[26] | traw[27] << 8) and dino >= first_ino):
                problem = P.ENTRY_UNUSED_INODE
            elif dino == ROOT_INO:
                problem = P.ENTRY_LINK_ROOT
            if problem is None and not encrypted and (b"/" in name or b"\0" in name):
                if ctx.ask(P.BAD_NAME, **_loc(name, ino, dino)):
                    fixed = name.replace(b"/", b".").replace(b"\0", b".")
                    buf[off + 8: off + 8 + nl] = fixed
                    name = fixed
                    modified = True
            if problem is None and dino in bad_map:
                if self.process_bad_inode(dino):
                    cleared = True
                    modified = True
                    U32.pack_into(buf, off, 0)
            if problem is None and not cleared and encrypted:
                eproblem = self.encrypted_problem(dino, nl)
                if eproblem is not None and ctx.ask(eproblem, **_loc(name, ino, dino)):
                    U32.pack_into(buf, off, 0)
                    modified = True
                    cleared = True
            if problem is not None:
                if ctx.ask(problem, **_loc(name, ino, dino)):
                    U32.pack_into(buf, off, 0)
                    modified = True
                    cleared = True
                else:
                    prev = off
                    off += rl
                    continue
            if not cleared and dino in inodes:
                traw = inodes[dino]
                tmode = (traw[0] | traw[1] << 8) & S_IFMT
                want_ft = FT_OF_MODE.get(tmode, 0) if filetype else 0
                if ft != want_ft and (ctx.filetype or ft):
                    if ctx.ask(P.BAD_FILETYPE, value=ft, want=want_ft, **_loc(name, ino, dino)):
                        buf[off + 7] = want_ft
                        modified = True
                if name in names:
                    if ctx.ask(P.DUP_ENTRY, **_loc(name, ino, dino)):
                        U32.pack_into(buf, off, 0)
                        modified = True
                        cleared = True
                if not cleared:
                    names.add(name)
                    if dino in dirs or dino in inline_dirs:
                        par = st.parent.get(dino)
                        if par:
                            if ctx.ask(P.ENTRY_LINK_DIR, parent=par, **_loc(name, ino, dino)):
                                U32.pack_into(buf, off, 0)
                                modified = True
                                cleared = True
                        else:
                            st.parent[dino] = ino
                    if not cleared:
                        refs[dino] = refs.get(dino, 0) + 1
                        if ino == ROOT_INO and name == b"lost+found":
                            st.lost_found = dino
            prev = off
            off += rl
        if modified:
            if want_tail and not de.has_tail(memoryview(buf)):
                buf[bs - de.TAIL_SIZE:] = _DIRENT.pack(0, de.TAIL_SIZE, 0, de.TAIL_FT) + bytes(4)
            ctx.write_dir_block(pblk, buf, ino, generation_of(raw))
        elif csum_bad:
            if ctx.ask(P.DIR_CSUM, ino=ino, lblk=lblk):
                ctx.write_dir_block(pblk, buf, ino, generation_of(raw))

    def encrypted_problem(self, dino: int, nl: int) -> int | None:
        """e2fsck's check_encrypted_dirent: an encrypted name is at least one cipher block
        (16 bytes); a file, directory or symlink in an encrypted directory is encrypted."""
        if nl < 16:
            return P.BAD_ENCRYPTED_NAME
        traw = self.st.inodes.get(dino)
        if traw is not None and mode_of(traw) & S_IFMT in (0o100000, 0o040000, 0o120000) \
                and not flags_of(traw) & ENCRYPT_FL:
            return P.UNENCRYPTED_FILE
        return None

    def uninit_fix(self, g: int, dino: int) -> None:
        ctx = self.ctx
        self.__dict__.pop("_live", None)
        gd = ctx.groups[g]
        if gd.flags & BG_INODE_UNINIT:
            gd.f["bg_flags"] = gd.flags & ~BG_INODE_UNINIT
            ctx.set_gd(g, "bg_itable_unused", 0)
        else:
            idx = (dino - 1) % ctx.ipg
            ctx.set_gd(g, "bg_itable_unused", ctx.ipg - idx - 1)
        ctx.dirty_group(g)

    # ------------------------------------------------------------------ salvage
    def salvage(self, buf: bytearray, prev: int, off: int, end: int, rl: int, nl: int,
                dino: int) -> int | None:
        """e2fsck's salvage_directory; returns the next offset (None: re-read at off)."""
        if rl == 8 and end - off >= 20:
            n = end - off
            buf[off: off + n - 8] = buf[off + 8: off + n]
            buf[off + n - 8: off + n] = bytes(8)
            return None
        if off + rl > end and end - off > 8 and de.dirent_size(nl) <= end - off \
                and dino <= self.ctx.inodes_count and b"\0" not in bytes(buf[off + 8: off + 8 + nl]):
            U16.pack_into(buf, off + 4, end - off)
            return None
        if prev >= 0 and rl and rl % 4 == 0 and off + rl <= end:
            U16.pack_into(buf, prev + 4, U16.unpack_from(buf, prev + 4)[0] + rl)
            return off + rl
        self.salvage_tail(buf, prev, off, end)
        if prev < 0 and end - off >= 12 and (end - off) % 4 == 0:
            return None  # an empty entry now spans the block: check it like any other ('.')
        return end

    def salvage_tail(self, buf: bytearray, prev: int, off: int, end: int) -> None:
        if prev >= 0:
            U16.pack_into(buf, prev + 4, end - prev)
        else:
            _DIRENT.pack_into(buf, off, 0, end - off, 0, 0)

    def chain_corrupt(self, buf: bytearray) -> bool:
        """Whether the rec_len chain breaks before the checksum tail's place (e2fsck's
        __get_dirent_tail returning 'corrupted')."""
        bs = self.ctx.bs
        top = bs - de.TAIL_SIZE
        off = 0
        while off < top:
            rl = de.rec_len_from_disk(U16.unpack_from(buf, off + 4)[0], bs)
            if rl < 8 or rl & 3 or rl > bs - off:
                return True
            off += rl
        return False

    def make_tail_room(self, buf: bytearray) -> bool:
        """Whether the last entry has 12 spare bytes for a checksum tail."""
        bs = self.ctx.bs
        off = 0
        last = -1
        while off < bs:
            if off + 8 > bs:
                return False
            rl = de.rec_len_from_disk(U16.unpack_from(buf, off + 4)[0], bs)
            if rl < 8 or off + rl > bs:
                return False
            last = off
            off += rl
        if last < 0:
            return False
        dino, rl, nl, _ = _DIRENT.unpack_from(buf, last)
        need = de.dirent_size(nl) if dino or nl else 0
        return last + max(need, 8 if last else 12) <= bs - de.TAIL_SIZE

    def insert_tail(self, buf: bytearray) -> None:
        bs = self.ctx.bs
        off = 0
        last = 0
        while off < bs:
            rl = de.rec_len_from_disk(U16.unpack_from(buf, off + 4)[0], bs)
            last = off
            off += rl
        U16.pack_into(buf, last + 4, bs - de.TAIL_SIZE - last)
        buf[bs - de.TAIL_SIZE:] = _DIRENT.pack(0, de.TAIL_SIZE, 0, de.TAIL_FT) + bytes(4)

    def fill_hole(self, ino: int, lblk: int) -> bool:
        """e2fsck's allocate_dir_block: a new empty block (block 0: '.' and '..' with the
        root as parent, which pass 3 corrects) mapped into the hole, then checked."""
        al = self.al
        if al is None:
            al = self.al = Allocator(self.ctx, self.st)
        try:
            blk = add_dir_block(self.ctx, self.st, al, ino, lblk, ROOT_INO)
        except RepairError as exc:
            self.ctx.fail(str(exc))
            return True
        self.check_block(ino, lblk, blk)
        return True

    # ------------------------------------------------------------------ inline directories
    def check_inline_dir(self, ino: int) -> None:
        ctx, st = self.ctx, self.st
        raw = st.inodes.get(ino)
        if raw is None:
            return
        parent = U32.unpack_from(raw, 40)[0]
        st.dotdot[ino] = parent
        st.refs[ino] = st.refs.get(ino, 0) + 1  # '.'
        if parent:
            st.refs[parent] = st.refs.get(parent, 0) + 1
        regions: list[tuple[int, bytearray, int]] = [(0, bytearray(raw[44:100]), 4)]
        size = U32.unpack_from(raw, 4)[0]
        if size > 60:
            try:
                inode = ctx.fs.get_inode(ino)
                body = ctx.fs.inline_data(inode)
            except Exception as exc:  # noqa: BLE001 - reported as a finding
                if ctx.ask(P.DIR_INLINE_BAD, ino=ino, why=str(exc)):
                    ctx.fail("repairing inline directories is not supported")
                body = b""
            if len(body) > 60:
                regions.append((1, bytearray(body[60:]), 0))
        for lblk, buf, base in regions:
            end = len(buf)
            off = 0
            prev = -1
            changed = False
            while off < end:
                if off + 8 > end:
                    if ctx.ask(P.DIR_CORRUPTED, ino=ino, lblk=lblk, offset=base + off):
                        self.salvage_tail(buf, prev, off, end)
                        changed = True
                    break
                dino, rl, nl, ft = _DIRENT.unpack_from(buf, off)
                if off + rl > end or rl < 12 or rl % 4 or 8 + nl > rl:
                    if ctx.ask(P.DIR_CORRUPTED, ino=ino, lblk=lblk, offset=base + off):
                        nxt = self.salvage(buf, prev, off, end, rl, nl, dino)
                        changed = True
                        if nxt is not None:
                            off = nxt
                        continue
                    break
                if dino:
                    name = bytes(buf[off + 8: off + 8 + nl])
                    if dino not in st.inodes or dino in st.cleared or dino > ctx.inodes_count:
                        if ctx.ask(P.ENTRY_UNUSED_INODE, name=name.decode("utf-8", "backslashreplace"),
                                   dir=ino, ino=ino, target=dino):
                            U32.pack_into(buf, off, 0)
                            changed = True
                    else:
                        if st.is_dir(dino) and not st.parent.get(dino):
                            st.parent[dino] = ino
                            st.refs[dino] = st.refs.get(dino, 0) + 1
                        elif not st.is_dir(dino):
                            st.refs[dino] = st.refs.get(dino, 0) + 1
                prev = off
                off += rl
            if changed:
                if lblk == 0:
                    raw[44:100] = buf
                    st.changed.add(ino)
                else:
                    span = _ibody_data_span(raw, ctx.isz)
                    if span is not None and span[1] == len(buf):
                        raw[span[0]: span[0] + span[1]] = buf
                        U32.pack_into(raw, span[2] + 12, 0)  # e_hash: 0 is accepted in the inode body
                        st.changed.add(ino)
                    else:
                        ctx.fail("the directory's system.data is outside the inode")

    # ------------------------------------------------------------------ htree
    def check_htree(self, ino: int, raw: bytearray) -> None:
        ctx, st = self.ctx, self.st
        blocks = dict(st.dirs.get(ino, []))
        nblocks = len(st.dirs.get(ino, []))
        bs = ctx.bs
        why = None
        dx: set[int] = {0}
        if not blocks.get(0):
            why = "no root block"
        else:
            root = ctx.block(blocks[0])
            reserved, hv, info_len, levels, uflags = de.DX_ROOT_INFO.unpack_from(root, 24)
            max_levels = 3 if ctx.largedir else 2
            csum_room = 8 if ctx.metadata_csum else 0
            if reserved or info_len != 8:
                why = "bad root"
            elif hv not in (0, 1, 2, 6) and not (hv == 6 and ctx.sb.has_incompat("casefold")):
                why = f"unsupported hash version {hv}"
            elif uflags & 1:
                why = "incompatible flags"
            elif levels >= max_levels:
                why = f"tree too deep ({levels})"
            else:
                if hv <= 2 and ctx.sb.f["s_flags"] & 2:
                    hv += 3
                seed = ctx.sb.f["s_hash_seed"]
                leaves: dict[int, tuple[int, int]] = {}
                why = self._walk_dx(ino, root, 32, levels, 0, 1 << 32, blocks, nblocks,
                                    (bs - 32 - csum_room) // 8, dx, leaves, bs, csum_room, raw)
                if why is None:
                    why = self._check_leaves(ino, leaves, blocks, hv, seed, nblocks, dx)
        if why is not None:
            if ctx.ask(P.HTREE_BAD, ino=ino, why=why):
                self.htree_bad.add(ino)
            self.dx_blocks[ino] = dx
            return
        self.dx_blocks[ino] = dx

    def _walk_dx(self, ino: int, node: bytes, coff: int, levels: int, lo: int, hi: int,
                 blocks: dict[int, int], nblocks: int, want_limit: int, dx: set[int],
                 leaves: dict[int, tuple[int, int]], bs: int, csum_room: int, raw: bytearray) -> str | None:
        ctx = self.ctx
        limit, count = de.DX_COUNTLIMIT.unpack_from(node, coff)
        if limit != want_limit:
            return f"bad limit {limit} (should be {want_limit})"
        if count == 0 or count > limit:
            return f"bad count {count}"
        if ctx.metadata_csum and coff + 8 * limit + 8 <= bs:
            seed = ctx.inode_seed(ino, generation_of(raw))
            if de.dx_node_checksum(seed, node, coff, count, limit) != de.stored_dx_checksum(node, coff, limit):
                return "index node checksum does not match"
        ents = []
        for i in range(count):
            h, b = de.DX_ENTRY.unpack_from(node, coff + 8 * i)
            if i == 0:
                h = lo
            ents.append((h & ~1 if i else h, b & 0x0FFFFFFF))
        for i, (h, b) in enumerate(ents):
            if i and h < ents[i - 1][0]:
                return "hash order"
            if b >= nblocks or b not in blocks or not blocks[b]:
                return f"index points to bad block {b}"
            nhi = ents[i + 1][0] if i + 1 < count else hi
            if levels:
                if b in dx:
                    return f"block {b} referenced twice"
                dx.add(b)
                child = ctx.block(blocks[b])
                err = self._walk_dx(ino, child, 8, levels - 1, h, nhi, blocks, nblocks,
                                    (bs - 8 - csum_room) // 8, dx, leaves, bs, csum_room, raw)
                if err:
                    return err
            else:
                if b in leaves or b in dx:
                    return f"block {b} referenced twice"
                leaves[b] = (h, nhi)
        return None

    def _check_leaves(self, ino: int, leaves: dict[int, tuple[int, int]], blocks: dict[int, int],
                      hv: int, seed, nblocks: int, dx: set[int]) -> str | None:
        ctx = self.ctx
        bs = ctx.bs
        for lblk in range(nblocks):
            if lblk not in leaves and lblk not in dx and blocks.get(lblk):
                return f"block {lblk} not referenced"
        for b, (lo, hi) in leaves.items():
            buf = ctx.block(blocks[b])
            ents, err = de.parse_block(buf, bs, ctx.filetype)
            if err:
                continue  # pass 2 reports the block itself
            for e in ents:
                if not e.inode or e.name in (b".", b"..") and b == 0:
                    continue
                if not e.name:
                    continue
                h, _ = dx_hash(e.name, hv, seed)
                if h < (lo & ~1) or (hi < (1 << 32) and h >= (hi & ~1) and not (hi & 1) and h > hi):
                    return f"block {b} has bad hash range"
        return None

    def clear_htree(self, ino: int) -> None:
        """Make an htree directory linear: drop INDEX_FL, turn index nodes into empty leaves."""
        ctx, st = self.ctx, self.st
        raw = st.inodes.get(ino)
        if raw is None or ino in st.cleared:
            return
        U32.pack_into(raw, 32, flags_of(raw) & ~INDEX_FL)
        st.changed.add(ino)
        blocks = dict(st.dirs.get(ino, []))
        gen = generation_of(raw)
        for lblk in sorted(self.dx_blocks.get(ino, set())):
            pblk = blocks.get(lblk)
            if not pblk:
                continue
            buf = bytearray(ctx.block(pblk))
            tail = ctx.metadata_csum
            end = ctx.bs - (de.TAIL_SIZE if tail else 0)
            if lblk == 0:
                # keep '.' and '..', the rest becomes free space
                rl_dot = 12
                dotdot_ino = U32.unpack_from(buf, 12)[0]
                nb = bytearray(ctx.bs)
                nb[0:12] = de.pack_entry(ino, 12, b".", FT_DIR if ctx.filetype else 0, ctx.filetype)
                nb[12: end] = de.pack_entry(dotdot_ino, end - rl_dot, b"..", FT_DIR if ctx.filetype else 0, ctx.filetype)
            else:
                nb = bytearray(ctx.bs)
                nb[0:end] = de.pack_entry(0, end, b"", 0, ctx.filetype)
            if tail:
                nb[end:] = _DIRENT.pack(0, de.TAIL_SIZE, 0, de.TAIL_FT) + bytes(4)
            ctx.write_dir_block(pblk, nb, ino, gen)


def _ibody_data_span(raw: bytearray, isz: int) -> tuple[int, int, int] | None:
    """(offset of the value in raw, value size, offset of the entry) of the in-inode
    ``system.data`` attribute, or None."""
    if isz <= 128 or len(raw) < isz:
        return None
    extra = U16.unpack_from(raw, 128)[0]
    hdr = 128 + extra
    if extra & 3 or hdr + 4 > isz or U32.unpack_from(raw, hdr)[0] != 0xEA020000:
        return None
    first = hdr + 4
    off = first
    while off + 16 <= isz:
        nlen, nidx, voffs, vinum, vsize = raw[off], raw[off + 1], *struct.unpack_from("<HII", raw, off + 2)
        if nlen == 0 and nidx == 0 and voffs == 0 and vinum == 0:
            break
        if off + 16 + nlen > isz:
            return None
        if nidx == 7 and bytes(raw[off + 16: off + 16 + nlen]) == b"data":
            if vinum or first + voffs + vsize > isz:
                return None
            return first + voffs, vsize, off
        off += (16 + nlen + 3) & ~3
    return None


def _loc(name: bytes, ino: int, dino: int) -> dict:
    return {"name": name.decode("utf-8", "backslashreplace"), "dir": ino, "ino": ino, "target": dino}
