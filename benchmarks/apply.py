"""Measure tar, the apply engine and ``ipcs-fs unpack`` on the same layer, in one run.

Each layer is written into empty directories by these writers, in the same
run, from the same page-cached files:

- ``tar``: ``tar --xattrs --xattrs-include='*' --same-owner -xf LAYER -C DIR``;
- ``engine``: :func:`ipcs_fs.apply.apply_layer` on the uncompressed tar file;
- ``upper``: the same with ``overlay_upper=True`` and no lower directories;
- ``unpack``: :func:`ipcs_fs.operations.unpack.unpack_image`, the work of
  ``ipcs-fs unpack``, on a one-layer image converted to file-granular layers:
  it rebuilds the tar from the embedded block store and applies it, timed
  inside this process. The store records the layer as verified (its
  conversion or the first run did), so the rebuilt tar is not hashed;
- ``unpack-verify``: the same with ``verify=True`` (``ipcs-fs unpack
  --verify``), which hashes the rebuilt tar and checks its diff_id;
- ``unpack-cli``: the ``ipcs-fs unpack`` command itself, a child process, so
  its time includes starting Python and importing ipcs-fs (about 0.15 s).

The one-layer image, its conversion and its store are made once and cached
under ``CACHE/bench/unpack/``. Writers take turns, so load from other
processes spreads over all of them. The report gives, per file system, the
median wall and CPU time of ``--runs`` runs per writer and each writer's ratio
to tar (below 1 means faster than tar). Nothing is synced to disk inside the
timed runs, so they measure system calls and page-cache writes.

Before each run the page cache is written back (``sync``, untimed), so that
no writeback of an earlier run competes with it. Output trees on tmpfs are
removed after each run. Elsewhere they are kept, without their page cache,
until every run is done. On an ext4 without a journal (this project's test
VM), creating files where files were deleted in the last 30 to 60 seconds is
slow, because ext4 then skips recently freed inodes one lookup at a time.
That scan took most of tar's time in ``perf`` when each run removed the
previous run's tree. For the same reason, run the benchmark at least a minute
after removing large trees from the same file system.

Run as root (ownership and device nodes need it), from the repository root::

    .venv/bin/python -m benchmarks.apply                  # debian-bookworm base layer
    .venv/bin/python -m benchmarks.apply LAYER.tar ...    # plain or gzip tars
    .venv/bin/python -m benchmarks.apply --scratch /var/tmp --scratch /dev/shm

Results print as a table and are written to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import machine_description, write_results
from fixtures.debian_images import cache_root, ensure_image
from ipcs_fs.apply import ApplyOptions, apply_layer
from ipcs_fs.operations.convert import convert_image
from ipcs_fs.operations.unpack import unpack_image
from ipcs_fs.store import EmbeddedStore

__all__ = ["main"]

WRITERS = ("tar", "engine", "upper", "unpack", "unpack-verify", "unpack-cli")
_IPCS_FS = Path(sys.executable).with_name("ipcs-fs")
_TAG = "latest"

Writer = Callable[[Path], None]


# Layers and their converted images


def _base_layer() -> Path:
    """Return the base layer blob of the debian-bookworm image, built once."""
    paths = ensure_image("debian-bookworm")
    index = json.loads((paths.layout_dir / "index.json").read_bytes())
    blobs = paths.layout_dir / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    return blobs / manifest["layers"][0]["digest"][7:]


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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_blob(blobs: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _tar_image(layer: Path, directory: Path) -> None:
    """Write a one-layer OCI image layout whose layer is the plain tar ``layer``."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    diff_id = _sha256_file(layer)
    shutil.copyfile(layer, blobs / diff_id)

    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
    }
    config_ref = _write_blob(blobs, json.dumps(config).encode())

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json"}
        | config_ref,
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{diff_id}",
                "size": layer.stat().st_size,
            }
        ],
    }
    manifest_ref = _write_blob(blobs, json.dumps(manifest).encode())

    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "annotations": {"org.opencontainers.image.ref.name": _TAG},
            }
            | manifest_ref
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _converted_image(layer: Path, cache: Path) -> tuple[str, Path]:
    """Return the file-granular image of ``layer`` and its store, made once."""
    directory = cache / "unpack" / layer.name.removesuffix(".tar")
    reference = f"oci:{directory / 'file-granular'}:{_TAG}"
    store = directory / "store"
    if (directory / "done").exists():
        return reference, store
    shutil.rmtree(directory, ignore_errors=True)
    _tar_image(layer, directory / "tar")
    with EmbeddedStore(store) as blocks:
        convert_image(
            f"oci:{directory / 'tar'}:{_TAG}", reference, blocks, to_tar=False
        )
    shutil.rmtree(directory / "tar")
    (directory / "done").touch()
    return reference, store


# Writers


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


def _run_cli(reference: str, store: Path, root: Path) -> None:
    subprocess.run(
        [str(_IPCS_FS), "--store", str(store), "unpack", reference, str(root / "r")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _writers(layer: Path, reference: str, store: EmbeddedStore) -> dict[str, Writer]:
    return {
        "tar": lambda root: _run_tar(layer, root),
        "engine": lambda root: _run_engine(layer, root, upper=False),
        "upper": lambda root: _run_engine(layer, root, upper=True),
        "unpack": lambda root: unpack_image(reference, root / "r", store),
        "unpack-verify": lambda root: unpack_image(
            reference, root / "r", store, verify=True
        ),
        "unpack-cli": lambda root: _run_cli(reference, store.path, root),
    }


# Measuring


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children, user and system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _time_once(writer: Writer, scratch: Path, kept: list[Path]) -> tuple[float, float]:
    """Return the wall and CPU seconds of one write into a fresh directory."""
    root = Path(tempfile.mkdtemp(prefix="bench-apply-", dir=scratch))
    os.sync()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    writer(root)
    elapsed = time.perf_counter() - started, _cpu_seconds() - cpu
    _put_away(root, kept)
    return elapsed


def _put_away(root: Path, kept: list[Path]) -> None:
    """Remove a tree on tmpfs; elsewhere keep it, without its page cache.

    Removing it would slow down the next runs on an ext4 without a journal.
    Keeping its pages, or keeping tmpfs trees, made later runs about four
    times slower on this VM once some 5 GiB of trees were kept. The cause
    was not found.
    """
    if _file_system(root) == "tmpfs":
        shutil.rmtree(root)
        return
    kept.append(root)
    os.sync()
    for directory, _, names in os.walk(root):
        for name in names:
            _drop_page_cache(os.path.join(directory, name))


def _drop_page_cache(path: str) -> None:
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _file_system(path: Path) -> str:
    """Return the type of the file system that contains ``path``, as mounted."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount = fields[1]
        inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def _measure(
    writers: dict[str, Writer], runs: int, scratch: Path, kept: list[Path]
) -> dict[str, object]:
    """Time every writer ``runs`` times into ``scratch``, keeping trees in ``kept``."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in writers}
    load_before = os.getloadavg()
    # Writers take turns, so load from other processes spreads over all.
    for _ in range(runs):
        for name, writer in writers.items():
            samples[name].append(_time_once(writer, scratch, kept))
    wall = {
        name: statistics.median(s[0] for s in runs_) for name, runs_ in samples.items()
    }
    cpu = {
        name: statistics.median(s[1] for s in runs_) for name, runs_ in samples.items()
    }
    return {
        "scratch": str(scratch),
        "file_system": _file_system(scratch.resolve()),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "ratio_to_tar": {
            name: wall[name] / wall["tar"] for name in wall if name != "tar"
        },
        "samples": samples,
    }


def _measure_layer(
    layer: Path, args: argparse.Namespace, cache: Path, kept: list[Path]
) -> dict[str, object]:
    reference, store_path = _converted_image(layer, cache)
    layer.read_bytes()  # into the page cache, for every writer alike
    with EmbeddedStore(store_path) as store:
        writers = _writers(layer, reference, store)
        chosen = {name: writers[name] for name in args.writers}
        results = [_measure(chosen, args.runs, path, kept) for path in args.scratch]
    return {
        "layer": str(layer),
        "bytes": layer.stat().st_size,
        "entries": _count_entries(layer),
        "runs": args.runs,
        "results": results,
    }


def _remove(trees: list[Path]) -> None:
    for root in trees:
        shutil.rmtree(root)


def _count_entries(layer: Path) -> int:
    listing = subprocess.run(
        ["tar", "-tf", layer], check=True, capture_output=True
    ).stdout
    return listing.count(b"\n")


# Report


def _print_report(layers: list[dict[str, object]]) -> None:
    for layer in layers:
        print(
            f"{Path(str(layer['layer'])).name}: {int(layer['bytes']) / 2**20:.1f} MiB,"  # type: ignore[call-overload]
            f" {layer['entries']} entries, median of {layer['runs']} runs"
        )
        for result in layer["results"]:  # type: ignore[attr-defined]
            load = result["load_average_before"][0]
            print(
                f"  {result['scratch']} ({result['file_system']}),"
                f" load average {load:.1f}:"
            )
            print(f"    {'writer':<11} {'wall s':>7} {'cpu s':>7} {'ratio':>6}")
            for name, wall in result["wall_seconds"].items():
                ratio = result["ratio_to_tar"].get(name, 1.0)
                cpu = result["cpu_seconds"][name]
                print(f"    {name:<11} {wall:7.3f} {cpu:7.3f} {ratio:6.2f}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table and write the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "layers", nargs="*", type=Path, help="tar layers, plain or gzip"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per writer (median)")
    parser.add_argument(
        "--scratch",
        type=Path,
        action="append",
        help="directory for the output trees, one measurement each"
        " (default: /var/tmp and /dev/shm)",
    )
    parser.add_argument(
        "--writers",
        default=",".join(WRITERS),
        help="comma-separated writers to run; tar is always run (default: all)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: ownership and device nodes need it")
    args.scratch = args.scratch or [Path("/var/tmp"), Path("/dev/shm")]
    names = [name for name in args.writers.split(",") if name]
    unknown = sorted(set(names) - set(WRITERS))
    if unknown:
        parser.error(f"unknown writers {', '.join(unknown)}; choose from {WRITERS}")
    args.writers = ["tar", *(name for name in names if name != "tar")]

    cache = cache_root() / "bench"
    layers = [_uncompressed(path, cache) for path in args.layers or [_base_layer()]]
    kept: list[Path] = []
    try:
        results = [_measure_layer(layer, args, cache, kept) for layer in layers]
    finally:
        _remove(kept)
    _print_report(results)
    path = write_results("apply", {"machine": machine_description(), "layers": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
