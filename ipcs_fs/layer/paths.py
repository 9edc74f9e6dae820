"""Lexical path rules shared by conversion and listing.

A tar names entries with byte strings such as ``./usr//bin/../lib/x``. Every
path is cleaned as if rooted at ``/``: empty and ``.`` components go, ``..``
removes the previous component and never climbs above the root. The result is a
tuple of components; the empty tuple is the root.
"""

from __future__ import annotations

__all__ = [
    "OPAQUE_MARKER",
    "WHITEOUT_META_PREFIX",
    "WHITEOUT_PREFIX",
    "clean_components",
    "join_components",
]

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
WHITEOUT_META_PREFIX = b".wh..wh."


def clean_components(path: bytes) -> tuple[bytes, ...]:
    """Return the components of ``path`` cleaned lexically inside the root."""
    parts: list[bytes] = []
    for part in path.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def join_components(components: tuple[bytes, ...]) -> bytes:
    """Join components into a root-relative path; the root is ``b"."``."""
    return b"/".join(components) if components else b"."
