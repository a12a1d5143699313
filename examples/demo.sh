#!/usr/bin/env bash
# Builds everything, installs the resolver plugins (the dc-hint sample and the fqdn,
# dns_srv, etcd and http resolvers) into a private plugin directory inside target/,
# and runs `provtarget buildinfo` and two real target resolutions against them, on
# built-in defaults (no configuration file; see examples/server.conf for one): the
# dc-hint sample reading examples/dc.json, and the fqdn resolver deriving the broker
# from a host identity. No root, no network, nothing outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --release

# The loader refuses group- or world-writable plugins and directories, so install
# with explicit modes whatever the umask.
# Absolute: the loader refuses relative plugin directories.
plugins="$PWD/target/demo/plugins"
rm -rf "$plugins"
mkdir -p "$plugins"
chmod 0755 target/demo "$plugins"
for p in dc_hint fqdn dns_srv etcd http; do
    install -m 0644 "target/release/libprovtarget_$p.so" "$plugins/"
done

bin=target/release/provtarget
# A private verdict cache, so the demo neither needs nor touches /var/cache/provtarget.
mkdir -p target/demo/cache
chmod 0755 target/demo/cache
args=(--config /dev/null --plugin-dir "$plugins"
      --set "plugin.provtarget.cache_dir=$PWD/target/demo/cache"
      --set "plugin.acme.dc_hint.file=examples/dc.json"
      --set "plugin.provtarget.fqdn.identity=web1.lon1.example.net")

echo "\$ provtarget buildinfo"
"$bin" buildinfo "${args[@]}" --resolver "Acme DC hints Provisioning Target"
echo
echo "\$ provtarget targets --resolver 'Acme DC hints Provisioning Target'"
"$bin" targets "${args[@]}" --resolver "Acme DC hints Provisioning Target" --timeout 10s
echo
echo "\$ provtarget targets --resolver 'FQDN Provisioning Target'"
"$bin" targets "${args[@]}" --resolver "FQDN Provisioning Target" --timeout 10s
