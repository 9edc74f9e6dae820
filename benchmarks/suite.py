"""One table: every ipcs-fs operation against its reference, measured in one run.

Each measurement runs as a child process, so its CPU time (user plus system)
and peak RSS are its own (see :mod:`benchmarks.measure`). A round measures
everything below once, subjects and references taking turns, so load from
other processes spreads over all of them. Warm-up rounds come first and are
not counted. The table gives the median of each figure over the counted
rounds. Each ratio divides a subject's figure by that of the reference
measured in the same round, and the table gives the median of those per-round
ratios. Below 1, the subject is faster or smaller.

Per-layer rows use the base layer of ``debian-bookworm`` (its first layer,
built by ``fixtures.debian_images``), wrapped as a one-layer image:

- convert: ``ipcs-fs convert --file-granular`` into a fresh embedded store.
  The first reference is ``gzip -dc LAYER | sha256sum``, the floor, because
  a conversion must at least decompress the layer and hash it once. The
  second is what a user would run instead to put the layer's files into
  IPFS: ``tar -xzf`` of the layer, then kubo's ``ipfs add -r
  --cid-version=1 --offline`` of the tree into a fresh repository. Devices
  and fifos are removed first, because ``ipfs add`` rejects them, as in
  :mod:`benchmarks.convert`.
- convert --tar: ``ipcs-fs convert --tar`` of the converted layer back to a
  tar+gzip layer. Reference: ``gzip -6 -n -c TAR | tee BLOB | sha256sum``,
  since writing the layer at least compresses the tar at the same level (6)
  and hashes the blob for its digest.
- unpack: ``ipcs-fs unpack`` of the converted layer from the embedded store
  into an empty directory, and the same apply into an empty overlayfs upper
  directory (:mod:`benchmarks.upper`). Reference: ``tar --xattrs
  --xattrs-include='*' --same-owner -xf`` of the uncompressed layer.

Image rows use the whole two-layer images:

- ``ipcs-fs unpack`` of the converted ``debian-bookworm`` into a directory,
  and containerd unpacking the converted image through the ipcs-fs plugin
  (``ipcs-fs serve``) into its overlayfs snapshotter. Reference for both:
  containerd 1.7's walking differ unpacking the original image into its
  overlayfs snapshotter (:mod:`benchmarks.containerd`).
- compare: ``ipcs-fs compare`` of ``debian-bookworm`` and
  ``debian-bookworm-rebuild``, standard images whose four layers it converts
  on the fly, as many at once as there are CPUs available. Reference:
  ``gzip -dc LAYER | sha256sum`` of each of those four layers, with ``xargs
  -P`` running as many at once. Any comparison at file level must at least
  decompress every layer of both images and hash every byte once; everything
  compare does beyond that (chunking, CIDs, the report) is what the ratio
  shows. Same parallelism, so the wall ratio is fair too.

Output trees stay on disk, without their page cache, until the suite ends,
as in :mod:`benchmarks.apply`: on an ext4 without a journal, creating files
soon after many were removed is slow. The file system is flushed (``sync``,
not timed) before each measurement. Run as root from the repository root::

    .venv/bin/python -m benchmarks.suite [--runs N] [--warmup N] [--scratch DIR]

The table is printed as Markdown and written as JSON and Markdown to
``benchmarks/results/suite-DATE.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.apply import _drop_page_cache
from benchmarks.common import machine_description, write_results
from benchmarks.containerd import ContainerdUnpacker, containerd_version
from benchmarks.measure import Usage, become_subreaper, median_usage, run_child
from benchmarks.suite_inputs import Inputs, prepare_inputs
from benchmarks.suite_table import Row, render_table

__all__ = ["ROWS", "main"]

_CLI = [sys.executable, "-m", "ipcs_fs.cli"]
_REPOSITORY = Path(__file__).resolve().parents[1]

ROWS = (
    Row(
        "`convert --file-granular`, base layer",
        "convert",
        "`gzip -dc LAYER \\| sha256sum`",
        "floor",
        "wall ≤ 1.5",
    ),
    Row(
        "`convert --file-granular`, base layer",
        "convert",
        "`tar -xzf` + `ipfs add -r`",
        "tar-ipfs-add",
        "wall ≤ 0.33",
    ),
    Row(
        "`convert --tar`, base layer",
        "convert-tar",
        "`gzip -6 \\| tee \\| sha256sum`",
        "gzip",
        "",
    ),
    Row(
        "`unpack` to a directory, base layer",
        "unpack",
        "`tar -xf`",
        "tar-x",
        "wall ≤ 0.8",
    ),
    Row(
        "unpack to an overlay upper dir, base layer",
        "unpack-upper",
        "`tar -xf`",
        "tar-x",
        "wall ≤ 0.8",
    ),
    Row(
        "`unpack` to a directory, debian-bookworm",
        "unpack-image",
        "containerd, walking differ",
        "walking",
        "wall ≤ 1.0",
    ),
    Row(
        "containerd + ipcs-fs plugin, debian-bookworm",
        "plugin",
        "containerd, walking differ",
        "walking",
        "",
    ),
    Row(
        "compare, debian-bookworm and -rebuild",
        "compare",
        "`gzip -dc \\| sha256sum` of their layers",
        "compare-floor",
        "",
    ),
)
"""The rows of the table: subject and reference, each a measurement's key."""


@dataclass
class Round:
    """The inputs, daemons and output directory of one round of measurements."""

    inputs: Inputs
    directory: Path
    walking: ContainerdUnpacker
    plugin: ContainerdUnpacker
    details: dict[str, object] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    """Outputs of the current measurement, whose page cache is dropped after it."""

    def path(self, name: str) -> Path:
        """Return the path of output ``name`` of this round and record it in ``written``."""
        self.written.append(self.directory / name)
        return self.directory / name


Measurement = Callable[[Round], Usage]


# Conversion


def _floor(round_: Round) -> Usage:
    layer = round_.inputs.layer_gzip
    return run_child(["sh", "-c", 'gzip -dc "$1" | sha256sum', "sh", layer])


def _convert(round_: Round) -> Usage:
    destination = f"oci:{round_.path('convert-out')}:latest"
    return run_child(
        [
            *_CLI,
            "--store",
            round_.path("convert-store"),
            "convert",
            "--file-granular",
            round_.inputs.layer_image,
            destination,
        ]
    )


def _tar_ipfs_add(round_: Round) -> Usage:
    ipfs = round_.inputs.ipfs
    env = {**os.environ, "IPFS_PATH": str(round_.path("ipfs-repo"))}
    env["IPFS_TELEMETRY"] = "off"
    subprocess.run(
        [ipfs, "init", "--profile=test", "-e"], env=env, check=True, capture_output=True
    )
    tree = round_.path("ipfs-tree")
    tree.mkdir()
    # ipfs add takes files, directories and symlinks only.
    script = (
        'tar -xzf "$1" -C "$2"'
        ' && find "$2" \\( -type c -o -type b -o -type p \\) -delete'
        ' && "$3" add -r -Q --cid-version=1 --offline "$2"'
    )
    layer = round_.inputs.layer_gzip
    return run_child(["sh", "-c", script, "sh", layer, tree, ipfs], env=env)


def _gzip(round_: Round) -> Usage:
    script = 'gzip -6 -n -c "$1" | tee "$2" | sha256sum'
    blob = round_.path("gzip-blob")
    return run_child(["sh", "-c", script, "sh", round_.inputs.layer_tar, blob])


def _convert_tar(round_: Round) -> Usage:
    destination = f"oci:{round_.path('convert-tar-out')}:latest"
    return run_child(
        [
            *_CLI,
            "--store",
            round_.inputs.store,
            "convert",
            "--tar",
            round_.inputs.layer_converted,
            destination,
        ]
    )


# Unpacking


def _tar_x(round_: Round) -> Usage:
    tree = round_.path("tar-x")
    tree.mkdir()
    return run_child(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--same-owner",
            "-xf",
            round_.inputs.layer_tar,
            "-C",
            tree,
        ]
    )


def _unpack(round_: Round) -> Usage:
    converted = round_.inputs.layer_converted
    tree = round_.path("unpack")
    return run_child([*_CLI, "--store", round_.inputs.store, "unpack", converted, tree])


def _unpack_upper(round_: Round) -> Usage:
    converted = round_.inputs.layer_converted
    upper = round_.path("unpack-upper")
    program = [sys.executable, "-m", "benchmarks.upper"]
    return run_child([*program, round_.inputs.store, converted, upper])


def _unpack_image(round_: Round) -> Usage:
    image = f"oci-archive:{round_.inputs.image_converted}:latest"
    tree = round_.path("unpack-image")
    return run_child([*_CLI, "--store", round_.inputs.store, "unpack", image, tree])


def _walking(round_: Round) -> Usage:
    return _containerd(round_, "walking", round_.inputs.image_archive)


def _plugin(round_: Round) -> Usage:
    return _containerd(round_, "plugin", round_.inputs.image_converted)


def _containerd(round_: Round, name: str, archive: Path) -> Usage:
    unpacker = round_.walking if name == "walking" else round_.plugin
    unpacker.import_image(archive, round_.directory.name)
    snapshots = unpacker.snapshot_dir()
    before = set(os.listdir(snapshots)) if snapshots.is_dir() else set()
    os.sync()
    usage, processes = unpacker.unpack()
    round_.details[name] = processes
    added = set(os.listdir(snapshots)) - before
    round_.written += [snapshots / entry for entry in sorted(added)]
    return usage


# Comparing


def _compare_floor(round_: Round) -> Usage:
    jobs = str(round_.inputs.jobs)
    script = 'gzip -dc "$1" | sha256sum'
    listing = round_.inputs.compare_listing
    xargs = ["xargs", "-0", "-a", str(listing), "-P", jobs, "-n", "1"]
    return run_child([*xargs, "sh", "-c", script, "sh"])


def _compare(round_: Round) -> Usage:
    first, second = round_.inputs.compare_images
    store = round_.inputs.empty_store
    return run_child([*_CLI, "--store", store, "compare", first, second])


MEASUREMENTS: dict[str, Measurement] = {
    "floor": _floor,
    "convert": _convert,
    "tar-ipfs-add": _tar_ipfs_add,
    "gzip": _gzip,
    "convert-tar": _convert_tar,
    "tar-x": _tar_x,
    "unpack": _unpack,
    "unpack-upper": _unpack_upper,
    "unpack-image": _unpack_image,
    "walking": _walking,
    "plugin": _plugin,
    "compare-floor": _compare_floor,
    "compare": _compare,
}
"""Every measurement of a round, in the order they run."""


# Rounds


def _drop_tree_cache(root: Path) -> None:
    """Write back the files at or below ``root`` and drop them from the page cache."""
    os.sync()
    if root.is_file():
        _drop_page_cache(str(root))
    for directory, _, names in os.walk(root):
        for name in names:
            _drop_page_cache(os.path.join(directory, name))


def _run_round(round_: Round, samples: dict[str, list[dict]] | None) -> None:
    """Run every measurement once; record them in ``samples`` unless None."""
    round_.directory.mkdir()
    for key, measure in MEASUREMENTS.items():
        os.sync()
        load = os.getloadavg()[0]
        usage = measure(round_)
        for path in round_.written:
            _drop_tree_cache(path)
        round_.written.clear()
        print(f"  {key:<14} {usage.wall_seconds:7.2f} s", flush=True)
        if samples is not None:
            sample: dict[str, object] = {**usage.to_json(), "load_average": load}
            if key in round_.details:
                sample["processes"] = round_.details.pop(key)
            samples[key].append(sample)


def _summarise(samples: dict[str, list[dict]]) -> dict[str, dict]:
    summary = {}
    for key, runs in samples.items():
        usages = [_usage(sample) for sample in runs]
        summary[key] = {
            "median": median_usage(usages).to_json(),
            "load_average": statistics.median(s["load_average"] for s in runs),
            "samples": runs,
        }
    return summary


def _usage(sample: dict) -> Usage:
    return Usage(sample["wall_seconds"], sample["cpu_seconds"], sample["peak_rss_mib"])


# The document


def _versions(inputs: Inputs) -> dict[str, str]:
    kubo = subprocess.run(
        [inputs.ipfs, "version", "--number"], check=True, capture_output=True, text=True
    )
    return {
        "python": platform.python_version(),
        "kubo": kubo.stdout.strip(),
        "containerd": containerd_version(),
        "kernel": platform.release(),
        "ipcs-fs": _commit(),
    }


def _commit() -> str:
    """Return the checked-out commit, marked when tracked files have changes."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=_REPOSITORY, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" with changes" if changed else "")


def _document(
    inputs: Inputs, summary: dict[str, dict], header: dict[str, object]
) -> dict[str, object]:
    return {
        **header,
        "layer": inputs.describe(),
        "measurements": summary,
        "rows": [row.to_json(summary) for row in ROWS],
    }


def _run_all(args: argparse.Namespace, scratch: Path) -> dict[str, object]:
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    inputs = prepare_inputs(scratch / "inputs")
    print(f"inputs ready in {scratch}", flush=True)
    samples: dict[str, list[dict]] = {key: [] for key in MEASUREMENTS}
    with (
        ContainerdUnpacker(scratch) as walking,
        ContainerdUnpacker(scratch, plugin_store=inputs.store) as plugin,
    ):
        for number in range(args.warmup + args.runs):
            counted = number >= args.warmup
            print(f"round {number + 1} ({'counted' if counted else 'warm-up'})")
            round_ = Round(inputs, scratch / f"round-{number}", walking, plugin)
            _run_round(round_, samples if counted else None)
    header = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "versions": _versions(inputs),
        "runs": args.runs,
        "warmup": args.warmup,
    }
    return _document(inputs, _summarise(samples), header)


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the table and write it as JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="counted rounds; figures are medians"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="rounds run first and not counted"
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path("/var/tmp"),
        help="directory under which output trees and stores are written",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: unpacking and containerd need it")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be 1 or more and --warmup 0 or more")

    become_subreaper()
    scratch = Path(tempfile.mkdtemp(prefix="ipcs-fs-suite-", dir=args.scratch))
    try:
        document = _run_all(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = render_table(document)
    path = write_results("suite", document)
    path.with_suffix(".md").write_text(table)
    print(table)
    print(f"results: {path} and {path.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
