"""The comparison as a JSON document with a stable schema.

``docs/compare.md`` documents every key with an example. Images are named by
their labels everywhere after the ``images`` list. Sizes are exact byte
counts. Paths are text with a leading ``/``; a byte that is not UTF-8 is
written as a ``\\xNN`` escape. Adding a key is a compatible change; renaming
or removing one, or changing its type, raises :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Any

from .model import (
    LEVELS,
    Amount,
    ComparedImage,
    ComparedLayer,
    CompareReport,
    LevelFigures,
    TopFile,
)

__all__ = ["SCHEMA_VERSION", "report_to_json"]

SCHEMA_VERSION = 1

Json = dict[str, Any]


def report_to_json(report: CompareReport) -> Json:
    """Return the report as a JSON-ready dict, keys in a fixed order."""
    labels = [image.label for image in report.images]
    return {
        "schema_version": SCHEMA_VERSION,
        "images": [_image(image) for image in report.images],
        "levels": {name: _level(report.level(name), labels) for name in LEVELS},
        "top": {
            "limit": report.top,
            "shared": [_top_file(file, labels) for file in report.top_shared],
            "unique": [_top_file(file, labels) for file in report.top_unique],
        },
        "seconds": round(report.seconds, 3),
    }


def _image(image: ComparedImage) -> Json:
    return {
        "label": image.label,
        "reference": image.reference,
        "platform": image.platform,
        "manifest": str(image.manifest),
        "layers": [_layer(layer) for layer in image.layers],
    }


def _layer(layer: ComparedLayer) -> Json:
    return {
        "diff_id": str(layer.diff_id),
        "digest": str(layer.digest),
        "media_type": layer.media_type,
        "tar_size": layer.tar_size,
        "root_cid": str(layer.root_cid),
        "read_from": "conversion" if layer.converted else "block store",
    }


def _amount(amount: Amount) -> Json:
    return {"bytes": amount.size, "count": amount.count}


def _level(figures: LevelFigures, labels: list[str]) -> Json:
    return {
        "per_image": [
            {
                "image": label,
                **_amount(amount.held),
                "unique_bytes": amount.unique.size,
                "unique_count": amount.unique.count,
            }
            for label, amount in zip(labels, figures.per_image, strict=True)
        ],
        "union": _amount(figures.union),
        "shared_by_all": _amount(figures.shared_by_all),
        "sum": _amount(figures.total),
        "saving": {
            "bytes": figures.saving,
            "fraction": round(figures.saving_fraction, 6),
        },
        "buckets": [
            {
                "images": [labels[index] for index in bucket.images],
                **_amount(bucket.amount),
            }
            for bucket in figures.buckets
        ],
    }


def _top_file(file: TopFile, labels: list[str]) -> Json:
    return {
        "cid": str(file.cid),
        "size": file.size,
        "images": [labels[index] for index in file.images],
        "paths": {
            labels[index]: [_path(path) for path in paths]
            for index, paths in zip(file.images, file.paths, strict=True)
        },
        "path_counts": {
            labels[index]: count
            for index, count in zip(file.images, file.path_counts, strict=True)
        },
    }


def _path(path: bytes) -> str:
    return "/" + path.decode("utf-8", errors="backslashreplace")
