"""Hostile layers: nothing outside the root may change.

Every test works in a sandbox directory: the roots being written lie inside
it, next to decoy files a careless applier would overwrite. The sandbox's
parent is snapshotted before and after, and must be identical apart from the
roots; the host's own ``/etc/passwd`` must not change either.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixtures.tree import NodeType, diff, snapshot
from ipcs_fs.errors import InvalidArgumentError
from tests.apply.layers import (
    apply,
    directory,
    file,
    hardlink,
    symlink,
)
from tests.apply.stacks import overlay_mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

_HOST_FILES = (Path("/etc/passwd"), Path("/etc/shadow"))


def _host_state() -> list[tuple[str, int, int]]:
    state = []
    for path in _HOST_FILES:
        if path.exists():
            st = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state.append((digest, st.st_mtime_ns, st.st_nlink))
    return state


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    """Yield a sandbox with decoys; check afterwards that only roots changed."""
    box = tmp_path / "sandbox"
    (box / "outside").mkdir(parents=True)
    (box / "outside" / "secret").write_bytes(b"secret\n")
    (box / "etc").mkdir()
    (box / "etc" / "passwd").write_bytes(b"decoy\n")
    for index in range(3):
        (box / f"root{index}").mkdir()
    before = snapshot(tmp_path)
    host_before = _host_state()

    yield box

    roots = [f"sandbox/root{index}".encode() for index in range(3)]
    assert diff(before, snapshot(tmp_path), ignore_paths=roots) == []
    assert _host_state() == host_before
    assert not Path("/pwned").exists()


def _rejects(action: Callable[[], object]) -> str:
    with pytest.raises(InvalidArgumentError) as error:
        action()
    return str(error.value)


def test_symlink_then_write_one_layer(sandbox: Path) -> None:
    root = sandbox / "root0"
    apply(
        root,
        symlink("evil", "../../.."),
        file("evil/pwned", b"x"),
        symlink("abs", "/"),
        file("abs/etc/passwd", b"x"),
        symlink("up", "../outside"),
        file("up/secret", b"overwritten"),
    )

    tree = snapshot(root)
    assert tree[b"pwned"].type is NodeType.FILE
    assert tree[b"etc/passwd"].size == 1
    assert tree[b"outside/secret"].size == len(b"overwritten")


def test_symlink_then_write_two_layers(sandbox: Path) -> None:
    root = sandbox / "root0"
    apply(root, symlink("evil", str(sandbox / "outside")), symlink("rel", "../.."))
    apply(root, file("evil/secret", b"x"), file("rel/outside/secret", b"y"))

    inside = root / (sandbox / "outside" / "secret").relative_to("/")
    assert inside.read_bytes() == b"x"
    assert (root / "outside" / "secret").read_bytes() == b"y"


def test_dot_dot_and_absolute_names(sandbox: Path) -> None:
    root = sandbox / "root0"
    apply(root, file("../outside/secret", b"a"), file("/../../etc/passwd", b"b"))

    assert (root / "outside" / "secret").read_bytes() == b"a"
    assert (root / "etc" / "passwd").read_bytes() == b"b"


def test_hardlink_out_of_root_rejected(sandbox: Path) -> None:
    message = _rejects(
        lambda: apply(sandbox / "root0", hardlink("h", "../outside/secret"))
    )

    assert message == (
        "failed to apply hardlink h of test-layer: hard link target"
        " ../outside/secret is outside the root"
    )


def test_hardlink_through_symlink_stays_inside(sandbox: Path) -> None:
    message = _rejects(
        lambda: apply(
            sandbox / "root0",
            symlink("up", "../outside"),
            hardlink("h", "up/secret"),
        )
    )

    assert message == (
        "failed to apply hardlink h of test-layer: hard link target up/secret not found"
    )


def test_symlink_named_dot_rejected(sandbox: Path) -> None:
    first = _rejects(lambda: apply(sandbox / "root0", symlink(".", "/")))
    second = _rejects(lambda: apply(sandbox / "root1", symlink("a/..", "..")))

    assert first == (
        "failed to apply symlink . of test-layer: a symlink entry cannot replace"
        " the root"
    )
    assert second == (
        "failed to apply symlink a/.. of test-layer: a symlink entry cannot"
        " replace the root"
    )


def test_whiteouts_through_symlinks(sandbox: Path) -> None:
    root = sandbox / "root0"
    apply(root, symlink("up", "../outside"), symlink("abs", str(sandbox)))
    apply(
        root,
        file("up/.wh.secret"),
        file("abs/etc/.wh.passwd"),
        file("abs/.wh..wh..opq"),
        file(".wh.up"),
    )

    # Whiteouts imply their parents, here at the clamped targets of the links.
    tree = snapshot(root)
    top = os.fsencode(sandbox.parts[1])
    assert sorted(p for p in tree if b"/" not in p) == sorted(
        [b".", b"abs", b"outside", top]
    )
    assert tree[b"abs"].type is NodeType.SYMLINK
    assert [p for p in tree if p.startswith(b"outside/")] == []


def test_replaced_symlink_not_written_through(sandbox: Path) -> None:
    root = sandbox / "root0"
    apply(
        root,
        symlink("s", "../outside/secret"),
        symlink("t", str(sandbox / "etc")),
        symlink("m", str(sandbox / "outside" / "secret"), uid=77, mtime_ns=5),
    )
    apply(root, file("s", b"data", uid=5), directory("t/", mode=0o700))

    tree = snapshot(root)
    assert tree[b"s"].type is NodeType.FILE
    assert tree[b"t"].type is NodeType.DIR
    assert (tree[b"m"].uid, tree[b"m"].mtime_ns) == (77, 5)


def test_layer_trusted_xattrs_not_written(sandbox: Path) -> None:
    lower = sandbox / "root0"
    upper = sandbox / "root1"
    forged = {b"trusted.overlay.opaque": b"y", b"trusted.overlay.redirect": b"/"}
    apply(lower, directory("d/"), file("d/x", b"x"), overlay_upper=True)
    apply(
        upper,
        directory("d/", xattrs=forged),
        file("d/y", b"y", xattrs=forged),
        overlay_upper=True,
        lowers=[lower],
    )

    assert os.listxattr(upper / "d") == []
    assert os.listxattr(upper / "d" / "y") == []
    with overlay_mount([lower, upper], sandbox / "root2") as merged:
        assert sorted(os.listdir(merged / "d")) == ["x", "y"]


@pytest.mark.parametrize("overlay_upper", [False, True])
def test_var_run_symlink_still_works(sandbox: Path, overlay_upper: bool) -> None:
    lower = sandbox / "root0"
    upper = sandbox / "root1" if overlay_upper else lower
    base = (directory("run/"), directory("var/"), symlink("var/run", "/run"))
    apply(lower, *base, overlay_upper=overlay_upper)
    lowers = [lower] if overlay_upper else []
    apply(
        upper,
        file("var/run/x", b"x"),
        overlay_upper=overlay_upper,
        lowers=lowers,
    )

    if overlay_upper:
        with overlay_mount([lower, upper], sandbox / "root2") as merged:
            tree = snapshot(merged)
    else:
        tree = snapshot(lower)
    assert tree[b"var/run"].type is NodeType.SYMLINK
    assert tree[b"var/run"].target == b"/run"
    assert tree[b"run/x"].type is NodeType.FILE


def test_lower_escape_symlink_in_upper(sandbox: Path) -> None:
    lower = sandbox / "root0"
    upper = sandbox / "root1"
    apply(lower, symlink("evil", "../../../../.."), overlay_upper=True)
    apply(
        upper,
        file("evil/pwned", b"x"),
        file("evil/etc/.wh.passwd"),
        overlay_upper=True,
        lowers=[lower],
    )

    assert (upper / "pwned").read_bytes() == b"x"
    assert not (upper / "evil").exists()
