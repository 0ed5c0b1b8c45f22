"""inline_data: small files and directories whose bytes live in the inode.

The body is i_block (60 bytes) followed by the value of the in-inode ``system.data``
xattr (index 7, name "data"); an inline inode always has that entry, empty while the body
fits in i_block. Regular files: body[:i_size] is the content, bytes past i_size are kept
zero. Directories: the first 4 bytes of i_block are the parent's inode number, then
entries over the rest of i_block; the system.data value (if any) is a second entry area.

Every public function writes the inode itself (``fs.write_inode``).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ..ondisk import dirent as de
from ..ondisk.inode import EXTENTS_FL, INLINE_DATA_FL, Inode
from . import xattrwrite as xw

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from .writer import WritableFileSystem

I_BLOCK_SIZE = 60
_IDX, _NAME = xw.SYSTEM_DATA


def _require_inline(inode: Inode) -> None:
    if not inode.flags & INLINE_DATA_FL:
        raise ValueError(f"inode {inode.ino} has no inline data")


def inline_body(fs: WritableFileSystem, inode: Inode) -> bytes:
    """i_block + the system.data value."""
    ea = xw.get_raw(fs, inode, _IDX, _NAME)
    return bytes(inode.i_block) + (ea or b"")


def max_inline_size(fs: WritableFileSystem, inode: Inode) -> int:
    """The largest body this inode could hold (i_block + system.data taking all the
    in-inode room the other in-inode attributes leave)."""
    cap = xw.ibody_capacity(inode)
    if not cap:
        return I_BLOCK_SIZE
    others = [a for a in xw.read_ibody(inode) if a.key != xw.SYSTEM_DATA]
    room = cap - sum(a.space() for a in others) - xw.Attr(_IDX, _NAME, b"").entry_len()
    return I_BLOCK_SIZE + max(0, room & ~3)


def _store_body(fs: WritableFileSystem, h: Handle, inode: Inode, content: bytes) -> bool:
    """Make the body ``content`` (zero-padded to 60); False (nothing changed) when the
    system.data part does not fit in the inode."""
    head = content[:I_BLOCK_SIZE].ljust(I_BLOCK_SIZE, b"\0")
    tail = content[I_BLOCK_SIZE:]
    try:
        xw.set_raw(fs, h, inode, _IDX, _NAME, tail, inode_only=True)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return False
        raise
    inode.f["i_block"] = head
    return True


def write_inline(fs: WritableFileSystem, h: Handle, inode: Inode, offset: int,
                 data: bytes) -> bool:
    """Write ``data`` at ``offset`` of an inline file (i_size grows as needed). False, with
    nothing changed, when the result does not fit inline (the caller converts the file
    with ``convert_file_to_blocks`` and writes through the block map)."""
    _require_inline(inode)
    size = inode.size
    end = offset + len(data)
    new_size = max(size, end)
    if new_size > max_inline_size(fs, inode):
        return False
    content = bytearray(inline_body(fs, inode)[:size].ljust(new_size, b"\0"))
    content[offset:end] = data
    if not _store_body(fs, h, inode, bytes(content)):
        return False
    inode.set_size(new_size)
    fs.write_inode(h, inode)
    return True


def truncate_inline(fs: WritableFileSystem, h: Handle, inode: Inode, size: int) -> bool:
    """Set an inline file's size (shrinking zeroes what is cut off; growing adds zeros).
    False, with nothing changed, when ``size`` does not fit inline."""
    _require_inline(inode)
    if size > max_inline_size(fs, inode):
        return False
    content = inline_body(fs, inode)[: min(size, inode.size)].ljust(size, b"\0")
    if not _store_body(fs, h, inode, content):
        return False
    inode.set_size(size)
    fs.write_inode(h, inode)
    return True


def _clear_inline(fs: WritableFileSystem, h: Handle, inode: Inode) -> None:
    """Drop system.data, INLINE_DATA_FL and i_block; give the inode an empty block map of
    the file system's kind (an extent root when the extent feature is on)."""
    if xw.get_raw(fs, inode, _IDX, _NAME) is not None:
        xw.remove_raw(fs, h, inode, _IDX, _NAME)
    inode.set_flag(INLINE_DATA_FL, False)
    inode.f["i_block"] = bytes(I_BLOCK_SIZE)
    if fs.sb.has_incompat("extent"):
        from .extwrite import ExtentMapper

        ExtentMapper(fs).init_inode(inode)
    else:
        inode.set_flag(EXTENTS_FL, False)
    fs.invalidate_map(inode.ino)


def convert_file_to_blocks(fs: WritableFileSystem, h: Handle, inode: Inode) -> None:
    """Move an inline (non-directory) inode's data into allocated blocks; afterwards it is
    an ordinary file with an extent (or indirect) map. Writes the inode."""
    _require_inline(inode)
    if inode.is_dir():
        raise IsADirectoryError(f"inode {inode.ino}: directories convert with take_inline_dir")
    size = inode.size
    content = inline_body(fs, inode)[:size]
    _clear_inline(fs, h, inode)
    if size:
        bs = fs.block_size
        nblocks = (size + bs - 1) // bs
        runs = fs.mapper(inode).allocate(h, inode, 0, nblocks)
        for m in runs:
            start = m.logical * bs
            chunk = content[start : start + m.length * bs]
            fs.write_data(h, m.physical, chunk.ljust(m.length * bs, b"\0"))
        fs.invalidate_map(inode.ino)
    fs.write_inode(h, inode)


def take_inline_dir(fs: WritableFileSystem, h: Handle,
                    inode: Inode) -> tuple[int, list[tuple[int, bytes, int]]]:
    """Empty an inline directory for its conversion to blocks: returns (parent ino,
    [(ino, name, file type), ...] without "." and ".."), then removes system.data,
    clears INLINE_DATA_FL and i_block (an empty map of the fs's kind is put there) and
    sets i_size 0. Writes the inode; the caller then builds the block directory."""
    _require_inline(inode)
    if not inode.is_dir():
        raise NotADirectoryError(f"inode {inode.ino} is not a directory")
    body = inline_body(fs, inode)
    parent = struct.unpack_from("<I", body, 0)[0]
    filetype = fs.sb.has_incompat("filetype")
    entries: list[tuple[int, bytes, int]] = []
    areas = [body[4:I_BLOCK_SIZE]]
    if len(body) > I_BLOCK_SIZE:
        areas.append(body[I_BLOCK_SIZE:])
    for area in areas:
        parsed, err = de.parse_block(area, max(len(area), 4), filetype)
        if err:
            from ..errors import CorruptError

            raise CorruptError(f"inline directory inode {inode.ino}: {err}")
        entries.extend((e.inode, e.name, e.file_type) for e in parsed if e.inode)
    _clear_inline(fs, h, inode)
    inode.set_size(0)
    fs.write_inode(h, inode)
    return parent, entries
