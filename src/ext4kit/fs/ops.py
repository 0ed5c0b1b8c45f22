"""The os-like write API of a WritableFileSystem (mixed into it).

Every public call is one handle (one atomic operation of the journal): it resolves paths,
checks POSIX preconditions (raising OSError with the errno ``os`` would), then changes
inodes, directories, block maps and xattrs through the modules that own each structure:

    dirwrite   directory entries (linear + htree)      mapper   block maps (extent/indirect)
    xattrwrite extended attributes (in-inode + block)   inline   inline_data files/dirs
    alloc      bitmaps, free counts                     writer   inode packing, the journal

Transactions are committed in groups: when the running one holds many blocks, on
``sync``/``fsync`` and on ``close``. An inode unlinked while open stays on the orphan list
(s_last_orphan chained through i_dtime) until its last file object closes; a file system
opened with orphans left by a crash frees them first, as the kernel does at mount.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import CorruptError, fs_oserror
from ..ondisk import inode as _inode
from ..ondisk.inode import FT_FROM_MODE, Inode
from .alloc import NoSpace

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from .writer import WritableFileSystem

ROOT_INO = 2
LINK_MAX = 65000  # EXT4_LINK_MAX
WRITE_CHUNK_BLOCKS = 32768  # blocks mapped per step of a large write


def _now() -> int:
    return time.time_ns()


class WriteOps:
    """Mixin: needs the WritableFileSystem attributes (start, commit, alloc, mapper...)."""

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _op(self: WritableFileSystem) -> Iterator[Handle]:
        """One operation: a handle; NoSpace becomes ENOSPC; group commit afterwards."""
        h = self.start()
        try:
            yield h
        except NoSpace:
            raise fs_oserror(errno.ENOSPC) from None
        finally:
            h.stop()
        self.run_timers()  # group commit (size or age of the transaction), the flusher

    def _split(self: WritableFileSystem, path: Any) -> tuple[Inode, bytes, str]:
        """(parent directory inode, last component, printable path). The last component
        is not followed; '.'/'..'/'' as the last component are refused by the callers."""
        bpath = self._bpath(path)
        shown = os.fsdecode(bpath)
        stripped = bpath.rstrip(b"/")
        if not stripped:
            return self.get_inode(ROOT_INO), b".", shown
        head, _, name = stripped.rpartition(b"/")
        if len(name) > 255:
            raise fs_oserror(errno.ENAMETOOLONG, shown)
        parent = self._resolve(head or b"/", True)
        if not parent.is_dir():
            raise fs_oserror(errno.ENOTDIR, shown)
        return parent, name, shown

    def _split_new(self: WritableFileSystem, path: Any) -> tuple[Inode, bytes, str]:
        """``_split`` for a name about to be created: EEXIST when it is taken."""
        parent, name, shown = self._split(path)
        if name in (b".", b"..") or self._lookup(parent, name) is not None:
            raise fs_oserror(errno.EEXIST, shown)
        return parent, name, shown

    def _lookup(self: WritableFileSystem, dinode: Inode, name: bytes) -> int | None:
        from . import dirs

        if name == b".":
            return dinode.ino
        e = dirs.lookup(self, dinode, name)
        return e.inode if e is not None else None

    def _touch(self: WritableFileSystem, inode: Inode, *which: str, now: int | None = None) -> None:
        t = _now() if now is None else now
        for w in which:
            inode.set_time_ns(w, t)

    @staticmethod
    def _ft(mode: int) -> int:
        return FT_FROM_MODE.get(_stat.S_IFMT(mode), 0)

    def _new_child(self: WritableFileSystem, h: Handle, parent: Inode, name: bytes,
                   mode: int, uid: int | None, gid: int | None) -> Inode:
        """Allocate an inode for ``name`` in ``parent`` (setgid directories pass their group
        on, and their setgid bit to subdirectories)."""
        if gid is None and parent.mode & _stat.S_ISGID:
            gid = parent.gid
            if _stat.S_ISDIR(mode):
                mode |= _stat.S_ISGID
        inode = self.new_inode(h, mode, parent, uid=os.geteuid() if uid is None else uid,
                               gid=os.getegid() if gid is None else gid)
        return inode

    def _link_into(self: WritableFileSystem, h: Handle, parent: Inode, name: bytes,
                   child: Inode) -> None:
        from . import dirwrite

        dirwrite.add_entry(self, h, parent, name, child.ino, self._ft(child.mode))
        self._touch(parent, "mtime", "ctime")
        self.write_inode(h, parent)

    def _abandon_child(self: WritableFileSystem, h: Handle, parent: Inode, child: Inode) -> None:
        """ENOSPC after ``child`` was allocated (its block, or the parent's new entry block,
        did not fit): free the inode and whatever blocks it got, so nothing leaks."""
        child.set_links(0)
        self._release_inode(h, child)
        self.write_inode(h, parent)

    # ------------------------------------------------------------------ directories
    def mkdir(self: WritableFileSystem, path: Any, mode: int = 0o777, *,
              uid: int | None = None, gid: int | None = None) -> None:
        from . import dirwrite

        with self._op() as h:
            parent, name, shown = self._split_new(path)
            self._check_nlink_room(parent, shown)
            child = self._new_child(h, parent, name, _stat.S_IFDIR | (mode & 0o7777), uid, gid)
            try:
                dirwrite.init_dir(self, h, child, parent.ino)
                child.set_links(2)
                self.write_inode(h, child)
                dirwrite.add_entry(self, h, parent, name, child.ino, self._ft(child.mode))
            except NoSpace:
                self._abandon_child(h, parent, child)
                raise
            self._inc_dir_links(parent)
            self._touch(parent, "mtime", "ctime")
            self.write_inode(h, parent)

    def makedirs(self: WritableFileSystem, path: Any, mode: int = 0o777,
                 exist_ok: bool = False) -> None:
        bpath = self._bpath(path)
        parts = [p for p in bpath.split(b"/") if p]
        cur = b""
        for i, p in enumerate(parts):
            cur += b"/" + p
            try:
                self.mkdir(cur, mode)
            except FileExistsError:
                if i == len(parts) - 1:
                    if not exist_ok or not self._resolve(cur).is_dir():
                        raise
                elif not self._resolve(cur).is_dir():
                    raise fs_oserror(errno.ENOTDIR, os.fsdecode(cur)) from None

    def _check_nlink_room(self: WritableFileSystem, parent: Inode, shown: str) -> None:
        if parent.links_count >= LINK_MAX - 1 and not self.sb.has_ro("dir_nlink"):
            raise fs_oserror(errno.EMLINK, shown)

    def _inc_dir_links(self: WritableFileSystem, d: Inode) -> None:
        n = d.links_count
        if n == 1:
            return  # dir_nlink: counting stopped
        if n + 1 >= LINK_MAX:
            d.set_links(1)  # too many subdirectories: "more than the field holds"
        else:
            d.set_links(n + 1)

    def _dec_dir_links(self: WritableFileSystem, d: Inode) -> None:
        if d.links_count > 2:
            d.set_links(d.links_count - 1)

    def rmdir(self: WritableFileSystem, path: Any) -> None:
        from . import dirwrite

        with self._op() as h:
            parent, name, shown = self._split(path)
            if name == b".":
                raise fs_oserror(errno.EINVAL if path not in ("/", b"/") else errno.EBUSY, shown)
            if name == b"..":
                raise fs_oserror(errno.ENOTEMPTY, shown)
            ino = self._lookup(parent, name)
            if ino is None:
                raise fs_oserror(errno.ENOENT, shown)
            child = self.get_inode(ino)
            if not child.is_dir():
                raise fs_oserror(errno.ENOTDIR, shown)
            if not dirwrite.is_empty(self, child):
                raise fs_oserror(errno.ENOTEMPTY, shown)
            dirwrite.remove_entry(self, h, parent, name)
            self._dec_dir_links(parent)
            self._touch(parent, "mtime", "ctime")
            self.write_inode(h, parent)
            child.set_links(0)
            self._release_inode(h, child)

    def rmtree(self: WritableFileSystem, top: Any) -> None:
        """``rm -r``: a bottom-up walk (no recursion); symlinks to directories are unlinked,
        not followed."""
        top = os.fsdecode(self._bpath(top))
        for dirpath, dirnames, filenames in list(self.walk(top, topdown=False)):
            base = dirpath.rstrip("/")
            for name in filenames:
                self.unlink(f"{base}/{name}")
            for name in dirnames:
                p = f"{base}/{name}"
                if _stat.S_ISLNK(self.lstat(p).st_mode):
                    self.unlink(p)
                else:
                    self.rmdir(p)
        if top.strip("/"):
            self.rmdir(top)

    # ------------------------------------------------------------------ names
    def unlink(self: WritableFileSystem, path: Any) -> None:
        from . import dirwrite

        with self._op() as h:
            parent, name, shown = self._split(path)
            if name in (b".", b".."):
                raise fs_oserror(errno.EISDIR, shown)
            ino = self._lookup(parent, name)
            if ino is None:
                raise fs_oserror(errno.ENOENT, shown)
            child = self.get_inode(ino)
            if child.is_dir():
                raise fs_oserror(errno.EISDIR, shown)
            dirwrite.remove_entry(self, h, parent, name)
            self._touch(parent, "mtime", "ctime")
            self.write_inode(h, parent)
            self._drop_link(h, child)

    remove = unlink

    def _drop_link(self: WritableFileSystem, h: Handle, inode: Inode) -> None:
        n = max(0, inode.links_count - 1)
        inode.set_links(n)
        self._touch(inode, "ctime")
        if n == 0:
            if self._open_counts.get(inode.ino):
                self._add_orphan(h, inode)
            else:
                self._release_inode(h, inode)
        else:
            self.write_inode(h, inode)

    def _release_inode(self: WritableFileSystem, h: Handle, inode: Inode) -> None:
        """Free an inode with no links: its blocks, its xattr block, then the inode."""
        if inode.file_acl:
            from . import xattrwrite

            xattrwrite.drop_all_xattrs(self, h, inode)
        if self.cache is not None:
            self.cache.discard(inode.ino)  # its delayed data dies with it, unwritten
        if self._has_block_map(inode):
            self.mapper(inode).truncate(h, inode, 0)
        inode.set_size(0)
        inode.set_links(0)
        inode.f["i_dtime"] = int(time.time()) & 0xFFFFFFFF
        self.write_inode(h, inode)
        self.alloc.free_inode(h, inode.ino, inode.is_dir())

    def _has_block_map(self: WritableFileSystem, inode: Inode) -> bool:
        if inode.flags & _inode.INLINE_DATA_FL:
            return False
        if _stat.S_IFMT(inode.mode) in (_stat.S_IFCHR, _stat.S_IFBLK, _stat.S_IFIFO, _stat.S_IFSOCK):
            return False
        if inode.is_symlink() and self._is_fast_symlink(inode):
            return False
        return True

    def link(self: WritableFileSystem, src: Any, dst: Any, *, follow_symlinks: bool = False) -> None:
        with self._op() as h:
            ino = self._resolve_ino(src, follow_symlinks)
            inode = self.get_inode(ino)
            if inode.is_dir():
                raise fs_oserror(errno.EPERM, os.fsdecode(self._bpath(src)))
            parent, name, shown = self._split_new(dst)
            if inode.links_count >= LINK_MAX:
                raise fs_oserror(errno.EMLINK, shown)
            self._link_into(h, parent, name, inode)  # first: it may fail with ENOSPC
            inode.set_links(inode.links_count + 1)
            self._touch(inode, "ctime")
            self.write_inode(h, inode)

    def symlink(self: WritableFileSystem, target: Any, path: Any, *, uid: int | None = None,
                gid: int | None = None) -> None:
        btarget = self._bpath(target)
        if not btarget:
            raise fs_oserror(errno.ENOENT, os.fsdecode(self._bpath(path)))
        if len(btarget) >= self.block_size or len(btarget) >= 4096:
            raise fs_oserror(errno.ENAMETOOLONG, os.fsdecode(self._bpath(path)))
        with self._op() as h:
            parent, name, shown = self._split_new(path)
            self._make_node(h, parent, name, _stat.S_IFLNK | 0o777, uid, gid,
                            lambda child: self.store_symlink(h, child, btarget))

    def store_symlink(self: WritableFileSystem, h: Handle, inode: Inode, target: bytes) -> None:
        """A symlink's target: in i_block when shorter than 60 bytes (fast), else in one block."""
        if len(target) < 60:
            inode.f["i_block"] = target + bytes(60 - len(target))
        else:
            mapper = self.mapper(inode)
            mapper.init_inode(inode)
            runs = mapper.allocate(h, inode, 0, 1)
            self.write_data(h, runs[0].physical, target + bytes(self.block_size - len(target)))
        inode.set_size(len(target))

    def create(self: WritableFileSystem, path: Any, mode: int = 0o666, *,
               uid: int | None = None, gid: int | None = None) -> int:
        """A new empty regular file (EEXIST if the name exists); returns its inode number."""
        with self._op() as h:
            parent, name, shown = self._split_new(path)
            return self._create_in(h, parent, name, mode, uid, gid)

    def _create_in(self: WritableFileSystem, h: Handle, parent: Inode, name: bytes, mode: int,
                   uid: int | None = None, gid: int | None = None) -> int:
        """A new regular file ``name`` in ``parent`` (the caller checked it is free)."""
        return self._make_node(h, parent, name, _stat.S_IFREG | (mode & 0o7777), uid, gid).ino

    def _make_node(self: WritableFileSystem, h: Handle, parent: Inode, name: bytes, mode: int,
                   uid: int | None, gid: int | None,
                   fill: Callable[[Inode], None] | None = None) -> Inode:
        """A new non-directory inode (``fill`` sets its contents) linked as ``name``; on
        ENOSPC the inode and anything it got are freed again."""
        child = self._new_child(h, parent, name, mode, uid, gid)
        try:
            if fill is not None:
                fill(child)
            child.set_links(1)
            self.write_inode(h, child)
            self._link_into(h, parent, name, child)
        except NoSpace:
            self._abandon_child(h, parent, child)
            raise
        return child

    def mknod(self: WritableFileSystem, path: Any, mode: int = 0o600 | _stat.S_IFREG,
              device: int = 0, *, uid: int | None = None, gid: int | None = None) -> None:
        fmt = _stat.S_IFMT(mode) or _stat.S_IFREG
        if fmt not in (_stat.S_IFREG, _stat.S_IFCHR, _stat.S_IFBLK, _stat.S_IFIFO, _stat.S_IFSOCK):
            raise fs_oserror(errno.EINVAL, os.fsdecode(self._bpath(path)))
        with self._op() as h:
            parent, name, shown = self._split_new(path)
            rdev = fmt in (_stat.S_IFCHR, _stat.S_IFBLK)
            self._make_node(h, parent, name, fmt | (mode & 0o7777), uid, gid,
                            (lambda c: c.set_rdev(os.major(device), os.minor(device)))
                            if rdev else None)

    def rename(self: WritableFileSystem, src: Any, dst: Any) -> None:
        from . import dirwrite

        if self.cache is not None and self.auto_da_alloc:
            self._da_alloc_before_rename(src, dst)
        with self._op() as h:
            sparent, sname, sshown = self._split(src)
            dparent, dname, dshown = self._split(dst)
            if dparent.ino == sparent.ino:
                dparent = sparent  # one inode object for the one directory
            if sname in (b".", b"..") or dname in (b".", b".."):
                raise fs_oserror(errno.EBUSY if sname == b"." or dname == b"." else errno.EINVAL,
                                 sshown)
            sino = self._lookup(sparent, sname)
            if sino is None:
                raise fs_oserror(errno.ENOENT, sshown)
            moving = self.get_inode(sino)
            dino = self._lookup(dparent, dname)
            if dino == sino:
                return  # same file (or hard links to it): nothing to do, as POSIX says
            if moving.is_dir() and self._is_ancestor(sino, dparent.ino):
                raise fs_oserror(errno.EINVAL, dshown)
            victim = self.get_inode(dino) if dino is not None else None
            if victim is not None:
                if moving.is_dir() and not victim.is_dir():
                    raise fs_oserror(errno.ENOTDIR, dshown)
                if not moving.is_dir() and victim.is_dir():
                    raise fs_oserror(errno.EISDIR, dshown)
                if victim.is_dir() and not dirwrite.is_empty(self, victim):
                    raise fs_oserror(errno.ENOTEMPTY, dshown)
            cross = sparent.ino != dparent.ino
            if moving.is_dir() and cross and victim is None:
                self._check_nlink_room(dparent, dshown)
            now = _now()
            # 1. the new name: replace the victim's entry or add one
            if victim is not None:
                dirwrite.replace_entry(self, h, dparent, dname, sino, self._ft(moving.mode))
            else:
                dirwrite.add_entry(self, h, dparent, dname, sino, self._ft(moving.mode))
            # 2. the old name
            dirwrite.remove_entry(self, h, sparent, sname)
            # 3. a moved directory's '..' and the parents' link counts
            if moving.is_dir() and cross:
                dirwrite.set_dotdot(self, h, moving, dparent.ino)
                self._dec_dir_links(sparent)
                if victim is None:
                    self._inc_dir_links(dparent)
            self._touch(moving, "ctime", now=now)
            self.write_inode(h, moving)
            self._touch(sparent, "mtime", "ctime", now=now)
            if cross:
                self._touch(dparent, "mtime", "ctime", now=now)
                self.write_inode(h, dparent)
            # 4. the replaced inode loses its name
            if victim is not None:
                if victim.is_dir():
                    victim.set_links(0)
                    if not cross:  # across directories victim's '..' and moving's cancel
                        self._dec_dir_links(sparent)
                    self._release_inode(h, victim)
                else:
                    self._drop_link(h, victim)
            self.write_inode(h, sparent)

    def _da_alloc_before_rename(self: WritableFileSystem, src: Any, dst: Any) -> None:
        """auto_da_alloc: renaming a regular file over an existing one writes back the
        source's delayed data first, so the rename cannot commit without it (ext4's
        answer to replace-by-rename without fsync)."""
        assert self.cache is not None
        try:
            sino = self._resolve_ino(src, False)
            self._resolve_ino(dst, False)
        except OSError:
            return
        if self.cache.has_dirty(sino) and self.get_inode(sino).is_reg():
            self.cache.writeback(sino)

    def _is_ancestor(self: WritableFileSystem, anc: int, ino: int) -> bool:
        """True when directory ``anc`` is ``ino`` or one of its ancestors."""
        seen = 0
        while True:
            if ino == anc:
                return True
            if ino == ROOT_INO:
                return False
            parent = self._lookup(self.get_inode(ino), b"..")
            seen += 1
            if parent is None or seen > self.inodes_count:
                raise CorruptError(f"directory inode {ino}: '..' chain does not reach the root")
            ino = parent

    # ------------------------------------------------------------------ attributes
    def chmod(self: WritableFileSystem, path: Any, mode: int, *, follow_symlinks: bool = True) -> None:
        with self._op() as h:
            inode = self._resolve(path, follow_symlinks)
            inode.set_mode(_stat.S_IFMT(inode.mode) | (mode & 0o7777))
            self._touch(inode, "ctime")
            self.write_inode(h, inode)

    def chown(self: WritableFileSystem, path: Any, uid: int, gid: int, *,
              follow_symlinks: bool = True) -> None:
        with self._op() as h:
            inode = self._resolve(path, follow_symlinks)
            if uid != -1:
                inode.set_uid(uid)
            if gid != -1:
                inode.set_gid(gid)
            self._touch(inode, "ctime")
            self.write_inode(h, inode)

    def lchown(self: WritableFileSystem, path: Any, uid: int, gid: int) -> None:
        self.chown(path, uid, gid, follow_symlinks=False)

    def utime(self: WritableFileSystem, path: Any, times: tuple[float, float] | None = None, *,
              ns: tuple[int, int] | None = None, follow_symlinks: bool = True) -> None:
        if times is not None and ns is not None:
            raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
        now = _now()
        if ns is None:
            ns = (now, now) if times is None else (int(times[0] * 1e9), int(times[1] * 1e9))
        with self._op() as h:
            inode = self._resolve(path, follow_symlinks)
            inode.set_time_ns("atime", ns[0])
            inode.set_time_ns("mtime", ns[1])
            self._touch(inode, "ctime", now=now)
            self.write_inode(h, inode)

    def setxattr(self: WritableFileSystem, path: Any, attribute: str, value: bytes,
                 flags: int = 0, *, follow_symlinks: bool = True) -> None:
        from . import xattrwrite

        with self._op() as h:
            inode = self._resolve(path, follow_symlinks)
            self._touch(inode, "ctime")
            xattrwrite.set_xattr(self, h, inode, attribute, bytes(value), flags)

    def removexattr(self: WritableFileSystem, path: Any, attribute: str, *,
                    follow_symlinks: bool = True) -> None:
        from . import xattrwrite

        with self._op() as h:
            inode = self._resolve(path, follow_symlinks)
            self._touch(inode, "ctime")
            xattrwrite.remove_xattr(self, h, inode, attribute)

    # ------------------------------------------------------------------ file data
    def _reg_for_write(self: WritableFileSystem, path: Any) -> Inode:
        inode = self._resolve(path, True)
        if inode.is_dir():
            raise fs_oserror(errno.EISDIR, os.fsdecode(self._bpath(path)))
        if not inode.is_reg():
            raise fs_oserror(errno.EINVAL, os.fsdecode(self._bpath(path)))
        return inode

    def truncate(self: WritableFileSystem, path: Any, length: int) -> None:
        if length < 0:
            raise fs_oserror(errno.EINVAL, os.fsdecode(self._bpath(path)))
        with self._op() as h:
            inode = self._reg_for_write(path)
            self.inode_truncate(h, inode, length)

    def inode_truncate(self: WritableFileSystem, h: Handle, inode: Inode, length: int) -> None:
        """Set the size of a regular file: shrinking frees blocks past the end and zeroes the
        tail of the last block; growing leaves a hole."""
        if length > self.max_file_size_for(inode):
            raise fs_oserror(errno.EFBIG)
        cf = None
        if self.cache is not None:
            cf = self.cache.truncate(inode.ino, length)
            if cf is not None:
                inode.set_size(cf.disksize)  # the disk part below works on i_disksize
            if length == 0 and self.auto_da_alloc:
                # auto_da_alloc: the data written after truncate-to-zero is written back
                # when the file is closed (ext4's EXT4_STATE_DA_ALLOC_CLOSE)
                cf = self.cache.track(inode.ino, inode.size)
                cf.da_alloc_close = True
        old = inode.size
        bs = self.block_size
        if inode.flags & _inode.INLINE_DATA_FL:
            from . import inline

            if not inline.truncate_inline(self, h, inode, length):
                inline.convert_file_to_blocks(self, h, inode)
        if not inode.flags & _inode.INLINE_DATA_FL:
            if length < old:
                keep = (length + bs - 1) // bs
                self.mapper(inode).truncate(h, inode, keep)
                if length % bs:
                    self._zero_tail(h, inode, length)
            elif length > old and old % bs:
                self._zero_tail(h, inode, old)  # stale bytes past the old end stay hidden
        if cf is not None:
            cf.size = cf.disksize = length  # a size change is journaled at once (ext4_setattr)
        inode.set_size(length)
        self._touch(inode, "mtime", "ctime")
        self.write_inode(h, inode)

    def max_file_size_for(self: WritableFileSystem, inode: Inode) -> int:
        bs = self.block_size
        if inode.flags & _inode.EXTENTS_FL or self.sb.has_incompat("extent"):
            return ((1 << 32) - 1) * bs
        per = bs // 4
        limit = (12 + per + per * per + per * per * per) * bs
        if not self.sb.has_ro("large_file"):
            limit = min(limit, (1 << 31) - 1)
        return min(limit, ((1 << 32) - 1) * 512 * (bs // 512) if not self.sb.has_ro("huge_file") else limit)

    def _zero_tail(self: WritableFileSystem, h: Handle, inode: Inode, pos: int) -> None:
        """Zero the bytes of pos's block from pos to the block end (if mapped and written)."""
        bs = self.block_size
        lblk = pos // bs
        run = self.block_map(inode).overlapping(lblk, 1)
        if not run or run[0].uninit:
            return
        phys = run[0].physical + (lblk - run[0].logical)
        buf = bytearray(self.read_data_block(phys))
        off = pos % bs
        if any(buf[off:]):
            buf[off:] = bytes(bs - off)
            self.write_data(h, phys, buf)

    def inode_write(self: WritableFileSystem, h: Handle, inode: Inode, offset: int,
                    data: bytes | bytearray | memoryview, *, touch: bool = True) -> int:
        """Write ``data`` at ``offset`` of a regular file (allocating, extending i_size).
        On ENOSPC what was written stays written (and i_size covers it), nothing else.
        ``touch=False`` (writeback of cached data) keeps mtime/ctime as the write set them."""
        n = len(data)
        if n == 0:
            return 0
        if offset + n > self.max_file_size_for(inode):
            raise fs_oserror(errno.EFBIG)
        if inode.flags & _inode.INLINE_DATA_FL:
            from . import inline

            if inline.write_inline(self, h, inode, offset, bytes(data)):
                self._touch(inode, "mtime", "ctime")
                self.write_inode(h, inode)
                return n
            inline.convert_file_to_blocks(self, h, inode)
        bs = self.block_size
        mv = memoryview(data).cast("B")
        old_size = inode.size
        if offset > old_size and old_size % bs:
            self._zero_tail(h, inode, old_size)
        first = offset // bs
        last = (offset + n - 1) // bs
        mapper = self.mapper(inode)
        done_end = offset  # file position up to which data is on its way to disk
        try:
            lblk = first
            while lblk <= last:
                count = min(WRITE_CHUNK_BLOCKS, last - lblk + 1)
                runs = self._allocate_chunk(h, inode, mapper, lblk, count)
                for r in runs:
                    self._write_run(h, inode, r, offset, mv)
                uninit = [r for r in runs if r.uninit]
                for r in uninit:
                    mapper.mark_written(h, inode, r.logical, r.length)
                lblk += count
                done_end = min(offset + n, lblk * bs)
        finally:
            if done_end > inode.size:
                inode.set_size(done_end)
            cf = self.cache.get(inode.ino) if self.cache is not None else None
            if cf is not None and done_end > cf.disksize:
                cf.disksize = done_end
                cf.size = max(cf.size, done_end)
            if touch:
                self._touch(inode, "mtime", "ctime")
            self.write_inode(h, inode)
        return n

    def _allocate_chunk(self: WritableFileSystem, h: Handle, inode: Inode, mapper: Any,
                        lblk: int, count: int) -> list:
        """mapper.allocate, undone for the chunk's former holes if space runs out midway
        (blocks mapped but never written must not appear in the file)."""
        before = self.block_map(inode).overlapping(lblk, count)
        try:
            return mapper.allocate(h, inode, lblk, count)
        except NoSpace:
            holes = []
            pos = lblk
            for r in before:
                s = max(r.logical, lblk)
                if s > pos:
                    holes.append((pos, s - pos))
                pos = max(pos, r.logical + r.length)
            if pos < lblk + count:
                holes.append((pos, lblk + count - pos))
            for s, c in holes:
                mapper.punch(h, inode, s, c)
            raise

    def _write_run(self: WritableFileSystem, h: Handle, inode: Inode, r: Any, offset: int,
                   mv: memoryview) -> None:
        """Data of ``mv`` (file offset ``offset``) that falls into mapped run ``r``; partial
        blocks at either end are merged with what the block holds (zeros when new/uninit)."""
        bs = self.block_size
        n = len(mv)
        rstart = r.logical * bs
        rend = rstart + r.length * bs
        s = max(rstart, offset)
        e = min(rend, offset + n)
        if s >= e:
            return
        bstart = s - s % bs  # block-aligned span covering [s, e)
        bend = -(-e // bs) * bs
        phys = r.physical + (bstart - rstart) // bs
        if s == bstart and e == bend:
            self.write_data(h, phys, mv[s - offset : e - offset])
            return
        fresh = r.new or r.uninit
        buf = bytearray(bend - bstart)
        if not fresh:
            if s != bstart:
                buf[:bs] = self.read_data_block(phys)
            if e != bend:
                last_phys = phys + (bend - bstart) // bs - 1
                buf[-bs:] = self.read_data_block(last_phys)
        buf[s - bstart : e - bstart] = mv[s - offset : e - offset]
        self.write_data(h, phys, buf)

    def write_bytes(self: WritableFileSystem, path: Any, data: bytes) -> int:
        with self.open(path, "wb") as f:
            return f.write(data)

    def fallocate(self: WritableFileSystem, path: Any, offset: int, length: int, *,
                  keep_size: bool = False) -> None:
        if offset < 0 or length <= 0:
            raise fs_oserror(errno.EINVAL, os.fsdecode(self._bpath(path)))
        if self.cache is not None:
            self.cache.writeback(self._resolve_ino(path, True))
        with self._op() as h:
            inode = self._reg_for_write(path)
            self.inode_fallocate(h, inode, offset, length, keep_size=keep_size)

    def inode_fallocate(self: WritableFileSystem, h: Handle, inode: Inode, offset: int,
                        length: int, *, keep_size: bool = False) -> None:
        """Reserve blocks: unwritten extents (read as zeros); on ext2/3 maps, zeroed blocks."""
        if offset + length > self.max_file_size_for(inode):
            raise fs_oserror(errno.EFBIG)
        if inode.flags & _inode.INLINE_DATA_FL:
            from . import inline

            inline.convert_file_to_blocks(self, h, inode)
        bs = self.block_size
        first = offset // bs
        last = (offset + length - 1) // bs
        mapper = self.mapper(inode)
        if not mapper.supports_uninit:
            # as the kernel: ext2/ext3 block maps cannot hold unwritten blocks
            raise fs_oserror(errno.EOPNOTSUPP)
        lblk = first
        try:
            while lblk <= last:
                count = min(WRITE_CHUNK_BLOCKS, last - lblk + 1)
                mapper.allocate(h, inode, lblk, count, uninit=True)
                lblk += count
        finally:
            end = min(offset + length, lblk * bs) if lblk <= last else offset + length
            if not keep_size and end > inode.size:
                inode.set_size(end)
            self._touch(inode, "ctime")
            self.write_inode(h, inode)

    # ------------------------------------------------------------------ open files
    def open(self: WritableFileSystem, path: Any, mode: str = "rb", buffering: int = -1) -> Any:
        from .wfile import open_file

        return open_file(self, path, mode, buffering)

    def _file_opened(self: WritableFileSystem, ino: int) -> None:
        self._open_counts[ino] = self._open_counts.get(ino, 0) + 1

    def _file_closed(self: WritableFileSystem, ino: int) -> None:
        cf = self.cache.get(ino) if self.cache is not None else None
        if cf is not None and cf.da_alloc_close:
            self.cache.writeback(ino)  # type: ignore[union-attr]
            self.run_timers()
        n = self._open_counts.get(ino, 0) - 1
        if n > 0:
            self._open_counts[ino] = n
            return
        self._open_counts.pop(ino, None)
        inode = self.get_inode(ino)
        if inode.links_count == 0 and inode.mode:
            with self._op() as h:
                self._remove_orphan(h, inode)
                self._release_inode(h, inode)

    # ------------------------------------------------------------------ orphans
    def _add_orphan(self: WritableFileSystem, h: Handle, inode: Inode) -> None:
        """Unlinked but open: chain into s_last_orphan (through i_dtime) until closed."""
        inode.f["i_dtime"] = self.sb.f["s_last_orphan"]
        self.write_inode(h, inode)
        self.sb.f["s_last_orphan"] = inode.ino
        self.write_superblock(h)

    def _remove_orphan(self: WritableFileSystem, h: Handle, inode: Inode) -> None:
        nxt = inode.f["i_dtime"]
        if self.sb.f["s_last_orphan"] == inode.ino:
            self.sb.f["s_last_orphan"] = nxt
            self.write_superblock(h)
            return
        cur = self.sb.f["s_last_orphan"]
        guard = 0
        while cur and guard <= self.inodes_count:
            guard += 1
            ci = self.get_inode(cur)
            if ci.f["i_dtime"] == inode.ino:
                ci.f["i_dtime"] = nxt
                self.write_inode(h, ci)
                return
            cur = ci.f["i_dtime"]

    def process_orphans(self: WritableFileSystem) -> int:
        """Free the inodes a crash left on the orphan list (the kernel does this at mount).
        Returns how many were released."""
        done = 0
        guard = 0
        while self.sb.f["s_last_orphan"] and guard <= self.inodes_count:
            guard += 1
            ino = self.sb.f["s_last_orphan"]
            if not (1 <= ino <= self.inodes_count):
                raise CorruptError(f"orphan list points at inode {ino}")
            with self._op() as h:
                inode = self.get_inode(ino)
                self.sb.f["s_last_orphan"] = inode.f["i_dtime"]
                self.write_superblock(h)
                if inode.links_count == 0 and inode.mode:
                    self._release_inode(h, inode)
                    done += 1
                elif inode.is_reg():  # a truncate in progress: finish it
                    inode.f["i_dtime"] = 0
                    self.inode_truncate(h, inode, inode.size)
        return done

    # ------------------------------------------------------------------ whole fs
    def statvfs(self: WritableFileSystem) -> os.statvfs_result:
        from .alloc import group_layout

        overhead = self.sb.f.get("s_overhead_clusters") or 0
        if not overhead:
            overhead = sum(n for g in range(self.group_count)
                           for _, n in group_layout(self, g).overhead)
            overhead += self.sb.f["s_first_data_block"]
            jino = self.sb.f["s_journal_inum"]
            if jino and self.sb.has_compat("has_journal"):
                ji = self.get_inode(jino)
                overhead += ji.blocks_512(self.sb.has_ro("huge_file"), self.block_size) // (
                    self.block_size // 512)
        free = sum(gd.free_blocks_count for gd in self.groups)
        ffree = sum(gd.free_inodes_count for gd in self.groups)
        if self.cache is not None:  # delayed allocations are already spoken for
            free = max(0, free - self.cache.reserved)
        avail = max(0, free - self.sb.r_blocks_count)
        return os.statvfs_result((self.block_size, self.block_size, self.blocks_count - overhead,
                                  free, avail, self.inodes_count, ffree, ffree, 0, 255))

    def fsync(self: WritableFileSystem, path: Any) -> None:
        """fsync(2) by name: the file's delayed data written back, the journal committed."""
        self.fsync_inode(self._resolve_ino(path, True))

    def sync(self: WritableFileSystem) -> None:
        self.writeback()
        self.commit(wait_data=True)

    def cached_write(self: WritableFileSystem, ino: int, pos: int | None, data: memoryview) -> int:
        """A buffered write (``pos`` None: append). With delalloc the bytes go to the page
        cache (only mtime/ctime are journaled now); without it, or when space is short,
        blocks are allocated at once. Returns the position after the data."""
        cache = self.cache
        inode = self.get_inode(ino)
        if cache is not None and not inode.flags & _inode.INLINE_DATA_FL:
            if cache.low_on_space(len(data)):
                cache.writeback_all()  # ext4_nonda_switch: allocate now, ENOSPC from write
                self.run_timers()
            else:
                with self._op() as h:
                    inode = self.get_inode(ino)
                    start = inode.size if pos is None else pos
                    if start + len(data) > self.max_file_size_for(inode):
                        raise fs_oserror(errno.EFBIG)
                    cache.write(ino, inode.size, start, data)
                    self._touch(inode, "mtime", "ctime")
                    self.write_inode(h, inode)
                return start + len(data)
        with self._op() as h:
            inode = self.get_inode(ino)
            start = inode.size if pos is None else pos
            self.inode_write(h, inode, start, data)
        return start + len(data)
