"""Shared helpers of the benchmarks: machine description and result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_description() -> dict:
    """Cores, memory, CPU model and load, so figures can be compared."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "cpu": model,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def write_results(name: str, document: dict) -> Path:
    """Write ``document`` as ``results/NAME-DATE.json``; return the path."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
