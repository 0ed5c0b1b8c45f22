"""``ext4kit crash run|matrix`` (the click group is added to ext4kit's CLI in cli.py).

Imports of the lab itself are deferred so ``ext4kit --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .workloads import WORKLOADS

MODES = ("nojournal", "journal", "ordered", "writeback")


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Any]:
    """A rich progress bar on stderr (a no-op callback when disabled or not a terminal)."""
    if not enabled:
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    except ImportError:  # pragma: no cover - rich is a dependency
        yield None
        return
    console = Console(stderr=True)
    # no refresh thread: --jobs forks workers, and forking a threaded process is unsafe
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal,
                  auto_refresh=False) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)
            prog.refresh()

        yield update


def outcome_table(rows: list[tuple[str, int, dict[str, int], str]], title: str = "") -> str:
    """Plain-text table (scenario, states, one column per class, note)."""
    from .lab import CLASSES
    from .matrix import SHORT

    head = ["scenario", "states"] + [SHORT[c] for c in CLASSES] + ["holds" if any(r[3] for r in rows) else ""]
    body = [[name, str(n)] + [str(o.get(c, 0)) for c in CLASSES] + [note]
            for name, n, o, note in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = [title] if title else []
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 or i == len(r) - 1 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths).rstrip())
    lines += [fmt(r) for r in body]
    return "\n".join(lines)


@click.group(name="crash")
def crash() -> None:
    """Crash lab: every state a power cut could leave, recovered and checked."""


@crash.command(name="run")
@click.argument("workload", type=click.Choice(sorted(WORKLOADS)))
@click.option("--mode", type=click.Choice(MODES), default="ordered", show_default=True)
@click.option("-o", "options", default="", help="mount options: barrier=0, journal_async_commit, "
              "noauto_da_alloc, nodelalloc, norevoke, journal_checksum ...")
@click.option("--states", "kinds", default="prefix,reorder,torn", show_default=True,
              help="crash states to explore (comma separated)")
@click.option("--max-states", default=500, show_default=True,
              help="random sample size for epochs of more than 12 writes")
@click.option("--seed", default=0, show_default=True)
@click.option("--jobs", default=1, show_default=True, help="worker processes")
@click.option("--oracle", type=click.Choice(["e2fsck"]), default=None,
              help="also run e2fsck -fn on every distinct state (default: on a sample)")
@click.option("--fsync", is_flag=True, help="workload variant that fsyncs (rename-replace)")
@click.option("--fs", "fs_kind", type=click.Choice(["ext4-nocsum", "ext4", "ext3"]),
              default="ext4-nocsum", show_default=True, help="file system of the base image")
@click.option("--checker", type=click.Choice(["quick", "fsck", "e2fsck"]), default="quick",
              show_default=True, help="metadata checker: in-process quick check, ext4kit's "
              "fsck -n, or e2fsck -fn")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
@click.option("--report", type=click.Path(dir_okay=False), help="write an HTML report")
@click.option("--export", type=click.Path(file_okay=False),
              help="write every crash state as an image (before recovery) + manifest.json")
def run_cmd(workload: str, mode: str, options: str, kinds: str, max_states: int, seed: int,
            jobs: int, oracle: str | None, fsync: bool, fs_kind: str, checker: str, as_json: bool,
            report: str | None, export: str | None) -> None:
    """Run WORKLOAD, explore its crash states, print the outcome classes."""
    from .lab import STATE_KINDS, LabConfig, run_lab

    states = tuple(s.strip() for s in kinds.split(",") if s.strip())
    bad = [s for s in states if s not in STATE_KINDS]
    if bad:
        raise click.UsageError(f"--states: unknown kind(s) {', '.join(bad)} "
                               f"(use {','.join(STATE_KINDS)})")
    try:
        from ..fs.writer import parse_mount_options
        parse_mount_options(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    cfg = LabConfig(workload, mode=mode, options=options, states=states, max_states=max_states,
                    seed=seed, jobs=max(1, jobs), oracle=oracle, fs_kind=fs_kind, checker=checker,
                    params={"fsync": True} if fsync else {})
    with _progress(not as_json, f"{workload} {mode}") as cb:
        res = run_lab(cfg, progress=cb, export=export)
    if report:
        from .report import write_report
        write_report(res, report)
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=1))
        return
    click.echo(outcome_table([(cfg.label(), len(res.states), res.outcomes, "")]))
    n = len(res.states)
    click.echo(f"\n{n} crash states in {res.seconds:.2f} s ({n / max(res.seconds, 1e-9):.0f}/s, "
               f"{res.checks} distinct recovered images checked, "
               f"{res.oracle_runs} by e2fsck -fn"
               + (f"; {res.workers} worker processes" if res.workers else "") + ")")
    seen: set[tuple[str, str]] = set()
    shown = 0
    for v in res.violations():
        key = (v["class"], v["detail"])
        if key in seen:
            continue
        seen.add(key)
        if shown == 0:
            click.echo("\nfirst violations (one per distinct finding):")
        if v["class"] == "inconsistent" and "; " in v["detail"]:
            # the checker's findings (or e2fsck's lines), one a line
            click.echo(f"  state {v['state']}: {v['class']}:")
            for line in v["detail"].split("; "):
                click.echo(f"      {line}")
        else:
            click.echo(f"  state {v['state']}: {v['class']}: {v['detail']}")
        shown += 1
        if shown >= 8:
            break
    if export:
        click.echo(f"\nexported {n} images and manifest.json to {export}")
    if report:
        click.echo(f"report: {report}")


@crash.command(name="matrix")
@click.option("--json", "as_json", is_flag=True)
@click.option("--jobs", default=1, show_default=True)
def matrix_cmd(as_json: bool, jobs: int) -> None:
    """Run the seed scenarios and print whether each predicted outcome holds."""
    from .matrix import SCENARIOS, run_lab

    rows = []
    out = []
    with _progress(not as_json, "seed scenarios") as cb:
        for i, sc in enumerate(SCENARIOS):
            res = run_lab(sc.config(jobs=max(1, jobs)))
            ok = bool(sc.holds(res.outcomes))
            note = "yes" if ok else ("no (known gap)" if sc.known_gap else "NO")
            rows.append((sc.name, len(res.states), res.outcomes, note))
            out.append({"scenario": sc.name, "predicted": sc.predicted, "holds": ok,
                        "known_gap": sc.known_gap, **res.to_json()})
            if cb:
                cb(i + 1, len(SCENARIOS))
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    click.echo(outcome_table(rows))
    click.echo("")
    for sc, (_, _, _, note) in zip(SCENARIOS, rows):
        click.echo(f"  {sc.name}: predicted: {sc.predicted} -> {note}")
        if note != "yes" and sc.known_gap:
            click.echo(f"      known gap: {sc.known_gap}")
    sys.stdout.flush()
