"""Decompression errors that name the layer, and gzip output read by gzip(1).

A layer blob that is truncated, corrupt or followed by garbage must raise one
InvalidArgumentError whose message names the layer passed as ``source``. So
when one layer of a many-layer image fails to convert, the error names it.
"""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import zlib

import pytest
import zstandard

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.oci.compression import gzip_compress_chunks, open_uncompressed

LAYER = "sha256:" + "ab" * 32
_DATA = random.Random(5).randbytes(200_000) + b"tar " * 50_000
_GZIP = gzip.compress(_DATA, mtime=0)
_ZSTD = zstandard.ZstdCompressor().compress(_DATA)


def _flipped(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0xFF
    return bytes(changed)


def _read_error(blob: bytes) -> str:
    with (
        open_uncompressed(io.BytesIO(blob), source=LAYER) as stream,
        pytest.raises(InvalidArgumentError) as raised,
    ):
        stream.read()
    return str(raised.value)


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (
            _GZIP[: len(_GZIP) // 2],
            (
                f"failed to decompress gzip layer {LAYER} at member 1: truncated:"
                " the stream ends inside a member"
            ),
        ),
        (
            _GZIP + b"garbage!",
            (
                f"failed to decompress gzip layer {LAYER} at member 2: invalid data:"
                " Error -3 while decompressing data: incorrect header check"
            ),
        ),
        (
            _GZIP + _GZIP[:5],
            (
                f"failed to decompress gzip layer {LAYER} at member 2: truncated:"
                " the stream ends inside a member"
            ),
        ),
    ],
    ids=["truncated", "garbage after member", "second member cut"],
)
def test_gzip_error_names_layer(blob: bytes, expected: str) -> None:
    assert _read_error(blob) == expected


def test_corrupt_gzip_names_layer() -> None:
    message = _read_error(_flipped(_GZIP, len(_GZIP) // 2))

    assert message.startswith(
        f"failed to decompress gzip layer {LAYER} at member 1: invalid data: "
    )


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (
            _ZSTD[:-1000],
            f"failed to decompress zstd layer {LAYER}: truncated inside frame 1",
        ),
        (
            _ZSTD + b"\x00\x01\x02\x03",
            (
                f"failed to decompress zstd layer {LAYER}: invalid frame magic"
                " 0x03020100 after frame 1"
            ),
        ),
    ],
    ids=["truncated", "garbage after frame"],
)
def test_zstd_error_names_layer(blob: bytes, expected: str) -> None:
    assert _read_error(blob) == expected


def test_error_without_source_unchanged() -> None:
    with (
        open_uncompressed(io.BytesIO(_GZIP[:100])) as stream,
        pytest.raises(InvalidArgumentError) as raised,
    ):
        stream.read()

    assert str(raised.value) == (
        "failed to decompress gzip layer at member 1: truncated: the stream ends"
        " inside a member"
    )


def test_multi_member_gzip_reads_whole() -> None:
    blob = gzip.compress(_DATA[:1000], mtime=0) + b"\0" * 3 + _GZIP

    with open_uncompressed(io.BytesIO(blob), source=LAYER) as stream:
        assert stream.read() == _DATA[:1000] + _DATA


_BLOCK = 1 << 20
_CASES = {
    "empty": (b"", 1),
    "one block": (random.Random(1).randbytes(_BLOCK), 3),
    "one block and a byte": (b"ab" * (_BLOCK // 2) + b"c", 1000),
    "tiny chunks": (random.Random(2).randbytes(5000) * 300, 7),
}


def _compressed(data: bytes, chunk_size: int, threads: int) -> bytes:
    starts = range(0, len(data), chunk_size)
    chunks = [data[start : start + chunk_size] for start in starts]
    return b"".join(gzip_compress_chunks(chunks, threads=threads))


@pytest.mark.parametrize("case", sorted(_CASES))
def test_gzip_output_same_and_readable(case: str) -> None:
    data, chunk_size = _CASES[case]

    whole = b"".join(gzip_compress_chunks([data], threads=1))
    pieces = _compressed(data, chunk_size, threads=3)

    assert pieces == whole
    assert zlib.decompress(whole, 31) == data
    assert gzip.decompress(whole) == data


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("gzip") is None, reason="needs gzip(1)")
@pytest.mark.parametrize("case", sorted(_CASES))
def test_gzip_program_reads_output(case: str) -> None:
    data, chunk_size = _CASES[case]
    output = _compressed(data, chunk_size, threads=2)

    done = subprocess.run(
        ["gzip", "-dc"], input=output, capture_output=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == data
