"""The public surface of ipcs_fs.apply."""

from __future__ import annotations

import ipcs_fs.apply


def test_exported_names() -> None:
    assert set(ipcs_fs.apply.__all__) == {
        "DEFAULT_MAX_BYTES",
        "DEFAULT_MAX_ENTRIES",
        "ApplyOptions",
        "ApplyStats",
        "apply_entries",
        "apply_layer",
    }


def test_default_options() -> None:
    options = ipcs_fs.apply.ApplyOptions()

    assert options.overlay_upper is False
    assert tuple(options.lowers) == ()
    assert options.max_bytes == 1 << 40
    assert options.max_entries == 1 << 24
