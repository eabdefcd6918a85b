#!/usr/bin/env bash
# benches/ota.sh: an OTA upgrade wave on `aliot hub` (docs/PERFORMANCE.md, "OTA upgrade wave";
# issue 12).
#
# One fresh hub (its own data directory, free loopback ports, the device HTTP listener that
# serves the signed downloads) and one `aliot bench --workload ota` process: COUNT devices (the
# aliot-device SDK, registered through the admin API) report 1.0.0; a PACKAGE-byte package of
# 2.0.0 is uploaded and one static job created; every device downloads (at most CONCURRENCY at
# once from the bench, the hub's own limit is [ota] max_downloads), verifies and reports 2.0.0.
# Measured: time from the job to every task final, download throughput, push rate, failures;
# the hub's RSS before the wave and its peak (VmHWM) during it; bytes the hub served (/metrics).
#
#   cargo build --release -p aliot-cli && bash benches/ota.sh
# Environment: ALIOT (default target/release/aliot), COUNT (5000), PACKAGE (1048576),
# CONCURRENCY (64), RATE (1000 connects/s), MAX_PER_MINUTE (the job's push limit; default none),
# OUT (benches/out).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/out}
ALIOT=${ALIOT:-$ROOT/target/release/aliot}
COUNT=${COUNT:-5000}
PACKAGE=${PACKAGE:-1048576}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-1000}
LIMIT=()
[ -n "${MAX_PER_MINUTE:-}" ] && LIMIT=(--max-per-minute "$MAX_PER_MINUTE")
mkdir -p "$OUT"
rm -f "$OUT"/ota_*
WORK=$(mktemp -d)
HUB=""
trap '[ -n "$HUB" ] && kill "$HUB" 2>/dev/null; rm -rf "$WORK"' EXIT
log() { printf 'ota.sh: %s\n' "$*" >&2; }
TOKEN=ota-$RANDOM$RANDOM$RANDOM
ulimit -n 20000 2>/dev/null || true

"$ALIOT" hub --data-dir "$WORK/hub" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 --device-http 127.0.0.1:0 \
  --admin-token "$TOKEN" >"$WORK/hub.out" 2>"$WORK/hub.err" &
HUB=$!
for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/hub.out")
ADMIN=$(awk '$1 == "admin:" { print $2 }' "$WORK/hub.out")
[ -n "$PORT" ] && [ -n "$ADMIN" ] || { cat "$WORK/hub.err" >&2; log "the hub did not start"; exit 1; }
"$ALIOT" admin --url "$ADMIN" --token "$TOKEN" product create --name ota --product-key a1OtaBench >/dev/null

rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
RSS_BEFORE=$(rss_kib "$HUB" VmRSS)
printf '%s\n' "\$ALIOT bench --workload ota --product-key a1OtaBench --count $COUNT --package-bytes $PACKAGE --concurrency $CONCURRENCY --rate $RATE --port \$PORT --admin-url \$ADMIN --admin-token \$TOKEN --format json --quiet ${LIMIT[*]}" >"$OUT/ota_wave.cmd"
log "wave: $COUNT devices, $PACKAGE bytes"
START=$(date +%s.%N)
"$ALIOT" bench --workload ota --product-key a1OtaBench --count "$COUNT" --package-bytes "$PACKAGE" \
  --concurrency "$CONCURRENCY" --rate "$RATE" --port "$PORT" --admin-url "$ADMIN" --admin-token "$TOKEN" \
  --format json --quiet "${LIMIT[@]}" >"$OUT/ota_wave.json" 2>"$OUT/ota_wave.err" &
BENCH=$!
BENCH_PEAK=0
while kill -0 "$BENCH" 2>/dev/null; do
  b=$(rss_kib "$BENCH" VmRSS 2>/dev/null || echo 0)
  [ "${b:-0}" -gt "$BENCH_PEAK" ] && BENCH_PEAK=$b
  sleep 0.5
done
wait "$BENCH" || log "the bench failed: $(tail -n 3 "$OUT/ota_wave.err")"
END=$(date +%s.%N)
RSS_PEAK=$(rss_kib "$HUB" VmHWM)
RSS_AFTER=$(rss_kib "$HUB" VmRSS)
curl -s "$ADMIN/metrics" >"$OUT/ota_wave.metrics" || true
SERVED=$(awk '$1 == "aliot_hub_ota_bytes_served_total" { print $2 }' "$OUT/ota_wave.metrics")
printf '{"hubRssBeforeKiB":%s,"hubRssPeakKiB":%s,"hubRssAfterKiB":%s,"benchRssPeakKiB":%s,"hubBytesServed":%s,"wallSeconds":%s}\n' \
  "$RSS_BEFORE" "$RSS_PEAK" "$RSS_AFTER" "$BENCH_PEAK" "${SERVED:-0}" "$(echo "$END - $START" | bc)" >"$OUT/ota_hub.json"
cat "$OUT/ota_wave.json" "$OUT/ota_hub.json"
