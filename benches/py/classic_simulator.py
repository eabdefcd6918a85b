#!/usr/bin/env python3
"""Our own copy of the classic Alibaba Cloud IoT device simulator that users copy (spec §14).

Written from the description of that script, not copied from it: compute a timestamp, sign
"clientId..deviceName..productKey..timestamp.." with HMAC-SHA1 (or MD5), build the
`clientId|securemode=3,signmethod=...,timestamp=...|` clientId and the `deviceName&productKey`
username, connect with keepalive 120, subscribe one topic at QoS 0 in on_connect, print each
message with a local timestamp, pass the payload to an `on_exec` hook, and loop_forever().
Like the original: paho's own reconnect only, no TLS, no replies, no Alink.

It is the "one simulated device" baseline of benches/compare.sh (run with paho-mqtt<2):

    python3 benches/py/classic_simulator.py PK DN SECRET [--host H] [--port P]
"""

import argparse
import datetime
import hashlib
import hmac
import time

import paho.mqtt.client as mqtt


def now():
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def on_exec(payload):
    """Where the copied script acts on a message as a command (left empty, as users start)."""
    return payload


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("product_key")
    parser.add_argument("device_name")
    parser.add_argument("device_secret")
    parser.add_argument("--host", default=None, help="default: {pk}.iot-as-mqtt.cn-shanghai.aliyuncs.com")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--signmethod", default="hmacsha1", choices=["hmacsha1", "hmacmd5"])
    args = parser.parse_args()

    pk, dn, secret = args.product_key, args.device_name, args.device_secret
    host = args.host or "%s.iot-as-mqtt.cn-shanghai.aliyuncs.com" % pk
    timestamp = str(int(round(time.time() * 1000)))
    client_id = "%s.%s" % (pk, dn)
    content = "clientId" + client_id + "deviceName" + dn + "productKey" + pk + "timestamp" + timestamp
    digest = hashlib.sha1 if args.signmethod == "hmacsha1" else hashlib.md5
    password = hmac.new(secret.encode("utf-8"), content.encode("utf-8"), digest).hexdigest()
    mqtt_client_id = client_id + "|securemode=3,signmethod=" + args.signmethod + ",timestamp=" + timestamp + "|"
    username = dn + "&" + pk
    topic = "/%s/%s/user/get" % (pk, dn)

    def on_connect(client, userdata, flags, rc):
        print("%s: Connected with result code %s" % (now(), rc), flush=True)
        client.subscribe(topic, 0)

    def on_message(client, userdata, msg):
        print("%s: %s %s %s" % (now(), msg.topic, msg.qos, msg.payload), flush=True)
        on_exec(msg.payload)

    client = mqtt.Client(mqtt_client_id)
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, args.port, 120)
    client.loop_forever()


if __name__ == "__main__":
    main()
