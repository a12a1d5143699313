#!/usr/bin/env bash
# Builds provtarget, provtarget-plugins and provtarget-sdk as .deb files in
# ${CARGO_TARGET_DIR:-target}/debian/. Needs cargo, dpkg-deb, dpkg-shlibdeps
# (dpkg-dev), binutils and gzip; minisign when PROVTARGET_SIGNING_KEY is set. See
# packaging/README.md.
#
# Why dpkg-deb on a staged tree rather than cargo-deb: cargo-deb is not in Debian and
# `cargo install cargo-deb` compiles for minutes on every fresh CI machine; dpkg-deb
# is already there and the staged tree is shared with rpm.sh.
source "$(dirname "$0")/lib.sh"

need_tool dpkg-deb dpkg
need_tool dpkg-shlibdeps dpkg-dev
need_tool gzip gzip

OUT="$TARGET_DIR/debian"
mkdir -p "$OUT"
ARCH="$(dpkg --print-architecture)"
MAINTAINER="provtarget maintainers <provtarget@choria.invalid>"

build_release
stage_all "$OUT"

# The shared libraries the ELF files in a staged tree need, as a Depends value.
shlib_depends() {
    local tree="$1" tmp
    tmp="$(mktemp -d)"
    mkdir "$tmp/debian"
    printf 'Source: provtarget\n\nPackage: shlibs\nArchitecture: any\n' >"$tmp/debian/control"
    local files=()
    mapfile -t files < <(find "$tree" -type f \( -name '*.so' -o -path '*/usr/bin/*' \))
    (cd "$tmp" && dpkg-shlibdeps -O "${files[@]}" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
    rm -rf "$tmp"
}

# The Debian changelog (native package): one entry, the current version, pointing at
# CHANGELOG.md.
debian_changelog() {
    local pkg="$1" version="$2" doc="$3"
    local date
    date="$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
    {
        echo "$pkg ($version) unstable; urgency=medium"
        echo
        echo "  * Release $version. The changes are in CHANGELOG.md.gz"
        echo "    in /usr/share/doc/$doc/."
        echo
        echo " -- $MAINTAINER  $date"
    } | gzip -9n >"$4"
    chmod 0644 "$4"
}

# write_deb PACKAGE VERSION ARCH DEPENDS SECTION DESCRIPTION...
write_deb() {
    local pkg="$1" version="$2" arch="$3" depends="$4" section="$5"
    shift 5
    local tree="$OUT/stage/$pkg"
    install -d -m 0755 "$tree/DEBIAN"
    debian_changelog "$pkg" "$version" "$pkg" "$tree/usr/share/doc/$pkg/changelog.gz"
    local f
    for f in prerm postrm postinst; do
        if [ -f "$REPO/packaging/debian/$pkg.$f" ]; then
            install -m 0755 "$REPO/packaging/debian/$pkg.$f" "$tree/DEBIAN/$f"
        fi
    done
    if [ -d "$tree/etc" ]; then
        (cd "$tree" && find etc -type f | sed 's|^|/|' | sort) >"$tree/DEBIAN/conffiles"
        chmod 0644 "$tree/DEBIAN/conffiles"
    fi
    (cd "$tree" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
        sed 's|^\./||' | LC_ALL=C sort | xargs -r md5sum) >"$tree/DEBIAN/md5sums"
    chmod 0644 "$tree/DEBIAN/md5sums"
    local size
    size="$(du -sk --exclude=DEBIAN "$tree" | cut -f1)"
    {
        echo "Package: $pkg"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: $MAINTAINER"
        echo "Installed-Size: $size"
        [ -z "$depends" ] || echo "Depends: $depends"
        echo "Section: $section"
        echo "Priority: optional"
        echo "Description: $1"
        shift
        local line
        for line in "$@"; do
            if [ -z "$line" ]; then echo " ."; else echo " $line"; fi
        done
    } >"$tree/DEBIAN/control"
    local deb="$OUT/${pkg}_${version}_${arch}.deb"
    rm -f "$deb"
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" dpkg-deb --build --root-owner-group -Zxz "$tree" "$deb" >/dev/null
    echo "$deb"
}

rm -f "$OUT"/*.deb
write_deb provtarget "$HOST_VERSION" "$ARCH" "$(shlib_depends "$OUT/stage/provtarget")" admin \
    "Provisioning Target resolver host for Choria servers" \
    "provtarget finds the provisioning broker of an unprovisioned Choria server" \
    "through Provisioning Target resolver plugins: stable-ABI shared libraries" \
    "dropped into /usr/lib/choria/provtarget. 'provtarget buildinfo' lists every" \
    "library found, loaded or refused, and why; 'provtarget targets' resolves." \
    "" \
    "Plugins are checked before loading (owner and mode, optional pins and" \
    "signatures, ELF and ABI layout) and run in child processes by default."
write_deb provtarget-plugins "$HOST_VERSION" "$ARCH" \
    "provtarget (= $HOST_VERSION), $(shlib_depends "$OUT/stage/provtarget-plugins")" admin \
    "Provisioning Target resolver plugins for provtarget" \
    "The fqdn, dns_srv, etcd and http resolver plugins of provtarget, installed" \
    "into /usr/lib/choria/provtarget: brokers derived from the host's FQDN, from" \
    "DNS SRV records (plain DNS or Consul), from an etcd v3 cluster, or from a JSON" \
    "document fetched over HTTP (cloud metadata services)."
write_deb provtarget-sdk "$SDK_VERSION" all "" devel \
    "SDK for provtarget Provisioning Target resolver plugins" \
    "The provtarget-abi Rust crate (sources and .crate) under" \
    "/usr/share/provtarget/sdk: the stable-ABI contract and SDK that vendors build" \
    "their resolver plugins against, with the vendor guide. Use it from Cargo.toml" \
    "as: provtarget-abi = { path = \"/usr/share/provtarget/sdk/provtarget-abi\" }"
