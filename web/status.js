/* Operators' status page: the aggregates of GET /status, and — with the admin token — the salons one page at
 * a time (GET /status/companies) and a salon's history (GET /status/companies/{id}/history), so a supervisor
 * can answer "why is this salon not connected?" (docs/http-api.md#status-history). The admin token is pasted by the operator,
 * kept only for this tab (sessionStorage) and sent as a bearer header. Values are inserted as text only. */
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var PER_PAGE = 50;
  var STALE_S = 10;  // the default lease TTL: a node silent this long is being taken over
  var TOKEN_KEY = "actor-admin.admin-token";
  var STATES = ["idle", "starting", "qr", "pairing_code", "connecting", "connected", "reconnecting",
    "logged_out", "conflict", "failed", "frozen", "uninstalled"];
  var INTEGRATION = ["pending_whatsapp", "activating", "active", "activation_failed"];
  var PROBLEMS = ["failed", "conflict", "logged_out", "activation_failed"];

  // What each event of the log means to a supervisor; the rest show their type.
  var EVENTS = {
    registration_started: "Opened from YClients (install or re-install)",
    started: "Session started",
    stopped: "Session stopped",
    paired: "Phone linked the device (QR scanned or code entered)",
    restart_required: "WhatsApp asked for the usual restart after linking",
    connected: "Connected to WhatsApp",
    disconnected: "Disconnected from WhatsApp; reconnecting",
    logged_out: "Logged out: the device is unlinked",
    logged_out_after_restart: "Logged-out signal right after linking; retried once",
    whatsapp_unlinked: "WhatsApp credentials deleted",
    reconnect_exhausted: "Reconnecting kept failing: gave up (failed)",
    credentials_kept: "Unlink reported by a transport that did not make the credentials: kept, not deleted",
    reconnect_slowed: "WhatsApp unreachable: retrying every few minutes",
    connection_replaced: "Another connection took the number (conflict)",
    conflict_retry_scheduled: "Conflict: one retry scheduled",
    conflict_retry: "Conflict: retrying once",
    conflict_final: "Conflict again after the retry: stopped for good",
    ownership_lost: "Another node owns this salon now",
    temporarily_banned: "Temporarily banned by WhatsApp",
    ban_expired: "The ban ended",
    client_outdated: "WhatsApp refused this client version",
    qr_expired: "QR codes expired unscanned",
    connection_lost: "Link to WhatsApp lost while linking",
    pairing_failed: "Pairing code could not be issued",
    keepalive_timeout: "Keep-alives stopped answering",
    keepalive_restored: "Keep-alives answer again",
    watchdog_reconnect: "Silent connection: reconnecting",
    frozen: "Session frozen (YClients)",
    uninstalled: "Session removed (YClients uninstall)",
    webhook_freeze: "YClients webhook: freeze",
    webhook_uninstall: "YClients webhook: uninstall",
    webhook_unknown: "YClients webhook of an unknown kind",
    activation_delivered: "YClients activation delivered",
    activation_failed: "YClients activation failed",
    activation_requeued: "YClients activation queued again by an operator",
    admin_logout: "An operator logged the device out"
  };
  var BAD_EVENTS = { logged_out: 1, whatsapp_unlinked: 1, reconnect_exhausted: 1, connection_replaced: 1,
    credentials_kept: 1, conflict_final: 1, temporarily_banned: 1, client_outdated: 1, pairing_failed: 1, activation_failed: 1 };

  var token = "";
  var timer = null;
  var listing = { page: 1, total: 0 };
  var openSalon = null;

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

  /** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
  function ago(seconds) {
    var s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 5) { return "just now"; }
    if (s < 60) { return s + " s ago"; }
    if (s < 3600) { return Math.floor(s / 60) + " min ago"; }
    if (s < 86400) { return Math.floor(s / 3600) + " h ago"; }
    return Math.floor(s / 86400) + " d ago";
  }

  function ms(v) { return v === null || v === undefined ? "" : " · " + Number(v).toFixed(1) + " ms"; }

  function problem(message) {
    var el = $("problem");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function get(url, withToken) {
    var headers = { "Accept": "application/json" };
    if (withToken && token) { headers.Authorization = "Bearer " + token; }
    return fetch(url, { headers: headers, cache: "no-store" }).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (json) {
        return { status: res.status, ok: res.ok, body: json };
      });
    }, function (err) {
      return { status: 0, ok: false, body: null, error: String(err) };
    });
  }

  /* ---------- aggregates ---------- */

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
    var limits = st.rate_limiting || {};
    var limitsLine = limits.state === "degraded"
      ? "degraded: Redis does not answer, limits are not enforced" + (limits.since ? " since " + limits.since : "")
      : (limits.state || "—");
    var wa = st.whatsapp || {};
    kv($("misc"), [
      ["rate limiting", limitsLine, limits.state === "degraded" ? "bad" : (limits.state === "ok" ? "ok" : "")],
      // docs/whatsapp.md#upstream-outage: WhatsApp itself unreachable, reconnects held behind one probe.
      ["whatsapp", wa.upstream === "outage" ? "outage since " + wa.since + ", " + wa.held_back + " held back"
        : (wa.upstream || "—"), wa.upstream === "outage" ? "bad" : (wa.upstream === "ok" ? "ok" : "")],
      ["outbox pending", outbox.pending, outbox.pending ? "" : "ok"],
      ["oldest pending", outbox.oldest_pending_s === null || outbox.oldest_pending_s === undefined ? "—"
        : Number(outbox.oldest_pending_s).toFixed(1) + " s"],
      ["outbox failed", outbox.failed, outbox.failed ? "bad" : ""],
      ["websockets open", wss.open],
      ["cluster nodes", (cluster.nodes || []).length],
      ["owned here", cluster.owned_here]
    ]);
    renderNodes(st.node, cluster.nodes || []);
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

  /* ---------- the salons, one page at a time ---------- */

  function fillSelect(select, values, label) {
    var chosen = select.value;
    while (select.options.length > 1) { select.remove(1); }
    values.forEach(function (v) { select.add(new Option(label ? label(v) : v, v)); });
    select.value = chosen;
  }

  function listingUrl() {
    var q = "?page=" + listing.page + "&per_page=" + PER_PAGE;
    if ($("problem-filter").value) { q += "&problem=" + encodeURIComponent($("problem-filter").value); }
    else if ($("state-filter").value) { q += "&state=" + encodeURIComponent($("state-filter").value); }
    return "/status/companies" + q;
  }

  function salonButton(salonId) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "link-btn";
    b.textContent = String(salonId);
    b.setAttribute("data-salon", String(salonId));
    b.setAttribute("data-testid", "salon-link");
    b.setAttribute("aria-label", "History of salon " + salonId);
    return b;
  }

  function renderListing(body) {
    var tbody = $("companies-body");
    clear(tbody);
    var rows = body.companies || [];
    listing.total = Number(body.total) || 0;
    var problems = body.problems || {};
    fillSelect($("problem-filter"), PROBLEMS, function (p) { return p.replace("_", " ") + " (" + (problems[p] || 0) + ")"; });
    rows.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-state", text(c.state));
      var first = document.createElement("td");
      first.className = "num";
      first.appendChild(salonButton(c.salon_id));
      tr.appendChild(first);
      [c.title, c.state, c.integration_status, c.phone, c.node, c.restarts, c.last_error, c.since].forEach(function (v, i) {
        var td = document.createElement("td");
        td.textContent = v === null || v === undefined ? "" : String(v);  // textContent: errors may hold markup
        if (i === 5) { td.className = "num"; }
        if ((i === 1 && PROBLEMS.indexOf(c.state) !== -1) || (i === 2 && v === "activation_failed")) {
          td.className = "bad";
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    var from = listing.total ? (listing.page - 1) * PER_PAGE + 1 : 0;
    var to = (listing.page - 1) * PER_PAGE + rows.length;
    $("pager-note").textContent = from + "–" + to + " of " + listing.total;
    $("companies-note").textContent = listing.total + " salon(s)" +
      ($("problem-filter").value ? " with the problem " + $("problem-filter").value
        : $("state-filter").value ? " in " + $("state-filter").value : "");
    $("pager-prev").disabled = listing.page <= 1;
    $("pager-next").disabled = to >= listing.total;
  }

  function noToken() {
    clear($("companies-body"));
    $("companies-note").textContent = "Paste the admin token above to see the salons.";
    $("pager-note").textContent = "";
    $("pager-prev").disabled = $("pager-next").disabled = true;
  }

  /* ---------- one salon's history ---------- */

  function details(data) {
    return Object.keys(data || {}).map(function (k) {
      var v = data[k];
      return k + " " + (typeof v === "object" ? JSON.stringify(v) : String(v));
    }).join(" · ");
  }

  function renderHistory(body) {
    var c = body.company;
    $("history-title").textContent = "Salon " + body.salon_id + (c && c.title ? " · " + c.title : "");
    kv($("history-company"), c ? [
      ["state now", c.state || "no session on this node", PROBLEMS.indexOf(c.state) !== -1 ? "bad" : ""],
      ["integration", c.integration_status, c.integration_status === "activation_failed" ? "bad" : ""],
      ["phone", c.phone], ["last_error", c.last_error], ["restarts", c.restarts], ["since", c.since]
    ] : [["company", "not registered"]]);
    var list = $("history-list");
    clear(list);
    var events = body.events || [];
    $("history-note").textContent = events.length ? events.length + " latest event(s), newest first"
      : "No events recorded for this salon.";
    events.forEach(function (e) {
      var li = document.createElement("li");
      li.setAttribute("data-type", String(e.type));
      var when = document.createElement("time");
      when.dateTime = String(e.at);
      when.title = String(e.at);
      when.textContent = ago(e.age_s);
      var what = document.createElement("strong");
      what.textContent = EVENTS[e.type] || String(e.type);
      if (BAD_EVENTS[e.type]) { what.className = "bad"; }
      li.appendChild(when);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(what);
      var more = details(e.data);
      if (more) {
        var span = document.createElement("span");
        span.className = "muted";
        span.textContent = " — " + more;
        li.appendChild(span);
      }
      list.appendChild(li);
    });
  }

  function loadHistory(salonId, focus) {
    openSalon = salonId;
    $("history").hidden = false;
    return get("/status/companies/" + encodeURIComponent(salonId) + "/history", true).then(function (res) {
      if (openSalon !== salonId) { return; }
      if (res.status === 404) {
        clear($("history-list"));
        clear($("history-company"));
        $("history-title").textContent = "Salon " + salonId;
        $("history-note").textContent = "No salon " + salonId + " is known here.";
      } else if (res.ok && res.body) {
        renderHistory(res.body);
      } else {
        $("history-note").textContent = "History unavailable (" + res.status + ").";
      }
      if (focus) { $("history-title").focus(); }
    });
  }

  /* ---------- refresh ---------- */

  function showTokenState() {
    $("token").placeholder = token ? "set for this tab" : "paste ADMIN_TOKEN";
  }

  function refresh() {
    clearTimeout(timer);
    showTokenState();
    var aggregates = get("/status", false).then(function (res) {
      if (!res.ok && !(res.body && res.body.node)) {
        return res.status ? "/status answered " + res.status : "Could not reach /status: " + res.error;
      }
      renderStatus(res.body);
      return "";
    });
    var salons = !token ? Promise.resolve(noToken()) : get(listingUrl(), true).then(function (res) {
      if (res.status === 401 || res.status === 403) {
        noToken();
        return "The admin token was refused (" + res.status + "). Paste the current ADMIN_TOKEN.";
      }
      if (!res.ok || !res.body) { return "The salons list answered " + res.status + "."; }
      renderListing(res.body);
      return "";
    });
    var history = openSalon !== null && token ? loadHistory(openSalon, false) : Promise.resolve();
    Promise.all([aggregates, salons, history]).then(function (messages) {
      problem(messages.filter(function (m) { return m; }).join(" "));
      $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + (token ? "" : " · aggregates only");
    }).then(function () {
      if ($("auto").checked) { timer = setTimeout(refresh, REFRESH_MS); }
    });
  }

  function start() {
    token = load();
    fillSelect($("state-filter"), STATES.concat(INTEGRATION.filter(function (s) { return STATES.indexOf(s) === -1; })));
    fillSelect($("problem-filter"), PROBLEMS, function (p) { return p.replace("_", " "); });
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
      openSalon = null;
      $("history").hidden = true;
      refresh();
    });
    // One filter at a time: a problem is a state (or an integration status) of its own.
    $("problem-filter").addEventListener("change", function () {
      if ($("problem-filter").value) { $("state-filter").value = ""; }
      listing.page = 1;
      refresh();
    });
    $("state-filter").addEventListener("change", function () {
      if ($("state-filter").value) { $("problem-filter").value = ""; }
      listing.page = 1;
      refresh();
    });
    $("pager-prev").addEventListener("click", function () { listing.page = Math.max(1, listing.page - 1); refresh(); });
    $("pager-next").addEventListener("click", function () { listing.page += 1; refresh(); });
    $("companies-body").addEventListener("click", function (ev) {
      var b = ev.target.closest("[data-salon]");
      if (b) { loadHistory(Number(b.getAttribute("data-salon")), true); }
    });
    $("filters").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var id = $("salon-go").value.trim();
      if (/^[1-9]\d{0,17}$/.test(id) && token) { loadHistory(Number(id), true); }
    });
    $("history-close").addEventListener("click", function () {
      openSalon = null;
      $("history").hidden = true;
    });
    $("auto").addEventListener("change", function () { if ($("auto").checked) { refresh(); } else { clearTimeout(timer); } });
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
