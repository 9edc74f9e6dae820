#!/usr/bin/env bash
# Build kubo (the `ipfs` command) from the Go module proxy into the project cache.
#
# Usage: scripts/install-kubo.sh
#
# The binary goes to ${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}/bin/ipfs, with Go's
# build and module caches beside it. A second run returns at once when that binary
# already reports the wanted version.
#
# `go install github.com/ipfs/kubo/cmd/ipfs@v0.43.1` is rejected because kubo's
# go.mod has `exclude` and `replace` directives. So a throw-away module requires
# kubo and restates those directives, which Go applies only in the main module:
# - the two excludes of kubo v0.43.1, copied as they are;
# - kubo replaces go-libp2p with a fork, github.com/lidel/go-libp2p
#   v0.0.0-20260914191659-9c4ee60cf924, that the module proxy does not serve
#   ("not available"). A comment in kubo's go.mod states that the fork goes once a
#   go-libp2p release requires quic-go >= v0.62.0 and webtransport-go >= v0.13.0.
#   go-libp2p v0.50.0 is that release, so it is used instead. go-libp2p v0.49.0,
#   kubo's own requirement, fails to compile against webtransport-go v0.13.0
#   (undefined: webtransport.Dialer).
set -euo pipefail

KUBO_VERSION=v0.43.1
LIBP2P_VERSION=v0.50.0
# kubo v0.43.1's go.mod declares `go 1.26.5`.
MIN_GO_VERSION=1.26.5

cache_dir="${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}"
bin_dir="$cache_dir/bin"
binary="$bin_dir/ipfs"

# The machine's Go lives in /usr/local/go/bin, which a non-login shell may lack.
export PATH="$PATH:/usr/local/go/bin"

installed_version() {
    "$binary" version --number 2>/dev/null || true
}

# Succeed when version $1 is at least version $2 (both dotted, no leading "v").
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

check_go() {
    if ! command -v go >/dev/null; then
        echo "install-kubo: go not found; install Go $MIN_GO_VERSION or newer" >&2
        exit 1
    fi
    local found
    found="$(go env GOVERSION)"
    found="${found#go}"
    if ! version_at_least "$found" "$MIN_GO_VERSION"; then
        echo "install-kubo: kubo $KUBO_VERSION needs Go $MIN_GO_VERSION or newer," \
            "found Go $found at $(command -v go)" >&2
        exit 1
    fi
}

work_dir=""
trap 'rm -rf "$work_dir"' EXIT

build_kubo() {
    work_dir="$(mktemp -d)"

    # GOTOOLCHAIN=local: fail on an old Go instead of downloading a toolchain.
    export GOTOOLCHAIN=local
    export GOCACHE="$cache_dir/go-build"
    export GOMODCACHE="$cache_dir/go-mod"
    export GOFLAGS="-modcacherw -buildvcs=false"

    (
        cd "$work_dir"
        go mod init ipcs-fs.invalid/kubo-build 2>/dev/null
        go mod edit \
            -exclude=github.com/ipfs/go-ipfs-cmds@v2.0.1+incompatible \
            -exclude=github.com/libp2p/go-libp2p@v6.0.23+incompatible
        # Naming the package, not only the module, records go.sum entries for
        # every module that the build of cmd/ipfs imports.
        go get "github.com/ipfs/kubo/cmd/ipfs@$KUBO_VERSION" \
            "github.com/libp2p/go-libp2p@$LIBP2P_VERSION"
        mkdir -p "$bin_dir"
        go build -trimpath -o "$binary.tmp" github.com/ipfs/kubo/cmd/ipfs
    )
    mv "$binary.tmp" "$binary"
}

main() {
    local want="${KUBO_VERSION#v}"
    if [ "$(installed_version)" = "$want" ]; then
        echo "kubo $want already at $binary"
        return
    fi

    check_go
    local start=$SECONDS
    build_kubo
    local got
    got="$(installed_version)"
    if [ "$got" != "$want" ]; then
        echo "install-kubo: $binary reports version '$got', expected $want" >&2
        exit 1
    fi
    echo "kubo $got built at $binary in $((SECONDS - start)) s"
}

main "$@"
