"""Image references in skopeo's transport syntax.

Accepted forms:

- ``oci:DIR[:TAG]``: an OCI image layout directory. The directory ends at the
  first colon, as in skopeo, so ``DIR`` has no colon and ``TAG`` may contain
  colons and slashes (``oci:/images:docker.io/library/debian:12``).
- ``oci-archive:FILE[:TAG]``: a tar of an OCI image layout, same splitting.
- ``containerd:[NAMESPACE/]REF``: an image in containerd's image store.

A ``TAG`` follows the grammar of the ``org.opencontainers.image.ref.name``
annotation: components of ASCII letters and digits joined by one of
``-._:@+`` or ``--``, separated by ``/``.

Whether ``containerd:a/b/...`` starts with a namespace is decided by the first
component after it: containerd stores images under fully qualified names, whose
first component is a registry host (it contains ``.`` or ``:``, or is
``localhost``). So ``containerd:k8s.io/docker.io/library/debian:12`` is the
namespace ``k8s.io`` and ``containerd:docker.io/library/debian:12`` has no
namespace. A first component that is not a host and is followed by more, as in
``containerd:default/debian:12``, is a namespace too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError

__all__ = [
    "ArchiveReference",
    "ContainerdReference",
    "ImageReference",
    "LayoutReference",
    "parse_reference",
    "validate_tag",
]

_ACCEPTED = "oci:DIR[:TAG], oci-archive:FILE[:TAG] or containerd:[NAMESPACE/]REF"

_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_TAG_PATTERN = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# containerd's namespace rule (namespaces.Validate): at most 76 characters.
_NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_NAMESPACE_MAX_LENGTH = 76
# Image names in containerd's store: no whitespace or control characters.
_CONTAINERD_NAME_PATTERN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class LayoutReference:
    """An image in an OCI image layout directory (``oci:DIR[:TAG]``)."""

    path: Path
    tag: str | None = None

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class ArchiveReference:
    """An image in a tar file of an OCI image layout (``oci-archive:FILE[:TAG]``)."""

    path: Path
    tag: str | None = None

    def __str__(self) -> str:
        return f"oci-archive:{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class ContainerdReference:
    """An image in containerd's image store (``containerd:[NAMESPACE/]REF``).

    ``namespace`` is None when the reference names none; the caller then uses
    its configured namespace.
    """

    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.namespace}/" if self.namespace else ""
        return f"containerd:{prefix}{self.name}"


ImageReference = LayoutReference | ArchiveReference | ContainerdReference


def _invalid(text: str, reason: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"invalid image reference {text!r}: {reason}; expected {_ACCEPTED}"
    )


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid layout tag, else raise InvalidArgumentError."""
    if not _TAG_PATTERN.fullmatch(tag):
        raise InvalidArgumentError(
            f"invalid tag {tag!r}: expected components of letters and digits joined"
            " by one of -._:@+ or --, separated by /"
        )
    return tag


def parse_reference(text: str) -> ImageReference:
    """Parse an image reference in one of the forms the module lists.

    Raises InvalidArgumentError, naming the accepted forms, for anything else:
    an unknown transport, an empty path, a path with no tag after its colon, an
    invalid tag, namespace or containerd name.
    """
    transport, colon, rest = text.partition(":")
    if not colon:
        raise _invalid(text, "missing transport")
    if transport == "oci":
        return LayoutReference(*_parse_path_and_tag(text, rest))
    if transport == "oci-archive":
        return ArchiveReference(*_parse_path_and_tag(text, rest))
    if transport == "containerd":
        return _parse_containerd(text, rest)
    raise _invalid(text, f"unknown transport {transport!r}")


def _parse_path_and_tag(text: str, rest: str) -> tuple[Path, str | None]:
    path, colon, tag = rest.partition(":")
    if not path:
        raise _invalid(text, "empty path")
    if colon and not tag:
        raise _invalid(text, "empty tag after ':'")
    if not tag:
        return Path(path), None
    try:
        validate_tag(tag)
    except InvalidArgumentError as error:
        raise _invalid(text, str(error)) from error
    return Path(path), tag


def _is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def _parse_containerd(text: str, rest: str) -> ContainerdReference:
    head, slash, tail = rest.partition("/")
    next_component, more, _ = tail.partition("/")
    # Only a component followed by "/" can be a host: in "debian:12" the colon
    # introduces a tag, not a port.
    has_namespace = bool(slash) and (
        not _is_host(head) or (bool(more) and _is_host(next_component))
    )
    namespace, name = (head, tail) if has_namespace else (None, rest)
    if namespace is not None and not _valid_namespace(namespace):
        raise _invalid(text, f"invalid containerd namespace {namespace!r}")
    if not _CONTAINERD_NAME_PATTERN.fullmatch(name):
        raise _invalid(text, "empty image name or whitespace in it")
    return ContainerdReference(name, namespace)


def _valid_namespace(namespace: str) -> bool:
    return (
        len(namespace) <= _NAMESPACE_MAX_LENGTH
        and _NAMESPACE_PATTERN.fullmatch(namespace) is not None
    )
