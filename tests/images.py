"""Build ext2/3/4 images from host trees with e2fsprogs (and, for one image, the kernel).

Every image is checked with ``e2fsck -fn`` before it is handed out. Pipeline for the
``mke2fs -d`` configurations:

1. ``mke2fs -d STAGING`` (the staging tree, see ``treegen``),
2. ``fragment_with_debugfs``: remove the odd filler files, write ``frag/frag.bin`` into the
   holes with ``debugfs -w`` (hundreds of extents) and give it the expected attributes,
3. ``fix_after_mke2fs``: mke2fs 1.47.0 stores whole seconds only and wraps times after
   2038, so the exact atime/mtime (nanoseconds and epoch bits in ``*_extra``) of every
   inode are written with ``debugfs sif`` from the expected tree; with inline_data it
   also gets the size of some sparse/all-zero files wrong, which is corrected too,
4. for the htree variant ``e2fsck -fyD`` (indexes every directory bigger than a block),
5. ``e2fsck -fn`` must be clean.

The kernel image is populated with ``cp -a`` through a loop mount, then ``frag.bin`` is
re-written on a ``nodelalloc`` mount by interleaving 4 KiB appends with a spacer file.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import treegen

IMAGE_SIZE = "256M"
FIXED_UUID = "6b8a1c52-3f0e-4d8e-9a57-0e5f1f2d3c4b"
FIXED_HASH_SEED = "2f1d6a3e-8c4b-4e5f-9a0b-1c2d3e4f5a6b"
MIN_FRAG_EXTENTS = 200


@dataclass(frozen=True)
class ImageConfig:
    id: str
    mkfs_args: tuple[str, ...]
    block_size: int
    htree: bool = False
    kernel: bool = False

    @property
    def big_xattr_size(self) -> int:
        return big_xattr_size_for(self.block_size)


def big_xattr_size_for(block_size: int) -> int:
    # The value has to fit into one xattr block (32-byte header, entry, 4-byte end marker).
    return {1024: 700, 2048: 1500}.get(block_size, 3000)


CONFIGS: tuple[ImageConfig, ...] = (
    ImageConfig("ext4-4k", ("-t", "ext4", "-b", "4096"), 4096),
    ImageConfig("ext4-1k", ("-t", "ext4", "-b", "1024"), 1024),
    ImageConfig("ext3", ("-t", "ext3", "-b", "4096"), 4096),
    ImageConfig("ext2", ("-t", "ext2", "-b", "4096"), 4096),
    ImageConfig("ext4-inline", ("-t", "ext4", "-b", "4096", "-O", "inline_data"), 4096),
    ImageConfig("ext4-2k-nocsum", ("-t", "ext4", "-b", "2048", "-O", "^metadata_csum"), 2048),
    ImageConfig("ext4-htree", ("-t", "ext4", "-b", "4096"), 4096, htree=True),
    ImageConfig("kernel", ("-t", "ext4", "-b", "4096"), 4096, kernel=True),
)
CONFIG_BY_ID = {c.id: c for c in CONFIGS}


class ImageBuildSkip(Exception):
    """The image cannot be built in this environment (not root, no loop devices)."""


# --- small e2fsprogs wrappers -------------------------------------------------------------

def _run(cmd: list[str | bytes | os.PathLike], *, check: bool = True, **kw
         ) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run(cmd, capture_output=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n"
            f"{p.stdout.decode(errors='replace')}\n{p.stderr.decode(errors='replace')}"
        )
    return p


def mkfs(img: Path, config: ImageConfig, src: Path | None) -> None:
    img.unlink(missing_ok=True)
    cmd: list = ["mke2fs", "-q", "-F", *config.mkfs_args, "-I", "256", "-U", FIXED_UUID,
                 "-E", f"hash_seed={FIXED_HASH_SEED}"]
    if src is not None:
        cmd += ["-d", src]
    _run([*cmd, img, IMAGE_SIZE])


def debugfs(img: Path, *commands: str | bytes, write: bool = False) -> bytes:
    """Run debugfs commands (one ``-f`` script); returns stdout, raises on reported errors."""
    script = b"\n".join(c if isinstance(c, bytes) else c.encode() for c in commands) + b"\n"
    p = _run(["debugfs", *(["-w"] if write else []), "-f", "-", img], input=script)
    err = [ln for ln in p.stderr.decode(errors="replace").splitlines()
           if ln.strip() and not ln.startswith("debugfs ")]
    if err:
        raise RuntimeError(f"debugfs on {img} reported errors:\n" + "\n".join(err[:20]))
    return p.stdout


def fsck_check(img: Path) -> None:
    """Assert that ``e2fsck -fn`` finds nothing to fix."""
    p = _run(["e2fsck", "-fn", img], check=False)
    assert p.returncode == 0, (
        f"e2fsck -fn {img} exited {p.returncode}:\n{p.stdout.decode(errors='replace')}"
        f"\n{p.stderr.decode(errors='replace')}"
    )


_LS_P = re.compile(rb"/(\d+)/(\d+)/(-?\d+)/(-?\d+)/([^/]*)/(\d*)/\n")


def list_dir(img: Path, ino: int) -> list[tuple[int, int, bytes, int]]:
    """(inode, mode, name, size) of the live entries of directory ``<ino>``.

    ``.`` and ``..`` are left out, and so are the deleted entries (inode 0) that
    ``debugfs ls`` prints when they start a block. ``size`` is -1 for directories.
    """
    out = debugfs(img, f"ls -p <{ino}>")
    return [(int(m[1]), int(m[2], 8), m[5], int(m[6]) if m[6] else -1)
            for m in _LS_P.finditer(out) if m[1] != b"0" and m[5] not in (b".", b"..")]


def walk_image(img: Path) -> dict[bytes, tuple[int, int, int]]:
    """Relative path (bytes) -> (inode, mode, size) for every entry of the image."""
    result: dict[bytes, tuple[int, int, int]] = {}
    todo: list[tuple[int, bytes]] = [(2, b"")]
    while todo:
        ino, rel = todo.pop()
        for child, mode, name, size in list_dir(img, ino):
            crel = rel + b"/" + name if rel else name
            result[crel] = (child, mode, size)
            if stat.S_ISDIR(mode):
                todo.append((child, crel))
    return result


def extent_count(img: Path, path: str) -> int:
    """Number of data extents (or discontiguous block runs) of a file, from debugfs."""
    out = debugfs(img, f"stat {path}").decode(errors="replace")
    if "EXTENTS:" in out:
        body = out.split("EXTENTS:", 1)[1]
        return len(re.findall(r"\((\d+)(?:-\d+)?\):\d+", body))
    body = out.split("BLOCKS:", 1)[1]
    runs = re.findall(r"\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?", body)
    # count physically discontiguous runs of data blocks
    count, prev_end = 0, None
    for lo, _hi, plo, phi in runs:
        if not lo.isdigit():
            continue
        if prev_end is None or int(plo) != prev_end + 1:
            count += 1
        prev_end = int(phi or plo)
    return count


def has_htree(img: Path, path: str) -> bool:
    p = _run(["debugfs", "-R", f"htree {path}", img], check=False)
    text = (p.stdout + p.stderr).decode(errors="replace")
    return "Root node dump" in text and "Not a hash-indexed directory" not in text


# --- timestamps -------------------------------------------------------------------------

def _split_time(ns: int) -> tuple[int, int]:
    """ext4 encoding of a time in ns: (32-bit seconds field, *_extra field)."""
    sec, nsec = divmod(ns, 10**9)
    lo = sec & 0xFFFFFFFF
    lo_signed = lo - (1 << 32) if lo >= 1 << 31 else lo
    epoch = (sec - lo_signed) >> 32
    if not 0 <= epoch <= 3:
        raise ValueError(f"time {ns} ns is outside the ext4 range")
    return lo_signed, (nsec << 2) | epoch


def _sif_times(target: str, st: os.stat_result) -> list[str]:
    cmds = []
    for field, ns in (("atime", st.st_atime_ns), ("mtime", st.st_mtime_ns)):
        sec, extra = _split_time(ns)
        cmds += [f"sif {target} {field} @{sec}", f"sif {target} {field}_extra {extra}"]
    return cmds


EXT4_EXTENTS_FL = 0x80000
EXT4_INLINE_DATA_FL = 0x10000000


def _all_zero(path: Path) -> bool:
    with open(path, "rb") as f:
        return not any(chunk.strip(b"\0") for chunk in iter(lambda: f.read(1 << 20), b""))


def inode_info(img: Path, inodes: list[int]) -> dict[int, tuple[int, int | None]]:
    """(i_flags, size of inline data or None) of many inodes with one debugfs run."""
    out = debugfs(img, *(f"stat <{i}>" for i in inodes))
    parts = re.split(rb"debugfs: stat <(\d+)>\n", out)
    info = {}
    for i in range(1, len(parts), 2):
        flags = re.search(rb"Flags: (0x[0-9a-f]+)", parts[i + 1])
        inline = re.search(rb"Size of inline data: (\d+)", parts[i + 1])
        info[int(parts[i])] = (int(flags[1], 16), int(inline[1]) if inline else None)
    return info


def _fix_size(ino: int, flags: int, rel: bytes, src: Path, size: int) -> list[str]:
    """Commands that give inode ``ino`` the source's size (see ``fix_after_mke2fs``)."""
    cmds = []
    if flags & EXT4_INLINE_DATA_FL:
        # Only data that is all zeros (or holes) is left inline by mke2fs: turn the inode
        # into an extent-mapped file without extents, as the kernel would have it.
        assert _all_zero(src), f"{rel!r}: inline inode for non-zero data"
        new_flags = (flags & ~EXT4_INLINE_DATA_FL) | EXT4_EXTENTS_FL
        cmds += [f"sif <{ino}> flags {new_flags:#x}", f"ea_rm <{ino}> system.data"]
        header = [0xF30A, 4] + [0] * 13  # eh_magic/eh_entries=0, eh_max=4/eh_depth=0
        names = [f"block[{i}]" for i in range(12)] + ["block[IND]", "block[DIND]",
                                                      "block[TIND]"]
        cmds += [f"sif <{ino}> {n} {v:#x}" for n, v in zip(names, header, strict=True)]
    cmds.append(f"sif <{ino}> size {size}")
    return cmds


def fix_after_mke2fs(img: Path, expected: Path, *, inline_data: bool = False
                     ) -> list[bytes]:
    """Repair what ``mke2fs -d`` (e2fsprogs 1.47.0) does not reproduce; returns the paths
    whose size had to be fixed.

    * Timestamps: only whole seconds are stored, and times after 2038 wrap around. Every
      inode gets the exact atime/mtime (nanoseconds and epoch bits in ``*_extra``) of its
      path in ``expected``.
    * With ``inline_data``, a trailing hole is dropped from the size of sparse files, and
      files whose data is all zeros or holes stay "inline" with their full size (an inode
      the kernel refuses to read, and e2fsck does not notice). Such inodes are corrected.
    """
    exp = os.fsencode(expected)
    cmds: list[str] = []
    done: set[int] = set()
    suspects: dict[int, tuple[bytes, int, int]] = {}
    for rel, (ino, mode, size) in sorted(walk_image(img).items()):
        if ino in done or rel == b"lost+found":
            continue
        done.add(ino)
        st = os.lstat(os.path.join(exp, rel))
        cmds += _sif_times(f"<{ino}>", st)
        if stat.S_ISREG(mode) and (size != st.st_size or (inline_data and size > 60)):
            suspects[ino] = (rel, size, st.st_size)
    fixed: list[bytes] = []
    info = inode_info(img, list(suspects)) if suspects else {}
    for ino, (rel, image_size, size) in suspects.items():
        flags, inline_size = info[ino]
        if image_size != size or (inline_size is not None and inline_size < size):
            src = Path(os.fsdecode(os.path.join(exp, rel)))
            cmds += _fix_size(ino, flags, rel, src, size)
            fixed.append(rel)
    debugfs(img, *cmds, write=True)
    return fixed


# --- fragmentation ----------------------------------------------------------------------

def fragment_with_debugfs(img: Path, expected: Path) -> None:
    """Turn the staging layout into the expected one with a fragmented ``frag/frag.bin``."""
    src = expected / treegen.FRAG_FILE
    if any(c in str(src) for c in " \t\n\"'"):
        raise ValueError(f"debugfs cannot be given {src!r}")
    st = src.stat()
    name = os.path.basename(treegen.FRAG_FILE)
    cmds = [f"cd /{treegen.FRAG_DIR}"]
    cmds += [f"rm {n}" for n in treegen.frag_drop_names()]
    cmds += [
        f"write {src} {name}",
        f"sif {name} mode 0{st.st_mode:o}",
        f"sif {name} uid {st.st_uid}",
        f"sif {name} gid {st.st_gid}",
    ]
    debugfs(img, *cmds, write=True)


def fragment_with_kernel(mnt: Path, expected: Path) -> None:
    """Re-write ``frag.bin`` on a nodelalloc mount, interleaved with a spacer file."""
    data = (expected / treegen.FRAG_FILE).read_bytes()
    target = mnt / treegen.FRAG_FILE
    spacer = mnt / treegen.FRAG_DIR / "spacer.tmp"
    target.unlink()
    chunk = treegen.FRAG_CHUNK
    fa = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fb = os.open(spacer, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for off in range(0, len(data), chunk):
            os.write(fa, data[off:off + chunk])
            os.write(fb, bytes(chunk))
        os.fsync(fa)
        os.fsync(fb)
    finally:
        os.close(fa)
        os.close(fb)
    spacer.unlink()
    st = (expected / treegen.FRAG_FILE).stat()
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    dst = (expected / treegen.FRAG_DIR).stat()
    os.utime(mnt / treegen.FRAG_DIR, ns=(dst.st_atime_ns, dst.st_mtime_ns))


# --- builders ---------------------------------------------------------------------------

def build_mkfs_image(config: ImageConfig, staging: Path, expected: Path, img: Path) -> Path:
    mkfs(img, config, staging)
    fragment_with_debugfs(img, expected)
    inline = "inline_data" in config.mkfs_args
    fixed = fix_after_mke2fs(img, expected, inline_data=inline)
    if fixed and not inline:
        raise AssertionError(f"{config.id}: unexpected size fix-ups: {fixed}")
    if config.htree:
        p = _run(["e2fsck", "-fyD", img], check=False)
        if p.returncode not in (0, 1):
            raise RuntimeError(f"e2fsck -fyD {img}: {p.returncode}\n{p.stdout.decode()}")
        assert has_htree(img, "/many"), "e2fsck -D did not index /many"
    fsck_check(img)
    _check_frag(img)
    return img


def _check_frag(img: Path) -> None:
    n = extent_count(img, "/" + treegen.FRAG_FILE)
    assert n >= MIN_FRAG_EXTENTS, f"{img}: frag.bin has only {n} extents"


def _loop_dev_name(mnt: Path) -> str:
    src = _run(["findmnt", "-n", "-o", "SOURCE", "--target", mnt]).stdout.decode().strip()
    return os.path.basename(src)


def _mount(img: Path, mnt: Path, options: str) -> None:
    p = _run(["mount", "-t", "ext4", "-o", f"loop,{options}", img, mnt], check=False)
    if p.returncode != 0:
        raise ImageBuildSkip(f"loop mount failed: {p.stderr.decode(errors='replace').strip()}")


def _umount(mnt: Path) -> None:
    for attempt in range(10):
        p = _run(["umount", mnt], check=False)
        if p.returncode == 0:
            return
        time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"umount {mnt} failed: {p.stderr.decode(errors='replace')}")


def build_kernel_image(config: ImageConfig, expected: Path, img: Path) -> Path:
    if os.geteuid() != 0:
        raise ImageBuildSkip("the kernel image needs root (loop mount)")
    if shutil.which("mount") is None or shutil.which("cp") is None:
        raise ImageBuildSkip("mount/cp not available")
    mkfs(img, config, None)
    mnt = img.with_name(img.name + ".mnt")
    mnt.mkdir(exist_ok=True)
    _mount(img, mnt, "rw")
    try:
        _run(["cp", "-a", "--", f"{expected}/.", f"{mnt}/"])
    finally:
        _umount(mnt)
    _mount(img, mnt, "rw,nodelalloc")
    try:
        # Every allocation goes to the per-CPU locality group, so the two files interleave.
        knob = Path("/sys/fs/ext4") / _loop_dev_name(mnt) / "mb_stream_req"
        if knob.exists():  # without it _check_frag below reports too few extents
            knob.write_text("1000000000")
        fragment_with_kernel(mnt, expected)
    finally:
        _umount(mnt)
    mnt.rmdir()
    fsck_check(img)
    _check_frag(img)
    return img


def build_image(config: ImageConfig, staging: Path | None, expected: Path, img: Path) -> Path:
    """Build (and fsck) the image of ``config``; ``staging`` is unused for the kernel one."""
    if config.kernel:
        return build_kernel_image(config, expected, img)
    assert staging is not None
    return build_mkfs_image(config, staging, expected, img)


# --- hostile images -----------------------------------------------------------------------
# Small ext4 images (1 KiB blocks, no journal, no metadata_csum so that directory blocks
# can be patched in place) that try to make an extractor write outside its destination.

def _small_image(img: Path, work: Path) -> Path:
    src = work / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"legit\n")
    (src / "top.txt").write_bytes(b"top\n")
    payload = work / "payload"
    payload.write_bytes(b"pwned\n")
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^has_journal",
          "-U", FIXED_UUID, "-d", src, img, "8M"])
    return payload


def build_symlink_trap_image(img: Path, work: Path, abs_target: Path) -> dict[str, str]:
    """Legal symlinks pointing outside: absolute, ``../`` escapes, /etc/passwd.

    Returns name -> target of the symlinks (all must come out as symlinks, verbatim)."""
    _small_image(img, work)
    links = {
        "abs_dir": str(abs_target),
        "up": "../sentinel",
        "d/deep": "../../sentinel/keep.txt",
        "passwd": "/etc/passwd",
        "d/dotdot": "../../../../../../../../../../tmp",
    }
    debugfs(img, *(f"symlink {name} {target}" for name, target in links.items()), write=True)
    fsck_check(img)
    return links


def build_dupname_image(img: Path, work: Path, abs_target: Path) -> None:
    """A symlink followed by a directory *of the same name* holding a file: a naive
    extractor creates the symlink, then writes the file through it."""
    payload = _small_image(img, work)
    # debugfs refuses a second "abs_dir"/"up": link under a same-length name, patch later
    debugfs(
        img,
        f"symlink abs_dir {abs_target}",
        "symlink up ../sentinel",
        "mkdir trap1", f"write {payload} trap1/pwned", "ln trap1 XXXXXXX", "unlink trap1",
        "mkdir trap2", f"write {payload} trap2/pwned", "ln trap2 WW", "unlink trap2",
        write=True,
    )
    _patch_dir_names(img, "/", {b"XXXXXXX": b"abs_dir", b"WW": b"up"})


def _patch_dir_names(img: Path, dirpath: str, renames: dict[bytes, bytes]) -> None:
    """Rename entries of a linear directory in place (same length, no checksums)."""
    bs = 1024
    out = debugfs(img, f"blocks {dirpath}").decode()
    blocks = [int(b) for ln in out.splitlines() if not ln.startswith("debugfs:")
              for b in ln.split()]
    todo = dict(renames)
    with open(img, "r+b") as f:
        for blk in blocks:
            f.seek(blk * bs)
            buf = bytearray(f.read(bs))
            off = 0
            while off + 8 <= bs:
                rec_len = int.from_bytes(buf[off + 4:off + 6], "little")
                name_len = buf[off + 6]
                name = bytes(buf[off + 8:off + 8 + name_len])
                if name in todo:
                    new = todo.pop(name)
                    assert len(new) == len(name)
                    buf[off + 8:off + 8 + name_len] = new
                if rec_len < 8:
                    break
                off += rec_len
            f.seek(blk * bs)
            f.write(buf)
    assert not todo, f"entries not found in {dirpath}: {list(todo)}"


def build_badname_image(img: Path, work: Path, abs_escape: Path) -> list[bytes]:
    """Directory entries whose names no kernel would create: ``..``, ``.``, ``a/b``,
    ``../escape``, ``../../escape2`` (in a subdirectory) and an absolute path.

    ``abs_escape`` must not exist; returns the injected names."""
    payload = _small_image(img, work)
    abs_name = os.fsencode(abs_escape)
    assert len(abs_name) <= 255
    root_names = {b"Q" * 9: b"../escape", b"T" * 2: b"..", b"U": b".", b"V" * 3: b"a/b",
                  b"S" * len(abs_name): abs_name}
    sub_names = {b"R" * 13: b"../../escape2"}
    cmds = [f"write {payload} {n.decode()}" for n in root_names]
    cmds += [f"write {payload} d/{n.decode()}" for n in sub_names]
    debugfs(img, *cmds, write=True)
    _patch_dir_names(img, "/", root_names)
    _patch_dir_names(img, "/d", sub_names)
    return [*root_names.values(), *sub_names.values()]
