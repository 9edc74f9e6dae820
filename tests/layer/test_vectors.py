"""The committed test vectors of the layer format still hold."""

from __future__ import annotations

import json

import pytest
import zstandard

from fixtures.vectors import CASES, VECTORS, describe

_DOCUMENT = json.loads((VECTORS / "vectors.json").read_text())


@pytest.mark.parametrize("name", sorted(_DOCUMENT["vectors"]))
def test_vector_converts_to_pinned_cids(name: str) -> None:
    expected = _DOCUMENT["vectors"][name]
    data = (VECTORS / expected["tar"]).read_bytes()

    actual = {"tar": expected["tar"], **describe(data)}

    if tuple(_DOCUMENT["zstd"]) != zstandard.ZSTD_VERSION:
        # Another zstd may compress the tar-stream records differently.
        for key in ("tar_stream", "root", "digest"):
            actual.pop(key)
            expected = {k: v for k, v in expected.items() if k != key}
    assert actual == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_vector_tar_matches_generator(name: str) -> None:
    assert (VECTORS / f"{name}.tar").read_bytes() == CASES[name]()


def test_large_file_cid_is_kubos() -> None:
    files = _DOCUMENT["vectors"]["large-file"]["files"]
    assert files == {
        "zeros": "bafybeigllfqgfpqydppr6cmv56g7ax4wyhruzswvcefv6j5kj77nzttfki"
    }


def test_basic_file_cid_is_kubos() -> None:
    files = _DOCUMENT["vectors"]["basic"]["files"]
    assert files == {
        "etc/hello": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    }
