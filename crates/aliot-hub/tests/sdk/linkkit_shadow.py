#!/usr/bin/env python3
"""The official Python SDK's shadow calls (aliyun-iot-linkkit: thing_update_shadow,
thing_get_shadow, on_thing_shadow_get) against the hub, configured only with host and port.

    linkkit_shadow.py PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET

Updates the reported state (version 1), then gets the document. Prints one JSON line:
{"update": <the reply to the update>, "get": <the reply to the get>, "version": <the SDK's
latest shadow version>}; exits 1 when a step does not happen within 20 s.
"""

import json
import queue
import sys
import threading

from linkkit import linkkit

WAIT = 20


def main():
    port, pk, dn, ds = sys.argv[1:5]
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=pk, device_name=dn, device_secret=ds)
    lk.config_mqtt(port=int(port), secure="", keep_alive=60)
    lk.thing_setup()
    enabled, replies = threading.Event(), queue.Queue()
    lk.on_thing_enable = lambda userdata: enabled.set()
    lk.on_thing_shadow_get = lambda payload, userdata: replies.put(payload)
    lk.connect_async()
    if not enabled.wait(WAIT):
        print(json.dumps({"error": "the thing model was not enabled"}))
        return 1
    rc, _ = lk.thing_update_shadow({"color": "red", "brightness": 40}, 1)
    if rc != 0:
        print(json.dumps({"error": "update not sent", "rc": rc}))
        return 1
    try:
        update = replies.get(timeout=WAIT)
    except queue.Empty:
        print(json.dumps({"error": "no reply to the update"}))
        return 1
    rc, _ = lk.thing_get_shadow()
    try:
        got = replies.get(timeout=WAIT)
    except queue.Empty:
        print(json.dumps({"error": "no reply to the get", "rc": rc}))
        return 1
    version = lk.local_get_latest_shadow().get_version()
    lk.disconnect()
    print(json.dumps({"update": update, "get": got, "version": version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
