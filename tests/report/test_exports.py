"""The public names of ipcs_fs.report and its modules."""

import importlib

import pytest

import ipcs_fs.report

MODULES = ["chart", "collect", "html", "json_document", "model", "scan", "text"]


@pytest.mark.parametrize("name", MODULES)
def test_module_exports_exist(name):
    module = importlib.import_module(f"ipcs_fs.report.{name}")

    missing = [symbol for symbol in module.__all__ if not hasattr(module, symbol)]

    assert missing == []


def test_package_exports():
    assert sorted(ipcs_fs.report.__all__) == [
        "Amount",
        "Bucket",
        "CompareReport",
        "ComparedImage",
        "ComparedLayer",
        "ImageAmount",
        "LEVELS",
        "LevelFigures",
        "SCHEMA_VERSION",
        "TopFile",
        "compare_images",
        "format_size",
        "image_labels",
        "render_html",
        "render_text",
        "report_to_json",
    ]
    for name in ipcs_fs.report.__all__:
        assert hasattr(ipcs_fs.report, name), name
