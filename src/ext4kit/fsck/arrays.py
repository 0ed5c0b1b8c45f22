"""Inode facts as arrays indexed by inode number, for the passes that look at every
in-use inode (pass 2's entry checks, pass 4's link counts, pass 5's inode bitmaps):
one ``bytes.join`` of pass 1's raw inodes instead of a Python step per inode."""

from __future__ import annotations

import numpy as np

from .context import Context
from .state import ROOT_INO, State


class InodeArrays:
    """Mode and link count of the inodes pass 1 kept (cleared ones too), as arrays sorted
    by inode number (compact: a 1 TiB file system with few files costs little)."""

    @staticmethod
    def of(st: State) -> InodeArrays:
        """The arrays for ``st.inodes`` now: built once, then only the inodes repairs
        changed (``st.changed``) are read again; rebuilt when inodes came or went."""
        a = st.arrays
        if not isinstance(a, InodeArrays) or a.count != len(st.inodes):
            a = InodeArrays(st)
            st.arrays = a
            return a
        todo = [i for i in st.changed if i in st.inodes]
        if todo:
            want = np.asarray(todo, dtype=np.int64)
            found, at = a.find(want)
            if not found.all():
                a = InodeArrays(st)
                st.arrays = a
                return a
            raws = [st.inodes[i] for i in todo]
            a.mode[at] = [r[0] | r[1] << 8 for r in raws]
            a.links[at] = [r[26] | r[27] << 8 for r in raws]
            a.depth[at] = [r[46] | r[47] << 8 for r in raws]
        return a

    def live(self, st: State) -> np.ndarray:
        """Mask of the inodes not cleared."""
        if not st.cleared:
            return np.ones(len(self.inos), dtype=bool)
        cl = np.fromiter(st.cleared, dtype=np.int64, count=len(st.cleared))
        return ~np.isin(self.inos, cl)

    def __init__(self, st: State):
        n = len(st.inodes)
        self.count = n
        inos = np.fromiter(st.inodes.keys(), dtype=np.int64, count=n)
        joined = b"".join(st.inodes.values())
        isz = len(joined) // n if n else 0
        if n and isz * n == len(joined) and isz >= 28:
            rows = np.frombuffer(joined, dtype=np.uint8).reshape(n, isz)
            mode = rows[:, 0].astype(np.uint16) | rows[:, 1].astype(np.uint16) << 8
            links = rows[:, 26].astype(np.uint16) | rows[:, 27].astype(np.uint16) << 8
            depth = rows[:, 46].astype(np.uint16) | rows[:, 47].astype(np.uint16) << 8
        else:  # inodes of mixed sizes: one at a time
            vals = list(st.inodes.values())
            mode = np.fromiter((r[0] | r[1] << 8 for r in vals), dtype=np.uint16, count=n)
            links = np.fromiter((r[26] | r[27] << 8 for r in vals), dtype=np.uint16, count=n)
            depth = np.fromiter((r[46] | r[47] << 8 if len(r) >= 48 else 0 for r in vals),
                                dtype=np.uint16, count=n)
        order = np.argsort(inos, kind="stable")
        self.inos = inos[order]
        self.mode = mode[order]
        self.links = links[order]
        self.depth = depth[order]  # i_block's eh_depth field (meaningful for extent files)

    def find(self, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, index into the arrays) for inode numbers ``want``."""
        if not len(self.inos):
            return np.zeros(len(want), dtype=bool), np.zeros(len(want), dtype=np.int64)
        i = np.minimum(np.searchsorted(self.inos, want), len(self.inos) - 1)
        return self.inos[i] == want, i


def used_inodes(ctx: Context, st: State) -> np.ndarray:
    """Sorted inode numbers pass 5 counts as in use: kept by pass 1, not cleared, and
    reserved (below s_first_ino), linked, or the root; and those in bad blocks."""
    a = InodeArrays.of(st)
    m = a.live(st) & ((a.inos < ctx.first_ino) | (a.links != 0) | (a.inos == ROOT_INO))
    if not st.bb_inodes:
        return a.inos[m]
    # inodes stored in inode-table blocks on the bad blocks list stay marked in use
    bb = np.fromiter(st.bb_inodes, dtype=np.int64, count=len(st.bb_inodes))
    return np.union1d(a.inos[m], bb)


def link_mismatches(ctx: Context, st: State) -> list[int]:
    """Inodes kept by pass 1 whose i_links_count differs from the entries pass 2 counted
    (or counted more than 65,000): the only ones pass 4 must look at."""
    if not st.inodes:
        return []
    a = InodeArrays.of(st)
    refs = np.zeros(len(a.inos), dtype=np.int64)
    if st.refs:
        k = np.fromiter(st.refs.keys(), dtype=np.int64, count=len(st.refs))
        v = np.fromiter(st.refs.values(), dtype=np.int64, count=len(st.refs))
        found, i = a.find(k)
        refs[i[found]] = v[found]
    m = (a.links.astype(np.int64) != refs) | (refs > 65000)
    return a.inos[m].tolist()
