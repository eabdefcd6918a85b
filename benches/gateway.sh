#!/usr/bin/env bash
# benches/gateway.sh: a gateway fleet on `aliot hub` (docs/PERFORMANCE.md, "Gateways and
# sub-devices"; issue 13).
#
# One fresh hub (its own data directory, free loopback ports) and one
# `aliot bench --workload gateway` process: GATEWAYS gateways (product a1GwBench) each add SUBS
# sub-devices (product a1SubBench) to their topology with one signed thing.topo.add, log them in
# by batches of 50 (all gateways at once, one batch in flight each), subscribe their post_reply
# and property/set topics, post POSTS property posts for each sub-device (QoS 0, 32 awaiting their
# reply per gateway), then answer DOWNLINKS property sets made through the admin API.
# Measured: the time until every sub-device is online and each batch's round trip, posts answered
# per second with their round trip, the property sets' round trip, and the hub's RSS once the
# topology is in place and once every sub-device is online (the difference per sub-device).
#
#   cargo build --release -p aliot-cli && bash benches/gateway.sh
# Environment: ALIOT (default target/release/aliot), GATEWAYS (100), SUBS (200), POSTS (10),
# DOWNLINKS (2000), OUT (benches/out).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/out}
ALIOT=${ALIOT:-$ROOT/target/release/aliot}
GATEWAYS=${GATEWAYS:-100}
SUBS=${SUBS:-200}
POSTS=${POSTS:-10}
DOWNLINKS=${DOWNLINKS:-2000}
mkdir -p "$OUT"
rm -f "$OUT"/gateway_*
WORK=$(mktemp -d)
HUB=""
trap '[ -n "$HUB" ] && kill "$HUB" 2>/dev/null; rm -rf "$WORK"' EXIT
log() { printf 'gateway.sh: %s\n' "$*" >&2; }
TOKEN=gw-$RANDOM$RANDOM$RANDOM
ulimit -n 20000 2>/dev/null || true

"$ALIOT" hub --data-dir "$WORK/hub" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 \
  --admin-token "$TOKEN" >"$WORK/hub.out" 2>"$WORK/hub.err" &
HUB=$!
for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/hub.out")
ADMIN=$(awk '$1 == "admin:" { print $2 }' "$WORK/hub.out")
[ -n "$PORT" ] && [ -n "$ADMIN" ] || { cat "$WORK/hub.err" >&2; log "the hub did not start"; exit 1; }

rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
RSS_START=$(rss_kib "$HUB" VmRSS)
CMD="\$ALIOT bench --workload gateway --gateways $GATEWAYS --sub-devices-per-gateway $SUBS --posts-per-sub $POSTS --downlinks $DOWNLINKS --port \$PORT --admin-url \$ADMIN --admin-token \$TOKEN --format json --quiet"
printf '%s\n' "$CMD" >"$OUT/gateway.cmd"
log "$GATEWAYS gateways x $SUBS sub-devices"
"$ALIOT" bench --workload gateway --gateways "$GATEWAYS" --sub-devices-per-gateway "$SUBS" \
  --posts-per-sub "$POSTS" --downlinks "$DOWNLINKS" --port "$PORT" --admin-url "$ADMIN" \
  --admin-token "$TOKEN" --format json --quiet >"$OUT/gateway.json" 2>"$OUT/gateway.err" \
  || { log "the bench failed: $(tail -n 3 "$OUT/gateway.err")"; exit 1; }
printf '{"hubRssAtStartKiB":%s,"hubRssPeakKiB":%s,"hubRssEndKiB":%s}\n' \
  "$RSS_START" "$(rss_kib "$HUB" VmHWM)" "$(rss_kib "$HUB" VmRSS)" >"$OUT/gateway_hub.json"
cat "$OUT/gateway.json" "$OUT/gateway_hub.json"
