"""The gRPC servicer of ``containerd.services.diff.v1.Diff``, and its error codes.

This is the service edge: requests become :class:`~ipcs_fs.oci.descriptor.
Descriptor` and :class:`~ipcs_fs.service.mounts.Mount` values for the
:class:`Applier` and :class:`Comparer`, results become responses, and every
error becomes a gRPC status through :func:`status_of`, the one place where
the project's errors meet gRPC codes. containerd moves on to its next differ
only on UNIMPLEMENTED; any other code fails the unpack or diff.

Each call is logged with the layer digest and its duration: successes and
UNIMPLEMENTED at INFO, other errors at ERROR. :class:`CallCounters` counts
calls by outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any, NoReturn

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
from ..oci.descriptor import Descriptor
from .applier import Applier
from .comparer import Comparer
from .content import NAMESPACE_HEADER
from .mounts import Mount
from .protos import diff_grpc, diff_pb2, types_pb2

__all__ = ["CallCounters", "DiffServicer", "status_of"]

log = logging.getLogger(__name__)

_STATUS_CODES: tuple[tuple[type[IpcsError], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnimplementedError, grpc.StatusCode.UNIMPLEMENTED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DataLossError, grpc.StatusCode.DATA_LOSS),
)


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """Return the gRPC status code and message that report ``error`` to containerd.

    Each :class:`~ipcs_fs.errors.IpcsError` kind has the code of the same
    name; anything else is UNKNOWN, with the exception's type and message.
    """
    for kind, code in _STATUS_CODES:
        if isinstance(error, kind):
            return code, str(error)
    return grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"


class CallCounters:
    """Calls served, by method and outcome (``ok`` or a status code name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, method: str, outcome: str) -> None:
        """Count one call of ``method`` that ended with ``outcome``."""
        with self._lock:
            self._counts[method, outcome] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """Return a copy of the counts."""
        with self._lock:
            return dict(self._counts)


_GeneratedServicer: Any = diff_grpc.DiffServicer


class DiffServicer(_GeneratedServicer):
    """Serve Apply and Diff; calls run in the server's thread pool.

    ``namespace`` is used for Diff when a call carries no
    ``containerd-namespace`` header (containerd 1.7 builds that do not
    forward it).
    """

    def __init__(self, applier: Applier, comparer: Comparer, *, namespace: str) -> None:
        self._applier = applier
        self._comparer = comparer
        self._namespace = namespace
        self.counters = CallCounters()

    def Apply(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Apply the layer ``request.diff`` onto ``request.mounts``."""
        started = time.monotonic()
        digest = request.diff.digest
        log.info(
            "applying layer %s (%s) to %d mounts",
            digest,
            request.diff.media_type,
            len(request.mounts),
        )
        try:
            layer = descriptor_from_proto(request.diff)
            result = self._applier.apply(
                layer,
                mounts_from_proto(request.mounts),
                sync_fs=request.sync_fs,
                active=context.is_active,
            )
        except Exception as error:  # noqa: BLE001 (every error gets a status)
            self._fail(context, "Apply", f"apply layer {digest}", error, started)
        self.counters.add("Apply", "ok")
        stats = result.stats
        log.info(
            "applied layer %s (%s) via %s in %.2fs: %d entries, %d bytes, diff_id %s",
            digest,
            layer.media_type,
            result.write_path,
            time.monotonic() - started,
            stats.entries,
            stats.bytes_written,
            result.descriptor.digest,
        )
        return diff_pb2.ApplyResponse(applied=descriptor_to_proto(result.descriptor))

    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Record the changes from ``request.left`` to ``request.right``."""
        started = time.monotonic()
        namespace = _header(context, NAMESPACE_HEADER) or self._namespace
        try:
            result = self._comparer.compare(
                mounts_from_proto(request.left),
                mounts_from_proto(request.right),
                media_type=request.media_type,
                namespace=namespace,
                ref=request.ref,
                labels=dict(request.labels),
                source_date_epoch_ns=_epoch_ns(request),
                active=context.is_active,
            )
        except Exception as error:  # noqa: BLE001 (every error gets a status)
            action = f"compute diff {request.ref or '(no ref)'} as {request.media_type}"
            self._fail(context, "Diff", action, error, started)
        self.counters.add("Diff", "ok")
        log.info(
            "wrote diff %s as layer %s in namespace %s in %.2fs: %d changes"
            " (%s), diff_id %s",
            request.ref or "(no ref)",
            result.descriptor.digest,
            namespace,
            time.monotonic() - started,
            result.changes,
            "overlay upper" if result.overlay_upper else "compared trees",
            result.layer.diff_id,
        )
        return diff_pb2.DiffResponse(diff=descriptor_to_proto(result.descriptor))

    def _fail(
        self,
        context: grpc.ServicerContext,
        method: str,
        action: str,
        error: Exception,
        started: float,
    ) -> NoReturn:
        code, message = status_of(error)
        self.counters.add(method, code.name)
        seconds = time.monotonic() - started
        if code is grpc.StatusCode.UNIMPLEMENTED:
            log.info("declined to %s after %.2fs: %s", action, seconds, message)
        else:
            log.error(
                "failed to %s after %.2fs: %s: %s",
                action,
                seconds,
                code.name,
                message,
                exc_info=not isinstance(error, IpcsError),
            )
        context.abort(code, message)
        raise AssertionError("context.abort returned")  # abort always raises


def descriptor_from_proto(message: Any) -> Descriptor:
    """Build a descriptor from a ``containerd.types.Descriptor`` message.

    Raises InvalidArgumentError for a digest that is not ``sha256:HEX`` or a
    negative size.
    """
    if message.size < 0:
        raise InvalidArgumentError(
            f"invalid descriptor {message.digest}: negative size {message.size}"
        )
    return Descriptor(
        media_type=message.media_type,
        digest=Digest.parse(message.digest),
        size=message.size,
        annotations=dict(message.annotations),
    )


def descriptor_to_proto(descriptor: Descriptor) -> Any:
    """Build a ``containerd.types.Descriptor`` message from a descriptor."""
    return types_pb2.Descriptor(
        media_type=descriptor.media_type,
        digest=str(descriptor.digest),
        size=descriptor.size,
        annotations=dict(descriptor.annotations),
    )


def mounts_from_proto(messages: Any) -> list[Mount]:
    """Build mounts from ``containerd.types.Mount`` messages."""
    return [
        Mount(
            type=message.type,
            source=message.source,
            options=tuple(message.options),
            target=message.target,
        )
        for message in messages
    ]


def _header(context: grpc.ServicerContext, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return str(value)
    return ""


def _epoch_ns(request: Any) -> int | None:
    if not request.HasField("source_date_epoch"):
        return None
    epoch = request.source_date_epoch
    return epoch.seconds * 1_000_000_000 + epoch.nanos
