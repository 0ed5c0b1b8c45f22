"""Copy files and trees out of an image onto the host (``ext4kit get``).

Preserves content and sparseness (only allocated, initialised runs are written), modes
incl. setuid/setgid/sticky, owners (when root), atime/mtime in ns, symlinks, hard-link
groups, fifos, device nodes (when root) and ``user.*`` xattrs. Every host object is created
relative to a directory fd opened with O_NOFOLLOW, so no name or symlink in the image can
make it write outside DEST.
"""

from __future__ import annotations

import errno
import os
import resource
import stat as _stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import CorruptError, Ext4Error
from .fs import dirs
from .fs.filesystem import FileSystem
from .ondisk.inode import INLINE_DATA_FL, Inode

CHUNK = 8 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 4096


def _max_depth() -> int:
    """Nesting limit: MAX_DEPTH, or fewer when the fd limit would run out first."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_DEPTH
    return max(16, min(MAX_DEPTH, soft - 64))


@dataclass
class _Frame:
    """One open directory of the copy: its inode, host fd, path and entry iterator."""

    inode: Inode
    fd: int
    rel: bytes
    entries: Iterator
    names: set = field(default_factory=set)


@dataclass
class ExtractStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # entries not copied: the image is broken there
    first_error: Exception | None = None


class Extractor:
    def __init__(self, fs: FileSystem, *, xattrs: bool = True, owners: bool | None = None):
        self.fs = fs
        self.want_xattrs = xattrs
        self.owners = (os.geteuid() == 0) if owners is None else owners
        self.is_root = os.geteuid() == 0
        self.stats = ExtractStats()
        self._links: dict[int, bytes] = {}  # inode -> path relative to the output root
        self._buf = bytearray(CHUNK)
        self._seen_dirs: set[int] = set()
        self._fresh_fds: set[int] = set()  # directories this run created (no stale names)

    def warn(self, msg: str) -> None:
        self.stats.warnings.append(msg)

    def fail(self, rel: bytes, exc: Exception) -> None:
        """An entry that could not be copied because the image is broken there."""
        self.stats.errors.append(f"{os.fsdecode(rel) or '/'}: {exc}")
        if self.stats.first_error is None:
            self.stats.first_error = exc

    # ----------------------------------------------------------------- entry points
    def extract(self, src: str, dest: str) -> ExtractStats:
        """Copy image path ``src`` to host path ``dest`` (dest becomes the copy).

        An entry the image cannot deliver (corrupt map, bad symlink...) is recorded in
        ``stats.errors`` and skipped; the rest of the tree is still copied.
        """
        fs = self.fs
        inode = fs.inode_of(src, follow_symlinks=False)
        dest_b = os.fsencode(os.path.abspath(dest))
        parent, name = os.path.split(dest_b)
        if inode.is_dir():
            if not os.path.isdir(dest_b) or os.path.islink(dest_b):
                os.mkdir(dest_b, 0o700)
            root_fd = os.open(dest_b, _DIR_FLAGS)
            self._root_fd = root_fd
            self._copy_tree(inode, root_fd)  # closes root_fd
            return self.stats
        if os.path.isdir(dest_b) and not os.path.islink(dest_b):
            parent, name = dest_b, os.path.basename(os.fsencode(src.rstrip("/")))
        pfd = os.open(parent or b".", _DIR_FLAGS)
        try:
            self._root_fd = pfd
            self._extract_leaf(inode, name, pfd, name)
        finally:
            os.close(pfd)
        return self.stats

    # ----------------------------------------------------------------- walking
    def _copy_tree(self, root: Inode, root_fd: int) -> None:
        """Depth-first copy with an explicit stack (no recursion limit); owns the fds it holds."""
        self._seen_dirs.add(root.ino)
        stack = [_Frame(root, root_fd, b"", dirs.iter_entries(self.fs, root))]
        max_depth = _max_depth()
        try:
            while stack:
                frame = stack[-1]
                try:
                    e = next(frame.entries)
                except StopIteration:
                    self._finish_dir(stack.pop())
                    continue
                except Ext4Error as exc:  # the rest of this directory is unreadable
                    self.fail(frame.rel, exc)
                    self._finish_dir(stack.pop())
                    continue
                name = e.name
                rel = frame.rel + b"/" + name if frame.rel else name
                if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
                    self.warn(f"{os.fsdecode(frame.rel) or '/'}: unsafe entry name {name!r} skipped")
                    continue
                if name in frame.names:
                    self.warn(f"{os.fsdecode(rel)}: duplicate directory entry skipped")
                    continue
                frame.names.add(name)
                try:
                    child = self.fs.get_inode(e.inode)
                    if not child.is_dir():
                        self._extract_leaf(child, name, frame.fd, rel)
                        continue
                    if len(stack) > max_depth:
                        self.fail(rel, CorruptError(f"directory nesting deeper than {max_depth} levels"))
                        continue
                    if child.ino in self._seen_dirs:
                        self.warn(f"{os.fsdecode(rel)}: directory loop (inode {child.ino} seen before), skipped")
                        continue
                    entries = dirs.iter_entries(self.fs, child)
                except Ext4Error as exc:
                    self.fail(rel, exc)
                    continue
                self._seen_dirs.add(child.ino)
                self._clear(frame.fd, name, True)
                fresh = True
                try:
                    os.mkdir(name, 0o700, dir_fd=frame.fd)
                except FileExistsError:
                    fresh = False
                cfd = os.open(name, _DIR_FLAGS, dir_fd=frame.fd)
                if fresh:  # we made it and names in it are unique: nothing can be in the way
                    self._fresh_fds.add(cfd)
                self.stats.dirs += 1
                stack.append(_Frame(child, cfd, rel, entries))
        finally:
            for frame in stack:
                self._fresh_fds.discard(frame.fd)
                os.close(frame.fd)

    def _finish_dir(self, frame: _Frame) -> None:
        try:
            self._set_attrs(frame.inode, None, frame.fd, is_dir=True)
        finally:
            self._fresh_fds.discard(frame.fd)
            os.close(frame.fd)

    def _clear(self, dfd: int, name: bytes, want_dir: bool) -> None:
        if dfd in self._fresh_fds:
            return
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if want_dir and _stat.S_ISDIR(st.st_mode):
            return
        if _stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EEXIST, "a directory is in the way", os.fsdecode(name))
        os.unlink(name, dir_fd=dfd)

    def _extract_leaf(self, inode: Inode, name: bytes, dfd: int, rel: bytes) -> None:
        """Copy one non-directory; a broken one is recorded in stats.errors and skipped."""
        try:
            self._extract_one(inode, name, dfd, rel)
        except Ext4Error as exc:
            self.fail(rel, exc)
            try:  # do not leave a half-written file behind
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass

    def _extract_one(self, inode: Inode, name: bytes, dfd: int, rel: bytes) -> None:
        mode = inode.mode
        ftype = _stat.S_IFMT(mode)
        if ftype == _stat.S_IFDIR:
            raise AssertionError("directories are copied by _copy_tree")
        if inode.links_count > 1:
            first = self._links.get(inode.ino)
            if first is not None:
                self._clear(dfd, name, False)
                os.link(first, name, src_dir_fd=self._root_fd, dst_dir_fd=dfd, follow_symlinks=False)
                self.stats.hardlinks += 1
                return
        self._clear(dfd, name, False)
        if ftype == _stat.S_IFREG:
            self.fs.data_size(inode)  # refuse an impossible size before creating anything
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                self._copy_data(inode, fd)
                self._set_attrs(inode, name, fd, is_dir=False)
            finally:
                os.close(fd)
            self.stats.files += 1
        elif ftype == _stat.S_IFLNK:
            target = self.fs._readlink_inode(inode)
            os.symlink(target, name, dir_fd=dfd)
            self._set_times(inode, name, dfd)
            if self.owners:
                os.chown(name, inode.uid, inode.gid, dir_fd=dfd, follow_symlinks=False)
            self.stats.symlinks += 1
        elif ftype in (_stat.S_IFIFO, _stat.S_IFSOCK, _stat.S_IFCHR, _stat.S_IFBLK):
            if ftype in (_stat.S_IFCHR, _stat.S_IFBLK) and not self.is_root:
                self.warn(f"{os.fsdecode(rel)}: device node skipped (needs root)")
                return
            rdev = os.makedev(*inode.rdev()) if ftype in (_stat.S_IFCHR, _stat.S_IFBLK) else 0
            os.mknod(name, ftype | 0o600, rdev, dir_fd=dfd)
            self._set_special_attrs(inode, name, dfd)
            self.stats.specials += 1
        else:
            self.warn(f"{os.fsdecode(rel)}: unknown file type {ftype:#o} skipped")
            return
        if inode.links_count > 1:
            self._links[inode.ino] = rel  # only once it exists: later links point at it

    # ----------------------------------------------------------------- data
    def _copy_data(self, inode: Inode, fd: int) -> None:
        fs = self.fs
        size = inode.size
        if size == 0:
            return
        if inode.flags & INLINE_DATA_FL:
            os.write(fd, fs.inode_read(inode, 0, size))
            self.stats.bytes += size
            return
        bs = fs.block_size
        buf = memoryview(self._buf)
        written_to = 0  # end of the last byte written: no ftruncate needed when it is i_size
        for run in fs.block_map(inode).runs:
            if run.uninit:
                continue
            start = run.logical * bs
            end = min((run.logical + run.length) * bs, size)
            pos = start
            while pos < end:
                n = min(CHUNK, end - pos)
                fs.inode_readinto(inode, pos, buf[:n])
                done = 0
                while done < n:
                    done += os.pwrite(fd, buf[done:n], pos + done)
                pos += n
                self.stats.bytes += n
            written_to = max(written_to, end)
        if written_to != size:  # a trailing hole (or no data at all)
            os.ftruncate(fd, size)

    # ----------------------------------------------------------------- attributes
    def _set_xattrs(self, inode: Inode, fd: int) -> None:
        if not self.want_xattrs:
            return
        for key, value in self.fs.xattrs_of(inode).items():
            if not key.startswith("user.") and not (self.is_root and key.startswith(("trusted.", "security."))):
                continue
            if "\0" in key:
                self.warn(f"inode {inode.ino}: xattr name {key!r} contains a NUL byte, skipped")
                continue
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                self.warn(f"inode {inode.ino}: xattr {key}: {exc.strerror}")

    def _set_times(self, inode: Inode, name: bytes | None, dfd: int) -> None:
        ns = (inode.time_ns("atime"), inode.time_ns("mtime"))
        if name is None:
            os.utime(dfd, ns=ns)
        else:
            os.utime(name, ns=ns, dir_fd=dfd, follow_symlinks=False)

    def _set_attrs(self, inode: Inode, name: bytes | None, fd: int, *, is_dir: bool) -> None:
        """Owner, xattrs, mode (after chown, which clears setuid), then times; on an open fd."""
        if self.owners:
            os.fchown(fd, inode.uid, inode.gid)
        self._set_xattrs(inode, fd)
        os.fchmod(fd, _stat.S_IMODE(inode.mode))
        os.utime(fd, ns=(inode.time_ns("atime"), inode.time_ns("mtime")))

    def _set_special_attrs(self, inode: Inode, name: bytes, dfd: int) -> None:
        if self.owners:
            os.chown(name, inode.uid, inode.gid, dir_fd=dfd, follow_symlinks=False)
        os.chmod(name, _stat.S_IMODE(inode.mode), dir_fd=dfd)
        self._set_times(inode, name, dfd)


def extract(fs: FileSystem, src: str, dest: str, **kw) -> ExtractStats:
    return Extractor(fs, **kw).extract(src, dest)
