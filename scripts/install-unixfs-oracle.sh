#!/bin/sh
# Install the JS UnixFS importer that the tests use as a second CID oracle.
#
# Installs the exact versions locked in scripts/unixfs-oracle/ into
# ${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}/unixfs-oracle with `npm ci`, and
# copies oracle.mjs beside them. A second run with the same lock file and
# script returns at once. Prints the path of the installed oracle.mjs.
set -eu

source_dir=$(cd "$(dirname "$0")/unixfs-oracle" && pwd)
cache=${IPCS_FS_CACHE:-$HOME/.cache/ipcs-fs}
target=$cache/unixfs-oracle
stamp=$target/.installed

wanted=$(cat "$source_dir/package.json" "$source_dir/package-lock.json" \
    "$source_dir/oracle.mjs" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    echo "$target/oracle.mjs"
    exit 0
fi

command -v npm >/dev/null || { echo "install-unixfs-oracle: npm not found" >&2; exit 1; }
mkdir -p "$target"
rm -f "$stamp"
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$source_dir/oracle.mjs" "$target/"
(cd "$target" && npm ci --no-audit --no-fund --loglevel=error >&2)
echo "$wanted" >"$stamp"
echo "$target/oracle.mjs"
