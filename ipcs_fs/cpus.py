"""The number of CPUs that this process may use, for sizing worker pools."""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """Return how many CPUs this process may run on.

    That is the affinity mask where the OS has one (a container or ``taskset``
    may narrow it), else every CPU of the machine.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
