"""Writing directories: linear blocks and htree (dx) indexes, as the Linux kernel lays them out.

The operations layer (mkdir/unlink/rename/link) calls only the functions in ``__all__``.
Names are ``bytes``; ``ft`` is the directory-entry file type code (1..7).

Conventions:
- Directory blocks are metadata: every change goes through the handle
  (get_write_access / get_create_access for appended blocks + dirty_metadata), with the
  leaf tail checksum (or the dx tail checksum) set when the file system has metadata_csum.
- Changes to the directory inode (i_size, INDEX_FL, the map the mapper changes, an inline
  directory converted to a block) are made in ``dir_inode.f`` only; the caller writes the
  inode (``fs.write_inode(h, dir_inode)``) after the function returns. Callers should
  write it unconditionally.
- Layouts follow fs/ext4/namei.c: first-fit insertion in a block (splitting the slack of
  a live entry), deletion merges into the previous entry of the block, a one-block
  directory with dir_index becomes an htree when it overflows (make_indexed_dir), full
  leaves are split by hash (do_split, with the collision "continued" bit), full index
  nodes are split or the tree grows a level (ext4_dx_add_entry). Deletions never
  rebalance or shrink the tree.

Hot path: a per-file-system cache of each leaf's free slots, validated by comparing a
snapshot of the block (a memcmp), so an insertion parses no block it has seen before, and
an htree insertion touches only the index path and one leaf.
"""

from __future__ import annotations

import errno
import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..errors import CorruptError, UnsupportedFeatureError
from ..ondisk import dirent as de
from ..ondisk.dxhash import dx_hash
from ..ondisk.inode import CASEFOLD_FL, ENCRYPT_FL, INDEX_FL, INLINE_DATA_FL, Inode
from ..ondisk.superblock import FLAG_UNSIGNED_HASH

if TYPE_CHECKING:
    from ..jbd2 import Handle
    from .writer import WritableFileSystem

__all__ = ["init_dir", "add_entry", "remove_entry", "replace_entry", "set_dotdot", "is_empty"]

FT_DIR = 2
_HDR = struct.Struct("<IHBB")  # inode, rec_len, name_len, file_type
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_MIN_SLOT = 12  # the smallest entry (a 1..4 byte name)
_LEAF_CACHE_BLOCKS = 4096
_HASH_CACHE_MAX = 1 << 17


def _rec_size(name_len: int) -> int:
    return (name_len + 11) & ~3


# ------------------------------------------------------------------ context
class _Dir:
    """One directory inode being changed: format parameters and block access."""

    __slots__ = ("fs", "inode", "bs", "csum", "tail", "seed", "filetype", "indexed", "big")

    def __init__(self, fs: WritableFileSystem, inode: Inode):
        if inode.flags & (ENCRYPT_FL | CASEFOLD_FL):
            raise UnsupportedFeatureError(
                f"directory inode {inode.ino}: encrypted/casefolded directories are not writable")
        self.fs = fs
        self.inode = inode
        self.bs = fs.block_size
        self.csum = bool(fs.sb.metadata_csum)
        self.tail = de.TAIL_SIZE if self.csum else 0
        self.seed = fs.inode_seed(inode) if self.csum else 0
        self.filetype = fs.sb.has_incompat("filetype")
        self.indexed = bool(inode.flags & INDEX_FL) and fs.sb.has_compat("dir_index")
        self.big = self.bs >= 65536

    # rec_len encoding (only differs for 64 KiB blocks)
    def rl_to_disk(self, rl: int) -> int:
        if not self.big or rl < 65536:
            return rl
        if rl == self.bs:
            return 65535 if self.bs == 65536 else 0
        return (rl & 65532) | ((rl >> 16) & 3)

    def rl_from_disk(self, v: int) -> int:
        return de.rec_len_from_disk(v, self.bs) if self.big else v

    @property
    def nblocks(self) -> int:
        return self.inode.size // self.bs

    def phys(self, lblk: int) -> int:
        if lblk >= self.nblocks:
            raise CorruptError(f"directory inode {self.inode.ino}: block {lblk} past i_size")
        p = self.fs.block_map(self.inode).lookup(lblk)
        if p is None:
            raise CorruptError(f"directory inode {self.inode.ino}: hole at block {lblk}")
        return p

    def read(self, phys: int) -> bytes | bytearray:
        """The current contents (running transaction first); do not modify."""
        if phys <= 0 or phys >= self.fs.blocks_count:
            raise CorruptError(f"directory inode {self.inode.ino}: block {phys} out of range")
        return self.fs.buffers.read(phys)

    def append(self, h: Handle) -> tuple[int, int, bytearray]:
        """A new zeroed block at the end of the directory: (lblk, phys, buffer)."""
        lblk = self.nblocks
        if (lblk + 1) * self.bs > 0xFFFFFFFF and not self.fs.sb.has_incompat("large_dir"):
            raise OSError(errno.ENOSPC, f"directory inode {self.inode.ino} would pass 4 GiB")
        runs = self.fs.mapper(self.inode).allocate(h, self.inode, lblk, 1)
        run = next((r for r in runs if r.logical <= lblk < r.logical + r.length), None)
        if run is None:
            raise CorruptError(f"directory inode {self.inode.ino}: mapper did not map block {lblk}")
        phys = run.physical + (lblk - run.logical)
        buf = h.get_create_access(phys)
        self.inode.set_size((lblk + 1) * self.bs)
        return lblk, phys, buf

    # --- checksums
    def leaf_csum(self, buf: bytearray) -> None:
        if self.csum and de.has_tail(memoryview(buf)):
            de.set_leaf_checksum(buf, self.seed)

    def dx_csum(self, buf: bytearray, co: int) -> None:
        if not self.csum:
            return
        limit, count = de.DX_COUNTLIMIT.unpack_from(buf, co)
        t = co + 8 * limit
        if t + 8 > len(buf):
            return  # no room for a dx tail (e2fsck -D fixes such a directory)
        buf[t : t + 4] = b"\0\0\0\0"
        _U32.pack_into(buf, t + 4, de.dx_node_checksum(self.seed, memoryview(buf), co, count, limit))

    def root_limit(self) -> int:
        return (self.bs - 32 - (8 if self.csum else 0)) // 8

    def node_limit(self) -> int:
        return (self.bs - 8 - (8 if self.csum else 0)) // 8

    # --- leaf blocks
    def leaf_end(self, buf: bytes | bytearray) -> int:
        if self.csum and de.has_tail(memoryview(buf)):
            return self.bs - de.TAIL_SIZE
        return self.bs

    def scan(self, buf: bytes | bytearray, lblk: int) -> list[tuple[int, int, int, int, int]]:
        """(offset, inode, rec_len, name_len, file_type) of every record of a leaf block."""
        end = self.leaf_end(buf)
        out = []
        off = 0
        unpack = _HDR.unpack_from
        ft_ok = self.filetype
        while off < end:
            if off + 8 > end:
                raise CorruptError(f"directory inode {self.inode.ino} block {lblk}: entry overruns the block")
            ino, rl, nl, ft = unpack(buf, off)
            if self.big:
                rl = self.rl_from_disk(rl)
            if rl < 8 or rl & 3 or off + rl > end or nl + 8 > rl:
                raise CorruptError(f"directory inode {self.inode.ino} block {lblk}: "
                                   f"bad entry at offset {off} (rec_len {rl}, name_len {nl})")
            out.append((off, ino, rl, nl, ft if ft_ok else 0))
            off += rl
        return out

    def put(self, buf: bytearray, off: int, ino: int, rl: int, name: bytes, ft: int) -> None:
        _HDR.pack_into(buf, off, ino, self.rl_to_disk(rl), len(name), ft if self.filetype else 0)
        buf[off + 8 : off + 8 + len(name)] = name

    def pack_leaf(self, buf: bytearray, entries: list[tuple[int, bytes, int]]) -> None:
        """Fill ``buf`` with entries in order (the last takes the rest), tail and checksum."""
        end = self.bs - self.tail
        buf[:] = bytes(self.bs)
        off = 0
        if not entries:
            _HDR.pack_into(buf, 0, 0, self.rl_to_disk(end), 0, 0)
        for i, (ino, name, ft) in enumerate(entries):
            rl = end - off if i == len(entries) - 1 else _rec_size(len(name))
            self.put(buf, off, ino, rl, name, ft)
            off += rl
        if off > end:
            raise CorruptError("directory entries do not fit in one block")
        if self.tail:
            buf[end:] = de.DIRENT.pack(0, de.TAIL_SIZE, 0, de.TAIL_FT) + b"\0\0\0\0"
            de.set_leaf_checksum(buf, self.seed)

    # --- hashing
    def hash_version(self, stored: int) -> int:
        hv = stored
        if hv <= de.DX_HASH_TEA and self.fs.sb.f["s_flags"] & FLAG_UNSIGNED_HASH:
            hv += 3
        if hv > de.DX_HASH_TEA_UNSIGNED:
            raise UnsupportedFeatureError(f"directory hash version {stored} is not supported")
        return hv

    def hash(self, name: bytes, hv: int) -> int:
        cache = _cache(self.fs, "_dirwrite_hash", dict)
        key = (hv, name)
        v = cache.get(key)
        if v is None:
            if len(cache) >= _HASH_CACHE_MAX:
                cache.clear()
            v = cache[key] = dx_hash(name, hv, self.fs.sb.f["s_hash_seed"])[0]
        return v


def _cache(fs: Any, attr: str, factory: Any) -> Any:
    c = fs.__dict__.get(attr)
    if c is None:
        c = fs.__dict__[attr] = factory()
    return c


# ------------------------------------------------------------------ leaf insertion
def _free_slots(d: _Dir, buf: bytes | bytearray, lblk: int) -> list[list[int]]:
    """[offset, room] of records that can take a new entry, in block order."""
    out = []
    for off, ino, rl, nl, _ft in d.scan(buf, lblk):
        room = rl - _rec_size(nl) if ino else rl
        if room >= _MIN_SLOT:
            out.append([off, room])
    return out


def _leaf_insert(d: _Dir, h: Handle, lblk: int, phys: int, name: bytes, ino: int, ft: int) -> bool:
    """Put the entry in the first record of the block with room (kernel first-fit);
    False if the block is full."""
    need = _rec_size(len(name))
    cache = _cache(d.fs, "_dirwrite_leaves", OrderedDict)
    buf = d.read(phys)
    hit = cache.get(phys)
    if hit is not None and hit[0] == buf:
        slots = hit[1]
        cache.move_to_end(phys)
    else:
        slots = _free_slots(d, buf, lblk)
        cache[phys] = (bytes(buf), slots)
        if len(cache) > _LEAF_CACHE_BLOCKS:
            cache.popitem(last=False)
    i = 0
    n = len(slots)
    while i < n and slots[i][1] < need:
        i += 1
    if i == n:
        return False
    off = slots[i][0]
    w = h.get_write_access(phys)
    old_ino, rl, nl, _ = _HDR.unpack_from(w, off)
    rl = d.rl_from_disk(rl)
    if old_ino:
        used = _rec_size(nl)
        _U16.pack_into(w, off + 4, d.rl_to_disk(used))
        off += used
        rl -= used
    else:
        w[off + 8 : off + rl] = bytes(rl - 8)  # clear a stale name
    d.put(w, off, ino, rl, name, ft)
    room = rl - need
    if room >= _MIN_SLOT:
        slots[i] = [off, room]
    else:
        del slots[i]
    d.leaf_csum(w)
    h.dirty_metadata(phys)
    cache[phys] = (bytes(w), slots)
    return True


def _forget_leaf(fs: Any, phys: int) -> None:
    c = fs.__dict__.get("_dirwrite_leaves")
    if c is not None:
        c.pop(phys, None)


# ------------------------------------------------------------------ public API
def init_dir(fs: WritableFileSystem, h: Handle, dir_inode: Inode, parent_ino: int) -> None:
    """Give a new (empty, unmapped) directory inode its first block with "." and "..".
    Sets i_size (and the map via the mapper) in ``dir_inode.f``; the caller writes it."""
    d = _Dir(fs, dir_inode)
    if dir_inode.size:
        raise ValueError(f"inode {dir_inode.ino} already has a size")
    _lblk, _phys, buf = d.append(h)
    d.pack_leaf(buf, [(dir_inode.ino, b".", FT_DIR), (parent_ino, b"..", FT_DIR)])
    h.dirty_metadata(_phys)


def add_entry(fs: WritableFileSystem, h: Handle, dir_inode: Inode, name: bytes, ino: int,
              ft: int) -> None:
    """Link ``name`` -> ``ino`` (the caller checked it is valid and absent)."""
    if not 1 <= len(name) <= 255 or b"/" in name or b"\0" in name:
        raise ValueError(f"invalid directory entry name {name!r}")
    if dir_inode.flags & INLINE_DATA_FL:
        _uninline(fs, h, dir_inode)
    d = _Dir(fs, dir_inode)
    if d.indexed:
        _dx_add(d, h, name, ino, ft)
        return
    n = d.nblocks
    if n == 0:
        raise CorruptError(f"directory inode {dir_inode.ino} has no blocks")
    for lblk in range(n):
        if _leaf_insert(d, h, lblk, d.phys(lblk), name, ino, ft):
            return
    if n == 1 and fs.sb.has_compat("dir_index"):
        _make_indexed(d, h, name, ino, ft)
        return
    _lblk, phys, buf = d.append(h)
    d.pack_leaf(buf, [(ino, name, ft)])
    h.dirty_metadata(phys)


def remove_entry(fs: WritableFileSystem, h: Handle, dir_inode: Inode, name: bytes) -> de.DirEntry:
    """Unlink ``name``; returns the removed entry (offset within its block)."""
    if name in (b".", b".."):
        raise ValueError("cannot remove . or ..")
    if dir_inode.flags & INLINE_DATA_FL:
        _uninline(fs, h, dir_inode)
    d = _Dir(fs, dir_inode)
    lblk, phys, ents, idx = _find(d, name)
    off, ino, rl, nl, ft = ents[idx]
    w = h.get_write_access(phys)
    if idx > 0:
        poff, _pino, prl, _pnl, _pft = ents[idx - 1]
        _U16.pack_into(w, poff + 4, d.rl_to_disk(prl + rl))
        w[off : off + rl] = bytes(rl)
    else:
        _U32.pack_into(w, off, 0)
        w[off + 6 : off + rl] = bytes(rl - 6)
    d.leaf_csum(w)
    h.dirty_metadata(phys)
    _forget_leaf(fs, phys)
    return de.DirEntry(off, ino, rl, name, ft)


def replace_entry(fs: WritableFileSystem, h: Handle, dir_inode: Inode, name: bytes, new_ino: int,
                  ft: int) -> int:
    """Point the existing entry ``name`` at ``new_ino`` (rename over it); returns the old inode."""
    if dir_inode.flags & INLINE_DATA_FL:
        _uninline(fs, h, dir_inode)
    d = _Dir(fs, dir_inode)
    _lblk, phys, ents, idx = _find(d, name)
    off, old, _rl, _nl, _ft = ents[idx]
    w = h.get_write_access(phys)
    _U32.pack_into(w, off, new_ino)
    if d.filetype:
        w[off + 7] = ft
    d.leaf_csum(w)
    h.dirty_metadata(phys)
    return old


def set_dotdot(fs: WritableFileSystem, h: Handle, dir_inode: Inode, parent_ino: int) -> None:
    """Point ".." at ``parent_ino`` (the directory moved)."""
    if dir_inode.flags & INLINE_DATA_FL:
        blk = bytearray(dir_inode.i_block)
        _U32.pack_into(blk, 0, parent_ino)  # an inline directory keeps its parent first
        dir_inode.f["i_block"] = bytes(blk)
        return
    d = _Dir(fs, dir_inode)
    phys = d.phys(0)
    buf = d.read(phys)
    _ino, rl, _nl, _ft = _HDR.unpack_from(buf, 0)
    off = d.rl_from_disk(rl)
    if off + 12 > d.bs or buf[off + 6] != 2 or bytes(buf[off + 8 : off + 10]) != b"..":
        raise CorruptError(f"directory inode {dir_inode.ino}: no '..' entry in block 0")
    w = h.get_write_access(phys)
    _U32.pack_into(w, off, parent_ino)
    if d.indexed:
        d.dx_csum(w, 24 + w[29])
    else:
        d.leaf_csum(w)
    h.dirty_metadata(phys)
    _forget_leaf(fs, phys)


def is_empty(fs: WritableFileSystem, dir_inode: Inode) -> bool:
    """True if the directory holds nothing but "." and ".."."""
    from .dirs import iter_entries

    for _e in iter_entries(fs, dir_inode):
        return False
    return True


# ------------------------------------------------------------------ lookup for changes
def _find_in_leaf(d: _Dir, buf: bytes | bytearray, lblk: int, name: bytes
                  ) -> tuple[list[tuple[int, int, int, int, int]], int] | None:
    ents = d.scan(buf, lblk)
    nl = len(name)
    for i, (off, ino, _rl, enl, _ft) in enumerate(ents):
        if ino and enl == nl and buf[off + 8 : off + 8 + nl] == name:
            return ents, i
    return None


def _find(d: _Dir, name: bytes) -> tuple[int, int, list, int]:
    """(lblk, phys, records of the block, index of the entry) or FileNotFoundError."""
    if d.indexed:
        frames, leaf, target = _probe(d, name)
        while True:
            phys = d.phys(leaf)
            got = _find_in_leaf(d, d.read(phys), leaf, name)
            if got is not None:
                return leaf, phys, got[0], got[1]
            nxt = _next_leaf(d, frames, target)
            if nxt is None:
                break
            leaf = nxt
    else:
        for lblk in range(d.nblocks):
            phys = d.phys(lblk)
            got = _find_in_leaf(d, d.read(phys), lblk, name)
            if got is not None:
                return lblk, phys, got[0], got[1]
    raise FileNotFoundError(errno.ENOENT, "no such directory entry", name.decode("utf-8", "replace"))


# ------------------------------------------------------------------ htree
class _Frame:
    """One index block on the path to a leaf: entries at ``co`` (count/limit first)."""

    __slots__ = ("lblk", "phys", "co", "pos", "count", "limit")

    def __init__(self, lblk: int, phys: int, co: int, pos: int, count: int, limit: int):
        self.lblk, self.phys, self.co, self.pos, self.count, self.limit = lblk, phys, co, pos, count, limit


def _max_levels(d: _Dir) -> int:
    return 3 if d.fs.sb.has_incompat("large_dir") else 2


def _read_node(d: _Dir, lblk: int, co: int, want_limit: int) -> tuple[int, bytes | bytearray, int, int]:
    phys = d.phys(lblk)
    buf = d.read(phys)
    limit, count = de.DX_COUNTLIMIT.unpack_from(buf, co)
    if co == 8:
        ino, rl = struct.unpack_from("<IH", buf, 0)
        if ino != 0 or d.rl_from_disk(rl) != d.bs:
            raise CorruptError(f"directory inode {d.inode.ino}: block {lblk} is not an htree node")
    if limit != want_limit or count == 0 or count > limit:
        raise CorruptError(f"directory inode {d.inode.ino}: htree block {lblk} has bad "
                           f"count/limit {count}/{limit} (limit should be {want_limit})")
    return phys, buf, count, limit


def _probe(d: _Dir, name: bytes) -> tuple[list[_Frame], int, int]:
    """Descend the index by the name's hash: (frames root..bottom, leaf lblk, hash)."""
    phys, root, count, limit = _read_node(d, 0, 32, d.root_limit())
    reserved, hv, info_len, levels, _flags = de.DX_ROOT_INFO.unpack_from(root, 24)
    if info_len != 8 or levels >= _max_levels(d):
        raise CorruptError(f"directory inode {d.inode.ino}: bad dx_root "
                           f"(info length {info_len}, levels {levels})")
    target = d.hash(name, d.hash_version(hv))
    frames: list[_Frame] = []
    buf, lblk, co = root, 0, 32
    unpack = de.DX_ENTRY.unpack_from
    for level in range(levels + 1):
        lo, hi, pos = 1, count - 1, 0
        while lo <= hi:
            mid = (lo + hi) >> 1
            if unpack(buf, co + 8 * mid)[0] > target:
                hi = mid - 1
            else:
                pos = mid
                lo = mid + 1
        frames.append(_Frame(lblk, phys, co, pos, count, limit))
        child = unpack(buf, co + 8 * pos)[1] & 0x0FFFFFFF
        if level == levels:
            return frames, child, target
        lblk, co = child, 8
        phys, buf, count, limit = _read_node(d, lblk, 8, d.node_limit())
    raise AssertionError("unreachable")


def _next_leaf(d: _Dir, frames: list[_Frame], target: int) -> int | None:
    """The next leaf when hash collisions may continue there (ext4_htree_next_block)."""
    k = len(frames) - 1
    while True:
        f = frames[k]
        f.pos += 1
        if f.pos < f.count:
            break
        if k == 0:
            return None
        k -= 1
    buf = d.read(frames[k].phys)
    bhash, child = de.DX_ENTRY.unpack_from(buf, frames[k].co + 8 * frames[k].pos)
    if (bhash & ~1) != target:
        return None
    for j in range(k + 1, len(frames)):
        lblk = child & 0x0FFFFFFF
        phys, buf, count, limit = _read_node(d, lblk, 8, d.node_limit())
        frames[j] = _Frame(lblk, phys, 8, 0, count, limit)
        child = de.DX_ENTRY.unpack_from(buf, 8)[1]
    return child & 0x0FFFFFFF


def _dx_insert(d: _Dir, h: Handle, f: _Frame, hash_: int, lblk: int) -> None:
    """Insert (hash, block) after position ``f.pos`` of index block ``f``."""
    w = h.get_write_access(f.phys)
    co = f.co
    limit, count = de.DX_COUNTLIMIT.unpack_from(w, co)
    if count >= limit:
        raise CorruptError(f"directory inode {d.inode.ino}: index block {f.lblk} overflow")
    at = co + 8 * (f.pos + 1)
    end = co + 8 * count
    w[at + 8 : end + 8] = w[at:end]
    de.DX_ENTRY.pack_into(w, at, hash_, lblk)
    de.DX_COUNTLIMIT.pack_into(w, co, limit, count + 1)
    f.count = count + 1
    d.dx_csum(w, co)
    h.dirty_metadata(f.phys)


def _split_leaf(d: _Dir, h: Handle, frame: _Frame, lblk: int, phys: int, new_hash: int,
                hv: int, records: list[tuple[int, bytes, int]] | None = None) -> tuple[int, int]:
    """do_split: move the upper half (by hash) of a full leaf to a new block and index it.
    Returns (lblk, phys) of the half that takes ``new_hash``. ``records`` (inode, name, ft)
    replaces reading the leaf (make_indexed_dir passes block 0's entries)."""
    if records is None:
        buf = d.read(phys)
        records = [(ino, bytes(buf[off + 8 : off + 8 + nl]), ft)
                   for off, ino, _rl, nl, ft in d.scan(buf, lblk) if ino and nl]
    count = len(records)
    if count < 2:
        raise OSError(errno.ENOSPC, "directory leaf cannot be split")
    hashes = [d.hash(r[1], hv) for r in records]
    order = sorted(range(count), key=hashes.__getitem__)
    half = d.bs // 2
    size = move = 0
    i = count - 1
    while i >= 0:
        sz = _rec_size(len(records[order[i]][1]))
        if size + sz // 2 > half:
            break
        size += sz
        move += 1
        i -= 1
    split = count - move if i > 0 else count // 2
    hash2 = hashes[order[split]]
    continued = 1 if hash2 == hashes[order[split - 1]] else 0
    upper = order[split:]
    upper_set = set(upper)
    lower = [records[j] for j in range(count) if j not in upper_set]  # block order (pack)
    new_lblk, new_phys, nbuf = d.append(h)
    d.pack_leaf(nbuf, [records[j] for j in upper])  # hash order (dx_move_dirents)
    h.dirty_metadata(new_phys)
    w = h.get_write_access(phys)
    d.pack_leaf(w, lower)
    h.dirty_metadata(phys)
    _forget_leaf(d.fs, phys)
    _dx_insert(d, h, frame, hash2 + continued, new_lblk)
    if new_hash >= hash2:
        return new_lblk, new_phys
    return lblk, phys


def _make_indexed(d: _Dir, h: Handle, name: bytes, ino: int, ft: int) -> None:
    """make_indexed_dir: block 0 becomes the dx root; its entries go to two hashed leaves."""
    phys0 = d.phys(0)
    buf0 = d.read(phys0)
    ents = d.scan(buf0, 0)
    if (len(ents) < 2 or ents[0][0] != 0 or ents[0][2] != 12 or ents[0][3] != 1
            or ents[1][3] != 2 or bytes(buf0[20:22]) != b".."):
        raise CorruptError(f"directory inode {d.inode.ino}: block 0 does not start with . and ..")
    records = [(e_ino, bytes(buf0[off + 8 : off + 8 + nl]), e_ft)
               for off, e_ino, _rl, nl, e_ft in ents[2:] if e_ino and nl]
    stored_hv = d.fs.sb.f["s_def_hash_version"]
    hv = d.hash_version(stored_hv)
    # block 1 takes the old entries (as the kernel moves them), then do_split halves it
    lblk1, phys1, b1 = d.append(h)
    d.pack_leaf(b1, records)
    h.dirty_metadata(phys1)
    w = h.get_write_access(phys0)
    dot = bytes(w[0:12])
    w[:] = bytes(d.bs)
    w[0:12] = dot
    _HDR.pack_into(w, 12, ents[1][1], d.rl_to_disk(d.bs - 12), 2, ents[1][4])
    w[20:22] = b".."
    de.DX_ROOT_INFO.pack_into(w, 24, 0, stored_hv, 8, 0, 0)
    de.DX_COUNTLIMIT.pack_into(w, 32, d.root_limit(), 1)
    _U32.pack_into(w, 36, lblk1)
    d.dx_csum(w, 32)
    h.dirty_metadata(phys0)
    _forget_leaf(d.fs, phys0)
    d.inode.set_flag(INDEX_FL)
    d.indexed = True
    frame = _Frame(0, phys0, 32, 0, 1, d.root_limit())
    new_hash = d.hash(name, hv)
    tl, tp = _split_leaf(d, h, frame, lblk1, phys1, new_hash, hv, records)
    if not _leaf_insert(d, h, tl, tp, name, ino, ft):
        raise OSError(errno.ENOSPC, "no room in a freshly split directory leaf")


def _dx_add(d: _Dir, h: Handle, name: bytes, ino: int, ft: int) -> None:
    """ext4_dx_add_entry."""
    for _attempt in range(8):
        frames, leaf, target = _probe(d, name)
        phys = d.phys(leaf)
        if _leaf_insert(d, h, leaf, phys, name, ino, ft):
            return
        bottom = frames[-1]
        if bottom.count < bottom.limit:
            root = d.read(frames[0].phys)
            hv = d.hash_version(root[28])
            tl, tp = _split_leaf(d, h, bottom, leaf, phys, target, hv)
            if not _leaf_insert(d, h, tl, tp, name, ino, ft):
                raise OSError(errno.ENOSPC, "no room in a freshly split directory leaf")
            return
        _split_index(d, h, frames)
    raise CorruptError(f"directory inode {d.inode.ino}: htree insertion does not converge")


def _split_index(d: _Dir, h: Handle, frames: list[_Frame]) -> None:
    """The bottom index block is full: split the lowest ancestor-with-room's child, or grow
    the tree by one level when every index block up to the root is full."""
    k = len(frames) - 1
    add_level = True
    while k > 0:
        if frames[k - 1].count < frames[k - 1].limit:
            add_level = False
            break
        k -= 1
    if add_level and len(frames) >= _max_levels(d):
        raise OSError(errno.ENOSPC, f"directory inode {d.inode.ino}: index full "
                      f"({len(frames)} levels{'' if d.fs.sb.has_incompat('large_dir') else ', no large_dir'})")
    node = frames[k]
    new_lblk, new_phys, nb = d.append(h)
    _HDR.pack_into(nb, 0, 0, d.rl_to_disk(d.bs), 0, 0)
    w = h.get_write_access(node.phys)
    co = node.co
    count = node.count
    if not add_level:
        i1 = count // 2
        hash2 = _U32.unpack_from(w, co + 8 * i1)[0]
        nb[8 : 8 + 8 * (count - i1)] = w[co + 8 * i1 : co + 8 * count]
        de.DX_COUNTLIMIT.pack_into(nb, 8, d.node_limit(), count - i1)
        w[co + 8 * i1 : co + 8 * count] = bytes(8 * (count - i1))
        de.DX_COUNTLIMIT.pack_into(w, co, node.limit, i1)
        d.dx_csum(w, co)
        d.dx_csum(nb, 8)
        h.dirty_metadata(node.phys)
        h.dirty_metadata(new_phys)
        _dx_insert(d, h, frames[k - 1], hash2, new_lblk)
    else:
        nb[8 : 8 + 8 * count] = w[co : co + 8 * count]
        de.DX_COUNTLIMIT.pack_into(nb, 8, d.node_limit(), count)
        w[co + 8 : co + 8 * count] = bytes(8 * (count - 1))
        de.DX_COUNTLIMIT.pack_into(w, co, node.limit, 1)
        _U32.pack_into(w, co + 4, new_lblk)
        w[30] += 1  # dx_root_info.indirect_levels
        d.dx_csum(w, co)
        d.dx_csum(nb, 8)
        h.dirty_metadata(node.phys)
        h.dirty_metadata(new_phys)


# ------------------------------------------------------------------ inline directories
def _uninline(fs: WritableFileSystem, h: Handle, inode: Inode) -> None:
    """Move an inline directory's entries into a block (ext4_convert_inline_data).
    inline.take_inline_dir empties the inode (system.data, flag, i_block, size 0)."""
    from .inline import take_inline_dir

    parent, records = take_inline_dir(fs, h, inode)
    d = _Dir(fs, inode)
    _lblk, phys, buf = d.append(h)
    d.pack_leaf(buf, [(inode.ino, b".", FT_DIR), (parent, b"..", FT_DIR)] + records)
    h.dirty_metadata(phys)
