"""Fixtures of the containerd plugin tests: plugins, converted images, a registry.

Converted images and their block store are made once per test module, so a
module's tests share both. The plugins and the registry of a test stop after
it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import ProgramNotFoundError
from support.diff_plugin import (
    ConvertedImage,
    PluginLauncher,
    PluginProcess,
    convert_image,
)
from support.registry import Registry


@pytest.fixture
def plugin_factory(tmp_path: Path) -> Iterator[Callable[..., PluginProcess]]:
    """Start ``ipcs-fs serve`` processes; stop them after the test.

    Call it as :meth:`support.diff_plugin.PluginLauncher.start`.
    """
    launcher = PluginLauncher(tmp_path)
    try:
        yield launcher.start
    finally:
        launcher.stop_all()


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The block store of the module's converted images."""
    return tmp_path_factory.mktemp("store") / "blocks"


@pytest.fixture(scope="module")
def bookworm(
    shared_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> ConvertedImage:
    """``debian-bookworm`` converted into ``shared_store``."""
    return convert_image("debian-bookworm", shared_store, tmp_path_factory.mktemp("fg"))


@pytest.fixture
def registry() -> Iterator[Registry]:
    """A started ``docker-registry`` on 127.0.0.1, stopped and removed after the test.

    Skipped when the program is missing, except under CI (``CI=true``).
    """
    try:
        instance = Registry()
    except ProgramNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    with instance:
        yield instance
