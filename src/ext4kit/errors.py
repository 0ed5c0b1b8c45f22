"""Exception types shared by every layer.

Each error carries an e2fsprogs-style exit code so the CLI can turn it into one line
on stderr and a meaningful status without a traceback.
"""

from __future__ import annotations

import errno as _errno


class Ext4Error(Exception):
    """Base class for every error ext4kit raises about an image."""

    exit_code = 8  # e2fsprogs: operational error


class NotExtError(Ext4Error):
    """The image has no ext2/3/4 superblock (bad magic)."""


class ImageOpenError(Ext4Error):
    """The image file or device cannot be opened (missing, permission, a directory)."""


class TruncatedImageError(Ext4Error):
    """A read went past the end of the device."""


class CorruptError(Ext4Error):
    """A structure on disk is impossible (bad magic, out-of-range pointer, loop...)."""


class ChecksumError(CorruptError):
    """A metadata checksum does not match its contents."""


class UnsupportedFeatureError(Ext4Error):
    """The image uses a feature ext4kit cannot handle for the requested access."""


def fs_oserror(code: int, path: str | None = None, detail: str | None = None) -> OSError:
    """An OSError with errno ``code`` and the usual strerror, like the os module raises."""
    msg = detail or _errno.errorcode.get(code, "error")
    import os

    msg = detail or os.strerror(code)
    if path is None:
        return OSError(code, msg)
    return OSError(code, msg, path)
