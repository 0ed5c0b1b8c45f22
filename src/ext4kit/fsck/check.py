"""One fsck run: open (backup superblock fallback), replay the journal (not under -n),
pass 0..5, write the repairs; under -y / -p repeat until a run finds nothing to fix."""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from ..blockdev import FileDevice
from ..blockdev.base import BlockDevice
from ..errors import Ext4Error, NotExtError
from ..fs.filesystem import FileSystem
from ..ondisk.groupdesc import BG_BLOCK_UNINIT, BG_INODE_UNINIT
from ..ondisk.superblock import SUPERBLOCK_OFFSET, Superblock
from . import problems as P
from .context import Abort, Context
from .dups import pass1b
from .journal import check_journal, check_journal_backup
from .p0_tables import TablePlan, check_desc, drop_claims, relocate
from .p1e_optimize import pass1e
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


class PreenHalt(Exception):
    """-p met a problem it may not fix on its own (e2fsck's preenhalt)."""


class FsckContext(Context):
    """The run's Context; under -p a problem that is not safe to fix without asking stops
    the run ("UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY"), as e2fsck's preen does."""

    def ask(self, code: int, **loc: Any) -> bool:
        answer = super().ask(code, **loc)
        if self.mode == "p" and not answer:
            p = P.TABLE[code]
            if p.prompt and not p.flags & (P.PREEN_OK | P.INFO | P.NO_FIX | P.PREEN_NO):
                raise PreenHalt(p.name)
        return answer


def _open_fs(dev: BlockDevice, sb_block: int | None, report: Report, *, mode: str = "n",
             fallback: bool = False) -> tuple[FileSystem, int | None, str | None]:
    """(file system, backup block used or None, why the primary was refused).

    With ``fallback`` (the first open of a check, not under -p, no -b given), group
    descriptors that fail e2fsck's ext2fs_check_desc make it try the backup superblock
    and descriptors of group 1 instead, as e2fsck does."""
    fs, used, why = _open_fs1(dev, sb_block, report)
    if not fallback or mode == "p" or sb_block is not None or used is not None or fs.group_count < 2:
        return fs, used, why
    bad = check_desc(fs)
    if bad is None:
        return fs, used, why
    backup = fs.sb.f["s_first_data_block"] + fs.sb.f["s_blocks_per_group"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs2 = FileSystem(dev, sb_block=backup, csum="ignore", owns_dev=False)
    except Ext4Error:
        return fs, used, why
    return fs2, backup, f"group descriptors look bad: {bad}"


def _open_fs1(dev: BlockDevice, sb_block: int | None, report: Report) -> tuple[FileSystem, int | None, str | None]:
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
         max_runs: int = MAX_RUNS, progress: Any = None) -> Report:
    """Check (``mode="n"``), preen (``"p"``) or repair (``"y"``) an image; returns a Report
    whose ``exit_code`` follows e2fsck. ``force=False`` skips a file system that is clean
    (as e2fsck without -f); ``progress(pass_no, done, total)`` is called as passes advance."""
    if mode not in ("n", "p", "y"):
        raise ValueError("mode must be 'n', 'p' or 'y'")
    name = os.fspath(image) if not isinstance(image, BlockDevice) else repr(image)
    report = Report(str(name), mode, progress=progress)
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
    fs, used_backup, why = _open_fs(dev, superblock, report, mode=mode, fallback=True)
    ctx0 = Context(fs, mode, report)
    check_journal(ctx0)
    if ctx0.writable and (ctx0.dirty or ctx0.super_dirty):
        ctx0.flush()
        fs, _, _ = _open_fs(dev, superblock if used_backup is None else used_backup, report)
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
        fs, used_backup, why = _open_fs(dev, superblock, report, mode=mode, fallback=True)
    elif fs.sb.has_incompat("needs_recovery") and fs.sb.has_compat("has_journal"):
        report.findings.append(_info(P.JOURNAL_SKIPPED))
    # e2fsck's check_if_skip (after check_super_block): a clean file system whose
    # superblock and group descriptors pass is not checked further without -f
    may_skip = not force and not used_backup and fs.sb.f["s_state"] & 1 and not fs.sb.f["s_state"] & 2 \
        and not _check_due(fs.sb)
    for run in range(max_runs):
        report.runs = run + 1
        before = len(report.findings)
        ctx = FsckContext(fs, mode, report)
        try:
            if used_backup is not None:
                _backup_descriptors(ctx)
                if ctx.ask(P.SB_CORRUPT, why=why or "-b given", block=used_backup) and ctx.writable:
                    ctx.super_dirty = True
                    ctx.dirty_groups.update(range(ctx.ngroups))
                used_backup = None if ctx.writable else used_backup
            tplan = check_super(ctx)
            if may_skip and run == 0 and len(report.findings) == before:
                process_orphans(ctx)
                if all(f.fixed and f.problem.flags & P.NOT_CHANGED for f in report.findings[before:]):
                    if ctx.writable:
                        ctx.flush()
                    sb = ctx.sb
                    report.stats.update({
                        "skipped": "clean",
                        "inodes_used": sb.f["s_inodes_count"] - sb.f["s_free_inodes_count"],
                        "inodes": sb.f["s_inodes_count"],
                        "blocks_used": sb.blocks_count - sb.free_blocks_count,
                        "blocks": sb.blocks_count})
                    return
            _passes(ctx, tplan)
        except PreenHalt:
            _preen_halt(ctx, before)
            return
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


def _backup_descriptors(ctx: Context) -> None:
    """Backup descriptors are as old as the last resize or mkfs: like libext2fs opening a
    backup superblock, nothing in them is trusted to be uninitialised (every group's
    inodes and blocks are checked); their checksums are set for the new values."""
    if not ctx.csum_feature:
        return
    for g, gd in enumerate(ctx.groups):
        if gd.flags & (BG_BLOCK_UNINIT | BG_INODE_UNINIT) or gd.itable_unused:
            gd.f["bg_flags"] = gd.flags & ~(BG_BLOCK_UNINIT | BG_INODE_UNINIT)
            ctx.set_gd(g, "bg_itable_unused", 0)
            gd.f["bg_checksum"] = ctx.gd_checksum(g)


def _preen_halt(ctx: Context, before: int) -> None:
    """e2fsck's preenhalt: nothing more is repaired (this run's pending repairs are
    dropped, never written), the superblock is marked as having errors, exit 4."""
    report = ctx.report
    for f in report.findings[before:]:
        if f.answer and not f.failed and not f.problem.flags & P.INFO:
            f.failed = "not written: the preen run stopped"
    report.findings.append(_failed(P.PREEN_HALT))
    ctx.dirty.clear()
    ctx.dirty_groups.clear()
    ctx.super_dirty = False
    try:
        raw = ctx.dev.read(SUPERBLOCK_OFFSET, 1024)
        sb = Superblock.parse(raw, verify=False)
    except Ext4Error:
        return
    if not sb.f["s_state"] & 2:
        sb.f["s_state"] |= 2
        ctx.dev.write(SUPERBLOCK_OFFSET, sb.pack())
        ctx.dev.flush()


def _passes(ctx: Context, plan: TablePlan | None = None) -> None:
    if plan is None:
        plan = check_super(ctx)
    check_journal_backup(ctx)
    process_orphans(ctx)
    from .state import State

    st = State()
    ctx.state = st  # type: ignore[attr-defined]
    p1 = Pass1(ctx, st)
    p1.run()
    p1.check_ea_refcounts()
    drop_claims(st, plan)
    al = Allocator(ctx, st)
    # e2fsck's handle_fs_bad_blocks: tables without a valid home get one now that every
    # block in use is known
    if plan.move and ctx.writable:  # the block map costs a bit per block: only when needed
        relocate(ctx, st, al._block_map(), st.extra_blocks.append, plan)
    pass1b(ctx, st, al)
    pass1e(ctx, st)
    _tick(ctx, 2)
    Pass2(ctx, st, al).run()
    _tick(ctx, 3)
    p3 = Pass3(ctx, st, al)
    p3.run()
    _tick(ctx, 4)
    Pass4(ctx, st, p3).run()
    from .quota import check_quota

    check_quota(ctx, st, al)  # e2fsck does it after pass 5; before it here so new blocks are counted
    # write back the inodes repairs changed before the summaries are counted
    if ctx.writable:
        for ino in sorted(st.changed):
            raw = st.inodes.get(ino)
            if raw is not None:
                ctx.write_inode(ino, raw)
    _tick(ctx, 5)
    Pass5(ctx, st).run()
    ctx.report.stats.update({
        "inodes_in_use": len(st.inodes) - len(st.cleared & st.inodes.keys()),
        "directories": len(st.dirs) + len(st.inline_dirs),
        "blocks_claimed": int(sum(st.run_len)),
    })


def _check_due(sb: Superblock) -> bool:
    """The other reasons e2fsck's check_if_skip checks a clean file system: mounted
    s_max_mnt_count times, s_checkinterval passed, or last checked in the future."""
    f = sb.f
    if f["s_max_mnt_count"] > 0 and f["s_mnt_count"] >= f["s_max_mnt_count"]:
        return True
    now = int(time.time())
    last = f["s_lastcheck"] | f.get("s_lastcheck_hi", 0) << 32
    if f["s_checkinterval"] and now >= last + f["s_checkinterval"]:
        return True
    return last > now + 86400  # e2fsck allows a day of clock skew (accept_time_fudge)


def _tick(ctx: Context, pass_no: int) -> None:
    if ctx.progress is not None:
        ctx.progress(pass_no, 0, 1)


def _finish_super(ctx: Context) -> None:
    f = ctx.sb.f
    errs = any(x.is_error for x in ctx.report.findings)
    state = f["s_state"]
    if not errs and not state & 1:
        # e2fsck: a file system found not cleanly unmounted and left valid exits 1
        ctx.ask(P.FS_NOT_CLEAN)
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
