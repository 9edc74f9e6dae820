"""CAR files (content-addressed archives, version 1): DAGs in one stream.

A CAR moves the blocks of one or more DAGs between ipcs-fs and other IPFS
tools (``ipfs dag import``, ``ipfs dag export``). Terms:

- *header*: the DAG-CBOR map ``{"roots": [CID...], "version": 1}`` that starts
  the stream; :mod:`ipcs_fs.car.cbor` holds the DAG-CBOR code it needs.
- *root*: a CID the header names; ipcs-fs writes one per layer.
- *section*: a length varint, a binary CID and the block's bytes.

:class:`CarWriter` writes a stream, :class:`CarReader` reads one and checks
every block against its CID.
"""

from .reader import MAX_BLOCK_SIZE, MAX_HEADER_SIZE, CarReader
from .writer import CarWriter, encode_header

__all__ = [
    "MAX_BLOCK_SIZE",
    "MAX_HEADER_SIZE",
    "CarReader",
    "CarWriter",
    "encode_header",
]
