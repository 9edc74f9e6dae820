"""``make bench``: the kubo benchmark, then the suite's one table.

:mod:`benchmarks.kubo` measures kubo as the block store. :mod:`benchmarks.suite`
then measures every ipcs-fs operation against its reference in one run and
writes ``results/suite-DATE.json`` and ``.md``. The suite runs last so that
its table ends the output, and so that the many files it removes at its end
do not slow down the other benchmark (on an ext4 without a journal, creating
files soon after many were removed is slow). The other benchmarks
(``convert``, ``apply``, ``scaling``, ``tar_reader``) run on demand. Run from
the repository root as root::

    .venv/bin/python -m benchmarks.run [--runs N] [--skip-kubo]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the kubo benchmark and then the suite, each as a child process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="counted rounds of the suite (median)"
    )
    parser.add_argument("--skip-kubo", action="store_true", help="run the suite only")
    args = parser.parse_args(argv)
    steps = [[sys.executable, "-m", "benchmarks.suite", "--runs", str(args.runs)]]
    if not args.skip_kubo:
        steps.insert(0, [sys.executable, "-m", "benchmarks.kubo"])
    for step in steps:
        print("$", " ".join(step), flush=True)
        subprocess.run(step, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
