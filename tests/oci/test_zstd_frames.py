import struct

import pytest
import zstandard

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.oci.zstd_frames import ZstdFrameTracker, is_skippable_frame

DATA = bytes(range(256)) * 2000  # 512000 bytes: several 128 KiB blocks
# A frame of one RLE block, "x" five times: magic, a single-segment header with
# a 1-byte content size, block header (last, type 1, size 5), the byte.
RLE_FRAME = bytes.fromhex("28b52ffd20052b0000") + b"x"


def _skippable(nibble: int, payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A50 | nibble, len(payload)) + payload


def _frames() -> list[bytes]:
    plain = zstandard.ZstdCompressor(write_checksum=False)
    checked = zstandard.ZstdCompressor(write_checksum=True)
    streamed = checked.compressobj()
    return [
        plain.compress(DATA),  # single segment with content size
        checked.compress(b""),  # one empty block
        streamed.compress(DATA) + streamed.flush(),  # no content size
        RLE_FRAME,
    ]


def _track(data: bytes, piece: int) -> ZstdFrameTracker:
    tracker = ZstdFrameTracker()
    for start in range(0, len(data), piece):
        tracker.feed(data[start : start + piece])
    return tracker


def test_rle_frame_is_valid_zstd():
    assert zstandard.ZstdDecompressor().decompress(RLE_FRAME) == b"xxxxx"


@pytest.mark.parametrize("piece", [1, 3, 4096, 1 << 20])
def test_counts_frames_fed_in_pieces(piece):
    data = _skippable(0, b"head") + b"".join(_frames()) + _skippable(15, b"")

    tracker = _track(data, piece)

    assert tracker.frames == 4
    assert tracker.skippable_frames == 2
    assert tracker.at_boundary()


def test_every_frame_prefix_is_inside_a_frame():
    frame = _frames()[0]

    for end in range(1, len(frame)):
        assert not _track(frame[:end], 1 << 20).at_boundary(), end


def test_boundary_after_each_frame():
    tracker = ZstdFrameTracker()

    for count, frame in enumerate(_frames(), start=1):
        tracker.feed(frame)
        assert tracker.at_boundary()
        assert tracker.frames == count


def test_invalid_magic_rejected():
    tracker = ZstdFrameTracker()

    with pytest.raises(InvalidArgumentError) as caught:
        tracker.feed(_frames()[1] + b"\x00\x01\x02\x03")

    assert str(caught.value) == (
        "failed to decompress zstd layer: invalid frame magic 0x03020100 after frame 1"
    )


def test_reserved_block_type_rejected():
    frame = bytearray(_frames()[1])
    header_end = len(frame) - 4 - 3  # the checksum follows the one block
    frame[header_end] |= 0b110  # block type 3

    with pytest.raises(InvalidArgumentError, match="reserved block type in frame 1"):
        ZstdFrameTracker().feed(bytes(frame))


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (bytes.fromhex("502a4d18"), True),
        (bytes.fromhex("5f2a4d18"), True),
        (bytes.fromhex("602a4d18"), False),
        (bytes.fromhex("28b52ffd"), False),
        (b"\x50\x2a\x4d", False),
    ],
)
def test_is_skippable_frame(prefix, expected):
    assert is_skippable_frame(prefix) is expected
