"""Shared helpers for writer tests: fresh images, a writable handle on them, the e2fsck oracle.

    with fresh_fs(tmp_path, "ext4", "64M", block_size=1024) as fs:
        with fs.start() as h:
            ino = fs.new_inode(h, 0o100644, fs.get_inode(2))
            ...
    assert_fsck_clean(image)
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ext4kit.mkfs as _mkfs
from ext4kit.fs.writer import WritableFileSystem

# file-system kinds the writer must handle: (fs_type, extra mkfs features)
KINDS = {
    "ext4": ("ext4", ()),
    "ext4-nocsum": ("ext4", ("^metadata_csum",)),
    "ext4-noflex": ("ext4", ("^flex_bg", "^metadata_csum", "uninit_bg")),
    "ext3": ("ext3", ()),
    "ext2": ("ext2", ()),
    "ext4-inline": ("ext4", ("inline_data",)),
}


def make_image(path: Path, kind: str = "ext4", size: str = "64M", *, block_size: int = 4096,
               inodes: int | None = None, features: tuple[str, ...] = ()) -> Path:
    fs_type, feats = KINDS[kind]
    _mkfs.mkfs(path, size, fs_type=fs_type, block_size=block_size, inodes=inodes,
               features=",".join(feats + features), now=1_700_000_000)
    return path


@contextlib.contextmanager
def writable(image: Path) -> Iterator[WritableFileSystem]:
    fs = WritableFileSystem.open_writable(image)
    try:
        yield fs
    finally:
        fs.close()  # commits


@contextlib.contextmanager
def fresh_fs(tmp_path: Path, kind: str = "ext4", size: str = "64M", *, block_size: int = 4096,
             inodes: int | None = None, name: str = "fs.img") -> Iterator[WritableFileSystem]:
    image = make_image(tmp_path / name, kind, size, block_size=block_size, inodes=inodes)
    with writable(image) as fs:
        yield fs


def fsck(image: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["e2fsck", "-fn", *args, str(image)], capture_output=True, text=True,
                          timeout=600)


def assert_fsck_clean(image: Path) -> None:
    r = fsck(image)
    assert r.returncode == 0, f"e2fsck -fn exit {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"


def assert_no_rehash_needed(image: Path) -> None:
    """e2fsck -fnD: every htree directory is already optimal enough that -D changes nothing
    it would report as a problem (exit 0)."""
    r = subprocess.run(["e2fsck", "-fn", "-D", str(image)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-4000:]


def debugfs(image: Path, *cmds: str) -> str:
    r = subprocess.run(["debugfs", "-R", " ".join(cmds) if len(cmds) == 1 else cmds[0],
                        str(image)], capture_output=True, text=True, timeout=600)
    return r.stdout
