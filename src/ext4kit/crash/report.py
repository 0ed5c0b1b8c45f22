"""``--report FILE.html``: one self-contained page -- an SVG of the trace (each write by
block kind, flushes as bars, workload steps as labels), the crash states of each epoch
coloured by outcome, and the outcome table."""

from __future__ import annotations

import html
import struct
from collections import Counter
from typing import Any

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
    "data": "#35978f",
}
OUTCOME_COLORS = {
    "consistent": "#4dac26", "fsync_lost": "#fdb863", "zero_length": "#e66101",
    "atomicity": "#b2abd2", "garbage_data": "#d01c8b", "inconsistent": "#5e3c99",
}
PRIORITY = ["inconsistent", "garbage_data", "zero_length", "atomicity", "fsync_lost",
            "consistent"]


def _data_blocks(res: LabResult) -> set[int]:
    """Blocks of regular files' data: at the start of the trace, at its end, and at its
    end after journal recovery (data written before the commit that maps it is only
    mapped once the journal is replayed)."""
    import warnings

    from ..fs.filesystem import FileSystem
    from ..jbd2.log import recover

    out: set[int] = set()
    rec = res.recording
    end = Overlay(rec.base)
    for w in rec.writes:
        end.write(w.offset, w.data)
    replayed = end.copy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs = FileSystem(replayed, owns_dev=False)
            if fs.sb.has_incompat("needs_recovery"):
                recover(fs, write=True)
    except Exception:  # noqa: BLE001 - a picture, best effort
        pass
    for dev in (Overlay(rec.base), end, replayed):
        try:
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


def _place(labels: list[tuple[float, str]], max_rows: int = 8) -> list[int]:
    """A row for each (x, text) label so that labels of a row do not overlap (greedy)."""
    ends: list[float] = []
    rows = []
    for x, text in labels:
        w = CHAR_W * len(text)
        for r, e in enumerate(ends):
            if e + 6 <= x:
                ends[r] = x + w
                rows.append(r)
                break
        else:
            if len(ends) < max_rows:
                ends.append(x + w)
                rows.append(len(ends) - 1)
            else:  # full: the row that frees up first
                r = min(range(len(ends)), key=ends.__getitem__)
                ends[r] = max(ends[r], x) + w
                rows.append(r)
    return rows


CHAR_W = 5.2  # average width of a 9px sans-serif character
ROW_H = 11.0


def trace_svg(res: LabResult) -> str:
    rec = res.recording
    dblocks = _data_blocks(res)
    # the trace, each write as the pages the crash states treat one by one (split_write)
    ops: list[Any] = []
    pieces = iter(rec.writes)
    nxt = next(pieces, None)
    for op in rec.trace.ops:
        if op.kind != "W":
            ops.append(op)
            continue
        while nxt is not None and nxt.seq == op.seq:
            ops.append(nxt)
            nxt = next(pieces, None)
    n = max(1, sum(1 for op in ops if op.kind in "WF"))
    step = max(6.0, min(28.0, 1100.0 / n))
    left = 20.0
    # x of every op, and the labels: workload steps above the trace, the rest below
    xs: list[float] = []
    x = left
    above: list[tuple[float, str]] = []
    below: list[tuple[float, str]] = []
    for op in ops:
        xs.append(x)
        if op.kind in "WF":
            x += step
        else:
            label = op.label[:48]
            (above if label.startswith("step") else below).append((x, label))
    end_x = x
    rows_above = _place(above)
    rows_below = _place(below)
    n_above = max(rows_above, default=-1) + 1
    n_below = max(rows_below, default=-1) + 1
    top = 30.0 + n_above * ROW_H + 10
    box_h = 40.0
    parts: list[str] = []
    for (lx, text), row in zip(above, rows_above):
        ty = 30.0 + row * ROW_H + 8  # earlier steps higher up: read top down
        parts.append(f'<line x1="{lx:.1f}" y1="{ty + 2:.1f}" x2="{lx:.1f}" y2="{top + box_h:.1f}" '
                     f'stroke="#999" stroke-width="0.6" stroke-dasharray="2,2"/>')
        parts.append(f'<text x="{lx + 2:.1f}" y="{ty:.1f}" font-size="9" fill="#333">'
                     f'{html.escape(text)}</text>')
    below_y0 = top + box_h + 16
    for (lx, text), row in zip(below, rows_below):
        ty = below_y0 + row * ROW_H
        parts.append(f'<line x1="{lx:.1f}" y1="{top:.1f}" x2="{lx:.1f}" y2="{ty - 8:.1f}" '
                     f'stroke="#0571b0" stroke-width="0.6" stroke-dasharray="2,2"/>')
        parts.append(f'<text x="{lx + 2:.1f}" y="{ty:.1f}" font-size="9" fill="#0571b0">'
                     f'{html.escape(text)}</text>')
    epoch_x: list[list[float]] = [[] for _ in rec.epoch_end]
    wi = 0
    for op, ox in zip(ops, xs):
        if op.kind == "W":
            kind = classify_write(op.offset, op.data, rec.journal_blocks, dblocks)
            title = f"write #{op.seq}: block {op.offset // PAGE}, {len(op.data)} bytes, {kind}"
            parts.append(f'<rect x="{ox:.1f}" y="{top:.1f}" width="{step * 0.8:.1f}" '
                         f'height="{box_h:.0f}" fill="{KIND_COLORS[kind]}"><title>'
                         f'{html.escape(title)}</title></rect>')
            epoch_x[rec.epoch_of[wi]].append(ox)
            wi += 1
        elif op.kind == "F":
            parts.append(f'<rect x="{ox + step * 0.3:.1f}" y="{top - 6:.1f}" width="3" '
                         f'height="{box_h + 12:.0f}" fill="#222"><title>flush #{op.seq}'
                         f'</title></rect>')
    # states per epoch, stacked by outcome
    per_epoch: list[Counter[str]] = [Counter() for _ in rec.epoch_end]
    for st, r in zip(res.states, res.results):
        per_epoch[st.epoch][primary(r.classes)] += 1
    most = max((sum(c.values()) for c in per_epoch), default=1) or 1
    bars_top = below_y0 + n_below * ROW_H + 8
    bar_h = 110.0
    base_y = bars_top + bar_h
    for k, cnt in enumerate(per_epoch):
        exs = epoch_x[k]
        if not cnt:
            continue
        x0 = min(exs) if exs else (left if k == 0 else max(epoch_x[k - 1] or [left]) + step)
        x1 = (max(exs) + step * 0.8) if exs else x0 + step * 0.8
        y = base_y
        for c in PRIORITY:
            if not cnt.get(c):
                continue
            h = max(1.5, bar_h * cnt[c] / most)
            y -= h
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(2.0, x1 - x0):.1f}" '
                         f'height="{h:.1f}" fill="{OUTCOME_COLORS[c]}"><title>epoch {k}: '
                         f'{cnt[c]} {c}</title></rect>')
        parts.append(f'<text x="{x0:.1f}" y="{base_y + 12:.1f}" font-size="9">'
                     f'e{k}: {sum(cnt.values())}</text>')
    w = max(900.0, end_x + left,
            max((lx + CHAR_W * len(t) + left for lx, t in above + below), default=0.0))
    legend_y = base_y + 30
    lx = left
    for name, color in list(KIND_COLORS.items()) + [(f"state: {k}", v) for k, v in
                                                     OUTCOME_COLORS.items()]:
        item_w = 14 + 6.2 * len(name) + 10
        if lx + item_w > w - left:
            lx = left
            legend_y += 16
        parts.append(f'<rect x="{lx:.1f}" y="{legend_y:.1f}" width="10" height="10" '
                     f'fill="{color}"/><text x="{lx + 13:.1f}" y="{legend_y + 9:.1f}" '
                     f'font-size="10">{html.escape(name)}</text>')
        lx += item_w
    h = legend_y + 24
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="sans-serif" '
            f'style="max-width:100%;height:auto">'
            f'<text x="{left}" y="14" font-size="12">trace: writes (by block kind) and flushes '
            f'(black bars), workload steps above, returned fsyncs below; then the crash '
            f'states of each epoch by outcome</text>' + "".join(parts) + "</svg>")


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

