"""Pass 4: reference counts — every in-use inode's i_links_count against the entries that
reach it; unattached inodes reconnected to lost+found, or cleared when empty."""

from __future__ import annotations

from . import problems as P
from .arrays import link_mismatches
from .context import Context
from .pass3 import Pass3
from .state import (
    FT_OF_MODE,
    ROOT_INO,
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    U16,
    U32,
    State,
    flags_of,
    links_of,
    mode_of,
    size_of,
)

EA_INODE_FL = 0x200000


class Pass4:
    def __init__(self, ctx: Context, st: State, p3: Pass3):
        self.ctx = ctx
        self.st = st
        self.p3 = p3

    def run(self) -> None:
        ctx, st = self.ctx, self.st
        skip = {ctx.sb.f["s_journal_inum"]} if ctx.sb.has_compat("has_journal") else set()
        # e2fsck's pass 4 leaves the project quota inode and the orphan file alone too
        skip |= {ctx.sb.f["s_prj_quota_inum"], ctx.sb.f["s_orphan_file_inum"]} - {0}
        # only inodes whose link count differs from the entries counted can need a look
        todo = link_mismatches(ctx, st)
        todo.append(ROOT_INO)
        for ino in sorted(set(todo)):
            if ino not in st.inodes:
                continue
            if ino in st.cleared or ino in skip:
                continue
            if ino != ROOT_INO and ino < ctx.first_ino:
                continue
            raw = st.inodes[ino]
            if flags_of(raw) & EA_INODE_FL:
                continue
            link = links_of(raw)
            if link == 0 and ino != ROOT_INO:
                continue
            counted = st.refs.get(ino, 0)
            mode = mode_of(raw) & S_IFMT
            if counted == 0:
                if U32.unpack_from(raw, 28)[0] == 0 and mode in (S_IFREG, S_IFDIR) and size_of(raw) == 0 \
                        or (U32.unpack_from(raw, 28)[0] == 0 and mode in (S_IFREG, S_IFDIR)):
                    if ctx.ask(P.UNATTACHED_ZERO, ino=ino):
                        U16.pack_into(raw, 26, 0)
                        U32.pack_into(raw, 20, ctx.now)
                        st.changed.add(ino)
                        st.cleared.add(ino)
                        st.dirs.pop(ino, None)
                        continue
                    continue
                if mode == S_IFDIR:
                    continue  # pass 3 owns directories
                if ctx.ask(P.UNATTACHED_INODE, ino=ino):
                    if not self.p3.reconnect(ino, FT_OF_MODE.get(mode, 0)):
                        continue
                    counted = st.refs.get(ino, 0)
                else:
                    continue
            want = counted
            if mode == S_IFDIR and counted > 65000 and ctx.sb.has_ro("dir_nlink"):
                want = 1
            if link != want:
                if ctx.ask(P.BAD_REF_COUNT, ino=ino, value=link, want=want):
                    U16.pack_into(raw, 26, want)
                    st.changed.add(ino)
