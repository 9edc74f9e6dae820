"""A peer that serves a tampered block must not get it applied.

Node A holds the converted ``debian-bookworm``; one content leaf of its first
layer is altered in A's flatfs repository while A is stopped. Node B, which
does not hold that block, unpacks the image from A: bitswap drops the bytes
that do not hash to the CID, so the fetch times out, and the unpack fails
naming the CID and saying that the directory is incomplete.
"""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import pytest
from support.kubo import IpfsCommandError, KuboNode

from fixtures.debian_images import ensure_image
from ipcs_fs.cli import main
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.layer.rebuild import read_layer_root
from ipcs_fs.store import EmbeddedStore
from ipcs_fs.store.kubo import EMPTY_BLOCK_CID

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking needs root"),
]


def block_file(node: KuboNode, cid: Cid) -> Path:
    """The flatfs file of ``cid``: its multihash in upper-case base32, in the
    directory named by the two characters before the last."""
    assert node.repo is not None
    key = base64.b32encode(cid.raw[2:]).decode().rstrip("=")
    return node.repo / "blocks" / key[-3:-1] / f"{key}.data"


def test_tampered_block_fails_the_unpack(
    kubo_pair: tuple[KuboNode, KuboNode],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = kubo_pair
    paths = ensure_image("debian-bookworm")
    converted = f"oci:{tmp_path / 'converted'}:latest"
    store = tmp_path / "a-store"
    status = main(
        [
            "--ipfs-api",
            first.api_multiaddr,
            "--store",
            str(store),
            "convert",
            "--file-granular",
            f"oci:{paths.layout_dir}:{paths.tag}",
            converted,
        ]
    )
    assert status == 0

    # A content leaf early in the first layer's tar stream.
    with EmbeddedStore(store) as written:
        top = read_layer_root(written.get, _first_layer(converted)).tar_stream.cid
        refs = first.output("refs", "-r", "--unique", str(top)).split()
        leaves = [Cid.parse(ref) for ref in refs if Cid.parse(ref).codec == RAW]
        victim = [cid for cid in leaves if cid != EMPTY_BLOCK_CID][20]
        original = written.get(victim)

    restart_with_tampered_block(first, victim, original)
    second.connect(first)
    with pytest.raises(IpfsCommandError):
        second.run("block", "stat", "--offline", str(victim))
    assert first.run("block", "get", str(victim)).stdout != original

    capsys.readouterr()
    target = tmp_path / "unpacked"
    status = main(
        [
            "--ipfs-api",
            second.api_multiaddr,
            "--store",
            str(tmp_path / "b-store"),
            "--fetch-timeout",
            "3",
            "unpack",
            converted,
            str(target),
        ]
    )

    error = capsys.readouterr().err.splitlines()[-1]
    assert status == 1
    assert error.startswith("ipcs-fs: failed to apply layer ")
    assert f"failed to get block {victim}: neither kubo at" in error
    assert f"{target} is incomplete and should be removed" in error
    with pytest.raises(IpfsCommandError):
        second.run("block", "stat", "--offline", str(victim))
    with EmbeddedStore(tmp_path / "b-store") as cache:
        assert not cache.has(victim)


def restart_with_tampered_block(node: KuboNode, cid: Cid, original: bytes) -> None:
    """Restart ``node`` with the block ``cid`` altered on disk, same length."""
    path = block_file(node, cid)
    assert path.read_bytes() == original
    assert node.process is not None
    os.killpg(node.process.pid, signal.SIGTERM)
    node.process.wait(timeout=30)
    node.process = None
    path.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    node._start_daemon()
    node._read_addresses()


def _first_layer(reference: str) -> Cid:
    from ipcs_fs.oci.transport import open_source
    from ipcs_fs.operations.layers import root_cid_of

    with open_source(reference) as source:
        (ref,) = source.manifests()
        return root_cid_of(ref.manifest.layers[0])
