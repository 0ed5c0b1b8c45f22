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
    """Every htree directory is valid and needs no rehash: ``e2fsck -fn`` (which reports
    htree problems and "should be rehashed" cases) says nothing about HTREE. (e2fsck 1.47
    refuses -n together with -D, so the -D pass itself cannot be run read-only.)"""
    r = fsck(image)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "HTREE" not in r.stdout and "htree" not in r.stdout, r.stdout[-4000:]


def debugfs(image: Path, *cmds: str) -> str:
    r = subprocess.run(["debugfs", "-R", " ".join(cmds) if len(cmds) == 1 else cmds[0],
                        str(image)], capture_output=True, text=True, timeout=600)
    return r.stdout


def can_mount() -> str | None:
    """None when loop mounts work here, else the reason they cannot."""
    import os
    import shutil

    if os.geteuid() != 0:
        return "kernel mount needs root"
    if shutil.which("mount") is None:
        return "mount(8) not installed"
    if not Path("/dev/loop-control").exists():
        return "no loop device support (/dev/loop-control missing)"
    return None


@contextlib.contextmanager
def kernel_mount(image: Path, mnt: Path, options: str = "ro") -> Iterator[Path]:
    """Loop-mount ``image`` at ``mnt`` (the loop device is released by umount: autoclear);
    always unmounted, even when the body fails."""
    import time

    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "ext4", "-o", f"loop,{options}", str(image), str(mnt)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"kernel refused to mount {image}: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        for attempt in range(10):
            u = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=120)
            if u.returncode == 0:
                break
            time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError(f"umount {mnt} failed: {u.stderr}")
