#!/usr/bin/env bash
# benches/tsl.sh: what validating property posts against a thing model costs (docs/PERFORMANCE.md,
# "Thing model validation"; issue 11).
#
# One fresh hub, two products: a1Plain without a thing model, a1Model with benches/data/tsl-50.json
# (50 properties: every scalar type, two structs, two arrays). The same bench posts the same
# 50-property payloads (`--tsl`, valid values drawn from the model) to both, QoS 1, 100 devices,
# 8 posts in flight each, for DURATION; three interleaved rounds, the median reported. Then it
# rewrites the "thing-model" section of docs/PERFORMANCE.md.
#
#   cargo build --release -p aliot-cli && bash benches/tsl.sh
# Environment: ALIOT (default target/release/aliot), DURATION (10s), OUT (benches/out),
# HUB_CONFIG (a hub configuration file, e.g. one with `[history] enabled = false` to measure
# validation alone).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/out}
ALIOT=${ALIOT:-$ROOT/target/release/aliot}
DURATION=${DURATION:-10s}
TSL=$ROOT/benches/data/tsl-50.json
mkdir -p "$OUT"
rm -f "$OUT"/tsl_*
WORK=$(mktemp -d)
HUB=""
trap '[ -n "$HUB" ] && kill "$HUB" 2>/dev/null; rm -rf "$WORK"' EXIT
log() { printf 'tsl.sh: %s\n' "$*" >&2; }
TOKEN=tsl-$RANDOM$RANDOM$RANDOM

"$ALIOT" hub ${HUB_CONFIG:+--config "$HUB_CONFIG"} --data-dir "$WORK/hub" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 --admin-token "$TOKEN" \
  >"$WORK/hub.out" 2>"$WORK/hub.err" &
HUB=$!
for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/hub.out")
ADMIN=$(awk '$1 == "admin:" { print $2 }' "$WORK/hub.out")
[ -n "$PORT" ] || { cat "$WORK/hub.err" >&2; log "the hub did not start"; exit 1; }
admin() { "$ALIOT" admin --url "$ADMIN" --token "$TOKEN" "$@" >/dev/null; }
admin product create --name plain --product-key a1Plain
admin product create --name model --product-key a1Model
admin product tsl import --product-key a1Model --file "$TSL"
for pk in a1Plain a1Model; do
  admin device create --product-key "$pk" --prefix dev- --count 100
  "$ALIOT" admin --url "$ADMIN" --token "$TOKEN" device list --product-key "$pk" --format csv >"$WORK/$pk.csv"
done

# run NAME PK: one round.
run() {
  local name=$1 pk=$2
  printf '%s\n' "\$ALIOT bench --devices $pk.csv --count 100 --port \$PORT --workload telemetry --qos 1 --interval 0 --inflight 8 --duration $DURATION --tsl benches/data/tsl-50.json --server-pid \$HUB --format json --quiet" >"$OUT/$name.cmd"
  log "$name"
  "$ALIOT" bench --devices "$WORK/$pk.csv" --count 100 --port "$PORT" --workload telemetry --qos 1 --interval 0 \
    --inflight 8 --duration "$DURATION" --tsl "$TSL" --server-pid "$HUB" --format json --quiet \
    >"$OUT/$name.json" 2>"$OUT/$name.err" || log "$name failed: $(tail -n 3 "$OUT/$name.err")"
}
for round in 1 2 3; do
  run "tsl_plain_$round" a1Plain
  run "tsl_model_$round" a1Model
done
curl -s "$ADMIN/metrics" >"$OUT/tsl.metrics" || true
printf '{"date": "%s", "duration": "%s", "load average after": "%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$DURATION" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/tsl_env.json"
python3 benches/py/render_report.py "$OUT" docs/PERFORMANCE.md thing-model
