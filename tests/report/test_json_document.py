"""The JSON document: its schema (keys, their order and types) and its figures."""

from __future__ import annotations

import json

import pytest
from multiformats import CID, multihash

from ipcs_fs.report import SCHEMA_VERSION, compare_images, report_to_json

from .images import build_images


class MappingOf:
    """A JSON object whose keys are data (image labels), each value of a shape."""

    def __init__(self, value_shape) -> None:
        self.value_shape = value_shape


AMOUNT = {"bytes": int, "count": int}
LEVEL = {
    "per_image": [
        {
            "image": str,
            "bytes": int,
            "count": int,
            "unique_bytes": int,
            "unique_count": int,
        }
    ],
    "union": AMOUNT,
    "shared_by_all": AMOUNT,
    "sum": AMOUNT,
    "saving": {"bytes": int, "fraction": float},
    "buckets": [{"images": [str], "bytes": int, "count": int}],
}
TOP_FILE = {
    "cid": str,
    "size": int,
    "images": [str],
    "paths": MappingOf([str]),
    "path_counts": MappingOf(int),
}
SCHEMA = {
    "schema_version": int,
    "images": [
        {
            "label": str,
            "reference": str,
            "platform": (str, type(None)),
            "manifest": str,
            "layers": [
                {
                    "diff_id": str,
                    "digest": str,
                    "media_type": str,
                    "tar_size": int,
                    "root_cid": str,
                    "read_from": str,
                }
            ],
        }
    ],
    "levels": {"layer": LEVEL, "file": LEVEL, "block": LEVEL},
    "top": {"limit": int, "shared": [TOP_FILE], "unique": [TOP_FILE]},
    "seconds": float,
}


def check_shape(value, shape, where="document"):
    """Assert that ``value`` has ``shape``; return the number of values checked."""
    if isinstance(shape, dict):
        assert isinstance(value, dict), where
        assert list(value) == list(shape), f"keys of {where}"
        return sum(
            check_shape(value[key], shape[key], f"{where}.{key}") for key in shape
        )
    if isinstance(shape, list):
        assert isinstance(value, list), where
        return sum(check_shape(item, shape[0], f"{where}[]") for item in value)
    if isinstance(shape, MappingOf):
        assert isinstance(value, dict), where
        return sum(
            check_shape(item, shape.value_shape, where) for item in value.values()
        )
    assert isinstance(value, shape), f"{where} is {type(value).__name__}"
    assert not isinstance(value, bool), f"{where} is a bool"
    return 1


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    images = build_images(tmp_path_factory.mktemp("images"))
    report = compare_images(images.references, lambda: None, top=3, jobs=1)
    # A round trip through text: the document holds only JSON types.
    return json.loads(json.dumps(report_to_json(report)))


def test_document_matches_schema(document):
    checked = check_shape(document, SCHEMA)

    # Every list is non-empty here, so every shape above was exercised.
    assert checked > 100
    assert document["schema_version"] == SCHEMA_VERSION == 1


def test_document_figures(document):
    file = document["levels"]["file"]

    assert [row["bytes"] for row in file["per_image"]] == [309500, 317000, 306000]
    assert [row["unique_bytes"] for row in file["per_image"]] == [8500, 11000, 0]
    assert file["union"] == {"bytes": 325500, "count": 7}
    assert file["shared_by_all"] == {"bytes": 301000, "count": 2}
    assert file["sum"] == {"bytes": 932500, "count": 13}
    assert file["saving"] == {"bytes": 607000, "fraction": 0.650938}
    assert file["buckets"][0] == {"images": ["a"], "bytes": 8500, "count": 2}
    assert file["buckets"][-1] == {
        "images": ["a", "b", "c"],
        "bytes": 301000,
        "count": 2,
    }


def test_document_layers(document):
    layer = document["levels"]["layer"]
    first = document["images"][0]["layers"][0]

    assert layer["buckets"][-1] == {"images": ["a", "b"], "bytes": 307200, "count": 1}
    assert layer["shared_by_all"] == {"bytes": 0, "count": 0}
    assert first["tar_size"] == 307200
    assert first["read_from"] == "conversion"
    assert first["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert first["root_cid"].startswith("bafybei")
    assert first["diff_id"].startswith("sha256:")


def test_document_top_lists(document):
    top = document["top"]

    assert top["limit"] == 3
    assert top["shared"][0]["size"] == 300000
    assert top["shared"][0]["images"] == ["a", "b", "c"]
    assert top["shared"][0]["paths"] == {
        "a": ["/usr/big"],
        "b": ["/usr/big"],
        "c": ["/usr/big"],
    }
    assert top["unique"][1]["paths"] == {"a": ["/opt/a", "/opt/a2"]}
    assert top["unique"][1]["path_counts"] == {"a": 2}
    # A file of one chunk is its raw leaf: CIDv1, raw codec, sha2-256.
    only_b = CID("base32", 1, "raw", multihash.digest(b"b" * 11000, "sha2-256"))
    assert top["unique"][0]["cid"] == str(only_b)


def test_document_images(document):
    images = document["images"]

    assert [image["label"] for image in images] == ["a", "b", "c"]
    assert [image["platform"] for image in images] == ["linux/amd64"] * 3
    assert [len(image["layers"]) for image in images] == [2, 2, 1]
    assert images[0]["reference"].endswith("/a:latest")
