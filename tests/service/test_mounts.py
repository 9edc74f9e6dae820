"""Recognising containerd's mounts, and temporary mounts that never leak."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ipcs_fs.errors import FailedPreconditionError, InvalidArgumentError
from ipcs_fs.service.mounts import (
    Mount,
    bind_source,
    clean_mount_dir,
    overlay_layout,
    temporary_mount,
)

OVERLAY = Mount(
    "overlay",
    "overlay",
    ("index=off", "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs"),
)


def test_overlay_layout_reads_upper_and_lowers() -> None:
    layout = overlay_layout([OVERLAY])

    assert layout is not None
    assert layout.upper == Path("/s/3/fs")
    assert layout.lowers == (Path("/s/2/fs"), Path("/s/1/fs"))


@pytest.mark.parametrize(
    "mounts",
    [
        [Mount("overlay", "overlay", ("lowerdir=/a:/b",))],
        [Mount("overlay", "overlay", ("userxattr", "upperdir=/u", "lowerdir=/l"))],
        [OVERLAY, OVERLAY],
        [Mount("bind", "/x", ("rbind",))],
        [],
    ],
)
def test_overlay_layout_rejects_other_shapes(mounts: list[Mount]) -> None:
    assert overlay_layout(mounts) is None


def test_bind_source_read_write_only() -> None:
    writable = [Mount("bind", "/s/1/fs", ("rbind", "rw"))]
    read_only = [Mount("bind", "/s/1/fs", ("rbind", "ro"))]

    assert bind_source(writable) == Path("/s/1/fs")
    assert bind_source(read_only) is None
    assert bind_source(read_only, read_only=True) == Path("/s/1/fs")
    assert bind_source([OVERLAY]) is None


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def _mounted_below(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo") as info:
        return [
            line.split()[4]
            for line in info
            if line.split()[4].startswith(f"{directory}/")
        ]


@root_only
def test_temporary_mount_read_only_bind(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(b"content")
    mount_dir = tmp_path / "mounts"

    with temporary_mount(
        [Mount("bind", str(source), ("rbind",))], mount_dir, read_only=True
    ) as root:
        assert (root / "file").read_bytes() == b"content"
        with pytest.raises(OSError):
            (root / "new").write_bytes(b"x")
        assert len(_mounted_below(mount_dir)) == 1

    assert _mounted_below(mount_dir) == []
    assert list(mount_dir.iterdir()) == []


@root_only
def test_temporary_mount_failure_leaves_nothing(tmp_path: Path) -> None:
    mount_dir = tmp_path / "mounts"

    with (
        pytest.raises(FailedPreconditionError) as caught,
        temporary_mount(
            [Mount("bind", str(tmp_path / "absent"), ("rbind",))], mount_dir
        ),
    ):
        pass

    assert "failed to mount bind" in str(caught.value)
    assert list(mount_dir.iterdir()) == []


def test_temporary_mount_rejects_empty_list(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError), temporary_mount([], tmp_path):
        pass


@root_only
def test_clean_mount_dir_removes_leftovers(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    mount_dir = tmp_path / "mounts"
    left = mount_dir / "m-left"
    left.mkdir(parents=True)
    (mount_dir / "m-empty").mkdir()
    subprocess.run(["mount", "--bind", str(source), str(left)], check=True)

    removed = clean_mount_dir(mount_dir)

    assert removed == 2
    assert _mounted_below(mount_dir) == []
    assert list(mount_dir.iterdir()) == []
