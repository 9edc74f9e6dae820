"""OCI input and output against real images, skopeo and umoci.

The image is the Debian bookworm image that ``fixtures.debian_images`` builds
with debootstrap and umoci (cached; the first build takes minutes and needs
deb.debian.org). skopeo 1.9 and umoci come from Debian.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fixtures.debian_images import ImagePaths, cache_root, ensure_image
from ipcs_fs.ids import Digest
from ipcs_fs.oci import (
    IPCS_FS_LAYER,
    Compression,
    open_sink,
    open_source,
    open_uncompressed,
)

pytestmark = pytest.mark.integration

SKIPPABLE_MAGIC_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC = 0x184D2A50


@functools.cache
def debian_image() -> ImagePaths:
    return ensure_image("debian-bookworm")


def debian_archive() -> str:
    return debian_image().archive_reference


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def _diff_id_of(source, layer) -> tuple[Digest, Compression]:
    sha256 = hashlib.sha256()
    buffer = bytearray(1 << 20)
    with open_uncompressed(source.open_blob(layer), layer.media_type) as stream:
        while count := stream.readinto(buffer):
            sha256.update(memoryview(buffer)[:count])
        return Digest.from_hash(sha256), stream.compression


@functools.cache
def zstd_chunked_layout() -> Path:
    """Return a layout of the Debian image that skopeo recompressed as zstd:chunked.

    zstd:chunked puts its table of contents in skippable frames. The layout is
    cached by the digest of the source archive, because recompressing takes
    about a minute.
    """
    archive = debian_archive()
    key = hashlib.sha256(debian_image().archive_path.read_bytes()).hexdigest()[:16]
    layout = cache_root() / "oci-tests" / f"zstd-chunked-{key}"
    if layout.is_dir():
        return layout
    layout.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=layout.parent, prefix=".build-"))
    _run(
        "skopeo",
        "copy",
        "--dest-compress",
        "--dest-compress-format",
        "zstd:chunked",
        archive,
        f"oci:{building / 'layout'}:latest",
    )
    os.rename(building / "layout", layout)
    shutil.rmtree(building)
    return layout


def test_debian_gzip_layers_match_diff_ids():
    with open_source(debian_archive()) as source:
        (ref,) = source.manifests()

        results = [_diff_id_of(source, layer) for layer in ref.manifest.layers]

    assert ref.config is not None
    assert len(results) == 2
    assert [diff_id for diff_id, _ in results] == list(ref.config.diff_ids)
    assert [compression for _, compression in results] == [Compression.GZIP] * 2


def test_zstd_chunked_layers_match_diff_ids():
    layout = zstd_chunked_layout()

    with open_source(f"oci:{layout}:latest") as source:
        (ref,) = source.manifests()
        layers = ref.manifest.layers

        results = [_diff_id_of(source, layer) for layer in layers]

    assert [layer.media_type for layer in layers] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"
    ] * 2
    assert [diff_id for diff_id, _ in results] == list(ref.config.diff_ids)
    assert [compression for _, compression in results] == [Compression.ZSTD] * 2


def test_zstd_chunked_blob_has_skippable_frame():
    # Guards the test above: the table of contents that the annotation points
    # at must sit in a skippable frame, or the blob would not exercise them.
    layout = zstd_chunked_layout()
    with open_source(f"oci:{layout}:latest") as source:
        layer = source.manifests()[0].manifest.layers[0]
    position = layer.annotations["io.containers.zstd-chunked.manifest-position"]
    offset = int(position.split(":")[0])

    with open(layout / "blobs/sha256" / layer.digest.hex, "rb") as blob:
        blob.seek(offset - 8)
        header = blob.read(8)

    magic = int.from_bytes(header[:4], "little")
    assert magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC


def _write_converted(source_reference: str, sink_reference: str):
    with open_source(source_reference) as source, open_sink(sink_reference) as sink:
        replacements = {}
        for ref in source.manifests():
            layers = tuple(
                sink.put_blob(f"root of {layer.digest}".encode(), IPCS_FS_LAYER)
                for layer in ref.manifest.layers
            )
            replacements[ref.descriptor.digest] = dataclasses.replace(
                ref.manifest, layers=layers
            )
        return sink.write_image(source.image(), source, replacements)


def test_skopeo_copies_converted_layout(tmp_path):
    root = _write_converted(debian_archive(), f"oci:{tmp_path / 'converted'}:v1")

    _run(
        "skopeo",
        "copy",
        f"oci:{tmp_path / 'converted'}:v1",
        f"oci:{tmp_path / 'copy'}:v1",
    )

    index = json.loads((tmp_path / "copy/index.json").read_text())
    assert [entry["digest"] for entry in index["manifests"]] == [str(root.digest)]
    manifest = json.loads(
        (tmp_path / "copy/blobs/sha256" / root.digest.hex).read_bytes()
    )
    assert [layer["mediaType"] for layer in manifest["layers"]] == [IPCS_FS_LAYER] * 2


def test_skopeo_reads_our_archive(tmp_path):
    archive = tmp_path / "out.tar"
    root = _write_converted(debian_archive(), f"oci-archive:{archive}:v1")

    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}:v1"],
        check=True,
        capture_output=True,
    ).stdout

    assert Digest.of(raw) == root.digest


def test_umoci_lists_converted_layout(tmp_path):
    _write_converted(debian_archive(), f"oci:{tmp_path / 'converted'}:v1")

    tags = _run("umoci", "ls", "--layout", str(tmp_path / "converted"))

    assert tags.split() == ["v1"]


def test_unchanged_copy_keeps_every_digest(tmp_path):
    with open_source(debian_archive()) as source:
        with open_sink(f"oci:{tmp_path / 'copy'}:latest") as sink:
            root = sink.write_image(source.image(), source)
        original = source.root()

    assert root.digest == original.digest
    copied = sorted(p.name for p in (tmp_path / "copy/blobs/sha256").iterdir())
    assert len(copied) == 4
