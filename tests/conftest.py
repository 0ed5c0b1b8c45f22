"""Shared fixtures: generated source trees, images built from them, and the CLI runner.

Trees and images are built once per session (in a session tmp dir) and only when a test
asks for them. ``image`` is parametrized over ``images.CONFIGS``; the ``kernel`` image is
marked ``root`` and skipped (with the reason) when it cannot be built.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import images
import treegen

CLI_TIMEOUT = 900


@dataclass(frozen=True)
class BuiltImage:
    config: images.ImageConfig
    path: Path
    expected: Path  # the tree `ext4kit get IMAGE / OUT` has to reproduce
    build_seconds: float

    @property
    def id(self) -> str:
        return self.config.id


class _Trees:
    """Expected and staging trees, one pair per big-xattr size (depends on block size)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cache: dict[tuple[int, bool], Path] = {}

    def get(self, big_xattr_size: int, staging: bool = False) -> Path:
        key = (big_xattr_size, staging)
        if key not in self.cache:
            root = self.base / f"{'staging' if staging else 'expected'}-x{big_xattr_size}"
            treegen.build_tree(root, big_xattr_size=big_xattr_size, frag_staging=staging)
            self.cache[key] = root
        return self.cache[key]


class _Images:
    def __init__(self, base: Path, trees: _Trees) -> None:
        self.base = base
        self.trees = trees
        self.cache: dict[str, BuiltImage | str] = {}

    def get(self, config_id: str) -> BuiltImage:
        if config_id not in self.cache:
            config = images.CONFIG_BY_ID[config_id]
            expected = self.trees.get(config.big_xattr_size)
            staging = None if config.kernel else self.trees.get(config.big_xattr_size, True)
            t0 = time.monotonic()
            try:
                path = images.build_image(config, staging, expected,
                                          self.base / f"{config_id}.img")
            except images.ImageBuildSkip as exc:
                self.cache[config_id] = f"{config_id}: {exc}"
            else:
                self.cache[config_id] = BuiltImage(config, path, expected,
                                                   time.monotonic() - t0)
        built = self.cache[config_id]
        if isinstance(built, str):
            print(f"skipping: {built}", file=sys.stderr)
            pytest.skip(built)
        return built


@pytest.fixture(scope="session")
def trees(tmp_path_factory: pytest.TempPathFactory) -> _Trees:
    return _Trees(tmp_path_factory.mktemp("trees"))


@pytest.fixture(scope="session")
def image_factory(tmp_path_factory: pytest.TempPathFactory, trees: _Trees) -> _Images:
    return _Images(tmp_path_factory.mktemp("images"), trees)


def _image_params() -> list:
    return [pytest.param(c.id, id=c.id, marks=[pytest.mark.root] if c.kernel else [])
            for c in images.CONFIGS]


@pytest.fixture(scope="session", params=_image_params())
def image(request: pytest.FixtureRequest, image_factory: _Images) -> BuiltImage:
    """Every image configuration (ext4-4k, ext4-1k, ext3, ext2, ext4-inline,
    ext4-2k-nocsum, ext4-htree, kernel), built on first use."""
    return image_factory.get(request.param)


def _run_cli(*args: str | os.PathLike, input: bytes | None = None,
             timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ext4kit", *map(os.fspath, args)],
                          capture_output=True, input=input, timeout=timeout)


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """``run_cli(*args)`` runs ``python -m ext4kit ARGS`` and returns the CompletedProcess
    (stdout/stderr as bytes)."""
    return _run_cli


def pytest_report_header(config: pytest.Config) -> str:
    return f"ext4kit round-trip fixtures: {len(images.CONFIGS)} image configurations, " \
           f"running as {'root' if os.geteuid() == 0 else 'non-root'}"
