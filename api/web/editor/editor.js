// /editor: the installer draws a camera's zones and ignore masks on its picture (docs/ui.md 5).
//
// Data: GET /v1/session (who, the site's language), GET /v1/zones (the cameras),
// GET /v1/cameras/{id}/geometry (the zones and masks as configured, and the config file's ETag),
// GET /v1/cameras/{id}/snapshot.jpg (the backdrop, when snapshots are on), GET /v1/occupancy
// every 2 s (the live count beside each saved zone). Save is PUT .../geometry with If-Match:
// the server validates the whole config with the service's own loader and writes the file;
// its messages are shown beside the zone and field they name. Every request goes with the
// browser's session cookie; the page keeps nothing but the language choice and each camera's
// last seen aspect (for the grey frame when snapshots are off). Coordinates are fractions of
// the frame, 0..1, x right and y down, as the config stores them.
import { ROLES, TEXT, applyStatic, choose, language } from "./i18n.js";

const COUNTS_EVERY_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const GREY = { width: 1600, height: 900 }; // 16:9, when the camera's shape was never seen
const ASPECT_KEY = (camera) => `lobbywatch.editor.size.${camera}`;

const state = {
  lang: "en",
  who: null,
  cameras: [],
  siteZoneIds: new Set(),
  camera: null,
  etag: null,
  saved: null, // the geometry as last loaded or saved: {zones, ignore}
  savedJson: "",
  zones: [],
  ignore: [],
  selected: null, // {kind: "zones" | "ignore", index}
  point: null, // index of the selected point in the selected shape
  size: { ...GREY },
  imageUrl: null,
  backdrop: null, // null: the picture; else {key, detail} why there is none
  counts: new Map(), // zone id -> count (null: unknown)
  errors: [], // {kind, index, field, message} from a refused save; kind null: the whole config
  result: null, // {kind: "saved" | "invalid" | "conflict" | "failed", detail}
  drag: null,
  dragged: false,
  saves: 0,
};

const $ = (id) => document.getElementById(id);
const t = () => TEXT[state.lang];

// ---- requests ------------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

class LoggedOut extends Error {}

async function request(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store", ...options });
  if (response.status === 401) {
    location.replace(`/login?next=${encodeURIComponent("/editor")}`);
    throw new LoggedOut();
  }
  if (!response.ok) {
    let body = null;
    let detail = response.statusText;
    try {
      body = await response.json();
      if (typeof body.detail === "string") detail = body.detail;
    } catch (_) {
      /* not JSON: the status says it */
    }
    throw new Problem(response.status, String(detail), body);
  }
  return response;
}

const getJson = async (path) => (await request(path, { headers: { Accept: "application/json" } })).json();
const cameraPath = (camera) => `/v1/cameras/${encodeURIComponent(camera)}`;

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function showError(error) {
  if (error instanceof LoggedOut) return;
  if (error instanceof Problem && error.status === 403) showMessage(t().forbidden);
  else showMessage(`${t().failed}: ${error.detail || error.message || error}`);
}

// ---- loading -------------------------------------------------------------------------------

async function loadCameras() {
  const zones = await getJson("/v1/zones");
  const seen = new Map();
  for (const zone of zones.zones) {
    state.siteZoneIds.add(zone.id);
    if (!seen.has(zone.camera_id)) seen.set(zone.camera_id, zone.camera_name || zone.camera_id);
  }
  state.cameras = [...seen].map(([id, name]) => ({ id, name }));
  $("camera").replaceChildren(
    ...state.cameras.map((c) => {
      const option = document.createElement("option");
      option.value = c.id;
      option.textContent = c.name === c.id ? c.id : `${c.name} (${c.id})`;
      return option;
    }),
  );
  const wanted = new URLSearchParams(location.search).get("camera");
  state.camera = state.cameras.some((c) => c.id === wanted) ? wanted : state.cameras[0]?.id ?? null;
  if (state.camera) $("camera").value = state.camera;
}

/** The working copy from a geometry answer (GET or a save's 200), and its ETag. */
function takeGeometry(geometry, etag) {
  state.etag = etag;
  state.saved = {
    zones: geometry.zones.map((z) => ({ id: z.id, name: z.name ?? "", role: z.role,
                                        priority: z.priority ?? 0, polygon: z.polygon.map((p) => [p[0], p[1]]) })),
    ignore: (geometry.ignore || []).map((m) => ({ id: m.id, reason: m.reason ?? "",
                                                  polygon: m.polygon.map((p) => [p[0], p[1]]) })),
  };
  state.savedJson = JSON.stringify(state.saved);
  state.zones = structuredClone(state.saved.zones);
  state.ignore = structuredClone(state.saved.ignore);
  state.selected = null;
  state.point = null;
  state.errors = [];
  if (Number.isFinite(geometry.width) && Number.isFinite(geometry.height)) {
    rememberSize(geometry.width, geometry.height);
  }
}

function rememberSize(width, height) {
  state.size = { width, height };
  try {
    localStorage.setItem(ASPECT_KEY(state.camera), JSON.stringify(state.size));
  } catch (_) {
    /* private mode: the grey frame falls back to 16:9 */
  }
}

function lastSize(camera) {
  try {
    const size = JSON.parse(localStorage.getItem(ASPECT_KEY(camera)) || "null");
    if (size && size.width > 0 && size.height > 0) return size;
  } catch (_) {
    /* a stale or foreign value */
  }
  return { ...GREY };
}

async function loadBackdrop(camera) {
  state.size = lastSize(camera);
  try {
    const blob = await (await request(`${cameraPath(camera)}/snapshot.jpg`)).blob();
    const url = URL.createObjectURL(blob);
    const image = new Image();
    image.src = url;
    await image.decode();
    if (camera !== state.camera) {
      URL.revokeObjectURL(url);
      return;
    }
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = url;
    state.backdrop = null;
    rememberSize(image.naturalWidth, image.naturalHeight);
  } catch (error) {
    if (error instanceof LoggedOut) throw error;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = null;
    const detail = error.detail || error.message || String(error);
    const off = error instanceof Problem && error.status === 503 && /snapshots are off/.test(detail);
    state.backdrop = off ? { key: "snapshotsOff" } : { key: "noPicture", detail };
  }
}

async function load() {
  const camera = state.camera;
  if (!camera) {
    showMessage(t().noCameras);
    return;
  }
  $("hint").textContent = t().loading;
  const response = await request(`${cameraPath(camera)}/geometry`, { headers: { Accept: "application/json" } });
  const geometry = await response.json();
  await loadBackdrop(camera);
  if (camera !== state.camera) return; // another camera was picked meanwhile
  takeGeometry(geometry, response.headers.get("ETag"));
  state.result = null;
  showMessage("");
  $("editor").hidden = false;
  renderAll();
}

/** The live counts; when they cannot be read, every zone's is unknown (never a stale one). */
async function refreshCounts() {
  try {
    const occupancy = await getJson("/v1/occupancy");
    state.counts = new Map(occupancy.zones.map((z) => [z.zone_id, z.count]));
  } catch (error) {
    state.counts = new Map();
    if (error instanceof LoggedOut) throw error;
  } finally {
    renderCounts();
  }
}

// ---- editing -------------------------------------------------------------------------------

function shape(selection = state.selected) {
  return selection ? state[selection.kind][selection.index] : null;
}

function body() {
  return {
    zones: state.zones.map((z) => ({ id: z.id, name: z.name, role: z.role,
                                     priority: Number(z.priority) || 0, polygon: z.polygon })),
    ignore: state.ignore.map((m) => ({ id: m.id, reason: m.reason, polygon: m.polygon })),
  };
}

function dirty() {
  return JSON.stringify({ zones: body().zones, ignore: body().ignore }) !== state.savedJson;
}

function freeId(prefix) {
  const taken = new Set([...state.siteZoneIds, ...state.zones.map((z) => z.id),
                         ...state.ignore.map((m) => m.id)]);
  for (let n = 1; ; n += 1) {
    if (!taken.has(`${prefix}-${n}`)) return `${prefix}-${n}`;
  }
}

function select(kind, index, point = null) {
  state.selected = kind === null ? null : { kind, index };
  state.point = point;
  renderAll();
}

function addShape(kind) {
  if (kind === "zones") {
    state.zones.push({ id: freeId("zone"), name: "", role: "waiting", priority: 0, polygon: [] });
  } else {
    state.ignore.push({ id: freeId("mask"), reason: "", polygon: [] });
  }
  select(kind, state[kind].length - 1);
  const card = document.querySelector(`.shape[data-kind="${kind}"][data-index="${state[kind].length - 1}"] .field-id`);
  if (card) card.focus();
}

function removeShape(kind, index) {
  state[kind].splice(index, 1);
  state.errors = []; // they name cards by index, which the removal shifted
  select(null);
}

function removePoint(index = state.point) {
  const current = shape();
  if (!current || index === null || index === undefined) return;
  current.polygon.splice(index, 1);
  state.point = null;
  renderAll();
}

/** The frame fraction (0..1, 4 decimals: a tenth of a pixel of a 1600-wide frame) under a
 * pointer event. */
function fraction(event) {
  const svg = $("frame");
  const point = svg.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const at = point.matrixTransform(svg.getScreenCTM().inverse());
  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  return [round(at.x / state.size.width), round(at.y / state.size.height)];
}

/** Where a new point goes: after the last while the outline has fewer than 3 points, then
 * into its nearest side (measured in pixels, so a wide frame's sides compare fairly), so that
 * a point added to a finished zone bends the side it was clicked by. Drawing corners in order
 * lands each on the closing side, that is at the end, as before. */
function insertAt(polygon, [x, y]) {
  if (polygon.length < 3) return polygon.length;
  const { width, height } = state.size;
  let best = polygon.length;
  let bestDistance = Infinity;
  polygon.forEach(([ax, ay], i) => {
    const [bx, by] = polygon[(i + 1) % polygon.length];
    const [dx, dy] = [(bx - ax) * width, (by - ay) * height];
    const [px, py] = [(x - ax) * width, (y - ay) * height];
    const along = Math.max(0, Math.min(1, (px * dx + py * dy) / (dx * dx + dy * dy || 1)));
    const distance = Math.hypot(px - along * dx, py - along * dy);
    if (distance < bestDistance) [best, bestDistance] = [i + 1, distance];
  });
  return best;
}

function onFrameClick(event) {
  if (state.dragged) {
    state.dragged = false;
    return;
  }
  if (event.target.classList.contains("handle")) return;
  const current = shape();
  if (current) {
    const point = fraction(event);
    state.point = insertAt(current.polygon, point);
    current.polygon.splice(state.point, 0, point);
    renderAll();
    return;
  }
  const kind = event.target.dataset.kind;
  if (kind) select(kind, Number(event.target.dataset.index));
}

function onPointerDown(event) {
  state.dragged = false; // a drag's click that never came must not swallow this one
  if (!event.target.classList.contains("handle") || event.button !== 0) return;
  event.preventDefault();
  state.drag = { index: Number(event.target.dataset.point), moved: false };
  state.point = state.drag.index;
  $("frame").setPointerCapture(event.pointerId);
  renderFrame();
}

function onPointerMove(event) {
  if (!state.drag) return;
  shape().polygon[state.drag.index] = fraction(event);
  state.drag.moved = true;
  renderFrame();
}

function onPointerUp(event) {
  if (!state.drag) return;
  state.dragged = true; // the click that follows is the end of a drag, not a new point
  state.drag = null;
  if ($("frame").hasPointerCapture(event.pointerId)) $("frame").releasePointerCapture(event.pointerId);
  renderAll();
}

function onContextMenu(event) {
  if (!event.target.classList.contains("handle")) return;
  event.preventDefault();
  removePoint(Number(event.target.dataset.point));
}

// ---- saving --------------------------------------------------------------------------------

/** Where a refusal points: a zone or mask of this camera and its field, or nowhere (the whole
 * config). The server gives each issue's `loc` in the body when it names one of this camera's
 * zones or masks (["body", "zones", 1, "polygon"]), else ["config", ...the file's path]. */
function locate(loc) {
  const parts = loc.map(String);
  const at = parts.findIndex((p, i) => (p === "zones" || p === "ignore") && /^\d+$/.test(parts[i + 1] ?? ""));
  if (parts[0] !== "body" || at < 0) return { kind: null, index: null, field: null };
  return { kind: parts[at], index: Number(parts[at + 1]), field: parts[at + 2] ?? null };
}

function issuesOf(problem) {
  const found = problem.body || {};
  const list = Array.isArray(found.detail) ? found.detail : [];
  const issues = list.map((item) => {
    const loc = Array.isArray(item.loc) ? item.loc : [];
    const path = item.path ?? loc.filter((p) => p !== "body" && p !== "config").join(".");
    return { ...locate(loc), path: String(path), message: String(item.msg ?? item.message ?? "") };
  });
  if (!issues.length) issues.push({ kind: null, index: null, field: null, path: "", message: problem.detail });
  return issues;
}

async function save() {
  $("save").disabled = true;
  state.result = { kind: "saving" };
  renderResult();
  try {
    const response = await request(`${cameraPath(state.camera)}/geometry`, {
      method: "PUT",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "If-Match": state.etag ?? "",
        "X-Lobbywatch-App": "1",
      },
      body: JSON.stringify(body()),
    });
    const geometry = await response.json();
    takeGeometry(geometry, response.headers.get("ETag"));
    for (const zone of state.zones) state.siteZoneIds.add(zone.id);
    state.saves += 1;
    state.result = { kind: "saved" };
    document.documentElement.dataset.saved = String(state.saves);
  } catch (error) {
    if (error instanceof LoggedOut) return;
    if (error instanceof Problem && error.status === 422) {
      state.errors = issuesOf(error);
      state.result = { kind: "invalid" };
    } else if (error instanceof Problem && error.status === 409) {
      state.result = { kind: "conflict", detail: error.detail };
    } else {
      state.result = { kind: "failed", detail: error.detail || error.message || String(error) };
    }
  } finally {
    $("save").disabled = false;
  }
  renderAll();
  refreshCounts().catch(showError);
}

async function reload() {
  try {
    await load();
  } catch (error) {
    showError(error);
  }
}

// ---- drawing -------------------------------------------------------------------------------

function svgEl(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function pixels(polygon) {
  const { width, height } = state.size;
  return polygon.map(([x, y]) => `${(x * width).toFixed(1)},${(y * height).toFixed(1)}`).join(" ");
}

function renderFrame() {
  const svg = $("frame");
  const { width, height } = state.size;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const layers = [];
  if (state.imageUrl) {
    layers.push(svgEl("image", { href: state.imageUrl, x: 0, y: 0, width, height, class: "backdrop" }));
  } else {
    layers.push(svgEl("rect", { x: 0, y: 0, width, height, class: "backdrop grey" }));
  }
  const scale = width / Math.max(1, svg.clientWidth || width); // frame units per CSS pixel
  for (const kind of ["zones", "ignore"]) {
    state[kind].forEach((item, index) => {
      const selected = state.selected?.kind === kind && state.selected.index === index;
      const cls = `${kind === "zones" ? "zone" : "mask"}${selected ? " selected" : ""}`;
      const tag = item.polygon.length >= 3 ? "polygon" : "polyline";
      const attributes = { class: cls, points: pixels(item.polygon), "data-kind": kind, "data-index": index };
      attributes[kind === "zones" ? "data-zone" : "data-mask"] = item.id;
      layers.push(svgEl(tag, attributes));
      if (item.polygon.length) {
        const [x, y] = item.polygon[0];
        const label = kind === "zones" ? (item.name ? `${item.name} (${item.id})` : item.id) : item.id;
        layers.push(svgEl("text", { class: `${cls} label`, x: x * width + 8 * scale,
                                    y: y * height + 20 * scale, "font-size": 13 * scale }, label));
      }
    });
  }
  const current = shape();
  if (current) {
    current.polygon.forEach(([x, y], index) => {
      layers.push(svgEl("circle", { class: `handle${index === state.point ? " active" : ""}`,
                                    cx: x * width, cy: y * height, r: 7 * scale,
                                    "stroke-width": 2 * scale, "data-point": index }));
    });
  }
  svg.replaceChildren(...layers);
  svg.classList.toggle("drawing", Boolean(current));
}

function field(labelText, input, errorsHere) {
  const label = document.createElement("label");
  label.className = "field";
  const caption = document.createElement("span");
  caption.textContent = labelText;
  label.append(caption, input);
  for (const issue of errorsHere) {
    const error = document.createElement("span");
    error.className = "field-error";
    error.textContent = issue.message;
    label.append(error);
    input.setAttribute("aria-invalid", "true");
  }
  return label;
}

function input(kind, index, name, value, type = "text") {
  const element = document.createElement("input");
  element.type = type;
  element.className = `field-${name}`;
  element.value = value;
  if (type === "number") element.step = "1";
  element.addEventListener("input", () => {
    const item = state[kind][index];
    item[name] = type === "number" ? element.value : element.value.trim();
    if (name === "id") { // the card's title and count follow the new id
      const card = element.closest(".shape");
      card.querySelector(".pick").textContent = `${item.id} · ${t().points(item.polygon.length)}`;
      const count = card.querySelector(".count");
      if (count) count.dataset.zone = item.id;
      renderCounts();
    }
    renderFrame();
    renderDirty();
  });
  element.addEventListener("focus", () => {
    if (state.selected?.kind !== kind || state.selected.index !== index) {
      state.selected = { kind, index };
      state.point = null;
      renderFrame();
      markSelected();
      renderHint();
    }
  });
  return element;
}

function card(kind, item, index) {
  const li = document.createElement("li");
  li.className = "shape";
  li.dataset.kind = kind;
  li.dataset.index = String(index);
  const mine = state.errors.filter((e) => e.kind === kind && e.index === index);
  const at = (name) => mine.filter((e) => e.field === name);
  const head = document.createElement("div");
  head.className = "shape-head";
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "pick";
  pick.textContent = `${item.id} · ${t().points(item.polygon.length)}`;
  pick.addEventListener("click", () => select(kind, index));
  head.append(pick);
  if (kind === "zones") {
    const count = document.createElement("span");
    count.className = "count";
    count.dataset.zone = item.id;
    head.append(count);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove";
  remove.textContent = kind === "zones" ? t().removeZone : t().removeMask;
  remove.addEventListener("click", () => removeShape(kind, index));
  head.append(remove);
  li.append(head);

  const fields = document.createElement("div");
  fields.className = "fields";
  fields.append(field(t().id, input(kind, index, "id", item.id), at("id")));
  if (kind === "zones") {
    fields.append(field(t().name, input(kind, index, "name", item.name), at("name")));
    const role = document.createElement("select");
    role.className = "field-role";
    for (const value of ROLES) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = t().roles[value];
      role.append(option);
    }
    role.value = item.role;
    role.addEventListener("change", () => {
      state.zones[index].role = role.value;
      renderDirty();
    });
    fields.append(field(t().role, role, at("role")));
    fields.append(field(t().priority, input(kind, index, "priority", String(item.priority), "number"),
                        at("priority")));
  } else {
    fields.append(field(t().reason, input(kind, index, "reason", item.reason), at("reason")));
  }
  li.append(fields);
  const rest = mine.filter((e) => !["id", "name", "role", "priority", "reason"].includes(e.field));
  for (const issue of rest) {
    const error = document.createElement("p");
    error.className = "field-error";
    error.dataset.field = issue.field ?? "";
    error.textContent = issue.field ? `${issue.field}: ${issue.message}` : issue.message;
    li.append(error);
  }
  if (mine.length) li.classList.add("invalid");
  return li;
}

function markSelected() {
  for (const li of document.querySelectorAll(".shape")) {
    const on = state.selected?.kind === li.dataset.kind && state.selected.index === Number(li.dataset.index);
    li.classList.toggle("selected", on);
  }
}

function renderList() {
  $("zones").replaceChildren(...state.zones.map((z, i) => card("zones", z, i)));
  $("masks").replaceChildren(...state.ignore.map((m, i) => card("ignore", m, i)));
  const general = state.errors.filter((e) => e.kind === null || !shape({ kind: e.kind, index: e.index }));
  $("errors").replaceChildren(
    ...general.map((e) => {
      const li = document.createElement("li");
      li.textContent = e.path ? `${e.path}: ${e.message}` : e.message;
      return li;
    }),
  );
  $("errors").hidden = general.length === 0;
  markSelected();
  renderCounts();
}

function renderCounts() {
  const saved = new Set((state.saved?.zones || []).map((z) => z.id));
  for (const span of document.querySelectorAll(".count[data-zone]")) {
    const id = span.dataset.zone;
    let text;
    let kind;
    if (!saved.has(id)) {
      [text, kind] = [t().unsaved, "unsaved"];
    } else if (!state.counts.has(id) || state.counts.get(id) === null) {
      [text, kind] = [t().unknown, "unknown"];
    } else {
      [text, kind] = [t().people(Number(state.counts.get(id).toFixed(1))), "known"];
    }
    span.textContent = `${t().now}: ${text}`;
    span.dataset.state = kind;
  }
}

function renderHint() {
  const current = shape();
  $("hint").textContent = current ? t().drawing(current.id) : t().nothingSelected;
  $("delete-point").disabled = !current || state.point === null;
}

function renderDirty() {
  const changed = dirty();
  $("dirty").textContent = changed ? t().dirty : t().clean;
  $("dirty").dataset.dirty = changed ? "1" : "0";
}

function renderResult() {
  const box = $("result");
  box.replaceChildren();
  const result = state.result;
  box.hidden = !result;
  if (!result) return;
  box.dataset.kind = result.kind;
  const text = { saving: t().saving, saved: t().saved, invalid: t().invalid, conflict: t().conflict };
  box.append(text[result.kind] ?? `${t().failed}: ${result.detail}`);
  if (result.kind === "conflict") {
    const again = document.createElement("button");
    again.type = "button";
    again.id = "reload-theirs";
    again.textContent = t().reloadTheirs;
    again.addEventListener("click", reload);
    box.append(" ", again);
  }
}

function renderBackdropNote() {
  const note = $("backdrop-note");
  const why = state.backdrop;
  note.hidden = !why;
  note.dataset.kind = why?.key ?? "";
  if (why) note.textContent = why.key === "snapshotsOff" ? t().snapshotsOff : t().noPicture(why.detail);
}

function renderAll() {
  renderFrame();
  renderList();
  renderHint();
  renderDirty();
  renderResult();
  renderBackdropNote();
}

function renderHeader() {
  applyStatic(state.lang);
  if (state.who) $("me").textContent = t().who(state.who.id, t().roleNames[state.who.role] ?? state.who.role);
}

// ---- start ---------------------------------------------------------------------------------

async function logout() {
  await fetch("/v1/session", { method: "DELETE", credentials: "same-origin", headers: { "X-Lobbywatch-App": "1" } });
  location.replace("/login");
}

function wire() {
  const svg = $("frame");
  svg.addEventListener("click", onFrameClick);
  svg.addEventListener("pointerdown", onPointerDown);
  svg.addEventListener("pointermove", onPointerMove);
  svg.addEventListener("pointerup", onPointerUp);
  svg.addEventListener("pointercancel", onPointerUp);
  svg.addEventListener("contextmenu", onContextMenu);
  $("new-zone").addEventListener("click", () => addShape("zones"));
  $("new-mask").addEventListener("click", () => addShape("ignore"));
  $("delete-point").addEventListener("click", () => removePoint());
  $("save").addEventListener("click", save);
  $("reload").addEventListener("click", () => {
    if (!dirty() || confirm(t().leave)) reload();
  });
  $("camera").addEventListener("change", (event) => {
    if (dirty() && !confirm(t().leave)) {
      event.target.value = state.camera;
      return;
    }
    state.camera = event.target.value;
    reload();
  });
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "en" ? "zh-CN" : "en";
    choose(state.lang);
    renderHeader();
    if (state.saved) renderAll();
  });
  $("logout").addEventListener("click", () => logout().catch(showError));
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
    if (!typing && (event.key === "Delete" || event.key === "Backspace") && state.point !== null) {
      event.preventDefault();
      removePoint();
    } else if (!typing && event.key === "Escape") {
      select(null);
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (state.saved && dirty()) event.preventDefault(); // the browser asks before dropping them
  });
  window.addEventListener("resize", () => {
    if (state.saved) renderFrame();
  });
}

async function start() {
  state.lang = language(document.documentElement.dataset.siteLanguage);
  renderHeader();
  wire();
  state.who = await getJson("/v1/session");
  if (!localStorage.getItem("lobbywatch.lang")) state.lang = language(state.who.language);
  renderHeader();
  await loadCameras();
  await load();
  document.documentElement.dataset.ready = "1";
  refreshCounts().catch(showError);
  setInterval(() => refreshCounts().catch(showError), COUNTS_EVERY_MS);
}

window.lobbywatchEditor = state;
start().catch(showError);
