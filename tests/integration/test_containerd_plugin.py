"""``ipcs-fs serve`` as containerd's differ, against the real containerd 1.7.24.

Each test starts its own containerd (see ``support.containerd``) with the
plugin as a ``[proxy_plugins]`` entry, and the plugin as a separate process
(``ipcs-fs serve --config FILE``, see ``support.diff_plugin``) whose log
proves which calls reached it. Images are the real Debian images of
``fixtures.debian_images``, converted once per module with ``ipcs-fs convert
--file-granular`` into an ``oci-archive:`` tar, with the same block store the
plugins use (the fixtures of ``conftest.py`` in this directory).

Directory times are the one expected difference from containerd's own
unpack. On overlayfs containerd gives every lower directory that a layer
writes into without listing it the time of the unpack, where the plugin keeps
the layer's time. On
native the snapshotter's copy of the parent gives every directory that the
top layer does not record the time of the copy, in both unpacks. And a root
that the top layer does not record has the time its snapshot was created. :func:`_assert_same_tree`
allows exactly these differences.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from support import wait_until
from support.containerd import Containerd, CtrCommandError
from support.diff_plugin import (
    MEDIA_TYPE,
    ConvertedImage,
    convert_image,
    import_image,
    start_with_plugin,
)

from fixtures.tree import Node, NodeType, diff, snapshot

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root"),
]

UNKNOWN_TAR_TYPE = "application/vnd.oci.image.layer.v1.tar+ipcs-fs-test"
DECLINED = re.compile(r"declined to apply layer (sha256:[0-9a-f]{64})")


# Imports ------------------------------------------------------------------


def _import_after_restart(
    daemon: Containerd, archive: Path, base_name: str
) -> tuple[str, float]:
    """Import once containerd has reconnected to the restarted plugin.

    containerd's gRPC connection to a proxy plugin that went away waits out
    a reconnect backoff of 1 s, growing to at most 3 s, because containerd
    1.7.24 caps it there for proxy plugins. Calls in that time fail with
    UNAVAILABLE. Returns
    the image name and the seconds it took.
    """
    started = time.monotonic()
    while True:
        try:
            return import_image(daemon, archive, base_name), time.monotonic() - started
        except CtrCommandError as error:
            if "unavailable" not in str(error) or time.monotonic() - started > 60:
                raise
        time.sleep(0.5)


# Snapshots ----------------------------------------------------------------


def _committed_top(daemon: Containerd) -> str:
    """Return the key of the committed snapshot that no other one has as parent."""
    rows = [line.split() for line in daemon.output("snapshots", "ls").splitlines()[1:]]
    committed = [row[0] for row in rows if row[-1] == "Committed"]
    parents = {row[1] for row in rows if len(row) == 3}
    tops = [key for key in committed if key not in parents]
    assert len(tops) == 1, rows
    return tops[0]


_SNAPSHOT_ATTEMPTS = 3


def _create_snapshot(daemon: Containerd, kind: str, key: str, parent: str) -> list:
    """Create an active (``prepare``) or ``view`` snapshot; return its mounts.

    A snapshot that no image, container or lease references is removed by
    the next garbage collection, so it is labelled as a root at once.
    """
    for attempt in range(_SNAPSHOT_ATTEMPTS):
        output = daemon.output("snapshots", kind, "--mounts", key, parent)
        try:
            daemon.ctr("snapshots", "label", key, "containerd.io/gc.root=test")
        except CtrCommandError as error:
            # A collection that ran between the two commands removed it.
            if "does not exist" not in str(error) or attempt + 1 == _SNAPSHOT_ATTEMPTS:
                raise
            continue
        return [_mount_fields(mount) for mount in json.loads(output)]
    raise AssertionError("unreachable")


def _mount_fields(mount: dict) -> dict[str, object]:
    """Return a mount printed by ``ctr --mounts`` as containerd.types.Mount fields."""
    fields = {key.lower(): value for key, value in mount.items()}
    return {
        "type": fields["type"],
        "source": fields["source"],
        "options": list(fields.get("options") or []),
    }


def _mount_all(mounts: list[dict[str, object]], target: Path) -> None:
    for mount in mounts:
        command = ["mount"]
        if mount["type"] != "bind":
            command += ["-t", str(mount["type"])]
        if mount["options"]:
            command += ["-o", ",".join(mount["options"])]  # type: ignore[arg-type]
        subprocess.run([*command, str(mount["source"]), str(target)], check=True)


@contextmanager
def _mounted(mounts: list[dict[str, object]]) -> Iterator[Path]:
    """Mount ``mounts`` on a temporary directory; unmount afterwards."""
    target = Path(tempfile.mkdtemp(prefix="ipcs-fs-snapshot-"))
    try:
        _mount_all(mounts, target)
        yield target
    finally:
        subprocess.run(
            ["umount", "--recursive", str(target)], capture_output=True, check=False
        )
        target.rmdir()


@contextmanager
def _viewed(daemon: Containerd, key: str) -> Iterator[Path]:
    """Mount a read-only view of the committed snapshot ``key``."""
    name = f"view-{time.monotonic_ns()}"
    mounts = _create_snapshot(daemon, "view", name, key)
    try:
        with _mounted(mounts) as root:
            yield root
    finally:
        daemon.ctr("snapshots", "rm", name)


@contextmanager
def _top_tree(daemon: Containerd) -> Iterator[Path]:
    """Yield the tree of the image's top snapshot, as the snapshotter stores it.

    A native view would be a fresh copy, whose directory times are the
    copy's, so a native snapshot is read in its own directory (the newest
    one, before any container adds more).
    """
    if daemon.snapshotter == "native":
        numbers = [int(entry.name) for entry in daemon.snapshot_dir().iterdir()]
        yield daemon.snapshot_dir() / str(max(numbers))
        return
    with _viewed(daemon, _committed_top(daemon)) as root:
        yield root


def _assert_same_tree(reference: Path, ours: Path, started_ns: int) -> list[str]:
    """Compare two trees; allow only directory times that an unpack set.

    Returns the differences allowed, each with its reason.
    """
    expected, actual = snapshot(reference), snapshot(ours)
    allowed, other = [], []
    for line in diff(expected, actual):
        path = line.split(": ", 1)[0]
        key = b"." if path == "." else path.encode()
        reason = _unpack_time_reason(
            line, expected.get(key), actual.get(key), started_ns
        )
        if reason:
            allowed.append(f"{line} ({reason})")
        else:
            other.append(line)
    assert other == []
    return allowed


def _unpack_time_reason(
    line: str, reference: Node | None, ours: Node | None, started_ns: int
) -> str:
    """Return why a directory's mtime may differ, or "" when it may not."""
    if reference is None or ours is None or reference.type is not NodeType.DIR:
        return ""
    if ": mtime_ns: " not in line:
        return ""
    assert reference.mtime_ns is not None and ours.mtime_ns is not None
    if reference.mtime_ns >= started_ns > ours.mtime_ns:
        return "containerd set the time of its unpack; ours is the layer's"
    if min(reference.mtime_ns, ours.mtime_ns) >= started_ns:
        return "the top layer does not record it; both are times of the unpacks"
    return ""


# Tests --------------------------------------------------------------------


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_import_unpacks_through_plugin(
    containerd, plugin_factory, bookworm: ConvertedImage, snapshotter: str
) -> None:
    started_ns = time.time_ns()
    daemon, plugin = start_with_plugin(
        containerd, plugin_factory, bookworm.store, snapshotter=snapshotter
    )
    reference = containerd(snapshotter=snapshotter)

    image = import_image(daemon, bookworm.converted, "fg")
    import_image(reference, bookworm.original, "std")

    applied = plugin.applied()
    assert [digest for digest, _, _ in applied] == list(bookworm.layer_digests)
    assert {media_type for _, media_type, _ in applied} == {MEDIA_TYPE}
    with _top_tree(daemon) as ours, _top_tree(reference) as theirs:
        allowed = _assert_same_tree(theirs, ours, started_ns)
    print(f"{len(allowed)} allowed differences:", *allowed, sep="\n  ")
    answer = daemon.output("run", "--rm", image, "py", "python3", "-c", "print(6*7)")
    assert answer == "42"
    capability = daemon.output("run", "--rm", image, "cap", "getcap", "/usr/bin/ping")
    assert capability == "/usr/bin/ping cap_net_raw=ep"


def test_write_paths_match_snapshotter(
    containerd, plugin_factory, bookworm: ConvertedImage
) -> None:
    overlay, overlay_plugin = start_with_plugin(
        containerd, plugin_factory, bookworm.store
    )
    native, native_plugin = start_with_plugin(
        containerd, plugin_factory, bookworm.store, snapshotter="native"
    )

    import_image(overlay, bookworm.converted, "fg")
    import_image(native, bookworm.converted, "fg")

    # The bottom layer of an overlay snapshot is a bind mount; later ones are
    # written straight into the upper directory.
    overlay_paths = [path for _, _, path in overlay_plugin.applied()]
    native_paths = [path for _, _, path in native_plugin.applied()]
    assert overlay_paths == ["bind-source", "overlay-upper"]
    assert native_paths == ["bind-source", "bind-source"]


def test_standard_image_with_plugin_only(
    containerd, plugin_factory, bookworm: ConvertedImage
) -> None:
    daemon, plugin = start_with_plugin(
        containerd, plugin_factory, bookworm.store, diff_order=("ipcs-fs",)
    )

    image = import_image(daemon, bookworm.original, "std")

    media_types = {media_type for _, media_type, _ in plugin.applied()}
    assert media_types == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert len(plugin.applied()) == 2
    version = daemon.output("run", "--rm", image, "v", "cat", "/etc/debian_version")
    assert re.fullmatch(r"12\.\d+", version)


def test_unknown_media_type_falls_through(
    containerd, plugin_factory, tmp_path: Path, shared_store: Path
) -> None:
    archive, layer_digest = _write_single_layer_image(tmp_path, UNKNOWN_TAR_TYPE)
    daemon, plugin = start_with_plugin(containerd, plugin_factory, shared_store)

    import_image(daemon, archive, "unknown")

    assert DECLINED.findall(plugin.text()) == [layer_digest]
    assert plugin.applied() == []
    with _viewed(daemon, _committed_top(daemon)) as root:
        assert (root / "hello.txt").read_bytes() == b"applied by walking\n"


def _write_single_layer_image(directory: Path, media_type: str) -> tuple[Path, str]:
    """Write an oci-archive with one uncompressed layer typed ``media_type``."""
    layer = _tar_bytes({"hello.txt": b"applied by walking\n"})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    blobs = {}
    layer_descriptor = _descriptor(media_type, layer, blobs)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor(
                "application/vnd.oci.image.config.v1+json", config, blobs
            ),
            "layers": [layer_descriptor],
        }
    ).encode()
    manifest_descriptor = _descriptor(
        "application/vnd.oci.image.manifest.v1+json", manifest, blobs
    )
    manifest_descriptor["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    files = {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": json.dumps(
            {"schemaVersion": 2, "manifests": [manifest_descriptor]}
        ).encode(),
        **{f"blobs/sha256/{digest}": data for digest, data in blobs.items()},
    }
    archive = directory / "unknown.oci.tar"
    archive.write_bytes(_tar_bytes(files))
    return archive, layer_descriptor["digest"]


def _descriptor(media_type: str, data: bytes, blobs: dict[str, bytes]) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_diff_reproduces_snapshot(
    containerd, plugin_factory, bookworm: ConvertedImage, snapshotter: str
) -> None:
    daemon, plugin = start_with_plugin(
        containerd, plugin_factory, bookworm.store, snapshotter=snapshotter
    )
    import_image(daemon, bookworm.converted, "fg")
    parent = _committed_top(daemon)
    work = _create_snapshot(daemon, "prepare", "work", parent)
    with _mounted(work) as root:
        _change_tree(root)

    blob = daemon.ctr(
        "snapshots", "diff", "--keep", "--media-type", MEDIA_TYPE, "work"
    ).stdout
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    assert f"as layer {digest} in namespace {daemon.namespace}" in plugin.text()
    labels = _content_labels(daemon, digest)
    assert "containerd.io/gc.root" in labels
    check = _create_snapshot(daemon, "prepare", "check", parent)
    applied = _apply_through_containerd(daemon, MEDIA_TYPE, digest, len(blob), check)
    assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert f"diff_id {applied.digest}" in plugin.text()
    assert labels["containerd.io/uncompressed"] == applied.digest
    with _mounted(work) as expected, _mounted(check) as actual:
        assert diff(snapshot(expected), snapshot(actual)) == []
        assert not (actual / "usr/share/doc/perl-base").exists()
        assert os.listdir(actual / "usr/share/zoneinfo") == ["only"]


def _content_labels(daemon: Containerd, digest: str) -> dict[str, str]:
    """Return the labels of blob ``digest`` in the daemon's namespace."""
    for line in daemon.output("content", "ls").splitlines()[1:]:
        fields = line.split()
        if fields[0] == digest:
            return dict(pair.split("=", 1) for pair in fields[-1].split(","))
    raise AssertionError(f"{digest} is not in the content store")


def _change_tree(root: Path) -> None:
    """Add, modify and delete entries of every kind in a mounted snapshot."""
    (root / "etc/added").write_bytes(b"added by the test\n")
    os.chmod(root / "etc/added", 0o640)
    os.setxattr(root / "etc/added", "user.ipcs-fs", b"value")
    os.link(root / "etc/added", root / "etc/added-link")
    with open(root / "etc/debian_version", "ab") as stream:
        stream.write(b"changed\n")
    os.chown(root / "etc/passwd", 1000, 1000)
    (root / "opt/new/dir").mkdir(parents=True)
    os.symlink("../../etc/added", root / "opt/new/link")
    os.mkfifo(root / "opt/new/fifo")
    os.utime(root / "opt/new/dir", ns=(981173106_123456789, 981173106_123456789))
    subprocess.run(["rm", "-rf", str(root / "usr/share/doc/perl-base")], check=True)
    (root / "usr/bin/zcat").unlink()
    # A directory emptied and recreated: overlayfs marks it opaque.
    subprocess.run(["rm", "-rf", str(root / "usr/share/zoneinfo")], check=True)
    (root / "usr/share/zoneinfo").mkdir()
    (root / "usr/share/zoneinfo/only").write_bytes(b"the only entry\n")
    big = os.urandom(1 << 20) * 3
    (root / "opt/new/big.bin").write_bytes(big)


@dataclass(frozen=True)
class AppliedDescriptor:
    media_type: str
    digest: str
    size: int


def _apply_through_containerd(
    daemon: Containerd,
    media_type: str,
    digest: str,
    size: int,
    mounts: list[dict[str, object]],
) -> AppliedDescriptor:
    """Call containerd's own diff service, which passes Apply to its differs."""
    from ipcs_fs.service.protos import diff_grpc, diff_pb2, mount_pb2, types_pb2

    request = diff_pb2.ApplyRequest(
        diff=types_pb2.Descriptor(media_type=media_type, digest=digest, size=size),
        mounts=[mount_pb2.Mount(**mount) for mount in mounts],
    )
    with grpc.insecure_channel(daemon.address) as channel:
        response = diff_grpc.DiffStub(channel).Apply(
            request, metadata=[("containerd-namespace", daemon.namespace)], timeout=120
        )
    applied = response.applied
    return AppliedDescriptor(applied.media_type, applied.digest, applied.size)


def test_restart_during_unpack(
    containerd, plugin_factory, bookworm: ConvertedImage
) -> None:
    daemon, plugin = start_with_plugin(
        containerd, plugin_factory, bookworm.store, stop_timeout=0
    )
    importer = subprocess.Popen(
        [
            str(daemon.ctr_binary),
            "--address",
            str(daemon.socket_path),
            "--namespace",
            daemon.namespace,
            "images",
            "import",
            "--base-name",
            "fg",
            str(bookworm.converted),
        ],
        env=daemon.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(
        lambda: "applying layer" in plugin.text(),
        timeout=60,
        description="the first Apply",
    )

    status = plugin.stop(signal.SIGTERM)
    _, stderr = importer.communicate(timeout=120)

    assert status == 0
    assert importer.returncode != 0
    assert b"failed to extract layer" in stderr
    assert "failed to apply layer" in plugin.text()
    assert not plugin.socket.exists()
    assert _mounts_below(plugin.mount_dir) == []
    assert not plugin.mount_dir.exists()
    assert "extract" not in daemon.output("snapshots", "ls")

    plugin.start()
    image, seconds = _import_after_restart(daemon, bookworm.converted, "fg")
    answer = daemon.output("run", "--rm", image, "py", "python3", "-c", "print(6*7)")
    assert answer == "42"
    print(f"import succeeded {seconds:.1f}s after the plugin restarted")


def test_killed_plugin_fails_unpack_cleanly(
    containerd, plugin_factory, bookworm: ConvertedImage
) -> None:
    daemon, plugin = start_with_plugin(containerd, plugin_factory, bookworm.store)
    plugin.stop(signal.SIGKILL)

    with pytest.raises(CtrCommandError, match="failed to extract layer"):
        import_image(daemon, bookworm.converted, "fg")

    assert plugin.socket.exists()  # left by the kill
    plugin.start()
    assert "removing stale socket" in plugin.text()
    image, seconds = _import_after_restart(daemon, bookworm.converted, "fg")
    assert daemon.output("run", "--rm", image, "t", "true") == ""
    print(f"import succeeded {seconds:.1f}s after the plugin restarted")


def _mounts_below(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    with open("/proc/self/mountinfo") as info:
        return [line for line in info if line.split()[4].startswith(prefix)]


def test_parallel_unpacks(
    containerd,
    plugin_factory,
    bookworm: ConvertedImage,
    shared_store: Path,
    tmp_path: Path,
) -> None:
    others = [
        convert_image(name, shared_store, tmp_path)
        for name in ("debian-trixie", "debian-bookworm-rebuild")
    ]
    images = [bookworm, *others]
    daemon, plugin = start_with_plugin(containerd, plugin_factory, shared_store)
    errors: list[CtrCommandError] = []

    def import_one(image: ConvertedImage, name: str) -> None:
        try:
            import_image(daemon, image.converted, name)
        except CtrCommandError as error:  # reported by the assert below
            errors.append(error)

    threads = [
        threading.Thread(target=import_one, args=(image, f"img{index}"))
        for index, image in enumerate(images)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []
    applied = {digest for digest, _, _ in plugin.applied()}
    expected = {digest for image in images for digest in image.layer_digests}
    assert applied == expected
    assert _overlapping_applies(plugin.text())
    for index in range(len(images)):
        name = next(
            line
            for line in daemon.output("images", "list", "--quiet").splitlines()
            if line.startswith(f"img{index}")
        )
        assert daemon.output("run", "--rm", name, f"c{index}", "true") == ""


def _overlapping_applies(log: str) -> bool:
    """Tell whether some Apply started while another one was running."""
    running = 0
    for line in log.splitlines():
        if "applying layer" in line:
            running += 1
            if running > 1:
                return True
        elif "applied layer" in line or "failed to apply" in line:
            running -= 1
    return False
