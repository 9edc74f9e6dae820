"""The configuration of ``ipcs-fs serve``: a TOML file, then command-line flags.

Every key is optional; a flag given on the command line overrides the file.

.. code-block:: toml

    address = "unix:///run/ipcs-fs/diff.sock"   # where containerd connects
    store = "/var/lib/ipcs-fs"                  # the embedded block store
    containerd_root = "/var/lib/containerd"     # to read blobs from disk
    containerd_address = "/run/containerd/containerd.sock"  # content, leases
    namespace = "default"       # when a call carries no containerd-namespace
    max_layer_bytes = 1099511627776             # file data one layer may write
    workers = 8                 # calls served at once
    stop_timeout = 10.0         # seconds calls in flight get after SIGTERM
    log_level = "info"          # debug, info, warning, error

Terms: the *content directory* is where containerd's local content store keeps
its blobs, ``CONTAINERD_ROOT/io.containerd.content.v1.content/blobs/sha256``.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..apply import DEFAULT_MAX_BYTES
from ..errors import InvalidArgumentError, NotFoundError
from ..store import default_store_path

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CONTAINERD_ADDRESS",
    "DEFAULT_CONTAINERD_ROOT",
    "ServeConfig",
    "load_config",
    "socket_path",
]

DEFAULT_ADDRESS = "unix:///run/ipcs-fs/diff.sock"
DEFAULT_CONTAINERD_ROOT = Path("/var/lib/containerd")
DEFAULT_CONTAINERD_ADDRESS = "unix:///run/containerd/containerd.sock"
_LOG_LEVELS = ("debug", "info", "warning", "error")
# containerd 1.7 applies one image's layers one after another, but unpacks
# several images at once; calls past this bound wait in the server's queue.
_DEFAULT_WORKERS = 8


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Settings of the diff plugin; see the module documentation for the keys."""

    address: str = DEFAULT_ADDRESS
    store: Path = dataclasses.field(default_factory=default_store_path)
    containerd_root: Path = DEFAULT_CONTAINERD_ROOT
    containerd_address: str = DEFAULT_CONTAINERD_ADDRESS
    namespace: str = "default"
    max_layer_bytes: int | None = DEFAULT_MAX_BYTES
    workers: int = _DEFAULT_WORKERS
    stop_timeout: float = 10.0
    log_level: str = "info"

    @property
    def content_dir(self) -> Path:
        """The directory of containerd's content blobs, one file per sha256 hex."""
        return self.containerd_root / "io.containerd.content.v1.content/blobs/sha256"

    @property
    def log_level_number(self) -> int:
        """``log_level`` as a :mod:`logging` level number."""
        return getattr(logging, self.log_level.upper())


_CONVERTERS = {
    "address": str,
    "store": Path,
    "containerd_root": Path,
    "containerd_address": str,
    "namespace": str,
    "max_layer_bytes": int,
    "workers": int,
    "stop_timeout": float,
    "log_level": str,
}


def load_config(path: Path | None, overrides: dict[str, Any]) -> ServeConfig:
    """Read the TOML file at ``path`` (if any) and apply ``overrides`` on top.

    ``overrides`` maps keys to values from the command line; ``None`` values
    are ignored. ``max_layer_bytes = 0`` means no bound. Raises NotFoundError
    for a missing file and InvalidArgumentError for bad TOML, an unknown key
    or a value of the wrong type or range.
    """
    values = _read_file(path) if path is not None else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    source = str(path) if path is not None else "the command line"
    settings = {key: _convert(key, value, source) for key, value in values.items()}
    if settings.get("max_layer_bytes") == 0:
        settings["max_layer_bytes"] = None
    config = ServeConfig(**settings)
    _validate(config, source)
    return config


def socket_path(address: str) -> Path:
    """Return the file path of a ``unix://PATH`` address (or a bare path).

    Raises InvalidArgumentError for any other scheme: the plugin serves unix
    sockets only, as containerd's proxy plugins expect.
    """
    if address.startswith("unix://"):
        address = address.removeprefix("unix://")
    elif "://" in address:
        raise InvalidArgumentError(
            f"invalid address {address!r}: expected unix:///PATH or an absolute path"
        )
    if not address.startswith("/"):
        raise InvalidArgumentError(
            f"invalid address {address!r}: the socket path must be absolute"
        )
    return Path(address)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError as error:
        raise NotFoundError(f"failed to read config {path}: no such file") from error
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgumentError(f"invalid config {path}: {error}") from error


def _convert(key: str, value: Any, source: str) -> Any:
    converter = _CONVERTERS.get(key)
    if converter is None:
        known = ", ".join(sorted(_CONVERTERS))
        raise InvalidArgumentError(
            f"invalid config {source}: unknown key {key!r}; known keys: {known}"
        )
    expected: tuple[type, ...] = (converter,)
    if converter is Path:
        expected = (str, Path)
    elif converter is float:
        expected = (float, int)
    if not isinstance(value, expected) or isinstance(value, bool):
        raise InvalidArgumentError(
            f"invalid config {source}: {key} must be a {expected[0].__name__},"
            f" got {value!r}"
        )
    return converter(value)


def _validate(config: ServeConfig, source: str) -> None:
    if config.log_level not in _LOG_LEVELS:
        raise InvalidArgumentError(
            f"invalid config {source}: log_level must be one of"
            f" {', '.join(_LOG_LEVELS)}, got {config.log_level!r}"
        )
    if config.workers < 1:
        raise InvalidArgumentError(
            f"invalid config {source}: workers must be at least 1, got {config.workers}"
        )
    if config.stop_timeout < 0:
        raise InvalidArgumentError(
            f"invalid config {source}: stop_timeout must not be negative,"
            f" got {config.stop_timeout}"
        )
    if config.max_layer_bytes is not None and config.max_layer_bytes < 0:
        raise InvalidArgumentError(
            f"invalid config {source}: max_layer_bytes must be 0 (no bound) or"
            f" positive, got {config.max_layer_bytes}"
        )
    socket_path(config.address)
