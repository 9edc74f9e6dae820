"""Time containerd unpacking an image it has imported, with a chosen differ.

Terms:

- unpacker: one private containerd 1.7 daemon, started by the integration
  tests' harness (``tests/support/containerd.py``: root, state and sockets
  in a temporary directory, unix sockets only, the ``overlayfs``
  snapshotter), and the ipcs-fs plugin beside it when there is one
  (:class:`ContainerdUnpacker`).
- walking: a daemon whose diff service has only containerd's own walking
  differ. ipcs-fs: a daemon that tries the ``ipcs-fs serve`` plugin first and
  the walking differ second, as ``tests/support/diff_plugin.py`` sets it up.
- run: one import and one unpack, in a containerd namespace of its own. An
  image's snapshots belong to its namespace, so every run unpacks all layers
  again, while the snapshots of earlier runs stay on disk. Removing them
  would make the next runs slower on an ext4 without a journal, which skips
  inodes freed in the last 30 to 60 seconds one lookup at a time.

:meth:`ContainerdUnpacker.import_image` runs ``ctr images import
--no-unpack`` (not timed). :meth:`ContainerdUnpacker.unpack` times ``ctr
images mount``, which in containerd 1.7 unpacks the image's layers first (the
client's ``Image.Unpack``: a snapshot, a diff service Apply and a commit per
layer), then mounts the top snapshot read-only. The mount itself is one
system call. Its usage counts the ``ctr`` process, the daemon and the
plugin (see :class:`benchmarks.measure.ProcessWatch`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from benchmarks.measure import ProcessWatch, Usage, run_child
from tests.support.containerd import Containerd, ProxyPlugin
from tests.support.diff_plugin import PluginLauncher, PluginProcess, layer_digests

__all__ = ["ContainerdUnpacker", "containerd_version"]

_IMAGE = "bench:latest"


class ContainerdUnpacker:
    """A containerd daemon, with or without the ipcs-fs plugin, that times unpacks.

    With ``plugin_store`` set, ``ipcs-fs serve`` runs beside the daemon and
    reads blocks from that embedded store; the daemon tries it before the
    walking differ. Without it the daemon has the walking differ only. The
    plugin's files go under ``scratch``. Use it as a context manager; leaving
    stops both processes and removes the daemon's directory.
    """

    def __init__(self, scratch: Path, *, plugin_store: Path | None = None) -> None:
        self._scratch = scratch
        self._plugin_store = plugin_store
        self._launcher = PluginLauncher(scratch)
        self._socket = scratch / "plugin" / "diff.sock"
        self.daemon = self._daemon()
        self.plugin: PluginProcess | None = None
        self._layers = 0

    def _daemon(self) -> Containerd:
        if self._plugin_store is None:
            return Containerd(diff_order=("walking",))
        plugin = ProxyPlugin("ipcs-fs", "diff", str(self._socket))
        return Containerd(proxy_plugins=[plugin], diff_order=("ipcs-fs", "walking"))

    def __enter__(self) -> Self:
        self.daemon.start()
        try:
            if self._plugin_store is not None:
                self._socket.parent.mkdir(parents=True)
                self.plugin = self._launcher.start(
                    self.daemon, self._plugin_store, self._socket
                )
        except BaseException:
            self.daemon.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._launcher.stop_all()
        finally:
            self.daemon.stop()

    def import_image(self, archive: Path, run: str) -> None:
        """Import the oci-archive ``archive`` into namespace ``run``, unpacking nothing."""
        self.daemon.namespace = f"bench-{run}"
        self.daemon.ctr(
            "images", "import", "--no-unpack", "--base-name", "bench", archive
        )
        self._layers = len(layer_digests(archive))

    def unpack(self) -> tuple[Usage, dict[str, object]]:
        """Unpack the image that :meth:`import_image` imported last; time it.

        Returns the usage and, per process, the CPU seconds and peak RSS.
        Raises RuntimeError when the plugin of an ipcs-fs daemon did not
        apply every layer, since the walking differ then did some of the work.
        """
        applied = len(self.plugin.applied()) if self.plugin else 0
        target = Path(tempfile.mkdtemp(prefix="bench-mount-", dir=self._scratch))
        watch = ProcessWatch(self._watched_pids())
        watch.start()
        usage = run_child(self._ctr("images", "mount", _IMAGE, target))
        processes = watch.stop()
        self.daemon.ctr("images", "unmount", "--rm", target)
        target.rmdir()
        if self.plugin is not None:
            self._check_plugin_applied(applied)
        return _combine(usage, processes), self._split(usage, processes)

    def snapshot_dir(self) -> Path:
        """Return the directory of the daemon's overlayfs snapshots."""
        return self.daemon.snapshot_dir()

    def _ctr(self, *args: str | os.PathLike[str]) -> list[str]:
        return [
            str(self.daemon.ctr_binary),
            "--address",
            str(self.daemon.socket_path),
            "--namespace",
            self.daemon.namespace,
            *map(str, args),
        ]

    def _watched_pids(self) -> list[int]:
        processes = [self.daemon.process]
        if self.plugin is not None:
            processes.append(self.plugin.process)
        return [process.pid for process in processes if process is not None]

    def _check_plugin_applied(self, before: int) -> None:
        assert self.plugin is not None
        applied = len(self.plugin.applied()) - before
        if applied != self._layers:
            raise RuntimeError(
                "failed to unpack through the ipcs-fs plugin: its log shows"
                f" {applied} of {self._layers} layers applied; see {self.plugin.log}"
            )

    def _split(
        self, usage: Usage, processes: dict[int, tuple[float, float]]
    ) -> dict[str, object]:
        names = {self.daemon.process.pid: "containerd"}  # type: ignore[union-attr]
        if self.plugin is not None and self.plugin.process is not None:
            names[self.plugin.process.pid] = "ipcs-fs serve"
        split: dict[str, object] = {"ctr": usage.to_json()}
        for pid, (cpu, peak) in processes.items():
            split[names[pid]] = {"cpu_seconds": round(cpu, 4), "peak_rss_mib": peak}
        return split


def _combine(usage: Usage, processes: dict[int, tuple[float, float]]) -> Usage:
    cpu = usage.cpu_seconds + sum(cpu for cpu, _ in processes.values())
    peak = max([usage.peak_rss_mib, *(peak for _, peak in processes.values())])
    return Usage(usage.wall_seconds, cpu, peak)


def containerd_version() -> str:
    """Return the version of the containerd binary that the harness starts."""
    from tests.support import find_program

    output = subprocess.run(
        [find_program("containerd"), "--version"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return output[2] if len(output) > 2 else " ".join(output)
