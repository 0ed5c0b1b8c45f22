"""MemoryDevice: a device held in a bytearray (tests, crash-state scratch space)."""

from __future__ import annotations

from .base import BlockDevice


class MemoryDevice(BlockDevice):
    def __init__(self, size_or_data: int | bytes | bytearray = 0, writable: bool = True):
        if isinstance(size_or_data, int):
            self.buf = bytearray(size_or_data)
        else:
            self.buf = bytearray(size_or_data)
        self.read_only = not writable
        self.flush_count = 0

    @property
    def size(self) -> int:
        return len(self.buf)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.buf[offset : offset + length])

    def write(self, offset: int, data) -> None:
        self._check_write(offset, data)
        end = offset + len(data)
        if end > len(self.buf):
            raise OSError(28, "write past end of memory device")
        self.buf[offset:end] = data

    def flush(self) -> None:
        self.flush_count += 1
