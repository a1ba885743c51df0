/* The dev landing page (GET / in `actor-admin dev`): walks a developer through install → QR → scan →
 * connected → the activation call, using the dev doubles of docs/doubles.md. Same-origin fetches only. */
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

  /* step 3 */
  function refreshStats() {
    return call("GET", "/_dev/whatsapp/stats").then(function (res) {
      var dl = $("stats");
      while (dl.firstChild) { dl.removeChild(dl.firstChild); }
      if (res.status !== 200 || typeof res.body !== "object") {
        $("linked").textContent = "Simulator stats unavailable (" + res.status + ")";
        $("linked").className = "bad";
        return;
      }
      Object.keys(res.body).forEach(function (key) {
        var dt = document.createElement("dt");
        dt.textContent = key;
        var dd = document.createElement("dd");
        dd.textContent = String(res.body[key]);
        dl.appendChild(dt);
        dl.appendChild(dd);
      });
      var linked = Number(res.body.linked_devices) || 0;
      $("linked").textContent = linked > 0 ? "✓ " + linked + " device(s) linked / подключено"
        : "No device linked yet / пока не подключено";
      $("linked").className = linked > 0 ? "ok" : "muted";
    });
  }

  /* step 4 */
  function refreshCalls() {
    return call("GET", "/_dev/yclients/calls").then(function (res) {
      var body = $("calls-body");
      var calls = Array.isArray(res.body) ? res.body : [];
      while (body.firstChild) { body.removeChild(body.firstChild); }
      var activated = false;
      // Newest first: the activation is what a developer is waiting for.
      calls.slice().reverse().forEach(function (c) {
        var tr = document.createElement("tr");
        var isActivation = /\/marketplace\/partner\/callback/.test(String(c.path));
        if (isActivation) {
          tr.className = "hl";
          if (c.status >= 200 && c.status < 300) { activated = true; }
        }
        [c.at, c.method, c.path, c.status].forEach(function (v, i) {
          var td = document.createElement("td");
          td.textContent = v === null || v === undefined ? "" : String(v);
          if (i === 2 && c.json !== undefined && c.json !== null) {
            var pre = document.createElement("div");
            pre.className = "out";
            pre.textContent = JSON.stringify(c.json);
            td.appendChild(pre);
          }
          if (i === 3) { td.className = "num"; }
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      var act = $("activation");
      if (res.status !== 200) {
        act.textContent = "Call log unavailable (" + res.status + ")";
        act.className = "bad";
      } else {
        act.textContent = activated ? "✓ Activation delivered / активация отправлена"
          : calls.length + " call(s), no successful activation yet / активации пока нет";
        act.className = activated ? "ok" : "muted";
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
    Promise.all([refreshStats(), refreshCalls()]).then(function () { setTimeout(loop, REFRESH_MS); });
  }

  function start() {
    $("install-form").addEventListener("submit", onInstall);
    $("salon-id").addEventListener("input", function () { $("install-link").href = installUrl(); });
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
