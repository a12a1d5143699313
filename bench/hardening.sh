#!/usr/bin/env bash
# Hardening figures (issue 20), whole process, release build:
#   1. scan of N empty `lib*.so` junk files (N = 5,000 and 50,000, plus one plugin):
#      wall time of `provtarget buildinfo --json`, and the ratio 50k / 5k (linear
#      scanning keeps it near 10); the number of stderr lines (bounded).
#   2. eight 250 MB padded copies of a valid plugin: peak memory (max RSS of the
#      host, and the peak of the machine's Shmem, where sealed copies live) during
#      `provtarget buildinfo`, per isolation mode.
# Usage: bash bench/hardening.sh [path/to/provtarget]   (default: target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then
  cargo build --release -p provtarget -p provtarget-dc-hint --quiet
  BIN=target/release/provtarget
fi
LIBDIR=$(dirname "$BIN")
PLUGIN=$LIBDIR/libprovtarget_dc_hint.so
WORK=$(mktemp -d /tmp/provtarget-hardening.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"

now() { date +%s.%N; }

echo "== junk scan ($BIN)"
declare -A secs
for n in 5000 50000; do
  d=$WORK/junk-$n
  mkdir -p "$d" && chmod 755 "$d"
  (cd "$d" && seq -f 'libjunk%06g.so' 1 "$n" | xargs touch)
  cp "$PLUGIN" "$d/"
  best=
  for run in 1 2 3; do
    t0=$(now)
    "$BIN" buildinfo --json --config /dev/null --plugin-dir "$d" \
      --set plugin.provtarget.cache_dir=none --set plugin.provtarget.isolation=none \
      >/dev/null 2>"$WORK/err-$n"
    t1=$(now)
    t=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  secs[$n]=$best
  printf '  %6d junk files: best of 3 %.3f s, %d stderr lines\n' "$n" "$best" "$(wc -l <"$WORK/err-$n")"
done
printf '  ratio 50k / 5k: %.1fx (linear: ~10x)\n' "$(echo "${secs[50000]} / ${secs[5000]}" | bc -l)"

echo "== eight 250 MB padded copies of one plugin"
d=$WORK/padded
mkdir -p "$d" && chmod 755 "$d"
for i in 1 2 3 4 5 6 7 8; do
  cp "$PLUGIN" "$d/libpadded$i.so"
  truncate -s 250M "$d/libpadded$i.so"
done
shmem() { awk '/^Shmem:/ {print $2}' /proc/meminfo; }
for mode in none probe process; do
  base=$(shmem)
  peak=$base
  /usr/bin/time -f '%M' -o "$WORK/rss" "$BIN" buildinfo --config /dev/null --plugin-dir "$d" \
    --set plugin.provtarget.cache_dir=none --set plugin.provtarget.isolation=$mode \
    >/dev/null 2>&1 &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    s=$(shmem); [ "$s" -gt "$peak" ] && peak=$s
    sleep 0.02
  done
  wait $pid || true
  printf '  isolation=%-7s max RSS %6.1f MiB, peak Shmem above start %7.1f MiB\n' \
    "$mode" "$(echo "$(cat "$WORK/rss") / 1024" | bc -l)" "$(echo "($peak - $base) / 1024" | bc -l)"
done
