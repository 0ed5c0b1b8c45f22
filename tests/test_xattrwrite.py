"""Writing extended attributes (in-inode, block, shared blocks, ACLs) and inline data.

Images come from mke2fs -d (files need directory entries for e2fsck); every change is
read back through a fresh read-only open and checked with ``e2fsck -fn``.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ext4kit
from ext4kit.fs import inline
from ext4kit.fs import xattrwrite as xw
from ext4kit.fs.writer import WritableFileSystem
from ext4kit.ondisk import dirent as de
from ext4kit.ondisk import xattr as xa
from ext4kit.ondisk.inode import EXTENTS_FL, INLINE_DATA_FL

XATTR_CREATE = xw.XATTR_CREATE
XATTR_REPLACE = xw.XATTR_REPLACE

TREE_FILES = {"f1": b"one\n", "f2": b"two two\n", "f3": b"three\n",
              "small": b"hello", "mid": bytes(range(100)), "big": b"B" * 5000,
              "d1/a": b"a\n", "d1/bb": b"bb\n", "d2/x": b"", "d2/yy": b""}


def _tree(root: Path) -> Path:
    src = root / "tree"
    if not src.exists():
        for rel, data in TREE_FILES.items():
            p = src / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return src


_TEMPLATES: dict[tuple, Path] = {}


def make(tmp_path: Path, *, inode_size: int = 256, csum: bool = True, inline_data: bool = False,
         block_size: int = 4096, name: str = "x.img") -> Path:
    """A 16 MiB ext4 image populated from TREE_FILES (templates cached per config)."""
    key = (inode_size, csum, inline_data, block_size)
    tpl = _TEMPLATES.get(key)
    if tpl is None or not tpl.exists():
        base = tmp_path.parent
        tpl = base / ("tpl-" + "-".join(str(int(k)) for k in key) + ".img")
        feats = ["metadata_csum" if csum else "^metadata_csum"]
        if inline_data:
            feats.append("inline_data")
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", str(block_size), "-I",
                        str(inode_size), "-O", ",".join(feats), "-d", str(_tree(base)),
                        "-E", "lazy_itable_init=1", str(tpl), "16M"],
                       check=True, capture_output=True,
                       env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"})
        _TEMPLATES[key] = tpl
    img = tmp_path / name
    shutil.copyfile(tpl, img)
    return img


def fsck_ok(img: Path) -> None:
    r = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def xattrs(img: Path, path: str) -> dict[str, bytes]:
    with ext4kit.open(img) as fs:
        return {n: fs.getxattr(path, n, follow_symlinks=False)
                for n in fs.listxattr(path, follow_symlinks=False)}


def inode_of(img: Path, path: str):
    with ext4kit.open(img) as fs:
        return fs.inode_of(path)


def free_blocks(img: Path) -> int:
    with ext4kit.open(img) as fs:
        return sum(gd.free_blocks_count for gd in fs.groups)


def apply(img: Path, fn) -> object:
    fs = WritableFileSystem.open_writable(img)
    try:
        with fs.start() as h:
            return fn(fs, h)
    finally:
        fs.close()


def setx(img: Path, path: str, items: dict[str, bytes], flags: int = 0) -> None:
    def go(fs, h):
        ino = fs.inode_of(path)
        for k, v in items.items():
            xw.set_xattr(fs, h, ino, k, v, flags)
    apply(img, go)


def debugfs_ea(img: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"ea_list {path}", str(img)], capture_output=True,
                          text=True).stdout


# ======================================================================================
# xattrs
# ======================================================================================
@pytest.mark.parametrize("csum", [True, False], ids=["csum", "nocsum"])
def test_small_attrs_in_inode(tmp_path, csum):
    img = make(tmp_path, csum=csum)
    want = {"user.a": b"aaa", "user.bb": b"bbbbbbb", "trusted.z": b""}  # 72 of 88 bytes
    setx(img, "/f1", want)
    assert xattrs(img, "/f1") == want
    ino = inode_of(img, "/f1")
    assert ino.file_acl == 0 and ino.f["i_blocks_lo"] == 8  # the file's data block only
    assert struct.unpack_from("<I", ino.raw, 128 + ino.extra_isize)[0] == xa.XATTR_MAGIC
    out = debugfs_ea(img, "/f1")
    assert 'user.a (3) = "aaa"' in out and "trusted.z (0)" in out
    assert 'user.bb (7) = "bbbbbbb"' in out
    assert xattrs(img, "/f2") == {}
    fsck_ok(img)


@pytest.mark.parametrize("csum", [True, False], ids=["csum", "nocsum"])
def test_overflow_block_and_remove_all(tmp_path, csum):
    img = make(tmp_path, csum=csum)
    free0 = free_blocks(img)
    want = {f"user.attr{i:03d}": bytes([i]) * (i * 7 % 90) for i in range(40)}
    setx(img, "/f2", want)
    assert xattrs(img, "/f2") == want
    ino = inode_of(img, "/f2")
    assert ino.file_acl and ino.f["i_blocks_lo"] == 16
    assert free_blocks(img) == free0 - 1
    with ext4kit.open(img) as fs:
        buf = fs.read_block(ino.file_acl)
        magic, refs, nblocks, hsh, c, _ = xa.BLOCK_HEADER.unpack_from(buf, 0)
        assert (magic, refs, nblocks) == (xa.XATTR_MAGIC, 1, 1) and hsh != 0
        if csum:
            assert c == xa.block_checksum(fs.csum_seed, ino.file_acl, buf)
        entries, err = xa.parse_entries(buf, 32, len(buf))
        assert err is None
        keys = [(e.name_index, len(e.name), e.name) for e in entries]
        assert keys == sorted(keys)  # block entries sorted as the kernel requires
    out = debugfs_ea(img, "/f2")
    assert "user.attr039" in out and "user.attr001" in out
    fsck_ok(img)

    def remove_all(fs, h):
        ino = fs.inode_of("/f2")
        for k in sorted(want):
            xw.remove_xattr(fs, h, ino, k)
    apply(img, remove_all)
    assert xattrs(img, "/f2") == {}
    ino = inode_of(img, "/f2")
    assert ino.file_acl == 0 and ino.f["i_blocks_lo"] == 8
    assert free_blocks(img) == free0
    fsck_ok(img)


def test_replace_moves_between_inode_and_block(tmp_path):
    img = make(tmp_path)
    setx(img, "/f1", {"user.k": b"v1"})
    assert inode_of(img, "/f1").file_acl == 0
    setx(img, "/f1", {"user.k": b"V" * 500}, XATTR_REPLACE)  # too big for the inode now
    ino = inode_of(img, "/f1")
    assert ino.file_acl != 0 and xattrs(img, "/f1") == {"user.k": b"V" * 500}
    assert xw.read_ibody(ino) == []
    fsck_ok(img)
    setx(img, "/f1", {"user.k": b"small"})  # back into the inode, block released
    ino = inode_of(img, "/f1")
    assert ino.file_acl == 0 and ino.f["i_blocks_lo"] == 8
    assert xattrs(img, "/f1") == {"user.k": b"small"}
    fsck_ok(img)


def test_errors(tmp_path):
    img = make(tmp_path)

    def go(fs, h):
        ino = fs.inode_of("/f1")
        xw.set_xattr(fs, h, ino, "user.x", b"1")
        cases = [
            (lambda: xw.set_xattr(fs, h, ino, "user.x", b"2", XATTR_CREATE), errno.EEXIST),
            (lambda: xw.set_xattr(fs, h, ino, "user.y", b"2", XATTR_REPLACE), errno.ENODATA),
            (lambda: xw.remove_xattr(fs, h, ino, "user.nope"), errno.ENODATA),
            (lambda: xw.set_xattr(fs, h, ino, "user." + "n" * 251, b""), errno.ERANGE),
            (lambda: xw.set_xattr(fs, h, ino, "bogus.x", b""), errno.EOPNOTSUPP),
            (lambda: xw.set_xattr(fs, h, ino, "system.data", b""), errno.EOPNOTSUPP),
            (lambda: xw.set_xattr(fs, h, ino, "user.", b""), errno.EINVAL),
            (lambda: xw.set_xattr(fs, h, ino, "user.big", b"x" * 5000), errno.ENOSPC),
            (lambda: xw.set_xattr(fs, h, ino, "user.huge", b"x" * 70000), errno.E2BIG),
            (lambda: xw.set_xattr(fs, h, ino, "system.posix_acl_default",
                                  _acl((1, 7), (4, 5), (0x20, 4))), errno.EACCES),
            (lambda: xw.set_xattr(fs, h, ino, "system.posix_acl_access",
                                  _acl((1, 7), (2, 5, 1000), (4, 5), (0x20, 4))),
             errno.EINVAL),  # named user without a mask
        ]
        for fn, code in cases:
            with pytest.raises(OSError) as ei:
                fn()
            assert ei.value.errno == code
        xw.set_xattr(fs, h, ino, "user.x", b"3", XATTR_REPLACE)
        xw.set_xattr(fs, h, ino, "user." + "n" * 250, b"long name")  # 255 bytes: fine
    apply(img, go)
    got = xattrs(img, "/f1")
    assert got == {"user.x": b"3", "user." + "n" * 250: b"long name"}
    fsck_ok(img)


def _acl(*entries) -> bytes:
    out = [struct.pack("<I", 2)]
    for e in entries:
        tag, perm = e[0], e[1]
        ident = e[2] if len(e) > 2 else 0xFFFFFFFF
        out.append(struct.pack("<HHI", tag, perm, ident))
    return b"".join(out)


def test_posix_acl_roundtrip(tmp_path):
    img = make(tmp_path)
    access = _acl((1, 6), (2, 6, 1000), (2, 4, 1001), (4, 4), (8, 5, 100), (0x10, 6), (0x20, 4))
    default = _acl((1, 7), (4, 5), (0x20, 5))

    def go(fs, h):
        xw.set_xattr(fs, h, fs.inode_of("/f1"), "system.posix_acl_access", access)
        xw.set_xattr(fs, h, fs.inode_of("/d1"), "system.posix_acl_default", default)
        xw.set_xattr(fs, h, fs.inode_of("/d1"), "system.posix_acl_access", default)
    apply(img, go)
    assert xattrs(img, "/f1") == {"system.posix_acl_access": access}
    assert xattrs(img, "/d1") == {"system.posix_acl_default": default,
                                  "system.posix_acl_access": default}
    # on disk: ext4's compact format (version 1, short entries for the *_OBJ/MASK/OTHER)
    ino = inode_of(img, "/f1")
    (a,) = xw.read_ibody(ino)
    assert a.index == 2 and a.name == b"" and len(a.value) == 4 + 4 * 4 + 3 * 8
    assert a.value[:4] == struct.pack("<I", 1)
    out = subprocess.run(["debugfs", "-R", "ea_list /f1", str(img)], capture_output=True,
                         text=True).stdout
    assert "system.posix_acl_access" in out
    # e2fsprogs decodes our compact format back to the xattr format (ids of short entries 0)
    out = subprocess.run(["debugfs", "-R", "ea_get -x /f1 system.posix_acl_access", str(img)],
                         capture_output=True, text=True).stdout
    e2 = bytes.fromhex(out.split("=", 1)[1])
    assert e2 == access.replace(b"\xff\xff\xff\xff", bytes(4))
    fsck_ok(img)
    # an empty ACL (header only) removes it
    apply(img, lambda fs, h: xw.set_xattr(fs, h, fs.inode_of("/f1"), "system.posix_acl_access",
                                          struct.pack("<I", 2)))
    assert xattrs(img, "/f1") == {}
    fsck_ok(img)


def _share_block(fs, h, src: str, dst: str) -> int:
    """Test setup: make ``dst`` use ``src``'s xattr block (refcount += 1)."""
    a = fs.inode_of(src)
    b = fs.inode_of(dst)
    blk = a.file_acl
    assert blk and not b.file_acl
    buf = h.get_write_access(blk)
    refs = struct.unpack_from("<I", buf, 4)[0]
    struct.pack_into("<I", buf, 4, refs + 1)
    xw._set_block_csum(fs, buf, blk)
    h.dirty_metadata(blk)
    b.set_file_acl(blk)
    fs.add_i_blocks(b, 1)
    fs.write_inode(h, b)
    return blk


def test_shared_block_copy_on_write(tmp_path):
    img = make(tmp_path)
    shared = {"user.big1": b"1" * 300, "user.big2": b"2" * 300}
    setx(img, "/f1", shared)
    blk = apply(img, lambda fs, h: _share_block(fs, h, "/f1", "/f2"))
    apply(img, lambda fs, h: _share_block(fs, h, "/f1", "/f3"))
    fsck_ok(img)  # refcount 3 matches the three users
    assert xattrs(img, "/f2") == shared
    free0 = free_blocks(img)

    setx(img, "/f2", {"user.big3": b"3" * 300})  # f2 copies
    i1, i2, i3 = (inode_of(img, p) for p in ("/f1", "/f2", "/f3"))
    assert i1.file_acl == i3.file_acl == blk and i2.file_acl not in (0, blk)
    assert free_blocks(img) == free0 - 1
    assert xattrs(img, "/f1") == shared == xattrs(img, "/f3")
    assert xattrs(img, "/f2") == {**shared, "user.big3": b"3" * 300}
    with ext4kit.open(img) as fs:
        assert struct.unpack_from("<I", fs.read_block(blk), 4)[0] == 2
        assert struct.unpack_from("<I", fs.read_block(i2.file_acl), 4)[0] == 1
    fsck_ok(img)

    # removing the last block attribute of a sharer releases its reference only
    def drop_f3(fs, h):
        ino = fs.inode_of("/f3")
        xw.remove_xattr(fs, h, ino, "user.big1")  # f3 copies (one attr left)
        xw.remove_xattr(fs, h, ino, "user.big2")  # its copy is freed
    apply(img, drop_f3)
    assert inode_of(img, "/f3").file_acl == 0
    assert free_blocks(img) == free0 - 1
    with ext4kit.open(img) as fs:
        assert struct.unpack_from("<I", fs.read_block(blk), 4)[0] == 1
    fsck_ok(img)

    # drop_all_xattrs (inode deletion) on a shared block only decrements
    apply(img, lambda fs, h: _share_block(fs, h, "/f1", "/f3"))

    def drop_all(fs, h):
        ino = fs.inode_of("/f3")
        xw.drop_all_xattrs(fs, h, ino)
        assert ino.file_acl == 0
    apply(img, drop_all)
    with ext4kit.open(img) as fs:
        assert struct.unpack_from("<I", fs.read_block(blk), 4)[0] == 1
    fsck_ok(img)
    apply(img, lambda fs, h: xw.drop_all_xattrs(fs, h, fs.inode_of("/f1")))
    assert free_blocks(img) == free0  # blk freed; f2's copy (allocated since) remains
    assert xattrs(img, "/f1") == {}
    fsck_ok(img)


@pytest.mark.parametrize("csum", [True, False], ids=["csum", "nocsum"])
def test_128_byte_inodes_use_the_block(tmp_path, csum):
    img = make(tmp_path, inode_size=128, csum=csum)
    want = {"user.a": b"x", "trusted.t": b"yy" * 10}
    setx(img, "/f1", want)
    ino = inode_of(img, "/f1")
    assert ino.file_acl != 0 and len(ino.raw) == 128
    assert xattrs(img, "/f1") == want
    fsck_ok(img)
    apply(img, lambda fs, h: [xw.remove_xattr(fs, h, fs.inode_of("/f1"), k) for k in want])
    assert inode_of(img, "/f1").file_acl == 0
    fsck_ok(img)


def test_block_size_1k_many_attrs(tmp_path):
    img = make(tmp_path, block_size=1024)
    want = {f"user.{i}": os.urandom(i % 37) for i in range(30)}
    fits = {}

    def go(fs, h):
        ino = fs.inode_of("/f1")
        for k, v in want.items():
            try:
                xw.set_xattr(fs, h, ino, k, v)
                fits[k] = v
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    apply(img, go)
    assert 0 < len(fits) < len(want)
    assert xattrs(img, "/f1") == fits
    fsck_ok(img)


# ======================================================================================
# inline data
# ======================================================================================
def _inline_state(img: Path, path: str) -> tuple[bytes, int, bool]:
    with ext4kit.open(img) as fs:
        ino = fs.inode_of(path)
        return fs.read_bytes(path), ino.flags, ino.file_acl != 0


def test_inline_write_and_truncate(tmp_path):
    img = make(tmp_path, inline_data=True)
    assert inode_of(img, "/small").flags & INLINE_DATA_FL
    assert inode_of(img, "/mid").flags & INLINE_DATA_FL

    def go(fs, h):
        s = fs.inode_of("/small")
        assert inline.write_inline(fs, h, s, 3, b"XYZ")  # within i_block
        assert inline.write_inline(fs, h, s, 70, b"tail")  # grows into system.data
        m = fs.inode_of("/mid")
        assert inline.truncate_inline(fs, h, m, 10)
        assert inline.truncate_inline(fs, h, m, 64)  # grows with zeros
        assert not inline.write_inline(fs, h, m, 0, b"q" * 1000)  # does not fit
        assert not inline.truncate_inline(fs, h, m, 4000)
    apply(img, go)
    data, flags, _ = _inline_state(img, "/small")
    assert data == b"helXYZ" + bytes(64) + b"tail" and flags & INLINE_DATA_FL
    data, flags, _ = _inline_state(img, "/mid")
    assert data == bytes(range(10)) + bytes(54) and flags & INLINE_DATA_FL
    fsck_ok(img)
    # shrink below 60: system.data becomes empty but stays
    apply(img, lambda fs, h: inline.truncate_inline(fs, h, fs.inode_of("/small"), 4))
    assert _inline_state(img, "/small")[0] == b"helX"
    assert "system.data (0)" in subprocess.run(
        ["debugfs", "-R", "stat /small", str(img)], capture_output=True, text=True).stdout
    fsck_ok(img)


def test_inline_with_user_xattrs(tmp_path):
    img = make(tmp_path, inline_data=True)

    def go(fs, h):
        m = fs.inode_of("/mid")
        xw.set_xattr(fs, h, m, "user.a", b"1234")
        cap = inline.max_inline_size(fs, m)
        assert 100 <= cap < 200
        assert inline.write_inline(fs, h, m, cap - 1, b"!")
        assert not inline.write_inline(fs, h, m, cap, b"!")
        # a value too big for what the inode still has goes to the block
        xw.set_xattr(fs, h, m, "user.b", b"B" * 64)
        return cap
    cap = apply(img, go)
    data, flags, has_block = _inline_state(img, "/mid")
    assert data == bytes(range(100)) + bytes(cap - 101) + b"!" and flags & INLINE_DATA_FL
    assert has_block
    assert xattrs(img, "/mid") == {"user.a": b"1234", "user.b": b"B" * 64}
    fsck_ok(img)
    # converting an inline file that has an xattr block (i_blocks != 0)
    apply(img, lambda fs, h: inline.convert_file_to_blocks(fs, h, fs.inode_of("/mid")))
    assert _inline_state(img, "/mid")[0] == data
    ino = inode_of(img, "/mid")
    assert ino.flags & EXTENTS_FL and not ino.flags & INLINE_DATA_FL
    assert ino.f["i_blocks_lo"] == 16
    assert xattrs(img, "/mid") == {"user.a": b"1234", "user.b": b"B" * 64}
    fsck_ok(img)


@pytest.mark.parametrize("path", ["/small", "/mid"])
def test_convert_file_to_blocks(tmp_path, path):
    img = make(tmp_path, inline_data=True)
    before = TREE_FILES[path[1:]]
    setx(img, path, {"user.keep": b"me"})

    def go(fs, h):
        ino = fs.inode_of(path)
        inline.convert_file_to_blocks(fs, h, ino)
        assert not ino.flags & INLINE_DATA_FL and ino.flags & EXTENTS_FL
    apply(img, go)
    data, flags, _ = _inline_state(img, path)
    assert data == before and not flags & INLINE_DATA_FL
    assert xattrs(img, path) == {"user.keep": b"me"}
    assert "system.data" not in subprocess.run(
        ["debugfs", "-R", f"ea_list {path}", str(img)], capture_output=True, text=True).stdout
    ino = inode_of(img, path)
    assert ino.f["i_blocks_lo"] == 8
    fsck_ok(img)


def _spill_inline_dir(fs, h, path: str) -> None:
    """Test setup: move an inline directory's last entry into the system.data area (the
    layout the kernel makes when an inline directory grows past i_block)."""
    ino = fs.inode_of(path)
    body = inline.inline_body(fs, ino)
    ents, err = de.parse_block(body[4:60], 56, True)
    assert err is None and len(ents) == 2 and ino.size == 60
    a, b = ents
    head = body[:4] + de.pack_entry(a.inode, 56, a.name, a.file_type)
    tail = de.pack_entry(b.inode, 32, b.name, b.file_type)
    xw.set_raw(fs, h, ino, *xw.SYSTEM_DATA, tail, inode_only=True)
    ino.f["i_block"] = head
    ino.set_size(60 + len(tail))
    fs.write_inode(h, ino)


@pytest.mark.parametrize("path", ["/d1", "/d2"])  # d2 spills into system.data
def test_take_inline_dir(tmp_path, path):
    img = make(tmp_path, inline_data=True)
    if path == "/d2":
        apply(img, lambda fs, h: _spill_inline_dir(fs, h, path))
        fsck_ok(img)
    d = inode_of(img, path)
    assert d.flags & INLINE_DATA_FL and (d.size > 60) == (path == "/d2")
    with ext4kit.open(img) as fs:
        want = sorted((e.inode(), e.name.encode()) for e in fs.scandir(path))

    def go(fs, h):
        ino = fs.inode_of(path)
        parent, entries = inline.take_inline_dir(fs, h, ino)
        assert parent == 2
        assert sorted((i, n) for i, n, _ft in entries) == want
        assert all(ft == 1 for _i, _n, ft in entries)
        assert not ino.flags & INLINE_DATA_FL and ino.size == 0
        # what the directory code does next: a block directory with the same entries
        (m,) = fs.mapper(ino).allocate(h, ino, 0, 1)
        csum = fs.sb.metadata_csum
        buf = de.pack_block([(ino.ino, b".", 2), (parent, b"..", 2)] + entries,
                            fs.block_size, True, csum_tail=csum)
        if csum:
            de.set_leaf_checksum(buf, fs.inode_seed(ino))
        tb = h.get_create_access(m.physical)
        tb[:] = buf
        h.dirty_metadata(m.physical)
        ino.set_size(fs.block_size)
        fs.write_inode(h, ino)
    apply(img, go)
    with ext4kit.open(img) as fs:
        assert sorted((e.inode(), e.name.encode()) for e in fs.scandir(path)) == want
        assert len(want) == 2
        assert not fs.inode_of(path).flags & INLINE_DATA_FL
    fsck_ok(img)


# ======================================================================================
# random sequences against a model
# ======================================================================================
_NAMES = ["user.a", "user.bb", "user.\u00e9t\u00e9", "user.ccc", "trusted.t", "security.s", "user.long" + "x" * 40]
_op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(_NAMES),
              st.integers(0, 900).map(lambda n: bytes((n + i) % 251 for i in range(n))),
              st.sampled_from([0, 0, XATTR_CREATE, XATTR_REPLACE])),
    st.tuples(st.just("rm"), st.sampled_from(_NAMES), st.just(b""), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(_op, min_size=1, max_size=40), csum=st.booleans())
def test_random_sequences(tmp_path_factory, ops, csum):
    tmp = tmp_path_factory.mktemp("hyp")
    img = make(tmp, csum=csum)
    free0 = free_blocks(img)
    model: dict[str, bytes] = {}

    def go(fs, h):
        ino = fs.inode_of("/f1")
        for kind, name, value, flags in ops:
            exp = None
            if kind == "set":
                if flags & XATTR_CREATE and name in model:
                    exp = errno.EEXIST
                elif flags & XATTR_REPLACE and name not in model:
                    exp = errno.ENODATA
            elif name not in model:
                exp = errno.ENODATA
            try:
                if kind == "set":
                    xw.set_xattr(fs, h, ino, name, value, flags)
                else:
                    xw.remove_xattr(fs, h, ino, name)
            except OSError as exc:
                if exc.errno == errno.ENOSPC and exp is None:
                    continue  # all of them together may outgrow inode + block
                assert exc.errno == exp, (kind, name, exc)
                continue
            assert exp is None
            if kind == "set":
                model[name] = value
            else:
                del model[name]
    apply(img, go)
    assert xattrs(img, "/f1") == model
    ino = inode_of(img, "/f1")
    assert free_blocks(img) == free0 - (1 if ino.file_acl else 0)
    assert ino.f["i_blocks_lo"] == 8 * (2 if ino.file_acl else 1)
    fsck_ok(img)
