"""A private distribution registry on 127.0.0.1 for integration tests.

:class:`Registry` starts Debian's ``docker-registry`` (the distribution
registry 2.8, installed by ``scripts/install-host-packages.sh``) with a
configuration file and a storage directory of its own under a temporary
directory, listening on 127.0.0.1 at a free port and nowhere else. Terms:

- host: ``127.0.0.1:PORT``, the registry part of an image reference such as
  ``127.0.0.1:PORT/NAME:TAG``. The registry speaks plain HTTP, so ``ctr``
  needs ``--plain-http``.
- repository: the ``NAME`` of a reference; blobs are fetched per repository,
  at ``/v2/NAME/blobs/DIGEST``.

The package's own service, which would listen on port 5000 of every
interface, is not used.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from . import HarnessTimeoutError, ProgramNotFoundError, wait_until

__all__ = ["REGISTRY_PROGRAM", "Registry", "RegistryStartError"]

log = logging.getLogger(__name__)

REGISTRY_PROGRAM = Path("/usr/bin/docker-registry")
"""Where Debian's ``docker-registry`` package installs the registry."""

_LOOPBACK = "127.0.0.1"
_STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 3


class RegistryStartError(RuntimeError):
    """The registry exited while starting; the message contains its log."""


class Registry:
    """A registry process whose state lives in a temporary directory.

    Use it as a context manager: entering starts the registry and returns
    once ``GET /v2/`` succeeds; leaving stops it (SIGTERM, then SIGKILL after
    10 seconds) and removes the directory. Raises
    :class:`~support.ProgramNotFoundError` when the program is missing.
    """

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        if not REGISTRY_PROGRAM.is_file():
            raise ProgramNotFoundError(
                f"docker-registry not found at {REGISTRY_PROGRAM}:"
                " run scripts/install-host-packages.sh as root"
            )
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"{_LOOPBACK}:{self.port}"

    @property
    def storage(self) -> Path:
        """The registry's storage directory."""
        assert self.workdir is not None, "registry not started"
        return self.workdir / "storage"

    @property
    def log_path(self) -> Path:
        """File that receives the registry's log, access log included."""
        assert self.workdir is not None, "registry not started"
        return self.workdir / "registry.log"

    def start(self) -> None:
        """Write the configuration and start the registry.

        The port is picked free just before the start, so another process
        may take it in between; the start is then tried again on a new
        port, three times in all. Raises :class:`RegistryStartError` when the
        registry keeps exiting, and :class:`~support.HarnessTimeoutError` when
        it does not answer within ``startup_timeout`` seconds.
        """
        self.workdir = Path(tempfile.mkdtemp(prefix="ipcs-fs-registry-"))
        self.storage.mkdir()
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once()
                return
            except RegistryStartError:
                if attempt == _START_ATTEMPTS:
                    raise
                log.warning("registry failed to start on port %d, retrying", self.port)

    def stop(self) -> None:
        """Stop the registry and remove its directory; safe to call twice."""
        if self.process is not None:
            _stop_process(self.process)
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def log_text(self) -> str:
        """Return the registry's log so far."""
        return self.log_path.read_text(errors="replace")

    def get_blob(self, repository: str, digest: str) -> bytes:
        """Fetch blob ``digest`` of ``repository`` over the registry's HTTP API."""
        url = f"http://{self.host}/v2/{repository}/blobs/{digest}"
        with _opener().open(url, timeout=30) as response:
            return response.read()

    def _start_once(self) -> None:
        self.port = _free_port()
        config = self.workdir / "config.json"  # type: ignore[operator]
        config.write_text(json.dumps(self._config(), indent=2))
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [str(REGISTRY_PROGRAM), "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(
                self._ready, timeout=self.startup_timeout, description="docker-registry"
            )
        except HarnessTimeoutError as error:
            raise HarnessTimeoutError(f"{error}; log:\n{self.log_text()}")

    def _config(self) -> dict[str, object]:
        # JSON is YAML, which the registry reads.
        return {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            status = self.process.returncode
            self.process = None
            raise RegistryStartError(
                f"docker-registry exited with status {status}: {self.log_text()}"
            )
        with _opener().open(f"http://{self.host}/v2/", timeout=5) as response:
            return response.status == 200


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_LOOPBACK, 0))
        return probe.getsockname()[1]


def _opener() -> urllib.request.OpenerDirector:
    # A proxy from the environment must never see requests meant for loopback.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("docker-registry %d ignored SIGTERM, sending SIGKILL", process.pid)
        process.kill()
        process.wait()
