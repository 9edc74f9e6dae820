"""The kubo block store against the embedded store, in one run.

Four measurements, on kubo daemons that the test harness starts on
127.0.0.1 (``tests/support/kubo.py``, every setting there):

1. Bulk writes: the blocks of the real ``debian-bookworm`` image's second
   layer, put into a fresh kubo node. The four methods are one ``block/put`` per
   block, eight threads of single puts, one multipart ``block/put`` per
   codec, and one ``dag/import`` of a CAR per write batch (what ``KuboStore``
   does). Each on a fresh node, twice; the faster run counts.
2. Convert ``debian-bookworm`` with ``ipcs-fs convert``: into a fresh
   embedded store, into kubo (``--ipfs-api``) and into both (tiered).
3. Unpack it with ``ipcs-fs unpack``: from the embedded store, from the kubo
   node that holds the blocks, and on a second, empty node connected to the
   first only, with kubo alone and tiered.
4. After that pull, the second node unpacks ``debian-bookworm-rebuild``: the
   bytes it received from the first node (``stats/bw``) against the bytes of
   the blocks it did not hold.

Each ``ipcs-fs`` command runs as a child process, so times include its
start-up. Run from the repository root, as root (unpack needs it)::

    .venv/bin/python -m benchmarks.kubo

Results print as a table and are written to ``benchmarks/results/``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import machine_description, write_results
from fixtures.debian_images import ensure_image
from ipcs_fs.ids import Cid
from ipcs_fs.layer.rebuild import read_layer_root
from ipcs_fs.store import EmbeddedStore
from ipcs_fs.store.kubo import KuboStore
from ipcs_fs.store.walk import iter_dag_blocks
from tests.support.kubo import KuboNode

Blocks = list[tuple[Cid, bytes]]


def _ipcs_fs(*args: str) -> float:
    """Run ``ipcs-fs ARGS`` in a child process; return its wall time."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "ipcs_fs.cli", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def _post(node: KuboNode, path: str) -> Any:
    request = urllib.request.Request(node.api_url + path, method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


# 1. Bulk writes


def _block_put(store: KuboStore, blocks: Blocks) -> None:
    """Put ``blocks``, all of one codec, with one multipart ``block/put``."""
    from ipfshttpclient import multipart

    body, headers = multipart.stream_files([io.BytesIO(block) for _, block in blocks])
    answers = store._rpc.request(
        "/block/put",
        opts={"cid-codec": blocks[0][0].codec_name, "mhtype": "sha2-256"},
        decoder="json",
        data=body,
        headers=headers,
        action="put blocks",
    )
    for (cid, _), answer in zip(blocks, answers, strict=True):
        assert Cid.parse(answer["Key"]) == cid


def _put_one_by_one(store: KuboStore, blocks: Blocks) -> None:
    for pair in blocks:
        _block_put(store, [pair])


def _put_in_threads(store: KuboStore, blocks: Blocks) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair: _block_put(store, [pair]), blocks))


def _put_multipart(store: KuboStore, blocks: Blocks) -> None:
    for codec in {cid.codec for cid, _ in blocks}:
        group = [(cid, block) for cid, block in blocks if cid.codec == codec]
        for start in range(0, len(group), 4096):
            _block_put(store, group[start : start + 4096])


def _put_car(store: KuboStore, blocks: Blocks) -> None:
    # What KuboStore does: one dag/import of a CAR per write batch.
    store.put_many(blocks)


_PUT_METHODS: dict[str, Callable[[KuboStore, Blocks], None]] = {
    "block/put, one request per block": _put_one_by_one,
    "block/put, 8 threads of single puts": _put_in_threads,
    "block/put, one multipart request per codec": _put_multipart,
    "dag/import, one CAR per write batch": _put_car,
}


def _bench_puts(blocks: Blocks, repeat: int = 2) -> list[dict[str, Any]]:
    """Time each method on a fresh node, ``repeat`` times; keep the fastest."""
    rows = []
    size = sum(len(block) for _, block in blocks)
    for name, method in _PUT_METHODS.items():
        times = []
        for _ in range(repeat):
            with KuboNode() as node, KuboStore(node.api_multiaddr) as store:
                started = time.monotonic()
                method(store, blocks)
                times.append(time.monotonic() - started)
                assert all(store.has(cid) for cid, _ in blocks[:: len(blocks) // 20])
        seconds = min(times)
        rows.append(
            {
                "method": name,
                "blocks": len(blocks),
                "bytes": size,
                "seconds": [round(value, 2) for value in times],
                "ms_per_block": round(1000 * seconds / len(blocks), 3),
            }
        )
        print(f"  {name}: {', '.join(f'{value:.2f}' for value in times)} s")
    return rows


# 2 to 4. Convert, unpack, pull


@contextmanager
def _work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ipcs-fs-bench-kubo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _tar_stream_bytes(
    node: KuboNode, store: EmbeddedStore, image: Path, held: set[bytes]
) -> tuple[int, int]:
    """Return the blocks and bytes of the image's tar streams not in ``held``."""
    missing: dict[bytes, int] = {}
    for root in _layer_roots(image):
        top = read_layer_root(store.get, root).tar_stream.cid
        refs = node.output("refs", "-r", "--unique", str(top)).split()
        for cid in [top, *map(Cid.parse, refs)]:
            if cid.hash_digest not in held:
                missing[cid.hash_digest] = len(store.get(cid))
    return len(missing), sum(missing.values())


def _layer_roots(layout: Path) -> list[Cid]:
    index = json.loads((layout / "index.json").read_bytes())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    return [
        Cid.parse(layer["annotations"]["org.ipcs-fs.layer.root-cid"])
        for layer in manifest["layers"]
    ]


def _received(node: KuboNode, peer: KuboNode) -> int:
    time.sleep(2.5)  # libp2p's meter folds bytes into its totals once a second
    return int(_post(node, f"/stats/bw?peer={peer.peer_id}")["TotalIn"])


def _bench_stores(work: Path, source: str, rebuild_source: str) -> dict[str, Any]:
    results: dict[str, Any] = {"convert": {}, "unpack": {}}
    converted = f"oci:{work / 'converted'}:latest"
    rebuild = f"oci:{work / 'rebuild'}:latest"

    # Embedded store alone.
    embedded = ["--store", str(work / "embedded")]
    results["convert"]["embedded"] = _ipcs_fs(
        *embedded, "convert", "--file-granular", source, converted
    )
    results["unpack"]["embedded"] = _ipcs_fs(
        *embedded, "unpack", converted, str(work / "u-embedded")
    )

    with (
        KuboNode() as first,
        KuboNode() as second,
        KuboNode() as third,
        KuboNode() as fourth,
    ):
        first.connect(second)
        first.connect(third)
        kubo = ["--ipfs-api", first.api_multiaddr]
        results["convert"]["kubo"] = _ipcs_fs(
            *kubo, "convert", "--file-granular", source, converted
        )
        results["convert"]["tiered"] = _ipcs_fs(
            "--ipfs-api",
            fourth.api_multiaddr,
            "--store",
            str(work / "tiered"),
            "convert",
            "--file-granular",
            source,
            converted,
        )
        # The rebuild goes to the first node, with a local store to read its
        # blocks from below.
        local = ["--store", str(work / "a-local")]
        _ipcs_fs(*kubo, *local, "convert", "--file-granular", rebuild_source, rebuild)
        results["unpack"]["kubo, blocks local"] = _ipcs_fs(
            *kubo, "unpack", converted, str(work / "u-kubo")
        )
        results["unpack"]["kubo, pulled from a peer"] = _ipcs_fs(
            "--ipfs-api", third.api_multiaddr, "unpack", converted, str(work / "u-3")
        )
        tiered_b = ["--ipfs-api", second.api_multiaddr, "--store", str(work / "b")]
        results["unpack"]["tiered, pulled from a peer"] = _ipcs_fs(
            *tiered_b, "unpack", converted, str(work / "u-tiered")
        )

        # The second image on the node that pulled the first one.
        held = {
            Cid.parse(line).hash_digest
            for line in second.output("refs", "local").split()
        }
        with EmbeddedStore(work / "a-local") as store:
            blocks, missing = _tar_stream_bytes(first, store, work / "rebuild", held)
        before = _received(second, first)
        data_before = _post(second, "/bitswap/stat")["DataReceived"]
        seconds = _ipcs_fs(*tiered_b, "unpack", rebuild, str(work / "u-rebuild"))
        received = _received(second, first) - before
        data = _post(second, "/bitswap/stat")["DataReceived"] - data_before
        results["second_image"] = {
            "unpack_seconds": round(seconds, 2),
            "blocks_missing": blocks,
            "bytes_missing": missing,
            "bytes_received": received,
            "bitswap_data_received": data,
            "ratio": round(received / missing, 4) if missing else None,
        }
    return results


def _print_table(results: dict[str, Any]) -> None:
    print("\nbulk writes of", results["puts"][0]["blocks"], "blocks")
    for row in results["puts"]:
        print(f"  {row['method']:<45} {row['ms_per_block']:>8.3f} ms/block")
    for phase in ("convert", "unpack"):
        print(f"\n{phase} debian-bookworm")
        for store, seconds in results[phase].items():
            print(f"  {store:<45} {seconds:>8.2f} s")
    second = results["second_image"]
    print(
        "\ndebian-bookworm-rebuild after debian-bookworm:"
        f" {second['bytes_received']} bytes received for {second['bytes_missing']}"
        f" bytes of {second['blocks_missing']} missing blocks"
        f" (ratio {second['ratio']}), unpack {second['unpack_seconds']} s"
    )


def main() -> int:
    paths = ensure_image("debian-bookworm")
    rebuild = ensure_image("debian-bookworm-rebuild")
    source = f"oci:{paths.layout_dir}:{paths.tag}"
    rebuild_source = f"oci:{rebuild.layout_dir}:{rebuild.tag}"
    results: dict[str, Any] = {"machine": machine_description()}
    with _work_dir() as work:
        print("converting debian-bookworm for the write benchmark", flush=True)
        _ipcs_fs(
            "--store",
            str(work / "blocks"),
            "convert",
            "--file-granular",
            source,
            f"oci:{work / 'blocks-image'}:latest",
        )
        roots = _layer_roots(work / "blocks-image")
        with EmbeddedStore(work / "blocks") as store:
            blocks = list(iter_dag_blocks(store.get, roots[1:]))
        print("bulk writes", flush=True)
        results["puts"] = _bench_puts(blocks)
        print("convert and unpack", flush=True)
        measured = _bench_stores(work, source, rebuild_source)
    results.update(
        {
            "convert": {k: round(v, 2) for k, v in measured["convert"].items()},
            "unpack": {k: round(v, 2) for k, v in measured["unpack"].items()},
            "second_image": measured["second_image"],
        }
    )
    results["machine"]["load_average_after"] = os.getloadavg()
    _print_table(results)
    print("\nresults:", write_results("kubo", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
