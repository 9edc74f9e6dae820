"""Header block decoding below the reader: numbers and checksums."""

from __future__ import annotations

import pytest

from ipcs_fs.tar.header import TarFormatError, parse_number, verify_checksum

from .tarbuild import header


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"\x80\x00\x00\x00\x00\x00\x00\x2a", 42),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff", -1),
        (b"\xff" + b"\x00" * 11, -(256**11)),
        (b"\x80" + (9 << 30).to_bytes(11, "big"), 9 << 30),
        (b"77777777777\x00", 8**11 - 1),
    ],
)
def test_number_forms(field: bytes, value: int) -> None:
    assert parse_number(field, "mtime", signed=True) == value


def test_negative_unsigned_rejected() -> None:
    with pytest.raises(TarFormatError) as caught:
        parse_number(b"\xff" * 8, "uid")

    assert str(caught.value) == "negative uid -1"


def test_checksum_unsigned_and_signed() -> None:
    name = b"\xe9t\xe9"

    verify_checksum(header(name))
    verify_checksum(header(name, signed_checksum=True))


def test_checksum_mismatch_message() -> None:
    block = header(b"f", checksum=0o1234)

    with pytest.raises(TarFormatError) as caught:
        verify_checksum(block)

    assert str(caught.value) == (
        f"checksum mismatch: header records 668, block sums to"
        f" {sum(block[:148]) + 256 + sum(block[156:])}"
    )
