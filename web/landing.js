/* The dev landing page (GET / in `actor-admin dev`): walks a developer through install → QR → scan →
 * connected → the activation call, using the dev doubles (web/README.md). Steps 3 and 4 show the chosen
 * salon's own device and calls (GET /_dev/salon), not the simulator's totals. Same-origin fetches only. */
(function () {
  "use strict";

  var REFRESH_MS = 2000;

  function $(id) { return document.getElementById(id); }

  function salonId() {
    var n = parseInt($("salon-id").value, 10);
    return n > 0 ? n : 101;
  }

  function phone() { return $("phone").value.replace(/\D/g, ""); }

  function say(el, text, good) {
    el.textContent = text;
    el.className = "out " + (good === undefined ? "" : good ? "ok" : "bad");
  }

  /** fetch → {status, body}; never throws, so a dead endpoint shows as a message, not a stack trace. */
  function call(method, url, json) {
    var init = { method: method, headers: { "Accept": "application/json" }, cache: "no-store" };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    return fetch(url, init).then(function (res) {
      return res.text().then(function (text) {
        var body = text;
        try { body = JSON.parse(text); } catch (e) { /* plain text answer */ }
        return { status: res.status, body: body };
      });
    }, function (err) {
      return { status: 0, body: String(err) };
    });
  }

  function brief(body) {
    return typeof body === "string" ? body.slice(0, 300) : JSON.stringify(body);
  }

  /* step 1 */
  function installUrl() { return "/_dev/yclients/install?salon_id=" + salonId(); }

  function onInstall(ev) {
    ev.preventDefault();
    $("frame").src = installUrl();
    $("frame-hint").textContent = "Salon " + salonId() + ": " + installUrl();
    // On a phone the salon's screen sits below the steps: bring it into view, or "Install" seems to do nothing.
    var calm = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    $("salon-screen").scrollIntoView({ block: "start", behavior: calm ? "auto" : "smooth" });
    refreshSalon();
  }

  /* step 2 */
  function onScan(ev) {
    ev.preventDefault();
    var out = $("scan-out");
    say(out, "Fetching the QR shown for salon " + salonId() + "…");
    call("GET", "/_dev/whatsapp/qr?salon_id=" + salonId()).then(function (res) {
      var qr = res.body && res.body.qr;
      if (res.status !== 200 || !qr) {
        say(out, "No QR is showing for salon " + salonId() + " (" + res.status + "). Install first, or press " +
          "“New QR code” on the connect page. / QR-кода сейчас нет.", false);
        return null;
      }
      return call("POST", "/_dev/whatsapp/scan", { qr: qr, phone: phone() }).then(function (scan) {
        say(out, "scan → " + scan.status + " " + brief(scan.body), scan.status === 200);
      });
    });
  }

  function onPair(ev) {
    ev.preventDefault();
    var code = $("pair-code").value.trim().toUpperCase();
    call("POST", "/_dev/whatsapp/pair", { code: code }).then(function (res) {
      say($("scan-out"), "pair → " + res.status + " " + brief(res.body), res.status === 200);
    });
  }

  /** "just now", "12 s ago", "3 min ago", "2 h ago". */
  function ago(seconds) {
    var n = Math.max(0, Math.round(Number(seconds) || 0));
    if (n < 5) { return "just now"; }
    if (n < 60) { return n + " s ago"; }
    if (n < 3600) { return Math.floor(n / 60) + " min ago"; }
    return Math.floor(n / 3600) + " h ago";
  }

  function formatPhone(digits) {
    var m = /^7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(String(digits || ""));
    return m ? "+7 " + m[1] + " " + m[2] + "-" + m[3] + "-" + m[4] : "+" + digits;
  }

  function facts(dl, pairs) {
    while (dl.firstChild) { dl.removeChild(dl.firstChild); }
    pairs.forEach(function (p) {
      var dt = document.createElement("dt");
      dt.textContent = p[0];
      var dd = document.createElement("dd");
      dd.textContent = p[1] === null || p[1] === undefined ? "—" : String(p[1]);
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
  }

  /* step 3 and 4: the chosen salon's own truth (GET /_dev/salon), never the simulator's totals */
  function refreshSalon() {
    var id = salonId();
    return call("GET", "/_dev/salon?salon_id=" + id).then(function (res) {
      if (id !== salonId()) { return; }  // the developer chose another salon meanwhile
      var linked = $("linked"), act = $("activation");
      if (res.status !== 200 || typeof res.body !== "object") {
        linked.textContent = "Salon " + id + ": unavailable (" + res.status + ")";
        linked.className = "bad";
        return;
      }
      var s = res.body, device = s.device;
      if (!s.known) {
        linked.textContent = "Salon " + id + " has not installed the app yet — press “Install in salon”.";
        linked.className = "muted";
      } else if (device) {
        linked.textContent = "✓ Salon " + id + ": WhatsApp " + formatPhone(device.phone) + " linked" +
          (device.live ? ", connected now" : device.live === false ? ", not connected right now" : "") +
          " / подключено";
        linked.className = device.live === false ? "bad" : "ok";
      } else {
        linked.textContent = "Salon " + id + ": no device linked yet — scan its QR / пока не подключено";
        linked.className = "muted";
      }
      facts($("salon-facts"), [["salon", s.title || id], ["session", s.state],
        ["integration", s.integration_status],
        ["linked", device && device.linked_age_s !== null ? ago(device.linked_age_s) : null]]);

      var a = s.activation;
      if (a && a.status >= 200 && a.status < 300) {
        act.textContent = "✓ Activation delivered " + ago(a.age_s) + " / активация отправлена";
        act.className = "ok";
      } else if (a) {
        act.textContent = "Activation answered " + a.status + " " + ago(a.age_s) + "; the server retries by itself";
        act.className = "bad";
      } else {
        act.textContent = "No activation for salon " + id + " yet — it is sent once WhatsApp connects / активации пока нет";
        act.className = "muted";
      }
      var list = $("calls");
      while (list.firstChild) { list.removeChild(list.firstChild); }
      (s.calls || []).forEach(function (c) {
        var li = document.createElement("li");
        if (c.activation) { li.className = "hl"; }
        var head = document.createElement("div");
        head.textContent = ago(c.age_s) + " · " + c.method + " " + c.path + " → " + c.status;
        li.appendChild(head);
        if (c.json !== null && c.json !== undefined) {
          var pre = document.createElement("div");
          pre.className = "out";
          pre.textContent = JSON.stringify(c.json);
          li.appendChild(pre);
        }
        list.appendChild(li);
      });
    });
  }

  function refreshStats() {
    return call("GET", "/_dev/whatsapp/stats").then(function (res) {
      if (res.status === 200 && typeof res.body === "object") {
        facts($("stats"), Object.keys(res.body).map(function (key) { return [key, res.body[key]]; }));
      } else {
        facts($("stats"), [["simulator", "unavailable (" + res.status + ")"]]);
      }
    });
  }

  /* extras */
  function onAction(ev) {
    var btn = ev.target.closest("[data-action]");
    if (!btn) { return; }
    var action = btn.getAttribute("data-action");
    var req;
    if (action === "webhook") {
      req = call("POST", "/_dev/yclients/webhook", { salon_id: salonId(), event: btn.getAttribute("data-event") });
    } else if (action === "logout") {
      req = call("POST", "/_dev/whatsapp/phones/" + encodeURIComponent(phone()) + "/logout", {});
    } else {
      req = call("POST", "/_dev/whatsapp/drop", { phone: phone() });
    }
    req.then(function (res) {
      say($("more-out"), action + " → " + res.status + " " + brief(res.body), res.status >= 200 && res.status < 300);
    });
  }

  /** Polls without overlapping: the next round starts only after both answers arrived. */
  function loop() {
    Promise.all([refreshStats(), refreshSalon()]).then(function () { setTimeout(loop, REFRESH_MS); });
  }

  function start() {
    $("install-form").addEventListener("submit", onInstall);
    $("salon-id").addEventListener("input", function () { $("install-link").href = installUrl(); refreshSalon(); });
    $("scan-form").addEventListener("submit", onScan);
    $("pair-form").addEventListener("submit", onPair);
    document.addEventListener("click", onAction);
    loop();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
