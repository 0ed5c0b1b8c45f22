"""Acceptance 1 of the writer issue: random operation sequences against a model.

After every sequence: the image's tree (read back by a fresh ext4kit.open) equals the
model, ``e2fsck -fn`` exits 0, and the Linux kernel (loop mount) sees the same tree.
Runs on ext4 (4 KiB and 1 KiB blocks), ext3 and ext2 (indirect maps).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat as _stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

import ext4kit
from fsmodel import Model, host_snapshot, image_snapshot
from wtools import assert_fsck_clean, can_mount, kernel_mount, make_image

NAMES = [b"a", b"b", b"c", b"dd", b"e" * 40, b"f" * 255]
CONFIGS = {
    "ext4-4k": ("ext4", 4096),
    "ext4-1k": ("ext4", 1024),
    "ext3-1k": ("ext3", 1024),
    "ext2-4k": ("ext2", 4096),
}
_counter = itertools.count()


def _errno_of(fn):
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return None


class WriterMachine(RuleBasedStateMachine):
    kind = "ext4"
    block_size = 4096
    base: Path = Path("/tmp")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model(extents=self.kind == "ext4")
        self.image = self.base / f"m{next(_counter)}.img"
        make_image(self.image, self.kind, "24M", block_size=self.block_size, inodes=2048)
        self.fs = ext4kit.open(self.image, "r+")

    # ------------------------------------------------------------------ helpers
    def _apply(self, expect, real) -> None:
        """``expect`` changed the model (None) or names the errno ``real`` must raise."""
        got = _errno_of(real)
        assert got == expect, f"expected errno {expect}, got {got}"

    def _any_path(self, data, kinds=("dir", "file", "link", "fifo")) -> bytes:
        paths = self.model.paths(kinds)
        choices = paths + [b"/nope", b"/a/b/c"]
        return data.draw(st.sampled_from(choices))

    def _new_path(self, data) -> bytes:
        d = data.draw(st.sampled_from(self.model.paths(("dir",))))
        name = data.draw(st.sampled_from(NAMES))
        return d.rstrip(b"/") + b"/" + name

    # ------------------------------------------------------------------ rules
    @rule(data=st.data(), mode=st.sampled_from([0o755, 0o700, 0o2775, 0o1777]))
    def mkdir(self, data, mode):
        p = self._new_path(data)
        self._apply(self.model.mkdir(p, mode), lambda: self.fs.mkdir(p, mode))

    @rule(data=st.data())
    def rmdir(self, data):
        p = self._any_path(data, ("dir",))
        if p == b"/":
            return
        self._apply(self.model.rmdir(p), lambda: self.fs.rmdir(p))

    @rule(data=st.data())
    def unlink(self, data):
        p = self._any_path(data, ("file", "link", "fifo"))
        self._apply(self.model.unlink(p), lambda: self.fs.unlink(p))

    @rule(data=st.data())
    def rename(self, data):
        src = self._any_path(data)
        if src == b"/":
            return
        if data.draw(st.booleans()):
            dst = self._any_path(data)
            if dst == b"/":
                return
        else:
            dst = self._new_path(data)
        self._apply(self.model.rename(src, dst), lambda: self.fs.rename(src, dst))

    @rule(data=st.data())
    def link(self, data):
        src = self._any_path(data, ("file", "fifo"))
        dst = self._new_path(data)
        self._apply(self.model.link(src, dst), lambda: self.fs.link(src, dst))

    @rule(data=st.data(), tgt=st.sampled_from([b"a", b"../b", b"/c/dd", b"x" * 59,
                                                  b"y" * 60, b"z" * 300]))
    def symlink(self, data, tgt):
        p = self._new_path(data)
        self._apply(self.model.symlink(tgt, p), lambda: self.fs.symlink(tgt, p))

    @rule(data=st.data())
    def mkfifo(self, data):
        p = self._new_path(data)
        self._apply(self.model.mkfifo(p, 0o640),
                    lambda: self.fs.mknod(p, _stat.S_IFIFO | 0o640))

    @rule(data=st.data(), size=st.sampled_from([0, 1, 100, 4095, 4096, 5000, 70000, 300000]),
          byte=st.integers(1, 255))
    def write_new(self, data, size, byte):
        p = data.draw(st.one_of(st.just(self._new_path(data)), st.just(self._any_path(data))))
        payload = bytes([byte]) * size
        self._apply(self.model.write_new(p, payload), lambda: self.fs.write_bytes(p, payload))

    @rule(data=st.data(), offset=st.sampled_from([0, 1, 1000, 4096, 12 * 4096 - 3, 200_000,
                                                  5_000_000]),
          size=st.sampled_from([1, 10, 4096, 9000]), byte=st.integers(1, 255))
    def write_at(self, data, offset, size, byte):
        p = self._any_path(data, ("file",))
        payload = bytes([byte]) * size

        def real():
            with self.fs.open(p, "r+b") as f:
                f.seek(offset)
                f.write(payload)
        self._apply(self.model.write(p, offset, payload), real)

    @rule(data=st.data(), size=st.sampled_from([10, 5000]), byte=st.integers(1, 255))
    def append(self, data, size, byte):
        p = self._any_path(data, ("file",))
        payload = bytes([byte]) * size
        node = self.model.lookup(p)
        off = len(node.data) if not isinstance(node, int) and node.kind == "file" else 0

        def real():
            with self.fs.open(p, "ab") as f:
                f.write(payload)
        if node == errno.ENOENT:  # "ab" creates a missing file
            self._apply(self.model.write_new(p, payload), real)
        else:
            self._apply(self.model.write(p, off, payload), real)

    @rule(data=st.data(), length=st.sampled_from([0, 1, 4095, 4097, 50_000, 3_000_000]))
    def truncate(self, data, length):
        p = self._any_path(data, ("file",))
        self._apply(self.model.truncate(p, length), lambda: self.fs.truncate(p, length))

    @rule(data=st.data(), offset=st.sampled_from([0, 4096, 100_000]),
          length=st.sampled_from([1, 8192, 200_000]), keep=st.booleans())
    def fallocate(self, data, offset, length, keep):
        p = self._any_path(data, ("file",))
        self._apply(self.model.fallocate(p, offset, length, keep),
                    lambda: self.fs.fallocate(p, offset, length, keep_size=keep))

    @rule(data=st.data(), mode=st.sampled_from([0o644, 0o4755, 0o600, 0o777]))
    def chmod(self, data, mode):
        p = self._any_path(data, ("dir", "file", "fifo"))
        self._apply(self.model.chmod(p, mode), lambda: self.fs.chmod(p, mode))

    @rule(data=st.data(), uid=st.sampled_from([0, 1000, 70000]), gid=st.sampled_from([0, 100]))
    def chown(self, data, uid, gid):
        p = self._any_path(data, ("dir", "file", "fifo"))
        self._apply(self.model.chown(p, uid, gid), lambda: self.fs.chown(p, uid, gid))

    @rule(data=st.data(), ns=st.sampled_from([0, 1_500_000_000_123_456_789,
                                              4_000_000_000_000_000_001]))
    def utime(self, data, ns):
        p = self._any_path(data, ("dir", "file", "fifo"))
        self._apply(self.model.utime(p, ns), lambda: self.fs.utime(p, ns=(ns, ns)))

    @rule(data=st.data(), name=st.sampled_from(["user.a", "user.bb", "user." + "k" * 60]))
    def setxattr(self, data, name):
        # sizes for which all three names always fit in one xattr block (no ENOSPC here)
        size = data.draw(st.sampled_from([0, 5, 200] + ([700] if self.block_size >= 4096 else [])))
        p = self._any_path(data, ("dir", "file"))
        value = bytes(range(256)) * (size // 256) + bytes(size % 256)
        self._apply(self.model.setxattr(p, name, value), lambda: self.fs.setxattr(p, name, value))

    @rule(data=st.data(), name=st.sampled_from(["user.a", "user.bb"]))
    def removexattr(self, data, name):
        p = self._any_path(data, ("dir", "file"))
        self._apply(self.model.removexattr(p, name), lambda: self.fs.removexattr(p, name))

    @rule()
    def sync(self):
        self.fs.sync()

    # ------------------------------------------------------------------ checks
    def _mtimes(self):
        return {p: v[7] for p, v in self.model.snapshot().items()}


    def teardown(self):
        try:
            self.fs.close()
            want = self.model.snapshot()
            mt = self._mtimes()
            with ext4kit.open(self.image) as fs:
                got = image_snapshot(fs, mt)
                assert not fs.problems, fs.problems[:3]
            _assert_same(got, want, "ext4kit")
            assert_fsck_clean(self.image)
            if can_mount() is None:
                mnt = self.image.with_suffix(".mnt")
                with kernel_mount(self.image, mnt):
                    seen = host_snapshot(str(mnt), mt)
                _assert_same(seen, want, "kernel")
                self.mounted = True
        finally:
            self.image.unlink(missing_ok=True)


def _assert_same(got: dict, want: dict, who: str) -> None:
    if got == want:
        return
    lines = []
    for p in sorted(set(got) | set(want)):
        if got.get(p) != want.get(p):
            g, w = got.get(p), want.get(p)
            short = lambda v: None if v is None else v[:5] + (  # noqa: E731
                len(v[5]), [(k, len(x)) for k, x in v[6]], v[7])
            lines.append(f"{p!r}: {who} {short(g)} model {short(w)}")
    raise AssertionError(f"{who} view differs from the model:\n" + "\n".join(lines[:20]))


def _machine(kind: str, block_size: int, base: Path) -> type:
    return type(f"Writer_{kind}_{block_size}", (WriterMachine,),
                {"kind": kind, "block_size": block_size, "base": base})


@pytest.mark.parametrize("config", list(CONFIGS))
def test_random_operations_match_model(config, tmp_path):
    kind, bs = CONFIGS[config]
    machine = _machine(kind, bs, tmp_path)
    from hypothesis.stateful import run_state_machine_as_test

    mounted = []
    orig = machine.teardown

    def teardown(self):
        orig(self)
        mounted.append(getattr(self, "mounted", False))
    machine.teardown = teardown
    run_state_machine_as_test(machine, settings=settings(
        max_examples=int(os.environ.get("EXT4KIT_MODEL_EXAMPLES", "40")),
        stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck)))
    assert mounted, "no sequence ran"
    if can_mount() is None:
        assert all(mounted), "the kernel check was skipped"
    else:
        print(f"kernel comparison skipped: {can_mount()}")
