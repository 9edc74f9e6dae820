"""The files that the benchmark suite measures on, made before its rounds.

Terms:

- base layer: the first layer of the real ``debian-bookworm`` image, a
  tar+gzip blob (:func:`prepare_inputs` builds the images when missing, with
  ``fixtures.debian_images``).
- layer image: a one-layer OCI image layout whose layer is the base layer,
  so that image commands (``ipcs-fs convert``, ``unpack``) work on it alone.
- converted: turned into file-granular layers by ``ipcs-fs convert
  --file-granular``, with the blocks in the suite's embedded store. Made once
  per suite run, outside the timed rounds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.apply import _uncompressed
from fixtures.debian_images import ImagePaths, cache_root, ensure_image
from tests.support import find_program
from tests.support.diff_plugin import convert_image

__all__ = ["Inputs", "prepare_inputs"]

_CLI = [sys.executable, "-m", "ipcs_fs.cli"]
_TAG = "latest"


@dataclass(frozen=True)
class Inputs:
    """Paths and image references of everything the suite reads.

    ``layer_image`` and ``layer_converted`` are ``oci:`` references of the
    layer image and its conversion; ``image_archive`` and ``image_converted``
    are oci-archives of ``debian-bookworm`` and of its conversion. ``store``
    contains the blocks of both conversions; ``empty_store`` contains none.
    ``compare_listing`` names the layer blobs of both compared images,
    NUL-separated, for ``xargs -0``. ``jobs`` is the number of CPUs this
    process may use, the number of layers ``ipcs-fs compare`` converts at once.
    """

    layer_gzip: Path
    layer_tar: Path
    layer_digest: str
    layer_entries: int
    layer_image: str
    layer_converted: str
    store: Path
    empty_store: Path
    image_archive: Path
    image_converted: Path
    compare_images: tuple[str, str]
    compare_listing: Path
    jobs: int
    ipfs: Path

    def describe(self) -> dict[str, object]:
        """Return the base layer's digest, sizes and entry count."""
        return {
            "image": "debian-bookworm",
            "layer": "base layer (the first)",
            "digest": self.layer_digest,
            "gzip_bytes": self.layer_gzip.stat().st_size,
            "tar_bytes": self.layer_tar.stat().st_size,
            "entries": self.layer_entries,
        }


def prepare_inputs(directory: Path) -> Inputs:
    """Build the images if missing and write the suite's inputs into ``directory``.

    ``directory`` must not exist. Raises the error of the first command that
    fails, and :class:`tests.support.ProgramNotFoundError` when kubo's
    ``ipfs`` is not installed.
    """
    directory.mkdir(parents=True)
    bookworm = ensure_image("debian-bookworm")
    rebuild = ensure_image("debian-bookworm-rebuild")
    (layer, diff_id), *_ = _layers(bookworm)
    layer_tar = _uncompressed(layer, cache_root() / "bench")
    layer_image = _one_layer_image(layer, diff_id, directory / "layer-image")
    store = directory / "store"
    layer_converted = f"oci:{directory / 'layer-converted'}:{_TAG}"
    _convert(store, layer_image, layer_converted)
    converted = convert_image("debian-bookworm", store, directory)

    listing = directory / "compare-layers"
    blobs = [blob for image in (bookworm, rebuild) for blob, _ in _layers(image)]
    listing.write_bytes(b"".join(bytes(blob) + b"\0" for blob in blobs))
    return Inputs(
        layer_gzip=layer,
        layer_tar=layer_tar,
        layer_digest=f"sha256:{layer.name}",
        layer_entries=_count_entries(layer_tar),
        layer_image=layer_image,
        layer_converted=layer_converted,
        store=store,
        empty_store=directory / "empty-store",
        image_archive=bookworm.archive_path,
        image_converted=converted.converted,
        compare_images=(bookworm.oci_reference, rebuild.oci_reference),
        compare_listing=listing,
        jobs=len(os.sched_getaffinity(0)),
        ipfs=find_program("ipfs"),
    )


def _layers(image: ImagePaths) -> list[tuple[Path, str]]:
    """Return the blob path and diff_id of each layer of ``image``, lowest first."""
    blobs = image.layout_dir / "blobs" / "sha256"
    index = json.loads((image.layout_dir / "index.json").read_bytes())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    paths = [blobs / layer["digest"][7:] for layer in manifest["layers"]]
    return list(zip(paths, config["rootfs"]["diff_ids"], strict=True))


def _one_layer_image(layer: Path, diff_id: str, directory: Path) -> str:
    """Write an OCI layout whose one layer is the tar+gzip ``layer``; return its reference."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    shutil.copyfile(layer, blobs / layer.name)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    layer_descriptor = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": f"sha256:{layer.name}",
        "size": layer.stat().st_size,
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _blob(blobs, config, "application/vnd.oci.image.config.v1+json"),
        "layers": [layer_descriptor],
    }
    manifest_descriptor = _blob(
        blobs, manifest, "application/vnd.oci.image.manifest.v1+json"
    )
    manifest_descriptor["annotations"] = {"org.opencontainers.image.ref.name": _TAG}
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return f"oci:{directory}:{_TAG}"


def _blob(blobs: Path, document: dict, media_type: str) -> dict[str, object]:
    """Write ``document`` as a JSON blob; return its descriptor."""
    data = json.dumps(document).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _convert(store: Path, source: str, destination: str) -> None:
    command = [*_CLI, "--store", str(store), "convert", "--file-granular"]
    subprocess.run([*command, source, destination], check=True, capture_output=True)


def _count_entries(layer_tar: Path) -> int:
    listing = subprocess.run(
        ["tar", "-tf", layer_tar], check=True, capture_output=True
    ).stdout
    return listing.count(b"\n")
