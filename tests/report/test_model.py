"""The figures of a level and the top lists, from hand-written holdings."""

from __future__ import annotations

import pytest

from ipcs_fs.ids import RAW, Cid
from ipcs_fs.report.model import (
    MAX_PATHS_PER_IMAGE,
    Amount,
    Bucket,
    FileHolding,
    compute_level,
    top_files,
)


def _cid(text: str) -> Cid:
    return Cid.for_block(RAW, text.encode())


def test_level_figures_of_three_images():
    holdings = [
        {"x": 100, "y": 10, "a": 1},
        {"x": 100, "y": 10, "b": 2000},
        {"x": 100, "c": 30000},
    ]

    figures = compute_level("file", holdings)

    assert figures.level == "file"
    assert [amount.held for amount in figures.per_image] == [
        Amount(111, 3),
        Amount(2110, 3),
        Amount(30100, 2),
    ]
    assert [amount.unique for amount in figures.per_image] == [
        Amount(1, 1),
        Amount(2000, 1),
        Amount(30000, 1),
    ]
    assert [amount.shared for amount in figures.per_image] == [
        Amount(110, 2),
        Amount(110, 2),
        Amount(100, 1),
    ]
    assert figures.union == Amount(32111, 5)
    assert figures.shared_by_all == Amount(100, 1)
    assert figures.total == Amount(32321, 8)
    assert figures.saving == 210
    assert figures.saving_fraction == pytest.approx(210 / 32321)
    assert figures.buckets == (
        Bucket((0,), Amount(1, 1)),
        Bucket((1,), Amount(2000, 1)),
        Bucket((2,), Amount(30000, 1)),
        Bucket((0, 1), Amount(10, 1)),
        Bucket((0, 1, 2), Amount(100, 1)),
    )


def test_level_buckets_add_up_to_union():
    holdings = [
        {key: key * 7 for key in range(start, 40, step)}
        for start, step in ((0, 1), (1, 2), (0, 3), (5, 5))
    ]

    figures = compute_level("block", holdings)

    assert sum(bucket.amount.size for bucket in figures.buckets) == figures.union.size
    for index, amount in enumerate(figures.per_image):
        held = sum(b.amount.size for b in figures.buckets if index in b.images)
        assert amount.held.size == held
        assert amount.held.size == sum(holdings[index].values())


def test_level_of_disjoint_images_saves_nothing():
    figures = compute_level("layer", [{"l1": 5}, {"l2": 7}])

    assert figures.shared_by_all == Amount(0, 0)
    assert figures.saving == 0
    assert figures.saving_fraction == 0.0
    assert figures.union == figures.total


def test_level_of_empty_holdings():
    figures = compute_level("layer", [{}, {}])

    assert figures.union == Amount(0, 0)
    assert figures.buckets == ()
    assert figures.saving_fraction == 0.0


def test_level_keeps_zero_size_items():
    figures = compute_level("file", [{"empty": 0}, {"empty": 0}])

    assert figures.union == Amount(0, 1)
    assert figures.buckets == (Bucket((0, 1), Amount(0, 1)),)


def test_top_files_order_and_limit():
    big, mid, small, tie_1, tie_2 = (_cid(name) for name in "bmstu")
    holdings = [
        {
            big: FileHolding(900, (b"usr/big",)),
            mid: FileHolding(500, (b"opt/z", b"opt/m")),
            tie_1: FileHolding(50, (b"t1",)),
            tie_2: FileHolding(50, (b"t2",)),
        },
        {big: FileHolding(900, (b"lib/big",)), small: FileHolding(10, (b"s",))},
    ]

    shared, unique = top_files(holdings, 2)

    assert [file.cid for file in shared] == [big]
    assert shared[0].images == (0, 1)
    assert shared[0].paths == ((b"usr/big",), (b"lib/big",))
    assert shared[0].path_counts == (1, 1)
    assert [file.cid for file in unique] == [mid, min(tie_1, tie_2, key=str)]
    assert unique[0].paths == ((b"opt/m", b"opt/z"),)
    assert unique[0].size == 500


def test_top_files_bound_paths():
    cid = _cid("many")
    paths = tuple(f"copy/{index:02}".encode() for index in range(12))
    shared, unique = top_files([{cid: FileHolding(1, paths)}], 5)

    assert shared == ()
    assert unique[0].paths == (paths[:MAX_PATHS_PER_IMAGE],)
    assert unique[0].path_counts == (12,)


def test_top_files_limit_zero():
    cid = _cid("one")
    shared, unique = top_files([{cid: FileHolding(1, (b"f",))}], 0)

    assert shared == ()
    assert unique == ()
