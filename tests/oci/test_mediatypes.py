import pytest

from ipcs_fs.errors import UnimplementedError
from ipcs_fs.oci import mediatypes
from ipcs_fs.oci.mediatypes import (
    Compression,
    compression_of,
    is_file_granular,
    is_layer,
    layer_media_type,
)

LAYERS = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb",
    "application/vnd.oci.image.layer.nydus.blob.v1",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
]

NOT_LAYERS = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.in-toto+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.layerx.v1.tar",
    "",
]


@pytest.mark.parametrize("media_type", LAYERS)
def test_is_layer_true(media_type):
    assert is_layer(media_type) is True


@pytest.mark.parametrize("media_type", NOT_LAYERS)
def test_is_layer_false(media_type):
    assert is_layer(media_type) is False


def test_is_file_granular_only_ours():
    assert is_file_granular("application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb")
    assert not is_file_granular("application/vnd.oci.image.layer.v1.tar")
    assert not is_file_granular("application/vnd.oci.image.layer.ipcs-fs.v1")


COMPRESSIONS = [
    ("application/vnd.oci.image.layer.v1.tar", Compression.NONE),
    ("application/vnd.oci.image.layer.v1.tar+gzip", Compression.GZIP),
    ("application/vnd.oci.image.layer.v1.tar+zstd", Compression.ZSTD),
    # Any other suffix is an uncompressed tar to containerd.
    ("application/vnd.oci.image.layer.v1.tar+foo", Compression.NONE),
    ("application/vnd.oci.image.layer.v1.tar+encrypted", Compression.NONE),
    # The last of the sorted suffixes decides: "gzip" sorts after "encrypted".
    ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", Compression.GZIP),
    ("application/vnd.oci.image.layer.v1.tar+zstd+abc", Compression.ZSTD),
    ("application/vnd.oci.image.layer.v1.tar+gzip+zz", Compression.NONE),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar", Compression.NONE),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        Compression.ZSTD,
    ),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression.GZIP),
    ("application/vnd.docker.image.rootfs.diff.tar.zstd", Compression.ZSTD),
    ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression.GZIP),
    ("application/vnd.docker.image.rootfs.diff.tar.gzip+x", Compression.NONE),
    # Docker's uncompressed types leave the decision to the magic bytes.
    ("application/vnd.docker.image.rootfs.diff.tar", None),
    ("application/vnd.docker.image.rootfs.foreign.diff.tar", None),
]


@pytest.mark.parametrize(("media_type", "expected"), COMPRESSIONS)
def test_compression_of(media_type, expected):
    assert compression_of(media_type) is expected


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v2.tar",
    ],
)
def test_compression_of_non_tar_raises(media_type):
    with pytest.raises(UnimplementedError) as caught:
        compression_of(media_type)

    assert str(caught.value) == (
        f"failed to determine compression of media type {media_type!r}: not a tar layer"
    )


def test_layer_media_type_round_trips():
    for compression in Compression:
        assert compression_of(layer_media_type(compression)) is compression
        docker = layer_media_type(compression, docker=True)
        assert is_layer(docker)


def test_nondistributable():
    assert mediatypes.is_nondistributable(mediatypes.OCI_LAYER_NONDISTRIBUTABLE_GZIP)
    assert mediatypes.is_nondistributable(mediatypes.DOCKER_FOREIGN_LAYER_GZIP)
    assert not mediatypes.is_nondistributable(mediatypes.OCI_LAYER_GZIP)
