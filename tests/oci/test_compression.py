import gzip
import hashlib
import io
import logging
import random
import struct
import zlib

import pytest
import zstandard

from ipcs_fs.errors import InvalidArgumentError, UnimplementedError
from ipcs_fs.oci import compression
from ipcs_fs.oci.compression import (
    gzip_compress_chunks,
    gzip_compress_stream,
    open_uncompressed,
)
from ipcs_fs.oci.mediatypes import (
    DOCKER_LAYER,
    IPCS_FS_LAYER,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Compression,
)


def _payload(size: int, seed: int) -> bytes:
    """Half-compressible bytes: random words from a small vocabulary."""
    rng = random.Random(seed)
    words = [bytes(rng.randrange(256) for _ in range(8)) for _ in range(512)]
    return b"".join(rng.choice(words) for _ in range(size // 8))


PARTS = [_payload(300_000, 1), _payload(1_500_000, 2), _payload(4_000, 3)]
WHOLE = b"".join(PARTS)


def _skippable(nibble: int, payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A50 | nibble, len(payload)) + payload


def _read_all(data: bytes, media_type=None, size=None) -> bytes:
    with open_uncompressed(io.BytesIO(data), media_type) as stream:
        if size is None:
            return stream.read()
        out = bytearray()
        buffer = bytearray(size)
        while count := stream.readinto(buffer):
            out += buffer[:count]
        return bytes(out)


def test_gzip_three_members():
    data = b"".join(gzip.compress(part, mtime=0) for part in PARTS)

    with open_uncompressed(io.BytesIO(data), OCI_LAYER_GZIP) as stream:
        assert stream.compression is Compression.GZIP
        assert stream.read() == WHOLE


@pytest.mark.parametrize("size", [1, 511, 65536, 1 << 20, 3 << 20])
def test_gzip_three_members_readinto(size):
    data = b"".join(gzip.compress(part, mtime=0) for part in PARTS)

    assert _read_all(data, size=size) == WHOLE


def test_gzip_member_ending_after_output_limit():
    # The first member inflates to more than one read, and the call that ends
    # it starts from input that zlib held back as unconsumed_tail.
    data = gzip.compress(b"\0" * (3 << 20) + b"end", mtime=0) + gzip.compress(b"2nd")

    assert _read_all(data) == b"\0" * (3 << 20) + b"end2nd"


@pytest.mark.parametrize("size", [777, 4096])
def test_gzip_output_limit_at_end_of_blob(size):
    # 3 KB of deflate data inflate to 3 MiB, so thousands of reads stop at the
    # output limit before the member and the blob end together.
    data = b"\0" * (3 << 20) + b"end"

    assert _read_all(gzip.compress(data, mtime=0), size=size) == data


def test_gzip_zero_padding_skipped():
    members = [gzip.compress(part, mtime=0) for part in PARTS]
    data = members[0] + b"\0" * 10 + members[1] + members[2] + b"\0" * 1000

    assert _read_all(data) == WHOLE


def test_gzip_empty_member_between():
    data = gzip.compress(PARTS[0]) + gzip.compress(b"") + gzip.compress(PARTS[1])

    assert _read_all(data) == PARTS[0] + PARTS[1]


def test_gzip_truncated_raises():
    data = gzip.compress(PARTS[0]) + gzip.compress(PARTS[1])[:-5]

    with pytest.raises(InvalidArgumentError) as caught:
        _read_all(data)

    assert str(caught.value) == (
        "failed to decompress gzip layer at member 2:"
        " truncated: the stream ends inside a member"
    )


def test_gzip_garbage_after_member_raises():
    data = gzip.compress(PARTS[0]) + b"GARBAGE!"

    with pytest.raises(InvalidArgumentError, match="at member 2: invalid data"):
        _read_all(data)


def test_gzip_short_garbage_after_member_raises_at_once():
    # Eight bytes are fewer than a gzip header, but the error must name the
    # wrong magic, not a truncated member.
    data = gzip.compress(PARTS[0]) + b"GARBAGE!"

    with pytest.raises(InvalidArgumentError) as caught:
        _read_all(data)

    assert str(caught.value) == (
        "failed to decompress gzip layer at member 2: invalid data:"
        " Error -3 while decompressing data: incorrect header check"
    )


@pytest.mark.parametrize("flags", [0x20, 0x40, 0x80])
def test_gzip_reserved_header_flags_raise(flags):
    member = bytearray(gzip.compress(PARTS[2], mtime=0))
    member[3] |= flags

    with pytest.raises(InvalidArgumentError) as caught:
        _read_all(gzip.compress(PARTS[0]) + bytes(member))

    assert str(caught.value) == (
        "failed to decompress gzip layer at member 2: invalid data:"
        " Error -3 while decompressing data: unknown header flags set"
    )


def test_gzip_unknown_method_raises():
    member = bytearray(gzip.compress(PARTS[2], mtime=0))
    member[2] = 7

    with pytest.raises(InvalidArgumentError) as caught:
        _read_all(bytes(member))

    assert str(caught.value) == (
        "failed to decompress gzip layer at member 1: invalid data:"
        " Error -3 while decompressing data: unknown compression method"
    )


@pytest.mark.parametrize("split", [1, 2, 3])
def test_gzip_member_header_across_reads(split):
    # Zero padding puts the second member's first bytes at the end of the
    # first 1 MiB read of the blob and the rest in the next read.
    first = gzip.compress(PARTS[2], mtime=0)
    second = gzip.compress(PARTS[1], mtime=0)
    padding = b"\0" * ((1 << 20) - split - len(first))

    assert _read_all(first + padding + second) == PARTS[2] + PARTS[1]


def test_gzip_reserved_flags_across_reads_raise():
    first = gzip.compress(PARTS[2], mtime=0)
    second = bytearray(gzip.compress(PARTS[1], mtime=0))
    second[3] |= 0x80
    padding = b"\0" * ((1 << 20) - 2 - len(first))

    with pytest.raises(InvalidArgumentError, match="member 2: .* unknown header flags"):
        _read_all(first + padding + bytes(second))


def test_gzip_member_start_truncated_raises():
    data = gzip.compress(PARTS[0]) + b"\x1f\x8b\x08"

    with pytest.raises(InvalidArgumentError) as caught:
        _read_all(data)

    assert str(caught.value) == (
        "failed to decompress gzip layer at member 2:"
        " truncated: the stream ends inside a member"
    )


def test_gzip_corrupt_crc_raises():
    data = bytearray(gzip.compress(PARTS[2]))
    data[-8] ^= 0xFF

    with pytest.raises(InvalidArgumentError, match="at member 1: invalid data"):
        _read_all(bytes(data))


def _zstd_frames(checksum: bool, content_size: bool) -> list[bytes]:
    compressor = zstandard.ZstdCompressor(
        write_checksum=checksum, write_content_size=content_size
    )
    if content_size:
        return [compressor.compress(part) for part in PARTS]
    # Streaming compression leaves the content size out of the frame header.
    frames = []
    for part in PARTS:
        stream = compressor.compressobj()
        frames.append(stream.compress(part) + stream.flush())
    return frames


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("content_size", [True, False])
def test_zstd_frames_with_skippable_frames(checksum, content_size):
    frames = _zstd_frames(checksum, content_size)
    data = (
        _skippable(0, b"before")
        + frames[0]
        + _skippable(7, b"x" * 70_000)
        + frames[1]
        + _skippable(15, b"")
        + frames[2]
        + _skippable(3, b"after")
    )

    with open_uncompressed(io.BytesIO(data), OCI_LAYER_ZSTD) as stream:
        assert stream.compression is Compression.ZSTD
        assert stream.read() == WHOLE


@pytest.mark.parametrize("size", [1, 4096, 1 << 20])
def test_zstd_readinto(size):
    data = b"".join(_zstd_frames(True, True))

    assert _read_all(data, size=size) == WHOLE


def test_zstd_skippable_frames_only():
    data = _skippable(0, b"a") + _skippable(1, b"b")

    with open_uncompressed(io.BytesIO(data)) as stream:
        assert stream.compression is Compression.ZSTD
        assert stream.read() == b""


def test_zstd_starting_with_skippable_frame_after_data():
    data = _zstd_frames(False, True)[0] + _skippable(0, b"meta")

    assert _read_all(data) == PARTS[0]


@pytest.mark.parametrize("cut", [1, 3, 5, 1000])
def test_zstd_truncated_raises(cut):
    frames = _zstd_frames(True, True)
    data = frames[0] + frames[1][:-cut]

    with pytest.raises(InvalidArgumentError, match="truncated inside frame 2"):
        _read_all(data)


@pytest.mark.parametrize("cut", [1, 4])
def test_zstd_cut_in_last_block_names_its_frame(cut):
    frames = _zstd_frames(False, True)
    data = frames[0] + frames[1][:-cut]

    with pytest.raises(InvalidArgumentError, match="truncated inside frame 2$"):
        _read_all(data)


def test_zstd_truncated_skippable_frame_raises():
    data = _zstd_frames(False, True)[0] + _skippable(0, b"metadata")[:-2]

    with pytest.raises(InvalidArgumentError, match="truncated inside frame 2"):
        _read_all(data)


def test_zstd_garbage_between_frames_raises():
    frames = _zstd_frames(False, True)
    data = frames[0] + b"GARBAGE!" + frames[1]

    with pytest.raises(InvalidArgumentError, match="failed to decompress zstd layer"):
        _read_all(data)


def test_zstd_corrupt_checksum_raises():
    data = bytearray(_zstd_frames(True, True)[2])
    data[-1] ^= 0xFF

    with pytest.raises(InvalidArgumentError) as caught:
        _read_all(bytes(data))

    assert str(caught.value) == (
        "failed to decompress zstd layer:"
        " zstd decompress error: Restored data doesn't match checksum"
    )


def test_zstd_window_limit():
    params = zstandard.ZstdCompressionParameters(window_log=24, enable_ldm=True)
    data = zstandard.ZstdCompressor(compression_params=params).compress(WHOLE)

    with (
        open_uncompressed(io.BytesIO(data), max_window_size=1 << 20) as stream,
        pytest.raises(InvalidArgumentError, match="too much memory"),
    ):
        stream.read()
    assert _read_all(data) == WHOLE


def test_plain_passthrough():
    with open_uncompressed(io.BytesIO(WHOLE), OCI_LAYER) as stream:
        assert stream.compression is Compression.NONE
        assert stream.read(10) == WHOLE[:10]
        assert stream.read() == WHOLE[10:]


@pytest.mark.parametrize("data", [b"", b"a", b"\x1f"])
def test_plain_shorter_than_magic(data):
    assert _read_all(data) == data


def test_magic_wins_over_media_type(caplog):
    data = zstandard.ZstdCompressor().compress(WHOLE)

    with caplog.at_level(logging.WARNING, logger="ipcs_fs.oci.compression"):
        assert _read_all(data, OCI_LAYER_GZIP) == WHOLE

    assert caplog.messages == [
        (
            f"layer media type {OCI_LAYER_GZIP} declares gzip, but the magic bytes"
            " say zstd; decompressing as zstd"
        )
    ]


def test_gzip_content_under_plain_media_type_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="ipcs_fs.oci.compression"):
        assert _read_all(gzip.compress(WHOLE), OCI_LAYER) == WHOLE

    assert len(caplog.messages) == 1
    assert "declares none, but the magic bytes say gzip" in caplog.messages[0]


def test_docker_plain_type_decompressed_silently(caplog):
    with caplog.at_level(logging.WARNING, logger="ipcs_fs.oci.compression"):
        assert _read_all(gzip.compress(WHOLE), DOCKER_LAYER) == WHOLE

    assert caplog.messages == []


def test_non_tar_media_type_raises():
    with pytest.raises(UnimplementedError):
        open_uncompressed(io.BytesIO(b""), IPCS_FS_LAYER)


def test_close_closes_source():
    source = io.BytesIO(gzip.compress(b"x"))

    open_uncompressed(source).close()

    assert source.closed


def test_gzip_compress_header_fixed():
    output = b"".join(gzip_compress_chunks([b"hello"], level=6))

    assert output[:10] == bytes.fromhex("1f8b0800000000000 0ff".replace(" ", ""))
    assert gzip.decompress(output) == b"hello"
    assert zlib.crc32(b"hello").to_bytes(4, "little") == output[-8:-4]
    assert output[-4:] == (5).to_bytes(4, "little")


@pytest.mark.parametrize(("level", "extra_flags"), [(1, 4), (6, 0), (9, 2)])
def test_gzip_compress_extra_flags(level, extra_flags):
    output = b"".join(gzip_compress_chunks([WHOLE], level=level))

    assert output[8] == extra_flags
    assert gzip.decompress(output) == WHOLE


def test_gzip_compress_deterministic_across_chunking():
    whole = b"".join(gzip_compress_chunks([WHOLE]))
    pieces = b"".join(
        gzip_compress_chunks(WHOLE[i : i + 7777] for i in range(0, len(WHOLE), 7777))
    )

    assert hashlib.sha256(whole).hexdigest() == hashlib.sha256(pieces).hexdigest()


def test_gzip_compress_stream_round_trip():
    destination = io.BytesIO()

    written = gzip_compress_stream(io.BytesIO(WHOLE), destination, level=1)

    assert written == len(destination.getvalue())
    assert _read_all(destination.getvalue()) == WHOLE


def _mutated_gzip(rng: random.Random) -> bytes:
    """Gzip members with padding and optional header fields, mostly mutated."""
    data = bytearray()
    for _ in range(rng.randrange(1, 4)):
        part = PARTS[rng.randrange(3)][: rng.choice([0, 100, 5000, 400_000])]
        compressor = zlib.compressobj(rng.choice([1, 6]), zlib.DEFLATED, 31)
        member = bytearray(compressor.compress(part) + compressor.flush())
        if rng.random() < 0.3:
            # FNAME: a zero-terminated name after the fixed header.
            member[3] |= 0x08
            member[10:10] = b"name\0"
        data += member + b"\0" * rng.choice([0, 0, 7])
    position = rng.randrange(len(data))
    match rng.randrange(7):
        case 0:
            del data[position:]
        case 1:
            data[position] ^= 1 << rng.randrange(8)
        case 2:
            data[rng.randrange(10)] ^= 1 << rng.randrange(8)
        case 3:
            data += rng.randbytes(rng.randrange(1, 20))
        case 4:
            data += b"\x1f\x8b" + rng.randbytes(rng.randrange(0, 12))
    return bytes(data)


def _outcome(data: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", _read_all(data, size=65536)
    except InvalidArgumentError as error:
        # ISA-L's messages for deflate errors differ from zlib's, so only the
        # member number is compared.
        return "error", str(error).split(":")[0]


def test_gzip_accepts_and_rejects_like_zlib(monkeypatch):
    rng = random.Random(7)
    streams = [_mutated_gzip(rng) for _ in range(150)]
    streams = [data for data in streams if data.startswith(b"\x1f\x8b")]

    ours = [_outcome(data) for data in streams]
    monkeypatch.setattr(compression, "isal_zlib", zlib)
    reference = [_outcome(data) for data in streams]

    assert ours == reference
    assert 20 < sum(kind == "ok" for kind, _ in ours) < len(ours) - 50


_BLOCK = 1 << 20


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gzip_compress_same_for_any_threads(threads):
    data = WHOLE * 3
    reference = b"".join(gzip_compress_chunks([data], threads=1))

    output = b"".join(gzip_compress_chunks(pieces_of(data, 100_000), threads=threads))

    assert hashlib.sha256(output).hexdigest() == hashlib.sha256(reference).hexdigest()
    assert gzip.decompress(output) == data


@pytest.mark.parametrize(
    "size", [0, 1, _BLOCK - 1, _BLOCK, _BLOCK + 1, 2 * _BLOCK, 2 * _BLOCK + 7]
)
def test_gzip_compress_block_boundaries(size):
    data = (WHOLE * 3)[:size]

    output = b"".join(gzip_compress_chunks([data], threads=2))

    assert gzip.decompress(output) == data
    assert _read_all(output) == data
    assert output[-4:] == size.to_bytes(4, "little")


def test_gzip_compress_block_continues_previous_window():
    # The second block repeats the end of the first, which only a block that
    # starts from the previous block's last 32 KiB can refer back to.
    first = random.Random(4).randbytes(_BLOCK)
    data = first + first[-(16 << 10) :]

    output = b"".join(gzip_compress_chunks([data]))

    assert gzip.decompress(output) == data
    assert len(output) < _BLOCK + 2048


def pieces_of(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]
