"""Hand-built OCI image layouts for the tests, written without ipcs_fs.oci.

The JSON is produced with the standard library only, so the tests do not check
the package against itself.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    """Return an uncompressed tar of ``files`` with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class LayoutBuilder:
    """Writes blobs and index.json of an OCI image layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str, **fields: Any) -> dict[str, Any]:
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **fields}

    def json_blob(self, value: Any, media_type: str, **fields: Any) -> dict[str, Any]:
        return self.blob(json.dumps(value).encode(), media_type, **fields)

    def image(
        self, architecture: str, layers: list[bytes], **manifest_fields: Any
    ) -> dict[str, Any]:
        """Write a single-platform image; return its manifest descriptor."""
        diff_ids = [sha256(layer) for layer in layers]
        config = self.json_blob(
            {
                "architecture": architecture,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "config": {"Env": ["PATH=/usr/bin"]},
            },
            OCI_CONFIG,
        )
        layer_descriptors = [
            self.blob(_gzip(layer), OCI_LAYER_GZIP) for layer in layers
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layer_descriptors,
            **manifest_fields,
        }
        platform = {"architecture": architecture, "os": "linux"}
        return self.json_blob(manifest, OCI_MANIFEST, platform=platform)

    def index(self, entries: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
            **fields,
        }
        return self.json_blob(document, OCI_INDEX)

    def write_index_json(self, entries: list[dict[str, Any]]) -> None:
        document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        (self.root / "index.json").write_text(json.dumps(document))


def tagged(descriptor: dict[str, Any], tag: str) -> dict[str, Any]:
    annotations = {**descriptor.get("annotations", {}), REF_NAME: tag}
    return {**descriptor, "annotations": annotations}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def multi_platform_layout(root: Path) -> dict[str, Any]:
    """Write a layout whose tag ``multi`` has amd64, arm64 and a nested index.

    The nested index lists a riscv64 image. Another tag, ``single``, names a
    single-platform image. Returns the descriptors by name.
    """
    builder = LayoutBuilder(root)
    amd64 = builder.image("amd64", [layer_tar({"a": b"amd64"}), layer_tar({"b": b"2"})])
    arm64 = builder.image("arm64", [layer_tar({"a": b"arm64"})])
    riscv = builder.image("riscv64", [layer_tar({"a": b"riscv"})])
    nested = builder.index([riscv], annotations={"nested": "yes"})
    top = builder.index([amd64, arm64, nested], annotations={"org.example.kept": "top"})
    single = builder.image("amd64", [layer_tar({"s": b"single"})])
    builder.write_index_json([tagged(top, "multi"), tagged(single, "single")])
    return {
        "amd64": amd64,
        "arm64": arm64,
        "riscv": riscv,
        "nested": nested,
        "top": top,
        "single": single,
    }
