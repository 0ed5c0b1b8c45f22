"""ext4kit fsck against random corruption of images our own writer made.

Three small images (ext4 with a journal, ext3 with 1 KiB blocks and indirect maps, ext2)
are filled through ``ext4kit.open(img, "r+")``: nested directories, a directory large
enough for an htree, small / large / sparse files, fast and slow symlinks, hard links
and extended attributes. Each seeded case then damages metadata one way:

- ``flip``: a few random bytes of a metadata block are xor-ed with random values;
- ``zero``: a whole metadata block is zeroed;
- ``swap``: the block maps (``i_block``) of two in-use inodes are exchanged;
- ``dup``:  one block pointer of an inode is copied into another inode (shared block);

where the damaged block is drawn from one of: the superblock and first descriptor block,
the bitmaps, the inode-table blocks holding in-use inodes, and every other in-use block
that is not file data or journal log (directory, extent / indirect, xattr blocks); and the
inodes from the directories and files the population made (not the many tiny ones).

The verdict (acceptance (2) of the fsck issue): ``ext4kit fsck -fy`` runs in a child
process with a time limit and must not crash (no traceback) or hang; afterwards either
``e2fsck -fn`` calls the image clean, or the run exited with 4 and said why.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ext4kit
from ext4kit.mkfs import mkfs

E2FSCK = shutil.which("e2fsck") or "/usr/sbin/e2fsck"
if not Path(E2FSCK).exists():
    pytest.skip("e2fsck not installed", allow_module_level=True)

SEED = 20261121
KINDS = ("flip", "zero", "swap", "dup")
STYLES = {  # name: (fs_type, block size, size): at least two groups, so backups exist
    "ext4": ("ext4", 4096, "136M"),
    "ext3": ("ext3", 1024, "20M"),
    "ext2": ("ext2", 1024, "20M"),
}
CASES = [(style, kind, i) for i in range(4) for style in STYLES for kind in KINDS][:40]
TIMEOUT = 60
NOW = 1_700_000_000


def _populate(img: Path) -> None:
    with ext4kit.open(img, "r+") as fs:
        fs.makedirs("/a/b/c")
        fs.makedirs("/big")
        for i in range(180):  # several directory blocks: an htree where dir_index is on
            fs.write_bytes(f"/big/entry-with-a-long-name-{i:04d}", b"%d" % i)
        for i in range(12):
            fs.write_bytes(f"/a/f{i}", bytes([i]) * (i * 700))
        fs.write_bytes("/a/b/large", os.urandom(300_000))
        with fs.open("/a/b/sparse", "wb") as f:
            f.write(b"head")
            f.seek(2_000_000)
            f.write(b"tail")
        fs.symlink("a/f1", "/fast")
        fs.symlink("/" + "x" * 200, "/slow")
        fs.link("/a/f2", "/a/b/c/hard")
        fs.setxattr("/a/f3", "user.k", b"v" * 40)
        fs.setxattr("/a/f4", "user.big", b"w" * 700)


def _base_image(style: str, folder: Path) -> Path:
    fs_type, bs, size = STYLES[style]
    img = folder / f"base-{style}.img"
    mkfs(img, size, fs_type=fs_type, block_size=bs, now=NOW,
         uuid="6b33f586-a183-4f5f-b2c5-8bcd9e2b6b2a", hash_seed="0b4d0e1c-7f7a-4d45-9b4b-1f6c0ad2a111")
    _populate(img)
    return img


INTERESTING = ("/", "/a", "/a/b", "/a/b/c", "/big", "/a/b/large", "/a/b/sparse", "/slow",
               "/a/f0", "/a/f3", "/a/f4", "/a/f7", "/a/f11", "/a/f2", "/big/entry-with-a-long-name-0007")


def _layout(img: Path) -> tuple[int, list[list[int]], list[tuple[int, int]]]:
    """(block size, metadata blocks by kind, (inode number, byte offset of the inode) of
    the files and directories worth damaging)."""
    from ext4kit.ondisk.groupdesc import BG_BLOCK_UNINIT, BG_INODE_UNINIT

    with ext4kit.open(img) as fs:
        bs = fs.block_size
        first = fs.sb.f["s_first_data_block"]
        bpg = fs.sb.f["s_blocks_per_group"]
        used: set[int] = set()
        bitmaps: set[int] = set()
        tables: set[int] = set()
        itb = (fs.inodes_per_group * fs.inode_size + bs - 1) // bs
        for g, gd in enumerate(fs.groups):
            if not gd.flags & BG_INODE_UNINIT:
                bitmaps.add(gd.inode_bitmap)
            tables.update(range(gd.inode_table, gd.inode_table + itb))
            if gd.flags & BG_BLOCK_UNINIT:
                continue
            bitmaps.add(gd.block_bitmap)
            bits = fs.read_block(gd.block_bitmap)
            base = first + g * bpg
            for i in range(min(bpg, fs.blocks_count - base)):
                if bits[i >> 3] >> (i & 7) & 1:
                    used.add(base + i)
        data: set[int] = set()
        itable_used: set[int] = set()
        journal = fs.sb.f["s_journal_inum"]
        last = fs.sb.first_ino + 300
        for ino in range(1, min(fs.inodes_count, last) + 1):
            inode = fs.get_inode(ino)
            if not inode.links_count and ino != journal:
                continue
            itable_used.add(fs.inode_location(ino)[0])
            if inode.is_reg() or ino == journal:
                for r in fs.block_map(inode).runs:
                    data.update(range(r.physical, r.physical + r.length))
        inodes = []
        for path in INTERESTING:
            ino = fs.stat(path, follow_symlinks=False).st_ino
            blk, off = fs.inode_location(ino)
            inodes.append((ino, blk * bs + off))
    head = list(range(first, first + 2))  # superblock and the first descriptor block
    rest = sorted(used - data - tables - bitmaps - set(head))
    kinds = [head, sorted(bitmaps), sorted(itable_used), rest]
    return bs, [k for k in kinds if k], inodes


def _corrupt(img: Path, kind: str, rng: random.Random) -> str:
    bs, meta, inodes = _layout(img)
    with open(img, "r+b") as f:
        if kind in ("flip", "zero"):
            blk = rng.choice(rng.choice(meta))
            f.seek(blk * bs)
            buf = bytearray(f.read(bs))
            if kind == "zero":
                buf = bytearray(bs)
                what = f"zeroed block {blk}"
            else:
                offs = [rng.randrange(bs) for _ in range(rng.randint(1, 8))]
                for o in offs:
                    buf[o] ^= rng.randint(1, 255)
                what = f"flipped bytes {offs} of block {blk}"
            f.seek(blk * bs)
            f.write(buf)
            return what
        a, b = rng.sample(inodes, 2)
        f.seek(a[1] + 40)
        ia = f.read(60)
        f.seek(b[1] + 40)
        ib = f.read(60)
        if kind == "swap":
            f.seek(a[1] + 40)
            f.write(ib)
            f.seek(b[1] + 40)
            f.write(ia)
            return f"swapped the block maps of inodes {a[0]} and {b[0]}"
        # dup: copy one 32-bit word (a block pointer or part of an extent) from b into a
        words = [k for k in range(15) if ib[4 * k: 4 * k + 4] != bytes(4)] or [0]
        w = rng.choice(words)
        word = ib[4 * w: 4 * w + 4]
        if ia[:2] == b"\x0a\xf3" and ib[:2] == b"\x0a\xf3":
            w = 5  # the first extent's start_lo (or the first index's leaf_lo)
            word = ib[20:24]
        f.seek(a[1] + 40 + 4 * w)
        f.write(word)
        return f"copied word {w} ({struct.unpack('<I', word)[0]}) of inode {b[0]}'s map into inode {a[0]}"


def _run_case(case: tuple[str, str, int], base: dict[str, Path], folder: Path) -> dict:
    style, kind, i = case
    rng = random.Random(f"{SEED}-{style}-{kind}-{i}")
    img = folder / f"{style}-{kind}-{i}.img"
    subprocess.run(["cp", "--sparse=always", str(base[style]), str(img)], check=True)
    what = _corrupt(img, kind, rng)
    code = ("import sys; from ext4kit.cli import main; sys.argv = ['ext4kit', 'fsck', '-fy', sys.argv[1]]; main()")
    try:
        p = subprocess.run([sys.executable, "-c", code, str(img)], capture_output=True, text=True,
                           timeout=TIMEOUT)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = -1, "", "TIMEOUT"
    after = subprocess.run([E2FSCK, "-fn", str(img)], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
    img.unlink()
    return {"what": what, "rc": rc, "out": out, "err": err, "e2": after.returncode,
            "e2_out": after.stdout[-2000:]}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("fsck-fuzz")
    base = {s: _base_image(s, folder) for s in STYLES}
    for s, p in base.items():  # the writer's images start clean
        rc = subprocess.run([E2FSCK, "-fn", str(p)], capture_output=True).returncode
        assert rc == 0, (s, rc)
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        res = dict(zip(CASES, pool.map(lambda c: _run_case(c, base, folder), CASES)))
    return res


@pytest.mark.parametrize("case", CASES, ids=[f"{s}-{k}-{i}" for s, k, i in CASES])
def test_fuzz(case: tuple[str, str, int], results: dict) -> None:
    r = results[case]
    info = {k: r[k] for k in ("what", "rc", "e2")} | {"err": r["err"][-1500:], "out": r["out"][-1500:]}
    assert r["rc"] >= 0, ("hang", info)
    assert "Traceback" not in r["err"] and "Traceback" not in r["out"], ("crash", info)
    # 12 = 8 | 4: the check could not run (e.g. unknown feature bits); e2fsck says the same
    assert r["rc"] in (0, 1, 2, 3, 4, 5, 6, 7) or (r["rc"] == 12 and r["e2"] & 8), ("bad exit", info)
    if r["rc"] & 4:
        # gave up: it must say why
        assert "FAILED" in r["out"] or "error" in (r["out"] + r["err"]).lower(), ("no reason", info)
    else:
        assert r["e2"] == 0, ("not clean after repair", info | {"e2_out": r["e2_out"]})
