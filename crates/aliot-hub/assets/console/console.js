// aliot hub console: the little script the pages need. Everything from the hub is put into the
// page with textContent (never innerHTML), so names, topics and payloads are shown as text.
(function () {
  "use strict";
  var body = document.body;
  var page = body.getAttribute("data-page");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function pretty(text) {
    if (typeof text !== "string") return JSON.stringify(text, null, 2);
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }

  function events(query, onEvent, onState) {
    var url = "/console/events" + (query ? "?" + query : "");
    var source = new EventSource(url);
    source.onopen = function () { if (onState) onState("Live."); };
    source.onerror = function () { if (onState) onState("Disconnected: reconnecting…"); };
    source.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      onEvent(ev);
    };
    return source;
  }

  function setStatus(dn, online) {
    var nodes = document.querySelectorAll("[data-status-of]");
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute("data-status-of") !== dn) continue;
      nodes[i].textContent = online ? "online" : "offline";
      nodes[i].className = "status " + (online ? "on" : "off");
    }
  }

  // Forms that ask before they act.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
    });
  });

  // JSON inputs are checked before they are sent.
  document.querySelectorAll("textarea[data-json]").forEach(function (t) {
    t.addEventListener("input", function () {
      if (t.value.trim() === "") { t.setCustomValidity(""); return; }
      try { JSON.parse(t.value); t.setCustomValidity(""); } catch (e) { t.setCustomValidity("not valid JSON: " + e.message); }
    });
  });

  // A file input that fills a textarea (TSL import).
  document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.getAttribute("data-fills"));
      if (!input.files.length || !target) return;
      input.files[0].text().then(function (t) { target.value = t; });
    });
  });

  // A time chart over the last `seconds` (a fixed window, so one point does not stretch the axis).
  function chart(node, title, series, data, seconds) {
    if (!window.uPlot || !node) return null;
    node.textContent = "";
    var width = Math.max(280, node.clientWidth || 600);
    var now = Date.now() / 1000;
    series.forEach(function (s, i) { if (i > 0) s.points = { show: true, size: 5 }; });
    var opts = {
      title: title, width: width, height: 240, series: series,
      scales: { x: { time: true, range: function () { return [now - seconds, now]; } } }
    };
    return new window.uPlot(opts, data, node);
  }

  if (page === "overview") {
    var node = document.getElementById("overview-chart");
    var plot = null;
    var load = function () {
      fetch("/console/overview.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (s) {
        var data = [s.time, s.connects, s.messages_in, s.messages_out];
        if (plot) plot.destroy();
        plot = chart(node, "", [{}, { label: "connects/s", stroke: "#1764d4" }, { label: "messages in/s", stroke: "#138a36" }, { label: "messages out/s", stroke: "#b7791f" }], data, 600);
      }).catch(function () {});
    };
    load();
    window.setInterval(load, 5000);
  }

  if (page === "devices") {
    var pk = body.getAttribute("data-pk");
    if (pk) {
      events("types=status&pk=" + encodeURIComponent(pk), function (ev) {
        if (ev.type === "status") setStatus(ev.deviceName, ev.status === "online");
      });
    }
  }

  if (page === "device") {
    var dpk = body.getAttribute("data-pk");
    var ddn = body.getAttribute("data-dn");
    var latest = document.querySelector("#latest tbody");
    var log = document.getElementById("device-log");
    var setProp = function (id, value, time) {
      var row = null;
      latest.querySelectorAll("tr").forEach(function (r) { if (r.getAttribute("data-prop") === id) row = r; });
      if (!row) {
        row = el("tr");
        row.setAttribute("data-prop", id);
        var c = el("td"); c.appendChild(el("code", null, id)); row.appendChild(c);
        row.appendChild(el("td", "value")); row.appendChild(el("td", "time"));
        latest.appendChild(row);
      }
      row.querySelector(".value").textContent = typeof value === "string" ? value : JSON.stringify(value);
      row.querySelector(".time").textContent = new Date(time).toISOString();
    };
    events("pk=" + encodeURIComponent(dpk) + "&dn=" + encodeURIComponent(ddn), function (ev) {
      if (ev.type === "status") setStatus(ev.deviceName, ev.status === "online");
      if (ev.type === "uplink" && /\/thing\/event\/property\/post$/.test(ev.topic) && ev.payload) {
        try {
          var params = JSON.parse(ev.payload).params || {};
          Object.keys(params).forEach(function (k) {
            var v = params[k];
            if (v !== null && typeof v === "object" && "value" in v) v = v.value;
            setProp(k, v, ev.time);
          });
        } catch (e) { /* not JSON: shown in the log only */ }
      }
      if (ev.type === "uplink" || ev.type === "reply" || ev.type === "status") {
        var li = el("li");
        li.appendChild(el("span", "kind", ev.type));
        li.appendChild(el("span", "meta", new Date(typeof ev.time === "number" ? ev.time : Date.now()).toISOString() + " " + (ev.topic || ev.status || "")));
        if (ev.payload !== undefined) li.appendChild(el("pre", null, pretty(ev.payload)));
        log.insertBefore(li, log.firstChild);
        while (log.children.length > 200) log.removeChild(log.lastChild);
      }
    });
    var sel = document.getElementById("chart-prop");
    var minutes = document.getElementById("chart-minutes");
    var cnode = document.getElementById("property-chart");
    var draw = function () {
      if (!sel || !sel.value) { cnode.textContent = "No numeric property to chart yet."; return; }
      var url = "/console/devices/" + encodeURIComponent(dpk) + "/" + encodeURIComponent(ddn) + "/history.json?id=" + encodeURIComponent(sel.value) + "&minutes=" + minutes.value;
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (c) {
        if (!c || !c.time.length) { cnode.textContent = "No kept value of " + sel.value + " in this window."; return; }
        chart(cnode, sel.value, [{}, { label: sel.value, stroke: "#1764d4" }], [c.time, c.value], Number(minutes.value) * 60);
      }).catch(function () {});
    };
    if (sel) { sel.addEventListener("change", draw); minutes.addEventListener("change", draw); draw(); }
  }

  if (page === "live") {
    var list = document.getElementById("live-log");
    var state = document.getElementById("live-state");
    var paused = false;
    var pauseBtn = document.getElementById("live-pause");
    var f = function (id) { return document.getElementById(id).value.trim(); };
    var source = null;
    var connect = function () {
      if (source) source.close();
      var q = [];
      if (f("f-pk")) q.push("pk=" + encodeURIComponent(f("f-pk")));
      if (f("f-dn")) q.push("dn=" + encodeURIComponent(f("f-dn")));
      if (f("f-kind")) q.push("types=" + encodeURIComponent(f("f-kind")));
      source = events(q.join("&"), function (ev) {
        if (paused) return;
        var topic = f("f-topic");
        if (topic && (ev.topic || "").indexOf(topic) < 0) return;
        var dir = ev.type === "uplink" ? "up" : (ev.type === "reply" ? "down" : "");
        if (f("f-dir") && f("f-dir") !== dir) return;
        var li = el("li");
        li.appendChild(el("span", "kind", ev.type + (dir === "up" ? " ↑" : dir === "down" ? " ↓" : "")));
        var who = ev.deviceName ? ev.productKey + "/" + ev.deviceName : (ev.clientId || ev.clientIp || "");
        var when = typeof ev.time === "number" ? new Date(ev.time).toISOString() : (ev.utcTime || "");
        li.appendChild(el("span", "meta", when + " " + who + " " + (ev.topic || ev.status || ev.reason || "")));
        var payload = ev.payload !== undefined ? ev.payload : ev.payloadBase64;
        if (payload !== undefined) li.appendChild(el("pre", null, pretty(payload)));
        list.insertBefore(li, list.firstChild);
        while (list.children.length > 500) list.removeChild(list.lastChild);
      }, function (s) { state.textContent = paused ? "Paused." : s; });
    };
    ["f-pk", "f-dn", "f-kind"].forEach(function (id) { document.getElementById(id).addEventListener("change", connect); });
    pauseBtn.addEventListener("click", function () {
      paused = !paused;
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      pauseBtn.setAttribute("aria-pressed", paused ? "true" : "false");
      state.textContent = paused ? "Paused." : "Live.";
    });
    document.getElementById("live-clear").addEventListener("click", function () { list.textContent = ""; });
    connect();
  }

  if (page === "ota") {
    var form = document.getElementById("ota-upload");
    var upState = document.getElementById("ota-upload-state");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var file = document.getElementById("up-file").files[0];
      if (!file) return;
      var q = "productKey=" + encodeURIComponent(f0("up-pk")) + "&destVersion=" + encodeURIComponent(f0("up-version"));
      if (f0("up-module")) q += "&moduleName=" + encodeURIComponent(f0("up-module"));
      upState.textContent = "Uploading…";
      fetch("/console/ota/packages?" + q, { method: "POST", body: file, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } })
        .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, text: t }; }); })
        .then(function (r) {
          if (r.ok) { window.location.reload(); return; }
          var doc = new DOMParser().parseFromString(r.text, "text/html");
          var msg = doc.getElementById("error-message");
          upState.textContent = "Refused: " + (msg ? msg.textContent : r.text);
        }).catch(function (err) { upState.textContent = "Upload failed: " + err; });
    });
    function f0(id) { return document.getElementById(id).value.trim(); }
  }
})();
