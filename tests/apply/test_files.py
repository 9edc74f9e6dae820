"""Apply sparse files made by GNU tar, and a file of several GiB in bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipcs_fs.apply import apply_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

_REGIONS = [(0, b"a" * 1_000_000), (100 << 20, b"b" * 4096), (150 << 20, b"c")]
_SPARSE_SIZE = 200 << 20


def _make_sparse(path: Path) -> str:
    """Write a sparse file with ``_REGIONS`` and a trailing hole; return its sha256."""
    with open(path, "wb") as stream:
        for offset, data in _REGIONS:
            stream.seek(offset)
            stream.write(data)
        stream.truncate(_SPARSE_SIZE)
    return _sha256(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _data_regions(path: Path) -> list[tuple[int, int]]:
    """List (start, end) of the data regions of a file with SEEK_DATA/SEEK_HOLE."""
    regions = []
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while True:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                return regions
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            regions.append((start, offset))
    finally:
        os.close(fd)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
@pytest.mark.parametrize(
    "tar_options",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
)
def test_sparse_file_keeps_holes(tmp_path: Path, tar_options: list[str]) -> None:
    source = tmp_path / "src"
    source.mkdir()
    expected_sha256 = _make_sparse(source / "sparse")
    archive = tmp_path / "layer.tar"
    subprocess.run(
        ["tar", "--sparse", *tar_options, "-cf", archive, "-C", source, "sparse"],
        check=True,
    )
    root = tmp_path / "root"
    root.mkdir()

    with open(archive, "rb") as stream:
        stats = apply_layer(stream, root, source=archive.name)

    applied = root / "sparse"
    assert applied.stat().st_size == _SPARSE_SIZE
    assert _sha256(applied) == expected_sha256
    # GNU tar stores the data regions that SEEK_DATA reports, whole fs blocks.
    source_regions = _data_regions(source / "sparse")
    assert stats.bytes_written == sum(end - start for start, end in source_regions)
    assert applied.stat().st_blocks * 512 < 2 << 20
    assert _data_regions(applied) == source_regions


_BIG_SCRIPT = """
import json, sys
from pathlib import Path
from tests.apply.layers import GeneratedLayer
from ipcs_fs.apply import apply_layer
stats = apply_layer(GeneratedLayer("big", int(sys.argv[2])), Path(sys.argv[1]), source="big")
# VmHWM is the peak of this exec only; ru_maxrss would include the parent's.
status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
print(json.dumps({"bytes": stats.bytes_written, "max_rss_kib": int(status.split()[0])}))
"""


def test_large_file_bounded_memory(tmp_path: Path) -> None:
    size = (2 << 30) + 12345
    result = subprocess.run(
        [sys.executable, "-c", _BIG_SCRIPT, str(tmp_path), str(size)],
        check=True,
        capture_output=True,
        cwd=Path(__file__).parents[2],
    )
    report = json.loads(result.stdout)

    assert report["bytes"] == size
    assert report["max_rss_kib"] < 96 << 10
    assert (tmp_path / "big").stat().st_size == size
    with open(tmp_path / "big", "rb") as stream:
        stream.seek(size - 12345)
        tail = stream.read()
    assert tail == (bytes(range(256)) * 4096)[:12345]
