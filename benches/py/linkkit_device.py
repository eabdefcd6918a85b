#!/usr/bin/env python3
"""One device on the official Python SDK (aliyun-iot-linkkit, with paho-mqtt<2), pointed at the
hub over plain TCP as spec §6 describes; connects and idles until terminated.

    python3 benches/py/linkkit_device.py PK DN SECRET --port P
"""

import argparse
import signal
import threading

from linkkit import linkkit


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("product_key")
    p.add_argument("device_name")
    p.add_argument("device_secret")
    p.add_argument("--port", type=int, default=1883)
    a = p.parse_args()
    lk = linkkit.LinkKit(host_name="127.0.0.1", product_key=a.product_key, device_name=a.device_name,
                         device_secret=a.device_secret)
    lk.config_mqtt(port=a.port, secure="", keep_alive=60)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lk.connect_async()
    stop.wait()
    lk.disconnect()


if __name__ == "__main__":
    main()
