"""What a check found and did: findings (problem code, location, answer) and the exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import problems as P

FSCK_OK = 0
FSCK_NONDESTRUCT = 1  # errors corrected
FSCK_REBOOT = 2
FSCK_UNCORRECTED = 4
FSCK_ERROR = 8
FSCK_USAGE = 16
FSCK_CANCELED = 32

PASS_NAMES = {0: "superblock", 1: "inodes", 2: "directories", 3: "connectivity",
              4: "reference counts", 5: "group summaries"}


@dataclass
class Finding:
    code: int
    location: dict[str, Any]
    answer: bool  # the fix was accepted (and applied unless ``failed``)
    failed: str | None = None  # the fix was accepted but could not be applied

    @property
    def problem(self) -> P.Problem:
        return P.TABLE[self.code]

    @property
    def pass_no(self) -> int:
        return self.code >> 16

    @property
    def message(self) -> str:
        return P.render(self.code, self.location)

    @property
    def is_error(self) -> bool:
        """Declining (or failing) the fix leaves the file system in error."""
        p = self.problem
        if p.flags & P.INFO:
            return False
        if not self.answer or self.failed:
            return not (p.flags & P.NO_OK)
        return False

    @property
    def fixed(self) -> bool:
        return self.answer and not self.failed and not (self.problem.flags & P.INFO)

    def as_dict(self) -> dict[str, Any]:
        p = self.problem
        return {
            "code": f"{self.code:#08x}",
            "problem": p.name,
            "pass": self.pass_no,
            "message": self.message,
            "location": {k: (v if isinstance(v, int | str | bool | float) or v is None else str(v))
                         for k, v in self.location.items()},
            "fix": p.prompt or None,
            "answer": "yes" if self.answer else "no",
            "fixed": self.fixed,
            "failed": self.failed,
        }


@dataclass
class Report:
    image: str
    mode: str  # "n", "p" or "y"
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # operational error (exit 8)
    aborted: str | None = None  # the check stopped (exit 8 | 4)
    journal_replayed: bool = False
    modified: bool = False
    runs: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    dropped: int = 0
    # progress(pass_no, done, total) for a terminal's bar; not part of the result
    progress: Any = field(default=None, repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return FSCK_ERROR
        rc = 0
        # a fix flagged NOT_CHANGED (e2fsck rewrites the block without marking the file
        # system changed, e.g. a non-root extent block's checksum) does not count
        if any(f.fixed and not f.problem.flags & P.NOT_CHANGED for f in self.findings):
            rc |= FSCK_NONDESTRUCT
        if self.aborted is not None:
            rc |= FSCK_ERROR | FSCK_UNCORRECTED
        if any(f.is_error for f in self.findings):
            rc |= FSCK_UNCORRECTED
        if self.mode == "n":
            rc &= ~FSCK_NONDESTRUCT
        return rc

    @property
    def clean(self) -> bool:
        return self.exit_code == 0

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "mode": self.mode,
            "exit_code": self.exit_code,
            "error": self.error,
            "aborted": self.aborted,
            "journal_replayed": self.journal_replayed,
            "modified": self.modified,
            "runs": self.runs,
            "findings": [f.as_dict() for f in self.findings],
            "findings_dropped": self.dropped,
            "stats": self.stats,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1)

    def text_lines(self) -> list[str]:
        out: list[str] = []
        cur = -1
        for f in self.findings:
            if f.pass_no != cur:
                cur = f.pass_no
                out.append(f"Pass {cur} ({PASS_NAMES.get(cur, '?')}):" if cur else "Superblock and group descriptors:")
            p = f.problem
            if p.flags & P.INFO or not p.prompt:
                out.append(f"  {f.message}")
            else:
                ans = "yes" if f.answer else "no"
                tail = f" (FAILED: {f.failed})" if f.failed else ""
                out.append(f"  {f.message}.  {p.prompt}? {ans}{tail}")
        if self.dropped:
            out.append(f"  ... {self.dropped} more findings not listed")
        return out
