"""The lexical path rules: cleaning, link names, symlink targets, whiteouts."""

from __future__ import annotations

import pytest

from ipcs_fs.apply.paths import (
    WhiteoutKind,
    classify_whiteout,
    clean_link_name,
    clean_name,
    display,
    resolve_symlink,
)


@pytest.mark.parametrize(
    ("name", "components"),
    [
        (b"a/b", (b"a", b"b")),
        (b"./a//b/", (b"a", b"b")),
        (b"/a/./b", (b"a", b"b")),
        (b"../../a", (b"a",)),
        (b"a/../../b", (b"b",)),
        (b".", ()),
        (b"./", ()),
        (b"/", ()),
        (b"..", ()),
        (b"", ()),
    ],
)
def test_clean_name(name: bytes, components: tuple[bytes, ...]) -> None:
    assert clean_name(name) == components


@pytest.mark.parametrize(
    ("name", "components"),
    [
        (b"/a", (b"a",)),
        (b"//a", (b"a",)),
        (b"./a", (b"a",)),
        (b"x/../a", (b"a",)),
        (b"..", None),
        (b"../../../etc/passwd", None),
        (b"a/../../b", None),
    ],
)
def test_clean_link_name(name: bytes, components: tuple[bytes, ...] | None) -> None:
    assert clean_link_name(name) == components


@pytest.mark.parametrize(
    ("directory", "target", "components"),
    [
        ((b"var",), b"/run", (b"run",)),
        ((b"var",), b"../run", (b"run",)),
        ((b"var",), b"../../../../run", (b"run",)),
        ((b"usr", b"lib"), b"x86/y", (b"usr", b"lib", b"x86", b"y")),
        ((), b"..", ()),
    ],
)
def test_resolve_symlink(
    directory: tuple[bytes, ...], target: bytes, components: tuple[bytes, ...]
) -> None:
    assert resolve_symlink(directory, target) == components


@pytest.mark.parametrize(
    ("base", "kind"),
    [
        (b"file", WhiteoutKind.NONE),
        (b".wh.file", WhiteoutKind.WHITEOUT),
        (b".wh..wh..opq", WhiteoutKind.OPAQUE),
        (b".wh..wh.plnk", WhiteoutKind.IGNORED),
        (b".wh.", WhiteoutKind.INVALID),
        (b".wh..", WhiteoutKind.INVALID),
        (b".wh...", WhiteoutKind.INVALID),
        (b"x.wh.y", WhiteoutKind.NONE),
    ],
)
def test_classify_whiteout(base: bytes, kind: WhiteoutKind) -> None:
    assert classify_whiteout(base) is kind


def test_display_escapes_bytes() -> None:
    assert display((b"a", b"\xff")) == "a/\\xff"
    assert display(()) == "/"
