#!/usr/bin/env bash
# benches/register.sh: dynamic registrations per second on `aliot hub` (docs/PERFORMANCE.md,
# "Dynamic registration"; issue 10).
#
# `aliot bench --workload register`: COUNT devices each register once with the productSecret,
# at most PENDING registrations in flight per bench process, on one fresh hub (its own data
# directory, free loopback ports, the device HTTP listener on):
#   register_mqtt_regnwl  over MQTT without pre-registration (the hub creates each device);
#   register_mqtt_pre     over MQTT, devices registered beforehand (a new deviceSecret each);
#   register_http         over HTTP (/auth/register/device), devices registered beforehand;
#   register_https        the same over HTTPS (a second fresh hub, --device-https, its local CA).
# Every registration is durable before it is answered. Then it rewrites the "register" section
# of docs/PERFORMANCE.md.
#
#   cargo build --release -p aliot-cli && bash benches/register.sh
# Environment: ALIOT (default target/release/aliot), COUNT (10000), PENDING (64), OUT
# (benches/out). REGISTRY=postgres: each hub keeps its registry on a fresh local PostgreSQL
# (scripts/local-infra.sh; the Debian package postgresql) instead of registry.redb; the results
# then go to OUT/register_*.json only (docs/PERFORMANCE.md is not rewritten).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benches/out}
ALIOT=${ALIOT:-$ROOT/target/release/aliot}
COUNT=${COUNT:-10000}
PENDING=${PENDING:-64}
mkdir -p "$OUT"
rm -f "$OUT"/register_*
WORK=$(mktemp -d)
HUB=""
INFRA=""
REGISTRY=${REGISTRY:-redb}
trap '{ [ -n "$HUB" ] && kill "$HUB"; } 2>/dev/null || true; { [ -n "$INFRA" ] && bash scripts/local-infra.sh stop "$INFRA"; } || true; rm -rf "$WORK"' EXIT
log() { printf 'register.sh: %s\n' "$*" >&2; }
TOKEN=register-$RANDOM$RANDOM$RANDOM

# start_hub NAME FLAG: a fresh hub with the device listener (FLAG --device-http or
# --device-https); sets HUB, PORT, ADMIN, DEVICE_HTTP and PS (the product a1RegBench allows
# dynamic registration).
start_hub() {
  local name=$1 flag=$2
  local registry=()
  if [ "$REGISTRY" = postgres ]; then
    local env
    env=$(bash scripts/local-infra.sh start pg)
    INFRA=$(sed -n 's/^ALIOT_INFRA_DIR=//p' <<<"$env")
    registry=(--registry "$(sed -n 's/^ALIOT_PG_URL=//p' <<<"$env")")
  fi
  mkdir -p "$WORK/$name"
  "$ALIOT" hub --data-dir "$WORK/$name" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 "$flag" 127.0.0.1:0 \
    --admin-token "$TOKEN" "${registry[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  HUB=$!
  for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  PORT=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/$name.out")
  ADMIN=$(awk '$1 == "admin:" { print $2 }' "$WORK/$name.out")
  DEVICE_HTTP=$(awk '$1 == "device" && $2 == "http:" { print $3 }' "$WORK/$name.out")
  [ -n "$PORT" ] && [ -n "$DEVICE_HTTP" ] || { cat "$WORK/$name.err" >&2; log "the hub did not start"; exit 1; }
  PS=$("$ALIOT" admin --url "$ADMIN" --token "$TOKEN" product create --name registrations \
    --product-key a1RegBench --dynamic-registration | python3 -c 'import json, sys; print(json.load(sys.stdin)["productSecret"])')
}
stop_hub() {
  kill "$HUB" 2>/dev/null && wait "$HUB" 2>/dev/null || true
  HUB=""
  if [ -n "$INFRA" ]; then
    bash scripts/local-infra.sh stop "$INFRA"
    INFRA=""
  fi
}

start_hub hub --device-http

# run NAME ARGS…: one bench run, its command recorded (unexpanded) in OUT/NAME.cmd.
run() {
  local name=$1
  shift
  printf '%s\n' "\$ALIOT bench --workload register --product-key a1RegBench --product-secret \$PS --count $COUNT --port \$PORT --rate 1000000 --max-pending $PENDING --duration 0s --format json --quiet $*" \
    | sed "s#$ADMIN#\$ADMIN#g; s#$DEVICE_HTTP#\$DEVICE_HTTP#g; s#$TOKEN#\$TOKEN#g" >"$OUT/$name.cmd"
  log "$name"
  "$ALIOT" bench --workload register --product-key a1RegBench --product-secret "$PS" --count "$COUNT" \
    --port "$PORT" --rate 1000000 --max-pending "$PENDING" --duration 0s --format json --quiet "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.err" || log "$name failed: $(tail -n 3 "$OUT/$name.err")"
}

run register_mqtt_regnwl --prefix nwl-
run register_mqtt_pre --prefix pre- --register --admin-url "$ADMIN" --admin-token "$TOKEN" --register-auth-type register
run register_http --prefix http- --register --admin-url "$ADMIN" --admin-token "$TOKEN" --register-auth-type register \
  --register-url "$DEVICE_HTTP"
curl -s "$ADMIN/metrics" >"$OUT/register.metrics" || true
stop_hub

# HTTPS: the certificate of the hub's local CA names localhost.
start_hub hubs --device-https
CA=$WORK/hubs/tls/ca.pem
DEVICE_HTTPS=${DEVICE_HTTP/127.0.0.1/localhost}
run register_https --prefix https- --register --admin-url "$ADMIN" --admin-token "$TOKEN" --register-auth-type register \
  --register-url "$DEVICE_HTTPS" --tls --ca-file "$CA"
sed -i "s#$DEVICE_HTTPS#\$DEVICE_HTTPS#g; s#$CA#\$CA#g" "$OUT/register_https.cmd"
stop_hub
printf '{"date": "%s", "count": %s, "pending": %s, "load average after": "%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$COUNT" "$PENDING" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/register_env.json"
if [ "$REGISTRY" = redb ]; then
  python3 benches/py/render_report.py "$OUT" docs/PERFORMANCE.md register
fi
