"""The main job on real images built from Debian's archive.

Each image (debootstrap minbase plus a layer that installs python3 and ping and
deletes files) is converted to file-granular layers and back; the tests check
the round trip's diff_ids, compare an unpack of the converted image with
``umoci raw unpack`` of the original entry by entry, and compare the CIDs that
``ipcs-fs ls --json`` shows with those of an independent UnixFS importer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.debian_images import ensure_image
from fixtures.tree import diff, snapshot
from ipcs_fs.cli import main
from ipcs_fs.oci.descriptor import ImageConfig, Manifest
from tests.unixfs.conftest import oracle  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking needs root"),
]

IMAGES = ["debian-bookworm", "debian-trixie"]


@dataclass
class Converted:
    original: str
    converted: str
    restored: str
    store: Path
    unpacked: Path
    layout: Path


def _run(capsys, *argv: str) -> str:
    capsys.readouterr()
    status = main(list(argv))
    output = capsys.readouterr()
    assert status == 0, output.err
    return output.out


@pytest.fixture(scope="module", params=IMAGES)
def converted(request, tmp_path_factory) -> Converted:
    paths = ensure_image(request.param)
    base = tmp_path_factory.mktemp(request.param)
    original = f"oci:{paths.layout_dir}:{paths.tag}"
    result = Converted(
        original=original,
        converted=f"oci:{base / 'converted'}:latest",
        restored=f"oci:{base / 'restored'}:latest",
        store=base / "store",
        unpacked=base / "unpacked",
        layout=base / "restored",
    )
    status = main(
        [
            "--store",
            str(result.store),
            "convert",
            "--file-granular",
            original,
            result.converted,
        ]
    )
    assert status == 0
    status = main(
        [
            "--store",
            str(result.store),
            "convert",
            "--tar",
            result.converted,
            result.restored,
        ]
    )
    assert status == 0
    status = main(
        ["--store", str(result.store), "unpack", result.converted, str(result.unpacked)]
    )
    assert status == 0
    return result


def _single_manifest(layout: Path) -> tuple[Manifest, ImageConfig]:
    index = json.loads((layout / "index.json").read_bytes())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = Manifest.from_bytes(
        (layout / "blobs" / "sha256" / manifest_digest).read_bytes()
    )
    config_bytes = (
        layout / "blobs" / "sha256" / manifest.config.digest.hex
    ).read_bytes()
    return manifest, ImageConfig.from_bytes(config_bytes)


def test_round_trip_restores_every_diff_id(converted: Converted) -> None:
    manifest, config = _single_manifest(converted.layout)

    assert len(manifest.layers) == len(config.diff_ids) == 2
    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        blob = converted.layout / "blobs" / "sha256" / layer.digest.hex
        with gzip.open(blob) as tar:
            digest = hashlib.file_digest(tar, "sha256").hexdigest()
        assert f"sha256:{digest}" == str(diff_id)


def test_unpack_equals_umoci_reference(converted: Converted, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    image = converted.original.removeprefix("oci:")
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", image, str(reference)],
        check=True,
        capture_output=True,
    )

    differences = diff(snapshot(reference), snapshot(converted.unpacked))

    assert differences == []


def test_ping_keeps_its_capability(converted: Converted) -> None:
    import xattr

    ping = converted.unpacked / "usr" / "bin" / "ping"
    capability = xattr.getxattr(str(ping), "security.capability", symlink=True)
    assert capability[:4] in (b"\x01\x00\x00\x02", b"\x00\x00\x00\x03")


def test_ls_cids_equal_independent_importer(
    converted: Converted,
    capsys,
    oracle,  # noqa: F811
) -> None:
    output = _run(
        capsys, "--store", str(converted.store), "ls", "--json", converted.converted
    )
    rows = [json.loads(line) for line in output.splitlines()]
    # Later layers come later in the listing, so the top layer's CID wins,
    # which is the file that the unpacked tree holds.
    files = {
        row["path"]: row["cid"]
        for row in rows
        if row["type"] == "file" and "path_base64" not in row
    }
    files = {
        path: cid
        for path, cid in files.items()
        if (converted.unpacked / path).is_file()
        and not (converted.unpacked / path).is_symlink()
    }
    # Every file over one chunk, and a spread of the small ones.
    large = sorted(path for path in files if _size(converted, path) > 262144)
    small = sorted(path for path in files if path not in large)[::25]
    sample = large + small
    assert len(large) > 10

    expected = oracle([converted.unpacked / path for path in sample], 262144)

    assert [files[path] for path in sample] == expected


def _size(converted: Converted, path: str) -> int:
    return (converted.unpacked / path).lstat().st_size
