"""tune: add or remove the internal jbd2 journal the way tune2fs 1.47 does.

``-O ^has_journal`` (tune2fs remove_journal_inode): every block of the journal inode (data
and extent-tree / indirect blocks) is freed in the bitmaps and group descriptors, the first
128 bytes of inode 8 are zeroed (the large-inode tail, e.g. i_crtime, stays, as
ext2fs_write_inode leaves it), ``s_journal_inum`` and ``s_jnl_blocks`` are cleared (tune2fs
keeps ``s_jnl_backup_type``), ``s_overhead_clusters`` drops by the journal size and
has_journal is cleared. A file system whose journal needs recovery is refused (tune2fs 1.47
replays it first; we leave that to ``ext4kit recover`` / e2fsck so nothing is replayed
behind the user's back).

``-O has_journal`` / ``-J size=MiB`` (tune2fs add_journal -> ext2fs_add_journal_inode3):
the journal inode is allocated from the midpoint goal of mkjournal.c (extent files) or
from group 0 (block-mapped files, where libext2fs ignores the goal), zeroed, given a fresh
jbd2 v2 superblock, backed up in ``s_jnl_blocks`` (``s_jnl_backup_type`` = 1); then
``s_journal_inum`` = 8 and has_journal are set and ``s_overhead_clusters`` grows by the
journal size.

Every change goes through the writer (``WritableFileSystem``: allocator, mappers, handles),
opened without a journal: the one being removed is hidden from it, and an added one is
only switched on in the superblock of the same transaction. Like ext2fs_flush, the backup
superblocks (and, without meta_bg, the backup descriptor tables) are rewritten too.
"""

from __future__ import annotations

import os
import stat as _stat
import struct
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import Ext4Error
from .fs.alloc import Allocator, NoSpace, group_first_block
from .fs.filesystem import FileSystem
from .fs.mapper import Mapped, Mapper
from .fs.writer import WritableFileSystem
from .mkfs import (
    EXT_INIT_MAX_LEN,
    FEATURE_ALIASES,
    JBD2_MIN_JOURNAL_BLOCKS,
    JNL_BACKUP_BLOCKS,
    JOURNAL_INO,
    _default_journal_size,
    _loop_device_of,
)
from .ondisk import inode as _inode
from .ondisk.groupdesc import BG_BLOCK_UNINIT
from .ondisk.inode import Inode
from .ondisk.jbd2 import JournalSuperblock
from .ondisk.superblock import FEATURE_BITS, SUPERBLOCK_SIZE, Superblock

__all__ = ["TuneError", "TuneUsageError", "TuneResult", "tune", "add_journal",
           "remove_journal", "parse_journal_opts", "journal_blocks_for"]

COMPAT_HAS_JOURNAL = 0x4
INCOMPAT_RECOVER = 0x4
JBD2_MAX_JOURNAL_BLOCKS = 10240000
STATE_VALID = 0x1
_ZERO_CHUNK = 1 << 20


class TuneError(Ext4Error):
    """tune2fs refuses (exit 1): a journal already there, needs_recovery, bad size..."""

    exit_code = 1


class TuneUsageError(TuneError):
    """The command line itself is wrong (exit 16)."""

    exit_code = 16


@dataclass
class TuneResult:
    messages: list[str]
    removed_blocks: int = 0  # journal blocks freed (data + map blocks)
    journal_blocks: int = 0  # size of the journal created (0: none)


# =======================================================================================
# Argument parsing
# =======================================================================================
def parse_journal_opts(text: str | None) -> int | None:
    """``-J`` options: ``size=MiB`` only (device= and location= are refused). Returns the
    size in MiB or None."""
    if text is None:
        return None
    size: int | None = None
    for opt in filter(None, text.split(",")):
        key, eq, val = opt.partition("=")
        if key == "size" and eq and val.isdigit():
            size = int(val)
        elif key == "device":
            raise TuneError("external journal devices are not supported by ext4kit")
        elif key == "location":
            raise TuneError("journal location= is not supported by ext4kit (the journal goes "
                            "where tune2fs puts it by default)")
        else:
            raise TuneUsageError(f"bad journal option '{opt}' (supported: size=MiB)")
    if size is None:
        raise TuneUsageError("bad journal options: size=MiB expected")
    return size


def _feature_edits(specs: list[str]) -> list[tuple[str, bool]]:
    """e2p_edit_feature2 words: comma/blank separated, '^' or '-' clears, '+' or nothing
    sets; 'none'/'clear' clears everything. Returns (name, on) in order."""
    out: list[tuple[str, bool]] = []
    for spec in specs:
        for w in spec.replace("\t", ",").replace(" ", ",").split(","):
            if not w:
                continue
            if w.lower() in ("none", "clear"):
                out.append(("*", False))
                continue
            neg = w[0] in "^-"
            raw = w[1:] if w[0] in "^-+" else w
            name = FEATURE_ALIASES.get(raw.lower(), raw.lower())
            if name not in FEATURE_BITS:
                raise TuneError(f"Invalid filesystem option set: {','.join(specs)}")
            out.append((name, not neg))
    return out


def _wanted_journal(sb: Superblock, specs: list[str]) -> bool | None:
    """The has_journal state -O asks for (None: not named); any other feature change is
    refused with tune2fs's words. Asking for a journal the file system has is refused by
    the caller (tune2fs accepts it silently; -j / -J refuse it)."""
    current = set(sb.feature_list())
    wanted = set(current)
    edits = _feature_edits(specs)
    for name, on in edits:
        if name == "*":
            wanted.clear()
        elif on:
            wanted.add(name)
        else:
            wanted.discard(name)
    for name in sorted(wanted - current):
        if name != "has_journal":
            raise TuneError(f"Setting filesystem feature '{name}' not supported "
                            "(ext4kit tune changes only has_journal)")
    for name in sorted(current - wanted):
        if name != "has_journal":
            raise TuneError(f"Clearing filesystem feature '{name}' not supported "
                            "(ext4kit tune changes only has_journal)")
    if not any(name in ("has_journal", "*") for name, _ in edits):
        return None
    return "has_journal" in wanted


def journal_blocks_for(blocks_count: int, block_size: int, free_blocks: int,
                       size_mib: int | None) -> int:
    """figure_journal_size: ext2fs_default_journal_size, or the requested MiB checked
    against tune2fs's bounds (1024..10240000 blocks, at most half the free blocks)."""
    default = _default_journal_size(blocks_count)
    if default < 0:
        raise TuneError("Filesystem too small for a journal")
    if size_mib is None or size_mib <= 0:
        return default
    n = size_mib * 1024 // (block_size // 1024)
    if not JBD2_MIN_JOURNAL_BLOCKS <= n <= JBD2_MAX_JOURNAL_BLOCKS:
        raise TuneError(f"The total requested journal size is {n} blocks; it must be between "
                        f"{JBD2_MIN_JOURNAL_BLOCKS} and {JBD2_MAX_JOURNAL_BLOCKS} blocks.  "
                        "Aborting.")
    if n > free_blocks // 2:
        raise TuneError("Total journal size too big for filesystem.")
    return n


# =======================================================================================
# Writable views of the file system
# =======================================================================================
class _WithoutJournal(WritableFileSystem):
    """The writer over a file system whose journal is being removed: has_journal is
    cleared in the in-memory superblock as it is read, so the writer runs without a log
    (InPlaceJournal) and the superblock it writes back says "no journal"."""

    def _load_superblock(self, sb_block: int | None) -> None:
        super()._load_superblock(sb_block)
        if self.sb.f["s_feature_incompat"] & INCOMPAT_RECOVER:
            raise TuneError(_NEEDS_RECOVERY)
        self.sb.f["s_feature_compat"] &= ~COMPAT_HAS_JOURNAL


class _FirstFitAllocator(Allocator):
    """libext2fs's ext2fs_new_range(flags=0), which ext2fs_fallocate and ext2fs_bmap2 use
    for the journal: the first free block at or after the goal (wrapping), and the free
    run from there, however short, up to ``count``. (The writer's own policy looks for a
    run of the full length first; the journal takes tune2fs's blocks instead.)"""

    def allocate_blocks(self, h: Any, goal: int, count: int, *,
                        min_count: int = 1) -> tuple[int, int]:
        if min_count != 1:
            return super().allocate_blocks(h, goal, count, min_count=min_count)
        g, i, n = self._first_fit(goal, count)
        self.block_bitmap(g)[i : i + n] = True
        self._after_block_change(h, g, -n)
        return group_first_block(self.fs, g) + i, n

    def find(self, goal: int, count: int) -> tuple[int, int]:
        """(first block, length) allocate_blocks would take now, nothing allocated."""
        g, i, n = self._first_fit(goal, count)
        return group_first_block(self.fs, g) + i, n

    def _first_fit(self, goal: int, count: int) -> tuple[int, int, int]:
        """(group, offset in group, length) of the first free run from ``goal``."""
        if count <= 0:
            raise ValueError("count must be positive")
        fs = self.fs
        fdb = fs.sb.f["s_first_data_block"]
        bpg = fs.sb.f["s_blocks_per_group"]
        if not fdb <= goal < fs.blocks_count:
            goal = fdb
        g0 = (goal - fdb) // bpg
        ngroups = fs.group_count
        for step in range(ngroups + 1):
            g = (g0 + step) % ngroups
            gd = fs.groups[g]
            if gd.free_blocks_count == 0 and not gd.flags & BG_BLOCK_UNINIT:
                continue
            bm = self.block_bitmap(g)
            first = group_first_block(fs, g)
            off = goal - first if step == 0 else 0
            free = ~bm[off:]
            if not free.any():
                continue
            i = off + int(free.argmax())
            used = np.flatnonzero(bm[i : i + count])
            n = int(used[0]) if used.size else min(count, len(bm) - i)
            return g, i, n
        raise NoSpace("no free blocks")


class _AddingJournal(WritableFileSystem):
    """The writer with libext2fs's allocation policy (``_FirstFitAllocator``) and the
    journal inode's goal overridable (mkjournal.c's get_midpoint_journal_block instead of
    the inode's own group)."""

    journal_goal: int | None = None

    def __init__(self, dev: Any, **kw: Any):
        super().__init__(dev, **kw)
        self.alloc = _FirstFitAllocator(self)  # nothing allocated yet: bitmaps reread

    def _load_superblock(self, sb_block: int | None) -> None:
        super()._load_superblock(sb_block)
        if self.sb.f["s_feature_incompat"] & INCOMPAT_RECOVER:
            raise TuneError("The needs_recovery flag is set on a file system without a "
                            "journal.  Please run e2fsck -f first.")

    def inode_goal(self, inode: Inode) -> int:
        if inode.ino == JOURNAL_INO and self.journal_goal is not None:
            return self.journal_goal
        return super().inode_goal(inode)


_NEEDS_RECOVERY = ("The needs_recovery flag is set.  Please run e2fsck (or 'ext4kit recover') "
                   "before clearing the has_journal flag.")


def _open_rw(cls: type[WritableFileSystem], image: Any) -> Any:
    with warnings.catch_warnings():  # preconditions were checked on a read-only open
        warnings.simplefilter("ignore")
        return cls.open_writable(image)


def _abandon(fs: WritableFileSystem) -> None:
    """Close without committing: the running transaction (only in the buffer cache
    without a journal) is dropped, nothing more reaches the image."""
    FileSystem.close(fs)


def _check_not_in_use(image: Any) -> None:
    """Refuse an image some loop device serves or a mounted block device (tune2fs can
    change a mounted file system; ext4kit cannot do it safely)."""
    if not isinstance(image, (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(image)
    try:
        st = os.stat(path)
    except OSError:
        return  # the open reports it
    if _stat.S_ISREG(st.st_mode):
        loop = _loop_device_of(path)
        if loop:
            raise Ext4Error(f"in use by {loop}; unmount it before changing the journal")
    elif _stat.S_ISBLK(st.st_mode):
        real = os.path.realpath(path)
        try:
            with open("/proc/mounts") as f:
                mounted = any(os.path.realpath(line.split()[0]) == real for line in f
                              if line.startswith("/"))
        except OSError:
            mounted = False
        if mounted:
            raise Ext4Error(f"{path} is mounted; unmount it before changing the journal")


# =======================================================================================
# Shared pieces
# =======================================================================================
def _now(now: int | None) -> int:
    return int(time.time()) if now is None else int(now)


def _set_wtime(fs: WritableFileSystem, now: int) -> None:
    fs.sb.f["s_wtime"] = now & 0xFFFFFFFF
    if "s_wtime_hi" in fs.sb.f:
        fs.sb.f["s_wtime_hi"] = (now >> 32) & 0xFF


def _write_backups(fs: WritableFileSystem, h: Any) -> None:
    """ext2fs_flush: every backup superblock (s_block_group_nr set, VALID_FS and
    needs_recovery cleared) and, without meta_bg, every backup descriptor table."""
    sb = fs.sb
    bs = fs.block_size
    dpb = bs // sb.desc_size
    desc_blocks = (fs.group_count + dpb - 1) // dpb
    primary_gdt = sb.f["s_first_data_block"] + 1
    meta_bg = sb.has_incompat("meta_bg")
    gdt = [] if meta_bg else [bytes(fs.read_block(primary_gdt + i)) for i in range(desc_blocks)]
    for g in range(1, fs.group_count):
        if not sb.is_sparse_group(g):
            continue
        first = group_first_block(fs, g)
        f = dict(sb.f)
        f["s_block_group_nr"] = min(g, 0xFFFF)
        f["s_state"] &= ~STATE_VALID
        f["s_feature_incompat"] &= ~INCOMPAT_RECOVER
        raw = Superblock(f, sb.raw).pack()
        buf = h.get_write_access(first)
        buf[:SUPERBLOCK_SIZE] = raw
        h.dirty_metadata(first)
        for i, data in enumerate(gdt):
            if first + 1 + i >= fs.blocks_count:
                break
            buf = h.get_write_access(first + 1 + i)
            buf[:] = data
            h.dirty_metadata(first + 1 + i)


def _finish(fs: WritableFileSystem, h: Any, now: int) -> None:
    """Superblock totals from the descriptors, s_wtime, primary and backups."""
    _set_wtime(fs, now)
    fs.sync_superblock_counts(h)
    _write_backups(fs, h)


# =======================================================================================
# Remove
# =======================================================================================
def remove_journal(image: Any, *, now: int | None = None) -> TuneResult:
    """tune2fs -O ^has_journal on an image without needs_recovery."""
    _check_not_in_use(image)
    fs = _open_rw(_WithoutJournal, image)
    try:
        res = _remove(fs, _now(now))
    except BaseException:
        _abandon(fs)
        raise
    fs.close()
    return res


def _remove(fs: WritableFileSystem, now: int) -> TuneResult:
    sb = fs.sb
    ino = sb.f["s_journal_inum"]
    if not ino:
        if sb.f["s_journal_dev"] or any(sb.f["s_journal_uuid"]):
            raise TuneError("the journal is on an external device; ext4kit does not "
                            "support external journals")
        # has_journal without a journal inode: clearing the flag is all there is to do
        with fs.start() as h:
            sb.f["s_jnl_blocks"] = [0] * 17
            _finish(fs, h, now)
        return TuneResult(["Journal flag cleared (there was no journal inode)"])
    if not 0 < ino <= fs.inodes_count:
        raise TuneError(f"journal inode {ino} out of range")
    inode = fs.get_inode(ino)
    freed = 0
    size_blocks = inode.size // fs.block_size
    with fs.start() as h:
        if ino == JOURNAL_INO:
            before = sum(gd.free_blocks_count for gd in fs.groups)
            if inode.flags & _inode.INLINE_DATA_FL:
                raise TuneError("the journal inode has inline data (corrupt)")
            if inode.f["i_blocks_lo"] or inode.f["l_i_blocks_high"] or any(inode.i_block):
                fs.mapper(inode).truncate(h, inode, 0)
            freed = sum(gd.free_blocks_count for gd in fs.groups) - before
            # memset(&inode, 0, sizeof(struct ext2_inode)): the 128-byte base only
            for name in _inode.LAYOUT.names:
                inode.f[name] = 0
            inode.f["i_block"] = bytes(60)
            over = sb.f["s_overhead_clusters"]
            if over >= size_blocks:
                sb.f["s_overhead_clusters"] = over - size_blocks
        else:  # a journal in an ordinary inode (old ext3): just unpin it
            inode.f["i_flags"] &= ~_inode.IMMUTABLE_FL
        fs.write_inode(h, inode)
        fs.invalidate_map(ino)
        sb.f["s_journal_inum"] = 0
        sb.f["s_jnl_blocks"] = [0] * 17
        sb.f["s_feature_compat"] &= ~COMPAT_HAS_JOURNAL
        sb.f["s_feature_incompat"] &= ~INCOMPAT_RECOVER
        _finish(fs, h, now)
    msg = f"Journal removed: {freed} blocks freed" if freed else "Journal removed"
    return TuneResult([msg], removed_blocks=freed)


# =======================================================================================
# Add
# =======================================================================================
def _midpoint_journal_block(fs: WritableFileSystem) -> int:
    """mkjournal.c get_midpoint_journal_block, on the live group descriptors (the same
    rule as mkfs's _Builder._midpoint_journal_block, which works on mkfs's own state)."""
    sb = fs.sb
    fdb = sb.f["s_first_data_block"]
    bpg = sb.f["s_blocks_per_group"]
    ngroups = fs.group_count
    free = [gd.free_blocks_count for gd in fs.groups]
    group = ((fs.blocks_count - fdb) // 2 - fdb) // bpg
    log_flex_n = sb.f["s_log_groups_per_flex"] if sb.has_incompat("flex_bg") else 0
    flex = 1 << log_flex_n
    if log_flex_n and group > flex:
        group &= ~(flex - 1)
        while group < ngroups and free[group] == 0:
            group += 1
        if group == ngroups:
            group = 0
        start = group
    else:
        start = group - 1 if group > 0 else group
    end = group + 1 if group + 1 < ngroups else group
    group = start
    for i in range(start + 1, end + 1):
        if free[i] > free[group]:
            group = i
    return group_first_block(fs, group)


def add_journal(image: Any, size_mib: int | None = None, *, now: int | None = None) -> TuneResult:
    """tune2fs -O has_journal [-J size=MiB] on an image without a journal."""
    _check_not_in_use(image)
    fs = _open_rw(_AddingJournal, image)
    try:
        res = _add(fs, size_mib, _now(now))
    except BaseException:
        _abandon(fs)
        raise
    fs.close()
    return res


def _zero_blocks(fs: WritableFileSystem, h: Any, start: int, count: int) -> None:
    """ext2fs_fallocate's ZERO_BLOCKS: blocks that do not read back as zeros are written
    with zeros (a sparse image stays sparse)."""
    bs = fs.block_size
    per = max(1, _ZERO_CHUNK // bs)
    zeros = bytes(per * bs)
    b = start
    end = start + count
    while b < end:
        n = min(per, end - b)
        on_disk = fs.dev.read(b * bs, n * bs)
        if on_disk != zeros[: n * bs]:
            fs.write_data(h, b, zeros[: n * bs])
        else:
            for x in range(b, b + n):
                fs.buffers.drop(x)
        b += n


def _allocate_journal(fs: _AddingJournal, h: Any, inode: Inode, mapper: Mapper,
                      n: int) -> list[Mapped]:
    """ext2fs_fallocate of an extent-mapped journal, one extent per mapper call (each the
    first free run from the goal, at most EXT_INIT_MAX_LEN), so the leaf block the 5th
    extent needs can be put where libext2fs's extent_node_split puts it."""
    alloc = fs.alloc
    assert isinstance(alloc, _FirstFitAllocator)
    runs: list[Mapped] = []
    goal = fs.journal_goal if fs.journal_goal is not None else fs.inode_goal(inode)
    cur = 0
    moved = False
    while cur < n:
        _, k = alloc.find(goal, min(n - cur, EXT_INIT_MAX_LEN))
        got = mapper.allocate(h, inode, cur, k)
        runs += got
        cur += sum(r.length for r in got)
        goal = got[-1].physical + got[-1].length
        if not moved:
            moved = _move_first_leaf(fs, h, inode)
    return runs


def _move_first_leaf(fs: WritableFileSystem, h: Any, inode: Inode) -> bool:
    """When the in-inode root has just been split (depth 1, one index entry), move the
    new leaf block to libext2fs's choice: the first free block from one before the first
    extent (the writer put it after the extent that overflowed the root)."""
    raw = bytearray(inode.i_block)
    _magic, entries, _max, depth = struct.unpack_from("<HHHH", raw, 0)
    if depth == 0:
        return False
    if depth != 1 or entries != 1:
        return True  # a shape libext2fs would not make here: leave it as it is
    old = struct.unpack_from("<I", raw, 16)[0] | (struct.unpack_from("<H", raw, 20)[0] << 32)
    leaf = bytes(fs.read_block(old))
    first_start = struct.unpack_from("<I", leaf, 20)[0] | (struct.unpack_from("<H", leaf, 18)[0] << 32)
    fs.free_file_blocks(h, inode, old, 1, metadata=True)
    new, _ = fs.alloc.allocate_blocks(h, max(first_start - 1, 0), 1)
    buf = h.get_create_access(new)
    buf[:] = leaf
    h.dirty_metadata(new)
    struct.pack_into("<IH", raw, 16, new & 0xFFFFFFFF, new >> 32)
    inode.f["i_block"] = bytes(raw)
    fs.invalidate_map(inode.ino)
    return True


def _libext2fs_root_slots(fs: WritableFileSystem, inode: Inode) -> None:
    """libext2fs splits a full in-inode root in place and leaves the old extents 2-4 in
    the unused slots 1-3 (ignored: eh_entries is 1). tune2fs copies i_block, stale slots
    included, into s_jnl_blocks; so do we, to stay byte-identical (as mkfs does)."""
    raw = bytearray(inode.i_block)
    magic, entries, _max, depth = struct.unpack_from("<HHHH", raw, 0)
    if magic != 0xF30A or depth != 1 or entries != 1:
        return
    leaf_blk = struct.unpack_from("<I", raw, 16)[0] | (struct.unpack_from("<H", raw, 20)[0] << 32)
    leaf = fs.read_block(leaf_blk)
    if struct.unpack_from("<H", leaf, 2)[0] >= 4:
        raw[24:60] = leaf[24:60]
        inode.f["i_block"] = bytes(raw)


def _add(fs: _AddingJournal, size_mib: int | None, now: int) -> TuneResult:
    sb = fs.sb
    bs = fs.block_size
    if sb.has_compat("has_journal"):
        raise TuneError("The filesystem already has a journal.")
    free_total = sum(gd.free_blocks_count for gd in fs.groups)
    n = journal_blocks_for(fs.blocks_count, bs, free_total, size_mib)
    map_blocks = n // (bs // 4) + 4  # an upper bound on extent-tree / indirect blocks
    if n + map_blocks > free_total:
        raise TuneError(f"not enough free space for a journal of {n} blocks "
                        f"({free_total} blocks free)")
    extents = sb.has_incompat("extent")
    if extents:
        fs.journal_goal = _midpoint_journal_block(fs)

    old = fs.get_inode(JOURNAL_INO)
    fields: dict[str, Any] = {"i_mode": _stat.S_IFREG | 0o600, "i_links_count": 1,
                              "i_atime": now & 0xFFFFFFFF, "i_ctime": now & 0xFFFFFFFF,
                              "i_mtime": now & 0xFFFFFFFF}
    if fs.inode_size > _inode.GOOD_OLD_INODE_SIZE:
        fields["i_extra_isize"] = 32
        fields["i_crtime"] = now & 0xFFFFFFFF
    raw = bytes(_inode.pack_inode(fields, fs.inode_size))
    inode = Inode.parse(JOURNAL_INO, raw)
    inode.raw = raw
    if old.f["i_blocks_lo"] or any(old.i_block):
        raise TuneError(f"inode {JOURNAL_INO} (the journal inode) is in use; run e2fsck -f")
    size = n * bs
    with fs.start() as h:
        mapper = fs.mapper(inode)
        mapper.init_inode(inode)
        try:
            runs = _allocate_journal(fs, h, inode, mapper, n) if extents else \
                mapper.allocate(h, inode, 0, n)
        except NoSpace:
            raise TuneError(f"not enough free space for a journal of {n} blocks") from None
        inode.set_size(size)
        if extents:
            _libext2fs_root_slots(fs, inode)
        first = runs[0].physical
        for r in runs:
            _zero_blocks(fs, h, r.physical, r.length)
        jsb = JournalSuperblock(s_blocksize=bs, s_maxlen=n, s_first=1, s_sequence=1,
                                s_uuid=bytes(sb.f["s_uuid"]), s_nr_users=1)
        fs.write_data(h, first, jsb.pack() + bytes(bs - 1024))
        fs.write_inode(h, inode)
        fs.invalidate_map(JOURNAL_INO)
        words = list(struct.unpack("<15I", inode.i_block))
        sb.f["s_jnl_blocks"] = words + [size >> 32, size & 0xFFFFFFFF]
        sb.f["s_jnl_backup_type"] = JNL_BACKUP_BLOCKS
        sb.f["s_journal_inum"] = JOURNAL_INO
        sb.f["s_journal_dev"] = 0
        sb.f["s_journal_uuid"] = bytes(16)
        sb.f["s_feature_compat"] |= COMPAT_HAS_JOURNAL
        if sb.f["s_overhead_clusters"]:
            sb.f["s_overhead_clusters"] += n
        _finish(fs, h, now)
    return TuneResult([f"Creating journal inode: done ({n} blocks)"], journal_blocks=n)


# =======================================================================================
# The command
# =======================================================================================
def _read_superblock(image: Any) -> Superblock:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = FileSystem._on_device(image, writable=False)
    try:
        return Superblock(dict(fs.sb.f), fs.sb.raw)
    finally:
        fs.close()


def tune(image: Any, features: list[str] | tuple[str, ...] = (),
         journal_opts: str | None = None, *, now: int | None = None) -> TuneResult:
    """``tune2fs -O ... -J ...`` restricted to the journal: remove it (``^has_journal``),
    add it (``has_journal`` and/or ``-J size=MiB``), or both in that order."""
    size_mib = parse_journal_opts(journal_opts)
    if not features and size_mib is None:
        raise TuneUsageError("nothing to do: give -O [^]has_journal and/or -J size=MiB")
    sb = _read_superblock(image)
    want = _wanted_journal(sb, list(features)) if features else None
    has = sb.has_compat("has_journal")
    if sb.has_incompat("journal_dev"):
        raise TuneError("this is an external journal device, not a file system")
    messages: list[str] = []
    res = TuneResult(messages)
    if want is False and has:
        if sb.has_incompat("needs_recovery"):
            raise TuneError(_NEEDS_RECOVERY)
        if not sb.f["s_journal_inum"] and (sb.f["s_journal_dev"] or any(sb.f["s_journal_uuid"])):
            raise TuneError("the journal is on an external device; ext4kit does not support "
                            "external journals")
        r = remove_journal(image, now=now)
        messages += r.messages
        res.removed_blocks = r.removed_blocks
        has = False
    elif (want is True or size_mib is not None) and has:
        raise TuneError("The filesystem already has a journal.")
    if want is True or size_mib is not None:
        r = add_journal(image, size_mib, now=now)
        messages += r.messages
        res.journal_blocks = r.journal_blocks
    return res
