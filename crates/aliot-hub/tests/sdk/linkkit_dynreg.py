#!/usr/bin/env python3
"""The official Python SDK (aliyun-iot-linkkit) registering a device over MQTT against the hub,
configured only with host and port (spec §6), then logging in with what it got.

    linkkit_dynreg.py register|regnwl PORT PRODUCT_KEY DEVICE_NAME PRODUCT_SECRET

Prints one JSON line: {"register_rc", "credentials", "connect_rc"}; exits 1 when a step does not
answer within 20 s.
"""

import json
import sys
import threading

from linkkit import linkkit

WAIT = 20


def main():
    mode, port, pk, dn, ps = sys.argv[1:6]
    port = int(port)
    got = {}
    answered = threading.Event()

    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=pk, device_name=dn, device_secret="",
                         auth_type=mode, product_secret=ps)
    lk.config_mqtt(port=port, secure="", keep_alive=60)
    if mode == "register":
        def on_register(rc, value, userdata):
            got.update(register_rc=rc, credentials={"device_secret": value})
            answered.set()
        lk.on_device_dynamic_register = on_register
    else:
        def on_register_nwl(rc, client_id, username, password):
            got.update(register_rc=rc, credentials={"client_id": client_id, "username": username,
                                                    "password": password})
            answered.set()
        lk.on_device_dynamic_register_nwl_reply = on_register_nwl
    lk.connect_async()
    if not answered.wait(WAIT):
        print(json.dumps({"error": "no registration answer", **got}))
        return 1
    lk.destroy()

    creds = got["credentials"]
    if mode == "register":
        device = linkkit.LinkKit(host_name="127.0.0.1", product_key=pk, device_name=dn,
                                 device_secret=creds["device_secret"])
    else:
        device = linkkit.LinkKit(host_name="127.0.0.1", product_key=pk, device_name=dn, device_secret="",
                                 client_id=creds["client_id"], username=creds["username"],
                                 password=creds["password"])
    device.config_mqtt(port=port, secure="", keep_alive=60, auto_reconnect_min_sec=30)
    connected = threading.Event()

    def on_connect(session_flag, rc, userdata):
        got["connect_rc"] = rc
        connected.set()
    device.on_connect = on_connect
    device.connect_async()
    if not connected.wait(WAIT):
        print(json.dumps({"error": "no CONNACK for the login", **got}))
        return 1
    device.disconnect()
    print(json.dumps(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
