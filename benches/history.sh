#!/usr/bin/env bash
# benches/history.sh: what keeping the thing model's history costs (docs/PERFORMANCE.md,
# "History"; issue 11).
#
# 1. Queries over POINTS stored values (`history_fill`, a release example of aliot-hub): one
#    property holding them all, then ten properties sharing them. It times the first page
#    (1000, oldest first), the newest page, a page from the middle of the range, and paging
#    through 100,000 values (100 pages of 1000, by cursor). Then the same number of values
#    written as the hub writes posts (100 devices × 50 properties, one job per post, 800 in
#    flight): the store's own rate for that shape.
# 2. Property posts with history on and off: two fresh hubs (the second with
#    `[history] enabled = false`), product a1Model with benches/data/tsl-50.json, the bench of
#    benches/tsl.sh (50-property posts, QoS 1, 100 devices, 8 in flight each) for DURATION,
#    three interleaved rounds, the median reported. With history on every answered post is
#    committed (fsync, group commit) before its reply.
#
#   cargo build --release -p aliot-cli && cargo build --release -p aliot-hub --example history_fill
#   bash benches/history.sh
# Environment: ALIOT (target/release/aliot), FILL (target/release/examples/history_fill),
# POINTS (1000000), DURATION (10s), OUT (benches/out).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/out}
ALIOT=${ALIOT:-$ROOT/target/release/aliot}
FILL=${FILL:-$ROOT/target/release/examples/history_fill}
POINTS=${POINTS:-1000000}
DURATION=${DURATION:-10s}
TSL=$ROOT/benches/data/tsl-50.json
mkdir -p "$OUT"
rm -f "$OUT"/history_*
WORK=$(mktemp -d)
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT
log() { printf 'history.sh: %s\n' "$*" >&2; }

for props in 1 10; do
  log "filling $POINTS values over $props properties"
  printf '%s\n' "\$FILL \$DIR $POINTS $props" >"$OUT/history_fill_$props.cmd"
  "$FILL" "$WORK/fill$props" "$POINTS" "$props" >"$OUT/history_fill_$props.json"
  rm -rf "$WORK/fill$props"
done

log "filling $POINTS values as 100 devices posting 50 properties"
printf '%s\n' "\$FILL \$DIR $POINTS 50 100" >"$OUT/history_fill_posts.cmd"
"$FILL" "$WORK/fillposts" "$POINTS" 50 100 >"$OUT/history_fill_posts.json"
rm -rf "$WORK/fillposts"

TOKEN=history-$RANDOM$RANDOM$RANDOM
printf '[history]\nenabled = false\n' >"$WORK/off.toml"
printf '[history]\nenabled = true\n' >"$WORK/on.toml"
# start NAME: a hub with $WORK/NAME.toml; sets PORT_NAME, ADMIN_NAME, PID_NAME.
start() {
  local name=$1
  "$ALIOT" hub --config "$WORK/$name.toml" --data-dir "$WORK/$name" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 \
    --admin-token "$TOKEN" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  PIDS="$PIDS $pid"
  for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  local port admin
  port=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/$name.out")
  admin=$(awk '$1 == "admin:" { print $2 }' "$WORK/$name.out")
  [ -n "$port" ] || { cat "$WORK/$name.err" >&2; log "the $name hub did not start"; exit 1; }
  eval "PORT_$name=$port ADMIN_$name=$admin PID_$name=$pid"
  a() { "$ALIOT" admin --url "$admin" --token "$TOKEN" "$@"; }
  a product create --name model --product-key a1Model >/dev/null
  a product tsl import --product-key a1Model --file "$TSL" >/dev/null
  a device create --product-key a1Model --prefix dev- --count 100 >/dev/null
  a device list --product-key a1Model --format csv >"$WORK/$name.csv"
}
start on
start off

# run NAME HUB: one round against hub HUB (on or off).
run() {
  local name=$1 hub=$2
  local port pid
  eval "port=\$PORT_$hub pid=\$PID_$hub"
  printf '%s\n' "\$ALIOT bench --devices a1Model.csv --count 100 --port \$PORT --workload telemetry --qos 1 --interval 0 --inflight 8 --duration $DURATION --tsl benches/data/tsl-50.json --server-pid \$HUB --format json --quiet" >"$OUT/$name.cmd"
  log "$name"
  "$ALIOT" bench --devices "$WORK/$hub.csv" --count 100 --port "$port" --workload telemetry --qos 1 --interval 0 \
    --inflight 8 --duration "$DURATION" --tsl "$TSL" --server-pid "$pid" --format json --quiet \
    >"$OUT/$name.json" 2>"$OUT/$name.err" || log "$name failed: $(tail -n 3 "$OUT/$name.err")"
}
for round in 1 2 3; do
  run "history_off_$round" off
  run "history_on_$round" on
done
du -b "$WORK/on/history.redb" | awk '{ print "{\"bytes\": " $1 "}" }' >"$OUT/history_file.json"
printf '{"date": "%s", "duration": "%s", "points": %s, "load average after": "%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$DURATION" "$POINTS" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/history_env.json"
python3 benches/py/render_report.py "$OUT" docs/PERFORMANCE.md history
