# An AMQP consumer written as Aliyun's official python-qpid-proton sample for server-side
# subscription: aksign username/password computed here, `Container(handler).run()`,
# `container.connect(url, user=..., password=..., heartbeat=60)`, `create_receiver(conn)`,
# `message.properties`, `message.body`.
#
# Usage: python proton_consumer.py HOST PORT CA_PEM|plain ACCESS_KEY SECRET GROUP COUNT accept|hold|second-link
# Prints one JSON line per message, then DONE after COUNT messages (and closes), or ERROR <text>.
import base64
import hashlib
import hmac
import json
import sys
import time

from proton import SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

host, port, ca, access_key, access_secret, group_id, count, mode = sys.argv[1:9]
timestamp = str(int(time.time() * 1000))
client_id = "proton-consumer"
user_name = (client_id + "|authMode=aksign,signMethod=hmacsha1,timestamp=" + timestamp + ",authId=" + access_key
             + ",iotInstanceId=,consumerGroupId=" + group_id + "|")
sign_content = "authId=" + access_key + "&timestamp=" + timestamp
password = base64.b64encode(hmac.new(access_secret.encode("utf-8"), sign_content.encode("utf-8"),
                                     hashlib.sha1).digest()).decode("utf-8")


class Closer(object):
    def __init__(self, connection):
        self.connection = connection

    def on_timer_task(self, event):
        self.connection.close()


class AmqpClient(MessagingHandler):
    def __init__(self):
        # Settled by hand (the sample's auto-accept would settle after on_message, i.e. after
        # this script closed the connection on its last message).
        super(AmqpClient, self).__init__(auto_accept=False)
        self.seen = 0
        self.want = int(count)

    def on_start(self, event):
        if ca == "plain":
            url = "amqp://" + host + ":" + port
            conn = event.container.connect(url, user=user_name, password=password, heartbeat=60,
                                           allowed_mechs="PLAIN", allow_insecure_mechs=True)
        else:
            url = "amqps://" + host + ":" + port
            ssl_domain = SSLDomain(SSLDomain.MODE_CLIENT)
            ssl_domain.set_trusted_ca_db(ca)
            ssl_domain.set_peer_authentication(SSLDomain.VERIFY_PEER)
            conn = event.container.connect(url, user=user_name, password=password, heartbeat=60,
                                           ssl_domain=ssl_domain, allowed_mechs="PLAIN")
        self.receiver = event.container.create_receiver(conn)
        if mode == "second-link":
            self.second = event.container.create_receiver(conn)

    def on_message(self, event):
        if self.seen >= self.want:
            # Prefetched beyond COUNT: left unsettled, back to the group on close.
            return
        message = event.message
        # The sample's `message.body.decode('utf-8')` is Python 2.7 with proton 0.29, where a
        # binary body is a str; proton 0.40 on Python 3 hands it over as a memoryview (against
        # the cloud too), so it goes through bytes() first.
        content = bytes(message.body).decode("utf-8")
        print(json.dumps({
            "topic": message.properties.get("topic"),
            "messageId": message.properties.get("messageId"),
            "generateTime": message.properties.get("generateTime"),
            "qos": message.properties.get("qos"),
            "message_id": message.id,
            "body": content,
        }), flush=True)
        if mode == "accept":
            self.accept(event.delivery)
        self.seen += 1
        if self.seen == self.want:
            print("DONE", flush=True)
            # Let the dispositions go out before closing (a disposition racing the close may
            # be lost, and the message delivered again: duplicates are allowed, as on the cloud).
            event.container.schedule(0.2, Closer(event.connection))

    def on_link_error(self, event):
        cond = event.link.remote_condition
        print("ERROR link " + (cond.name + " " + str(cond.description) if cond else ""), flush=True)
        event.connection.close()

    def on_transport_error(self, event):
        cond = event.transport.condition
        print("ERROR transport " + (cond.name + " " + str(cond.description) if cond else ""), flush=True)

    def on_connection_error(self, event):
        print("ERROR connection", flush=True)


Container(AmqpClient()).run()
