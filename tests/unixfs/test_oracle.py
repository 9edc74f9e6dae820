"""CIDs compared with the JS UnixFS importer, run offline with kubo's options.

The importer (ipfs-unixfs-importer, pinned in scripts/unixfs-oracle) is a
second implementation of what ``ipfs add --cid-version=1`` builds, so files
and directories generated here must get the same root CIDs from both.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ipcs_fs.unixfs import CHUNK_SIZE, FileBuilder, FileDag, build_directory
from ipcs_fs.unixfs.directory import DirectoryDag

from .conftest import Oracle

pytestmark = pytest.mark.integration

MIB = 1 << 20
EDGE_SIZES = [
    0,
    1,
    2,
    11,
    1000,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    2 * CHUNK_SIZE - 1,
    2 * CHUNK_SIZE,
    2 * CHUNK_SIZE + 1,
    3 * CHUNK_SIZE + 17,
    5 * MIB,
]


def content(kind: str, size: int, seed: int) -> bytes:
    if kind == "random":
        return random.Random(seed).randbytes(size)
    if kind == "zeros":
        return bytes(size)
    pattern = b"ipcs-fs pattern %08d\n" % seed
    return (pattern * (size // len(pattern) + 1))[:size]


def random_size(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.70:
        return rng.randrange(0, 300_000)
    if draw < 0.95:
        return rng.randrange(300_000, 1_500_000)
    return rng.randrange(1_500_000, 6 * MIB)


@pytest.fixture(scope="module")
def generated_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("files")
    specs = [
        (kind, size) for size in EDGE_SIZES for kind in ("random", "zeros", "pattern")
    ]
    rng = random.Random(2024)
    specs += [(rng.choice(("random", "pattern")), random_size(rng)) for _ in range(220)]
    # 175 chunks and more need a second level of nodes.
    specs += [("random", 175 * CHUNK_SIZE), ("pattern", 180 * CHUNK_SIZE + 99)]
    paths = []
    for number, (kind, size) in enumerate(specs):
        path = root / f"{number:03d}-{kind}-{size}"
        path.write_bytes(content(kind, size, number))
        paths.append(path)
    return paths


def add_file(path: Path, piece_size: int = MIB + 7) -> FileDag:
    builder = FileBuilder(lambda cid, block: None)
    with path.open("rb") as stream:
        while piece := stream.read(piece_size):
            builder.write(piece)
    return builder.finish()


def add_tree(path: Path, shard_threshold: int) -> DirectoryDag | FileDag:
    if not path.is_dir():
        return add_file(path)
    items = []
    for child in path.iterdir():
        dag = add_tree(child, shard_threshold)
        items.append((child.name.encode(), dag.cid, dag.tsize, b""))
    return build_directory(
        items, lambda cid, block: None, shard_threshold=shard_threshold
    )


def test_files_match_importer(generated_files: list[Path], oracle: Oracle) -> None:
    expected = oracle(generated_files, 262144)
    actual = [str(add_file(path).cid) for path in generated_files]
    mismatched = [
        path.name
        for path, want, got in zip(generated_files, expected, actual, strict=True)
        if want != got
    ]
    assert mismatched == []
    assert len(actual) == 261


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "caf\u00e9 \u65e5\u672c").write_bytes(b"utf-8 name")
    (tree / "sub" / "big").write_bytes(content("random", 2 * CHUNK_SIZE + 5, 1))
    (tree / "sub" / "deeper" / "leaf").write_bytes(b"leaf")
    for number in range(2000):
        name = f"entry-{number:05d}-{'x' * (number % 37)}"
        (tree / name).write_bytes(content("pattern", number % 700, number))
    return tree


def make_wide(root: Path) -> Path:
    """Return a directory whose kubo estimate passes 256 KiB."""
    wide = root / "wide"
    wide.mkdir()
    for number in range(4000):
        (wide / f"{number:06d}-{'w' * 54}").write_bytes(b"%d" % number)
    return wide


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("trees")
    (root / "empty-root").mkdir()
    return [make_tree(root), make_wide(root), root / "empty-root"]


@pytest.mark.parametrize("shard_threshold", [0, 1000, 262144])
def test_directories_match_importer(
    trees: list[Path], oracle: Oracle, shard_threshold: int
) -> None:
    expected = oracle(trees, shard_threshold)
    actual = [str(add_tree(tree, shard_threshold).cid) for tree in trees]
    assert actual == expected
