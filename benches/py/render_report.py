#!/usr/bin/env python3
"""Renders the measurements of benches/compare.sh (benches/out/*.json + *.cmd) into the sections
of docs/PERFORMANCE.md that compare.sh owns: the text between
`<!-- BEGIN compare.sh: NAME -->` and `<!-- END compare.sh: NAME -->` is replaced; every other
line of the file (sections other scripts or people write) is kept as it is. Missing sections are
appended at the end.

    python3 benches/py/render_report.py benches/out docs/PERFORMANCE.md
"""

import json
import os
import re
import sys


def load(out, name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return None


def median_round(out, base, key="connect_rate"):
    """The median of the rounds base_1, base_2, … by `key`, and the list of their values."""
    rounds = []
    i = 1
    while True:
        d = load(out, "%s_%d" % (base, i))
        if d is None and not os.path.exists(os.path.join(out, "%s_%d.cmd" % (base, i))):
            break
        if d is not None:
            rounds.append(d)
        i += 1
    if not rounds:
        return load(out, base), []
    rounds.sort(key=lambda d: d.get(key) or 0)
    return rounds[len(rounds) // 2], [d.get(key) for d in rounds]


def cmd(out, name):
    path = os.path.join(out, name + ".cmd")
    if not os.path.exists(path):
        return "(not run)"
    with open(path) as f:
        return " ".join(f.read().split())


def num(x, fmt="{:,.0f}"):
    if x is None:
        return "n/a"
    return fmt.format(x)


def ratio(a, b, fmt="{:.2f}×"):
    if a is None or b in (None, 0):
        return "n/a"
    return fmt.format(a / b)


def g(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k) if isinstance(d, dict) else None
    return d


def cpu_cores(d):
    c = g(d, "server_cpu_seconds")
    t = g(d, "duration_s")
    if c is None or not t:
        return None
    return c / t


def commands(out, names, note=""):
    lines = ["", "Commands (run by `benches/compare.sh`; `$ALIOT` is `target/release/aliot`%s, ports and PIDs are" % note,
             "those of the servers it started):", "", "```sh"]
    for n in names:
        lines.append("# %s" % n)
        lines.append(cmd(out, n))
    lines.append("```")
    return lines


def section_environment(out):
    env = load(out, "environment") or {}
    env.update(load(out, "environment_after") or {})
    rows = ["| | |", "|---|---|"]
    for k in ["date", "machine", "cpus", "kernel", "aliot", "mosquitto", "python", "paho-mqtt", "aliyun-iot-linkkit", "node",
              "alibabacloud-iot-device-sdk", "open files limit", "load average before", "load average after", "priority", "variables in the commands"]:
        rows.append("| %s | %s |" % (k, env.get(k, "n/a")))
    return ["Every figure below comes from one run of `benches/compare.sh` on this machine, bench and servers on the",
            "same box over loopback (the bench in its own processes). Re-run it to regenerate these sections.", ""] + rows


def section_fleet(out):
    hub, mq = load(out, "hold_hub"), load(out, "hold_mosquitto")
    (rh, rh_all), (rm, rm_all) = median_round(out, "rate_hub"), median_round(out, "rate_mosquitto")
    mh, mm = load(out, "telemetry_max_hub"), load(out, "telemetry_max_mosquitto")
    fh, fm = load(out, "telemetry_fixed_hub"), load(out, "telemetry_fixed_mosquitto")
    hh, hm = load(out, "telemetry_half100_hub"), load(out, "telemetry_half100_mosquitto")
    L = []
    L.append("### Devices held, and server memory per device")
    L.append("")
    L.append("| | aliot hub (signed CONNECT, `_ss=1`) | mosquitto (plain auth) | hub / mosquitto |")
    L.append("|---|---|---|---|")
    L.append("| devices held / asked | %s / %s | %s / %s | |" % (num(g(hub, "connected")), num(g(hub, "devices")),
                                                           num(g(mq, "connected")), num(g(mq, "devices"))))
    L.append("| refused, errors, dropped | %s, %s, %s | %s, %s, %s | |" % (
        json.dumps(g(hub, "refused")), num(g(hub, "connect_errors")), num(g(hub, "dropped")),
        json.dumps(g(mq, "refused")), num(g(mq, "connect_errors")), num(g(mq, "dropped"))))
    L.append("| server RSS at peak | %s MiB | %s MiB | %s |" % (
        num((g(hub, "server_rss_bytes") or 0) / 1048576, "{:.1f}"), num((g(mq, "server_rss_bytes") or 0) / 1048576, "{:.1f}"),
        ratio(g(hub, "server_rss_bytes"), g(mq, "server_rss_bytes"))))
    L.append("| server RSS per device (peak − before) | %s KiB | %s KiB | %s |" % (
        num(g(hub, "server_rss_per_device_kib"), "{:.2f}"), num(g(mq, "server_rss_per_device_kib"), "{:.2f}"),
        ratio(g(hub, "server_rss_per_device_kib"), g(mq, "server_rss_per_device_kib"))))
    L.append("| ramp rate asked / reached | 5,000 / %s per s | 5,000 / %s per s | |" % (
        num(g(hub, "connect_rate")), num(g(mq, "connect_rate"))))
    L.append("| CONNACK p50 / p99 / max at that rate | %s / %s / %s ms | %s / %s / %s ms | p99 %s |" % (
        num(g(hub, "connack_latency_ms", "p50"), "{:.2f}"), num(g(hub, "connack_latency_ms", "p99"), "{:.2f}"),
        num(g(hub, "connack_latency_ms", "max"), "{:.1f}"),
        num(g(mq, "connack_latency_ms", "p50"), "{:.2f}"), num(g(mq, "connack_latency_ms", "p99"), "{:.2f}"),
        num(g(mq, "connack_latency_ms", "max"), "{:.1f}"),
        ratio(g(hub, "connack_latency_ms", "p99"), g(mq, "connack_latency_ms", "p99"))))
    L.append("| bench RSS per device | %s KiB | %s KiB | |" % (
        num(g(hub, "bench_rss_per_device_kib"), "{:.2f}"), num(g(mq, "bench_rss_per_device_kib"), "{:.2f}")))
    L += commands(out, ["hold_hub", "hold_mosquitto"])
    L.append("")
    L.append("### Connects accepted per second (maximum)")
    L.append("")
    L.append("| | aliot hub (verifies every signature) | mosquitto | hub / mosquitto |")
    L.append("|---|---|---|---|")
    L.append("| connected / asked | %s / %s | %s / %s | |" % (num(g(rh, "connected")), num(g(rh, "devices")),
                                                         num(g(rm, "connected")), num(g(rm, "devices"))))
    L.append("| connects accepted per second (median round) | %s | %s | %s |" % (
        num(g(rh, "connect_rate")), num(g(rm, "connect_rate")), ratio(g(rh, "connect_rate"), g(rm, "connect_rate"))))
    L.append("| rounds | %s | %s | |" % (" / ".join(num(x) for x in rh_all), " / ".join(num(x) for x in rm_all)))
    L.append("| CONNACK p50 / p99 | %s / %s ms | %s / %s ms | |" % (
        num(g(rh, "connack_latency_ms", "p50"), "{:.2f}"), num(g(rh, "connack_latency_ms", "p99"), "{:.2f}"),
        num(g(rm, "connack_latency_ms", "p50"), "{:.2f}"), num(g(rm, "connack_latency_ms", "p99"), "{:.2f}")))
    L.append("| server CPU seconds | %s | %s | |" % (num(g(rh, "server_cpu_seconds"), "{:.2f}"),
                                                   num(g(rm, "server_cpu_seconds"), "{:.2f}")))
    L += commands(out, ["rate_hub_1", "rate_mosquitto_1"])
    L.append("")
    L.append("### QoS 1 telemetry")
    L.append("")
    L.append("The hub: each post is acknowledged (PUBACK) and answered by the platform (`post_reply`) on the device's")
    L.append("own connection; latency is post → post_reply. mosquitto, which has no platform: PUBACK to the publisher")
    L.append("plus delivery to one subscriber (QoS 1); latency is publish → delivery. mosquitto runs with its queue and")
    L.append("inflight limits lifted (`max_queued_messages 0`, `max_inflight_messages 0`): with its defaults it drops")
    L.append("QoS 1 messages for a subscriber once 1000 are queued.")
    L.append("")
    L.append("| | aliot hub | mosquitto | hub / mosquitto |")
    L.append("|---|---|---|---|")
    for label, a, b in [("maximum (100 connections, 8 posts in flight each)", mh, mm),
                        ("fixed offered load from 1000 devices", fh, fm),
                        ("the same load from the 100 connections", hh, hm)]:
        offered = g(a, "offered_per_s")
        L.append("| **%s**%s | | | |" % (label, (": %s msg/s offered" % num(offered)) if offered else ""))
        L.append("| messages answered per second | %s | %s | %s |" % (
            num(g(a, "msgs_per_s")), num(g(b, "msgs_per_s")), ratio(g(a, "msgs_per_s"), g(b, "msgs_per_s"))))
        L.append("| PUBACKs per second | %s | %s | |" % (num(g(a, "acks_per_s")), num(g(b, "acks_per_s"))))
        L.append("| sent / answered / lost | %s / %s / %s | %s / %s / %s | |" % (
            num(g(a, "sent")), num(g(a, "replied")), num(g(a, "lost")), num(g(b, "sent")), num(g(b, "replied")), num(g(b, "lost"))))
        L.append("| latency p50 / p99 / max | %s / %s / %s ms | %s / %s / %s ms | p99 %s |" % (
            num(g(a, "reply_latency_ms", "p50"), "{:.2f}"), num(g(a, "reply_latency_ms", "p99"), "{:.2f}"),
            num(g(a, "reply_latency_ms", "max"), "{:.1f}"),
            num(g(b, "reply_latency_ms", "p50"), "{:.2f}"), num(g(b, "reply_latency_ms", "p99"), "{:.2f}"),
            num(g(b, "reply_latency_ms", "max"), "{:.1f}"),
            ratio(g(a, "reply_latency_ms", "p99"), g(b, "reply_latency_ms", "p99"))))
        L.append("| server CPU (cores, over the run) | %s | %s | |" % (num(cpu_cores(a), "{:.2f}"), num(cpu_cores(b), "{:.2f}")))
    L += commands(out, ["telemetry_max_hub", "telemetry_max_mosquitto", "telemetry_fixed_hub", "telemetry_fixed_mosquitto",
                        "telemetry_half100_hub", "telemetry_half100_mosquitto"])
    return L


def section_one_device(out):
    names = [("one_aliot", "`aliot device run`"),
             ("one_aliot_device", "`aliot device run`, device-only `aliot` (`--no-default-features`, `release-small`)"),
             ("one_classic", "classic Python paho script (spec §14, our copy)"),
             ("one_linkkit", "aliyun-iot-linkkit (official Python SDK)"), ("one_node", "alibabacloud-iot-device-sdk (official Node SDK)")]
    L = ["One device connected to the hub and left idle; RSS of its process, CPU over the idle period, and the",
         "time from process start until the hub lists the device online (admin API).", "",
         "RSS counts the pages of the program and its libraries that are mapped in; \"own\" is the anonymous part",
         "(heap, stacks), what the process itself allocated.", "",
         "| client | RSS | own (anonymous) | idle CPU | time to connected |", "|---|---|---|---|---|"]
    for n, label in names:
        d = load(out, n)
        if d is None or "error" in (d or {}):
            L.append("| %s | n/a | n/a | n/a | %s |" % (label, (d or {}).get("error", "not run")))
            continue
        anon = d.get("rss_anon_bytes")
        L.append("| %s | %s | %s | %s %% of a core (over %s s) | %s ms |" % (
            label, num(d["rss_bytes"] / 1e6, "{:.1f} MB"), num(anon / 1e6 if anon else None, "{:.1f} MB"),
            num(d["idle_cpu_percent"], "{:.2f}"), num(d["idle_seconds"], "{:.0f}"),
            num(d["time_to_connected_ms"], "{:.0f}")))
    env = load(out, "environment") or {}
    size, small = env.get("aliot binary bytes"), env.get("aliot device-only binary bytes")
    if size:
        L += ["", "The `aliot` binary itself (release profile, symbols stripped, every subcommand: SDK, hub, bench)",
              "is %s (`stat -c %%s target/release/aliot`)." % num(size / 1e6, "{:.1f} MB")]
    if small:
        L += ["The device-only `aliot` (sign, verify, device; `cargo build -p aliot-cli --no-default-features --profile",
              "release-small`) is %s (`stat -c %%s target/release-small/aliot`)." % num(small / 1e6, "{:.1f} MB")]
    L += commands(out, [n for n, _ in names], ", `$ALIOT_DEVICE` `target/release-small/aliot`")
    return L


def section_many(out):
    a, p, n = load(out, "many_aliot"), load(out, "many_paho"), load(out, "many_node")
    L = ["As many signed devices as one process reaches on the hub within a minute (each tool connects as fast as",
         "it can, up to the fleet size), the time until the last one was connected, and the RSS each device costs",
         "that process.", "",
         "| tool | devices reached / asked | time | RSS per device |", "|---|---|---|---|"]
    if a:
        L.append("| `aliot bench` (one process) | %s / %s | %s s | %s KiB |" % (
            num(a.get("connected")), num(a.get("devices")), num(a.get("ramp_s"), "{:.1f}"), num(a.get("bench_rss_per_device_kib"), "{:.2f}")))
    else:
        L.append("| `aliot bench` | n/a | | |")
    for d, label in [(p, "paho-mqtt (Python, one selector loop)"), (n, "official Node SDK")]:
        if d:
            L.append("| %s | %s / %s | %s s | %s KiB |" % (d.get("tool", label), num(d.get("connected")), num(d.get("devices")),
                                                       num(d.get("seconds"), "{:.1f}"), num(d.get("rss_per_device_kib"), "{:.2f}")))
        else:
            L.append("| %s | n/a | | |" % label)
    L += commands(out, ["many_aliot", "many_paho", "many_node"])
    return L


def divan_medians(text):
    """{(group, name): median ns} from divan's tree output (group None for top-level benches)."""
    units = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
    out, group = {}, None
    for line in text.splitlines():
        cells = line.split("│")
        m = re.match(r"^(│  |   )?([├╰])─ (\S+)", line)
        if not m:
            continue
        nested, name = m.group(1) is not None, m.group(3)
        # cells: [name+fastest, slowest, median, mean, samples, iters]; empty for a group line.
        median = re.match(r"\s*([\d.]+)\s*(ps|ns|µs|us|ms|s)\b", cells[2 if nested else 2]) if len(cells) > 3 else None
        if nested:
            # nested lines start with "│", which adds one empty leading cell
            median = re.match(r"\s*([\d.]+)\s*(ps|ns|µs|us|ms|s)\b", cells[3]) if len(cells) > 4 else None
        if median:
            out[(group if nested else None, name)] = float(median.group(1)) * units[median.group(2)]
        elif not nested:
            group = name
    return out


def section_signing(out):
    py, node = load(out, "sign_python"), load(out, "sign_node")
    rust_text = ""
    rust = os.path.join(out, "sign_rust.txt")
    if os.path.exists(rust):
        with open(rust) as f:
            rust_text = f.read().strip()
    med = divan_medians(rust_text)
    L = ["CONNECT passwords signed per second on one core, in the same run: sign content built and hex HMAC",
         "computed each time (aliot: `sign_password`, median of divan's samples; Python and Node: median round).", "",
         "| method | aliot | Python `hmac` | Node `crypto` | aliot / Python |", "|---|---|---|---|---|"]
    for m in ["hmacsha1", "hmacsha256", "hmacmd5"]:
        ns = med.get(("sign_password", m))
        r = 1e9 / ns if ns else None
        p = g(py, "results", m, "median_signs_per_sec")
        L.append("| %s | %s /s | %s /s | %s /s | %s |" % (m, num(r), num(p), num(g(node, "results", m, "median_signs_per_sec")),
                                                       ratio(r, p)))
    if rust_text:
        L += ["", "The divan output of the same run (`verify_connect` is the hub's per-CONNECT check):", "", "```text",
              rust_text, "```"]
    L += commands(out, ["sign_python", "sign_node", "sign_rust"])
    return L


def section_targets(out):
    hub, mq = load(out, "hold_hub"), load(out, "hold_mosquitto")
    (rh, _), (rm, _) = median_round(out, "rate_hub"), median_round(out, "rate_mosquitto")
    mh, mm = load(out, "telemetry_max_hub"), load(out, "telemetry_max_mosquitto")
    fh = load(out, "telemetry_fixed_hub")
    hh = load(out, "telemetry_half100_hub")
    one, one_small = load(out, "one_aliot"), load(out, "one_aliot_device")
    many = load(out, "many_aliot")
    rows = []

    def row(target, value, ok):
        rows.append("| %s | %s | %s |" % (target, value, "met" if ok else ("**missed**" if ok is not None else "n/a")))

    def le(v, lim):
        return None if v is None else v <= lim

    def ge(v, lim):
        return None if v is None or lim is None else v >= lim

    n = g(hub, "devices")
    row("hub holds %s signed devices in one process, 0 refusals" % num(n),
        "%s held, refused %s" % (num(g(hub, "connected")), json.dumps(g(hub, "refused"))),
        None if hub is None else (g(hub, "connected") == n and not g(hub, "refused")))
    v = g(hub, "server_rss_per_device_kib")
    row("hub RSS ≤ 4 KiB per device", "%s KiB (%s of target)" % (num(v, "{:.2f}"), ratio(v, 4.0)), le(v, 4.0))
    a, b = g(rh, "connect_rate"), g(rm, "connect_rate")
    row("signed connects/s ≥ 1.0× mosquitto", "%s vs %s (%s)" % (num(a), num(b), ratio(a, b)), ge(a, b))
    v = g(hub, "connack_latency_ms", "p99")
    row("CONNACK p99 ≤ 20 ms at 5,000/s", "%s ms" % num(v, "{:.2f}"), le(v, 20.0))
    a, b = g(mh, "msgs_per_s"), g(mm, "msgs_per_s")
    row("QoS 1 telemetry ≥ 1.0× mosquitto (max)", "%s vs %s msg/s (%s)" % (num(a), num(b), ratio(a, b)), ge(a, b))
    v = g(fh, "reply_latency_ms", "p99")
    row("p99 ≤ 50 ms at half the maximum (1000 devices)", "%s ms at %s msg/s" % (num(v, "{:.2f}"), num(g(fh, "offered_per_s"))),
        le(v, 50.0))
    v = g(hh, "reply_latency_ms", "p99")
    row("p99 ≤ 50 ms at half the maximum (the max run's 100 connections)",
        "%s ms at %s msg/s" % (num(v, "{:.2f}"), num(g(hh, "offered_per_s"))), le(v, 50.0))
    v, w = (one_small or {}).get("rss_bytes"), (one or {}).get("rss_bytes")
    row("one idle simulated device ≤ 4 MB RSS (the device-only `aliot`)",
        "%s MB (the all-in-one `aliot`: %s MB)" % (num(v / 1e6 if v else None, "{:.2f}"), num(w / 1e6 if w else None, "{:.1f}")),
        le(v / 1e6 if v else None, 4.0))
    v = g(many, "bench_rss_per_device_kib")
    row("bench: %s devices in one process at ≤ 4 KiB each" % num(g(many, "devices")),
        "%s connected, %s KiB each" % (num(g(many, "connected")), num(v, "{:.2f}")),
        None if many is None else (g(many, "connected") == g(many, "devices") and v is not None and v <= 4.0))
    return ["| target | this run | |", "|---|---|---|"] + rows


def section_before_after(out):
    env = load(out, "environment") or {}
    base = env.get("baseline", "none")
    if base == "none":
        return ["Not measured in this run (`BASELINE=` was empty)."]
    hb, ha = load(out, "hold_base"), load(out, "hold_hub")
    (rb, rb_all), (ra, ra_all) = median_round(out, "rate_base"), median_round(out, "rate_hub")
    tb, ta = load(out, "telemetry_max_base"), load(out, "telemetry_max_hub")
    ob, oa, od = load(out, "one_aliot_base"), load(out, "one_aliot"), load(out, "one_aliot_device")

    def rss(d):
        return None if d is None or "error" in d else d.get("rss_bytes")

    L = ["The same measurements on a build of commit `%s` (before) and of this tree (after), one after the" % base,
         "other in this run on this machine; the current `aliot bench` drives both hubs. The last column",
         "is issue 8's target for the figure.", "",
         "| | before (`%s`) | after | after / before | target | |" % base, "|---|---|---|---|---|---|"]

    def verdict(ok):
        return "n/a" if ok is None else ("met" if ok else "**missed**")

    def le(v, lim):
        return None if v is None or lim is None else v <= lim

    def ge(v, lim):
        return None if v is None or lim is None else v >= lim

    kb, ka = g(hb, "server_rss_per_device_kib"), g(ha, "server_rss_per_device_kib")
    L.append("| hub RSS per idle signed device (%s devices held) | %s KiB | %s KiB | %s | ≤ 1.2 KiB | %s |" % (
        num(g(ha, "connected")), num(kb, "{:.2f}"), num(ka, "{:.2f}"), ratio(ka, kb), verdict(le(ka, 1.2))))
    cb, ca = g(rb, "connect_rate"), g(ra, "connect_rate")
    L.append("| signed connects accepted per second (median of 3 rounds) | %s | %s | %s | no worse | %s |" % (
        num(cb), num(ca), ratio(ca, cb), verdict(ge(ca, cb))))
    pb, pa = g(tb, "msgs_per_s"), g(ta, "msgs_per_s")
    L.append("| QoS 1 property posts answered per second (100 devices, 8 in flight) | %s | %s | %s | no worse | %s |" % (
        num(pb), num(pa), ratio(pa, pb), verdict(ge(pa, pb))))
    L.append("| idle `aliot device run` RSS (all-in-one binary) | %s | %s | %s | | |" % (
        num((rss(ob) or 0) / 1e6 if rss(ob) else None, "{:.1f} MB"), num((rss(oa) or 0) / 1e6 if rss(oa) else None, "{:.1f} MB"),
        ratio(rss(oa), rss(ob))))
    L.append("| idle `aliot device run` RSS (device-only build after) | %s | %s | %s | ≤ 4 MB | %s |" % (
        num((rss(ob) or 0) / 1e6 if rss(ob) else None, "{:.1f} MB"), num((rss(od) or 0) / 1e6 if rss(od) else None, "{:.2f} MB"),
        ratio(rss(od), rss(ob)), verdict(le(rss(od) / 1e6 if rss(od) else None, 4.0))))
    L += ["", "Connect-rate rounds before: %s; after: %s." % (
        ", ".join(num(x) for x in rb_all) or "n/a", ", ".join(num(x) for x in ra_all) or "n/a")]
    L += commands(out, ["hold_base", "rate_base_1", "telemetry_max_base", "one_aliot_base"],
                  ", `$ALIOT_BASE` the baseline's `target/baseline/release/aliot`")
    return L


def metric(out, name, key):
    """An unlabelled metric from the hub's /metrics text saved as OUT/NAME.metrics."""
    path = os.path.join(out, name + ".metrics")
    if not os.path.exists(path):
        return None
    for line in open(path).read().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


# Per-device budgets (bytes) of a run: (outbound queue and inflight, unwritten replies before the
# hub stops reading, one unfinished packet, remembered property values).
EXHAUST_BUDGETS = {
    "exhaust_10s": (1048576, 262144, 263168, 65536),
    "exhaust_30s": (1048576, 262144, 263168, 65536),
    "exhaust_small": (262144, 262144, 65536, 16384),
    "exhaust_base": None,
}


def section_exhaust(out):
    runs = [("exhaust_10s", "default budgets, 10 s"), ("exhaust_30s", "default budgets, 30 s"),
            ("exhaust_small", "smaller budgets (`exhaust_small.toml`), 30 s"),
            ("exhaust_base", "before (the BASELINE build), default settings, 30 s")]
    L = ["`aliot bench --workload exhaust`: every device posts QoS 1 properties, 200 identifiers never",
         "named before in each post, as fast as its socket takes them, and never reads (the hub's",
         "acknowledgements and replies pile up for it); when the run ends it leaves a PUBLISH of the",
         "largest size one byte short and holds the connection. A fresh hub for each run; its RSS",
         "sampled every 500 ms. The ceiling is what the configured budgets allow per device (outbound",
         "queue with its inflight window, 256 KiB of unwritten replies before the hub stops reading, one",
         "unfinished packet, remembered property values) times the devices, plus the idle hub.", "",
         "What grows during a run is the devices' outbound queues: the hub answers every post, a",
         "device that never acknowledges holds 32 answers in flight and the rest in its queue, until",
         "the queue's limit (1000 messages or 1 MiB by default; a small answer costs a few hundred bytes",
         "in all, its topic and payload counted against the bytes) cuts it as a slow consumer. The remembered",
         "properties stop at their budget within a few posts (every later post is answered 6106),",
         "and the unfinished packets cost at most one packet each. The baseline build kept every",
         "property ever posted.", "",
         "| run | devices | posts sent | hub RSS, peak | per device | ceiling per device | slow consumers cut | posts refused (6106) |",
         "|---|---|---|---|---|---|---|---|"]
    any_run = False
    for name, label in runs:
        d = load(out, name)
        if d is None:
            continue
        any_run = True
        budgets = EXHAUST_BUDGETS.get(name)
        ceiling = "%.0f KiB" % (sum(budgets) / 1024) if budgets else "unbounded"
        peak = d.get("server_rss_bytes") or d.get("hub_rss_bytes")
        per = d.get("server_rss_per_device_kib") or d.get("hub_rss_per_device_kib")
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, num(d.get("connected")), num(d.get("sent")),
            num(peak / 1048576 if peak else None, "{:,.0f} MiB"), num(per, "{:,.0f} KiB"), ceiling,
            num(metric(out, name, "aliot_hub_slow_consumer_disconnects_total")),
            num(metric(out, name, "aliot_hub_registry_properties_refused_total"))))
    if not any_run:
        return ["Not measured in this run."]
    L += commands(out, [n for n, _ in runs if load(out, n) is not None],
                  ", `$ALIOT_BASE` the baseline's `target/baseline/release/aliot`")
    return L

def section_register(out):
    runs = [("register_mqtt_regnwl", "MQTT, without pre-registration (`regnwl`: the device is created)"),
            ("register_mqtt_pre", "MQTT, registered beforehand (`register`: a new deviceSecret)"),
            ("register_http", "HTTP `/auth/register/device`, registered beforehand"),
            ("register_https", "HTTPS `/auth/register/device` (TLS, a connection each), registered beforehand")]
    env = load(out, "register_env") or {}
    L = ["`aliot bench --workload register` (`benches/register.sh`): %s devices each register once with" % num(env.get("count")),
         "the productSecret, at most %s registrations in flight, against one fresh hub on loopback. The" % num(env.get("pending")),
         "latency is from the start of the attempt (before the TCP connect) to the answer (`/ext/register`,",
         "`/ext/regnwl` or the HTTP body); the hub answers only once the registration is durable.", "",
         "| registration | registered / asked | refused, errors | registrations per second | latency p50 / p99 / max |",
         "|---|---|---|---|---|"]
    any_run = False
    for name, label in runs:
        d = load(out, name)
        if d is None:
            continue
        any_run = True
        lat = d.get("connack_latency_ms") or {}
        L.append("| %s | %s / %s | %s, %s | %s | %s / %s / %s ms |" % (
            label, num(d.get("connected")), num(d.get("devices")), json.dumps(d.get("refused")),
            num(d.get("connect_errors")), num(d.get("connect_rate")),
            num(lat.get("p50"), "{:.1f}"), num(lat.get("p99"), "{:.1f}"), num(lat.get("max"), "{:.1f}")))
    if not any_run:
        return ["Not measured in this run."]
    L += ["", "Run of %s; load average after: %s." % (env.get("date", "?"), env.get("load average after", "?"))]
    L += commands(out, [n for n, _ in runs if load(out, n) is not None],
                  ", `$PS` the product's secret, `$DEVICE_HTTP` the hub's `--device-http` URL, `$DEVICE_HTTPS`\n"
                  "its `--device-https` URL and `$CA` its local CA")
    return L

def section_thing_model(out):
    env = load(out, "tsl_env") or {}
    def median(prefix):
        vals = sorted(v for v in (g(load(out, "%s_%d" % (prefix, r)), "msgs_per_s") for r in (1, 2, 3)) if v)
        return (vals[len(vals) // 2] if vals else None), vals
    (plain, plain_all), (model, model_all) = median("tsl_plain"), median("tsl_model")
    if plain is None or model is None:
        return ["Not measured in this run."]
    cost = (1 - model / plain) * 100
    lat = lambda n: g(load(out, n), "reply_latency_ms", "p99")
    L = ["`benches/tsl.sh`: the same bench posts the same 50-property payloads (`--tsl",
         "benches/data/tsl-50.json`: every scalar type, two structs, two arrays; valid values drawn",
         "from the model) to a product without a thing model and to one with it, on one hub: QoS 1,",
         "100 devices, 8 posts in flight each, %s a round, three interleaved rounds (median)." % env.get("duration", "?"), "",
         "| product | posts answered per second (median) | rounds | p99 (round 1) |",
         "|---|---|---|---|",
         "| without a thing model | %s | %s | %s ms |" % (num(plain), ", ".join(num(v) for v in plain_all), num(lat("tsl_plain_1"), "{:.1f}")),
         "| with the 50-property thing model (every post validated) | %s | %s | %s ms |" % (num(model), ", ".join(num(v) for v in model_all), num(lat("tsl_model_1"), "{:.1f}")),
         "", "Validation costs %.1f %% of the answered posts per second (target: under 20 %%). Run of %s; load average after: %s." % (
             cost, env.get("date", "?"), env.get("load average after", "?"))]
    L += commands(out, ["tsl_plain_1", "tsl_model_1"], "")
    return L


def section_history(out):
    env = load(out, "history_env") or {}
    L = ["`benches/history.sh`. Queries: `history_fill` (a release example of aliot-hub) stores %s" % num(env.get("points")),
         "property values in a fresh `history.redb` (1000 per group-commit job, 16 jobs in flight), then",
         "reads them back through `History::points` (what `GET …/properties/{id}/history` calls).", "",
         "| stored | fill (values/s) | first page (1000) | newest page (1000, desc) | page from the middle | 100,000 values by cursor (100 pages) | file |",
         "|---|---|---|---|---|---|---|"]
    for props in (1, 10):
        d = load(out, "history_fill_%d" % props)
        if not d:
            continue
        L.append("| %s values, %d propert%s | %s | %s ms | %s ms | %s ms | %s ms (%s values) | %s MB |" % (
            num(d["points"]), props, "y" if props == 1 else "ies", num(d["fill_points_per_s"]),
            num(d["first_page_ms"], "{:.2f}"), num(d["newest_page_ms"], "{:.2f}"), num(d["middle_page_ms"], "{:.2f}"),
            num(d["range_ms"], "{:.0f}"), num(d["range_points"]), num(d["file_bytes"] / 1e6, "{:.0f}")))
    posts = load(out, "history_fill_posts")
    if posts:
        L += ["", "Written as the hub writes posts (100 devices × 50 properties, one job and one `posts` row of 50",
              "values per post, 800 in flight), the same %s values go in at %s values/s." % (
                  num(posts["points"]), num(posts["fill_points_per_s"]))]
    def median(prefix):
        vals = sorted(v for v in (g(load(out, "%s_%d" % (prefix, r)), "msgs_per_s") for r in (1, 2, 3)) if v)
        return (vals[len(vals) // 2] if vals else None), vals
    (off, off_all), (on, on_all) = median("history_off"), median("history_on")
    L += ["", "Property posts: two fresh hubs, one with `[history] enabled = false`; product a1Model with",
          "`benches/data/tsl-50.json`; the bench of `benches/tsl.sh` (50-property posts validated by the",
          "model, QoS 1, 100 devices, 8 in flight each), %s a round, three interleaved rounds (median)." % env.get("duration", "?"),
          "With history on, each answered post's 50 values are committed (fsync, shared by the posts",
          "waiting at that moment) before its reply.", ""]
    if off is None or on is None:
        return L + ["Posts not measured in this run."]
    lat = lambda n: g(load(out, n), "reply_latency_ms", "p99")
    L += ["| hub | posts answered per second (median) | values kept per second | rounds | p99 (round 1) |",
          "|---|---|---|---|---|",
          "| history off | %s | — | %s | %s ms |" % (num(off), ", ".join(num(v) for v in off_all), num(lat("history_off_1"), "{:.1f}")),
          "| history on (default) | %s | %s | %s | %s ms |" % (num(on), num(on * 50), ", ".join(num(v) for v in on_all), num(lat("history_on_1"), "{:.1f}")),
          "", "History costs %.1f %% of the answered posts per second. Run of %s; load average after: %s." % (
              (1 - on / off) * 100, env.get("date", "?"), env.get("load average after", "?"))]
    L += commands(out, ["history_fill_1", "history_fill_posts", "history_off_1", "history_on_1"], "")
    return L


SECTIONS = [
    ("environment", "## Setup of the comparison run", section_environment),
    ("targets", "## Targets (issue 5)", section_targets),
    ("fleet", "## Hub vs mosquitto", section_fleet),
    ("one-device", "## One simulated device", section_one_device),
    ("many-devices", "## Many simulated devices in one process", section_many),
    ("signing", "## Signing in the same run", section_signing),
    ("before-after", "## Before and after (issue 8)", section_before_after),
    ("exhaust", "## Devices that try to exhaust the hub (issue 9)", section_exhaust),
    ("register", "## Dynamic registration (issue 10)", section_register),
    ("thing-model", "## Thing model validation (issue 11)", section_thing_model),
    ("history", "## History: stored values and their cost (issue 11, a row per post)", section_history),
]


def main():
    out, doc, only = sys.argv[1], sys.argv[2], sys.argv[3:]
    text = open(doc).read() if os.path.exists(doc) else "# Performance\n"
    for name, title, fn in SECTIONS:
        if only and name not in only:
            continue
        body = "\n".join([title, ""] + fn(out))
        begin, end = "<!-- BEGIN compare.sh: %s -->" % name, "<!-- END compare.sh: %s -->" % name
        block = "%s\n%s\n%s" % (begin, body, end)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
