"""Checkers: is a (recovered) crash state's metadata consistent?

Interface (what the lab calls, and what the real fsck plugs into)::

    class Checker(Protocol):
        name: str
        def check(self, dev: BlockDevice) -> CheckResult

* :class:`QuickChecker` -- in process, a subset of ``e2fsck -fn`` that finds what a crash
  can do to ext4 metadata: structures that do not parse or whose checksums fail, directory
  entries naming free or wrong-typed inodes, link counts, blocks claimed twice, i_blocks
  and i_size against the block map, block and inode bitmaps against what the tree uses
  (pass 5), group free/dir counts against the bitmaps.
* :class:`E2fsckChecker` -- ``e2fsck -fn`` on the image written out to a temporary file.
* :func:`make_checker` -- ``"quick"`` (default), ``"e2fsck"``, or ``"fsck"``: the
  in-process fsck of ``ext4kit.fsck`` (issue 5), ``fsck(dev, "n")`` -> Report.

``repair`` runs ``e2fsck -fy`` on a copy and says whether the result is clean (the
"repaired" outcome of runs without a journal).
"""

from __future__ import annotations

import os
import stat as _stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..blockdev import BlockDevice
from ..errors import Ext4Error
from ..fs import dirs
from ..fs.alloc import Allocator, blocks_in_group, group_first_block
from ..fs.filesystem import FileSystem
from ..ondisk import extent as ext
from ..ondisk import inode as _inode
from ..ondisk.inode import FT_FROM_MODE


@dataclass
class CheckResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    checker: str = ""


class Checker(Protocol):
    name: str

    def check(self, dev: BlockDevice) -> CheckResult: ...


def _tree_blocks(fs: FileSystem, inode: Any) -> list[int]:
    """Extent-tree interior/leaf node blocks (not data) of an extent-mapped inode."""
    if not inode.flags & _inode.EXTENTS_FL:
        return []
    out: list[int] = []
    stack = [(inode.i_block, 0)]
    while stack:
        buf, depth_guard = stack.pop()
        h = ext.parse_header(buf)
        if h.magic != ext.EXT4_EXT_MAGIC or h.depth == 0 or depth_guard > 8:
            continue
        for ix in ext.parse_indexes(buf, h.entries):
            if 0 < ix.leaf < fs.blocks_count:
                out.append(ix.leaf)
                stack.append((fs.read_block(ix.leaf), depth_guard + 1))
    return out


class QuickChecker:
    """In-process metadata check (see the module doc). Blocks the tree does not own
    (superblocks, descriptors, bitmaps, inode tables, the journal, the resize inode) are
    taken from the base image once: a crash workload never changes them."""

    name = "quick"

    def __init__(self, base: BlockDevice):
        fs = FileSystem(base, owns_dev=False)
        used = self._bitmap(fs)
        owned, _, probs = self._walk(fs)
        if probs:
            raise ValueError(f"the base image is not consistent: {probs[0]}")
        fixed = used.copy()
        fixed[list(owned)] = False
        self.fixed = fixed

    @staticmethod
    def _bitmap(fs: FileSystem) -> np.ndarray:
        al = Allocator(fs)
        out = np.zeros(fs.blocks_count, dtype=bool)
        for g in range(fs.group_count):
            first = group_first_block(fs, g)
            out[first : first + blocks_in_group(fs, g)] = al.block_bitmap(g)
        return out

    def _walk(self, fs: FileSystem) -> tuple[dict[int, int], dict[int, tuple[Any, int]], list[str]]:
        """Walk the tree from the root: blocks owned (block -> inode), inodes reached
        (ino -> (inode, references)), problems."""
        probs: list[str] = []
        owned: dict[int, int] = {}
        seen: dict[int, list[Any]] = {}
        first_ino = fs.sb.first_ino
        bs = fs.block_size
        huge = fs.sb.has_ro("huge_file")
        filetype = fs.sb.has_incompat("filetype")
        ibm = Allocator(fs)

        def in_use(ino: int) -> bool:
            g, i = divmod(ino - 1, fs.inodes_per_group)
            return bool(ibm.inode_bitmap(g)[i])

        def take(ino: int) -> Any:
            inode = fs.get_inode(ino)
            seen[ino] = [inode, 0]
            if inode.mode == 0 or inode.links_count == 0:
                probs.append(f"inode {ino} is named but not in use (mode {inode.mode:o}, "
                             f"links {inode.links_count})")
                return inode
            if inode.dtime:
                probs.append(f"inode {ino} in use has dtime set")
            blocks: list[int] = []
            try:
                bmap = fs.block_map(inode)
                for r in bmap.runs:
                    blocks.extend(range(r.physical, r.physical + r.length))
                blocks.extend(_tree_blocks(fs, inode))
            except Ext4Error as exc:
                probs.append(f"inode {ino}: {exc}")
                return inode
            if inode.file_acl:
                blocks.append(inode.file_acl)
            for b in blocks:
                other = owned.get(b)
                if other is not None and other != ino:
                    probs.append(f"block {b} claimed by inodes {other} and {ino}")
                owned[b] = ino
            held = inode.blocks_512(huge, bs) // (bs // 512)
            if held != len(blocks):
                probs.append(f"inode {ino}: i_blocks is {held} blocks, the map holds {len(blocks)}")
            live = [r for r in bmap.runs if not r.uninit]
            end = max((r.logical + r.length for r in live), default=0)
            if inode.is_reg() and end * bs > -(-inode.size // bs) * bs:
                probs.append(f"inode {ino}: i_size {inode.size} is short of its blocks ({end})")
            if inode.is_dir() and not inode.flags & _inode.INLINE_DATA_FL and \
                    inode.size != end * bs:
                probs.append(f"directory inode {ino}: i_size {inode.size}, blocks {end}")
            return inode

        root = take(2)
        todo = [(2, 2)]
        visited = {2}
        seen[2][1] = 0
        while todo:
            dino, parent = todo.pop()
            dinode = seen[dino][0]
            if not dinode.is_dir():
                probs.append(f"inode {dino} should be a directory")
                continue
            try:
                entries = list(dirs.iter_entries(fs, dinode, with_dots=True))
            except Ext4Error as exc:
                probs.append(f"directory {dino}: {exc}")
                continue
            names = set()
            for e in entries:
                if e.name in names:
                    probs.append(f"directory {dino}: duplicate entry {e.name!r}")
                names.add(e.name)
                if e.name == b".":
                    if e.inode != dino:
                        probs.append(f"directory {dino}: '.' is {e.inode}")
                elif e.name == b"..":
                    if e.inode != parent:
                        probs.append(f"directory {dino}: '..' is {e.inode}, not {parent}")
                if not 1 <= e.inode <= fs.inodes_count:
                    probs.append(f"directory {dino}: entry {e.name!r} -> bad inode {e.inode}")
                    continue
                if e.inode < first_ino and e.inode != 2:
                    probs.append(f"directory {dino}: entry {e.name!r} -> reserved inode {e.inode}")
                    continue
                if not in_use(e.inode):
                    probs.append(f"directory {dino}: entry {e.name!r} -> unused inode {e.inode}")
                if e.inode not in seen:
                    try:
                        take(e.inode)
                    except Ext4Error as exc:
                        probs.append(f"inode {e.inode}: {exc}")
                        continue
                rec = seen[e.inode]
                rec[1] += 1
                child = rec[0]
                if filetype and e.name not in (b".", b"..") and child.mode and \
                        FT_FROM_MODE.get(_stat.S_IFMT(child.mode)) != e.file_type:
                    probs.append(f"directory {dino}: entry {e.name!r} has the wrong file type")
                if child.is_dir() and e.name not in (b".", b".."):
                    if e.inode in visited:
                        probs.append(f"directory {e.inode} has a second name {e.name!r}")
                    else:
                        visited.add(e.inode)
                        todo.append((e.inode, dino))
        del root
        for ino, (inode, refs) in seen.items():
            if inode.mode and inode.links_count != refs and not (
                    inode.is_dir() and inode.links_count == 1 and refs > 65000):
                probs.append(f"inode {ino}: links count {inode.links_count}, counted {refs}")
        probs.extend(str(p) for p in fs.problems)
        return owned, {i: (v[0], v[1]) for i, v in seen.items()}, probs

    def check(self, dev: BlockDevice) -> CheckResult:
        try:
            fs = FileSystem(dev, owns_dev=False)
        except Ext4Error as exc:
            return CheckResult(False, [f"cannot open: {exc}"], self.name)
        probs = [str(p) for p in fs.problems]
        try:
            owned, seen, walk_probs = self._walk(fs)
        except Ext4Error as exc:
            return CheckResult(False, probs + [f"walk: {exc}"], self.name)
        probs += walk_probs
        # pass 5: block bitmap
        try:
            used = self._bitmap(fs)
            al = Allocator(fs)
            ibms = [al.inode_bitmap(g) for g in range(fs.group_count)]
        except Ext4Error as exc:
            return CheckResult(False, probs + [f"bitmaps: {exc}"], self.name)
        want = self.fixed.copy()
        if owned:
            idx = np.fromiter(owned.keys(), dtype=np.int64)
            idx = idx[(idx >= 0) & (idx < len(want))]
            want[idx] = True
        diff = np.nonzero(want != used)[0]
        if len(diff):
            plus = [int(b) for b in diff if want[b]][:8]
            minus = [int(b) for b in diff if not want[b]][:8]
            probs.append(f"block bitmap differences: +{plus} -{minus}")
        # inode bitmap
        ipg = fs.inodes_per_group
        first_ino = fs.sb.first_ino
        want_i = np.zeros(fs.group_count * ipg, dtype=bool)
        want_i[: first_ino - 1] = True
        for ino, (inode, _refs) in seen.items():
            if inode.mode:
                want_i[ino - 1] = True
        have_i = np.concatenate(ibms)
        idiff = np.nonzero(want_i != have_i)[0]
        if len(idiff):
            probs.append("inode bitmap differences: " + " ".join(
                f"{'+' if want_i[i] else '-'}{int(i) + 1}" for i in idiff[:8]))
        # group counts
        dirs_in = np.zeros(fs.group_count, dtype=np.int64)
        for ino, (inode, _refs) in seen.items():
            if inode.mode and inode.is_dir():
                dirs_in[(ino - 1) // ipg] += 1
        for g, gd in enumerate(fs.groups):
            first = group_first_block(fs, g)
            n = blocks_in_group(fs, g)
            free_b = int(n - used[first : first + n].sum())
            if gd.free_blocks_count != free_b:
                probs.append(f"group {g}: free blocks {gd.free_blocks_count}, counted {free_b}")
            free_i = int(ipg - ibms[g].sum())
            if gd.free_inodes_count != free_i:
                probs.append(f"group {g}: free inodes {gd.free_inodes_count}, counted {free_i}")
            if gd.used_dirs_count != int(dirs_in[g]):
                probs.append(f"group {g}: directories {gd.used_dirs_count}, counted {dirs_in[g]}")
        return CheckResult(not probs, probs, self.name)


def write_image(dev: BlockDevice, path: str) -> None:
    save = getattr(dev, "save", None)
    if save is not None:
        save(path)
        return
    with open(path, "wb") as f:
        step = 1 << 20
        for off in range(0, dev.size, step):
            f.write(dev.read(off, min(step, dev.size - off)))


def e2fsck(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["e2fsck", *args, path], capture_output=True, text=True, timeout=300)


class E2fsckChecker:
    """``e2fsck -fn`` on the state written to a temporary file (exit 0: consistent)."""

    name = "e2fsck"

    def __init__(self, tmpdir: str | None = None):
        self.tmpdir = tmpdir

    def check(self, dev: BlockDevice) -> CheckResult:
        fd, path = tempfile.mkstemp(suffix=".img", dir=self.tmpdir)
        os.close(fd)
        try:
            write_image(dev, path)
            r = e2fsck(path, "-fn")
        finally:
            os.unlink(path)
        if r.returncode == 0:
            return CheckResult(True, [], self.name)
        lines = [ln for ln in r.stdout.splitlines() if ln and not ln.startswith("Pass ")
                 and "skipping journal recovery" not in ln]
        return CheckResult(False, [f"e2fsck -fn exit {r.returncode}"] + lines[:12], self.name)


def repair(dev: BlockDevice, tmpdir: str | None = None) -> bool:
    """``e2fsck -fy`` on a copy; True when a following ``e2fsck -fn`` calls it clean."""
    fd, path = tempfile.mkstemp(suffix=".img", dir=tmpdir)
    os.close(fd)
    try:
        write_image(dev, path)
        r = e2fsck(path, "-fy")
        if r.returncode >= 4:
            return False
        return e2fsck(path, "-fn").returncode == 0
    finally:
        os.unlink(path)


# location fields of an ext4kit.fsck finding, in the order they are shown
_LOC_KEYS = (("group", "group"), ("dir", "dir"), ("ino", "inode"), ("name", "entry"),
             ("lblk", "lblk"), ("block", "block"), ("offset", "offset"))


def format_finding(f: Any) -> str:
    """One line per ext4kit.fsck finding: ``0x050003 GROUP_FREE_BLOCKS [group 0]: message``
    (problem code and name, location, message)."""
    code = getattr(f, "code", None)
    try:
        name = f.problem.name
    except Exception:  # noqa: BLE001 - an unknown code still prints
        name = ""
    loc = getattr(f, "location", None) or {}
    parts = []
    for key, label in _LOC_KEYS:
        if key in loc and loc[key] is not None:
            v = loc[key]
            if isinstance(v, bytes):
                v = v.decode(errors="replace")
            parts.append(f"{label} {v!r}" if key == "name" else f"{label} {v}")
    try:
        msg = str(f.message)
    except Exception:  # noqa: BLE001
        msg = ", ".join(f"{k}={v}" for k, v in loc.items())
    head = f"{code:#08x}" if isinstance(code, int) else str(code)
    head += f" {name}" if name else ""
    where = f" [{', '.join(parts)}]" if parts else ""
    tail = f" (fix failed: {f.failed})" if getattr(f, "failed", None) else ""
    return f"{head}{where}: {' '.join(msg.split())}{tail}"


class _FsckAdapter:
    """The in-process fsck of ext4kit.fsck (issue 5): ``fsck(dev, "n")`` -> Report whose
    ``exit_code`` follows e2fsck (0: clean). Its findings become one line each."""

    name = "fsck"

    def __init__(self, fn: Any):
        self.fn = fn

    def check(self, dev: BlockDevice) -> CheckResult:
        rep = self.fn(dev, "n")
        code = rep.exit_code() if callable(rep.exit_code) else rep.exit_code
        probs = [format_finding(f) for f in getattr(rep, "findings", [])][:12]
        if rep.error or rep.aborted:
            probs.insert(0, f"fsck stopped: {rep.error or rep.aborted}")
        return CheckResult(code == 0, probs or ([] if code == 0 else [f"fsck exit {code}"]),
                           self.name)


def make_checker(name: str, base: BlockDevice) -> Checker:
    if name == "e2fsck":
        return E2fsckChecker()
    if name == "fsck":
        import importlib

        fsck = importlib.import_module("ext4kit.fsck")
        return _FsckAdapter(getattr(fsck, "fsck"))  # noqa: B009
    return QuickChecker(base)
