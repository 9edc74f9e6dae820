#!/usr/bin/env bash
# Install the Debian packages that building the real test images and running
# the tests need, when any is missing. Needs root; asks apt only when needed.
set -euo pipefail

# chromium renders the HTML report of `ipcs-fs compare` in the tests. skopeo
# reads and copies the layouts and archives that ipcs-fs writes, in
# tests/oci/test_integration.py, and strace traces the kubo daemons of the
# loopback test.
packages=(debootstrap umoci skopeo strace libarchive13 zstd xz-utils libcap2-bin
    chromium)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
