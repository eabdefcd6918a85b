#!/usr/bin/env bash
# benches/amqp.sh: server-side subscription throughput to ONE AMQP consumer (docs/PERFORMANCE.md,
# "AMQP"; issue 14): COUNT devices post properties every INTERVAL at QoS 1 (`aliot bench -w
# telemetry`), the product's relation forwards device data to DEFAULT_GROUP, and one rhea consumer
# (benches/node/amqp_consumer.js, the official sample's settings: window 1000, accept) counts
# messages for SECONDS and the latency hub receipt (`gmtCreate`) → consumer receipt.
#
#   bash benches/amqp.sh
# Then IDLE (1000) idle consumers attached: the hub's RSS before and with them.
# Environment: COUNT (1000), INTERVAL (100ms), SECONDS_RUN (20), IDLE (1000), NODE_MODULES
# (rhea's node_modules; default .sdks/node/node_modules), AMQP_PORT (15672).

set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-1000}
INTERVAL=${INTERVAL:-100ms}
SECS=${SECONDS_EACH:-${SECONDS_RUN:-20}}
NODE_MODULES=${NODE_MODULES:-$PWD/.sdks/node/node_modules}
PORT=${AMQP_PORT:-15672}
cargo build --release -p aliot-cli >&2
BIN=$PWD/target/release/aliot
DIR=$(mktemp -d)
trap 'kill $HUB 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN" hub --data-dir "$DIR" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 \
  --amqp 127.0.0.1:0 --amqp-plain "127.0.0.1:$PORT" > "$DIR/banner" 2>/dev/null &
HUB=$!
until grep -q 'stops the hub' "$DIR/banner" 2>/dev/null; do sleep 0.2; done
MQTT=$(awk '$1=="mqtt:"{print $2}' "$DIR/banner")
ADMIN=(--data-dir "$DIR")
PK=$("$BIN" admin "${ADMIN[@]}" product create --name amqp-bench | sed -n 's/.*"productKey": *"\([^"]*\)".*/\1/p')
KEY=$("$BIN" admin "${ADMIN[@]}" access-key create)
AK=$(echo "$KEY" | sed -n 's/.*"accessKeyId": *"\([^"]*\)".*/\1/p')
SK=$(echo "$KEY" | sed -n 's/.*"accessKeySecret": *"\([^"]*\)".*/\1/p')
"$BIN" admin "${ADMIN[@]}" product subscribe --product-key "$PK" --flag DeviceDataFlag > /dev/null
NODE_PATH=$NODE_MODULES node benches/node/amqp_consumer.js 127.0.0.1 "$PORT" "$AK" "$SK" "$SECS" &
CONSUMER=$!
"$BIN" bench --host 127.0.0.1 --port "${MQTT##*:}" --product-key "$PK" -n "$COUNT" --register \
  --data-dir "$DIR" -w telemetry --interval "$INTERVAL" --qos 1 --duration "$((SECS + 10))s" >&2 || true
wait $CONSUMER
echo "hub RSS after the run: $(ps -o rss= -p $HUB) KiB"

# IDLE consumers (default 1000) attached over groups of at most 128: the hub's RSS before
# and with them.
IDLE=${IDLE:-1000}
IDLE_GROUPS=()
for g in $(seq 1 $(( (IDLE + 124) / 125 ))); do
  "$BIN" admin "${ADMIN[@]}" consumer-group create --group-id "idle$g" > /dev/null
  IDLE_GROUPS+=("idle$g")
done
BEFORE=$(ps -o rss= -p $HUB)
NODE_PATH=$NODE_MODULES node benches/node/amqp_idle.js 127.0.0.1 "$PORT" "$AK" "$SK" "$IDLE" "${IDLE_GROUPS[@]}" > "$DIR/idle" &
IDLER=$!
until [ -s "$DIR/idle" ]; do sleep 0.5; done
echo "idle consumers: $(cat "$DIR/idle"); hub RSS $BEFORE KiB before, $(ps -o rss= -p $HUB) KiB with them"
kill $IDLER
