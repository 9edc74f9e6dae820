"""Tests of the public surface of ipcs_fs.unixfs."""

from __future__ import annotations

import importlib

import pytest

import ipcs_fs.unixfs

EXPORTED = {
    "CHUNK_SIZE",
    "MAX_BLOCK_SIZE",
    "MAX_LINKS",
    "SHARD_THRESHOLD",
    "Block",
    "DataType",
    "DirectoryDag",
    "DirectoryItem",
    "FileBuilder",
    "FileDag",
    "GetBlock",
    "Link",
    "Node",
    "PutBlock",
    "UnixTime",
    "UnixfsData",
    "build_directory",
    "decode_data",
    "decode_node",
    "encode_data",
    "encode_node",
    "iter_directory",
    "read_file",
}
MODULES = ["_items", "dagpb", "data", "directory", "file", "hamt", "wire"]


def test_package_exports() -> None:
    assert set(ipcs_fs.unixfs.__all__) == EXPORTED
    for name in EXPORTED:
        assert getattr(ipcs_fs.unixfs, name) is not None


@pytest.mark.parametrize("module_name", MODULES)
def test_module_all_names_exist(module_name: str) -> None:
    module = importlib.import_module(f"ipcs_fs.unixfs.{module_name}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_constants() -> None:
    assert ipcs_fs.unixfs.CHUNK_SIZE == 262144
    assert ipcs_fs.unixfs.MAX_LINKS == 174
    assert ipcs_fs.unixfs.MAX_BLOCK_SIZE == 1048576
    assert ipcs_fs.unixfs.SHARD_THRESHOLD == 262144
