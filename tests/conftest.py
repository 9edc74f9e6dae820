"""Shared pytest fixtures: real kubo and containerd daemons on loopback.

The fixtures start the programs that ``scripts/install-kubo.sh`` and
``scripts/install-containerd.sh`` put in the cache. When a program is missing,
a test that needs it is skipped with the name of the script to run, except
under CI (``CI=true``), where it fails so that a missing install step shows.
containerd also needs root and is skipped otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import ProgramNotFoundError
from support.containerd import Containerd
from support.kubo import KuboNode


def pytest_configure(config: pytest.Config) -> None:
    markers = config.getini("markers")
    if not any(line.startswith("integration:") for line in markers):
        config.addinivalue_line("markers", "integration: drives real external programs")


def _missing_program(error: ProgramNotFoundError) -> None:
    if os.environ.get("CI"):
        pytest.fail(str(error))
    pytest.skip(str(error))


@pytest.fixture
def kubo_node() -> Iterator[KuboNode]:
    """A started kubo daemon on 127.0.0.1, stopped and removed after the test."""
    try:
        node = KuboNode()
    except ProgramNotFoundError as error:
        _missing_program(error)
    with node:
        yield node


@pytest.fixture
def kubo_pair() -> Iterator[tuple[KuboNode, KuboNode]]:
    """Two kubo daemons on 127.0.0.1 whose swarms are connected to each other."""
    try:
        first, second = KuboNode(), KuboNode()
    except ProgramNotFoundError as error:
        _missing_program(error)
    with first, second:
        first.connect(second)
        yield first, second


@pytest.fixture
def containerd() -> Iterator[Callable[..., Containerd]]:
    """A factory of started containerd daemons, all stopped after the test.

    Call it with the keyword arguments of :class:`support.containerd.Containerd`
    (``proxy_plugins``, ``diff_order``, ``snapshotter``, ``namespace``).
    """
    started: list[Containerd] = []

    def start(**options: Any) -> Containerd:
        try:
            daemon = Containerd(**options)
        except ProgramNotFoundError as error:
            _missing_program(error)
        except PermissionError as error:
            pytest.skip(str(error))
        started.append(daemon)
        daemon.start()
        return daemon

    try:
        yield start
    finally:
        for daemon in reversed(started):
            daemon.stop()
