"""TarReader on hand-made streams: layout, end of archive, errors, limits."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.tar import EntryKind, TarReader

from .roundtrip import read_all
from .tarbuild import GNU, end, header, long_name, member, pad, pax


def _error(data: bytes, **options: int) -> str:
    """Return the message of the InvalidArgumentError that reading raises."""
    reader = TarReader(io.BytesIO(data), source="test.tar", **options)
    with pytest.raises(InvalidArgumentError) as caught:
        for _ in reader:
            reader.read_data()
    return str(caught.value)


class _TrickleStream:
    """A socket-like stream: each read returns a few bytes, no readinto."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = memoryview(data)
        self._position = 0
        self._random = random.Random(seed)

    def read(self, size: int) -> bytes:
        count = min(size, self._random.randint(1, 700))
        chunk = self._data[self._position : self._position + count]
        self._position += len(chunk)
        return bytes(chunk)


class _ZeroStream:
    """An endless stream of a header then zeros, counting what is read."""

    def __init__(self, first: bytes) -> None:
        self._first = first
        self.consumed = 0

    def read(self, size: int) -> bytes:
        if self.consumed < len(self._first):
            chunk = self._first[self.consumed : self.consumed + size]
        else:
            chunk = bytes(size)
        self.consumed += len(chunk)
        return chunk


# Layout and the round trip


def test_plain_file_fields_and_pieces() -> None:
    data = member(b"hello.txt", b"hello", mode=0o640, uid=7, gid=8, mtime=1234) + end()

    entries, contents, trailer = read_all(data)

    assert len(entries) == 1
    entry = entries[0]
    assert entry.name == b"hello.txt"
    assert entry.kind is EntryKind.FILE
    assert entry.typeflag == b"0"
    assert entry.mode == 0o640
    assert (entry.uid, entry.gid) == (7, 8)
    assert entry.mtime_ns == 1234 * 10**9
    assert (entry.size, entry.data_size) == (5, 5)
    assert entry.sparse is None
    assert entry.pax == {}
    assert entry.offset == 0
    assert entry.raw_header == data[:512]
    assert contents == [b"hello"]
    assert trailer == bytes(507) + end()


def test_raw_header_starts_with_previous_padding() -> None:
    data = member(b"a", b"12345") + member(b"b", b"xy") + end()

    entries, _, trailer = read_all(data)

    assert entries[1].offset == 517
    assert entries[1].raw_header == bytes(507) + data[1024:1536]
    assert trailer == bytes(510) + end()


def test_trickling_stream_gives_same_pieces() -> None:
    data = (
        member(b"a", b"x" * 3000)
        + pax([(b"path", b"p" * 300)])
        + member(b"b", bytes(range(256)) * 9)
        + long_name(b"n" * 200)
        + member(b"c", b"", magic=GNU)
        + end(3)
    )
    expected, expected_contents, expected_trailer = read_all(data)

    reader = TarReader(_TrickleStream(data, seed=5), source="trickle")
    entries = []
    contents = []
    for entry in reader:
        entries.append(entry)
        contents.append(reader.read_data(100) + reader.read_data())

    assert entries == expected
    assert contents == expected_contents
    assert reader.trailer == expected_trailer
    assert reader.offset == len(data)


def test_unread_data_is_skipped() -> None:
    data = member(b"big", bytes(range(256)) * 40) + member(b"next", b"n") + end()
    reader = TarReader(io.BytesIO(data))

    first = next(reader)
    assert reader.read_data(3) == b"\x00\x01\x02"
    second = next(reader)

    assert first.name == b"big"
    assert second.name == b"next"
    assert second.offset == 512 + 10240
    assert reader.read_data() == b"n"
    assert list(reader) == []
    assert reader.offset == len(data)


def test_read_data_sizes_and_end() -> None:
    data = member(b"f", b"abcdefghij") + end()
    reader = TarReader(io.BytesIO(data))

    assert reader.read_data() == b""  # no entry yet
    next(reader)

    assert reader.read_data(4) == b"abcd"
    assert reader.read_data(0) == b""
    assert reader.read_data(100) == b"efghij"
    assert reader.read_data() == b""


def test_readinto_data_fills_buffer() -> None:
    content = bytes(range(256)) * 8192  # 2 MiB: large reads bypass the buffer
    data = member(b"f", content) + end()
    reader = TarReader(io.BytesIO(data))
    next(reader)
    small = bytearray(10)
    large = bytearray(3 << 20)

    assert reader.readinto_data(small) == 10
    count = reader.readinto_data(memoryview(large))

    assert bytes(small) == content[:10]
    assert count == len(content) - 10
    assert bytes(large[:count]) == content[10:]
    assert reader.readinto_data(small) == 0


def test_copy_data_writes_file(tmp_path: Path) -> None:
    content = bytes(range(256)) * 8192  # 2 MiB, most of it sent by sendfile
    (tmp_path / "layer.tar").write_bytes(member(b"f", content) + end())
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with open(tmp_path / "layer.tar", "rb") as stream:
            reader = TarReader(stream)
            next(reader)
            first = reader.copy_data(fd, 0, 1000)
            rest = reader.copy_data(fd, 1000, len(content))
            after = reader.copy_data(fd, len(content), 10)
            assert list(reader) == []
        written = os.pread(fd, len(content) + 1, 0)
    finally:
        os.close(fd)

    assert (first, rest, after) == (1000, len(content) - 1000, 0)
    assert written == content


def test_copy_data_truncated(tmp_path: Path) -> None:
    data = member(b"f", bytes(200_000)) + end()
    (tmp_path / "layer.tar").write_bytes(data[:150_000])
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with open(tmp_path / "layer.tar", "rb") as stream:
            reader = TarReader(stream, source="cut.tar")
            next(reader)
            with pytest.raises(InvalidArgumentError) as error:
                reader.copy_data(fd, 0, 200_000)
    finally:
        os.close(fd)

    assert str(error.value) == (
        "invalid tar data for 'f' at offset 150000 in cut.tar: stream ends"
        " inside the entry's 200000 bytes of data, which start at offset 512"
    )


# Header fields


@pytest.mark.parametrize(
    ("typeflag", "kind"),
    [
        (b"0", EntryKind.FILE),
        (b"\x00", EntryKind.FILE),
        (b"7", EntryKind.FILE),
        (b"1", EntryKind.HARDLINK),
        (b"2", EntryKind.SYMLINK),
        (b"3", EntryKind.CHAR),
        (b"4", EntryKind.BLOCK),
        (b"5", EntryKind.DIR),
        (b"6", EntryKind.FIFO),
        (b"D", EntryKind.DIR),
        (b"Z", EntryKind.FILE),
        (b"A", EntryKind.FILE),
    ],
)
def test_typeflag_kinds(typeflag: bytes, kind: EntryKind) -> None:
    entries, _, _ = read_all(header(b"x", typeflag=typeflag) + end())

    assert entries[0].kind is kind
    assert entries[0].typeflag == typeflag


def test_old_directory_has_no_data() -> None:
    data = header(b"old/", typeflag=b"\x00", size=512) + member(b"next", b"n") + end()

    entries, contents, _ = read_all(data)

    assert [entry.name for entry in entries] == [b"old/", b"next"]
    assert entries[0].data_size == 0
    assert contents == [b"", b"n"]


@pytest.mark.parametrize(
    ("typeflag", "kind"),
    [
        (b"\x00", EntryKind.DIR),
        (b"0", EntryKind.FILE),
        (b"7", EntryKind.FILE),
        (b"Z", EntryKind.FILE),
    ],
)
def test_trailing_slash_kinds(typeflag: bytes, kind: EntryKind) -> None:
    entries, _, _ = read_all(header(b"old/", typeflag=typeflag) + end())

    assert entries[0].kind is kind


def test_unknown_typeflag_has_data() -> None:
    data = member(b"vendor", b"payload", typeflag=b"Z") + end()

    entries, contents, _ = read_all(data)

    assert entries[0].data_size == 7
    assert contents == [b"payload"]


@pytest.mark.parametrize("typeflag", [b"1", b"2", b"3", b"4", b"5", b"6"])
def test_header_only_typeflag_ignores_size(typeflag: bytes) -> None:
    data = header(b"x", typeflag=typeflag, size=1024) + member(b"f", b"d") + end()

    entries, contents, _ = read_all(data)

    assert [entry.name for entry in entries] == [b"x", b"f"]
    assert entries[0].size == 1024
    assert entries[0].data_size == 0
    assert contents == [b"", b"d"]


def test_mode_keeps_low_12_bits() -> None:
    entries, _, _ = read_all(header(b"f", mode=0o104755) + end())

    assert entries[0].mode == 0o4755


def test_ustar_prefix_joins_name() -> None:
    prefix = b"p" * 155
    data = header(b"n" * 100, prefix=prefix, uname=b"alice", gname=b"staff") + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == prefix + b"/" + b"n" * 100
    assert entries[0].uname == b"alice"
    assert entries[0].gname == b"staff"


def test_gnu_header_times_not_prefix() -> None:
    raw_at = {345: b"%011o\x00" % 1000, 357: b"%011o\x00" % 2000}
    data = header(b"f", magic=GNU, uname=b"u", raw_at=raw_at) + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"f"
    assert entries[0].uname == b"u"
    assert entries[0].atime_ns == 1000 * 10**9
    assert entries[0].ctime_ns == 2000 * 10**9


def test_star_header_times_and_prefix() -> None:
    raw_at = {345: b"dir", 476: b"%011o " % 1000, 488: b"%011o " % 2000}
    data = header(b"f", raw_at=raw_at) + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"dir/f"
    assert entries[0].atime_ns == 1000 * 10**9
    assert entries[0].ctime_ns == 2000 * 10**9


def test_star_trailer_marks_star_header() -> None:
    raw_at = {345: b"dir", 476: b"%011o\x00" % 1000, 508: b"tar\x00"}
    data = header(b"f", raw_at=raw_at) + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"dir/f"
    assert entries[0].atime_ns == 1000 * 10**9
    assert entries[0].ctime_ns == 0


def test_gnu_header_with_old_go_prefix() -> None:
    data = header(b"name", magic=GNU, raw_at={345: b"long/directory"}) + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"long/directory/name"
    assert entries[0].atime_ns is None


def test_v7_header_ignores_ustar_fields() -> None:
    data = header(b"f", magic=b"\x00" * 8, uname=b"u", prefix=b"p") + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"f"
    assert entries[0].uname == b""
    assert entries[0].atime_ns is None


def test_base256_fields() -> None:
    raw = {
        "uid": b"\x80" + (3_000_000).to_bytes(7, "big"),
        "size": b"\x80" + (5).to_bytes(11, "big"),
        "mtime": b"\xff" + (-86400 % 256**11).to_bytes(11, "big"),
    }
    data = header(b"f", raw=raw) + pad(b"abcde") + end()

    entries, contents, _ = read_all(data)

    assert entries[0].uid == 3_000_000
    assert entries[0].mtime_ns == -86400 * 10**9
    assert contents == [b"abcde"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0000644\x00", 0o644),
        (b" 644 \x00  ", 0o644),
        (b"644     ", 0o644),
        (b"00000644", 0o644),
        (b"644\x00junk", 0o644),
        (b"\x00" * 8, 0),
        (b" " * 8, 0),
        (b"\x00\x000644\x00", 0o644),
    ],
)
def test_octal_mode_forms(field: bytes, value: int) -> None:
    entries, _, _ = read_all(header(b"f", raw={"mode": field}) + end())

    assert entries[0].mode == value


def test_device_numbers() -> None:
    raw = {"devminor": b"\x80" + (70000).to_bytes(7, "big")}
    data = header(b"c", typeflag=b"3", devmajor=136, raw=raw) + end()

    entries, _, _ = read_all(data)

    assert (entries[0].devmajor, entries[0].devminor) == (136, 70000)


def test_device_numbers_only_for_devices() -> None:
    entries, _, _ = read_all(header(b"f", devmajor=5, devminor=6) + end())

    assert (entries[0].devmajor, entries[0].devminor) == (0, 0)


def test_signed_checksum_accepted() -> None:
    data = header(b"caf\xe9\xff", signed_checksum=True) + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"caf\xe9\xff"


def test_post_2038_octal_mtime() -> None:
    entries, _, _ = read_all(header(b"f", mtime=4_102_444_800) + end())

    assert entries[0].mtime_ns == 4_102_444_800 * 10**9


# End of archive


def test_empty_stream_is_empty_archive() -> None:
    entries, _, trailer = read_all(b"")

    assert entries == []
    assert trailer == b""


@pytest.mark.parametrize(
    "tail",
    [
        b"",
        end(1),
        end(2),
        end(20),
        end(2) + b"junk after the end",
        end(1) + member(b"hidden", b"not an entry"),
    ],
    ids=["nothing", "one-block", "two-blocks", "record", "junk", "entry-after-end"],
)
def test_end_of_archive_forms(tail: bytes) -> None:
    data = member(b"f", b"abc") + tail

    entries, contents, trailer = read_all(data)

    assert [entry.name for entry in entries] == [b"f"]
    assert contents == [b"abc"]
    assert trailer == bytes(509) + tail


@pytest.mark.parametrize("zero_blocks", [0, 1, 2, 20])
def test_archive_of_only_zero_blocks(zero_blocks: int) -> None:
    entries, _, trailer = read_all(end(zero_blocks))

    assert entries == []
    assert trailer == end(zero_blocks)


def test_global_header_without_entry_goes_to_trailer() -> None:
    tail = pax([(b"comment", b"c")], typeflag=b"g") + end()
    data = member(b"f") + tail

    entries, _, trailer = read_all(data)

    assert len(entries) == 1
    assert trailer == tail


def test_volume_header_is_skipped_but_kept() -> None:
    volume = header(b"label", typeflag=b"V", magic=GNU)
    data = volume + member(b"f", b"x") + end()

    entries, _, _ = read_all(data)

    assert [entry.name for entry in entries] == [b"f"]
    assert entries[0].raw_header == volume + data[512:1024]


@pytest.mark.parametrize("typeflag", [b"M", b"N"])
def test_gnu_pseudo_types_skipped_with_body(typeflag: bytes) -> None:
    skipped = member(b"old", b"body of the record", typeflag=typeflag, magic=GNU)
    data = skipped + member(b"f", b"x") + end()

    entries, contents, _ = read_all(data)

    assert [entry.name for entry in entries] == [b"f"]
    assert entries[0].raw_header.startswith(skipped)
    assert contents == [b"x"]


# Errors


def test_bad_checksum() -> None:
    block = header(b"bad", checksum=1)
    data = member(b"a", b"x" * 600) + block + end()

    message = _error(data)

    assert message == (
        "invalid tar header at offset 1536 in test.tar: checksum mismatch:"
        f" header records 1, block sums to {sum(block[:148]) + 256 + sum(block[156:])}"
    )


def test_invalid_checksum_field() -> None:
    data = header(b"f", raw={"checksum": b"12x45\x00  "}) + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar:"
        " invalid checksum field b'12x45\\x00  '"
    )


def test_truncated_header() -> None:
    data = member(b"a") + header(b"b")[:100]

    assert _error(data) == (
        "invalid tar header at offset 512 in test.tar: stream ends inside"
        " a header block, after 100 of 512 bytes"
    )


def test_truncated_data() -> None:
    data = header(b"short", size=1000) + b"x" * 600

    assert _error(data) == (
        "invalid tar data for 'short' at offset 1112 in test.tar: stream ends"
        " inside the entry's 1000 bytes of data, which start at offset 512"
    )


def test_truncated_data_found_when_skipping() -> None:
    reader = TarReader(io.BytesIO(header(b"s", size=10**6) + b"x" * 5000))
    next(reader)

    with pytest.raises(InvalidArgumentError) as caught:
        next(reader)

    assert str(caught.value) == (
        "invalid tar data for 's' at offset 5512: stream ends inside the"
        " entry's 1000000 bytes of data, which start at offset 512"
    )


def test_size_past_end_of_stream() -> None:
    data = header(b"huge", size=4 << 30) + pad(b"tiny") + end()

    assert _error(data) == (
        "invalid tar data for 'huge' at offset 2048 in test.tar: stream ends"
        f" inside the entry's {4 << 30} bytes of data, which start at offset 512"
    )


def test_end_right_after_data() -> None:
    data = header(b"f", size=3) + b"abc"

    entries, contents, trailer = read_all(data)

    assert [entry.name for entry in entries] == [b"f"]
    assert contents == [b"abc"]
    assert trailer == b""


def test_truncated_padding() -> None:
    data = header(b"f", size=3) + b"abc" + bytes(100)

    assert _error(data) == (
        "invalid tar header at offset 515 in test.tar: stream ends inside the"
        " padding, after 100 of 509 bytes"
    )


def test_negative_size() -> None:
    raw = {"size": b"\xff" * 11 + b"\xfb"}

    assert _error(header(b"neg", raw=raw) + end()) == (
        "invalid tar header for 'neg' at offset 0 in test.tar: negative size -5"
    )


def test_invalid_numeric_field_names_entry() -> None:
    data = long_name(b"long/" * 30) + header(b"short", raw={"uid": b"12x4\x00"})

    assert _error(data) == (
        f"invalid tar header for '{'long/' * 30}' at offset 1024 in test.tar:"
        " invalid uid field b'12x4\\x00\\x00\\x00\\x00'"
    )


@pytest.mark.parametrize(
    "field", [b"12 34\x00\x00\x00", b"0000648\x00", b"+644\x00\x00\x00\x00"]
)
def test_invalid_octal_field(field: bytes) -> None:
    data = header(b"m", raw={"mode": field}) + end()

    assert _error(data) == (
        f"invalid tar header for 'm' at offset 0 in test.tar: invalid mode field {field!r}"
    )


def test_invalid_base256_lead_byte() -> None:
    raw = {"gid": b"\x81" + bytes(7)}

    assert _error(header(b"g", raw=raw) + end()) == (
        "invalid tar header for 'g' at offset 0 in test.tar: invalid base-256"
        " gid field b'\\x81\\x00\\x00\\x00\\x00\\x00\\x00\\x00'"
    )


def test_pax_length_past_end() -> None:
    data = pax(b"99 path=a\n") + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar: PAX record at byte 0 has"
        " length 99, past the end of the 10-byte header"
    )


def test_pax_length_too_short() -> None:
    data = pax(b"9 path=abc\n") + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar: PAX record at byte 0 does"
        " not end with a newline at its length 9"
    )


def test_pax_length_not_decimal() -> None:
    data = pax(b"1a path=abc\n") + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar: PAX record at byte 0 has"
        " no decimal length"
    )


def test_pax_record_without_equals() -> None:
    data = pax(b"12 path=abc\n11 nokey12\n") + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar: PAX record at byte 12 has no '='"
    )


def test_pax_trailing_bytes_rejected() -> None:
    data = pax(b"12 path=abc\n\x00\x00") + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar: PAX record at byte 12 has"
        " no decimal length"
    )


def test_pax_name_with_nul_rejected() -> None:
    data = pax([(b"path", b"a\x00b")]) + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header for 'f' at offset 1024 in test.tar:"
        " PAX path contains a NUL byte"
    )


def test_oversized_pax_header_fails_before_reading() -> None:
    stream = _ZeroStream(header(b"./PaxHeaders/f", typeflag=b"x", size=100 << 20))
    reader = TarReader(stream, source="layer")

    with pytest.raises(InvalidArgumentError) as caught:
        next(reader)

    assert str(caught.value) == (
        "invalid tar header at offset 0 in layer: headers of one entry exceed"
        " the limit of 16777216 bytes"
    )
    assert stream.consumed <= 1 << 20


def test_many_extension_records_hit_limit() -> None:
    volumes = header(b"v", typeflag=b"V", magic=GNU) * 10

    message = _error(volumes + member(b"f") + end(), max_header_bytes=4096)

    assert message == (
        "invalid tar header at offset 3584 in test.tar: headers of one entry"
        " exceed the limit of 4096 bytes"
    )


def test_trailing_junk_over_limit() -> None:
    data = member(b"f") + end() + b"j" * 5000

    assert _error(data, max_header_bytes=4096) == (
        "invalid tar header at offset 512 in test.tar: the end-of-archive"
        " blocks and the bytes after them exceed the limit of 4096 bytes"
    )


def test_extended_header_without_entry() -> None:
    data = member(b"f") + pax([(b"path", b"x")]) + end()

    assert _error(data) == (
        "invalid tar header at offset 1536 in test.tar: extended header or long"
        " name is not followed by an entry"
    )


def test_extended_header_then_end_of_stream() -> None:
    data = long_name(b"n" * 150)

    assert _error(data) == (
        "invalid tar header at offset 1024 in test.tar: extended header or long"
        " name is not followed by an entry"
    )


@pytest.mark.parametrize(
    ("first", "second", "rule"),
    [
        (pax([(b"a", b"1")]), pax([(b"b", b"2")]), "second PAX extended header"),
        (long_name(b"x"), long_name(b"y"), "second GNU long name"),
        (long_name(b"x", b"K"), long_name(b"y", b"K"), "second GNU long link"),
    ],
    ids=["pax", "long-name", "long-link"],
)
def test_duplicate_extensions_rejected(first: bytes, second: bytes, rule: str) -> None:
    data = first + second + member(b"f") + end()

    assert _error(data) == (
        f"invalid tar header at offset {len(first)} in test.tar: {rule} for one entry"
    )


def test_error_is_sticky() -> None:
    reader = TarReader(io.BytesIO(header(b"f", checksum=5) + end()))
    with pytest.raises(InvalidArgumentError) as first:
        next(reader)

    with pytest.raises(InvalidArgumentError) as second:
        next(reader)
    with pytest.raises(InvalidArgumentError):
        reader.read_data()

    assert second.value is first.value


def test_header_limit_must_fit_a_header() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        TarReader(io.BytesIO(b""), max_header_bytes=1000)

    assert str(caught.value) == ("invalid max_header_bytes 1000: must be at least 1024")


class _SizedZeroData:
    """A header, ``size`` bytes of data that are never materialised, then
    ``tail``; readinto() only counts, so skipping 9 GiB is cheap."""

    def __init__(self, head: bytes, size: int, tail: bytes) -> None:
        self._parts = [(head, len(head)), (None, size), (tail, len(tail))]
        self._index = 0
        self._offset = 0

    def readinto(self, view: memoryview) -> int:
        while self._index < len(self._parts):
            data, length = self._parts[self._index]
            count = min(len(view), length - self._offset)
            if count:
                if data is not None:
                    view[:count] = data[self._offset : self._offset + count]
                self._offset += count
                return count
            self._index += 1
            self._offset = 0
        return 0

    def read(self, size: int) -> bytes:
        buffer = bytearray(size)
        return bytes(buffer[: self.readinto(memoryview(buffer))])


def test_base256_size_over_8_gib() -> None:
    size = 9 << 30
    raw = {"size": b"\x80" + size.to_bytes(11, "big")}
    tail = member(b"after", b"tail") + end()
    stream = _SizedZeroData(header(b"nine-gib", raw=raw), size, tail)
    reader = TarReader(stream)

    first = next(reader)
    second = next(reader)

    assert (first.size, first.data_size) == (size, size)
    assert second.name == b"after"
    assert second.offset == 512 + size
    assert reader.read_data() == b"tail"
    assert list(reader) == []
    assert reader.offset == 512 + size + len(tail)
