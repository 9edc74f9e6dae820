"""``ipcs-fs serve``: the containerd diff plugin.

containerd loads the plugin as a proxy plugin of type ``diff`` and calls its
``containerd.services.diff.v1.Diff`` service over a unix socket:

- Apply (the *Applier*): write one layer into the mounts of a snapshot.
  File-granular layers and standard tar layers (plain, gzip, zstd) go through
  the shared apply engine. Other media types get UNIMPLEMENTED, because that
  is the one status that makes containerd try its next differ.
- Diff (the *Comparer*): record the changes from a lower to an upper snapshot
  as a file-granular layer, store its blocks, and write its root block into
  containerd's content store.

Modules: :mod:`.config` (settings), :mod:`.server` (socket, threads,
signals), :mod:`.servicer` (the gRPC edge and its status codes),
:mod:`.applier`, :mod:`.comparer`, :mod:`.changes` and :mod:`.difftar` (the
work), :mod:`.mounts`, :mod:`.blobs` and :mod:`.content` (containerd's mounts,
content directory and content service), :mod:`.protos` (generated code).
Importing this package does not import gRPC; its submodules do.
"""

__all__: list[str] = []
