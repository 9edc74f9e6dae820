"""Conversion time and peak memory against the decompression floor, in one run.

For each layer, this runs back to back:

- the floor, ``gzip -dc LAYER | sha256sum``: a conversion must at least
  decompress the layer and hash it once;
- ``convert``: a child Python process that converts the layer into a fresh
  embedded block store, reporting wall time, CPU time and peak RSS;
- what a user would run instead to put a layer's files into IPFS:
  ``tar -x`` of the layer, then kubo's ``ipfs add -r --cid-version=1
  --offline`` of the tree (less its devices and fifos, which ``ipfs add``
  rejects) into a fresh repository (skipped when the kubo built
  by ``scripts/install-kubo.sh`` is missing; it never starts a daemon);
- ``convert --tar``: in the same child, after the conversion, the layer
  rebuilt from the store, gzipped and hashed into a blob file, as
  ``ipcs-fs convert --tar`` does for each layer. Its reference is ``gzip -6
  -n -c TAR | tee BLOB | sha256sum`` of the uncompressed tar, which writing
  the layer at the same level must at least do.

Layers: the base layer of the real ``debian-bookworm`` image (built by
``fixtures.debian_images``), and a synthetic layer of about 1 GiB of this
machine's ``/usr/lib`` files (made once, cached), to check that memory stays
flat as layers grow. Run from the repository root::

    .venv/bin/python -m benchmarks.convert [--repeat N] [--layer FILE ...]

Results print as a table and are written to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_description, write_results
from fixtures.debian_images import cache_root, ensure_image

_SYNTHETIC_SIZE = 1 << 30


def _base_layer() -> Path:
    paths = ensure_image("debian-bookworm")
    index = json.loads((paths.layout_dir / "index.json").read_bytes())
    blobs = paths.layout_dir / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    return blobs / manifest["layers"][0]["digest"][7:]


def _synthetic_layer() -> Path:
    """A gzip tar of about 1 GiB of /usr/lib, made once and cached."""
    target = cache_root() / "bench" / "usr-lib-1gib.tar.gz"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    total = 0
    with open(partial, "wb") as raw:
        gzip = subprocess.Popen(["gzip", "-6", "-n"], stdin=subprocess.PIPE, stdout=raw)
        with tarfile.open(
            fileobj=gzip.stdin, mode="w|", format=tarfile.PAX_FORMAT
        ) as tar:
            for path in sorted(Path("/usr/lib").rglob("*")):
                if total >= _SYNTHETIC_SIZE:
                    break
                if path.is_symlink() or path.is_file():
                    tar.add(path, recursive=False)
                    total += path.lstat().st_size if path.is_file() else 0
        gzip.stdin.close()
        if gzip.wait() != 0:
            raise RuntimeError("gzip failed while making the synthetic layer")
    partial.rename(target)
    return target


def _floor(layer: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        f"gzip -dc '{layer}' | sha256sum > /dev/null", shell=True, check=True
    )
    return time.monotonic() - started


def _ipfs_binary() -> Path | None:
    binary = cache_root() / "bin" / "ipfs"
    return binary if binary.exists() else None


def _tar_and_ipfs_add(layer: Path, ipfs: Path) -> float:
    """Time ``tar -x`` plus ``ipfs add -r`` of the extracted tree, offline."""
    with tempfile.TemporaryDirectory(prefix="ipcs-fs-bench-") as scratch:
        tree = Path(scratch) / "tree"
        tree.mkdir()
        env = {
            **os.environ,
            "IPFS_PATH": str(Path(scratch) / "repo"),
            "IPFS_TELEMETRY": "off",
        }
        subprocess.run(
            [ipfs, "init", "--profile=test", "-e"],
            env=env,
            check=True,
            capture_output=True,
        )
        started = time.monotonic()
        subprocess.run(["tar", "-xzf", layer, "-C", tree], check=True)
        # ipfs add takes files, directories and symlinks only.
        subprocess.run(
            [
                "find",
                tree,
                "(",
                "-type",
                "c",
                "-o",
                "-type",
                "b",
                "-o",
                "-type",
                "p",
                ")",
                "-delete",
            ],
            check=True,
        )
        subprocess.run(
            [ipfs, "add", "-r", "-Q", "--cid-version=1", "--offline", tree],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.monotonic() - started


def _gzip_reference(tar: Path) -> float:
    """Time ``gzip -6 -n -c TAR | tee BLOB | sha256sum``."""
    with tempfile.TemporaryDirectory(prefix="ipcs-fs-bench-") as scratch:
        blob = Path(scratch) / "blob"
        started = time.monotonic()
        subprocess.run(
            f"gzip -6 -n -c '{tar}' | tee '{blob}' | sha256sum > /dev/null",
            shell=True,
            check=True,
        )
        return time.monotonic() - started


def _convert(layer: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="ipcs-fs-bench-") as scratch:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.convert",
                "--child",
                str(layer),
                scratch,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(result.stdout)


def _child(layer: Path, scratch: Path) -> None:
    from ipcs_fs.layer.convert import convert_layer
    from ipcs_fs.oci.compression import open_uncompressed
    from ipcs_fs.store import EmbeddedStore

    started = time.monotonic()
    cpu_started = time.process_time()
    with (
        EmbeddedStore(scratch / "store") as store,
        open_uncompressed(open(layer, "rb")) as tar,
        store.batch(background=True) as batch,
    ):
        result = convert_layer(tar, batch.put, source=layer.name, read_ahead=True)
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with EmbeddedStore(scratch / "store") as store:
        tar_row = _child_to_tar(store, result, scratch / "blob")
    json.dump(
        {
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "tar_bytes": result.tar_size,
            "entries": result.entry_count,
            **tar_row,
        },
        sys.stdout,
    )


def _child_to_tar(store, result, blob: Path) -> dict:
    """Rebuild, gzip and hash the layer as ``convert --tar`` does; time it."""
    import hashlib

    from ipcs_fs.layer.rebuild import RebuiltTar, read_layer_root
    from ipcs_fs.oci.compression import gzip_compress_chunks

    started = time.monotonic()
    cpu_started = time.process_time()
    root = read_layer_root(store.get, result.root_cid)
    tar = RebuiltTar(store.get, root, expected_diff_id=result.diff_id)
    digest = hashlib.sha256()
    size = 0
    with open(blob, "wb") as output:
        for data in gzip_compress_chunks(iter(lambda: tar.read(1 << 20), b"")):
            digest.update(data)
            output.write(data)
            size += len(data)
    return {
        "to_tar_wall_seconds": time.monotonic() - started,
        "to_tar_cpu_seconds": time.process_time() - cpu_started,
        "to_tar_blob_bytes": size,
    }


def _measure(layer: Path, tar: Path, run: int, ipfs: Path | None) -> dict:
    floor = _floor(layer)
    converted = _convert(layer)
    gzip_seconds = _gzip_reference(tar)
    row = {
        "layer": str(layer),
        "run": run,
        "floor_seconds": floor,
        **converted,
        "ratio": converted["wall_seconds"] / floor,
        "gzip_seconds": gzip_seconds,
        "to_tar_ratio": converted["to_tar_wall_seconds"] / gzip_seconds,
    }
    if ipfs is not None:
        seconds = _tar_and_ipfs_add(layer, ipfs)
        row["tar_ipfs_add_seconds"] = seconds
        row["speedup_over_tar_ipfs_add"] = seconds / converted["wall_seconds"]
    return row


def _print_row(layer: Path, row: dict) -> None:
    print(
        f"{layer.name[:24]:24} run {row['run']}:"
        f" tar {row['tar_bytes'] / 2**20:5.0f} MiB"
        f"  floor {row['floor_seconds']:6.2f}s"
        f"  convert {row['wall_seconds']:6.2f}s (cpu {row['cpu_seconds']:6.2f}s)"
        f"  ratio {row['ratio']:4.2f}  peak {row['peak_rss_mib']:4.0f} MiB"
    )
    if "tar_ipfs_add_seconds" in row:
        print(
            f"{'':24} tar -x + ipfs add -r: {row['tar_ipfs_add_seconds']:6.2f}s,"
            f" {row['speedup_over_tar_ipfs_add']:.1f} times the conversion"
        )
    print(
        f"{'':24} convert --tar {row['to_tar_wall_seconds']:6.2f}s"
        f" (cpu {row['to_tar_cpu_seconds']:6.2f}s)"
        f"  gzip -6 {row['gzip_seconds']:6.2f}s  ratio {row['to_tar_ratio']:4.2f}"
        f"  blob {row['to_tar_blob_bytes'] / 1e6:.1f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="conversion benchmark")
    parser.add_argument("--layer", type=Path, action="append", help="gzip layer")
    parser.add_argument("--repeat", type=int, default=3, help="runs per layer")
    parser.add_argument(
        "--child", nargs=2, metavar=("LAYER", "SCRATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(Path(args.child[0]), Path(args.child[1]))
        return 0

    layers = args.layer or [_base_layer(), _synthetic_layer()]
    ipfs = _ipfs_binary()
    rows = []
    for layer in layers:
        with tempfile.TemporaryDirectory(prefix="ipcs-fs-bench-") as scratch:
            tar = Path(scratch) / "layer.tar"
            subprocess.run(f"gzip -dc '{layer}' > '{tar}'", shell=True, check=True)
            for run in range(args.repeat):
                rows.append(_measure(layer, tar, run, ipfs))
                _print_row(layer, rows[-1])
    path = write_results("convert", {"machine": machine_description(), "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
