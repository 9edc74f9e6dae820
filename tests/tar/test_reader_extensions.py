"""TarReader on PAX records, GNU long names and every GNU sparse form."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.tar import EntryKind, TarReader

from .libarchive_oracle import read_with_libarchive
from .roundtrip import read_all
from .tarbuild import BLOCK, GNU, end, header, long_name, member, octal, pad, pax


def _error(data: bytes, **options: int) -> str:
    reader = TarReader(io.BytesIO(data), source="test.tar", **options)
    with pytest.raises(InvalidArgumentError) as caught:
        for _ in reader:
            reader.read_data()
    return str(caught.value)


# PAX fields


def test_pax_replaces_header_fields() -> None:
    records = [
        (b"path", b"a/" + b"long" * 100),
        (b"linkpath", b"target\nwith newline"),
        (b"uid", b"3000000"),
        (b"gid", b"4000000"),
        (b"uname", b"\xffuser"),
        (b"gname", b"group"),
        (b"mtime", b"4102444800.123456789"),
        (b"atime", b"-1.000000001"),
        (b"ctime", b"7"),
    ]
    data = pax(records) + header(b"short", typeflag=b"2", uid=1, gid=2) + end()

    entries, _, _ = read_all(data)

    entry = entries[0]
    assert entry.name == b"a/" + b"long" * 100
    assert entry.kind is EntryKind.SYMLINK
    assert entry.linkname == b"target\nwith newline"
    assert (entry.uid, entry.gid) == (3_000_000, 4_000_000)
    assert (entry.uname, entry.gname) == (b"\xffuser", b"group")
    assert entry.mtime_ns == 4_102_444_800_123_456_789
    assert entry.atime_ns == -1_000_000_001
    assert entry.ctime_ns == 7_000_000_000
    assert entry.pax == dict(records)
    assert entry.raw_header == data[:2048]


@pytest.mark.parametrize(
    ("value", "nanoseconds"),
    [
        (b"-1.5", -1_500_000_000),
        (b"-0.25", -250_000_000),
        (b"-315619199.5", -315_619_199_500_000_000),
        (b"1.", 1_000_000_000),
        (b"0.0000000019", 1),
        (b"-0.0000000011", -2),
        (b"-0.0000000010", -1),
        (b"253402300799.999999999", 253_402_300_799_999_999_999),
    ],
)
def test_pax_mtime_exact(value: bytes, nanoseconds: int) -> None:
    data = pax([(b"mtime", value)]) + member(b"f") + end()

    entries, _, _ = read_all(data)

    assert entries[0].mtime_ns == nanoseconds


@pytest.mark.parametrize("value", [b"", b"1e9", b"+5", b".5", b"1.2.3", b"0x10"])
def test_pax_invalid_times(value: bytes) -> None:
    records = [(b"mtime", value)] if value else [(b"atime", b"x")]
    key = "mtime" if value else "atime"
    data = pax(records) + member(b"f") + end()

    assert _error(data) == (
        f"invalid tar header for 'f' at offset 1024 in test.tar:"
        f" invalid PAX {key} {value or b'x'!r}"
    )


def test_pax_size_gives_data() -> None:
    data = pax([(b"size", b"6")]) + header(b"f", size=0) + pad(b"sixsix") + end()

    entries, contents, _ = read_all(data)

    assert (entries[0].size, entries[0].data_size) == (6, 6)
    assert contents == [b"sixsix"]


def test_pax_size_on_hardlink_has_no_data() -> None:
    data = pax([(b"size", b"600")]) + header(b"l", typeflag=b"1") + member(b"f") + end()

    entries, contents, _ = read_all(data)

    assert [entry.name for entry in entries] == [b"l", b"f"]
    assert entries[0].size == 600
    assert entries[0].data_size == 0
    assert contents == [b"", b""]


def test_pax_device_numbers() -> None:
    records = [(b"SCHILY.devmajor", b"3000000"), (b"SCHILY.devminor", b"17")]
    data = pax(records) + header(b"b", typeflag=b"4", devmajor=1) + end()

    entries, _, _ = read_all(data)

    assert (entries[0].devmajor, entries[0].devminor) == (3_000_000, 17)


def test_pax_negative_uid_rejected() -> None:
    data = pax([(b"uid", b"-1")]) + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header for 'f' at offset 1024 in test.tar: invalid PAX uid b'-1'"
    )


def test_hdrcharset_binary_keeps_bytes() -> None:
    records = [(b"hdrcharset", b"BINARY"), (b"path", b"caf\xe9/\xff\xfe")]
    data = pax(records) + member(b"x") + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"caf\xe9/\xff\xfe"
    assert entries[0].pax[b"hdrcharset"] == b"BINARY"


def test_unknown_keys_kept() -> None:
    records = [
        (b"comment", b"line one\nline two\x00"),
        (b"SCHILY.acl.access", b"user::rw-,group::r--,other::r--"),
        (b"LIBARCHIVE.creationtime", b"12"),
    ]
    data = pax(records) + member(b"f") + end()

    entries, _, _ = read_all(data)

    assert entries[0].pax == dict(records)
    assert entries[0].xattrs == {}


# Xattrs


def test_schily_xattrs_raw_bytes() -> None:
    value = b"line\nbreak\x00nul\xff"
    records = [
        (b"SCHILY.xattr.user.first", value),
        (b"SCHILY.xattr.security.capability", bytes(20)),
        (b"SCHILY.xattr.user.empty", b""),
    ]
    data = pax(records) + member(b"f") + end()

    entries, _, _ = read_all(data)

    assert entries[0].xattrs == {
        b"user.first": value,
        b"security.capability": bytes(20),
        b"user.empty": b"",
    }
    assert list(entries[0].xattrs) == [
        b"user.first",
        b"security.capability",
        b"user.empty",
    ]


def test_libarchive_xattrs_decoded() -> None:
    value = b"\x00\x01two\nlines"
    unpadded = base64.b64encode(value).rstrip(b"=")
    records = [(b"LIBARCHIVE.xattr.user.with%20space%3D", unpadded)]
    data = pax(records) + member(b"f") + end()

    entries, _, _ = read_all(data)

    assert unpadded != base64.b64encode(value)
    assert entries[0].xattrs == {b"user.with space=": value}


def test_libarchive_xattr_invalid_base64() -> None:
    data = pax([(b"LIBARCHIVE.xattr.user.a", b"!!!")]) + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header for 'f' at offset 1024 in test.tar: PAX record"
        " b'LIBARCHIVE.xattr.user.a' is not valid base64"
    )


def test_xattr_empty_name_rejected() -> None:
    data = pax([(b"SCHILY.xattr.", b"v")]) + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header for 'f' at offset 1024 in test.tar:"
        " PAX xattr record has an empty name"
    )


# Global records


def test_global_records_apply_until_changed() -> None:
    data = (
        pax([(b"uname", b"global"), (b"SCHILY.xattr.user.g", b"1")], typeflag=b"g")
        + member(b"a", uname=b"header")
        + pax([(b"uname", b"local")])
        + member(b"b", uname=b"header")
        + pax([(b"uname", b"")])
        + member(b"c", uname=b"header")
        + pax([(b"uname", b"next"), (b"SCHILY.xattr.user.g", b"")], typeflag=b"g")
        + member(b"d")
        + member(b"e", uname=b"header")
        + end()
    )

    entries, _, _ = read_all(data)

    assert [entry.uname for entry in entries] == [
        b"global",
        b"local",
        b"header",
        b"next",
        b"next",
    ]
    assert [entry.xattrs for entry in entries] == [{b"user.g": b"1"}] * 3 + [{}] * 2
    assert entries[2].pax == {b"SCHILY.xattr.user.g": b"1"}
    assert entries[3].pax == {b"uname": b"next"}


def test_local_empty_xattr_overrides_global() -> None:
    data = (
        pax([(b"SCHILY.xattr.user.a", b"global")], typeflag=b"g")
        + pax([(b"SCHILY.xattr.user.a", b"")])
        + member(b"f")
        + end()
    )

    entries, _, _ = read_all(data)

    assert entries[0].xattrs == {b"user.a": b""}


def test_global_record_limit() -> None:
    records = [(b"k%d" % index, b"v") for index in range(1025)]
    data = pax(records, typeflag=b"g") + member(b"f") + end()

    assert _error(data) == (
        "invalid tar header at offset 0 in test.tar: more than 1024 global PAX"
        " records in force"
    )


# GNU long names


def test_gnu_long_name_and_link() -> None:
    name = b"d" * 99 + b"/" + b"n" * 200
    target = b"t" * 300
    data = (
        long_name(target, b"K")
        + long_name(name)
        + header(b"truncated", typeflag=b"2", magic=GNU)
        + end()
    )

    entries, _, _ = read_all(data)

    assert entries[0].name == name
    assert entries[0].linkname == target
    assert entries[0].raw_header == data[: len(data) - 1024]


def test_long_name_wins_over_pax_path() -> None:
    data = (
        pax([(b"path", b"from-pax"), (b"linkpath", b"pax-link")])
        + long_name(b"from-long-name")
        + long_name(b"long-link", b"K")
        + header(b"h", typeflag=b"1")
        + end()
    )

    entries, _, _ = read_all(data)

    assert entries[0].name == b"from-long-name"
    assert entries[0].linkname == b"long-link"


# Old GNU sparse


def _sparse_pairs(regions: list[tuple[int, int]]) -> bytes:
    return b"".join(octal(offset, 12) + octal(length, 12) for offset, length in regions)


def _old_sparse(
    name: bytes,
    regions: list[tuple[int, int]],
    real_size: int,
    *,
    extended: bool = False,
    stored: int | None = None,
) -> bytes:
    if stored is None:
        stored = sum(length for _, length in regions)
    raw_at = {386: _sparse_pairs(regions[:4]), 483: octal(real_size, 12)}
    if extended:
        raw_at[482] = b"\x01"
    return header(name, typeflag=b"S", size=stored, magic=GNU, raw_at=raw_at)


def _extension(regions: list[tuple[int, int]], extended: bool = False) -> bytes:
    block = bytearray(BLOCK)
    pairs = _sparse_pairs(regions)
    block[: len(pairs)] = pairs
    block[504] = 1 if extended else 0
    return bytes(block)


def test_old_gnu_sparse_with_extensions() -> None:
    regions = [(index * 10000, 100) for index in range(30)]
    content = bytes(range(250)) * 12
    data = (
        _old_sparse(b"sparse", regions, 400_000, extended=True)
        + _extension(regions[4:25], extended=True)
        + _extension(regions[25:])
        + pad(content)
        + end()
    )

    entries, contents, _ = read_all(data)

    entry = entries[0]
    assert entry.kind is EntryKind.FILE
    assert entry.sparse == regions
    assert (entry.size, entry.data_size) == (400_000, 3000)
    assert contents == [content]
    assert len(entry.raw_header) == 3 * BLOCK


def test_old_gnu_sparse_drops_end_marker() -> None:
    regions = [(0, 512), (4096, 0)]
    data = _old_sparse(b"s", regions, 4096) + pad(b"x" * 512) + end()

    entries, _, _ = read_all(data)

    assert entries[0].sparse == [(0, 512)]
    assert entries[0].size == 4096


def test_old_gnu_sparse_extension_after_short_map(tmp_path: Path) -> None:
    header_block = _old_sparse(b"s", [(0, 3)], 200, extended=True, stored=6)
    data = header_block + _extension([(100, 3)]) + pad(b"abcdef") + end()
    path = tmp_path / "old-sparse.tar"
    path.write_bytes(data)

    entries, contents, _ = read_all(data)
    oracle = read_with_libarchive(str(path))

    assert entries[0].sparse == [(0, 3), (100, 3)]
    assert oracle[0].sparse == [(0, 3), (100, 3)]
    assert contents == [b"abcdef"]


def test_old_gnu_sparse_pairs_end_at_nul_offset() -> None:
    block = bytearray(_extension([(100, 3)]))
    block[:12] = bytes(12)  # a NUL offset ends this block's pairs
    header_block = _old_sparse(b"s", [(0, 6)], 200, extended=True)
    data = header_block + bytes(block) + pad(b"abcdef") + end()

    entries, _, _ = read_all(data)

    assert entries[0].sparse == [(0, 6)]


def test_old_gnu_sparse_needs_gnu_magic() -> None:
    block = header(b"s", typeflag=b"S", raw_at={483: octal(0, 12)})

    assert _error(block + end()) == (
        "invalid tar header for 's' at offset 0 in test.tar: old GNU sparse"
        " header without the GNU magic"
    )


def test_old_gnu_sparse_with_pax_map_rejected() -> None:
    records = [(b"GNU.sparse.size", b"1"), (b"GNU.sparse.map", b"")]
    data = pax(records) + _old_sparse(b"s", [], 0) + end()

    assert _error(data) == (
        "invalid tar header for 's' at offset 1024 in test.tar: entry has both"
        " an old GNU and a PAX sparse map"
    )


# PAX sparse


def test_pax_sparse_0_0() -> None:
    records = [
        (b"GNU.sparse.size", b"9000000000"),
        (b"GNU.sparse.numblocks", b"2"),
        (b"GNU.sparse.offset", b"0"),
        (b"GNU.sparse.numbytes", b"3"),
        (b"GNU.sparse.offset", b"8999999998"),
        (b"GNU.sparse.numbytes", b"2"),
    ]
    data = pax(records) + member(b"s", b"abcde") + end()

    entries, contents, _ = read_all(data)

    assert entries[0].sparse == [(0, 3), (8_999_999_998, 2)]
    assert (entries[0].size, entries[0].data_size) == (9_000_000_000, 5)
    assert contents == [b"abcde"]


def test_pax_sparse_0_1_with_name() -> None:
    records = [
        (b"GNU.sparse.size", b"100"),
        (b"GNU.sparse.numblocks", b"2"),
        (b"GNU.sparse.name", b"real/name"),
        (b"GNU.sparse.map", b"10,2,98,2"),
    ]
    data = (
        pax(records)
        + long_name(b"long")
        + member(b"./GNUSparseFile.1/name", b"wxyz")
        + end()
    )

    entries, contents, _ = read_all(data)

    assert entries[0].name == b"real/name"
    assert entries[0].sparse == [(10, 2), (98, 2)]
    assert (entries[0].size, entries[0].data_size) == (100, 4)
    assert contents == [b"wxyz"]


def test_pax_sparse_1_0_map_in_data() -> None:
    regions = [(index * 4096, 1) for index in range(150)]
    lines = b"150\n" + b"".join(b"%d\n1\n" % offset for offset, _ in regions)
    content = b"z" * 150
    stored = pad(lines) + content
    records = [
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", b"sparse"),
        (b"GNU.sparse.realsize", b"700000"),
    ]
    data = pax(records) + member(b"./GNUSparseFile.7/sparse", stored) + end()

    entries, contents, _ = read_all(data)

    assert len(pad(lines)) == 3 * BLOCK
    entry = entries[0]
    assert entry.name == b"sparse"
    assert entry.sparse == regions
    assert (entry.size, entry.data_size) == (700_000, 150)
    assert contents == [content]
    assert entry.raw_header.endswith(pad(lines))


@pytest.mark.parametrize(
    ("records", "stored", "rule"),
    [
        (
            [(b"GNU.sparse.major", b"2"), (b"GNU.sparse.minor", b"0")],
            b"",
            "unsupported GNU sparse format version b'2.0'",
        ),
        (
            [(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0")],
            b"",
            "GNU sparse entry lacks GNU.sparse.realsize",
        ),
        (
            [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.map", b"1,2,3")],
            b"",
            "GNU.sparse.map has an odd count of numbers",
        ),
        (
            [
                (b"GNU.sparse.size", b"10"),
                (b"GNU.sparse.numblocks", b"2"),
                (b"GNU.sparse.map", b"0,1"),
            ],
            b"x",
            "GNU.sparse.numblocks is 2 but the map has 1 regions",
        ),
        (
            [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.map", b"0,4,2,1")],
            b"12345",
            "sparse region at 2 overlaps or precedes the one ending at 4",
        ),
        (
            [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.map", b"8,4")],
            b"1234",
            "sparse map ends at 12, past the real size 10",
        ),
        (
            [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.map", b"0,4")],
            b"12",
            "sparse map covers 4 bytes but the archive stores 2",
        ),
        (
            [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.offset", b"0")],
            b"",
            "GNU.sparse.offset without its numbytes",
        ),
        (
            [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.numbytes", b"0")],
            b"",
            "GNU.sparse.numbytes without its offset",
        ),
        (
            [(b"GNU.sparse.map", b"0,0")],
            b"",
            "GNU sparse entry lacks GNU.sparse.size",
        ),
    ],
)
def test_pax_sparse_errors(
    records: list[tuple[bytes, bytes]], stored: bytes, rule: str
) -> None:
    data = pax(records) + member(b"s", stored) + end()

    assert _error(data) == (
        f"invalid tar header for 's' at offset 1024 in test.tar: {rule}"
    )


def _sparse_1_0(stored: bytes) -> bytes:
    records = [
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.realsize", b"100"),
    ]
    return pax(records) + member(b"s", stored) + end()


def test_sparse_1_0_map_past_data() -> None:
    assert _error(_sparse_1_0(b"3\n0\n1\n")) == (
        "invalid tar header for 's' at offset 1536 in test.tar: GNU sparse map"
        " runs past the entry's data"
    )


def test_sparse_1_0_invalid_number() -> None:
    assert _error(_sparse_1_0(pad(b"1\n-5\n1\n"))) == (
        "invalid tar header for 's' at offset 1536 in test.tar: invalid number"
        " b'-5' in GNU sparse map"
    )


def test_sparse_region_limit() -> None:
    data = _sparse_1_0(pad(b"5000000\n"))

    assert _error(data, max_sparse_regions=1000) == (
        "invalid tar header for 's' at offset 1536 in test.tar: sparse map has"
        " more than 1000 regions"
    )


def test_sparse_records_on_directory() -> None:
    records = [(b"GNU.sparse.size", b"0"), (b"GNU.sparse.map", b"")]
    data = pax(records) + header(b"d/", typeflag=b"5") + end()

    assert _error(data) == (
        "invalid tar header for 'd/' at offset 1024 in test.tar: GNU sparse"
        " records on an entry without data"
    )


def test_pax_record_count_limit() -> None:
    records = [(b"k", b"")] * 65
    data = pax(records) + member(b"f") + end()

    assert _error(data, max_header_bytes=4096) == (
        "invalid tar header at offset 0 in test.tar: PAX extended header has"
        " more than 64 records"
    )


def test_empty_long_name_keeps_header_name() -> None:
    data = long_name(b"") + member(b"header-name", magic=GNU) + end()

    entries, _, _ = read_all(data)

    assert entries[0].name == b"header-name"
