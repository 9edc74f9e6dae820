#!/usr/bin/env bash
# Install the Debian packages that building the real test images and running
# the tests need, when any is missing. Needs root; asks apt only when needed.
set -euo pipefail

# chromium renders the HTML report of `ipcs-fs compare` in the tests. skopeo
# reads and copies the layouts and archives that ipcs-fs writes, in
# tests/oci/test_integration.py, and strace traces the kubo daemons of the
# loopback test. docker-registry (the distribution registry 2.8) serves the
# pulls of tests/integration/test_containerd_registry.py.
packages=(debootstrap umoci skopeo strace libarchive13 zstd xz-utils libcap2-bin
    chromium docker-registry)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

# docker-registry's package would start a registry on port 5000 of every
# interface. The tests start their own on 127.0.0.1, and none of these packages
# needs a service of its own, so invoke-rc.d is told to start nothing while apt
# runs. A policy-rc.d that is already there is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by install-host-packages.sh while apt runs.\nexit 101\n' \
        >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The package also enables its unit, which would start the registry at the
# next boot; stop it too, in case a policy-rc.d let it start.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now docker-registry.service
    else
        systemctl disable docker-registry.service
    fi
fi
