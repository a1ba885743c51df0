/* The salon's connect page: links a salon's WhatsApp by QR code or pairing code.
 *
 * Contract (web/README.md): the onboarding JWT arrives in the URL fragment (#token=…, never the query
 * string, so it stays out of access logs and Referer headers); the page authenticates the websocket
 * /marketplace/ws with a first {"type":"auth"} frame and renders the server's frames. While the socket is
 * down it polls the HTTP fallback. No frameworks, no inline code: the page runs under
 * CSP `default-src 'self'; img-src 'self' data:`. The server sends a QR as its raw payload; the page draws it
 * with the vendored encoder web/vendor/lean-qr-*.mjs (pinned in web/vendor/manifest.json), loaded once by import().
 *
 * One rule for every screen: the page shows one true sentence per state. The server's `error` frames that
 * explain a state (a QR batch that ran out, an unlink, a freeze) become that state's words, never a second,
 * generic error box under them.
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
      "conn.lost": "Связь с сервером прервалась — переподключаемся…",
      "view.loading.title": "Загрузка…",
      "view.loading.detail": "Соединяемся с сервером.",
      "view.expired.title": "QR-код устарел",
      "view.expired.detail": "Время на сканирование вышло. Нажмите «Новый QR-код», чтобы получить свежий.",
      "view.auth.title": "Ссылка устарела",
      "view.auth.detail": "Ссылка действует 1 час. Откройте приложение заново из YClients — там будет новая ссылка.",
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
      "state.conflict.detail": "Этот номер WhatsApp сейчас использует другое подключение, и мы остановились, чтобы не перебивать его. Через минуту попробуем ещё раз сами; поддержка уже получила уведомление.",
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
      "phone.hint": "С кодом страны, например",
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
      "err.qr_unavailable": "Не удалось нарисовать QR-код. Обновите страницу или войдите по номеру телефона.",
      "err.generic": "Что-то пошло не так. Попробуйте ещё раз; если повторяется — напишите в поддержку и назовите код «{code}».",
      "footer": "Ссылка действует 1 час с момента открытия приложения в YClients.",
      "view.invalid.title": "Ссылка не прошла проверку",
      "view.invalid.detail": "Похоже, ссылка скопирована не полностью или изменена. Откройте приложение заново из YClients.",
      "view.nolink.title": "Нет ссылки для подключения",
      "view.nolink.detail": "Эта страница открывается из маркетплейса YClients. Откройте приложение там — оно приведёт сюда со ссылкой.",
      "view.offline.title": "Нет связи с сервером",
      "view.offline.detail": "Проверьте интернет. Страница восстановится сама, как только сервер снова ответит.",
      "reason.connection_lost.title": "Связь с WhatsApp прервалась",
      "reason.connection_lost.detail": "Это случилось во время привязки. Нажмите «Новый QR-код», чтобы попробовать ещё раз.",
      "reason.banned.title": "WhatsApp заблокировал этот номер",
      "reason.banned.detail": "WhatsApp заблокировал номер и отвязал устройство. Подключите другой номер: нажмите «Новый QR-код» и отсканируйте его телефоном с этим номером.",
      "reason.logout.title": "WhatsApp отвязан поддержкой",
      "reason.logout.detail": "Устройство отвязала наша поддержка. Чтобы подключиться снова, нажмите «Новый QR-код» и отсканируйте его.",
      "reason.temporarily_banned.title": "WhatsApp временно ограничил номер",
      "reason.temporarily_banned.detail": "Подключение восстановится само, когда ограничение закончится. Ничего делать не нужно.",
      "reason.temporarily_banned.minutes": "Осталось примерно {m} мин.",
      "reason.client_outdated.title": "WhatsApp не принимает нашу версию",
      "reason.client_outdated.detail": "Мы уже знаем об этом и обновляем сервис. Подключение восстановится после обновления — ничего делать не нужно.",
      "reason.reconnect_exhausted.title": "Не удаётся восстановить связь с WhatsApp",
      "reason.reconnect_exhausted.detail": "Мы несколько раз пробовали переподключиться. Нажмите «Попробовать снова»; поддержка уже получила уведомление.",
      "reason.transport_mismatch.title": "Сервер не узнал сохранённое подключение",
      "reason.transport_mismatch.detail": "Подключение WhatsApp сохранено и не удалено — похоже, это ошибка настройки сервера, поддержка уже получила уведомление. Если вы сами отвязали устройство в телефоне, нажмите «Попробовать снова» и отсканируйте новый QR-код.",
      "reconnect.unreachable.title": "WhatsApp сейчас недоступен",
      "reconnect.unreachable.detail": "Номер привязан. Мы проверяем связь с WhatsApp каждые несколько минут и подключимся сами, как только он ответит. Ничего делать не нужно.",
      "reconnect.unlinked.title": "Телефон сообщил об отвязке — проверяем…",
      "reconnect.unlinked.detail": "Проверяем, привязано ли ещё устройство. Если его удалили из «Связанных устройств», через несколько секунд здесь появится кнопка нового QR-кода.",
      "err.wrong_salon": "Эта вкладка уже показывает другой салон. Откройте ссылку в новой вкладке.",
      "err.pairing_expired": "Срок действия кода истёк — получите новый.",
      "err.pairing_unavailable": "Привязка прервалась раньше, чем пришёл код. Попробуйте ещё раз.",
      "err.already_linked": "К этому салону уже привязан WhatsApp — код не нужен.",
      "err.pairing_in_progress": "Код для другого номера уже запрошен. Подождите минуту или войдите по QR-коду.",
      "err.stopped": "Сервис перезапускается. Попробуйте через несколько секунд."
    },
    "en": {
      "page.title": "Connect WhatsApp",
      "salon.id": "Salon #{id}",
      "salon.titled": "{title} · #{id}",
      "lang.toggle": "RU",
      "lang.toggle_label": "Русская версия",
      "conn.lost": "Lost the connection to the server — reconnecting…",
      "view.loading.title": "Loading…",
      "view.loading.detail": "Connecting to the server.",
      "view.expired.title": "The QR code has expired",
      "view.expired.detail": "Time to scan ran out. Press “New QR code” to get a fresh one.",
      "view.auth.title": "This link has expired",
      "view.auth.detail": "The link lasts 1 hour. Open the app again from YClients — it will give you a new link.",
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
      "state.conflict.detail": "Another connection is using this WhatsApp number, so we stopped rather than fight over it. We will try once more by ourselves in a minute; support has already been alerted.",
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
      "phone.hint": "With the country code, e.g.",
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
      "err.qr_unavailable": "Could not draw the QR code. Reload the page or link by phone number.",
      "err.generic": "Something went wrong. Try again; if it repeats, contact support and quote the code “{code}”.",
      "footer": "The link is valid for 1 hour after opening the app in YClients.",
      "view.invalid.title": "This link is not valid",
      "view.invalid.detail": "The link looks incomplete or altered. Open the app again from YClients.",
      "view.nolink.title": "No connection link",
      "view.nolink.detail": "This page opens from the YClients marketplace. Open the app there and it will bring you here with a link.",
      "view.offline.title": "No connection to the server",
      "view.offline.detail": "Check the internet connection. The page recovers by itself as soon as the server answers again.",
      "reason.connection_lost.title": "The connection to WhatsApp dropped",
      "reason.connection_lost.detail": "It happened while linking. Press “New QR code” to try again.",
      "reason.banned.title": "WhatsApp banned this number",
      "reason.banned.detail": "WhatsApp banned the number and unlinked the device. Connect another number: press “New QR code” and scan it with that number's phone.",
      "reason.logout.title": "WhatsApp was unlinked by support",
      "reason.logout.detail": "Our support unlinked the device. To connect again, press “New QR code” and scan it.",
      "reason.temporarily_banned.title": "WhatsApp temporarily restricted the number",
      "reason.temporarily_banned.detail": "The connection resumes by itself when the restriction ends. Nothing to do.",
      "reason.temporarily_banned.minutes": "About {m} min left.",
      "reason.client_outdated.title": "WhatsApp does not accept our version",
      "reason.client_outdated.detail": "We already know and are updating the service. The connection comes back after the update — nothing to do.",
      "reason.reconnect_exhausted.title": "Cannot restore the connection to WhatsApp",
      "reason.reconnect_exhausted.detail": "We tried to reconnect several times. Press “Try again”; support has already been alerted.",
      "reason.transport_mismatch.title": "The server did not recognise the saved connection",
      "reason.transport_mismatch.detail": "Your WhatsApp connection is kept, not deleted — this looks like a server configuration mistake, and support has already been alerted. If you unlinked the device on the phone yourself, press “Try again” and scan a new QR code.",
      "reconnect.unreachable.title": "WhatsApp is unreachable right now",
      "reconnect.unreachable.detail": "The number is linked. We check the connection to WhatsApp every few minutes and reconnect by ourselves as soon as it answers. Nothing to do.",
      "reconnect.unlinked.title": "The phone reported an unlink — checking…",
      "reconnect.unlinked.detail": "Checking whether the device is still linked. If it was removed from “Linked devices”, a new QR code button appears here in a few seconds.",
      "err.wrong_salon": "This tab already shows another salon. Open the link in a new tab.",
      "err.pairing_expired": "The code has expired — get a new one.",
      "err.pairing_unavailable": "Linking stopped before a code arrived. Try again.",
      "err.already_linked": "WhatsApp is already linked to this salon — no code needed.",
      "err.pairing_in_progress": "A code for another number is already on its way. Wait a minute or use the QR code.",
      "err.stopped": "The service is restarting. Try again in a few seconds."
    }
  }/*I18N-END*/;

  /* Server error codes (`error` frames, JSON errors) → dictionary keys. Codes without a key show
   * err.generic with the code, which support can look up; the server's English message is never mixed into
   * the salon's language. */
  var ERROR_KEYS = {
    invalid_phone: "err.invalid_phone",
    rate_limited: "err.rate_limited",
    too_many_requests: "err.rate_limited",
    busy: "err.busy",
    pairing_failed: "err.pairing_failed",
    pairing_code_failed: "err.pairing_failed",
    pairing_code_expired: "err.pairing_expired",
    pairing_unavailable: "err.pairing_unavailable",
    already_linked: "err.already_linked",
    pairing_in_progress: "err.pairing_in_progress",
    stopped: "err.stopped",
    shutting_down: "err.stopped",
    unavailable: "err.unavailable",
    service_unavailable: "err.unavailable",
    session_unavailable: "err.unavailable",
    owner_unreachable: "err.unavailable",
    wrong_salon: "err.wrong_salon",
    bad_request: "err.bad_request",
    malformed_frame: "err.bad_request",
    malformed_json: "err.bad_request",
    invalid_body: "err.bad_request",
    unknown_type: "err.bad_request"
  };

  /* Codes that explain why the session sits in a state (the server sends them right after the state, and
   * again to late joiners) → that state. They are the state's words, not errors. */
  var REASONS = {
    qr_expired: "idle",
    connection_lost: "idle",
    logged_out: "logged_out",
    forbidden: "logged_out",
    multidevice_mismatch: "logged_out",
    banned: "logged_out",
    logout: "logged_out",
    connection_replaced: "conflict",
    conflict: "conflict",
    temporarily_banned: "failed",
    client_outdated: "failed",
    reconnect_exhausted: "failed",
    transport_mismatch: "failed",
    frozen: "frozen",
    uninstalled: "uninstalled"
  };
  // Reasons with words of their own ("reason.<code>.title/detail"); the others use the state's words.
  var OWN_WORDS = { connection_lost: 1, banned: 1, logout: 1, temporarily_banned: 1, client_outdated: 1,
    reconnect_exhausted: 1, transport_mismatch: 1 };
  // WhatsApp's "this device is unlinked" reasons: while the server double-checks one, the page says so.
  var UNLINK_REASONS = { logged_out: 1, forbidden: 1, multidevice_mismatch: 1, banned: 1 };
  // Stuck states a person cannot fix with a new QR: the server refuses it or recovers by itself.
  var NO_NEW_QR = { conflict: 1, temporarily_banned: 1, client_outdated: 1 };

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
  // A frozen or uninstalled salon has no session to publish changes (YClients' webhooks stop it), so the
  // page asks the side-effect-free status endpoint this often to show an uninstall or a re-install live.
  var LIFECYCLE_POLL_MS = 5000;
  // A QR whose countdown ran out is shown as expired only after this grace, so the next QR of the batch
  // (which the server sends right on time) does not flash an "expired" screen.
  var QR_GRACE_MS = 5000;
  // The QR encoder (web/vendor/manifest.json pins it); the file name carries the version, so a new one is
  // never served from a stale cache.
  var QR_ENCODER_URL = "/static/vendor/lean-qr-2.7.4.mjs";
  // White modules around the code: ISO/IEC 18004 asks for four; readers find the code faster with them.
  var QR_QUIET_ZONE = 4;
  var SVG_NS = "http://www.w3.org/2000/svg";

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

  /** Decodes a JWT's payload for display only; the server verifies the token. Null when it is not a JWT. */
  function decodeClaims(token) {
    try {
      var parts = token.split(".");
      if (parts.length !== 3) { return null; }
      var part = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) { part += "="; }
      var binary = atob(part);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
      var claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      return claims && typeof claims === "object" ? claims : null;
    } catch (e) {
      return null;
    }
  }

  function salonIdOf(claims) {
    var id = claims ? (claims.salon_id !== undefined ? claims.salon_id : claims.sub) : undefined;
    return /^[1-9]\d{0,18}$/.test(String(id)) ? String(id) : null;
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

  function freshModel(lang) {
    return {
      lang: lang,
      token: null,
      claims: {},
      link: "connecting",      // connecting | open | down
      offline: false,          // the socket is down and the HTTP fallback gets no answer either
      tokenProblem: "",        // "" | nolink | invalid | auth (expired): the page stops
      state: null,             // the server's state
      reason: null,            // the server's explanation of that state (REASONS), or a reconnect's cause
      reasonMessage: "",
      wasLinked: false,        // a device was linked in this session: "connecting" means reconnecting
      phone: "",
      mode: "qr",              // qr | phone
      qr: null,                // {raw, node, expiresAt}; node: the drawn <svg>, made once the encoder is here
      qrRequested: false,      // we asked for QRs at least once: a later idle means the batch ran out
      qrPending: false,        // asked, nothing back yet: an idle now is the old news, not an expiry
      wantedQrWhenLost: false, // a QR was on screen when the server went away: ask again when it is back
      pairing: null,           // {code, expiresAt}
      pairingPending: false,
      pairingPhone: "",
      phoneError: "",
      error: null,             // {code, message}
      copyNote: ""
    };
  }

  var model = freshModel(initialLang());

  /* ---------- rendering ---------- */

  function setText(el, text) {
    if (el.textContent !== text) { el.textContent = text; }
  }
  function show(el, visible) { el.hidden = !visible; }

  function qrExpired() {
    return !!model.qr && now() > model.qr.expiresAt + QR_GRACE_MS;
  }

  /** The screen of the linking flow, ignoring the link to our server. */
  function flowView() {
    var s = model.state;
    if (!s) { return "loading"; }
    if (s === "connected") { return "connected"; }
    if (RETRYABLE[s] || FINAL[s] || BUSY[s]) { return "state"; }
    if (model.mode === "phone") { return "phone"; }
    if (s === "qr") {
      if (!model.qr) { return "preparing"; }  // joined by polling before the QR arrived
      return qrExpired() ? "expired" : "qr";
    }
    if (s === "idle" && model.qrPending) { return "preparing"; }
    if (s === "idle" && model.qrRequested && !model.pairingPending) { return "expired"; }
    return "state";
  }

  /** Which screen to show: a pure function of the model. */
  function currentView() {
    if (model.tokenProblem) { return model.tokenProblem; }
    if (model.offline) { return "offline"; }
    return flowView();
  }

  /** The dictionary prefix ("state.qr", "reason.banned" …) of the words for the server's state s. */
  function stateWords(s) {
    var r = model.reason;
    var relinking = s === "reconnecting" || (s === "connecting" && model.wasLinked);
    if (relinking && r === "whatsapp_unreachable") { return "reconnect.unreachable"; }
    if (relinking) { return r && UNLINK_REASONS[r] ? "reconnect.unlinked" : "state.reconnecting"; }
    if (r && REASONS[r] === s && OWN_WORDS[r]) { return "reason." + r; }
    return "state." + s;
  }

  function salonLabel() {
    var id = salonIdOf(model.claims);
    if (id === null) { return ""; }
    var title = model.claims.title || model.claims.company_title || model.claims.salon_name;
    if (!title) { return t("salon.id", { id: id }); }
    // "Салон красоты №101" already names the number: do not repeat it.
    var named = new RegExp("(^|\\D)" + id + "(\\D|$)").test(String(title));
    return named ? String(title) : t("salon.titled", { title: title, id: id });
  }

  function banMinutes() {
    var m = /about (\d+) min/.exec(model.reasonMessage || "");
    return m ? Number(m[1]) : 0;
  }

  function render() {
    var view = currentView();
    var s = model.state;
    var html = document.documentElement;
    var focusBefore = document.activeElement;
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

    setText($("app").querySelector("[data-testid=salon]"), salonLabel());
    $("app").classList.toggle("is-offline", view === "offline");

    var banner = $("banner");
    show(banner, model.link === "down" && !model.tokenProblem && view !== "offline");
    setText(banner, t("conn.lost"));

    var words, icon = "", detailExtra = "";
    if (view === "auth" || view === "invalid" || view === "nolink" || view === "offline" || view === "expired") {
      words = "view." + view;
      icon = view === "offline" ? "off" : "warn";
      if (view === "expired" && model.reason === "connection_lost") { words = "reason.connection_lost"; }
    } else if (view === "loading") { words = "view.loading"; icon = "spin"; }
    else if (view === "preparing") { words = "state.starting"; icon = "spin"; }
    else if (view === "phone") { words = model.pairing ? "state.pairing_code" : "view.phone"; }
    else {
      words = stateWords(s);
      if (s === "connected") { icon = "ok"; }
      else if (RETRYABLE[s] || FINAL[s]) { icon = "warn"; }
      else if (s !== "qr") { icon = "spin"; }
      if (words === "reason.temporarily_banned" && banMinutes()) {
        detailExtra = " " + t("reason.temporarily_banned.minutes", { m: banMinutes() });
      }
    }
    var stateTitle = $("state-title");
    setText(stateTitle, t(words + ".title"));
    stateTitle.setAttribute("data-state", view === "state" || view === "connected" ? s : view);
    setText($("state-detail"), view === "phone" && model.pairing ? "" : t(words + ".detail") + detailExtra);
    $("status-icon").className = "status-icon" + (icon ? " icon-" + icon : "");

    var err = $("error-text");
    var errText = "";
    if (model.error && !model.tokenProblem && view !== "offline") {
      var ek = ERROR_KEYS[model.error.code];
      errText = ek ? t(ek) : t("err.generic", { code: model.error.code || "?" });
    } else if (view === "qr" && model.qr && !model.qr.node && (qrEncoderFailed || model.qr.undrawable)) {
      errText = t("err.qr_unavailable");
    }
    setText(err, errText);
    show(err, !!errText);

    // QR panel
    show($("panel-qr"), view === "qr");
    var qrBox = $("qr");
    qrBox.setAttribute("aria-label", t("qr.alt"));
    if (model.qr && !model.qr.node && qrEncoder && !model.qr.undrawable) {
      model.qr.node = qrNode(model.qr.raw);
      model.qr.undrawable = !model.qr.node;
    }
    if (model.qr && qrBox.firstChild !== model.qr.node) {
      while (qrBox.firstChild) { qrBox.removeChild(qrBox.firstChild); }
      if (model.qr.node) { qrBox.appendChild(model.qr.node); }
    }
    fitQr();

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
    var offerQr = view === "expired" ||
      (view === "state" && !!RETRYABLE[s] && !NO_NEW_QR[s] && !(model.reason && NO_NEW_QR[model.reason]));
    show(newQr, offerQr);
    setText(newQr, t(s === "failed" && view === "state" ? "btn.retry" : "btn.new_qr"));

    var modeToggle = $("mode-toggle");
    var offerMode = view === "qr" || view === "phone" || view === "expired" || view === "preparing" ||
      (view === "state" && (s === "idle" || s === "starting" || s === "pairing_code"));
    show(modeToggle, offerMode);
    setText(modeToggle, t(model.mode === "phone" ? "mode.to_qr" : "mode.to_phone"));

    renderCountdowns();

    // A keyboard user whose button just disappeared (it did its job) continues from the news, not from
    // the top of the document.
    if (focusBefore && focusBefore !== document.body && $("app").contains(focusBefore) &&
        !focusBefore.getClientRects().length) {
      stateTitle.focus();
    }
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

  /* ---------- drawing the QR ---------- */

  var qrEncoder = null;        // the encoder module, once import() brought it
  var qrEncoderFailed = false; // it could not be loaded: say so instead of an empty box

  function loadQrEncoder() {
    import(QR_ENCODER_URL).then(function (module) {
      qrEncoder = module;
      render();
    }, function () {
      qrEncoderFailed = true;
      render();
    });
  }

  /** Draws the raw payload as a detached <svg>: a white square with the quiet zone and one black path, each
   * horizontal run of dark modules one rectangle. The payload is only ever data for the encoder, never
   * markup. Null when the encoder refuses it (longer than a QR holds). */
  function qrNode(raw) {
    var code;
    try { code = qrEncoder.generate(raw); } catch (e) { return null; }
    var size = code.size, total = size + 2 * QR_QUIET_ZONE, d = [];
    for (var y = 0; y < size; y++) {
      for (var x = 0; x < size; x++) {
        if (!code.get(x, y)) { continue; }
        var from = x;
        while (x + 1 < size && code.get(x + 1, y)) { x++; }
        var run = x - from + 1;
        d.push("M" + (from + QR_QUIET_ZONE) + " " + (y + QR_QUIET_ZONE) + "h" + run + "v1h-" + run + "z");
      }
    }
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + total + " " + total);
    svg.setAttribute("shape-rendering", "crispEdges");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("data-modules", String(total));
    var paper = document.createElementNS(SVG_NS, "rect");
    paper.setAttribute("width", String(total));
    paper.setAttribute("height", String(total));
    paper.setAttribute("fill", "#fff");
    var ink = document.createElementNS(SVG_NS, "path");
    ink.setAttribute("fill", "#000");
    ink.setAttribute("d", d.join(""));
    svg.appendChild(paper);
    svg.appendChild(ink);
    return svg;
  }

  /** Sizes the drawn QR to the largest whole number of device pixels per module that fits its box: every
   * module the same size and on the pixel grid, so a camera sees sharp edges at any zoom. */
  function fitQr() {
    var box = $("qr");
    var svg = box.firstChild;
    if (!svg || svg.nodeType !== 1 || !svg.getAttribute("data-modules")) { return; }
    var style = window.getComputedStyle(box);
    var room = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    if (!(room > 0)) { return; }  // hidden: sized when shown
    var modules = Number(svg.getAttribute("data-modules"));
    var ratio = window.devicePixelRatio || 1;
    var side = Math.max(1, Math.floor(room * ratio / modules)) * modules / ratio;
    if (svg.getAttribute("width") !== String(side)) {
      svg.setAttribute("width", String(side));
      svg.setAttribute("height", String(side));
    }
  }

  /* ---------- frames from the server (websocket, or synthesised from polling) ---------- */

  function onState(frame) {
    var s = frame.state;
    if (s !== model.state) {
      model.error = null;
      model.reason = null;
      model.reasonMessage = "";
      // Re-installed in YClients while this page was open: start afresh, as a new page would.
      if (FINAL[model.state] && !FINAL[s]) { model.qrRequested = false; }
    }
    if (typeof frame.reason === "string") { model.reason = frame.reason; }
    model.state = s;
    if (frame.phone) { model.phone = String(frame.phone); }
    if (s === "connected" || s === "reconnecting") { model.wasLinked = true; }
    if (RETRYABLE[s] || FINAL[s] || s === "idle") { model.wasLinked = false; }
    if (s !== "idle" && s !== "starting") { model.qrPending = false; }
    if (s === "idle" && !model.qrRequested && model.mode === "qr") { requestQr(); }
    if (s === "connected" || RETRYABLE[s] || FINAL[s]) { model.pairingPending = false; }
  }

  /** An `error` frame: an explanation of a state, a refusal, or a failure worth the red box. */
  function onError(frame) {
    var code = String(frame.code || "");
    var explains = REASONS[code];
    if (explains) {
      // A refusal because YClients withdrew the app, or because of a conflict, is news about the state.
      if (FINAL[explains] || explains === "conflict") {
        model.pairingPending = false;
        model.qrPending = false;
        onState({ state: explains });
      }
      // Why the last QR batch ended is old news once the page asked for a new one.
      if (model.state === explains && !(explains === "idle" && model.qrPending)) {
        model.reason = code;
        model.reasonMessage = String(frame.message || "");
      }
      return;  // an explanation of a state the page no longer shows is old news too
    }
    model.pairingPending = false;
    model.qrPending = false;
    if (code === "invalid_phone" && model.mode === "phone" && !model.pairing) {
      model.phoneError = "err.invalid_phone";
    } else {
      model.error = { code: code, message: String(frame.message || "") };
    }
  }

  function handleFrame(frame) {
    if (!frame || typeof frame !== "object") { return; }
    switch (frame.type) {
      case "state":
        if (STATES.indexOf(frame.state) === -1) { return; }
        onState(frame);
        break;
      case "qr":
        if (typeof frame.qr !== "string" || !frame.qr) { return; }
        var sameQr = model.qr && model.qr.raw === frame.qr;
        model.qr = {
          raw: frame.qr,
          node: sameQr ? model.qr.node : null,  // drawn by render() once the encoder is here
          undrawable: sameQr ? model.qr.undrawable : false,
          expiresAt: now() + Math.max(0, Number(frame.expires_in) || 0) * 1000
        };
        model.qrRequested = true;
        model.qrPending = false;
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
        onState({ state: "connected", phone: frame.phone });
        break;
      case "error":
        if (frame.code === "unauthorized" || frame.code === "token_expired") {
          authFailed(frame.code === "token_expired");
          return;
        }
        onError(frame);
        break;
      default:
        return; // pong and anything newer than this page: nothing to show
    }
    watchLifecycle();
    render();
  }

  /* ---------- talking to the server ---------- */

  var ws = null;
  var attempt = 0;
  var reconnectTimer = null;
  var pingTimer = null;
  var pongTimer = null;
  var pollTimer = null;
  var lifecycleTimer = null;
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
    model.qrPending = true;
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

  function stopTalking() {
    clearTimeout(reconnectTimer);
    clearTimeout(pollTimer);
    clearTimeout(lifecycleTimer);
    reconnectTimer = pollTimer = lifecycleTimer = null;
    stopPing();
    var sock = ws;
    ws = null;
    if (sock) { try { sock.close(); } catch (e) { /* already closing */ } }
  }

  /** The server refused the token: an expired link is told apart from one that never was valid. */
  function authFailed(expired) {
    var exp = Number(model.claims.exp);
    model.tokenProblem = expired || (exp > 0 && exp * 1000 <= now()) ? "auth" : "invalid";
    stopTalking();
    render();
  }

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + WS_PATH;
  }

  function connect() {
    if (model.tokenProblem) { return; }
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    var sock;
    try { sock = new WebSocket(wsUrl()); } catch (e) { onClosed(sock, 1006); return; }
    ws = sock;
    var framed = false;
    sock.onopen = function () {
      // The token goes in the first frame, never in the URL.
      sock.send(JSON.stringify({ type: "auth", token: model.token }));
      if (model.wantedQrWhenLost && model.mode === "qr" && document.visibilityState !== "hidden") {
        // The QR on screen went stale while we were away; the person is still looking at this page.
        sock.send(JSON.stringify({ type: "request_qr" }));
        model.qrPending = true;
      }
      model.wantedQrWhenLost = false;
      startPing(sock);
    };
    sock.onmessage = function (ev) {
      if (ws !== sock) { return; }
      lastFrameAt = now();
      clearTimeout(pongTimer);
      if (!framed) {
        // The first frame after auth proves the session works: reset the back-off, stop polling.
        framed = true;
        attempt = 0;
        model.link = "open";
        model.offline = false;
        clearTimeout(pollTimer);
        pollTimer = null;
      }
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      handleFrame(frame);
    };
    sock.onclose = function (ev) { onClosed(sock, ev.code); };
  }

  function wantsQr() {
    var s = model.state;
    return model.mode === "qr" && flowView() !== "expired" &&
      (s === null || s === "idle" || s === "starting" || s === "qr");
  }

  function onClosed(sock, code) {
    if (sock && ws !== sock) { return; }
    ws = null;
    stopPing();
    if (code === 4401) { authFailed(false); return; }
    if (model.tokenProblem) { return; }
    if (model.link === "open" && wantsQr() && model.qrRequested) { model.wantedQrWhenLost = true; }
    model.link = "down";
    render();
    if (!pollTimer) { pollSoon(0); }
    // 1 s, 2 s, 4 s … capped at 30 s, with jitter so a server restart is not met by every salon at once.
    // A successful poll cuts the wait short (see poll), so a returning server is noticed within seconds.
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

  /** fetch with the onboarding token; resolves {ok, status, body} or null after an auth failure. Status 0:
   * no answer at all. */
  function api(method, url, body) {
    var token = model.token;
    var init = {
      method: method,
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      credentials: "same-origin",
      cache: "no-store"
    };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      if (token !== model.token) { return null; }  // answered for a link this tab no longer shows
      if (res.status === 401) { authFailed(false); return null; }
      return res.json().catch(function () { return {}; }).then(function (json) {
        return { ok: res.ok, status: res.status, body: json || {} };
      });
    }, function () {
      return token === model.token ? { ok: false, status: 0, body: {} } : null;
    });
  }

  /** No answer, or a proxy's 502/503/504 page instead of ours: our server is out of reach. */
  function unreachable(res) {
    return res.status === 0 || (res.status >= 500 && !(res.body && res.body.error));
  }

  /** While the websocket is down: the HTTP fallback. POST /api/qr starts QR issuing, so it is used only
   * while the page actually wants a QR; otherwise the side-effect-free status endpoint. */
  function pollSoon(delay) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, delay);
  }

  function poll() {
    if (model.tokenProblem || model.link === "open") { pollTimer = null; return; }
    var req = wantsQr() && !model.offline ? api("POST", POLL_QR_URL, {}) : api("GET", POLL_STATUS_URL);
    req.then(function (res) {
      if (!res || model.tokenProblem || model.link === "open") { return; }
      var wasOffline = model.offline;
      model.offline = unreachable(res);
      if (model.offline && !wasOffline && wantsQr() && model.qrRequested) { model.wantedQrWhenLost = true; }
      if (res.ok) {
        var b = res.body;
        if (b.qr && b.state === "qr") {
          handleFrame({ type: "qr", qr: b.qr, expires_in: b.expires_in });
        }
        if (b.state) {
          handleFrame({ type: "state", state: b.state, phone: b.phone });
        }
      }
      if (wasOffline && !model.offline && !ws) {
        // The server answers again: do not sit out the rest of the back-off.
        attempt = 0;
        connect();
      }
      render();
      pollTimer = setTimeout(poll, POLL_EVERY_MS);
    });
  }

  /** Frozen or uninstalled: nobody publishes the next change, so ask now and then (read-only). */
  function watchLifecycle() {
    if (!FINAL[model.state] || lifecycleTimer || model.tokenProblem) { return; }
    lifecycleTimer = setTimeout(function () {
      lifecycleTimer = null;
      if (!FINAL[model.state] || model.link !== "open") { return; }
      api("GET", POLL_STATUS_URL).then(function (res) {
        if (res && res.ok && res.body.state && res.body.state !== model.state) {
          handleFrame({ type: "state", state: res.body.state, phone: res.body.phone });
        }
        watchLifecycle();
      });
    }, LIFECYCLE_POLL_MS);
  }

  /* ---------- user actions ---------- */

  function onNewQr() {
    model.state = "starting";
    model.reason = null;
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

  /** The token of the URL fragment (taken out of the visible URL at once), or null. */
  function tokenFromHash() {
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) { return null; }
    var token;
    try { token = decodeURIComponent(m[1]); } catch (e) { token = m[1]; }
    // Out of the visible URL at once: no bookmarks, screenshots or copied links carry it.
    try { history.replaceState(history.state, "", location.pathname + location.search); } catch (e) {
      location.hash = "";
    }
    storageSet("sessionStorage", TOKEN_KEY, token);
    return token;
  }

  /** Shows the salon of `token` from scratch: a new link in the same tab needs no reload. */
  function begin(token) {
    stopTalking();
    model = freshModel(model.lang);
    model.token = token;
    lastView = null;
    if (!token) {
      model.tokenProblem = "nolink";
    } else {
      model.claims = decodeClaims(token) || {};
      if (salonIdOf(model.claims) === null) { model.tokenProblem = "invalid"; }
    }
    render();
    if (!model.tokenProblem) { connect(); }
  }

  function start() {
    $("lang-toggle").addEventListener("click", onLangToggle);
    $("new-qr").addEventListener("click", onNewQr);
    $("mode-toggle").addEventListener("click", onModeToggle);
    $("phone-form").addEventListener("submit", onPhoneSubmit);
    $("copy-code").addEventListener("click", onCopy);
    $("pairing-new").addEventListener("click", onPairingNew);
    $("phone-input").addEventListener("input", function () {
      if (model.phoneError) { model.phoneError = ""; render(); }
    });
    window.addEventListener("resize", fitQr);  // also a zoom, which changes devicePixelRatio
    window.addEventListener("hashchange", function () {
      var token = tokenFromHash();
      if (token !== null && token !== model.token) { begin(token); }
    });
    setInterval(tick, 250);
    loadQrEncoder();
    // A reload after the fragment was removed: the same tab's session keeps the token.
    var token = tokenFromHash();
    begin(token !== null ? token : storageGet("sessionStorage", TOKEN_KEY));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
