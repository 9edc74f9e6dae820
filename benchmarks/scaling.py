"""Scaling runs: conversion and unpack time and peak memory as layers grow.

Synthetic layers, made once and cached under ``CACHE/bench/scaling/``:

- ``files-150k`` and ``files-300k``: 150,000 and 300,000 small distinct files
  (100 bytes each) in directories of 1,000, so the second layer is twice the
  first;
- ``dir-200k``: one directory of 200,000 empty files (a HAMT);
- ``file-4gib``: one file of 4 GiB of pseudo-random bytes (a plain tar, since
  compressing 4 GiB would dominate the run);
- ``entries-1m``: 1,000,000 entries, a directory for each 1,000 and empty
  files in it. Its two runs take minutes, so it runs only when named with
  ``--only``.

Each layer is converted into a fresh embedded store, then unpacked from it, in
child processes whose peak RSS is reported. Time per entry and per MiB should
stay flat if time grows linearly, and peak memory should not follow the size.
Run as root from the repository root::

    .venv/bin/python -m benchmarks.scaling [--only NAME ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_description, write_results
from fixtures import tarwriter as tw
from fixtures.debian_images import cache_root

_FOUR_GIB = 4 << 30


def _small_files(count: int):
    rng = random.Random(count)
    for index in range(count):
        if index % 1000 == 0:
            yield tw.header(b"d%04d/" % (index // 1000), typeflag=b"5", mode=0o755)
        content = b"%08d" % index + rng.randbytes(92)
        yield tw.header(b"d%04d/f%06d" % (index // 1000, index), size=len(content))
        yield tw.pad(content)
    yield tw.end()


def _one_directory(count: int):
    yield tw.header(b"big/", typeflag=b"5", mode=0o755)
    for index in range(count):
        yield tw.header(b"big/entry-%07d" % index)
    yield tw.end()


def _empty_files(count: int):
    for index in range(count):
        if index % 1000 == 0:
            yield tw.header(b"d%04d/" % (index // 1000), typeflag=b"5", mode=0o755)
        else:
            yield tw.header(b"d%04d/e%07d" % (index // 1000, index))
    yield tw.end()


def _large_file(size: int):
    rng = random.Random(4)
    yield tw.header(b"large", size=size, gnu=True)
    for _ in range(size // (1 << 20)):
        yield rng.randbytes(1 << 20)
    yield tw.end()


_LAYERS = {
    "files-150k": (lambda: _small_files(150_000), True),
    "files-300k": (lambda: _small_files(300_000), True),
    "dir-200k": (lambda: _one_directory(200_000), True),
    "file-4gib": (lambda: _large_file(_FOUR_GIB), False),
    "entries-1m": (lambda: _empty_files(1_000_000), True),
}
# Layers left out unless named with --only.
_ON_REQUEST = frozenset({"entries-1m"})


def _layer_path(name: str) -> Path:
    generate, compressed = _LAYERS[name]
    directory = cache_root() / "bench" / "scaling"
    path = directory / (f"{name}.tar.gz" if compressed else f"{name}.tar")
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    opener = gzip.open if compressed else open
    with opener(partial, "wb") as out:
        for piece in generate():
            out.write(piece)
    partial.rename(path)
    return path


def _child(action: str, argv: list[str]) -> None:
    started = time.monotonic()
    cpu = time.process_time()
    if action == "convert":
        details = _child_convert(Path(argv[0]), Path(argv[1]))
    else:
        details = _child_unpack(argv[0], Path(argv[1]), Path(argv[2]))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    details.update(
        wall_seconds=time.monotonic() - started,
        cpu_seconds=time.process_time() - cpu,
        peak_rss_mib=usage.ru_maxrss / 1024,
    )
    json.dump(details, sys.stdout)


def _child_convert(layer: Path, store_path: Path) -> dict:
    from ipcs_fs.layer.convert import convert_layer
    from ipcs_fs.oci.compression import open_uncompressed
    from ipcs_fs.readahead import ReadAhead
    from ipcs_fs.store import EmbeddedStore

    with (
        EmbeddedStore(store_path) as store,
        ReadAhead(open_uncompressed(open(layer, "rb"))) as tar,
        store.batch(background=True) as batch,
    ):
        result = convert_layer(tar, batch.put, source=layer.name)
    return {
        "root": str(result.root_cid),
        "entries": result.entry_count,
        "tar_bytes": result.tar_size,
    }


def _child_unpack(root: str, store_path: Path, target: Path) -> dict:
    from ipcs_fs.apply import apply_layer
    from ipcs_fs.ids import Cid
    from ipcs_fs.layer.rebuild import RebuiltTar, read_layer_root
    from ipcs_fs.store import EmbeddedStore

    target.mkdir()
    with EmbeddedStore(store_path) as store:
        layer = read_layer_root(store.get, Cid.parse(root))
        stats = apply_layer(RebuiltTar(store.get, layer), target, source=root)
    return {"entries": stats.entries}


def _run_child(*argv: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--child", *argv],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)


def _measure(name: str) -> dict:
    layer = _layer_path(name)
    with tempfile.TemporaryDirectory(
        prefix="ipcs-fs-scaling-", dir="/var/tmp"
    ) as scratch:
        store = Path(scratch) / "store"
        converted = _run_child("convert", str(layer), str(store))
        unpacked = _run_child(
            "unpack", converted["root"], str(store), f"{scratch}/root"
        )
    mib = converted["tar_bytes"] / 2**20
    entries = converted["entries"]
    row = {"layer": name, "tar_mib": mib, "entries": entries}
    for action, figures in (("convert", converted), ("unpack", unpacked)):
        row[action] = {
            "wall_seconds": figures["wall_seconds"],
            "cpu_seconds": figures["cpu_seconds"],
            "peak_rss_mib": figures["peak_rss_mib"],
            "us_per_entry": 1e6 * figures["wall_seconds"] / entries,
            "ms_per_mib": 1e3 * figures["wall_seconds"] / mib,
        }
    return row


def _print_row(row: dict) -> None:
    for action in ("convert", "unpack"):
        figures = row[action]
        print(
            f"{row['layer']:11} {action:8} {row['entries']:8} entries"
            f" {row['tar_mib']:7.0f} MiB  {figures['wall_seconds']:7.2f}s"
            f" (cpu {figures['cpu_seconds']:6.2f}s)"
            f"  {figures['us_per_entry']:7.1f} us/entry"
            f"  {figures['ms_per_mib']:6.1f} ms/MiB"
            f"  peak {figures['peak_rss_mib']:5.0f} MiB",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="scaling runs")
    parser.add_argument("--only", action="append", choices=sorted(_LAYERS))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1:])
        return 0

    rows = []
    for name in args.only or [name for name in _LAYERS if name not in _ON_REQUEST]:
        rows.append(_measure(name))
        _print_row(rows[-1])
    path = write_results("scaling", {"machine": machine_description(), "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
