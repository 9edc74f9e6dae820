"""compare_images on hand-made images: exact bytes at every level."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from ipcs_fs.errors import DataLossError, InvalidArgumentError, NotFoundError
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.operations.convert import convert_image
from ipcs_fs.report import Amount, Bucket, compare_images, image_labels
from ipcs_fs.store import MemoryStore
from tests.oci.builders import LayoutBuilder, tagged

from .images import (
    BASE,
    BIG,
    LAYER_A,
    LAYER_B,
    LAYER_C,
    ONLY_A,
    ONLY_B,
    OS_A,
    SHARED,
    block_sizes,
    build_images,
)


def _no_store():
    raise AssertionError("the comparison opened the block store")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return build_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def report(images):
    return compare_images(images.references, _no_store, top=3, jobs=1)


def test_labels_from_references(report):
    assert [image.label for image in report.images] == ["a", "b", "c"]


def test_layer_level(report):
    layer = report.level("layer")

    assert [amount.held for amount in layer.per_image] == [
        Amount(len(BASE) + len(LAYER_A), 2),
        Amount(len(BASE) + len(LAYER_B), 2),
        Amount(len(LAYER_C), 1),
    ]
    assert layer.union == Amount(
        len(BASE) + len(LAYER_A) + len(LAYER_B) + len(LAYER_C), 4
    )
    assert layer.shared_by_all == Amount(0, 0)
    assert layer.saving == len(BASE)
    assert layer.buckets == (
        Bucket((0,), Amount(len(LAYER_A), 1)),
        Bucket((1,), Amount(len(LAYER_B), 1)),
        Bucket((2,), Amount(len(LAYER_C), 1)),
        Bucket((0, 1), Amount(len(BASE), 1)),
    )


def test_file_level(report):
    file = report.level("file")

    # a: os, big, os_a, only_a (at two paths), empty; b: os, big, only_b,
    # shared, empty; c: os, big, shared. The whiteout, symlink and hardlink
    # are not regular files.
    assert [amount.held for amount in file.per_image] == [
        Amount(309500, 5),
        Amount(317000, 5),
        Amount(306000, 3),
    ]
    assert file.union == Amount(325500, 7)
    assert file.shared_by_all == Amount(301000, 2)
    assert file.total == Amount(932500, 13)
    assert file.saving == 607000
    assert file.saving_fraction == pytest.approx(607000 / 932500)
    assert file.buckets == (
        Bucket((0,), Amount(len(OS_A) + len(ONLY_A), 2)),
        Bucket((1,), Amount(len(ONLY_B), 1)),
        Bucket((0, 1), Amount(0, 1)),
        Bucket((1, 2), Amount(len(SHARED), 1)),
        Bucket((0, 1, 2), Amount(1000 + len(BIG), 2)),
    )


def test_block_level_matches_store(report, images):
    per_image = [block_sizes(tars) for tars in images.tars]
    union = block_sizes(tuple(tar for tars in images.tars for tar in tars))
    block = report.level("block")

    for index, blocks in enumerate(per_image):
        held = block.per_image[index].held
        assert held == Amount(sum(blocks.values()), len(blocks))
    assert block.union == Amount(sum(union.values()), len(union))
    common = set(per_image[0]) & set(per_image[1]) & set(per_image[2])
    assert block.shared_by_all == Amount(sum(union[cid] for cid in common), len(common))
    for bucket in block.buckets:
        inside = set.intersection(*(set(per_image[i]) for i in bucket.images))
        outside = [set(per_image[i]) for i in range(3) if i not in bucket.images]
        exact = inside.difference(*outside)
        assert bucket.amount == Amount(sum(union[cid] for cid in exact), len(exact))


def test_top_lists(report):
    shared = [(file.size, file.images) for file in report.top_shared]
    unique = [(file.size, file.images) for file in report.top_unique]

    assert shared == [(300000, (0, 1, 2)), (5000, (1, 2)), (1000, (0, 1, 2))]
    assert unique == [(11000, (1,)), (7000, (0,)), (1500, (0,))]
    assert report.top_shared[0].paths == ((b"usr/big",),) * 3
    assert report.top_unique[1].paths == ((b"opt/a", b"opt/a2"),)
    assert report.top_unique[1].path_counts == (2,)
    assert report.top_unique[2].paths == ((b"etc/os",),)


def test_top_list_file_cids(report):
    big = report.top_shared[0].cid
    only_b = report.top_unique[0].cid

    assert big.codec_name == "dag-pb"
    assert only_b == Cid.for_block(RAW, ONLY_B)


def test_layers_read_by_conversion(report, images):
    layers = [layer for image in report.images for layer in image.layers]

    assert all(layer.converted for layer in layers)
    assert [layer.tar_size for layer in layers] == [
        len(tar) for tars in images.tars for tar in tars
    ]
    assert str(layers[0].diff_id) == "sha256:" + hashlib.sha256(BASE).hexdigest()
    assert layers[0].root_cid == layers[2].root_cid


def test_worker_processes_give_same_report(report, images):
    parallel = compare_images(images.references, _no_store, top=3, jobs=2)

    assert parallel.levels == report.levels
    assert parallel.top_shared == report.top_shared
    assert parallel.top_unique == report.top_unique
    assert parallel.images == report.images


def test_file_granular_images_from_store(report, images, tmp_path):
    store = MemoryStore()
    converted = []
    for index, reference in enumerate(images.references[:2]):
        destination = f"oci:{tmp_path / 'fg'}{index}:latest"
        convert_image(reference, destination, store, to_tar=False)
        converted.append(destination)
    opened = []

    def open_store():
        opened.append(store)
        return store

    mixed = compare_images([*converted, images.references[2]], open_store, top=3)

    assert len(opened) == 1
    assert mixed.levels == report.levels
    assert mixed.top_shared == report.top_shared
    assert mixed.top_unique == report.top_unique
    flags = [[layer.converted for layer in image.layers] for image in mixed.images]
    assert flags == [[False, False], [False, False], [True]]


def test_file_granular_blocks_missing(images, tmp_path):
    destination = f"oci:{tmp_path / 'fg'}:latest"
    convert_image(images.references[0], destination, MemoryStore(), to_tar=False)

    with pytest.raises(NotFoundError, match="compare with the --store"):
        compare_images([destination, images.references[1]], MemoryStore)


def test_store_converted_writes_blocks(report, images):
    store = MemoryStore()

    stored = compare_images(
        images.references, lambda: store, top=3, store_converted=True
    )

    assert stored.levels == report.levels
    assert store.stat().bytes == report.level("block").union.size
    assert store.stat().blocks == report.level("block").union.count
    roots = {layer.root_cid for image in report.images for layer in image.layers}
    assert set(store.pins()) == roots


def test_oci_archive_source(report, images, tmp_path):
    archive = tmp_path / "c.tar"
    layout = images.references[2].split(":")[1]
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")

    mixed = compare_images(
        [*images.references[:2], f"oci-archive:{archive}:latest"], _no_store, top=3
    )

    assert mixed.levels == report.levels
    assert mixed.images[2].label.endswith("/c.tar")
    assert mixed.images[2].reference == f"oci-archive:{archive}:latest"


def _layout_with_wrong_diff_id(directory) -> str:
    """Write an image whose layer blob holds another tar than its diff_id names."""
    builder = LayoutBuilder(directory)
    manifest = builder.image("amd64", [LAYER_A])
    for blob in (directory / "blobs/sha256").iterdir():
        data = blob.read_bytes()
        if data[:2] == b"\x1f\x8b" and gzip.decompress(data) == LAYER_A:
            blob.write_bytes(gzip.compress(LAYER_B, mtime=0))
    builder.write_index_json([tagged(manifest, "latest")])
    return f"oci:{directory}:latest"


@pytest.mark.parametrize("jobs", [1, 2])
def test_diff_id_mismatch_is_data_loss(images, tmp_path, jobs):
    wrong = _layout_with_wrong_diff_id(tmp_path / "wrong")

    with pytest.raises(DataLossError, match="diff_id"):
        compare_images([images.references[1], wrong], _no_store, jobs=jobs)


def test_labels_given_and_invalid(images):
    given = compare_images(images.references, _no_store, labels=["x", "y", "z"], top=0)

    assert [image.label for image in given.images] == ["x", "y", "z"]
    assert given.top_shared == ()
    with pytest.raises(InvalidArgumentError, match="2 given for 3 images"):
        compare_images(images.references, _no_store, labels=["x", "y"])
    with pytest.raises(InvalidArgumentError, match="must be unique"):
        compare_images(images.references, _no_store, labels=["x", "x", "z"])
    with pytest.raises(InvalidArgumentError, match="invalid top list length -1"):
        compare_images(images.references, _no_store, top=-1)
    with pytest.raises(InvalidArgumentError, match="invalid job count 0"):
        compare_images(images.references, _no_store, jobs=0)


@pytest.mark.parametrize(
    ("references", "expected"),
    [
        (
            [
                "oci:/c/images/debian-bookworm/oci:latest",
                "oci-archive:/c/images/debian-trixie/trixie.oci.tar:latest",
            ],
            ("debian-bookworm", "debian-trixie"),
        ),
        (["oci:/a/img:v1", "oci:/a/img:v2"], ("v1", "v2")),
        (["oci:/a/x:1", "oci:/a/x:2", "oci:/b/x:1"], ("a/x/1", "a/x/2", "b/x/1")),
        (["oci:/a/x", "oci:/a/x"], ("oci:/a/x #1", "oci:/a/x #2")),
        (["oci:/only/one:latest"], ("oci:/only/one:latest",)),
    ],
)
def test_image_labels(references, expected):
    assert image_labels(references) == expected


def test_same_image_twice_shares_everything(images):
    twice = compare_images([images.references[0]] * 2, _no_store, jobs=1)

    for figures in twice.levels:
        assert figures.union == figures.per_image[0].held
        assert figures.shared_by_all == figures.union
        assert figures.saving_fraction == pytest.approx(0.5)
    reference = images.references[0]
    labels = [image.label for image in twice.images]
    assert labels == [f"{reference} #1", f"{reference} #2"]


def test_tar_of_builds_whiteout_as_file():
    # The whiteout in LAYER_B is a regular file in the tar, so only the layer
    # format's reading of ".wh." names keeps it out of the file level.
    with tarfile.open(fileobj=io.BytesIO(LAYER_B)) as tar:
        whiteout = tar.getmember("etc/.wh.os")

    assert whiteout.isreg()
