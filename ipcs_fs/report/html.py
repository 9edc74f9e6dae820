"""The comparison as one self-contained HTML page.

The page holds its style and its charts (inline SVG, see
:mod:`ipcs_fs.report.chart`) and refers to nothing outside itself: no script,
font, stylesheet or image is fetched, so it reads the same offline. The
tables carry the same figures as the text report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from html import escape

from .chart import LEVEL_COLORS, holdings_chart, storage_chart
from .model import LEVELS, CompareReport, TopFile
from .text import (
    LEVEL_DEFINITIONS,
    bucket_rows,
    figure_rows,
    format_size,
    image_keys,
    set_name,
)

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: #1f2933; background: #fff; margin: 24px auto; max-width: 940px;
       padding: 0 16px; line-height: 1.45; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
p.lead { color: #52606d; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 3px 10px; text-align: left; vertical-align: top; }
th { border-bottom: 1px solid #9aa5b1; font-weight: 600; }
tbody tr:nth-child(even) { background: #f5f7fa; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums;
                       white-space: nowrap; }
td.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace;
          word-break: break-all; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px;
       word-break: break-all; }
dl { font-size: 13px; }
dt { font-weight: 600; }
dd { margin: 0 0 6px 16px; }
span.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
figure { margin: 8px 0 0; }
svg { max-width: 100%; height: auto; }
"""


def render_html(report: CompareReport) -> str:
    """Return the report as an HTML5 document with inline style and SVG."""
    keys = image_keys(len(report.images))
    sections = [
        f"<h1>What {len(report.images)} images hold and share</h1>",
        _lead(report),
        _images_table(report, keys),
        "<h2>What each image holds</h2>",
        f"<figure>{holdings_chart(report)}</figure>",
        "<h2>Storing all of them</h2>",
        f"<figure>{storage_chart(report)}</figure>",
        "<h2>Figures</h2>",
        _level_table(figure_rows(report)),
        "<h2>Bytes present in exactly these images</h2>",
        _level_table(bucket_rows(report)),
        "<h2>Largest shared files</h2>",
        _top_table(report.top_shared, keys),
        "<h2>Largest unique files</h2>",
        _top_table(report.top_unique, keys),
        "<h2>Levels</h2>",
        _definitions(),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>ipcs-fs compare: {escape(_title(report))}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def _title(report: CompareReport) -> str:
    return ", ".join(image.label for image in report.images)


def _lead(report: CompareReport) -> str:
    layers = sum(len(image.layers) for image in report.images)
    block = report.level("block")
    return (
        f'<p class="lead">{len(report.images)} images, {layers} layers, compared in'
        f" {report.seconds:.1f} s. Stored as file-granular layers, they take"
        f" {escape(format_size(block.union.size))} of blocks instead of"
        f" {escape(format_size(report.level('layer').union.size))} of uncompressed"
        " layer tars.</p>"
    )


def _images_table(report: CompareReport, keys: Sequence[str]) -> str:
    rows = [
        [
            escape(key),
            escape(image.label),
            escape(image.platform or "unknown"),
            str(len(image.layers)),
            f"<code>{escape(image.reference)}</code>",
        ]
        for key, image in zip(keys, report.images, strict=True)
    ]
    return _table(["", "image", "platform", "layers", "reference"], rows, numbers={3})


def _level_table(rows: Iterable[tuple[str, tuple[str, ...]]]) -> str:
    header = [""] + [
        f'<span class="swatch" style="background:{LEVEL_COLORS[name]}"></span>{name}'
        for name in LEVELS
    ]
    body = [[escape(label)] + [escape(cell) for cell in cells] for label, cells in rows]
    return _table(header, body, numbers={1, 2, 3})


def _top_table(files: Sequence[TopFile], keys: Sequence[str]) -> str:
    if not files:
        return "<p>None.</p>"
    rows = [
        [
            escape(format_size(file.size)),
            escape(set_name(file.images, keys)),
            _paths_cell(file, keys),
            f"<code>{escape(str(file.cid))}</code>",
        ]
        for file in files
    ]
    return _table(["size", "images", "paths", "CID"], rows, numbers={0}, paths={2})


def _paths_cell(file: TopFile, keys: Sequence[str]) -> str:
    lines = []
    for image, paths, count in zip(
        file.images, file.paths, file.path_counts, strict=True
    ):
        text = ", ".join(_path_text(path) for path in paths)
        if count > len(paths):
            text += f" and {count - len(paths)} more"
        lines.append(f"{escape(keys[image])}: {escape(text)}")
    return "<br>".join(lines)


def _path_text(path: bytes) -> str:
    return "/" + path.decode("utf-8", errors="backslashreplace")


def _definitions() -> str:
    items = "".join(
        f"<dt>{name}</dt><dd>{escape(LEVEL_DEFINITIONS[name])}</dd>" for name in LEVELS
    )
    return (
        f"<dl>{items}</dl><p>An image holds every regular file of every one of its"
        " layers, including files that a later layer replaces or deletes, because"
        " layers are stored and sent whole. The saving is the sum over images"
        " minus the union.</p>"
    )


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numbers: AbstractSet[int] = frozenset(),
    paths: AbstractSet[int] = frozenset(),
) -> str:
    """Build a table from cells that are already HTML."""

    def cell(tag: str, index: int, content: str) -> str:
        attribute = ""
        if index in numbers:
            attribute = ' class="number"'
        elif index in paths:
            attribute = ' class="path"'
        return f"<{tag}{attribute}>{content}</{tag}>"

    head = "".join(cell("th", index, text) for index, text in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(cell("td", index, text) for index, text in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
