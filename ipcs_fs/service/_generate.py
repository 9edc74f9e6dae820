"""Generate the Python code of ``proto/`` into the git-ignored ``ipcs_fs/_proto/``.

The generated modules are never committed: they depend on the installed
``grpcio-tools`` and ``protobuf`` versions, so each checkout makes its own. The
first import of :mod:`ipcs_fs.service.protos` calls :func:`ensure_generated`,
which does nothing when a stamp file shows that the output matches the current
``.proto`` files and tool version. Run ``python -m ipcs_fs.service._generate``
to generate ahead of time (``make venv`` does).

protoc writes imports such as ``from containerd.types import mount_pb2``,
which would need a top-level ``containerd`` package. The generated files are
rewritten to import from ``ipcs_fs._proto.containerd`` instead.

Several processes may import at once (the plugin and a converter): a lock file
serializes generation, and the output is built in a temporary directory and
renamed into place, so no process imports a half-written module.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import FailedPreconditionError

__all__ = ["OUTPUT_PACKAGE", "ensure_generated", "output_dir", "proto_dir"]

log = logging.getLogger(__name__)

OUTPUT_PACKAGE = "ipcs_fs._proto"
_STAMP = ".stamp"
_IMPORT = re.compile(rb"^(from|import) containerd(\.| )", re.MULTILINE)


def proto_dir() -> Path:
    """Return the directory of the ``.proto`` sources: ``proto/`` of the checkout."""
    return Path(__file__).resolve().parents[2] / "proto"


def output_dir() -> Path:
    """Return the directory of the generated package, ``ipcs_fs/_proto/``."""
    return Path(__file__).resolve().parents[1] / "_proto"


def ensure_generated() -> Path:
    """Generate the protobuf and gRPC modules unless they are current.

    Returns the output directory. Raises FailedPreconditionError when the
    ``.proto`` sources or ``grpcio-tools`` are missing, or protoc fails.
    """
    sources = _proto_files()
    stamp = _stamp_text(sources)
    output = output_dir()
    if _read_stamp(output) == stamp:
        return output
    with _generation_lock(output.parent / ".proto.lock"):
        if _read_stamp(output) != stamp:
            _generate(sources, output, stamp)
    return output


def _proto_files() -> list[Path]:
    root = proto_dir()
    files = sorted(root.rglob("*.proto"))
    if not files:
        raise FailedPreconditionError(
            f"failed to generate gRPC code: no .proto files in {root}; ipcs-fs"
            " serve runs from a source checkout"
        )
    return files


def _stamp_text(sources: list[Path]) -> str:
    digest = hashlib.sha256()
    root = proto_dir()
    for path in sources:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return f"{digest.hexdigest()} grpcio-tools {_tools_version()}\n"


def _tools_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grpcio-tools")
    except PackageNotFoundError as error:
        raise FailedPreconditionError(
            "failed to generate gRPC code: grpcio-tools is not installed;"
            " run `make venv` or `pip install grpcio-tools`"
        ) from error


def _read_stamp(output: Path) -> str | None:
    try:
        return (output / _STAMP).read_text()
    except OSError:
        return None


@contextmanager
def _generation_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _generate(sources: list[Path], output: Path, stamp: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".proto-", dir=output.parent))
    try:
        _run_protoc(sources, staging)
        _rewrite_imports(staging)
        _add_init_files(staging)
        (staging / _STAMP).write_text(stamp)
        _replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("generated gRPC code for %d .proto files in %s", len(sources), output)


def _run_protoc(sources: list[Path], staging: Path) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    include = Path(protoc.__file__).parent / "_proto"
    root = proto_dir()
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={root}",
        f"--proto_path={include}",
        f"--python_out={staging}",
        f"--grpc_python_out={staging}",
        *(str(path.relative_to(root)) for path in sources),
    ]
    status = protoc.main(arguments)
    if status != 0:
        raise FailedPreconditionError(
            f"failed to generate gRPC code from {root}: protoc exited with"
            f" status {status}"
        )


def _rewrite_imports(staging: Path) -> None:
    prefix = OUTPUT_PACKAGE.encode()
    for path in staging.rglob("*.py"):
        text = path.read_bytes()
        path.write_bytes(_IMPORT.sub(rb"\1 " + prefix + rb".containerd\2", text))


def _add_init_files(staging: Path) -> None:
    (staging / "__init__.py").write_text('"""Generated from proto/; not in git."""\n')
    for directory in staging.rglob("*"):
        if directory.is_dir():
            (directory / "__init__.py").touch()


def _replace(staging: Path, output: Path) -> None:
    # A directory cannot be renamed over a non-empty one, so the old output
    # moves aside first. This happens only when the .proto files or the tool
    # version change, never under a running plugin that imported the modules.
    if output.exists():
        old = output.with_name(f".old-proto-{os.getpid()}")
        output.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(output)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_generated())
    except FailedPreconditionError as error:
        print(f"ipcs-fs: {error}", file=sys.stderr)
        sys.exit(1)
