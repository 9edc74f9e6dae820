"""Run the diff plugin: the socket, the thread pool, signals and cleanup.

:func:`serve` is what ``ipcs-fs serve`` runs. Its life:

1. start: remove a stale socket (one where no process accepts connections),
   clean the temporary mounts a killed plugin left, open the block store,
   listen;
2. serve calls in a pool of ``workers`` threads, since containerd unpacks
   several images at once;
3. on SIGTERM or SIGINT: stop accepting calls, give the calls in flight
   ``stop_timeout`` seconds to finish, then cancel them (each stops at its
   next read), clean the mounts, remove the socket and close the store. A
   second signal cancels the calls in flight at once.

The socket is created with mode 0600: a caller can make the plugin write into
any directory it names, so only root (containerd) may connect.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import grpc  # type: ignore[import-untyped]

from ..errors import AlreadyExistsError, FailedPreconditionError
from ..store import EmbeddedStore
from .applier import Applier
from .blobs import ContentDirectory
from .comparer import Comparer
from .config import ServeConfig, socket_path
from .content import ContentWriter
from .mounts import clean_mount_dir
from .protos import diff_grpc
from .servicer import DiffServicer

__all__ = ["Plugin", "configure_logging", "mount_dir_of", "serve"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 16 << 20
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def mount_dir_of(config: ServeConfig) -> Path:
    """Return the directory of the plugin's temporary mounts, beside its socket.

    It is named after the socket, so two plugins that share a directory do not
    clean each other's mounts.
    """
    path = socket_path(config.address)
    return path.with_name(path.name + ".mounts")


def configure_logging(level: int) -> None:
    """Send the package's log records to stderr with times, at ``level``."""
    logger = logging.getLogger("ipcs_fs")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class Plugin:
    """The started plugin: its server, store and socket; :meth:`stop` ends it.

    Use :func:`serve` to run one until a signal; tests start and stop one
    in-process.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.socket = socket_path(config.address)
        self.mount_dir = mount_dir_of(config)
        self._store: EmbeddedStore | None = None
        self._writer: ContentWriter | None = None
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._owns_paths = False
        self.servicer: DiffServicer | None = None

    def start(self) -> None:
        """Prepare the socket and directories and start serving.

        Raises AlreadyExistsError when another process accepts on the socket,
        and FailedPreconditionError when the socket cannot be created; what
        was set up by then is released.
        """
        try:
            self._start()
        except BaseException:
            self.stop(grace=0)
            raise

    def _start(self) -> None:
        _remove_stale_socket(self.socket)
        # From here on the socket path and the mount directory are ours.
        self._owns_paths = True
        removed = clean_mount_dir(self.mount_dir)
        if removed:
            log.warning("removed %d temporary mounts left by an earlier run", removed)

        self._store = EmbeddedStore(self.config.store)
        self._writer = ContentWriter(self.config.containerd_address)
        self.servicer = self._make_servicer(self._store, self._writer)
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="ipcs-fs-call"
        )
        self._server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        diff_grpc.add_DiffServicer_to_server(self.servicer, self._server)

        self._listen()
        self._server.start()
        log.info(
            "ipcs-fs serve %d: listening on unix://%s; store %s; containerd root"
            " %s; containerd at %s; default namespace %s; %d workers",
            os.getpid(),
            self.socket,
            self.config.store,
            self.config.containerd_root,
            self.config.containerd_address,
            self.config.namespace,
            self.config.workers,
        )

    def _make_servicer(
        self, store: EmbeddedStore, writer: ContentWriter
    ) -> DiffServicer:
        applier = Applier(
            store,
            ContentDirectory(self.config.content_dir),
            mount_dir=self.mount_dir,
            max_layer_bytes=self.config.max_layer_bytes,
        )
        comparer = Comparer(store, writer, mount_dir=self.mount_dir)
        return DiffServicer(applier, comparer, namespace=self.config.namespace)

    def _listen(self) -> None:
        assert self._server is not None
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        # The socket's mode comes from the umask at bind time.
        old_umask = os.umask(0o177)
        try:
            port = self._server.add_insecure_port(f"unix://{self.socket}")
        finally:
            os.umask(old_umask)
        if port == 0:
            raise FailedPreconditionError(
                f"failed to listen on unix://{self.socket}: gRPC could not bind it"
            )

    def stop(self, grace: float | None = None) -> None:
        """Stop serving and release everything; safe to call twice.

        Calls in flight get ``grace`` seconds (default: ``stop_timeout``) and
        are cancelled after that; the method returns once their threads have
        ended.
        """
        if grace is None:
            grace = self.config.stop_timeout
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._owns_paths:
            clean_mount_dir(self.mount_dir)
            _remove_dir(self.mount_dir)
            _unlink(self.socket)
            self._owns_paths = False
        for resource in (self._writer, self._store):
            if resource is not None:
                resource.close()
        self._writer = self._store = None

    def cancel_calls(self) -> None:
        """Cancel the calls in flight now, without waiting for the grace period."""
        if self._server is not None:
            self._server.stop(None)


def serve(config: ServeConfig) -> int:
    """Run the plugin until SIGTERM or SIGINT; return the exit status (0)."""
    plugin = Plugin(config)
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("second %s: cancelling the calls in flight", _name(signum))
            plugin.cancel_calls()
            return
        log.info("received %s, stopping", _name(signum))
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in _STOP_SIGNALS}
    try:
        plugin.start()
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    try:
        stopping.wait()
    finally:
        plugin.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = plugin.servicer.counters.snapshot() if plugin.servicer else {}
    summary = ", ".join(f"{m} {o}: {n}" for (m, o), n in sorted(counts.items()))
    log.info("ipcs-fs serve %d: stopped; calls: %s", os.getpid(), summary or "none")
    return 0


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _remove_stale_socket(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if _accepts_connections(path):
        raise AlreadyExistsError(
            f"failed to listen on unix://{path}: another process accepts"
            " connections there; stop it first"
        )
    log.warning("removing stale socket %s", path)
    _unlink(path)


def _accepts_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError as error:
            if error.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                return False
            raise FailedPreconditionError(
                f"failed to check socket {path}: {error.strerror}"
            ) from error
    return True


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _remove_dir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("failed to remove %s: %s", path, error.strerror)
