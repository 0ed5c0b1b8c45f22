"""FileDevice: an image file or a raw block device, via pread/pwrite; flush = fdatasync."""

from __future__ import annotations

import fcntl
import os
import stat
import struct

from .base import BlockDevice

_BLKGETSIZE64 = 0x80081272


class FileDevice(BlockDevice):
    def __init__(self, path: str | os.PathLike, writable: bool = False):
        self.path = os.fspath(path)
        flags = os.O_RDWR if writable else os.O_RDONLY
        self.fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0))
        self.read_only = not writable
        st = os.fstat(self.fd)
        self.is_blockdev = stat.S_ISBLK(st.st_mode)
        if self.is_blockdev:
            buf = fcntl.ioctl(self.fd, _BLKGETSIZE64, b"\0" * 8)
            self._size = struct.unpack("Q", buf)[0]
        else:
            self._size = st.st_size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        data = os.pread(self.fd, length, offset)
        if len(data) == length or len(data) == 0:
            return data
        parts = [data]
        got = len(data)
        while got < length:
            more = os.pread(self.fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Fill ``buf`` from ``offset``; returns bytes read (short at end of device)."""
        got = 0
        n = len(buf)
        while got < n:
            k = os.preadv(self.fd, [buf[got:]], offset + got)
            if k <= 0:
                break
            got += k
        return got

    def write(self, offset: int, data) -> None:
        self._check_write(offset, data)
        mv = memoryview(data)
        done = 0
        while done < len(mv):
            done += os.pwrite(self.fd, mv[done:], offset + done)
        end = offset + len(mv)
        if end > self._size and not self.is_blockdev:
            self._size = end

    def flush(self) -> None:
        if not self.read_only:
            os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
