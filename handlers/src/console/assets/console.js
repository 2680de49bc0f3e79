// socwire console: live broker counters, clickable story arrows, live training curves.
// Everything from the server is placed with textContent or as numbers: never as markup.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// Brokers page: every [data-k] cell is a live count; poll once a second.
function liveCounters() {
  const cells = document.querySelectorAll("[data-k]");
  if (!cells.length) return;
  const status = document.getElementById("live");
  async function tick() {
    try {
      const r = await fetch("/console/api/counters", { headers: { accept: "application/json" } });
      if (!r.ok) throw new Error(r.status);
      const counts = await r.json();
      document.querySelectorAll("[data-k]").forEach((c) => {
        const v = counts[c.dataset.k];
        if (v === undefined) return;
        const text = String(v);
        if (c.textContent !== text) {
          c.textContent = text;
          c.classList.add("changed");
          setTimeout(() => c.classList.remove("changed"), 900);
        }
      });
      if (status) status.textContent = "Last update " + new Date().toLocaleTimeString() + ".";
    } catch (e) {
      if (status) status.textContent = "Live update failed (" + e.message + "); retrying.";
    }
  }
  tick();
  setInterval(tick, 1000);
}

// Story page: selecting an arrow lists its alerts.
function storyEdges() {
  const out = document.getElementById("edge-alerts");
  if (!out) return;
  const row = out.dataset.row;
  async function show(edge) {
    document.querySelectorAll("g.edge.selected").forEach((e) => e.classList.remove("selected"));
    edge.classList.add("selected");
    const src = edge.dataset.src, dst = edge.dataset.dst;
    out.replaceChildren(el("h2", "Alerts on " + src + " → " + dst), el("p", "Loading…", "muted"));
    const q = new URLSearchParams({ src: src, dst: dst });
    try {
      const r = await fetch("/console/api/stories/" + encodeURIComponent(row) + "/edge?" + q);
      if (!r.ok) throw new Error("HTTP " + r.status);
      const a = await r.json();
      const note = el("p", a.found + " alert(s) found among the " + a.rowListsIds +
        " alert id(s) the row lists (" + a.rowAlerts + " in the row), from " + a.eventsRead +
        " retained event(s) of the alerts hub.", "muted");
      const table = el("table");
      table.id = "edge-alert-table";
      const head = table.createTHead().insertRow();
      ["Time", "Rule", "Severity", "Source", "Destination", "Port", "Protocol", "Tactic", "Alert id"].forEach((h) => {
        const th = el("th", h);
        th.scope = "col";
        head.appendChild(th);
      });
      const body = table.createTBody();
      a.alerts.forEach((x) => {
        const tr = body.insertRow();
        [x.time, x.name, x.severity, x.src, x.dst, x.port, x.protocol, x.tactic, x.id].forEach((v) => tr.appendChild(el("td", v)));
      });
      out.replaceChildren(el("h2", "Alerts on " + src + " → " + dst), note, table);
    } catch (e) {
      out.replaceChildren(el("h2", "Alerts on " + src + " → " + dst), el("p", "Could not load them: " + e.message, "error"));
    }
  }
  document.querySelectorAll("g.edge").forEach((edge) => {
    edge.addEventListener("click", () => show(edge));
    edge.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        show(edge);
      }
    });
  });
}

// GPU page: draw each job's curves; redraw every second while the job runs.
const SVGNS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function drawCurves(svg, points) {
  const W = 720, H = 260, L = 50, R = 50, T = 14, B = 30;
  svg.replaceChildren();
  const steps = points.filter((p) => p.kind === "step" && p.loss !== null && p.loss !== undefined);
  const evals = points.filter((p) => p.kind === "eval");
  if (!steps.length && !evals.length) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#4b5563" }, "No telemetry yet"));
    return;
  }
  const all = steps.concat(evals);
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const losses = all.map((p) => p.loss).filter((v) => typeof v === "number");
  const maxLoss = Math.max(1e-9, ...losses);
  const x = (s) => L + (W - L - R) * s / maxStep;
  const y = (v) => H - B - (H - T - B) * v / maxLoss;
  const yAp = (v) => H - B - (H - T - B) * v;
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#6b7280" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#6b7280" }));
  svg.appendChild(svgEl("line", { x1: W - R, y1: T, x2: W - R, y2: H - B, stroke: "#6b7280" }));
  svg.appendChild(svgEl("text", { x: (W) / 2, y: H - 6, "text-anchor": "middle", fill: "#1a1a1a", "font-size": 12 }, "step (last " + maxStep + ")"));
  svg.appendChild(svgEl("text", { x: 6, y: T + 10, fill: "#1d4ed8", "font-size": 12 }, maxLoss.toFixed(3)));
  svg.appendChild(svgEl("text", { x: W - R + 4, y: T + 10, fill: "#047857", "font-size": 12 }, "AP 1"));
  svg.appendChild(svgEl("text", { x: W - R + 4, y: H - B, fill: "#047857", "font-size": 12 }, "0"));
  svg.appendChild(svgEl("text", { x: L - 6, y: H - B, fill: "#1d4ed8", "font-size": 12, "text-anchor": "end" }, "0"));
  const line = (pts, colour, cls) => {
    if (!pts.length) return;
    svg.appendChild(svgEl("polyline", {
      points: pts.map((p) => x(p.step).toFixed(1) + "," + y(p.loss).toFixed(1)).join(" "),
      fill: "none", stroke: colour, "stroke-width": 2, class: cls,
    }));
  };
  line(steps, "#1d4ed8", "loss");
  line(evals.filter((p) => typeof p.loss === "number"), "#b45309", "eval-loss");
  evals.filter((p) => typeof p.averagePrecision === "number").forEach((p) => {
    const c = svgEl("circle", { cx: x(p.step).toFixed(1), cy: yAp(p.averagePrecision).toFixed(1), r: 4, fill: "#047857", class: "ap" });
    c.appendChild(svgEl("title", {}, "step " + p.step + ": AP " + p.averagePrecision.toFixed(3)));
    svg.appendChild(c);
  });
}

function liveCurves() {
  document.querySelectorAll(".curves[data-job]").forEach((box) => {
    const svg = box.querySelector("svg");
    const job = box.dataset.job;
    const article = box.closest("article");
    async function tick() {
      try {
        const r = await fetch("/console/api/gpu/jobs/" + encodeURIComponent(job) + "/metrics");
        if (!r.ok) throw new Error("HTTP " + r.status);
        const m = await r.json();
        drawCurves(svg, m.points);
        svg.dataset.points = String(m.points.length);
        const status = article && article.querySelector("[data-job-status]");
        if (status && m.status) status.textContent = m.status;
        if (["Completed", "Failed", "Canceled", "NotResponding"].indexOf(m.status) < 0) setTimeout(tick, 1000);
      } catch (e) {
        setTimeout(tick, 2000);
      }
    }
    tick();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveCounters();
  storyEdges();
  liveCurves();
});
