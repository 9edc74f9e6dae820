import gzip
import hashlib
import io
import tarfile

import pytest

from ipcs_fs.errors import InvalidArgumentError, NotFoundError
from ipcs_fs.ids import Digest
from ipcs_fs.oci import open_sink, open_source
from ipcs_fs.oci.archive import write_layout_tar

from .builders import multi_platform_layout


def _archive_of(directory, path):
    with tarfile.open(path, "w") as tar:
        tar.add(directory, arcname=".")


def _tar_with(path, members):
    """Write a tar of (TarInfo, data) pairs."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)


def _copy_image(source_ref, sink_ref):
    with open_source(source_ref) as source, open_sink(sink_ref) as sink:
        return sink.write_image(source.image(), source)


def test_read_archive_in_place(tmp_path):
    built = multi_platform_layout(tmp_path / "layout")
    _archive_of(tmp_path / "layout", tmp_path / "image.tar")

    with open_source(f"oci-archive:{tmp_path / 'image.tar'}:multi") as source:
        refs = source.manifests()
        layer = refs[0].manifest.layers[0]
        data = source.read_blob(layer)

    assert [str(ref.descriptor.digest) for ref in refs] == [
        built["amd64"]["digest"],
        built["arm64"]["digest"],
        built["riscv"]["digest"],
    ]
    assert Digest.of(data) == layer.digest


def test_archive_round_trip(tmp_path):
    built = multi_platform_layout(tmp_path / "layout")
    archive = tmp_path / "out.tar"

    root = _copy_image(f"oci:{tmp_path / 'layout'}:multi", f"oci-archive:{archive}:v1")
    again = _copy_image(f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'back'}:multi")

    assert str(root.digest) == built["top"]["digest"]
    assert again.digest == root.digest
    with open_source(f"oci:{tmp_path / 'back'}:multi") as source:
        assert len(source.manifests()) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_archive_written_deterministically(tmp_path):
    multi_platform_layout(tmp_path / "layout")

    _copy_image(f"oci:{tmp_path / 'layout'}:multi", f"oci-archive:{tmp_path / 'a.tar'}")
    _copy_image(f"oci:{tmp_path / 'layout'}:multi", f"oci-archive:{tmp_path / 'b.tar'}")

    first = (tmp_path / "a.tar").read_bytes()
    assert (
        hashlib.sha256(first).digest()
        == hashlib.sha256((tmp_path / "b.tar").read_bytes()).digest()
    )
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert names[-2:] == ["index.json", "oci-layout"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", 0)
    }
    assert {m.mode for m in members if m.isdir()} == {0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}


def test_archive_replaced_atomically(tmp_path):
    multi_platform_layout(tmp_path / "layout")
    archive = tmp_path / "out.tar"
    archive.write_bytes(b"old content")

    _copy_image(f"oci:{tmp_path / 'layout'}:single", f"oci-archive:{archive}:s")

    with open_source(f"oci-archive:{archive}:s") as source:
        assert len(source.manifests()) == 1


def test_archive_not_written_on_failure(tmp_path):
    multi_platform_layout(tmp_path / "layout")
    archive = tmp_path / "out.tar"

    with (
        pytest.raises(RuntimeError),
        open_source(f"oci:{tmp_path / 'layout'}:single") as source,
        open_sink(f"oci-archive:{archive}") as sink,
    ):
        sink.write_image(source.image(), source)
        raise RuntimeError("conversion failed")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]


@pytest.mark.parametrize(
    "name", ["../evil", "blobs/../../evil", "/etc/evil", "./blobs/../../x"]
)
def test_member_escaping_root_rejected(tmp_path, name):
    multi_platform_layout(tmp_path / "layout")
    archive = tmp_path / "hostile.tar"
    _archive_of(tmp_path / "layout", archive)
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))

    with pytest.raises(InvalidArgumentError) as caught:
        open_source(f"oci-archive:{archive}:multi")

    assert str(caught.value) == (
        f"failed to read oci-archive {archive}: member {name!r} escapes the archive root"
    )
    assert not (tmp_path / "evil").exists()


def test_hardlink_escaping_root_rejected(tmp_path):
    archive = tmp_path / "hostile.tar"
    link = tarfile.TarInfo("oci-layout")
    link.type = tarfile.LNKTYPE
    link.linkname = "../../etc/passwd"
    _tar_with(archive, [(link, b"")])

    with pytest.raises(InvalidArgumentError, match="'../../etc/passwd' escapes"):
        open_source(f"oci-archive:{archive}")


def test_symlink_member_rejected(tmp_path):
    archive = tmp_path / "hostile.tar"
    link = tarfile.TarInfo("index.json")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    _tar_with(archive, [(link, b"")])

    with pytest.raises(InvalidArgumentError) as caught:
        open_source(f"oci-archive:{archive}")

    assert str(caught.value) == (
        f"failed to read oci-archive {archive}: member 'index.json' is not a regular"
        " file, directory or hard link"
    )


def test_hardlink_inside_archive_followed(tmp_path):
    multi_platform_layout(tmp_path / "layout")
    archive = tmp_path / "linked.tar"
    _archive_of(tmp_path / "layout", archive)
    with tarfile.open(archive) as tar:
        index_json = tar.extractfile("./index.json").read()
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo("copy-of-index.json")
        info.size = len(index_json)
        tar.addfile(info, io.BytesIO(index_json))
        link = tarfile.TarInfo("index.json")
        link.type = tarfile.LNKTYPE
        link.linkname = "copy-of-index.json"
        tar.addfile(link)

    with open_source(f"oci-archive:{archive}:single") as source:
        assert len(source.manifests()) == 1


def test_compressed_archive_rejected(tmp_path):
    multi_platform_layout(tmp_path / "layout")
    _archive_of(tmp_path / "layout", tmp_path / "image.tar")
    compressed = tmp_path / "image.tar.gz"
    compressed.write_bytes(gzip.compress((tmp_path / "image.tar").read_bytes()))

    with pytest.raises(InvalidArgumentError) as caught:
        open_source(f"oci-archive:{compressed}")

    assert str(caught.value) == (
        f"failed to read oci-archive {compressed}: the tar is compressed;"
        " decompress it first"
    )


def test_missing_archive_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        open_source(f"oci-archive:{tmp_path / 'none.tar'}")


def test_garbage_archive_invalid(tmp_path):
    archive = tmp_path / "garbage.tar"
    archive.write_bytes(b"not a tar at all" * 100)

    with pytest.raises(InvalidArgumentError, match="failed to read oci-archive"):
        open_source(f"oci-archive:{archive}")


def test_write_layout_tar_skips_temporary_files(tmp_path):
    layout = tmp_path / "layout"
    multi_platform_layout(layout)
    (layout / ".ipcs-fs-tmp-leftover").write_bytes(b"x")

    write_layout_tar(layout, tmp_path / "out.tar")

    with tarfile.open(tmp_path / "out.tar") as tar:
        assert ".ipcs-fs-tmp-leftover" not in tar.getnames()
