#!/usr/bin/env bash
# benches/compare.sh: the performance comparison of docs/PERFORMANCE.md, measured in one run.
#
# Installs what it needs (mosquitto from Debian, a Python venv under benches/.venv with
# paho-mqtt<2 and aliyun-iot-linkkit, the official Node SDK into benches/node_modules), builds
# `aliot` in release (and the device-only `aliot`: no default features, profile release-small),
# starts `aliot hub` and mosquitto on free loopback ports, and measures side by side:
#   1. hub vs mosquitto: devices held and server RSS per device, connects accepted per second
#      and CONNACK latency, QoS 1 telemetry at the maximum and at a fixed offered load;
#   2. one simulated device: `aliot device run` (both binaries) vs the classic Python paho script
#      vs aliyun-iot-linkkit vs the Node SDK (RSS, idle CPU, time to connected);
#   3. many simulated devices in one process: `aliot bench` vs paho-mqtt vs the Node SDK;
#   4. signing: aliot vs Python's and Node's HMAC;
#   5. before and after: the same hub, device and bench measurements on a build of an earlier
#      commit (BASELINE), so that a change's effect is read in one run on the same machine;
#   6. devices that try to exhaust the hub (benches/exhaust.sh), the baseline's hub too;
#   7. dynamic registrations per second over MQTT and HTTP (benches/register.sh).
# Then it rewrites only its own sections of docs/PERFORMANCE.md (between
# `<!-- BEGIN compare.sh: … -->` and `<!-- END compare.sh: … -->`); the rest of the file is kept.
#
# Everything runs on loopback, every run is bounded in devices and seconds. Environment knobs:
#   FLEET=19000     devices held (hub and mosquitto), and the many-devices size
#   HOLD=10s        how long the fleet is held
#   SKIP_SIGN=1     skip the signing measurement (it builds the divan benchmark)
#   SKIP_INSTALL=1  do not install anything (use what is there)
#   BASELINE=REV    the earlier commit measured for "before and after" (default 44386fe, the
#                   code before issue 8's reshaping); BASELINE= (empty) skips it
# Raw results stay in benches/out/ (JSON lines + the command of each).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/benches/out
FLEET=${FLEET:-19000}
HOLD=${HOLD:-10s}
BASELINE=${BASELINE-44386fe}
SOURCE_IPS=127.0.0.2-127.0.0.9
RATE_N=$(( FLEET < 10000 ? FLEET : 10000 ))
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.cmd "$OUT"/*.txt "$OUT"/*.err
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf 'compare.sh: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------------------------------------
# 0. Install and build.
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  if ! command -v mosquitto >/dev/null; then
    log "installing mosquitto (Debian)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  fi
  if [ ! -x benches/.venv/bin/python ]; then
    log "creating benches/.venv"
    python3 -m venv benches/.venv
  fi
  benches/.venv/bin/pip install -q 'paho-mqtt<2' aliyun-iot-linkkit
  log "installing the Node SDK into benches/node_modules"
  (cd benches && npm install --no-audit --no-fund --silent)
fi
log "building aliot (release)"
cargo build --release -p aliot-cli --quiet
ALIOT=$ROOT/target/release/aliot
log "building the device-only aliot (release-small)"
cargo build -p aliot-cli --no-default-features --profile release-small --quiet
ALIOT_DEVICE=$ROOT/target/release-small/aliot
# The baseline: the earlier commit's `aliot`, built from a clean export of that commit in its
# own target directory (kept between runs, so a second run only rebuilds what changed).
ALIOT_BASE=""
if [ -n "$BASELINE" ]; then
  BASE_SRC=$ROOT/target/baseline-src
  rm -rf "$BASE_SRC" && mkdir -p "$BASE_SRC"
  git -C "$ROOT" archive "$BASELINE" | tar -x -C "$BASE_SRC"
  log "building the baseline aliot ($BASELINE, release)"
  (cd "$BASE_SRC" && CARGO_TARGET_DIR=$ROOT/target/baseline cargo build --release -p aliot-cli --quiet)
  ALIOT_BASE=$ROOT/target/baseline/release/aliot
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
PY=$ROOT/benches/.venv/bin/python
# Other work on the machine (builds) disturbs the figures: as root, run everything started from
# here (servers, benches, baselines) at a higher priority than that work.
PRIORITY="normal"
if [ "$(id -u)" -eq 0 ] && renice -n -15 -p $$ >/dev/null 2>&1; then PRIORITY="nice -15 (servers, benches and baselines alike)"; fi

# ---------------------------------------------------------------------------------------------
# 1. Servers: the hub and mosquitto, each on a free loopback port, in a temporary directory.
WORK=$(mktemp -d)
HUB_PID=""
MOSQ_PID=""
BASE_PID=""
cleanup() {
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  [ -n "$BASE_PID" ] && kill "$BASE_PID" 2>/dev/null && wait "$BASE_PID" 2>/dev/null
  [ -n "$MOSQ_PID" ] && kill "$MOSQ_PID" 2>/dev/null && wait "$MOSQ_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  python3 - "$1" <<'EOF'
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("port %s never opened" % sys.argv[1])
EOF
}

ADMIN_TOKEN=compare-$RANDOM$RANDOM$RANDOM
# start_hub BINARY NAME: starts `BINARY hub` in $WORK/NAME; sets STARTED_PID, STARTED_PORT, STARTED_ADMIN.
start_hub() {
  local bin=$1 name=$2
  "$bin" hub --data-dir "$WORK/$name" --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 --openapi 127.0.0.1:0 --admin-token "$ADMIN_TOKEN" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  STARTED_PID=$!
  for _ in $(seq 100); do grep -q 'stops the hub' "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  STARTED_PORT=$(awk '$1 == "mqtt:" { split($2, a, ":"); print a[2] }' "$WORK/$name.out")
  STARTED_ADMIN=$(awk '$1 == "admin:" { print $2 }' "$WORK/$name.out")
  [ -n "$STARTED_PORT" ] && [ -n "$STARTED_ADMIN" ] || { cat "$WORK/$name.out" "$WORK/$name.err" >&2; log "$name did not start"; exit 1; }
  log "$name: mqtt 127.0.0.1:$STARTED_PORT, admin $STARTED_ADMIN (pid $STARTED_PID)"
}
start_hub "$ALIOT" hub
HUB_PID=$STARTED_PID HUB_PORT=$STARTED_PORT ADMIN_URL=$STARTED_ADMIN

MOSQ_PORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest none
max_queued_messages 0
max_inflight_messages 0
EOF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
MOSQ_PID=$!
wait_port "$MOSQ_PORT"
log "mosquitto: 127.0.0.1:$MOSQ_PORT (pid $MOSQ_PID)"
export ALIOT ALIOT_DEVICE ALIOT_BASE HUB_PORT ADMIN_URL ADMIN_TOKEN HUB_PID MOSQ_PORT MOSQ_PID FLEET HOLD SOURCE_IPS PY ROOT WORK RATE_N

# run NAME 'COMMAND': records the command (unexpanded, so the report shows $VARIABLES, not ports
# or secrets) in OUT/NAME.cmd and its stdout in OUT/NAME.json (the last line is the result).
run() {
  local name=$1 command=$2
  printf '%s\n' "$command" >"$OUT/$name.cmd"
  log "$name"
  if ! eval "$command" >"$OUT/$name.json" 2>"$OUT/$name.err"; then
    log "$name failed: $(tail -n 3 "$OUT/$name.err")"
  fi
}

{
  printf '{"date": "%s", "machine": "%s", "cpus": %s, "kernel": "%s", ' "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$(uname -m)" "$(nproc)" "$(uname -r)"
  printf '"aliot": "%s", "mosquitto": "%s", ' "$("$ALIOT" --version)" "$("$MOSQUITTO" -h 2>/dev/null | head -n1 | tr -d '"')"
  printf '"python": "%s", "paho-mqtt": "%s", "aliyun-iot-linkkit": "%s", ' "$("$PY" --version 2>&1)" \
    "$("$PY" -c 'import paho.mqtt; print(paho.mqtt.__version__)')" \
    "$("$PY" -c 'import importlib.metadata as m; print(m.version("aliyun-iot-linkkit"))')"
  printf '"node": "%s", "alibabacloud-iot-device-sdk": "%s", "open files limit": "%s", ' "$(node --version)" \
    "$(node -p 'require("./benches/node_modules/alibabacloud-iot-device-sdk/package.json").version')" "$(ulimit -n)"
  printf '"aliot binary bytes": %s, ' "$(stat -c %s "$ALIOT")"
  printf '"baseline": "%s", ' "${BASELINE:-none}"
  printf '"aliot device-only binary bytes": %s, ' "$(stat -c %s "$ALIOT_DEVICE")"
  printf '"load average before": "%s", "priority": "%s"}\n' "$LOAD_BEFORE" "$PRIORITY"
} >"$OUT/environment.json"

# ---------------------------------------------------------------------------------------------
# 2. Hub vs mosquitto.
# Devices held: FLEET devices ramped at 5,000/s from two bench processes over 8 source addresses.
run hold_hub '$ALIOT bench --register --product-key a1Fleet --count $FLEET --port $HUB_PORT --admin-url $ADMIN_URL --admin-token $ADMIN_TOKEN --workload connect --rate 5000 --duration $HOLD --processes 2 --source-ip $SOURCE_IPS --server-pid $HUB_PID --hub-metrics $ADMIN_URL/metrics --format json --quiet'
run hold_mosquitto '$ALIOT bench --plain-auth bench:bench --product-key a1Fleet --count $FLEET --port $MOSQ_PORT --workload connect --rate 5000 --duration $HOLD --processes 2 --source-ip $SOURCE_IPS --server-pid $MOSQ_PID --format json --quiet'

# The registered fleet, for the other tools (and for `aliot bench --devices`).
"$ALIOT" admin --url "$ADMIN_URL" --token "$ADMIN_TOKEN" device list --product-key a1Fleet --format csv >"$WORK/fleet.csv"
export FLEET_CSV=$WORK/fleet.csv

# Maximum connect rate: as fast as the server accepts, 16 handshakes in flight per bench process
# (below mosquitto's listen backlog of 100, so no SYN is dropped and retried after 1 s). Three
# interleaved rounds each: a round lasts about a second, so the report takes the median round.
for round in 1 2 3; do
  run rate_hub_$round '$ALIOT bench --devices $FLEET_CSV --count $RATE_N --port $HUB_PORT --workload connect --rate 1000000 --max-pending 16 --duration 1s --processes 2 --source-ip $SOURCE_IPS --server-pid $HUB_PID --format json --quiet'
  run rate_mosquitto_$round '$ALIOT bench --plain-auth bench:bench --product-key a1Fleet --count $RATE_N --port $MOSQ_PORT --workload connect --rate 1000000 --max-pending 16 --duration 1s --processes 2 --source-ip $SOURCE_IPS --server-pid $MOSQ_PID --format json --quiet'
done

# QoS 1 telemetry, maximum: 100 devices, each keeping 8 posts in flight (closed loop).
run telemetry_max_hub '$ALIOT bench --devices $FLEET_CSV --count 100 --port $HUB_PORT --workload telemetry --qos 1 --interval 0 --inflight 8 --duration $HOLD --server-pid $HUB_PID --format json --quiet'
run telemetry_max_mosquitto '$ALIOT bench --plain-auth bench:bench --product-key a1Fleet --count 100 --port $MOSQ_PORT --workload telemetry --qos 1 --interval 0 --inflight 8 --duration $HOLD --server-pid $MOSQ_PID --format json --quiet'

# QoS 1 telemetry at a fixed offered load: half the hub's maximum, from 1000 devices (open loop:
# one post per device every INTERVAL_MS), and the same load from the 100 connections of the
# maximum run (so the traffic shape, several posts per connection in flight, is the same).
HALF=$(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(max(1000, int(d["msgs_per_s"] / 2)))' "$OUT/telemetry_max_hub.json" 2>/dev/null || echo 10000)
export INTERVAL_MS=$(( 1000 * 1000 / HALF ))
export INTERVAL_US_100=$(( 100 * 1000000 / HALF ))
run telemetry_fixed_hub '$ALIOT bench --devices $FLEET_CSV --count 1000 --port $HUB_PORT --workload telemetry --qos 1 --interval ${INTERVAL_MS}ms --inflight 8 --duration $HOLD --server-pid $HUB_PID --format json --quiet'
run telemetry_fixed_mosquitto '$ALIOT bench --plain-auth bench:bench --product-key a1Fleet --count 1000 --port $MOSQ_PORT --workload telemetry --qos 1 --interval ${INTERVAL_MS}ms --inflight 8 --duration $HOLD --server-pid $MOSQ_PID --format json --quiet'
run telemetry_half100_hub '$ALIOT bench --devices $FLEET_CSV --count 100 --port $HUB_PORT --workload telemetry --qos 1 --interval ${INTERVAL_US_100}us --inflight 8 --duration $HOLD --server-pid $HUB_PID --format json --quiet'
run telemetry_half100_mosquitto '$ALIOT bench --plain-auth bench:bench --product-key a1Fleet --count 100 --port $MOSQ_PORT --workload telemetry --qos 1 --interval ${INTERVAL_US_100}us --inflight 8 --duration $HOLD --server-pid $MOSQ_PID --format json --quiet'

# ---------------------------------------------------------------------------------------------
# 3. One simulated device, connected to the hub and idle for 15 s.
IFS=, read -r PK DN DS < <(grep -v '^productKey' "$FLEET_CSV" | head -n 1)
export PK DN DS
MEASURE='python3 $ROOT/benches/py/measure_process.py --admin $ADMIN_URL --token $ADMIN_TOKEN --product-key $PK --device-name $DN --idle 15'
run one_aliot "$MEASURE"' --name aliot -- $ALIOT device run --product-key $PK --device-name $DN --device-secret $DS --port $HUB_PORT'
run one_aliot_device "$MEASURE"' --name aliot-device-only -- $ALIOT_DEVICE device run --product-key $PK --device-name $DN --device-secret $DS --port $HUB_PORT'
run one_classic "$MEASURE"' --name classic -- $PY $ROOT/benches/py/classic_simulator.py $PK $DN $DS --host 127.0.0.1 --port $HUB_PORT'
run one_linkkit "$MEASURE"' --name linkkit -- $PY $ROOT/benches/py/linkkit_device.py $PK $DN $DS --port $HUB_PORT'
run one_node "$MEASURE"' --name node -- node $ROOT/benches/node/one_device.js $PK $DN $DS $HUB_PORT'

# ---------------------------------------------------------------------------------------------
# 4. Many simulated devices in one process, at most a minute each.
run many_aliot '$ALIOT bench --devices $FLEET_CSV --count $FLEET --port $HUB_PORT --workload connect --rate 1000000 --max-pending 64 --duration 5s --source-ip $SOURCE_IPS --format json --quiet'
run many_paho '$PY $ROOT/benches/py/many_paho.py --devices $FLEET_CSV --count $FLEET --port $HUB_PORT --seconds 60'
run many_node 'node --max-old-space-size=8192 $ROOT/benches/node/many_devices.js --devices $FLEET_CSV --count $FLEET --port $HUB_PORT --seconds 60 --out /dev/stdout'

# ---------------------------------------------------------------------------------------------
# 5. Signing, same run.
if [ "${SKIP_SIGN:-0}" != 1 ]; then
  run sign_python 'python3 $ROOT/benches/python_sign_baseline.py --json'
  run sign_node 'node $ROOT/benches/node_sign_baseline.js --json'
  printf '%s\n' 'cargo bench -p aliot-protocol --bench sign' >"$OUT/sign_rust.cmd"
  log "sign_rust"
  cargo bench -q -p aliot-protocol --bench sign 2>/dev/null | grep -E 'sign_|verify_|Hmac|fastest|│' >"$OUT/sign_rust.txt" || true
fi

# ---------------------------------------------------------------------------------------------
# 6. Before and after: the baseline build, measured as the current one is (the same bench,
#    the current `aliot bench`, drives both). Its hub runs only now, alone.
if [ -n "$ALIOT_BASE" ]; then
  kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  HUB_PID=""
  start_hub "$ALIOT_BASE" base
  BASE_PID=$STARTED_PID BASE_PORT=$STARTED_PORT BASE_ADMIN=$STARTED_ADMIN
  export BASE_PID BASE_PORT BASE_ADMIN
  run hold_base '$ALIOT bench --register --product-key a1Fleet --count $FLEET --port $BASE_PORT --admin-url $BASE_ADMIN --admin-token $ADMIN_TOKEN --workload connect --rate 5000 --duration $HOLD --processes 2 --source-ip $SOURCE_IPS --server-pid $BASE_PID --hub-metrics $BASE_ADMIN/metrics --format json --quiet'
  "$ALIOT" admin --url "$BASE_ADMIN" --token "$ADMIN_TOKEN" device list --product-key a1Fleet --format csv >"$WORK/base-fleet.csv"
  export BASE_CSV=$WORK/base-fleet.csv
  for round in 1 2 3; do
    run rate_base_$round '$ALIOT bench --devices $BASE_CSV --count $RATE_N --port $BASE_PORT --workload connect --rate 1000000 --max-pending 16 --duration 1s --processes 2 --source-ip $SOURCE_IPS --server-pid $BASE_PID --format json --quiet'
  done
  run telemetry_max_base '$ALIOT bench --devices $BASE_CSV --count 100 --port $BASE_PORT --workload telemetry --qos 1 --interval 0 --inflight 8 --duration $HOLD --server-pid $BASE_PID --format json --quiet'
  IFS=, read -r BPK BDN BDS < <(grep -v '^productKey' "$BASE_CSV" | head -n 1)
  export BPK BDN BDS
  run one_aliot_base 'python3 $ROOT/benches/py/measure_process.py --admin $BASE_ADMIN --token $ADMIN_TOKEN --product-key $BPK --device-name $BDN --idle 15 --name aliot-baseline -- $ALIOT_BASE device run --product-key $BPK --device-name $BDN --device-secret $BDS --port $BASE_PORT'
fi

# ---------------------------------------------------------------------------------------------
# 7. Devices that try to exhaust the hub (fresh hubs, the baseline's too): benches/exhaust.sh.
[ -n "${HUB_PID:-}" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
HUB_PID=""
ALIOT=$ALIOT ALIOT_BASE=$ALIOT_BASE OUT=$OUT bash benches/exhaust.sh

# ---------------------------------------------------------------------------------------------
# 8. Dynamic registrations per second (a fresh hub): benches/register.sh.
ALIOT=$ALIOT OUT=$OUT bash benches/register.sh

# ---------------------------------------------------------------------------------------------
printf '{"load average after": "%s", "variables in the commands": "FLEET=%s HOLD=%s RATE_N=%s INTERVAL_MS=%s INTERVAL_US_100=%s SOURCE_IPS=%s"}\n' \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$FLEET" "$HOLD" "$RATE_N" "$INTERVAL_MS" "$INTERVAL_US_100" "$SOURCE_IPS" >"$OUT/environment_after.json"
python3 benches/py/render_report.py "$OUT" docs/PERFORMANCE.md
log "docs/PERFORMANCE.md updated (raw results in benches/out/)"
