"""The state one fsck run shares between passes: the image, the answers, the pending writes.

Reads go through ``block()`` (which sees this run's own pending writes); every repair goes
through ``write_block`` / ``write_inode`` / ``dirty_group`` / ``dirty_super`` and reaches
the device only in ``flush()``, with checksums recomputed there. Under ``-n`` the device is
opened read-only and ``flush`` is never called.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..fs.filesystem import FileSystem
from ..ondisk import dirent as de
from ..ondisk import extent as ext
from ..ondisk.csum import crc32c_raw
from ..ondisk.groupdesc import group_desc_checksum
from ..ondisk.inode import inode_csum_seed, set_inode_checksum
from . import problems as P
from .report import Finding, Report

MAX_FINDINGS = 5000
_U32 = struct.Struct("<I")


class Abort(Exception):
    """The check cannot continue (e2fsck's fatal problems)."""


class Context:
    def __init__(self, fs: FileSystem, mode: str, report: Report):
        self.fs = fs
        self.dev = fs.dev
        self.mode = mode
        self.report = report
        sb = fs.sb
        self.sb = sb
        self.bs = fs.block_size
        self.blocks_count = fs.blocks_count
        self.first_data_block = sb.f["s_first_data_block"]
        self.bpg = sb.f["s_blocks_per_group"]
        self.ipg = fs.inodes_per_group
        self.inodes_count = fs.inodes_count
        self.isz = fs.inode_size
        self.groups = fs.groups
        self.ngroups = fs.group_count
        self.first_ino = sb.first_ino if sb.f["s_rev_level"] else 11
        self.metadata_csum = sb.metadata_csum
        self.gdt_csum = sb.gdt_csum
        self.csum_feature = self.metadata_csum or self.gdt_csum
        self.csum_seed = fs.csum_seed
        self.now = int(time.time())
        self.itable_blocks = (self.ipg * self.isz + self.bs - 1) // self.bs
        self.huge_file = sb.has_ro("huge_file")
        self.extents = sb.has_incompat("extent")
        self.filetype = sb.has_incompat("filetype") and sb.f["s_creator_os"] != 1
        self.dir_index = sb.has_compat("dir_index")
        self.inline_data = sb.has_incompat("inline_data")
        self.has_xattr = sb.has_compat("ext_attr")
        self.is64 = sb.has_incompat("64bit")
        self.largedir = sb.has_incompat("large_dir")
        self.encrypt = sb.has_incompat("encrypt")
        # past s_first_ino yet never the target of an entry (e2fsck's PR_2_BAD_INO):
        # the quota files and the orphan file
        self.special_inodes = {sb.f["s_usr_quota_inum"], sb.f["s_grp_quota_inum"],
                               sb.f["s_prj_quota_inum"], sb.f["s_orphan_file_inum"]} - {0}
        # pending writes
        self.dirty: dict[int, bytearray] = {}
        self.dirty_groups: set[int] = set()
        self.super_dirty = False
        self._cache: dict[int, bytes] = {}
        # answers recorded per (code, key) so a repeated question is asked once
        self._asked: dict[tuple, bool] = {}
        self.restart = False
        self.bad_tables: set[int] = set()  # groups whose bitmaps / table lie outside the fs
        # progress(pass_no, done, total): a terminal's progress bar (None: nobody watches)
        self.progress: Callable[[int, int, int], None] | None = report.progress

    # ------------------------------------------------------------------ answers
    def ask(self, code: int, **loc: Any) -> bool:
        """Record a finding; True when its fix is to be applied."""
        p = P.TABLE[code]
        if self.mode == "p" and p.flags & P.PREEN_NO:
            return False  # not asked, not reported
        if p.flags & P.INFO:
            answer = False
        elif p.flags & P.NO_FIX:
            answer = False
        elif self.mode == "y":
            answer = True
        elif self.mode == "p":
            answer = bool(p.flags & P.PREEN_OK)
        else:
            answer = False
        rep = self.report
        if len(rep.findings) < MAX_FINDINGS:
            rep.findings.append(Finding(code, loc, answer))
        else:
            rep.dropped += 1
            if answer is False and not (p.flags & (P.NO_OK | P.INFO)):
                # keep the verdict right even when the list is full
                rep.findings[-1] = Finding(code, loc, answer)
        return answer

    def fail(self, why: str) -> None:
        """The fix just accepted could not be applied."""
        if self.report.findings:
            self.report.findings[-1].failed = why

    @property
    def writable(self) -> bool:
        return self.mode != "n"

    # ------------------------------------------------------------------ geometry
    def group_first(self, g: int) -> int:
        return self.first_data_block + g * self.bpg

    def group_blocks(self, g: int) -> int:
        return min(self.bpg, self.blocks_count - self.group_first(g))

    def group_of_block(self, blk: int) -> int:
        return (blk - self.first_data_block) // self.bpg

    def valid_block(self, blk: int) -> bool:
        return self.first_data_block <= blk < self.blocks_count

    def inode_seed(self, ino: int, generation: int) -> int:
        return inode_csum_seed(self.csum_seed, ino, generation)

    # ------------------------------------------------------------------ blocks
    def block(self, blk: int) -> bytes:
        d = self.dirty.get(blk)
        if d is not None:
            return bytes(d)
        c = self._cache.get(blk)
        if c is not None:
            return c
        if not 0 <= blk < self.blocks_count:
            raise IndexError(blk)
        data = self.dev.read(blk * self.bs, self.bs)
        if len(data) < self.bs:
            data = data + bytes(self.bs - len(data))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[blk] = data
        return data

    def blocks(self, blk: int, count: int) -> bytes:
        """``count`` consecutive blocks (pending writes applied)."""
        data = self.dev.read(blk * self.bs, count * self.bs)
        if len(data) < count * self.bs:
            data = data + bytes(count * self.bs - len(data))
        if self.dirty:
            buf = None
            for b in range(blk, blk + count):
                d = self.dirty.get(b)
                if d is not None:
                    if buf is None:
                        buf = bytearray(data)
                    off = (b - blk) * self.bs
                    buf[off: off + self.bs] = d
            if buf is not None:
                return bytes(buf)
        return data

    def write_block(self, blk: int, data: bytes | bytearray) -> None:
        assert len(data) == self.bs
        self.dirty[blk] = bytearray(data)
        self._cache.pop(blk, None)

    # ------------------------------------------------------------------ inodes
    def inode_location(self, ino: int) -> tuple[int, int]:
        g, idx = divmod(ino - 1, self.ipg)
        byte = idx * self.isz
        return self.groups[g].inode_table + byte // self.bs, byte % self.bs

    def read_inode(self, ino: int) -> bytearray:
        blk, off = self.inode_location(ino)
        if not 0 < blk < self.blocks_count:
            return bytearray(self.isz)
        return bytearray(self.block(blk)[off: off + self.isz])

    def write_inode(self, ino: int, raw: bytearray) -> None:
        blk, off = self.inode_location(ino)
        if not 0 < blk < self.blocks_count:
            return
        if self.metadata_csum:
            set_inode_checksum(raw, ino, self.csum_seed)
        buf = bytearray(self.block(blk))
        buf[off: off + self.isz] = raw[: self.isz]
        self.write_block(blk, buf)

    # ------------------------------------------------------------------ checksummed blocks
    def write_extent_block(self, blk: int, buf: bytearray, ino: int, generation: int) -> None:
        if self.metadata_csum:
            eh_max = struct.unpack_from("<H", buf, 4)[0]
            if ext.tail_offset(eh_max) + 4 <= len(buf):
                ext.set_node_checksum(buf, self.inode_seed(ino, generation), eh_max)
        self.write_block(blk, buf)

    def write_dir_block(self, blk: int, buf: bytearray, ino: int, generation: int) -> None:
        if self.metadata_csum and de.has_tail(memoryview(buf)):
            de.set_leaf_checksum(buf, self.inode_seed(ino, generation))
        self.write_block(blk, buf)

    # ------------------------------------------------------------------ groups, superblock
    def dirty_group(self, g: int) -> None:
        self.dirty_groups.add(g)

    def dirty_super(self) -> None:
        self.super_dirty = True

    def set_gd(self, g: int, base: str, value: int) -> None:
        gd = self.groups[g]
        width = 16 if base.endswith(("count", "unused", "csum")) else 32
        gd.f[base + "_lo"] = value & ((1 << width) - 1)
        if gd.is64:
            gd.f[base + "_hi"] = value >> width
        self.dirty_groups.add(g)

    def gd_checksum(self, g: int) -> int:
        gd = self.groups[g]
        dsz = self.sb.desc_size
        return group_desc_checksum(gd.pack(dsz), g, dsz, metadata_csum=self.metadata_csum,
                                   csum_seed=self.csum_seed, uuid=self.sb.f["s_uuid"])

    def bitmap_csum(self, data: bytes | bytearray, nbytes: int) -> int:
        return crc32c_raw(self.csum_seed, bytes(data[:nbytes]))

    def flush(self) -> None:
        """Write every pending change to the device (descriptors and superblock last)."""
        if not self.writable:
            return
        dsz = self.sb.desc_size
        for g in sorted(self.dirty_groups):
            gd = self.groups[g]
            if self.csum_feature:
                gd.f["bg_checksum"] = self.gd_checksum(g)
            blk, off = self.fs.group_desc_location(g, primary=True)
            if not 0 < blk < self.blocks_count:
                continue
            buf = bytearray(self.block(blk))
            buf[off: off + dsz] = gd.pack(dsz)
            self.dirty[blk] = buf
        if self.dirty_groups:
            self.super_dirty = True
        for blk in sorted(self.dirty):
            self.dev.write(blk * self.bs, bytes(self.dirty[blk]))
        if self.super_dirty:
            sb = self.sb
            sb.f["s_block_group_nr"] = 0
            self.dev.write(1024, sb.pack())
        if self.dirty or self.super_dirty:
            self.report.modified = True
        self.dirty.clear()
        self._cache.clear()
        self.dirty_groups.clear()
        self.super_dirty = False
        self.dev.flush()


def unpack_bits(raw: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:n].astype(bool)


def pack_bits(bits: np.ndarray, nbytes: int) -> bytes:
    full = np.ones(nbytes * 8, dtype=bool)
    full[: len(bits)] = bits
    return np.packbits(full, bitorder="little").tobytes()
