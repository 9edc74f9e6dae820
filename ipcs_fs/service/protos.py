"""The generated protobuf messages and gRPC stubs of containerd's services.

Importing this module generates the code first when needed (see
:mod:`ipcs_fs.service._generate`). Names:

- ``diff_pb2`` / ``diff_grpc``: ``containerd.services.diff.v1`` (served);
- ``content_pb2`` / ``content_grpc``: ``containerd.services.content.v1``
  (called, to write blobs);
- ``leases_pb2`` / ``leases_grpc``: ``containerd.services.leases.v1`` (called);
- ``types_pb2``: ``containerd.types.Descriptor``; ``mount_pb2``:
  ``containerd.types.Mount``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ._generate import OUTPUT_PACKAGE, ensure_generated

__all__ = [
    "content_grpc",
    "content_pb2",
    "diff_grpc",
    "diff_pb2",
    "leases_grpc",
    "leases_pb2",
    "mount_pb2",
    "types_pb2",
]

ensure_generated()


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{OUTPUT_PACKAGE}.containerd.{name}")


types_pb2 = _load("types.descriptor_pb2")
mount_pb2 = _load("types.mount_pb2")
diff_pb2 = _load("services.diff.v1.diff_pb2")
diff_grpc = _load("services.diff.v1.diff_pb2_grpc")
content_pb2 = _load("services.content.v1.content_pb2")
content_grpc = _load("services.content.v1.content_pb2_grpc")
leases_pb2 = _load("services.leases.v1.leases_pb2")
leases_grpc = _load("services.leases.v1.leases_pb2_grpc")
