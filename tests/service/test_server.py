"""The plugin's life: stale sockets, socket mode, start failures, stop."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ipcs_fs.errors import AlreadyExistsError
from ipcs_fs.service.config import ServeConfig
from ipcs_fs.service.server import Plugin


def _config(tmp_path: Path) -> ServeConfig:
    return ServeConfig(
        address=f"unix://{tmp_path / 'diff.sock'}",
        store=tmp_path / "store",
        containerd_root=tmp_path / "containerd",
        containerd_address=f"unix://{tmp_path / 'containerd.sock'}",
    )


def test_start_replaces_stale_socket(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "diff.sock"))
    stale.close()  # the file stays, with nobody accepting
    plugin = Plugin(_config(tmp_path))

    plugin.start()
    try:
        mode = os.stat(plugin.socket).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        plugin.stop()

    assert not plugin.socket.exists()
    assert not plugin.mount_dir.exists()


def test_start_refuses_live_socket(tmp_path: Path) -> None:
    first = Plugin(_config(tmp_path))
    first.start()
    second = Plugin(_config(tmp_path))
    try:
        with pytest.raises(AlreadyExistsError) as caught:
            second.start()
        assert "another process accepts connections there" in str(caught.value)
        assert first.socket.exists()
    finally:
        first.stop()


def test_stop_twice_is_harmless(tmp_path: Path) -> None:
    plugin = Plugin(_config(tmp_path))
    plugin.start()

    plugin.stop()
    plugin.stop()

    assert not plugin.socket.exists()
