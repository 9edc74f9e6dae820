"""Integration tests of the kubo and containerd harness against the real programs."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support import ProgramNotFoundError, SocketEndpoint, cache_dir, socket_endpoints
from support.containerd import Containerd, ProxyPlugin
from support.kubo import LOOPBACK_SETTINGS, KuboNode

pytestmark = pytest.mark.integration

# `ipfs add --cid-version=1` of the 11 bytes "hello world".
HELLO_WORLD_CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"

EGRESS_WATCH_SECONDS = 60.0


# kubo


def test_kubo_node_listens_on_loopback(kubo_node: KuboNode) -> None:
    assert re.fullmatch(r"/ip4/127\.0\.0\.1/tcp/\d+", kubo_node.api_multiaddr)
    assert kubo_node.api_url.startswith("http://127.0.0.1:")
    assert kubo_node.api_url.endswith("/api/v0")
    assert kubo_node.gateway_url.startswith("http://127.0.0.1:")
    assert kubo_node.swarm_multiaddr.startswith("/ip4/127.0.0.1/tcp/")
    assert kubo_node.swarm_multiaddr.endswith(f"/p2p/{kubo_node.peer_id}")
    for endpoint in socket_endpoints(kubo_node.pid):
        assert endpoint.is_loopback_only(), endpoint


def test_kubo_node_keeps_loopback_settings(kubo_node: KuboNode) -> None:
    config = json.loads(kubo_node.output("config", "show"))
    for key, value in LOOPBACK_SETTINGS.items():
        found = config
        for name in key.split("."):
            found = found[name]
        assert found == value, key


def test_kubo_node_adds_with_kubo_cid(kubo_node: KuboNode) -> None:
    cid = kubo_node.run("add", "-Q", "--cid-version=1", input=b"hello world")
    assert cid.stdout.decode().strip() == HELLO_WORLD_CID


def test_kubo_pair_exchanges_blocks(kubo_pair: tuple[KuboNode, KuboNode]) -> None:
    first, second = kubo_pair
    data = b"block sent over loopback only\n"
    cid = first.run("add", "-Q", "--cid-version=1", input=data).stdout.decode()

    fetched = second.run("cat", "--timeout=30s", cid.strip()).stdout

    assert fetched == data
    assert first.peer_id in second.output("swarm", "peers")


def test_kubo_pair_stays_on_loopback(tmp_path: Path) -> None:
    """Two connected daemons, traced for a minute, touch only 127.0.0.0/8.

    Each daemon runs under ``strace``, which records every connect, sendto,
    sendmsg and bind from its first instruction to its stop. The sockets of
    both daemons are also sampled from ``/proc`` twice a second.
    """
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace not installed")
    traces = [tmp_path / "first.strace", tmp_path / "second.strace"]
    try:
        first, second = (_traced_node(strace, trace) for trace in traces)
    except ProgramNotFoundError as error:
        pytest.skip(str(error))

    with first, second:
        first.connect(second)
        cid = first.run("add", "-Q", "--cid-version=1", input=b"traced\n")
        assert second.run("cat", cid.stdout.decode().strip()).stdout == b"traced\n"
        seen = _sample_sockets([first.pid, second.pid], EGRESS_WATCH_SECONDS)
        assert first.peer_id in second.output("swarm", "peers")

    assert seen, "no socket was sampled"
    outside = sorted({str(e) for e in seen if not e.is_loopback_only()})
    assert outside == []
    # The dial of the first node to the second shows that the trace works.
    dialed = _traced_addresses(traces[0].read_text())
    assert ("127.0.0.1", _port(second.swarm_multiaddr)) in dialed
    for trace in traces:
        addresses = _traced_addresses(trace.read_text())
        assert [a for a in addresses if not _is_loopback_target(*a)] == []


def test_trace_parser_flags_outside_addresses() -> None:
    lines = [
        (
            "7 connect(9, {sa_family=AF_INET, sin_port=htons(4001), "
            'sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS'
        ),
        (
            '7 sendto(5, "", 0, 0, {sa_family=AF_INET, sin_port=htons(53), '
            'sin_addr=inet_addr("127.0.0.53")}, 16) = 0'
        ),
        (
            "8 connect(3, {sa_family=AF_INET6, sin6_port=htons(443), "
            'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", '
            "&sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH"
        ),
        "8 bind(4, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 0",
    ]
    trace = "\n".join(lines)

    addresses = _traced_addresses(trace)

    assert addresses == [("127.0.0.1", 4001), ("127.0.0.53", 53), ("2001:db8::1", 443)]
    assert [_is_loopback_target(*a) for a in addresses] == [True, False, False]


def _traced_node(strace: str, trace: Path) -> KuboNode:
    prefix = [strace, "-f", "-qq", "-e", "signal=none", "-o", str(trace)]
    prefix += ["-e", "trace=connect,sendto,sendmsg,sendmmsg,bind"]
    return KuboNode(command_prefix=prefix)


def _sample_sockets(pids: list[int], seconds: float) -> set[SocketEndpoint]:
    seen: set[SocketEndpoint] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in pids:
            seen.update(socket_endpoints(pid))
        time.sleep(0.5)
    return seen


_INET_ADDRESS = re.compile(
    r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)'
    r'|sin6_port=htons\((\d+)\),.*?inet_pton\(AF_INET6, "([^"]+)"'
)


def _traced_addresses(trace: str) -> list[tuple[str, int]]:
    """Return (address, port) of each IPv4 or IPv6 socket address in a trace."""
    found = []
    for match in _INET_ADDRESS.finditer(trace):
        port4, address4, port6, address6 = match.groups()
        if address4 is not None:
            found.append((address4, int(port4)))
        else:
            found.append((address6, int(port6)))
    return found


def _is_loopback_target(address: str, port: int) -> bool:
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        parsed = parsed.ipv4_mapped
    # Port 53 is DNS: a query to a local resolver still leaves the machine.
    return parsed.is_loopback and port != 53


def _port(multiaddr: str) -> int:
    return int(multiaddr.split("/")[4])


def test_socket_endpoints_read_proc() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    wildcard = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wildcard.bind(("0.0.0.0", 0))
    with listener, wildcard, socket.create_connection(listener.getsockname()) as client:
        endpoints = {e.local_port: e for e in socket_endpoints(os.getpid())}

        server_port = listener.getsockname()[1]
        client_port = client.getsockname()[1]
        wildcard_port = wildcard.getsockname()[1]

    assert endpoints[server_port].protocol == "tcp"
    assert endpoints[server_port].remote_port == 0
    assert endpoints[server_port].is_loopback_only()
    assert endpoints[client_port].remote_port == server_port
    assert str(endpoints[client_port].remote_address) == "127.0.0.1"
    assert endpoints[client_port].is_loopback_only()
    assert endpoints[wildcard_port].protocol == "udp"
    assert not endpoints[wildcard_port].is_loopback_only()


# containerd

GREETING = "hello from an ipcs-fs test image"
IMAGE_NAME = "ipcs-fs.test/echo:latest"


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_containerd_runs_host_binary_image(
    containerd: Callable[..., Containerd], tmp_path: Path, snapshotter: str
) -> None:
    daemon = containerd(snapshotter=snapshotter)
    archive, layer_digest = _write_echo_image(tmp_path)

    daemon.ctr("images", "import", archive)
    output = daemon.output(
        "run", "--rm", IMAGE_NAME, "echo-test", "/bin/echo", GREETING
    )

    assert output == GREETING
    assert IMAGE_NAME in daemon.output("images", "list", "--quiet")
    assert (daemon.content_dir / layer_digest).is_file()
    assert any(daemon.snapshot_dir().iterdir())


def test_containerd_stop_removes_everything(
    containerd: Callable[..., Containerd], tmp_path: Path
) -> None:
    daemon = containerd()
    archive, _ = _write_echo_image(tmp_path)
    daemon.ctr("images", "import", archive)
    daemon.ctr("run", "--detach", IMAGE_NAME, "sleeper", "/bin/sleep", "600")
    workdir = daemon.workdir
    assert workdir is not None
    socket_path = str(daemon.socket_path)

    daemon.stop()

    assert not workdir.exists()
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()
    assert _running_with_argument(socket_path) == []


def test_containerd_loads_proxy_differ(containerd: Callable[..., Containerd]) -> None:
    plugin = ProxyPlugin(name="ipcs-fs", type="diff", address="/run/ipcs-fs.sock")
    daemon = containerd(proxy_plugins=[plugin], diff_order=["ipcs-fs", "walking"])

    plugins = daemon.output("plugins", "list")

    assert re.search(r"io\.containerd\.differ\.v1\s+ipcs-fs\s.*\sok", plugins)
    assert '[proxy_plugins."ipcs-fs"]' in daemon.config_path.read_text()
    assert 'default = ["ipcs-fs", "walking"]' in daemon.config_path.read_text()


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_containerd_runs_debian_image(
    containerd: Callable[..., Containerd], snapshotter: str
) -> None:
    archive = cache_dir() / "images" / "debian-bookworm" / "debian-bookworm.oci.tar"
    if not archive.is_file():
        pytest.skip(f"{archive} not built: run python -m fixtures.debian_images")
    daemon = containerd(snapshotter=snapshotter)

    daemon.ctr("images", "import", "--base-name", "debian", archive)
    name = daemon.output("images", "list", "--quiet").splitlines()[0]
    output = daemon.output(
        "run", "--rm", name, "debian-test", "cat", "/etc/debian_version"
    )

    assert re.fullmatch(r"12\.\d+", output)


def _running_with_argument(argument: str) -> list[int]:
    """Return the pids of live (not zombie) processes with ``argument`` in argv."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argument.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def _write_echo_image(directory: Path) -> tuple[Path, str]:
    """Write an OCI archive of one layer holding /bin/echo and /bin/sleep with
    their shared libraries, copied from this machine.

    Returns the archive's path and the layer's sha256 in hex.
    """
    layer = _host_binaries_layer(["/bin/echo", "/bin/sleep"])
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = _json_bytes(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/echo", GREETING]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        }
    )
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }
    )
    index_entry = _descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    index_entry["annotations"] = {
        "io.containerd.image.name": IMAGE_NAME,
        "org.opencontainers.image.ref.name": "latest",
    }
    index = _json_bytes({"schemaVersion": 2, "manifests": [index_entry]})

    archive = directory / "echo.oci.tar"
    with tarfile.open(archive, "w") as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(tar, "index.json", index)
        for blob in (layer, config, manifest):
            name = f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}"
            _add_bytes(tar, name, blob)
    return archive, layer_digest


def _host_binaries_layer(binaries: list[str]) -> bytes:
    paths = set(binaries)
    for binary in binaries:
        paths.update(_shared_libraries(binary))

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
        for path in sorted(paths):
            tar.add(path, arcname=path.lstrip("/"), recursive=False)
    return buffer.getvalue()


def _shared_libraries(binary: str) -> list[str]:
    output = subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r"(/\S+) \(0x", output)


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
    }


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
