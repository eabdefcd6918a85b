#!/usr/bin/env python3
"""The official Python SDK's gateway API (aliyun-iot-linkkit: gateway_add_subdev_topo,
gateway_login_subdev, then the sub-device's own topics through publish_topic/subscribe_topic)
against the hub, configured only with host and port.

    linkkit_gateway.py PORT GW_PK GW_DN GW_DS SUB_PK SUB_DN SUB_DS

Prints one JSON line per step: {"step":"topo"}, {"step":"login"}, {"step":"post"} (each with the
platform's reply), then {"step":"set","cmd":…} once a property set reached the sub-device
(answered 200 on its reply topic). Exits 1 when a step does not happen within 20 s.
"""

import json
import sys
import threading

from linkkit import linkkit

WAIT = 20


def say(**line):
    print(json.dumps(line), flush=True)


def main():
    port, gpk, gdn, gds, spk, sdn, sds = sys.argv[1:8]
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=gpk, device_name=gdn, device_secret=gds)
    lk.config_mqtt(port=int(port), secure="", keep_alive=60)
    connected, topo, login, subscribed, posted, setted = (threading.Event() for _ in range(6))
    sub = "/sys/%s/%s" % (spk, sdn)

    lk.on_connect = lambda session_flag, rc, userdata: connected.set()

    def on_topo(request_id, code, data, message, userdata):
        say(step="topo", res=dict(code=code, data=data, message=message))
        topo.set()

    def on_login(request_id, code, data, message, userdata):
        say(step="login", res=dict(code=code, data=data, message=message))
        login.set()

    def on_message(topic, payload, qos, userdata):
        body = json.loads(payload)
        if topic == sub + "/thing/event/property/post_reply":
            say(step="post", res=body)
            posted.set()
        elif topic == sub + "/thing/service/property/set":
            lk.publish_topic(topic + "_reply", json.dumps(dict(id=body["id"], code=200, data={})))
            say(step="set", cmd=body)
            setted.set()

    lk.on_gateway_add_subdev_topo_reply = on_topo
    lk.on_gateway_login_subdev_reply = on_login
    lk.on_topic_message = on_message
    lk.on_subscribe_topic = lambda mid, granted_qos, userdata: subscribed.set()
    lk.connect_async()
    if not connected.wait(WAIT):
        return say(error="not connected") or 1
    lk.gateway_add_subdev_topo([[spk, sdn, sds]])
    if not topo.wait(WAIT):
        return say(error="no topo add reply") or 1
    lk.gateway_login_subdev([[spk, sdn, sds]])
    if not login.wait(WAIT):
        return say(error="no login reply") or 1
    lk.subscribe_topic([(sub + "/thing/event/property/post_reply", 1), (sub + "/thing/service/property/set", 1)])
    if not subscribed.wait(WAIT):
        return say(error="not subscribed") or 1
    post = dict(id="7", version="1.0", params=dict(Temperature=21.5), method="thing.event.property.post")
    lk.publish_topic(sub + "/thing/event/property/post", json.dumps(post))
    if not posted.wait(WAIT):
        return say(error="no post reply") or 1
    if not setted.wait(WAIT):
        return say(error="no property set") or 1
    lk.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
