"""`make bench`: run every benchmarks/*.py suite in one process run and print a ratio table.

Results go to bench-out/results.json too, so the README figures can be refreshed from it.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SUITES = ["read", "write", "journal", "fsck", "crash"]


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def main() -> int:
    only = sys.argv[1:] or SUITES
    results = []
    t0 = time.time()
    for name in only:
        mod = importlib.import_module(name)
        print(f"== {name} ==", flush=True)
        for r in mod.main():
            r["suite"] = name
            results.append(r)
            print(f"  {r['name']}: ours {fmt(r.get('ours_s'))} s, reference {fmt(r.get('ref_s'))} s, "
                  f"ratio {fmt(r.get('ratio'))}  [{r.get('must', '')}; goal {r.get('goal', '')}] "
                  f"{'OK' if r.get('ok') else ('n/a' if r.get('ok') is None else 'BELOW TARGET')}"
                  + (f"  ({r['note']})" if r.get("note") else ""), flush=True)
    out = HERE.parent / "bench-out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"total {time.time() - t0:.0f} s; results in bench-out/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
