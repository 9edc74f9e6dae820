"""Measure TarReader against ``cat`` and Python's tarfile on one tar file.

Usage::

    tar -cf /tmp/usr.tar -C / usr
    .venv/bin/python benchmarks/tar_reader.py /tmp/usr.tar

Each mode reads the whole file once; run it twice so the page cache is warm.
Modes: ``cat`` (the floor: ``cat FILE > /dev/null``), TarReader skipping data,
TarReader reading all data into a 256 KiB buffer, tarfile iterating (it seeks
past data), tarfile reading all data through ``extractfile``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tarfile
import time

from ipcs_fs.tar import TarReader

_CHUNK = 256 << 10


def run_cat(path: str) -> int:
    with open(path, "rb") as file, open(os.devnull, "wb") as sink:
        subprocess.run(["cat"], stdin=file, stdout=sink, check=True)
    return 0


def run_reader_skip(path: str) -> int:
    with open(path, "rb", buffering=0) as file:
        return sum(1 for _ in TarReader(file, source=path))


def run_reader_read(path: str) -> int:
    count = 0
    buffer = bytearray(_CHUNK)
    with open(path, "rb", buffering=0) as file:
        reader = TarReader(file, source=path)
        for _ in reader:
            count += 1
            while reader.readinto_data(buffer):
                pass
    return count


def run_tarfile_skip(path: str) -> int:
    with tarfile.open(path, "r:") as archive:
        return sum(1 for _ in archive)


def run_tarfile_read(path: str) -> int:
    count = 0
    with tarfile.open(path, "r:") as archive:
        for member in archive:
            count += 1
            stream = archive.extractfile(member) if member.isreg() else None
            if stream is not None:
                while stream.read(_CHUNK):
                    pass
    return count


MODES = {
    "cat": run_cat,
    "reader-skip": run_reader_skip,
    "reader-read": run_reader_read,
    "tarfile-skip": run_tarfile_skip,
    "tarfile-read": run_tarfile_read,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tar", help="uncompressed tar file to read")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    arguments = parser.parse_args()
    size = os.path.getsize(arguments.tar)
    run_cat(arguments.tar)  # warm the page cache
    for mode in arguments.modes.split(","):
        started = time.perf_counter()
        entries = MODES[mode](arguments.tar)
        seconds = time.perf_counter() - started
        rate = f"{entries / seconds:10.0f} entries/s" if entries else " " * 20
        print(
            f"{mode:13} {seconds:7.2f} s {size / seconds / 1e6:8.0f} MB/s {rate}"
            f" ({entries} entries, {size} bytes)"
        )


if __name__ == "__main__":
    main()
