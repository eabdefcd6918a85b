#!/usr/bin/env python3
"""Many signed devices in one Python process: paho-mqtt (<2) clients driven by ONE selector
(epoll) loop, the leanest way to simulate a fleet with paho. Each device signs its own CONNECT
(HMAC-SHA1, like the classic script). Connects as fast as one thread can for at most --seconds,
then prints one JSON line: devices reached, time, RSS per device.

    python3 benches/py/many_paho.py --devices fleet.csv --count 19000 --port 1883 [--seconds 60]
"""

import argparse
import hashlib
import hmac
import json
import selectors
import time

import paho.mqtt
import paho.mqtt.client as mqtt


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", required=True, help="CSV productKey,deviceName,deviceSecret")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--keepalive", type=int, default=120)
    args = p.parse_args()

    rows = []
    with open(args.devices) as f:
        for line in f:
            cols = [c.strip() for c in line.strip().split(",")]
            if len(cols) < 3 or cols[0] == "productKey" or not cols[0]:
                continue
            rows.append(cols[:3])
    rows = rows[: args.count]

    sel = selectors.DefaultSelector()
    state = {"connected": 0, "refused": 0}
    clients = []

    def on_connect(client, userdata, flags, rc):
        if rc == 0:
            state["connected"] += 1
        else:
            state["refused"] += 1

    rss0 = rss_bytes()
    start = time.time()
    deadline = start + args.seconds
    next_misc = start + 1.0
    i = 0
    errors = 0
    while time.time() < deadline:
        # Start a batch of connects, then service the sockets (one loop does both).
        batch_end = min(i + 50, len(rows))
        while i < batch_end:
            pk, dn, secret = rows[i]
            i += 1
            ts = str(int(time.time() * 1000))
            cid = "%s.%s" % (pk, dn)
            content = "clientId" + cid + "deviceName" + dn + "productKey" + pk + "timestamp" + ts
            pw = hmac.new(secret.encode(), content.encode(), hashlib.sha1).hexdigest()
            c = mqtt.Client(cid + "|securemode=3,signmethod=hmacsha1,timestamp=" + ts + "|")
            c.username_pw_set(dn + "&" + pk, pw)
            c.on_connect = on_connect
            try:
                c.connect(args.host, args.port, args.keepalive)
            except OSError:
                errors += 1
                continue
            sel.register(c.socket(), selectors.EVENT_READ, c)
            clients.append(c)
        for key, _ in sel.select(timeout=0 if i < len(rows) else 0.2):
            key.data.loop_read()
        now = time.time()
        if now >= next_misc:
            for c in clients:
                if c.want_write():
                    c.loop_write()
                c.loop_misc()
            next_misc = now + 1.0
        if state["connected"] + state["refused"] >= len(rows):
            break
    elapsed = time.time() - start
    rss = rss_bytes()
    n = state["connected"]
    print(json.dumps({
        "tool": "paho-mqtt %s (Python, one selector loop)" % paho.mqtt.__version__,
        "devices": len(rows),
        "connected": n,
        "refused": state["refused"],
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rss_bytes": rss,
        "rss_per_device_kib": round((rss - rss0) / 1024.0 / n, 3) if n else None,
    }))


if __name__ == "__main__":
    main()
