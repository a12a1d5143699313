#!/usr/bin/env bash
# CI checks of the SDK crate (provtarget-abi) that `cargo test` does not make; called
# from .ci/run. Run from anywhere: `bash plugin-abi/ci.sh`.
#  - rustdoc with warnings as errors: no broken intra-doc links, no dead ends;
#  - the doctests, the vendor guide (README.md, the crate's front page) included;
#  - `cargo publish --dry-run`: the crate packages and builds on its own, as a vendor
#    would get it (path-only dev-dependencies are dropped from the package).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== provtarget-abi: cargo doc (RUSTDOCFLAGS=-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc -p provtarget-abi --no-deps --quiet

echo "== provtarget-abi: doctests (the vendor guide included)"
cargo test -p provtarget-abi --doc --quiet

echo "== provtarget-abi: cargo publish --dry-run"
# --allow-dirty: CI may run on a tree with build products or generated files.
cargo publish --dry-run --allow-dirty -p provtarget-abi
