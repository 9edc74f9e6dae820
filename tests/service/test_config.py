"""The settings of ``ipcs-fs serve``: TOML, flags on top, and every check."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipcs_fs.errors import InvalidArgumentError, NotFoundError
from ipcs_fs.service.config import ServeConfig, load_config, socket_path
from ipcs_fs.service.server import mount_dir_of


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    config = load_config(None, {})

    assert config.address == "unix:///run/ipcs-fs/diff.sock"
    assert config.containerd_root == Path("/var/lib/containerd")
    assert config.namespace == "default"
    assert config.max_layer_bytes == 1 << 40
    assert config.stop_timeout == 10.0


def test_file_then_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'address = "unix:///tmp/a.sock"\nstore = "/srv/store"\nworkers = 2\n'
        'namespace = "k8s.io"\nstop_timeout = 3\n',
    )

    config = load_config(path, {"workers": 5, "namespace": None})

    assert config.address == "unix:///tmp/a.sock"
    assert config.store == Path("/srv/store")
    assert config.workers == 5
    assert config.namespace == "k8s.io"
    assert config.stop_timeout == 3.0


def test_zero_max_layer_bytes_means_no_bound(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "max_layer_bytes = 0\n"), {})

    assert config.max_layer_bytes is None


def test_content_dir_under_root() -> None:
    config = ServeConfig(containerd_root=Path("/data/containerd"))

    assert config.content_dir == Path(
        "/data/containerd/io.containerd.content.v1.content/blobs/sha256"
    )


def test_mount_dir_beside_socket() -> None:
    config = ServeConfig(address="unix:///run/ipcs-fs/diff.sock")

    assert mount_dir_of(config) == Path("/run/ipcs-fs/diff.sock.mounts")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ('workers = "many"\n', "workers must be a int, got 'many'"),
        ("workers = 0\n", "workers must be at least 1, got 0"),
        ('log_level = "loud"\n', "log_level must be one of debug, info"),
        ("stop_timeout = -1\n", "stop_timeout must not be negative, got -1.0"),
        ("max_layer_bytes = -5\n", "max_layer_bytes must be 0 (no bound) or positive"),
        ('address = "tcp://127.0.0.1:1"\n', "invalid address 'tcp://127.0.0.1:1'"),
        ("workers = [\n", "invalid config"),
    ],
)
def test_invalid_settings(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        load_config(_write(tmp_path, text), {})

    assert message in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as caught:
        load_config(tmp_path / "absent.toml", {})

    assert str(caught.value) == (
        f"failed to read config {tmp_path / 'absent.toml'}: no such file"
    )


@pytest.mark.parametrize(
    ("address", "path"),
    [("unix:///run/x.sock", Path("/run/x.sock")), ("/run/y.sock", Path("/run/y.sock"))],
)
def test_socket_path_forms(address: str, path: Path) -> None:
    assert socket_path(address) == path


def test_socket_path_must_be_absolute() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        socket_path("unix://relative.sock")

    assert "the socket path must be absolute" in str(caught.value)
