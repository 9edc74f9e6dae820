"""OCI archives: a tar of an image layout, ``oci-archive:FILE[:TAG]``.

Reading happens in place: one pass over the tar headers indexes the members,
and each blob is then read straight from its offset in the file. That avoids
copying a multi-gigabyte archive to a temporary directory, and nothing from the
archive is ever written to disk. The archive must be an uncompressed tar, as
skopeo, ``ctr images export`` and ``docker save`` write it.

Rules for members, checked for every member when the archive is opened:

- a name that is absolute or contains a ``..`` component escapes the layout
  and makes the whole archive invalid;
- only regular files, directories and hard links to regular files of the
  archive are accepted; symbolic links, devices and FIFOs are rejected;
- a later member of the same name replaces an earlier one, as when extracting.

Writing builds a layout in a temporary directory beside the destination file.
On commit it becomes a tar in sorted path order, with uid and gid 0, mode 0644
or 0755 and mtime 0 on every member, so the same image gives the same archive
bytes. The archive is renamed into place at the end; an
existing file is replaced, with its other tags, as skopeo does.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import InvalidArgumentError, NotFoundError
from .atomic import TEMP_PREFIX, publish, sync_directory, sync_file, temporary_file
from .blob import READ_SIZE
from .layout import LayoutSink, LayoutSource
from .reference import ArchiveReference

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "ArchiveSink",
    "TarFiles",
    "open_archive_source",
    "write_layout_tar",
]

log = logging.getLogger(__name__)

_MAX_LINK_HOPS = 8
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _member_path(name: str, archive: Path) -> str:
    """Return the layout path of a member name; InvalidArgumentError if it escapes."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise InvalidArgumentError(
            f"failed to read oci-archive {archive}: member {name!r} escapes the"
            " archive root"
        )
    return "/".join(parts)


class TarFiles:
    """The files of a layout inside an uncompressed tar, read in place.

    Implements :class:`~ipcs_fs.oci.layout.LayoutFiles`. Raises
    InvalidArgumentError at construction for a compressed or malformed tar or a
    member that breaks the rules of this module, NotFoundError if the file is
    missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"oci-archive:{path}"
        self._members: dict[str, tarfile.TarInfo] = {}
        self._check_not_compressed()
        self._scan()

    def _check_not_compressed(self) -> None:
        try:
            with open(self.path, "rb") as file:
                magic = file.read(4)
        except FileNotFoundError as error:
            raise NotFoundError(
                f"failed to open oci-archive {self.path}: not found"
            ) from error
        if magic.startswith(_GZIP_MAGIC) or magic == _ZSTD_MAGIC:
            raise InvalidArgumentError(
                f"failed to read oci-archive {self.path}: the tar is compressed;"
                " decompress it first"
            )

    def _scan(self) -> None:
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                for member in tar:
                    self._add(member)
        except tarfile.TarError as error:
            raise InvalidArgumentError(
                f"failed to read oci-archive {self.path}: {error}"
            ) from error

    def _add(self, member: tarfile.TarInfo) -> None:
        path = _member_path(member.name, self.path)
        if member.islnk():
            _member_path(member.linkname, self.path)
        elif not (member.isreg() or member.isdir()):
            raise InvalidArgumentError(
                f"failed to read oci-archive {self.path}: member {member.name!r}"
                " is not a regular file, directory or hard link"
            )
        self._members[path] = member

    def _regular_member(self, path: str) -> tarfile.TarInfo | None:
        member = self._members.get(path)
        for _ in range(_MAX_LINK_HOPS):
            if member is None or not member.islnk():
                break
            member = self._members.get(_member_path(member.linkname, self.path))
        if member is None or not member.isreg():
            return None
        if member.issparse():
            raise InvalidArgumentError(
                f"failed to read {path} in oci-archive {self.path}: sparse members"
                " are not supported"
            )
        return member

    def exists(self, path: str) -> bool:
        return self._regular_member(path) is not None

    def open(self, path: str) -> BinaryIO:
        member = self._regular_member(path)
        if member is None:
            raise NotFoundError(f"failed to open {path} in {self.location}: not found")
        file = open(self.path, "rb", buffering=0)  # noqa: SIM115 (the reader owns it)
        reader = _MemberReader(file, member.offset_data, member.size)
        return reader  # type: ignore[return-value]


class _MemberReader(io.RawIOBase):
    """The bytes of one tar member, read with pread from the member's offset."""

    def __init__(self, file: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._file = file
        self._position = offset
        self._end = offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._end - self._position)
        if wanted <= 0:
            return 0
        count = os.preadv(self._file.fileno(), [view[:wanted]], self._position)
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def open_archive_source(reference: ArchiveReference) -> LayoutSource:
    """Open the image that ``reference`` names in an OCI archive."""
    return LayoutSource(reference, TarFiles(reference.path))


class ArchiveSink(LayoutSink):
    """Writes an image as an OCI archive; the file appears only on commit."""

    def __init__(self, reference: ArchiveReference) -> None:
        self._archive_path = reference.path
        parent = reference.path.parent
        try:
            self._workdir = Path(tempfile.mkdtemp(dir=parent, prefix=TEMP_PREFIX))
        except FileNotFoundError as error:
            raise NotFoundError(
                f"failed to create oci-archive {reference.path}: directory {parent}"
                " does not exist"
            ) from error
        try:
            # The temporary layout is thrown away after a crash, so it needs no
            # fsync; the archive itself is synced before its rename.
            super().__init__(reference, self._workdir / "layout", durable=False)
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise

    def commit(self) -> None:
        super().commit()
        write_layout_tar(self.root, self._archive_path)

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)


def write_layout_tar(directory: Path, destination: Path) -> None:
    """Write ``directory`` as a deterministic tar at ``destination``, atomically."""
    paths = sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if not path.name.startswith(TEMP_PREFIX)
    )
    with temporary_file(destination.parent) as (file, temp_path):
        with tarfile.TarFile(
            fileobj=file, mode="w", format=tarfile.PAX_FORMAT, copybufsize=READ_SIZE
        ) as tar:
            for path in paths:
                _add_to_tar(tar, directory, path)
        sync_file(file)
        publish(temp_path, destination)
    sync_directory(destination.parent)


def _add_to_tar(tar: tarfile.TarFile, directory: Path, path: str) -> None:
    source = directory / path
    info = tarfile.TarInfo(path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if source.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.mode = 0o644
    info.size = source.stat().st_size
    with open(source, "rb") as file:
        tar.addfile(info, file)
