"""Allocators checked by e2fsck: after allocating blocks and inodes that no file uses,
e2fsck's pass 5 must report exactly those bits as differences (and nothing else); after
freeing them again the image must be clean."""

from __future__ import annotations

import re
import subprocess

import pytest

from ext4kit.fs.writer import WritableFileSystem


def _mkfs(path, *args):
    subprocess.run(["mke2fs", "-q", "-F", *args[:-1], str(path), args[-1]], check=True)


def _fsck(path):
    r = subprocess.run(["e2fsck", "-fn", str(path)], capture_output=True, text=True)
    return r.returncode, r.stdout


def _diff_set(text, what):
    m = re.search(what + r" bitmap differences:\s+(.*)", text)
    out = set()
    if not m:
        return out
    for tok in m.group(1).split():
        tok = tok.lstrip("+-").strip("()")
        if "--" in tok:
            a, b = tok.split("--")
            out.update(range(int(a), int(b) + 1))
        elif tok.lstrip("-").isdigit():
            out.add(int(tok.lstrip("-")))
    return out


@pytest.mark.parametrize("args", [
    ("-t", "ext4", "-b", "4096", "64M"),
    ("-t", "ext4", "-b", "1024", "40M"),
    ("-t", "ext2", "-b", "1024", "20M"),
    ("-t", "ext4", "-O", "^metadata_csum,uninit_bg", "64M"),
    ("-t", "ext4", "-O", "^64bit,^flex_bg", "64M"),
], ids=["ext4-4k", "ext4-1k", "ext2", "gdt_csum", "no64-noflex"])
def test_allocations_are_exactly_what_e2fsck_sees(tmp_path, args):
    img = tmp_path / "a.img"
    _mkfs(img, *args)
    fs = WritableFileSystem.open_writable(img)
    allocated_blocks: list[int] = []
    allocated_inodes: list[int] = []
    try:
        with fs.start() as h:
            for goal, n in ((0, 5), (fs.blocks_count // 2, 300), (fs.blocks_count - 10, 50)):
                start, got = fs.alloc.allocate_blocks(h, goal, n)
                assert 1 <= got <= n  # near the end of the disk fewer may be free
                allocated_blocks.extend(range(start, start + got))
            for parent, is_dir in ((2, True), (2, False), (12, False), (2, True)):
                allocated_inodes.append(fs.alloc.allocate_inode(h, parent, is_dir))
        fs.commit()
    finally:
        fs.close()
    assert len(set(allocated_blocks)) == len(allocated_blocks)
    rc, out = _fsck(img)
    assert rc == 4, out
    assert _diff_set(out, "Block") == set(allocated_blocks), out
    assert _diff_set(out, "Inode") == set(allocated_inodes), out
    # nothing else: only bitmap-difference and count messages
    for line in out.splitlines():
        assert not re.search(r"checksum|Group descriptor|corrupt|Bad", line, re.I), line

    fs = WritableFileSystem.open_writable(img)
    try:
        with fs.start() as h:
            for ino, is_dir in zip(allocated_inodes, (True, False, False, True)):
                fs.alloc.free_inode(h, ino, is_dir)
            runs = sorted(allocated_blocks)
            for b in runs:
                fs.alloc.free_blocks(h, b, 1)
        fs.commit()
    finally:
        fs.close()
    rc, out = _fsck(img)
    assert rc == 0, out


def test_enospc_when_full(tmp_path):
    img = tmp_path / "s.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(img), "4M"], check=True)
    from ext4kit.fs.alloc import NoSpace

    fs = WritableFileSystem.open_writable(img)
    try:
        total = 0
        with fs.start() as h:
            with pytest.raises(NoSpace):
                while True:
                    _, n = fs.alloc.allocate_blocks(h, 0, 1000)
                    total += n
        assert total > 0
        assert sum(gd.free_blocks_count for gd in fs.groups) == 0
    finally:
        fs.close()
