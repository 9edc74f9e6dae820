"""The HTML report rendered by headless Chromium draws its charts."""

from __future__ import annotations

import pytest

from ipcs_fs.report import compare_images, render_html
from ipcs_fs.report.chart import LEVEL_COLORS, light_color

from .chromium import screenshot
from .images import build_images
from .png import decode_png

pytestmark = pytest.mark.integration


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_chart_rendered(tmp_path):
    images = build_images(tmp_path / "images")
    report = compare_images(images.references, lambda: None, jobs=1)
    page = tmp_path / "report.html"
    page.write_text(render_html(report))

    png = screenshot(page, tmp_path / "report.png", width=1000, height=900)
    image = decode_png(png)
    colors = image.colors()

    assert (image.width, image.height) == (1000, 900)
    white = colors[(255, 255, 255)]
    assert white < 0.95 * image.width * image.height
    assert len(colors) > 50
    for level, color in LEVEL_COLORS.items():
        # Each level's solid and light segments cover whole bars of pixels.
        assert colors[_rgb(color)] > 1000, level
        assert colors[_rgb(light_color(color))] > 200, level
