// Charts drawn as SVG by the page itself (no chart library, no CDN): a line chart with gaps
// where a value is unknown (null is never drawn as 0), and a weekday x hour heat map.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, anchor = "middle") {
  const t = el("text", { x, y, "text-anchor": anchor }, parent);
  t.textContent = content;
  return t;
}

export function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

/** A nice round step for about `ticks` gridlines up to `max`. */
function step(max, ticks) {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
}

/**
 * series: [{values: [number|null], color, dash, label}], all of length n (x = index).
 * xLabels: [[index, text]]. empty: what to say when no value is known.
 */
export function lineChart(svg, series, xLabels, empty) {
  clear(svg);
  const [W, H] = [800, 240];
  const pad = { l: 40, r: 24, t: 10, b: 26 };
  const n = Math.max(1, ...series.map((s) => s.values.length));
  const known = series.flatMap((s) => s.values.filter((v) => v !== null && Number.isFinite(v)));
  const max = Math.max(1, ...known);
  const dy = step(max, 4);
  const top = Math.ceil(max / dy) * dy;
  const x = (i) => pad.l + (n <= 1 ? 0 : (i * (W - pad.l - pad.r)) / (n - 1));
  const y = (v) => H - pad.b - (v / top) * (H - pad.t - pad.b);
  for (let v = 0; v <= top + 1e-9; v += dy) {
    el("line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), stroke: "#e3e6ea" }, svg);
    text(svg, pad.l - 6, y(v) + 4, String(Math.round(v * 10) / 10), "end");
  }
  for (const [i, label] of xLabels) text(svg, x(i), H - 8, label);
  if (!known.length) {
    text(svg, W / 2, H / 2, empty);
    return;
  }
  for (const s of series) {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    const path = el("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 2 }, svg);
    if (s.dash) path.setAttribute("stroke-dasharray", s.dash);
    path.dataset.series = s.label;
  }
}

/** cells: 7 rows (Monday first) x 24 hours of numbers or null (not seen). */
export function heatMap(svg, cells, rowLabels, notSeen) {
  clear(svg);
  const pad = { l: 44, t: 6, b: 22 };
  const cw = (800 - pad.l - 4) / 24;
  const ch = (230 - pad.t - pad.b) / 7;
  const max = Math.max(1, ...cells.flat().filter((v) => v !== null));
  cells.forEach((row, r) => {
    text(svg, pad.l - 6, pad.t + r * ch + ch / 2 + 4, rowLabels[r], "end");
    row.forEach((v, h) => {
      const rect = el("rect", {
        x: pad.l + h * cw + 1, y: pad.t + r * ch + 1, width: cw - 2, height: ch - 2, rx: 2,
        fill: v === null ? "#f3f5f8" : `rgba(11, 61, 145, ${(0.08 + 0.92 * (v / max)).toFixed(3)})`,
      }, svg);
      const title = el("title", {}, rect);
      title.textContent = `${rowLabels[r]} ${String(h).padStart(2, "0")}:00 ${v === null ? notSeen : v.toFixed(1)}`;
    });
  });
  for (let h = 0; h < 24; h += 3) text(svg, pad.l + h * cw + cw / 2, 230 - 6, `${String(h).padStart(2, "0")}`);
}
