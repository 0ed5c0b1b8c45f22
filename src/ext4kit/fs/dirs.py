"""Reading directories: linear iteration over blocks (or inline data) and htree lookup.

Iteration yields live entries (inode != 0) except "." and ".." when asked. Lookups in an
indexed directory descend the dx tree by name hash and search only the target leaf; if
the index is unusable they fall back to a linear scan (the data is still there).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import ChecksumError, CorruptError
from ..ondisk import dirent as de
from ..ondisk.dxhash import dx_hash
from ..ondisk.inode import INDEX_FL, INLINE_DATA_FL, Inode, inode_csum_seed
from ..ondisk.superblock import FLAG_UNSIGNED_HASH

if TYPE_CHECKING:
    from .filesystem import FileSystem

MAX_DIR_BYTES = 1 << 32  # a directory larger than 4 GiB is treated as corrupt
_READ_CHUNK_BLOCKS = 256  # directory blocks fetched per read
_DIRENT_CACHE_BLOCKS = 1024  # parsed directory blocks kept per file system


class _HtreeUnusable(Exception):
    pass


def _is_dx_block(buf: bytes, bs: int) -> bool:
    ino, rl = struct.unpack_from("<IH", buf, 0)
    return ino == 0 and de.rec_len_from_disk(rl, bs) == bs


def dir_blocks(fs: FileSystem, inode: Inode) -> Iterator[tuple[int, bytes]]:
    """(logical block, bytes) of every allocated block of a directory, in order."""
    for lblk, _phys, buf in _dir_blocks_at(fs, inode):
        yield lblk, buf


def _dir_blocks_at(fs: FileSystem, inode: Inode) -> Iterator[tuple[int, int, bytes]]:
    """(logical block, physical block, bytes) of every initialised block of a directory."""
    bs = fs.block_size
    if inode.size > MAX_DIR_BYTES:
        raise CorruptError(f"directory inode {inode.ino} has impossible size {inode.size}")
    bmap = fs.block_map(inode)
    nblocks = (inode.size + bs - 1) // bs
    mapped = sum(max(0, min(r.length, nblocks - r.logical)) for r in bmap.runs)
    if mapped > fs.dev.size // bs + 1:
        # runs may overlap on disk; a directory can still not be larger than the image,
        # so a listing costs at most one pass over the image
        raise CorruptError(f"directory inode {inode.ino} maps {mapped} blocks, more than the image holds")
    for run in bmap.runs:
        if run.logical >= nblocks:
            break
        if run.uninit:
            continue
        n = min(run.length, nblocks - run.logical)
        # bounded reads: a huge run is read a slice at a time, not in one allocation
        for first in range(0, n, _READ_CHUNK_BLOCKS):
            k = min(_READ_CHUNK_BLOCKS, n - first)
            data = fs.read_blocks(run.physical + first, k)
            for i in range(k):
                yield run.logical + first + i, run.physical + first + i, data[i * bs : (i + 1) * bs]


def _parse_leaf(fs: FileSystem, phys: int, buf: bytes, filetype: bool) -> tuple[list[de.DirEntry], str | None]:
    """de.parse_block with a small cache keyed by physical block (validated by content)."""
    cache = fs._dirent_cache
    hit = cache.get(phys)
    if hit is not None and hit[0] == buf:
        cache.move_to_end(phys)
        return hit[1], hit[2]
    entries, err = de.parse_block(buf, fs.block_size, filetype)
    cache[phys] = (buf, entries, err)
    if len(cache) > _DIRENT_CACHE_BLOCKS:
        cache.popitem(last=False)
    return entries, err


def _verify_dx_node(fs: FileSystem, inode: Inode, lblk: int, buf: bytes, count_off: int,
                    seed: int) -> None:
    if count_off == 32:
        count_off = 24 + buf[29] if len(buf) > 29 else 32  # 24 + dx_root_info.info_length
    if count_off + 4 > len(buf):
        return
    limit, count = de.DX_COUNTLIMIT.unpack_from(buf, count_off)
    if count > limit or count_off + 8 * limit + 8 > len(buf):
        return  # no room for a dx tail: structural problems are reported by lookups
    want = de.dx_node_checksum(seed, buf, count_off, count, limit)
    if want != de.stored_dx_checksum(buf, count_off, limit):
        fs.report_checksum(ChecksumError(
            f"directory inode {inode.ino} htree block {lblk}: checksum mismatch"))


def iter_entries(fs: FileSystem, inode: Inode, *, with_dots: bool = False) -> Iterator[de.DirEntry]:
    """Live entries of a directory (bounded by its size)."""
    filetype = fs.sb.has_incompat("filetype")
    if inode.flags & INLINE_DATA_FL:
        yield from _inline_entries(fs, inode, with_dots)
        return
    bs = fs.block_size
    seed = None
    if fs.sb.metadata_csum:
        seed = inode_csum_seed(fs.csum_seed, inode.ino, inode.generation)
    indexed = bool(inode.flags & INDEX_FL) and fs.sb.has_compat("dir_index")
    for lblk, phys, buf in _dir_blocks_at(fs, inode):
        if indexed and lblk > 0 and _is_dx_block(buf, bs):
            if seed is not None:
                _verify_dx_node(fs, inode, lblk, buf, 8, seed)
            continue  # interior dx node: no entries
        if indexed and lblk == 0:
            # the dx root: "." and ".." then the index; its checksum is the dx tail (the
            # kernel may leave a stale leaf-tail pattern inside the index area)
            if seed is not None:
                _verify_dx_node(fs, inode, lblk, buf, 32, seed)
        elif seed is not None and de.has_tail(buf):
            if de.leaf_checksum(seed, buf) != de.stored_leaf_checksum(buf):
                fs.report_checksum(ChecksumError(
                    f"directory inode {inode.ino} block {lblk}: checksum mismatch"))
        entries, err = _parse_leaf(fs, phys, buf, filetype)
        for e in entries:
            if e.inode == 0:
                continue
            if not with_dots and e.name in (b".", b".."):
                continue
            if e.rec_len == de.TAIL_SIZE and e.file_type == de.TAIL_FT:
                continue
            yield e
        if err:
            fs.report_corruption(CorruptError(f"directory inode {inode.ino} block {lblk}: {err}"))


def _inline_entries(fs: FileSystem, inode: Inode, with_dots: bool) -> Iterator[de.DirEntry]:
    data = fs.inline_data(inode)
    parent = struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else 0
    if with_dots:
        yield de.DirEntry(0, inode.ino, 0, b".", 2)
        yield de.DirEntry(0, parent, 0, b"..", 2)
    filetype = fs.sb.has_incompat("filetype")
    # i_block part (after the 4-byte parent) and the system.data part are separate areas.
    areas = [data[4:60]]
    if len(data) > 60:
        areas.append(data[60:])
    for area in areas:
        entries, err = de.parse_block(area, len(area) if len(area) else 4, filetype)
        for e in entries:
            if e.inode:
                yield e
        if err:
            fs.report_corruption(CorruptError(f"inline directory inode {inode.ino}: {err}"))


def lookup(fs: FileSystem, inode: Inode, name: bytes) -> de.DirEntry | None:
    """Find ``name`` in directory ``inode``; uses the htree when the directory has one."""
    if name == b".":
        return de.DirEntry(0, inode.ino, 0, b".", 2)
    indexed = (
        bool(inode.flags & INDEX_FL)
        and fs.sb.has_compat("dir_index")
        and not inode.flags & INLINE_DATA_FL
    )
    if indexed:
        try:
            return _htree_lookup(fs, inode, name)
        except _HtreeUnusable as exc:
            fs.report_corruption(CorruptError(f"directory inode {inode.ino}: htree unusable ({exc}); scanning linearly"))
    if not inode.flags & INLINE_DATA_FL:
        # linear: a substring test per block, entries decoded only around a candidate
        filetype = fs.sb.has_incompat("filetype")
        bs = fs.block_size
        damaged = False
        for _, _, buf in _dir_blocks_at(fs, inode):
            hit, err = de.find_name(buf, name, bs, filetype)
            if hit is not None:
                return hit
            if err:
                damaged = True
                break
        if not damaged:
            return None
    for e in iter_entries(fs, inode, with_dots=True):  # inline, or damaged: report it
        if e.name == name:
            return e
    return None


def _htree_lookup(fs: FileSystem, inode: Inode, name: bytes) -> de.DirEntry | None:
    bs = fs.block_size
    bmap = fs.block_map(inode)
    nblocks = (inode.size + bs - 1) // bs

    def phys_of(lblk: int) -> int:
        if lblk >= nblocks:
            raise _HtreeUnusable(f"index points past the end (block {lblk})")
        phys = bmap.lookup(lblk)
        if phys is None:
            raise _HtreeUnusable(f"index points to a hole (block {lblk})")
        return phys

    root = fs.read_block(phys_of(0))
    if len(root) < 40:
        raise _HtreeUnusable("root block too small")
    _, hash_version, info_len, levels, _ = de.DX_ROOT_INFO.unpack_from(root, 24)
    if name == b"..":
        ino = struct.unpack_from("<I", root, 12)[0]
        return de.DirEntry(12, ino, 0, b"..", 2)
    if info_len != 8:
        raise _HtreeUnusable(f"bad dx_root info length {info_len}")
    max_levels = 3 if fs.sb.has_incompat("large_dir") else 2
    if levels >= max_levels:
        raise _HtreeUnusable(f"too many index levels ({levels})")
    if hash_version <= de.DX_HASH_TEA and fs.sb.f["s_flags"] & FLAG_UNSIGNED_HASH:
        hash_version += 3
    if hash_version > 5:
        raise _HtreeUnusable(f"unsupported hash version {hash_version}")
    target, _ = dx_hash(name, hash_version, fs.sb.f["s_hash_seed"])

    node = root
    count_off = 32
    unpack_entry = de.DX_ENTRY.unpack_from
    for level in range(levels + 1):
        limit, count = de.DX_COUNTLIMIT.unpack_from(node, count_off)
        if count == 0 or count > limit or count_off + 8 * limit > bs:
            raise _HtreeUnusable(f"bad dx count/limit {count}/{limit}")
        # binary search: the last entry whose hash <= target (entry 0 has hash 0)
        lo, hi = 1, count - 1
        pos = 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if unpack_entry(node, count_off + 8 * mid)[0] > target:
                hi = mid - 1
            else:
                pos = mid
                lo = mid + 1
        if level < levels:
            node = fs.read_block(phys_of(unpack_entry(node, count_off + 8 * pos)[1] & 0x0FFFFFFF))
            count_off = 8

    filetype = fs.sb.has_incompat("filetype")
    seed = inode_csum_seed(fs.csum_seed, inode.ino, inode.generation) if fs.sb.metadata_csum else None
    guard = 0
    while True:
        guard += 1
        if guard > nblocks + 1:
            raise _HtreeUnusable("collision chain longer than the directory")
        lblk = unpack_entry(node, count_off + 8 * pos)[1] & 0x0FFFFFFF
        phys = phys_of(lblk)
        leaf = fs.read_block(phys)
        if seed is not None and de.has_tail(leaf):
            if de.leaf_checksum(seed, leaf) != de.stored_leaf_checksum(leaf):
                fs.report_checksum(ChecksumError(
                    f"directory inode {inode.ino} leaf {lblk}: checksum mismatch"))
        hit, err = de.find_name(leaf, name, bs, filetype)
        if hit is not None:
            return hit
        if err:
            raise _HtreeUnusable(err)
        # hash collisions may continue in the next leaf (low bit set on its hash)
        if pos + 1 < count:
            nh = unpack_entry(node, count_off + 8 * (pos + 1))[0]
            if nh & 1 and (nh & ~1) == target:
                pos += 1
                continue
        return None
