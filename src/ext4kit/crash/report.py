"""``--report FILE.html``: one self-contained page -- an SVG of the trace (each write by
block kind, flushes as bars, workload steps as labels), the crash states of each epoch
coloured by outcome, and the outcome table."""

from __future__ import annotations

import html
import struct
from collections import Counter

from ..ondisk import jbd2 as j
from .lab import CLASSES, LabResult
from .overlay import PAGE, Overlay

KIND_COLORS = {
    "journal superblock": "#7b3294",
    "journal descriptor": "#c2a5cf",
    "journal revoke": "#e7d4e8",
    "logged block": "#92c5de",
    "commit block": "#0571b0",
    "metadata home": "#f4a582",
    "superblock": "#ca0020",
    "data": "#66bd63",
}
OUTCOME_COLORS = {
    "consistent": "#4dac26", "fsync_lost": "#fdb863", "zero_length": "#e66101",
    "atomicity": "#b2abd2", "garbage_data": "#d01c8b", "inconsistent": "#5e3c99",
}
PRIORITY = ["inconsistent", "garbage_data", "zero_length", "atomicity", "fsync_lost",
            "consistent"]


def _data_blocks(res: LabResult) -> set[int]:
    """Blocks of regular files' data, at the start and at the end of the trace."""
    from ..fs.filesystem import FileSystem

    out: set[int] = set()
    rec = res.recording
    end = Overlay(rec.base)
    for w in rec.writes:
        end.write(w.offset, w.data)
    for dev in (Overlay(rec.base), end):
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fs = FileSystem(dev, owns_dev=False)
                for top, _d, files in fs.walk("/"):
                    for f in files:
                        ino = fs.inode_of(top.rstrip("/") + "/" + f)
                        if ino.is_reg():
                            for r in fs.block_map(ino).runs:
                                out.update(range(r.physical, r.physical + r.length))
        except Exception:  # noqa: BLE001 - a picture, best effort
            pass
    return out


def classify_write(offset: int, data: bytes, journal: set[int], data_blocks: set[int]) -> str:
    blk = offset // PAGE
    if blk in journal:
        if len(data) >= 8:
            magic, btype = struct.unpack(">II", data[:8])
            if magic == j.JBD2_MAGIC:
                return {1: "journal descriptor", 2: "commit block", 5: "journal revoke"}.get(
                    btype, "journal superblock")
        return "logged block"
    if offset < 2048 and offset + len(data) > 1024:
        return "superblock"
    return "data" if blk in data_blocks else "metadata home"


def primary(classes: list[str]) -> str:
    for c in PRIORITY:
        if c in classes:
            return c
    return "consistent"


def trace_svg(res: LabResult) -> str:
    rec = res.recording
    dblocks = _data_blocks(res)
    ops = [op for op in rec.trace.ops]
    slots = [op for op in ops if op.kind in "WF"]
    n = max(1, len(slots))
    step = max(6.0, min(28.0, 1100.0 / n))
    left, top = 20.0, 40.0
    width = left * 2 + step * n
    parts: list[str] = []
    x_of_seq: dict[int, float] = {}
    x = left
    epoch_x: list[list[float]] = [[] for _ in rec.epoch_end]
    wi = 0
    for op in ops:
        if op.kind == "W":
            kind = classify_write(op.offset, op.data, rec.journal_blocks, dblocks)
            color = KIND_COLORS[kind]
            title = f"write #{op.seq}: block {op.offset // PAGE}, {len(op.data)} bytes, {kind}"
            parts.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{step * 0.8:.1f}" height="40" '
                         f'fill="{color}"><title>{html.escape(title)}</title></rect>')
            epoch_x[rec.epoch_of[wi]].append(x)
            wi += 1
            x_of_seq[op.seq] = x
            x += step
        elif op.kind == "F":
            parts.append(f'<rect x="{x + step * 0.3:.1f}" y="{top - 8:.1f}" width="3" height="56" '
                         f'fill="#222"><title>flush #{op.seq}</title></rect>')
            x += step
        elif op.kind == "M":
            label = op.label
            y = top - 12 if label.startswith("step") else top + 56
            color = "#333" if label.startswith("step") else "#0571b0"
            parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="9" fill="{color}" '
                         f'transform="rotate(-20 {x:.1f} {y:.1f})">{html.escape(label[:40])}'
                         f'</text>')
    # states per epoch, stacked by outcome
    per_epoch: list[Counter[str]] = [Counter() for _ in rec.epoch_end]
    for st, r in zip(res.states, res.results):
        per_epoch[st.epoch][primary(r.classes)] += 1
    most = max((sum(c.values()) for c in per_epoch), default=1) or 1
    base_y = top + 200
    for k, cnt in enumerate(per_epoch):
        xs = epoch_x[k]
        if not cnt:
            continue
        x0 = min(xs) if xs else (left if k == 0 else max(epoch_x[k - 1] or [left]) + step)
        x1 = (max(xs) + step * 0.8) if xs else x0 + step * 0.8
        y = base_y
        for c in PRIORITY:
            h = 110.0 * cnt.get(c, 0) / most
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(2.0, x1 - x0):.1f}" '
                         f'height="{h:.1f}" fill="{OUTCOME_COLORS[c]}"><title>epoch {k}: '
                         f'{cnt[c]} {c}</title></rect>')
        parts.append(f'<text x="{x0:.1f}" y="{base_y + 12:.1f}" font-size="9">'
                     f'e{k}: {sum(cnt.values())}</text>')
    legend_y = base_y + 34
    lx = left
    for name, color in list(KIND_COLORS.items()) + [(f"state: {k}", v) for k, v in
                                                     OUTCOME_COLORS.items()]:
        parts.append(f'<rect x="{lx:.1f}" y="{legend_y:.1f}" width="10" height="10" '
                     f'fill="{color}"/><text x="{lx + 13:.1f}" y="{legend_y + 9:.1f}" '
                     f'font-size="10">{html.escape(name)}</text>')
        lx += 14 + 6.2 * len(name) + 10
        if lx > max(width, 900) - 120:
            lx = left
            legend_y += 16
    h = legend_y + 24
    w = max(width, 900)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="sans-serif">'
            f'<text x="{left}" y="14" font-size="12">trace: writes (by block kind) and flushes '
            f'(black bars); below: crash states of each epoch by outcome</text>'
            + "".join(parts) + "</svg>")


def render(res: LabResult) -> str:
    cfg = res.config
    o = res.outcomes
    rows = "".join(f"<tr><td>{c}</td><td>{o[c]}</td></tr>" for c in CLASSES)
    seen: set[tuple[str, str]] = set()
    viol = []
    for v in res.violations():
        key = (v["class"], v["detail"])
        if key not in seen:
            seen.add(key)
            viol.append(f"<li>state {v['state']}: <b>{html.escape(v['class'])}</b>: "
                        f"{html.escape(v['detail'])}</li>")
        if len(viol) >= 30:
            break
    title = html.escape(f"ext4kit crash lab: {cfg.label()}")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #aaa;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
</head><body>
<h1>{title}</h1>
<p>{len(res.states)} crash states ({', '.join(cfg.states)}), {res.checks} distinct recovered
images checked, {res.oracle_runs} also by e2fsck -fn, in {res.seconds:.2f} s.</p>
<div id="trace">{trace_svg(res)}</div>
<h2>Outcomes</h2>
<table id="outcomes"><tr><th>class</th><th>states</th></tr>{rows}</table>
<h2>Violations (distinct)</h2><ul>{''.join(viol) or '<li>none</li>'}</ul>
</body></html>
"""


def write_report(res: LabResult, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(res))

