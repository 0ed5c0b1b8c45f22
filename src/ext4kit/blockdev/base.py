"""The block-device interface every layer above writes through."""

from __future__ import annotations

from ..errors import TruncatedImageError


class BlockDevice:
    """Byte-addressed device with an explicit write barrier.

    ``flush()`` is a barrier: every write issued before it is durable when it returns.
    Nothing else promises durability.
    """

    sector_size = 512
    read_only = True

    @property
    def size(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read_exact(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes or raise TruncatedImageError."""
        if offset < 0 or length < 0:
            raise TruncatedImageError(f"invalid read at offset {offset} length {length}")
        data = self.read(offset, length)
        if len(data) != length:
            raise TruncatedImageError(
                f"image truncated: wanted {length} bytes at offset {offset}, "
                f"device has {self.size} bytes"
            )
        return data

    def _check_write(self, offset: int, data) -> None:
        if self.read_only:
            raise PermissionError("device opened read-only")
        if offset < 0:
            raise ValueError("negative offset")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
