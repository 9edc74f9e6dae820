"""Fixtures of the plugin's unit tests: an in-process plugin and a fake containerd.

:class:`FakeContainerd` serves the two containerd services the plugin calls
(content ``Write`` and leases ``Create``/``Delete``) on a unix socket and
records every request, so a test can check what the plugin sent. Its
``Write`` follows containerd 1.7's server: it answers each request and sends
its last response once more when it ends after COMMIT.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from ipcs_fs.service.config import ServeConfig
from ipcs_fs.service.protos import content_grpc, content_pb2, leases_grpc, leases_pb2
from ipcs_fs.service.server import Plugin


@dataclass
class FakeContainerd:
    """Recorded calls of the fake content and leases services."""

    address: str
    content_dir: Path
    events: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    writes: list[object] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, detail: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.events.append((name, detail, dict(context.invocation_metadata())))


class _Leases(leases_grpc.LeasesServicer):
    def __init__(self, fake: FakeContainerd) -> None:
        self.fake = fake
        self.count = 0

    def Create(self, request, context):
        self.count += 1
        lease_id = f"lease-{self.count}"
        expire = request.labels["containerd.io/gc.expire"]
        self.fake.record("lease-create", f"{lease_id} {expire}", context)
        return leases_pb2.CreateResponse(lease=leases_pb2.Lease(id=lease_id))

    def Delete(self, request, context):
        self.fake.record("lease-delete", request.id, context)
        return empty_pb2.Empty()


class _Content(content_grpc.ContentServicer):
    def __init__(self, fake: FakeContainerd) -> None:
        self.fake = fake

    def Write(self, request_iterator, context):
        data = b""
        last = None
        for request in request_iterator:
            self.fake.writes.append(request)
            data += request.data
            last = content_pb2.WriteContentResponse(
                action=request.action,
                offset=len(data),
                digest="sha256:" + hashlib.sha256(data).hexdigest(),
            )
            if request.action == content_pb2.COMMIT:
                self._commit(request, data, context)
                yield last
                break
            yield last
        yield last

    def _commit(self, request, data: bytes, context) -> None:
        if request.expected != "sha256:" + hashlib.sha256(data).hexdigest():
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "digest mismatch")
        self.fake.content_dir.mkdir(parents=True, exist_ok=True)
        (self.fake.content_dir / request.expected.split(":")[1]).write_bytes(data)
        self.fake.record("commit", request.expected, context)


@pytest.fixture
def fake_containerd(tmp_path: Path) -> Iterator[FakeContainerd]:
    """A fake containerd content and leases service on a unix socket."""
    root = tmp_path / "containerd"
    socket = tmp_path / "containerd.sock"
    fake = FakeContainerd(
        f"unix://{socket}",
        root / "io.containerd.content.v1.content/blobs/sha256",
    )
    fake.content_dir.mkdir(parents=True)
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    content_grpc.add_ContentServicer_to_server(_Content(fake), server)
    leases_grpc.add_LeasesServicer_to_server(_Leases(fake), server)
    server.add_insecure_port(fake.address)
    server.start()
    yield fake
    server.stop(None).wait()


@pytest.fixture
def plugin(tmp_path: Path, fake_containerd: FakeContainerd) -> Iterator[Plugin]:
    """A started in-process plugin whose containerd is ``fake_containerd``."""
    config = ServeConfig(
        address=f"unix://{tmp_path / 'run' / 'diff.sock'}",
        store=tmp_path / "store",
        containerd_root=fake_containerd.content_dir.parents[2],
        containerd_address=fake_containerd.address,
        namespace="configured",
        stop_timeout=1.0,
    )
    started = Plugin(config)
    started.start()
    yield started
    started.stop()
