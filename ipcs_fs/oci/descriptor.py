"""OCI descriptors, manifests, indexes and image configurations.

Terms, as in the OCI image specification:

- A *descriptor* points at a blob: its media type, digest and size, and
  optionally annotations, a platform, URLs and an artifact type.
- A *manifest* lists one image's config descriptor and layer descriptors.
- An *index* lists manifests (one per platform) or further indexes. Docker's
  manifest list is read as an index.
- An *image configuration* contains, among much else, ``rootfs.diff_ids``: the
  digest of each layer's uncompressed tar.

Every type keeps the JSON fields it does not model in ``extra``, so rewriting a
manifest loses nothing. A document parsed with ``from_bytes`` also keeps its
original bytes, and its ``to_bytes`` returns them while its value is unchanged,
so an untouched manifest keeps its digest. A copy made with
:func:`dataclasses.replace` does not carry them and is serialised anew.

All types are frozen: derive changed copies with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from ..ids import Digest

__all__ = [
    "ANNOTATION_CONTAINERD_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "dump_json",
    "parse_json_object",
]

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
"""The tag of an entry in an image layout's ``index.json``."""

ANNOTATION_CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
"""The full image name that ``ctr images export`` records beside the tag."""

_Json = dict[str, Any]


def parse_json_object(data: bytes, document_name: str) -> _Json:
    """Parse ``data`` as a JSON object; ``document_name`` names the document in errors."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgumentError(
            f"failed to parse {document_name}: {error}"
        ) from error
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            f"failed to parse {document_name}: expected a JSON object, got {type(value).__name__}"
        )
    return value


def dump_json(value: _Json) -> bytes:
    """Serialise ``value`` as compact UTF-8 JSON, the form registries store."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _string(
    obj: _Json, key: str, document_name: str, *, required: bool = False
) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"invalid {document_name}: {key!r} must be a string")
    return value


def _strings(obj: _Json, key: str, document_name: str) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(
            f"invalid {document_name}: {key!r} must be a list of strings"
        )
    return tuple(value)


def _string_map(obj: _Json, key: str, document_name: str) -> dict[str, str]:
    value = obj.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise InvalidArgumentError(
            f"invalid {document_name}: {key!r} must map strings to strings"
        )
    return dict(value)


def _extra(obj: _Json, known: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in known}


def _put(out: _Json, key: str, value: Any) -> None:
    """Set ``out[key]`` unless ``value`` is empty, as Go's ``omitempty`` does."""
    if value is not None and value != () and value != {}:
        out[key] = value


@dataclass(frozen=True)
class Platform:
    """The platform an image runs on, as an index entry states it."""

    architecture: str
    os: str
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    variant: str | None = None
    features: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN = frozenset(
        {"architecture", "os", "os.version", "os.features", "variant", "features"}
    )

    @classmethod
    def from_json(cls, obj: Any) -> Platform:
        """Build a platform from its JSON object; InvalidArgumentError if malformed."""
        document_name = "platform"
        if not isinstance(obj, dict):
            raise InvalidArgumentError(
                f"invalid {document_name}: expected a JSON object"
            )
        return cls(
            architecture=_string(obj, "architecture", document_name, required=True)
            or "",
            os=_string(obj, "os", document_name, required=True) or "",
            os_version=_string(obj, "os.version", document_name),
            os_features=_strings(obj, "os.features", document_name),
            variant=_string(obj, "variant", document_name),
            features=_strings(obj, "features", document_name),
            extra=_extra(obj, cls._KNOWN),
        )

    def to_json(self) -> _Json:
        """Return the JSON object of this platform, unknown fields last."""
        out: _Json = {"architecture": self.architecture, "os": self.os}
        _put(out, "os.version", self.os_version)
        _put(out, "os.features", list(self.os_features) or None)
        _put(out, "variant", self.variant)
        _put(out, "features", list(self.features) or None)
        out.update(self.extra)
        return out

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob: media type, digest and size, with optional metadata.

    ``data`` is the embedded content exactly as the JSON carries it (base64
    text); nothing here decodes or checks it.
    """

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    data: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN = frozenset(
        {
            "mediaType",
            "digest",
            "size",
            "annotations",
            "platform",
            "urls",
            "artifactType",
            "data",
        }
    )

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """Build a descriptor from its JSON object; InvalidArgumentError if malformed."""
        document_name = "descriptor"
        if not isinstance(obj, dict):
            raise InvalidArgumentError(
                f"invalid {document_name}: expected a JSON object"
            )
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgumentError(
                f"invalid {document_name}: size {size!r} is not a count"
            )
        platform = obj.get("platform")
        return cls(
            media_type=_string(obj, "mediaType", document_name, required=True) or "",
            digest=Digest.parse(
                _string(obj, "digest", document_name, required=True) or ""
            ),
            size=size,
            annotations=_string_map(obj, "annotations", document_name),
            platform=None if platform is None else Platform.from_json(platform),
            urls=_strings(obj, "urls", document_name),
            artifact_type=_string(obj, "artifactType", document_name),
            data=_string(obj, "data", document_name),
            extra=_extra(obj, cls._KNOWN),
        )

    def to_json(self) -> _Json:
        """Return the JSON object of this descriptor, unknown fields last."""
        out: _Json = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        _put(out, "urls", list(self.urls) or None)
        _put(out, "annotations", dict(self.annotations) or None)
        _put(out, "data", self.data)
        _put(out, "platform", self.platform and self.platform.to_json())
        _put(out, "artifactType", self.artifact_type)
        out.update(self.extra)
        return out

    @property
    def ref_name(self) -> str | None:
        """The ``org.opencontainers.image.ref.name`` annotation, if any."""
        return self.annotations.get(ANNOTATION_REF_NAME)


def _schema_version(obj: _Json, document_name: str) -> int:
    version = obj.get("schemaVersion")
    if version != 2:
        raise InvalidArgumentError(
            f"invalid {document_name}: schemaVersion {version!r} is not supported,"
            " expected 2"
        )
    return 2


def _descriptors(obj: _Json, key: str, document_name: str) -> tuple[Descriptor, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidArgumentError(f"invalid {document_name}: {key!r} must be a list")
    return tuple(Descriptor.from_json(item) for item in value)


def _optional_descriptor(obj: _Json, key: str) -> Descriptor | None:
    value = obj.get(key)
    return None if value is None else Descriptor.from_json(value)


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI, or Docker schema 2): a config and its layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str | None = None
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = 2
    _raw: bytes | None = field(default=None, init=False, compare=False, repr=False)

    _KNOWN = frozenset(
        {
            "schemaVersion",
            "mediaType",
            "artifactType",
            "config",
            "layers",
            "subject",
            "annotations",
        }
    )

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a manifest blob and keep its bytes for :meth:`to_bytes`."""
        manifest = cls.from_json(parse_json_object(data, "manifest"))
        object.__setattr__(manifest, "_raw", bytes(data))
        return manifest

    @classmethod
    def from_json(cls, obj: _Json) -> Manifest:
        """Build a manifest from its JSON object; InvalidArgumentError if malformed."""
        document_name = "manifest"
        if obj.get("config") is None:
            raise InvalidArgumentError(f"invalid {document_name}: 'config' is missing")
        return cls(
            config=Descriptor.from_json(obj["config"]),
            layers=_descriptors(obj, "layers", document_name),
            media_type=_string(obj, "mediaType", document_name),
            artifact_type=_string(obj, "artifactType", document_name),
            subject=_optional_descriptor(obj, "subject"),
            annotations=_string_map(obj, "annotations", document_name),
            extra=_extra(obj, cls._KNOWN),
            schema_version=_schema_version(obj, document_name),
        )

    def to_json(self) -> _Json:
        """Return the JSON object of this manifest, unknown fields last."""
        out: _Json = {"schemaVersion": self.schema_version}
        _put(out, "mediaType", self.media_type)
        _put(out, "artifactType", self.artifact_type)
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        _put(out, "subject", self.subject and self.subject.to_json())
        _put(out, "annotations", dict(self.annotations) or None)
        out.update(self.extra)
        return out

    def to_bytes(self) -> bytes:
        """Return the manifest blob: the parsed bytes if unchanged, else new JSON."""
        if self._raw is not None and Manifest.from_bytes(self._raw) == self:
            return self._raw
        return dump_json(self.to_json())


@dataclass(frozen=True)
class Index:
    """An image index (OCI, or a Docker manifest list): one entry per manifest."""

    manifests: tuple[Descriptor, ...]
    media_type: str | None = None
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = 2
    _raw: bytes | None = field(default=None, init=False, compare=False, repr=False)

    _KNOWN = frozenset(
        {
            "schemaVersion",
            "mediaType",
            "artifactType",
            "manifests",
            "subject",
            "annotations",
        }
    )

    @classmethod
    def from_bytes(cls, data: bytes, document_name: str = "index") -> Index:
        """Parse an index blob and keep its bytes for :meth:`to_bytes`."""
        index = cls.from_json(parse_json_object(data, document_name), document_name)
        object.__setattr__(index, "_raw", bytes(data))
        return index

    @classmethod
    def from_json(cls, obj: _Json, document_name: str = "index") -> Index:
        """Build an index from its JSON object; InvalidArgumentError if malformed."""
        return cls(
            manifests=_descriptors(obj, "manifests", document_name),
            media_type=_string(obj, "mediaType", document_name),
            artifact_type=_string(obj, "artifactType", document_name),
            subject=_optional_descriptor(obj, "subject"),
            annotations=_string_map(obj, "annotations", document_name),
            extra=_extra(obj, cls._KNOWN),
            schema_version=_schema_version(obj, document_name),
        )

    def to_json(self) -> _Json:
        """Return the JSON object of this index, unknown fields last."""
        out: _Json = {"schemaVersion": self.schema_version}
        _put(out, "mediaType", self.media_type)
        _put(out, "artifactType", self.artifact_type)
        out["manifests"] = [entry.to_json() for entry in self.manifests]
        _put(out, "subject", self.subject and self.subject.to_json())
        _put(out, "annotations", dict(self.annotations) or None)
        out.update(self.extra)
        return out

    def to_bytes(self) -> bytes:
        """Return the index blob: the parsed bytes if unchanged, else new JSON."""
        if self._raw is not None and Index.from_bytes(self._raw) == self:
            return self._raw
        return dump_json(self.to_json())


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration, parsed only as far as ipcs-fs needs.

    ``raw`` is the blob exactly as stored: conversion never changes the config,
    so it is copied byte for byte and keeps its digest.
    """

    raw: bytes
    document: Mapping[str, Any]
    diff_ids: tuple[Digest, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageConfig:
        """Parse a config blob; InvalidArgumentError if ``rootfs`` is malformed.

        A config without ``rootfs`` (an artifact's empty ``{}``) has no diff_ids.
        """
        document = parse_json_object(data, "image config")
        return cls(bytes(data), document, _diff_ids(document))

    @property
    def digest(self) -> Digest:
        """The digest of :attr:`raw`."""
        return Digest.of(self.raw)

    @property
    def platform(self) -> Platform | None:
        """The platform the config states, or None if it names no OS."""
        os_name = self.document.get("os")
        arch = self.document.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            return None
        variant = self.document.get("variant")
        return Platform(
            arch, os_name, variant=variant if isinstance(variant, str) else None
        )


def _diff_ids(document: _Json) -> tuple[Digest, ...]:
    rootfs = document.get("rootfs")
    if rootfs is None:
        return ()
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
        raise InvalidArgumentError(
            "invalid image config: 'rootfs.diff_ids' must be a list of digests"
        )
    values = rootfs.get("diff_ids", [])
    if not all(isinstance(value, str) for value in values):
        raise InvalidArgumentError(
            "invalid image config: 'rootfs.diff_ids' must be a list of digests"
        )
    return tuple(Digest.parse(value) for value in values)
