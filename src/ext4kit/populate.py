"""Copy host files and trees into an image (``ext4kit put``, ``mkfs -d``): the inverse of
extract.py, with the same fidelity.

Preserved: content and sparseness (only the data runs SEEK_DATA/SEEK_HOLE report are
written), modes incl. setuid/setgid/sticky, owners, atime/mtime in ns (ctime is the time of
the copy, as on any copy), symlinks, hard-link groups (within one copy), fifos, sockets,
device nodes, and xattrs (user.*, trusted.*, security.*, POSIX ACLs). Each inode is created
with its final attributes and written once; directories get their times after their
children are in. Host names are bytes (no decoding).
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import fs_oserror
from .fs.alloc import NoSpace

if TYPE_CHECKING:
    from .fs.writer import WritableFileSystem
    from .jbd2 import Handle
    from .ondisk.inode import Inode

CHUNK = 8 << 20


@dataclass
class PutStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    specials: int = 0
    hardlinks: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


class Populator:
    def __init__(self, fs: WritableFileSystem, *, xattrs: bool = True):
        self.fs = fs
        self.want_xattrs = xattrs
        self.stats = PutStats()
        self.links: dict[tuple[int, int], int] = {}  # host (dev, ino) -> image ino

    # ------------------------------------------------------------------ entry points
    def put(self, src: Any, dest: Any) -> PutStats:
        """cp -a semantics: into DEST when it is an existing directory, else as DEST."""
        fs = self.fs
        bsrc = os.fsencode(src)
        st = os.lstat(bsrc)
        bdest = fs._bpath(dest)
        try:
            target = fs._resolve(bdest, True)
        except FileNotFoundError:
            target = None
        if target is not None and target.is_dir():
            base = bsrc.rstrip(b"/").rpartition(b"/")[2] or b"."
            if base in (b".", b".."):
                return self._merge_dir(bsrc, target)
            bdest = bdest.rstrip(b"/") + b"/" + base
        parent, name, shown = fs._split(bdest)
        if name in (b".", b".."):
            raise fs_oserror(errno.EINVAL, shown)
        existing = fs._lookup(parent, name)
        if existing is not None:
            old = fs.get_inode(existing)
            if _stat.S_ISDIR(st.st_mode) and old.is_dir():
                return self._merge_dir(bsrc, old)
            if old.is_dir():
                raise fs_oserror(errno.EISDIR, shown)
            if _stat.S_ISDIR(st.st_mode):
                raise fs_oserror(errno.ENOTDIR, shown)
            fs.unlink(bdest)
        with fs._op() as h:
            try:
                self._copy(h, parent, name, bsrc, st)
            finally:  # the entry (or a new directory block) is on disk: so is the parent
                fs.write_inode(h, parent)
        if _stat.S_ISDIR(st.st_mode):
            made = fs._lookup(fs.get_inode(parent.ino), name)
            assert made is not None
            self._tree(bsrc, fs.get_inode(made))
        return self.stats

    def _merge_dir(self, bsrc: bytes, dinode: Inode) -> PutStats:
        self._tree(bsrc, dinode)
        return self.stats

    # ------------------------------------------------------------------ the walk
    def _tree(self, top: bytes, top_inode: Inode) -> None:
        """Copy the children of host dir ``top`` into image dir ``top_inode`` (iteratively:
        deep trees do not recurse in Python)."""
        fs = self.fs
        stack: list[tuple[bytes, Inode, os.stat_result | None]] = [(top, top_inode, None)]
        pending: list[tuple[Inode, os.stat_result]] = []  # directories whose times come last
        while stack:
            path, dinode, dst = stack.pop()
            try:
                with os.scandir(path) as it:
                    entries = sorted((e.name, e.path) for e in it)
            except OSError as exc:
                self.stats.warnings.append(f"{os.fsdecode(path)}: {exc.strerror}")
                continue
            subdirs: list[tuple[bytes, Inode, os.stat_result | None]] = []
            with fs._op() as h:
                try:
                    for name, cpath in entries:
                        try:
                            st = os.lstat(cpath)
                        except OSError as exc:
                            self.stats.warnings.append(f"{os.fsdecode(cpath)}: {exc.strerror}")
                            continue
                        existing = fs._lookup(dinode, name)
                        if existing is not None:
                            old = fs.get_inode(existing)
                            if _stat.S_ISDIR(st.st_mode) and old.is_dir():
                                subdirs.append((cpath, old, None))
                                continue
                            raise fs_oserror(errno.EEXIST, os.fsdecode(cpath))
                        child = self._copy(h, dinode, name, cpath, st)
                        if child is not None and _stat.S_ISDIR(st.st_mode):
                            subdirs.append((cpath, child, st))
                finally:  # entries added so far (and new directory blocks) are on disk
                    fs.write_inode(h, dinode)
            stack.extend(reversed(subdirs))
            if dst is not None:
                pending.append((dinode, dst))
        # directory times last (adding children changed them)
        with fs._op() as h:
            for dinode, dst in pending:
                d = fs.get_inode(dinode.ino)
                d.set_time_ns("atime", dst.st_atime_ns)
                d.set_time_ns("mtime", dst.st_mtime_ns)
                fs.write_inode(h, d)

    # ------------------------------------------------------------------ one object
    def _copy(self, h: Handle, parent: Inode, name: bytes, path: bytes,
              st: os.stat_result) -> Inode | None:
        fs = self.fs
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        if not _stat.S_ISDIR(mode) and st.st_nlink > 1 and key in self.links:
            inode = fs.get_inode(self.links[key])
            self._add_entry(h, parent, name, inode)  # first: it may fail with ENOSPC
            inode.set_links(inode.links_count + 1)
            fs.write_inode(h, inode)
            self.stats.hardlinks += 1
            return inode
        inode = fs.new_inode(h, mode, parent, uid=st.st_uid, gid=st.st_gid)
        try:
            if _stat.S_ISDIR(mode):
                from .fs import dirwrite

                dirwrite.init_dir(fs, h, inode, parent.ino)
                inode.set_links(2)
            elif _stat.S_ISREG(mode):
                inode.set_links(1)
                self._copy_data(h, inode, path, st)
                self.stats.files += 1
            elif _stat.S_ISLNK(mode):
                inode.set_links(1)
                self._symlink(h, inode, os.readlink(path))
                self.stats.symlinks += 1
            else:
                inode.set_links(1)
                if _stat.S_ISCHR(mode) or _stat.S_ISBLK(mode):
                    inode.set_rdev(os.major(st.st_rdev), os.minor(st.st_rdev))
                self.stats.specials += 1
            if self.want_xattrs:
                self._xattrs(h, inode, path)
            inode.set_time_ns("atime", st.st_atime_ns)
            inode.set_time_ns("mtime", st.st_mtime_ns)
            fs.write_inode(h, inode)
            self._add_entry(h, parent, name, inode)
        except (NoSpace, OSError):
            # no name for it: give the inode and its blocks back, so nothing leaks
            inode.set_links(0)
            fs._release_inode(h, inode)
            raise
        if _stat.S_ISDIR(mode):
            fs._inc_dir_links(parent)
            self.stats.dirs += 1
        if not _stat.S_ISDIR(mode) and st.st_nlink > 1:
            self.links[key] = inode.ino
        return inode

    def _add_entry(self, h: Handle, parent: Inode, name: bytes, inode: Inode) -> None:
        from .fs import dirwrite

        dirwrite.add_entry(self.fs, h, parent, name, inode.ino, self.fs._ft(inode.mode))

    def _symlink(self, h: Handle, inode: Inode, target: bytes) -> None:
        if len(target) >= self.fs.block_size:
            raise fs_oserror(errno.ENAMETOOLONG, os.fsdecode(target))
        self.fs.store_symlink(h, inode, target)

    def _copy_data(self, h: Handle, inode: Inode, path: bytes, st: os.stat_result) -> None:
        fs = self.fs
        size = st.st_size
        if size == 0:
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for start, end in _data_runs(fd, size):
                pos = start
                while pos < end:
                    n = min(CHUNK, end - pos)
                    data = os.pread(fd, n, pos)
                    if not data:
                        break
                    fs.inode_write(h, inode, pos, data)
                    pos += len(data)
                    self.stats.bytes += len(data)
        finally:
            os.close(fd)
        if inode.size != size:  # a trailing hole
            fs.inode_truncate(h, inode, size)

    def _xattrs(self, h: Handle, inode: Inode, path: bytes) -> None:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return
        if not names:
            return
        from .fs import xattrwrite

        for key in names:
            try:
                value = os.getxattr(path, key, follow_symlinks=False)
                xattrwrite.set_xattr(self.fs, h, inode, key, value)
            except OSError as exc:
                self.stats.warnings.append(f"{os.fsdecode(path)}: xattr {key}: {exc.strerror}")


def _data_runs(fd: int, size: int) -> list[tuple[int, int]]:
    """[start, end) byte ranges holding data (SEEK_DATA/SEEK_HOLE; whole file if unsupported)."""
    runs = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            runs.append((start, min(end, size)))
            pos = end
    except OSError:
        return [(0, size)]
    return runs


def put(fs: WritableFileSystem, src: Any, dest: Any, **kw: Any) -> PutStats:
    return Populator(fs, **kw).put(src, dest)
