"""Harness that starts real kubo and containerd processes for integration tests.

Terms:

- cache directory: ``${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}``, where
  ``scripts/install-kubo.sh`` and ``scripts/install-containerd.sh`` put the
  programs (``bin/``) and their unpacked packages.
- program: one executable of ``bin/`` (``ipfs``, ``containerd``, ``ctr``,
  ``containerd-shim-runc-v2``, ``runc``).
- socket endpoint: the local and remote address of one TCP or UDP socket that a
  process holds, read from ``/proc``. Tests use it to prove that a daemon talks
  to loopback addresses only.

The harness binds every listener to 127.0.0.1 and keeps all state in temporary
directories that it removes on stop.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HarnessTimeoutError",
    "ProgramNotFoundError",
    "SocketEndpoint",
    "bin_dir",
    "cache_dir",
    "find_program",
    "socket_endpoints",
    "wait_until",
]

# Installer that provides each program, named in the error when one is missing.
_INSTALLERS = {
    "ipfs": "scripts/install-kubo.sh",
    "containerd": "scripts/install-containerd.sh",
    "ctr": "scripts/install-containerd.sh",
    "containerd-shim-runc-v2": "scripts/install-containerd.sh",
    "runc": "scripts/install-containerd.sh",
}


class ProgramNotFoundError(FileNotFoundError):
    """A program that a test needs is not in the cache's ``bin/`` directory."""


class HarnessTimeoutError(TimeoutError):
    """A started process did not become ready in time."""


def cache_dir() -> Path:
    """Return the cache directory, ``$IPCS_FS_CACHE`` or ``~/.cache/ipcs-fs``."""
    configured = os.environ.get("IPCS_FS_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "ipcs-fs"


def bin_dir() -> Path:
    """Return the directory that contains the installed programs."""
    return cache_dir() / "bin"


def find_program(name: str) -> Path:
    """Return the path of program ``name`` in the cache.

    Raises :class:`ProgramNotFoundError`, naming the script that installs it,
    when the file is missing or not executable.
    """
    path = bin_dir() / name
    if os.access(path, os.X_OK):
        return path

    installer = _INSTALLERS.get(name, "the install scripts in scripts/")
    raise ProgramNotFoundError(f"{name} not found at {path}: run {installer}")


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    description: str,
    interval: float = 0.05,
) -> None:
    """Call ``ready`` until it returns true, for at most ``timeout`` seconds.

    ``ready`` may raise :class:`OSError` while the process starts, which counts
    as not ready. Raises :class:`HarnessTimeoutError` naming ``description`` when the
    time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HarnessTimeoutError(
                f"timed out after {timeout} s waiting for {description}"
            )
        time.sleep(interval)


@dataclass(frozen=True)
class SocketEndpoint:
    """The addresses of one TCP or UDP socket of a process.

    ``remote_port`` is 0 and ``remote_address`` unspecified for a listening or
    unconnected socket.
    """

    protocol: str
    local_address: ipaddress.IPv4Address | ipaddress.IPv6Address
    local_port: int
    remote_address: ipaddress.IPv4Address | ipaddress.IPv6Address
    remote_port: int

    def is_loopback_only(self) -> bool:
        """Tell whether the socket can carry traffic to this machine only.

        The local address must be a loopback address, and the remote address
        either loopback or unset. A listener on 0.0.0.0 or :: fails, because
        other hosts could reach it.
        """
        if not self.local_address.is_loopback:
            return False
        return self.remote_address.is_loopback or self.remote_address.is_unspecified


def socket_endpoints(pid: int) -> list[SocketEndpoint]:
    """Return the TCP and UDP sockets (IPv4 and IPv6) that process ``pid`` holds.

    Reads the inodes of the process's socket descriptors from ``/proc/PID/fd``
    and looks them up in ``/proc/PID/net/{tcp,tcp6,udp,udp6}``. Sockets of
    other families (unix, netlink) are left out. Needs the right to read the
    process's descriptors: root, or the same user.
    """
    inodes = _socket_inodes(pid)
    endpoints = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        table = Path(f"/proc/{pid}/net/{protocol}")
        for inode, endpoint in _parse_socket_table(table, protocol):
            if inode in inodes:
                endpoints.append(endpoint)
    return endpoints


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            # The descriptor was closed between listing and reading it.
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _parse_socket_table(
    table: Path, protocol: str
) -> Iterator[tuple[int, SocketEndpoint]]:
    lines = table.read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        local_address, local_port = _parse_proc_address(fields[1])
        remote_address, remote_port = _parse_proc_address(fields[2])
        endpoint = SocketEndpoint(
            protocol, local_address, local_port, remote_address, remote_port
        )
        yield int(fields[9]), endpoint


def _parse_proc_address(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """Parse ``HEXADDR:HEXPORT`` as written in ``/proc/net/tcp``.

    The kernel prints the address as 32-bit words in host byte order, so each
    word is converted back to network order before it is read as an address.
    """
    hex_address, hex_port = text.split(":")
    raw = bytes.fromhex(hex_address)
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    packed = b"".join(
        int.from_bytes(word, sys.byteorder).to_bytes(4, "big") for word in words
    )
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    address = ipaddress.ip_address(socket.inet_ntop(family, packed))
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d, which Python 3.11
    # does not count as loopback.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address, int(hex_port, 16)
