import dataclasses
import json

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.ids import Digest
from ipcs_fs.oci.descriptor import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

MANIFEST_JSON = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": DIGEST_A,
        "size": 7,
    },
    "layers": [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": DIGEST_B,
            "size": 32,
            "annotations": {"org.example.layer": "one"},
            "urls": ["https://example.invalid/blob"],
            "x-vendor-field": {"kept": [1, 2]},
        }
    ],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    "x-unknown-top": True,
}


def test_descriptor_fields_parsed():
    descriptor = Descriptor.from_json(MANIFEST_JSON["layers"][0])

    assert descriptor.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert descriptor.digest == Digest("b" * 64)
    assert descriptor.size == 32
    assert descriptor.annotations == {"org.example.layer": "one"}
    assert descriptor.urls == ("https://example.invalid/blob",)
    assert descriptor.extra == {"x-vendor-field": {"kept": [1, 2]}}


def test_descriptor_json_round_trip_keeps_unknown():
    value = MANIFEST_JSON["layers"][0]

    assert Descriptor.from_json(value).to_json() == value


def test_platform_round_trip():
    value = {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "os.features": ["x"],
        "os.version": "10.0",
        "features": ["sse4"],
        "x-extra": 1,
    }
    platform = Platform.from_json(value)

    assert platform.to_json() == value
    assert str(platform) == "linux/arm64/v8"


def test_manifest_unchanged_keeps_bytes():
    # Odd spacing and key order: re-serialising would change the digest.
    data = json.dumps(MANIFEST_JSON, indent=3, sort_keys=True).encode()
    manifest = Manifest.from_bytes(data)

    assert manifest.to_bytes() == data


def test_manifest_changed_writes_new_json_with_unknown_fields():
    manifest = Manifest.from_bytes(json.dumps(MANIFEST_JSON).encode())
    new_layer = dataclasses.replace(manifest.layers[0], size=99)

    changed = dataclasses.replace(manifest, layers=(new_layer,))
    written = json.loads(changed.to_bytes())

    expected = json.loads(json.dumps(MANIFEST_JSON))
    expected["layers"][0]["size"] = 99
    assert written == expected


def test_manifest_mutated_annotations_not_stale():
    manifest = Manifest.from_bytes(json.dumps(MANIFEST_JSON).encode())

    manifest.annotations["org.example.added"] = "yes"  # type: ignore[index]

    assert json.loads(manifest.to_bytes())["annotations"]["org.example.added"] == "yes"


def test_index_round_trip():
    value = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": DIGEST_A,
                "size": 10,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
        "annotations": {"a": "b"},
        "x-top": "kept",
    }
    index = Index.from_json(value)

    assert index.to_json() == value
    assert index.manifests[0].platform == Platform("amd64", "linux")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"digest": DIGEST_A, "size": 1}, "'mediaType' must be a string"),
        ({"mediaType": "x", "digest": "md5:00", "size": 1}, "invalid digest 'md5:00'"),
        ({"mediaType": "x", "digest": DIGEST_A, "size": -1}, "size -1 is not a count"),
        ({"mediaType": "x", "digest": DIGEST_A, "size": True}, "size True"),
        (
            {"mediaType": "x", "digest": DIGEST_A, "size": 1, "annotations": {"a": 1}},
            "'annotations' must map strings to strings",
        ),
        ([], "expected a JSON object"),
    ],
)
def test_descriptor_invalid(value, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Descriptor.from_json(value)


def test_manifest_wrong_schema_version():
    value = dict(MANIFEST_JSON, schemaVersion=1)

    with pytest.raises(InvalidArgumentError, match="schemaVersion 1 is not supported"):
        Manifest.from_json(value)


def test_manifest_not_json():
    with pytest.raises(InvalidArgumentError, match="failed to parse manifest"):
        Manifest.from_bytes(b"\xff{")


def test_config_diff_ids_and_raw():
    data = (
        b'{"architecture":"arm64","os":"linux","variant":"v8",'
        b'"rootfs":{"type":"layers","diff_ids":["' + DIGEST_A.encode() + b'"]}}'
    )
    config = ImageConfig.from_bytes(data)

    assert config.diff_ids == (Digest("a" * 64),)
    assert config.raw == data
    assert config.digest == Digest.of(data)
    assert config.platform == Platform("arm64", "linux", variant="v8")


def test_config_without_rootfs_has_no_diff_ids():
    assert ImageConfig.from_bytes(b"{}").diff_ids == ()


def test_config_invalid_diff_id():
    data = b'{"rootfs":{"type":"layers","diff_ids":["sha256:xyz"]}}'

    with pytest.raises(InvalidArgumentError, match="invalid digest 'sha256:xyz'"):
        ImageConfig.from_bytes(data)
