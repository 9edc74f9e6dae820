"""``ipcs-fs serve`` processes beside test containerd daemons, and converted images.

Terms:

- plugin: one ``ipcs-fs serve --config FILE`` process (:class:`PluginProcess`),
  a separate process whose log (stderr) proves which calls reached it.
- plugin-first daemon: a :class:`~support.containerd.Containerd` that lists the
  plugin as a ``[proxy_plugins]`` entry of type ``diff`` and tries it before
  ``walking`` (:func:`start_with_plugin`).
- converted image: a real Debian image of ``fixtures.debian_images`` converted
  with ``ipcs-fs convert --file-granular`` into an ``oci-archive:`` tar, its
  blocks in a given block store (:class:`ConvertedImage`).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fixtures.debian_images import ensure_image

from . import wait_until
from .containerd import Containerd, ProxyPlugin

__all__ = [
    "APPLIED",
    "IPCS_FS",
    "MEDIA_TYPE",
    "ConvertedImage",
    "PluginLauncher",
    "PluginProcess",
    "convert_image",
    "import_image",
    "layer_digests",
    "start_with_plugin",
]

IPCS_FS = [sys.executable, "-m", "ipcs_fs.cli"]
"""The ``ipcs-fs`` command, run with the interpreter of the tests."""

MEDIA_TYPE = "application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb"
"""Media type of a file-granular layer."""

APPLIED = re.compile(r"applied layer (sha256:[0-9a-f]{64}) \(([^)]*)\) via (\S+)")
"""The plugin's log line of an Apply that succeeded: digest, media type, write path."""

_LISTENING = ": listening on unix://"
_REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass
class PluginProcess:
    """One ``ipcs-fs serve`` process and the files it uses."""

    config: Path
    socket: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def mount_dir(self) -> Path:
        """The directory of the plugin's temporary mounts, beside its socket."""
        return self.socket.with_name(self.socket.name + ".mounts")

    def start(self) -> None:
        """Start the process; return once its log says that it listens."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*IPCS_FS, "serve", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=_REPOSITORY,
            )
        # A socket left by a killed plugin exists before the new one listens,
        # so readiness is the new process's log line.
        starts = self.text().count(_LISTENING)
        wait_until(
            lambda: self._listening(starts), timeout=30, description="ipcs-fs serve"
        )

    def _listening(self, starts: int) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"ipcs-fs serve exited: {self.text()}")
        return self.text().count(_LISTENING) > starts

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and return the exit status."""
        assert self.process is not None
        self.process.send_signal(signum)
        status = self.process.wait(timeout=60)
        self.process = None
        return status

    def text(self) -> str:
        """Return the log written so far."""
        return self.log.read_text() if self.log.exists() else ""

    def applied(self) -> list[tuple[str, str, str]]:
        """Return (digest, media type, write path) of every Apply that succeeded."""
        return APPLIED.findall(self.text())


class PluginLauncher:
    """Start plugins whose files lie under ``directory``; :meth:`stop_all` ends them.

    Each plugin's configuration file and log go into a new directory under
    ``directory``; its socket is the one given to :meth:`start`, whose parent
    directory :meth:`stop_all` removes.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[PluginProcess] = []

    def start(
        self, daemon: Containerd, store: Path, socket: Path, **settings: object
    ) -> PluginProcess:
        """Start a plugin for ``daemon`` on ``socket`` with block store ``store``.

        ``settings`` override keys of the plugin's configuration file.
        """
        directory = Path(tempfile.mkdtemp(prefix="plugin-", dir=self._directory))
        plugin = PluginProcess(
            config=directory / "serve.toml", socket=socket, log=directory / "serve.log"
        )
        values = {
            "address": f"unix://{socket}",
            "store": str(store),
            "containerd_root": str(daemon.root),
            "containerd_address": daemon.address,
            "namespace": daemon.namespace,
            "log_level": "info",
            **settings,
        }
        plugin.config.write_text(
            "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        )
        plugin.start()
        self._started.append(plugin)
        return plugin

    def stop_all(self) -> None:
        """Stop every plugin still running and remove its socket's directory."""
        for plugin in self._started:
            if plugin.process is not None:
                plugin.stop()
            shutil.rmtree(plugin.socket.parent, ignore_errors=True)


def start_with_plugin(
    containerd: Callable[..., Containerd],
    plugin_factory: Callable[..., PluginProcess],
    store: Path,
    *,
    diff_order: tuple[str, ...] = ("ipcs-fs", "walking"),
    snapshotter: str = "overlayfs",
    **settings: object,
) -> tuple[Containerd, PluginProcess]:
    """Start a plugin-first daemon and its plugin, reading blocks from ``store``.

    ``containerd`` and ``plugin_factory`` are the fixtures of the same names;
    ``settings`` go to the plugin's configuration file.
    """
    # containerd connects to a proxy plugin at its first call, so the daemon
    # starts first and the plugin then learns its root and socket.
    socket = Path(tempfile.mkdtemp(prefix="ipcs-fs-plugin-")) / "diff.sock"
    daemon = containerd(
        proxy_plugins=[ProxyPlugin("ipcs-fs", "diff", str(socket))],
        diff_order=list(diff_order),
        snapshotter=snapshotter,
    )
    plugin = plugin_factory(daemon, store, socket, **settings)
    return daemon, plugin


@dataclass(frozen=True)
class ConvertedImage:
    """A real image, its file-granular conversion and the store of its blocks."""

    name: str
    original: Path
    converted: Path
    store: Path
    layer_digests: tuple[str, ...]
    """Digests of the converted layers, lowest first."""


def convert_image(name: str, store: Path, directory: Path) -> ConvertedImage:
    """Convert the real image ``name`` into ``directory``, its blocks into ``store``."""
    paths = ensure_image(name)
    archive = directory / f"{name}-fg.oci.tar"
    subprocess.run(
        [
            *IPCS_FS,
            "--store",
            str(store),
            "convert",
            "--file-granular",
            paths.oci_reference,
            f"oci-archive:{archive}:latest",
        ],
        check=True,
        capture_output=True,
    )
    return ConvertedImage(
        name, paths.archive_path, archive, store, layer_digests(archive)
    )


def layer_digests(archive: Path) -> tuple[str, ...]:
    """Return the layer digests of the first image of an oci-archive, lowest first."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
    return tuple(layer["digest"] for layer in manifest["layers"])


def import_image(daemon: Containerd, archive: Path, base_name: str) -> str:
    """Import (and so unpack) an oci-archive; return the name of its image.

    The image is named ``base_name:TAG``; with several images whose names
    start with ``base_name``, the first listed is returned.
    """
    daemon.ctr("images", "import", "--base-name", base_name, archive)
    names = daemon.output("images", "list", "--quiet").splitlines()
    return next(name for name in names if name.startswith(base_name))
