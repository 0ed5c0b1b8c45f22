"""File objects of a writable file system: ``fs.open(path, "wb" | "ab" | "r+b" | "xb" ...)``.

Modes follow Python's ``open``: r/w/a/x with optional '+', 'b' for binary (otherwise a
TextIOWrapper); 'w' truncates, 'x' refuses an existing name, 'a' writes at the end. The raw
object re-reads its inode for every call, so several open files of one inode agree.
"""

from __future__ import annotations

import errno
import io
import os
from typing import TYPE_CHECKING, Any

from ..errors import fs_oserror

if TYPE_CHECKING:
    from .writer import WritableFileSystem

DEFAULT_BUFFER = 1 << 20


class Ext4File(io.RawIOBase):
    def __init__(self, fs: WritableFileSystem, ino: int, name: str, *, readable: bool,
                 writable: bool, append: bool):
        super().__init__()
        self.fs = fs
        self.ino = ino
        self.name = name
        self._readable = readable
        self._writable = writable
        self._append = append
        self._pos = self._inode().size if append else 0  # as Python's open("a")
        fs._file_opened(ino)

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def _inode(self) -> Any:
        return self.fs.get_inode(self.ino)

    def readinto(self, b: Any) -> int:
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("not readable")
        inode = self._inode()
        size = inode.size
        if self._pos >= size:
            return 0
        view = memoryview(b).cast("B")
        n = min(len(view), size - self._pos)
        self.fs.inode_readinto(inode, self._pos, view[:n])
        self._pos += n
        return n

    def write(self, b: Any) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        data = memoryview(b).cast("B")
        if not len(data):
            return 0
        self._pos = self.fs.cached_write(self.ino, None if self._append else self._pos, data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._inode().size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise fs_oserror(errno.EINVAL, self.name)
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        size = self._pos if size is None else size
        if size < 0:
            raise fs_oserror(errno.EINVAL, self.name)
        with self.fs._op() as h:
            self.fs.inode_truncate(h, self._inode(), size)
        return size

    def fallocate(self, offset: int, length: int, *, keep_size: bool = False) -> None:
        self.fs.writeback(self.ino)
        with self.fs._op() as h:
            self.fs.inode_fallocate(h, self._inode(), offset, length, keep_size=keep_size)

    def fsync(self) -> None:
        self.fs.fsync_inode(self.ino)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an ext4kit file has no OS file descriptor")

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()
            finally:
                self.fs._file_closed(self.ino)


class _Fsync:
    def fsync(self) -> None:
        """flush() then fsync(2) of the file: its delayed data written back, committed."""
        self.flush()  # type: ignore[attr-defined]
        self.raw.fsync()  # type: ignore[attr-defined]


class BufferedWriter(_Fsync, io.BufferedWriter):
    pass


class BufferedRandom(_Fsync, io.BufferedRandom):
    pass


def _parse_mode(mode: str) -> tuple[str, bool, bool]:
    kinds = [c for c in mode if c in "rwax"]
    if len(kinds) != 1 or set(mode) - set("rwaxbt+") or ("b" in mode and "t" in mode) or \
            any(mode.count(c) > 1 for c in mode):
        raise ValueError(f"invalid mode: {mode!r}")
    return kinds[0], "+" in mode, "b" in mode


def open_file(fs: WritableFileSystem, path: Any, mode: str = "rb", buffering: int = -1,
              _depth: int = 0) -> Any:
    kind, plus, binary = _parse_mode(mode)
    if buffering == 0 and not binary:
        raise ValueError("can't have unbuffered text I/O")
    shown = os.fsdecode(fs._bpath(path))
    readable = kind == "r" or plus
    writable = kind != "r" or plus
    ino = None
    try:
        ino = fs._resolve_ino(path, True)
    except FileNotFoundError:
        if kind == "r":
            raise
    if ino is not None:
        if kind == "x":
            raise fs_oserror(errno.EEXIST, shown)
        inode = fs.get_inode(ino)
        if inode.is_dir():
            raise fs_oserror(errno.EISDIR, shown)
        if writable and not inode.is_reg():
            raise fs_oserror(errno.EINVAL, shown, "ext4kit writes regular files only")
        if kind == "w":
            with fs._op() as h:
                fs.inode_truncate(h, inode, 0)
    else:
        with fs._op() as h:
            parent, name, _ = fs._split(path)
            if name in (b".", b".."):
                raise fs_oserror(errno.EISDIR, shown)
            existing = fs._lookup(parent, name)
            if existing is None:
                ino = fs._create_in(h, parent, name, 0o666)
        if existing is not None:
            # a dangling symlink as the last component: create its target (as open(2) does)
            if _depth > 8 or not fs.get_inode(existing).is_symlink():
                raise fs_oserror(errno.ELOOP if _depth > 8 else errno.ENOENT, shown)
            target = fs._readlink_inode(fs.get_inode(existing))
            if not target.startswith(b"/"):
                head = fs._bpath(path).rstrip(b"/").rpartition(b"/")[0]
                target = head + b"/" + target
            return open_file(fs, target, mode, buffering, _depth + 1)
    assert ino is not None
    raw = Ext4File(fs, ino, shown, readable=readable, writable=writable, append=kind == "a")
    if buffering == 0:
        return raw
    size = DEFAULT_BUFFER if buffering in (-1, 1) else buffering
    buf: Any
    if readable and writable:
        buf = BufferedRandom(raw, size)
    elif writable:
        buf = BufferedWriter(raw, size)
    else:
        buf = io.BufferedReader(raw, size)
    if binary:
        return buf
    return io.TextIOWrapper(buf, line_buffering=buffering == 1)
