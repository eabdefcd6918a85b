#!/usr/bin/env python3
"""The official Python SDK's thing-model calls (aliyun-iot-linkkit: thing_setup with a TSL file,
thing_post_property) against the hub, configured only with host and port.

    linkkit_thing.py PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET TSL_FILE PARAMS_JSON

Prints one JSON line: the post_reply's {"code", "data", "message"}; exits 1 when a step does not
happen within 20 s.
"""

import json
import sys
import threading

from linkkit import linkkit

WAIT = 20


def main():
    port, pk, dn, ds, tsl, params = sys.argv[1:7]
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=pk, device_name=dn, device_secret=ds)
    lk.config_mqtt(port=int(port), secure="", keep_alive=60)
    lk.thing_setup(tsl)
    enabled, answered, got = threading.Event(), threading.Event(), {}
    lk.on_thing_enable = lambda userdata: enabled.set()

    def on_post(request_id, code, data, message, userdata):
        got.update(code=code, data=data, message=message)
        answered.set()

    lk.on_thing_prop_post = on_post
    lk.connect_async()
    if not enabled.wait(WAIT):
        print(json.dumps({"error": "the thing model was not enabled"}))
        return 1
    rc, _ = lk.thing_post_property(json.loads(params))
    if rc != 0 or not answered.wait(WAIT):
        print(json.dumps({"error": "no post_reply", "rc": rc}))
        return 1
    lk.disconnect()
    print(json.dumps(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
