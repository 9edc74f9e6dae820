"""Unpack an image into an overlayfs upper directory; a child of the suite.

The ipcs-fs containerd plugin writes a layer that has lower layers straight
into the upper directory of containerd's overlayfs snapshot: whiteouts become
0/0 character devices and opaque directories get the ``trusted.overlay.opaque``
xattr (:class:`ipcs_fs.apply.ApplyOptions` with ``overlay_upper``). This runs
that apply path from the embedded store, the way ``ipcs-fs unpack`` runs the
plain-directory one, so the two can be timed as child processes alike::

    .venv/bin/python -m benchmarks.upper STORE IMAGE DIR

No lower directories are given, so the image should have one layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ipcs_fs.apply import ApplyOptions
from ipcs_fs.operations.unpack import unpack_image
from ipcs_fs.store import EmbeddedStore

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Unpack image ``argv[1]`` from store ``argv[0]`` into upper directory ``argv[2]``."""
    store, reference, directory = argv if argv is not None else sys.argv[1:]
    with EmbeddedStore(Path(store)) as blocks:
        unpack_image(
            reference, Path(directory), blocks, options=ApplyOptions(overlay_upper=True)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
