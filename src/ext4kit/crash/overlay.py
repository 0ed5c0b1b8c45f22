"""Copy-on-write crash states: a read-only base image plus the pages a state changed.

A crash state is never a full copy of the image: ``Overlay`` keeps the base image as one
shared ``bytes`` object and a dict of changed pages (immutable ``bytes``, so copying an
overlay is a shallow dict copy and two states share the pages they have in common).
Writes (a trace's writes, then recovery's) replace whole pages, merging partial ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from ..blockdev import BlockDevice

PAGE = 4096


class Overlay(BlockDevice):
    sector_size = 512

    def __init__(self, base: bytes, pages: dict[int, bytes] | None = None):
        self.base = base
        self.pages: dict[int, bytes] = dict(pages) if pages else {}
        self.read_only = False
        self.flush_count = 0

    @property
    def size(self) -> int:
        return len(self.base)

    def copy(self) -> Overlay:
        return Overlay(self.base, self.pages)

    def _page(self, p: int) -> bytes:
        got = self.pages.get(p)
        if got is not None:
            return got
        return self.base[p * PAGE : (p + 1) * PAGE]

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= len(self.base):
            return b""
        end = min(offset + length, len(self.base))
        first, last = offset // PAGE, (end - 1) // PAGE
        pages = self.pages
        if first == last:
            got = pages.get(first)
            if got is None:
                return self.base[offset:end]
            return got[offset - first * PAGE : end - first * PAGE]
        if last - first < len(pages):
            touched = any(p in pages for p in range(first, last + 1))
        else:
            touched = any(first <= p <= last for p in pages)
        if not touched:
            return self.base[offset:end]
        out = bytearray()
        for p in range(first, last + 1):
            page = self._page(p)
            s = max(offset, p * PAGE) - p * PAGE
            e = min(end, (p + 1) * PAGE) - p * PAGE
            out += page[s:e]
        return bytes(out)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        mv = memoryview(data).cast("B")
        n = len(mv)
        if offset < 0 or offset + n > len(self.base):
            raise OSError(28, "write past the end of the crash-state image")
        pos = 0
        while pos < n:
            p = (offset + pos) // PAGE
            s = (offset + pos) - p * PAGE
            take = min(PAGE - s, n - pos)
            if s == 0 and take == PAGE:
                self.pages[p] = bytes(mv[pos : pos + PAGE])
            else:
                page = bytearray(self._page(p))
                page[s : s + take] = mv[pos : pos + take]
                self.pages[p] = bytes(page)
            pos += take

    def flush(self) -> None:
        self.flush_count += 1

    def apply(self, writes: Iterable[tuple[int, bytes]]) -> None:
        for off, data in writes:
            self.write(off, data)

    def digest(self, skip: frozenset[int] | set[int] = frozenset()) -> bytes:
        """Identifies the image content: equal digests, equal images (pages equal to the
        base's are left out, so the same content reached two ways hashes the same).
        ``skip``: pages whose content does not matter (a clean journal's log blocks)."""
        h = hashlib.blake2b(digest_size=16)
        base = self.base
        for p in sorted(self.pages):
            if p in skip:
                continue
            page = self.pages[p]
            if page == base[p * PAGE : (p + 1) * PAGE]:
                continue
            h.update(p.to_bytes(8, "little"))
            h.update(page)
        return h.digest()

    def save(self, path: str | os.PathLike, base_nonzero: Iterable[int] | None = None) -> None:
        """Write the whole image as a sparse file (only non-zero pages are written)."""
        with open(path, "wb") as f:
            f.truncate(len(self.base))
            todo = set(self.pages)
            todo.update(base_nonzero if base_nonzero is not None else nonzero_pages(self.base))
            zero = bytes(PAGE)
            for p in sorted(todo):
                page = self._page(p)
                if page != zero[: len(page)]:
                    f.seek(p * PAGE)
                    f.write(page)


def nonzero_pages(base: bytes) -> list[int]:
    zero = bytes(PAGE)
    return [p for p in range(-(-len(base) // PAGE)) if base[p * PAGE : (p + 1) * PAGE] != zero[
        : len(base[p * PAGE : (p + 1) * PAGE])]]
