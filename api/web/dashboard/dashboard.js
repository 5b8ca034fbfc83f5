// lobbywatch supervisor dashboard (docs/ui.md 2). Reads only the public API, with the browser's
// session cookie (POST /v1/session on /login): the lobby now every 5 s, the other views every
// minute and when the zone or the bucket changes. Unknown is shown as unknown, never as 0.
import { TEXT, applyStatic, choose, language } from "./i18n.js";
import { heatMap, lineChart } from "./charts.js";

const NOW_EVERY_MS = 5000;
const VIEWS_EVERY_MS = 60000;
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// today: the site's date by the device's clock (GET /v1/occupancy's `at`), not this PC's.
const state = { lang: "en", tz: "UTC", who: null, zones: [], zone: null, lastNow: null, today: null };
const $ = (id) => document.getElementById(id);
const t = () => TEXT[state.lang];

class LoggedOut extends Error {}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.replace(`/login?next=${encodeURIComponent("/dashboard")}`);
    throw new LoggedOut();
  }
  if (!response.ok && !(path.startsWith("/v1/health") && response.status === 503)) {
    throw new Error(`${path}: ${response.status}`);
  }
  return response.json();
}

function showError(error) {
  if (error instanceof LoggedOut) return;
  $("error").textContent = `${t().failed}: ${error.message || error}`;
  $("error").hidden = false;
}

// --- times in the site's time zone -------------------------------------------------------

function parts(date, options) {
  const out = {};
  for (const p of new Intl.DateTimeFormat("en-CA", { timeZone: state.tz, hourCycle: "h23", ...options }).formatToParts(date)) {
    out[p.type] = p.value;
  }
  return out;
}
/** YYYY-MM-DD of `date` in the site's time zone. */
function localDay(date) {
  const p = parts(date, { year: "numeric", month: "2-digit", day: "2-digit" });
  return `${p.year}-${p.month}-${p.day}`;
}
/** Minutes since local midnight. */
function localMinutes(date) {
  const p = parts(date, { hour: "2-digit", minute: "2-digit" });
  return Number(p.hour) * 60 + Number(p.minute);
}
function clock(date) {
  return new Intl.DateTimeFormat(state.lang, { timeZone: state.tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);
}
function when(date) {
  return new Intl.DateTimeFormat(state.lang, {
    timeZone: state.tz, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).format(date);
}
function dayLabel(date) {
  return new Intl.DateTimeFormat(state.lang, { timeZone: state.tz, month: "2-digit", day: "2-digit" }).format(date);
}
function addDays(day, n) {
  const d = new Date(`${day}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
    : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
function people(value) {
  return value === null || value === undefined ? t().unknown : String(Math.round(value * 10) / 10);
}

// --- now ----------------------------------------------------------------------------------

function renderNow(occupancy, health) {
  state.lastNow = { occupancy, health };
  const box = $("zones");
  box.replaceChildren();
  for (const z of occupancy.zones) {
    const card = document.createElement("div");
    const unknown = z.count === null;
    card.className = `zone${unknown ? " unknown" : ""}`;
    card.dataset.zoneId = z.zone_id;
    card.dataset.count = unknown ? "unknown" : String(z.count);
    card.dataset.measuredAt = z.measured_at || "";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = z.name || z.zone_id;
    const count = document.createElement("div");
    count.className = "count";
    count.dataset.role = "count";
    count.textContent = people(z.count);
    const role = document.createElement("div");
    role.className = "role";
    role.textContent = `${t().roles[z.role] || z.role} · ${t().camera[z.camera_status] || z.camera_status}`;
    card.append(name, count, role);
    box.appendChild(card);
  }
  const names = Object.fromEntries(state.zones.map((z) => [z.camera_id, z.camera_name || z.camera_id]));
  const list = $("cameras");
  list.replaceChildren();
  for (const c of health.cameras || []) {
    const item = document.createElement("li");
    item.dataset.cameraId = c.camera_id;
    item.dataset.status = c.status;
    const fps = c.fps === null ? "" : ` · ${Math.round(c.fps * 10) / 10} fps`;
    item.textContent = `${names[c.camera_id] || c.camera_id}: ${t().camera[c.status] || c.status}${fps}`;
    list.appendChild(item);
  }
  $("now-at").textContent = clock(new Date(occupancy.at));
}

async function refreshNow() {
  const [occupancy, health] = await Promise.all([api("/v1/occupancy"), api("/v1/health")]);
  state.today = localDay(new Date(occupancy.at));
  renderNow(occupancy, health);
}

// --- today against a usual day -------------------------------------------------------------

function hourLabels(slotsPerHour) {
  const labels = [];
  for (let h = 0; h <= 24; h += 3) labels.push([h * slotsPerHour, `${String(h).padStart(2, "0")}:00`]);
  return labels;
}

async function refreshToday() {
  const zone = encodeURIComponent(state.zone);
  const historyUrl = `/v1/occupancy/history?bucket=15m&zone=${zone}`;
  const usualUrl = `/v1/reports/usual-day?zone=${zone}`;
  const [history, usual] = await Promise.all([api(historyUrl), api(usualUrl)]);
  const today = usual.day;  // the site's today, by the device's clock
  const values = new Array(96).fill(null);
  for (const p of history.zones[0].points) {
    const start = new Date(p.start);
    if (localDay(start) === today) values[Math.floor(localMinutes(start) / 15)] = p.mean;
  }
  const usualValues = usual.zones[0].slots.map((s) => s.median);
  const weekday = t().weekdays[WEEKDAYS.indexOf(usual.weekday)];
  $("usual-label").textContent = t().usualFor(weekday, usual.weeks);
  lineChart($("today-chart"), [
    { values: usualValues, color: "#9aa3ad", dash: "5 4", label: "usual" },
    { values, color: "#0b3d91", width: 3, label: "today" },
  ], hourLabels(4), t().noData);
  $("today-csv").href = `${historyUrl}&format=csv`;
  $("usual-csv").href = `${usualUrl}&format=csv`;
}

// --- history and busiest hours -------------------------------------------------------------

async function refreshHistory() {
  const bucket = $("bucket").value;
  const url = `/v1/occupancy/history?bucket=${bucket}&zone=${encodeURIComponent(state.zone)}`;
  const history = await api(url);
  const points = history.zones[0].points;
  const every = Math.max(1, Math.ceil(points.length / 7));
  const labels = [];
  points.forEach((p, i) => {
    if (i % every) return;
    const start = new Date(p.start);
    labels.push([i, bucket === "1d" ? dayLabel(start) : bucket === "1h" ? `${dayLabel(start)} ${clock(start)}` : clock(start)]);
  });
  lineChart($("history-chart"), [
    { values: points.map((p) => p.max), color: "#c5cdd8", label: "max" },
    { values: points.map((p) => p.mean), color: "#0b3d91", width: 2.5, label: "mean" },
  ], labels, t().noData);
  $("history-csv").href = `${url}&format=csv`;
}

async function refreshBusiest() {
  const url = `/v1/reports/busiest-hours?zone=${encodeURIComponent(state.zone)}`;
  const report = await api(url);
  const cells = WEEKDAYS.map(() => new Array(24).fill(null));
  for (const s of report.zones[0].slots) {
    if (s.mean !== null) cells[WEEKDAYS.indexOf(s.weekday)][s.hour] = s.mean;
  }
  heatMap($("heatmap"), cells, t().weekdaysShort, t().notSeen);
  $("busiest-csv").href = `${url}&format=csv`;
}

// --- alerts and passes ----------------------------------------------------------------------

function cell(row, content, className) {
  const td = document.createElement("td");
  td.textContent = content;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function effectText(value) {
  if (value === null || value === undefined) return ["–", ""];
  const n = Math.round(Math.abs(value) * 10) / 10;
  return value >= 0 ? [t().fewer(n), "good"] : [t().more(n), "bad"];
}

function emptyRow(body, columns, message) {
  const row = document.createElement("tr");
  const td = cell(row, message, "muted");
  td.colSpan = columns;
  body.appendChild(row);
}

async function refreshAlerts() {
  const today = state.today;
  const passesUrl = `/v1/reports/passes?from=${addDays(today, -6)}&to=${today}`;
  const [alerts, passes] = await Promise.all([api("/v1/alerts"), api(passesUrl)]);
  const list = alerts.alerts.filter((a) => a.kind === "diversion" || a.kind === "camera");
  const body = $("alert-rows");
  body.replaceChildren();
  for (const a of list.slice().reverse()) {
    const row = document.createElement("tr");
    row.dataset.alertId = a.alert_id;
    cell(row, when(new Date(a.raised_at)));
    cell(row, a.rule);
    cell(row, t().alertStatus[a.status] || a.status);
    cell(row, duration(a.seconds_to_ack), "num").dataset.role = "to-ack";
    cell(row, a.acknowledged_by || "–");
    const [effect, tone] = effectText(a.effect);
    cell(row, effect, tone).dataset.role = "effect";
    body.appendChild(row);
  }
  if (!list.length) emptyRow(body, 6, t().noAlerts);
  const waits = list.map((a) => a.seconds_to_ack).filter((s) => s !== null).sort((x, y) => x - y);
  const median = waits.length ? duration(waits[Math.floor((waits.length - 1) / 2)]) : null;
  $("alerts-summary").textContent = t().summary(list.length, waits.length, median);
  $("alerts-csv").href = "/v1/alerts?format=csv";

  const rows = $("pass-rows");
  rows.replaceChildren();
  for (const p of passes.passes.slice().reverse()) {
    const row = document.createElement("tr");
    row.dataset.alertId = p.alert_id;
    cell(row, when(new Date(p.asked_at)));
    cell(row, p.done_by || "–");
    cell(row, people(p.count_before), "num");
    cell(row, people(p.count_after), "num");
    const [change, tone] = effectText(p.count_change === null ? null : -p.count_change);
    cell(row, change, tone).dataset.role = "change";
    const wait = p.wait_change_minutes;
    cell(row, wait === null ? "–" : `${wait > 0 ? "+" : ""}${Math.round(wait * 10) / 10} min`, "num");
    rows.appendChild(row);
  }
  if (!passes.passes.length) emptyRow(rows, 6, t().noPasses);
  $("passes-csv").href = `${passesUrl}&format=csv`;
}

// --- the page -------------------------------------------------------------------------------

async function refreshViews() {
  await Promise.all([refreshToday(), refreshHistory(), refreshBusiest(), refreshAlerts()]);
}

function guarded(fn) {
  return () => fn().then(() => { $("error").hidden = true; }).catch(showError);
}

function renderHeader() {
  applyStatic(state.lang);
  $("site-name").textContent = state.who.site_name;
  $("me").textContent = t().who(state.who.id, t().roleNames[state.who.role] || state.who.role);
}

async function logout() {
  await fetch("/v1/session", { method: "DELETE", credentials: "same-origin", headers: { "X-Lobbywatch-App": "1" } });
  location.replace("/login");
}

async function start() {
  state.who = await api("/v1/session");
  state.tz = state.who.timezone;
  state.lang = language(document.documentElement.dataset.siteLanguage || state.who.language);
  const zones = await api("/v1/zones");
  state.zones = zones.zones;
  const select = $("zone");
  for (const z of state.zones) {
    const option = document.createElement("option");
    option.value = z.id;
    option.textContent = z.name || z.id;
    select.appendChild(option);
  }
  const first = state.zones.find((z) => z.role === "waiting") || state.zones[0];
  state.zone = first ? first.id : null;
  select.value = state.zone;
  renderHeader();
  if (!state.zone) return;
  select.addEventListener("change", () => { state.zone = select.value; guarded(refreshViews)(); });
  $("bucket").addEventListener("change", guarded(refreshHistory));
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "en" ? "zh-CN" : "en";
    choose(state.lang);
    renderHeader();
    if (state.lastNow) renderNow(state.lastNow.occupancy, state.lastNow.health);
    guarded(refreshViews)();
  });
  $("logout").addEventListener("click", () => logout().catch(showError));
  await refreshNow();
  await refreshViews();
  document.documentElement.dataset.ready = "1";
  setInterval(guarded(refreshNow), NOW_EVERY_MS);
  setInterval(guarded(refreshViews), VIEWS_EVERY_MS);
}

window.lobbywatch = { state };
start().catch(showError);
