"""rm and gc on an embedded store holding two images that share a layer."""

from __future__ import annotations

import json

import pytest

from ipcs_fs.cli import main
from ipcs_fs.errors import FailedPreconditionError
from ipcs_fs.ids import DAG_PB, Cid
from ipcs_fs.operations.gc import collect_garbage, remove_layers
from ipcs_fs.store import EmbeddedStore
from ipcs_fs.store.walk import iter_dag_cids

from .conftest import Images


def reachable(store: EmbeddedStore, roots: list[Cid]) -> set[Cid]:
    return set(iter_dag_cids(store.get, roots))


def test_gc_keeps_everything_pinned(images: Images) -> None:
    with EmbeddedStore(images.store) as store:
        before = store.stat()
        summary = collect_garbage(store)

        assert summary.deleted == 0
        assert summary.pins == 3
        assert store.stat() == before


def test_rm_then_gc_drops_only_unshared_blocks(images: Images) -> None:
    with EmbeddedStore(images.store) as store:
        kept = reachable(store, images.roots_two)
        dropped = reachable(store, [images.roots_one[1]]) - kept
        removed = remove_layers([str(images.roots_one[1])], store)
        summary = collect_garbage(store)

        assert removed.unpinned == [images.roots_one[1]]
        assert summary.deleted == len(dropped)
        assert set(store.cids()) == kept
        assert summary.kubo_blocks is None
    assert main(["--store", str(images.store), "ls", images.two]) == 0


def test_rm_of_an_image_unpins_its_shared_layer(images: Images) -> None:
    with EmbeddedStore(images.store) as store:
        summary = remove_layers([images.one], store)

        assert summary.unpinned == images.roots_one
        assert list(store.pins()) == [images.roots_two[1]]


def test_rm_reports_roots_that_were_not_pinned(images: Images) -> None:
    with EmbeddedStore(images.store) as store:
        remove_layers([images.one], store)
        summary = remove_layers([images.one], store)

    assert summary.unpinned == []
    assert summary.not_pinned == images.roots_one
    assert summary.to_text().splitlines()[0] == f"not pinned {images.roots_one[0]}"


def test_gc_without_pins_empties_the_store(images: Images) -> None:
    with EmbeddedStore(images.store) as store:
        remove_layers([images.one, images.two], store)
        summary = collect_garbage(store)

        assert store.stat().blocks == 0
        assert summary.deleted > 0
        assert summary.bytes_freed > 600_000


def test_gc_of_incomplete_pinned_dag_deletes_nothing(images: Images) -> None:
    root = images.roots_two[1]
    with EmbeddedStore(images.store) as store:
        nodes = [cid for cid in iter_dag_cids(store.get, [root]) if cid.codec == DAG_PB]
        node = nodes[1]
        store.unpin(root)
        store.delete([node])
        store.pin(root)
        remove_layers([images.one], store)
        before = store.stat()

        with pytest.raises(FailedPreconditionError) as caught:
            collect_garbage(store)

        assert store.stat() == before
    assert str(caught.value).startswith(
        f"failed to collect garbage: the DAG of pin {root} is incomplete"
    )
    assert str(node) in str(caught.value)


def test_cli_rm_and_gc(images: Images, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["--store", str(images.store)]
    assert main([*store, "rm", images.one, str(images.roots_two[1])]) == 0
    capsys.readouterr()

    assert main([*store, "gc", "--json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["pins"] == 0
    assert summary["kept"] == 0
    assert summary["deleted"] > 0
    assert summary["kubo_blocks_deleted"] is None
