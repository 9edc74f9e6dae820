import importlib

import pytest

import ipcs_fs.oci

MODULES = [
    "archive",
    "atomic",
    "blob",
    "compression",
    "descriptor",
    "image",
    "layout",
    "mediatypes",
    "reference",
    "transport",
    "zstd_frames",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_exports_exist(name):
    module = importlib.import_module(f"ipcs_fs.oci.{name}")

    missing = [symbol for symbol in module.__all__ if not hasattr(module, symbol)]

    assert missing == []


def test_package_exports():
    assert sorted(ipcs_fs.oci.__all__) == [
        "ArchiveReference",
        "Compression",
        "ContainerdReference",
        "Descriptor",
        "IPCS_FS_LAYER",
        "Image",
        "ImageConfig",
        "ImageReference",
        "ImageSink",
        "ImageSource",
        "Index",
        "LayoutReference",
        "Manifest",
        "ManifestRef",
        "Platform",
        "UncompressedReader",
        "compression_of",
        "gzip_compress_chunks",
        "gzip_compress_stream",
        "is_file_granular",
        "is_layer",
        "open_sink",
        "open_source",
        "open_uncompressed",
        "parse_reference",
    ]
    assert all(hasattr(ipcs_fs.oci, name) for name in ipcs_fs.oci.__all__)
