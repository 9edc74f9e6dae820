"""Tests of benchmarks.measure: usage of child processes, orphans included.

``run_child`` needs a subreaper, and making the test process one would leave
it the parent of every orphan of later tests, so each test runs its check in
a Python child process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    """Run ``code`` after making the child a subreaper; return what it prints."""
    script = "from benchmarks.measure import *\nbecome_subreaper()\n"
    result = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code)],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)


def test_peak_rss_excludes_parent_memory() -> None:
    result = _run(
        """
        import json
        ballast = bytearray(256 << 20)
        for offset in range(0, len(ballast), 4096):
            ballast[offset] = 1
        print(json.dumps(run_child(["true"]).to_json()))
        """
    )
    assert result["peak_rss_mib"] < 16


def test_orphans_are_reaped() -> None:
    result = _run(
        """
        import json, os
        usage = run_child(["sh", "-c", "sleep 0.3 & exit 0"])
        try:
            os.waitpid(-1, os.WNOHANG)
            left = "a child"
        except ChildProcessError:
            left = "none"
        print(json.dumps({"wall": usage.wall_seconds, "left": left}))
        """
    )
    assert result["left"] == "none"
    assert result["wall"] < 0.3


def test_failed_command_names_status() -> None:
    result = _run(
        """
        import json
        try:
            run_child(["sh", "-c", "echo broken >&2; exit 3"])
            message = ""
        except CommandFailedError as error:
            message = str(error)
        print(json.dumps({"message": message}))
        """
    )
    expected = "failed to run sh -c echo broken >&2; exit 3: exit status 3: broken"
    assert result["message"] == expected
