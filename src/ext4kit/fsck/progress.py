"""A terminal progress bar for long checks (rich), like ``e2fsck -C 0``.

``TerminalProgress`` is the ``progress(pass_no, done, total)`` callback the checker calls
(pass 1 per group of inodes, pass 2 per chunk of directory blocks, each pass at its
start). The bar appears only once a check has run for ``delay`` seconds, so short checks
print nothing extra, and it is removed when the check ends (the report follows).
"""

from __future__ import annotations

import time
from typing import Any

from .report import PASS_NAMES


class TerminalProgress:
    def __init__(self, delay: float = 0.5, clock: Any = time.monotonic):
        self.delay = delay
        self.clock = clock
        self.t0 = clock()
        self.bar: Any = None
        self.task: Any = None
        self.pass_no = -1

    def __call__(self, pass_no: int, done: int, total: int) -> None:
        if self.bar is None:
            if self.clock() - self.t0 < self.delay:
                return
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=max(total, 1))
        desc = f"Pass {pass_no}: {PASS_NAMES.get(pass_no, '')}"
        self.bar.update(self.task, description=desc, completed=done, total=max(total, 1))
        self.pass_no = pass_no

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
