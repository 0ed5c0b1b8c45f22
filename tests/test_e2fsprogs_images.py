"""Every image of e2fsprogs' own test suite (../shared/e2fsprogs-tests), read by ext4kit.

The oracle is e2fsck 1.47 (``e2fsck -fn``, 20 s timeout) and debugfs:
- an image e2fsck calls clean (exit 0) must read completely through the API (walk, lstat,
  listxattr, readlink, block maps, every byte of every file) with no finding in
  ``fs.problems`` (unless e2fsck -n itself declined a fix: it exits 0 after "Fix? no" or a
  backup superblock); ``ext4kit get IMG / OUT`` must exit 0; and both must agree with
  debugfs: ``ls -p`` of every directory by inode number (name, inode, mode, uid, gid,
  size) and ``rdump`` of the whole tree, compared file by file;
- a corrupted one (e2fsck non-zero or hung): ``info``, ``ls -l /`` and ``get / OUT`` each
  finish within 30 s with no traceback and no "internal error"; a failure is exactly one
  line ``ext4kit: ...`` (plus ``ext4kit: warning:`` lines) and exit 1, 4 or 8; the API walk
  raises nothing but Ext4Error / OSError.
Every command is read-only: the image's sha256 is the same afterwards.

Subprocess work (decompression, e2fsck, the CLI, debugfs) runs in a thread pool started by
the first test, in test order, so it overlaps the in-process checks.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import ext4kit
from cli_checks import CliRun, Deadline, cli_problems, run_cli, sweep_any
from ext4kit.errors import Ext4Error
from ext4kit.fs import dirs

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("EXT4KIT_E2FS_TESTS", REPO.parent / "shared" / "e2fsprogs-tests"))
FSCK_TIMEOUT = 20
API_TIMEOUT = 60  # seconds for the in-process sweep of one image
WORKERS = max(2, min(4, (os.cpu_count() or 2) + 1))

if not CORPUS.is_dir():
    pytest.skip(f"e2fsprogs test images not found at {CORPUS}", allow_module_level=True)
for tool in ("e2fsck", "debugfs"):
    if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
        pytest.skip(f"{tool} not installed", allow_module_level=True)

NAMES = sorted(p.name for p in CORPUS.iterdir()
               if p.is_dir() and any(p.glob("image.*")))

# Images that still fail, each with the reason (strict: they must fail, or the entry goes).
KNOWN_FAILURES: dict[str, str] = {}


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


# --------------------------------------------------------------------------- preparation
_ZERO = bytes(1 << 20)


def _decompress(folder: Path, dst: Path) -> None:
    """image.gz / image.bz2 / image.tar.bz2 (its *.img member) -> dst, written sparsely."""
    tar = None
    if (folder / "image.gz").exists():
        src = gzip.open(folder / "image.gz", "rb")
    elif (folder / "image.bz2").exists():
        src = bz2.open(folder / "image.bz2", "rb")
    else:
        tar = tarfile.open(folder / "image.tar.bz2", "r:bz2")
        member = next(m for m in tar.getmembers() if m.name.endswith(".img") and m.isfile())
        src = tar.extractfile(member)  # type: ignore[assignment]
    tmp = dst.with_suffix(".part")
    with contextlib.ExitStack() as stack:
        if tar is not None:
            stack.enter_context(tar)
        stack.enter_context(src)
        out = stack.enter_context(open(tmp, "wb"))
        size = 0
        while chunk := src.read(1 << 20):
            if chunk == _ZERO[: len(chunk)]:
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
            size += len(chunk)
        out.truncate(size)
    os.chmod(tmp, 0o444)
    tmp.rename(dst)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- debugfs oracle
def _replayed_copy(img: Path) -> Path:
    """debugfs reads the disk as it is, while ext4kit (like a read-only mount) shows an
    image whose journal needs recovery with the journal replayed: compare against a copy
    replayed by ``e2fsck -E journal_only``. Images that need no recovery are used as is."""
    with open(img, "rb") as f:
        f.seek(1024 + 0x60)
        incompat = int.from_bytes(f.read(4), "little")
    if not incompat & 0x4:  # needs_recovery
        return img
    copy = img.with_name(img.name + ".replayed")
    shutil.copyfile(img, copy)
    subprocess.run([_tool("e2fsck"), "-E", "journal_only", "-y", str(copy)],
                   capture_output=True, timeout=FSCK_TIMEOUT, stdin=subprocess.DEVNULL)
    return copy


def debugfs_open_args(img: Path) -> list[str] | None:
    """The debugfs options that open ``img``: none; else catastrophic mode (-c, which also
    ignores superblock errors, as e2fsck's "load superblock despite errors" does); else
    the group-1 backup superblock e2fsck falls back to. None: debugfs cannot open it."""
    tries: list[list[str]] = [[], ["-c"]]
    tries += [["-s", str(bs * 8 + (bs == 1024)), "-b", str(bs)]
              for bs in (1024, 2048, 4096, 8192, 16384, 32768, 65536)]
    for args in tries:
        p = subprocess.run([_tool("debugfs"), *args, "-R", "stats", str(img)],
                           capture_output=True, timeout=60, check=False)
        if p.returncode == 0 and b"while trying to open" not in p.stderr \
                and b"Filesystem not open" not in p.stderr:
            return args
    return None


def debugfs_ls(img: Path, inos: list[int], args: list[str]) -> dict[int, set[tuple]]:
    """{dir inode: {(name, inode, mode, uid, gid, size or None for a directory)}} from one
    debugfs run of ``ls -p <ino>`` per directory."""
    cmds = "".join(f"ls -p <{i}>\n" for i in inos)
    with tempfile.NamedTemporaryFile("w", suffix=".cmds") as f:
        f.write(cmds)
        f.flush()
        p = subprocess.run([_tool("debugfs"), *args, "-f", f.name, str(img)],
                           capture_output=True, timeout=120, check=False)
    out: dict[int, set[tuple]] = {}
    cur: int | None = None
    for line in p.stdout.split(b"\n"):
        if line.startswith(b"debugfs: ls -p <"):
            cur = int(line[len(b"debugfs: ls -p <"):].split(b">")[0])
            out[cur] = set()
            continue
        parts = line.split(b"/")
        if cur is None or len(parts) != 8 or parts[0] != b"" or not parts[1].isdigit():
            continue
        if parts[1] == b"0":
            continue  # debugfs also shows the empty record that opens an unused block
        size = None if parts[6] == b"" else int(parts[6])  # directories: no size
        out[cur].add((parts[5], int(parts[1]), int(parts[2], 8), int(parts[3]), int(parts[4]),
                      size))
    return out


def tree_manifest(root: Path, *, specials: bool) -> dict[bytes, tuple]:
    """{relative path: ('d',) | ('f', sha256) | ('l', target) | ('s', type)} of a host tree."""
    out: dict[bytes, tuple] = {}
    broot = os.fsencode(root)
    for top, dnames, fnames in os.walk(broot):
        for name in dnames + fnames:
            p = os.path.join(top, name)
            rel = os.path.relpath(p, broot)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("d",)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                out[rel] = ("f", h.hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif specials:
                out[rel] = ("s", stat.S_IFMT(st.st_mode))
    return out


def diff_manifests(a: dict, b: dict, a_name: str, b_name: str, limit: int = 10) -> list[str]:
    out = []
    for k in sorted(a.keys() | b.keys()):
        if a.get(k) != b.get(k):
            out.append(f"{k!r}: {a_name}={a.get(k)} {b_name}={b.get(k)}")
            if len(out) >= limit:
                out.append("...")
                break
    return out


# --------------------------------------------------------------------------- background work
@dataclass
class ImageResult:
    name: str
    path: Path
    fsck_rc: int | None  # None: e2fsck did not finish within FSCK_TIMEOUT
    fsck_out: str
    sha_before: str
    sha_after: str = ""
    cli: list[CliRun] = field(default_factory=list)
    get_manifest: dict | None = None
    rdump_manifest: dict | None = None
    debugfs_args: list[str] | None = None
    oracle_path: Path | None = None  # what debugfs reads: the image, journal replayed

    @property
    def clean(self) -> bool:
        return self.fsck_rc == 0

    @property
    def fsck_silent(self) -> bool:
        """e2fsck -n exited 0 without declining a fix (it does exit 0 after "Fix? no",
        "IGNORED" or falling back to a backup superblock)."""
        declined = ("? no", "IGNORED", "trying backup blocks", "despite errors")
        return self.clean and not any(d in self.fsck_out for d in declined)


class Corpus:
    """Decompresses every image once per session and runs its subprocess checks."""

    def __init__(self, base: Path):
        self.base = base
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="e2fs-image")
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if not self.futures:
                for name in NAMES:
                    self.futures[name] = self.pool.submit(self._work, name)

    def result(self, name: str) -> ImageResult:
        self.start()
        return self.futures[name].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _work(self, name: str) -> ImageResult:
        folder = CORPUS / name
        img = self.base / f"{name}.img"
        _decompress(folder, img)
        sha = _sha256(img)
        try:
            p = subprocess.run([_tool("e2fsck"), "-fn", str(img)], capture_output=True,
                               timeout=FSCK_TIMEOUT, stdin=subprocess.DEVNULL)
            rc: int | None = p.returncode
            fsck_out = (p.stdout + p.stderr).decode(errors="replace")
        except subprocess.TimeoutExpired:
            rc, fsck_out = None, f"e2fsck -fn did not finish within {FSCK_TIMEOUT}s"
        res = ImageResult(name, img, rc, fsck_out, sha)
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))
        try:
            if res.clean:
                out = work / "get"
                res.cli.append(run_cli("get", str(img), "/", str(out)))
                if res.cli[-1].rc == 0:
                    res.get_manifest = tree_manifest(out, specials=True)
                shutil.rmtree(out, ignore_errors=True)
                res.oracle_path = _replayed_copy(img)
                res.debugfs_args = debugfs_open_args(res.oracle_path)
                if res.debugfs_args is not None:
                    dump = work / "rdump"
                    dump.mkdir()
                    subprocess.run([_tool("debugfs"), *res.debugfs_args, "-R",
                                    f"rdump / {dump}", str(res.oracle_path)],
                                   capture_output=True, timeout=120, check=False)
                    res.rdump_manifest = tree_manifest(dump, specials=False)
            else:
                res.cli.append(run_cli("info", str(img)))
                res.cli.append(run_cli("ls", "-l", str(img), "/"))
                res.cli.append(run_cli("get", str(img), "/", str(work / "get")))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        res.sha_after = _sha256(img)
        return res


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    c = Corpus(tmp_path_factory.mktemp("e2fsprogs-images"))
    yield c
    c.close()


# --------------------------------------------------------------------------- API sweeps
def sweep_clean(fs) -> tuple[dict[bytes, tuple], dict[int, set[tuple]]]:
    """Walk everything by path; return (manifest like tree_manifest, {dir ino: entries as
    debugfs_ls gives them})."""
    deadline = Deadline(API_TIMEOUT)
    manifest: dict[bytes, tuple] = {}
    dir_entries: dict[int, set[tuple]] = {}
    seen_dirs: set[int] = set()
    for top, dnames, fnames in fs.walk(b"/"):
        deadline.check()
        dino = fs.lstat(top).st_ino
        assert dino not in seen_dirs, f"walk visited directory inode {dino} twice"
        seen_dirs.add(dino)
        dir_entries[dino] = set()
        for e in dirs.iter_entries(fs, fs.get_inode(dino), with_dots=True):
            i = fs.get_inode(e.inode)
            dir_entries[dino].add((e.name, e.inode, i.mode, i.uid, i.gid,
                                   None if i.is_dir() else i.size))
        by_name = {t[0]: t[1] for t in dir_entries[dino]}
        listed = set(by_name) - {b".", b".."}
        assert listed == set(dnames) | set(fnames), f"{top!r}: walk and iter_entries disagree"
        assert sorted(fs.listdir(top)) == sorted(dnames + fnames)
        for name in dnames + fnames:
            path = top.rstrip(b"/") + b"/" + name
            rel = path[1:]
            st = fs.lstat(path)
            assert st.st_ino == by_name[name], f"{path!r}: lstat and the entry disagree"
            fs.listxattr(path, follow_symlinks=False)
            inode = fs.inode_of(path)  # what `ext4kit stat` shows: map and all xattrs
            fs.block_map(inode)
            fs.xattrs_of(inode)
            if stat.S_ISDIR(st.st_mode):
                manifest[rel] = ("d",)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                n = 0
                with fs.open(path, "rb") as f:
                    while chunk := f.read(4 << 20):
                        h.update(chunk)
                        n += len(chunk)
                assert n == st.st_size, f"{path!r}: read {n} bytes, size {st.st_size}"
                manifest[rel] = ("f", h.hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                manifest[rel] = ("l", fs.readlink(path))
            else:
                manifest[rel] = ("s", stat.S_IFMT(st.st_mode))
    return manifest, dir_entries


# --------------------------------------------------------------------------- the test
def _params():
    for name in NAMES:
        marks = []
        if name in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[name]))
        yield pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", list(_params()))
def test_image(name: str, corpus: Corpus) -> None:
    res = corpus.result(name)
    assert res.sha_after == res.sha_before, f"{name}: the image changed while being read"
    if res.clean:
        _check_clean(res)
    else:
        _check_corrupt(res)


def _check_clean(res: ImageResult) -> None:
    (get,) = res.cli
    assert get.rc == 0 and not cli_problems(get), get.describe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "journal needs recovery"
        with ext4kit.open(res.path) as fs:
            manifest, dir_entries = sweep_clean(fs)
            problems = [str(p) for p in fs.problems]
            dropped = fs.problems_dropped
    if res.fsck_silent:
        assert not problems and not dropped, f"findings on a clean image: {problems[:10]}"
    # debugfs: the entries (name, inode) of every directory
    assert res.debugfs_args is not None, "debugfs cannot open an image e2fsck calls clean"
    theirs = debugfs_ls(res.oracle_path or res.path, sorted(dir_entries), res.debugfs_args)
    for dino, ours in dir_entries.items():
        their = theirs.get(dino, set())
        assert their == ours, (
            f"directory inode {dino} (name, ino, mode, uid, gid, size): only debugfs "
            f"{list(their - ours)[:10]}, only ours {list(ours - their)[:10]}")
    # our get output and debugfs rdump against what the API read
    assert res.get_manifest is not None
    diff = diff_manifests(manifest, res.get_manifest, "api", "get")
    assert not diff, "ext4kit get differs from the API:\n" + "\n".join(diff)
    no_specials = {k: v for k, v in manifest.items() if v[0] != "s"}
    diff = diff_manifests(no_specials, res.rdump_manifest or {}, "api", "debugfs-rdump")
    assert not diff, "API differs from debugfs rdump:\n" + "\n".join(diff)


def _check_corrupt(res: ImageResult) -> None:
    bad = {r.args[0]: cli_problems(r) for r in res.cli if cli_problems(r)}
    detail = "\n\n".join(r.describe() for r in res.cli if cli_problems(r))
    assert not bad, f"{res.name} (e2fsck -fn exit {res.fsck_rc}): {bad}\n{detail}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fs = ext4kit.open(res.path)
        except Ext4Error:
            return  # refusing to open is a clean error (the CLI runs above checked the line)
        with fs:
            sweep_any(fs, API_TIMEOUT)


def test_corpus_is_complete() -> None:
    """The shared corpus has what its README promises (a missing image is not a pass)."""
    assert len(NAMES) >= 100, f"only {len(NAMES)} images in {CORPUS}"
