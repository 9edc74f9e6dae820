"""Write blobs into containerd's content store through its gRPC services.

The Comparer stores each new layer's root block as a blob in containerd's
content store. A proxy plugin does not receive the caller's lease (neither
upstream containerd nor Debian's 1.7.24 build forwards ``containerd-lease``),
and content written outside any lease may be removed by the garbage collector
before it is committed. So :meth:`ContentWriter.write_blob` creates a lease
of its own, writes and commits under it, and deletes the lease afterwards.
The lease also carries ``containerd.io/gc.expire``, so that a plugin killed
in between leaves nothing that lives forever.

Every call names a namespace in the ``containerd-namespace`` header.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc  # type: ignore[import-untyped]

from ..errors import (
    AlreadyExistsError,
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    IpcsError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
)
from ..ids import Digest
from .protos import content_grpc, content_pb2, leases_grpc, leases_pb2

__all__ = [
    "GC_EXPIRE_LABEL",
    "NAMESPACE_HEADER",
    "ContentWriter",
    "channel_target",
    "error_from_grpc",
]

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
GC_EXPIRE_LABEL = "containerd.io/gc.expire"
_LEASE_LIFETIME = timedelta(hours=1)
_CALL_TIMEOUT = 60.0

_ERRORS: dict[grpc.StatusCode, type[IpcsError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
}


def channel_target(address: str) -> str:
    """Return the gRPC target of a ``unix://PATH`` address or a bare socket path."""
    return address if "://" in address else f"unix://{address}"


def error_from_grpc(error: grpc.RpcError, action: str) -> IpcsError:
    """Translate a failed call to containerd into the project's error kinds."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    kind = _ERRORS.get(code, FailedPreconditionError)
    return kind(f"failed to {action}: containerd returned {code.name}: {details}")


class ContentWriter:
    """Write blobs through containerd's content and leases services.

    ``address`` is containerd's socket (``unix://PATH``). The channel connects
    lazily, so creating a writer never waits for containerd. gRPC channels
    are thread-safe, so one writer serves every call of the plugin.
    """

    def __init__(self, address: str, *, timeout: float = _CALL_TIMEOUT) -> None:
        self.address = address
        self._timeout = timeout
        self._channel = grpc.insecure_channel(channel_target(address))
        self._content = content_grpc.ContentStub(self._channel)
        self._leases = leases_grpc.LeasesStub(self._channel)

    def close(self) -> None:
        """Close the channel to containerd."""
        self._channel.close()

    def write_blob(
        self,
        data: bytes,
        digest: Digest,
        *,
        namespace: str,
        labels: Mapping[str, str],
        ref: str = "",
    ) -> None:
        """Store ``data`` as blob ``digest`` in ``namespace`` with ``labels``.

        ``ref`` names the upload in the content store (a new one when empty).
        A blob that the namespace contains already is left as it is. Raises
        UnavailableError when containerd cannot be reached and the kind that
        matches containerd's status code otherwise.
        """
        lease = self._create_lease(namespace)
        try:
            self._write(data, digest, namespace, lease, labels, ref)
        finally:
            self._delete_lease(namespace, lease)

    def _create_lease(self, namespace: str) -> str:
        expire = datetime.now(UTC) + _LEASE_LIFETIME
        request = leases_pb2.CreateRequest(
            labels={GC_EXPIRE_LABEL: expire.isoformat(timespec="seconds")}
        )
        try:
            response = self._leases.Create(
                request, metadata=_headers(namespace), timeout=self._timeout
            )
        except grpc.RpcError as error:
            raise error_from_grpc(error, f"create a lease in {namespace}") from error
        return response.lease.id

    def _delete_lease(self, namespace: str, lease: str) -> None:
        try:
            self._leases.Delete(
                leases_pb2.DeleteRequest(id=lease),
                metadata=_headers(namespace),
                timeout=self._timeout,
            )
        except grpc.RpcError as error:
            # The lease expires by its gc.expire label anyway.
            log.warning("failed to delete lease %s in %s: %s", lease, namespace, error)

    def _write(
        self,
        data: bytes,
        digest: Digest,
        namespace: str,
        lease: str,
        labels: Mapping[str, str],
        ref: str,
    ) -> None:
        request = content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT,
            ref=ref or _new_ref(),
            total=len(data),
            expected=str(digest),
            offset=0,
            data=data,
            labels=dict(labels),
        )
        headers = (*_headers(namespace), (LEASE_HEADER, lease))
        try:
            responses = self._content.Write(
                iter([request]), metadata=headers, timeout=self._timeout
            )
            _check_commit(responses, digest)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and (
                error.code() is grpc.StatusCode.ALREADY_EXISTS
            ):
                log.debug("blob %s exists in %s already", digest, namespace)
                return
            raise error_from_grpc(error, f"write blob {digest}") from error


def _check_commit(responses: Iterator[Any], digest: Digest) -> None:
    # The server replies to the COMMIT, then sends its last message once more
    # as it closes the stream. Reading to the end lets the call complete.
    committed = [response.digest for response in responses]
    if str(digest) not in committed:
        raise DataLossError(
            f"failed to write blob {digest}: containerd committed {committed}"
        )


def _headers(namespace: str) -> tuple[tuple[str, str], ...]:
    return ((NAMESPACE_HEADER, namespace),)


def _new_ref() -> str:
    return f"ipcs-fs-diff-{time.time_ns()}-{secrets.token_hex(4)}"
