"""The HTTP side of the kubo store: clients, requests and their errors.

kubo's RPC takes POST requests under ``/api/v0/``. ``ipfshttpclient`` 0.7.0
makes them, but its ``connect()`` rejects daemons newer than 0.8, so a
:class:`ipfshttpclient.Client` is built directly, one per thread, because
each has a ``requests`` session, whose connection pool is not meant to be
shared across threads. Parameters that the library does not know, such as
``cid-codec``, go through ``opts``.

Failures are translated here, in one place: a daemon that cannot be reached
or breaks the protocol becomes :class:`~ipcs_fs.errors.UnavailableError`
naming the API address; an error message from the daemon becomes
:class:`KuboRejection`, which the store turns into the error that fits the
call (a block not found, a fetch that timed out). The texts matched below are
those of kubo 0.43.1.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Generator, Mapping
from typing import Any

import ipfshttpclient  # type: ignore[import-untyped]
import requests
import urllib3
from ipfshttpclient import exceptions as client_errors

from ..errors import InvalidArgumentError, UnavailableError

__all__ = ["KuboRejection", "KuboRpc"]

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0

# ipfshttpclient 0.7.0 hands urllib3 a `strict` argument, which urllib3 2.x
# ignores and warns about for every new connection pool.
warnings.filterwarnings(
    "ignore",
    message="The 'strict' parameter is no longer needed",
    category=FutureWarning,
)

# Substrings of kubo's error messages.
_NOT_FOUND_TEXTS = ("not found locally", "could not find", "not found")
_DEADLINE_TEXT = "context deadline exceeded"
_NOT_PINNED_TEXT = "not pinned"


class KuboRejection(Exception):
    """kubo responded to a request with an error message (HTTP 500 and JSON)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def not_found(self) -> bool:
        """True when kubo does not hold the block and was not allowed to fetch it."""
        return any(text in self.message for text in _NOT_FOUND_TEXTS)

    @property
    def timed_out(self) -> bool:
        """True when kubo gave up at the ``timeout`` the request set."""
        return _DEADLINE_TEXT in self.message

    @property
    def not_pinned(self) -> bool:
        return _NOT_PINNED_TEXT in self.message


class KuboRpc:
    """Requests to the kubo daemon whose RPC API listens at multiaddr ``api``.

    ``timeout`` bounds, in seconds, each wait for response bytes, unless a
    call sets its own. Safe to use from several threads.
    """

    def __init__(self, api: str, *, timeout: float) -> None:
        self.api = api
        self._timeout = timeout
        self._local = threading.local()
        self._clients: list[ipfshttpclient.Client] = []
        self._lock = threading.Lock()
        self._client()  # a malformed address fails here, not at first use

    def request(
        self,
        path: str,
        *args: str,
        action: str,
        opts: Mapping[str, str] | None = None,
        offline: bool = False,
        decoder: str = "none",
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """POST ``/api/v0/PATH`` and return the whole decoded response.

        ``action`` names what the call does ("get block X"), for errors. Raises
        KuboRejection for an error from kubo and UnavailableError when the
        daemon cannot be reached, breaks the protocol or does not answer in
        time.
        """
        try:
            return self._client()._client.request(
                path,
                args,
                opts=opts or {},
                offline=offline,
                decoder=decoder,
                data=data,
                headers=headers,
                timeout=self._timeouts(timeout),
            )
        except (client_errors.Error, requests.RequestException) as error:
            raise self._translate(error, action) from error

    def stream(
        self,
        path: str,
        *args: str,
        action: str,
        opts: Mapping[str, str] | None = None,
        offline: bool = False,
        decoder: str = "none",
        timeout: float | None = None,
    ) -> Generator[Any, None, None]:
        """POST ``/api/v0/PATH`` and yield the response as it arrives.

        With ``decoder="json"`` each item is one decoded object, else a chunk
        of bytes. ``timeout`` bounds each wait for more bytes, so a daemon that
        stalls mid-stream raises UnavailableError instead of hanging. The
        request is closed when the caller stops iterating.
        """
        try:
            response = self._client()._client.request(
                path,
                args,
                opts=opts or {},
                offline=offline,
                decoder=decoder,
                stream=True,
                timeout=self._timeouts(timeout),
            )
        except (client_errors.Error, requests.RequestException) as error:
            raise self._translate(error, action) from error
        with response:
            try:
                yield from response
            except (client_errors.Error, requests.RequestException) as error:
                raise self._translate(error, action) from error

    def close(self) -> None:
        """Close every thread's HTTP session."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def _client(self) -> ipfshttpclient.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            try:
                client = ipfshttpclient.Client(self.api, session=True)
            except client_errors.AddressError as error:
                raise InvalidArgumentError(
                    f"invalid kubo API address {self.api!r}: expected a multiaddr"
                    " such as /ip4/127.0.0.1/tcp/5001"
                ) from error
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _timeouts(self, timeout: float | None) -> tuple[float, float]:
        return (_CONNECT_TIMEOUT, self._timeout if timeout is None else timeout)

    def _translate(self, error: Exception, action: str) -> Exception:
        if isinstance(error, client_errors.ErrorResponse):
            return KuboRejection(str(error.args[0]) if error.args else str(error))
        if _is_timeout(error):
            cause = "it did not answer in time"
        elif isinstance(
            error, client_errors.ConnectionError | requests.ConnectionError
        ):
            cause = f"cannot connect ({_innermost(error)}); is `ipfs daemon` running?"
        else:
            cause = str(error)
        log.debug("kubo request to %s failed: %s", self.api, error)
        return UnavailableError(f"failed to {action}: kubo at {self.api}: {cause}")


def _is_timeout(error: BaseException) -> bool:
    # requests reports a read timeout inside a streamed body as a
    # ConnectionError that wraps urllib3's ReadTimeoutError. urllib3's
    # NewConnectionError (connection refused) subclasses its TimeoutError.
    chain = _chain(error)
    if any(isinstance(item, urllib3.exceptions.NewConnectionError) for item in chain):
        return False
    timeouts = (
        client_errors.TimeoutError,
        requests.Timeout,
        urllib3.exceptions.TimeoutError,
        TimeoutError,
    )
    return any(isinstance(item, timeouts) for item in chain)


def _chain(error: BaseException) -> list[BaseException]:
    """Return ``error`` and every exception it wraps, as cause, context or
    argument."""
    found: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseException) and item not in found:
            found.append(item)
            pending.extend((item.__cause__, item.__context__, *item.args))
    return found


def _innermost(error: BaseException) -> str:
    """Return the operating system's message for a failed connection, if any."""
    for item in _chain(error):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.lower()
    return str(error) or type(error).__name__
