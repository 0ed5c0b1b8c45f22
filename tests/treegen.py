"""Deterministic host trees used as the source (and the expectation) of image round trips.

``build_tree(root)`` creates a directory tree exercising the corners of ext2/3/4:

* unicode names (Greek, CJK, emoji, combining accents), a name that is not valid UTF-8,
  255-byte names (ASCII and multi-byte), deep nesting, an empty directory;
* empty, tiny and block-boundary files, a 100 KiB and a 3 MiB random file;
* sparse files: holes at the start, middle and end, data past a 4 GiB (and 5 GiB) offset,
  a file that is nothing but a hole;
* a directory ``many/`` holding ``big_dir_entries`` small files (htree territory);
* fast (< 60 bytes), boundary (59/60 bytes) and slow symlinks, dangling, absolute and
  ``../`` symlinks, a symlink to a directory;
* a hard-link group of three names in three directories, and a second group of two;
* a fifo and, when running as root, character and block devices (old and new dev_t
  encodings) and files owned by other users (uids/gids above 65535 too);
* ``user.*`` xattrs on files and a directory: empty, small, binary, many, and one large
  value (``big_xattr_size`` bytes; it has to fit into one file system block);
* setuid/setgid/sticky and odd permission bits on files and directories;
* atime/mtime with nanoseconds (including 1970, pre-1970 and post-2038 times) set last,
  directories after their children.

The fragmented file
-------------------
``mke2fs -d`` and ``cp -a`` write every file contiguously, so a file with hundreds of
extents has to be produced after the fact. The expected tree contains ``frag/frag.bin``
(``FRAG_PIECES`` x 4 KiB of random data) plus the 4 KiB filler files ``frag/f0000``,
``frag/f0002``, ... (even numbers). A *staging* tree (``frag_staging=True``) instead has
no ``frag.bin`` but all fillers ``f0000 .. f{2*FRAG_PIECES-1}``; ``mke2fs -d`` lays them
out back to back in name order. ``images.fragment_with_debugfs`` then removes the odd
fillers and writes ``frag.bin`` with ``debugfs -w``, whose allocator fills the 4 KiB holes
one by one, so the file ends up with about ``FRAG_PIECES`` extents. For the kernel image
``images.fragment_with_kernel`` interleaves 4 KiB appends to ``frag.bin`` and a spacer file
on a ``nodelalloc`` mount. Both restore the attributes recorded in the expected tree.
"""

from __future__ import annotations

import os
import random
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

FRAG_DIR = "frag"
FRAG_FILE = "frag/frag.bin"
FRAG_CHUNK = 4096
FRAG_PIECES = 600

GIB = 1 << 30
SPARSE_FILE = "sparse/sparse5g.bin"

IS_ROOT = os.geteuid() == 0


def frag_filler_name(i: int) -> str:
    return f"f{i:04d}"


def frag_drop_names() -> list[str]:
    """Names (inside ``frag/``) that exist only in the staging tree."""
    return [frag_filler_name(i) for i in range(1, 2 * FRAG_PIECES, 2)]


def _b(rel: str | bytes) -> bytes:
    return rel if isinstance(rel, bytes) else rel.encode("utf-8")


@dataclass
class _Meta:
    mode: int | None  # permission bits incl. suid/sgid/sticky; None for symlinks
    owner: tuple[int, int] | None
    times: tuple[int, int] | None  # (atime_ns, mtime_ns); None -> derived from the path
    is_dir: bool


class _Builder:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = os.fsencode(root)
        self.seed = seed
        self.meta: dict[bytes, _Meta] = {}

    # -- helpers -----------------------------------------------------------------------
    def path(self, rel: str | bytes) -> bytes:
        return os.path.join(self.root, _b(rel))

    def rand(self, name: str, n: int) -> bytes:
        # A private generator per item: the content of one item never depends on which
        # other items exist (the staging and expected trees must agree byte for byte).
        return random.Random(f"{self.seed}/{name}").randbytes(n)

    def _register(self, rel, mode, owner, times, is_dir=False) -> None:
        self.meta[_b(rel)] = _Meta(mode, owner, times, is_dir)

    # -- node creators -----------------------------------------------------------------
    def dir(self, rel, mode=0o755, *, owner=None, times=None, xattrs=None) -> None:
        p = self.path(rel)
        os.mkdir(p, 0o700)
        for k, v in (xattrs or {}).items():
            os.setxattr(p, k, v)
        self._register(rel, mode, owner, times, is_dir=True)

    def file(self, rel, data: bytes = b"", mode=0o644, *, owner=None, times=None,
             xattrs=None) -> None:
        p = self.path(rel)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        for k, v in (xattrs or {}).items():
            os.setxattr(p, k, v)
        self._register(rel, mode, owner, times)

    def sparse(self, rel, pieces: list[tuple[int, bytes]], size: int, mode=0o644) -> None:
        p = self.path(rel)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for off, data in pieces:
                os.pwrite(fd, data, off)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self._register(rel, mode, None, None)

    def symlink(self, rel, target: str | bytes, *, owner=None, times=None) -> None:
        os.symlink(_b(target), self.path(rel))
        self._register(rel, None, owner, times)

    def hardlink(self, existing, new) -> None:
        # Metadata belongs to the inode: it is registered (once) under `existing`.
        os.link(self.path(existing), self.path(new))

    def fifo(self, rel, mode=0o644) -> None:
        os.mkfifo(self.path(rel), 0o600)
        self._register(rel, mode, None, None)

    def device(self, rel, kind: int, major: int, minor: int, mode=0o660) -> None:
        os.mknod(self.path(rel), kind | 0o600, os.makedev(major, minor))
        self._register(rel, mode, None, None)

    # -- metadata ----------------------------------------------------------------------
    @staticmethod
    def default_times(rel: bytes) -> tuple[int, int]:
        h = zlib.crc32(rel)
        mtime = (1_300_000_000 + h % 600_000_000) * 10**9 + (h * 7919) % 10**9
        atime = mtime + 86_400 * 10**9 + (h * 31) % 10**9
        return atime, mtime

    def finish(self) -> None:
        # Ownership first (chown clears setuid/setgid), then modes, then times; times of
        # directories last and deepest first so that nothing disturbs them afterwards.
        for rel, m in self.meta.items():
            p = self.path(rel)
            if IS_ROOT:
                uid, gid = m.owner or (0, 0)
                os.chown(p, uid, gid, follow_symlinks=False)
            if m.mode is not None:
                os.chmod(p, m.mode)
        ordered = sorted(self.meta.items(), key=lambda kv: (kv[1].is_dir, -kv[0].count(b"/")))
        for rel, m in ordered:
            atime, mtime = m.times or self.default_times(rel)
            os.utime(self.path(rel), ns=(atime, mtime), follow_symlinks=False)
        root_times = self.default_times(b"")
        os.utime(self.root, ns=root_times)


def build_tree(root: Path, *, big_dir_entries: int = 3000, seed: int = 0,
               big_xattr_size: int = 2048, frag_staging: bool = False) -> None:
    """Create the test tree at ``root`` (which must not exist or be an empty directory).

    ``big_xattr_size`` must fit into one block of the target file system together with
    the xattr block header (about 700 for 1 KiB blocks, 1500 for 2 KiB, 3000 for 4 KiB).
    ``frag_staging`` builds the tree that is fed to ``mke2fs -d`` before fragmenting (see
    the module docstring); the default builds the expected tree.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    os.chmod(root, 0o755)
    b = _Builder(root, seed)

    # --- plain files of interesting sizes ---------------------------------------------
    b.file("empty.txt")
    b.file("hello.txt", b"hello, world\n")
    b.dir("sizes")
    for n in (1, 59, 60, 61, 1023, 1024, 1025, 4095, 4096, 4097, 8192, 65537):
        b.file(f"sizes/{n}.bin", b.rand(f"size{n}", n))
    b.file("sizes/random_100k.bin", b.rand("100k", 100 * 1024))
    b.file("sizes/random_3m.bin", b.rand("3m", 3 * 1024 * 1024 + 7))
    b.file("sizes/zeros_64k.bin", bytes(65536))  # written data that happens to be zero
    b.dir("emptydir")

    # --- names ------------------------------------------------------------------------
    b.dir("unicode")
    b.dir("unicode/Ελληνικά")
    b.file("unicode/Ελληνικά/αρχείο.txt", "Γειά σου Κόσμε\n".encode())
    b.dir("unicode/日本語")
    b.file("unicode/日本語/ファイル.txt", "こんにちは世界\n".encode())
    b.dir("unicode/中文目录")
    b.file("unicode/中文目录/文件.txt", "你好，世界\n".encode())
    b.file("unicode/emoji_😀🎉🚀.txt", "🦀🐍\n".encode())
    b.file("unicode/naïve café.txt", b"combining and precomposed\n")
    b.file("unicode/cafe\u0301 (decomposed).txt", b"NFD name\n")
    b.file("unicode/spaces  and 'quotes' \"double\".txt", b"q\n")
    b.file("unicode/new\nline.txt", b"newline in name\n")
    b.file("unicode/tab\tname", b"tab\n")
    b.file("unicode/-dash-first", b"dash\n")
    b.file(b"unicode/latin1_\xe9\xff_not_utf8.bin", b"invalid utf-8 name\n")
    b.dir("long")
    name255_ascii = "L" * 255
    name255_utf8 = "é" * 127 + "x"  # 127 * 2 + 1 = 255 bytes
    name255_cjk = "字" * 85  # 85 * 3 = 255 bytes
    assert len(name255_utf8.encode()) == 255 and len(name255_cjk.encode()) == 255
    b.file(f"long/{name255_ascii}", b"255 ascii\n")
    b.file(f"long/{name255_utf8}", b"255 utf-8\n")
    b.dir(f"long/{name255_cjk}")
    b.file(f"long/{name255_cjk}/{'D' * 254}1", b"inside a 255-byte directory\n")
    deep = "deep"
    b.dir(deep)
    for i in range(24):
        deep += f"/level{i:02d}"
        b.dir(deep)
    b.file(f"{deep}/bottom.txt", b"bottom\n")

    # --- sparse files -----------------------------------------------------------------
    b.dir("sparse")
    b.sparse(
        SPARSE_FILE,
        [
            (0, b.rand("sp0", 8192 + 100)),
            (GIB + 123, b.rand("sp1", 5000)),
            (4 * GIB - 2048, b.rand("sp4", 4096)),  # straddles the 4 GiB boundary
            (5 * GIB, b.rand("sp5", 3 * 4096 + 17)),
        ],
        5 * GIB + 8 * 4096 + 5,  # ends in a hole
    )
    b.sparse("sparse/leading_hole.bin", [(1024 * 1024, b.rand("lh", 4096))], 1024 * 1024 + 4096)
    b.sparse("sparse/tail_hole.bin", [(0, b.rand("th", 100))], 1024 * 1024 + 1)
    b.sparse("sparse/all_hole.bin", [], 10 * 1024 * 1024)

    # --- big directory ----------------------------------------------------------------
    b.dir("many")
    for i in range(big_dir_entries):
        # varying name lengths so that directory blocks and hash buckets are uneven
        name = f"entry_{i:05d}" + "_x" * (i % 23)
        b.file(f"many/{name}", f"entry {i}\n".encode())

    # --- symlinks ---------------------------------------------------------------------
    b.dir("links")
    b.file("links/target.txt", b"the target\n")
    b.symlink("links/fast", "target.txt")
    b.symlink("links/len59", "../links/" + "./" * 20 + "target.txt")  # 9 + 40 + 10 = 59
    b.symlink("links/len60", "./" * 25 + "target.txt")  # 60 bytes: first slow length
    b.symlink("links/slow200", "./" * 95 + "target.txt")  # 200 bytes, resolves
    b.symlink("links/slow1000", "x/" * 495 + "target")  # 996 bytes, dangling
    b.symlink("links/dangling", "does/not/exist")
    b.symlink("links/absolute", "/etc/passwd")
    b.symlink("links/escape", "../../../../../../outside/x")
    b.symlink("links/dirlink", "../sizes")
    b.symlink("links/λινκ", "ターゲット/🎯")
    b.symlink("links/self", "self")
    assert len(os.readlink(b.path("links/len59"))) == 59
    assert len(os.readlink(b.path("links/len60"))) == 60
    assert len(os.readlink(b.path("links/slow200"))) == 200

    # --- hard links -------------------------------------------------------------------
    b.dir("hardlinks")
    b.dir("hardlinks/sub")
    b.dir("hardlinks/other")
    b.file("hardlinks/a.txt", b.rand("hl", 5000), 0o640, times=(1_111_111_111_222_333_444,
                                                              1_222_222_222_333_444_555))
    b.hardlink("hardlinks/a.txt", "hardlinks/sub/b.txt")
    b.hardlink("hardlinks/a.txt", "hardlinks/other/c.txt")
    b.file("hardlinks/empty1", b"")
    b.hardlink("hardlinks/empty1", "unicode/Ελληνικά/κενό")

    # --- special files ----------------------------------------------------------------
    b.dir("special")
    b.fifo("special/fifo", 0o640)
    if IS_ROOT:
        b.device("special/null", stat.S_IFCHR, 1, 3, 0o666)
        b.device("special/loop0", stat.S_IFBLK, 7, 0, 0o660)
        b.device("special/chr_big", stat.S_IFCHR, 300, 70000, 0o600)  # new dev_t encoding
        b.device("special/blk_big", stat.S_IFBLK, 259, 1048575, 0o640)

    # --- xattrs -----------------------------------------------------------------------
    b.dir("xattr", 0o750, xattrs={"user.dirattr": b"on a directory",
                                  "user.mime_type": b"inode/directory"})
    b.file("xattr/small.txt", b"has small xattrs\n",
           xattrs={"user.foo": b"bar", "user.empty": b"", "user.bin": bytes(range(32))})
    b.file("xattr/big.txt", b"has a big xattr\n",
           xattrs={"user.big": b.rand("bigx", big_xattr_size), "user.tiny": b"1"})
    b.file("xattr/many.txt", b"has many xattrs\n",
           xattrs={f"user.k{i:02d}": f"value-{i:02d}-".encode() * 2 for i in range(15)})
    b.file("xattr/ünï.txt", b"unicode xattr name\n", xattrs={"user.ключ": "значение".encode()})
    b.symlink("xattr/link", "small.txt")

    # --- modes and owners -------------------------------------------------------------
    b.dir("modes")
    # mode 0000 only as root: otherwise mke2fs -d (and the comparison) could not read it
    for name, mode in [("setuid", 0o4755), ("setgid", 0o2711), ("suid_sgid", 0o6755),
                       ("all_bits", 0o7777), ("private", 0o600), ("none", 0o000 if IS_ROOT
                                                                  else 0o400),
                       ("odd", 0o467), ("exec", 0o755), ("sticky_file", 0o1644)]:
        b.file(f"modes/{name}", f"{name}\n".encode(), mode)
    b.dir("modes/sticky_dir", 0o1777)
    b.file("modes/sticky_dir/inside", b"in sticky\n")
    b.dir("modes/setgid_dir", 0o2775)
    b.file("modes/setgid_dir/inside", b"in setgid\n")
    b.dir("modes/readonly_dir", 0o555)
    b.file("modes/readonly_dir/inside", b"in read-only dir\n", 0o444)
    b.dir("modes/x_only_dir", 0o711)
    b.dir("modes/x_only_dir/sub", 0o700)
    b.file("modes/x_only_dir/sub/inside", b"deep in restricted dirs\n", 0o400)
    if IS_ROOT:
        b.dir("owners")
        b.file("owners/user1000", b"u\n", owner=(1000, 1000))
        b.file("owners/mixed", b"m\n", 0o640, owner=(12345, 54321))
        b.file("owners/big_ids", b"b\n", owner=(200000, 300000))  # needs uid/gid _hi
        b.dir("owners/dir_of_1000", 0o700, owner=(1000, 100))
        b.symlink("owners/link_of_4242", "user1000", owner=(4242, 4343))

    # --- timestamps -------------------------------------------------------------------
    b.dir("times")
    for name, sec, nsec in [("epoch", 0, 0), ("one_ns", 0, 1), ("max_ns", 1_500_000_000,
                            999_999_999), ("pre1970", -1_000_000_000, 123_456_789),
                            ("y2038_edge", 2**31 - 1, 500), ("after_2038", 2**31 + 5, 42),
                            ("y2100", 4_102_444_800, 987_654_321)]:
        t = sec * 10**9 + nsec
        b.file(f"times/{name}", f"{name}\n".encode(), times=(t, t))

    # --- fragmented file (see module docstring) ---------------------------------------
    b.dir(FRAG_DIR)
    for i in range(2 * FRAG_PIECES):
        if i % 2 == 0 or frag_staging:
            name = frag_filler_name(i)
            b.file(f"{FRAG_DIR}/{name}", (f"filler {name} ".encode() * 400)[:FRAG_CHUNK])
    if not frag_staging:
        b.file(FRAG_FILE, frag_content(seed), 0o640,
               times=(1_234_567_890_111_222_333, 1_345_678_901_222_333_444))

    b.finish()


def frag_content(seed: int = 0) -> bytes:
    return random.Random(f"{seed}/frag").randbytes(FRAG_PIECES * FRAG_CHUNK)
