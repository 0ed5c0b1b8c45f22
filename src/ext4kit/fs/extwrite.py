"""Extent-tree maintenance (see mapper.py for the shared conventions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ondisk import extent as ext
from ..ondisk.inode import EXTENTS_FL
from .mapper import Mapper

if TYPE_CHECKING:
    from ..ondisk.inode import Inode


class ExtentMapper(Mapper):
    supports_uninit = True

    def init_inode(self, inode: Inode) -> None:
        inode.f["i_block"] = bytes(ext.pack_node([], 4, 0, 60))
        inode.set_flag(EXTENTS_FL)
