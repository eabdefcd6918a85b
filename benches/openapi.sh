#!/usr/bin/env bash
# benches/openapi.sh: Aliyun OpenAPI `Pub` calls per second (docs/PERFORMANCE.md, "OpenAPI";
# issue 14).
#
# Runs crates/aliot-hub/examples/openapi_pub.rs: an in-process hub, one connected device
# subscribed to its /user/get topic, CONCURRENCY clients each on a kept-alive connection sending
# signature-V1 `Pub` requests (QoS 0, 64-byte message) back to back for SECONDS; each
# concurrency in CONCURRENCIES once. Output: calls/s, latency p50/p90/p99/max (request written
# → answer read) and what the device received.
#
#   bash benches/openapi.sh
# Environment: CONCURRENCIES (default "1 8 32 128"), SECONDS (10), OUT (benches/out).

set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/benches/out}
SECONDS_EACH=${SECONDS:-10}
mkdir -p "$OUT"
cargo build --release -p aliot-hub --example openapi_pub >&2
for c in ${CONCURRENCIES:-1 8 32 128}; do
  target/release/examples/openapi_pub "$c" "$SECONDS_EACH" | tee -a "$OUT/openapi.txt"
done
