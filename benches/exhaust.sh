#!/usr/bin/env bash
# benches/exhaust.sh: what a fleet of devices that try to exhaust the hub makes it hold
# (docs/PERFORMANCE.md, "Devices that try to exhaust the hub"; issue 9).
#
# `aliot bench --workload exhaust`: every device posts QoS 1 properties (200 new identifiers a
# post) as fast as its socket takes them and never reads, so acknowledgements and replies pile up
# in the hub; when the run ends it leaves a largest-size PUBLISH one byte short. Each run starts a
# fresh hub (its own data directory, free loopback ports) and samples its RSS every 500 ms:
#   exhaust_10s    DEVICES devices for 10 s, default budgets;
#   exhaust_30s    the same for 30 s: what the hub holds must not grow with the attack's length;
#   exhaust_small  30 s with smaller budgets (queues of 100 messages and 256 KiB, 64 KiB
#                  packets, 16 KiB of properties): what the hub holds follows the configuration,
#                  and stops growing once the queues are full (their devices are cut);
#   exhaust_base   30 s on the BASELINE build, when benches/compare.sh built one (ALIOT_BASE).
# Then it rewrites the "exhaust" section of docs/PERFORMANCE.md.
#
# Called by benches/compare.sh (which builds `aliot`); on its own:
#   cargo build --release -p aliot-cli && bash benches/exhaust.sh
# Environment: ALIOT (default target/release/aliot), ALIOT_BASE (none), DEVICES (1000), OUT
# (benches/out).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/out}
ALIOT=${ALIOT:-$ROOT/target/release/aliot}
ALIOT_BASE=${ALIOT_BASE:-}
DEVICES=${DEVICES:-1000}
mkdir -p "$OUT"
rm -f "$OUT"/exhaust_*
WORK=$(mktemp -d)
HUB=""
trap '[ -n "$HUB" ] && kill "$HUB" 2>/dev/null; rm -rf "$WORK"' EXIT
log() { printf 'exhaust.sh: %s\n' "$*" >&2; }
TOKEN=exhaust-$RANDOM$RANDOM$RANDOM

cat >"$WORK/small.toml" <<EOF
[broker]
max_packet_size = 65536
outbound_queue_capacity = 100
outbound_queue_bytes = 262144
offline_queue_bytes = 262144
[registry]
max_property_bytes_per_device = 16384
EOF

# one NAME BINARY SECONDS PACKET_BYTES [CONFIG]: a fresh hub, one exhaust run against it.
one() {
  local name=$1 bin=$2 secs=$3 packet=$4 config=${5:-}
  local dir=$WORK/$name
  local args=(hub --data-dir "$dir" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 --admin-token "$TOKEN")
  [ -n "$config" ] && args+=(--config "$config")
  "$bin" "${args[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  HUB=$!
  for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  local port admin
  port=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/$name.out")
  admin=$(awk '$1 == "admin:" { print $2 }' "$WORK/$name.out")
  [ -n "$port" ] || { cat "$WORK/$name.err" >&2; log "$name: the hub did not start"; exit 1; }
  local command="\$ALIOT bench --register --product-key a1Exhaust --count $DEVICES --port \$PORT --admin-url \$ADMIN --admin-token \$TOKEN --workload exhaust --duration ${secs}s --drain 5s --packet-bytes $packet --hub-metrics \$ADMIN/metrics --server-pid \$HUB --format json --quiet"
  printf '%s\n' "$command${config:+   (hub: --config $(basename "$config"))}" >"$OUT/$name.cmd"
  log "$name"
  PORT=$port ADMIN=$admin HUB_PID=$HUB \
    "$ALIOT" bench --register --product-key a1Exhaust --count "$DEVICES" --port "$port" --admin-url "$admin" \
    --admin-token "$TOKEN" --workload exhaust --duration "${secs}s" --drain 5s --packet-bytes "$packet" \
    --hub-metrics "$admin/metrics" --server-pid "$HUB" --format json --quiet >"$OUT/$name.json" 2>"$OUT/$name.err" ||
    log "$name failed: $(tail -n 3 "$OUT/$name.err")"
  curl -s "$admin/metrics" >"$OUT/$name.metrics" || true
  kill "$HUB" 2>/dev/null && wait "$HUB" 2>/dev/null || true
  HUB=""
}

one exhaust_10s "$ALIOT" 10 263168
one exhaust_30s "$ALIOT" 30 263168
cp "$WORK/small.toml" "$OUT/exhaust_small.toml"
one exhaust_small "$ALIOT" 30 65536 "$OUT/exhaust_small.toml"
if [ -n "$ALIOT_BASE" ]; then
  one exhaust_base "$ALIOT_BASE" 30 263168
fi
python3 benches/py/render_report.py "$OUT" docs/PERFORMANCE.md exhaust
log "docs/PERFORMANCE.md updated (section exhaust)"
