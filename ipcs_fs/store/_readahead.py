"""Serve a depth-first walk of a DAG from one export stream.

Reading a layer walks its DAG depth first, in link order, which is the order
in which ``dag/export`` streams the blocks. So after a walk reads a node, one
export of the DAG under that node can serve the walk's next reads, instead
of one request per block.

Terms:

stream
    The blocks of one export, in order, each once, checked against their
    CIDs by the CAR reader.
window
    Blocks read from the stream ahead of the walk and not yet taken. A read
    that is not among them reads further, until the window is full; then the
    walk has left the stream's order, so the stream is dropped and the next
    node read starts another.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator

from ..errors import IpcsError
from ..ids import Cid

__all__ = ["ReadAhead"]

log = logging.getLogger(__name__)

Export = Callable[[Cid], Iterator[tuple[Cid, bytes]]]

WINDOW_BLOCKS = 32
WINDOW_BYTES = 8 * 1024 * 1024


class ReadAhead:
    """Read-ahead for one thread's walk; not thread-safe.

    ``export(cid)`` returns the stream of the DAG under ``cid``, ``cid``
    first. :meth:`take` returns a block from the stream or None, and
    :meth:`follow` starts a stream after the caller read a node directly.
    """

    def __init__(self, export: Export) -> None:
        self._export = export
        self._stream: Iterator[tuple[Cid, bytes]] | None = None
        self._window: OrderedDict[Cid, bytes] = OrderedDict()
        self._window_bytes = 0
        self._streamed: set[Cid] = set()

    @property
    def active(self) -> bool:
        return self._stream is not None

    def take(self, cid: Cid) -> bytes | None:
        """Return the block ``cid`` if the stream has it or brings it within
        the window, else None (and drop the stream if it passed the window)."""
        block = self._window.pop(cid, None)
        if block is not None:
            self._window_bytes -= len(block)
            return block
        if self._stream is None or cid in self._streamed:
            # Streamed before and taken: a block the walk reads twice.
            return None
        return self._read_until(cid)

    def follow(self, cid: Cid) -> None:
        """Start a stream of the DAG under ``cid`` unless one is running."""
        if self._stream is not None:
            return
        self._forget_window()
        self._stream = self._export(cid)
        self._streamed = {cid}
        # The stream starts with ``cid`` itself, which the caller has.
        self._next()

    def close(self) -> None:
        """Stop the stream and forget the window."""
        self._end_stream()
        self._forget_window()

    def _read_until(self, target: Cid) -> bytes | None:
        while len(self._window) < WINDOW_BLOCKS and self._window_bytes < WINDOW_BYTES:
            item = self._next()
            if item is None:
                return None
            cid, block = item
            if cid == target:
                return block
            self._window[cid] = block
            self._window_bytes += len(block)
        log.debug("read %s outside the window of the stream; dropping it", target)
        self.close()
        return None

    def _next(self) -> tuple[Cid, bytes] | None:
        assert self._stream is not None
        try:
            item = next(self._stream, None)
        except IpcsError as error:
            # A stream that breaks only costs the read-ahead; reads go direct.
            log.debug("read-ahead stream ended early: %s", error)
            item = None
        if item is None:
            # The window stays: the walk may still take what it holds.
            self._end_stream()
            return None
        self._streamed.add(item[0])
        return item

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        close = getattr(stream, "close", None)
        if close is not None:
            close()

    def _forget_window(self) -> None:
        self._window.clear()
        self._window_bytes = 0
        self._streamed = set()
