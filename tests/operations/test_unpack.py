"""unpack and the store's record of verified layers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipcs_fs.cli import main
from ipcs_fs.errors import DataLossError
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.oci.transport import open_source
from ipcs_fs.operations.car import import_car
from ipcs_fs.operations.unpack import unpack_image
from ipcs_fs.store import EmbeddedStore
from tests.operations.conftest import Images

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpack needs root")

_OS_RELEASE = Cid.for_block(RAW, b"ID=test\n")


def _diff_ids(reference: str) -> list[str]:
    with open_source(reference) as source:
        (ref,) = source.manifests()
        assert ref.config is not None
        return [str(diff_id) for diff_id in ref.config.diff_ids]


def _tamper_os_release(store: EmbeddedStore) -> None:
    """Change a leaf's bytes in the database, keeping its CID and length."""
    connection = store._connection()
    connection.execute(
        "UPDATE blocks SET data = ? WHERE cid = ?", (b"ID=evil\n", _OS_RELEASE.raw)
    )


def _unpack_once(images: Images, target: Path) -> None:
    """Unpack ``images.one`` with the full check, which records its layers."""
    with EmbeddedStore(images.store) as store:
        unpack_image(images.one, target, store)


def test_convert_records_no_layer(images: Images) -> None:
    # A conversion hashed the original tar, not the tar rebuilt from blocks.
    with EmbeddedStore(images.store) as store:
        recorded = [store.verified_diff_id(root) for root in images.roots_one]

    assert recorded == [None, None]


def test_unpack_records_layers(images: Images, tmp_path: Path) -> None:
    _unpack_once(images, tmp_path / "first")

    with EmbeddedStore(images.store) as store:
        recorded = [str(store.verified_diff_id(root)) for root in images.roots_one]
    assert recorded == _diff_ids(images.one)


def test_first_unpack_hashes_every_layer(images: Images, tmp_path: Path) -> None:
    with EmbeddedStore(images.store) as store:
        _tamper_os_release(store)
        with pytest.raises(DataLossError, match="rebuilds a tar of"):
            unpack_image(images.one, tmp_path / "first", store)


def test_recorded_layer_unpacks_unhashed(images: Images, tmp_path: Path) -> None:
    _unpack_once(images, tmp_path / "first")
    with EmbeddedStore(images.store) as store:
        _tamper_os_release(store)
        unpack_image(images.one, tmp_path / "fast", store)

    # Only a block changed behind the store's back can show that the hash
    # was skipped.
    assert (tmp_path / "fast" / "etc" / "os-release").read_bytes() == b"ID=evil\n"


def test_verify_fails_and_drops_record(images: Images, tmp_path: Path) -> None:
    _unpack_once(images, tmp_path / "first")
    with EmbeddedStore(images.store) as store:
        _tamper_os_release(store)
    arguments = ["--store", str(images.store), "unpack", images.one]

    verified = main([*arguments, "--verify", str(tmp_path / "verified")])
    again = main([*arguments, str(tmp_path / "again")])

    assert verified == 1
    assert again == 1
    with EmbeddedStore(images.store) as store:
        assert store.verified_diff_id(images.roots_one[0]) is None
        assert store.verified_diff_id(images.roots_one[1]) is not None


def test_verify_error_names_layer(images: Images, tmp_path: Path) -> None:
    _unpack_once(images, tmp_path / "first")
    with EmbeddedStore(images.store) as store:
        _tamper_os_release(store)
        with pytest.raises(DataLossError) as error:
            unpack_image(images.one, tmp_path / "r", store, verify=True)

    root = images.roots_one[0]
    assert f"layer {root} rebuilds a tar of" in str(error.value)
    assert "incomplete and should be removed" in str(error.value)


def test_imported_layer_recorded_after_unpack(images: Images, tmp_path: Path) -> None:
    car = tmp_path / "image.car"
    assert (
        main(["--store", str(images.store), "car", "export", images.one, str(car)]) == 0
    )
    with EmbeddedStore(tmp_path / "fresh") as fresh:
        import_car(car, fresh)
        before = [fresh.verified_diff_id(root) for root in images.roots_one]

        unpack_image(images.one, tmp_path / "r", fresh)

        after = [str(fresh.verified_diff_id(root)) for root in images.roots_one]
    assert before == [None, None]
    assert after == _diff_ids(images.one)
    assert (tmp_path / "r" / "etc" / "os-release").read_bytes() == b"ID=test\n"
