"""car export and car import on small converted images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ipcs_fs.car import CarReader, CarWriter
from ipcs_fs.cli import main
from ipcs_fs.errors import DataLossError, InvalidArgumentError, NotFoundError
from ipcs_fs.ids import RAW, Cid
from ipcs_fs.operations.car import export_car, import_car
from ipcs_fs.store import EmbeddedStore
from ipcs_fs.store.walk import iter_dag_blocks

from .conftest import Images


def read_car(path: Path) -> tuple[tuple[Cid, ...], list[tuple[Cid, bytes]]]:
    with open(path, "rb") as file:
        reader = CarReader(file, source=str(path))
        return reader.roots, list(reader)


def test_export_layer_by_cid(images: Images, tmp_path: Path) -> None:
    root = images.roots_one[0]
    path = tmp_path / "layer.car"

    with EmbeddedStore(images.store) as store:
        summary = export_car(str(root), path, store)
        expected = list(iter_dag_blocks(store.get, [root]))

    roots, blocks = read_car(path)
    assert roots == (root,)
    assert blocks == expected
    assert len({cid for cid, _ in blocks}) == len(blocks)
    assert summary.blocks == len(blocks)
    assert summary.file_bytes == path.stat().st_size


def test_export_image_has_a_root_per_layer(images: Images, tmp_path: Path) -> None:
    path = tmp_path / "image.car"

    with EmbeddedStore(images.store) as store:
        export_car(images.one, path, store)
        expected = list(iter_dag_blocks(store.get, images.roots_one))

    roots, blocks = read_car(path)
    assert list(roots) == images.roots_one
    assert blocks == expected


def test_import_stores_blocks_and_pins_roots(images: Images, tmp_path: Path) -> None:
    path = tmp_path / "image.car"
    with EmbeddedStore(images.store) as store:
        export_car(images.two, path, store)
    _, blocks = read_car(path)

    with EmbeddedStore(tmp_path / "fresh") as fresh:
        summary = import_car(path, fresh)
        again = import_car(path, fresh)

        assert sorted(fresh.pins()) == sorted(images.roots_two)
        assert sorted(fresh.cids()) == sorted(cid for cid, _ in blocks)
        assert fresh.stat().blocks == len(blocks)
    assert summary.blocks == again.blocks == len(blocks)
    assert summary.roots == images.roots_two


def test_imported_image_unpacks(images: Images, tmp_path: Path) -> None:
    car = tmp_path / "image.car"
    assert (
        main(["--store", str(images.store), "car", "export", images.two, str(car)]) == 0
    )
    fresh = tmp_path / "fresh"

    assert main(["--store", str(fresh), "car", "import", str(car)]) == 0
    status = main(["--store", str(fresh), "ls", images.two])

    assert status == 0


def test_export_standard_image_fails(images: Images, tmp_path: Path) -> None:
    with (
        EmbeddedStore(images.store) as store,
        pytest.raises(InvalidArgumentError) as caught,
    ):
        export_car(f"{images.original}:one", tmp_path / "x.car", store)

    assert "is a standard layer" in str(caught.value)
    assert "convert the image with `ipcs-fs convert --file-granular` first" in str(
        caught.value
    )


def test_failed_export_leaves_no_file(images: Images, tmp_path: Path) -> None:
    path = tmp_path / "layer.car"
    root = images.roots_one[0]
    with EmbeddedStore(images.store) as store:
        victim = [cid for cid, _ in iter_dag_blocks(store.get, [root])][-1]
        store.unpin(root)
        store.delete([victim])

        with pytest.raises(NotFoundError) as caught:
            export_car(str(root), path, store)

    assert str(victim) in str(caught.value)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        "converted",
        "original",
        "store",
    ]


def test_root_block_comes_from_the_image(images: Images, tmp_path: Path) -> None:
    root = images.roots_two[1]
    with EmbeddedStore(images.store) as store:
        store.unpin(root)
        store.delete([root])
        export_car(images.two, tmp_path / "image.car", store)

    roots, blocks = read_car(tmp_path / "image.car")

    assert roots[1] == root
    assert root in [cid for cid, _ in blocks]


def test_import_of_incomplete_dag_pins_nothing(images: Images, tmp_path: Path) -> None:
    root = images.roots_one[1]
    with EmbeddedStore(images.store) as store:
        blocks = list(iter_dag_blocks(store.get, [root]))
    kept, dropped = blocks[:-1], blocks[-1][0]
    stream = io.BytesIO()
    writer = CarWriter(stream, [root])
    for cid, block in kept:
        writer.write(cid, block)
    path = tmp_path / "partial.car"
    path.write_bytes(stream.getvalue())

    with EmbeddedStore(tmp_path / "fresh") as fresh:
        with pytest.raises(NotFoundError) as caught:
            import_car(path, fresh)
        assert list(fresh.pins()) == []

    assert str(caught.value).startswith(
        f"failed to pin root {root} of CAR {path}: its DAG is incomplete"
    )
    assert str(dropped) in str(caught.value)


def test_import_of_corrupt_block_fails_in_one_line(
    images: Images, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = Cid.for_block(RAW, b"original")
    stream = io.BytesIO()
    CarWriter(stream, [cid]).write(cid, b"tampered")
    path = tmp_path / "corrupt.car"
    path.write_bytes(stream.getvalue())

    status = main(["--store", str(tmp_path / "fresh"), "car", "import", str(path)])

    error = capsys.readouterr().err
    assert status == 1
    assert error.count("\n") == 1
    assert error.startswith(f"ipcs-fs: failed to read block {cid} from CAR {path}")
    with EmbeddedStore(tmp_path / "fresh") as fresh:
        assert not fresh.has(cid)


def test_import_api_raises_data_loss(tmp_path: Path) -> None:
    cid = Cid.for_block(RAW, b"original")
    stream = io.BytesIO()
    CarWriter(stream, [cid]).write(cid, b"tampered")
    path = tmp_path / "corrupt.car"
    path.write_bytes(stream.getvalue())

    with EmbeddedStore(tmp_path / "fresh") as fresh, pytest.raises(DataLossError):
        import_car(path, fresh)
