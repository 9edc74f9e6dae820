"""Image-level operations behind the command line: convert, unpack, list.

Each operation takes image references (``oci:DIR[:TAG]``,
``oci-archive:FILE[:TAG]``), a block store and a progress receiver, and returns
a summary that the command line prints as text or JSON.
"""
