"""The crash lab: record a workload's writes and flushes, derive every crash state a disk
could be left in, recover each in memory and check it (docs/CRASH-LAB.md)."""

from .lab import CLASSES, MODES, LabConfig, LabResult, record, run_lab
from .workloads import WORKLOADS, Ctx, register

__all__ = ["CLASSES", "MODES", "LabConfig", "LabResult", "WORKLOADS", "Ctx", "record",
           "register", "run_lab"]
