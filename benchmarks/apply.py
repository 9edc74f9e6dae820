"""Measure the apply engine against GNU tar on the same uncompressed layers.

Each layer is written into an empty directory by three writers, in the same
run and from the same page-cached file:

- ``tar``: ``tar --xattrs --xattrs-include='*' --same-owner -xf LAYER -C DIR``;
- ``engine``: :func:`ipcs_fs.apply.apply_layer` on a mounted-tree target;
- ``upper``: the same with ``overlay_upper=True`` and no lower directories.

The report gives the median wall time of ``--runs`` runs per writer and the
ratio engine/tar (below 1 means faster than tar). Nothing is synced to disk by
either side, so the figures measure system calls and page-cache writes.

Run as root (ownership and device nodes need it)::

    .venv/bin/python benchmarks/apply.py                 # Debian image if built
    .venv/bin/python benchmarks/apply.py --image DIR     # any OCI image layout
    .venv/bin/python benchmarks/apply.py LAYER.tar ...   # plain or gzip tars

Without arguments it uses the Debian bookworm image that
``fixtures/debian_images.py`` builds under ``${IPCS_FS_CACHE:-~/.cache/ipcs-fs}``
or, if that is missing, a tar of this machine's ``/usr/lib/python3*``.
Uncompressed copies of the layers are kept under ``CACHE/bench``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ipcs_fs.apply import ApplyOptions, apply_layer

__all__ = ["main"]

_CACHE = Path(os.environ.get("IPCS_FS_CACHE", Path.home() / ".cache" / "ipcs-fs"))
_DEBIAN = _CACHE / "images" / "debian-bookworm" / "oci"


def _uncompressed(path: Path, cache: Path) -> Path:
    """Return an uncompressed copy of the layer at ``path``, made once."""
    with open(path, "rb") as stream:
        if stream.read(2) != b"\x1f\x8b":
            return path
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16] + ".tar"
    target = cache / name
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with gzip.open(path, "rb") as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        partial.rename(target)
    return target


def _image_layers(layout: Path) -> list[Path]:
    """Return the layer blobs of the first manifest of an OCI image layout."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((blobs / digest).read_text())
    return [blobs / layer["digest"].split(":")[1] for layer in manifest["layers"]]


def _python_tar(cache: Path) -> Path:
    """Return a tar of /usr/lib/python3*, made once."""
    target = cache / "usr-lib-python3.tar"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in Path("/usr/lib").glob("python3*"))
        subprocess.run(
            ["tar", "--xattrs", "-cf", target, "-C", "/usr/lib", *names], check=True
        )
    return target


def _count_entries(layer: Path) -> int:
    listing = subprocess.run(
        ["tar", "-tf", layer], check=True, capture_output=True
    ).stdout
    return listing.count(b"\n")


def _run_tar(layer: Path, root: Path) -> None:
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--same-owner",
            "-xf",
            str(layer),
            "-C",
            str(root),
        ],
        check=True,
    )


def _run_engine(layer: Path, root: Path, *, upper: bool) -> None:
    with open(layer, "rb") as stream:
        apply_layer(
            stream, root, source=layer.name, options=ApplyOptions(overlay_upper=upper)
        )


def _time_once(writer: Callable[[Path], None], scratch: Path) -> float:
    """Return the seconds one write into a fresh directory takes."""
    root = Path(tempfile.mkdtemp(dir=scratch))
    started = time.perf_counter()
    writer(root)
    elapsed = time.perf_counter() - started
    shutil.rmtree(root)
    return elapsed


def _measure(layer: Path, runs: int, scratch: Path) -> dict[str, object]:
    layer.read_bytes()  # into the page cache, for every writer alike
    writers: dict[str, Callable[[Path], None]] = {
        "tar": lambda root: _run_tar(layer, root),
        "engine": lambda root: _run_engine(layer, root, upper=False),
        "upper": lambda root: _run_engine(layer, root, upper=True),
    }
    # Writers take turns, so load from other processes spreads over all three.
    times: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(runs):
        for name, writer in writers.items():
            times[name].append(_time_once(writer, scratch))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    return {
        "layer": str(layer),
        "bytes": layer.stat().st_size,
        "entries": _count_entries(layer),
        "seconds": seconds,
        "ratio_engine_to_tar": seconds["engine"] / seconds["tar"],
        "ratio_upper_to_tar": seconds["upper"] / seconds["tar"],
    }


def _default_layers(cache: Path) -> list[Path]:
    if (_DEBIAN / "index.json").exists():
        return _image_layers(_DEBIAN)
    return [_python_tar(cache)]


def _print_report(results: list[dict[str, object]]) -> None:
    print(
        f"{'layer':<20} {'MiB':>7} {'entries':>8} {'tar s':>7} {'engine s':>9}"
        f" {'upper s':>8} {'engine/tar':>10} {'upper/tar':>9}"
    )
    for result in results:
        seconds = result["seconds"]
        assert isinstance(seconds, dict)
        print(
            f"{Path(str(result['layer'])).name[:20]:<20}"
            f" {int(result['bytes']) / 2**20:7.1f} {result['entries']:>8}"  # type: ignore[call-overload]
            f" {seconds['tar']:7.2f} {seconds['engine']:9.2f} {seconds['upper']:8.2f}"
            f" {result['ratio_engine_to_tar']:10.2f} {result['ratio_upper_to_tar']:9.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "layers", nargs="*", type=Path, help="tar layers, plain or gzip"
    )
    parser.add_argument("--image", type=Path, help="an OCI image layout directory")
    parser.add_argument("--runs", type=int, default=3, help="runs per writer (median)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the output trees (same file system for every writer)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: ownership and device nodes need it")

    cache = _CACHE / "bench"
    sources = args.layers or (_image_layers(args.image) if args.image else [])
    layers = [_uncompressed(p, cache) for p in sources or _default_layers(cache)]
    results = [_measure(layer, args.runs, args.scratch) for layer in layers]
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        _print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
