"""A kubo daemon confined to loopback, for integration tests.

:class:`KuboNode` runs ``ipfs init --profile=test`` in a temporary repository
(``IPFS_PATH``), edits the configuration so that the daemon can reach a second
local node but nothing else, starts ``ipfs daemon`` and waits until its RPC API
responds. Two nodes meet with :meth:`KuboNode.connect` over 127.0.0.1.

Configuration, checked against ``ipfs config show`` and ``docs/config.md`` of
kubo v0.43.1. The test profile already sets the first group. The harness sets
them again so that a change of the profile cannot open a path out:

- ``Bootstrap = []``: dial no bootstrap peers, not even backups saved earlier.
- ``Discovery.MDNS.Enabled = false``: send no multicast DNS on the LAN.
- ``Swarm.DisableNatPortMap = true``: no UPnP or NAT-PMP requests to a router.
- ``AutoConf.Enabled = false``: fetch no remote list of bootstrap peers and
  routers.
- ``AutoTLS.Enabled = false``: contact no certificate registration service.
- ``Routing.DelegatedRouters = []``, ``Ipns.DelegatedPublishers = []``: query
  no HTTP routers.
- ``Addresses.Announce``, ``AppendAnnounce``, ``NoAnnounce = []``: announce the
  listen addresses only.

Set by the harness on top of the profile:

- ``Addresses.API``, ``Addresses.Gateway``, ``Addresses.Swarm`` on
  ``/ip4/127.0.0.1/tcp/0``: loopback only, and the kernel picks a free port when
  the daemon binds, so two nodes never race for a port. The chosen ports are
  read back from the running daemon.
- ``Routing.Type = none``: no DHT and no delegated routing. Peers are connected
  by hand.
- ``Provide.Enabled = false`` and ``Import.FastProvideRoot = false``: announce
  no provider records. ``Provider`` and ``Reprovider`` were removed in favour of
  ``Provide`` and are left unset.
- ``Plugins.Plugins.telemetry.Disabled = true``, plus ``IPFS_TELEMETRY=off``
  and ``DO_NOT_TRACK=1`` in the environment of every ``ipfs`` process: kubo 0.37
  to 0.42 reported usage to a remote endpoint by default. 0.43 ships without
  one, and this keeps the plugin from loading at all.
- ``Swarm.RelayClient.Enabled = false``, ``Swarm.RelayService.Enabled =
  false``, ``Swarm.EnableHolePunching = false``: no circuit relays, no DCUtR.
- ``AutoNAT.ServiceMode = disabled``: never dial back other peers' addresses
  on their request.
- ``Swarm.Transports.Network``: TCP only. QUIC, WebSocket, WebTransport,
  WebRTC-direct and the relay transport are off, so the node neither listens
  on nor dials them.
- ``Swarm.AddrFilters``: the libp2p connection gater rejects, before any
  handshake, every connection to or from an IPv4 address outside 127.0.0.0/8
  and every IPv6 address. This guard holds even if a peer hands out other
  addresses.
- ``HTTPRetrieval.Enabled = false``: fetch no blocks from HTTPS gateways.
- ``Gateway.NoDNSLink = true``: the gateway makes no DNS lookups for DNSLink
  names in a request's Host header.

The daemon starts as ``ipfs daemon --migrate=false``. ``--offline`` would stop
the swarm, so two nodes could not exchange blocks. Left as they are:
``Gateway.NoFetch`` (the gateway fetches through bitswap, which reaches only
connected peers), ``DNS.Resolvers`` (the system resolver, used only for
``/dns`` addresses and DNSLink names, and no configured value refers to either)
and ``Version.SwarmCheckEnabled`` (it only logs).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import HarnessTimeoutError, find_program, wait_until

__all__ = ["LOOPBACK_SETTINGS", "IpfsCommandError", "KuboNode"]

log = logging.getLogger(__name__)

_LOOPBACK_LISTEN = "/ip4/127.0.0.1/tcp/0"

# Every IPv4 range except 127.0.0.0/8, then all of IPv6.
_NON_LOOPBACK_FILTERS = [
    "/ip4/0.0.0.0/ipcidr/2",
    "/ip4/64.0.0.0/ipcidr/3",
    "/ip4/96.0.0.0/ipcidr/4",
    "/ip4/112.0.0.0/ipcidr/5",
    "/ip4/120.0.0.0/ipcidr/6",
    "/ip4/124.0.0.0/ipcidr/7",
    "/ip4/126.0.0.0/ipcidr/8",
    "/ip4/128.0.0.0/ipcidr/1",
    "/ip6/::/ipcidr/0",
]

LOOPBACK_SETTINGS: dict[str, Any] = {
    # Already set by the test profile, repeated as a guard.
    "Bootstrap": [],
    "Discovery.MDNS.Enabled": False,
    "Swarm.DisableNatPortMap": True,
    "AutoConf.Enabled": False,
    "AutoTLS.Enabled": False,
    "Routing.DelegatedRouters": [],
    "Ipns.DelegatedPublishers": [],
    "Addresses.Announce": [],
    "Addresses.AppendAnnounce": [],
    "Addresses.NoAnnounce": [],
    # Set on top of the test profile.
    "Addresses.API": _LOOPBACK_LISTEN,
    "Addresses.Gateway": _LOOPBACK_LISTEN,
    "Addresses.Swarm": [_LOOPBACK_LISTEN],
    "Routing.Type": "none",
    "Provide.Enabled": False,
    "Import.FastProvideRoot": False,
    "Plugins.Plugins.telemetry.Disabled": True,
    "Swarm.RelayClient.Enabled": False,
    "Swarm.RelayService.Enabled": False,
    "Swarm.EnableHolePunching": False,
    "AutoNAT.ServiceMode": "disabled",
    "Swarm.Transports.Network.TCP": True,
    "Swarm.Transports.Network.QUIC": False,
    "Swarm.Transports.Network.Websocket": False,
    "Swarm.Transports.Network.WebTransport": False,
    "Swarm.Transports.Network.WebRTCDirect": False,
    "Swarm.Transports.Network.Relay": False,
    "Swarm.AddrFilters": _NON_LOOPBACK_FILTERS,
    "HTTPRetrieval.Enabled": False,
    "Gateway.NoDNSLink": True,
}
"""The configuration keys that :class:`KuboNode` sets, with their values."""

_STOP_TIMEOUT = 15.0


class IpfsCommandError(RuntimeError):
    """An ``ipfs`` command exited with a non-zero status.

    The message contains the arguments, the exit status and the standard error.
    """


class KuboNode:
    """A kubo daemon on 127.0.0.1 with a repository of its own.

    Use it as a context manager: entering initialises the repository and
    starts the daemon, leaving stops it and removes the repository. The
    attributes ``api_multiaddr``, ``api_url``, ``gateway_url``, ``peer_id`` and
    ``swarm_multiaddr`` are set once the daemon is ready. ``command_prefix``
    runs the daemon under another program, for example ``strace -f -o FILE``.
    The daemon runs in a process group of its own, and :meth:`stop` signals
    that group, so a prefix program stops with it.
    """

    def __init__(
        self,
        *,
        startup_timeout: float = 60.0,
        command_prefix: Sequence[str] = (),
    ) -> None:
        self.binary = find_program("ipfs")
        self.startup_timeout = startup_timeout
        self.command_prefix = list(command_prefix)
        self.workdir: Path | None = None
        self.repo: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.api_multiaddr = ""
        self.api_url = ""
        self.gateway_url = ""
        self.peer_id = ""
        self.swarm_multiaddr = ""

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
    def pid(self) -> int:
        """Process id of ``ipfs daemon``, a child of the prefix program if any."""
        assert self.process is not None, "daemon not started"
        if not self.command_prefix:
            return self.process.pid
        return _find_child_named(self.process.pid, "ipfs")

    @property
    def log_path(self) -> Path:
        """File that receives the daemon's standard output and error."""
        assert self.workdir is not None, "daemon not started"
        return self.workdir / "daemon.log"

    def start(self) -> None:
        """Initialise the repository, configure it and start the daemon.

        Blocks until the RPC API responds to ``id``. Raises
        :class:`IpfsCommandError` when ``ipfs init`` or the configuration
        fails, and :class:`~support.HarnessTimeoutError` when the daemon is not
        ready within ``startup_timeout`` seconds (the message ends with the tail
        of the daemon log).
        """
        self.workdir = Path(tempfile.mkdtemp(prefix="ipcs-fs-kubo-"))
        self.repo = self.workdir / "repo"
        self.run("init", "--profile=test", "--empty-repo")
        self._configure()
        self._start_daemon()
        self._read_addresses()
        log.info("kubo %s ready at %s", self.peer_id, self.api_url)

    def stop(self) -> None:
        """Stop the daemon and remove the repository.

        Sends SIGTERM to the daemon's process group, then SIGKILL after 15
        seconds. Safe to call twice and before :meth:`start`.
        """
        if self.process is not None:
            _stop_group(self.process, _STOP_TIMEOUT)
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def env(self) -> dict[str, str]:
        """Return the environment for an ``ipfs`` process on this repository."""
        assert self.repo is not None, "repository not created"
        env = dict(os.environ)
        env["IPFS_PATH"] = str(self.repo)
        env["IPFS_TELEMETRY"] = "off"
        env["DO_NOT_TRACK"] = "1"
        return env

    def run(
        self, *args: str | os.PathLike[str], input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``ipfs ARGS...`` on this node's repository and return the result.

        While the daemon runs, the command goes through its RPC API. Raises
        :class:`IpfsCommandError` when the command exits with a non-zero status.
        """
        command = [str(self.binary), *map(str, args)]
        result = subprocess.run(
            command,
            input=input,
            env=self.env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise IpfsCommandError(
                f"ipfs {' '.join(command[1:])} failed with exit status "
                f"{result.returncode}: {stderr}"
            )
        return result

    def output(self, *args: str | os.PathLike[str]) -> str:
        """Run ``ipfs ARGS...`` like :meth:`run` and return its output as text,
        stripped of surrounding white space."""
        return self.run(*args).stdout.decode().strip()

    def connect(self, other: KuboNode) -> None:
        """Connect this node's swarm to ``other`` over 127.0.0.1.

        Returns once each node lists the other as a peer. Raises
        :class:`IpfsCommandError` when the connection fails.
        """
        self.output("swarm", "connect", other.swarm_multiaddr)
        wait_until(
            lambda: other.peer_id in self.output("swarm", "peers"),
            timeout=10,
            description=f"kubo {self.peer_id} to list peer {other.peer_id}",
        )
        wait_until(
            lambda: self.peer_id in other.output("swarm", "peers"),
            timeout=10,
            description=f"kubo {other.peer_id} to list peer {self.peer_id}",
        )

    def config_value(self, key: str) -> Any:
        """Return the value of configuration ``key`` as the daemon stores it."""
        return json.loads(self.output("config", "--json", key))

    def _configure(self) -> None:
        # `config replace` drops keys it does not know without an error, so
        # every setting is read back afterwards: a misspelt key fails here.
        assert self.repo is not None and self.workdir is not None
        config = json.loads((self.repo / "config").read_text())
        for key, value in LOOPBACK_SETTINGS.items():
            _set_path(config, key, value)
        # `config replace` rejects a private key and keeps the one it has.
        del config["Identity"]["PrivKey"]
        edited = self.workdir / "config.json"
        edited.write_text(json.dumps(config, indent=2))
        self.run("config", "replace", edited)

        stored = json.loads(self.output("config", "show"))
        for key, value in LOOPBACK_SETTINGS.items():
            found = _get_path(stored, key)
            if found != value:
                raise IpfsCommandError(
                    f"failed to set kubo config {key}: expected {value!r}, "
                    f"found {found!r}"
                )

    def _start_daemon(self) -> None:
        command = [
            *self.command_prefix,
            str(self.binary),
            "daemon",
            "--migrate=false",
        ]
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
                self._api_ready,
                timeout=self.startup_timeout,
                description="the kubo API",
            )
        except HarnessTimeoutError as error:
            raise HarnessTimeoutError(f"{error}; daemon log:\n{self._log_tail()}")

    def _api_ready(self) -> bool:
        assert self.process is not None and self.repo is not None
        if self.process.poll() is not None:
            raise IpfsCommandError(
                f"ipfs daemon exited with status {self.process.returncode}: "
                f"{self._log_tail()}"
            )
        api_file = self.repo / "api"
        # kubo writes the gateway's address to a file of its own, sometimes
        # after the API already responds, so wait for both files.
        if not api_file.exists() or not (self.repo / "gateway").exists():
            return False
        self.api_multiaddr = api_file.read_text().strip()
        self.api_url = _http_url(self.api_multiaddr) + "/api/v0"
        return _post(self.api_url + "/id") is not None

    def _read_addresses(self) -> None:
        assert self.repo is not None
        # The gateway's URL carries the port that the kernel chose.
        self.gateway_url = (self.repo / "gateway").read_text().strip()

        identity = json.loads(self.output("id"))
        self.peer_id = identity["ID"]
        swarm = [a for a in identity["Addresses"] if a.startswith("/ip4/127.0.0.1/")]
        if not swarm:
            raise IpfsCommandError(
                f"kubo {self.peer_id} lists no swarm address on 127.0.0.1: "
                f"{identity['Addresses']}"
            )
        self.swarm_multiaddr = swarm[0]

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no daemon log)"
        return "\n".join(lines[-20:])


def _set_path(config: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        if node.get(name) is None:
            node[name] = {}
        node = node[name]
    node[leaf] = value


def _get_path(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for name in key.split("."):
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
    return node


def _http_url(multiaddr: str) -> str:
    """Turn ``/ip4/127.0.0.1/tcp/PORT`` into ``http://127.0.0.1:PORT``."""
    parts = multiaddr.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "ip4" or parts[2] != "tcp":
        raise IpfsCommandError(f"unexpected kubo API address {multiaddr}")
    return f"http://{parts[1]}:{parts[3]}"


def _post(url: str) -> bytes | None:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body: bytes = response.read()
    except urllib.error.URLError:
        return None
    return body


def _find_child_named(parent: int, name: str) -> int:
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines()
            )
        except (OSError, ValueError):
            continue
        is_child = fields.get("PPid", "").strip() == str(parent)
        if is_child and fields.get("Name", "").strip() == name:
            return int(status.parent.name)
    raise ProcessLookupError(f"no child process {name} of pid {parent}")


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        log.warning("ipfs daemon %d ignored SIGTERM, sending SIGKILL", process.pid)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
