"""ext2/ext3 indirect block maps (see mapper.py for the shared conventions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .mapper import Mapper

if TYPE_CHECKING:
    from ..ondisk.inode import Inode


class IndirectMapper(Mapper):
    supports_uninit = False

    def init_inode(self, inode: Inode) -> None:
        inode.f["i_block"] = bytes(60)
