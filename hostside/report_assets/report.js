// report.html's script: renders the run's data block (JSON, written by hostside/report_html.py)
// into charts, cards and tables. Plain JavaScript, no library, nothing fetched: the page must
// open offline from the run directory.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const byId = new Map(data.candidates.map((c) => [c.id, c]));
  const modelById = new Map(data.models.map((m) => [m.id, m]));
  const stateKey = "hostside-report:" + location.pathname;
  const SVG = "http://www.w3.org/2000/svg";
  // The test split enters no choice: only the re-trained front has a test accuracy, and says so.
  const TEST_LABEL = "test accuracy (not used in any choice)";

  // ---- small helpers -------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v; else if (k === "cls") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function num(v) { return typeof v === "number" && isFinite(v); }
  function fmt(v, kind) {
    if (!num(v)) return "\u2013";
    if (kind === "acc") return v.toFixed(3);
    if (kind === "int") return Math.round(v).toLocaleString("en-US");
    if (kind === "s") return v.toFixed(1);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }
  const KIND = { accuracy: "acc", val_accuracy: "acc", params: "int", macs: "int", activation_bytes: "int",
                 predicted_latency_ms: "ms", latency_ms: "ms", energy_mj: "ms", train_seconds: "s", generation: "int" };
  function idLink(id) {
    const a = el("a", { cls: "id", href: "#row-" + id, "data-goto": id, text: "#" + id });
    a.addEventListener("click", (e) => { e.preventDefault(); gotoRow(id); });
    return a;
  }

  // ---- saved view state (kept across the live reloads) -----------------------------------
  let saved = {};
  try { saved = JSON.parse(sessionStorage.getItem(stateKey) || "{}"); } catch (e) { saved = {}; }
  const statuses = Array.from(new Set(data.candidates.map((c) => c.status)));
  const view = {
    sortKey: saved.sortKey || "id", sortDir: saved.sortDir || 1, text: saved.text || "",
    hidden: new Set(saved.hidden || []), paused: !!saved.paused, zoom: !!saved.zoom,
  };
  function saveView() {
    try {
      sessionStorage.setItem(stateKey, JSON.stringify({ sortKey: view.sortKey, sortDir: view.sortDir, text: view.text,
        hidden: Array.from(view.hidden), paused: view.paused, zoom: view.zoom, scrollY: window.scrollY }));
    } catch (e) { /* storage may be off for file:// pages; the view then just resets */ }
  }

  // ---- header --------------------------------------------------------------------------
  function header() {
    const r = data.run;
    document.getElementById("title").textContent = "Search run " + r.name;
    document.getElementById("subtitle").textContent = "Strategy " + r.strategy + " over the " + r.space +
      " space on " + r.dataset + ", board " + r.board + ".";
    const chips = document.getElementById("chips");
    const chip = (k, v, cls) => chips.append(el("span", { cls: "chip " + (cls || "") }, [el("b", { text: k + " " }), v]));
    chip("status", r.status, "status-" + r.status);
    chip("objectives", r.objectives.join(", "));
    const budgets = Object.entries(r.budgets);
    chip("budgets", budgets.length ? budgets.map(([k, v]) => k + " \u2264 " + v).join(", ").replace(/accuracy \u2264/g, "accuracy \u2265") : "none");
    chip("candidates", Object.entries(r.counts).filter(([, v]) => v).map(([k, v]) => v + " " + k).join(", ") || "none yet");
    const best = modelById.get(data.best_tradeoff);
    if (best) {
      chip("best trade-off", "#" + best.id + ": " + TEST_LABEL + " " + fmt(best.test_accuracy, "acc") + ", " + fmt(best.latency_ms) + " ms, " +
           fmt(best.params, "int") + " params", "best");
    }
    if (r.live) {
      const live = document.getElementById("live");
      live.hidden = false;
      const button = el("button", { type: "button", id: "pause-refresh" });
      const label = el("span");
      const update = () => {
        // A killed run leaves its last page behind, still "live": say how old the figures are.
        const age = num(r.generated_at_s) ? Math.max(0, Date.now() / 1000 - r.generated_at_s) : null;
        const since = age === null ? "" : age < 120 ? " Last written " + Math.round(age) + " s ago."
          : " Last written " + Math.round(age / 60) + " min ago: if the run stopped, `hostside runs list` says so.";
        label.textContent = (view.paused ? "Run in progress: automatic reload paused."
          : "Run in progress: this page reloads every " + r.refresh_s + " s.") + since;
        button.textContent = view.paused ? "resume reloading" : "pause reloading";
      };
      button.addEventListener("click", () => { view.paused = !view.paused; saveView(); update(); });
      update();
      live.append(label, button);
      setTimeout(function reload() {
        if (view.paused) { setTimeout(reload, r.refresh_s * 1000); return; }
        saveView();
        location.reload();
      }, r.refresh_s * 1000);
    }
    document.getElementById("footer").textContent = "Written " + r.generated_at + " by hostside from " +
      r.name + "/journal.sqlite. Self-contained: open it from the run directory, no network needed.";
  }

  // ---- charts --------------------------------------------------------------------------
  function ticks(lo, hi, log) {
    if (log) {
      const out = [];
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
        for (const m of [1, 2, 5]) { const t = m * Math.pow(10, e); if (t >= lo && t <= hi) out.push(t); }
      }
      return out.length > 9 ? out.filter((t) => Math.abs(Math.log10(t) % 1) < 1e-9) : out;
    }
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / 6, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= 7);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
    return out;
  }
  function scale(values, extraLo, log, a, b) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (log && lo <= 0) log = false;
    if (!log && hi > 20 * lo && lo > 0 && extraLo) log = true;
    if (log) { lo /= 1.15; hi *= 1.15; } else { const pad = 0.06 * (hi - lo || Math.abs(hi) || 1); lo -= pad; hi += pad; }
    const f = log ? (v) => a + (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) * (b - a)
                  : (v) => a + (v - lo) / (hi - lo) * (b - a);
    f.lo = lo; f.hi = hi; f.log = log;
    return f;
  }
  function rejectedX(c, xName) {
    const key = xName === "latency_ms" ? "predicted_latency_ms" : data.metrics[xName].key;
    return c[key];
  }

  function chart(xName, yName) {
    const mx = data.metrics[xName], my = data.metrics[yName];
    const single = data.charts.length === 1;
    const W = single ? 860 : 620, H = single ? 460 : 400, L = 66, R = 18, T = 14, B = 72, strip = H - B + 16;
    let measured = data.candidates.filter((c) => c.status === "measured" && num(c[mx.key]) && num(c[my.key]));
    const front = measured.filter((c) => c.front).sort((p, q) => p[mx.key] - q[mx.key]);
    // Models re-trained on train+val have no validation figure: they stand at their test accuracy.
    const fy = my.key === "val_accuracy" && data.run.final_data === "train+val" ? "test_accuracy" : my.key;
    const finals = data.models.filter((m) => num(m[mx.key]) && num(m[fy]));
    let rejected = data.candidates.filter((c) => c.status === "rejected" && num(rejectedX(c, xName)));
    if (view.zoom && front.length + finals.length > 1) {
      // Zoomed: the axes span the front and the re-trained models; what lies outside is left out.
      const inner = front.concat(finals);
      const span = (key) => [Math.min(...inner.map((c) => c[key])), Math.max(...inner.map((c) => c[key]))];
      const [x0, x1] = span(mx.key), [y0, y1] = span(my.key);
      const inside = (v, lo, hi) => v >= lo - 0.05 * (hi - lo) && v <= hi + 0.05 * (hi - lo);
      measured = measured.filter((c) => c.front || (inside(c[mx.key], x0, x1) && inside(c[my.key], y0, y1)));
      rejected = rejected.filter((c) => inside(rejectedX(c, xName), x0, x1));
    }
    const box = el("div", { cls: "chart", "data-x": xName, "data-y": yName });
    if (!measured.length && !finals.length && !rejected.length) {
      box.append(el("p", { cls: "empty", text: "No candidate has " + mx.label + " and " + my.label + " yet." }));
      return box;
    }
    const budgetX = data.run.budgets[xName], budgetY = data.run.budgets[yName];  // an objective and its budget share a name
    const xs = measured.map((c) => c[mx.key]).concat(finals.map((m) => m[mx.key]), rejected.map((c) => rejectedX(c, xName)));
    if (num(budgetX) && !view.zoom) xs.push(budgetX);
    const ys = measured.map((c) => c[my.key]).concat(finals.map((m) => m[fy]));
    if (num(budgetY) && !view.zoom) ys.push(budgetY);
    if (!ys.length) ys.push(0, 1);
    const sx = scale(xs, true, mx.log, L, W - R), sy = scale(ys, false, my.log, H - B, T);
    const root = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                              "aria-label": my.label + " against " + mx.label });
    const grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
    for (const t of ticks(sx.lo, sx.hi, sx.log)) {
      const x = sx(t);
      grid.append(svg("line", { x1: x, x2: x, y1: T, y2: H - B }));
      const label = svg("text", { x: x, y: H - B + 34, "text-anchor": "middle" }); label.textContent = fmt(t); axis.append(label);
    }
    for (const t of ticks(sy.lo, sy.hi, sy.log)) {
      const y = sy(t);
      grid.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y }));
      const label = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }); label.textContent = fmt(t); axis.append(label);
    }
    root.append(grid, svg("rect", { class: "frame", x: L, y: T, width: W - R - L, height: H - B - T }), axis);
    const xl = svg("text", { class: "axis-label", x: (L + W - R) / 2, y: H - 12, "text-anchor": "middle" });
    xl.textContent = mx.label + (sx.log ? " (log)" : ""); root.append(xl);
    const yl = svg("text", { class: "axis-label", x: 14, y: (T + H - B) / 2, "text-anchor": "middle",
                             transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" });
    yl.textContent = my.label + (sy.log ? " (log)" : ""); root.append(yl);
    const inX = (v) => v >= sx.lo && v <= sx.hi, inY = (v) => v >= Math.min(sy.lo, sy.hi) && v <= Math.max(sy.lo, sy.hi);
    if (num(budgetX) && inX(budgetX)) {
      root.append(svg("line", { class: "budget", x1: sx(budgetX), x2: sx(budgetX), y1: T, y2: strip + 6 }));
      const t = svg("text", { class: "budget-label", x: sx(budgetX) + 4, y: T + 12 }); t.textContent = "budget"; root.append(t);
    }
    if (num(budgetY) && inY(budgetY)) root.append(svg("line", { class: "budget", x1: L, x2: W - R, y1: sy(budgetY), y2: sy(budgetY) }));
    const marks = svg("g", { class: "marks" });
    const links = svg("g", { class: "parent-links" });
    const where = new Map();   // candidate id -> its search point, for the lines to its parents
    const showParents = (id) => {
      const child = where.get(id), c = byId.get(id);
      if (!child || !c) return;
      for (const parent of c.parents) {
        const p = where.get(parent);
        if (p) links.append(svg("line", { class: "parent-link", x1: p[0], y1: p[1], x2: child[0], y2: child[1], "data-parent": parent }));
      }
    };
    const hook = (node, id, which) => {
      node.setAttribute("data-id", id);
      node.addEventListener("mouseenter", (e) => { showTip(e, id, which); hot(id, true); showParents(id); });
      node.addEventListener("mousemove", moveTip);
      node.addEventListener("mouseleave", () => { hideTip(); hot(id, false); links.replaceChildren(); });
      node.addEventListener("click", () => gotoRow(id));
      return node;
    };
    for (const c of measured) where.set(c.id, [sx(c[mx.key]), sy(c[my.key])]);
    for (const c of measured.filter((c) => !c.front)) {
      marks.append(hook(svg("circle", { class: "pt", cx: sx(c[mx.key]), cy: sy(c[my.key]), r: 4.2 }), c.id, "search"));
    }
    if (front.length > 1) {
      // A step line: the front as the region it dominates, not a straight interpolation.
      const better = my.key === "accuracy" || my.key === "val_accuracy";
      let d = "";
      front.forEach((c, i) => {
        const x = sx(c[mx.key]), y = sy(c[my.key]);
        d += i === 0 ? "M" + x + "," + y : (better ? "H" + x + "V" + y : "V" + y + "H" + x);
      });
      marks.append(svg("path", { class: "front-line", d: d }));
    }
    for (const c of front) {
      marks.append(hook(svg("circle", { class: "front-pt", cx: sx(c[mx.key]), cy: sy(c[my.key]), r: 5.5 }), c.id, "search"));
    }
    for (const m of finals) {
      const x = sx(m[mx.key]), y = sy(m[fy]), pts = [];
      for (let k = 0; k < 10; k++) {
        const rad = k % 2 ? 3.6 : 8.5, ang = -Math.PI / 2 + k * Math.PI / 5;
        pts.push((x + rad * Math.cos(ang)).toFixed(1) + "," + (y + rad * Math.sin(ang)).toFixed(1));
      }
      marks.append(hook(svg("polygon", { class: "final-pt", points: pts.join(" ") }), m.id, "final"));
    }
    for (const c of rejected) {
      const x = sx(rejectedX(c, xName));
      const g = hook(svg("path", { class: "reject-pt", d: "M" + (x - 4) + "," + (strip - 4) + "l8,8m0,-8l-8,8" }), c.id, "rejected");
      marks.append(g);
    }
    root.append(links, marks);
    box.append(root);
    const legend = el("div", { cls: "legend" });
    const item = (color, text, shape) => legend.append(el("span", {}, [el("i", { style: "background:" + color +
      (shape ? ";border-radius:0;transform:rotate(45deg) scale(.8)" : "") }), text]));
    item("var(--grey)", measured.length + " measured");
    if (front.length) item("var(--front)", front.length + " on the search front");
    if (finals.length) item("var(--final)", finals.length + " re-trained (" + data.run.final_epochs + " epochs" +
      (fy === my.key ? "" : " on train+val, " + TEST_LABEL) + ")", true);
    if (rejected.length) item("var(--reject)", rejected.length + " rejected before training" + (xName === "latency_ms" ? " (predicted)" : ""), true);
    box.append(legend);
    return box;
  }

  const tip = document.getElementById("tooltip");
  function showTip(e, id, which) {
    const c = byId.get(id), m = modelById.get(id);
    const src = which === "final" && m ? m : c;
    const unit = (v, u) => num(v) ? fmt(v) + " " + u : "not measured";
    const rows = [["validation accuracy", fmt(src.val_accuracy, "acc")]];
    if (src === m) rows.push([TEST_LABEL, fmt(m.test_accuracy, "acc")]);
    rows.push(["params", fmt(c.params, "int")], ["MACs", fmt(c.macs, "int")],
              ["predicted latency", unit(c.predicted_latency_ms, "ms")], ["measured latency", unit(src.latency_ms, "ms")],
              ["energy", unit(src.energy_mj, "mJ")]);
    if (c.inherited_fraction > 0) rows.push(["inherited", Math.round(100 * c.inherited_fraction) + "% of the weights"]);
    for (const [k, v] of Object.entries(c.attrs || {})) rows.push([k, typeof v === "number" ? fmt(v) : JSON.stringify(v)]);
    if (which === "rejected") rows.push(["rejected", c.reason || ""]);
    const head = "#" + id + (which === "final" ? " \u2013 re-trained front model" : which === "rejected" ? " \u2013 rejected" :
                 c.front ? " \u2013 search front" : "") + (c.operator ? " (" + c.operator + ")" : "");
    tip.replaceChildren(el("div", { cls: "tt-head", text: head }),
      el("table", {}, rows.map(([k, v]) => el("tr", {}, [el("td", { text: k }), el("td", { text: v })]))));
    tip.hidden = false;
    moveTip(e);
  }
  function moveTip(e) {
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = e.clientX + 14, y = e.clientY + 14;
    if (x + w > window.innerWidth - 4) x = e.clientX - w - 14;
    if (y + h > window.innerHeight - 4) y = e.clientY - h - 14;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }
  function hot(id, on) {
    for (const node of document.querySelectorAll('#charts [data-id="' + id + '"]')) node.classList.toggle("hot", on);
  }

  function charts() {
    const holder = document.getElementById("charts");
    const draw = () => {
      holder.replaceChildren();
      if (!data.charts.length) holder.append(el("p", { cls: "empty", text: "No objective pair to plot." }));
      for (const pair of data.charts) holder.append(chart(pair.x, pair.y));
    };
    const zoom = el("input", { type: "checkbox", id: "zoom-front" });
    zoom.checked = view.zoom;
    zoom.addEventListener("change", () => { view.zoom = zoom.checked; saveView(); draw(); });
    document.getElementById("chart-controls").append(el("label", {}, [zoom, " zoom to the front"]));
    draw();
    if (data.nothing_meets_budgets) {
      const box = document.getElementById("misses");
      box.hidden = false;
      box.append(el("p", {}, [el("b", { text: "No candidate meets the budgets. " }), "Those that miss them by least:"]));
      box.append(el("ul", {}, data.nearest_misses.map((m) => el("li", {}, [idLink(m.id), " misses " +
        Object.entries(m.missed).map(([k, v]) => k + " " + fmt(v.value) + " (limit " + fmt(v.limit) + ")").join(", ")]))));
    }
  }

  // ---- front models ----------------------------------------------------------------------
  function models() {
    const holder = document.getElementById("model-cards");
    if (!data.models.length) {
      holder.append(el("p", { cls: "empty", text: data.run.live ? "The front is re-trained and measured when the search ends."
        : "No front model was measured." }));
      return;
    }
    for (const m of data.models) {
      const title = el("h3", {}, [idLink(m.id)]);
      if (m.best_tradeoff) title.append(el("span", { cls: "badge", text: "best trade-off" }));
      if (m.meets_budgets === false) title.append(el("span", { cls: "badge miss", text: "misses a budget" }));
      if (m.onnx_problem) title.append(el("span", { cls: "badge miss", text: "ONNX file " + m.onnx_problem }));
      const kv = el("dl", { cls: "kv" });
      const add = (k, v) => kv.append(el("dt", { text: k }), el("dd", {}, [v]));
      add(TEST_LABEL, fmt(m.test_accuracy, "acc"));
      add("validation accuracy", fmt(m.val_accuracy, "acc") + " (search: " + fmt(m.search_val_accuracy, "acc") + ")");
      for (const [k, v] of Object.entries(m.summary || {})) add(k, typeof v === "string" ? v : JSON.stringify(v));
      if (m.multiplier) add("multiplier", m.multiplier + (m.trained_with_truncated_table ?
        " (error rank above 16: trained with the rank-16 approximation of its table, evaluated exactly)" : ""));
      add("params", fmt(m.params, "int"));
      add("MACs", fmt(m.macs, "int"));
      add("latency", fmt(m.latency_ms) + " ms measured, " + fmt(m.predicted_latency_ms) + " ms predicted");
      add("energy", num(m.energy_mj) ? fmt(m.energy_mj) + " mJ" : "not measured");
      add("ONNX", m.onnx ? el("a", { href: m.onnx, text: m.onnx, download: "" }) : "\u2013");
      if (m.parents && m.parents.length) {
        const p = el("span"); m.parents.forEach((id, i) => { if (i) p.append(", "); p.append(idLink(id)); });
        p.append(m.operator ? " (" + m.operator + ")" : ""); add("parents", p);
      }
      const card = el("div", { cls: "card" + (m.best_tradeoff ? " best" : ""), "data-model": m.id },
        [title, kv, el("div", { cls: "arch", text: m.arch || "" })]);
      if (m.spec) card.append(el("details", {}, [el("summary", { text: "ArchSpec JSON" }),
        el("pre", { text: JSON.stringify(m.spec, null, 1) })]));
      holder.append(card);
    }
  }

  // ---- candidate table -------------------------------------------------------------------
  const COLUMNS = [
    ["id", "id", "num"], ["generation", "gen", "num"], ["status", "status"], ["operator", "operator"],
    ["parents", "parents"], ["val_accuracy", "val. accuracy", "num"], ["params", "params", "num"], ["macs", "MACs", "num"],
    ["predicted_latency_ms", "predicted ms", "num"], ["latency_ms", "measured ms", "num"], ["energy_mj", "energy mJ", "num"],
    ["train_seconds", "train s", "num"], ["inherited_fraction", "inherited", "num"], ["attrs", "strategy attributes", "wrap"],
    ["reason", "reason (rejected / failed)", "wrap"], ["arch", "layers", "wrap arch-cell"],
  ].filter(([key]) => (key !== "inherited_fraction" && key !== "attrs") ||
                      data.candidates.some((c) => key === "attrs" ? c.attrs && Object.keys(c.attrs).length : c[key] > 0));
  function attrText(attrs) {
    return Object.entries(attrs || {}).map(([k, v]) => k + " " + (typeof v === "number" ? fmt(v) : JSON.stringify(v))).join(", ");
  }
  function cell(c, key, cls) {
    if (key === "id") return el("td", { cls: "num" }, [idLink(c.id)]);
    if (key === "status") return el("td", {}, [el("span", { cls: "st st-" + c.status, text: c.status })]);
    if (key === "parents") {
      const td = el("td");
      c.parents.forEach((id, i) => { if (i) td.append(", "); td.append(idLink(id)); });
      return td;
    }
    if (key === "inherited_fraction") return el("td", { cls: "num", text: num(c[key]) ? Math.round(100 * c[key]) + "%" : "\u2013" });
    if (key === "attrs") return el("td", { cls: cls, text: attrText(c.attrs) });
    if (cls === "num") return el("td", { cls: "num", text: fmt(c[key], KIND[key]) });
    return el("td", { cls: cls || "", text: c[key] === null || c[key] === undefined ? "" : String(c[key]) });
  }
  function compare(key) {
    return (p, q) => {
      const pick = (c) => key === "parents" ? c.parents.join(",") : key === "attrs" ? attrText(c.attrs) : c[key];
      const a = pick(p), b = pick(q);
      const an = a === null || a === undefined || a === "", bn = b === null || b === undefined || b === "";
      if (an || bn) return an && bn ? p.id - q.id : an ? 1 : -1;   // blanks last, whichever direction
      if (typeof a === "number" && typeof b === "number") return view.sortDir * (a - b) || p.id - q.id;
      return view.sortDir * String(a).localeCompare(String(b)) || p.id - q.id;
    };
  }
  function table() {
    const head = document.querySelector("#candidate-table thead"), body = document.querySelector("#candidate-table tbody");
    document.getElementById("candidate-table").className = "data";
    const tr = el("tr");
    for (const [key, label, cls] of COLUMNS) {
      const th = el("th", { cls: cls === "num" ? "num" : "", "data-key": key, text: label, scope: "col" });
      th.addEventListener("click", () => {
        view.sortDir = view.sortKey === key ? -view.sortDir : 1; view.sortKey = key; saveView(); fill();
      });
      tr.append(th);
    }
    head.append(tr);
    const filters = document.getElementById("status-filters");
    for (const s of statuses) {
      const n = data.candidates.filter((c) => c.status === s).length;
      const box = el("input", { type: "checkbox", "data-status": s });
      box.checked = !view.hidden.has(s);
      box.addEventListener("change", () => { if (box.checked) view.hidden.delete(s); else view.hidden.add(s); saveView(); fill(); });
      filters.append(el("label", {}, [box, " ", el("span", { cls: "st st-" + s, text: s }), " " + n]));
    }
    const text = document.getElementById("text-filter");
    text.value = view.text;
    text.addEventListener("input", () => { view.text = text.value; saveView(); fill(); });
    function fill() {
      for (const th of head.querySelectorAll("th")) {
        th.setAttribute("aria-sort", th.dataset.key === view.sortKey ? (view.sortDir > 0 ? "ascending" : "descending") : "none");
      }
      const needle = view.text.trim().toLowerCase();
      const rows = data.candidates.filter((c) => !view.hidden.has(c.status) && (!needle ||
        ["#" + c.id, c.operator, c.reason, c.arch, c.status, attrText(c.attrs)].some((v) => v && String(v).toLowerCase().includes(needle))))
        .sort(compare(view.sortKey));
      body.replaceChildren(...rows.map((c) => el("tr", { id: "row-" + c.id, "data-id": c.id, "data-status": c.status,
        cls: c.front ? "is-front" : "" }, COLUMNS.map(([key, , cls]) => cell(c, key, cls)))));
      document.getElementById("row-count").textContent = rows.length + " of " + data.candidates.length + " candidates shown";
    }
    table.fill = fill;
    fill();
  }
  function gotoRow(id) {
    let row = document.getElementById("row-" + id);
    if (!row) {
      view.hidden.clear(); view.text = "";
      document.getElementById("text-filter").value = "";
      for (const box of document.querySelectorAll("#status-filters input")) box.checked = true;
      saveView();
      table.fill();
      row = document.getElementById("row-" + id);
    }
    if (!row) return;
    row.scrollIntoView({ block: "center" });
    row.classList.add("flash");
    setTimeout(() => row.classList.remove("flash"), 1600);
  }

  // ---- filter ----------------------------------------------------------------------------
  function filterSection() {
    const f = data.filter;
    const stats = el("div", { cls: "stats" });
    const stat = (v, k) => stats.append(el("div", { cls: "stat" }, [el("div", { cls: "v", text: v }), el("div", { cls: "k", text: k })]));
    stat(String(f.rejected), "rejected before training");
    stat(String(f.trained), "trained");
    stat(fmt(f.train_seconds_saved_estimate, "s") + " s", "training time saved (estimate)");
    stat(Math.round(100 * (f.saved_fraction || 0)) + "%", "of the training time without the filter");
    stat(num(f.false_reject_rate) ? f.false_rejects.length + " / " + f.spot_checked : "\u2013",
         "false rejects in spot checks" + (num(f.false_reject_rate) ? " (" + Math.round(100 * f.false_reject_rate) + "%)" : ""));
    document.getElementById("filter-stats").append(stats);
    const holder = document.getElementById("spot-checks");
    if (!f.spot_checks.length) {
      holder.append(el("p", { cls: "empty", text: "No spot check: no latency budget, or nothing rejected on predicted latency alone." }));
      return;
    }
    holder.append(el("p", { cls: "hint", text: "Spot checks: candidates the filter rejected on predicted latency, exported untrained " +
      "and measured on the board (latency does not depend on the weights). One that meets the budget was a false reject." }));
    const t = el("table", { cls: "data", id: "spot-check-table" }, [el("thead", {}, [el("tr", {},
      ["candidate", "predicted ms", "measured ms", "budget ms", "verdict"].map((h) => el("th", { text: h })))])]);
    const limit = data.run.budgets.latency_ms;
    t.append(el("tbody", {}, f.spot_checks.map((s) => el("tr", { "data-id": s.id }, [
      el("td", {}, [idLink(s.id)]), el("td", { cls: "num", text: fmt(s.predicted_latency_ms) }),
      el("td", { cls: "num", text: fmt(s.latency_ms) }), el("td", { cls: "num", text: fmt(limit) }),
      el("td", {}, [s.error ? el("span", { cls: "no", text: "not measured: " + s.error })
        : s.meets_budget ? el("span", { cls: "no", text: "false reject (meets the budget)" })
        : el("span", { cls: "yes", text: "rightly rejected" })])]))));
    holder.append(t);
  }

  // ---- lineage ---------------------------------------------------------------------------
  function lineage() {
    if (!data.lineage.shown) return;
    document.getElementById("lineage").hidden = false;
    document.getElementById("toc-lineage").hidden = false;
    const holder = document.getElementById("lineage-trees");
    const roots = data.models.length ? data.models.map((m) => m.id) : data.candidates.filter((c) => c.front).map((c) => c.id);
    if (!roots.length) { holder.append(el("p", { cls: "empty", text: "No front yet." })); return; }
    function node(id, depth, seen) {
      const c = byId.get(id);
      const li = el("li", { "data-lineage": id }, [idLink(id)]);
      if (!c) return li;
      li.append(el("span", { cls: "op", text: " " + (c.operator || "") + ", gen " + fmt(c.generation, "int") +
        (num(c.val_accuracy) ? ", val. accuracy " + fmt(c.val_accuracy, "acc") : "") }));
      if (seen.has(id)) { li.append(el("span", { cls: "op", text: " (ancestry shown above)" })); return li; }
      seen.add(id);
      if (c.parents.length && depth < data.lineage.depth) li.append(el("ul", {}, c.parents.map((p) => node(p, depth + 1, seen))));
      else if (c.parents.length) li.append(el("span", { cls: "op", text: " \u2026" }));
      return li;
    }
    for (const id of roots) holder.append(el("ul", { cls: "tree" }, [node(id, 0, new Set())]));
  }

  header();
  charts();
  models();
  table();
  filterSection();
  lineage();
  if (saved.scrollY) window.scrollTo(0, saved.scrollY);
  document.body.setAttribute("data-rendered", "true");
})();
