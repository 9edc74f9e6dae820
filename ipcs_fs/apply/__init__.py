"""The apply engine: write a layer's changeset into a root directory.

:func:`apply_layer` reads an uncompressed tar stream and applies its entries in
order, either to a complete tree (a native snapshot or a mounted overlay) or,
with ``ApplyOptions(overlay_upper=True)``, to an overlayfs upper directory.
See :mod:`ipcs_fs.apply.engine` for the rules.
"""

from ipcs_fs.apply.engine import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    ApplyOptions,
    ApplyStats,
    apply_entries,
    apply_layer,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "ApplyOptions",
    "ApplyStats",
    "apply_entries",
    "apply_layer",
]
