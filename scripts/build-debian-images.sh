#!/usr/bin/env bash
# Build the Debian test images (debian-bookworm, debian-trixie,
# debian-bookworm-rebuild) into ${IPCS_FS_CACHE:-~/.cache/ipcs-fs}/images/,
# skipping those already built by the current recipe. Needs root and
# deb.debian.org. Arguments go to `python -m fixtures.debian_images`, for
# example `--only debian-trixie` or `--cache DIR`.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    python=python3
fi
exec "$python" -m fixtures.debian_images "$@"
