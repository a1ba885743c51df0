/* The salon's connect page: links a salon's WhatsApp by QR code or pairing code.
 *
 * Contract (docs/http-api.md#onboarding, docs/websocket.md): the onboarding JWT arrives in the URL fragment (#token=…, never the query
 * string, so it stays out of access logs and Referer headers); the page authenticates the websocket
 * /marketplace/ws with a first {"type":"auth"} frame and renders the server's frames. While the socket is
 * down it polls the HTTP fallback. No frameworks, no inline code: the page runs under
 * CSP `default-src 'self'; img-src 'self' data:`.
 */
(function () {
  "use strict";

  /* All visible text, both languages. Kept as a JSON literal between the markers so tests can parse it and
   * check that every key exists in both languages. "{name}" is filled in by t(). */
  var I18N = /*I18N-BEGIN*/{
    "ru": {
      "page.title": "Подключение WhatsApp",
      "salon.id": "Салон № {id}",
      "salon.titled": "{title} · № {id}",
      "lang.toggle": "EN",
      "lang.toggle_label": "English version",
      "conn.lost": "Связь с сервером потеряна, переподключаемся…",
      "view.loading.title": "Загрузка…",
      "view.loading.detail": "Соединяемся с сервером.",
      "view.expired.title": "QR-код устарел",
      "view.expired.detail": "Время на сканирование вышло. Нажмите «Новый QR-код», чтобы получить свежий.",
      "view.auth.title": "Ссылка устарела",
      "view.auth.detail": "Откройте приложение заново из YClients — там будет новая ссылка для подключения.",
      "view.phone.title": "Вход по номеру телефона",
      "view.phone.detail": "Введите номер WhatsApp салона — мы покажем код, который нужно ввести на телефоне.",
      "state.idle.title": "Готовим QR-код…",
      "state.idle.detail": "Это займёт пару секунд.",
      "state.starting.title": "Готовим QR-код…",
      "state.starting.detail": "Соединяемся с WhatsApp, это займёт несколько секунд.",
      "state.qr.title": "Отсканируйте QR-код телефоном",
      "state.qr.detail": "Откройте WhatsApp на телефоне салона и наведите камеру на код.",
      "state.pairing_code.title": "Введите код на телефоне",
      "state.pairing_code.detail": "WhatsApp → Настройки → Связанные устройства → Привязка устройства → Привязать по номеру телефона.",
      "state.connecting.title": "Код принят — подключаемся…",
      "state.connecting.detail": "Не закрывайте WhatsApp на телефоне, пока подключение не завершится.",
      "state.connected.title": "WhatsApp подключён",
      "state.connected.detail": "Готово! Эту страницу можно закрыть и вернуться в YClients.",
      "state.reconnecting.title": "Восстанавливаем связь с WhatsApp…",
      "state.reconnecting.detail": "Номер уже привязан, связь вернётся сама через несколько секунд. Ничего делать не нужно.",
      "state.logged_out.title": "WhatsApp отвязан на телефоне",
      "state.logged_out.detail": "Устройство удалено из «Связанных устройств». Чтобы подключиться снова, нажмите «Новый QR-код» и отсканируйте его.",
      "state.conflict.title": "WhatsApp подключён в другом месте",
      "state.conflict.detail": "Этот номер занят другим подключением. В WhatsApp откройте Настройки → Связанные устройства, удалите лишние устройства, затем нажмите «Новый QR-код». Если повторяется — напишите в поддержку.",
      "state.failed.title": "Не удалось подключить WhatsApp",
      "state.failed.detail": "Нажмите «Попробовать снова». Если ошибка повторяется, напишите в поддержку и укажите номер салона.",
      "state.frozen.title": "Подписка на приложение приостановлена",
      "state.frozen.detail": "Оплаченный период закончился. Продлите подписку в маркетплейсе YClients и откройте приложение снова.",
      "state.uninstalled.title": "Приложение отключено в YClients",
      "state.uninstalled.detail": "Чтобы снова подключить WhatsApp, установите приложение в маркетплейсе YClients.",
      "qr.alt": "QR-код для привязки WhatsApp",
      "qr.step1": "Откройте WhatsApp на телефоне салона",
      "qr.step2": "Настройки → Связанные устройства",
      "qr.step3": "Привязка устройства — наведите камеру на код",
      "qr.countdown": "Новый код через {s} с",
      "qr.refreshing": "Обновляем код…",
      "btn.new_qr": "Новый QR-код",
      "btn.retry": "Попробовать снова",
      "mode.to_phone": "Войти по номеру телефона",
      "mode.to_qr": "Показать QR-код",
      "phone.label": "Номер WhatsApp салона",
      "phone.hint": "С кодом страны, например +7 900 123-45-67",
      "phone.submit": "Получить код",
      "phone.invalid": "Проверьте номер: нужно от 10 до 15 цифр вместе с кодом страны.",
      "pair.title": "Код для входа",
      "pair.waiting": "Запрашиваем код…",
      "pair.step1": "Откройте WhatsApp → Настройки → Связанные устройства",
      "pair.step2": "Привязка устройства → Привязать по номеру телефона",
      "pair.step3": "Введите этот код на телефоне",
      "pair.countdown": "Код действует ещё {s} с",
      "pair.expired": "Срок действия кода истёк — получите новый.",
      "pair.copy": "Скопировать",
      "pair.copied": "Скопировано",
      "pair.copy_failed": "Не удалось скопировать — выделите код и скопируйте вручную.",
      "pair.new": "Получить новый код",
      "connected.as": "Подключён номер",
      "err.invalid_phone": "Этот номер не подходит. Проверьте его и введите с кодом страны.",
      "err.rate_limited": "Слишком много попыток. Подождите минуту и попробуйте снова.",
      "err.busy": "Предыдущий запрос ещё выполняется — подождите несколько секунд.",
      "err.pairing_failed": "Не удалось получить код. Попробуйте ещё раз или войдите по QR-коду.",
      "err.unavailable": "Сервис временно недоступен. Мы переподключимся автоматически.",
      "err.bad_request": "Страница отправила неверный запрос. Обновите страницу.",
      "err.generic": "Что-то пошло не так. Попробуйте ещё раз; если повторяется — напишите в поддержку.",
      "footer": "Ссылка действует 1 час с момента открытия приложения в YClients."
    },
    "en": {
      "page.title": "Connect WhatsApp",
      "salon.id": "Salon #{id}",
      "salon.titled": "{title} · #{id}",
      "lang.toggle": "RU",
      "lang.toggle_label": "Русская версия",
      "conn.lost": "Connection lost, reconnecting…",
      "view.loading.title": "Loading…",
      "view.loading.detail": "Connecting to the server.",
      "view.expired.title": "The QR code has expired",
      "view.expired.detail": "Time to scan ran out. Press “New QR code” to get a fresh one.",
      "view.auth.title": "This link has expired",
      "view.auth.detail": "Open the app again from YClients — it will give you a new link.",
      "view.phone.title": "Link with a phone number",
      "view.phone.detail": "Enter the salon's WhatsApp number and we will show a code to type on the phone.",
      "state.idle.title": "Preparing the QR code…",
      "state.idle.detail": "This takes a couple of seconds.",
      "state.starting.title": "Preparing the QR code…",
      "state.starting.detail": "Connecting to WhatsApp, this takes a few seconds.",
      "state.qr.title": "Scan the QR code with the phone",
      "state.qr.detail": "Open WhatsApp on the salon's phone and point the camera at the code.",
      "state.pairing_code.title": "Enter the code on the phone",
      "state.pairing_code.detail": "WhatsApp → Settings → Linked devices → Link a device → Link with phone number instead.",
      "state.connecting.title": "Code accepted — connecting…",
      "state.connecting.detail": "Keep WhatsApp open on the phone until the connection completes.",
      "state.connected.title": "WhatsApp is connected",
      "state.connected.detail": "All done! You can close this page and return to YClients.",
      "state.reconnecting.title": "Restoring the WhatsApp connection…",
      "state.reconnecting.detail": "The number is linked; the connection will come back by itself in a few seconds. Nothing to do.",
      "state.logged_out.title": "WhatsApp was unlinked on the phone",
      "state.logged_out.detail": "The device was removed from “Linked devices”. To connect again, press “New QR code” and scan it.",
      "state.conflict.title": "WhatsApp is connected elsewhere",
      "state.conflict.detail": "Another connection took over this number. In WhatsApp open Settings → Linked devices, remove extra devices, then press “New QR code”. If it keeps happening, contact support.",
      "state.failed.title": "Could not connect WhatsApp",
      "state.failed.detail": "Press “Try again”. If the error repeats, contact support and mention the salon number.",
      "state.frozen.title": "The app subscription is paused",
      "state.frozen.detail": "The paid period has ended. Renew the subscription in the YClients marketplace and open the app again.",
      "state.uninstalled.title": "The app was removed in YClients",
      "state.uninstalled.detail": "To connect WhatsApp again, install the app from the YClients marketplace.",
      "qr.alt": "QR code to link WhatsApp",
      "qr.step1": "Open WhatsApp on the salon's phone",
      "qr.step2": "Settings → Linked devices",
      "qr.step3": "Link a device — point the camera at the code",
      "qr.countdown": "New code in {s} s",
      "qr.refreshing": "Refreshing the code…",
      "btn.new_qr": "New QR code",
      "btn.retry": "Try again",
      "mode.to_phone": "Link with a phone number instead",
      "mode.to_qr": "Show the QR code",
      "phone.label": "Salon's WhatsApp number",
      "phone.hint": "With the country code, e.g. +7 900 123-45-67",
      "phone.submit": "Get code",
      "phone.invalid": "Check the number: it needs 10 to 15 digits including the country code.",
      "pair.title": "Your link code",
      "pair.waiting": "Requesting a code…",
      "pair.step1": "Open WhatsApp → Settings → Linked devices",
      "pair.step2": "Link a device → Link with phone number instead",
      "pair.step3": "Type this code on the phone",
      "pair.countdown": "Code valid for {s} s",
      "pair.expired": "The code has expired — get a new one.",
      "pair.copy": "Copy",
      "pair.copied": "Copied",
      "pair.copy_failed": "Could not copy — select the code and copy it by hand.",
      "pair.new": "Get a new code",
      "connected.as": "Connected number",
      "err.invalid_phone": "This number does not work. Check it and include the country code.",
      "err.rate_limited": "Too many attempts. Wait a minute and try again.",
      "err.busy": "The previous request is still running — wait a few seconds.",
      "err.pairing_failed": "Could not get a code. Try again or use the QR code.",
      "err.unavailable": "The service is temporarily unavailable. We will reconnect automatically.",
      "err.bad_request": "The page sent a bad request. Reload the page.",
      "err.generic": "Something went wrong. Try again; if it repeats, contact support.",
      "footer": "The link is valid for 1 hour after opening the app in YClients."
    }
  }/*I18N-END*/;

  /* Server error codes (docs/websocket.md#error-codes frames, docs/http-api.md#conventions JSON errors) → dictionary keys. Unknown codes fall back
   * to err.generic with the server's own message shown alongside. */
  var ERROR_KEYS = {
    invalid_phone: "err.invalid_phone",
    rate_limited: "err.rate_limited",
    too_many_requests: "err.rate_limited",
    busy: "err.busy",
    pairing_failed: "err.pairing_failed",
    pairing_code_failed: "err.pairing_failed",
    unavailable: "err.unavailable",
    service_unavailable: "err.unavailable",
    bad_request: "err.bad_request",
    malformed_frame: "err.bad_request",
    unknown_type: "err.bad_request"
  };

  var STATES = ["idle", "starting", "qr", "pairing_code", "connecting", "connected", "reconnecting",
    "logged_out", "conflict", "failed", "frozen", "uninstalled"];
  // States after which nothing happens until someone acts; a new QR restarts from here.
  var RETRYABLE = { logged_out: 1, conflict: 1, failed: 1 };
  var FINAL = { frozen: 1, uninstalled: 1 };
  var BUSY = { connecting: 1, reconnecting: 1 };

  var WS_PATH = "/marketplace/ws";
  var POLL_QR_URL = "/marketplace/api/qr";
  var POLL_STATUS_URL = "/marketplace/api/status";
  var PAIRING_URL = "/marketplace/api/pairing-code";
  var TOKEN_KEY = "actor-admin.onboarding-token";
  var LANG_KEY = "actor-admin.lang";
  var PING_EVERY_MS = 25000;
  var PONG_WAIT_MS = 10000;
  var POLL_EVERY_MS = 3000;
  var BACKOFF_CAP_MS = 30000;
  // A QR whose countdown ran out is shown as expired only after this grace, so the next QR of the batch
  // (which the server sends right on time) does not flash an "expired" screen.
  var QR_GRACE_MS = 5000;

  /* ---------- small helpers ---------- */

  function $(id) { return document.getElementById(id); }

  // Storage throws SecurityError in some sandboxed iframes; the page must work without it.
  function storageGet(kind, key) {
    try { return window[kind].getItem(key); } catch (e) { return null; }
  }
  function storageSet(kind, key, value) {
    try { window[kind].setItem(key, value); } catch (e) { /* not available: keep it in memory only */ }
  }

  function now() { return Date.now(); }

  /** Decodes a JWT's payload for display only; the server verifies the token. */
  function decodeClaims(token) {
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) { part += "="; }
      var binary = atob(part);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
      var claims = JSON.parse(new TextDecoder("utf-8").decode(bytes));
      return claims && typeof claims === "object" ? claims : {};
    } catch (e) {
      return {};
    }
  }

  function digitsOf(phone) { return String(phone || "").replace(/\D/g, ""); }

  /** +7 900 123-45-67 for Russian numbers, +digits for the rest. */
  function formatPhone(phone) {
    var d = digitsOf(phone);
    if (!d) { return ""; }
    var m = /^7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(d);
    return m ? "+7 " + m[1] + " " + m[2] + "-" + m[3] + "-" + m[4] : "+" + d;
  }

  /** Digits the server expects for a pairing code, or null. Mirrors the server's rule: a Russian 8… of
   * 11 digits becomes 7…, 10 digits get the Russian 7 in front. */
  function normalisePhone(input) {
    var d = digitsOf(input);
    if (d.length === 11 && d.charAt(0) === "8") { d = "7" + d.slice(1); }
    if (d.length === 10) { d = "7" + d; }
    return d.length >= 10 && d.length <= 15 ? d : null;
  }

  /* ---------- language ---------- */

  function initialLang() {
    var m = /[?&]lang=(ru|en)\b/.exec(location.search);
    if (m) { return m[1]; }
    var saved = storageGet("localStorage", LANG_KEY);
    return saved === "en" || saved === "ru" ? saved : "ru";
  }

  function t(key, vars) {
    var text = I18N[model.lang][key];
    if (text === undefined) { text = I18N.ru[key] || key; }
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, function (_, name) {
        return vars[name] === undefined ? "" : String(vars[name]);
      });
    }
    return text;
  }

  /* ---------- the model: everything the page shows is derived from it ---------- */

  var model = {
    lang: initialLang(),
    token: null,
    claims: {},
    link: "connecting",      // connecting | open | down
    authFailed: false,
    state: null,             // the server's state, docs/websocket.md#states
    phone: "",
    mode: "qr",              // qr | phone
    qr: null,                // {raw, node, expiresAt}
    qrRequested: false,      // we asked for QRs at least once: a later idle means the batch ran out
    pairing: null,           // {code, expiresAt}
    pairingPending: false,
    pairingPhone: "",
    phoneError: "",
    error: null,             // {code, message}
    copyNote: ""
  };

  /* ---------- rendering ---------- */

  function setText(el, text) {
    if (el.textContent !== text) { el.textContent = text; }
  }
  function show(el, visible) { el.hidden = !visible; }

  function qrExpired() {
    return !!model.qr && now() > model.qr.expiresAt + QR_GRACE_MS;
  }

  /** Which screen to show: a pure function of the model. */
  function currentView() {
    if (model.authFailed) { return "auth"; }
    var s = model.state;
    if (!s) { return "loading"; }
    if (s === "connected") { return "connected"; }
    if (RETRYABLE[s] || FINAL[s] || BUSY[s]) { return "state"; }
    if (model.mode === "phone") { return "phone"; }
    if (s === "qr") {
      if (!model.qr) { return "preparing"; }  // joined by polling before the SVG arrived
      return qrExpired() ? "expired" : "qr";
    }
    if (s === "idle" && model.qrRequested && !model.pairingPending) { return "expired"; }
    return "state";
  }

  function render() {
    var view = currentView();
    var s = model.state;
    var html = document.documentElement;
    if (html.lang !== model.lang) { html.lang = model.lang; }
    document.title = t("page.title");

    var nodes = document.querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) {
      var key = nodes[i].getAttribute("data-i18n");
      if (nodes[i].id !== "state-title") { setText(nodes[i], t(key)); }
    }

    var toggle = $("lang-toggle");
    setText(toggle, t("lang.toggle"));
    toggle.setAttribute("aria-label", t("lang.toggle_label"));
    toggle.setAttribute("lang", model.lang === "ru" ? "en" : "ru");

    var id = model.claims.salon_id || model.claims.sub;
    var title = model.claims.title || model.claims.company_title || model.claims.salon_name;
    var salonText = id === undefined ? "" : (title ? t("salon.titled", { title: title, id: id })
      : t("salon.id", { id: id }));
    setText($("app").querySelector("[data-testid=salon]"), salonText);

    var banner = $("banner");
    show(banner, model.link === "down" && !model.authFailed);
    setText(banner, t("conn.lost"));

    var titleKey, detailKey, icon = "";
    if (view === "auth") { titleKey = "view.auth.title"; detailKey = "view.auth.detail"; icon = "warn"; }
    else if (view === "loading") { titleKey = "view.loading.title"; detailKey = "view.loading.detail"; icon = "spin"; }
    else if (view === "preparing") { titleKey = "state.starting.title"; detailKey = "state.starting.detail"; icon = "spin"; }
    else if (view === "expired") { titleKey = "view.expired.title"; detailKey = "view.expired.detail"; icon = "warn"; }
    else if (view === "phone") {
      titleKey = model.pairing ? "state.pairing_code.title" : "view.phone.title";
      detailKey = model.pairing ? "" : "view.phone.detail";
    } else {
      titleKey = "state." + s + ".title"; detailKey = "state." + s + ".detail";
      if (s === "connected") { icon = "ok"; }
      else if (RETRYABLE[s] || FINAL[s]) { icon = "warn"; }
      else if (s !== "qr") { icon = "spin"; }
    }
    var stateTitle = $("state-title");
    setText(stateTitle, t(titleKey));
    stateTitle.setAttribute("data-state", view === "state" || view === "connected" ? s : view);
    setText($("state-detail"), detailKey ? t(detailKey) : "");
    $("status-icon").className = "status-icon" + (icon ? " icon-" + icon : "");

    var err = $("error-text");
    var errText = "";
    if (model.error && view !== "auth") {
      var ek = ERROR_KEYS[model.error.code];
      errText = ek ? t(ek) : t("err.generic") + (model.error.message ? " (" + model.error.message + ")" : "");
    }
    setText(err, errText);
    show(err, !!errText);

    // QR panel
    show($("panel-qr"), view === "qr");
    var qrBox = $("qr");
    qrBox.setAttribute("aria-label", t("qr.alt"));
    if (model.qr && qrBox.firstChild !== model.qr.node) {
      while (qrBox.firstChild) { qrBox.removeChild(qrBox.firstChild); }
      if (model.qr.node) { qrBox.appendChild(model.qr.node); }
    }

    // Phone / pairing panel
    show($("panel-phone"), view === "phone");
    show($("phone-form"), !model.pairing && !model.pairingPending);
    var phoneErr = $("phone-error");
    setText(phoneErr, model.phoneError ? t(model.phoneError) : "");
    show(phoneErr, !!model.phoneError);
    $("phone-input").setAttribute("aria-invalid", model.phoneError ? "true" : "false");
    show($("pairing"), !!model.pairing || model.pairingPending);
    setText($("pairing-code"), model.pairing ? model.pairing.code : t("pair.waiting"));
    $("pairing-code").className = "pairing-code" + (model.pairing ? "" : " pending");
    show($("copy-code"), !!model.pairing);
    if (model.copyNote) { setText($("copy-code"), t(model.copyNote)); }

    // Connected panel
    show($("panel-connected"), view === "connected");
    setText($("phone-display"), formatPhone(model.phone));

    // Actions
    var newQr = $("new-qr");
    var offerQr = view === "expired" || (view === "state" && !!RETRYABLE[s]);
    show(newQr, offerQr);
    setText(newQr, t(s === "failed" && view === "state" ? "btn.retry" : "btn.new_qr"));

    var modeToggle = $("mode-toggle");
    var offerMode = view === "qr" || view === "phone" || view === "expired" || view === "preparing" ||
      (view === "state" && (s === "idle" || s === "starting" || s === "pairing_code"));
    show(modeToggle, offerMode);
    setText(modeToggle, t(model.mode === "phone" ? "mode.to_qr" : "mode.to_phone"));

    renderCountdowns();
  }

  /** Second-by-second parts, updated by the ticker without a full render. */
  function renderCountdowns() {
    var qrCd = $("qr-countdown");
    if (model.qr) {
      var left = Math.ceil((model.qr.expiresAt - now()) / 1000);
      setText(qrCd, left > 0 ? t("qr.countdown", { s: left }) : t("qr.refreshing"));
    } else {
      setText(qrCd, "");
    }
    var pCd = $("pairing-countdown");
    var expiredCode = false;
    if (model.pairing) {
      var pl = Math.ceil((model.pairing.expiresAt - now()) / 1000);
      expiredCode = pl <= 0;
      setText(pCd, expiredCode ? t("pair.expired") : t("pair.countdown", { s: pl }));
    } else {
      setText(pCd, "");
    }
    $("pairing-code").classList.toggle("expired", expiredCode);
    show($("pairing-new"), expiredCode);
  }

  var lastView = null;
  function tick() {
    var view = currentView();
    if (view !== lastView) { lastView = view; render(); } else { renderCountdowns(); }
  }

  /* ---------- QR SVG ---------- */

  /** Parses the server's SVG and returns a detached, scrubbed <svg> node (or null). The SVG comes from our
   * own server; scrubbing scripts and handlers is defence in depth, not the trust boundary. */
  function svgNode(text) {
    if (typeof text !== "string" || text.indexOf("<svg") === -1) { return null; }
    var doc = new DOMParser().parseFromString(text, "image/svg+xml");
    var root = doc.documentElement;
    if (!root || root.localName !== "svg" || doc.getElementsByTagName("parsererror").length) { return null; }
    var bad = root.querySelectorAll("script, foreignObject, iframe, a");
    for (var i = 0; i < bad.length; i++) { bad[i].parentNode.removeChild(bad[i]); }
    var all = [root].concat(Array.prototype.slice.call(root.querySelectorAll("*")));
    for (var j = 0; j < all.length; j++) {
      var attrs = Array.prototype.slice.call(all[j].attributes);
      for (var k = 0; k < attrs.length; k++) {
        var name = attrs[k].name.toLowerCase();
        if (name.indexOf("on") === 0 || name === "href" || name === "xlink:href" || name === "style") {
          all[j].removeAttribute(attrs[k].name);
        }
      }
    }
    // Scale by CSS, keep the modules sharp: a viewBox is what lets width:100% scale the drawing.
    if (!root.getAttribute("viewBox")) {
      var w = parseFloat(root.getAttribute("width")), h = parseFloat(root.getAttribute("height"));
      if (w > 0 && h > 0) { root.setAttribute("viewBox", "0 0 " + w + " " + h); }
    }
    root.removeAttribute("width");
    root.removeAttribute("height");
    root.setAttribute("shape-rendering", "crispEdges");
    root.setAttribute("aria-hidden", "true");
    root.setAttribute("focusable", "false");
    return document.importNode(root, true);
  }

  /* ---------- frames from the server (websocket, or synthesised from polling) ---------- */

  function handleFrame(frame) {
    if (!frame || typeof frame !== "object") { return; }
    switch (frame.type) {
      case "state":
        if (STATES.indexOf(frame.state) === -1) { return; }
        if (frame.state !== model.state) { model.error = null; }
        model.state = frame.state;
        if (frame.phone) { model.phone = String(frame.phone); }
        if (frame.state === "idle" && !model.qrRequested && model.mode === "qr") { requestQr(); }
        if (frame.state === "connected" || RETRYABLE[frame.state] || FINAL[frame.state]) {
          model.pairingPending = false;
        }
        break;
      case "qr":
        var node = svgNode(frame.svg);
        var sameQr = model.qr && model.qr.raw === frame.qr && model.qr.node;
        model.qr = {
          raw: frame.qr,
          node: sameQr ? model.qr.node : node,
          expiresAt: now() + Math.max(0, Number(frame.expires_in) || 0) * 1000
        };
        model.qrRequested = true;
        if (model.state !== "pairing_code") { model.state = "qr"; }
        model.error = null;
        break;
      case "pairing_code":
        model.pairing = {
          code: String(frame.code || ""),
          expiresAt: now() + Math.max(0, Number(frame.expires_in) || 0) * 1000
        };
        model.pairingPending = false;
        model.mode = "phone";
        model.copyNote = "";
        model.error = null;
        break;
      case "connected":
        model.state = "connected";
        if (frame.phone) { model.phone = String(frame.phone); }
        model.error = null;
        break;
      case "error":
        if (frame.code === "unauthorized" || frame.code === "token_expired") { authFailed(); return; }
        model.pairingPending = false;
        if (frame.code === "invalid_phone" && model.mode === "phone" && !model.pairing) {
          model.phoneError = "err.invalid_phone";
        } else {
          model.error = { code: String(frame.code || ""), message: String(frame.message || "") };
        }
        break;
      default:
        return; // pong and anything newer than this page: nothing to show
    }
    render();
  }

  /* ---------- talking to the server ---------- */

  var ws = null;
  var attempt = 0;
  var reconnectTimer = null;
  var pingTimer = null;
  var pongTimer = null;
  var pollTimer = null;
  var lastFrameAt = 0;

  function send(frame) {
    if (model.link === "open" && ws && ws.readyState === 1) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function requestQr() {
    model.qrRequested = true;
    model.qr = null;
    model.error = null;
    model.mode = "qr";
    if (!send({ type: "request_qr" })) { pollSoon(0); }
  }

  function requestPairing(phone) {
    model.pairingPhone = phone;
    model.pairing = null;
    model.pairingPending = true;
    model.phoneError = "";
    model.error = null;
    if (!send({ type: "request_pairing_code", phone: phone })) {
      api("POST", PAIRING_URL, { phone: phone }).then(function (res) {
        if (!res) { return; }
        if (res.ok && res.body.code) {
          handleFrame({ type: "pairing_code", code: res.body.code, expires_in: res.body.expires_in });
        } else {
          var code = res.body && res.body.error ? res.body.error.code : "pairing_failed";
          handleFrame({ type: "error", code: code, message: "" });
        }
      });
    }
    render();
  }

  function authFailed() {
    model.authFailed = true;
    clearTimeout(reconnectTimer);
    clearTimeout(pollTimer);
    stopPing();
    if (ws) { try { ws.close(); } catch (e) { /* already closing */ } }
    render();
  }

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + WS_PATH;
  }

  function connect() {
    if (model.authFailed) { return; }
    var sock;
    try { sock = new WebSocket(wsUrl()); } catch (e) { onClosed(sock, 1006); return; }
    ws = sock;
    var framed = false;
    sock.onopen = function () {
      // The token goes in the first frame, never in the URL (docs/websocket.md#authentication).
      sock.send(JSON.stringify({ type: "auth", token: model.token }));
      startPing(sock);
    };
    sock.onmessage = function (ev) {
      lastFrameAt = now();
      clearTimeout(pongTimer);
      if (!framed) {
        // The first frame after auth proves the session works: reset the back-off, stop polling.
        framed = true;
        attempt = 0;
        model.link = "open";
        clearTimeout(pollTimer);
        pollTimer = null;
      }
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      handleFrame(frame);
    };
    sock.onclose = function (ev) { onClosed(sock, ev.code); };
  }

  function onClosed(sock, code) {
    if (sock && ws !== sock) { return; }
    ws = null;
    stopPing();
    if (code === 4401) { authFailed(); return; }
    if (model.authFailed) { return; }
    model.link = "down";
    render();
    if (!pollTimer) { pollSoon(0); }
    // 1 s, 2 s, 4 s … capped at 30 s, with jitter so a server restart is not met by every salon at once.
    var base = Math.min(BACKOFF_CAP_MS, 1000 * Math.pow(2, attempt));
    var delay = Math.min(BACKOFF_CAP_MS, base * (0.8 + Math.random() * 0.4));
    attempt += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  function startPing(sock) {
    stopPing();
    pingTimer = setInterval(function () {
      if (sock.readyState !== 1) { return; }
      var sentAt = now();
      sock.send(JSON.stringify({ type: "ping" }));
      clearTimeout(pongTimer);
      // A half-open connection never closes by itself: no answer at all → close and reconnect.
      pongTimer = setTimeout(function () {
        if (lastFrameAt < sentAt) { try { sock.close(); } catch (e) { /* closing */ } onClosed(sock, 1006); }
      }, PONG_WAIT_MS);
    }, PING_EVERY_MS);
  }

  function stopPing() {
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    pingTimer = null;
  }

  /** fetch with the onboarding token; resolves {ok, status, body} or null after an auth failure. */
  function api(method, url, body) {
    var init = {
      method: method,
      headers: { "Authorization": "Bearer " + model.token, "Accept": "application/json" },
      credentials: "same-origin",
      cache: "no-store"
    };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      if (res.status === 401) { authFailed(); return null; }
      return res.json().catch(function () { return {}; }).then(function (json) {
        return { ok: res.ok, status: res.status, body: json || {} };
      });
    }, function () {
      return { ok: false, status: 0, body: {} };
    });
  }

  /** While the websocket is down: the HTTP fallback. POST /api/qr starts QR issuing, so it is used only
   * while the page actually wants a QR; otherwise the side-effect-free status endpoint. */
  function wantsQr() {
    var s = model.state;
    return model.mode === "qr" && currentView() !== "expired" &&
      (s === null || s === "idle" || s === "starting" || s === "qr");
  }

  function pollSoon(delay) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, delay);
  }

  function poll() {
    if (model.authFailed || model.link === "open") { pollTimer = null; return; }
    var req = wantsQr() ? api("POST", POLL_QR_URL, {}) : api("GET", POLL_STATUS_URL);
    req.then(function (res) {
      if (model.authFailed || model.link === "open") { return; }
      if (res && res.ok) {
        var b = res.body;
        if (b.svg && b.state === "qr") {
          handleFrame({ type: "qr", qr: b.qr, svg: b.svg, expires_in: b.expires_in });
        }
        if (b.state) {
          handleFrame({ type: "state", state: b.state, phone: b.phone });
        }
      }
      pollTimer = setTimeout(poll, POLL_EVERY_MS);
    });
  }

  /* ---------- user actions ---------- */

  function onNewQr() {
    model.state = "starting";
    model.pairing = null;
    requestQr();
    render();
  }

  function onModeToggle() {
    if (model.mode === "phone") {
      model.mode = "qr";
      model.pairing = null;
      model.pairingPending = false;
      if (model.state !== "qr" || !model.qr || qrExpired()) { onNewQr(); return; }
    } else {
      model.mode = "phone";
      model.phoneError = "";
    }
    render();
    var focus = model.mode === "phone" ? $("phone-input") : $("mode-toggle");
    if (focus && !focus.hidden) { focus.focus(); }
  }

  function onPhoneSubmit(ev) {
    ev.preventDefault();
    var phone = normalisePhone($("phone-input").value);
    if (!phone) {
      model.phoneError = "phone.invalid";
      render();
      $("phone-input").focus();
      return;
    }
    requestPairing(phone);
  }

  function onCopy() {
    if (!model.pairing) { return; }
    var code = model.pairing.code;
    var done = function (ok) { model.copyNote = ok ? "pair.copied" : "pair.copy_failed"; render(); };
    // Inside the YClients iframe the async clipboard may be denied by permissions policy: fall back to
    // selecting the code so the admin can copy it by hand.
    var fallback = function () {
      var ok = false;
      try {
        var range = document.createRange();
        range.selectNodeContents($("pairing-code"));
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        ok = document.execCommand && document.execCommand("copy");
      } catch (e) { ok = false; }
      done(!!ok);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(code).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }

  function onPairingNew() {
    if (model.pairingPhone) { requestPairing(model.pairingPhone); }
    else { model.pairing = null; render(); }
  }

  function onLangToggle() {
    model.lang = model.lang === "ru" ? "en" : "ru";
    storageSet("localStorage", LANG_KEY, model.lang);
    render();
  }

  /* ---------- start ---------- */

  function readToken() {
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    var token = null;
    if (m) {
      try { token = decodeURIComponent(m[1]); } catch (e) { token = m[1]; }
      // Out of the visible URL at once: no bookmarks, screenshots or copied links carry it.
      try { history.replaceState(history.state, "", location.pathname + location.search); } catch (e) {
        location.hash = "";
      }
      storageSet("sessionStorage", TOKEN_KEY, token);
    } else {
      // A reload after the fragment was removed: the same tab's session keeps it.
      token = storageGet("sessionStorage", TOKEN_KEY);
    }
    return token;
  }

  function start() {
    model.token = readToken();
    $("lang-toggle").addEventListener("click", onLangToggle);
    $("new-qr").addEventListener("click", onNewQr);
    $("mode-toggle").addEventListener("click", onModeToggle);
    $("phone-form").addEventListener("submit", onPhoneSubmit);
    $("copy-code").addEventListener("click", onCopy);
    $("pairing-new").addEventListener("click", onPairingNew);
    $("phone-input").addEventListener("input", function () {
      if (model.phoneError) { model.phoneError = ""; render(); }
    });
    if (!model.token) { model.authFailed = true; render(); return; }
    model.claims = decodeClaims(model.token);
    render();
    setInterval(tick, 250);
    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
