#!/usr/bin/env bash
# Builds provtarget, provtarget-plugins and provtarget-sdk as .rpm files in
# ${CARGO_TARGET_DIR:-target}/rpm/, from the same staged tree as deb.sh, with rpmbuild
# and packaging/rpm/provtarget.spec (Debian's `rpm` package provides rpmbuild; no
# cargo-generate-rpm to compile). See packaging/README.md.
source "$(dirname "$0")/lib.sh"

need_tool rpmbuild rpm

OUT="$TARGET_DIR/rpm"
mkdir -p "$OUT"
build_release
stage_all "$OUT"

signed=0 pubkey=0
[ -z "${PROVTARGET_SIGNING_KEY:-}" ] || signed=1
[ -z "${PROVTARGET_SIGNING_PUBKEY:-}" ] || pubkey=1

top="$OUT/rpmbuild"
rm -rf "$top"
mkdir -p "$top"/{BUILD,BUILDROOT,RPMS,SOURCES,SPECS,SRPMS}
rm -f "$OUT"/*.rpm
rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "stagedir $OUT/stage" \
    --define "host_version $HOST_VERSION" \
    --define "sdk_version $SDK_VERSION" \
    --define "signed $signed" \
    --define "pubkey $pubkey" \
    --define "_source_date_epoch $SOURCE_DATE_EPOCH" \
    --define "use_source_date_epoch_as_buildtime 1" \
    "$REPO/packaging/rpm/provtarget.spec"
find "$top/RPMS" -name '*.rpm' -exec mv {} "$OUT/" \;
ls "$OUT"/*.rpm
