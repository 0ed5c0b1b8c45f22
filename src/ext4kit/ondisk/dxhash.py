"""Directory-index (htree) name hashes: legacy, half_md4 and TEA, signed and unsigned.

Returns (major, minor) as ext4fs_dirhash does; all arithmetic is modulo 2**32.
"""

from __future__ import annotations

M32 = 0xFFFFFFFF
DEFAULT_SEED = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
HTREE_EOF_32 = 0x7FFFFFFF


def _chars(name: bytes, signed: bool) -> list[int]:
    if signed:
        return [c - 256 if c >= 128 else c for c in name]
    return list(name)


def _legacy(name: bytes, signed: bool) -> int:
    h0, h1 = 0x12A3FE2D, 0x37ABE8F9
    for c in _chars(name, signed):
        h = (h1 + (h0 ^ ((c * 7152373) & M32))) & M32
        if h & 0x80000000:
            h = (h - 0x7FFFFFFF) & M32
        h1, h0 = h0, h
    return (h0 << 1) & M32


def _str2hashbuf(chars: list[int], length: int, num: int) -> list[int]:
    pad = (length | (length << 8)) & M32
    pad = (pad | (pad << 16)) & M32
    val = pad
    out: list[int] = []
    n = min(length, num * 4)
    for i in range(n):
        val = (chars[i] + (val << 8)) & M32
        if i % 4 == 3:
            out.append(val)
            val = pad
            num -= 1
    num -= 1
    if num >= 0:
        out.append(val)
    while True:
        num -= 1
        if num < 0:
            break
        out.append(pad)
    return out


def _rol(x: int, s: int) -> int:
    return ((x << s) | (x >> (32 - s))) & M32


def _half_md4(buf: list[int], inp: list[int]) -> None:
    a, b, c, d = buf
    K2, K3 = 0o13240474631, 0o15666365641

    def F(x, y, z):
        return z ^ (x & (y ^ z))

    def G(x, y, z):
        return ((x & y) + ((x ^ y) & z)) & M32

    def H(x, y, z):
        return x ^ y ^ z

    def R(f, a, b, c, d, x, s):
        return _rol((a + f(b, c, d) + x) & M32, s)

    a = R(F, a, b, c, d, inp[0], 3)
    d = R(F, d, a, b, c, inp[1], 7)
    c = R(F, c, d, a, b, inp[2], 11)
    b = R(F, b, c, d, a, inp[3], 19)
    a = R(F, a, b, c, d, inp[4], 3)
    d = R(F, d, a, b, c, inp[5], 7)
    c = R(F, c, d, a, b, inp[6], 11)
    b = R(F, b, c, d, a, inp[7], 19)
    a = R(G, a, b, c, d, (inp[1] + K2) & M32, 3)
    d = R(G, d, a, b, c, (inp[3] + K2) & M32, 5)
    c = R(G, c, d, a, b, (inp[5] + K2) & M32, 9)
    b = R(G, b, c, d, a, (inp[7] + K2) & M32, 13)
    a = R(G, a, b, c, d, (inp[0] + K2) & M32, 3)
    d = R(G, d, a, b, c, (inp[2] + K2) & M32, 5)
    c = R(G, c, d, a, b, (inp[4] + K2) & M32, 9)
    b = R(G, b, c, d, a, (inp[6] + K2) & M32, 13)
    a = R(H, a, b, c, d, (inp[3] + K3) & M32, 3)
    d = R(H, d, a, b, c, (inp[7] + K3) & M32, 9)
    c = R(H, c, d, a, b, (inp[2] + K3) & M32, 11)
    b = R(H, b, c, d, a, (inp[6] + K3) & M32, 15)
    a = R(H, a, b, c, d, (inp[1] + K3) & M32, 3)
    d = R(H, d, a, b, c, (inp[5] + K3) & M32, 9)
    c = R(H, c, d, a, b, (inp[0] + K3) & M32, 11)
    b = R(H, b, c, d, a, (inp[4] + K3) & M32, 15)
    buf[0] = (buf[0] + a) & M32
    buf[1] = (buf[1] + b) & M32
    buf[2] = (buf[2] + c) & M32
    buf[3] = (buf[3] + d) & M32


def _tea(buf: list[int], inp: list[int]) -> None:
    s = 0
    b0, b1 = buf[0], buf[1]
    a, b, c, d = inp[0], inp[1], inp[2], inp[3]
    for _ in range(16):
        s = (s + 0x9E3779B9) & M32
        b0 = (b0 + ((((b1 << 4) + a) & M32) ^ ((b1 + s) & M32) ^ (((b1 >> 5) + b) & M32))) & M32
        b1 = (b1 + ((((b0 << 4) + c) & M32) ^ ((b0 + s) & M32) ^ (((b0 >> 5) + d) & M32))) & M32
    buf[0] = (buf[0] + b0) & M32
    buf[1] = (buf[1] + b1) & M32


def dx_hash(name: bytes, version: int, seed: tuple[int, ...] | list[int] | None = None) -> tuple[int, int]:
    """(major, minor) hash of ``name`` for htree hash ``version`` (0..5)."""
    key = (name, version, tuple(seed) if seed is not None else None)
    hit = _memo.get(key)
    if hit is None:
        hit = _dx_hash(name, version, seed)
        if len(_memo) >= 4096:
            _memo.clear()
        _memo[key] = hit
    return hit


_memo: dict[tuple, tuple[int, int]] = {}


def _dx_hash(name: bytes, version: int, seed: tuple[int, ...] | list[int] | None = None) -> tuple[int, int]:
    buf = list(DEFAULT_SEED)
    if seed and any(seed):
        buf = list(seed[:4])
    minor = 0
    if version in (0, 3):
        h = _legacy(name, signed=(version == 0))
    elif version in (1, 4):
        chars = _chars(name, signed=(version == 1))
        p = 0
        n = len(name)
        while True:
            _half_md4(buf, _str2hashbuf(chars[p:], n - p, 8))
            p += 32
            if p >= n:
                break
        h, minor = buf[1], buf[2]
    elif version in (2, 5):
        chars = _chars(name, signed=(version == 2))
        p = 0
        n = len(name)
        while True:
            _tea(buf, _str2hashbuf(chars[p:], n - p, 4))
            p += 16
            if p >= n:
                break
        h, minor = buf[0], buf[1]
    else:
        raise ValueError(f"unsupported directory hash version {version}")
    h &= ~1 & M32
    if h == (HTREE_EOF_32 << 1):
        h = (HTREE_EOF_32 - 1) << 1
    return h, minor
