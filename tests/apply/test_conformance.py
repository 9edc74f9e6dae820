"""Every edge case of ``fixtures.edgecases`` through both targets.

Each case's layers are applied in order into an empty root. The tree must
equal the case's expected tree, or applying must raise its expected error. The
overlay target is checked through a real read-only overlayfs mount of the
upper directories, so the whiteout encoding is judged by the kernel.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from fixtures.edgecases import CASES, LARGE_CASES, Case, StreamedCase
from fixtures.tree import Node, assert_tree_matches, snapshot
from ipcs_fs.apply import apply_layer
from tests.apply.stacks import apply_mounted, apply_overlay

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

_TARGETS: dict[str, Callable[[Sequence[bytes], Path], dict[bytes, Node]]] = {
    "mounted": apply_mounted,
    "overlay": apply_overlay,
}


def _check(case: Case, apply_stack: Callable, base: Path) -> None:
    if case.expected_error is not None:
        with pytest.raises(Exception) as error:
            apply_stack(case.layers, base)
        assert case.expected_error.matches(error.value), repr(error.value)
        return
    assert case.expected is not None
    assert_tree_matches(case.expected, apply_stack(case.layers, base))


@pytest.mark.parametrize("target", sorted(_TARGETS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_edge_case(tmp_path: Path, name: str, target: str) -> None:
    _check(CASES[name], _TARGETS[target], tmp_path)


class _ChunkStream(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


@pytest.mark.parametrize("name", sorted(LARGE_CASES))
def test_large_edge_case(tmp_path: Path, name: str) -> None:
    case: StreamedCase = LARGE_CASES[name]
    for index, layer_stream in enumerate(case.layer_streams):
        stream = _ChunkStream(layer_stream())
        apply_layer(stream, tmp_path, source=f"{name} layer {index}")

    assert_tree_matches(case.expected, snapshot(tmp_path))
