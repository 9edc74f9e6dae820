"""Read a stream ahead in a background thread.

Decompressing a layer (zlib, zstd) releases the GIL, so a thread that
decompresses the next pieces while the caller parses and hashes the current
one uses a second core. :class:`ReadAhead` does that with a bounded queue, so
memory stays at ``depth`` pieces whatever the stream's length.
"""

from __future__ import annotations

import queue
import threading
from typing import BinaryIO, Self

__all__ = ["ReadAhead"]

_PIECE_SIZE = 1 << 20
_DEPTH = 8


class ReadAhead:
    """A readable stream that reads ``stream`` ahead in pieces, in a thread.

    ``read`` and ``readinto`` return what the thread read, in order; an error
    the thread met is raised by the read that reaches it. :meth:`close` stops
    the thread and closes ``stream``. Use as a context manager.
    """

    def __init__(
        self, stream: BinaryIO, *, piece_size: int = _PIECE_SIZE, depth: int = _DEPTH
    ) -> None:
        self._stream = stream
        self._piece_size = piece_size
        self._pieces: queue.Queue = queue.Queue(maxsize=depth)
        self._current = memoryview(b"")
        self._ended = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, name="ipcs-fs-readahead", daemon=True
        )
        self._thread.start()

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes, all that is left when negative."""
        if size < 0:
            parts = []
            while self._fill():
                parts.append(bytes(self._current))
                self._current = memoryview(b"")
            return b"".join(parts)
        if not self._fill():
            return b""
        view = self._current[:size]
        self._current = self._current[len(view) :]
        piece = view.obj
        if type(piece) is bytes and len(piece) == len(view):
            # A whole piece goes out as it came in, without a copy.
            return piece
        return bytes(view)

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` with up to its length of bytes; 0 at the end."""
        if not self._fill():
            return 0
        count = min(len(buffer), len(self._current))
        memoryview(buffer)[:count] = self._current[:count]
        self._current = self._current[count:]
        return count

    def close(self) -> None:
        """Stop the thread and close the underlying stream."""
        self._stopping.set()
        while self._thread.is_alive():
            self._drain_queue()
            self._thread.join(timeout=0.05)
        self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fill(self) -> bool:
        """Make the current piece non-empty; False at the end of the stream."""
        while not self._current:
            if self._ended:
                return False
            piece = self._pieces.get()
            if isinstance(piece, Exception):
                self._ended = True
                raise piece
            if not piece:
                self._ended = True
                return False
            self._current = memoryview(piece)
        return True

    def _produce(self) -> None:
        try:
            while not self._stopping.is_set():
                piece = self._stream.read(self._piece_size)
                self._put(piece)
                if not piece:
                    return
        except Exception as error:  # noqa: BLE001 (the reader raises it)
            self._put(error)

    def _put(self, item) -> None:
        while not self._stopping.is_set():
            try:
                self._pieces.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drain_queue(self) -> None:
        try:
            while True:
                self._pieces.get_nowait()
        except queue.Empty:
            pass
