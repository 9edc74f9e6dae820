"""Hostile layer DAGs: each ends with one clear error and nothing taken as applied."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fixtures import tarwriter as tw
from ipcs_fs.apply import ApplyOptions, apply_layer
from ipcs_fs.errors import DataLossError, ResourceExhaustedError
from ipcs_fs.ids import DAG_PB, RAW, Cid
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.layer.rebuild import RebuiltTar, read_layer_root
from ipcs_fs.layer.records import LayerHeader, encode_layer_header
from ipcs_fs.layer.tarstream import TarStreamWriter
from ipcs_fs.store import MemoryStore, verified
from ipcs_fs.unixfs import (
    DataType,
    FileBuilder,
    FileDag,
    Link,
    UnixfsData,
    build_directory,
    encode_data,
    encode_node,
)
from tests.layer.streams import BytesStream

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _layer_root(store: MemoryStore, tar_link: Link, tar_size: int, diff_id: bytes):
    """Store a layer root over an empty rootfs and the given tar stream."""
    rootfs = build_directory([], store.put)
    header = LayerHeader(diff_id=diff_id, tar_size=tar_size)
    data = UnixfsData(DataType.DIRECTORY, layer_header=encode_layer_header(header))
    links = [Link(rootfs.cid, b"rootfs", rootfs.tsize), tar_link]
    block = encode_node(links, encode_data(data))
    cid = Cid.for_block(DAG_PB, block)
    store.put(cid, block)
    return read_layer_root(store.get, cid)


def _converted(data: bytes) -> tuple[MemoryStore, Cid]:
    store = MemoryStore()
    result = convert_layer(BytesStream(data), store.put, source="test layer")
    return store, result.root_cid


def test_tampered_leaf_names_its_cid() -> None:
    content = b"x" * 1000
    store, root_cid = _converted(
        tw.header(b"f", size=1000) + content + bytes(24) + tw.end()
    )
    leaf = Cid.for_block(RAW, content)
    store._blocks[leaf] = b"y" * 1000  # as if the bytes rotted on disk

    trusted = verified(store)
    root = read_layer_root(trusted.get, root_cid)
    with pytest.raises(DataLossError, match=str(leaf)):
        RebuiltTar(trusted.get, root).read()


def test_data_record_longer_than_file() -> None:
    store = MemoryStore()
    builder = FileBuilder(store.put)
    builder.write(b"abc")
    small = builder.finish()
    writer = TarStreamWriter(store.put)
    writer.add_raw(tw.header(b"f", size=1000))
    writer.add_data(small, 1000)  # the file holds 3 bytes
    writer.add_raw(bytes(24) + tw.end())
    link = writer.finish()
    tar_link = Link(link.cid, b"tar-stream", link.tsize)
    root = _layer_root(store, tar_link, 512 + 1000 + 24 + 1024, bytes(32))

    with pytest.raises(DataLossError, match=str(small.cid)):
        RebuiltTar(store.get, root).read()


def test_wrong_diff_id_fails_at_the_end() -> None:
    data = tw.header(b"f", size=3) + b"abc" + bytes(509) + tw.end()
    store, root_cid = _converted(data)
    good = read_layer_root(store.get, root_cid)
    forged = _layer_root(store, good.tar_stream, good.header.tar_size, bytes(32))

    stream = RebuiltTar(store.get, forged)
    assert stream.read(512) == data[:512]
    with pytest.raises(DataLossError, match="diff_id"):
        stream.read()


def _fan_in_bomb(store: MemoryStore, copies: int) -> tuple[object, int, bytes]:
    """A tar stream that links one 1 MiB file ``copies`` times, honestly sized."""
    builder = FileBuilder(store.put)
    builder.write(os.urandom(1 << 20))
    big: FileDag = builder.finish()
    writer = TarStreamWriter(store.put)
    sha256 = hashlib.sha256()
    size = 0
    for index in range(copies):
        header = tw.header(b"f%06d" % index, size=1 << 20)
        writer.add_raw(header)
        writer.add_data(big, 1 << 20)
        sha256.update(header)
        size += len(header) + (1 << 20)
    writer.add_raw(tw.end())
    size += len(tw.end())
    link = writer.finish()
    return Link(link.cid, b"tar-stream", link.tsize), size, sha256.digest()


@needs_root
def test_fan_in_bomb_stops_at_the_write_bound(tmp_path: Path) -> None:
    store = MemoryStore()
    tar_link, size, _ = _fan_in_bomb(store, copies=64)
    root = _layer_root(store, tar_link, size, bytes(32))
    target = tmp_path / "root"
    target.mkdir()

    options = ApplyOptions(max_bytes=8 << 20)
    with pytest.raises(ResourceExhaustedError):
        apply_layer(RebuiltTar(store.get, root), target, source="bomb", options=options)

    written = sum(path.stat().st_size for path in target.iterdir())
    assert written <= 8 << 20


def test_tar_stream_longer_than_declared() -> None:
    store = MemoryStore()
    tar_link, size, _ = _fan_in_bomb(store, copies=4)
    root = _layer_root(store, tar_link, size - 1, bytes(32))

    with pytest.raises(ResourceExhaustedError, match="rebuilds more than"):
        RebuiltTar(store.get, root).read()
