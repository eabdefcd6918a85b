# A STOMP consumer written as Aliyun's official Python 3 sample for server-side subscription
# (stomp.py): the same aksign username/password as AMQP, `stomp.Connection([(host, port)],
# heartbeats=(0, 300))`, `set_ssl(for_hosts=..., ssl_version=ssl.PROTOCOL_TLS)` (without a CA,
# as the sample, or with the hub's CA), `connect(username, password, wait=True)`,
# `subscribe(destination='/topic/#', id=1, ack='auto')`, a listener whose `on_message(frame)`
# reads `frame.body` and the headers.
#
# Usage: python stomp_consumer.py HOST PORT CA_PEM|noverify|plain ACCESS_KEY SECRET GROUP COUNT MODE
#   MODE: auto (the sample), client-hold (ack='client', never acknowledges), client-ack (ack='client',
#   acknowledges each message).
# Prints one JSON line per message, then DONE after COUNT messages (and disconnects), or ERROR <text>.
import base64
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time

import stomp

host, port, ca, access_key, access_secret, group_id, count, mode = sys.argv[1:9]
port = int(port)
timestamp = str(int(time.time() * 1000))
client_id = "stomp-consumer"
username = (client_id + "|authMode=aksign,signMethod=hmacsha1,timestamp=" + timestamp + ",authId=" + access_key
            + ",iotInstanceId=,consumerGroupId=" + group_id + "|")
sign_content = "authId=" + access_key + "&timestamp=" + timestamp
password = base64.b64encode(hmac.new(access_secret.encode("utf-8"), sign_content.encode("utf-8"),
                                     hashlib.sha1).digest()).decode("utf-8")

done = threading.Event()
errored = threading.Event()


class MyListener(stomp.ConnectionListener):
    def __init__(self, conn):
        self.conn = conn
        self.seen = 0
        self.want = int(count)

    def on_error(self, frame):
        print("ERROR frame " + frame.headers.get("message", "") + " " + str(frame.body), flush=True)
        errored.set()

    def on_message(self, frame):
        h = frame.headers
        print(json.dumps({
            "topic": h.get("topic"),
            "messageId": h.get("messageId"),
            "generateTime": h.get("generateTime"),
            "qos": h.get("qos"),
            "message_id": h.get("message-id"),
            "destination": h.get("destination"),
            "subscription": h.get("subscription"),
            "content_length": h.get("content-length"),
            "content_type": h.get("content-type"),
            "body": frame.body,
        }), flush=True)
        if mode == "client-ack":
            self.conn.ack(h["message-id"], h["subscription"])
        self.seen += 1
        if self.seen >= self.want:
            done.set()

    def on_heartbeat_timeout(self):
        print("ERROR heartbeat timeout", flush=True)
        done.set()

    def on_disconnected(self):
        done.set()


conn = stomp.Connection([(host, port)], heartbeats=(0, 300))
if ca == "noverify":
    conn.set_ssl(for_hosts=[(host, port)], ssl_version=ssl.PROTOCOL_TLS)
elif ca != "plain":
    conn.set_ssl(for_hosts=[(host, port)], ca_certs=ca, ssl_version=ssl.PROTOCOL_TLS)
listener = MyListener(conn)
conn.set_listener("", listener)
try:
    conn.connect(username, password, wait=True)
except stomp.exception.ConnectFailedException as e:
    # on_error runs on the receiver thread right after the failure is flagged: let it print.
    errored.wait(10)
    print("ERROR ConnectFailedException " + repr(e), flush=True)
    sys.exit(0)
conn.subscribe(destination="/topic/#", id=1, ack="auto" if mode == "auto" else "client")
# A bound, not a synchronisation: the test's guard kills the process long before.
done.wait(120)
if listener.seen >= listener.want:
    print("DONE", flush=True)
else:
    print("ERROR disconnected after %d message(s)" % listener.seen, flush=True)
conn.disconnect()
