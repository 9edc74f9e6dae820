"""The exception tree of ipcs-fs.

Every error the package raises is an :class:`IpcsError`. The subclasses are
named after containerd's error kinds so that the gRPC service can map each one to
a status code in one place, and the command line can print one clear line.

Messages follow containerd's style: lower case, "failed to VERB OBJECT: cause",
with the layer digest, path or CID that the error concerns. Add context where a
caller knows more, by raising a new error ``from`` the old one.
"""

from __future__ import annotations

__all__ = [
    "IpcsError",
    "InvalidArgumentError",
    "NotFoundError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "UnimplementedError",
    "UnavailableError",
    "ResourceExhaustedError",
    "DataLossError",
]


class IpcsError(Exception):
    """Base class of every error raised by ipcs-fs."""


class InvalidArgumentError(IpcsError):
    """The input breaks a rule: a malformed tar, a bad flag, an unsafe path."""


class NotFoundError(IpcsError):
    """A block, blob, image or path that was asked for does not exist."""


class AlreadyExistsError(IpcsError):
    """The object to create exists already."""


class FailedPreconditionError(IpcsError):
    """The system is not in the state the operation needs."""


class UnimplementedError(IpcsError):
    """The operation or media type is not handled here.

    For the containerd service this is the one error that lets containerd try
    its next differ.
    """


class UnavailableError(IpcsError):
    """A service that is needed (kubo, containerd) cannot be reached."""


class ResourceExhaustedError(IpcsError):
    """A configured limit was reached: bytes written, blocks, depth."""


class DataLossError(IpcsError):
    """Stored or received data does not match its hash: a block or a diff_id."""
