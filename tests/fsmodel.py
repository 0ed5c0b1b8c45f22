"""An in-memory model of a POSIX tree for the writer's property tests.

Each operation either changes the model and returns None, or returns the errno the real
call must fail with (without changing anything). ``snapshot`` gives the comparable view
the image (read by ext4kit or through a kernel mount) must match.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from dataclasses import dataclass, field


@dataclass(eq=False)
class Node:
    kind: str  # "dir" | "file" | "link" | "fifo"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytearray = field(default_factory=bytearray)
    target: bytes = b""
    children: dict[bytes, Node] = field(default_factory=dict)
    xattrs: dict[str, bytes] = field(default_factory=dict)
    mtime: int | None = None  # known exactly only after utime
    nlink_names: int = 1


class Model:
    def __init__(self, *, extents: bool = True) -> None:
        self.extents = extents  # fallocate needs extents (EOPNOTSUPP on ext2/ext3 maps)
        self.root = Node("dir", mode=0o755)
        self.root.children[b"lost+found"] = Node("dir", mode=0o700)

    # ------------------------------------------------------------------ lookup
    @staticmethod
    def parts(path: bytes) -> list[bytes]:
        return [p for p in path.split(b"/") if p]

    def lookup(self, path: bytes, follow: bool = True, depth: int = 0) -> Node | int:
        """The node, or an errno."""
        node = self.root
        stack = [self.root]
        parts = self.parts(path)
        i = 0
        while i < len(parts):
            p = parts[i]
            if node.kind != "dir":
                return errno.ENOTDIR
            if len(p) > 255:
                return errno.ENAMETOOLONG
            if p == b".":
                i += 1
                continue
            if p == b"..":
                if len(stack) > 1:
                    stack.pop()
                node = stack[-1]
                i += 1
                continue
            child = node.children.get(p)
            if child is None:
                return errno.ENOENT
            last = i == len(parts) - 1
            if child.kind == "link" and (follow or not last):
                if depth > 40:
                    return errno.ELOOP
                target = child.target
                rest = b"/".join(parts[i + 1:])
                if target.startswith(b"/"):
                    base = target
                else:
                    base = b"/" + b"/".join(parts[:i]) + b"/" + target
                return self.lookup(base + (b"/" + rest if rest else b""), follow, depth + 1)
            node = child
            stack.append(child)
            i += 1
        return node

    def parent(self, path: bytes) -> tuple[Node, bytes] | int:
        parts = self.parts(path)
        if not parts:
            return errno.EEXIST
        name = parts[-1]
        if len(name) > 255:
            return errno.ENAMETOOLONG
        par = self.lookup(b"/" + b"/".join(parts[:-1]), True)
        if isinstance(par, int):
            return par
        if par.kind != "dir":
            return errno.ENOTDIR
        return par, name

    # ------------------------------------------------------------------ operations
    def create(self, path: bytes, node: Node) -> int | None:
        r = self.parent(path)
        if isinstance(r, int):
            return r
        par, name = r
        if name in (b".", b"..") or name in par.children:
            return errno.EEXIST
        self._inherit(par, node)
        par.children[name] = node
        par.mtime = None
        return None

    @staticmethod
    def _inherit(par: Node, node: Node) -> None:
        """A setgid directory passes on its group (and to subdirectories its setgid bit)."""
        if par.mode & _stat.S_ISGID:
            node.gid = par.gid
            if node.kind == "dir":
                node.mode |= _stat.S_ISGID

    def mkdir(self, path: bytes, mode: int) -> int | None:
        return self.create(path, Node("dir", mode=mode & 0o7777))

    def rmdir(self, path: bytes) -> int | None:
        r = self.parent(path)
        if isinstance(r, int):
            return errno.EBUSY if r == errno.EEXIST else r
        par, name = r
        if name == b".":
            return errno.EINVAL
        if name == b"..":
            return errno.ENOTEMPTY
        node = par.children.get(name)
        if node is None:
            return errno.ENOENT
        if node.kind != "dir":
            return errno.ENOTDIR
        if node.children:
            return errno.ENOTEMPTY
        del par.children[name]
        par.mtime = None
        return None

    def unlink(self, path: bytes) -> int | None:
        r = self.parent(path)
        if isinstance(r, int):
            return errno.EISDIR if r == errno.EEXIST else r
        par, name = r
        if name in (b".", b".."):
            return errno.EISDIR
        node = par.children.get(name)
        if node is None:
            return errno.ENOENT
        if node.kind == "dir":
            return errno.EISDIR
        del par.children[name]
        par.mtime = None
        node.nlink_names -= 1
        return None

    def link(self, src: bytes, dst: bytes) -> int | None:
        node = self.lookup(src, follow=False)
        if isinstance(node, int):
            return node
        r = self.parent(dst)
        if isinstance(r, int):
            return r
        par, name = r
        if node.kind == "dir":
            return errno.EPERM
        if name in (b".", b"..") or name in par.children:
            return errno.EEXIST
        par.children[name] = node
        par.mtime = None
        node.nlink_names += 1
        return None

    def symlink(self, target: bytes, path: bytes) -> int | None:
        return self.create(path, Node("link", mode=0o777, target=target))

    def mkfifo(self, path: bytes, mode: int) -> int | None:
        return self.create(path, Node("fifo", mode=mode & 0o7777))

    def _is_ancestor(self, a: Node, b: Node) -> bool:
        """a == b or a contains b."""
        if a is b:
            return True
        return any(c.kind == "dir" and self._is_ancestor(c, b) for c in a.children.values())

    def rename(self, src: bytes, dst: bytes) -> int | None:
        rs = self.parent(src)
        if isinstance(rs, int):
            return errno.EBUSY if rs == errno.EEXIST else rs
        rd = self.parent(dst)
        if isinstance(rd, int):
            return errno.EBUSY if rd == errno.EEXIST else rd
        sp, sn = rs
        dp, dn = rd
        if sn in (b".", b"..") or dn in (b".", b".."):
            return errno.EBUSY if b"." in (sn, dn) else errno.EINVAL
        node = sp.children.get(sn)
        if node is None:
            return errno.ENOENT
        victim = dp.children.get(dn)
        if victim is node:
            return None
        if node.kind == "dir" and self._is_ancestor(node, dp):
            return errno.EINVAL
        if victim is not None:
            if node.kind == "dir" and victim.kind != "dir":
                return errno.ENOTDIR
            if node.kind != "dir" and victim.kind == "dir":
                return errno.EISDIR
            if victim.kind == "dir" and victim.children:
                return errno.ENOTEMPTY
            victim.nlink_names -= 1
        del sp.children[sn]
        dp.children[dn] = node
        sp.mtime = dp.mtime = None
        return None

    def _file(self, path: bytes) -> Node | int:
        node = self.lookup(path)
        if isinstance(node, int):
            return node
        if node.kind == "dir":
            return errno.EISDIR
        if node.kind != "file":
            return errno.EINVAL
        return node

    def write(self, path: bytes, offset: int, data: bytes) -> int | None:
        node = self._file(path)
        if isinstance(node, int):
            return node
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset : offset + len(data)] = data
        node.mtime = None
        return None

    def write_new(self, path: bytes, data: bytes, depth: int = 0) -> int | None:
        """open(path, 'wb').write(data): create or truncate."""
        node = self.lookup(path)
        lnk = self.lookup(path, follow=False)
        if node == errno.ENOENT and not isinstance(lnk, int) and lnk.kind == "link" \
                and depth < 8:
            target = lnk.target
            if not target.startswith(b"/"):
                head = path.rstrip(b"/").rpartition(b"/")[0]
                target = head + b"/" + target
            return self.write_new(target, data, depth + 1)
        if isinstance(node, int):
            if node != errno.ENOENT:
                return node
            r = self.parent(path)
            if isinstance(r, int):
                return r
            par, name = r
            if name in (b".", b".."):
                return errno.EISDIR
            par.children[name] = Node("file", mode=0o666, data=bytearray(data))
            self._inherit(par, par.children[name])
            par.mtime = None
            return None
        if node.kind == "dir":
            return errno.EISDIR
        if node.kind != "file":
            return errno.EINVAL
        node.data = bytearray(data)
        node.mtime = None
        return None

    def truncate(self, path: bytes, length: int) -> int | None:
        node = self._file(path)
        if isinstance(node, int):
            return node
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.mtime = None
        return None

    def fallocate(self, path: bytes, offset: int, length: int, keep_size: bool) -> int | None:
        node = self._file(path)
        if isinstance(node, int):
            return node
        if not self.extents:
            return errno.EOPNOTSUPP
        if not keep_size and offset + length > len(node.data):
            node.data.extend(bytes(offset + length - len(node.data)))
        return None

    def chmod(self, path: bytes, mode: int) -> int | None:
        node = self.lookup(path)
        if isinstance(node, int):
            return node
        node.mode = mode & 0o7777
        return None

    def chown(self, path: bytes, uid: int, gid: int) -> int | None:
        node = self.lookup(path)
        if isinstance(node, int):
            return node
        node.uid, node.gid = uid, gid
        return None

    def utime(self, path: bytes, mtime_ns: int) -> int | None:
        node = self.lookup(path)
        if isinstance(node, int):
            return node
        node.mtime = mtime_ns
        return None

    def setxattr(self, path: bytes, name: str, value: bytes) -> int | None:
        node = self.lookup(path)
        if isinstance(node, int):
            return node
        if name.startswith("user.") and node.kind not in ("file", "dir"):
            return errno.EPERM
        node.xattrs[name] = value
        return None

    def removexattr(self, path: bytes, name: str) -> int | None:
        node = self.lookup(path)
        if isinstance(node, int):
            return node
        if name.startswith("user.") and node.kind not in ("file", "dir"):
            return errno.EPERM
        if name not in node.xattrs:
            return errno.ENODATA
        del node.xattrs[name]
        return None

    # ------------------------------------------------------------------ views
    def paths(self, kinds: tuple[str, ...] = ("dir", "file", "link", "fifo")) -> list[bytes]:
        out = []
        stack = [(b"", self.root)]
        while stack:
            p, node = stack.pop()
            if node.kind in kinds and p:
                out.append(p)
            if node.kind == "dir":
                for name, c in node.children.items():
                    stack.append((p + b"/" + name, c))
        if "dir" in kinds:
            out.append(b"/")
        return sorted(out)

    def snapshot(self) -> dict[bytes, tuple]:
        """path -> (kind, mode, uid, gid, nlink, content or target, xattrs, mtime)."""
        out: dict[bytes, tuple] = {}
        stack = [(b"/", self.root)]
        while stack:
            p, node = stack.pop()
            if node.kind == "dir":
                nlink = 2 + sum(1 for c in node.children.values() if c.kind == "dir")
                body: bytes = b""
            else:
                nlink = node.nlink_names
                body = node.target if node.kind == "link" else bytes(node.data)
            out[p] = (node.kind, node.mode if node.kind != "link" else 0o777, node.uid,
                      node.gid, nlink, body, tuple(sorted(node.xattrs.items())), node.mtime)
            if node.kind == "dir":
                for name, c in node.children.items():
                    stack.append(((p.rstrip(b"/") + b"/" + name), c))
        return out


def snapshot_of(walker_lstat, listdir, readfile, readlink, listxattr, getxattr,
                mtimes: dict[bytes, int | None]) -> dict[bytes, tuple]:
    """The same view of a real tree (ext4kit fs or a mounted directory) via callables."""
    out: dict[bytes, tuple] = {}
    stack = [b"/"]
    while stack:
        p = stack.pop()
        st = walker_lstat(p)
        m = st.st_mode
        if _stat.S_ISDIR(m):
            kind = "dir"
            body = b""
            for name in listdir(p):
                stack.append(p.rstrip(b"/") + b"/" + name)
        elif _stat.S_ISREG(m):
            kind, body = "file", readfile(p)
        elif _stat.S_ISLNK(m):
            kind, body = "link", readlink(p)
        elif _stat.S_ISFIFO(m):
            kind, body = "fifo", b""
        else:
            kind, body = "other", b""
        xs = {}
        if kind != "link":
            for n in listxattr(p):
                if n.startswith("user."):
                    xs[n] = getxattr(p, n)
        mt = st.st_mtime_ns if mtimes.get(p) is not None else None
        out[p] = (kind, _stat.S_IMODE(m), st.st_uid, st.st_gid, st.st_nlink, body,
                  tuple(sorted(xs.items())), mt)
    return out


def image_snapshot(fs, mtimes: dict[bytes, int | None]) -> dict[bytes, tuple]:
    return snapshot_of(
        lambda p: fs.lstat(p), lambda p: fs.listdir(p), lambda p: fs.read_bytes(p),
        lambda p: fs.readlink(p), lambda p: fs.listxattr(p, follow_symlinks=False),
        lambda p, n: fs.getxattr(p, n, follow_symlinks=False), mtimes)


def host_snapshot(root: str, mtimes: dict[bytes, int | None]) -> dict[bytes, tuple]:
    broot = os.fsencode(root).rstrip(b"/")

    def j(p: bytes) -> bytes:
        return broot + p if p != b"/" else broot + b"/"

    def readfile(p: bytes) -> bytes:
        with open(j(p), "rb") as f:
            return f.read()

    def lx(p: bytes) -> list[str]:
        try:
            return os.listxattr(j(p), follow_symlinks=False)
        except OSError:
            return []

    snap = snapshot_of(lambda p: os.lstat(j(p)),
                       lambda p: os.listdir(j(p)),
                       readfile, lambda p: os.readlink(j(p)), lx,
                       lambda p, n: os.getxattr(j(p), n, follow_symlinks=False), mtimes)
    return snap
