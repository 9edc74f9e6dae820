"""The ``ipcs-fs`` command line.

Each subcommand parses its arguments, opens the block store, calls one function
of :mod:`ipcs_fs.operations` and prints the result. Every failure ends as one
line on stderr and a non-zero exit status; only this module and ``serve``
configure logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import IpcsError

__all__ = ["build_parser", "main"]

log = logging.getLogger("ipcs_fs")

_EXIT_FAILURE = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command line."""
    parser = argparse.ArgumentParser(
        prog="ipcs-fs",
        description="Share container image files, not layers: convert OCI layers"
        " to file-granular IPFS UnixFS DAGs and back.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    _add_global_options(parser)
    _add_kubo_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_convert(commands)
    _add_unpack(commands)
    _add_ls(commands)
    _add_serve(commands)
    _add_compare(commands)
    _add_car(commands)
    _add_rm(commands)
    _add_gc(commands)
    for subcommand in _subcommand_parsers(parser):
        # Global options are accepted after the command too. SUPPRESS keeps a
        # subcommand that lacks them from resetting what came before it.
        _add_global_options(subcommand, default=argparse.SUPPRESS)
        _add_kubo_options(subcommand, default=argparse.SUPPRESS)
    return parser


def _subcommand_parsers(parser: argparse.ArgumentParser):
    """Yield every subcommand parser below ``parser``, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subcommand in action.choices.values():
                yield subcommand
                yield from _subcommand_parsers(subcommand)


def _add_global_options(parser: argparse.ArgumentParser, *, default=None) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        default=default,
        help="directory of the embedded block store (default: /var/lib/ipcs-fs"
        " for root, else $XDG_DATA_HOME/ipcs-fs)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="log more: -v for progress steps, -vv for debugging",
    )


def _add_kubo_options(parser: argparse.ArgumentParser, *, default=None) -> None:
    parser.add_argument(
        "--ipfs-api",
        default=default,
        metavar="MULTIADDR",
        help="use the kubo node whose RPC API listens here (for example"
        " /ip4/127.0.0.1/tcp/5001) as the block store, with --store as a local"
        " cache in front of it when given (default: $IPCS_FS_IPFS_API, else no"
        " kubo)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        default=False if default is None else default,
        help="never ask kubo's peers: a block the node lacks fails at once",
    )
    parser.add_argument(
        "--fetch-timeout",
        type=float,
        metavar="SECONDS",
        default=default,
        help="how long to wait for a block from kubo's peers before failing"
        " (default: 60)",
    )


def _add_car(commands) -> None:
    parser = commands.add_parser(
        "car",
        help="export or import layer DAGs as CARv1 files",
        description="Move layer DAGs to and from CARv1 files, the format of"
        " `ipfs dag export` and `ipfs dag import`.",
    )
    actions = parser.add_subparsers(dest="car_action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write the DAG of a layer, or of every layer of an image, to FILE",
        description="Write one root per layer and every block once, depth first,"
        " to FILE. TARGET is a layer root CID or an image reference"
        " (oci:DIR[:TAG], oci-archive:FILE[:TAG]) with file-granular layers.",
    )
    export.add_argument("target", metavar="IMAGE|CID")
    export.add_argument("file", metavar="FILE", type=Path, help="CAR file to write")
    export.add_argument("--json", action="store_true", help="print JSON on stdout")
    export.set_defaults(run=_run_car_export)
    load = actions.add_parser(
        "import",
        help="store the blocks of a CARv1 file and pin its roots",
        description="Check every block of FILE against its CID, store it, and pin"
        " each root once the whole DAG under it is in the store.",
    )
    load.add_argument("file", metavar="FILE", type=Path, help="CAR file to read")
    load.add_argument("--json", action="store_true", help="print JSON on stdout")
    load.set_defaults(run=_run_car_import)


def _add_rm(commands) -> None:
    parser = commands.add_parser(
        "rm",
        help="unpin the layer roots of images or CIDs",
        description="Unpin each layer root of the images or root CIDs given;"
        " `ipcs-fs gc` then deletes the blocks that no pin reaches. Pins are per"
        " layer, so this also unpins layers that other images share.",
    )
    parser.add_argument("targets", metavar="IMAGE|CID", nargs="+")
    parser.set_defaults(run=_run_rm)


def _add_gc(commands) -> None:
    parser = commands.add_parser(
        "gc",
        help="delete the blocks that no pinned layer root reaches",
        description="Delete from the embedded store every block that no pinned"
        " layer root reaches. With --ipfs-api, also run kubo's garbage"
        " collection, which deletes every unpinned block of that node, whoever"
        " stored it. Run it while no conversion runs: a conversion pins its"
        " layer only once all its blocks are written.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(run=_run_gc)


def _add_convert(commands) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert an image's layers to file-granular DAGs or back to tar",
        description="Convert every layer of every platform of SRC and write the"
        " result to DST. Image references: oci:DIR[:TAG] or oci-archive:FILE[:TAG].",
    )
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--file-granular",
        dest="to_tar",
        action="store_false",
        help="standard tar layers to file-granular layers (blocks go to the store)",
    )
    direction.add_argument(
        "--tar",
        dest="to_tar",
        action="store_true",
        help="file-granular layers back to tar+gzip layers with the original diff_ids",
    )
    parser.add_argument("source", metavar="SRC", help="image to read")
    parser.add_argument("destination", metavar="DST", help="image to write")
    parser.add_argument(
        "--json", action="store_true", help="print the summary as JSON on stdout"
    )
    parser.set_defaults(run=_run_convert)


def _add_unpack(commands) -> None:
    parser = commands.add_parser(
        "unpack",
        help="apply every layer of an image into a directory",
        description="Apply the layers of IMAGE in order into DIR, as containerd"
        " would, with ownership, modes, xattrs and times (run as root).",
    )
    parser.add_argument("image", metavar="IMAGE", help="image reference")
    parser.add_argument("directory", metavar="DIR", type=Path, help="target root")
    parser.add_argument(
        "--platform",
        metavar="OS/ARCH",
        help="platform to unpack from a multi-platform image (default: this machine's)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="hash every layer's tar against its diff_id, also layers that the"
        " block store records as verified by an earlier unpack",
    )
    parser.set_defaults(run=_run_unpack)


def _add_ls(commands) -> None:
    parser = commands.add_parser(
        "ls",
        help="list a layer's entries with metadata and CIDs",
        description="List every entry of each layer of IMAGE, or of the layer"
        " whose root CID is given.",
    )
    parser.add_argument("target", metavar="IMAGE|CID")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.set_defaults(run=_run_ls)


def _add_serve(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the containerd diff plugin (Apply and Diff over gRPC)",
        description="Serve containerd.services.diff.v1.Diff on a unix socket, for"
        ' containerd\'s [proxy_plugins] (type "diff"). Settings come from the'
        " TOML file given with --config; the flags below override it. Stops on"
        " SIGTERM or SIGINT.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings")
    parser.add_argument(
        "--address",
        metavar="unix://PATH",
        help="socket to listen on (default: unix:///run/ipcs-fs/diff.sock)",
    )
    parser.add_argument(
        "--containerd-root",
        type=Path,
        metavar="DIR",
        help="containerd's root directory, to read blobs (default: /var/lib/containerd)",
    )
    parser.add_argument(
        "--containerd-address",
        metavar="unix://PATH",
        help="containerd's socket, to write Diff results"
        " (default: unix:///run/containerd/containerd.sock)",
    )
    parser.add_argument(
        "--namespace",
        help="containerd namespace for calls that name none (default: default)",
    )
    parser.add_argument(
        "--max-layer-bytes",
        type=int,
        metavar="BYTES",
        help="file data one layer may write; 0 for no bound (default: 1 TiB)",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="calls served at once (default: 8)"
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log threshold (default: info)",
    )
    parser.set_defaults(run=_run_serve)


def _add_compare(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="show how much images hold and share at layer, file and block level",
        description="Compare two or more images: the bytes each holds, their"
        " union, what all share and what each set of images shares, counted by"
        " layer (diff_id), by file content (CID) and by block (CID). Standard"
        " layers are converted on the fly; nothing is stored unless"
        " --store-converted is given. File-granular layers are read from --store.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image reference")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="more images")
    parser.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help="output format (default: text); html is one self-contained page",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=10,
        metavar="N",
        help="files in each list of largest shared and unique files (default: 10)",
    )
    parser.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="name of the next image in the report; give one per image, in order"
        " (default: the part of each reference that differs from the others)",
    )
    parser.add_argument(
        "--platform",
        metavar="OS/ARCH",
        help="platform to compare in multi-platform images (default: this machine's)",
    )
    parser.add_argument(
        "--store-converted",
        action="store_true",
        help="write the blocks of converted standard layers to the block store"
        " and pin their roots, as convert does",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="processes converting standard layers at once (default: the CPUs"
        " available; 1 with --store-converted)",
    )
    parser.set_defaults(run=_run_compare)


def _open_store(args):
    """Open the embedded store, kubo (``--ipfs-api``), or both as a tiered
    store when ``--store`` and ``--ipfs-api`` are both given."""
    from .store import EmbeddedStore, default_store_path

    api = args.ipfs_api or os.environ.get("IPCS_FS_IPFS_API")
    if not api:
        return EmbeddedStore(args.store or default_store_path())

    from .store.kubo import DEFAULT_FETCH_TIMEOUT, KuboStore
    from .store.tiered import TieredStore

    timeout = args.fetch_timeout or DEFAULT_FETCH_TIMEOUT
    kubo = KuboStore(api, offline=args.offline, fetch_timeout=timeout)
    if args.store is None:
        return kubo
    try:
        return TieredStore(EmbeddedStore(args.store), kubo)
    except BaseException:
        kubo.close()
        raise


def _run_convert(args) -> int:
    from .operations.convert import convert_image

    with _open_store(args) as store:
        summary = convert_image(
            args.source,
            args.destination,
            store,
            to_tar=args.to_tar,
            progress=_progress_printer(),
        )
    if args.json:
        json.dump(summary.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(summary.to_text())
    return 0


def _run_unpack(args) -> int:
    from .operations.unpack import unpack_image

    with _open_store(args) as store:
        summary = unpack_image(
            args.image,
            args.directory,
            store,
            platform=args.platform,
            progress=_progress_printer(),
            verify=args.verify,
        )
    print(summary.to_text())
    return 0


def _run_ls(args) -> int:
    from .operations.listing import list_entries

    with _open_store(args) as store:
        for row in list_entries(args.target, store):
            if args.json:
                print(json.dumps(row.to_json(), separators=(",", ":")))
            else:
                print(row.to_text())
    return 0


def _run_serve(args) -> int:
    from .service.config import load_config
    from .service.server import configure_logging, serve

    overrides = {
        "address": args.address,
        "store": args.store,
        "containerd_root": args.containerd_root,
        "containerd_address": args.containerd_address,
        "namespace": args.namespace,
        "max_layer_bytes": args.max_layer_bytes,
        "workers": args.workers,
        "log_level": args.log_level,
    }
    config = load_config(args.config, overrides)
    configure_logging(config.log_level_number)
    return serve(config)


def _run_compare(args) -> int:
    from contextlib import ExitStack

    from .report import compare_images, render_html, render_text, report_to_json

    with ExitStack() as stores:
        report = compare_images(
            [args.image, *args.images],
            lambda: stores.enter_context(_open_store(args)),
            labels=args.label,
            platform=args.platform,
            top=args.top,
            store_converted=args.store_converted,
            jobs=args.jobs,
            progress=_progress_printer(),
        )
    if args.format == "json":
        json.dump(report_to_json(report), sys.stdout, indent=2)
        print()
    elif args.format == "html":
        sys.stdout.write(render_html(report))
    else:
        sys.stdout.write(render_text(report))
    return 0


def _run_car_export(args) -> int:
    from .operations.car import export_car

    with _open_store(args) as store:
        summary = export_car(
            args.target, args.file, store, progress=_progress_printer()
        )
    _print_summary(summary, args.json)
    return 0


def _run_car_import(args) -> int:
    from .operations.car import import_car

    with _open_store(args) as store:
        summary = import_car(args.file, store, progress=_progress_printer())
    _print_summary(summary, args.json)
    return 0


def _run_rm(args) -> int:
    from .operations.gc import remove_layers

    with _open_store(args) as store:
        summary = remove_layers(args.targets, store)
    print(summary.to_text())
    return 0


def _run_gc(args) -> int:
    from .operations.gc import collect_garbage

    with _open_store(args) as store:
        summary = collect_garbage(store)
    _print_summary(summary, args.json)
    return 0


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        json.dump(summary.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(summary.to_text())


def _progress_printer():
    from .progress import TerminalProgress

    return TerminalProgress.for_stream(sys.stderr)


def _configure_logging(verbosity: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter("ipcs-fs: %(levelname)s: %(message)s")
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.run(args)
    except IpcsError as error:
        print(f"ipcs-fs: {error}", file=sys.stderr)
        return _EXIT_FAILURE
    except BrokenPipeError:
        return _EXIT_FAILURE
    except OSError as error:
        # A path the user gave that cannot be read or written: one line, as
        # for every other failure.
        print(f"ipcs-fs: {error}", file=sys.stderr)
        return _EXIT_FAILURE
    except KeyboardInterrupt:
        print("ipcs-fs: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
