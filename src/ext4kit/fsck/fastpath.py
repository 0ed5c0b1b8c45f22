"""Pass 1's array path: the common inode — a regular file in use whose whole block map is
one initialised extent in the inode (or none), with no xattrs and nothing unusual — is
checked for a whole inode-table chunk at once with numpy (checksums included); every
other inode goes through the per-inode checks of pass 1.

What the array path verifies is exactly what pass 1 would find nothing to report on for
such an inode: checksum, dtime, flags, extra_isize, the extent header and its one extent
(start inside the file system, length, not past the size), i_size against the mapped
blocks, i_blocks, the unused fields e2fsck flags (faddr, blocks_hi, file_acl).
"""

from __future__ import annotations

import numpy as np

from ..ondisk.csum import crc32c_raw_rows
from .context import Context
from .state import State

EXTENTS_FL = 0x80000
ENABLED = True  # tests turn the array path off to compare its verdicts with pass 1's
S_IFREG = 0o100000


def _u16(a: np.ndarray, off: int) -> np.ndarray:
    return a[:, off].astype(np.uint32) | a[:, off + 1].astype(np.uint32) << 8


def _u32(a: np.ndarray, off: int) -> np.ndarray:
    return (a[:, off].astype(np.uint32) | a[:, off + 1].astype(np.uint32) << 8
            | a[:, off + 2].astype(np.uint32) << 16 | a[:, off + 3].astype(np.uint32) << 24)


def simple_mask(ctx: Context, arr: np.ndarray, inos: np.ndarray) -> np.ndarray:
    """Rows the array path may take (a candidate; ``take`` still verifies them)."""
    if not ENABLED:
        return np.zeros(len(inos), dtype=bool)
    isz = ctx.isz
    mode = _u16(arr, 0)
    links = _u16(arr, 26)
    flags = _u32(arr, 32)
    m = (mode & 0o170000) == S_IFREG
    m &= links > 0
    m &= inos >= ctx.first_ino
    m &= _u32(arr, 20) == 0  # dtime
    m &= flags == EXTENTS_FL if ctx.extents else np.zeros(len(m), dtype=bool)
    m &= _u16(arr, 40) == 0xF30A
    m &= _u16(arr, 42) <= 1  # entries
    m &= _u16(arr, 44) == 4  # max
    m &= _u16(arr, 46) == 0  # depth
    m &= _u32(arr, 104) == 0  # file_acl lo
    m &= _u32(arr, 112) == 0  # faddr
    m &= _u32(arr, 116) == 0  # blocks_hi, file_acl_hi
    if isz > 128:
        extra = _u16(arr, 128)
        m &= (extra == 0) | ((extra >= 4) & (extra <= isz - 128) & (extra & 3 == 0))
        m &= extra + 132 <= isz
    return m


def take(ctx: Context, st: State, arr: np.ndarray, inos: np.ndarray) -> np.ndarray:
    """Check the candidate rows; record the ones that pass in ``st`` (as pass 1 would)
    and return their mask — the rest go through the per-inode path."""
    isz = ctx.isz
    bs = ctx.bs
    n = len(inos)
    ok = np.ones(n, dtype=bool)
    if isz > 128:
        # no in-inode xattrs (those need the xattr checks)
        extra = _u16(arr, 128).astype(np.int64)
        pos = 128 + extra
        rows = np.arange(n)
        magic = np.zeros(n, dtype=np.uint32)
        for k in range(4):
            magic |= arr[rows, np.minimum(pos + k, isz - 1)].astype(np.uint32) << (8 * k)
        ok &= magic != 0xEA020000
    entries = _u16(arr, 42)
    ln = _u16(arr, 56).astype(np.int64)
    start = (_u32(arr, 60).astype(np.int64) | _u16(arr, 58).astype(np.int64) << 32)
    lblk = _u32(arr, 52).astype(np.int64)
    has = entries == 1
    ok &= ~has | ((ln > 0) & (ln <= 32768))  # one initialised extent
    ok &= ~has | ((start >= max(ctx.first_data_block, 1)) & (start + ln <= ctx.blocks_count))
    size = _u32(arr, 4).astype(np.int64) | _u32(arr, 108).astype(np.int64) << 32
    nblocks = np.where(has, ln, 0)
    last_init = np.where(has, lblk + ln - 1, -1)
    ok &= (last_init < 0) | (size >= last_init * bs)
    ok &= size <= (1 << (32 + bs.bit_length() - 1)) - 1
    ok &= _u32(arr, 28).astype(np.int64) == nblocks * (bs // 512)
    if ctx.metadata_csum:
        ok &= _csums_ok(ctx, arr, inos)
    idx = np.nonzero(ok)[0]
    if len(idx):
        w = arr.shape[1]
        mv = memoryview(np.ascontiguousarray(arr[idx]).tobytes())
        st.inodes.update(zip(inos[idx].tolist(),
                             (bytearray(mv[a: a + w]) for a in range(0, len(idx) * w, w))))
        h = idx[has[idx]]
        st.run_start.extend(start[h].tolist())
        st.run_len.extend(ln[h].tolist())
        st.run_owner.extend(inos[h].tolist())
    return ok


def _csums_ok(ctx: Context, arr: np.ndarray, inos: np.ndarray) -> np.ndarray:
    isz = ctx.isz
    n = len(inos)
    le = np.empty((n, 8), dtype=np.uint8)
    i32 = inos.astype(np.uint32)
    for k in range(4):
        le[:, k] = (i32 >> (8 * k)) & 0xFF
    le[:, 4:8] = arr[:, 100:104]
    seed = crc32c_raw_rows(np.full(n, ctx.csum_seed, dtype=np.uint32), le)
    rows = arr.copy()
    stored = _u16(arr, 0x7C)
    rows[:, 0x7C:0x7E] = 0
    if isz > 128:
        extra = _u16(arr, 128)
        fits_hi = (extra >= 4) & (128 + extra <= isz)
        hi = _u16(arr, 0x82)
        rows[fits_hi, 0x82] = 0
        rows[fits_hi, 0x83] = 0
    else:
        fits_hi = np.zeros(n, dtype=bool)
        hi = np.zeros(n, dtype=np.uint32)
    c = crc32c_raw_rows(seed, rows)
    return np.where(fits_hi, c == (stored | hi << 16), (c & 0xFFFF) == stored)
