"""The public names of ipcs_fs.tar."""

from __future__ import annotations

import ipcs_fs.tar
from ipcs_fs.tar import reader


def test_package_exports() -> None:
    assert sorted(ipcs_fs.tar.__all__) == [
        "EntryKind",
        "ReadableStream",
        "TarEntry",
        "TarReader",
    ]


def test_reader_exports() -> None:
    assert sorted(reader.__all__) == ["ReadableStream", "TarReader"]
