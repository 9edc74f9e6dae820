"""Hand-made images for the comparison tests, with their expected figures.

Three images share content in known ways:

- ``a``: the base layer, then a layer with ``os_a`` over ``etc/os``, ``only_a``
  at two paths, an empty file, a symlink and a hardlink;
- ``b``: the same base layer, then a layer with ``only_b``, ``shared``, an
  empty file and a whiteout;
- ``c``: one layer holding the base layer's files and ``shared`` again, with
  other times, so its diff_id differs from every other layer's.

Each file content is distinct, so the file level is known by hand; the block
level is checked against what a block store holds after converting the same
tars.
"""

from __future__ import annotations

import io
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ipcs_fs.ids import Cid
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.store import MemoryStore
from tests.oci.builders import LayoutBuilder, tagged

__all__ = [
    "BIG",
    "EMPTY",
    "ONLY_A",
    "ONLY_B",
    "OS_A",
    "OS_RELEASE",
    "SHARED",
    "Images",
    "block_sizes",
    "build_images",
    "tar_of",
    "write_image",
]

OS_RELEASE = b"o" * 1000
OS_A = b"A" * 1500
ONLY_A = b"a" * 7000
ONLY_B = b"b" * 11000
SHARED = b"s" * 5000
EMPTY = b""
# Two chunks: a leaf of 262144 bytes, a leaf of 37856 and a node above them.
BIG = random.Random(7).randbytes(300000)


def tar_of(entries: list[tuple], *, mtime: int = 0) -> bytes:
    """Return a PAX tar of ``entries``: ``(name, bytes)`` for a regular file,
    ``(name, "symlink", target)`` or ``(name, "hardlink", target)``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            info.mtime = mtime
            info.mode = 0o644
            if len(entry) == 3:
                info.type = (
                    tarfile.SYMTYPE if entry[1] == "symlink" else tarfile.LNKTYPE
                )
                info.linkname = entry[2]
                tar.addfile(info)
            else:
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


BASE = tar_of([("etc/os", OS_RELEASE), ("usr/big", BIG)])
LAYER_A = tar_of(
    [
        ("etc/os", OS_A),
        ("opt/a", ONLY_A),
        ("opt/a2", ONLY_A),
        ("etc/empty", EMPTY),
        ("bin/sh", "symlink", "dash"),
        ("opt/a-link", "hardlink", "opt/a"),
    ]
)
LAYER_B = tar_of(
    [
        ("opt/b", ONLY_B),
        ("srv/shared", SHARED),
        ("etc/none", EMPTY),
        ("etc/.wh.os", b""),
    ]
)
LAYER_C = tar_of(
    [("etc/os", OS_RELEASE), ("usr/big", BIG), ("srv/shared", SHARED)], mtime=1
)


@dataclass(frozen=True)
class Images:
    """References of the three images and the tars of their layers."""

    references: tuple[str, ...]
    tars: tuple[tuple[bytes, ...], ...]


def write_image(directory: Path, layers: list[bytes]) -> str:
    """Write a single-platform OCI layout of ``layers``; return its reference."""
    builder = LayoutBuilder(directory)
    manifest = builder.image("amd64", layers)
    builder.write_index_json([tagged(manifest, "latest")])
    return f"oci:{directory}:latest"


def build_images(root: Path) -> Images:
    """Write images ``a``, ``b`` and ``c`` under ``root``."""
    tars = ((BASE, LAYER_A), (BASE, LAYER_B), (LAYER_C,))
    references = tuple(
        write_image(root / name, list(layers))
        for name, layers in zip("abc", tars, strict=True)
    )
    return Images(references, tars)


def block_sizes(tars: tuple[bytes, ...]) -> dict[Cid, int]:
    """Convert ``tars`` into a fresh store; map every block it holds to its size."""
    store = MemoryStore()
    for tar in tars:
        convert_layer(io.BytesIO(tar), store.put, source="test layer")
    return {cid: len(store.get(cid)) for cid in store.cids()}
