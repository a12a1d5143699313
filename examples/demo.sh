#!/usr/bin/env bash
# Builds everything, installs the sample dc-hint plugin into a private plugin
# directory inside target/, and runs `provtarget buildinfo` and `provtarget targets`
# against it with examples/dc.json, on built-in defaults (no configuration file; see
# examples/server.conf for one). No root, nothing outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --release

# The loader refuses group- or world-writable plugins and directories, so install
# with explicit modes whatever the umask.
plugins=target/demo/plugins
rm -rf "$plugins"
mkdir -p "$plugins"
chmod 0755 target/demo "$plugins"
install -m 0644 target/release/libprovtarget_dc_hint.so "$plugins/"

bin=target/release/provtarget
args=(--config /dev/null --plugin-dir "$plugins" --set "plugin.acme.dc_hint.file=examples/dc.json")

echo "\$ provtarget buildinfo"
"$bin" buildinfo "${args[@]}"
echo
echo "\$ provtarget targets"
"$bin" targets "${args[@]}" --timeout 10s
