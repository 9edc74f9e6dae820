"""A layer that cannot be decompressed: the one-line error names its digest."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ipcs_fs.cli import main
from tests.oci.builders import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    LayoutBuilder,
    layer_tar,
    sha256,
    tagged,
)


def _image_with_layer_blob(root: Path, tar: bytes, blob: bytes) -> str:
    """Write an image whose only layer is ``blob``, declared as gzip of ``tar``."""
    builder = LayoutBuilder(root)
    config = builder.json_blob(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        },
        OCI_CONFIG,
    )
    layer = builder.blob(blob, OCI_LAYER_GZIP)
    manifest = builder.json_blob(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        },
        OCI_MANIFEST,
    )
    builder.write_index_json([tagged(manifest, "bad")])
    return layer["digest"]


def test_truncated_gzip_layer_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = layer_tar({"etc/hostname": b"box\n"})
    truncated = gzip.compress(tar, mtime=0)[:-20]
    digest = _image_with_layer_blob(tmp_path / "original", tar, truncated)

    status = main(
        [
            "--store",
            str(tmp_path / "store"),
            "convert",
            "--file-granular",
            f"oci:{tmp_path / 'original'}:bad",
            f"oci:{tmp_path / 'converted'}:bad",
        ]
    )

    (line,) = capsys.readouterr().err.splitlines()
    assert status != 0
    assert f"failed to decompress gzip layer {digest} at member 1: truncated" in line
