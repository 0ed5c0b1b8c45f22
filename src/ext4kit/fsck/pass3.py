"""Pass 3: directory connectivity — the root, reachability from it (loops broken),
lost+found found or created, unconnected directories reconnected, '..' fixed."""

from __future__ import annotations

import struct

from ..ondisk import dirent as de
from . import problems as P
from .context import Context
from .repair import Allocator, RepairError, add_entry, new_dir_inode
from .state import FT_DIR, ROOT_INO, S_IFDIR, S_IFMT, State, generation_of, mode_of

_DIRENT = struct.Struct("<IHBB")


class Pass3:
    def __init__(self, ctx: Context, st: State, al: Allocator):
        self.ctx = ctx
        self.st = st
        self.al = al
        self.lpf_tried = False

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
            if d in done:
                continue
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
        for d in dirs:
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
        if ctx.writable and not st.lost_found:
            self.lost_found(create=True)

    # ------------------------------------------------------------------ lost+found
    def lost_found(self, create: bool) -> int:
        ctx, st = self.ctx, self.st
        if st.lost_found and st.lost_found not in st.cleared:
            raw = st.inodes.get(st.lost_found)
            if raw is not None and mode_of(raw) & S_IFMT == S_IFDIR and st.lost_found in st.dirs:
                return st.lost_found
        if self.lpf_tried or not create:
            return 0
        self.lpf_tried = True
        if ROOT_INO not in st.dirs:
            return 0
        if not ctx.ask(P.NO_LPF):
            return 0
        try:
            ino = self.al.inode()
            new_dir_inode(ctx, st, self.al, ino, ROOT_INO)
            add_entry(ctx, st, self.al, ROOT_INO, b"lost+found", ino, FT_DIR)
        except RepairError as exc:
            ctx.fail(str(exc))
            return 0
        st.refs[ino] = st.refs.get(ino, 0) + 1
        st.parent[ino] = ROOT_INO
        st.lost_found = ino
        return ino

    def reconnect(self, ino: int, ft: int = FT_DIR) -> bool:
        ctx, st = self.ctx, self.st
        lpf = self.lost_found(create=True)
        if not lpf:
            ctx.fail("no /lost+found")
            return False
        try:
            add_entry(ctx, st, self.al, lpf, b"#%d" % ino, ino, ft)
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
        old = st.dotdot.get(d, 0)
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
            struct.pack_into("<I", buf, rl, parent)
            ctx.write_dir_block(pblk, buf, d, generation_of(raw))
        elif d in st.inline_dirs:
            struct.pack_into("<I", raw, 40, parent)
            st.changed.add(d)
        else:
            return
        if old:
            st.refs[old] = st.refs.get(old, 0) - 1
        st.refs[parent] = st.refs.get(parent, 0) + 1
        st.dotdot[d] = parent
