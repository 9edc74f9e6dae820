"""The text and HTML reports, and the compare command, on hand-made images."""

from __future__ import annotations

import json
import re

import pytest

from ipcs_fs.cli import main
from ipcs_fs.report import compare_images, format_size, render_html, render_text
from ipcs_fs.report.chart import LEVEL_COLORS, light_color

from .images import build_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return build_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def report(images):
    return compare_images(images.references, lambda: None, top=3, jobs=1)


def _row(text: str, label: str) -> list[str]:
    """Return the cells of the table row that starts with ``label``."""
    for line in text.splitlines():
        if line.startswith(label + "  "):
            return re.split(r"\s{2,}", line[len(label) :].strip())
    raise AssertionError(f"no row {label!r} in:\n{text}")


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (309500, "309.5 kB"),
        (1_500_000, "1.5 MB"),
        (479_272_568, "479.3 MB"),
        (2_000_000_000, "2.0 GB"),
    ],
)
def test_format_size(size, expected):
    assert format_size(size) == expected


def test_text_figures(report):
    text = render_text(report)

    # Layer A: 307200 + 20480 bytes of tar; file A: 309500 bytes of content.
    assert _row(text, "held by A")[:2] == ["327.7 kB", "309.5 kB"]
    assert _row(text, "  only in A")[:2] == ["20.5 kB", "8.5 kB"]
    assert _row(text, "held by C")[:2] == ["317.4 kB", "306.0 kB"]
    assert _row(text, "  only in C")[:2] == ["317.4 kB", "0 B"]
    assert _row(text, "union (bytes to store all)")[:2] == ["665.6 kB", "325.5 kB"]
    assert _row(text, "shared by all images")[:2] == ["0 B", "301.0 kB"]
    assert _row(text, "saving fraction")[:2] == ["31.6%", "65.1%"]
    assert _row(text, "distinct items (union)")[:2] == ["4", "7"]


def test_text_block_column(report):
    text = render_text(report)
    block = report.level("block")

    assert _row(text, "union (bytes to store all)")[2] == format_size(block.union.size)
    assert _row(text, "distinct items (union)")[2] == str(block.union.count)


def test_text_buckets_and_top(report):
    text = render_text(report)

    assert _row(text, "A+B")[:2] == ["307.2 kB", "0 B"]
    assert _row(text, "B+C")[:2] == ["0 B", "5.0 kB"]
    assert _row(text, "A+B+C")[:2] == ["0 B", "301.0 kB"]
    assert re.search(r"300\.0 kB\s+A\+B\+C\s+/usr/big\n", text)
    assert re.search(r"11\.0 kB\s+B\s+/opt/b\n", text)
    assert "  1 layer  " in text
    assert "Compared 3 images (5 layers)" in text


def test_html_is_self_contained(report):
    page = render_html(report)

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "<link" not in page
    assert " src=" not in page
    assert "url(" not in page
    # The SVG namespace is the only address, and it is never fetched.
    addresses = set(re.findall(r"https?://[^\"' ]+", page))
    assert addresses == {"http://www.w3.org/2000/svg"}


def test_html_chart_figures(report):
    page = render_html(report)

    assert page.count("<svg") == 2
    # File level of image a: 309500 bytes, 301000 of them shared.
    assert ">309.5 kB, 97.3% shared</text>" in page
    assert ">306.0 kB, 100.0% shared</text>" in page
    assert ">325.5 kB, saves 65.1%</text>" in page
    for color in LEVEL_COLORS.values():
        assert f'fill="{color}"' in page
        assert f'fill="{light_color(color)}"' in page


def test_html_tables(report):
    page = render_html(report)

    assert '<td class="number">309.5 kB</td>' in page
    assert '<td class="number">325.5 kB</td>' in page
    assert "/opt/a, /opt/a2" in page
    assert "<title>ipcs-fs compare: a, b, c</title>" in page


def test_light_color():
    assert light_color("#000000", 0.5) == "#808080"
    assert light_color("#4e79a7", 0.0) == "#4e79a7"
    assert light_color("#4e79a7", 1.0) == "#ffffff"


def _run(capsys, *argv: str) -> str:
    status = main(list(argv))
    output = capsys.readouterr()
    assert status == 0, output.err
    return output.out


def test_command_formats(images, capsys, tmp_path):
    store = ["--store", str(tmp_path / "store")]

    text = _run(capsys, *store, "compare", *images.references)
    document = json.loads(
        _run(
            capsys,
            *store,
            "compare",
            "--format",
            "json",
            "--top",
            "1",
            *images.references,
        )
    )
    page = _run(capsys, *store, "compare", "--format", "html", *images.references)

    assert _row(text, "held by A")[:2] == ["327.7 kB", "309.5 kB"]
    assert document["levels"]["file"]["union"]["bytes"] == 325500
    assert len(document["top"]["shared"]) == 1
    assert "</html>" in page
    # Standard images only: the block store was never opened, so never created.
    assert not (tmp_path / "store").exists()


def test_command_labels_and_errors(images, capsys):
    document = json.loads(
        _run(
            capsys,
            "compare",
            "--format=json",
            "--label=one",
            "--label=two",
            *images.references[:2],
        )
    )

    assert [image["label"] for image in document["images"]] == ["one", "two"]
    status = main(["compare", "--label=x", *images.references[:2]])
    assert status == 1
    assert "invalid labels: 1 given for 2 images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", images.references[0]])
