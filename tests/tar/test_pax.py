"""PAX record framing and values, below the reader."""

from __future__ import annotations

import pytest

from ipcs_fs.tar.header import TarFormatError
from ipcs_fs.tar.pax import merge_records, parse_records, parse_time, update_globals

from .tarbuild import pax_record


def test_records_framed_by_length() -> None:
    body = pax_record(b"comment", b"a=b\nc 12 x\n\x00\xffz") + b"8 k=v=w\n"

    records = parse_records(body + b"padding", len(body), 100)

    assert records == [(b"comment", b"a=b\nc 12 x\n\x00\xffz"), (b"k", b"v=w")]


def test_length_with_leading_zeros() -> None:
    body = b"0010 a=bc\n"

    assert parse_records(body, len(body), 10) == [(b"a", b"bc")]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"9 =value\n", "PAX record at byte 0 has an invalid key b''"),
        (b"8 a\x00b=c\n", "PAX record at byte 0 has an invalid key b'a\\x00b'"),
        (
            b"99999999999999999999999 a=b\n",
            "PAX record at byte 0 has no decimal length",
        ),
        (b" 6 a=b\n", "PAX record at byte 0 has no decimal length"),
    ],
)
def test_invalid_records(body: bytes, rule: str) -> None:
    with pytest.raises(TarFormatError) as caught:
        parse_records(body, len(body), 10)

    assert str(caught.value) == rule


def test_time_has_no_float_error() -> None:
    # 2**53 ns is where a float of seconds stops holding every nanosecond.
    assert parse_time(b"9007199.254740993", "mtime") == 9_007_199_254_740_993
    assert parse_time(b"1700000000.000000001", "mtime") == 1_700_000_000_000_000_001


def test_global_empty_value_deletes() -> None:
    global_records = {b"uname": b"a", b"comment": b"c"}

    update_globals(global_records, [(b"uname", b""), (b"gname", b"g")])

    assert global_records == {b"comment": b"c", b"gname": b"g"}


def test_local_empty_field_key_falls_back() -> None:
    merged = merge_records(
        {b"uname": b"global", b"SCHILY.xattr.user.a": b"1"},
        [(b"uname", b""), (b"SCHILY.xattr.user.a", b"")],
    )

    assert merged == {b"SCHILY.xattr.user.a": b""}
