"""Tests of benchmarks.suite_table: per-round ratios and the Markdown table."""

from __future__ import annotations

from benchmarks.suite_table import Row, render_table

ROW = Row("convert", "convert", "floor", "floor", "wall ≤ 1.5")


def _sample(wall: float, cpu: float, peak: float) -> dict[str, float]:
    return {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": peak}


def _measurements() -> dict[str, dict]:
    convert = [_sample(2.0, 1.0, 90.0), _sample(3.0, 1.0, 90.0), _sample(9.0, 3.0, 90)]
    floor = [_sample(2.0, 2.0, 2.0), _sample(1.0, 1.0, 2.0), _sample(3.0, 1.0, 2.0)]
    return {
        "convert": {
            "median": _sample(3.0, 1.0, 90.0),
            "load_average": 1.5,
            "samples": convert,
        },
        "floor": {
            "median": _sample(2.0, 1.0, 2.0),
            "load_average": 1.0,
            "samples": floor,
        },
    }


def test_ratio_is_median_of_rounds() -> None:
    row = ROW.to_json(_measurements())
    # Per round: wall 1.0, 3.0, 3.0; CPU 0.5, 1.0, 3.0; peak 45 each.
    assert row["ratio"] == {
        "wall_seconds": 3.0,
        "cpu_seconds": 1.0,
        "peak_rss_mib": 45.0,
    }


def test_table_row_cells() -> None:
    document = {
        "date": "2026-01-01 00:00 UTC",
        "machine": {"cores": 2, "cpu": "CPU", "memory_gib": 4.0},
        "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [2.0, 2.0, 2.0],
        "versions": {
            "python": "3.11",
            "kubo": "0.43.1",
            "containerd": "1.7.24",
            "kernel": "6.1",
            "ipcs-fs": "abc1234",
        },
        "layer": {
            "image": "debian-bookworm",
            "digest": "sha256:00",
            "gzip_bytes": 2**20,
            "tar_bytes": 2**21,
            "entries": 10,
        },
        "runs": 3,
        "warmup": 1,
        "rows": [ROW.to_json(_measurements())],
    }
    lines = render_table(document).splitlines()
    row = next(line for line in lines if line.startswith("| convert "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "convert",
        "floor",
        "3.00",
        "2.00",
        "3.00",
        "1.00",
        "1.00",
        "1.00",
        "90",
        "2",
        "45.00",
        "wall ≤ 1.5",
        "1.5",
    ]
