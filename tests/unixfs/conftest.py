"""Fixtures for the UnixFS tests: an in-memory block store and the JS oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ipcs_fs.errors import NotFoundError
from ipcs_fs.ids import Cid
from ipcs_fs.unixfs import Block

REPO = Path(__file__).resolve().parents[2]
INSTALL_ORACLE = REPO / "scripts" / "install-unixfs-oracle.sh"


class MemoryStore:
    """Blocks in a dict, copied on put because PutBlock may pass a memoryview."""

    def __init__(self) -> None:
        self.blocks: dict[Cid, bytes] = {}
        self.puts = 0

    def put(self, cid: Cid, block: Block) -> None:
        assert cid.matches(block), f"block does not match {cid}"
        self.blocks[cid] = bytes(block)
        self.puts += 1

    def get(self, cid: Cid) -> bytes:
        try:
            return self.blocks[cid]
        except KeyError:
            raise NotFoundError(f"block {cid} not found") from None


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


Oracle = Callable[[Sequence[Path], int], list[str]]


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """Return a function giving the JS importer's CIDs for files and directories.

    Installs the pinned importer into the cache on first use (needs npm and
    the npm registry once); after that it runs offline.
    """
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    installed = subprocess.run(
        [str(INSTALL_ORACLE)], check=True, capture_output=True, text=True
    )
    script = installed.stdout.strip().splitlines()[-1]

    def cids(paths: Sequence[Path], shard_threshold: int = 262144) -> list[str]:
        listing = "".join(f"{path}\n" for path in paths)
        result = subprocess.run(
            ["node", script, "--shard-threshold", str(shard_threshold)],
            input=listing,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "NODE_OPTIONS": ""},
        )
        lines = result.stdout.splitlines()
        assert [line.split("\t")[1] for line in lines] == [str(p) for p in paths]
        return [line.split("\t")[0] for line in lines]

    return cids
