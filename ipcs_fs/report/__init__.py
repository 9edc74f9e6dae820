"""How much two or more images hold and share, at three levels side by side.

Levels, from coarsest to finest:

- ``layer``: each distinct layer, keyed by diff_id, at the size of its
  uncompressed tar. This is what sharing costs when the layer is the unit,
  as with standard images.
- ``file``: each distinct regular-file content, keyed by its CID, at its
  size. An image holds every regular file of every one of its layers,
  including files that a later layer replaces or deletes, because those
  layers are stored and sent whole. A path named twice in one tar counts
  once, with its later content, as the layer's tree keeps it.
- ``block``: each distinct block, keyed by CID, at its length: the raw
  leaves of 256 KiB chunks, and every dag-pb node of the converted layers
  (directories, internal file nodes, tar-stream nodes, layer roots). This is
  what a block store holding the images contains.

For each level the report gives what each image holds (each item once), the
union (what storing them all takes), what all images share, the sum over
images, the saving (sum minus union) and one bucket per non-empty set of
images: the bytes present in exactly those images. It also lists the largest
files that two or more images share and the largest that one image alone
holds.

:func:`compare_images` builds a :class:`CompareReport`;
:func:`render_text`, :func:`report_to_json` and :func:`render_html` print it.
"""

from __future__ import annotations

from .collect import compare_images, image_labels
from .html import render_html
from .json_document import SCHEMA_VERSION, report_to_json
from .model import (
    LEVELS,
    Amount,
    Bucket,
    ComparedImage,
    ComparedLayer,
    CompareReport,
    ImageAmount,
    LevelFigures,
    TopFile,
)
from .text import format_size, render_text

__all__ = [
    "LEVELS",
    "SCHEMA_VERSION",
    "Amount",
    "Bucket",
    "CompareReport",
    "ComparedImage",
    "ComparedLayer",
    "ImageAmount",
    "LevelFigures",
    "TopFile",
    "compare_images",
    "format_size",
    "image_labels",
    "render_html",
    "render_text",
    "report_to_json",
]
