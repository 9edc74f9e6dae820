"""ipcs-fs against containerd's own walking differ, entry by entry.

Each input is unpacked twice. The real containerd 1.7.24 (Debian trixie's
build), with ``walking`` as its only differ, unpacks it into its ``overlayfs``
or its ``native`` snapshotter. ipcs-fs applies it to the matching target:
overlay upper directories read back through an overlayfs mount for
``overlayfs``, one directory for ``native``. The two trees are compared path
by path and field by field (:func:`support.trees.compare_trees`).

Inputs:

- every edge case of ``fixtures.edgecases`` that has an expected tree and is
  not tagged ``escapes`` (those are kept away from a daemon that runs as
  root). Each case is one image of uncompressed layers in one containerd per
  snapshotter. ``sparse_8gib`` makes containerd write 8 GiB of zeros per
  snapshotter, so it runs only with ``IPCS_FS_LARGE_TESTS=1``;
- the real images ``debian-bookworm`` and ``debian-trixie``, compared with
  ``ipcs-fs unpack`` and with the overlay target, each both of the original
  image and of its file-granular conversion.

Every difference must be listed: per edge case in :data:`KNOWN_DIFFERENCES`,
per snapshotter for the real images in :data:`REAL_IMAGE_DIFFERENCES`, whose
rules compute the affected paths from the layers. Each entry gives the
reason why the ipcs-fs result is the right one. A test fails on a difference
that is not listed, and on a listed one that no longer occurs. Two times that
both fall within the unpacks are not a difference, since no layer records
them. ``docs/conformance.md`` shows the same table.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ProgramNotFoundError
from support.containerd import Containerd, CtrCommandError
from support.layer_images import diff_ids, write_layers_archive
from support.trees import (
    LISTED_BUT_MISSING,
    ONLY_CONTAINERD,
    ONLY_OURS,
    Difference,
    ListedTree,
    UnpackWindow,
    compare_trees,
    show_path,
)
from support.walking import WalkingUnpacker

from fixtures.debian_images import TAG, ensure_image
from fixtures.edgecases import CASES
from fixtures.tree import ROOT, Node, assert_tree_matches, snapshot
from ipcs_fs.apply import ApplyOptions, apply_layer
from ipcs_fs.cli import main
from ipcs_fs.ids import Digest
from ipcs_fs.oci.transport import open_source
from ipcs_fs.operations.layers import diff_ids_of, open_layer_tar
from ipcs_fs.operations.unpack import select_manifest
from ipcs_fs.store import EmbeddedStore
from tests.apply.stacks import apply_mounted, apply_overlay, overlay_mount

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root"),
]

OVERLAYFS = "overlayfs"
NATIVE = "native"
BOTH = (OVERLAYFS, NATIVE)
REAL_IMAGES = ("debian-bookworm", "debian-trixie")
DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


# Reasons ------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why containerd's result differs and why ours is the right one.

    ``title`` names the reason in ``docs/conformance.md``. With
    ``unpack_time`` set, containerd's ``mtime_ns`` in the differences given
    for this reason must be a time of the unpack, which the test checks.
    """

    title: str
    text: str
    unpack_time: bool = False


NATIVE_COPY_TIME = Reason(
    "native copy loses directory times",
    "containerd's native snapshotter starts each layer from a copy of the parent"
    " snapshot. The copy (continuity 0.4.2, fs.CopyDir) sets a directory's times"
    " before it copies the children in. So every lower directory that is not"
    " empty, or that the layer writes into, gets the time of the unpack, unless"
    " the layer lists it again. mtime is an attribute that the OCI image spec"
    " makes layers record; ours keeps the time the lower layer recorded.",
    unpack_time=True,
)
OVERLAY_PARENT_TIME = Reason(
    "overlay upper loses unlisted directory times",
    "The layer writes into a lower directory without listing it. containerd's"
    " overlay applier creates that directory in the upper directory with the"
    " lower one's attributes, then writes the entries into it and restores the"
    " times of listed directories only, so it ends with the time of the unpack."
    " The directory is not part of the layer's changeset, so ours keeps every"
    " attribute the lower layer recorded, the time included.",
    unpack_time=True,
)
ROOT_ENTRY = Reason(
    "entries naming the root",
    "containerd skips every entry that resolves to the root, so the root keeps"
    " the snapshot directory's mode, owner and time. The OCI image spec says that"
    " when an entry and the existing path are both directories, the existing"
    " path's attributes MUST be replaced by the entry's; ours applies the entry"
    " to the root.",
    unpack_time=True,
)
SAME_LAYER_WHITEOUT = Reason(
    "whiteout after an entry of the same layer",
    "OCI image spec: whiteout files MUST only apply to resources in lower"
    " layers, and files present in the same layer as a whiteout can only be"
    " hidden by whiteouts in later layers. containerd's native applier removes"
    " the entries the layer wrote before their whiteouts. Its overlay applier"
    " fails, because mknod of the whiteout device finds the name taken.",
)
OPAQUE_IMPLIED_CHILD_REMOVED = Reason(
    "opaque marker after an implied child",
    "The opaque marker hides only what lower layers put in d (whiteouts apply to"
    " lower layers only); d/sub/y is the layer's own entry and d/sub its implied"
    " parent. containerd's native applier removes d/sub with d/sub/y, because it"
    " keeps only the paths the layer lists.",
)
OPAQUE_IMPLIED_CHILD_ATTRIBUTES = Reason(
    "implied child of an opaque directory",
    "The opaque marker hides the lower d/sub, so the layer's implied d/sub is a"
    " new directory, created as every implied parent is (mode 0755, owner 0:0)."
    " containerd's overlay applier gives it the attributes of the lower d/sub"
    " that the marker hides.",
)
WHITEOUT_THEN_DIRECTORY = Reason(
    "directory recreated after its whiteout",
    "The whiteout .wh.d deletes the lower d with everything below it. The"
    " layer's own d is then a new directory with only the layer's children: the"
    " OCI image spec applies whiteouts to lower layers only, and its example"
    " recreates a deleted directory in the same layer. containerd's overlay applier writes"
    " the whiteout as a 0/0 device, then replaces it with a plain directory for"
    " the entry d. overlayfs merges that directory with the lower d, so the"
    " deleted children reappear.",
)
WHITEOUT_LISTED = Reason(
    "whiteout left visible",
    "The layer whites out nodir/x, which no lower layer has, in a directory that"
    " only this layer creates. containerd's overlay applier still writes a 0/0"
    " device there, and overlayfs hides whiteouts only in directories that it"
    " merges, so readdir lists x while lstat finds nothing. The OCI image spec"
    " says that once a whiteout is applied, the whiteout itself MUST be hidden;"
    " ours writes no whiteout where no lower layer has the name.",
)
AUFS_METADATA = Reason(
    ".wh..wh. metadata",
    "Names that start with .wh. are whiteout markers (OCI image spec: no file or"
    " directory can have a name that begins with .wh.), and .wh..wh. names are"
    " AUFS metadata, which ours ignores. containerd creates .wh..wh.plnk and"
    " .wh..wh.plnk/1.2 as ordinary entries.",
)
HARDLINK_TO_LOWER = Reason(
    "hardlink to a lower layer's file",
    "The hardlink names a file that, when the entry is applied, exists only in"
    " a lower layer. containerd's overlay applier calls link(2) in the upper"
    " directory, which lacks the target, so the unpack fails; the OCI image spec"
    " allows that failure. Ours copies the target up and links the copy, which"
    " gives the tree that containerd's native snapshotter gives.",
)
HARDLINK_METADATA = Reason(
    "hardlink entry metadata",
    "A hardlink entry adds a name to an existing inode: link(2) changes none of"
    " its attributes, and GNU tar ignores the mode, owner and time of a hardlink"
    " entry. containerd applies them to the shared inode.",
)
HARDLINK_CAPABILITY = Reason(
    "hardlink clears the capability",
    "The hardlink entry carries no xattrs and link(2) changes no attribute, so"
    " the shared inode keeps its security.capability. containerd chowns the"
    " inode for the hardlink entry, which makes the kernel clear the capability,"
    " and never restores it.",
)
SYMLINK_PARENT = Reason(
    "symlink parent in a lower layer",
    "lib/x.so goes through the lower symlink lib -> usr/lib, which stays a"
    " symlink: a parent component that is a symlink inside the root is"
    " followed, as containerd's own applier does on a native snapshot."
    " containerd's overlay applier resolves parents only inside the upper"
    " directory, where lib does not exist, so it creates a directory lib that"
    " hides the symlink, which splits lib from usr/lib in merged-/usr images.",
)
TYPEFLAG_CONTIGUOUS = Reason(
    "typeflag 7",
    "Typeflag 7 (contiguous file) is a regular file, as GNU tar and libarchive"
    " read it. containerd fails on it as an unhandled type.",
)
TYPEFLAG_GNU_SPARSE = Reason(
    "typeflag S",
    "Typeflag S is an old GNU sparse file, which GNU tar and libarchive extract"
    " with its holes as zeros. containerd fails on it as an unhandled type.",
)
LIBARCHIVE_XATTR = Reason(
    "LIBARCHIVE xattrs",
    "xattrs are entry attributes in the OCI image spec, and libarchive writes"
    " them as LIBARCHIVE.xattr.NAME records (name percent-encoded, value"
    " base64). containerd reads only SCHILY.xattr records and drops these.",
)
PAX_GLOBAL_HEADER = Reason(
    "PAX global headers",
    "The records of a PAX global header (typeflag g) apply to every later entry"
    " until overridden (POSIX pax). containerd receives global headers from Go's"
    " archive/tar as entries, skips them, and so applies their records to"
    " nothing.",
)
TIME_BEFORE_1970 = Reason(
    "times before 1970",
    "The layer records times before 1970, and mtime is an attribute that the OCI"
    " image spec makes layers carry; Linux keeps negative times. containerd sets"
    " every time before 1970 to the epoch.",
)
TIME_AFTER_2262 = Reason(
    "times after 2262",
    "The layer records a time in 2300, which Linux keeps. containerd sets times"
    " past 2262, beyond int64 nanoseconds, to the epoch.",
)


@dataclass(frozen=True)
class Known:
    """Differences that one edge case shows on some snapshotters, and why.

    ``keys`` are :attr:`support.trees.Difference.key` values. With
    ``failure`` set, containerd's unpack must fail with a message that
    contains it, and no tree is compared.
    """

    case: str
    snapshotters: tuple[str, ...]
    reason: Reason
    keys: tuple[str, ...] = ()
    failure: str | None = None


def _fields(path: str, *fields: str) -> tuple[str, ...]:
    return tuple(f"{path}: {field}" for field in fields)


def _times(*paths: str) -> tuple[str, ...]:
    return tuple(f"{path}: mtime_ns" for path in paths)


def _only(aspect: str, *paths: str) -> tuple[str, ...]:
    return tuple(f"{path}: {aspect}" for path in paths)


_ROOT_FIELDS = _fields(".", "mode", "uid", "gid", "mtime_ns")
_OWNER_MODE_TIME = ("mode", "uid", "gid", "mtime_ns")

KNOWN_DIFFERENCES: tuple[Known, ...] = (
    # Whiteouts and opaque directories.
    Known("whiteout_removes_lower", (OVERLAYFS,), OVERLAY_PARENT_TIME, _times("d")),
    Known("whiteout_removes_lower", (NATIVE,), NATIVE_COPY_TIME, _times("d")),
    Known(
        "whiteout_after_new_entry",
        (OVERLAYFS,),
        SAME_LAYER_WHITEOUT,
        failure='failed to convert whiteout file ".wh.f": file exists',
    ),
    Known(
        "whiteout_after_new_entry",
        (NATIVE,),
        SAME_LAYER_WHITEOUT,
        _only(ONLY_OURS, "d/new", "f"),
    ),
    Known(
        "whiteout_after_new_entry", (NATIVE,), NATIVE_COPY_TIME, _times("d", "d/sub")
    ),
    Known("whiteout_before_new_entry", (OVERLAYFS,), OVERLAY_PARENT_TIME, _times("d")),
    Known("whiteout_before_new_entry", (NATIVE,), NATIVE_COPY_TIME, _times("d")),
    Known(
        "whiteout_then_directory",
        (OVERLAYFS,),
        WHITEOUT_THEN_DIRECTORY,
        _only(ONLY_CONTAINERD, "d/keep", "d/old", "d/sub", "d/sub/x"),
    ),
    Known("opaque_after_children", (OVERLAYFS,), OVERLAY_PARENT_TIME, _times("d")),
    Known("opaque_after_children", (NATIVE,), NATIVE_COPY_TIME, _times("d")),
    Known("opaque_after_implied_child", (OVERLAYFS,), OVERLAY_PARENT_TIME, _times("d")),
    Known(
        "opaque_after_implied_child",
        (OVERLAYFS,),
        OPAQUE_IMPLIED_CHILD_ATTRIBUTES,
        _fields("d/sub", "mode", "uid", "gid"),
    ),
    Known("opaque_after_implied_child", (NATIVE,), NATIVE_COPY_TIME, _times("d")),
    Known(
        "opaque_after_implied_child",
        (NATIVE,),
        OPAQUE_IMPLIED_CHILD_REMOVED,
        _only(ONLY_OURS, "d/sub", "d/sub/y"),
    ),
    Known(
        "whiteout_meta_names_ignored",
        BOTH,
        AUFS_METADATA,
        _only(ONLY_CONTAINERD, ".wh..wh.plnk", ".wh..wh.plnk/1.2"),
    ),
    Known(
        "whiteout_meta_names_ignored", (OVERLAYFS,), OVERLAY_PARENT_TIME, _times("d")
    ),
    Known(
        "whiteout_meta_names_ignored", (NATIVE,), NATIVE_COPY_TIME, _times("d", "d/sub")
    ),
    Known(
        "whiteout_of_missing_path",
        (OVERLAYFS,),
        WHITEOUT_LISTED,
        _only(LISTED_BUT_MISSING, "nodir/x"),
    ),
    Known(
        "whiteout_of_missing_path", (NATIVE,), NATIVE_COPY_TIME, _times("d", "d/sub")
    ),
    # Hardlinks.
    Known(
        "hardlink_to_lower_layer",
        (OVERLAYFS,),
        HARDLINK_TO_LOWER,
        failure="/fs/b: no such file or directory",
    ),
    Known(
        "hardlink_before_target_lower_exists",
        (OVERLAYFS,),
        HARDLINK_TO_LOWER,
        failure="/fs/b: no such file or directory",
    ),
    Known(
        "hardlink_metadata_ignored",
        BOTH,
        HARDLINK_METADATA,
        _fields("a", *_OWNER_MODE_TIME) + _fields("b", *_OWNER_MODE_TIME),
    ),
    Known(
        "hardlink_keeps_capability",
        BOTH,
        HARDLINK_CAPABILITY,
        _fields("ping", "xattr security.capability")
        + _fields("ping6", "xattr security.capability"),
    ),
    # Names.
    Known("root_entry_dot_slash", BOTH, ROOT_ENTRY, _ROOT_FIELDS),
    Known("root_entry_slash", BOTH, ROOT_ENTRY, _ROOT_FIELDS),
    Known("root_entry_dot", BOTH, ROOT_ENTRY, _ROOT_FIELDS),
    Known(
        "directory_over_symlink", (NATIVE,), NATIVE_COPY_TIME, _times("usr", "usr/lib")
    ),
    Known(
        "symlink_parent_inside_root",
        (OVERLAYFS,),
        SYMLINK_PARENT,
        ("lib: type", f"lib/x.so: {ONLY_CONTAINERD}", f"usr/lib/x.so: {ONLY_OURS}"),
    ),
    Known(
        "symlink_parent_inside_root",
        (NATIVE,),
        NATIVE_COPY_TIME,
        _times("usr", "usr/lib"),
    ),
    Known(
        "old_typeflags",
        BOTH,
        TYPEFLAG_CONTIGUOUS,
        failure="unhandled tar header type 55",
    ),
    # Encodings.
    Known("xattr_values", BOTH, LIBARCHIVE_XATTR, ("f: xattr user.\\xe9té",)),
    Known(
        "pax_global_header",
        BOTH,
        PAX_GLOBAL_HEADER,
        _fields("a", "uid", "gid", "mtime_ns")
        + _fields("b", "gid", "mtime_ns")
        + _fields("c", "uid", "gid", "mtime_ns"),
    ),
    Known(
        "sparse_gnu_old",
        BOTH,
        TYPEFLAG_GNU_SPARSE,
        failure="unhandled tar header type 83",
    ),
    # Metadata.
    Known("mtime_negative", BOTH, TIME_BEFORE_1970, _times("a", "b")),
    Known("mtime_after_2038", BOTH, TIME_AFTER_2262, _times("c")),
    Known(
        "readonly_directories",
        (OVERLAYFS,),
        OVERLAY_PARENT_TIME,
        _times("ro", "ro/sub"),
    ),
    Known("readonly_directories", (NATIVE,), NATIVE_COPY_TIME, _times("ro", "ro/sub")),
)
"""Every difference that an edge case shows, by case and snapshotter."""


def _edge_cases() -> list[str]:
    large = os.environ.get("IPCS_FS_LARGE_TESTS") == "1"
    return sorted(
        name
        for name, case in CASES.items()
        if case.expected is not None
        and "escapes" not in case.tags
        and (large or "large" not in case.tags)
    )


EDGE_CASES = _edge_cases()


def _known_rows(case: str, snapshotter: str) -> list[Known]:
    return [
        row
        for row in KNOWN_DIFFERENCES
        if row.case == case and snapshotter in row.snapshotters
    ]


# containerd ---------------------------------------------------------------


@contextmanager
def _walking_containerd(snapshotter: str) -> Iterator[Containerd]:
    """Start a containerd whose only differ is walking; skip when it is missing."""
    try:
        daemon = Containerd(diff_order=("walking",), snapshotter=snapshotter)
    except ProgramNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    with daemon:
        yield daemon


@dataclass(frozen=True)
class WalkingResult:
    """containerd's unpack of one image: its tree, or its error message."""

    tree: ListedTree | None = None
    error: str | None = None


@dataclass(frozen=True)
class EdgeCaseUnpacks:
    """Every edge case unpacked by one containerd snapshotter."""

    snapshotter: str
    results: dict[str, WalkingResult]
    start_ns: int


@pytest.fixture(scope="module", params=BOTH)
def edge_case_unpacks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> EdgeCaseUnpacks:
    """Unpack every edge case, one image each, in one containerd."""
    snapshotter = request.param
    directory = tmp_path_factory.mktemp(f"edgecases-{snapshotter}")
    start_ns = time.time_ns()
    with _walking_containerd(snapshotter) as daemon:
        unpacker = WalkingUnpacker(daemon, base_name="edgecase")
        results = {name: _unpack_case(unpacker, name, directory) for name in EDGE_CASES}
    return EdgeCaseUnpacks(snapshotter, results, start_ns)


def _unpack_case(
    unpacker: WalkingUnpacker, name: str, directory: Path
) -> WalkingResult:
    layers = CASES[name].layers
    archive = directory / f"{name}.oci.tar"
    write_layers_archive(archive, layers, tag=name)
    try:
        image = unpacker.unpack(archive, name, diff_ids(layers))
    except CtrCommandError as error:
        return WalkingResult(error=str(error))
    return WalkingResult(tree=unpacker.read_tree(image))


# Edge cases ---------------------------------------------------------------

_APPLY = {OVERLAYFS: apply_overlay, NATIVE: apply_mounted}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_case_matches_walking_differ(
    name: str, edge_case_unpacks: EdgeCaseUnpacks, tmp_path: Path
) -> None:
    case = CASES[name]
    snapshotter = edge_case_unpacks.snapshotter
    rows = _known_rows(name, snapshotter)
    result = edge_case_unpacks.results[name]

    ours = _APPLY[snapshotter](case.layers, tmp_path)

    assert case.expected is not None
    assert_tree_matches(case.expected, ours)
    failures = [row.failure for row in rows if row.failure]
    if failures:
        assert result.error is not None, "containerd unpacked it; the table says no"
        assert failures[0] in result.error
        return
    assert result.error is None
    assert result.tree is not None
    window = UnpackWindow(edge_case_unpacks.start_ns, time.time_ns())
    differences = compare_trees(ours, result.tree, window)
    listed = {key: row.reason for row in rows for key in row.keys}
    _assert_listed(differences, listed, window)


def _assert_listed(
    differences: list[Difference], listed: dict[str, Reason], window: UnpackWindow
) -> None:
    """Fail on a difference not listed, on a listed one that did not occur, and
    on a time that its reason calls the unpack's but lies outside ``window``."""
    unlisted = [str(d) for d in differences if d.key not in listed]
    assert unlisted == [], "not in the table:\n" + "\n".join(unlisted)

    occurred = {difference.key for difference in differences}
    stale = [f"{key} ({listed[key].title})" for key in sorted(set(listed) - occurred)]
    assert stale == [], "in the table, no longer occurring:\n" + "\n".join(stale)

    not_unpack_times = [
        str(d)
        for d in differences
        if d.aspect == "mtime_ns"
        and listed[d.key].unpack_time
        and not window.contains(d.containerd)
    ]
    assert not_unpack_times == []


def test_known_differences_name_edge_cases() -> None:
    unknown = sorted({row.case for row in KNOWN_DIFFERENCES} - set(EDGE_CASES))
    bad_snapshotters = [
        row
        for row in KNOWN_DIFFERENCES
        if not row.snapshotters or not set(row.snapshotters) <= set(BOTH)
    ]
    bad_rows = [row for row in KNOWN_DIFFERENCES if bool(row.keys) == bool(row.failure)]

    assert unknown == []
    assert bad_snapshotters == []
    assert bad_rows == []


def test_docs_page_lists_every_known_case() -> None:
    page = DOCS_PAGE.read_text()

    missing = sorted({row.case for row in KNOWN_DIFFERENCES if row.case not in page})

    assert missing == []


# Real images ---------------------------------------------------------------


@dataclass(frozen=True)
class LayerEntry:
    """A path a layer lists, cleaned as the appliers clean it, with attributes."""

    path: bytes
    is_dir: bool
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class RealImageTrees:
    """One real image unpacked by containerd and by ipcs-fs, every way."""

    name: str
    containerd: dict[str, ListedTree]
    """By snapshotter."""
    ours: dict[tuple[str, str], dict[bytes, Node]]
    """Our trees by (snapshotter whose tree they are compared with, image kind:
    ``original`` or ``file-granular``)."""
    layers: list[list[LayerEntry]]
    window: UnpackWindow


@pytest.fixture(scope="module", params=REAL_IMAGES)
def real_image(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> RealImageTrees:
    """Unpack a real image with containerd (both snapshotters) and with ipcs-fs."""
    paths = ensure_image(request.param)
    base = tmp_path_factory.mktemp(request.param)
    store = base / "store"
    references = {
        "original": paths.oci_reference,
        "file-granular": f"oci:{base / 'file-granular'}:{TAG}",
    }
    _cli("--store", store, "convert", "--file-granular", *references.values())

    start_ns = time.time_ns()
    containerd = {
        snapshotter: _walking_tree(snapshotter, paths.archive_path, paths.oci_reference)
        for snapshotter in BOTH
    }
    ours = {}
    for kind, reference in references.items():
        ours[NATIVE, kind] = _unpack_tree(reference, store, base / f"unpack-{kind}")
        ours[OVERLAYFS, kind] = _overlay_tree(reference, store, base / f"upper-{kind}")
    window = UnpackWindow(start_ns, time.time_ns())
    layers = _list_layers(paths.oci_reference)
    return RealImageTrees(request.param, containerd, ours, layers, window)


def _cli(*argv: str | Path) -> None:
    assert main([str(arg) for arg in argv]) == 0


def _walking_tree(snapshotter: str, archive: Path, reference: str) -> ListedTree:
    with _walking_containerd(snapshotter) as daemon:
        unpacker = WalkingUnpacker(daemon, base_name="real")
        image = unpacker.unpack(archive, TAG, _config_diff_ids(reference))
        return unpacker.read_tree(image)


def _config_diff_ids(reference: str) -> tuple[Digest, ...]:
    with open_source(reference) as source:
        return diff_ids_of(select_manifest(source.manifests(), None))


def _unpack_tree(reference: str, store: Path, directory: Path) -> dict[bytes, Node]:
    _cli("--store", store, "unpack", reference, directory)
    return snapshot(directory)


def _overlay_tree(reference: str, store: Path, base: Path) -> dict[bytes, Node]:
    """Apply each layer into its own upper directory; read the overlay mount."""
    base.mkdir()
    uppers: list[Path] = []
    with EmbeddedStore(store) as blocks, open_source(reference) as source:
        ref = select_manifest(source.manifests(), None)
        for index, (layer, diff_id) in enumerate(
            zip(ref.manifest.layers, diff_ids_of(ref), strict=True)
        ):
            upper = base / f"upper{index}"
            upper.mkdir()
            options = ApplyOptions(overlay_upper=True, lowers=list(reversed(uppers)))
            with closing(open_layer_tar(source, blocks, layer, diff_id)) as tar:
                apply_layer(tar, upper, source=str(layer.digest), options=options)
            uppers.append(upper)
    with overlay_mount(uppers, base) as mount:
        return snapshot(mount)


def _list_layers(reference: str) -> list[list[LayerEntry]]:
    """Read every entry of each layer of the original image with Python's tarfile."""
    layers = []
    with open_source(reference) as source:
        ref = select_manifest(source.manifests(), None)
        for layer in ref.manifest.layers:
            with (
                source.open_blob(layer) as blob,
                tarfile.open(fileobj=blob, mode="r|*") as tar,
            ):
                layers.append([_layer_entry(member) for member in tar])
    return layers


def _layer_entry(member: tarfile.TarInfo) -> LayerEntry:
    path = posixpath.normpath("/" + member.name).lstrip("/") or "."
    return LayerEntry(
        os.fsencode(path), member.isdir(), member.mode, member.uid, member.gid
    )


def _ancestors(path: bytes) -> Iterator[bytes]:
    while b"/" in path:
        path = path.rsplit(b"/", 1)[0]
        yield path


def _split_layers(image: RealImageTrees) -> tuple[list[LayerEntry], list[LayerEntry]]:
    # NOTE: the rules below model one lower layer under the top one, as the
    # Debian images have. More layers would need each lower tree's history.
    assert len(image.layers) == 2, f"{image.name} has {len(image.layers)} layers"
    return image.layers[0], image.layers[1]


def _lower_directories_copied(image: RealImageTrees) -> set[str]:
    """Lower directories not listed on top that are non-empty or written into."""
    lower, top = _split_layers(image)
    listed_on_top = {entry.path for entry in top}
    filled = {a for entry in lower + top for a in _ancestors(entry.path)}
    final = image.containerd[NATIVE].tree
    return {
        f"{show_path(entry.path)}: mtime_ns"
        for entry in lower
        if entry.is_dir
        and entry.path != ROOT
        and entry.path not in listed_on_top
        and entry.path in filled
        and entry.path in final
    }


def _lower_parents_written(image: RealImageTrees) -> set[str]:
    """Lower directories that the top layer writes into without listing them."""
    lower, top = _split_layers(image)
    listed_on_top = {entry.path for entry in top}
    written = {a for entry in top for a in _ancestors(entry.path)}
    return {
        f"{show_path(entry.path)}: mtime_ns"
        for entry in lower
        if entry.is_dir and entry.path in written - listed_on_top
    }


def _root_entry_fields(image: RealImageTrees) -> set[str]:
    """Root attributes a layer records that differ from a new snapshot's."""
    roots = [entry for layer in image.layers for entry in layer if entry.path == ROOT]
    if not roots:
        return set()
    recorded = roots[-1]
    keys = {".: mtime_ns"}
    for field, default in (("mode", 0o755), ("uid", 0), ("gid", 0)):
        if getattr(recorded, field) != default:
            keys.add(f".: {field}")
    return keys


REAL_IMAGE_DIFFERENCES: dict[
    str, tuple[tuple[Reason, Callable[[RealImageTrees], set[str]]], ...]
] = {
    NATIVE: (
        (NATIVE_COPY_TIME, _lower_directories_copied),
        (ROOT_ENTRY, _root_entry_fields),
    ),
    OVERLAYFS: ((OVERLAY_PARENT_TIME, _lower_parents_written),),
}
"""The rules that explain every difference of a real image, by snapshotter.

Each rule computes the keys it expects from the image's layers.
"""


@pytest.mark.parametrize("kind", ["original", "file-granular"])
@pytest.mark.parametrize("snapshotter", BOTH)
def test_real_image_matches_walking_differ(
    real_image: RealImageTrees, snapshotter: str, kind: str
) -> None:
    ours = real_image.ours[snapshotter, kind]
    rules = REAL_IMAGE_DIFFERENCES[snapshotter]
    predicted = {reason: predict(real_image) for reason, predict in rules}

    differences = compare_trees(
        ours, real_image.containerd[snapshotter], real_image.window
    )

    empty_rules = [reason.title for reason, keys in predicted.items() if not keys]
    assert empty_rules == []
    listed = {key: reason for reason, keys in predicted.items() for key in keys}
    _assert_listed(differences, listed, real_image.window)
    counts = ", ".join(f"{len(keys)} {r.title}" for r, keys in predicted.items())
    print(f"{real_image.name} on {snapshotter}, {kind}: {counts}")
