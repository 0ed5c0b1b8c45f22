"""The write side of a file's block map: one interface, two formats.

``ExtentMapper`` (extwrite.py) maintains extent trees; ``IndirectMapper`` (indwrite.py)
maintains ext2/ext3 indirect maps. The operations layer only talks to this interface
(``fs.mapper(inode)`` picks the implementation), so every file, directory and symlink
block goes through one code path per format.

Conventions shared by both implementations:
- They change ``inode.f`` (i_block, i_blocks, flags) in memory; the caller writes the
  inode with ``fs.write_inode(h, inode)`` when its operation is done.
- Tree/indirect blocks they allocate or change go through the handle
  (get_create_access / get_write_access + dirty_metadata) with their checksums set.
- i_blocks counts data blocks and tree blocks (``fs.add_i_blocks``).
- Blocks are freed with ``fs.free_file_blocks(h, inode, start, count, metadata=...)``
  which revokes freed metadata (tree blocks always, directory blocks too).
- Allocation is goal-based: the goal for logical block L is the physical block after the
  mapping of the nearest mapped block before L (so files stay contiguous), else the
  start of the inode's group (``fs.inode_goal(inode)``).
- On NoSpace the map is left consistent (nothing half-linked, nothing leaked) and the
  exception propagates; blocks mapped before the failure stay mapped.
- After any change they call ``fs.invalidate_map(inode.ino)`` (read caches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from ..ondisk.inode import Inode
    from .writer import WritableFileSystem


class Mapped(NamedTuple):
    logical: int
    physical: int
    length: int
    uninit: bool  # unwritten (fallocated) extent: reads as zeros
    new: bool  # allocated by this call: contents undefined until the caller writes them


class Mapper:
    """Interface; see the module docstring for the shared conventions."""

    supports_uninit = False  # True for extents (fallocate without writing zeros)

    def __init__(self, fs: WritableFileSystem):
        self.fs = fs

    def init_inode(self, inode: Inode) -> None:
        """Set up an empty map in a new inode's i_block (and its flags)."""
        raise NotImplementedError

    def allocate(self, h: Handle, inode: Inode, lblk: int, count: int, *,
                 uninit: bool = False) -> list[Mapped]:
        """Make logical blocks [lblk, lblk+count) mapped, allocating the holes.

        Returns the mapping of the whole range in logical order (existing runs with
        new=False, allocated ones with new=True). ``uninit`` marks newly allocated extents
        unwritten (only when supports_uninit). Existing uninit extents are left as they
        are (the caller converts them with ``mark_written`` after writing).
        """
        raise NotImplementedError

    def mark_written(self, h: Handle, inode: Inode, lblk: int, count: int) -> None:
        """Convert unwritten extents inside [lblk, lblk+count) to written (splitting them)."""
        raise NotImplementedError

    def truncate(self, h: Handle, inode: Inode, lblk: int) -> None:
        """Unmap and free every block at logical >= lblk, and the tree blocks no longer
        needed (an extent tree shrinks its depth back when it can)."""
        raise NotImplementedError

    def punch(self, h: Handle, inode: Inode, lblk: int, count: int) -> None:
        """Unmap and free [lblk, lblk+count) (a hole in the middle of a file)."""
        raise NotImplementedError
