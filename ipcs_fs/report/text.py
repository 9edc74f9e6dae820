"""The comparison as plain text: one table with the three levels side by side.

Images are named by a letter (A, B, ...; numbers past 26 images) in every
table, and the legend at the top maps each letter to the image's label and
reference. Sizes use decimal units (1 MB = 1,000,000 bytes), as ``convert``
prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .model import LEVELS, CompareReport, TopFile

__all__ = [
    "LEVEL_DEFINITIONS",
    "bucket_rows",
    "figure_rows",
    "format_size",
    "image_keys",
    "render_text",
    "set_name",
    "top_file_path",
]

LEVEL_DEFINITIONS = {
    "layer": "each distinct layer (by diff_id) at its uncompressed tar size",
    "file": "each distinct regular-file content (by CID) at its size, from every"
    " layer of the image",
    "block": "each distinct block (by CID) at its length: raw leaves and dag-pb nodes",
}

_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"))
_COLUMN = 12


def format_size(size: int) -> str:
    """Format ``size`` bytes with a decimal unit: ``0 B``, ``999 B``, ``1.5 kB``."""
    for scale, unit in _UNITS:
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def image_keys(count: int) -> tuple[str, ...]:
    """Return the short names of ``count`` images: letters, or numbers past 26."""
    if count <= 26:
        return tuple(chr(ord("A") + index) for index in range(count))
    return tuple(str(index + 1) for index in range(count))


def set_name(images: Sequence[int], keys: Sequence[str]) -> str:
    """Name a set of images by their keys: ``A+C``."""
    return "+".join(keys[index] for index in images)


def figure_rows(report: CompareReport) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield the rows of the figure table: a label and one cell per level."""
    levels = [report.level(name) for name in LEVELS]
    keys = image_keys(len(report.images))
    for index, key in enumerate(keys):
        amounts = [figures.per_image[index] for figures in levels]
        yield f"held by {key}", _sizes(amount.held.size for amount in amounts)
        yield f"  only in {key}", _sizes(amount.unique.size for amount in amounts)
    yield "sum over images", _sizes(f.total.size for f in levels)
    yield "union (bytes to store all)", _sizes(f.union.size for f in levels)
    yield "shared by all images", _sizes(f.shared_by_all.size for f in levels)
    yield "saving (sum - union)", _sizes(f.saving for f in levels)
    yield "saving fraction", tuple(f"{f.saving_fraction:.1%}" for f in levels)
    yield "distinct items (union)", tuple(str(f.union.count) for f in levels)


def _sizes(sizes: Iterable[int]) -> tuple[str, ...]:
    return tuple(format_size(size) for size in sizes)


def bucket_rows(report: CompareReport) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield one row per set of images that holds something at any level."""
    keys = image_keys(len(report.images))
    levels = [report.level(name) for name in LEVELS]
    by_set = [
        {bucket.images: bucket.amount.size for bucket in f.buckets} for f in levels
    ]
    sets = sorted({images for sizes in by_set for images in sizes}, key=_set_order)
    for images in sets:
        cells = tuple(format_size(sizes.get(images, 0)) for sizes in by_set)
        yield set_name(images, keys), cells


def _set_order(images: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    return len(images), images


def top_file_path(file: TopFile, keys: Sequence[str]) -> str:
    """Return the file's path, or each image's first path when they differ."""
    first = [_path_text(paths[0]) for paths in file.paths if paths]
    if len(set(first)) <= 1:
        return first[0] if first else ""
    return "  ".join(
        f"{keys[image]}:{path}" for image, path in zip(file.images, first, strict=True)
    )


def _path_text(path: bytes) -> str:
    return "/" + path.decode("utf-8", errors="backslashreplace")


def render_text(report: CompareReport) -> str:
    """Return the report as text: legend, figures, buckets and top files."""
    sections = [
        _legend(report),
        _definitions(),
        _table("", _figure_header(), figure_rows(report)),
        _table(
            "Bytes present in exactly these images",
            _figure_header(),
            bucket_rows(report),
        ),
        _top_table("Largest shared files (held by two images or more)", report, True),
        _top_table("Largest unique files (held by one image)", report, False),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _legend(report: CompareReport) -> str:
    layers = sum(len(image.layers) for image in report.images)
    summary = (
        f"Compared {len(report.images)} images ({_count(layers, 'layer')}) in"
        f" {report.seconds:.1f} s."
    )
    lines = [summary]
    keys = image_keys(len(report.images))
    width = max(len(image.label) for image in report.images)
    for key, image in zip(keys, report.images, strict=True):
        lines.append(
            f"  {key:>2}  {image.label:<{width}}  {_count(len(image.layers), 'layer')}"
            f"  {image.reference}"
        )
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _definitions() -> str:
    return "\n".join(f"  {name:<5}  {LEVEL_DEFINITIONS[name]}" for name in LEVELS)


def _figure_header() -> tuple[str, ...]:
    return LEVELS


def _table(
    title: str,
    header: Sequence[str],
    rows: Iterator[tuple[str, tuple[str, ...]]],
) -> str:
    listed = list(rows)
    width = max([len(label) for label, _ in listed] + [10])
    lines = [title] if title else []
    lines.append(" " * width + "".join(f"{name:>{_COLUMN}}" for name in header))
    for label, cells in listed:
        lines.append(
            f"{label:<{width}}" + "".join(f"{cell:>{_COLUMN}}" for cell in cells)
        )
    return "\n".join(lines)


def _top_table(title: str, report: CompareReport, shared: bool) -> str:
    files = report.top_shared if shared else report.top_unique
    if not files:
        return f"{title}: none"
    keys = image_keys(len(report.images))
    lines = [title, f"{'size':>10}  {'images':<8}  path"]
    for file in files:
        images = set_name(file.images, keys)
        lines.append(
            f"{format_size(file.size):>10}  {images:<8}  {top_file_path(file, keys)}"
        )
    return "\n".join(lines)
