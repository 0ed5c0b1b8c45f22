"""One fsck run: open (backup superblock fallback), replay the journal (not under -n),
pass 0..5, write the repairs; under -y / -p repeat until a run finds nothing to fix."""

from __future__ import annotations

import os
import warnings
from typing import Any

from ..blockdev import FileDevice
from ..blockdev.base import BlockDevice
from ..errors import Ext4Error, NotExtError
from ..fs.filesystem import FileSystem
from ..ondisk.superblock import SUPERBLOCK_OFFSET, Superblock
from . import problems as P
from .context import Abort, Context
from .dups import pass1b
from .journal import check_journal, check_journal_backup
from .pass1 import Pass1
from .pass2 import Pass2
from .pass3 import Pass3
from .pass4 import Pass4
from .pass5 import Pass5
from .repair import Allocator
from .report import Report
from .superblock import check_super, process_orphans

_BLOCK_SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
MAX_RUNS = 4


def _open_fs(dev: BlockDevice, sb_block: int | None, report: Report) -> tuple[FileSystem, int | None, str | None]:
    """(file system, backup block used or None, why the primary was refused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fs = FileSystem(dev, sb_block=sb_block, csum="ignore", owns_dev=False)
            if sb_block is None and fs.sb_block is not None:
                # the library fell back to a backup superblock by itself
                raw = dev.read(SUPERBLOCK_OFFSET, 1024)
                try:
                    Superblock.parse(raw, verify=False)
                    why0 = "primary superblock unusable"
                except Ext4Error as exc0:
                    why0 = str(exc0)
                return fs, fs.sb_block, why0
            return fs, sb_block, None
        except Ext4Error as exc:
            if sb_block is not None:
                raise
            why = str(exc)
        raw = dev.read(SUPERBLOCK_OFFSET, 1024)
        cands: list[int] = []
        try:
            sb = Superblock.parse(raw, verify=False)
            cands.append(sb.f["s_first_data_block"] + sb.f["s_blocks_per_group"])
        except Exception:  # noqa: BLE001
            pass
        for bs in _BLOCK_SIZES:
            cands.append(bs * 8 + (1 if bs == 1024 else 0))
        for c in cands:
            try:
                fs = FileSystem(dev, sb_block=c, csum="ignore", owns_dev=False)
                return fs, c, why
            except Ext4Error:
                continue
        raise NotExtError(why)


def fsck(image: Any, mode: str = "n", *, force: bool = True, superblock: int | None = None,
         max_runs: int = MAX_RUNS) -> Report:
    """Check (``mode="n"``), preen (``"p"``) or repair (``"y"``) an image; returns a Report
    whose ``exit_code`` follows e2fsck."""
    if mode not in ("n", "p", "y"):
        raise ValueError("mode must be 'n', 'p' or 'y'")
    name = os.fspath(image) if not isinstance(image, BlockDevice) else repr(image)
    report = Report(str(name), mode)
    owns = not isinstance(image, BlockDevice)
    try:
        dev = FileDevice(image, writable=mode != "n") if owns else image
    except OSError as exc:
        report.error = f"cannot open {name}: {exc.strerror}"
        return report
    try:
        _check(dev, mode, force, superblock, max_runs, report)
    except Ext4Error as exc:
        if not report.findings:
            report.error = str(exc)
        else:
            report.aborted = str(exc)
    except Abort as exc:
        report.aborted = str(exc)
    finally:
        if owns:
            dev.close()
    return report


def _check(dev: BlockDevice, mode: str, force: bool, superblock: int | None, max_runs: int,
           report: Report) -> None:
    fs, used_backup, why = _open_fs(dev, superblock, report)
    ctx0 = Context(fs, mode, report)
    check_journal(ctx0)
    if ctx0.writable and (ctx0.dirty or ctx0.super_dirty):
        ctx0.flush()
        fs, _, _ = _open_fs(dev, superblock, report)
    if mode != "n" and fs.sb.has_compat("has_journal") and fs.sb.has_incompat("needs_recovery"):
        from ..jbd2.log import recover

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plan = recover(fs, write=True)
            report.journal_replayed = True
            report.findings.append(_info(P.JOURNAL_REPLAYED, count=len(plan.blocks) if plan else 0))
        except Ext4Error as exc:
            ctx0 = Context(fs, mode, report)
            if ctx0.ask(P.JOURNAL_BAD, why=str(exc)):
                _clear_journal_flags(fs)
        fs, used_backup, why = _open_fs(dev, superblock, report)
    elif fs.sb.has_incompat("needs_recovery") and fs.sb.has_compat("has_journal"):
        report.findings.append(_info(P.JOURNAL_SKIPPED))
    if not force and not used_backup and fs.sb.f["s_state"] & 1 and not fs.sb.f["s_state"] & 2:
        report.stats["skipped"] = "clean"
        return
    for run in range(max_runs):
        report.runs = run + 1
        before = len(report.findings)
        ctx = Context(fs, mode, report)
        if used_backup is not None:
            if ctx.ask(P.SB_CORRUPT, why=why or "-b given", block=used_backup) and ctx.writable:
                ctx.super_dirty = True
                ctx.dirty_groups.update(range(ctx.ngroups))
            used_backup = None if ctx.writable else used_backup
        _passes(ctx)
        if ctx.writable:
            # a clean run still records the check (state valid, errors cleared)
            _finish_super(ctx)
            ctx.flush()
        new = report.findings[before:]
        fixed = any(f.fixed for f in new)
        if mode == "n" or not (fixed or ctx.restart):
            break
        fs, _, _ = _open_fs(dev, None, report)
    else:
        verify = fsck_device_verify(dev)
        if verify:
            report.findings.append(_failed(P.REPAIR_FAILED, why="repairs did not converge: " + verify))


def fsck_device_verify(dev: BlockDevice) -> str | None:
    rep = Report("verify", "n")
    fs, _, _ = _open_fs(dev, None, rep)
    ctx = Context(fs, "n", rep)
    _passes(ctx)
    errs = rep.errors()
    return errs[0].message if errs else None


def _passes(ctx: Context) -> None:
    check_super(ctx)
    check_journal_backup(ctx)
    process_orphans(ctx)
    from .state import State

    st = State()
    ctx.state = st  # type: ignore[attr-defined]
    p1 = Pass1(ctx, st)
    p1.run()
    p1.check_ea_refcounts()
    al = Allocator(ctx, st)
    pass1b(ctx, st, al)
    Pass2(ctx, st).run()
    p3 = Pass3(ctx, st, al)
    p3.run()
    Pass4(ctx, st, p3).run()
    # write back the inodes repairs changed before the summaries are counted
    if ctx.writable:
        for ino in sorted(st.changed):
            raw = st.inodes.get(ino)
            if raw is None:
                raw_any = p1_raw(ctx, st, ino)
                if raw_any is None:
                    continue
                raw = raw_any
            ctx.write_inode(ino, raw)
    Pass5(ctx, st).run()
    ctx.report.stats.update({
        "inodes_in_use": sum(1 for i in st.inodes if i not in st.cleared),
        "directories": len(st.dirs) + len(st.inline_dirs),
        "blocks_claimed": int(sum(st.run_len)),
    })


def p1_raw(ctx: Context, st, ino: int):  # type: ignore[no-untyped-def]
    return None


def _finish_super(ctx: Context) -> None:
    f = ctx.sb.f
    errs = any(x.is_error for x in ctx.report.findings)
    state = f["s_state"]
    want = (state | 1) & ~2 if not errs else state
    if want != state:
        f["s_state"] = want
        ctx.dirty_super()


def _clear_journal_flags(fs: FileSystem) -> None:
    raw = fs.dev.read(SUPERBLOCK_OFFSET, 1024)
    sb = Superblock.parse(raw, verify=False)
    sb.f["s_feature_incompat"] &= ~0x4
    fs.dev.write(SUPERBLOCK_OFFSET, sb.pack())


def _info(code: int, **loc: Any):  # type: ignore[no-untyped-def]
    from .report import Finding

    return Finding(code, loc, False)


def _failed(code: int, **loc: Any):  # type: ignore[no-untyped-def]
    from .report import Finding

    return Finding(code, loc, False)
