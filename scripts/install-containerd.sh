#!/usr/bin/env bash
# Fetch containerd 1.7.24 (Debian trixie) and runc (Debian 12) into the project cache.
#
# Usage: scripts/install-containerd.sh
#
# Nothing is installed system-wide. apt runs with a private state directory,
# cache and sources list under ${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}/apt, so the
# machine's own package lists stay as they are. `apt-get download` fetches the
# .deb files and `dpkg -x` unpacks them into the cache's containerd/ folder;
# bin/ then gets symlinks to containerd, ctr, containerd-shim-runc-v2 and runc.
# A second run returns at once when those binaries are in place at the wanted
# versions.
#
# Signatures are checked as usual. trixie's InRelease carries three signatures:
# the archive keys of Debian 12 and 13 and the Debian 13 release key. Debian 12's
# debian-archive-keyring (2023.3+deb12u2) ships the Debian 13 archive key as
# /usr/share/keyrings/debian-archive-trixie-automatic.gpg, which verifies it.
set -euo pipefail

CONTAINERD_VERSION=1.7.24
TRIXIE_KEYRING=/usr/share/keyrings/debian-archive-trixie-automatic.gpg
BOOKWORM_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

cache_dir="${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}"
apt_dir="$cache_dir/apt"
unpack_dir="$cache_dir/containerd"
bin_dir="$cache_dir/bin"

# Print "ok" when every binary is linked and containerd has the expected version.
installed() {
    local name
    for name in containerd ctr containerd-shim-runc-v2 runc; do
        [ -x "$bin_dir/$name" ] || return 0
    done
    if "$bin_dir/containerd" --version 2>/dev/null |
        grep -q " v\?$CONTAINERD_VERSION[ ~+-]"; then
        echo ok
    fi
}

write_sources() {
    mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
    # runc comes from Debian 12 with its updates, like the machine's own sources.
    # trixie is listed only for containerd, which is requested by suite name.
    cat >"$apt_dir/sources.list" <<SOURCES
deb [signed-by=$TRIXIE_KEYRING] http://deb.debian.org/debian trixie main
deb [signed-by=$BOOKWORM_KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$BOOKWORM_KEYRING] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=$BOOKWORM_KEYRING] http://deb.debian.org/debian-security bookworm-security main
SOURCES
    # Without this pin, trixie's newer versions would win for every package.
    cat >"$apt_dir/preferences" <<PREFERENCES
Package: *
Pin: release n=trixie
Pin-Priority: 100
PREFERENCES
}

# Run apt-get against the private state only.
private_apt() {
    apt-get \
        -o Dir::State="$apt_dir/state" \
        -o Dir::Cache="$apt_dir/cache" \
        -o Dir::Etc::SourceList="$apt_dir/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::Etc::Preferences="$apt_dir/preferences" \
        -o Dir::Etc::PreferencesParts=/dev/null \
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false \
        -o APT::Sandbox::User=root \
        "$@"
}

download_debs() {
    local debs="$apt_dir/debs"
    rm -rf "$debs"
    mkdir -p "$debs"
    (
        cd "$debs"
        private_apt download containerd/trixie runc
    )
    local deb
    deb="$(ls "$debs"/containerd_*.deb)"
    case "$(basename "$deb")" in
    "containerd_${CONTAINERD_VERSION}"[~+-]*) ;;
    *)
        echo "install-containerd: trixie offers $(basename "$deb")," \
            "expected containerd $CONTAINERD_VERSION" >&2
        exit 1
        ;;
    esac
}

unpack_debs() {
    local deb
    rm -rf "$unpack_dir"
    mkdir -p "$unpack_dir" "$bin_dir"
    for deb in "$apt_dir"/debs/*.deb; do
        dpkg -x "$deb" "$unpack_dir"
    done
    ln -sfn "$unpack_dir/usr/bin/containerd" "$bin_dir/containerd"
    ln -sfn "$unpack_dir/usr/bin/ctr" "$bin_dir/ctr"
    ln -sfn "$unpack_dir/usr/bin/containerd-shim-runc-v2" \
        "$bin_dir/containerd-shim-runc-v2"
    ln -sfn "$unpack_dir/usr/sbin/runc" "$bin_dir/runc"
}

main() {
    if [ "$(installed)" = ok ]; then
        echo "containerd $CONTAINERD_VERSION and runc already in $bin_dir"
        return
    fi

    write_sources
    private_apt -q update
    download_debs
    unpack_debs

    # The trixie build must run on this machine's glibc: fail here, not in a test.
    "$bin_dir/containerd" --version
    "$bin_dir/runc" --version | head -n1
    if [ "$(installed)" != ok ]; then
        echo "install-containerd: $bin_dir/containerd is not version" \
            "$CONTAINERD_VERSION" >&2
        exit 1
    fi
}

main "$@"
