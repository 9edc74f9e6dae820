"""Small converted images in an embedded store, shared by the operation tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipcs_fs.cli import main
from ipcs_fs.ids import DAG_PB, Cid
from ipcs_fs.oci.transport import open_source
from tests.oci.builders import LayoutBuilder, layer_tar, tagged


@dataclass
class Images:
    """Two converted images that share their first layer."""

    store: Path
    original: str
    one: str
    two: str
    roots_one: list[Cid]
    roots_two: list[Cid]


def layer_roots(reference: str) -> list[Cid]:
    with open_source(reference) as source:
        (ref,) = source.manifests()
        return [Cid.from_digest(layer.digest, DAG_PB) for layer in ref.manifest.layers]


@pytest.fixture
def images(tmp_path: Path) -> Images:
    shared = layer_tar({"etc/os-release": b"ID=test\n", "bin/big": os.urandom(600_000)})
    only_one = layer_tar({"one": b"first image\n", "empty": b""})
    only_two = layer_tar({"two": os.urandom(300_000)})
    builder = LayoutBuilder(tmp_path / "original")
    one = builder.image("amd64", [shared, only_one])
    two = builder.image("amd64", [shared, only_two])
    builder.write_index_json([tagged(one, "one"), tagged(two, "two")])

    store = tmp_path / "store"
    original = f"oci:{tmp_path / 'original'}"
    converted = f"oci:{tmp_path / 'converted'}"
    for tag in ("one", "two"):
        status = main(
            [
                "--store",
                str(store),
                "convert",
                "--file-granular",
                f"{original}:{tag}",
                f"{converted}:{tag}",
            ]
        )
        assert status == 0
    return Images(
        store,
        original,
        f"{converted}:one",
        f"{converted}:two",
        layer_roots(f"{converted}:one"),
        layer_roots(f"{converted}:two"),
    )
