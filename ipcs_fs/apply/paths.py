"""Lexical path rules of the apply engine.

Terms:

- *components*: a path as a tuple of byte strings, relative to the root of the
  tree being written. ``()`` is the root itself. Components never contain
  ``b""``, ``b"."``, ``b".."`` or ``b"/"``.
- *cleaning*: turning a tar name into components as if it were rooted, the way
  Go's ``filepath.Clean("/" + name)`` does. Empty and ``.`` components go, and
  ``..`` removes the component before it. At the root ``..`` is dropped, so no
  cleaned path can climb above the root.
- *whiteout*: an entry whose base name starts with ``.wh.``. It deletes the
  name after the prefix from the layers below. ``.wh..wh..opq`` is the opaque
  marker of its directory. Other names that start with ``.wh..wh.`` are
  metadata of the aufs storage driver and carry no meaning here.

These functions touch no file system. Resolving components on disk, with
symbolic links interpreted inside the root, is the job of :mod:`.targets`.
"""

from __future__ import annotations

import enum

__all__ = [
    "OPAQUE_MARKER",
    "ROOT",
    "WHITEOUT_PREFIX",
    "Components",
    "WhiteoutKind",
    "classify_whiteout",
    "clean_link_name",
    "clean_name",
    "display",
    "resolve_symlink",
]

Components = tuple[bytes, ...]
ROOT: Components = ()

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
_AUFS_META_PREFIX = b".wh..wh."


class WhiteoutKind(enum.Enum):
    """Meaning of a base name under the OCI whiteout rules."""

    NONE = "none"
    WHITEOUT = "whiteout"
    OPAQUE = "opaque"
    IGNORED = "ignored"
    INVALID = "invalid"


def clean_name(name: bytes) -> Components:
    """Clean a tar entry name lexically as if it were rooted.

    ``..`` at the root is dropped rather than rejected, so ``../../etc/x``
    becomes ``etc/x``. The result is ``()`` for every spelling of the root
    (``.``, ``./``, ``/``, ``..``).
    """
    # Layer names are mostly "./a/b" or "a/b". Past the "./", the membership
    # tests (run in C) find the rare names that need the loop below.
    if name.startswith(b"./"):
        name = name[2:]
    parts = name.split(b"/")
    if b".." not in parts and b"." not in parts and b"" not in parts:
        return tuple(parts)
    cleaned: list[bytes] = []
    for part in parts:
        if part == b"..":
            if cleaned:
                cleaned.pop()
        elif part and part != b".":
            cleaned.append(part)
    return tuple(cleaned)


def clean_link_name(name: bytes) -> Components | None:
    """Clean a hardlink's target name, or return ``None`` if it climbs out.

    An absolute name is taken relative to the root. Unlike an entry name, a
    ``..`` that would climb above the root makes the whole name invalid: a hard
    link target outside the root cannot be meant, so clamping would link to an
    unrelated file.
    """
    parts: list[bytes] = []
    for part in name.split(b"/"):
        if part == b"..":
            if not parts:
                return None
            parts.pop()
        elif part and part != b".":
            parts.append(part)
    return tuple(parts)


def resolve_symlink(directory: Components, target: bytes) -> Components:
    """Return the components a symbolic link in ``directory`` points to.

    An absolute target is taken relative to the root and ``..`` stops at the
    root, as containerd's ``fs.RootPath`` does. ``..`` is applied lexically,
    which is exact for ``directory`` (it contains no symbolic links) and matches
    containerd for the target's own components.
    """
    if target.startswith(b"/"):
        return clean_name(target)
    return clean_name(b"/".join(directory) + b"/" + target)


def classify_whiteout(base: bytes) -> WhiteoutKind:
    """Classify a base name under the OCI whiteout rules.

    A bare ``.wh.`` and a whiteout of ``.`` or ``..`` are invalid, because they
    would name the directory itself or its parent.
    """
    if not base.startswith(WHITEOUT_PREFIX):
        return WhiteoutKind.NONE
    if base == OPAQUE_MARKER:
        return WhiteoutKind.OPAQUE
    if base.startswith(_AUFS_META_PREFIX):
        return WhiteoutKind.IGNORED
    if base[len(WHITEOUT_PREFIX) :] in (b"", b".", b".."):
        return WhiteoutKind.INVALID
    return WhiteoutKind.WHITEOUT


def display(path: Components | bytes) -> str:
    """Format a path for messages: ``/`` for the root, bytes shown escaped."""
    raw = path if isinstance(path, bytes) else b"/".join(path)
    text = raw.decode("utf-8", "backslashreplace")
    return text or "/"
