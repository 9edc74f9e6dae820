"""Every edge case of ``fixtures.edgecases`` through the file-granular format.

Each layer is converted into a DAG; the tar rebuilt from the DAG must equal the
original bytes, and applying the rebuilt layers through either target (a
mounted tree, or overlay upper directories read back through a real overlayfs
mount) must give the case's expected tree or error, as applying the original
tars does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures.edgecases import CASES, LARGE_CASES, Case
from fixtures.tree import assert_tree_matches, snapshot
from ipcs_fs.apply import ApplyOptions, apply_layer
from ipcs_fs.errors import IpcsError
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.layer.rebuild import RebuiltTar, read_layer_root
from ipcs_fs.store import MemoryStore
from tests.apply.stacks import overlay_mount
from tests.layer.streams import BytesStream

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _convert_all(case: Case, store: MemoryStore):
    """Convert each layer; return the results, or the error of the first that
    fails."""
    results = []
    for index, data in enumerate(case.layers):
        try:
            results.append(
                convert_layer(BytesStream(data), store.put, source=f"layer {index}")
            )
        except IpcsError as error:
            return results, error
    return results, None


@pytest.mark.parametrize("name", sorted(CASES))
def test_rebuilt_tar_equals_original(name: str) -> None:
    case = CASES[name]
    store = MemoryStore()
    results, error = _convert_all(case, store)
    if error is not None:
        assert case.expected_error is not None, f"conversion failed: {error}"
        assert case.expected_error.matches(error), repr(error)
        return
    for result, data in zip(results, case.layers, strict=True):
        root = read_layer_root(store.get, result.root_cid)
        assert RebuiltTar(store.get, root).read() == data


def _apply_mounted(streams, base: Path):
    root_dir = base / "root"
    root_dir.mkdir()
    for index, stream in enumerate(streams):
        apply_layer(stream, root_dir, source=f"layer {index}")
    return snapshot(root_dir)


def _apply_overlay(streams, base: Path):
    uppers: list[Path] = []
    for index, stream in enumerate(streams):
        upper = base / f"upper{index}"
        upper.mkdir()
        options = ApplyOptions(overlay_upper=True, lowers=list(reversed(uppers)))
        apply_layer(stream, upper, source=f"layer {index}", options=options)
        uppers.append(upper)
    with overlay_mount(uppers, base) as mount:
        return snapshot(mount)


_TARGETS = {"mounted": _apply_mounted, "overlay": _apply_overlay}


@needs_root
@pytest.mark.parametrize("target", sorted(_TARGETS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_apply_from_dag_matches_expected(
    tmp_path: Path, name: str, target: str
) -> None:
    case = CASES[name]
    store = MemoryStore()
    results, error = _convert_all(case, store)
    if error is not None:
        return  # conversion itself rejected it: checked in the test above
    streams = (
        RebuiltTar(store.get, read_layer_root(store.get, result.root_cid))
        for result in results
    )
    try:
        tree = _TARGETS[target](streams, tmp_path)
    except IpcsError as error:
        assert case.expected_error is not None, f"apply failed: {error}"
        assert case.expected_error.matches(error), repr(error)
        return
    assert case.expected_error is None, "applying succeeded but must fail"
    assert case.expected is not None
    assert_tree_matches(case.expected, tree)


class _ChunkStream:
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = memoryview(chunk)
        size = len(self._pending) if size < 0 else size
        data, self._pending = bytes(self._pending[:size]), self._pending[size:]
        return data


@pytest.mark.parametrize("name", sorted(LARGE_CASES))
def test_large_layer_round_trip(name: str) -> None:
    case = LARGE_CASES[name]
    store = MemoryStore()
    for stream, size, sha256 in zip(
        case.layer_streams, case.layer_sizes, case.layer_sha256s, strict=True
    ):
        result = convert_layer(_ChunkStream(stream()), store.put, source=name)
        assert (result.tar_size, str(result.diff_id)) == (size, f"sha256:{sha256}")

        rebuilt = RebuiltTar(store.get, read_layer_root(store.get, result.root_cid))
        rebuilt.verify()
        assert rebuilt.size == size
