"""Compare two host directory trees and describe every difference in words.

Compared: the set of relative paths (as bytes), file types, permission bits including
setuid/setgid/sticky (not for symlinks), content of regular files (holes are read as
zeros; a sparse expected file must stay sparse), mtime_ns, symlink targets, st_rdev of
device nodes, hard-link groups, ``user.*`` xattrs and, when running as root, uid/gid.

Not compared by default: atime (``check_atime=True`` enables it for non-directories; a
directory's atime changes whenever it is listed), ctime (cannot be set from user space),
and the metadata of the two roots themselves (``check_root=True`` enables it).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import defaultdict
from pathlib import Path

CHUNK = 1 << 20
# slack for "still sparse": a hole-punched copy may allocate a few blocks more
SPARSE_SLACK = 4 << 20

_TYPES = {
    stat.S_IFREG: "regular file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


def _show(rel: bytes) -> str:
    return repr(os.fsdecode(rel)) if rel else "'/' (root)"


def _walk(root: bytes) -> dict[bytes, os.stat_result]:
    out: dict[bytes, os.stat_result] = {}
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                crel = os.path.join(rel, entry.name) if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                out[crel] = st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(crel)
    return out


def _data_segments(fd: int, size: int) -> list[tuple[int, int]]:
    segs: list[tuple[int, int]] = []
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:
            break
        segs.append((start, end))
        off = end
    return segs


def _merge(segs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(segs):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _compare_content(exp_path: bytes, act_path: bytes, size: int) -> str | None:
    """None when equal, else a description of the first difference."""
    with open(exp_path, "rb", buffering=0) as fe, open(act_path, "rb", buffering=0) as fa:
        # Only ranges that hold data in either file need reading: elsewhere both are holes.
        ranges = _merge(_data_segments(fe.fileno(), size) + _data_segments(fa.fileno(), size))
        for start, end in ranges:
            off = start
            while off < end:
                n = min(CHUNK, end - off)
                a = os.pread(fe.fileno(), n, off)
                b = os.pread(fa.fileno(), n, off)
                if a != b:
                    if len(a) != len(b):
                        return f"short read at offset {off} ({len(a)} vs {len(b)} bytes)"
                    i = next(i for i in range(len(a)) if a[i] != b[i])
                    return (f"content differs at offset {off + i}: expected "
                            f"{a[i:i + 8].hex()} got {b[i:i + 8].hex()}")
                off += n
    return None


def _user_xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in names if n.startswith("user.")}


def _link_groups(tree: dict[bytes, os.stat_result]) -> dict[bytes, frozenset[bytes]]:
    by_ino: dict[tuple[int, int], set[bytes]] = defaultdict(set)
    for rel, st in tree.items():
        if not stat.S_ISDIR(st.st_mode):
            by_ino[(st.st_dev, st.st_ino)].add(rel)
    return {rel: frozenset(g) for g in by_ino.values() for rel in g}


def _fmt_ns(ns: int) -> str:
    sec, nsec = divmod(ns, 10**9)
    return f"{sec}.{nsec:09d}"


def _compare_entry(rel: bytes, ep: bytes, ap: bytes, e: os.stat_result, a: os.stat_result,
                   *, check_atime: bool, check_owner: bool,
                   links: tuple[frozenset[bytes], frozenset[bytes]] | None) -> list[str]:
    diffs: list[str] = []
    where = _show(rel)
    et, at = stat.S_IFMT(e.st_mode), stat.S_IFMT(a.st_mode)
    if et != at:
        diffs.append(f"{where}: type differs: expected {_TYPES.get(et, oct(et))}, "
                     f"got {_TYPES.get(at, oct(at))}")
        return diffs
    if et != stat.S_IFLNK and stat.S_IMODE(e.st_mode) != stat.S_IMODE(a.st_mode):
        diffs.append(f"{where}: mode differs: expected {stat.S_IMODE(e.st_mode):04o}, "
                     f"got {stat.S_IMODE(a.st_mode):04o}")
    if check_owner and (e.st_uid, e.st_gid) != (a.st_uid, a.st_gid):
        diffs.append(f"{where}: owner differs: expected {e.st_uid}:{e.st_gid}, "
                     f"got {a.st_uid}:{a.st_gid}")
    if e.st_mtime_ns != a.st_mtime_ns:
        diffs.append(f"{where}: mtime differs: expected {_fmt_ns(e.st_mtime_ns)}, "
                     f"got {_fmt_ns(a.st_mtime_ns)}")
    if check_atime and et != stat.S_IFDIR and e.st_atime_ns != a.st_atime_ns:
        diffs.append(f"{where}: atime differs: expected {_fmt_ns(e.st_atime_ns)}, "
                     f"got {_fmt_ns(a.st_atime_ns)}")

    if et == stat.S_IFREG:
        if e.st_size != a.st_size:
            diffs.append(f"{where}: size differs: expected {e.st_size}, got {a.st_size}")
        else:
            try:
                msg = _compare_content(ep, ap, e.st_size)
            except OSError as exc:
                msg = f"cannot compare content: {exc}"
            if msg:
                diffs.append(f"{where}: {msg}")
            e_alloc, a_alloc = e.st_blocks * 512, a.st_blocks * 512
            if e_alloc < e.st_size // 2 and a_alloc > max(2 * e_alloc,
                                                          e_alloc + SPARSE_SLACK):
                diffs.append(f"{where}: holes not preserved: {a_alloc} bytes allocated, "
                             f"source has {e_alloc} of {e.st_size}")
    elif et == stat.S_IFLNK:
        et_target, at_target = os.readlink(ep), os.readlink(ap)
        if et_target != at_target:
            diffs.append(f"{where}: symlink target differs: expected {et_target!r}, "
                         f"got {at_target!r}")
    elif et in (stat.S_IFCHR, stat.S_IFBLK):
        if e.st_rdev != a.st_rdev:
            diffs.append(
                f"{where}: device number differs: expected "
                f"{os.major(e.st_rdev)}:{os.minor(e.st_rdev)}, got "
                f"{os.major(a.st_rdev)}:{os.minor(a.st_rdev)}")

    if et != stat.S_IFDIR and links is not None:
        eg, ag = links
        if eg != ag:
            diffs.append(
                f"{where}: hard-link group differs: expected "
                f"{sorted(map(os.fsdecode, eg))}, got {sorted(map(os.fsdecode, ag))}")

    if et not in (stat.S_IFLNK, stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
        ex, ax = _user_xattrs(ep), _user_xattrs(ap)
        if ex != ax:
            for k in sorted(ex.keys() | ax.keys()):
                if k not in ax:
                    diffs.append(f"{where}: xattr {k} missing")
                elif k not in ex:
                    diffs.append(f"{where}: unexpected xattr {k}")
                elif ex[k] != ax[k]:
                    diffs.append(f"{where}: xattr {k} differs: expected {len(ex[k])} "
                                 f"bytes {ex[k][:16]!r}..., got {len(ax[k])} bytes "
                                 f"{ax[k][:16]!r}...")
    return diffs


def compare_trees(expected: Path, actual: Path, *, ignore_top: tuple[bytes, ...] = (
        b"lost+found",), check_atime: bool = False, check_owner: bool | None = None,
        check_root: bool = False) -> list[str]:
    """Human-readable differences between two trees; ``[]`` means equal.

    ``ignore_top`` names top-level entries of ``actual`` that the expectation need not
    have (``lost+found`` of an image). ``check_owner`` defaults to "running as root".
    """
    if check_owner is None:
        check_owner = os.geteuid() == 0
    exp_root, act_root = os.fsencode(expected), os.fsencode(actual)
    diffs: list[str] = []
    exp_tree = _walk(exp_root)
    act_tree = _walk(act_root)
    for name in ignore_top:
        if name not in exp_tree:
            prefix = name + b"/"
            for rel in [r for r in act_tree if r == name or r.startswith(prefix)]:
                del act_tree[rel]
    if check_root:
        exp_tree[b""] = os.lstat(exp_root)
        act_tree[b""] = os.lstat(act_root)

    for rel in sorted(exp_tree.keys() - act_tree.keys()):
        diffs.append(f"{_show(rel)}: missing")
    for rel in sorted(act_tree.keys() - exp_tree.keys()):
        diffs.append(f"{_show(rel)}: unexpected extra entry")

    exp_links = _link_groups(exp_tree)
    act_links = _link_groups(act_tree)

    for rel in sorted(exp_tree.keys() & act_tree.keys()):
        ep = os.path.join(exp_root, rel) if rel else exp_root
        ap = os.path.join(act_root, rel) if rel else act_root
        links = (exp_links.get(rel, frozenset([rel])), act_links.get(rel, frozenset([rel])))
        diffs += _compare_entry(rel, ep, ap, exp_tree[rel], act_tree[rel],
                                check_atime=check_atime, check_owner=check_owner,
                                links=links)
    return diffs


def compare_paths(expected: Path, actual: Path, *, check_atime: bool = False,
                  check_owner: bool | None = None) -> list[str]:
    """Differences between two single entries (file, symlink, device...; not their
    children): type, mode, owner, mtime, content, target, device number, xattrs."""
    if check_owner is None:
        check_owner = os.geteuid() == 0
    ep, ap = os.fsencode(expected), os.fsencode(actual)
    try:
        a = os.lstat(ap)
    except FileNotFoundError:
        return [f"{os.fsdecode(ap)!r}: missing"]
    return _compare_entry(os.path.basename(ap), ep, ap, os.lstat(ep), a,
                          check_atime=check_atime, check_owner=check_owner, links=None)
