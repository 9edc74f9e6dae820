"""Small stream helpers for layer tests."""

from __future__ import annotations

import io

__all__ = ["BytesStream"]


class BytesStream(io.BytesIO):
    """A BytesIO that the tar reader and the converter both accept."""
