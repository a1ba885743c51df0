/* Operators' status page: renders GET /status (docs/http-api.md#status). The admin token is pasted by the operator, kept
 * only for this tab (sessionStorage) and sent as a bearer header; without it /status shows aggregates. */
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var STALE_S = 10;  // the default lease TTL: a node silent this long is being taken over
  var TOKEN_KEY = "actor-admin.admin-token";
  var STATES = ["idle", "starting", "qr", "pairing_code", "connecting", "connected", "reconnecting",
    "logged_out", "conflict", "failed", "frozen", "uninstalled"];

  var token = "";
  var last = null;
  var timer = null;

  function $(id) { return document.getElementById(id); }

  // sessionStorage throws in some sandboxed contexts; then the token lives in memory only.
  function load() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }
  function save(value) {
    try {
      if (value) { sessionStorage.setItem(TOKEN_KEY, value); } else { sessionStorage.removeItem(TOKEN_KEY); }
    } catch (e) { /* memory only */ }
  }

  function clear(el) { while (el.firstChild) { el.removeChild(el.firstChild); } }

  function text(v) { return v === null || v === undefined ? "—" : String(v); }

  function kv(el, pairs) {
    clear(el);
    pairs.forEach(function (p) {
      var dt = document.createElement("dt");
      dt.textContent = p[0];
      var dd = document.createElement("dd");
      dd.textContent = text(p[1]);
      if (p[2]) { dd.className = p[2]; }
      el.appendChild(dt);
      el.appendChild(dd);
    });
  }

  function uptime(s) {
    s = Math.max(0, Math.floor(Number(s) || 0));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }

  function ms(v) { return v === null || v === undefined ? "" : " · " + Number(v).toFixed(1) + " ms"; }

  function renderStatus(st) {
    kv($("node"), [["node", st.node], ["version", st.version], ["mode", st.mode], ["uptime", uptime(st.uptime_s)]]);

    var deps = st.dependencies || {};
    kv($("deps"), Object.keys(deps).map(function (name) {
      var d = deps[name] || {};
      var line = (d.ok ? "✓ ok" : "✗ failing") + ms(d.latency_ms) +
        (d.schema_version ? " · schema " + d.schema_version : "") + (d.error ? " · " + d.error : "");
      return [name, line, d.ok ? "ok" : "bad"];
    }));

    var actors = st.actors || {};
    kv($("actors"), [["total", actors.total], ["restarts_total", actors.restarts_total],
      ["mailbox_max_depth", actors.mailbox_max_depth]]);
    var chips = $("by-state");
    clear(chips);
    var by = actors.by_state || {};
    Object.keys(by).sort().forEach(function (s) {
      var chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = s + " " + by[s];
      chips.appendChild(chip);
    });

    var outbox = st.outbox || {}, cluster = st.cluster || {}, wss = st.websockets || {};
    kv($("misc"), [
      ["outbox pending", outbox.pending, outbox.pending ? "" : "ok"],
      ["oldest pending", outbox.oldest_pending_s === null || outbox.oldest_pending_s === undefined ? "—"
        : Number(outbox.oldest_pending_s).toFixed(1) + " s"],
      ["outbox failed", outbox.failed, outbox.failed ? "bad" : ""],
      ["websockets open", wss.open],
      ["cluster nodes", (cluster.nodes || []).length],
      ["owned here", cluster.owned_here]
    ]);
    renderNodes(st.node, cluster.nodes || []);

    var filter = $("state-filter");
    var known = STATES.concat(Object.keys(by)).filter(function (s, i, all) { return all.indexOf(s) === i; });
    if (filter.options.length - 1 !== known.length) {
      var chosen = filter.value;
      while (filter.options.length > 1) { filter.remove(1); }
      known.forEach(function (s) { filter.add(new Option(s, s)); });
      filter.value = chosen;
    }
    renderCompanies();
  }

  // One row per node row of the cluster (docs/http-api.md#status); a heartbeat older than STALE_S is flagged.
  function renderNodes(me, nodes) {
    var body = $("nodes-body");
    clear(body);
    nodes.forEach(function (n) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-node", text(n.id));
      var age = Number(n.heartbeat_age_s);
      var cells = [n.id + (n.id === me ? " (this node)" : ""), n.version,
        isFinite(age) ? age.toFixed(1) + " s" : "—", n.owned, n.draining ? "draining" : ""];
      cells.forEach(function (v, i) {
        var td = document.createElement("td");
        td.textContent = v === null || v === undefined ? "" : String(v);
        if (i === 2 || i === 3) { td.className = "num"; }
        if (i === 2 && age > STALE_S) { td.className = "num bad"; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function renderCompanies() {
    var body = $("companies-body");
    clear(body);
    var note = $("companies-note");
    if (!last) { return; }
    if (!Array.isArray(last.companies)) {
      note.textContent = "Paste the admin token above to see the companies.";
      return;
    }
    var wanted = $("state-filter").value;
    var rows = last.companies.filter(function (c) { return !wanted || c.state === wanted; });
    note.textContent = rows.length + " of " + last.companies.length + " companies";
    rows.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-state", text(c.state));
      [c.salon_id, c.state, c.phone, c.node, c.restarts, c.last_error, c.since].forEach(function (v, i) {
        var td = document.createElement("td");
        td.textContent = v === null || v === undefined ? "" : String(v);  // textContent: errors may hold markup
        if (i === 0 || i === 4) { td.className = "num"; }
        if (i === 1 && c.state === "failed") { td.className = "bad"; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function problem(message) {
    var el = $("problem");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function showTokenState() {
    $("token").placeholder = token ? "set for this tab" : "paste ADMIN_TOKEN";
  }

  function refresh() {
    clearTimeout(timer);
    showTokenState();
    var headers = { "Accept": "application/json" };
    if (token) { headers.Authorization = "Bearer " + token; }
    fetch("/status", { headers: headers, cache: "no-store" }).then(function (res) {
      if (res.status === 401 || res.status === 403) {
        problem("The admin token was refused (" + res.status + "). Paste the current ADMIN_TOKEN.");
        return null;
      }
      return res.json().then(function (json) {
        if (!res.ok && !(json && json.node)) {
          problem("/status answered " + res.status + ": " + JSON.stringify(json && json.error || json));
          return;
        }
        problem("");
        last = json;
        renderStatus(json);
        $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + (token ? "" : " · aggregates only");
      });
    }).catch(function (err) {
      problem("Could not reach /status: " + err);
    }).then(function () {
      if ($("auto").checked) { timer = setTimeout(refresh, REFRESH_MS); }
    });
  }

  function start() {
    token = load();
    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      save(token);
      refresh();
    });
    $("token-forget").addEventListener("click", function () {
      token = "";
      save("");
      refresh();
    });
    $("state-filter").addEventListener("change", renderCompanies);
    $("auto").addEventListener("change", function () { if ($("auto").checked) { refresh(); } else { clearTimeout(timer); } });
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
