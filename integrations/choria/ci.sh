#!/usr/bin/env bash
# CI for integrations/choria: gofmt, go vet and go test of the provtargetexec
# module against the real provtarget binary and plugin cdylibs built by cargo, then
# the Choria adapter (-tags choria) compiled, vetted and tested against the
# hand-written go-choria/logrus stand-ins in internal/standin.
#
# Run from anywhere: bash integrations/choria/ci.sh
# Needs: cargo, go (Debian's golang-go, 1.19 or later). No network: GOPROXY=off.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

command -v go >/dev/null || { echo "integrations/choria/ci.sh: go is not installed (apt-get install golang-go)" >&2; exit 1; }

# The binary and the plugins the tests run (a no-op when cargo test built them).
(cd "$root" && cargo build --workspace --lib --bins --quiet)
target="${CARGO_TARGET_DIR:-$root/target}/debug"

# The loader refuses group/world-writable files and relative directories.
plugins="$(mktemp -d)"
trap 'rm -rf "$plugins"' EXIT
chmod 0755 "$plugins"
for lib in libprovtarget_fqdn.so libprovtarget_testkit.so; do
    install -m 0644 "$target/$lib" "$plugins/$lib"
done

export PROVTARGET_BIN="$target/provtarget"
export PROVTARGET_PLUGIN_DIR="$plugins"
# The tests fail instead of skipping when the variables above are missing.
export CI="${CI:-1}"
export GOPROXY=off GOFLAGS= GO111MODULE=on

echo "== gofmt"
unformatted="$(cd "$here" && gofmt -l .)"
if [ -n "$unformatted" ]; then
    echo "not gofmt-formatted (run gofmt -w on them):" >&2
    echo "$unformatted" >&2
    exit 1
fi

echo "== provtargetexec: go vet, go test (standard library only, no build tag)"
(cd "$here" && go vet ./... && go test -race -count=1 -timeout 300s ./...)

echo "== choriaplugin: go vet, go test -tags choria against the stand-ins"
(cd "$here/internal/standin/go-choria" && go vet ./...)
(cd "$here/internal/standin/logrus" && go vet ./...)
(cd "$here/internal/standin/check" && go vet -tags choria ./... && go test -race -count=1 -timeout 300s -tags choria ./...)
