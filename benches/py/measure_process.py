#!/usr/bin/env python3
"""Measures one simulated device process: time to connected (the hub's admin API says the
device is online), idle CPU over --idle seconds once connected, and RSS at the end. Starts the
command given after `--`, and stops it (SIGTERM, then SIGKILL) when done. Prints one JSON line.

    python3 benches/py/measure_process.py --admin URL --token T --product-key PK --device-name DN \
        [--idle 15] [--timeout 30] -- CMD ARGS...
"""

import argparse
import json
import os
import signal
import subprocess
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def online(admin, token, pk, dn):
    req = urllib.request.Request("%s/api/v1/products/%s/devices/%s" % (admin, pk, dn),
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.load(r).get("status") == "online"
    except OSError:
        return False


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--admin", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--product-key", required=True)
    p.add_argument("--device-name", required=True)
    p.add_argument("--idle", type=float, default=15.0)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--name", default="")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    start = time.time()
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = {"name": a.name, "command": " ".join(cmd)}
    try:
        while not online(a.admin, a.token, a.product_key, a.device_name):
            if child.poll() is not None:
                result["error"] = "exited with %s before connecting" % child.returncode
                break
            if time.time() - start > a.timeout:
                result["error"] = "not online within %ss" % a.timeout
                break
            time.sleep(0.005)
        else:
            result["time_to_connected_ms"] = round((time.time() - start) * 1000.0, 1)
            cpu0 = proc_cpu(child.pid)
            time.sleep(a.idle)
            cpu1 = proc_cpu(child.pid)
            result["idle_cpu_percent"] = round((cpu1 - cpu0) / a.idle * 100.0, 3)
            result["idle_seconds"] = a.idle
            result["rss_bytes"] = proc_status(child.pid, "VmRSS")
            # The part of RSS that is this process's own memory (not pages of its executable and
            # shared libraries, which other processes share).
            result["rss_anon_bytes"] = proc_status(child.pid, "RssAnon")
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
