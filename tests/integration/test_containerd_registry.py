"""The containerd plugin on registry pulls, and on eight imports at once.

The tests drive the real containerd 1.7.24 with ``ipcs-fs serve`` as its
first differ (``support.diff_plugin``):

- a converted ``debian-bookworm`` is pushed with ``ctr images push`` to a
  private ``docker-registry`` on 127.0.0.1 (``support.registry``), then
  pulled with ``ctr images pull`` by a second, fresh containerd whose plugin
  reads the same block store. The registry holds the converted layers' root
  blocks as their blobs, and the files come from the block store. Pulled by
  a containerd whose plugin has an empty block store, the image fails to
  unpack with NOT_FOUND and leaves no snapshot.
- eight small two-layer images, distinct in every layer, are converted and
  imported by eight ``ctr images import`` at once. Each image's tree must be
  the one its layers define, and neither the plugin nor containerd may leave
  a mount or a temporary directory behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import subprocess
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from support import socket_endpoints
from support.containerd import Containerd, CtrCommandError
from support.diff_plugin import (
    MEDIA_TYPE,
    ConvertedImage,
    import_image,
    layer_digests,
    start_with_plugin,
)
from support.registry import Registry

from fixtures.tree import Node, NodeType, assert_tree_matches, snapshot
from ipcs_fs.oci.descriptor import ANNOTATION_REF_NAME
from ipcs_fs.oci.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from ipcs_fs.operations.convert import convert_image
from ipcs_fs.operations.unpack import host_platform
from ipcs_fs.store import EmbeddedStore

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root"),
]

REPOSITORY = "ipcs-fs/debian-bookworm"
MAX_BLOCK_BYTES = 1 << 20

IMAGES = 8
# Enough entries and file data that the Applies of the eight imports overlap
# (6 to 8 at once on this project's 2-core machine).
NOTES = 200
DATA_BYTES = 3 << 20
LAYER_TIME_NS = 1_700_000_000_123_456_789
_TAR_TYPES = {
    NodeType.DIR: tarfile.DIRTYPE,
    NodeType.SYMLINK: tarfile.SYMTYPE,
    NodeType.FIFO: tarfile.FIFOTYPE,
}


def test_pull_from_registry_unpacks_through_plugin(
    containerd, plugin_factory, registry: Registry, bookworm: ConvertedImage
) -> None:
    started = time.monotonic()
    source, remote = _push(containerd, plugin_factory, registry, bookworm)
    pushed = time.monotonic()

    target, plugin = start_with_plugin(containerd, plugin_factory, bookworm.store)
    target.ctr("images", "pull", "--plain-http", remote)
    pulled = time.monotonic()
    access_log = registry.log_text()

    assert plugin.applied() == [
        (bookworm.layer_digests[0], MEDIA_TYPE, "bind-source"),
        (bookworm.layer_digests[1], MEDIA_TYPE, "overlay-upper"),
    ]
    for digest in bookworm.layer_digests:
        assert f"GET /v2/{REPOSITORY}/blobs/{digest}" in access_log
        blob = registry.get_blob(REPOSITORY, digest)
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == digest
        assert len(blob) <= MAX_BLOCK_BYTES
    answer = target.output("run", "--rm", remote, "py", "python3", "-c", "print(6*7)")
    assert answer == "42"
    _assert_listens_on_loopback_only(registry, source, target)
    print(
        f"import and push {pushed - started:.1f}s, pull and unpack"
        f" {pulled - pushed:.1f}s"
    )


def test_pull_without_blocks_fails_unpack(
    containerd,
    plugin_factory,
    registry: Registry,
    bookworm: ConvertedImage,
    tmp_path: Path,
) -> None:
    _, remote = _push(containerd, plugin_factory, registry, bookworm)
    empty_store = tmp_path / "empty-store"
    target, plugin = start_with_plugin(containerd, plugin_factory, empty_store)

    with pytest.raises(CtrCommandError) as caught:
        target.ctr("images", "pull", "--plain-http", remote)

    # containerd reports the plugin's NOT_FOUND with its own "not found" suffix.
    missing = re.search(
        rf"failed to get block (\w+): not found in {empty_store}: not found",
        str(caught.value),
    )
    assert missing is not None
    failure = f"failed to apply layer {bookworm.layer_digests[0]} after"
    assert failure in plugin.text()
    assert f"NOT_FOUND: failed to get block {missing[1]}" in plugin.text()
    assert plugin.applied() == []
    assert target.output("snapshots", "ls").splitlines()[1:] == []


def _push(
    containerd, plugin_factory, registry: Registry, image: ConvertedImage
) -> tuple[Containerd, str]:
    """Import ``image`` into a plugin-first daemon and push it to ``registry``.

    Returns the daemon and the image's reference in the registry.
    """
    daemon, _ = start_with_plugin(containerd, plugin_factory, image.store)
    local = import_image(daemon, image.converted, "fg")
    remote = f"{registry.host}/{REPOSITORY}:fg"
    daemon.ctr("images", "push", "--plain-http", remote, local)
    return daemon, remote


def _assert_listens_on_loopback_only(registry: Registry, *daemons: Containerd) -> None:
    """Assert that the registry listens on 127.0.0.1:PORT alone.

    Neither it nor any of ``daemons`` may hold a TCP or UDP socket to or from
    an address other than loopback.
    """
    endpoints = socket_endpoints(registry.process.pid)  # type: ignore[union-attr]
    listening = [e for e in endpoints if e.remote_port == 0]
    assert [(str(e.local_address), e.local_port) for e in listening] == [
        ("127.0.0.1", registry.port)
    ]
    assert all(endpoint.is_loopback_only() for endpoint in endpoints), endpoints
    for daemon in daemons:
        endpoints = socket_endpoints(daemon.process.pid)  # type: ignore[union-attr]
        assert all(endpoint.is_loopback_only() for endpoint in endpoints), endpoints


# Eight images at once ----------------------------------------------------


def test_eight_parallel_imports_unpack_correctly(
    containerd, plugin_factory, shared_store: Path, tmp_path: Path
) -> None:
    images = _build_images(tmp_path, shared_store)
    daemon, plugin = start_with_plugin(containerd, plugin_factory, shared_store)

    started = time.monotonic()
    errors = _import_all(daemon, images)
    seconds = time.monotonic() - started

    assert errors == []
    applied = Counter(digest for digest, _, _ in plugin.applied())
    expected = Counter(digest for image in images for digest in image.layer_digests)
    assert applied == expected
    assert {media_type for _, media_type, _ in plugin.applied()} == {MEDIA_TYPE}
    max_applies = _max_concurrent_applies(plugin.text())
    assert max_applies > 1
    for image in images:
        with _image_mounted(daemon, f"{image.name}:latest") as root:
            assert_tree_matches(image.expected, snapshot(root, include_root=False))
    assert _mounts_below(plugin.socket.parent) == []
    assert _mounts_below(daemon.root) == []
    assert os.listdir(plugin.socket.parent) == ["diff.sock"]
    assert "extract" not in daemon.output("snapshots", "ls")
    print(f"eight imports took {seconds:.1f}s, at most {max_applies} Applies at once")


def _import_all(daemon: Containerd, images: list[SmallImage]) -> list[str]:
    """Import every image in a thread of its own; return the errors."""
    errors: list[str] = []

    def run(image: SmallImage) -> None:
        try:
            import_image(daemon, image.converted, image.name)
        except CtrCommandError as error:  # reported by the caller's assert
            errors.append(str(error))

    threads = [threading.Thread(target=run, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def _max_concurrent_applies(log: str) -> int:
    """Return the maximum number of Applies that ran at once, from the plugin's log."""
    running = max_running = 0
    for line in log.splitlines():
        if "applying layer" in line:
            running += 1
            max_running = max(max_running, running)
        elif "applied layer" in line or "failed to apply" in line:
            running -= 1
    return max_running


@contextmanager
def _image_mounted(daemon: Containerd, image: str) -> Iterator[Path]:
    """Mount a read-only view of ``image`` with ``ctr images mount``."""
    target = Path(tempfile.mkdtemp(prefix="ipcs-fs-image-"))
    daemon.ctr("images", "mount", image, target)
    try:
        yield target
    finally:
        daemon.ctr("images", "unmount", "--rm", target)
        target.rmdir()


def _mounts_below(directory: Path) -> list[str]:
    """Return the mount points at or below ``directory``, as ``findmnt`` lists them."""
    output = subprocess.run(
        ["findmnt", "--list", "--noheadings", "--output", "TARGET"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefix = f"{directory}/"
    return [
        line
        for line in output.splitlines()
        if line == str(directory) or line.startswith(prefix)
    ]


# The images ---------------------------------------------------------------


@dataclass(frozen=True)
class SmallImage:
    """One handcrafted image: its converted archive and the tree it must give."""

    name: str
    converted: Path
    layer_digests: tuple[str, ...]
    expected: dict[bytes, Node]


def _build_images(directory: Path, store: Path) -> list[SmallImage]:
    """Write the eight standard images and convert them, storing blocks in ``store``."""
    images = []
    with EmbeddedStore(store) as blocks:
        for index in range(IMAGES):
            lower, upper = _lower_entries(index), _upper_entries(index)
            layout = directory / f"image{index}"
            _write_layout(layout, [_layer_tar(lower), _layer_tar(upper)])
            converted = directory / f"image{index}-fg.oci.tar"
            convert_image(
                f"oci:{layout}:latest",
                f"oci-archive:{converted}:latest",
                blocks,
                to_tar=False,
            )
            expected = _expected_tree(lower, upper)
            digests = layer_digests(converted)
            images.append(SmallImage(f"image{index}", converted, digests, expected))
    return images


@dataclass(frozen=True)
class Entry:
    """One tar entry of a handcrafted layer.

    ``target`` is a symlink's target, or the path a hardlink names.
    """

    path: str
    type: NodeType
    mode: int = 0o644
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0
    mtime_ns: int = LAYER_TIME_NS
    xattrs: tuple[tuple[str, bytes], ...] = ()
    hardlink: bool = False


def _directory(path: str, mode: int = 0o755, mtime_ns: int = LAYER_TIME_NS) -> Entry:
    return Entry(path, NodeType.DIR, mode=mode, mtime_ns=mtime_ns)


def _file(path: str, data: bytes, **fields: Any) -> Entry:
    return Entry(path, NodeType.FILE, data=data, **fields)


def _lower_entries(index: int) -> list[Entry]:
    """Return the first layer of image ``index``, with data of its own.

    It has files (one of several chunks), a hardlink, a symlink, a fifo, an
    xattr, owners other than root and nanosecond times.
    """
    data = _file(
        "srv/data.bin",
        random.Random(index).randbytes(DATA_BYTES + 4099 * index),
        mode=0o755,
    )
    notes = [
        _file(f"srv/notes/n{number:03}", f"image {index} note {number}\n".encode())
        for number in range(NOTES)
    ]
    return [
        _directory("etc"),
        _file("etc/image-id", f"{index}\n".encode(), mtime_ns=LAYER_TIME_NS + 1),
        _directory("srv"),
        data,
        replace(data, path="srv/hard", target=data.path, hardlink=True),
        Entry("srv/link", NodeType.SYMLINK, mode=0o777, target="data.bin"),
        _file(
            "srv/secret",
            f"secret of image {index}\n".encode(),
            mode=0o600,
            uid=1000 + index,
            gid=2000,
            xattrs=(("user.ipcs-fs-test", f"image {index}".encode()),),
        ),
        _file("srv/gone", b"deleted by the next layer\n"),
        Entry("srv/pipe", NodeType.FIFO, mode=0o640),
        _directory("srv/cache"),
        _file("srv/cache/old-a", b"hidden by the opaque marker\n"),
        _file("srv/cache/old-b", b"hidden by the opaque marker\n"),
        _directory("srv/notes", mode=0o750),
        *notes,
    ]


def _upper_entries(index: int) -> list[Entry]:
    """Return the second layer of image ``index``, which changes the first.

    It deletes a file, makes a directory opaque, replaces a file and adds
    new ones, and records every directory it writes into, so every time in
    the result is a time that a layer records.
    """
    later = LAYER_TIME_NS + 86_400_000_000_000 + index
    return [
        _directory("srv", mode=0o711, mtime_ns=later),
        Entry("srv/.wh.gone", NodeType.FILE),
        _file("srv/top.txt", f"top layer of image {index}\n".encode(), mtime_ns=later),
        _directory("srv/cache", mtime_ns=later),
        Entry("srv/cache/.wh..wh..opq", NodeType.FILE),
        _file("srv/cache/fresh", f"fresh {index}\n".encode(), uid=7),
        _directory("srv/notes", mode=0o750, mtime_ns=later),
        _file("srv/notes/n000", f"replaced in image {index}\n".encode(), mode=0o600),
    ]


def _layer_tar(entries: list[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info, data = _tar_info(entry)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _tar_info(entry: Entry) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(entry.path)
    info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
    seconds, nanoseconds = divmod(entry.mtime_ns, 1_000_000_000)
    info.mtime = seconds
    info.pax_headers = {"mtime": f"{seconds}.{nanoseconds:09}"}
    for name, value in entry.xattrs:
        info.pax_headers[f"SCHILY.xattr.{name}"] = value.decode()
    data: bytes | None = None
    if entry.hardlink:
        info.type, info.linkname = tarfile.LNKTYPE, entry.target
    elif entry.type is NodeType.FILE:
        info.size, data = len(entry.data), entry.data
    else:
        info.type = _TAR_TYPES[entry.type]
        info.linkname = entry.target
    return info, data


def _expected_tree(lower: list[Entry], upper: list[Entry]) -> dict[bytes, Node]:
    """Return the tree that applying ``lower`` then ``upper`` leaves, as OCI defines it."""
    entries = {entry.path: entry for entry in lower}
    for entry in upper:
        parent, _, name = entry.path.rpartition("/")
        if name == ".wh..wh..opq":
            _remove_below(entries, parent, keep=upper)
        elif name.startswith(".wh."):
            _remove_below(entries, f"{parent}/{name[4:]}", keep=[])
            entries.pop(f"{parent}/{name[4:]}")
        else:
            entries[entry.path] = entry
    groups = {e.path: e.target for e in entries.values() if e.hardlink}
    return {
        path.encode(): _node(entry, min([path, groups.get(path, path)]))
        for path, entry in entries.items()
    }


def _remove_below(entries: dict[str, Entry], directory: str, keep: list[Entry]) -> None:
    """Remove the entries below ``directory``, except the paths of ``keep``."""
    keep_paths = {entry.path for entry in keep}
    for path in [p for p in entries if p.startswith(directory + "/")]:
        if path not in keep_paths:
            del entries[path]


def _node(entry: Entry, link_group: str) -> Node:
    node = Node(
        type=entry.type,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        xattrs={name.encode(): value for name, value in entry.xattrs},
    )
    if entry.type is NodeType.FILE:
        digest = hashlib.sha256(entry.data).hexdigest()
        node = replace(node, size=len(entry.data), sha256=digest)
    if entry.type is NodeType.SYMLINK:
        node = replace(node, target=entry.target.encode())
    if entry.type is not NodeType.DIR:
        node = replace(node, link_group=link_group.encode())
    return node


def _write_layout(layout: Path, layers: list[bytes]) -> None:
    """Write an OCI layout holding one image of uncompressed ``layers``, tagged latest."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(media_type: str, data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {
            "mediaType": media_type,
            "digest": f"sha256:{digest}",
            "size": len(data),
        }

    system, architecture = host_platform().split("/")
    config = {
        "architecture": architecture,
        "os": system,
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": [
                "sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers
            ],
        },
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": put(OCI_CONFIG, json.dumps(config).encode()),
        "layers": [put(OCI_LAYER, layer) for layer in layers],
    }
    root = put(OCI_MANIFEST, json.dumps(manifest).encode())
    root["annotations"] = {ANNOTATION_REF_NAME: "latest"}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [root]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
