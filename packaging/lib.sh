# Shared by deb.sh and rpm.sh (sourced, not run): builds the release binaries, the man
# pages and completions, and stages the three packages' file trees under
# $PKG_OUT/stage/<package>/, with the modes and owners the packages install (files
# are staged by the current user; the package builders record them as root:root).
#
# Environment:
#   CARGO_TARGET_DIR          where cargo builds (default: <repo>/target)
#   PROVTARGET_SIGNING_KEY    a minisign secret key (no password): sign the packaged
#                             plugins after stripping (<lib>.so.minisig beside each)
#   PROVTARGET_SIGNING_PUBKEY its minisign public key: packaged (provtarget-plugins) as
#                             /etc/choria/provtarget/trusted.d/provtarget-packages.pub
#   PROVTARGET_PACKAGE_NO_BUILD=1  reuse the release build already in the target dir

set -euo pipefail
umask 022

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
RELEASE_DIR="$TARGET_DIR/release"

# The packaged plugins: crate package, library file, README folder.
PLUGINS=(
    "provtarget-fqdn libprovtarget_fqdn.so fqdn"
    "provtarget-dns-srv libprovtarget_dns_srv.so dns_srv"
    "provtarget-etcd libprovtarget_etcd.so etcd"
    "provtarget-http libprovtarget_http.so http"
)

die() {
    echo "packaging: $*" >&2
    exit 1
}

# The first `version = "..."` of a Cargo.toml's [package] section.
crate_version() {
    sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$1" | head -n1
}

# Version rule (packaging/README.md): provtarget and provtarget-plugins carry the host's
# version (core/Cargo.toml = `provtarget --version`); provtarget-sdk carries the
# provtarget-abi crate's version (it tracks the plugin interface).
HOST_VERSION="$(crate_version "$REPO/core/Cargo.toml")"
SDK_VERSION="$(crate_version "$REPO/plugin-abi/Cargo.toml")"
[ -n "$HOST_VERSION" ] || die "no version in core/Cargo.toml"
[ -n "$SDK_VERSION" ] || die "no version in plugin-abi/Cargo.toml"

# Reproducible dates: the last commit's time, unless the caller set one. Handed to the
# package builders only, not exported: ring's build script reruns when it changes,
# which would rebuild part of a release build made without it.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH="$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)"
fi

# need_tool COMMAND DEBIAN-PACKAGE: as root on Debian, installs a missing tool with
# apt-get; otherwise a missing tool is an error naming the package.
need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== apt-get install $2 (for $1)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; } ||
            die "apt-get could not install $2 (for $1)"
        command -v "$1" >/dev/null 2>&1 || die "$2 is installed but $1 is still missing"
        return 0
    fi
    die "$1 is not installed (Debian package: $2); install it and run again"
}

# cargo build --release of the host, the four plugins and the doc generator.
build_release() {
    if [ "${PROVTARGET_PACKAGE_NO_BUILD:-}" = 1 ]; then
        echo "== reusing the release build in $RELEASE_DIR"
        return
    fi
    local args=(-p provtarget -p provtarget-docgen)
    local p
    for p in "${PLUGINS[@]}"; do
        set -- $p
        args+=(-p "$1")
    done
    echo "== cargo build --release ${args[*]}"
    (cd "$REPO" && cargo build --release --locked "${args[@]}")
}

# gzip -9n: what Debian policy asks for man pages and large docs (no name, no time).
gz() {
    gzip -9n -c "$1" >"$2"
    chmod 0644 "$2"
}

# stage_all OUT: writes OUT/stage/{provtarget,provtarget-plugins,provtarget-sdk}.
stage_all() {
    local out="$1"
    local stage="$out/stage"
    rm -rf "$stage"
    mkdir -p "$stage"
    need_tool strip binutils

    # --- provtarget: the host ---
    local s="$stage/provtarget"
    install -d -m 0755 "$s/usr/bin" "$s/usr/lib/choria/provtarget" "$s/var/cache/provtarget" \
        "$s/usr/share/man/man1" "$s/usr/share/doc/provtarget" \
        "$s/usr/share/bash-completion/completions" "$s/usr/share/zsh/vendor-completions" \
        "$s/usr/share/fish/vendor_completions.d"
    install -m 0755 "$RELEASE_DIR/provtarget" "$s/usr/bin/provtarget"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$s/usr/bin/provtarget"
    local got
    got="$("$s/usr/bin/provtarget" --version)"
    [ "$got" = "provtarget $HOST_VERSION" ] ||
        die "the built binary says \"$got\", core/Cargo.toml says $HOST_VERSION: rebuild"

    local gen="$out/generated"
    rm -rf "$gen"
    "$RELEASE_DIR/provtarget-docgen" "$gen" >/dev/null
    local f
    for f in "$gen"/man/*.1; do
        gz "$f" "$s/usr/share/man/man1/$(basename "$f").gz"
    done
    install -m 0644 "$gen/completions/provtarget" "$s/usr/share/bash-completion/completions/provtarget"
    install -m 0644 "$gen/completions/_provtarget" "$s/usr/share/zsh/vendor-completions/_provtarget"
    install -m 0644 "$gen/completions/provtarget.fish" "$s/usr/share/fish/vendor_completions.d/provtarget.fish"
    gz "$REPO/README.md" "$s/usr/share/doc/provtarget/README.md.gz"
    gz "$REPO/CHANGELOG.md" "$s/usr/share/doc/provtarget/CHANGELOG.md.gz"
    install -m 0644 "$REPO/packaging/debian/copyright" "$s/usr/share/doc/provtarget/copyright"

    # --- provtarget-plugins: the four plugins, stripped, then signed ---
    s="$stage/provtarget-plugins"
    install -d -m 0755 "$s/usr/lib/choria/provtarget" "$s/usr/share/doc/provtarget-plugins"
    local crate lib dir
    for f in "${PLUGINS[@]}"; do
        set -- $f
        crate="$1" lib="$2" dir="$3"
        install -m 0644 "$RELEASE_DIR/$lib" "$s/usr/lib/choria/provtarget/$lib"
        strip --strip-unneeded --remove-section=.comment --remove-section=.note \
            "$s/usr/lib/choria/provtarget/$lib"
        gz "$REPO/plugins/$dir/README.md" "$s/usr/share/doc/provtarget-plugins/README.$dir.md.gz"
    done
    install -m 0644 "$REPO/packaging/debian/copyright" "$s/usr/share/doc/provtarget-plugins/copyright"
    gz "$REPO/CHANGELOG.md" "$s/usr/share/doc/provtarget-plugins/CHANGELOG.md.gz"
    sign_plugins "$s/usr/lib/choria/provtarget"
    if [ -n "${PROVTARGET_SIGNING_PUBKEY:-}" ]; then
        [ -r "$PROVTARGET_SIGNING_PUBKEY" ] || die "PROVTARGET_SIGNING_PUBKEY=$PROVTARGET_SIGNING_PUBKEY is not a readable file"
        install -d -m 0755 "$s/etc/choria/provtarget/trusted.d"
        install -m 0644 "$PROVTARGET_SIGNING_PUBKEY" \
            "$s/etc/choria/provtarget/trusted.d/provtarget-packages.pub"
    fi

    # --- provtarget-sdk: the normalized provtarget-abi sources and .crate ---
    s="$stage/provtarget-sdk"
    install -d -m 0755 "$s/usr/share/provtarget/sdk" "$s/usr/share/doc/provtarget-sdk"
    echo "== cargo package -p provtarget-abi"
    (cd "$REPO" && cargo package -p provtarget-abi --no-verify --allow-dirty --quiet)
    local crate_file="$TARGET_DIR/package/provtarget-abi-$SDK_VERSION.crate"
    [ -f "$crate_file" ] || die "cargo package wrote no $crate_file"
    install -m 0644 "$crate_file" "$s/usr/share/provtarget/sdk/"
    tar -xzf "$crate_file" -C "$s/usr/share/provtarget/sdk" --no-same-owner
    mv "$s/usr/share/provtarget/sdk/provtarget-abi-$SDK_VERSION" "$s/usr/share/provtarget/sdk/provtarget-abi"
    # Cargo's own bookkeeping, not sources: the pre-normalization manifest and the VCS note.
    rm -f "$s/usr/share/provtarget/sdk/provtarget-abi/Cargo.toml.orig" \
        "$s/usr/share/provtarget/sdk/provtarget-abi/.cargo_vcs_info.json"
    find "$s/usr/share/provtarget/sdk" -type d -exec chmod 0755 {} +
    find "$s/usr/share/provtarget/sdk" -type f -exec chmod 0644 {} +
    gz "$REPO/plugin-abi/README.md" "$s/usr/share/doc/provtarget-sdk/README.md.gz"
    install -m 0644 "$REPO/packaging/debian/copyright" "$s/usr/share/doc/provtarget-sdk/copyright"
    gz "$REPO/CHANGELOG.md" "$s/usr/share/doc/provtarget-sdk/CHANGELOG.md.gz"
}

# Signs every library in $1 with PROVTARGET_SIGNING_KEY (after stripping: the signature
# covers the very bytes installed). Trusted comment: `file:<basename>`.
sign_plugins() {
    [ -n "${PROVTARGET_SIGNING_KEY:-}" ] || return 0
    need_tool minisign minisign
    [ -r "$PROVTARGET_SIGNING_KEY" ] || die "PROVTARGET_SIGNING_KEY=$PROVTARGET_SIGNING_KEY is not a readable file"
    local lib
    for lib in "$1"/*.so; do
        minisign -S -s "$PROVTARGET_SIGNING_KEY" -m "$lib" -x "$lib.minisig" \
            -t "file:$(basename "$lib")" </dev/null >/dev/null ||
            die "minisign could not sign $(basename "$lib") with $PROVTARGET_SIGNING_KEY (a key with a password cannot be used unattended)"
        chmod 0644 "$lib.minisig"
    done
    echo "== signed $(ls "$1"/*.so | wc -l) plugins with $PROVTARGET_SIGNING_KEY"
}
