"""Screenshots of local HTML files with headless Chromium, kept off the network.

Debian's ``chromium`` package provides the browser;
``scripts/install-host-packages.sh`` installs it. Every run gets a fresh
profile, and the flags stop background requests (updates, metrics, sync)
and send any request that still happens to a closed loopback port, so that
nothing leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["chromium_binary", "screenshot"]

_OFFLINE_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-pings",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def chromium_binary() -> str:
    """Return the path of Chromium; skip the test (fail under CI) if missing."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    message = "chromium not found; run scripts/install-host-packages.sh as root"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def screenshot(page: Path, output: Path, *, width: int, height: int) -> bytes:
    """Render ``page`` in a ``width`` x ``height`` window; return the PNG."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            chromium_binary(),
            *_OFFLINE_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={output}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        if os.geteuid() == 0:
            # Chromium's sandbox refuses to start as root.
            command.insert(1, "--no-sandbox")
        result = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return output.read_bytes()
