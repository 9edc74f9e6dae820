"""The PAX tar writer: exact header bytes, PAX records, and round trips."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from ipcs_fs.tar.entry import EntryKind, TarEntry
from ipcs_fs.tar.reader import TarReader
from ipcs_fs.tar.writer import END_OF_ARCHIVE, encode_entry, encode_pax_records, padding


def _entry(name: bytes, kind: EntryKind = EntryKind.FILE, **fields) -> TarEntry:
    values = {
        "typeflag": b"",
        "mode": 0o644,
        "uid": 0,
        "gid": 0,
        "uname": b"",
        "gname": b"",
        "mtime_ns": 1_700_000_000 * 10**9,
        "size": 0,
        "data_size": 0,
        **fields,
    }
    return TarEntry(name=name, kind=kind, **values)


def _archive(*entries: tuple[TarEntry, bytes]) -> bytes:
    parts = []
    for entry, data in entries:
        parts += [encode_entry(entry), data, padding(len(data))]
    return b"".join(parts) + END_OF_ARCHIVE


def test_plain_header_bytes() -> None:
    header = encode_entry(_entry(b"etc/hosts", size=12, uid=1, gid=2))

    assert len(header) == 512
    assert header[:9] == b"etc/hosts"
    assert header[100:108] == b"0000644\0"
    assert header[108:116] == b"0000001\0"
    assert header[124:136] == b"00000000014\0"
    assert header[136:148] == b"14524770400\0"
    assert header[156:157] == b"0"
    assert header[257:265] == b"ustar\x0000"
    assert header[148:156] == b"%06o\0 " % (
        sum(header[:148]) + 8 * 32 + sum(header[156:])
    )
    assert hashlib.sha256(header).hexdigest() == (
        "029450a503ee88aff88b092f7d3203ace71a0f7c47e1fb371a9a3e3c2cd07b8e"
    )


def test_pax_record_length_counts_itself() -> None:
    assert encode_pax_records([(b"path", b"a")]) == b"9 path=a\n"
    # 98 bytes besides the length: two digits would make 100, which needs a
    # third digit. Python's tarfile writes the same record.
    record = encode_pax_records([(b"path", b"v" * 91)])
    assert record.startswith(b"101 path=v")
    assert len(record) == 101


@pytest.mark.parametrize(
    ("fields", "records"),
    [
        ({"mtime_ns": 1_700_000_000_000_000_001}, {"mtime": "1700000000.000000001"}),
        ({"mtime_ns": -1_500_000_000}, {"mtime": "-1.5"}),
        ({"uid": 8**7}, {"uid": str(8**7)}),
        ({"uname": b"u" * 33}, {"uname": "u" * 33}),
        (
            {"xattrs": {b"security.capability": b"\x01\x02"}},
            {"SCHILY.xattr.security.capability": "\x01\x02"},
        ),
    ],
)
def test_values_past_ustar_become_records(fields: dict, records: dict) -> None:
    data = _archive((_entry(b"f", **fields), b""))

    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.getmembers()[0]

    for key, value in records.items():
        assert member.pax_headers[key] == value


def test_long_name_uses_prefix_when_it_fits() -> None:
    name = b"d" * 120 + b"/" + b"f" * 90
    header = encode_entry(_entry(name))

    assert len(header) == 512
    assert header[345:465] == b"d" * 120
    assert header[:90] == b"f" * 90


def test_round_trip_through_reader() -> None:
    entries = [
        (_entry(b"dir/", EntryKind.DIR, mode=0o755), b""),
        (_entry(b"dir/" + b"n" * 300, size=3, data_size=3), b"abc"),
        (_entry("dir/ü".encode(), EntryKind.SYMLINK, linkname=b"t" * 200), b""),
        (_entry(b"dev", EntryKind.CHAR, devmajor=4, devminor=64), b""),
        (_entry(b"hard", EntryKind.HARDLINK, linkname=b"dir/" + b"n" * 300), b""),
        (_entry(b"fifo", EntryKind.FIFO, mtime_ns=5), b""),
    ]
    reader = TarReader(io.BytesIO(_archive(*entries)), source="test")

    read = [(entry, reader.read_data(entry.data_size)) for entry in reader]

    assert len(read) == len(entries)
    for (want, data), (got, got_data) in zip(entries, read, strict=True):
        assert got.name == want.name
        assert got.kind == want.kind
        assert got.linkname == want.linkname
        assert got.mtime_ns == want.mtime_ns
        assert (got.devmajor, got.devminor) == (want.devmajor, want.devminor)
        assert got_data == data


def test_empty_name_rejected() -> None:
    with pytest.raises(ValueError, match="the name is empty"):
        encode_entry(_entry(b""))
