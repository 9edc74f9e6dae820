"""Frame boundaries of a zstd stream, found from its headers alone.

A zstd stream (RFC 8878) is a sequence of *frames*. A data frame is a header,
*blocks* (each with a 3-byte header that gives its type and size) and an
optional 4-byte checksum. A *skippable frame* is a magic number ``0x184D2A5?``,
a 4-byte length and that many bytes of data that decoders ignore.

python-zstandard's stream reader returns the bytes decoded so far, without an
error, when its input ends inside a frame. :class:`ZstdFrameTracker` parses the
same input and reports whether it ended exactly after a frame, so a truncated
layer raises an error instead of decoding short.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError

__all__ = ["ZstdFrameTracker", "is_skippable_frame"]

_ZSTD_FRAME_MAGIC = 0xFD2FB528
_SKIPPABLE_MAGIC = 0x184D2A50
_SKIPPABLE_MASK = 0xFFFFFFF0
_DICTIONARY_ID_SIZES = (0, 1, 2, 4)
_CONTENT_SIZE_SIZES = (0, 2, 4, 8)  # flag 0 means 1 byte with Single_Segment set
_RLE_BLOCK = 1
_RESERVED_BLOCK = 3


class ZstdFrameTracker:
    """Follows zstd frame and block headers to tell where frames end.

    Only the headers are parsed; block contents are skipped by their size.
    ``frames`` counts complete data frames, ``skippable_frames`` skippable ones.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.skippable_frames = 0
        self._state = "magic"
        self._need = 4
        self._pending = bytearray()
        self._skip = 0
        self._has_checksum = False
        self._ends_after_skip = False

    def at_boundary(self) -> bool:
        """Tell whether the bytes fed so far end exactly after a frame."""
        return self._state == "magic" and not self._pending and not self._skip

    def feed(self, data: bytes) -> None:
        """Advance over ``data``; InvalidArgumentError on an invalid header."""
        view = memoryview(data)
        position = 0
        while position < len(view):
            if self._skip:
                step = min(self._skip, len(view) - position)
                self._skip -= step
                position += step
                if not self._skip and self._ends_after_skip:
                    self._ends_after_skip = False
                    self._end_frame()
                continue
            step = min(self._need - len(self._pending), len(view) - position)
            self._pending += view[position : position + step]
            position += step
            if len(self._pending) == self._need:
                header = bytes(self._pending)
                self._pending.clear()
                getattr(self, f"_on_{self._state}")(header)

    def _expect(self, state: str, size: int) -> None:
        self._state = state
        self._need = size

    def _on_magic(self, header: bytes) -> None:
        magic = int.from_bytes(header, "little")
        if magic == _ZSTD_FRAME_MAGIC:
            self._expect("descriptor", 1)
        elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
            self._expect("skippable_size", 4)
        else:
            raise InvalidArgumentError(
                f"failed to decompress zstd layer: invalid frame magic 0x{magic:08x}"
                f" after frame {self.frames}"
            )

    def _on_skippable_size(self, header: bytes) -> None:
        self._skip = int.from_bytes(header, "little")
        self.skippable_frames += 1
        self._expect("magic", 4)

    def _on_descriptor(self, header: bytes) -> None:
        descriptor = header[0]
        single_segment = bool(descriptor & 0x20)
        self._has_checksum = bool(descriptor & 0x04)
        content_size_flag = descriptor >> 6
        size = _DICTIONARY_ID_SIZES[descriptor & 0x03] + (0 if single_segment else 1)
        if content_size_flag == 0 and single_segment:
            size += 1
        else:
            size += _CONTENT_SIZE_SIZES[content_size_flag]
        if size:
            self._expect("header_rest", size)
        else:
            self._expect("block", 3)

    def _on_header_rest(self, header: bytes) -> None:
        self._expect("block", 3)

    def _on_block(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        block_type = (value >> 1) & 0x03
        if block_type == _RESERVED_BLOCK:
            raise InvalidArgumentError(
                f"failed to decompress zstd layer: reserved block type in frame"
                f" {self.frames + 1}"
            )
        self._skip = 1 if block_type == _RLE_BLOCK else value >> 3
        if not value & 0x01:
            self._expect("block", 3)
        elif self._has_checksum:
            self._expect("checksum", 4)
        elif self._skip:
            # The frame ends with the last block's contents, so that a stream
            # cut inside them is reported inside this frame.
            self._ends_after_skip = True
            self._expect("magic", 4)
        else:
            self._end_frame()

    def _on_checksum(self, header: bytes) -> None:
        self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._expect("magic", 4)


def is_skippable_frame(prefix: bytes) -> bool:
    """Tell whether ``prefix`` starts with the magic number of a skippable frame."""
    if len(prefix) < 4:
        return False
    magic = int.from_bytes(prefix[:4], "little")
    return magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC
