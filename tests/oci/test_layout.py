import io
import json
import logging

import pytest

from ipcs_fs.errors import (
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from ipcs_fs.ids import Digest
from ipcs_fs.oci import open_sink, open_source
from ipcs_fs.oci.descriptor import Descriptor, Platform

from .builders import (
    OCI_INDEX,
    OCI_MANIFEST,
    LayoutBuilder,
    layer_tar,
    multi_platform_layout,
    sha256,
    tagged,
)


def _digest(descriptor: dict) -> Digest:
    return Digest.parse(descriptor["digest"])


def test_read_multi_platform_image(tmp_path):
    built = multi_platform_layout(tmp_path)

    with open_source(f"oci:{tmp_path}:multi") as source:
        image = source.image()
        refs = source.manifests()

    assert image.root.digest == _digest(built["top"])
    assert list(image.indexes) == [_digest(built["top"]), _digest(built["nested"])]
    assert [ref.descriptor.digest for ref in refs] == [
        _digest(built["amd64"]),
        _digest(built["arm64"]),
        _digest(built["riscv"]),
    ]
    assert [str(ref.platform) for ref in refs] == [
        "linux/amd64",
        "linux/arm64",
        "linux/riscv64",
    ]
    assert [ref.parent for ref in refs] == [
        _digest(built["top"]),
        _digest(built["top"]),
        _digest(built["nested"]),
    ]


def test_read_config_and_layers(tmp_path):
    multi_platform_layout(tmp_path)

    with open_source(f"oci:{tmp_path}:multi") as source:
        amd64 = source.manifests()[0]

    assert len(amd64.manifest.layers) == 2
    assert amd64.config is not None
    assert amd64.config.diff_ids == (
        Digest.parse(sha256(layer_tar({"a": b"amd64"}))),
        Digest.parse(sha256(layer_tar({"b": b"2"}))),
    )
    assert amd64.config.digest == amd64.manifest.config.digest


def test_read_single_platform_image(tmp_path):
    built = multi_platform_layout(tmp_path)

    with open_source(f"oci:{tmp_path}:single") as source:
        image = source.image()

    assert image.indexes == {}
    assert image.root.digest == _digest(built["single"])
    assert [ref.parent for ref in image.manifests] == [None]
    assert image.manifests[0].platform == Platform("amd64", "linux")


def test_open_blob_streams_verified_bytes(tmp_path):
    multi_platform_layout(tmp_path)

    with open_source(f"oci:{tmp_path}:single") as source:
        layer = source.manifests()[0].manifest.layers[0]
        with source.open_blob(layer) as stream:
            data = stream.read()

    assert Digest.of(data) == layer.digest
    assert len(data) == layer.size


def _tamper(tmp_path, descriptor: Descriptor, data: bytes) -> None:
    (tmp_path / "blobs" / "sha256" / descriptor.digest.hex).write_bytes(data)


def test_tampered_layer_raises_data_loss(tmp_path):
    multi_platform_layout(tmp_path)
    source = open_source(f"oci:{tmp_path}:single")
    layer = source.manifests()[0].manifest.layers[0]
    original = (tmp_path / "blobs" / "sha256" / layer.digest.hex).read_bytes()
    _tamper(tmp_path, layer, bytes([original[0] ^ 1]) + original[1:])

    with pytest.raises(DataLossError) as caught, source.open_blob(layer) as stream:
        stream.read()

    assert str(caught.value) == (
        f"failed to verify blob {layer.digest} in oci:{tmp_path}:"
        f" content hashes to {sha256(bytes([original[0] ^ 1]) + original[1:])}"
    )


def test_tampered_blob_raises_only_at_end(tmp_path):
    # Larger than the 1 MiB read buffer, so the first read stops short of the end.
    data = bytes(range(256)) * 12288
    builder = LayoutBuilder(tmp_path)
    layer = Descriptor.from_json(builder.blob(data, "application/octet-stream"))
    builder.write_index_json([builder.image("amd64", [layer_tar({"x": b"1"})])])
    _tamper(tmp_path, layer, data[:-1] + bytes([data[-1] ^ 1]))
    source = open_source(f"oci:{tmp_path}")

    with source.open_blob(layer) as stream:
        head = stream.read(10)
        with pytest.raises(DataLossError, match=str(layer.digest)):
            stream.read()

    assert head == data[:10]


def test_truncated_blob_raises_data_loss(tmp_path):
    multi_platform_layout(tmp_path)
    source = open_source(f"oci:{tmp_path}:single")
    layer = source.manifests()[0].manifest.layers[0]
    original = (tmp_path / "blobs" / "sha256" / layer.digest.hex).read_bytes()
    _tamper(tmp_path, layer, original[:-3])

    with pytest.raises(DataLossError) as caught:
        source.read_blob(layer, max_size=None)

    assert str(caught.value) == (
        f"failed to verify blob {layer.digest} in oci:{tmp_path}:"
        f" content ends after {layer.size - 3} of {layer.size} bytes"
    )


def test_longer_blob_raises_data_loss(tmp_path):
    multi_platform_layout(tmp_path)
    source = open_source(f"oci:{tmp_path}:single")
    layer = source.manifests()[0].manifest.layers[0]
    original = (tmp_path / "blobs" / "sha256" / layer.digest.hex).read_bytes()
    _tamper(tmp_path, layer, original + b"extra")

    expected = f"content is longer than the expected {layer.size} bytes"
    with pytest.raises(DataLossError, match=expected):
        source.read_blob(layer, max_size=None)


def test_readinto_verifies(tmp_path):
    multi_platform_layout(tmp_path)
    source = open_source(f"oci:{tmp_path}:single")
    layer = source.manifests()[0].manifest.layers[0]
    buffer = bytearray(7)
    out = io.BytesIO()

    with source.open_blob(layer) as stream:
        while count := stream.readinto(buffer):
            out.write(buffer[:count])

    assert Digest.of(out.getvalue()) == layer.digest


def test_tampered_manifest_fails_image_load(tmp_path):
    built = multi_platform_layout(tmp_path)
    path = tmp_path / "blobs" / "sha256" / built["arm64"]["digest"][7:]
    path.write_bytes(
        path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    )

    with pytest.raises(DataLossError, match=built["arm64"]["digest"]):
        open_source(f"oci:{tmp_path}:multi").image()


def test_missing_blob_not_found(tmp_path):
    built = multi_platform_layout(tmp_path)
    (tmp_path / "blobs" / "sha256" / built["riscv"]["digest"][7:]).unlink()

    with pytest.raises(NotFoundError, match=built["riscv"]["digest"][7:]):
        open_source(f"oci:{tmp_path}:multi").image()


def test_no_tag_with_one_entry_taken(tmp_path):
    builder = LayoutBuilder(tmp_path)
    only = builder.image("amd64", [layer_tar({"x": b"1"})])
    builder.write_index_json([only])

    with open_source(f"oci:{tmp_path}") as source:
        assert source.root().digest == _digest(only)


def test_no_tag_with_several_entries_lists_tags(tmp_path):
    builder = LayoutBuilder(tmp_path)
    one = builder.image("amd64", [layer_tar({"x": b"1"})])
    two = builder.image("arm64", [layer_tar({"x": b"2"})])
    builder.write_index_json([tagged(one, "v1"), tagged(two, "v2"), one])

    with pytest.raises(InvalidArgumentError) as caught:
        open_source(f"oci:{tmp_path}").root()

    assert str(caught.value) == (
        f"failed to choose an image in oci:{tmp_path}: index.json lists 3"
        " entries, name one with :TAG (tags are v1, v2 and 1 untagged entry)"
    )


def test_unknown_tag_lists_tags(tmp_path):
    multi_platform_layout(tmp_path)

    with pytest.raises(NotFoundError) as caught:
        open_source(f"oci:{tmp_path}:v9").root()

    assert str(caught.value) == (
        f"failed to find tag 'v9' in oci:{tmp_path}: tags are multi, single"
    )


def test_empty_layout_has_no_image(tmp_path):
    LayoutBuilder(tmp_path).write_index_json([])

    with pytest.raises(NotFoundError, match="it is empty"):
        open_source(f"oci:{tmp_path}").root()


def test_tag_matches_containerd_image_name(tmp_path):
    builder = LayoutBuilder(tmp_path)
    image = builder.image("amd64", [layer_tar({"x": b"1"})])
    entry = tagged(image, "12")
    entry["annotations"]["io.containerd.image.name"] = "docker.io/library/debian:12"
    builder.write_index_json([entry])

    with open_source(f"oci:{tmp_path}:docker.io/library/debian:12") as source:
        assert source.root().digest == _digest(image)


def test_not_a_layout(tmp_path):
    with pytest.raises(FailedPreconditionError) as caught:
        open_source(f"oci:{tmp_path}")

    assert str(caught.value) == (
        f"failed to open oci:{tmp_path}: not an OCI image layout"
        " (oci-layout is missing)"
    )


def test_layout_version_checked(tmp_path):
    LayoutBuilder(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')

    with pytest.raises(FailedPreconditionError, match="version '2.0.0'"):
        open_source(f"oci:{tmp_path}")


def test_manifest_posing_as_index_rejected(tmp_path):
    builder = LayoutBuilder(tmp_path)
    image = builder.image("amd64", [layer_tar({"x": b"1"})])
    builder.write_index_json([dict(image, mediaType=OCI_INDEX)])

    with pytest.raises(InvalidArgumentError) as caught:
        open_source(f"oci:{tmp_path}").image()

    assert "does not match its media type" in str(caught.value)
    assert image["digest"] in str(caught.value)


def test_nested_indexes_depth_limited(tmp_path):
    builder = LayoutBuilder(tmp_path)
    entry = builder.image("amd64", [layer_tar({"x": b"1"})])
    for _ in range(10):
        entry = builder.index([entry])
    builder.write_index_json([entry])

    with pytest.raises(ResourceExhaustedError, match="nested deeper than 8"):
        open_source(f"oci:{tmp_path}").image()


def test_oversized_manifest_rejected(tmp_path):
    builder = LayoutBuilder(tmp_path)
    image = builder.image("amd64", [layer_tar({"x": b"1"})])
    builder.write_index_json([dict(image, size=5 << 20)])

    with pytest.raises(ResourceExhaustedError, match="exceed the limit of 4194304"):
        open_source(f"oci:{tmp_path}").image()


def test_sink_creates_layout_files(tmp_path):
    destination = tmp_path / "new"

    sink = open_sink(f"oci:{destination}:t")
    blob = sink.put_blob(b"hello", "text/plain")

    path = destination / "blobs/sha256" / blob.digest.hex
    assert (destination / "oci-layout").read_text() == '{"imageLayoutVersion":"1.0.0"}'
    assert path.read_bytes() == b"hello"
    assert oct(path.stat().st_mode) == "0o100644"


def test_commit_without_image_fails(tmp_path):
    sink = open_sink(f"oci:{tmp_path}:t")

    with pytest.raises(FailedPreconditionError) as caught:
        sink.commit()

    assert (
        str(caught.value) == f"failed to commit oci:{tmp_path}:t: no image was written"
    )


def test_sink_rejects_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(
        FailedPreconditionError, match="not empty and has no oci-layout"
    ):
        open_sink(f"oci:{tmp_path}")


def test_put_blob_stream_digest_and_size(tmp_path):
    sink = open_sink(f"oci:{tmp_path}")
    descriptor = sink.put_blob_stream(
        [b"abc", memoryview(b"def")], "text/plain", annotations={"k": "v"}
    )

    assert descriptor == Descriptor(
        "text/plain", Digest.parse(sha256(b"abcdef")), 6, {"k": "v"}
    )
    assert (tmp_path / "blobs/sha256" / descriptor.digest.hex).read_bytes() == b"abcdef"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_stream_leaves_no_blob(tmp_path):
    def chunks():
        yield b"partial"
        raise DataLossError("source broke")

    sink = open_sink(f"oci:{tmp_path}")
    with pytest.raises(DataLossError):
        sink.put_blob_stream(chunks(), "text/plain")

    assert list((tmp_path / "blobs/sha256").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "oci-layout"]


def test_copy_of_tampered_blob_stores_nothing(tmp_path):
    multi_platform_layout(tmp_path / "src")
    source = open_source(f"oci:{tmp_path / 'src'}:single")
    layer = source.manifests()[0].manifest.layers[0]
    _tamper(tmp_path / "src", layer, b"x" * layer.size)
    sink = open_sink(f"oci:{tmp_path / 'dst'}")

    with pytest.raises(DataLossError, match=str(layer.digest)):
        sink.copy_blob(source, layer)

    assert list((tmp_path / "dst/blobs/sha256").iterdir()) == []


def test_index_json_written_with_media_type(tmp_path):
    multi_platform_layout(tmp_path / "src")

    with (
        open_source(f"oci:{tmp_path / 'src'}:single") as source,
        open_sink(f"oci:{tmp_path / 'dst'}:copy") as sink,
    ):
        root = sink.write_image(source.image(), source)

    index = json.loads((tmp_path / "dst/index.json").read_text())
    assert index == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(root.digest),
                "size": root.size,
                "annotations": {"org.opencontainers.image.ref.name": "copy"},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }


def test_warning_for_duplicate_tag(tmp_path, caplog):
    builder = LayoutBuilder(tmp_path)
    one = builder.image("amd64", [layer_tar({"x": b"1"})])
    two = builder.image("arm64", [layer_tar({"x": b"2"})])
    builder.write_index_json([tagged(one, "v1"), tagged(two, "v1")])

    with caplog.at_level(logging.WARNING, logger="ipcs_fs.oci.layout"):
        root = open_source(f"oci:{tmp_path}:v1").root()

    assert root.digest == _digest(one)
    assert caplog.messages == [
        f"tag v1 names 2 entries in oci:{tmp_path}; using the first"
    ]


def test_empty_blob_with_wrong_digest_raises(tmp_path):
    builder = LayoutBuilder(tmp_path)
    builder.write_index_json([])
    wrong = Digest.of(b"not empty")
    (tmp_path / "blobs/sha256" / wrong.hex).write_bytes(b"")
    source = open_source(f"oci:{tmp_path}")

    with pytest.raises(DataLossError) as caught:
        source.read_blob(Descriptor("text/plain", wrong, 0))

    assert str(caught.value) == (
        f"failed to verify blob {wrong} in oci:{tmp_path}:"
        f" content hashes to {sha256(b'')}"
    )


def test_missing_layout_directory_not_found(tmp_path):
    with pytest.raises(NotFoundError) as caught:
        open_source(f"oci:{tmp_path / 'absent'}:v1")

    assert str(caught.value) == (
        f"failed to open oci:{tmp_path / 'absent'}:v1:"
        f" directory {tmp_path / 'absent'} not found"
    )


def test_sink_on_file_rejected(tmp_path):
    (tmp_path / "file").write_text("x")

    with pytest.raises(FailedPreconditionError, match="not a directory"):
        open_sink(f"oci:{tmp_path / 'file'}")


@pytest.mark.parametrize("field", ["manifests", "Manifests", "fsLayers", "history"])
def test_ambiguous_manifest_rejected(tmp_path, field):
    builder = LayoutBuilder(tmp_path)
    image = builder.image("amd64", [layer_tar({"x": b"1"})], **{field: []})
    builder.write_index_json([image])

    with pytest.raises(InvalidArgumentError) as caught:
        open_source(f"oci:{tmp_path}").image()

    assert str(caught.value) == (
        f"failed to load manifest {image['digest']}: the document does not match"
        f" its media type '{OCI_MANIFEST}' (mediaType '{OCI_MANIFEST}',"
        f" fields ['{field}'])"
    )


def test_null_foreign_field_accepted(tmp_path):
    builder = LayoutBuilder(tmp_path)
    image = builder.image("amd64", [layer_tar({"x": b"1"})], manifests=None)
    builder.write_index_json([image])

    with open_source(f"oci:{tmp_path}") as source:
        assert len(source.manifests()) == 1


def test_oversized_index_json_rejected(tmp_path):
    LayoutBuilder(tmp_path)
    (tmp_path / "index.json").write_bytes(b" " * (5 << 20))

    with pytest.raises(ResourceExhaustedError) as caught:
        open_source(f"oci:{tmp_path}").root()

    assert str(caught.value) == (
        f"failed to read index.json of oci:{tmp_path}: larger than the limit"
        " of 4194304 bytes"
    )


def test_untagged_entry_of_same_image_replaced(tmp_path):
    multi_platform_layout(tmp_path / "src")
    destination = tmp_path / "dst"

    for reference in (f"oci:{destination}", f"oci:{destination}:v1"):
        with (
            open_source(f"oci:{tmp_path / 'src'}:single") as source,
            open_sink(reference) as sink,
        ):
            root = sink.write_image(source.image(), source)

    index = json.loads((destination / "index.json").read_text())
    assert [(e["digest"], e.get("annotations")) for e in index["manifests"]] == [
        (str(root.digest), {"org.opencontainers.image.ref.name": "v1"})
    ]
