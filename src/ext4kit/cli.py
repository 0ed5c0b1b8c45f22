"""The ``ext4kit`` command line: e2fsprogs-style tools over the library.

Exit codes: 0 success; 1 a named file or path problem (missing, not a directory...);
4 the image is corrupt in a way that stopped the command; 8 operational error (cannot
open, not ext2/3/4, truncated, unsupported feature); 16 usage error. Errors are one line
on stderr, never a traceback (set EXT4KIT_DEBUG=1 to see one).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import stat as _stat
import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .errors import CorruptError, Ext4Error

EXIT_OK, EXIT_PATH, EXIT_CORRUPT, EXIT_OPERATIONAL, EXIT_USAGE = 0, 1, 4, 8, 16


def _err(msg: str) -> None:
    click.echo(f"ext4kit: {msg}", err=True)


def _report_problems(fs: Any) -> None:
    probs = getattr(fs, "problems", [])
    for p in probs[:5]:
        _err(f"warning: {p}")
    more = len(probs) - 5 + getattr(fs, "problems_dropped", 0)
    if more > 0:
        _err(f"warning: ... and {more} more problems")


def guarded(func: Callable) -> Callable:
    """Turn every failure into one line on stderr and an e2fsprogs-style exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(os.environ.get("EXT4KIT_DEBUG"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rc = func(*args, **kwargs)
            except click.exceptions.Exit:
                raise
            except click.ClickException:
                raise
            except CorruptError as exc:
                _flush_warnings(caught)
                if debug:
                    raise
                _err(f"{kwargs.get('image', '')}: corrupt file system: {exc}")
                sys.exit(EXIT_CORRUPT)
            except Ext4Error as exc:
                _flush_warnings(caught)
                if debug:
                    raise
                _err(f"{kwargs.get('image', '')}: {exc}")
                sys.exit(exc.exit_code)
            except OSError as exc:
                _flush_warnings(caught)
                if debug:
                    raise
                where = exc.filename if exc.filename is not None else kwargs.get("image", "")
                if isinstance(where, bytes):
                    where = os.fsdecode(where)
                _err(f"{where}: {exc.strerror or exc}")
                sys.exit(EXIT_PATH)
            except (KeyboardInterrupt, BrokenPipeError):
                sys.exit(130)
            except (RecursionError, MemoryError) as exc:
                _flush_warnings(caught)
                if debug:
                    raise
                _err(f"{kwargs.get('image', '')}: corrupt file system: structure too large or cyclic ({type(exc).__name__})")
                sys.exit(EXIT_CORRUPT)
            except Exception as exc:  # never a traceback for a user
                _flush_warnings(caught)
                if debug:
                    raise
                _err(f"{kwargs.get('image', '')}: internal error: {type(exc).__name__}: {exc}")
                sys.exit(EXIT_OPERATIONAL)
            _flush_warnings(caught)
        sys.exit(rc or 0)

    return wrapper


def _flush_warnings(caught: list) -> None:
    seen = set()
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen.add(msg)
            _err(f"warning: {msg}")


def _open(image: str, **opts: Any) -> Any:
    from .fs.filesystem import FileSystem

    return FileSystem.open_image(image, "r", **opts)


class _Group(click.Group):
    # command groups imported only when used (keeps start-up of the other commands short)
    LAZY = {"crash": ("ext4kit.crash.cli", "crash")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            module, attr = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # usage errors exit 16 like e2fsprogs
        try:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(EXIT_OK)
        except click.UsageError as exc:
            exc.show()
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(EXIT_OPERATIONAL)
        except click.exceptions.Abort:
            sys.exit(32)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ext4kit")
def main() -> None:
    """ext4kit: read, write, check and crash-test ext2/3/4 images."""


# ----------------------------------------------------------------------------- fsck
@main.command(name="fsck")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-n", "no", is_flag=True, help="read-only: answer no to every fix (never writes)")
@click.option("-p", "-a", "preen", is_flag=True, help="preen: fix what is safe, exit 4 otherwise")
@click.option("-y", "yes", is_flag=True, help="fix everything")
@click.option("-f", "force", is_flag=True, help="check even when the file system is clean")
@click.option("-b", "superblock", type=int, default=None, help="use the superblock at this block")
@click.option("--json", "as_json", is_flag=True, help="every finding with code, location and fix")
@guarded
def fsck_cmd(image: str, no: bool, preen: bool, yes: bool, force: bool, superblock: int | None,
             as_json: bool) -> int:
    """Check and repair a file system (like e2fsck; exit codes as e2fsck's)."""
    if no + preen + yes > 1:
        _err("only one of the options -n, -p/-a and -y may be given")
        return 16
    from .fsck import fsck as run_fsck

    mode = "y" if yes else "p" if preen else "n"
    progress = None
    if not as_json and sys.stdout.isatty():
        from .fsck.progress import TerminalProgress

        progress = TerminalProgress()
    try:
        report = run_fsck(image, mode, force=force, superblock=superblock, progress=progress)
    except KeyboardInterrupt:
        return 32
    finally:
        if progress is not None:
            progress.close()
    if as_json:
        click.echo(report.to_json())
    else:
        if report.error:
            _err(f"{image}: {report.error}")
        for line in report.text_lines():
            click.echo(line)
        if report.aborted:
            click.echo(f"{image}: check aborted: {report.aborted}")
        st = report.stats
        if report.exit_code & 1:
            click.echo(f"{image}: ***** FILE SYSTEM WAS MODIFIED *****")
        if report.exit_code & 4:
            click.echo(f"{image}: ********** WARNING: Filesystem still has errors **********")
        if st.get("skipped") == "clean":
            click.echo(f"{image}: clean, {st['inodes_used']}/{st['inodes']} files, "
                       f"{st['blocks_used']}/{st['blocks']} blocks")
        elif st:
            click.echo(f"{image}: {st.get('inodes_in_use', '?')} inodes in use, "
                       f"{st.get('directories', '?')} directories, "
                       f"{st.get('blocks_claimed', '?')} blocks claimed")
    return report.exit_code


# ----------------------------------------------------------------------------- info
@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--groups", is_flag=True, help="also list every block group")
@guarded
def info(image: str, as_json: bool, groups: bool) -> int:
    """Superblock, features, geometry and journal summary (like dumpe2fs -h)."""
    from .inspect.info import render_info

    with _open(image) as fs:
        click.echo(render_info(fs, json=as_json, groups=groups), nl=not as_json or True)
        _report_problems(fs)
    return 0


# ----------------------------------------------------------------------------- ls
def _mode_string(mode: int) -> str:
    return _stat.filemode(mode)


def _fmt_time(ns: int) -> str:
    try:
        t = _dt.datetime.fromtimestamp(ns / 1e9)
    except (OverflowError, OSError, ValueError):
        return "?"
    return t.strftime("%Y-%m-%d %H:%M")


def _long_line(fs: Any, st: os.stat_result, name: str, target: str | None) -> str:
    if _stat.S_ISCHR(st.st_mode) or _stat.S_ISBLK(st.st_mode):
        size = f"{os.major(st.st_rdev)}, {os.minor(st.st_rdev)}"
    else:
        size = str(st.st_size)
    line = (f"{_mode_string(st.st_mode)} {st.st_nlink:>3} {st.st_uid:>5} {st.st_gid:>5} "
            f"{size:>10} {_fmt_time(st.st_mtime_ns)} {name}")
    if target is not None:
        line += f" -> {target}"
    return line


def _safe_name(name: str) -> str:
    # Show undecodable bytes and control characters escaped, as ls -b does.
    out = []
    for ch in name:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("path", default="/")
@click.option("-l", "long", is_flag=True, help="long listing (mode, links, owner, size, mtime)")
@click.option("-a", "all_", is_flag=True, help="include . and ..")
@guarded
def ls(image: str, path: str, long: bool, all_: bool) -> int:
    """List a directory of the image."""
    from .fs import dirs

    with _open(image) as fs:
        st = fs.lstat(path)
        if _stat.S_ISLNK(st.st_mode) and (not long or path.endswith("/")):
            try:  # like ls: follow a symlink operand unless -l; show a dangling one as is
                st = fs.stat(path)
            except OSError:
                pass
        failed = 0
        if not _stat.S_ISDIR(st.st_mode):
            rows: list[tuple[str, Any]] = [
                (os.path.basename(path.rstrip("/")) or path, fs.inode_of(path))]
        else:
            dinode = fs.inode_of(path, follow_symlinks=True)
            names = [(os.fsdecode(e.name), e.inode)
                     for e in dirs.iter_entries(fs, dinode, with_dots=all_)]
            names.sort(key=lambda t: os.fsencode(t[0]))
            rows = []
            for name, ino in names:
                if not long:
                    rows.append((name, None))
                    continue
                try:
                    rows.append((name, fs.get_inode(ino)))
                except CorruptError as exc:  # one broken entry does not hide the others
                    _err(f"warning: {_safe_name(name)}: {exc}")
                    rows.append((name, exc))
                    failed += 1
        for name, inode in rows:
            if not long:
                click.echo(_safe_name(name))
            elif isinstance(inode, Exception):
                click.echo(f"?{'?' * 9} {'?':>3} {'?':>5} {'?':>5} {'?':>10} {'?':16} {_safe_name(name)}")
            else:
                target = None
                if inode.is_symlink():
                    try:
                        target = _safe_name(os.fsdecode(fs._readlink_inode(inode)))
                    except CorruptError as exc:
                        _err(f"warning: {_safe_name(name)}: {exc}")
                        target = "?"
                        failed += 1
                click.echo(_long_line(fs, fs.stat_inode(inode), _safe_name(name), target))
        _report_problems(fs)
        if failed:
            raise CorruptError(f"{failed} {'entry' if failed == 1 else 'entries'} could not be shown in full")
    return 0


# ----------------------------------------------------------------------------- cat
@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("path")
@guarded
def cat(image: str, path: str) -> int:
    """Write a file's content to stdout."""
    with _open(image) as fs:
        out = sys.stdout.buffer
        with fs.open(path, "rb") as f:
            while True:
                chunk = f.read(8 << 20)
                if not chunk:
                    break
                out.write(chunk)
        out.flush()
        _report_problems(fs)
    return 0


# ----------------------------------------------------------------------------- stat
@main.command(name="stat")
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("path")
@click.option("--json", "as_json", is_flag=True)
@guarded
def stat_cmd(image: str, path: str, as_json: bool) -> int:
    """Inode details of PATH (without following a final symlink)."""
    from .ondisk.inode import FLAG_NAMES

    with _open(image) as fs:
        inode = fs.inode_of(path, follow_symlinks=False)
        st = fs.stat_inode(inode)
        flags = [n for bit, n in FLAG_NAMES.items() if inode.flags & bit]
        runs = [] if not (inode.is_reg() or inode.is_dir() or inode.is_symlink()) else [
            {"logical": r.logical, "physical": r.physical, "length": r.length, "uninit": r.uninit}
            for r in fs.block_map(inode).runs]
        times = {k: inode.time_ns(k) for k in ("atime", "mtime", "ctime", "crtime")}
        d: dict[str, Any] = {
            "path": path, "inode": inode.ino, "type": _type_name(inode.mode),
            "mode": f"{_stat.S_IMODE(inode.mode):04o}", "links": inode.links_count,
            "uid": inode.uid, "gid": inode.gid, "size": inode.size, "blocks": st.st_blocks,
            "flags": flags, "generation": inode.generation, "file_acl": inode.file_acl,
            "times_ns": times, "extents": runs,
            "xattrs": {k: v.hex() for k, v in fs.xattrs_of(inode).items()},
        }
        if inode.is_symlink():
            d["target"] = os.fsdecode(fs._readlink_inode(inode))
        if _stat.S_ISCHR(inode.mode) or _stat.S_ISBLK(inode.mode):
            d["rdev"] = list(inode.rdev())
        if fs.sb.metadata_csum:
            d["checksum"] = f"{inode.stored_checksum():#x}"
            d["checksum_ok"] = inode.checksum_ok(fs.csum_seed)
        if as_json:
            click.echo(json.dumps(d, indent=2))
        else:
            click.echo(f"  File: {path}")
            click.echo(f"  Inode: {inode.ino}   Type: {d['type']}   Mode: {d['mode']}   "
                       f"Links: {inode.links_count}   Generation: {inode.generation}")
            click.echo(f"  Uid: {inode.uid}   Gid: {inode.gid}   Size: {inode.size}   "
                       f"Blocks (512B): {st.st_blocks}")
            click.echo(f"  Flags: {', '.join(flags) or '-'}   File ACL: {inode.file_acl}")
            for k, v in times.items():
                click.echo(f"  {k + ':':8} {_iso_ns(v)}")
            if "target" in d:
                click.echo(f"  Target: {_safe_name(d['target'])}")
            if "rdev" in d:
                click.echo(f"  Device: {d['rdev'][0]},{d['rdev'][1]}")
            if "checksum" in d:
                click.echo(f"  Checksum: {d['checksum']} ({'ok' if d['checksum_ok'] else 'MISMATCH'})")
            if runs:
                shown = ", ".join(
                    f"({r['logical']}-{r['logical'] + r['length'] - 1}):{r['physical']}-"
                    f"{r['physical'] + r['length'] - 1}{' [uninit]' if r['uninit'] else ''}"
                    for r in runs[:20])
                more = f" ... ({len(runs)} extents)" if len(runs) > 20 else ""
                click.echo(f"  Extents: {shown}{more}")
            for k, v in fs.xattrs_of(inode).items():
                click.echo(f"  Xattr: {k} = {v[:64]!r}{'...' if len(v) > 64 else ''}")
        _report_problems(fs)
    return 0


def _iso_ns(ns: int) -> str:
    sec, frac = divmod(ns, 10**9)
    try:
        base = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        base = f"@{sec}"
    return f"{base}.{frac:09d} UTC"


def _type_name(mode: int) -> str:
    return {
        _stat.S_IFREG: "regular", _stat.S_IFDIR: "directory", _stat.S_IFLNK: "symlink",
        _stat.S_IFCHR: "character device", _stat.S_IFBLK: "block device",
        _stat.S_IFIFO: "fifo", _stat.S_IFSOCK: "socket",
    }.get(_stat.S_IFMT(mode), f"unknown ({_stat.S_IFMT(mode):#o})")


# ----------------------------------------------------------------------------- get
def _raise_fd_limit(want: int) -> None:
    """Lift this process's soft open-file limit towards ``want`` (never above the hard one)."""
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError):
        pass


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("path")
@click.argument("dest", type=click.Path())
@click.option("--no-xattrs", is_flag=True, help="do not copy user.* extended attributes")
@click.option("-v", "--verbose", is_flag=True)
@guarded
def get(image: str, path: str, dest: str, no_xattrs: bool, verbose: bool) -> int:
    """Copy PATH (a file, or a directory tree) out of the image to DEST."""
    from .extract import MAX_DEPTH, Extractor

    _raise_fd_limit(MAX_DEPTH + 256)  # the copy holds one fd per directory level
    with _open(image) as fs:
        ex = Extractor(fs, xattrs=not no_xattrs)
        stats = ex.extract(path, dest)
        for w in stats.warnings[:20]:
            _err(f"warning: {w}")
        if len(stats.warnings) > 20:
            _err(f"warning: ... and {len(stats.warnings) - 20} more")
        for e in stats.errors[:20]:
            _err(f"warning: not copied: {e}")
        if len(stats.errors) > 20:
            _err(f"warning: ... and {len(stats.errors) - 20} more entries not copied")
        if verbose:
            click.echo(f"{stats.files} files, {stats.dirs} directories, {stats.symlinks} symlinks, "
                       f"{stats.hardlinks} hard links, {stats.specials} special files, "
                       f"{stats.bytes} bytes")
        _report_problems(fs)
        if stats.errors:
            n = len(stats.errors)
            # the summary keeps the kind (and exit code) of the first failure
            kind = type(stats.first_error) if isinstance(stats.first_error, Ext4Error) else CorruptError
            raise kind(f"{n} {'entry' if n == 1 else 'entries'} could not be copied "
                       f"(the rest was); first: {stats.errors[0]}")
    return 0



# ----------------------------------------------------------------------------- mkfs
@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("size", required=False)
@click.option("-t", "fs_type", type=click.Choice(["ext2", "ext3", "ext4"]), default="ext4",
              show_default=True, help="file system type")
@click.option("-b", "block_size", type=click.Choice(["1024", "2048", "4096"]), help="block size")
@click.option("-N", "inodes", type=int, help="number of inodes")
@click.option("-i", "bytes_per_inode", type=int, help="bytes per inode")
@click.option("-I", "inode_size", type=int, help="inode size in bytes")
@click.option("-J", "journal_opts", help="journal options: size=MiB")
@click.option("-O", "features", multiple=True, help="features: name,^name,...")
@click.option("-L", "label", help="volume label (16 bytes at most)")
@click.option("-U", "uuid", help="file system UUID (or random, time, clear)")
@click.option("-m", "reserved_percent", type=float, help="reserved blocks percentage (default 5)")
@click.option("-E", "extended", multiple=True,
              help="extended options: root_owner[=UID:GID], hash_seed=UUID")
@click.option("-d", "source_dir", type=click.Path(file_okay=False), help="populate from a directory")
@click.option("-q", "quiet", is_flag=True, help="print nothing on success")
@guarded
def mkfs(image: str, size: str | None, fs_type: str, block_size: str | None, inodes: int | None,
         bytes_per_inode: int | None, inode_size: int | None, journal_opts: str | None,
         features: tuple[str, ...], label: str | None, uuid: str | None,
         reserved_percent: float | None, extended: tuple[str, ...], source_dir: str | None,
         quiet: bool) -> int:
    """Make an ext2/ext3/ext4 file system on IMAGE, like mke2fs 1.47.

    SIZE takes K, M, G, T suffixes (bytes); a bare number counts blocks of the -b size
    (1 KiB units without -b, as mke2fs). An existing file is discarded and resized; a
    block device is used as it is. Without SIZE the file or device size is used.
    """
    from .mkfs import mkfs as make_fs

    journal_mib = None
    if journal_opts is not None:
        for opt in filter(None, journal_opts.split(",")):
            key, _, val = opt.partition("=")
            if key != "size" or not val.isdigit():
                raise click.UsageError(f"bad journal option '{opt}' (supported: size=MiB)")
            journal_mib = int(val)
    root_owner: str | None = None
    hash_seed = None
    for ext in extended:
        for opt in filter(None, ext.split(",")):
            key, eq, val = opt.partition("=")
            if key == "root_owner":
                root_owner = val if eq else f"{os.getuid()}:{os.getgid()}"
            elif key == "hash_seed" and eq:
                hash_seed = val
            elif key in ("lazy_itable_init", "lazy_journal_init", "discard", "nodiscard"):
                pass  # what mkfs does already (lazy init; a file is discarded, a device is not)
            else:
                raise click.UsageError(f"bad extended option '{opt}' "
                                       "(supported: root_owner=UID:GID, hash_seed=UUID)")
    res = make_fs(image, size, fs_type=fs_type, block_size=int(block_size) if block_size else None,
                  inodes=inodes, bytes_per_inode=bytes_per_inode, inode_size=inode_size,
                  journal_size_mib=journal_mib, features=list(features), label=label, uuid=uuid,
                  root_owner=root_owner, reserved_percent=reserved_percent, hash_seed=hash_seed,
                  source_dir=source_dir)
    if not quiet:
        g = res.geometry
        click.echo(f"Creating filesystem with {g.blocks_count} {g.block_size // 1024}k blocks "
                   f"and {g.inodes_count} inodes")
        click.echo(f"Filesystem UUID: {res.uuid}")
        backups = [g.group_first_block(n) for n in g.backup_groups()]
        if backups:
            click.echo("Superblock backups stored on blocks: " + ", ".join(map(str, backups)))
        if res.journal_blocks:
            click.echo(f"Journal: {res.journal_blocks} blocks")
    return 0


# ---------------------------------------------------------------------- writing commands
def _open_rw(image: str) -> Any:
    from .fs.writer import WritableFileSystem

    return WritableFileSystem.open_writable(image)


def _parse_mode_arg(text: str, old: int) -> int:
    """chmod modes: octal (755, 0644) or symbolic (u+x,go-w,a=r,+t)."""
    if text and all(c in "01234567" for c in text):
        return int(text, 8)
    mode = old & 0o7777
    for clause in text.split(","):
        i = 0
        who = ""
        while i < len(clause) and clause[i] in "ugoa":
            who += clause[i]
            i += 1
        if i >= len(clause) or clause[i] not in "+-=":
            raise click.UsageError(f"invalid mode: '{text}'")
        who = who or "a"
        while i < len(clause) and clause[i] in "+-=":
            op = clause[i]
            i += 1
            perms = ""
            while i < len(clause) and clause[i] in "rwxXst":
                perms += clause[i]
                i += 1
            bits = 0
            for w in ("u", "g", "o"):
                if w in who or "a" in who:
                    shift = {"u": 6, "g": 3, "o": 0}[w]
                    for p_, v in (("r", 4), ("w", 2), ("x", 1)):
                        if p_ in perms:
                            bits |= v << shift
                    if "X" in perms and (_stat.S_ISDIR(old) or old & 0o111):
                        bits |= 1 << shift
            if "s" in perms:
                bits |= (_stat.S_ISUID if ("u" in who or "a" in who) else 0) | \
                        (_stat.S_ISGID if ("g" in who or "a" in who) else 0)
            if "t" in perms:
                bits |= _stat.S_ISVTX
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mask = 0
                for w in ("u", "g", "o"):
                    if w in who or "a" in who:
                        mask |= 0o7 << {"u": 6, "g": 3, "o": 0}[w]
                mode = (mode & ~mask) | bits
        if i != len(clause):
            raise click.UsageError(f"invalid mode: '{text}'")
    return mode


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("src", type=click.Path(exists=False))
@click.argument("dest")
@click.option("--no-xattrs", is_flag=True, help="do not copy extended attributes")
@click.option("-v", "--verbose", is_flag=True)
@guarded
def put(image: str, src: str, dest: str, no_xattrs: bool, verbose: bool) -> int:
    """Copy host file or tree SRC into the image as DEST (into DEST if it is a directory)."""
    from .populate import put as do_put

    if not os.path.lexists(src):
        raise OSError(2, "No such file or directory", src)
    with _open_rw(image) as fs:
        st = do_put(fs, src, dest, xattrs=not no_xattrs)
    for w in st.warnings:
        _err(f"warning: {w}")
    if verbose:
        click.echo(f"{st.files} files, {st.dirs} directories, {st.symlinks} symlinks, "
                   f"{st.specials} special files, {st.hardlinks} hard links, {st.bytes} bytes")
    return 1 if st.warnings else 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "-R", "recursive", is_flag=True, help="remove directories and their contents")
@click.option("-f", "force", is_flag=True, help="ignore missing paths")
@guarded
def rm(image: str, paths: tuple[str, ...], recursive: bool, force: bool) -> int:
    """Remove files (and with -r, directory trees) from the image."""
    with _open_rw(image) as fs:
        for path in paths:
            try:
                st = fs.lstat(path)
            except FileNotFoundError:
                if force:
                    continue
                raise
            if _stat.S_ISDIR(st.st_mode):
                if not recursive:
                    raise OSError(21, "Is a directory", path)
                fs.rmtree(path)
            else:
                fs.unlink(path)
    return 0


@main.command(name="mkdir")
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("paths", nargs=-1, required=True)
@click.option("-p", "parents", is_flag=True, help="make parents as needed; no error if existing")
@click.option("-m", "mode", default="755", help="mode (octal), default 755")
@guarded
def mkdir_cmd(image: str, paths: tuple[str, ...], parents: bool, mode: str) -> int:
    """Make directories in the image."""
    m = _parse_mode_arg(mode, _stat.S_IFDIR | 0o755)
    with _open_rw(image) as fs:
        for path in paths:
            if parents:
                fs.makedirs(path, m, exist_ok=True)
            else:
                fs.mkdir(path, m)
    return 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("src")
@click.argument("dest")
@guarded
def mv(image: str, src: str, dest: str) -> int:
    """Rename SRC to DEST (into DEST when it is a directory), replacing atomically."""
    with _open_rw(image) as fs:
        try:
            if _stat.S_ISDIR(fs.stat(dest).st_mode):  # like mv: into an existing directory
                dest = dest.rstrip("/") + "/" + src.rstrip("/").rpartition("/")[2]
        except FileNotFoundError:
            pass
        fs.rename(src, dest)
    return 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("target")
@click.argument("link_name")
@click.option("-s", "symbolic", is_flag=True, help="make a symbolic link")
@guarded
def ln(image: str, target: str, link_name: str, symbolic: bool) -> int:
    """Make a hard link (or with -s a symbolic link) LINK_NAME to TARGET."""
    with _open_rw(image) as fs:
        if symbolic:
            fs.symlink(target, link_name)
        else:
            fs.link(target, link_name)
    return 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("mode")
@click.argument("paths", nargs=-1, required=True)
@guarded
def chmod(image: str, mode: str, paths: tuple[str, ...]) -> int:
    """Change the mode of files in the image (octal or symbolic, like chmod)."""
    with _open_rw(image) as fs:
        for path in paths:
            old = fs.stat(path).st_mode
            fs.chmod(path, _parse_mode_arg(mode, old))
    return 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("paths", nargs=-1, required=True)
@click.option("-s", "--size", "size", required=True,
              help="new size in bytes (K, M, G suffixes; +N/-N relative)")
@guarded
def truncate(image: str, paths: tuple[str, ...], size: str) -> int:
    """Shrink or extend files in the image to SIZE (extending leaves a hole)."""
    rel = size[:1] if size[:1] in "+-" else ""
    num = size[1:] if rel else size
    mult = 1
    if num[-1:].upper() in ("K", "M", "G", "T"):
        mult = 1024 ** ("KMGT".index(num[-1].upper()) + 1)
        num = num[:-1]
    if not num.isdigit():
        raise click.UsageError(f"invalid size '{size}'")
    n = int(num) * mult
    with _open_rw(image) as fs:
        for path in paths:
            cur = fs.stat(path).st_size
            new = cur + n if rel == "+" else max(0, cur - n) if rel == "-" else n
            fs.truncate(path, new)
    return 0


# ---------------------------------------------------------------------- journal commands
@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@guarded
def recover(image: str) -> int:
    """Replay the journal of IMAGE (what a mount or e2fsck does first), nothing else."""
    from .fs.filesystem import FileSystem
    from .jbd2.log import recover as do_recover

    with warnings.catch_warnings():  # "needs recovery" is why we are here
        warnings.simplefilter("ignore")
        fs = FileSystem._on_device(image, writable=True)
    try:
        if not fs.sb.has_compat("has_journal"):
            click.echo(f"{image}: no journal")
            return 0
        plan = do_recover(fs, write=True)
    finally:
        fs.close()
    assert plan is not None
    n = len(plan.scan.committed)
    click.echo(f"{image}: replayed {n} transaction{'s' if n != 1 else ''}, "
               f"{len(plan.blocks)} blocks ({plan.revoked_skips} revoked copies skipped); "
               f"{plan.scan.end_reason}")
    return 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@guarded
def journal(image: str, as_json: bool) -> int:
    """Show the journal: its superblock and every transaction in the log (like logdump)."""
    from .jbd2.log import JournalArea, scan

    fs = _open(image)
    with fs:
        if not fs.sb.has_compat("has_journal"):
            raise OSError(2, "the file system has no journal", image)
        area = JournalArea.of(fs)
        jsb = area.read_superblock()
        res = scan(area, jsb)
    info: dict[str, Any] = {
        "blocksize": jsb.s_blocksize, "maxlen": jsb.s_maxlen, "first": jsb.s_first,
        "sequence": jsb.s_sequence, "start": jsb.s_start, "errno": jsb.s_errno,
        "features": jsb.feature_list(), "checksum_type": jsb.s_checksum_type,
        "needs_recovery": bool(jsb.s_start),
        "transactions": [
            {"sequence": t.sequence, "start": t.start, "committed": t.committed,
             "commit_block": t.commit_block, "commit_time": t.commit_time[0],
             "commit_nsec": t.commit_time[1], "descriptors": t.descriptors,
             "revoke_blocks": t.revoke_blocks, "revoked": t.revokes,
             "blocks": [{"journal_block": p, "fs_block": tag.blocknr, "flags": tag.flags}
                        for p, tag in t.tags],
             "problem": t.problem}
            for t in res.transactions],
        "end": res.end_reason,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return 0
    click.echo(f"Journal: {jsb.s_maxlen} blocks of {jsb.s_blocksize} bytes, first {jsb.s_first}")
    click.echo(f"Journal features: {' '.join(jsb.feature_list()) or '(none)'}")
    click.echo(f"Journal sequence: {jsb.s_sequence}  start: {jsb.s_start}"
               + ("  (needs recovery)" if jsb.s_start else "  (clean)"))
    for t in info["transactions"]:
        state = "committed" if t["committed"] else "NOT committed"
        when = ""
        if t["committed"]:
            try:
                when = " at " + _dt.datetime.fromtimestamp(
                    t["commit_time"], _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            except (OverflowError, OSError, ValueError):  # a garbage commit time
                when = f" at @{t['commit_time']}"
        click.echo(f"transaction {t['sequence']} at journal block {t['start']}: {state}{when}, "
                   f"{len(t['blocks'])} blocks, {len(t['revoked'])} revoked")
        for b in t["blocks"]:
            flags = " escaped" if b["flags"] & 1 else ""
            click.echo(f"  FS block {b['fs_block']} logged at journal block {b['journal_block']}{flags}")
        if t["revoked"]:
            click.echo("  revoked: " + ", ".join(map(str, t["revoked"][:50]))
                       + (" ..." if len(t["revoked"]) > 50 else ""))
        if t["problem"]:
            click.echo(f"  stopped: {t['problem']}")
    click.echo(f"End of log: {res.end_reason}")
    return 0


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-O", "features", multiple=True,
              help="features: has_journal (add a journal) or ^has_journal (remove it)")
@click.option("-J", "journal_opts", help="journal options: size=MiB (adds a journal)")
@guarded
def tune(image: str, features: tuple[str, ...], journal_opts: str | None) -> int:
    """Add or remove the journal of IMAGE, like tune2fs -O [^]has_journal [-J size=MiB].

    Removing refuses a journal that needs recovery (run 'ext4kit recover' or e2fsck
    first). Adding uses ext2fs_default_journal_size unless -J size= is given, and refuses
    a file system that already has a journal.
    """
    from .tune import TuneUsageError
    from .tune import tune as do_tune

    if not features and journal_opts is None:
        raise click.UsageError("nothing to do: give -O [^]has_journal and/or -J size=MiB")
    try:
        res = do_tune(image, list(features), journal_opts)
    except TuneUsageError as exc:
        raise click.UsageError(str(exc)) from None
    for msg in res.messages:
        click.echo(msg)
    return 0


if __name__ == "__main__":
    main()
