// lobbywatch phone app (issue #12): the lobby manager's handheld, served by the device itself.
//
// Data: GET /v1/handhelds/me (who this phone is, the site's language), GET /v1/alerts/stream
// (Server-Sent Events: a snapshot and the zones on connect, then alert and zones events),
// POST /v1/alerts/{id}/accept and /pass-done (body {"pass": n}: the pass the card shows). The
// phone's credential is an HttpOnly cookie set by POST /v1/handhelds/pair; every POST also sends
// X-Lobbywatch-App: 1 (the API refuses a cookie POST without it: a page of another site cannot
// add it). See docs/handheld.md.
//
// Every text from the device goes into the page through textContent, never as HTML.
"use strict";

const APP_HEADER = { "X-Lobbywatch-App": "1" };
const ME_EVERY_MS = 15000; // a revoked phone learns it is logged out within this
const SILENT_MS = 25000; // zones come at least every 10 s: this long without one, the link is dead
const RECONNECT_MS = [1000, 2000, 4000, 5000]; // then every 5 s
const KEEP_CLEARED_MS = 15 * 60 * 1000;
const SHOWN_ROLES = ["waiting", "queue"];
// A counter label said as a number ("counter 3"): 1-4 letters or digits with a digit, or one
// letter; any other ("VIP") is a name. The device's rule (edge/alerts/advice.py _COUNTER_NUMBER).
const COUNTER_NUMBER = /^(?:(?=[^0-9]*[0-9])[0-9A-Za-z]{1,4}|[A-Za-z])$/;

const TEXT = {
  en: {
    help: "Help",
    back: "Back",
    notConnected: "NOT CONNECTED",
    reconnecting: "Reconnecting by itself…",
    lastUpdate: "last update {t}",
    pairTitle: "Pair this phone",
    pairIntro: "Scan the QR code that IT printed with “lobbywatch handheld pair”, or type its code here.",
    pairCode: "Pairing code",
    pairButton: "Pair",
    pairing: "Pairing…",
    pairFailed: "Not paired: {why}",
    httpsNeeded: "Open this page over https:// (the address in the QR code): the phone keeps its credential only there.",
    cookieLost: "The browser did not keep the credential. Open the app over https:// and try again.",
    loggedOutTitle: "Logged out",
    loggedOutText: "This phone is not paired with the device, or its pairing was revoked. Ask IT to pair it again.",
    pairAgain: "Enter a pairing code",
    enable: "Tap to turn on alert sound, vibration and notifications",
    me: "{name} · manager",
    noAlerts: "No open alerts",
    openAlert: "1 open alert",
    openAlerts: "{n} open alerts",
    waitingNow: "Waiting now",
    people: "people",
    alertAt: "alert at {n}",
    alertAtWait: "alert at {n} min wait",
    alertAtForecastWait: "alert at {n} min wait (forecast)",
    alertAtForecastCount: "alert at {n} (forecast)",
    alertAtArrivals: "alert at {n} arrivals in 5 min",
    askedAgain: "Asked again: pass {n}. Still busy after the last pass",
    entrance: "At the entrance: for the greeter",
    wait: "Wait about {m} min ({c})",
    confidence: { exact: "ticket machine", high: "high confidence", medium: "medium confidence", low: "low confidence" },
    forecast: "In 15 min: {a} · in 30 min: {b}",
    minutes: "{n} min",
    kiosks: "Kiosks: {u} of {c} in use",
    advice: {
      kiosks_free: "kiosks: {in_use} of {capacity} in use: move kiosk-able customers there",
      kiosks_full: "kiosks full: call a colleague / open a counter",
      kiosks_free_entrance: "kiosks: {in_use} of {capacity} in use: send kiosk errands there",
      kiosks_full_entrance: "kiosks full: keep kiosk errands in the ticket line",
      counter_unstaffed: "counter {counter} unstaffed",
      counter_unstaffed_named: "{counter} unstaffed",
      open_counter: "open another counter",
      entrance_surge: "arrival surge: {arrivals} in 5 minutes (usually {expected}): greeter to the ticket machine",
      wait_rising: "wait rising: about {minutes} min in {horizon_min} minutes",
    },
    raisedAt: "Raised at {t} ({ago})",
    justNow: "just now",
    minutesAgo: "{n} min ago",
    accept: "Accept",
    accepted: "Accepted ✓",
    passDone: "Pass done",
    sending: "Sending…",
    acceptedBy: "Accepted by {who} at {t}",
    passDoneBy: "Pass done by {who} at {t}",
    you: " (you)",
    measuring: "Measuring the effect…",
    measuringAt: "Measuring the effect at {t}…",
    effect: "Effect: {before} → {after} people at {t}",
    clearedAt: "Cleared at {t}",
    escalated: "Escalated to the supervisor ({n}×)",
    unknown: "unknown",
    countsAt: "Counts at {t}",
    notSent: "Not sent: no connection to the device",
    status: { raised: "NEW", escalated: "ESCALATED", accepted: "ACCEPTED", pass_done: "PASS DONE", cleared: "CLEARED" },
    notifyTitle: "Lobby alert: {name}",
    notifyBody: "{count} people waiting in {zones}",
    helpText: [
      "While this app is open on the screen, an alert arrives within 2 seconds, with a sound and vibration, and the screen stays on (tap the yellow button once after opening the app: phones play sound only after a tap).",
      "With another app in front, or the screen just turned off, Android shows a notification with vibration for as long as the browser keeps this page running, usually a few minutes. On an iPhone this works only once the app is added to the Home Screen, and not reliably.",
      "A locked phone, or one whose browser has stopped this page, gets nothing: the branch network has no internet, so there is no push. Unlock the phone and open the app: it reconnects by itself and shows at once everything that is open. For alerts on a locked phone, rely on the branch's WeCom or DingTalk group, where IT has set one up.",
      "A red NOT CONNECTED banner means the phone cannot reach the device: check the Wi-Fi. The app keeps retrying and catches up when the link is back.",
      "Accept: you are taking the alert (everyone else sees it). Pass done: you walked the waiting area; the device then measures whether the wait went down.",
    ],
  },
  "zh-CN": {
    help: "帮助",
    back: "返回",
    notConnected: "未连接",
    reconnecting: "正在自动重新连接……",
    lastUpdate: "最后更新 {t}",
    pairTitle: "配对本手机",
    pairIntro: "扫描 IT 用“lobbywatch handheld pair”打印的二维码，或在此输入配对码。",
    pairCode: "配对码",
    pairButton: "配对",
    pairing: "正在配对……",
    pairFailed: "配对失败：{why}",
    httpsNeeded: "请用 https:// 打开本页（二维码中的地址）：只有这样手机才能保存凭据。",
    cookieLost: "浏览器没有保存凭据。请用 https:// 打开本应用后重试。",
    loggedOutTitle: "已退出登录",
    loggedOutText: "本手机未与设备配对，或配对已被撤销。请联系 IT 重新配对。",
    pairAgain: "输入配对码",
    enable: "点此开启提醒声音、振动和通知",
    me: "{name} · 大堂经理",
    noAlerts: "没有待处理的提醒",
    openAlert: "1 条待处理提醒",
    openAlerts: "{n} 条待处理提醒",
    waitingNow: "当前等候人数",
    people: "人",
    alertAt: "{n} 人时提醒",
    alertAtWait: "等候 {n} 分钟时提醒",
    alertAtForecastWait: "预测等候达 {n} 分钟时提醒",
    alertAtForecastCount: "预测达 {n} 人时提醒",
    alertAtArrivals: "5 分钟内到店 {n} 人时提醒",
    askedAgain: "再次请求：第 {n} 次疏导。上次疏导后仍然繁忙",
    entrance: "入口：请迎宾处理",
    wait: "预计等候约 {m} 分钟（{c}）",
    confidence: { exact: "取号机数据", high: "可信度高", medium: "可信度中", low: "可信度低" },
    forecast: "15 分钟后：{a} · 30 分钟后：{b}",
    minutes: "{n} 分钟",
    kiosks: "自助机：{c} 台中 {u} 台在用",
    advice: {
      kiosks_free: "自助机：{capacity} 台中 {in_use} 台在用，请引导可自助办理的客户前往",
      kiosks_full: "自助机已满：请呼叫同事或加开柜台",
      kiosks_free_entrance: "自助机：{capacity} 台中 {in_use} 台在用，请引导可自助业务前往自助机",
      kiosks_full_entrance: "自助机已满：暂勿引导客户前往自助机",
      counter_unstaffed: "{counter} 号柜台无人值守",
      counter_unstaffed_named: "{counter}无人值守",
      open_counter: "请加开柜台",
      entrance_surge: "到店高峰：5 分钟内 {arrivals} 人（平时约 {expected} 人）：请大堂迎宾到取号机旁",
      wait_rising: "等候时间上升：{horizon_min} 分钟后约 {minutes} 分钟",
    },
    raisedAt: "{t} 发出（{ago}）",
    justNow: "刚刚",
    minutesAgo: "{n} 分钟前",
    accept: "接单",
    accepted: "已接单 ✓",
    passDone: "已巡场",
    sending: "正在发送……",
    acceptedBy: "{who} 于 {t} 接单",
    passDoneBy: "{who} 于 {t} 完成巡场",
    you: "（我）",
    measuring: "正在测量效果……",
    measuringAt: "将于 {t} 测量效果……",
    effect: "效果：{before} → {after} 人（{t}）",
    clearedAt: "{t} 已解除",
    escalated: "已上报主管（{n} 次）",
    unknown: "未知",
    countsAt: "人数更新于 {t}",
    notSent: "未发送：与设备的连接已断开",
    status: { raised: "新提醒", escalated: "已上报", accepted: "已接单", pass_done: "已巡场", cleared: "已解除" },
    notifyTitle: "大堂提醒：{name}",
    notifyBody: "{zones} 有 {count} 人等候",
    helpText: [
      "本应用在屏幕上打开时，提醒会在 2 秒内到达，并有声音和振动，屏幕保持常亮（打开应用后请先点一下黄色按钮：手机只有在点击后才允许播放声音）。",
      "切换到其他应用或刚刚关闭屏幕时，只要浏览器仍在运行本页面（通常几分钟），安卓手机会显示带振动的通知。iPhone 只有在把本应用添加到主屏幕后才可能收到，而且并不可靠。",
      "手机锁屏后，或浏览器已停止本页面时，收不到任何提醒：网点网络没有互联网，无法推送。解锁手机并打开本应用，它会自动重新连接并立即显示所有待处理的提醒。锁屏时的提醒请依靠网点的企业微信或钉钉群（如 IT 已设置）。",
      "红色“未连接”横幅表示手机连不上设备：请检查 Wi-Fi。应用会一直自动重试，连接恢复后立即同步。",
      "接单：表示由您处理这条提醒（其他人都能看到）。已巡场：表示您已巡视等候区，设备随后会测量等候人数是否下降。",
    ],
  },
};

const state = {
  lang: "en",
  me: null,
  alerts: new Map(), // alert_id -> the alert's state (open, and cleared ones for a while)
  zones: [],
  zonesAt: null,
  inSync: false,
  lastSync: null,
  source: null,
  lastMessage: 0,
  reconnects: 0,
  reconnectTimer: null,
  loggedOut: false,
  pending: new Set(), // "<id>/<action>" taps waiting for their answer
};

// The browser test reads when each alert was first on screen (epoch ms) from here.
const seen = {};
window.lobbywatch = { seen, state };

const $ = (id) => document.getElementById(id);

function t(key, values) {
  const table = TEXT[state.lang] || TEXT.en;
  let text = key in table ? table[key] : TEXT.en[key];
  if (typeof text !== "string") return text;
  for (const [name, value] of Object.entries(values || {})) {
    text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

// ---- language ------------------------------------------------------------------------------

function chooseLanguage(siteLanguage) {
  const stored = localStorage.getItem("lobbywatch.lang");
  const lang = stored || siteLanguage || document.documentElement.dataset.siteLanguage || "en";
  setLanguage(lang in TEXT ? lang : "en", false);
}

function setLanguage(lang, remember) {
  state.lang = lang;
  if (remember) localStorage.setItem("lobbywatch.lang", lang);
  document.documentElement.lang = lang;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  $("lang").textContent = lang === "en" ? "中文" : "EN";
  const help = $("help-text");
  help.replaceChildren(...t("helpText").map((line) => el("p", {}, line)));
  render();
}

// ---- small DOM helpers ---------------------------------------------------------------------

function el(tag, attributes, text) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) element.setAttribute(name, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function show(view) {
  for (const id of ["pairing", "logged-out", "main", "help"]) $(id).hidden = id !== view;
}

let toastTimer = null;
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

function siteTime(iso) {
  if (!iso) return "";
  try {
    return new Intl.DateTimeFormat("en-GB", {
      hour: "2-digit", minute: "2-digit", hour12: false,
      timeZone: (state.me && state.me.timezone) || undefined,
    }).format(new Date(iso));
  } catch (_error) {
    return String(iso).slice(11, 16); // the contract's times carry the site's own offset
  }
}

function ago(iso) {
  const minutes = Math.floor((Date.now() - Date.parse(iso)) / 60000);
  return minutes < 1 ? t("justNow") : t("minutesAgo", { n: minutes });
}

function people(count) {
  return count === null || count === undefined ? "?" : String(Math.round(count));
}

// ---- talking to the device -----------------------------------------------------------------

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") Object.assign(options.headers, APP_HEADER);
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_error) { data = null; }
  if (response.status === 401 && path !== "/v1/handhelds/pair") loggedOut();
  return { status: response.status, data };
}

function problem(data, fallback) {
  if (data && typeof data.detail === "string") return data.detail;
  if (data && typeof data.message === "string") return data.message;
  return fallback;
}

async function checkMe() {
  // 200: who this phone is; 401: logged out (api() has shown it); null: no answer.
  try {
    const { status, data } = await api("GET", "/v1/handhelds/me");
    if (status === 200) {
      const first = state.me === null;
      state.me = data;
      if (first) chooseLanguage(data.language);
      renderHeader();
    }
    return status;
  } catch (_error) {
    return null; // no answer: the stream's own error (or silence) shows the banner
  }
}

function loggedOut() {
  if (state.loggedOut) return;
  state.loggedOut = true;
  state.me = null;
  closeStream();
  clearTimeout(state.reconnectTimer);
  $("banner").hidden = true;
  document.documentElement.dataset.connection = "logged-out";
  renderHeader();
  show("logged-out");
}

function connect() {
  clearTimeout(state.reconnectTimer);
  closeStream();
  if (state.loggedOut) return;
  const source = new EventSource("/v1/alerts/stream");
  state.source = source;
  source.addEventListener("snapshot", (event) => {
    heard();
    applySnapshot(JSON.parse(event.data));
    setInSync(true);
  });
  source.addEventListener("alert", (event) => { heard(); applyAlert(JSON.parse(event.data)); });
  source.addEventListener("zones", (event) => { heard(); applyZones(JSON.parse(event.data)); });
  source.onopen = heard;
  source.onerror = () => {
    // A restart, a dropped Wi-Fi, a 401: a fresh EventSource after a short wait (no
    // Last-Event-ID: the device answers with a whole snapshot, so nothing is missed).
    if (state.source !== source) return;
    closeStream();
    setInSync(false);
    scheduleReconnect();
    checkMe();
  };
}

function closeStream() {
  if (state.source) state.source.close();
  state.source = null;
}

function scheduleReconnect() {
  clearTimeout(state.reconnectTimer);
  const wait = RECONNECT_MS[Math.min(state.reconnects, RECONNECT_MS.length - 1)];
  state.reconnects += 1;
  state.reconnectTimer = setTimeout(connect, wait);
}

function heard() {
  state.lastMessage = Date.now();
}

function setInSync(inSync) {
  if (inSync) {
    state.reconnects = 0;
    state.lastSync = new Date().toISOString();
  }
  state.inSync = inSync;
  document.documentElement.dataset.connection = inSync ? "up" : "down";
  renderBanner();
}

// ---- state ---------------------------------------------------------------------------------

function applySnapshot(snapshot) {
  const open = new Map();
  for (const alert of snapshot.alerts || []) open.set(alert.alert_id, alert);
  for (const [id, alert] of state.alerts) {
    if (!open.has(id) && alert.status === "cleared") open.set(id, alert);
  }
  const fresh = [...open.values()].filter((a) => !state.alerts.has(a.alert_id));
  state.alerts = open;
  for (const alert of fresh) announce(alert, true);
  if (snapshot.zones) applyZones(snapshot.zones);
  render();
}

function applyAlert(alert) {
  const known = state.alerts.get(alert.alert_id);
  if (known && (known.version || 0) > (alert.version || 0)) return; // an older state
  state.alerts.set(alert.alert_id, alert);
  if (!known) announce(alert, true);
  else if ((alert.escalations || 0) > (known.escalations || 0)) announce(alert, false);
  else if ((alert.passes || 0) > (known.passes || 0)) announce(alert, false); // asked again
  render();
}

function applyZones(data) {
  const list = Array.isArray(data) ? data : data.zones || [];
  state.zones = list.map((zone) => ({
    id: zone.id || zone.zone_id,
    name: zone.name || zone.id || zone.zone_id,
    role: zone.role,
    count: zone.stale ? null : zone.count,
  }));
  state.zonesAt = (!Array.isArray(data) && (data.at || data.generated_at)) || new Date().toISOString();
  renderZones();
}

function isOpen(alert) {
  return alert.status !== "cleared";
}

function dropOldCleared() {
  const now = Date.now();
  for (const [id, alert] of state.alerts) {
    if (alert.status === "cleared" && now - Date.parse(alert.cleared_at || 0) > KEEP_CLEARED_MS) {
      state.alerts.delete(id);
    }
  }
}

// ---- alerting the person holding the phone -------------------------------------------------

let audio = null;

function unlockAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  if (audio === null) audio = new Context();
  if (audio.state === "suspended") audio.resume();
}

function beep() {
  if (audio === null || audio.state !== "running") return;
  const start = audio.currentTime + 0.02;
  // Three rising two-tone pulses: heard across a busy lobby, unlike any phone's own sounds.
  for (let i = 0; i < 3; i += 1) {
    for (const [offset, frequency] of [[0, 880], [0.16, 1320]]) {
      const at = start + i * 0.45 + offset;
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.type = "square";
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.35, at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start(at);
      oscillator.stop(at + 0.15);
    }
  }
}

function announce(alert, isNew) {
  if (!isOpen(alert)) return;
  if (!(alert.alert_id in seen)) {
    // When the alert is first on this screen (the browser test's raise-to-visible latency).
    requestAnimationFrame(() => { seen[alert.alert_id] = Date.now(); });
  }
  if (alert.kind === "camera") return; // IT's: on screen, without the alarm
  if (isNew && alert.status !== "raised" && alert.status !== "escalated") return;
  beep();
  if (navigator.vibrate) navigator.vibrate([400, 150, 400, 150, 800]);
  notify(alert);
}

async function notify(alert) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (document.visibilityState === "visible") return; // the page itself shows it
  const zones = (alert.zones || []).map((z) => z.name || z.id).join(", ");
  const title = t("notifyTitle", { name: alert.rule_name || alert.rule });
  const options = {
    body: t("notifyBody", { count: people(alert.count_now ?? alert.count_at_raise), zones }),
    tag: alert.alert_id,
    renotify: true,
    requireInteraction: true,
    vibrate: [400, 150, 400, 150, 800],
    icon: "/app/icons/icon-192.png",
    badge: "/app/icons/icon-192.png",
    data: { url: "/app/" },
  };
  try {
    // Through the service worker where it runs (Android shows page notifications only so).
    const registration = await navigator.serviceWorker.getRegistration("/app/");
    if (registration) {
      await registration.showNotification(title, options);
      return;
    }
  } catch (_error) {
    // no service worker here (an untrusted certificate): the page's own notification
  }
  try { new Notification(title, options); } catch (_ignored) { /* not allowed here */ }
}

let wakeLock = null;
async function keepAwake() {
  if (!("wakeLock" in navigator) || document.visibilityState !== "visible") return;
  try {
    if (wakeLock === null || wakeLock.released) wakeLock = await navigator.wakeLock.request("screen");
  } catch (_error) {
    wakeLock = null; // refused (battery saver): the help text says what that costs
  }
}

async function enableAlerts() {
  unlockAudio();
  if (navigator.vibrate) navigator.vibrate(50);
  if ("Notification" in window && Notification.permission === "default") {
    try { await Notification.requestPermission(); } catch (_error) { /* older browsers */ }
  }
  keepAwake();
  renderEnable();
}

// ---- acknowledging -------------------------------------------------------------------------

async function acknowledge(alertId, action) {
  const key = `${alertId}/${action}`;
  if (state.pending.has(key)) return;
  state.pending.add(key);
  render();
  // The pass this card shows: the device takes the tap for no other, so a second tap on pass 1's
  // "done" arriving after pass 2 was asked does not accept and finish pass 2 (docs/handheld.md).
  const shown = state.alerts.get(alertId);
  const body = shown && Number.isInteger(shown.passes) && shown.passes >= 1
    ? { pass: shown.passes } : undefined;
  try {
    const path = `/v1/alerts/${encodeURIComponent(alertId)}/${action}`;
    const { status, data } = await api("POST", path, body);
    if (status === 200 && data) {
      if (data.alert) applyAlert(data.alert);
      if (data.result === "already" && data.message) toast(data.message);
    } else if (status !== 401) {
      toast(problem(data, `HTTP ${status}`));
    }
  } catch (_error) {
    toast(t("notSent"));
  } finally {
    state.pending.delete(key);
    render();
  }
}

// ---- drawing -------------------------------------------------------------------------------

function render() {
  renderHeader();
  renderBanner();
  renderEnable();
  renderAlerts();
  renderZones();
}

function renderHeader() {
  $("site-name").textContent = (state.me && (state.me.site_name || state.me.site_id)) || "lobbywatch";
  $("me").textContent = state.me ? t("me", { name: state.me.id }) : "";
}

function renderBanner() {
  const down = !state.inSync && !state.loggedOut && !$("main").hidden;
  $("banner").hidden = !down;
  if (down) {
    const last = state.lastSync ? ` · ${t("lastUpdate", { t: siteTime(state.lastSync) })}` : "";
    $("banner-detail").textContent = t("reconnecting") + last;
  }
}

function renderEnable() {
  const running = audio !== null && audio.state === "running";
  const asked = !("Notification" in window) || Notification.permission !== "default";
  $("enable").hidden = running && asked;
}

function renderAlerts() {
  dropOldCleared();
  const box = $("alerts");
  const alerts = [...state.alerts.values()].sort((a, b) => {
    if (isOpen(a) !== isOpen(b)) return isOpen(a) ? -1 : 1;
    return Date.parse(b.raised_at) - Date.parse(a.raised_at);
  });
  const open = alerts.filter(isOpen).length;
  const summary = $("summary");
  summary.textContent = open === 0 ? t("noAlerts") : open === 1 ? t("openAlert") : t("openAlerts", { n: open });
  summary.className = `summary ${open ? "alarm" : "calm"}`;
  const cards = new Map([...box.children].map((card) => [card.dataset.alertId, card]));
  alerts.forEach((alert, index) => {
    let card = cards.get(alert.alert_id);
    if (!card) card = makeCard(alert.alert_id);
    cards.delete(alert.alert_id);
    fillCard(card, alert);
    if (box.children[index] !== card) box.insertBefore(card, box.children[index] || null);
  });
  for (const card of cards.values()) card.remove();
}

function makeCard(alertId) {
  // Built once per alert and then only updated, so a finger (or a test) on a button keeps it.
  const card = el("div", { class: "alert", "data-alert-id": alertId });
  const title = el("div", { class: "title" });
  title.append(el("span", { class: "name" }), el("span", { class: "chip", "data-role": "status" }));
  card.append(
    title,
    el("div", { class: "count", "data-role": "count" }),
    el("div", { class: "line", "data-role": "zones" }),
    el("div", { class: "line again", "data-role": "pass" }),
    el("div", { class: "line", "data-role": "point" }),
    el("ul", { class: "advice", "data-role": "advice" }),
    el("div", { class: "line figure", "data-role": "wait" }),
    el("div", { class: "line figure", "data-role": "forecast" }),
    el("div", { class: "line figure", "data-role": "kiosks" }),
    el("div", { class: "line", "data-role": "raised" }),
    el("div", { class: "line", "data-role": "escalated" }),
    el("div", { class: "line taken", "data-role": "accepted-by" }),
    el("div", { class: "line taken", "data-role": "pass-done-by" }),
    el("div", { class: "line effect", "data-role": "effect" }),
    el("div", { class: "line", "data-role": "cleared" }),
    el("div", { class: "line", "data-role": "message" }),
  );
  const accept = el("button", { type: "button", class: "big accept", "data-role": "accept" });
  const done = el("button", { type: "button", class: "big done", "data-role": "pass-done" });
  accept.addEventListener("click", () => { unlockAudio(); acknowledge(alertId, "accept"); });
  done.addEventListener("click", () => { unlockAudio(); acknowledge(alertId, "pass-done"); });
  card.append(accept, done);
  return card;
}

function part(card, role) {
  return card.querySelector(`[data-role="${role}"]`);
}

function line(card, role, text) {
  const element = part(card, role);
  element.textContent = text || "";
  element.hidden = !text;
}

function byWhom(who) {
  return who + (state.me && who === state.me.id ? t("you") : "");
}

function fillCard(card, alert) {
  const status = alert.status || "raised";
  // A camera that is down is IT's to fix: shown (its zones' counts are unknown meanwhile),
  // with its message, but there is nothing to accept or walk.
  const camera = alert.kind === "camera";
  card.dataset.status = status;
  card.dataset.kind = alert.kind || "diversion";
  card.querySelector(".name").textContent = alert.rule_name || alert.rule || alert.alert_id;
  part(card, "status").textContent = (t("status") || {})[status] || status;
  const count = part(card, "count");
  count.hidden = camera;
  count.replaceChildren(
    document.createTextNode(people(alert.count_now ?? alert.count_at_raise)),
    el("small", {}, ` ${t("people")} · ${alertAt(alert)}`),
  );
  line(card, "zones", (alert.zones || []).map((z) => z.name || z.id).join(" + "));
  line(card, "pass", (alert.passes || 0) > 1 ? t("askedAgain", { n: alert.passes }) : "");
  line(card, "point", alert.point === "entrance" ? t("entrance") : "");
  const advice = camera ? [] : (alert.advice || []).map((a) => adviceText(a, alert.point));
  const list = part(card, "advice");
  list.replaceChildren(...advice.map((text) => el("li", {}, text)));
  list.hidden = advice.length === 0;
  const figures = alert.figures || {};
  line(card, "wait", known(figures.wait_minutes) ? t("wait", {
    m: Math.round(figures.wait_minutes),
    c: (t("confidence") || {})[figures.wait_confidence] || figures.wait_confidence || t("unknown"),
  }) : "");
  const ahead = [figures.forecast_15_minutes, figures.forecast_30_minutes];
  line(card, "forecast", ahead.some(known) ? t("forecast", {
    a: known(ahead[0]) ? t("minutes", { n: Math.round(ahead[0]) }) : t("unknown"),
    b: known(ahead[1]) ? t("minutes", { n: Math.round(ahead[1]) }) : t("unknown"),
  }) : "");
  line(card, "kiosks", known(figures.kiosks_in_use) && known(figures.kiosks_capacity)
    ? t("kiosks", { u: figures.kiosks_in_use, c: figures.kiosks_capacity }) : "");
  line(card, "raised", t("raisedAt", { t: siteTime(alert.raised_at), ago: ago(alert.raised_at) }));
  line(card, "escalated", alert.escalations ? t("escalated", { n: alert.escalations }) : "");
  line(card, "accepted-by", alert.accepted_by
    ? t("acceptedBy", { who: byWhom(alert.accepted_by), t: siteTime(alert.accepted_at) }) : "");
  line(card, "pass-done-by", alert.pass_done_by
    ? t("passDoneBy", { who: byWhom(alert.pass_done_by), t: siteTime(alert.pass_done_at) }) : "");
  line(card, "effect", effectText(alert));
  line(card, "cleared", alert.cleared_at ? t("clearedAt", { t: siteTime(alert.cleared_at) }) : "");
  line(card, "message", camera ? alert.message : "");

  const accepted = Boolean(alert.accepted_by) || status === "accepted" || status === "pass_done";
  const done = Boolean(alert.pass_done_by) || status === "pass_done";
  const closed = status === "cleared" || camera;
  const accept = part(card, "accept");
  const sendingAccept = state.pending.has(`${alert.alert_id}/accept`);
  accept.hidden = closed;
  accept.disabled = accepted || sendingAccept;
  accept.textContent = sendingAccept ? t("sending") : accepted ? t("accepted") : t("accept");
  const passDone = part(card, "pass-done");
  const sendingDone = state.pending.has(`${alert.alert_id}/pass-done`);
  passDone.hidden = closed;
  passDone.disabled = done || sendingDone;
  passDone.textContent = sendingDone ? t("sending") : done ? `${t("passDone")} ✓` : t("passDone");
}

function known(value) {
  return value !== null && value !== undefined;
}

// The threshold in the rule's unit: people, minutes of wait, arrivals in 5 minutes.
function alertAt(alert) {
  const n = people(alert.threshold);
  const key = {
    wait: "alertAtWait", forecast_wait: "alertAtForecastWait",
    forecast_count: "alertAtForecastCount", arrivals: "alertAtArrivals",
  }[alert.metric] || "alertAt";
  return t(key, { n });
}

// An advice in this page's language, from its kind and figures (the device's text, in the
// site's language, where the page does not know the kind or a figure is missing).
function adviceText(advice, point) {
  const texts = t("advice") || {};
  const figures = advice.figures || {};
  let key = advice.kind;
  if (point === "entrance" && (key === "kiosks_free" || key === "kiosks_full")) key += "_entrance";
  if (key === "counter_unstaffed" && !COUNTER_NUMBER.test(String(figures.counter || ""))) {
    key = "counter_unstaffed_named";
  }
  let text = texts[key];
  if (typeof text !== "string") return advice.text || "";
  for (const name of text.match(/\{[a-z_]+\}/g) || []) {
    const value = figures[name.slice(1, -1)];
    if (!known(value)) return advice.text || "";
    text = text.split(name).join(String(typeof value === "number" ? Math.round(value) : value));
  }
  return text;
}

function effectText(alert) {
  const effect = alert.effect;
  if (effect && effect.count_after !== null && effect.count_after !== undefined) {
    return t("effect", {
      before: people(effect.count_at_pass),
      after: people(effect.count_after),
      t: siteTime(effect.measured_at),
    });
  }
  if (!alert.pass_done_at || alert.status === "cleared") return "";
  return alert.effect_due_at ? t("measuringAt", { t: siteTime(alert.effect_due_at) }) : t("measuring");
}

function renderZones() {
  const list = $("zones");
  const shown = state.zones.filter((z) => SHOWN_ROLES.includes(z.role));
  const zones = shown.length ? shown : state.zones;
  const alerting = new Set();
  for (const alert of state.alerts.values()) {
    if (isOpen(alert)) for (const zone of alert.zones || []) alerting.add(zone.id);
  }
  list.replaceChildren(...zones.map((zone) => {
    const known = zone.count !== null && zone.count !== undefined;
    const item = el("li", { "data-zone-id": zone.id });
    item.className = !known ? "unknown" : alerting.has(zone.id) ? "alerting" : "";
    item.append(
      el("span", { class: "zone-name" }, zone.name),
      el("span", { class: "zone-count" }, known ? people(zone.count) : t("unknown")),
    );
    return item;
  }));
  $("updated").textContent = state.zonesAt ? t("countsAt", { t: siteTime(state.zonesAt) }) : "";
}

// ---- pairing -------------------------------------------------------------------------------

async function pairWith(code) {
  const status = $("pair-status");
  status.className = "status";
  status.textContent = t("pairing");
  try {
    const answer = await api("POST", "/v1/handhelds/pair", { code });
    if (answer.status !== 200) {
      status.className = "status error";
      status.textContent = t("pairFailed", { why: problem(answer.data, `HTTP ${answer.status}`) });
      return;
    }
  } catch (_error) {
    status.className = "status error";
    status.textContent = t("notSent");
    return;
  }
  history.replaceState(null, "", "/app/"); // the code is used up: keep it out of the history
  state.loggedOut = false;
  if ((await checkMe()) !== 200) {
    state.loggedOut = false;
    show("pairing");
    status.className = "status error";
    status.textContent = t("cookieLost");
    return;
  }
  startMain();
}

function showPairing() {
  show("pairing");
  const code = decodeURIComponent(location.hash.replace(/^#/, ""));
  $("pair-code").value = code;
  if (!window.isSecureContext) {
    $("pair-status").className = "status error";
    $("pair-status").textContent = t("httpsNeeded");
  }
  if (code) pairWith(code);
}

// ---- start ---------------------------------------------------------------------------------

function startMain() {
  state.loggedOut = false;
  show("main");
  setInSync(false);
  connect();
  render();
}

async function start() {
  chooseLanguage(null);
  $("lang").addEventListener("click", () => setLanguage(state.lang === "en" ? "zh-CN" : "en", true));
  $("help-button").addEventListener("click", () => show("help"));
  $("help-close").addEventListener("click", () => show(state.loggedOut ? "logged-out" : state.me ? "main" : "pairing"));
  $("enable").addEventListener("click", enableAlerts);
  $("pair-again").addEventListener("click", () => { location.hash = ""; showPairing(); });
  $("pair-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pairWith($("pair-code").value);
  });
  document.addEventListener("pointerdown", unlockAudio, { passive: true });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    keepAwake();
    if (!state.loggedOut && state.me) {
      checkMe();
      if (!state.source) connect();
    }
  });
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => {});
  }
  setInterval(() => {
    if (state.loggedOut || !state.me) return;
    checkMe();
  }, ME_EVERY_MS);
  setInterval(() => {
    if (state.source && state.inSync && Date.now() - state.lastMessage > SILENT_MS) {
      state.source.onerror(); // half-open link (a phone that changed Wi-Fi): start over
    }
    renderAlerts(); // "3 min ago"
  }, 5000);

  if (location.pathname.replace(/\/$/, "").endsWith("/pair")) {
    showPairing();
    return;
  }
  // 401: loggedOut() has shown the way to pair again. No answer: the app with its banner,
  // trying by itself until the device answers.
  if ((await checkMe()) === 401) return;
  startMain();
}

start();
