"""TarReader on randomly damaged tars: an exact round trip or one clear error.

Whatever the damage, reading must either give pieces that rebuild the input
byte for byte or raise InvalidArgumentError. Any other exception is a bug.
"""

from __future__ import annotations

import io
import random

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.tar import TarReader

from .tarbuild import BLOCK, GNU, end, header, long_name, member, octal, pad, pax


def _seed_archives() -> list[bytes]:
    sparse_records = [
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", b"sparse"),
        (b"GNU.sparse.realsize", b"9000"),
    ]
    old_sparse = header(
        b"old",
        typeflag=b"S",
        size=6,
        magic=GNU,
        raw_at={386: octal(0, 12) + octal(6, 12), 483: octal(8192, 12)},
    )
    return [
        pax([(b"comment", b"c")], typeflag=b"g")
        + pax([(b"path", b"p" * 200), (b"SCHILY.xattr.user.a", b"x\ny\x00")])
        + member(b"f", b"data" * 100)
        + member(b"g", b"z")
        + end(),
        long_name(b"n" * 300)
        + long_name(b"t" * 150, b"K")
        + header(b"l", typeflag=b"2", magic=GNU)
        + member(b"h", b"h" * 700, magic=GNU)
        + end(20),
        pax(sparse_records)
        + member(b"./GNUSparseFile.1/sparse", pad(b"2\n0\n3\n8000\n2\n") + b"abcde")
        + old_sparse
        + pad(b"123456")
        + end(1),
    ]


def _mutate(data: bytearray, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data) + 1)
        choice = rng.random()
        if choice < 0.5 and position < len(data):
            data[position] = rng.randrange(256)
        elif choice < 0.7:
            data[position : position + 8] = bytes(
                rng.choice(b"0123456789 =\n\x00\x80\xff") for _ in range(8)
            )
        elif choice < 0.85:
            del data[position:]
        else:
            data[position:position] = rng.randbytes(rng.randint(1, 600))
    # Fix the checksums, so that most damage reaches past them.
    for start in range(0, len(data) - BLOCK + 1, BLOCK):
        block = data[start : start + BLOCK]
        if block[257:262] == b"ustar":
            block[148:156] = b" " * 8
            data[start + 148 : start + 156] = b"%06o\x00 " % sum(block)
    return bytes(data)


def test_damaged_tars_fail_cleanly() -> None:
    rng = random.Random(20240601)
    seeds = _seed_archives()
    outcomes = {"read": 0, "rejected": 0}

    for _ in range(3000):
        data = _mutate(bytearray(rng.choice(seeds)), rng)
        reader = TarReader(io.BytesIO(data), max_header_bytes=1 << 16)
        pieces = []
        try:
            for entry in reader:
                pieces.append(entry.raw_header + reader.read_data())
        except InvalidArgumentError:
            outcomes["rejected"] += 1
            continue
        assert reader.trailer is not None
        assert b"".join(pieces) + reader.trailer == data
        outcomes["read"] += 1

    assert outcomes["read"] > 1000
    assert outcomes["rejected"] > 1000
