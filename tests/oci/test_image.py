"""Writing images back with manifests replaced, as the converter does."""

import dataclasses
import json

import pytest

from ipcs_fs.errors import FailedPreconditionError, InvalidArgumentError
from ipcs_fs.ids import Digest
from ipcs_fs.oci import IPCS_FS_LAYER, open_sink, open_source
from ipcs_fs.oci.descriptor import Descriptor

from .builders import LayoutBuilder, layer_tar, multi_platform_layout, tagged

REF_NAME = "org.opencontainers.image.ref.name"


def _convert(source, sink):
    """Replace every layer by a small blob of ours; return the replacements."""
    replacements = {}
    for ref in source.manifests():
        layers = []
        for layer in ref.manifest.layers:
            data = b"root block of " + str(layer.digest).encode()
            layers.append(
                sink.put_blob(
                    data, IPCS_FS_LAYER, annotations={"orig": str(layer.digest)}
                )
            )
        replacements[ref.descriptor.digest] = dataclasses.replace(
            ref.manifest, layers=tuple(layers)
        )
    return replacements


def _blob(root, digest) -> bytes:
    return (root / "blobs/sha256" / Digest.parse(str(digest)).hex).read_bytes()


def test_round_trip_unchanged_is_byte_identical(tmp_path):
    built = multi_platform_layout(tmp_path / "src")

    with (
        open_source(f"oci:{tmp_path / 'src'}:multi") as source,
        open_sink(f"oci:{tmp_path / 'dst'}:multi") as sink,
    ):
        root = sink.write_image(source.image(), source)

    assert str(root.digest) == built["top"]["digest"]
    source_blobs = sorted(p.name for p in (tmp_path / "src/blobs/sha256").iterdir())
    single_only = {
        built["single"]["digest"][7:],
    }
    copied = sorted(p.name for p in (tmp_path / "dst/blobs/sha256").iterdir())
    assert set(copied) <= set(source_blobs)
    assert single_only.isdisjoint(copied)
    for name in copied:
        assert _blob(tmp_path / "dst", "sha256:" + name) == _blob(
            tmp_path / "src", "sha256:" + name
        )


def test_converted_image_keeps_platforms_and_config(tmp_path):
    built = multi_platform_layout(tmp_path / "src")

    with (
        open_source(f"oci:{tmp_path / 'src'}:multi") as source,
        open_sink(f"oci:{tmp_path / 'dst'}:converted") as sink,
    ):
        replacements = _convert(source, sink)
        root = sink.write_image(source.image(), source, replacements)

    with open_source(f"oci:{tmp_path / 'dst'}:converted") as result:
        image = result.image()
        refs = result.manifests()
        original = open_source(f"oci:{tmp_path / 'src'}:multi").manifests()

    assert image.root.digest == root.digest
    assert [str(ref.platform) for ref in refs] == [
        "linux/amd64",
        "linux/arm64",
        "linux/riscv64",
    ]
    for new, old in zip(refs, original, strict=True):
        assert new.manifest.config == old.manifest.config
        assert new.config.raw == old.config.raw
        assert [layer.media_type for layer in new.manifest.layers] == [
            IPCS_FS_LAYER
        ] * len(old.manifest.layers)
        assert [layer.annotations["orig"] for layer in new.manifest.layers] == [
            str(layer.digest) for layer in old.manifest.layers
        ]
        assert new.descriptor.platform == old.descriptor.platform
    top = json.loads(_blob(tmp_path / "dst", root.digest))
    assert top["annotations"] == {"org.example.kept": "top"}
    nested = json.loads(_blob(tmp_path / "dst", top["manifests"][2]["digest"]))
    assert nested["annotations"] == {"nested": "yes"}
    assert str(refs[2].parent) == top["manifests"][2]["digest"]
    assert top["manifests"][2]["digest"] != built["nested"]["digest"]


def test_converted_blobs_present(tmp_path):
    multi_platform_layout(tmp_path / "src")

    with (
        open_source(f"oci:{tmp_path / 'src'}:multi") as source,
        open_sink(f"oci:{tmp_path / 'dst'}:converted") as sink,
    ):
        sink.write_image(source.image(), source, _convert(source, sink))

    with open_source(f"oci:{tmp_path / 'dst'}:converted") as result:
        for ref in result.manifests():
            for blob in (ref.manifest.config, *ref.manifest.layers):
                assert Digest.of(result.read_blob(blob)) == blob.digest
        old_layers = [
            layer
            for ref in open_source(f"oci:{tmp_path / 'src'}:multi").manifests()
            for layer in ref.manifest.layers
        ]
        assert not any(result.has_blob(layer.digest) for layer in old_layers)


def test_unknown_manifest_fields_survive_conversion(tmp_path):
    builder = LayoutBuilder(tmp_path / "src")
    image = builder.image(
        "amd64",
        [layer_tar({"x": b"1"})],
        annotations={"org.example.note": "keep me"},
        **{"x-vendor": {"nested": [1, 2, 3]}},
    )
    builder.write_index_json([tagged(image, "v1")])

    with (
        open_source(f"oci:{tmp_path / 'src'}:v1") as source,
        open_sink(f"oci:{tmp_path / 'dst'}:v1") as sink,
    ):
        root = sink.write_image(source.image(), source, _convert(source, sink))

    manifest = json.loads(_blob(tmp_path / "dst", root.digest))
    assert manifest["x-vendor"] == {"nested": [1, 2, 3]}
    assert manifest["annotations"] == {"org.example.note": "keep me"}
    assert manifest["layers"][0]["mediaType"] == IPCS_FS_LAYER


def test_destination_keeps_other_tags(tmp_path):
    multi_platform_layout(tmp_path / "src")
    destination = tmp_path / "dst"

    for tag in ("multi", "single"):
        with (
            open_source(f"oci:{tmp_path / 'src'}:{tag}") as source,
            open_sink(f"oci:{destination}:{tag}") as sink,
        ):
            sink.write_image(source.image(), source)
    with (
        open_source(f"oci:{tmp_path / 'src'}:multi") as source,
        open_sink(f"oci:{destination}:multi") as sink,
    ):
        converted = sink.write_image(source.image(), source, _convert(source, sink))

    index = json.loads((destination / "index.json").read_text())
    assert [(e["annotations"][REF_NAME], e["digest"]) for e in index["manifests"]] == [
        (
            "single",
            json.loads((tmp_path / "src/index.json").read_text())["manifests"][1][
                "digest"
            ],
        ),
        ("multi", str(converted.digest)),
    ]


def test_source_names_dropped_from_root(tmp_path):
    builder = LayoutBuilder(tmp_path / "src")
    image = builder.image("amd64", [layer_tar({"x": b"1"})])
    entry = tagged(image, "12")
    entry["annotations"]["io.containerd.image.name"] = "docker.io/library/debian:12"
    entry["annotations"]["org.example.other"] = "kept"
    builder.write_index_json([entry])

    with (
        open_source(f"oci:{tmp_path / 'src'}") as source,
        open_sink(f"oci:{tmp_path / 'dst'}") as sink,
    ):
        root = sink.write_image(source.image(), source)

    assert root.annotations == {"org.example.other": "kept"}


def test_missing_blob_fails_before_index(tmp_path):
    multi_platform_layout(tmp_path / "src")
    source = open_source(f"oci:{tmp_path / 'src'}:single")
    ref = source.manifests()[0]
    ghost = Descriptor(IPCS_FS_LAYER, Digest.of(b"never stored"), 12)
    replacement = dataclasses.replace(ref.manifest, layers=(ghost,))
    sink = open_sink(f"oci:{tmp_path / 'dst'}:t")

    with pytest.raises(FailedPreconditionError) as caught:
        sink.write_image(source.image(), source, {ref.descriptor.digest: replacement})

    assert str(caught.value) == (
        f"failed to write image: blob {ghost.digest} ({IPCS_FS_LAYER}) is in neither"
        f" the destination nor oci:{tmp_path / 'src'}:single"
    )
    assert not (tmp_path / "dst/index.json").exists()


def test_foreign_layer_without_blob_referenced(tmp_path):
    builder = LayoutBuilder(tmp_path / "src")
    image = builder.image("amd64", [layer_tar({"x": b"1"})])
    builder.write_index_json([image])
    source = open_source(f"oci:{tmp_path / 'src'}")
    ref = source.manifests()[0]
    foreign = Descriptor(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        Digest.of(b"windows base layer"),
        18,
        urls=("https://example.invalid/layer",),
    )
    replacement = dataclasses.replace(ref.manifest, layers=(foreign,))

    with open_sink(f"oci:{tmp_path / 'dst'}") as sink:
        root = sink.write_image(
            source.image(), source, {ref.descriptor.digest: replacement}
        )

    manifest = json.loads(_blob(tmp_path / "dst", root.digest))
    assert manifest["layers"] == [foreign.to_json()]
    assert not sink.has_blob(foreign.digest)


def test_replacement_for_unknown_manifest_rejected(tmp_path):
    multi_platform_layout(tmp_path / "src")
    source = open_source(f"oci:{tmp_path / 'src'}:single")
    stray = Digest.of(b"not a manifest of this image")
    sink = open_sink(f"oci:{tmp_path / 'dst'}")

    with pytest.raises(InvalidArgumentError, match=str(stray)):
        sink.write_image(
            source.image(), source, {stray: source.manifests()[0].manifest}
        )


def test_failed_block_does_not_tag(tmp_path):
    multi_platform_layout(tmp_path / "src")

    with pytest.raises(RuntimeError), open_sink(f"oci:{tmp_path / 'dst'}:t") as sink:
        sink.put_blob(b"half of a conversion", "text/plain")
        raise RuntimeError("conversion failed")

    assert not (tmp_path / "dst/index.json").exists()
