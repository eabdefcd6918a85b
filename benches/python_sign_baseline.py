#!/usr/bin/env python3
"""Baseline for `cargo bench -p aliot-protocol --bench sign`: the CONNECT password as the
classic Python simulator computes it (spec §14), with the standard library `hmac`.

Each iteration builds the sign content and computes hmac.new(...).hexdigest(), like the Rust
`sign_password` benchmark. One process, one thread: the figure is signs per second per core.
Short rounds, reported as the median and the best round: on a busy machine the best round is
the one least disturbed by other processes (divan's "fastest" plays the same role).

    python3 benches/python_sign_baseline.py [--seconds 0.4] [--rounds 15] [--json]
"""

import argparse
import hashlib
import hmac
import json
import platform
import time

PK = "a14Xib5kdYd"
DN = "light1983432"
SECRET = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq"
PREFIX = "SN1928339"
TS = "1539421321846"
EXPECTED_SHA1 = "b2488041f64f425016b467ee1c94959ebd592ad1"

ALGORITHMS = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}


def sign_once(digestmod):
    content = "clientId" + PREFIX + "deviceName" + DN + "productKey" + PK + "timestamp" + TS
    return hmac.new(SECRET.encode(), content.encode(), digestmod).hexdigest()


def measure(digestmod, seconds):
    """Signs per second over about `seconds`, in batches to keep the clock out of the loop."""
    batch = 10_000
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            sign_once(digestmod)
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.4, help="length of one round (default 0.4)")
    ap.add_argument("--rounds", type=int, default=15, help="rounds per algorithm (default 15)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    assert sign_once(hashlib.sha1) == EXPECTED_SHA1, "the baseline does not compute the documented password"
    results = {}
    for name, digestmod in ALGORITHMS.items():
        rates = sorted(measure(digestmod, args.seconds) for _ in range(args.rounds))
        median, best = rates[len(rates) // 2], rates[-1]
        results[name] = {
            "median_signs_per_sec": round(median),
            "median_ns_per_sign": round(1e9 / median, 1),
            "best_signs_per_sec": round(best),
            "best_ns_per_sign": round(1e9 / best, 1),
        }
    if args.json:
        print(json.dumps({"python": platform.python_version(), "results": results}))
        return
    print(f"python {platform.python_version()} hmac, one thread, content built each time "
          f"({args.rounds} rounds of {args.seconds:g} s)")
    print(f"{'':<11} {'median':>14} {'':>12}   {'best round':>14}")
    for name, r in results.items():
        print(f"{name:<11} {r['median_signs_per_sec']:>10,} /s {r['median_ns_per_sign']:>9} ns   "
              f"{r['best_signs_per_sec']:>10,} /s {r['best_ns_per_sign']:>9} ns")


if __name__ == "__main__":
    main()
