"""ExtentMapper: extent-tree maintenance checked against a model, the reader and e2fsck."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ext4kit
from ext4kit.fs.alloc import NoSpace
from ext4kit.ondisk import extent as ext
from wtools import assert_fsck_clean, make_image, writable

# ---------------------------------------------------------------------------- helpers


def new_file(fs, h):
    ino = fs.new_inode(h, 0o100644, fs.get_inode(2))
    ino.set_links(1)
    return ino


def set_size(fs, inode, model):
    """i_size past the last mapped block. (e2fsprogs derives the length of the last index
    entry of the root from i_size, so a subtree starting past EOF, possible with unwritten
    extents kept past EOF, makes e2fsck report "end of extent exceeds allowed value".)"""
    last = max(model, default=-1) + 1
    inode.set_size(last * fs.block_size)


def link(image: Path, ino: int, name: str) -> None:
    r = subprocess.run(["debugfs", "-w", "-R", f"ln <{ino}> /{name}", str(image)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def model_apply(model, mapped):
    for m in mapped:
        for i in range(m.length):
            model[m.logical + i] = (m.physical + i, m.uninit)


def runs_to_model(runs):
    out = {}
    for r in runs:
        for i in range(r.length):
            out[r.logical + i] = (r.physical + i, r.uninit)
    return out


def read_back(image: Path, ino: int):
    fs = ext4kit.open(image)
    try:
        inode = fs.get_inode(ino)
        return fs.inode_block_map(inode), inode
    finally:
        fs.close()


def tree_depth(inode) -> int:
    return ext.parse_header(inode.i_block).depth


def free_blocks(image: Path) -> int:
    fs = ext4kit.open(image)
    try:
        return sum(gd.free_blocks_count for gd in fs.groups)
    finally:
        fs.close()


def finish(image: Path, ino: int, model: dict, name: str = "f") -> list:
    """Link the file, e2fsck it, and compare the read-back map with the model."""
    link(image, ino, name)
    assert_fsck_clean(image)
    runs, _ = read_back(image, ino)
    assert runs_to_model(runs) == model
    return runs


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
@pytest.mark.parametrize("bs", [1024, 4096])
def test_sequential_appends_merge(tmp_path, kind, bs):
    image = make_image(tmp_path / "fs.img", kind, "16M", block_size=bs)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            for lb in range(40):
                got = m.allocate(h, inode, lb, 1)
                assert len(got) == 1 and got[0].new and got[0].length == 1
                model_apply(model, got)
            # already mapped: returned with new=False
            again = m.allocate(h, inode, 0, 40)
            assert all(not x.new for x in again) and sum(x.length for x in again) == 40
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    runs = finish(image, ino, model)
    assert len(runs) == 1
    _, inode = read_back(image, ino)
    assert tree_depth(inode) == 0
    assert inode.blocks_512(True, bs) == 40 * bs // 512


def debugfs_extents(image: Path, ino: int) -> str:
    r = subprocess.run(["debugfs", "-R", f"ex <{ino}>", str(image)], capture_output=True,
                       text=True, timeout=60)
    return r.stdout


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
@pytest.mark.parametrize("bs", [1024, 4096])
def test_fragmented_depth_then_fill_and_truncate(tmp_path, kind, bs):
    """Every other block: leaf splits, index splits (1 KiB: depth 2); then filling the gaps
    merges everything back; truncate to 0 frees it all and the tree returns to depth 0."""
    image = make_image(tmp_path / "fs.img", kind, "32M", block_size=bs)
    mkfs_free = free_blocks(image)
    per = (bs - 12) // 12
    n = 4 * per + 40 if bs == 1024 else per + 40  # 1 KiB: > 4 leaves full -> depth 2
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            for i in range(n):
                model_apply(model, m.allocate(h, inode, 2 * i, 1))
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    runs = finish(image, ino, model)
    assert len(runs) == n
    _, inode = read_back(image, ino)
    depth = tree_depth(inode)
    assert depth == (2 if bs == 1024 else 1)
    # i_blocks = data + tree blocks, which e2fsck accepted; tree blocks counted right
    out = debugfs_extents(image, ino)
    assert re.search(rf"^\s*{depth - 1}/\s*{depth}\s", out, re.M)
    assert free_blocks(image) == mkfs_free - n - (inode.blocks_512(True, bs) * 512 // bs - n)

    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(ino)
            m = fs.mapper(inode)
            for i in range(n):  # fill gaps in the physical holes left by the goal
                model_apply(model, m.allocate(h, inode, 2 * i + 1, 1))
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
    assert_fsck_clean(image)
    runs, inode = read_back(image, ino)
    assert runs_to_model(runs) == model
    assert len(runs) < 2 * n  # some filled gaps merged both neighbours

    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(ino)
            fs.mapper(inode).truncate(h, inode, 0)
            inode.set_size(0)
            fs.write_inode(h, inode)
    assert_fsck_clean(image)
    runs, inode = read_back(image, ino)
    assert runs == [] and tree_depth(inode) == 0 and inode.blocks_512(True, bs) == 0
    assert free_blocks(image) == mkfs_free


def test_gap_fill_merges_both_neighbours(tmp_path):
    image = make_image(tmp_path / "fs.img", "ext4", "16M", block_size=4096)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            for lb in (0, 2, 4, 1, 3):
                model_apply(model, m.allocate(h, inode, lb, 1))
            assert ext.parse_header(inode.i_block).entries == 1
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    assert len(finish(image, ino, model)) == 1


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
def test_reverse_order_inserts_fix_index_keys(tmp_path, kind):
    """Inserting before the first extent of the leftmost leaf changes index keys."""
    image = make_image(tmp_path / "fs.img", kind, "32M", block_size=1024)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            for i in reversed(range(200)):
                model_apply(model, m.allocate(h, inode, 3 * i, 1))
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    finish(image, ino, model)
    _, inode = read_back(image, ino)
    assert tree_depth(inode) == 1


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
@pytest.mark.parametrize("bs", [1024, 4096])
def test_punch_and_partial_truncate(tmp_path, kind, bs):
    image = make_image(tmp_path / "fs.img", kind, "32M", block_size=bs)
    mkfs_free = free_blocks(image)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            got = m.allocate(h, inode, 0, 3000)
            model_apply(model, got)
            # punch holes in the middle of extents (splits them) and across extents
            for s in range(10, 2900, 97):
                m.punch(h, inode, s, 5)
                for lb in range(s, s + 5):
                    model.pop(lb, None)
            m.punch(h, inode, 1000, 500)
            for lb in range(1000, 1500):
                model.pop(lb, None)
            m.truncate(h, inode, 2500)
            for lb in range(2500, 3000):
                model.pop(lb, None)
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    finish(image, ino, model)
    _, inode = read_back(image, ino)
    assert inode.blocks_512(True, bs) * 512 // bs >= len(model)
    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(ino)
            fs.mapper(inode).punch(h, inode, 0, 1 << 20)
            inode.set_size(0)
            fs.write_inode(h, inode)
    assert_fsck_clean(image)
    runs, inode = read_back(image, ino)
    assert runs == [] and tree_depth(inode) == 0
    assert free_blocks(image) == mkfs_free


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
@pytest.mark.parametrize("bs", [1024, 4096])
def test_fallocate_then_mark_written(tmp_path, kind, bs):
    image = make_image(tmp_path / "fs.img", kind, "32M", block_size=bs)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            got = m.allocate(h, inode, 0, 2000, uninit=True)
            assert all(x.uninit and x.new for x in got)
            model_apply(model, got)
            # existing unwritten extents are returned as they are
            again = m.allocate(h, inode, 100, 10)
            assert again == [type(again[0])(100, model[100][0], 10, True, False)]
            # written pieces: start, middle (3-way split), end, across extents, repeats
            pieces = [(0, 5), (50, 10), (1990, 10), (200, 400), (60, 3), (55, 5), (400, 10)]
            pieces += [(700 + 3 * i, 1) for i in range(150)]  # many 3-way splits: leaf splits
            for s, c in pieces:
                m.mark_written(h, inode, s, c)
                for lb in range(s, s + c):
                    model[lb] = (model[lb][0], False)
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    runs = finish(image, ino, model)
    # the written [50, 63) and [200, 600) ran together into single extents
    assert any(r.logical == 50 and r.length == 13 and not r.uninit for r in runs)
    assert any(r.logical == 200 and r.length == 400 and not r.uninit for r in runs)
    before = len(runs)
    # writing the rest converts everything back into written extents, merged inside each
    # leaf (as the kernel, extents in different leaves are not merged)
    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(ino)
            fs.mapper(inode).mark_written(h, inode, 0, 2000)
            for lb in model:
                model[lb] = (model[lb][0], False)
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
    assert_fsck_clean(image)
    runs, inode = read_back(image, ino)
    assert runs_to_model(runs) == model
    assert len(runs) < before // 4 and all(not r.uninit for r in runs)


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
def test_large_allocation_is_fast_and_few_extents(tmp_path, kind):
    import time

    image = make_image(tmp_path / "fs.img", kind, "1100M", block_size=4096)
    mkfs_free = free_blocks(image)
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            t = time.perf_counter()
            got = fs.mapper(inode).allocate(h, inode, 0, 262144)
            elapsed = time.perf_counter() - t
            assert sum(x.length for x in got) == 262144
            assert len(got) < 40
            assert elapsed < 5
            inode.set_size(262144 * 4096)
            fs.write_inode(h, inode)
            ino = inode.ino
    link(image, ino, "big")
    assert_fsck_clean(image)
    runs, _ = read_back(image, ino)
    assert sum(r.length for r in runs) == 262144
    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(ino)
            fs.mapper(inode).truncate(h, inode, 0)
            inode.set_size(0)
            fs.write_inode(h, inode)
    assert_fsck_clean(image)
    assert free_blocks(image) == mkfs_free


def _fill(fs, h, inode, lblk):
    """Allocate from ``lblk`` until the file system is full."""
    m = fs.mapper(inode)
    with pytest.raises(NoSpace):
        m.allocate(h, inode, lblk, 1 << 20)


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
def test_enospc_leaves_tree_consistent(tmp_path, kind):
    image = make_image(tmp_path / "fs.img", kind, "8M", block_size=1024)
    with writable(image) as fs:
        with fs.start() as h:
            b = new_file(fs, h)
            mb = fs.mapper(b)
            _fill(fs, h, b, 0)
            assert sum(gd.free_blocks_count for gd in fs.groups) == 0
            # punch holes until the in-inode root is full (4 extents, depth 0)
            spot = 100
            while ext.parse_header(b.i_block).entries < 4:
                mb.punch(h, b, spot, 1)
                spot += 100
            assert ext.parse_header(b.i_block).depth == 0
            c = new_file(fs, h)
            _fill(fs, h, c, 0)  # takes the punched blocks back
            assert sum(gd.free_blocks_count for gd in fs.groups) == 0
            before = (b.i_block, b.f["i_blocks_lo"])
            runs = fs.inode_block_map(b)
            r = max(runs, key=lambda r: r.length)
            # punching the middle of an extent needs a 5th entry: the root must grow
            with pytest.raises(NoSpace):
                mb.punch(h, b, r.logical + r.length // 2, 1)
            assert (b.i_block, b.f["i_blocks_lo"]) == before
            # one free block: the data gets it, the tree block for the grow does not
            cruns = fs.inode_block_map(c)
            last = cruns[-1]
            fs.mapper(c).punch(h, c, last.logical + last.length - 1, 1)
            assert sum(gd.free_blocks_count for gd in fs.groups) == 1
            with pytest.raises(NoSpace):
                mb.allocate(h, b, 50_000, 1)
            assert (b.i_block, b.f["i_blocks_lo"]) == before
            assert sum(gd.free_blocks_count for gd in fs.groups) == 1
            assert fs.inode_block_map(b) == runs
            # the last free block still serves an allocation that merges (no tree block)
            got = fs.mapper(c).allocate(h, c, last.logical + last.length - 1, 1)
            assert got[0].physical == last.physical + last.length - 1
            assert sum(gd.free_blocks_count for gd in fs.groups) == 0
            bmodel = runs_to_model(fs.inode_block_map(b))
            cmodel = runs_to_model(fs.inode_block_map(c))
            set_size(fs, b, bmodel)
            set_size(fs, c, cmodel)
            fs.write_inode(h, b)
            fs.write_inode(h, c)
            ino_b, ino_c = b.ino, c.ino
    link(image, ino_c, "c")
    finish(image, ino_b, bmodel, "b")
    runs, inode = read_back(image, ino_b)
    assert tree_depth(inode) == 0
    assert free_blocks(image) == 0


def test_enospc_during_leaf_split_in_deep_tree(tmp_path):
    """A full leaf and a full file system: the split fails, nothing changes or leaks."""
    image = make_image(tmp_path / "fs.img", "ext4", "8M", block_size=1024)
    with writable(image) as fs:
        with fs.start() as h:
            a = new_file(fs, h)
            m = fs.mapper(a)
            for i in range(84):  # 84 extents: depth 1, one full leaf
                m.allocate(h, a, 2 * i, 1)
            assert ext.parse_header(a.i_block).depth == 1
            a.set_size(200 * 1024)  # the reader bounds the extent count by i_size
            filler = new_file(fs, h)
            _fill(fs, h, filler, 0)
            filler.set_size(1 << 30)
            runs = fs.inode_block_map(a)
            before = (a.i_block, a.f["i_blocks_lo"])
            with pytest.raises(NoSpace):
                m.allocate(h, a, 1000, 1)
            assert (a.i_block, a.f["i_blocks_lo"]) == before
            assert fs.inode_block_map(a) == runs
            amodel = runs_to_model(runs)
            fmodel = runs_to_model(fs.inode_block_map(filler))
            set_size(fs, a, amodel)
            set_size(fs, filler, fmodel)
            fs.write_inode(h, a)
            fs.write_inode(h, filler)
            ino_a, ino_f = a.ino, filler.ino
    link(image, ino_f, "filler")
    finish(image, ino_a, amodel, "a")


@pytest.mark.parametrize("what", ["root_magic", "leaf_magic", "leaf_depth", "self_loop"])
def test_corrupt_trees_raise(tmp_path, what):
    from ext4kit.errors import CorruptError

    image = make_image(tmp_path / "fs.img", "ext4", "16M", block_size=1024)
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            for i in range(100):
                m.allocate(h, inode, 2 * i, 1)
            root = bytearray(inode.i_block)
            leaf = ext.parse_indexes(root, 1)[0].leaf
            if what == "root_magic":
                root[0] = 0
                inode.f["i_block"] = bytes(root)
            else:
                buf = h.get_write_access(leaf)
                if what == "leaf_magic":
                    buf[0] = 0
                elif what == "leaf_depth":
                    buf[6] = 3
                else:  # the leaf claims to be an index pointing at itself
                    buf[:] = ext.pack_node([ext.pack_index(0, leaf)], 84, 0, 1024)
                h.dirty_metadata(leaf)
                fs.buffers.dirty[leaf] = buf
            for op in (lambda: m.allocate(h, inode, 1, 1),
                       lambda: m.punch(h, inode, 0, 10),
                       lambda: m.truncate(h, inode, 0),
                       lambda: m.mark_written(h, inode, 0, 10)):
                with pytest.raises(CorruptError):
                    op()
            fs.journal.running = None  # drop the damage instead of committing it


# ---------------------------------------------------------------------------- random model

SPAN = 700
_ops = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, SPAN), st.integers(1, 80), st.booleans()),
    st.tuples(st.just("frag"), st.integers(0, SPAN), st.integers(1, 150)),
    st.tuples(st.just("punch"), st.integers(0, SPAN), st.integers(1, 120)),
    st.tuples(st.just("trunc"), st.integers(0, SPAN + 300)),
    st.tuples(st.just("write"), st.integers(0, SPAN), st.integers(1, 120)),
)
_templates: dict = {}


def _template(tmp_root: Path, kind: str) -> bytes:
    if kind not in _templates:
        img = make_image(tmp_root / f"template-{kind}.img", kind, "16M", block_size=1024)
        _templates[kind] = (img.read_bytes(), free_blocks(img))
    return _templates[kind]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["ext4", "ext4-nocsum"]), deep=st.booleans(),
       ops=st.lists(_ops, min_size=1, max_size=14))
def test_random_sequences_against_model(tmp_path, kind, deep, ops):
    """``deep`` starts from a depth-2 tree (every other block of [0, 800))."""
    raw, mkfs_free = _template(tmp_path, kind)
    image = tmp_path / "rand.img"
    image.write_bytes(raw)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            inode.set_size(1 << 30)  # the reader bounds the extent count by i_size
            m = fs.mapper(inode)
            if deep:
                for i in range(400):
                    model_apply(model, m.allocate(h, inode, 2 * i, 1, uninit=i % 3 == 0))
                assert tree_depth(inode) == 2
            for op in ops:
                if op[0] == "alloc":
                    _, lb, c, un = op
                    got = m.allocate(h, inode, lb, c, uninit=un)
                    assert [x.logical for x in got][0] == lb
                    assert sum(x.length for x in got) == c
                    for x in got:
                        if not x.new:
                            assert all(model[x.logical + i] == (x.physical + i, x.uninit)
                                       for i in range(x.length))
                    model_apply(model, got)
                elif op[0] == "frag":
                    _, lb, n = op
                    for i in range(n):
                        model_apply(model, m.allocate(h, inode, lb + 2 * i, 1))
                elif op[0] == "punch":
                    _, lb, c = op
                    m.punch(h, inode, lb, c)
                    for x in range(lb, lb + c):
                        model.pop(x, None)
                elif op[0] == "trunc":
                    m.truncate(h, inode, op[1])
                    for x in [x for x in model if x >= op[1]]:
                        del model[x]
                else:
                    _, lb, c = op
                    m.mark_written(h, inode, lb, c)
                    for x in range(lb, lb + c):
                        if x in model:
                            model[x] = (model[x][0], False)
                assert runs_to_model(fs.inode_block_map(inode)) == model
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    finish(image, ino, model)
    with writable(image) as fs:
        with fs.start() as h:
            inode = fs.get_inode(ino)
            fs.mapper(inode).truncate(h, inode, 0)
            inode.set_size(0)
            fs.write_inode(h, inode)
    assert_fsck_clean(image)
    runs, inode = read_back(image, ino)
    assert runs == [] and tree_depth(inode) == 0 and inode.blocks_512(True, 1024) == 0
    assert free_blocks(image) == mkfs_free


@pytest.mark.parametrize("kind", ["ext4", "ext4-nocsum"])
def test_index_node_split_then_shrink_by_truncation(tmp_path, kind):
    """1 KiB blocks, 7300 one-block extents: more than 84 leaves, so the level-1 index node
    splits (root with 2 index entries, depth 2); truncating step by step shrinks the depth
    back to 1 and then 0 and returns every block."""
    image = make_image(tmp_path / "fs.img", kind, "32M", block_size=1024)
    mkfs_free = free_blocks(image)
    model: dict = {}
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            m = fs.mapper(inode)
            for i in range(7300):
                model_apply(model, m.allocate(h, inode, 2 * i, 1))
            hdr = ext.parse_header(inode.i_block)
            assert (hdr.depth, hdr.entries) == (2, 2)
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    finish(image, ino, model)
    expected_depth = {9000: 2, 100: 1, 8: 0, 0: 0}
    for cut, depth in expected_depth.items():
        with writable(image) as fs:
            with fs.start() as h:
                inode = fs.get_inode(ino)
                fs.mapper(inode).truncate(h, inode, cut)
                for x in [x for x in model if x >= cut]:
                    del model[x]
                set_size(fs, inode, model)
                fs.write_inode(h, inode)
                assert tree_depth(inode) == depth, cut
        assert_fsck_clean(image)
        runs, inode = read_back(image, ino)
        assert runs_to_model(runs) == model
        tree_blocks = inode.blocks_512(True, 1024) * 512 // 1024 - len(model)
        assert tree_blocks >= 0 and (tree_blocks == 0) == (depth == 0)
    assert free_blocks(image) == mkfs_free


def test_inode_without_map_gets_an_empty_tree(tmp_path):
    from ext4kit.ondisk.inode import EXTENTS_FL

    image = make_image(tmp_path / "fs.img", "ext4", "16M", block_size=4096)
    with writable(image) as fs:
        with fs.start() as h:
            inode = new_file(fs, h)
            inode.f["i_block"] = bytes(60)
            inode.set_flag(EXTENTS_FL, False)
            m = fs.mapper(inode)
            got = m.allocate(h, inode, 0, 3)
            assert inode.flags & EXTENTS_FL and sum(x.length for x in got) == 3
            model: dict = {}
            model_apply(model, got)
            set_size(fs, inode, model)
            fs.write_inode(h, inode)
            ino = inode.ino
    finish(image, ino, model)
