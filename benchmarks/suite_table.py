"""The suite's rows and their rendering as one Markdown table.

Terms:

- row: a subject (what ipcs-fs does) against a reference (what it is
  measured against), each named by the key of a measurement of the suite.
- ratio: subject over reference, for wall time, CPU time and peak RSS. Each
  is the median of the per-round ratios, so a round's subject is only ever
  divided by the reference measured in the same round.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ["Row", "render_table"]

_FIGURES = ("wall_seconds", "cpu_seconds", "peak_rss_mib")
_COLUMNS = (
    "measurement",
    "reference",
    "wall s",
    "ref wall s",
    "wall ratio",
    "CPU s",
    "ref CPU s",
    "CPU ratio",
    "peak MiB",
    "ref peak MiB",
    "peak ratio",
    "target",
    "load",
)


@dataclass(frozen=True)
class Row:
    """One line of the table: labels, measurement keys and the wall-time target."""

    subject: str
    subject_key: str
    reference: str
    reference_key: str
    target: str

    def to_json(self, measurements: dict[str, dict]) -> dict[str, object]:
        """Return the row's labels, both medians, the ratios and the load average.

        ``measurements`` maps each key to its ``median``, ``load_average``
        and per-round ``samples``, as the suite summarises them.
        """
        subject = measurements[self.subject_key]
        reference = measurements[self.reference_key]
        return {
            "subject": self.subject,
            "reference": self.reference,
            "subject_key": self.subject_key,
            "reference_key": self.reference_key,
            "target": self.target,
            "subject_median": subject["median"],
            "reference_median": reference["median"],
            "ratio": _ratios(subject["samples"], reference["samples"]),
            "load_average": subject["load_average"],
        }


def _ratios(subject: list[dict], reference: list[dict]) -> dict[str, float]:
    ratios = {}
    for figure in _FIGURES:
        pairs = zip(subject, reference, strict=True)
        per_round = [ours[figure] / theirs[figure] for ours, theirs in pairs]
        ratios[figure] = round(statistics.median(per_round), 3)
    return ratios


def render_table(document: dict) -> str:
    """Return the suite's results as Markdown: a header, the table and notes."""
    lines = [*_header(document), ""]
    cells = [list(_COLUMNS), *(_cells(row) for row in document["rows"])]
    widths = [
        max(len(line[column]) for line in cells) for column in range(len(_COLUMNS))
    ]
    for number, line in enumerate(cells):
        padded = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        lines.append("| " + " | ".join(padded) + " |")
        if number == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join([*lines, "", *_notes()]) + "\n"


def _header(document: dict) -> list[str]:
    machine = document["machine"]
    versions = document["versions"]
    layer = document["layer"]
    before = ", ".join(f"{value:.2f}" for value in document["load_average_before"])
    after = ", ".join(f"{value:.2f}" for value in document["load_average_after"])
    machine_line = (
        f"- Machine: {machine['cores']} cores, {machine['cpu']},"
        f" {machine['memory_gib']} GiB. Load average (1, 5, 15 min):"
        f" {before} before, {after} after."
    )
    versions_line = (
        f"- Versions: Python {versions['python']}, kubo {versions['kubo']},"
        f" containerd {versions['containerd']}, Linux {versions['kernel']},"
        f" ipcs-fs {versions['ipcs-fs']}."
    )
    layer_line = (
        f"- Base layer: the first layer of {layer['image']}, {layer['digest']}"
        f" ({layer['gzip_bytes'] / 2**20:.1f} MiB gzip,"
        f" {layer['tar_bytes'] / 2**20:.1f} MiB tar, {layer['entries']} entries)."
    )
    runs_line = (
        f"- Median of {_count(document['runs'], 'run')} after"
        f" {_count(document['warmup'], 'warm-up run')}. Each ratio is the median"
        " of the per-run ratios."
    )
    title = f"ipcs-fs benchmark suite, {document['date']}"
    return [title, "", machine_line, versions_line, layer_line, runs_line]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _cells(row: dict) -> list[str]:
    subject = row["subject_median"]
    reference = row["reference_median"]
    ratio = row["ratio"]
    cells = [row["subject"], row["reference"]]
    for figure, digits in zip(_FIGURES, (2, 2, 0), strict=True):
        cells += [
            f"{subject[figure]:.{digits}f}",
            f"{reference[figure]:.{digits}f}",
            f"{ratio[figure]:.2f}",
        ]
    return [*cells, row["target"], f"{row['load_average']:.1f}"]


def _notes() -> list[str]:
    note = (
        "Ratios are subject over reference: below 1, the subject is faster or"
        " smaller. CPU is user plus system time of the command and of every"
        " process it started. Peak is the largest maximum RSS of any one of"
        " those processes. The containerd rows add the CPU time that the"
        " containerd daemon and the ipcs-fs plugin spent during the unpack,"
        " and their peak RSS counts both daemons, which includes what they"
        " held before it. Load is the median 1-minute load average when the"
        " measurement started. Every peak should stay under 256 MiB."
    )
    return [note]
