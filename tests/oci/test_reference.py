from pathlib import Path

import pytest

from ipcs_fs.errors import InvalidArgumentError
from ipcs_fs.oci.reference import (
    ArchiveReference,
    ContainerdReference,
    LayoutReference,
    parse_reference,
)

GOOD = [
    ("oci:/images/debian", LayoutReference(Path("/images/debian"))),
    ("oci:/images/debian:12", LayoutReference(Path("/images/debian"), "12")),
    ("oci:rel/dir:v1.0-rc.1", LayoutReference(Path("rel/dir"), "v1.0-rc.1")),
    (
        "oci:/images:docker.io/library/debian:12",
        LayoutReference(Path("/images"), "docker.io/library/debian:12"),
    ),
    ("oci-archive:/tmp/d.tar", ArchiveReference(Path("/tmp/d.tar"))),
    ("oci-archive:/tmp/d.tar:latest", ArchiveReference(Path("/tmp/d.tar"), "latest")),
    (
        "containerd:docker.io/library/debian:12",
        ContainerdReference("docker.io/library/debian:12"),
    ),
    (
        "containerd:default/docker.io/library/debian:12",
        ContainerdReference("docker.io/library/debian:12", "default"),
    ),
    (
        "containerd:k8s.io/docker.io/library/debian:12",
        ContainerdReference("docker.io/library/debian:12", "k8s.io"),
    ),
    (
        "containerd:k8s.io/localhost:5000/app:1",
        ContainerdReference("localhost:5000/app:1", "k8s.io"),
    ),
    ("containerd:localhost:5000/app:1", ContainerdReference("localhost:5000/app:1")),
    ("containerd:myns/debian:12", ContainerdReference("debian:12", "myns")),
    ("containerd:debian:12", ContainerdReference("debian:12")),
    (
        "containerd:docker.io/library/debian@sha256:" + "ab" * 32,
        ContainerdReference("docker.io/library/debian@sha256:" + "ab" * 32),
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_parse_good_reference(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize(("text", "_"), GOOD)
def test_reference_text_round_trip(text, _):
    assert str(parse_reference(text)) == text


BAD = [
    ("/images/debian", "missing transport"),
    ("docker://debian:12", "unknown transport 'docker'"),
    ("oci:", "empty path"),
    ("oci::12", "empty path"),
    ("oci:/images:", "empty tag after ':'"),
    ("oci:/images:bad tag", "invalid tag 'bad tag'"),
    ("oci:/images:-leading", "invalid tag '-leading'"),
    ("oci:/images:a//b", "invalid tag 'a//b'"),
    ("oci-archive:", "empty path"),
    ("containerd:", "empty image name"),
    ("containerd:bad ns/docker.io/x:1", "invalid containerd namespace 'bad ns'"),
    ("containerd:docker.io/x y:1", "whitespace"),
    ("containerd:-ns/docker.io/x:1", "invalid containerd namespace '-ns'"),
]


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_parse_bad_reference(text, reason):
    with pytest.raises(InvalidArgumentError) as caught:
        parse_reference(text)

    message = str(caught.value)
    assert message.startswith(f"invalid image reference {text!r}: ")
    assert reason in message
    assert message.endswith(
        "expected oci:DIR[:TAG], oci-archive:FILE[:TAG] or containerd:[NAMESPACE/]REF"
    )


def test_namespace_longer_than_76_rejected():
    with pytest.raises(InvalidArgumentError, match="invalid containerd namespace"):
        parse_reference("containerd:" + "n" * 77 + "/docker.io/x:1")


def test_namespace_of_76_accepted():
    reference = parse_reference("containerd:" + "n" * 76 + "/docker.io/x:1")

    assert reference == ContainerdReference("docker.io/x:1", "n" * 76)
