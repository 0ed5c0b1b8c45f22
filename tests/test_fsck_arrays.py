"""fsck's array paths (pass 1's fastpath.py, pass 2's dirfast.py) against the per-inode
and per-block paths they stand in for: the same findings, locations and exit code, with
the array paths on and off, on every e2fsprogs f_* image and on seeded damage to the
directory blocks of images our writer filled (-n, and -y on copies)."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

import ext4kit
from ext4kit.fsck import dirfast, fastpath, fsck
from ext4kit.mkfs import mkfs

sys.path.insert(0, str(Path(__file__).parent))
from test_e2fsprogs_images import CORPUS, _decompress  # noqa: E402

NAMES = sorted(p.name for p in CORPUS.iterdir()
               if p.is_dir() and p.name.startswith("f_") and any(p.glob("image.*"))) if CORPUS.exists() else []
NOW = 1_700_000_000


def _run(img: Path, mode: str, arrays: bool) -> tuple[int, list[tuple[int, str]]]:
    dirfast.ENABLED = fastpath.ENABLED = arrays
    try:
        rep = fsck(img, mode)
    finally:
        dirfast.ENABLED = fastpath.ENABLED = True
    return rep.exit_code, [(f.code, repr(sorted(f.location.items()))) for f in rep.findings]


def _compare(img: Path, tmp: Path) -> None:
    assert _run(img, "n", True) == _run(img, "n", False)
    a, b = tmp / "a.img", tmp / "b.img"
    shutil.copyfile(img, a)
    shutil.copyfile(img, b)
    assert _run(a, "y", True) == _run(b, "y", False)


@pytest.mark.parametrize("name", NAMES)
def test_same_findings_e2fsprogs_images(name: str, tmp_path: Path) -> None:
    img = tmp_path / f"{name}.img"
    _decompress(CORPUS / name, img)
    _compare(img, tmp_path)


def _dir_image(folder: Path, features: str) -> tuple[Path, list[int]]:
    img = folder / f"dirs-{features}.img"
    fs_type = "ext2" if features == "ext2" else "ext4"
    mkfs(img, "32M", fs_type=fs_type, block_size=1024, now=NOW,
         features="^metadata_csum,^dir_index" if features == "nocsum" else "^dir_index")
    with ext4kit.open(img, "r+") as fs:
        for d in range(6):
            fs.makedirs(f"/d{d}/sub")
            for i in range(60):
                fs.write_bytes(f"/d{d}/file-{i:03d}", b"x")
            fs.symlink("file-000", f"/d{d}/link")
        dblocks: list[int] = []
        for d in range(6):
            inode = fs.get_inode(fs.stat(f"/d{d}").st_ino)
            for run in fs.block_map(inode).runs:
                dblocks.extend(range(run.physical, run.physical + run.length))
    return img, dblocks


@pytest.fixture(scope="module", params=["ext2", "ext4", "nocsum"])
def dir_image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    return _dir_image(tmp_path_factory.mktemp("dirfast"), request.param)


@pytest.mark.parametrize("seed", range(12))
def test_same_findings_damaged_directories(dir_image: tuple[Path, list[int]], seed: int, tmp_path: Path) -> None:
    base, dblocks = dir_image
    rng = random.Random(seed)
    img = tmp_path / "x.img"
    shutil.copyfile(base, img)
    bs = 1024
    with open(img, "r+b") as f:
        for _ in range(1 + seed % 4):
            blk = rng.choice(dblocks)
            off = blk * bs + rng.randrange(bs)
            f.seek(off)
            old = f.read(1)[0]
            f.seek(off)
            f.write(bytes([old ^ (1 << rng.randrange(8))]))
    _compare(img, tmp_path)


def test_claimed_blocks_matches_per_run_reference() -> None:
    """repair.claimed_blocks (merged runs, vectorised) against marking run by run."""
    from types import SimpleNamespace

    import numpy as np

    from ext4kit.fsck.repair import claimed_blocks
    from ext4kit.fsck.state import State

    for t in range(500):
        r = random.Random(t)
        n = r.randrange(1, 500)
        st = State()
        for _ in range(r.randrange(0, 30)):
            st.claim(r.randrange(0, n + 5), r.randrange(0, 60), r.randrange(0, 6))
        st.cleared = {r.randrange(0, 6)} if r.random() < 0.5 else set()
        st.extra_blocks = [r.randrange(0, n) for _ in range(r.randrange(0, 3))]
        ctx = SimpleNamespace(blocks_count=n, first_data_block=r.randrange(0, 2))
        want = np.zeros(n, dtype=bool)
        for s, ln, o in zip(st.run_start, st.run_len, st.run_owner):
            if o not in st.cleared:
                want[min(s, n): min(s + ln, n)] = True
        want[: ctx.first_data_block] = True
        want[st.extra_blocks] = True
        assert (claimed_blocks(ctx, st) == want).all(), t  # type: ignore[arg-type]
