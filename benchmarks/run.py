"""``make bench``: run every benchmark in turn, each against its reference.

Run from the repository root as root: ``.venv/bin/python -m benchmarks.run``.
"""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    steps = [
        [sys.executable, "-m", "benchmarks.convert"],
        [sys.executable, "-m", "benchmarks.apply"],
        [sys.executable, "-m", "benchmarks.kubo"],
    ]
    for step in steps:
        print("$", " ".join(step), flush=True)
        subprocess.run(step, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
