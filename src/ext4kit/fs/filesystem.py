"""FileSystem: an opened ext2/3/4 image with an API that mirrors Python's ``os`` module.

Owns geometry (superblock, group descriptors), the metadata block cache, inode lookup,
path resolution and the read-side os-like calls (listdir, scandir, stat, walk, open...).
"""

from __future__ import annotations

import errno
import io
import os
import stat as _stat
import struct
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..blockdev import BlockDevice, FileDevice
from ..errors import (
    ChecksumError,
    CorruptError,
    Ext4Error,
    ImageOpenError,
    NotExtError,
    TruncatedImageError,
    UnsupportedFeatureError,
    fs_oserror,
)
from ..ondisk import dirent as de
from ..ondisk.groupdesc import GroupDesc, group_desc_checksum
from ..ondisk.inode import (
    EXTENTS_FL,
    FT_FROM_MODE,
    INLINE_DATA_FL,
    Inode,
)
from ..ondisk.superblock import (
    EXT4_MAGIC,
    READ_INCOMPAT_READONLY_OK,
    SUPERBLOCK_OFFSET,
    SUPERBLOCK_SIZE,
    Superblock,
)
from ..ondisk.superblock import LAYOUT as SB_LAYOUT
from . import dirs, xattrs
from .blockmap import BlockMap, inode_block_map

ROOT_INO = 2
MAX_SYMLINK_FOLLOW = 40
_BLOCK_SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
MAX_PATH_COMPONENTS = 4096
_CACHE_BLOCKS = 8192
_CACHE_RUNS = 1 << 20  # block-map runs kept in the map cache, over all cached files
MAX_PROBLEMS = 1000  # findings kept in fs.problems; later distinct ones are only counted

_DT_TO_IFMT = {v: k for k, v in FT_FROM_MODE.items()}


class Ext4Warning(UserWarning):
    pass


class FileSystem:
    """An opened image. Use ``ext4kit.open(path)``; close it (or use ``with``)."""

    def __init__(self, dev: BlockDevice, *, sb_block: int | None = None, csum: str = "warn",
                 owns_dev: bool = True, journal_replay: bool = False):
        self.dev = dev
        # journal_replay: an image whose journal needs recovery is read as recovered (the
        # log replayed in memory over the device, which is never written), as the kernel's
        # read-only mount does. What was replayed is kept in ``journal_replayed``.
        self._replay_requested = journal_replay
        self.journal_replayed: Any = None
        self._owns_dev = owns_dev
        self.csum_policy = csum  # "warn" | "strict" | "ignore"
        self.free_blocks_delta = 0  # changed by the allocators of a writable file system
        self.free_inodes_delta = 0
        self.problems: list[Ext4Error] = []
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._bmap_cache: OrderedDict[int, tuple[bytes, BlockMap]] = OrderedDict()
        self._bmap_cache_runs = 0
        self._dirent_cache: OrderedDict[int, tuple[bytes, list, str | None]] = OrderedDict()
        self._problem_keys: set[str] = set()
        self.problems_dropped = 0
        self._load_superblock(sb_block)
        self._load_group_descriptors()
        if journal_replay and self.sb_block is None and self.sb.has_incompat("needs_recovery"):
            self._replay_journal_in_memory()

    def _replay_journal_in_memory(self) -> None:
        """Lay the journal's recovered blocks over the device (jbd2/log.py decides them
        exactly as a mount or e2fsck would) and reload the geometry through that view."""
        from ..jbd2.log import ReplayOverlay, plan_for

        inner = self.dev
        try:
            got = plan_for(self)
        except (Ext4Error, OSError, ValueError, IndexError, struct.error, OverflowError,
                MemoryError) as exc:
            self._warn(f"journal needs recovery and cannot be replayed ({exc}); reading the "
                       "image as it is on disk")
            return
        if got is None:  # needs_recovery without a journal
            self._warn("needs_recovery is set but the file system has no journal")
            return
        plan = got[2]
        blocks = plan.blocks.copy()
        for b in [b for b in blocks if not 0 <= b < self.blocks_count]:
            del blocks[b]
        self._keep_disk_superblock(blocks)
        if blocks:
            self.dev = ReplayOverlay(inner, self.block_size, blocks)
            try:
                self._reload_geometry()
            except Ext4Error as exc:
                self.dev = inner
                self._reload_geometry()
                self._warn(f"the journal replays an unusable file system ({exc}); reading "
                           "the image as it is on disk")
                return
        self.journal_replayed = plan
        n = len(plan.scan.committed)
        msg = (f"journal needs recovery: {n} transaction{'s' if n != 1 else ''} "
               f"({len(blocks)} blocks) replayed in memory, the image is not changed")
        if plan.error:
            msg += f"; a mount would fail: {plan.error}"
        elif plan.failed_commit is not None:
            msg += f"; transaction {plan.failed_commit} is corrupt"
        self._warn(msg)

    # superblock fields a mount keeps changing; everything else describes the file system
    _VOLATILE_SB_FIELDS = frozenset({
        "s_free_blocks_count_lo", "s_free_blocks_count_hi", "s_free_inodes_count", "s_mtime",
        "s_mtime_hi", "s_wtime", "s_wtime_hi", "s_mnt_count", "s_state", "s_lastcheck",
        "s_lastcheck_hi", "s_last_mounted", "s_last_orphan", "s_kbytes_written",
        "s_error_count", "s_first_error_time", "s_first_error_time_hi", "s_first_error_ino",
        "s_first_error_block", "s_first_error_func", "s_first_error_line",
        "s_first_error_errcode", "s_last_error_time", "s_last_error_time_hi",
        "s_last_error_ino", "s_last_error_line", "s_last_error_block", "s_last_error_func",
        "s_last_error_errcode", "s_checksum", "s_feature_incompat"})

    def _keep_disk_superblock(self, blocks: Any) -> None:
        """A replayed copy of the primary superblock that describes the same file system
        (it differs only in counters, times, mount and error fields) is left out of the
        overlay: the image's own superblock is what ``info`` (like dumpe2fs, which does
        not replay) reports. A replayed superblock that changes the geometry or features
        is used as it is."""
        bs = self.block_size
        blk, off = SUPERBLOCK_OFFSET // bs, SUPERBLOCK_OFFSET % bs
        data = blocks.get(blk)
        if data is None:
            return
        try:
            new = Superblock.parse(data[off : off + SUPERBLOCK_SIZE], verify=False)
        except Ext4Error:
            return
        old = self.sb.f
        for k, v in new.f.items():
            if k == "s_feature_incompat":
                if (v ^ old[k]) & ~0x4:  # needs_recovery aside
                    return
            elif k not in self._VOLATILE_SB_FIELDS and old.get(k) != v:
                return
        merged = bytearray(data)
        merged[off : off + SUPERBLOCK_SIZE] = self.dev.read_exact(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)
        if bytes(merged) == self.dev.read(blk * bs, bs):
            del blocks[blk]
        else:
            blocks[blk] = bytes(merged)

    def _reload_geometry(self) -> None:
        self._cache.clear()
        self._bmap_cache.clear()
        self._bmap_cache_runs = 0
        self._dirent_cache.clear()
        self.problems.clear()
        self._problem_keys.clear()
        self.problems_dropped = 0
        self._load_superblock(None)
        self._load_group_descriptors()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open_image(cls, image: Any, mode: str = "r", **options: Any) -> FileSystem:
        if mode in ("r+", "rb+", "r+b"):
            from .writer import WritableFileSystem

            return WritableFileSystem.open_writable(image, **options)
        if mode not in ("r", "rb"):
            raise ValueError(f"open mode {mode!r}: use 'r' (read) or 'r+' (read and write)")
        options.setdefault("journal_replay", True)
        return cls._on_device(image, writable=False, **options)

    @classmethod
    def _on_device(cls, image: Any, *, writable: bool, **options: Any) -> Any:
        """An instance over ``image`` (a path, or a BlockDevice the caller keeps owning)."""
        if isinstance(image, BlockDevice):
            return cls(image, owns_dev=False, **options)
        try:
            dev = FileDevice(image, writable=writable)
        except OSError as exc:
            raise ImageOpenError(f"cannot open {os.fspath(image)}: {exc.strerror}") from None
        try:
            return cls(dev, **options)
        except BaseException:
            dev.close()
            raise

    def close(self) -> None:
        if self._owns_dev:
            self.dev.close()

    def __enter__(self) -> FileSystem:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _load_superblock(self, sb_block: int | None) -> None:
        if sb_block is None:
            offset = SUPERBLOCK_OFFSET
            if self.dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE:
                raise NotExtError(f"image too small ({self.dev.size} bytes) to hold an ext2/3/4 file system")
            raw = self.dev.read_exact(offset, SUPERBLOCK_SIZE)
            try:
                sb = Superblock.parse(raw, verify=False)
            except NotExtError as exc:
                # like e2fsck: a backup superblock may still describe the file system
                found = self._find_backup_superblock(raw)
                if found is None:
                    raise
                sb_block, sb = found
                self.report_corruption(CorruptError(
                    f"primary superblock unusable ({exc}); using the backup at block {sb_block}"))
        else:
            # -b N is in units of the (unknown) block size: try each size like e2fsck does
            probed = self._probe_superblocks([(sb_block, bs) for bs in _BLOCK_SIZES])
            if probed is None:
                raise NotExtError(f"no valid superblock at block {sb_block}")
            sb = probed[1]
        self.sb = sb
        self.sb_block = sb_block
        if sb.metadata_csum and not sb.checksum_ok():
            self.report_checksum(ChecksumError("superblock checksum does not match"))
        self.block_size = sb.block_size
        self.blocks_count = sb.blocks_count
        self.inode_size = sb.inode_size
        self.inodes_per_group = sb.f["s_inodes_per_group"]
        self.inodes_count = sb.f["s_inodes_count"]
        self.group_count = sb.group_count
        self.csum_seed = sb.csum_seed if sb.metadata_csum else 0
        unknown = sb.unknown_incompat()
        hard = [n for n in unknown if n not in READ_INCOMPAT_READONLY_OK]
        if "journal_dev" in hard:
            raise UnsupportedFeatureError("this is an external journal device, not a file system")
        if hard:
            raise UnsupportedFeatureError(
                "unsupported file system feature(s): " + ", ".join(hard))
        if sb.has_ro("bigalloc"):
            raise UnsupportedFeatureError("unsupported file system feature: bigalloc")
        for name in unknown:
            self._warn(f"feature {name}: file names and data may not be readable as plain text")
        if sb.has_incompat("needs_recovery") and not (self._replay_requested and sb_block is None):
            self._warn("journal needs recovery; reading the image as it is on disk (run 'ext4kit recover')")
        if self.inodes_count > self.group_count * self.inodes_per_group:
            raise CorruptError("superblock: inode count larger than groups * inodes per group")
        if self.blocks_count * self.block_size > self.dev.size:
            self._warn(
                f"image is {self.dev.size} bytes but the file system claims "
                f"{self.blocks_count * self.block_size} bytes (truncated image?)")

    def _find_backup_superblock(self, primary: bytes) -> tuple[int, Superblock] | None:
        """(block, superblock) of the first valid backup in group 1, or None.

        Candidates are the ones e2fsck tries: group 1 as the primary's own geometry places
        it (when those fields are sane), then 8 * block size (+1 for 1 KiB blocks) for every
        block size.
        """
        cands: list[tuple[int, int]] = []
        f = SB_LAYOUT.unpack(primary)
        if f["s_magic"] == EXT4_MAGIC and f["s_log_block_size"] <= 6 and f["s_blocks_per_group"]:
            cands.append((f["s_first_data_block"] + f["s_blocks_per_group"],
                          1024 << f["s_log_block_size"]))
        for bs in _BLOCK_SIZES:
            cands.append((bs * 8 + (1 if bs == 1024 else 0), bs))
        return self._probe_superblocks(cands)

    def _probe_superblocks(self, cands: list[tuple[int, int]]) -> tuple[int, Superblock] | None:
        """The first (block, superblock) among (block, block size) candidates whose
        superblock parses and claims that block size."""
        for blk, bs in cands:
            offset = blk * bs
            if offset + SUPERBLOCK_SIZE > self.dev.size:
                continue
            try:
                cand = Superblock.parse(self.dev.read(offset, SUPERBLOCK_SIZE), verify=False)
            except NotExtError:
                continue
            if cand.block_size == bs:
                return blk, cand
        return None

    def _group_first_block(self, g: int) -> int:
        return self.sb.f["s_first_data_block"] + g * self.sb.f["s_blocks_per_group"]

    def group_desc_location(self, g: int, primary: bool = False) -> tuple[int, int]:
        """(block, byte offset in block) of group descriptor ``g`` in the table this file
        system was opened from (``primary``: the primary table even when opened from a
        backup superblock)."""
        sb = self.sb
        dsz = sb.desc_size
        dpb = self.block_size // dsz
        if sb.has_incompat("meta_bg") and g >= sb.f["s_first_meta_bg"] * dpb:
            first = (g // dpb) * dpb
            blk = self._group_first_block(first) + (1 if sb.is_sparse_group(first) else 0)
            return blk, (g % dpb) * dsz
        if self.sb_block is None or primary:
            base = sb.f["s_first_data_block"] + 1
        else:
            base = self.sb_block + 1
        return base + g // dpb, (g % dpb) * dsz

    def _load_group_descriptors(self) -> None:
        sb = self.sb
        dsz = sb.desc_size
        if self.group_count > (1 << 32) // max(1, dsz):
            raise CorruptError("superblock: impossible number of block groups")
        if self.group_count * dsz > self.dev.size:
            # every descriptor occupies its own bytes of the image: the table cannot fit
            raise CorruptError(
                f"superblock: {self.group_count} block groups cannot fit in a "
                f"{self.dev.size}-byte image (block count {self.blocks_count})")
        self.groups: list[GroupDesc] = []
        self.bad_group_checksums: list[int] = []
        blocks: dict[int, bytes] = {}
        for g in range(self.group_count):
            blk, off = self.group_desc_location(g)
            buf = blocks.get(blk)
            if buf is None:
                if blk >= self.blocks_count:
                    raise CorruptError(f"group descriptor block {blk} beyond end of file system")
                buf = self.read_block(blk, cache=False)
                blocks[blk] = buf
            gd = GroupDesc.parse(buf, off, g, dsz)
            self.groups.append(gd)
            if sb.metadata_csum or sb.gdt_csum:
                want = group_desc_checksum(
                    buf[off : off + dsz], g, dsz, metadata_csum=sb.metadata_csum,
                    csum_seed=self.csum_seed, uuid=sb.f["s_uuid"])
                if want != gd.f["bg_checksum"]:
                    self.bad_group_checksums.append(g)
        if self.bad_group_checksums:
            gs = self.bad_group_checksums
            shown = ", ".join(map(str, gs[:5])) + (" ..." if len(gs) > 5 else "")
            self.report_checksum(ChecksumError(f"group descriptor checksum mismatch in group(s) {shown}"))

    # ------------------------------------------------------------------ problems
    def _warn(self, msg: str) -> None:
        warnings.warn(msg, Ext4Warning, stacklevel=3)

    def report_checksum(self, exc: ChecksumError) -> None:
        if self.csum_policy == "strict":
            raise exc
        if self.csum_policy == "warn":
            self._add_problem(exc)

    def report_corruption(self, exc: CorruptError) -> None:
        if self.csum_policy == "strict":
            raise exc
        self._add_problem(exc)

    def _add_problem(self, exc: Ext4Error) -> None:
        """Record a finding once (re-reading the same structure does not repeat it), bounded."""
        key = str(exc)
        if key in self._problem_keys:
            return
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems_dropped += 1
            return
        self._problem_keys.add(key)
        self.problems.append(exc)

    # ------------------------------------------------------------------ block I/O
    def read_block(self, blk: int, cache: bool = True) -> bytes:
        c = self._cache
        data = c.get(blk)
        if data is not None:
            c.move_to_end(blk)
            return data
        if blk < 0 or blk >= self.blocks_count:
            raise CorruptError(f"block {blk} outside the file system (0..{self.blocks_count - 1})")
        bs = self.block_size
        try:
            data = self.dev.read_exact(blk * bs, bs)
        except TruncatedImageError:
            raise TruncatedImageError(f"image truncated: block {blk} lies past the end of the image") from None
        if cache:
            c[blk] = data
            if len(c) > _CACHE_BLOCKS:
                c.popitem(last=False)
        return data

    def read_blocks(self, blk: int, count: int) -> bytes:
        """``count`` consecutive blocks in one read (not cached)."""
        if blk < 0 or blk + count > self.blocks_count:
            raise CorruptError(f"blocks {blk}..{blk + count - 1} outside the file system")
        bs = self.block_size
        try:
            return self.dev.read_exact(blk * bs, count * bs)
        except TruncatedImageError:
            raise TruncatedImageError(
                f"image truncated: blocks {blk}..{blk + count - 1} lie past the end of the image") from None

    # ------------------------------------------------------------------ inodes
    def inode_location(self, ino: int) -> tuple[int, int]:
        if ino < 1 or ino > self.inodes_count:
            raise CorruptError(f"inode number {ino} out of range (1..{self.inodes_count})")
        g, idx = divmod(ino - 1, self.inodes_per_group)
        byte = idx * self.inode_size
        table = self.groups[g].inode_table
        if table == 0 or table >= self.blocks_count:
            raise CorruptError(f"group {g}: inode table at block {table} is invalid")
        return table + byte // self.block_size, byte % self.block_size

    def get_inode(self, ino: int) -> Inode:
        blk, off = self.inode_location(ino)
        buf = self.read_block(blk)
        inode = Inode.parse(ino, buf[off : off + self.inode_size])
        if self.sb.metadata_csum and self.csum_policy != "ignore":
            if not inode.checksum_ok(self.csum_seed) and any(inode.raw):
                self.report_checksum(ChecksumError(f"inode {ino}: checksum does not match inode"))
        return inode

    def block_map(self, inode: Inode) -> BlockMap:
        key = inode.ino
        hit = self._bmap_cache.get(key)
        if hit is not None and hit[0] == inode.raw:
            return hit[1]
        bmap = inode_block_map(self, inode)
        cache = self._bmap_cache
        old = cache.pop(key, None)
        if old is not None:
            self._bmap_cache_runs -= len(old[1].runs)
        cache[key] = (inode.raw, bmap)
        self._bmap_cache_runs += len(bmap.runs)
        # bounded by entries and by runs held (maps of hostile files can be large)
        while len(cache) > 1 and (len(cache) > 256 or self._bmap_cache_runs > _CACHE_RUNS):
            _, (_, evicted) = cache.popitem(last=False)
            self._bmap_cache_runs -= len(evicted.runs)
        return bmap

    def inode_block_map(self, inode: Inode) -> list:
        """The file's runs as (logical, physical, length, uninit) tuples, sorted by logical."""
        return list(self.block_map(inode).runs)

    def inline_data(self, inode: Inode) -> bytes:
        """The full inline body: 60 bytes of i_block followed by the system.data xattr."""
        extra = b""
        if inode.size > 60 or inode.is_dir():
            extra = xattrs.read_xattrs(self, inode).get("system.data", b"")
        return inode.i_block + extra

    def max_file_size(self, inode: Inode) -> int:
        """The largest i_size the format allows for this inode's mapping (as e2fsck checks)."""
        bs = self.block_size
        if inode.flags & INLINE_DATA_FL:
            return len(self.inline_data(inode))
        if inode.flags & EXTENTS_FL:
            return (1 << 32) * bs - 1
        per = bs // 4
        return (12 + per + per * per + per * per * per) * bs

    def data_size(self, inode: Inode) -> int:
        """i_size, checked against the format's limit before anything reads that many bytes."""
        size = inode.size
        if size > self.max_file_size(inode):
            raise CorruptError(
                f"inode {inode.ino}: size {size} is larger than its block map can describe")
        return size

    def inode_read(self, inode: Inode, offset: int, length: int) -> bytes:
        """File data [offset, offset+length) clipped to i_size; holes and uninit extents as zeros."""
        size = self.data_size(inode)
        if offset >= size or length <= 0:
            return b""
        length = min(length, size - offset)
        if inode.flags & INLINE_DATA_FL:
            return self.inline_data(inode)[offset : offset + length]
        buf = bytearray(length)
        self.inode_readinto(inode, offset, memoryview(buf))
        return bytes(buf)

    def inode_readinto(self, inode: Inode, offset: int, out: memoryview) -> int:
        """Fill ``out`` with file data from ``offset`` (caller clips to i_size). Returns len."""
        length = len(out)
        if inode.flags & INLINE_DATA_FL:
            data = self.inline_data(inode)[offset : offset + length]
            out[: len(data)] = data
            out[len(data) :] = bytes(length - len(data))
            return length
        bs = self.block_size
        first = offset // bs
        last = (offset + length - 1) // bs
        bmap = self.block_map(inode)
        pos = offset  # byte position in the file that out[0] corresponds to
        filled = 0
        dev = self.dev
        for run in bmap.overlapping(first, last - first + 1):
            rstart = max(run.logical * bs, offset)
            rend = min((run.logical + run.length) * bs, offset + length)
            if rstart >= rend:
                continue
            if rstart > pos + filled:
                out[filled : rstart - pos] = bytes(rstart - pos - filled)
            if run.uninit:
                out[rstart - pos : rend - pos] = bytes(rend - rstart)
            else:
                phys = run.physical * bs + (rstart - run.logical * bs)
                view = out[rstart - pos : rend - pos]
                if hasattr(dev, "readinto"):
                    got = dev.readinto(phys, view)
                else:
                    data = dev.read(phys, rend - rstart)
                    got = len(data)
                    view[:got] = data
                if got != rend - rstart:
                    raise TruncatedImageError(
                        f"image truncated: inode {inode.ino} data at byte {phys} lies past the end")
            filled = max(filled, rend - pos)  # overlapping extents (corrupt) never rewind
        if filled < length:
            out[filled:] = bytes(length - filled)
        return length

    # ------------------------------------------------------------------ paths
    @staticmethod
    def _bpath(path: Any) -> bytes:
        p = os.fsencode(path)
        if b"\0" in p:
            raise ValueError("embedded null byte in path")
        return p

    def _resolve(self, path: Any, follow: bool = True) -> Inode:
        return self.get_inode(self._resolve_ino(path, follow))

    def _resolve_ino(self, path: Any, follow: bool = True, _depth: int = 0) -> int:
        bpath = self._bpath(path)
        parts = [p for p in bpath.split(b"/") if p]
        if len(parts) > MAX_PATH_COMPONENTS:
            raise fs_oserror(errno.ENAMETOOLONG, os.fsdecode(bpath))
        stack = [ROOT_INO]  # directories above the current one, for symlink resolution
        cur = ROOT_INO
        follows = _depth
        i = 0
        while i < len(parts):
            name = parts[i]
            dinode = self.get_inode(cur)
            if not dinode.is_dir():
                raise fs_oserror(errno.ENOTDIR, os.fsdecode(bpath))
            if len(name) > 255:
                raise fs_oserror(errno.ENAMETOOLONG, os.fsdecode(bpath))
            ent = dirs.lookup(self, dinode, name)
            if ent is None:
                raise fs_oserror(errno.ENOENT, os.fsdecode(bpath))
            child = ent.inode
            last = i == len(parts) - 1
            if name not in (b".", b"..") and (follow or not last):
                cinode = self.get_inode(child)
                if cinode.is_symlink():
                    follows += 1
                    if follows > MAX_SYMLINK_FOLLOW:
                        raise fs_oserror(errno.ELOOP, os.fsdecode(bpath))
                    target = self._readlink_inode(cinode)
                    rest = parts[i + 1 :]
                    tparts = [p for p in target.split(b"/") if p]
                    if target.startswith(b"/"):
                        cur = ROOT_INO
                    parts = tparts + rest
                    if len(parts) > MAX_PATH_COMPONENTS:
                        raise fs_oserror(errno.ENAMETOOLONG, os.fsdecode(bpath))
                    i = 0
                    continue
            cur = child
            i += 1
        del stack
        return cur

    def _readlink_inode(self, inode: Inode) -> bytes:
        if not inode.is_symlink():
            raise fs_oserror(errno.EINVAL, None, "not a symbolic link")
        size = inode.size
        if size > self.block_size * 16 or size > 65536:
            raise CorruptError(f"symlink inode {inode.ino}: impossible target length {size}")
        if size == 0:
            raise CorruptError(f"symlink inode {inode.ino} has an empty target")
        if inode.flags & INLINE_DATA_FL:
            target = self.inline_data(inode)[:size]
        elif self._is_fast_symlink(inode):
            if size > 60:
                raise CorruptError(f"fast symlink inode {inode.ino} with size {size}")
            target = inode.i_block[:size]
        else:
            target = self.inode_read(inode, 0, size)
        # like the kernel's readlink: the target ends at the first NUL byte
        target = target.split(b"\0", 1)[0]
        if not target:
            raise CorruptError(f"symlink inode {inode.ino} has an empty target")
        return target

    def _is_fast_symlink(self, inode: Inode) -> bool:
        ea_blocks = (self.block_size // 512) if inode.file_acl else 0
        data_blocks = inode.blocks_512(self.sb.has_ro("huge_file"), self.block_size) - ea_blocks
        if data_blocks == 0:
            return True
        # e2fsprogs also treats an extent-less tiny target stored in i_block as fast
        return inode.size < 60 and not inode.flags & EXTENTS_FL and inode.f["i_blocks_lo"] == 0

    # ------------------------------------------------------------------ os-like API
    def exists(self, path: Any) -> bool:
        try:
            self._resolve_ino(path, True)
            return True
        except OSError:
            return False

    def lexists(self, path: Any) -> bool:
        try:
            self._resolve_ino(path, False)
            return True
        except OSError:
            return False

    def stat(self, path: Any, *, follow_symlinks: bool = True) -> os.stat_result:
        return self.stat_inode(self._resolve(path, follow_symlinks))

    def lstat(self, path: Any) -> os.stat_result:
        return self.stat(path, follow_symlinks=False)

    def stat_inode(self, inode: Inode) -> os.stat_result:
        a, m, c = inode.time_ns("atime"), inode.time_ns("mtime"), inode.time_ns("ctime")
        rdev = 0
        if inode.file_type in (_stat.S_IFCHR, _stat.S_IFBLK):
            rdev = os.makedev(*inode.rdev())
        blocks = inode.blocks_512(self.sb.has_ro("huge_file"), self.block_size)
        fields = (inode.mode, inode.ino, 0, inode.links_count, inode.uid, inode.gid, inode.size,
                  a // 10**9, m // 10**9, c // 10**9)
        extra = {
            "st_atime": a / 1e9, "st_mtime": m / 1e9, "st_ctime": c / 1e9,
            "st_atime_ns": a, "st_mtime_ns": m, "st_ctime_ns": c,
            "st_blksize": self.block_size, "st_blocks": blocks, "st_rdev": rdev,
        }
        return os.stat_result(fields, extra)

    def readlink(self, path: Any) -> str | bytes:
        inode = self._resolve(path, follow=False)
        if not inode.is_symlink():
            raise fs_oserror(errno.EINVAL, os.fsdecode(path))
        target = self._readlink_inode(inode)
        return target if isinstance(path, bytes) else os.fsdecode(target)

    def _dir_inode(self, path: Any) -> Inode:
        inode = self._resolve(path, True)
        if not inode.is_dir():
            raise fs_oserror(errno.ENOTDIR, os.fsdecode(path))
        return inode

    def listdir(self, path: Any = "/") -> list:
        inode = self._dir_inode(path)
        names = [e.name for e in dirs.iter_entries(self, inode)]
        if isinstance(path, bytes):
            return names
        return [os.fsdecode(n) for n in names]

    def scandir(self, path: Any = "/") -> Iterator[Ext4DirEntry]:
        inode = self._dir_inode(path)
        as_bytes = isinstance(path, bytes)
        base = self._bpath(path).rstrip(b"/")
        for e in dirs.iter_entries(self, inode):
            yield Ext4DirEntry(self, base, e, as_bytes)

    def walk(self, top: Any = "/", topdown: bool = True) -> Iterator[tuple[Any, list, list]]:
        """Like os.walk (symlinks to directories are not followed); safe against loops.

        Each directory inode is visited once, so a directory hard-linked into itself or
        into a subtree cannot loop; the walk keeps an explicit stack (no recursion limit).
        """
        seen: set[int] = set()
        as_bytes = isinstance(top, bytes)
        conv = (lambda x: x) if as_bytes else os.fsdecode
        start = self._bpath(top)
        # stack items: ("visit", path, ino) or ("yield", path, dnames, fnames) for bottom-up
        stack: list[tuple] = [("visit", start, self._resolve_ino(start))]
        while stack:
            item = stack.pop()
            if item[0] == "yield":
                yield conv(item[1]), [conv(n) for n in item[2]], [conv(n) for n in item[3]]
                continue
            _, path, ino = item
            if ino in seen:
                continue
            seen.add(ino)
            dnames, fnames, subdirs = [], [], []
            for e in dirs.iter_entries(self, self.get_inode(ino)):
                if self._entry_is_dir(e):
                    dnames.append(e.name)
                    subdirs.append((e.name, e.inode))
                else:
                    fnames.append(e.name)
            if topdown:
                dl = [conv(n) for n in dnames]
                yield conv(path), dl, [conv(n) for n in fnames]
                keep = {os.fsencode(n) for n in dl}  # the caller may prune dl in place
                subdirs = [(n, i) for n, i in subdirs if n in keep]
            else:
                stack.append(("yield", path, dnames, fnames))
            for name, child in reversed(subdirs):
                if child in seen:
                    continue
                sub = (path.rstrip(b"/") + b"/" + name) if path.rstrip(b"/") else b"/" + name
                stack.append(("visit", sub, child))

    def _entry_is_dir(self, e: de.DirEntry) -> bool:
        if e.file_type and self.sb.has_incompat("filetype"):
            return e.file_type == 2
        return self.get_inode(e.inode).is_dir()

    def read_bytes(self, path: Any) -> bytes:
        inode = self._resolve(path, True)
        if inode.is_dir():
            raise fs_oserror(errno.EISDIR, os.fsdecode(path))
        return self.inode_read(inode, 0, self.data_size(inode))

    def open(self, path: Any, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        if mode not in ("rb", "r"):
            raise UnsupportedFeatureError(f"open mode {mode!r}: only 'rb' is implemented yet")
        inode = self._resolve(path, True)
        if inode.is_dir():
            raise fs_oserror(errno.EISDIR, os.fsdecode(path))
        self.data_size(inode)
        raw = Ext4RawFile(self, inode, os.fsdecode(path))
        if mode == "r":
            return io.TextIOWrapper(io.BufferedReader(raw))  # type: ignore[return-value]
        if buffering == 0:
            return raw  # type: ignore[return-value]
        return io.BufferedReader(raw, buffer_size=buffering if buffering > 0 else 1 << 20)

    def listxattr(self, path: Any, *, follow_symlinks: bool = True) -> list[str]:
        inode = self._resolve(path, follow_symlinks)
        return [n for n in xattrs.read_xattrs(self, inode) if xattrs.user_visible(n)]

    def getxattr(self, path: Any, attribute: str, *, follow_symlinks: bool = True) -> bytes:
        inode = self._resolve(path, follow_symlinks)
        attrs = xattrs.read_xattrs(self, inode)
        if attribute not in attrs or not xattrs.user_visible(attribute):
            raise fs_oserror(errno.ENODATA, os.fsdecode(path))
        return xattrs.present_value(attribute, attrs[attribute])

    def xattrs_of(self, inode: Inode) -> dict[str, bytes]:
        attrs = xattrs.read_xattrs(self, inode)
        return {k: xattrs.present_value(k, v) for k, v in attrs.items() if xattrs.user_visible(k)}

    def inode_of(self, path: Any, *, follow_symlinks: bool = False) -> Inode:
        return self._resolve(path, follow_symlinks)


class Ext4DirEntry:
    """What ``FileSystem.scandir`` yields (mirrors ``os.DirEntry``)."""

    __slots__ = ("_fs", "_e", "name", "path", "_inode")

    def __init__(self, fs: FileSystem, base: bytes, e: de.DirEntry, as_bytes: bool):
        self._fs = fs
        self._e = e
        bpath = base + b"/" + e.name
        self.name = e.name if as_bytes else os.fsdecode(e.name)
        self.path = bpath if as_bytes else os.fsdecode(bpath)
        self._inode: Inode | None = None

    def inode(self) -> int:
        return self._e.inode

    def _get(self) -> Inode:
        if self._inode is None:
            self._inode = self._fs.get_inode(self._e.inode)
        return self._inode

    def _type(self) -> int:
        ft = self._e.file_type
        if ft and self._fs.sb.has_incompat("filetype") and ft in _DT_TO_IFMT:
            return _DT_TO_IFMT[ft]
        return self._get().file_type

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        t = self._type()
        if t == _stat.S_IFLNK and follow_symlinks:
            try:
                return _stat.S_ISDIR(self._fs.stat(self.path).st_mode)
            except OSError:
                return False
        return t == _stat.S_IFDIR

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        t = self._type()
        if t == _stat.S_IFLNK and follow_symlinks:
            try:
                return _stat.S_ISREG(self._fs.stat(self.path).st_mode)
            except OSError:
                return False
        return t == _stat.S_IFREG

    def is_symlink(self) -> bool:
        return self._type() == _stat.S_IFLNK

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        if follow_symlinks and self.is_symlink():
            return self._fs.stat(self.path)
        return self._fs.stat_inode(self._get())

    def __repr__(self) -> str:
        return f"<Ext4DirEntry {self.name!r}>"


class Ext4RawFile(io.RawIOBase):
    """A read-only binary file over an inode (readinto/seek/tell)."""

    def __init__(self, fs: FileSystem, inode: Inode, name: str = ""):
        super().__init__()
        self._fs = fs
        self._inode = inode
        self._pos = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        mv = memoryview(b).cast("B")
        size = self._inode.size
        n = max(0, min(len(mv), size - self._pos))
        if n == 0:
            return 0
        self._fs.inode_readinto(self._inode, self._pos, mv[:n])
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._inode.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def fileno(self) -> int:
        raise io.UnsupportedOperation("ext4kit files have no OS file descriptor")

    def data_runs(self) -> list[tuple[int, int]]:
        """(byte offset, byte length) of the file's allocated, initialised data."""
        bs = self._fs.block_size
        size = self._inode.size
        if self._inode.flags & INLINE_DATA_FL:
            return [(0, size)] if size else []
        out = []
        for r in self._fs.block_map(self._inode).runs:
            if r.uninit:
                continue
            start = r.logical * bs
            end = min((r.logical + r.length) * bs, size)
            if end > start:
                out.append((start, end - start))
        return out


__all__ = ["FileSystem", "Ext4DirEntry", "Ext4RawFile", "Ext4Warning", "ROOT_INO", "struct"]
