"""convert_layer reading the tar in a thread: the same layer, the same errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import threading

import pytest
import zstandard

from fixtures import tarwriter as tw
from ipcs_fs.errors import DataLossError, InvalidArgumentError
from ipcs_fs.ids import Digest
from ipcs_fs.layer.convert import convert_layer
from ipcs_fs.oci.compression import open_uncompressed
from ipcs_fs.store import MemoryStore
from tests.layer.streams import BytesStream

# Files of 0 bytes, one chunk, several chunks and several 1 MiB read pieces.
_TAR = (
    tw.header(b"dir/", typeflag=tw.DIR, mode=0o755)
    + tw.entry(b"dir/empty")
    + tw.entry(b"dir/small", b"small file\n")
    + tw.entry(b"dir/chunks", bytes(range(256)) * 5000)
    + tw.entry(b"large", b"".join(bytes([i]) * 100_000 for i in range(40)))
    + tw.end()
)
_DIFF_ID = Digest(hashlib.sha256(_TAR).hexdigest())
_WRONG_DIFF_ID = Digest("00" * 32)


class _ClosingStream(BytesStream):
    """A BytesStream that records whether it was closed."""

    was_closed = False

    def close(self) -> None:
        self.was_closed = True
        super().close()


def _read_ahead_threads() -> int:
    return sum(thread.name == "ipcs-fs-readahead" for thread in threading.enumerate())


def _convert(data: bytes, *, read_ahead: bool, expected=None):
    store = MemoryStore()
    result = convert_layer(
        BytesStream(data),
        store.put,
        source="test layer",
        expected_diff_id=expected,
        read_ahead=read_ahead,
    )
    return store, result


def test_read_ahead_gives_same_layer() -> None:
    plain_store, plain = _convert(_TAR, read_ahead=False)
    store, result = _convert(_TAR, read_ahead=True, expected=_DIFF_ID)

    assert result.root_cid == plain.root_cid
    assert result.root_block == plain.root_block
    assert result.diff_id == _DIFF_ID
    assert result.tar_size == len(_TAR)
    assert result.entry_count == 5
    assert sorted(store.cids()) == sorted(plain_store.cids())


def test_read_ahead_of_gzip_layer() -> None:
    _, plain = _convert(_TAR, read_ahead=False)
    blob = _ClosingStream(gzip.compress(_TAR[:300_000]) + gzip.compress(_TAR[300_000:]))

    result = convert_layer(
        open_uncompressed(blob),
        MemoryStore().put,
        source="test layer",
        expected_diff_id=_DIFF_ID,
        read_ahead=True,
    )

    assert result.root_cid == plain.root_cid
    assert blob.was_closed
    assert _read_ahead_threads() == 0


def test_read_ahead_of_zstd_layer() -> None:
    _, plain = _convert(_TAR, read_ahead=False)
    blob = io.BytesIO(zstandard.ZstdCompressor().compress(_TAR))

    result = convert_layer(
        open_uncompressed(blob),
        MemoryStore().put,
        source="test layer",
        expected_diff_id=_DIFF_ID,
        read_ahead=True,
    )

    assert result.root_cid == plain.root_cid
    assert result.diff_id == _DIFF_ID


def test_read_ahead_wrong_diff_id_raises_before_root() -> None:
    _, good = _convert(_TAR, read_ahead=False)
    store = MemoryStore()

    with pytest.raises(DataLossError) as caught:
        convert_layer(
            BytesStream(_TAR),
            store.put,
            source="test layer",
            expected_diff_id=_WRONG_DIFF_ID,
            read_ahead=True,
        )

    assert str(caught.value) == (
        f"layer test layer hashes to diff_id {_DIFF_ID}, but the image config"
        f" lists {_WRONG_DIFF_ID}"
    )
    assert not store.has(good.root_cid)
    assert _read_ahead_threads() == 0


@pytest.mark.parametrize("cut", [700, 300_000, len(_TAR) - 2000])
def test_read_ahead_truncated_tar_raises_as_inline(cut: int) -> None:
    with pytest.raises(InvalidArgumentError) as inline:
        _convert(_TAR[:cut], read_ahead=False)
    with pytest.raises(InvalidArgumentError) as ahead:
        _convert(_TAR[:cut], read_ahead=True)

    assert str(ahead.value) == str(inline.value)
    assert "test layer" in str(ahead.value)
    assert _read_ahead_threads() == 0


def test_read_ahead_closes_stream() -> None:
    stream = _ClosingStream(_TAR)

    convert_layer(stream, MemoryStore().put, source="test layer", read_ahead=True)

    assert stream.was_closed


def test_read_ahead_decompression_error_raised() -> None:
    blob = io.BytesIO(gzip.compress(_TAR)[:-5])

    with pytest.raises(InvalidArgumentError) as caught:
        convert_layer(
            open_uncompressed(blob), MemoryStore().put, source="x", read_ahead=True
        )

    assert str(caught.value) == (
        "failed to decompress gzip layer at member 1:"
        " truncated: the stream ends inside a member"
    )
