"""The Diff service end to end in-process: Apply, Diff and the status codes.

The plugin runs in the test process; calls go over its real unix socket with
the generated stubs, as containerd's would. Trees are checked entry by entry.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from pathlib import Path

import grpc
import pytest
import zstandard

from fixtures.tree import snapshot
from ipcs_fs.errors import (
    AlreadyExistsError,
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    IpcsError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
)
from ipcs_fs.ids import Cid, Digest
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.service.protos import diff_grpc, diff_pb2, mount_pb2, types_pb2
from ipcs_fs.service.server import Plugin
from ipcs_fs.service.servicer import status_of
from ipcs_fs.store import EmbeddedStore, MemoryStore
from tests.apply.layers import directory, file, layer, symlink
from tests.service.conftest import FakeContainerd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writes owners as root")

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
FILE_GRANULAR = "application/vnd.oci.image.layer.ipcs-fs.v1+dag-pb"

LOWER = layer(
    directory("etc"),
    file("etc/keep", b"kept\n"),
    file("etc/gone", b"deleted by the upper layer\n"),
    directory("opaque"),
    file("opaque/old", b"hidden by the opaque marker\n"),
)
UPPER = layer(
    file("etc/new", b"new file\n", mode=0o600, uid=7, gid=8),
    file("etc/.wh.gone"),
    file("opaque/.wh..wh..opq"),
    file("opaque/fresh", b"only entry left\n"),
    symlink("etc/link", "new"),
)


def _stub(plugin: Plugin) -> diff_grpc.DiffStub:
    channel = grpc.insecure_channel(f"unix://{plugin.socket}")
    return diff_grpc.DiffStub(channel)


def _store_blob(fake: FakeContainerd, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (fake.content_dir / digest).write_bytes(data)
    return f"sha256:{digest}"


def _apply(
    plugin: Plugin, media_type: str, digest: str, size: int, mounts, sync_fs=False
):
    request = diff_pb2.ApplyRequest(
        diff=types_pb2.Descriptor(media_type=media_type, digest=digest, size=size),
        mounts=mounts,
        sync_fs=sync_fs,
    )
    return _stub(plugin).Apply(request, timeout=30).applied


def _bind(directory: Path) -> list:
    return [mount_pb2.Mount(type="bind", source=str(directory), options=["rbind"])]


def _diff_id(tar: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar).hexdigest()


@pytest.mark.parametrize(
    ("media_type", "compress"),
    [
        (OCI_TAR, bytes),
        (OCI_TAR + "+gzip", gzip.compress),
        (OCI_TAR + "+zstd", zstandard.compress),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", gzip.compress),
    ],
)
def test_apply_standard_layer(
    plugin: Plugin,
    fake_containerd: FakeContainerd,
    tmp_path: Path,
    media_type,
    compress,
) -> None:
    blob = compress(LOWER)
    digest = _store_blob(fake_containerd, blob)
    root = tmp_path / "root"
    root.mkdir()

    applied = _apply(plugin, media_type, digest, len(blob), _bind(root))

    assert applied.media_type == OCI_TAR
    assert applied.digest == _diff_id(LOWER)
    assert applied.size == len(LOWER)
    assert (root / "etc/keep").read_bytes() == b"kept\n"


def test_apply_with_sync_fs(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    digest = _store_blob(fake_containerd, LOWER)

    applied = _apply(plugin, OCI_TAR, digest, len(LOWER), _bind(tmp_path), True)

    assert applied.digest == _diff_id(LOWER)
    assert (tmp_path / "etc/gone").is_file()


def _file_granular_blob(tar: bytes) -> tuple[bytes, MemoryStore]:
    blocks = MemoryStore()
    converted = convert_layer(_Reader(tar), blocks.put, source="test")
    return converted.root_block, blocks


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        size = len(self._view) if size < 0 else size
        data, self._view = bytes(self._view[:size]), self._view[size:]
        return data

    def readinto(self, buffer) -> int:
        count = min(len(buffer), len(self._view))
        buffer[:count] = self._view[:count]
        self._view = self._view[count:]
        return count


def _copy_blocks(blocks: MemoryStore, store_dir: Path, *, skip: Cid | None) -> None:
    with EmbeddedStore(store_dir) as store:
        store.put_many((cid, blocks.get(cid)) for cid in blocks.cids() if cid != skip)


def test_apply_file_granular_root_from_content_dir(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    root_block, blocks = _file_granular_blob(LOWER)
    digest = _store_blob(fake_containerd, root_block)
    _copy_blocks(blocks, plugin.config.store, skip=Cid.for_block(0x70, root_block))
    root = tmp_path / "root"
    root.mkdir()

    applied = _apply(plugin, FILE_GRANULAR, digest, len(root_block), _bind(root))

    assert applied.digest == _diff_id(LOWER)
    assert applied.size == len(LOWER)
    assert (root / "opaque/old").read_bytes() == b"hidden by the opaque marker\n"


def test_apply_overlay_upper_writes_whiteouts(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    lower, upper, work = (tmp_path / name for name in ("lower", "upper", "work"))
    for path in (lower, upper, work):
        path.mkdir()
    lower_blob = _store_blob(fake_containerd, LOWER)
    _apply(plugin, OCI_TAR, lower_blob, len(LOWER), _bind(lower))
    root_block, blocks = _file_granular_blob(UPPER)
    _copy_blocks(blocks, plugin.config.store, skip=None)
    overlay = mount_pb2.Mount(
        type="overlay",
        source="overlay",
        options=[f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}"],
    )

    digest = "sha256:" + hashlib.sha256(root_block).hexdigest()
    applied = _apply(plugin, FILE_GRANULAR, digest, len(root_block), [overlay])

    assert applied.digest == _diff_id(UPPER)
    whiteout = os.lstat(upper / "etc/gone")
    assert stat.S_ISCHR(whiteout.st_mode)
    assert whiteout.st_rdev == 0
    assert os.getxattr(upper / "opaque", "trusted.overlay.opaque") == b"y"
    assert (upper / "etc/new").stat().st_uid == 7
    assert not (upper / "etc/keep").exists()


@pytest.mark.parametrize(
    ("media_type", "code"),
    [
        ("application/vnd.oci.image.layer.v1.tar+encrypted", "UNIMPLEMENTED"),
        ("application/vnd.example.unknown", "UNIMPLEMENTED"),
        (OCI_TAR, "NOT_FOUND"),
        (FILE_GRANULAR, "NOT_FOUND"),
    ],
)
def test_apply_errors_map_to_codes(
    plugin: Plugin, tmp_path: Path, media_type: str, code: str
) -> None:
    digest = "sha256:" + "0" * 64

    with pytest.raises(grpc.RpcError) as caught:
        _apply(plugin, media_type, digest, 10, _bind(tmp_path))

    assert caught.value.code().name == code
    assert digest in caught.value.details()


def test_apply_corrupt_root_block_is_data_loss(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    root_block, _ = _file_granular_blob(LOWER)
    digest = _store_blob(fake_containerd, root_block)
    (fake_containerd.content_dir / digest.split(":")[1]).write_bytes(b"x" + root_block)

    with pytest.raises(grpc.RpcError) as caught:
        _apply(plugin, FILE_GRANULAR, digest, len(root_block), _bind(tmp_path))

    assert caught.value.code() is grpc.StatusCode.DATA_LOSS


def test_apply_invalid_digest_is_invalid_argument(
    plugin: Plugin, tmp_path: Path
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _apply(plugin, OCI_TAR, "md5:1234", 10, _bind(tmp_path))

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "invalid digest 'md5:1234': expected sha256: and 64 hex digits"
    )


def test_apply_counts_calls(plugin: Plugin, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError):
        _apply(
            plugin, "application/x-unknown", "sha256:" + "1" * 64, 1, _bind(tmp_path)
        )

    assert plugin.servicer is not None
    assert plugin.servicer.counters.snapshot() == {("Apply", "UNIMPLEMENTED"): 1}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExistsError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (FailedPreconditionError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (UnimplementedError("x"), grpc.StatusCode.UNIMPLEMENTED),
        (UnavailableError("x"), grpc.StatusCode.UNAVAILABLE),
        (ResourceExhaustedError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DataLossError("x"), grpc.StatusCode.DATA_LOSS),
    ],
)
def test_status_of_each_kind(error: Exception, code: grpc.StatusCode) -> None:
    assert status_of(error) == (code, "x")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (IpcsError("no kind"), "IpcsError: no kind"),
        (OSError("disk on fire"), "OSError: disk on fire"),
    ],
)
def test_status_of_other_errors(error: Exception, message: str) -> None:
    assert status_of(error) == (grpc.StatusCode.UNKNOWN, message)


# Diff ---------------------------------------------------------------------


def _trees(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for root in (lower, upper):
        (root / "etc").mkdir(parents=True)
        (root / "etc/keep").write_bytes(b"same\n")
        os.utime(root / "etc/keep", ns=(1_000_000_000_5, 1_000_000_000_5))
    (lower / "etc/gone").write_bytes(b"removed\n")
    (upper / "etc/added").write_bytes(b"added\n")
    for root in (lower, upper):
        os.utime(root / "etc", ns=(2_000_000_000, 2_000_000_000))
        os.utime(root, ns=(3_000_000_000, 3_000_000_000))
    return lower, upper


def _diff(plugin: Plugin, lower: Path, upper: Path, metadata=(), **fields):
    request = diff_pb2.DiffRequest(
        left=_bind(lower), right=_bind(upper), media_type=FILE_GRANULAR, **fields
    )
    return _stub(plugin).Diff(request, metadata=metadata, timeout=30).diff


def test_diff_writes_root_blob_under_lease(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    lower, upper = _trees(tmp_path)

    described = _diff(plugin, lower, upper, ref="ref-1", labels={"a": "b"})

    blob = (fake_containerd.content_dir / described.digest.split(":")[1]).read_bytes()
    assert described.media_type == FILE_GRANULAR
    assert described.size == len(blob)
    assert Digest.of(blob) == Digest.parse(described.digest)
    names = [name for name, _, _ in fake_containerd.events]
    assert names == ["lease-create", "commit", "lease-delete"]
    lease = fake_containerd.events[0][1].split()[0]
    assert fake_containerd.events[1][2]["containerd-lease"] == lease
    assert fake_containerd.events[2][1] == lease
    assert {
        metadata["containerd-namespace"] for _, _, metadata in fake_containerd.events
    } == {"configured"}
    write = fake_containerd.writes[0]
    assert write.ref == "ref-1"
    assert write.labels["a"] == "b"
    annotations = dict(described.annotations)
    assert (
        write.labels["containerd.io/uncompressed"]
        == annotations["org.ipcs-fs.layer.diff-id"]
    )
    assert annotations["org.ipcs-fs.layer.root-cid"] == str(
        Cid.from_digest(Digest.parse(described.digest), 0x70)
    )


def test_diff_uses_namespace_header(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    lower, upper = _trees(tmp_path)

    _diff(plugin, lower, upper, metadata=[("containerd-namespace", "caller")])

    namespaces = {
        metadata["containerd-namespace"] for _, _, metadata in fake_containerd.events
    }
    assert namespaces == {"caller"}


def test_diff_layer_applies_back(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    lower, upper = _trees(tmp_path)
    described = _diff(plugin, lower, upper)
    target = tmp_path / "target"
    _copy_tree(lower, target)

    applied = _apply(
        plugin, FILE_GRANULAR, described.digest, described.size, _bind(target)
    )

    assert applied.digest == dict(described.annotations)["org.ipcs-fs.layer.diff-id"]
    assert snapshot(target) == snapshot(upper)


def _copy_tree(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target, symlinks=True)
    for path in [target / "etc", target]:
        original = source / path.relative_to(target)
        st = original.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_diff_standard_media_type_unimplemented(plugin: Plugin, tmp_path: Path) -> None:
    lower, upper = _trees(tmp_path)
    request = diff_pb2.DiffRequest(
        left=_bind(lower), right=_bind(upper), media_type=OCI_TAR + "+gzip"
    )

    with pytest.raises(grpc.RpcError) as caught:
        _stub(plugin).Diff(request, timeout=30)

    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_diff_containerd_down_is_unavailable(
    plugin: Plugin, fake_containerd: FakeContainerd, tmp_path: Path
) -> None:
    lower, upper = _trees(tmp_path)
    os.unlink(fake_containerd.address.removeprefix("unix://"))

    with pytest.raises(grpc.RpcError) as caught:
        _diff(plugin, lower, upper)

    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "failed to create a lease in configured" in caught.value.details()
