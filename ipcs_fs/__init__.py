"""ipcs-fs: container image layers as file-granular IPFS UnixFS DAGs."""

__version__ = "0.1.0"
