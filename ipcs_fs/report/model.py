"""The figures of a comparison, computed from what each image holds.

Terms:

- *level*: the unit of sharing that is counted: ``layer``, ``file`` or
  ``block`` (see :mod:`ipcs_fs.report`).
- *item*: one thing counted at a level, under a key (a diff_id or a CID), with
  a size in bytes. An item held twice by one image counts once for it.
- *holding*: the items one image holds at a level, as a mapping from key to
  size.
- *bucket*: the items held by exactly one set of images (no more, no fewer),
  as the original ipcs tool printed unique and shared bytes per image set.
- *union*: every item held by any image, each counted once; the bytes that
  storing all the images takes. *sum*: the holdings added up image by image;
  what storing each image apart takes. *saving*: sum minus union.

Images are numbered by their position in the comparison, from 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..ids import Cid, Digest

__all__ = [
    "LEVELS",
    "MAX_PATHS_PER_IMAGE",
    "Amount",
    "Bucket",
    "CompareReport",
    "ComparedImage",
    "ComparedLayer",
    "FileHolding",
    "ImageAmount",
    "LevelFigures",
    "TopFile",
    "compute_level",
    "top_files",
]

LEVELS = ("layer", "file", "block")
"""The levels, coarsest first."""

MAX_PATHS_PER_IMAGE = 5
"""Paths kept per image for each file of a top list; the count keeps the rest."""

Key = TypeVar("Key", bound=Hashable)
"""The key of an item: a diff_id at the layer level, a CID at the others."""


@dataclass(frozen=True, slots=True)
class Amount:
    """A number of distinct items and their total size in bytes."""

    size: int
    count: int


@dataclass(frozen=True, slots=True)
class ImageAmount:
    """What one image holds at a level, and the part no other image holds."""

    held: Amount
    unique: Amount

    @property
    def shared(self) -> Amount:
        """The part of the holding that at least one other image also holds."""
        return Amount(
            self.held.size - self.unique.size, self.held.count - self.unique.count
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    """The items held by exactly the images ``images`` (ascending indices)."""

    images: tuple[int, ...]
    amount: Amount


@dataclass(frozen=True, slots=True)
class LevelFigures:
    """Every figure of one level.

    ``buckets`` lists each non-empty bucket once, ordered by the number of
    images, then by their indices. ``total`` is the sum over images.
    """

    level: str
    per_image: tuple[ImageAmount, ...]
    union: Amount
    shared_by_all: Amount
    total: Amount
    buckets: tuple[Bucket, ...]

    @property
    def saving(self) -> int:
        """Bytes saved by storing every item once: sum minus union."""
        return self.total.size - self.union.size

    @property
    def saving_fraction(self) -> float:
        """The saving as a fraction of the sum; 0.0 when the sum is 0."""
        if self.total.size == 0:
            return 0.0
        return self.saving / self.total.size


def compute_level(level: str, holdings: Sequence[Mapping[Key, int]]) -> LevelFigures:
    """Compute the figures of ``level`` from each image's holding.

    ``holdings[i]`` maps the key of every item image ``i`` holds to its size.
    A key must have the same size wherever it appears; the first size seen is
    used.
    """
    sizes: dict[Key, int] = {}
    masks: dict[Key, int] = {}
    for index, holding in enumerate(holdings):
        bit = 1 << index
        for key, size in holding.items():
            sizes.setdefault(key, size)
            masks[key] = masks.get(key, 0) | bit

    by_mask: dict[int, list[int]] = {}
    for key, mask in masks.items():
        totals = by_mask.setdefault(mask, [0, 0])
        totals[0] += sizes[key]
        totals[1] += 1
    buckets = tuple(sorted(_buckets(by_mask), key=_bucket_order))
    return _figures(level, len(holdings), buckets)


def _buckets(by_mask: Mapping[int, list[int]]) -> list[Bucket]:
    return [
        Bucket(_indices(mask), Amount(size, count))
        for mask, (size, count) in by_mask.items()
    ]


def _indices(mask: int) -> tuple[int, ...]:
    return tuple(index for index in range(mask.bit_length()) if mask >> index & 1)


def _bucket_order(bucket: Bucket) -> tuple[int, tuple[int, ...]]:
    return len(bucket.images), bucket.images


def _figures(level: str, image_count: int, buckets: tuple[Bucket, ...]) -> LevelFigures:
    everyone = tuple(range(image_count))
    per_image = tuple(_image_amount(index, buckets) for index in everyone)
    shared = [bucket.amount for bucket in buckets if bucket.images == everyone]
    return LevelFigures(
        level=level,
        per_image=per_image,
        union=_add(bucket.amount for bucket in buckets),
        shared_by_all=shared[0] if shared else Amount(0, 0),
        total=_add(amount.held for amount in per_image),
        buckets=buckets,
    )


def _image_amount(index: int, buckets: Sequence[Bucket]) -> ImageAmount:
    held = _add(bucket.amount for bucket in buckets if index in bucket.images)
    unique = _add(bucket.amount for bucket in buckets if bucket.images == (index,))
    return ImageAmount(held, unique)


def _add(amounts: Iterable[Amount]) -> Amount:
    size = count = 0
    for amount in amounts:
        size += amount.size
        count += amount.count
    return Amount(size, count)


@dataclass(frozen=True, slots=True)
class FileHolding:
    """One file content as one image holds it: its size and every path."""

    size: int
    paths: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class TopFile:
    """A file content in a top list, with the images that hold it.

    ``paths[i]`` holds up to :data:`MAX_PATHS_PER_IMAGE` of the paths at
    which ``images[i]`` holds the content, sorted; ``path_counts[i]`` counts
    them all.
    """

    cid: Cid
    size: int
    images: tuple[int, ...]
    paths: tuple[tuple[bytes, ...], ...]
    path_counts: tuple[int, ...]


def top_files(
    holdings: Sequence[Mapping[Cid, FileHolding]], limit: int
) -> tuple[tuple[TopFile, ...], tuple[TopFile, ...]]:
    """Return the ``limit`` largest shared files and the largest unique ones.

    A shared file is held by two images or more, a unique file by exactly one.
    Larger files come first; files of equal size are ordered by CID text, so
    the lists do not depend on the order in which images were read.
    """
    holders: dict[Cid, list[int]] = {}
    for index, holding in enumerate(holdings):
        for cid in holding:
            holders.setdefault(cid, []).append(index)
    shared = [cid for cid, images in holders.items() if len(images) > 1]
    unique = [cid for cid, images in holders.items() if len(images) == 1]
    return (
        _largest(shared, holders, holdings, limit),
        _largest(unique, holders, holdings, limit),
    )


def _largest(
    cids: list[Cid],
    holders: Mapping[Cid, list[int]],
    holdings: Sequence[Mapping[Cid, FileHolding]],
    limit: int,
) -> tuple[TopFile, ...]:
    def order(cid: Cid) -> tuple[int, str]:
        return -holdings[holders[cid][0]][cid].size, str(cid)

    chosen = sorted(cids, key=order)[: max(limit, 0)]
    return tuple(_top_file(cid, holders[cid], holdings) for cid in chosen)


def _top_file(
    cid: Cid, images: list[int], holdings: Sequence[Mapping[Cid, FileHolding]]
) -> TopFile:
    held = [holdings[index][cid] for index in images]
    return TopFile(
        cid=cid,
        size=held[0].size,
        images=tuple(images),
        paths=tuple(tuple(sorted(item.paths)[:MAX_PATHS_PER_IMAGE]) for item in held),
        path_counts=tuple(len(item.paths) for item in held),
    )


@dataclass(frozen=True, slots=True)
class ComparedLayer:
    """One layer of a compared image and where its DAG was read.

    ``converted`` is True when a standard tar layer was converted for the
    comparison, False when a file-granular layer was read from the block store.
    """

    diff_id: Digest
    digest: Digest
    media_type: str
    tar_size: int
    root_cid: Cid
    converted: bool


@dataclass(frozen=True, slots=True)
class ComparedImage:
    """One image of a comparison: its label, reference, manifest and layers."""

    label: str
    reference: str
    platform: str | None
    manifest: Digest
    layers: tuple[ComparedLayer, ...]


@dataclass(frozen=True, slots=True)
class CompareReport:
    """The whole comparison: images, the figures of each level, top files.

    ``levels`` follows :data:`LEVELS`. ``top`` is the limit the top lists were
    made with; ``seconds`` the time the comparison took.
    """

    images: tuple[ComparedImage, ...]
    levels: tuple[LevelFigures, ...]
    top_shared: tuple[TopFile, ...]
    top_unique: tuple[TopFile, ...]
    top: int
    seconds: float

    def level(self, name: str) -> LevelFigures:
        """Return the figures of level ``name``; KeyError if there is none."""
        for figures in self.levels:
            if figures.level == name:
                return figures
        raise KeyError(name)
