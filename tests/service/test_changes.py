"""Changes between two trees, by the double walk and from an overlay upper."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipcs_fs.service.changes import (
    ROOT_PATH,
    ChangeKind,
    OverlayMetadataError,
    overlay_upper_changes,
    walk_changes,
)

T_NS = 1_600_000_000_000_000_000


def _tree(
    root: Path,
    files: dict[str, bytes],
    *,
    dirs: tuple[str, ...] = (),
    mtime_ns: int = T_NS,
) -> None:
    root.mkdir()
    for name in dirs:
        (root / name).mkdir(parents=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    os.utime(root, ns=(mtime_ns, mtime_ns))


def _listed(lower: Path, upper: Path) -> list[tuple[str, bytes]]:
    return [
        (change.kind.value, change.path)
        for change in walk_changes(bytes(lower), bytes(upper))
    ]


def test_walk_reports_add_modify_delete(tmp_path: Path) -> None:
    files = {"a/same": b"same", "a/changed": b"old!", "a/gone": b"x", "b/gone/f": b"y"}
    _tree(tmp_path / "lower", files)
    upper_files = {**files, "a/changed": b"new!", "a/added": b"+"}
    del upper_files["a/gone"], upper_files["b/gone/f"]
    _tree(tmp_path / "upper", upper_files, dirs=("b",))

    changes = _listed(tmp_path / "lower", tmp_path / "upper")

    assert changes == [
        ("entry", b"a/added"),
        ("entry", b"a/changed"),
        ("delete", b"a/gone"),
        ("delete", b"b/gone"),
    ]


def test_walk_compares_content_of_whole_second_times(tmp_path: Path) -> None:
    _tree(tmp_path / "lower", {"f": b"abcd"})
    _tree(tmp_path / "upper", {"f": b"abce"})

    assert _listed(tmp_path / "lower", tmp_path / "upper") == [("entry", b"f")]


def test_walk_trusts_nanosecond_times(tmp_path: Path) -> None:
    _tree(tmp_path / "lower", {"f": b"abcd"}, mtime_ns=T_NS + 7)
    _tree(tmp_path / "upper", {"f": b"abce"}, mtime_ns=T_NS + 7)

    assert _listed(tmp_path / "lower", tmp_path / "upper") == []


def test_walk_reports_root_and_dir_metadata(tmp_path: Path) -> None:
    _tree(tmp_path / "lower", {"d/f": b"x"})
    _tree(tmp_path / "upper", {"d/f": b"x"})
    os.chmod(tmp_path / "upper/d", 0o700)
    os.utime(tmp_path / "upper", ns=(T_NS + 1, T_NS + 1))

    assert _listed(tmp_path / "lower", tmp_path / "upper") == [
        ("entry", ROOT_PATH),
        ("entry", b"d"),
    ]


def test_walk_type_change_adds_subtree(tmp_path: Path) -> None:
    _tree(tmp_path / "lower", {"x": b"file"})
    _tree(tmp_path / "upper", {"x/inner": b"now a directory"})

    assert _listed(tmp_path / "lower", tmp_path / "upper") == [
        ("entry", b"x"),
        ("entry", b"x/inner"),
    ]


root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="mknod and trusted.* need root"
)


@root_only
def test_overlay_upper_whiteouts_and_opaque(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/new").write_bytes(b"n")
    os.mknod(upper / "etc/gone", 0o600 | 0o020000, os.makedev(0, 0))
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque/only").write_bytes(b"o")
    os.setxattr(upper / "etc", "trusted.overlay.origin", b"\x00")

    changes = [(c.kind, c.path) for c in overlay_upper_changes(bytes(upper))]

    assert changes == [
        (ChangeKind.ENTRY, ROOT_PATH),
        (ChangeKind.ENTRY, b"etc"),
        (ChangeKind.DELETE, b"etc/gone"),
        (ChangeKind.ENTRY, b"etc/new"),
        (ChangeKind.ENTRY, b"opaque"),
        (ChangeKind.OPAQUE, b"opaque"),
        (ChangeKind.ENTRY, b"opaque/only"),
    ]


@root_only
@pytest.mark.parametrize(
    "name", ["trusted.overlay.redirect", "trusted.overlay.metacopy"]
)
def test_overlay_upper_lower_dependent_xattr(tmp_path: Path, name: str) -> None:
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", name, b"/elsewhere")

    with pytest.raises(OverlayMetadataError) as caught:
        list(overlay_upper_changes(bytes(upper)))

    assert f"it carries {name}, which needs the lower layers" in str(caught.value)
