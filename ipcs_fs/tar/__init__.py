"""Tar streams: the entries of a layer and the raw bytes around them.

:class:`TarReader` cuts a tar stream into :class:`TarEntry` objects whose raw
headers, data and the final trailer concatenate back to the exact input.
"""

from .entry import EntryKind, TarEntry
from .reader import ReadableStream, TarReader

__all__ = ["EntryKind", "ReadableStream", "TarEntry", "TarReader"]
