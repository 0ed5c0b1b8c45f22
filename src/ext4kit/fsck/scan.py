"""The inode-table scan: each group's live inode table read in one I/O and screened with
array operations; only inodes that need a look (in use, or with something to report)
come out as raw bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..ondisk.csum import crc32c_raw
from ..ondisk.groupdesc import BG_INODE_UNINIT
from ..ondisk.inode import inode_csum_seed
from .context import Context

CHUNK_BYTES = 8 << 20


def live_inodes(ctx: Context, g: int) -> int:
    """How many inodes of group ``g`` are scanned (e2fsck skips lazily-initialised ones)."""
    gd = ctx.groups[g]
    if ctx.csum_feature:
        if gd.flags & BG_INODE_UNINIT:
            return 0
        unused = gd.itable_unused
        if unused > ctx.ipg:
            return ctx.ipg
        return ctx.ipg - unused
    return ctx.ipg


def table_ok(ctx: Context, g: int) -> bool:
    t = ctx.groups[g].inode_table
    return ctx.first_data_block < t and t + ctx.itable_blocks <= ctx.blocks_count or \
        (ctx.first_data_block <= t and t + ctx.itable_blocks <= ctx.blocks_count and t != 0)


FastPath = Callable[[np.ndarray, np.ndarray], np.ndarray]


def scan(ctx: Context, fast: FastPath | None = None) -> Iterator[tuple[int, bytes, bool]]:
    """(ino, raw, checksum_ok) for every scanned inode that is in use or not all zeros in a
    way pass 1 must judge (links_count > 0, reserved, or mode without dtime).

    ``fast(rows, inos)`` may take whole rows first: it returns the mask of the rows it
    has checked and recorded, which are then not yielded."""
    isz = ctx.isz
    bs = ctx.bs
    first_ino = ctx.first_ino
    csum = ctx.metadata_csum
    seed = ctx.csum_seed
    bad_tables = ctx.bad_tables
    progress = ctx.progress
    for g in range(ctx.ngroups):
        if progress is not None and g % 64 == 0:
            progress(1, g, ctx.ngroups)
        n = live_inodes(ctx, g)
        if n == 0 or g in bad_tables or not table_ok(ctx, g):
            continue
        base = g * ctx.ipg
        start_blk = ctx.groups[g].inode_table
        per_chunk = max(1, CHUNK_BYTES // isz)
        for first in range(0, n, per_chunk):
            cnt = min(per_chunk, n - first)
            byte0 = first * isz
            blk0 = start_blk + byte0 // bs
            nblk = ((byte0 % bs) + cnt * isz + bs - 1) // bs
            data = ctx.blocks(blk0, nblk)
            off0 = byte0 % bs
            arr = np.frombuffer(data, dtype=np.uint8, count=cnt * isz, offset=off0).reshape(cnt, isz)
            links = arr[:, 26].astype(np.uint16) | (arr[:, 27].astype(np.uint16) << 8)
            mode = arr[:, 0].astype(np.uint16) | (arr[:, 1].astype(np.uint16) << 8)
            dtime_zero = ~arr[:, 20:24].any(axis=1)
            inos = np.arange(base + first + 1, base + first + cnt + 1)
            interesting = (links > 0) | (inos < first_ino) | ((mode != 0) & dtime_zero)
            if csum:
                nonzero = arr[:, :128].any(axis=1)
                pick = interesting | nonzero
            else:
                pick = interesting
            if fast is not None:
                cand = np.nonzero(interesting & (inos <= ctx.inodes_count))[0]
                if len(cand):
                    took = fast(arr[cand], inos[cand])
                    pick = pick.copy()
                    pick[cand[took]] = False
            idx_all = np.nonzero(pick)[0]
            for i in idx_all.tolist():
                ino = base + first + 1 + i
                if ino > ctx.inodes_count:
                    break
                raw = data[off0 + i * isz: off0 + (i + 1) * isz]
                ok = True
                if csum and any(raw[:128]):
                    ok = _csum_ok(raw, ino, seed, isz)
                if not interesting[i]:
                    if not ok:
                        yield ino, raw, ok
                    continue
                yield ino, raw, ok


def _csum_ok(raw: bytes, ino: int, seed: int, isz: int) -> bool:
    gen = int.from_bytes(raw[100:104], "little")
    s = inode_csum_seed(seed, ino, gen)
    lo = int.from_bytes(raw[0x7C:0x7E], "little")
    fits_hi = False
    hi = 0
    if isz > 128:
        extra = int.from_bytes(raw[128:130], "little")
        fits_hi = extra >= 4 and not extra & 3 and 128 + extra <= isz
        if fits_hi:
            hi = int.from_bytes(raw[0x82:0x84], "little")
    if fits_hi:
        c = crc32c_raw(s, raw[:0x7C] + b"\0\0" + raw[0x7E:0x82] + b"\0\0" + raw[0x84:])
        return c == (lo | hi << 16)
    c = crc32c_raw(s, raw[:0x7C] + b"\0\0" + raw[0x7E:])
    return (c & 0xFFFF) == lo
