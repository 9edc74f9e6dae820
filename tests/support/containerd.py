"""A private containerd daemon for integration tests.

:class:`Containerd` writes a configuration, starts the containerd binary that
``scripts/install-containerd.sh`` unpacked (Debian trixie's 1.7.24) as root
with its root, state and sockets under a temporary directory, and offers
:meth:`Containerd.ctr` to drive it. Terms:

- root: containerd's persistent directory (content store, metadata, snapshots).
- state: its runtime directory (task bundles, shim sockets).
- address: ``unix://`` followed by the path of its gRPC socket.
- namespace: the containerd namespace that :meth:`Containerd.ctr` passes. Each
  instance picks a new one unless the caller passes one, so that containers of
  different instances never meet in runc's state directory, which the runc shim
  keeps outside containerd's state, at ``/run/containerd/runc/NAMESPACE``.
- proxy plugin: an external gRPC service that containerd loads as a plugin of
  a given type, such as the ipcs-fs differ.

The configuration uses format version 2, which containerd 1.7 reads, and
disables the CRI plugin and the snapshotters that cannot run here (btrfs, zfs,
devmapper, aufs, blockfile), so containerd is ready in well under a second.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from . import HarnessTimeoutError, bin_dir, find_program, wait_until

__all__ = ["DISABLED_PLUGINS", "Containerd", "CtrCommandError", "ProxyPlugin"]

log = logging.getLogger(__name__)

DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
    "io.containerd.nri.v1.nri",
)
"""Plugins that the harness turns off: unused here, slow to start, or global."""

# runc's state directory as the runc shim of containerd 1.7 sets it by default.
_RUNC_ROOT = Path("/run/containerd/runc")
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ProxyPlugin:
    """One ``[proxy_plugins.NAME]`` entry: a gRPC service on a unix socket.

    ``type`` is containerd's plugin kind (``diff``, ``snapshot`` or
    ``content``), ``address`` the socket path.
    """

    name: str
    type: str
    address: str


class CtrCommandError(RuntimeError):
    """A ``ctr`` command exited with a non-zero status.

    The message contains the arguments, the exit status and the standard error.
    """


class Containerd:
    """A containerd 1.7 daemon with a root, state and socket of its own.

    Use it as a context manager: entering writes the configuration and starts
    containerd, and returns once ``ctr version`` succeeds. Leaving kills the
    daemon, its shims and their containers, unmounts everything left under its
    directory and removes the directory.

    ``proxy_plugins`` become ``[proxy_plugins]`` entries, ``diff_order`` the diff
    service's ``default`` list (names of differs tried in order), and
    ``snapshotter`` the snapshotter that :meth:`ctr` uses (through
    ``CONTAINERD_SNAPSHOTTER``) and that the transfer service unpacks into.
    Needs root: raises :class:`PermissionError` otherwise.
    """

    def __init__(
        self,
        *,
        proxy_plugins: Iterable[ProxyPlugin] = (),
        diff_order: Sequence[str] = ("walking",),
        snapshotter: str = "overlayfs",
        namespace: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if os.geteuid() != 0:
            raise PermissionError("containerd must run as root")
        self.binary = find_program("containerd")
        self.ctr_binary = find_program("ctr")
        find_program("containerd-shim-runc-v2")
        find_program("runc")
        self.proxy_plugins = list(proxy_plugins)
        self.diff_order = list(diff_order)
        self.snapshotter = snapshotter
        self.namespace = namespace or f"ipcs-fs-test-{secrets.token_hex(4)}"
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
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
    def root(self) -> Path:
        """containerd's root directory."""
        assert self.workdir is not None, "containerd not started"
        return self.workdir / "root"

    @property
    def state(self) -> Path:
        """containerd's state directory."""
        assert self.workdir is not None, "containerd not started"
        return self.workdir / "state"

    @property
    def socket_path(self) -> Path:
        """Path of the gRPC socket."""
        assert self.workdir is not None, "containerd not started"
        return self.workdir / "containerd.sock"

    @property
    def address(self) -> str:
        """The gRPC address, ``unix://`` and the socket path."""
        return f"unix://{self.socket_path}"

    @property
    def content_dir(self) -> Path:
        """Directory of the local content store's blobs, one file per sha256."""
        return self.root / "io.containerd.content.v1.content" / "blobs" / "sha256"

    @property
    def config_path(self) -> Path:
        """The configuration file that containerd was started with."""
        assert self.workdir is not None, "containerd not started"
        return self.workdir / "config.toml"

    @property
    def log_path(self) -> Path:
        """File that receives containerd's standard output and error."""
        assert self.workdir is not None, "containerd not started"
        return self.workdir / "containerd.log"

    def snapshot_dir(self, snapshotter: str | None = None) -> Path:
        """Return the directory of ``snapshotter``'s snapshots (default: ours).

        Each snapshot lies in a numbered subdirectory ``N``. For overlayfs its
        files (the upper directory) are in ``N/fs``; a native snapshot keeps
        its files directly in ``N``.
        """
        name = snapshotter or self.snapshotter
        return self.root / f"io.containerd.snapshotter.v1.{name}" / "snapshots"

    def start(self) -> None:
        """Write the configuration and start containerd.

        Blocks until ``ctr version`` succeeds. Raises
        :class:`~support.HarnessTimeoutError` (with the tail of containerd's log)
        when that takes longer than ``startup_timeout`` seconds, and
        :class:`CtrCommandError` when containerd exits during start.
        """
        self.workdir = Path(tempfile.mkdtemp(prefix="ipcs-fs-containerd-"))
        self.config_path.write_text(self._config())
        self._start_daemon()
        log.info("containerd ready at %s", self.address)

    def stop(self) -> None:
        """Stop containerd and remove everything it left.

        Kills the containers and shims that belong to this daemon, stops the
        daemon (SIGTERM, then SIGKILL after 10 seconds), deletes runc's state
        for its containers, unmounts every mount under its directory (deepest
        first) and removes the directory. Safe to call twice and before
        :meth:`start`.
        """
        if self.workdir is None:
            return
        containers = self._list_containers() if self._running() else []

        _kill_processes(self._shim_pids())
        if self.process is not None:
            _stop_process(self.process, _STOP_TIMEOUT)
            self.process = None
        self._delete_runc_state(containers)

        _unmount_below(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    def env(self) -> dict[str, str]:
        """Return the environment for containerd and ``ctr``.

        Puts the cache's ``bin/`` first on ``PATH``, so that containerd starts
        the unpacked shim and the shim the unpacked runc.
        """
        env = dict(os.environ)
        env["PATH"] = f"{bin_dir()}:{env.get('PATH', '/usr/bin:/bin')}"
        env["CONTAINERD_SNAPSHOTTER"] = self.snapshotter
        return env

    def ctr(
        self,
        *args: str | os.PathLike[str],
        input: bytes | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``ctr --address SOCKET --namespace NS ARGS...`` and return the result.

        Raises :class:`CtrCommandError` when ``ctr`` exits with a non-zero
        status, and :class:`subprocess.TimeoutExpired` after ``timeout`` seconds.
        """
        command = [
            str(self.ctr_binary),
            "--address",
            str(self.socket_path),
            "--namespace",
            self.namespace,
            *map(str, args),
        ]
        result = subprocess.run(
            command,
            input=input,
            env=self.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise CtrCommandError(
                f"ctr {' '.join(map(str, args))} failed with exit status "
                f"{result.returncode}: {stderr}"
            )
        return result

    def output(self, *args: str | os.PathLike[str]) -> str:
        """Run ``ctr ARGS...`` like :meth:`ctr` and return its output as text,
        stripped of surrounding white space."""
        return self.ctr(*args).stdout.decode().strip()

    def _config(self) -> str:
        assert self.workdir is not None
        lines = [
            "version = 2",
            f"root = {_quote(self.root)}",
            f"state = {_quote(self.state)}",
            f"disabled_plugins = {json.dumps(list(DISABLED_PLUGINS))}",
            "",
            "[grpc]",
            f"  address = {_quote(self.socket_path)}",
            "[ttrpc]",
            f"  address = {_quote(self.workdir / 'containerd.sock.ttrpc')}",
            "[debug]",
            '  level = "info"',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_quote(self.workdir / 'opt')}",
            '[plugins."io.containerd.service.v1.diff-service"]',
            f"  default = {json.dumps(self.diff_order)}",
            '[[plugins."io.containerd.transfer.v1.local".unpack_config]]',
            '  platform = "linux/amd64"',
            f"  snapshotter = {_quote(self.snapshotter)}",
            "",
        ]
        for plugin in self.proxy_plugins:
            lines += [
                f"[proxy_plugins.{_quote(plugin.name)}]",
                f"  type = {_quote(plugin.type)}",
                f"  address = {_quote(plugin.address)}",
            ]
        return "\n".join(lines) + "\n"

    def _start_daemon(self) -> None:
        command = [str(self.binary), "--config", str(self.config_path)]
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(
                self._ready, timeout=self.startup_timeout, description="containerd"
            )
        except HarnessTimeoutError as error:
            raise HarnessTimeoutError(f"{error}; log:\n{self._log_tail()}")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise CtrCommandError(
                f"containerd exited with status {self.process.returncode}: "
                f"{self._log_tail()}"
            )
        if not self.socket_path.exists():
            return False
        try:
            self.ctr("--connect-timeout", "1s", "version", timeout=10)
        except CtrCommandError:
            return False
        return True

    def _running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _list_containers(self) -> list[tuple[str, str]]:
        """Return (namespace, container id) for every container containerd has."""
        try:
            namespaces = self.output("namespaces", "list", "--quiet").split()
            containers = []
            for namespace in namespaces:
                ids = self.output("--namespace", namespace, "containers", "list", "-q")
                containers += [(namespace, cid) for cid in ids.split()]
        except (CtrCommandError, subprocess.TimeoutExpired) as error:
            log.warning("failed to list containers of %s: %s", self.address, error)
            return []
        return containers

    def _shim_pids(self) -> list[int]:
        """Return the shims started by this containerd, then their descendants."""
        marker = str(self.socket_path)
        shims = [
            pid
            for pid, argv in _processes()
            if argv and argv[0].endswith("containerd-shim-runc-v2") and marker in argv
        ]
        return shims + _descendants(shims)

    def _delete_runc_state(self, containers: list[tuple[str, str]]) -> None:
        runc = str(find_program("runc"))
        for namespace, container in containers:
            runc_root = _RUNC_ROOT / namespace
            if not (runc_root / container).exists():
                continue
            subprocess.run(
                [runc, "--root", str(runc_root), "delete", "--force", container],
                capture_output=True,
                timeout=30,
                check=False,
            )
            _remove_empty_dir(runc_root)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no containerd log)"
        return "\n".join(lines[-20:])


def _quote(value: str | os.PathLike[str]) -> str:
    # A JSON string is a valid TOML basic string for the characters used here.
    return json.dumps(str(value))


def _processes() -> list[tuple[int, list[str]]]:
    processes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        processes.append((int(entry.name), argv))
    return processes


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may contain spaces, so split after its ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descendants(roots: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, _ in _processes():
        parent = _parent_pid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)

    found = []
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _kill_processes(pids: list[int]) -> None:
    """Send SIGKILL to each of ``pids`` and wait until none of them runs.

    A killed shim has been reparented to init, which reaps it when it likes, so
    a zombie counts as stopped.
    """
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(
        lambda: not any(_is_running(pid) for pid in pids),
        timeout=_STOP_TIMEOUT,
        description=f"killed processes {pids} to exit",
    )


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        log.warning("containerd %d ignored SIGTERM, sending SIGKILL", process.pid)
    process.kill()
    process.wait()


def _mount_points() -> list[Path]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with space, tab, newline and backslash
        # written as octal escapes.
        escaped = line.split()[4]
        points.append(Path(escaped.encode().decode("unicode_escape")))
    return points


def _unmount_below(directory: Path) -> None:
    """Unmount every mount at or below ``directory``, deepest first."""
    below = [
        point
        for point in _mount_points()
        if point == directory or directory in point.parents
    ]
    for point in sorted(below, key=lambda p: len(p.parts), reverse=True):
        result = subprocess.run(
            ["umount", str(point)], capture_output=True, check=False
        )
        if result.returncode != 0:
            # A mount still in use (a process that escaped the kill) is
            # detached now and freed when its last user goes.
            log.warning("failed to unmount %s, detaching it", point)
            subprocess.run(
                ["umount", "--lazy", str(point)], capture_output=True, check=False
            )


def _remove_empty_dir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
