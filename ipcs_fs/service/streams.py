"""A stream wrapper that stops a long read when its gRPC call ends.

Applying or recording a layer runs in a server thread that gRPC cannot
interrupt. Every read of the layer's tar goes through
:class:`CancellableStream`, which raises once the call is no longer active
(containerd cancelled it, its deadline passed, or the server is stopping and
its grace period is over), so the thread ends within one read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import UnavailableError

__all__ = ["CallCancelledError", "CancellableStream"]


class CallCancelledError(UnavailableError):
    """The gRPC call ended before the work did."""


class _Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview) -> int: ...

    def close(self) -> None: ...


class CancellableStream:
    """Pass reads through to ``stream`` while ``active()`` returns true.

    Raises CallCancelledError naming ``what`` on the first read after the
    call ended.
    """

    def __init__(
        self, stream: _Readable, active: Callable[[], bool], *, what: str
    ) -> None:
        self._stream = stream
        self._active = active
        self._action = what

    def read(self, size: int = -1) -> bytes:
        self._check()
        return self._stream.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        self._check()
        return self._stream.readinto(buffer)

    def close(self) -> None:
        self._stream.close()

    def _check(self) -> None:
        if not self._active():
            raise CallCancelledError(
                f"failed to {self._action}: the call was cancelled or the plugin"
                " is stopping"
            )
