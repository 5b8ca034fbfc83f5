// /debug: a camera's latest frame with what the detector found in it (docs/ui.md 3), for admins.
//
// Data: GET /v1/zones (the cameras), GET /v1/cameras/{id}/geometry (zones and ignore masks),
// GET /v1/cameras/{id}/snapshot.jpg (the frame; X-Lobbywatch-Seq names it), then
// GET /v1/cameras/{id}/detections?seq= (that very frame's boxes). Every request goes with the
// browser's own credential (the session cookie, credentials: same-origin); the page holds no
// data and stores nothing: the image lives in a blob: URL released on the next refresh.
//
// "Count heads" (docs/ui.md 6): clicks on the frame mark heads (undo, clear), counted per zone
// as the service will count them; Save sends POST /v1/cameras/{id}/hand-counts {seq, heads}
// (normalized), which keeps them with that frame's detections, never the image. The list below
// (GET .../hand-counts) is what `lobbywatch calibrate --from-store` fits on; each can be deleted.
"use strict";

const TEXT = {
  en: {
    title: "What the detector sees",
    camera: "Camera",
    refresh: "Refresh",
    keyCounted: "counted",
    keyNotCounted: "not counted (why)",
    keyZone: "zone",
    keyMask: "ignore mask",
    score: "Score",
    zone: "Zone",
    counts: "Counts?",
    yes: "yes",
    privacy: "This image is held in the device's memory only and never stored; every view is logged.",
    loading: "Loading…",
    login: "Log in with an admin key to see this page.",
    loginLink: "Log in",
    forbidden: "Only admins may see camera images and detections.",
    off: "Snapshots are off on this device (api.snapshots.enabled in the config).",
    notRunning: "The counting service is not running with snapshots on.",
    noFrame: "This camera has no frame yet (it is not online).",
    failed: "Could not load the frame",
    noCameras: "No cameras are configured.",
    ignored: "in an ignore mask",
    scene: "ruled out by the scene",
    "no zone": "outside every zone",
    text: "text overlay",
    size: "not a person's size or shape",
    static: "static clutter",
    summary: (f) =>
      `Frame ${f.seq} at ${f.time} · ${f.width}×${f.height} · ${f.counted} counted, ` +
      `${f.notCounted} not counted`,
    mask: "mask",
    short: { ignored: "mask", scene: "scene", "no zone": "no zone" },
    countHeads: "Count heads",
    countHelp: "Click each person's head on the frame. Saved, the heads go with this frame's " +
      "detections to calibrate the camera; the image is not stored.",
    undo: "Undo",
    clear: "Clear",
    save: "Save",
    savedTitle: "Hand counts kept",
    frameTime: "Frame",
    headsCol: "Heads",
    perZone: "Per zone: heads / detector",
    by: "By",
    remove: "Delete",
    heads: (n, zones) => `${n} head${n === 1 ? "" : "s"} clicked` + (zones ? ` · ${zones}` : ""),
    noZone: "no zone",
    saving: "Saving…",
    saved: (id) => `Saved as hand count ${id}. Refresh for another frame.`,
    gone: "That frame is gone, take a new snapshot (Refresh) and click its heads again.",
    saveFailed: "Could not save",
    deleted: (id) => `Hand count ${id} deleted.`,
    noneKept: "No hand counts kept for this camera yet.",
    kept: (n, advised, camera) =>
      `${n} kept for this camera (${advised} or more advised). Then run: ` +
      `lobbywatch calibrate --from-store --camera ${camera} --out calibration.yaml`,
  },
  "zh-CN": {
    title: "检测器所见",
    camera: "摄像头",
    refresh: "刷新",
    keyCounted: "计入",
    keyNotCounted: "未计入（原因）",
    keyZone: "区域",
    keyMask: "忽略区域",
    score: "置信度",
    zone: "区域",
    counts: "是否计入",
    yes: "是",
    privacy: "此画面只保存在设备内存中，从不存储；每次查看都会记录。",
    loading: "加载中…",
    login: "请用管理员密钥登录后查看此页面。",
    loginLink: "登录",
    forbidden: "只有管理员可以查看摄像头画面和检测结果。",
    off: "此设备未开启快照（配置中的 api.snapshots.enabled）。",
    notRunning: "计数服务未在开启快照的情况下运行。",
    noFrame: "此摄像头还没有画面（不在线）。",
    failed: "无法加载画面",
    noCameras: "没有配置摄像头。",
    ignored: "在忽略区域内",
    scene: "被场景规则排除",
    "no zone": "不在任何区域内",
    text: "画面文字",
    size: "尺寸或形状不像人",
    static: "静止杂物",
    summary: (f) =>
      `第 ${f.seq} 帧，${f.time} · ${f.width}×${f.height} · 计入 ${f.counted} 个，` +
      `未计入 ${f.notCounted} 个`,
    mask: "忽略",
    short: { ignored: "忽略区", scene: "场景", "no zone": "无区域" },
    countHeads: "人工数人头",
    countHelp: "在画面上点击每个人的头部。保存后，这些头部位置会与这一帧的检测结果一起用于校准摄像头；" +
      "画面本身不会被存储。",
    undo: "撤销",
    clear: "清除",
    save: "保存",
    savedTitle: "已保存的人工计数",
    frameTime: "画面",
    headsCol: "人头数",
    perZone: "各区域：人工 / 检测器",
    by: "保存人",
    remove: "删除",
    heads: (n, zones) => `已点击 ${n} 个人头` + (zones ? ` · ${zones}` : ""),
    noZone: "无区域",
    saving: "保存中…",
    saved: (id) => `已保存为第 ${id} 条人工计数。刷新可换一帧。`,
    gone: "这一帧已经不在了，请刷新获取新画面，再点击人头。",
    saveFailed: "无法保存",
    deleted: (id) => `已删除第 ${id} 条人工计数。`,
    noneKept: "此摄像头还没有人工计数。",
    kept: (n, advised, camera) =>
      `此摄像头已保存 ${n} 条（建议至少 ${advised} 条）。然后运行：` +
      `lobbywatch calibrate --from-store --camera ${camera} --out calibration.yaml`,
  },
};

const SVG = "http://www.w3.org/2000/svg";
const state = {
  lang: "en", cameras: [], camera: null, imageUrl: null, last: null,
  counting: false, heads: [], saved: null, countNote: null,
};

const $ = (id) => document.getElementById(id);
const t = (key) => (TEXT[state.lang] || TEXT.en)[key] ?? TEXT.en[key] ?? key;

// ---- language ------------------------------------------------------------------------------

function setLanguage(lang, remember) {
  state.lang = lang in TEXT ? lang : "en";
  if (remember) localStorage.setItem("lobbywatch.lang", state.lang);
  document.documentElement.lang = state.lang;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  $("lang").textContent = state.lang === "en" ? "中文" : "EN";
  if (state.last) render(state.last);
  else if (state.problem) showProblem(state.problem);
  renderCounting();
}

// ---- requests ------------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

async function get(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      /* not JSON: the status says it */
    }
    throw new Problem(response.status, String(detail));
  }
  return response;
}

function showProblem(problem) {
  state.problem = problem;
  const box = $("message");
  box.replaceChildren();
  box.hidden = false;
  box.dataset.status = String(problem.status || "");
  if (problem.status === 401) {
    box.append(t("login") + " ");
    const link = document.createElement("a");
    link.href = "/login?next=" + encodeURIComponent("/debug");
    link.textContent = t("loginLink");
    box.append(link);
  } else if (problem.status === 403) {
    box.textContent = t("forbidden");
  } else {
    const detail = problem.detail || "";
    let text = `${t("failed")}: ${detail}`;
    if (problem.status === 503 && /snapshots are off/.test(detail)) text = t("off");
    else if (problem.status === 503 && /not running/.test(detail)) text = t("notRunning");
    else if (problem.status === 503 && /no frame/.test(detail)) text = t("noFrame");
    else if (problem.key) text = t(problem.key);
    box.textContent = text;
  }
}

function clearProblem() {
  state.problem = null;
  $("message").hidden = true;
}

// ---- loading -------------------------------------------------------------------------------

async function loadCameras() {
  const zones = await (await get("/v1/zones")).json();
  const seen = new Map();
  for (const zone of zones.zones) {
    if (!seen.has(zone.camera_id)) seen.set(zone.camera_id, zone.camera_name || zone.camera_id);
  }
  state.cameras = [...seen].map(([id, name]) => ({ id, name }));
  const select = $("camera");
  select.replaceChildren(
    ...state.cameras.map((c) => {
      const option = document.createElement("option");
      option.value = c.id;
      option.textContent = c.name === c.id ? c.id : `${c.name} (${c.id})`;
      return option;
    }),
  );
  const wanted = new URLSearchParams(location.search).get("camera");
  state.camera = state.cameras.some((c) => c.id === wanted) ? wanted : state.cameras[0]?.id;
  if (state.camera) select.value = state.camera;
}

async function refresh() {
  if (!state.camera) {
    showProblem({ status: 0, key: "noCameras" });
    return;
  }
  const camera = state.camera;
  $("refresh").disabled = true;
  $("status").textContent = t("loading");
  try {
    const path = `/v1/cameras/${encodeURIComponent(camera)}`;
    const geometry = await (await get(`${path}/geometry`)).json();
    const image = await get(`${path}/snapshot.jpg`);
    const seq = image.headers.get("X-Lobbywatch-Seq");
    const blob = await image.blob();
    const detections = await (await get(`${path}/detections?seq=${encodeURIComponent(seq)}`)).json();
    if (camera !== state.camera) return; // another camera was picked meanwhile
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = URL.createObjectURL(blob);
    state.last = { geometry, detections, imageUrl: state.imageUrl };
    state.heads = []; // marks belong to the frame they were clicked on
    state.countNote = null;
    clearProblem();
    render(state.last);
    if (state.counting) await loadSaved();
  } catch (error) {
    state.last = null;
    $("view").hidden = true;
    $("boxes").hidden = true;
    $("status").textContent = "";
    showProblem(error instanceof Problem ? error : { status: 0, detail: String(error) });
  } finally {
    $("refresh").disabled = false;
    renderCounting();
  }
}

// ---- drawing -------------------------------------------------------------------------------

function el(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function points(polygon, width, height) {
  return polygon.map(([x, y]) => `${(x * width).toFixed(1)},${(y * height).toFixed(1)}`).join(" ");
}

function why(box) {
  const reason = t(box.reason);
  return box.rule ? `${reason}: ${t(box.rule)}` : reason;
}

// On the image, short (the table below and each box's tooltip say it whole).
function label(box, i) {
  const score = box.score.toFixed(2);
  if (box.counted) return `${i + 1} ${score} ${box.zone}`;
  const short = t("short")[box.reason] ?? box.reason;
  return `${i + 1} ${score} ✕ ${box.rule ? `${short}: ${t(box.rule)}` : short}`;
}

function tooltip(box, i) {
  return `${i + 1}: ${box.score.toFixed(2)} · ${box.counted ? box.zone : why(box)}`;
}

function render({ geometry, detections, imageUrl }) {
  const { width, height } = detections;
  const svg = $("frame");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const layers = [el("image", { href: imageUrl, x: 0, y: 0, width, height })];
  for (const zone of geometry.zones) {
    layers.push(el("polygon", { class: "zone", "data-zone": zone.id,
                                points: points(zone.polygon, width, height) }));
    const [x, y] = zone.polygon[0];
    layers.push(el("text", { class: "zone-label", x: x * width + 6, y: y * height + 18 },
                   zone.name ? `${zone.name} (${zone.id})` : zone.id));
  }
  for (const mask of geometry.ignore) {
    layers.push(el("polygon", { class: "mask", "data-mask": mask.id,
                                points: points(mask.polygon, width, height) }));
    const [x, y] = mask.polygon[0];
    layers.push(el("text", { class: "mask-label", x: x * width + 6, y: y * height + 18 },
                   `${t("mask")}: ${mask.reason || mask.id}`));
  }
  detections.boxes.forEach((box, i) => {
    const kind = box.counted ? "counted" : "not-counted";
    const [x1, y1, x2, y2] = box.xyxy;
    const group = el("g", { class: `detection ${kind}`, "data-index": i,
                            "data-zone": box.zone ?? "", "data-reason": box.reason ?? "" });
    group.append(el("rect", { class: `box ${kind}`, x: x1, y: y1,
                              width: Math.max(1, x2 - x1), height: Math.max(1, y2 - y1) }));
    group.append(el("circle", { class: `foot ${kind}`, r: 4,
                                cx: box.anchor[0] * width, cy: box.anchor[1] * height }));
    group.append(el("text", { class: kind, x: x1 + 2, y: Math.max(12, y1 - 3) }, label(box, i)));
    group.append(el("title", {}, tooltip(box, i)));
    layers.push(group);
  });
  svg.replaceChildren(...layers);
  drawHeads();
  $("view").hidden = false;

  const rows = detections.boxes.map((box, i) => {
    const row = document.createElement("tr");
    const cells = [String(i + 1), box.score.toFixed(2), box.zone ?? "—",
                   box.counted ? t("yes") : why(box)];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.lastChild.className = box.counted ? "counted" : "not-counted";
    return row;
  });
  $("boxes").querySelector("tbody").replaceChildren(...rows);
  $("boxes").hidden = rows.length === 0;

  const time = new Date(detections.at).toLocaleTimeString(state.lang);
  $("status").textContent = t("summary")({
    seq: detections.seq, time, width, height, counted: detections.counted,
    notCounted: detections.boxes.length - detections.counted,
  });
  document.documentElement.dataset.seq = String(detections.seq);
}

// ---- counting heads by hand (docs/ui.md 6) -------------------------------------------------

function inside([x, y], polygon) {
  let hit = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

// The zone a head counts in, by the rule that counts people (edge/zones.py): ignore masks
// drop it, overlapping zones go to the higher priority, then the lower id. The service counts
// the saved heads again itself; this is for the eye.
function zoneOf(point, geometry) {
  if (geometry.ignore.some((m) => inside(point, m.polygon))) return null;
  const zones = [...geometry.zones].sort(
    (a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  return zones.find((z) => inside(point, z.polygon))?.id ?? null;
}

function headsPerZone() {
  const counts = new Map((state.last?.geometry.zones ?? []).map((z) => [z.id, 0]));
  let outside = 0;
  for (const head of state.heads) {
    const zone = zoneOf(head, state.last.geometry);
    if (zone === null) outside += 1;
    else counts.set(zone, counts.get(zone) + 1);
  }
  return { counts, outside };
}

function drawHeads() {
  const svg = $("frame");
  for (const node of svg.querySelectorAll(".head-mark")) node.remove();
  svg.classList.toggle("counting", state.counting);
  if (!state.last || !state.counting) return;
  const { width, height } = state.last.detections;
  const radius = Math.max(5, Math.round(width / 110));
  state.heads.forEach(([x, y], i) => {
    const group = el("g", { class: "head-mark", "data-index": i });
    group.append(el("circle", { class: "head", cx: x * width, cy: y * height, r: radius }));
    group.append(el("text", { class: "head-label", x: x * width + radius + 2,
                              y: y * height + 4 }, String(i + 1)));
    svg.append(group);
  });
}

function renderCounting() {
  $("count").setAttribute("aria-pressed", String(state.counting));
  $("counting").hidden = !state.counting || !state.last;
  drawHeads();
  if (!state.last) return;
  const { counts, outside } = headsPerZone();
  const parts = [...counts].map(([zone, n]) => `${zone} ${n}`);
  if (outside) parts.push(`${t("noZone")} ${outside}`);
  $("heads").textContent = t("heads")(state.heads.length, parts.join(" · "));
  $("heads").dataset.count = String(state.heads.length);
  $("undo").disabled = $("clear").disabled = state.heads.length === 0;
  const note = state.countNote;
  const message = $("count-message");
  message.textContent = note ? (typeof note.text === "function" ? note.text() : note.text) : "";
  message.classList.toggle("error", Boolean(note?.error));
  renderSaved();
}

function renderSaved() {
  const list = state.saved;
  const table = $("hand-counts");
  if (!list) {
    table.hidden = true;
    $("saved-summary").textContent = "";
    return;
  }
  const count = list.hand_counts.length;
  $("saved-summary").textContent = count
    ? t("kept")(count, list.advised, list.camera_id)
    : t("noneKept");
  const rows = list.hand_counts.map((c) => {
    const row = document.createElement("tr");
    row.dataset.id = String(c.id);
    const zones = Object.keys({ ...c.heads_per_zone, ...c.detected });
    const perZone = zones
      .map((z) => `${z} ${c.heads_per_zone[z] ?? 0} / ${c.detected[z] ?? 0}`)
      .join(" · ");
    const cells = [String(c.id), new Date(c.at).toLocaleString(state.lang),
                   String(c.heads.length), perZone, c.saved_by];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const cell = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "delete";
    button.textContent = t("remove");
    button.addEventListener("click", () => removeSaved(c.id));
    cell.append(button);
    row.append(cell);
    return row;
  });
  table.querySelector("tbody").replaceChildren(...rows);
  table.hidden = rows.length === 0;
}

function note(text, error = false) {
  state.countNote = { text, error };
  renderCounting();
}

function countsPath() {
  return `/v1/cameras/${encodeURIComponent(state.camera)}/hand-counts`;
}

async function loadSaved() {
  try {
    state.saved = await (await get(countsPath())).json();
  } catch (error) {
    state.saved = null;
    note(() => `${t("saveFailed")}: ${error.detail || error}`, true);
    return;
  }
  renderCounting();
}

// A request that changes something, with the session cookie: the app header says it is ours.
async function send(method, path, body) {
  const headers = { "X-Lobbywatch-App": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, credentials: "same-origin", cache: "no-store", headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    /* 204, or not JSON */
  }
  if (!response.ok) throw new Problem(response.status, String(answer?.detail ?? response.statusText));
  return answer;
}

async function saveHeads() {
  if (!state.last) return;
  const heads = state.heads.map(([x, y]) => [Number(x.toFixed(5)), Number(y.toFixed(5))]);
  $("save").disabled = true;
  note(() => t("saving"));
  try {
    const saved = await send("POST", countsPath(), { seq: state.last.detections.seq, heads });
    state.heads = [];
    note(() => t("saved")(saved.id));
    await loadSaved();
  } catch (error) {
    if (error.status === 409 && /frame is gone/.test(error.detail)) note(() => t("gone"), true);
    else note(() => `${t("saveFailed")}: ${error.detail || error}`, true);
  } finally {
    $("save").disabled = false;
  }
}

async function removeSaved(id) {
  try {
    await send("DELETE", `${countsPath()}/${id}`);
    note(() => t("deleted")(id));
  } catch (error) {
    note(() => `${t("saveFailed")}: ${error.detail || error}`, true);
  }
  await loadSaved();
}

function clickFrame(event) {
  if (!state.counting || !state.last) return;
  const svg = $("frame");
  const point = svg.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const at = point.matrixTransform(svg.getScreenCTM().inverse());
  const { width, height } = state.last.detections;
  const x = at.x / width;
  const y = at.y / height;
  if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) return;
  state.heads.push([x, y]);
  state.countNote = null;
  renderCounting();
}

async function toggleCounting() {
  state.counting = !state.counting;
  renderCounting();
  if (state.counting && state.last) await loadSaved();
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  const stored = localStorage.getItem("lobbywatch.lang");
  setLanguage(stored || document.documentElement.dataset.siteLanguage || "en", false);
  $("lang").addEventListener("click", () => setLanguage(state.lang === "en" ? "zh-CN" : "en", true));
  $("refresh").addEventListener("click", refresh);
  $("count").addEventListener("click", toggleCounting);
  $("frame").addEventListener("click", clickFrame);
  $("undo").addEventListener("click", () => {
    state.heads.pop();
    renderCounting();
  });
  $("clear").addEventListener("click", () => {
    state.heads = [];
    renderCounting();
  });
  $("save").addEventListener("click", saveHeads);
  $("camera").addEventListener("change", (event) => {
    state.camera = event.target.value;
    state.saved = null;
    refresh();
  });
  try {
    await loadCameras();
  } catch (error) {
    showProblem(error instanceof Problem ? error : { status: 0, detail: String(error) });
    return;
  }
  await refresh();
}

window.lobbywatchDebug = state;
start();
