"""A small PNG decoder for checking screenshots, on zlib alone.

It reads what Chromium writes for a screenshot: 8-bit RGB or RGBA, not
interlaced, and undoes the five per-row filters of the PNG specification
(none, sub, up, average, Paeth). Anything else raises ValueError.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass

__all__ = ["Image", "decode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at bit depth 8


@dataclass(frozen=True)
class Image:
    """Decoded pixels: ``rows[y]`` holds ``width`` RGB triples as bytes."""

    width: int
    height: int
    rows: list[bytes]

    def colors(self) -> Counter[tuple[int, int, int]]:
        """Count the pixels of each RGB colour."""
        counts: Counter[tuple[int, int, int]] = Counter()
        for row in self.rows:
            counts.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
        return counts


def decode_png(data: bytes) -> Image:
    """Decode ``data``; raise ValueError for a PNG this decoder does not read."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    header, compressed = _chunks(data[len(_SIGNATURE) :])
    width, height, depth, color_type, _, _, interlace = struct.unpack(
        ">IIBBBBB", header
    )
    if depth != 8 or color_type not in _CHANNELS or interlace:
        raise ValueError(
            f"unsupported PNG: depth {depth}, colour type {color_type},"
            f" interlace {interlace}"
        )
    channels = _CHANNELS[color_type]
    raw = zlib.decompress(compressed)
    rows = _unfilter(raw, width * channels, height, channels)
    rgb = [_drop_alpha(row, channels) for row in rows]
    return Image(width, height, rgb)


def _chunks(data: bytes) -> tuple[bytes, bytes]:
    header = b""
    idat = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    return header, b"".join(idat)


def _unfilter(raw: bytes, stride: int, height: int, channels: int) -> list[bytes]:
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        row = bytearray(raw[start + 1 : start + 1 + stride])
        _undo_filter(kind, row, previous, channels)
        rows.append(bytes(row))
        previous = row
    return rows


def _undo_filter(kind: int, row: bytearray, above: bytearray, channels: int) -> None:
    if kind == 0:
        return
    for index in range(len(row)):
        left = row[index - channels] if index >= channels else 0
        up = above[index]
        corner = above[index - channels] if index >= channels else 0
        if kind == 1:
            predicted = left
        elif kind == 2:
            predicted = up
        elif kind == 3:
            predicted = (left + up) // 2
        elif kind == 4:
            predicted = _paeth(left, up, corner)
        else:
            raise ValueError(f"unknown PNG filter {kind}")
        row[index] = (row[index] + predicted) & 0xFF


def _paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    if distances[1] <= distances[2]:
        return up
    return corner


def _drop_alpha(row: bytes, channels: int) -> bytes:
    if channels == 3:
        return row
    pixels = bytearray()
    for index in range(0, len(row), 4):
        pixels += row[index : index + 3]
    return bytes(pixels)
