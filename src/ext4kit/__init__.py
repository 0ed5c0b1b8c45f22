"""ext4kit: a pure-Python ext4-compatible file system, checker and crash-consistency lab."""

from .errors import (
    ChecksumError,
    CorruptError,
    Ext4Error,
    ImageOpenError,
    NotExtError,
    TruncatedImageError,
    UnsupportedFeatureError,
)

__version__ = "0.1.0"


def open(image, mode: str = "r", **options):  # noqa: A001 - mirrors builtins.open on purpose
    """Open an ext2/3/4 image (path, or a BlockDevice) and return a FileSystem."""
    from .fs.filesystem import FileSystem

    return FileSystem.open_image(image, mode, **options)


def fsck(image, mode: str = "n", **options):  # noqa: ANN001 - image: path or BlockDevice
    """Check (mode "n"), preen ("p") or repair ("y") an image; returns an fsck Report."""
    from .fsck import fsck as _fsck

    return _fsck(image, mode, **options)


__all__ = [
    "fsck",
    "open",
    "Ext4Error",
    "ImageOpenError",
    "NotExtError",
    "TruncatedImageError",
    "CorruptError",
    "ChecksumError",
    "UnsupportedFeatureError",
]
