#!/usr/bin/env python3
"""The official Python SDK's thing-model calls (aliyun-iot-linkkit: thing_setup with a TSL file,
thing_post_property, thing_trigger_event, on_thing_call_service + thing_answer_service,
on_thing_prop_changed) against the hub, configured only with host and port.

    linkkit_thing.py PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET TSL_FILE MODE ARG

MODE post:  ARG is the params JSON; prints the post_reply's {"code", "data", "message"}.
MODE event: ARG is {"event": ID, "value": {...}}; prints the event post_reply's
            {"event", "code", "data", "message"}.
MODE serve: ARG is the outputs JSON every service call is answered with; prints "ready" once the
            thing model is enabled, then serves one service call and one property set and prints
            {"service": {"identifier", "params"}, "set": params}.

Prints one JSON line last; exits 1 when a step does not happen within 20 s.
"""

import json
import sys
import threading

from linkkit import linkkit

WAIT = 20


def fail(what, **more):
    print(json.dumps(dict(error=what, **more)), flush=True)
    return 1


def main():
    port, pk, dn, ds, tsl, mode, arg = sys.argv[1:8]
    arg = json.loads(arg)
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=pk, device_name=dn, device_secret=ds)
    lk.config_mqtt(port=int(port), secure="", keep_alive=60)
    lk.thing_setup(tsl)
    enabled, answered, got = threading.Event(), threading.Event(), {}
    lk.on_thing_enable = lambda userdata: enabled.set()

    def on_post(request_id, code, data, message, userdata):
        got.update(code=code, data=data, message=message)
        answered.set()

    def on_event(event, request_id, code, data, message, userdata):
        got.update(event=event, code=code, data=data, message=message)
        answered.set()

    served, changed = threading.Event(), threading.Event()

    def on_service(identifier, request_id, params, userdata):
        got["service"] = {"identifier": identifier, "params": params}
        lk.thing_answer_service(identifier, request_id, 200, arg)
        served.set()

    def on_changed(params, userdata):
        got["set"] = params
        changed.set()

    lk.on_thing_prop_post = on_post
    lk.on_thing_event_post = on_event
    lk.on_thing_call_service = on_service
    lk.on_thing_prop_changed = on_changed
    lk.connect_async()
    if not enabled.wait(WAIT):
        return fail("the thing model was not enabled")
    if mode == "post":
        rc, _ = lk.thing_post_property(arg)
        if rc != 0 or not answered.wait(WAIT):
            return fail("no post_reply", rc=rc)
    elif mode == "event":
        rc, _ = lk.thing_trigger_event((arg["event"], arg["value"]))
        if rc != 0 or not answered.wait(WAIT):
            return fail("no event post_reply", rc=rc)
    elif mode == "serve":
        print("ready", flush=True)
        if not served.wait(WAIT):
            return fail("no service call")
        if not changed.wait(WAIT):
            return fail("no property set")
    else:
        return fail("unknown mode " + mode)
    lk.disconnect()
    print(json.dumps(got), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
