"""The file-granular layer format: convert a tar into a layer DAG and back.

Terms (the specification is ``mediatypes/ipcs-fs-layer-v1.md``):

- *layer root*: the dag-pb node a converted layer's descriptor names; a UnixFS
  directory with the layer header and two links, ``rootfs`` and ``tar-stream``;
- *rootfs*: the layer's files as UnixFS directories whose links each carry an
  *entry* record (type, mode, owner, times, xattrs, link target, devices);
- *tar stream*: nodes holding the tar's raw headers, padding and trailer as
  records that reference file content by link, so the tar is rebuilt byte for
  byte.

Modules: :mod:`.convert` (tar to DAG), :mod:`.rebuild` (DAG to tar, verified),
:mod:`.listing` (walk the tree), :mod:`.records` (the format's messages),
:mod:`.tarstream`, :mod:`.tree`, :mod:`.paths`, :mod:`.hashing`.
"""
