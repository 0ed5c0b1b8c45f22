"""The seed scenarios of the crash lab: each a run and the outcome it predicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .lab import CLASSES, LabConfig, LabResult, run_lab

Outcomes = dict[str, int]


@dataclass
class Scenario:
    workload: str
    mode: str
    options: str
    predicted: str
    holds: Callable[[Outcomes], bool]
    params: dict[str, Any] = field(default_factory=dict)
    known_gap: str = ""  # why ext4kit does not (yet) show the predicted outcome

    @property
    def name(self) -> str:
        fs = " --fsync" if self.params.get("fsync") else ""
        return f"{self.workload}{fs}, {self.mode}" + (f", {self.options}" if self.options else "")

    def config(self, **kw: Any) -> LabConfig:
        return LabConfig(self.workload, mode=self.mode, options=self.options,
                         params=dict(self.params), **kw)


def _clean(o: Outcomes) -> bool:
    return not any(o[k] for k in CLASSES if k not in ("consistent",))


SCENARIOS: list[Scenario] = [
    Scenario("append", "nojournal", "",
             "inconsistent states occur; fsck -y repairs metadata; garbage data possible",
             lambda o: o["inconsistent"] > 0 and o["repaired"] == o["inconsistent"]),
    Scenario("append", "journal", "", "always consistent; data old or new", _clean),
    Scenario("append", "ordered", "", "always consistent; never garbage", _clean),
    Scenario("append", "writeback", "", "metadata consistent; garbage data occurs",
             lambda o: o["inconsistent"] == 0 and o["garbage_data"] > 0),
    Scenario("append", "journal", "barrier=0",
             "commit block durable before the logged data: garbage replayed",
             lambda o: o["garbage_data"] > 0),
    Scenario("append", "journal", "journal_async_commit,barrier=0",
             "checksums reject the torn transaction: consistent",
             lambda o: o["inconsistent"] == 0 and o["garbage_data"] == 0),
    Scenario("delete-reuse", "ordered", "norevoke",
             "replay overwrites the new file's data with the old directory block",
             lambda o: o["garbage_data"] > 0),
    Scenario("delete-reuse", "ordered", "", "correct", _clean),
    Scenario("rename-replace", "ordered", "noauto_da_alloc", "zero-length file occurs",
             lambda o: o["zero_length"] > 0),
    Scenario("rename-replace", "ordered", "", "old or new content, never empty", _clean),
] + [
    Scenario("rename-replace", m, "", "new content", _clean, params={"fsync": True})
    for m in ("journal", "ordered", "writeback")
]


def run_matrix(scenarios: list[Scenario] | None = None, **kw: Any) -> list[tuple[Scenario, LabResult, bool]]:
    out = []
    for sc in scenarios or SCENARIOS:
        res = run_lab(sc.config(**kw))
        out.append((sc, res, bool(sc.holds(res.outcomes))))
    return out


SHORT = {"consistent": "ok", "inconsistent": "incons", "fsync_lost": "fsync_lost",
         "garbage_data": "garbage", "zero_length": "zero_len", "atomicity": "atomic",
         "repaired": "repaired"}
