"""Pass 3: directory connectivity — the root, reachability from it (loops broken),
lost+found found or created (a non-directory, encrypted or inline one unlinked first;
with no room for one, lost files go in the root directory), unconnected directories
reconnected (lost+found grown when full), '..' fixed."""

from __future__ import annotations

import struct

from ..ondisk import dirent as de
from . import problems as P
from .context import Context
from .p2_dirops import DirEditor, _unclaim, expand_dir
from .repair import Allocator, RepairError, new_dir_inode
from .state import FT_DIR, ROOT_INO, U16, State, flags_of, generation_of

_DIRENT = struct.Struct("<IHBB")
ENCRYPT_FL = 0x800
INLINE_DATA_FL = 0x10000000
LPF_NAME = b"lost+found"


class Pass3:
    def __init__(self, ctx: Context, st: State, al: Allocator):
        self.ctx = ctx
        self.st = st
        self.al = al
        self.lpf = 0  # e2fsck's ctx->lost_and_found (the root when there is no room)
        self.bad_lpf = False  # e2fsck's ctx->bad_lost_and_found
        self.lpf_tried = False
        self.unlinked: list[int] = []  # directories unlinked from '/' (an old lost+found)
        self.editor = DirEditor(ctx, st, al)
        # blocks earlier passes allocated through another allocator
        bm = getattr(al, "_blocks", None)
        if bm is not None:
            for b in st.extra_blocks:
                if 0 <= b < len(bm):
                    bm[b] = True

    def run(self) -> None:
        ctx, st = self.ctx, self.st
        if ROOT_INO not in st.dirs or ROOT_INO in st.cleared:
            if ROOT_INO in st.inline_dirs:
                pass
            elif ctx.ask(P.NO_ROOT):
                try:
                    st.inodes.pop(ROOT_INO, None)
                    new_dir_inode(ctx, st, self.al, ROOT_INO, ROOT_INO)
                    st.refs[ROOT_INO] = st.refs.get(ROOT_INO, 0)
                except RepairError as exc:
                    ctx.fail(str(exc))
                    return
            else:
                return
        st.parent[ROOT_INO] = ROOT_INO
        done: set[int] = {ROOT_INO}
        dirs = sorted(i for i in set(st.dirs) | st.inline_dirs if i not in st.cleared)
        for d in dirs:
            self.connect(d, done)
        # e2fsck restarts after unlinking a directory lost+found; the old one is then
        # an unconnected directory like any other
        while self.unlinked:
            d = self.unlinked.pop(0)
            if d in st.cleared or not st.is_dir(d) or st.parent.get(d):
                continue
            done.discard(d)
            self.connect(d, done)
        for d in dirs:
            if d in st.cleared:
                continue
            if d == ROOT_INO:
                dd = st.dotdot.get(d)
                if dd is not None and dd != ROOT_INO:
                    if ctx.ask(P.BAD_DOT_DOT, dir=d, ino=d, value=dd, want=ROOT_INO):
                        self.fix_dotdot(d, ROOT_INO)
                continue
            par = st.parent.get(d, 0)
            dd = st.dotdot.get(d, 0)
            if dd != par:
                if ctx.ask(P.BAD_DOT_DOT, dir=d, ino=d, value=dd, want=par):
                    self.fix_dotdot(d, par)
        if ctx.writable:
            # e2fsck forces the creation of /lost+found
            self.get_lost_and_found(fix=True)

    def connect(self, d: int, done: set[int]) -> None:
        """e2fsck's check_directory: walk up the parents until a connected directory."""
        ctx, st = self.ctx, self.st
        if d in done:
            return
        path: list[int] = []
        seen: set[int] = set()
        cur = d
        while True:
            if cur in done:
                break
            if cur in seen:
                # a loop: reconnect the directory where it closes
                if ctx.ask(P.LOOP, ino=cur):
                    self.reconnect(cur)
                break
            seen.add(cur)
            path.append(cur)
            par = st.parent.get(cur, 0)
            if not par or par in st.cleared:
                if ctx.ask(P.UNCONNECTED_DIR, ino=cur, parent=st.dotdot.get(cur, 0)):
                    self.reconnect(cur)
                break
            cur = par
        done.update(path)

    # ------------------------------------------------------------------ lost+found
    def get_lost_and_found(self, fix: bool) -> int:
        """e2fsck_get_lost_and_found: /lost+found's inode (0: none), made or remade when
        ``fix``; the root directory when there is no room for one."""
        ctx, st = self.ctx, self.st
        if self.lpf:
            return self.lpf
        if self.lpf_tried or not fix:
            ino = st.lost_found
            return ino if ino and st.is_dir(ino) and ino not in st.cleared else 0
        self.lpf_tried = True
        if ROOT_INO not in st.dirs:
            return 0
        ino = st.lost_found
        if ino and ino not in st.cleared and ino in st.inodes:
            raw = st.inodes[ino]
            flags = flags_of(raw)
            problem = None
            if flags & INLINE_DATA_FL:
                problem = P.LPF_INLINE
            elif flags & ENCRYPT_FL:
                problem = P.LPF_ENCRYPTED
            elif st.is_dir(ino):
                self.lpf = ino
                return ino
            else:
                problem = P.LPF_NOT_DIR
            if not ctx.ask(problem, ino=ino):
                return 0
            if not self.editor.unlink(ROOT_INO, LPF_NAME, ino):
                ctx.fail("cannot find the entry in /")
                return 0
            st.refs[ino] = st.refs.get(ino, 0) - 1
            st.lost_found = 0
            if st.is_dir(ino):
                if st.parent.get(ino) == ROOT_INO:
                    st.parent[ino] = 0
                self.unlinked.append(ino)
        # is there room for one (a block, then an inode, as e2fsck allocates)?
        why = None
        try:
            blk = self.al.block(ctx.group_first(0))
            _unclaim(self.al, st, blk)
        except RepairError as exc:
            why = str(exc)
        if why is None and not self._free_inode():
            why = "no free inodes"
        if why is not None:
            ctx.ask(P.LPF_NO_SPACE, why=why)
            self.lpf = ROOT_INO
            return ROOT_INO
        if not ctx.ask(P.NO_LPF):
            return 0
        try:
            ino = self.al.inode()
            new_dir_inode(ctx, st, self.al, ino, ROOT_INO)
            U16.pack_into(st.inodes[ino], 0, 0o40700)  # e2fsck makes it drwx------
            if not self.editor.link(ROOT_INO, LPF_NAME, ino, FT_DIR):
                if not ctx.ask(P.EXPAND_LPF, ino=ROOT_INO):
                    raise RepairError("no room in / for lost+found")
                expand_dir(ctx, st, self.al, ROOT_INO)
                if not self.editor.link(ROOT_INO, LPF_NAME, ino, FT_DIR):
                    raise RepairError("no room in / for lost+found")
        except RepairError as exc:
            ctx.fail(str(exc))
            return 0
        st.refs[ino] = st.refs.get(ino, 0) + 1
        st.parent[ino] = ROOT_INO
        st.lost_found = ino
        self.lpf = ino
        return ino

    def _free_inode(self) -> bool:
        ctx, st = self.ctx, self.st
        for ino in range(ctx.first_ino, ctx.inodes_count + 1):
            if ino not in st.inodes or ino in st.cleared:
                if ctx.groups[(ino - 1) // ctx.ipg].inode_table:
                    return True
        return False

    def lost_found(self, create: bool) -> int:
        return self.get_lost_and_found(create)

    def reconnect(self, ino: int, ft: int = FT_DIR) -> bool:
        """e2fsck_reconnect_file: link ``ino`` into lost+found as #ino."""
        ctx, st = self.ctx, self.st
        if not self.lpf and not self.bad_lpf:
            if not self.get_lost_and_found(fix=True):
                self.bad_lpf = True
        if self.bad_lpf or not self.lpf:
            ctx.fail("no /lost+found")
            return False
        lpf = self.lpf
        name = b"#%d" % ino
        try:
            if not self.editor.link(lpf, name, ino, ft):
                if not ctx.ask(P.EXPAND_LPF, ino=lpf):
                    return False
                expand_dir(ctx, st, self.al, lpf)
                if not self.editor.link(lpf, name, ino, ft):
                    raise RepairError("no room in lost+found")
        except RepairError as exc:
            ctx.fail(str(exc))
            return False
        st.refs[ino] = st.refs.get(ino, 0) + 1
        if ft == FT_DIR:
            st.parent[ino] = lpf
            self.fix_dotdot(ino, lpf)
        return True

    def fix_dotdot(self, d: int, parent: int) -> None:
        ctx, st = self.ctx, self.st
        raw = st.inodes.get(d)
        blocks = st.dirs.get(d)
        if raw is None:
            return
        if blocks:
            pblk = blocks[0][1]
            if not pblk:
                ctx.fail("directory has no first block")
                return
            buf = bytearray(ctx.block(pblk))
            ino, rl, nl, ft = _DIRENT.unpack_from(buf, 0)
            rl = de.rec_len_from_disk(rl, ctx.bs)
            if rl < 12 or rl + 12 > ctx.bs:
                ctx.fail("cannot find '..'")
                return
            _, rl2, nl2, _ = _DIRENT.unpack_from(buf, rl)
            if nl2 != 2 or bytes(buf[rl + 8: rl + 10]) != b"..":
                ctx.fail("cannot find '..'")
                return
            old = struct.unpack_from("<I", buf, rl)[0]  # the inode the entry counted for
            struct.pack_into("<I", buf, rl, parent)
            if ctx.filetype:
                buf[rl + 7] = FT_DIR
            ctx.write_dir_block(pblk, buf, d, generation_of(raw))
        elif d in st.inline_dirs:
            old = struct.unpack_from("<I", raw, 40)[0]
            struct.pack_into("<I", raw, 40, parent)
            st.changed.add(d)
        else:
            return
        if old:
            st.refs[old] = st.refs.get(old, 0) - 1
        st.refs[parent] = st.refs.get(parent, 0) + 1
        st.dotdot[d] = parent
