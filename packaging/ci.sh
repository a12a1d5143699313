#!/usr/bin/env bash
# CI for the packages (packaging/README.md): run as root on Debian (bookworm) after the
# test suite. Builds the .deb and .rpm files, installs the .debs on this machine,
# checks the installed host, lintian, the SDK (a vendor crate outside the repository)
# and signed plugins in enforce mode, and purges everything it installed. Any failed
# check ends the run with a line naming it; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
source packaging/lib.sh

fail() {
    echo "packaging/ci.sh: FAILED: $*" >&2
    exit 1
}
step() { echo "== $*"; }

[ "$(id -u)" = 0 ] || fail "run as root: it installs and purges the packages on this machine"
# (deb.sh installs dpkg-dev and binutils itself when missing)
for t in dpkg-deb lintian rpm rpmbuild man minisign cargo; do
    command -v "$t" >/dev/null 2>&1 || fail "$t is not installed (.ci/run installs it)"
done

PKGS=(provtarget provtarget-plugins provtarget-sdk)
DEB_DIR="$TARGET_DIR/debian"
RPM_DIR="$TARGET_DIR/rpm"
PLUGIN_DIR=/usr/lib/choria/provtarget
WORK="$(mktemp -d /tmp/provtarget-pkg-ci.XXXXXX)"

# Everything of ours the packages may install: none of it may survive a purge.
OURS=(/usr/bin/provtarget /usr/lib/choria/provtarget /var/cache/provtarget
    /usr/share/provtarget /usr/share/doc/provtarget /usr/share/doc/provtarget-plugins
    /usr/share/doc/provtarget-sdk /usr/share/bash-completion/completions/provtarget
    /usr/share/zsh/vendor-completions/_provtarget
    /usr/share/fish/vendor_completions.d/provtarget.fish /etc/choria/provtarget)

purge() {
    rm -f "$PLUGIN_DIR/libvendor_ci.so"
    dpkg -P "${PKGS[@]}" >/dev/null 2>&1 || true
}
cleanup() {
    purge
    rm -rf "$WORK"
}
trap cleanup EXIT

check_purged() {
    local p left=()
    for p in "${OURS[@]}"; do
        [ ! -e "$p" ] || left+=("$p")
    done
    left+=($(ls /usr/share/man/man1/provtarget*.1.gz 2>/dev/null || true))
    if [ ${#left[@]} -gt 0 ]; then
        local who=""
        if [ -f /var/cache/provtarget/verdicts.json ]; then
            # Another provtarget run as root with the default cache_dir (a test or a
            # benchmark running at the same time) recreates the cache: name its files.
            who=" (/var/cache/provtarget/verdicts.json now lists: $(grep -o '"path":"[^"]*"' \
                /var/cache/provtarget/verdicts.json | head -n 3 | tr '\n' ' '))"
        fi
        fail "dpkg -P left files behind: ${left[*]}$who"
    fi
}

install_debs() {
    dpkg -i "$DEB_DIR"/provtarget_*.deb "$DEB_DIR"/provtarget-plugins_*.deb \
        "$DEB_DIR"/provtarget-sdk_*.deb >/dev/null || fail "dpkg -i of the three packages"
}

# buildinfo_loads_all TEXT: each packaged plugin is listed with Status: loaded.
check_loaded() {
    local text="$1" what="$2" f
    for f in "${PLUGINS[@]}"; do
        set -- $f
        [ "$(grep -A1 -x "    $PLUGIN_DIR/$2" <<<"$text" | grep -c "Status: loaded")" = 1 ] ||
            fail "$what: $PLUGIN_DIR/$2 is not listed as loaded:
$text"
    done
}

# --- 0. no leftovers from an earlier, interrupted run ---
purge

# --- 1. versions agree ---
step "versions"
for c in loader/Cargo.toml packaging/docgen/Cargo.toml; do
    v="$(crate_version "$c")"
    [ "$v" = "$HOST_VERSION" ] || fail "$c says version $v, core/Cargo.toml $HOST_VERSION (host crates share one version)"
done
changelog_v="$(sed -n 's/^## \([^ ]*\).*/\1/p' CHANGELOG.md | head -n1)"
[ "$changelog_v" = "$HOST_VERSION" ] ||
    fail "CHANGELOG.md's first entry is $changelog_v, the host is $HOST_VERSION: add a CHANGELOG entry"
grep -q "^- SDK \`provtarget-abi\` $SDK_VERSION " CHANGELOG.md ||
    fail "CHANGELOG.md's entry does not name SDK provtarget-abi $SDK_VERSION"

# --- 2. build (timed) ---
step "packaging/deb.sh"
t0=$(date +%s)
bash packaging/deb.sh
t1=$(date +%s)
echo "deb.sh took $((t1 - t0)) s"
for p in "${PKGS[@]}"; do
    [ "$(ls "$DEB_DIR"/${p}_*.deb | wc -l)" = 1 ] || fail "deb.sh did not write one ${p}_*.deb"
done
[ "$(dpkg-deb -f "$DEB_DIR"/provtarget_*.deb Version)" = "$HOST_VERSION" ] || fail "provtarget.deb version"
[ "$(dpkg-deb -f "$DEB_DIR"/provtarget-plugins_*.deb Version)" = "$HOST_VERSION" ] || fail "provtarget-plugins.deb version"
[ "$(dpkg-deb -f "$DEB_DIR"/provtarget-sdk_*.deb Version)" = "$SDK_VERSION" ] || fail "provtarget-sdk.deb version"
# (outputs are read whole before grep -q: with pipefail, an early exit of grep would
# fail the writer with SIGPIPE)
listing="$(dpkg-deb -c "$DEB_DIR"/provtarget-plugins_*.deb)"
if grep -q 'minisig\|trusted.d' <<<"$listing"; then
    fail "built without PROVTARGET_SIGNING_KEY, provtarget-plugins still carries signatures or keys"
fi

# --- 3. lintian: no error, and no warning but the ones packaging/README.md keeps ---
step "lintian"
kept="$(sed -n 's/^| `\([a-z0-9-]*\)` | warning .*/\1/p' packaging/README.md | paste -sd, -)"
lintian --fail-on error,warning ${kept:+--suppress-tags "$kept"} "$DEB_DIR"/*.deb ||
    fail "lintian reports errors or warnings not listed in packaging/README.md"

# --- 4. installed host, on its defaults ---
step "dpkg -i"
install_debs
[ "$(cd / && provtarget --version)" = "provtarget $HOST_VERSION" ] || fail "provtarget --version"
[ "$(stat -c '%a %U:%G' "$PLUGIN_DIR")" = '755 root:root' ] || fail "$PLUGIN_DIR is not 0755 root:root"
[ "$(stat -c '%a %U:%G' /var/cache/provtarget)" = '755 root:root' ] || fail "/var/cache/provtarget is not 0755 root:root"
for f in "${PLUGINS[@]}"; do
    set -- $f
    [ "$(stat -c '%a %U:%G' "$PLUGIN_DIR/$2")" = '644 root:root' ] || fail "$2 is not 0644 root:root"
    if grep -q '\.symtab\|\.debug_' <<<"$(readelf -S "$PLUGIN_DIR/$2")"; then
        fail "$2 is not stripped"
    fi
done
grep -q '\.symtab\|\.debug_' <<<"$(readelf -S /usr/bin/provtarget)" && fail "/usr/bin/provtarget is not stripped"

step "buildinfo on the defaults"
out="$(cd / && provtarget buildinfo)" || fail "provtarget buildinfo exited $?"
check_loaded "$out" "provtarget buildinfo"
grep -q "Plugin Directories: $PLUGIN_DIR\$" <<<"$out" || fail "buildinfo does not show $PLUGIN_DIR as the plugin directory"
# The second run reads the verdict cache the first one wrote.
[ -f /var/cache/provtarget/verdicts.json ] || fail "no verdict cache in /var/cache/provtarget after buildinfo"

step "targets through fqdn"
out="$(cd / && provtarget targets --resolver 'FQDN Provisioning Target' \
    --set plugin.provtarget.fqdn.identity=web1.lon1.example.net)" || fail "provtarget targets through fqdn exited $?: $out"
grep -q 'provision.lon1.example.net:4222' <<<"$out" || fail "targets through fqdn: $out"

step "man pages and completions"
for page in provtarget provtarget-buildinfo provtarget-targets provtarget-plugins provtarget-plugins-check; do
    man -w "$page" >/dev/null || fail "man -w $page finds no page"
done
[ "$(man -w provtarget)" = /usr/share/man/man1/provtarget.1.gz ] || fail "man -w provtarget: $(man -w provtarget)"
bash -c 'source /usr/share/bash-completion/completions/provtarget && complete -p provtarget' >/dev/null ||
    fail "the bash completion does not register for provtarget"
for f in /usr/share/zsh/vendor-completions/_provtarget /usr/share/fish/vendor_completions.d/provtarget.fish; do
    grep -q buildinfo "$f" || fail "$f is missing or incomplete"
done

# --- 5. a vendor crate outside the repository, built against the installed SDK ---
step "vendor crate against the installed SDK"
dep_line="$(grep -o 'provtarget-abi = { path = "/usr/share/provtarget/sdk/provtarget-abi" }' plugin-abi/README.md | head -n1)"
[ -n "$dep_line" ] || fail "plugin-abi/README.md has no dependency line for the installed SDK"
vendor="$WORK/vendor-ci"
mkdir -p "$vendor/src"
cat >"$vendor/Cargo.toml" <<EOF
[package]
name = "vendor-ci"
version = "1.0.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
$dep_line

[workspace]
EOF
cat >"$vendor/src/lib.rs" <<'EOF'
use provtarget_abi::{export_plugin, Config, Context, Error, Resolver, Settings};

pub struct VendorCi;

impl Resolver for VendorCi {
    const NAME: &'static str = "Vendor CI Provisioning Target";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "CI";

    fn new() -> Result<Self, Error> {
        Ok(VendorCi)
    }

    fn configure(&mut self, _ctx: &Context<'_>, _config: &Config) -> Result<Settings, Error> {
        Ok(Settings::new())
    }

    fn targets(&self, _ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(vec!["vendor-ci.example.net:4222".to_string()])
    }
}

export_plugin!(VendorCi);
EOF
# A debug build: abi_stable and its dependencies compile about twice as fast as in release.
(cd "$vendor" && CARGO_TARGET_DIR="$vendor/target" cargo build --quiet) ||
    fail "the vendor crate does not build against the installed SDK with: $dep_line"
install -m 0644 "$vendor/target/debug/libvendor_ci.so" "$PLUGIN_DIR/libvendor_ci.so"
out="$(cd / && provtarget targets --resolver 'Vendor CI Provisioning Target')" ||
    fail "the vendor plugin does not resolve in the installed host: $out"
grep -q 'vendor-ci.example.net:4222' <<<"$out" || fail "vendor plugin targets: $out"
rm -f "$PLUGIN_DIR/libvendor_ci.so"

# --- 6. purge leaves nothing ---
step "dpkg -P"
dpkg -P "${PKGS[@]}" >/dev/null || fail "dpkg -P"
check_purged

# --- 7. signed packages, built with a throwaway key ---
step "signed packages (throwaway key)"
minisign -G -W -p "$WORK/ci.pub" -s "$WORK/ci.key" >/dev/null
PROVTARGET_SIGNING_KEY="$WORK/ci.key" PROVTARGET_SIGNING_PUBKEY="$WORK/ci.pub" \
    PROVTARGET_PACKAGE_NO_BUILD=1 bash packaging/deb.sh >/dev/null
listing="$(dpkg-deb -c "$DEB_DIR"/provtarget-plugins_*.deb)"
for f in "${PLUGINS[@]}"; do
    set -- $f
    grep -q "\./usr/lib/choria/provtarget/$2\.minisig\$" <<<"$listing" ||
        fail "the signed provtarget-plugins has no $2.minisig"
done
lintian --fail-on error,warning ${kept:+--suppress-tags "$kept"} "$DEB_DIR"/provtarget-plugins_*.deb ||
    fail "lintian reports errors or warnings on the signed provtarget-plugins"

# --- 8. rpm: the same files and modes ---
# Built signed like the .debs now in $DEB_DIR, so both carry the same files.
step "packaging/rpm.sh"
PROVTARGET_SIGNING_KEY="$WORK/ci.key" PROVTARGET_SIGNING_PUBKEY="$WORK/ci.pub" \
    PROVTARGET_PACKAGE_NO_BUILD=1 bash packaging/rpm.sh >/dev/null
deb_list() { # mode path of the regular files of a .deb, Debian-only files left out
    dpkg-deb -c "$1" | awk '$1 ~ /^-/ {print $1, $2, substr($6, 2)}' |
        grep -v '/usr/share/doc/[^/]*/changelog.gz$' |
        sed 's|/usr/share/zsh/vendor-completions/|/usr/share/zsh/site-functions/|' | sort
}
rpm_list() {
    rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES} %{FILEFLAGS:fflags}\n]' "$1" |
        awk '$1 ~ /^-/ && $4 !~ /g/ {print $1, $2, $3}' | sort
}
for p in "${PKGS[@]}"; do
    rpmf="$(ls "$RPM_DIR"/${p}-[0-9]*.rpm)"
    debf="$(ls "$DEB_DIR"/${p}_*.deb)"
    rpm -qlp "$rpmf" >/dev/null || fail "rpm -qlp $rpmf"
    diff <(deb_list "$debf") <(rpm_list "$rpmf") >"$WORK/diff" ||
        fail "$p: the .rpm and the .deb differ in files or modes:
$(cat "$WORK/diff")"
done
grep -qx 'drwxr-xr-x root /var/cache/provtarget' \
    <<<"$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]' "$RPM_DIR"/provtarget-[0-9]*.rpm)" || fail "the provtarget rpm does not own /var/cache/provtarget 0755"
[ "$(rpm -qp --qf '%{VERSION}' "$RPM_DIR"/provtarget-[0-9]*.rpm)" = "$HOST_VERSION" ] || fail "provtarget rpm version"
[ "$(rpm -qp --qf '%{VERSION}' "$RPM_DIR"/provtarget-sdk-[0-9]*.rpm)" = "$SDK_VERSION" ] || fail "provtarget-sdk rpm version"

# --- 9. the installed host loads the signed plugins in enforce mode ---
# (last: it needs the signatures feature in the host, and fails naming it without)
step "signed packages installed, signatures=enforce"
install_debs
for f in "${PLUGINS[@]}"; do
    set -- $f
    minisign -V -q -p /etc/choria/provtarget/trusted.d/provtarget-packages.pub -m "$PLUGIN_DIR/$2" ||
        fail "the installed $2 does not verify against the packaged public key"
done
out="$(cd / && provtarget buildinfo --set plugin.provtarget.signatures=enforce 2>&1)" ||
    fail "provtarget buildinfo with signatures=enforce exited $?: $out"
grep -q 'unknown configuration key plugin.provtarget.signatures' <<<"$out" &&
    fail "this host does not know plugin.provtarget.signatures (the signatures branch is not merged): $out"
check_loaded "$out" "buildinfo with plugin.provtarget.signatures=enforce"
json="$(cd / && provtarget buildinfo --json --set plugin.provtarget.signatures=enforce 2>/dev/null)" ||
    fail "provtarget buildinfo --json with signatures=enforce exited $?"
n="$(echo "$json" | grep -o '"state": *"signed"' | wc -l)"
[ "$n" -ge ${#PLUGINS[@]} ] ||
    fail "buildinfo --json with signatures=enforce shows $n plugins with \"signature\": {\"state\": \"signed\"}, expected ${#PLUGINS[@]}: $json"
dpkg -P "${PKGS[@]}" >/dev/null || fail "dpkg -P (signed)"
check_purged

echo "== packaging/ci.sh: all checks passed in $SECONDS s"
