"""IndirectMapper (ext2/ext3 block maps): allocate / truncate / punch checked against a
model, read back through a fresh ext4kit.open, and judged by e2fsck -fn.

Files are linked into the root with debugfs after the writable fs is closed (directory
writing lives elsewhere)."""

from __future__ import annotations

import errno
import itertools
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ext4kit
from ext4kit.errors import CorruptError
from ext4kit.fs.alloc import NoSpace
from ext4kit.fs.indwrite import IndirectMapper
from wtools import assert_fsck_clean, make_image, writable

KINDS = [("ext2", 1024), ("ext2", 4096), ("ext3", 1024), ("ext3", 4096)]


def free_blocks(fs) -> int:
    return sum(g.free_blocks_count for g in fs.groups)


def tag(lblk: int, gen: int, bs: int) -> bytes:
    head = struct.pack("<QQ", lblk, gen)
    return (head * (bs // len(head)))[:bs]


class File:
    """A test file: its inode, the mapper, and the model {logical: (physical, gen)}."""

    def __init__(self, fs, h):
        self.fs = fs
        self.inode = fs.new_inode(h, 0o100644, fs.get_inode(2))
        self.inode.set_links(1)
        self.m = fs.mapper(self.inode)
        assert isinstance(self.m, IndirectMapper)
        self.model: dict[int, tuple[int, int]] = {}
        self.gen = 0

    def allocate(self, h, lblk: int, count: int):
        fs = self.fs
        bs = fs.block_size
        self.gen += 1
        res = self.m.allocate(h, self.inode, lblk, count)
        # the result covers the range in order, without gaps
        pos = lblk
        for r in res:
            assert r.logical == pos and r.length > 0 and not r.uninit
            for i in range(r.length):
                lg = r.logical + i
                if r.new:
                    assert lg not in self.model
                    self.model[lg] = (r.physical + i, self.gen)
                else:
                    assert self.model[lg][0] == r.physical + i
            if r.new:
                data = b"".join(tag(r.logical + i, self.gen, bs) for i in range(r.length))
                fs.write_data(h, r.physical, data)
            pos += r.length
        assert pos == lblk + count
        return res

    def truncate(self, h, lblk: int):
        self.m.truncate(h, self.inode, lblk)
        self.model = {k: v for k, v in self.model.items() if k < lblk}

    def punch(self, h, lblk: int, count: int):
        self.m.punch(h, self.inode, lblk, count)
        self.model = {k: v for k, v in self.model.items() if not lblk <= k < lblk + count}

    def finish(self, h, size_blocks: int | None = None):
        if size_blocks is None:
            size_blocks = max(self.model, default=-1) + 1
        self.inode.set_size(size_blocks * self.fs.block_size)
        self.fs.write_inode(h, self.inode)

    def expected_runs(self) -> list[tuple[int, int, int]]:
        runs: list[list[int]] = []
        for lg in sorted(self.model):
            pb = self.model[lg][0]
            if runs and runs[-1][0] + runs[-1][2] == lg and runs[-1][1] + runs[-1][2] == pb:
                runs[-1][2] += 1
            else:
                runs.append([lg, pb, 1])
        return [tuple(r) for r in runs]


def link(image: Path, ino: int, name: str = "f") -> None:
    subprocess.run(["debugfs", "-w", "-R", f"ln <{ino}> /{name}", str(image)], check=True,
                   capture_output=True)


def check_image(image: Path, f: File, name: str = "f") -> None:
    """Link, fsck, and compare map and contents through a fresh read-only open."""
    link(image, f.inode.ino, name)
    assert_fsck_clean(image)
    rfs = ext4kit.open(image)
    try:
        inode = rfs.get_inode(f.inode.ino)
        runs: list[list[int]] = []  # coalesced (the reader splits at pointer arrays)
        for r in rfs.inode_block_map(inode):
            if runs and runs[-1][0] + runs[-1][2] == r[0] and runs[-1][1] + runs[-1][2] == r[1]:
                runs[-1][2] += r[2]
            else:
                runs.append([r[0], r[1], r[2]])
        assert [tuple(r) for r in runs] == f.expected_runs()
        bs = rfs.block_size
        for lg, (_, gen) in f.model.items():
            assert rfs.inode_read(inode, lg * bs, bs) == tag(lg, gen, bs), lg
        # a hole reads as zeros
        holes = (lg for lg in range(max(f.model, default=0)) if lg not in f.model)
        for lg in itertools.islice(holes, 5):
            assert rfs.inode_read(inode, lg * bs, bs) == bytes(bs)
    finally:
        rfs.close()


def image_for(tmp_path: Path, kind: str, bs: int, size: str | None = None) -> Path:
    if size is None:
        size = "64M" if bs == 4096 else "16M"
    return make_image(tmp_path / "fs.img", kind, size, block_size=bs)


def regions(bs: int) -> tuple[int, int, int]:
    per = bs // 4
    return 12, 12 + per, 12 + per + per * per  # first single, double, triple logical


# ---------------------------------------------------------------- small appends (priority)
@pytest.mark.parametrize("kind,bs", KINDS)
def test_append_one_block_at_a_time(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    _, dbl, _ = regions(bs)
    n = dbl + 20  # direct, the whole single indirect block, into double
    with writable(image) as fs:
        with fs.start() as h:
            f = File(fs, h)
            for lg in range(n):
                res = f.allocate(h, lg, 1)
                assert len(res) == 1 and res[0].new
            # re-asking reports the existing blocks, allocating nothing
            free = free_blocks(fs)
            res = f.allocate(h, 0, n)
            assert not any(r.new for r in res) and free_blocks(fs) == free
            f.finish(h)
            # data + single ind + double ind + one ind under it
            assert f.inode.blocks_512(False, bs) == (n + 3) * (bs // 512)
        # contiguous: data, then each indirect block right before the data it maps
        runs = fs.inode_block_map(f.inode)
        assert [r.length for r in runs] == [12, dbl - 12, 20]
        assert runs[1].physical == runs[0].physical + 13
        assert runs[2].physical == runs[1].physical + runs[1].length + 2
    check_image(image, f)


@pytest.mark.parametrize("kind,bs", KINDS)
def test_bulk_allocate_is_batched(tmp_path, kind, bs, monkeypatch):
    image = image_for(tmp_path, kind, bs, "128M" if bs == 4096 else "32M")
    n = 20000
    with writable(image) as fs:
        calls = [0]
        real = fs.alloc.allocate_blocks

        def counting(*a, **k):
            calls[0] += 1
            return real(*a, **k)

        monkeypatch.setattr(fs.alloc, "allocate_blocks", counting)
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            t = time.perf_counter()
            res = f.m.allocate(h, f.inode, 0, n)
            took = time.perf_counter() - t
            assert sum(r.length for r in res) == n and all(r.new for r in res)
            # one call per pointer array (plus indirect blocks), a few more at group edges
            per = bs // 4
            arrays = 1 + -(-(n - 12) // per)
            assert calls[0] <= 2 * arrays + 2 * fs.group_count + 4
            assert took < 5
            for r in res:
                for i in range(r.length):
                    f.model[r.logical + i] = (r.physical + i, 0)
            for r in res:  # data written in bulk
                fs.write_data(h, r.physical, b"".join(tag(r.logical + i, 0, bs)
                                                      for i in range(r.length)))
            f.finish(h)
            used = free0 - free_blocks(fs)
            assert used * (bs // 512) == f.inode.blocks_512(False, bs)
    check_image(image, f)


def test_large_range_262144_blocks(tmp_path):
    image = image_for(tmp_path, "ext2", 4096, "1100M")
    with writable(image) as fs:
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            t = time.perf_counter()
            res = f.m.allocate(h, f.inode, 0, 262144)
            assert time.perf_counter() - t < 20
            assert sum(r.length for r in res) == 262144
            t = time.perf_counter()
            f.m.truncate(h, f.inode, 0)
            assert time.perf_counter() - t < 20
            f.finish(h, 0)
        assert free_blocks(fs) == free0


# ---------------------------------------------------------------- sparse / deep maps
@pytest.mark.parametrize("kind,bs", KINDS)
def test_sparse_into_triple_indirect(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    sgl, dbl, tri = regions(bs)
    per = bs // 4
    with writable(image) as fs:
        with fs.start() as h:
            f = File(fs, h)
            f.allocate(h, 3, 2)
            f.allocate(h, sgl + 7, 3)
            f.allocate(h, dbl + per + 5, 2)  # second block under the double indirect
            f.allocate(h, tri, 1)
            f.allocate(h, tri + per * per + 3, 4)  # second double block under the triple
            f.allocate(h, tri + 2 * per * per + per + 1, 1)
            # a range spanning holes and existing blocks
            res = f.allocate(h, sgl + 5, 8)
            assert [(r.length, r.new) for r in res] == [(2, True), (3, False), (3, True)]
            f.finish(h, tri + 3 * per * per)
    check_image(image, f)


@pytest.mark.parametrize("kind,bs", [("ext2", 1024), ("ext3", 4096)])
def test_goal_follows_previous_block(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    with writable(image) as fs:
        with fs.start() as h:
            f = File(fs, h)
            f.allocate(h, 0, 5)
            f.allocate(h, 20, 1)  # into single indirect: goal after block 4's mapping
            f.allocate(h, 8, 2)
            f.finish(h, 21)
        p4 = f.model[4][0]
        # the indirect block is placed first, at the goal, then the data
        assert struct.unpack("<15I", f.inode.i_block)[12] == p4 + 1
        assert f.model[20][0] == p4 + 2
        assert f.model[8][0] == p4 + 3  # after the nearest mapped block before it (4 -> p4)
    check_image(image, f)


# ---------------------------------------------------------------- truncate / punch
@pytest.mark.parametrize("kind,bs", KINDS)
def test_truncate_to_zero_frees_everything(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    _, dbl, tri = regions(bs)
    with writable(image) as fs:
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            f.allocate(h, 0, dbl + 40)
            f.allocate(h, tri + 9, 3)
            f.finish(h, tri + 12)
            f.truncate(h, 0)
            assert free_blocks(fs) == free0
            assert f.inode.blocks_512(False, bs) == 0
            assert f.inode.i_block == bytes(60)
            f.finish(h, 0)
    check_image(image, f)


CUTS_1K = [0, 5, 12, 13, 100, 267, 268, 269, 268 + 256, 268 + 256 + 1, 600]


@pytest.mark.parametrize("kind", ["ext2", "ext3"])
@pytest.mark.parametrize("cut", CUTS_1K)
def test_truncate_partial(tmp_path, kind, cut):
    bs = 1024
    image = image_for(tmp_path, kind, bs)
    with writable(image) as fs:
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            f.allocate(h, 0, 700)
            f.truncate(h, cut)
            f.finish(h, cut)
            # what is left is exactly data + needed indirect blocks
            used = free0 - free_blocks(fs)
            assert used * 2 == f.inode.blocks_512(False, bs)
            ptrs = struct.unpack("<15I", f.inode.i_block)
            assert bool(ptrs[12]) == (cut > 12)
            assert bool(ptrs[13]) == (cut > 268)
            nind = (cut > 12) + (cut > 268) * (1 + -(-(cut - 268) // 256))
            assert used == cut + nind
    check_image(image, f)


@pytest.mark.parametrize("kind,bs", KINDS)
def test_punch(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    sgl, dbl, tri = regions(bs)
    per = bs // 4
    with writable(image) as fs:
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            n = dbl + 2 * per + 10
            f.allocate(h, 0, n)
            f.punch(h, 3, 4)  # direct pointers only
            f.punch(h, 10, 20)  # across direct/single
            # a whole indirect block's worth under the double: that block is freed
            f.punch(h, dbl + per, per)
            dind = struct.unpack("<15I", f.inode.i_block)[13]
            assert struct.unpack_from("<I", fs.read_block(dind), 4)[0] == 0
            f.punch(h, dbl + 2, 1)
            f.punch(h, n - 3, 100)  # past the end
            f.punch(h, tri, 1000)  # nothing there
            f.finish(h, n)
            used = free0 - free_blocks(fs)
            assert used * (bs // 512) == f.inode.blocks_512(False, bs)
            # punching the single indirect range entirely frees that indirect block
            f.punch(h, sgl, per)
            assert struct.unpack("<15I", f.inode.i_block)[12] == 0
            f.finish(h, n)
    check_image(image, f)


@pytest.mark.parametrize("kind,bs", [("ext2", 1024), ("ext3", 4096)])
def test_refill_after_punch(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    _, dbl, _ = regions(bs)
    with writable(image) as fs:
        with fs.start() as h:
            f = File(fs, h)
            f.allocate(h, 0, dbl + 30)
            f.punch(h, 5, dbl)
            res = f.allocate(h, 0, dbl + 30)
            assert [r.new for r in res][:3] == [False, True, True]
            f.finish(h)
    check_image(image, f)


def test_directory_blocks_are_freed_as_metadata(tmp_path, monkeypatch):
    image = image_for(tmp_path, "ext3", 1024)
    with writable(image) as fs:
        with fs.start() as h:
            calls = []
            real = fs.free_file_blocks

            def record(h, inode, start, count, *, metadata):
                calls.append((start, count, metadata))
                return real(h, inode, start, count, metadata=metadata)

            monkeypatch.setattr(fs, "free_file_blocks", record)
            for mode, data_is_meta in ((0o40755, True), (0o100644, False)):
                inode = fs.new_inode(h, mode, fs.get_inode(2))
                m = fs.mapper(inode)
                res = m.allocate(h, inode, 0, 20)
                data = {r.physical + i for r in res for i in range(r.length)}
                ind = struct.unpack("<15I", inode.i_block)[12]
                calls.clear()
                m.truncate(h, inode, 0)
                freed = {(b, meta) for s_, n, meta in calls for b in range(s_, s_ + n)}
                assert freed == {(b, data_is_meta) for b in data} | {(ind, True)}
                assert h.txn.revoked >= {ind}
                # leave the inodes out of the final image: they are never linked
                fs.alloc.free_inode(h, inode.ino, mode == 0o40755)
    assert_fsck_clean(image)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kind,bs", [("ext2", 1024), ("ext3", 1024), ("ext2", 4096)])
def test_enospc_leaves_map_consistent(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs, "4M")
    with writable(image) as fs:
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            with pytest.raises(NoSpace):
                f.m.allocate(h, f.inode, 0, fs.blocks_count + 10)
            assert free_blocks(fs) == 0
            f.inode.set_size(fs.blocks_count * 2 * bs)
            runs = fs.block_map(f.inode).runs
            # every allocated block is data of the file or one of its indirect blocks
            assert f.inode.blocks_512(False, bs) == free0 * (bs // 512)
            for r in runs:
                for i in range(r.length):
                    f.model[r.logical + i] = (r.physical + i, 1)
                fs.write_data(h, r.physical, b"".join(tag(r.logical + i, 1, bs)
                                                      for i in range(r.length)))
            last = max(f.model)
            assert len(f.model) == sum(r.length for r in runs)
            # a block in the triple range needs 3 new indirect blocks and the data block:
            # with 2 free blocks the indirect blocks fail, with 3 the data does; either way
            # the new (empty) indirect blocks are given back
            _, _, tri = regions(bs)
            for lo, n in ((0, 2), (2, 1)):
                f.punch(h, lo, n)
                k = free_blocks(fs)
                before = f.inode.i_block
                with pytest.raises(NoSpace):
                    f.m.allocate(h, f.inode, tri + 5, 1)
                assert f.inode.i_block == before
                assert free_blocks(fs) == k
                assert (free0 - k) * (bs // 512) == f.inode.blocks_512(False, bs)
            assert free_blocks(fs) == 3
            f.finish(h, last + 1)
    check_image(image, f)
    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(f.inode.ino)
            fs.mapper(inode).truncate(h, inode, 0)
            inode.set_size(0)
            fs.write_inode(h, inode)
        assert free_blocks(fs) == free0
    assert_fsck_clean(image)


@pytest.mark.parametrize("kind,bs", [("ext2", 1024), ("ext3", 4096)])
def test_corrupt_pointer(tmp_path, kind, bs):
    image = image_for(tmp_path, kind, bs)
    with writable(image) as fs:
        with fs.start() as h:
            f = File(fs, h)
            f.allocate(h, 0, 20)
            ptrs = list(struct.unpack("<15I", f.inode.i_block))
            ind = ptrs[12]
            # pointer outside the file system inside the single indirect block
            buf = h.get_write_access(ind)
            struct.pack_into("<I", buf, 4 * 3, fs.blocks_count + 7)
            h.dirty_metadata(ind)
            with pytest.raises(CorruptError):
                f.m.allocate(h, f.inode, 13, 4)
            with pytest.raises(CorruptError):
                f.m.truncate(h, f.inode, 0)
            ptrs[13] = fs.blocks_count + 100
            f.inode.f["i_block"] = struct.pack("<15I", *ptrs)
            with pytest.raises(CorruptError):
                f.m.allocate(h, f.inode, 12 + bs // 4 + 1, 1)
            f.inode.f["i_block"] = bytes(60)  # do not leave it for close/commit checks


@pytest.mark.parametrize("bs", [1024, 4096])
def test_limits(tmp_path, bs):
    image = image_for(tmp_path, "ext2", bs)
    with writable(image) as fs:
        with fs.start() as h:
            f = File(fs, h)
            per = bs // 4
            limit = 12 + per + per * per + per**3
            with pytest.raises(OSError) as ei:
                f.m.allocate(h, f.inode, limit - 1, 2)
            assert ei.value.errno == errno.EFBIG
            with pytest.raises(ValueError):
                f.m.allocate(h, f.inode, 0, 1, uninit=True)
            assert f.m.allocate(h, f.inode, 5, 0) == []
            free0 = free_blocks(fs)
            f.allocate(h, limit - 1, 1)  # the very last block is fine
            f.allocate(h, 0, 1)
            f.m.mark_written(h, f.inode, 0, 10)
            f.finish(h, limit)  # the largest size e2fsck accepts for the format
    check_image(image, f)
    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(f.inode.ino)
            fs.mapper(inode).truncate(h, inode, 0)
            assert inode.blocks_512(False, bs) == 0
            fs.write_inode(h, inode)
        assert free_blocks(fs) == free0
    assert_fsck_clean(image)


# ---------------------------------------------------------------- random sequences
# (op, in the triple-indirect range?, offset, count); low offsets cover direct, single and
# the start of double on both block sizes
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.just(False), st.integers(0, 1400), st.integers(1, 300)),
        st.tuples(st.just("alloc"), st.just(True), st.integers(0, 1 << 22), st.integers(1, 40)),
        st.tuples(st.just("trunc"), st.booleans(), st.integers(0, 1700), st.just(0)),
        st.tuples(st.just("punch"), st.just(False), st.integers(0, 1400), st.integers(1, 600)),
        st.tuples(st.just("punch"), st.just(True), st.integers(0, 1 << 22),
                  st.integers(1, 1 << 17)),
    ),
    min_size=1, max_size=12)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, kind=st.sampled_from(["ext2", "ext3"]), bs=st.sampled_from([1024, 4096]))
def test_random_sequences(tmp_path_factory, ops, kind, bs):
    tmp = tmp_path_factory.mktemp("rnd")
    image = image_for(tmp, kind, bs, "8M" if bs == 1024 else "32M")
    per = bs // 4
    _, _, tri = regions(bs)
    with writable(image) as fs:
        free0 = free_blocks(fs)
        with fs.start() as h:
            f = File(fs, h)
            for op, high, off, n in ops:
                lblk = tri + off % (3 * per * per) if high else off
                if op == "alloc":
                    f.allocate(h, lblk, n)
                elif op == "trunc":
                    f.truncate(h, lblk)
                else:
                    f.punch(h, lblk, n)
                used = free0 - free_blocks(fs)
                assert used * (bs // 512) == f.inode.blocks_512(False, bs)
                assert used >= len(f.model)
            f.finish(h)
    check_image(image, f)
