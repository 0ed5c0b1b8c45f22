"""fsck: an e2fsck-grade checker and repairer (passes 0-5, one problem table, -n/-p/-y)."""

import sys as _sys
import types as _types

from .check import fsck
from .problems import TABLE as PROBLEMS
from .report import Finding, Report

__all__ = ["fsck", "Report", "Finding", "PROBLEMS"]


class _CallableModule(_types.ModuleType):
    """``ext4kit.fsck`` is both this package and the function: importing the package
    rebinds the name on ``ext4kit``, so the package itself calls ``fsck``."""

    def __call__(self, image, mode: str = "n", **options):  # type: ignore[no-untyped-def]
        return fsck(image, mode, **options)


_sys.modules[__name__].__class__ = _CallableModule
