"""The apply engine on the real two-layer Debian image, against GNU tar.

The image comes from ``fixtures/debian_images.py``; the tests skip when it has
not been built, since building needs Debian's archive.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fixtures.debian_images import image_paths
from fixtures.tree import diff, snapshot
from tests.apply.stacks import apply_mounted, apply_overlay

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def _layers() -> list[bytes]:
    layout = image_paths("debian-bookworm").layout_dir
    if not (layout / "index.json").exists():
        pytest.skip("the debian-bookworm image is not built")
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((blobs / manifest_digest).read_text())
    return [
        gzip.decompress((blobs / layer["digest"].split(":")[1]).read_bytes())
        for layer in manifest["layers"]
    ]


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_base_layer_matches_tar(tmp_path: Path) -> None:
    base = _layers()[0]
    archive = tmp_path / "base.tar"
    archive.write_bytes(base)
    by_tar = tmp_path / "tar"
    by_tar.mkdir()
    started = time.time_ns()
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--same-owner",
            "-xf",
            str(archive),
            "-C",
            str(by_tar),
        ],
        check=True,
    )

    by_engine = apply_mounted([base], tmp_path)

    # GNU tar sets a directory's times once an entry outside it follows, so
    # a directory listed before a sibling file and its own children (Carp/,
    # Carp.pm, Carp/Heavy.pm) keeps the time of the extraction there.
    tar_tree = snapshot(by_tar)
    late = [path for path, node in tar_tree.items() if node.mtime_ns >= started]
    ignored = {path: ["mtime_ns"] for path in late}
    assert diff(tar_tree, by_engine, ignore_at=ignored) == []
    assert [p for p in late if by_engine[p].mtime_ns >= started] == []
    assert len(by_engine) > 1000


def test_targets_agree_on_two_layers(tmp_path: Path) -> None:
    layers = _layers()
    (tmp_path / "mounted").mkdir()
    (tmp_path / "overlay").mkdir()

    mounted = apply_mounted(layers, tmp_path / "mounted")
    overlay = apply_overlay(layers, tmp_path / "overlay")

    assert diff(mounted, overlay, ignore_at={b".": ["mtime_ns"]}) == []
    assert b"security.capability" in (mounted[b"usr/bin/ping"].xattrs or {})
    assert b"var/lib/apt/lists/lock" not in mounted
