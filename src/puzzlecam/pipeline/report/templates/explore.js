// The threshold explorer (puzzlecam.pipeline.report.explorer writes the data it reads).
// Each image and branch is one lossless WebP: top rows R = CAM label, G = CAM bucket, B = ground
// truth; bottom rows R = random-walk label, G = its bucket, B = the run's pseudo label.
// A pixel's bucket counts the grid's thresholds its best score exceeds, so its label at
// grid threshold j is `bucket > j ? label : 0`: the evaluation's rule, exactly.
(() => {
  "use strict";
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const GRID = DATA.grid;
  const T = GRID.length;
  const C = DATA.classes.length;
  const L = C + 1; // labels 0..C
  const UNKNOWN = L; // the counts' gt row for 255 and images without a mask
  const ROWS = L + 1;
  const IGNORE = 255;
  const PER_PAGE = 12;
  const SHOWN_SIDE = 120; // CSS pixels of a panel's long side
  const colour = (v) => DATA.colours[String(v)] || [0, 0, 0];
  const CREAM = colour(IGNORE);
  const $ = (id) => document.getElementById(id);

  const SLIDERS = [
    { key: "cam", title: "CAM labels: background threshold (to look at)", setting: null },
    { key: "fg", title: "Affinity labels: foreground above", setting: "affinity_labels.fg_threshold" },
    { key: "bg", title: "Affinity labels: background below", setting: "affinity_labels.bg_threshold" },
    { key: "pseudo", title: "Pseudo labels: background threshold", setting: "pseudo_labels.threshold" },
  ];
  const PANELS = [
    { key: "cam", title: "CAM", on: true },
    { key: "camLabels", title: "CAM labels", on: false },
    { key: "affinity", title: "affinity labels", on: true },
    { key: "rw", title: "random walk", on: true },
    { key: "pseudoLabels", title: "pseudo labels", on: true },
    { key: "runPseudo", title: "the run's (CRF)", on: false },
  ];

  const gridIndex = (value) => {
    let best = 0;
    for (let j = 1; j < T; j++) if (Math.abs(GRID[j] - value) < Math.abs(GRID[best] - value)) best = j;
    return best;
  };
  const fmt = (t) => t.toFixed(2);
  const pct = (x) => (Number.isFinite(x) ? (100 * x).toFixed(1) : "–");

  const hasRw = DATA.images.some((e) => Object.values(e.rw || {}).some(Boolean));
  const runSettings = { fg: DATA.settings.fg, bg: DATA.settings.bg, pseudo: DATA.settings.pseudo };
  const state = {
    split: DATA.splits.length ? DATA.splits.find((s) => s.role === "val") ? "val" : DATA.splits[0].role : "",
    cls: 0,
    page: 0,
    overlay: false,
    panels: new Set(PANELS.filter((p) => p.on).map((p) => p.key)),
    t: { cam: gridIndex(defaultCam()), fg: gridIndex(runSettings.fg), bg: gridIndex(runSettings.bg), pseudo: gridIndex(runSettings.pseudo) },
  };
  function defaultCam() {
    for (const s of DATA.splits) {
      for (const b of DATA.branches) {
        const e = s.evaluations[b.method] && s.evaluations[b.method].cams;
        if (s.role === "train" && e && typeof e.threshold === "number") return e.threshold;
      }
    }
    return 0.5;
  }

  // --- decoding ------------------------------------------------------------------------------
  const decoded = new Map(); // image id -> {rgb, maps: {method: planes}}
  function pixels(uri) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const ctx = canvas.getContext("2d", { willReadFrequently: true });
        ctx.drawImage(img, 0, 0);
        resolve(ctx.getImageData(0, 0, canvas.width, canvas.height).data);
      };
      img.onerror = () => reject(new Error("an embedded picture could not be decoded"));
      img.src = uri;
    });
  }
  function planes(rgba, n) {
    const p = { camLabel: new Uint8Array(n), camBucket: new Uint8Array(n), gt: new Uint8Array(n),
      rwLabel: new Uint8Array(n), rwBucket: new Uint8Array(n), pseudo: new Uint8Array(n) };
    for (let i = 0; i < n; i++) {
      p.camLabel[i] = rgba[4 * i]; p.camBucket[i] = rgba[4 * i + 1]; p.gt[i] = rgba[4 * i + 2];
      const k = 4 * (n + i);
      p.rwLabel[i] = rgba[k]; p.rwBucket[i] = rgba[k + 1]; p.pseudo[i] = rgba[k + 2];
    }
    return p;
  }
  async function decodeAll() {
    for (const e of DATA.images) {
      if (e.problem) continue;
      const n = e.size[0] * e.size[1];
      const entry = { rgb: await pixels(e.image), maps: {} };
      for (const [method, uri] of Object.entries(e.maps)) entry.maps[method] = planes(await pixels(uri), n);
      decoded.set(e.id, entry);
    }
  }

  // --- the shown set and its counts ----------------------------------------------------------
  const shownImages = () => DATA.images.filter((e) => e.split === state.split && !e.problem &&
    (state.cls === 0 || e.tags.includes(state.cls)));

  // counts[(b * ROWS + g) * L + l]: pixels of bucket b, gt row g, best label l
  function countsOf(images, method, kind) {
    const counts = new Float64Array((T + 1) * ROWS * L);
    for (const e of images) {
      const p = decoded.get(e.id).maps[method];
      if (!p || (kind === "rw" && !e.rw[method])) continue;
      const label = kind === "cam" ? p.camLabel : p.rwLabel;
      const bucket = kind === "cam" ? p.camBucket : p.rwBucket;
      for (let i = 0; i < label.length; i++) {
        let g = e.mask ? p.gt[i] : UNKNOWN;
        if (g > C) g = UNKNOWN;
        counts[(bucket[i] * ROWS + g) * L + label[i]]++;
      }
    }
    return counts;
  }
  // from[b]: the counts of buckets >= b, (T + 2) * ROWS * L
  function suffix(counts) {
    const size = ROWS * L;
    const out = new Float64Array((T + 2) * size);
    for (let b = T; b >= 0; b--) {
      for (let k = 0; k < size; k++) out[b * size + k] = out[(b + 1) * size + k] + counts[b * size + k];
    }
    return out;
  }
  // The (L, L) confusion at threshold j (known gt rows only), as puzzlecam.metrics does.
  function confusion(from, j) {
    const size = ROWS * L;
    const m = new Float64Array(L * L);
    for (let g = 0; g < L; g++) {
      let total = 0;
      for (let l = 0; l < L; l++) total += from[g * L + l];
      let fg = 0;
      for (let l = 1; l < L; l++) {
        const v = from[(j + 1) * size + g * L + l];
        m[g * L + l] = v;
        fg += v;
      }
      m[g * L] = total - fg;
    }
    return m;
  }
  function miou(m) {
    let sum = 0, n = 0;
    for (let c = 0; c < L; c++) {
      let row = 0, col = 0;
      for (let k = 0; k < L; k++) { row += m[c * L + k]; col += m[k * L + c]; }
      const tp = m[c * L + c], union = row + col - tp;
      if (union > 0) { sum += tp / union; n++; }
    }
    return n ? sum / n : NaN;
  }
  function stats(images, method, kind) {
    const counts = countsOf(images, method, kind);
    const from = suffix(counts);
    const curve = [];
    for (let j = 0; j < T; j++) curve.push(miou(confusion(from, j)));
    let known = 0;
    for (let g = 0; g < L; g++) for (let l = 0; l < L; l++) known += from[g * L + l];
    return { from, curve, known };
  }

  let current = null; // {images, stats: {method: {cam, rw}}, tagPixels, tagMaskPixels}
  function recount() {
    const images = shownImages();
    const result = { images, stats: {}, tagPixels: new Float64Array(L), tagMaskPixels: new Float64Array(L) };
    for (const e of images) {
      const n = e.size[0] * e.size[1];
      for (const t of e.tags) { result.tagPixels[t] += n; if (e.mask) result.tagMaskPixels[t] += n; }
    }
    for (const b of DATA.branches) result.stats[b.method] = { cam: stats(images, b.method, "cam"), rw: stats(images, b.method, "rw") };
    current = result;
    state.page = Math.min(state.page, Math.max(0, Math.ceil(images.length / PER_PAGE) - 1));
  }

  // --- figures -------------------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (parent) parent.appendChild(el);
    return el;
  }
  function chart(series, marker, yMax, yLabel) {
    const w = 260, h = 120, left = 34, bottom = 20, top = 8, right = 8;
    const root = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    const x = (t) => left + (w - left - right) * t;
    const y = (v) => h - bottom - (h - bottom - top) * (v / yMax);
    for (const v of [0, 0.5, 1]) {
      svg("line", { x1: x(v), x2: x(v), y1: top, y2: h - bottom, stroke: "#eee" }, root);
      svg("text", { x: x(v), y: h - 5, "font-size": 10, "text-anchor": "middle", fill: "#666" }, root).textContent = v.toFixed(1);
    }
    for (const v of [0, yMax / 2, yMax]) {
      svg("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: "#eee" }, root);
      svg("text", { x: left - 4, y: y(v) + 3, "font-size": 10, "text-anchor": "end", fill: "#666" }, root).textContent = yLabel(v);
    }
    for (const s of series) {
      const points = s.values.map((v, j) => (Number.isFinite(v) ? `${x(GRID[j]).toFixed(1)},${y(v).toFixed(1)}` : null)).filter(Boolean);
      if (points.length) svg("polyline", { points: points.join(" "), fill: "none", stroke: s.colour, "stroke-width": 1.6, "stroke-dasharray": s.dash || "" }, root);
      if (s.level !== undefined) svg("line", { x1: left, x2: w - right, y1: y(s.level), y2: y(s.level), stroke: s.colour, "stroke-dasharray": "2 3" }, root);
    }
    svg("line", { x1: x(GRID[marker]), x2: x(GRID[marker]), y1: top, y2: h - bottom, stroke: "#222", "stroke-width": 1 }, root);
    return root;
  }
  const LINES = [ // the branches' curves, in DATA.branches' order (plain CAM first)
    { colour: "#888", dash: "4 3", name: "grey, dashed" },
    { colour: "#d62728", dash: "", name: "red" },
    { colour: "#1f77b4", dash: "", name: "blue" },
  ];
  const line = (i) => LINES[i % LINES.length];
  function figure(title, body, caption) {
    const div = document.createElement("div");
    div.className = "figure";
    const h = document.createElement("h3");
    h.textContent = title;
    div.appendChild(h);
    div.appendChild(body);
    if (caption) { const p = document.createElement("div"); p.className = "caption"; p.textContent = caption; div.appendChild(p); }
    return div;
  }
  function cell(tr, text, id) {
    const td = document.createElement(tr.parentNode && tr.parentNode.tagName === "THEAD" ? "th" : "td");
    td.textContent = text;
    if (id) td.id = id;
    tr.appendChild(td);
    return td;
  }

  function renderFigures() {
    $("figures").replaceChildren();
    const tables = document.createElement("div");
    tables.className = "column";
    const charts = document.createElement("div");
    charts.className = "charts";
    $("figures").append(tables, charts);
    const split = DATA.splits.find((s) => s.role === state.split);
    if (!current.images.length) {
      tables.textContent = "No image of this split and class on the page.";
      return;
    }
    const masks = current.images.some((e) => e.mask);
    const kinds = [["cam", "CAM labels", "cams", state.t.cam]];
    if (hasRw) kinds.push(["rw", "pseudo labels", "pseudo_labels_nocrf", state.t.pseudo]);
    // the table: mIoU at the sliders, the shown set's best, the run's evaluation
    const table = document.createElement("table");
    table.className = "stats";
    const head = table.createTHead().insertRow();
    for (const t of ["mIoU (%)", "at the slider", "best here", "the run's, whole split"]) {
      const th = document.createElement("th"); th.textContent = t; head.appendChild(th);
    }
    const body = table.createTBody();
    for (const b of DATA.branches) {
      for (const [kind, name, output, j] of kinds) {
        const s = current.stats[b.method][kind];
        const tr = body.insertRow();
        cell(tr, `${b.title}: ${name}`);
        if (!masks) { cell(tr, "no masks"); cell(tr, ""); cell(tr, ""); continue; }
        const td = cell(tr, `${pct(s.curve[j])} at ${fmt(GRID[j])}`, `miou-${kind}-${b.method}`);
        td.dataset.value = Number.isFinite(s.curve[j]) ? (100 * s.curve[j]).toFixed(4) : "";
        let best = 0;
        for (let k = 1; k < T; k++) if (s.curve[k] > s.curve[best] || !Number.isFinite(s.curve[best])) best = k;
        cell(tr, `${pct(s.curve[best])} at ${fmt(GRID[best])}`);
        const ev = split && split.evaluations[b.method] && split.evaluations[b.method][output];
        cell(tr, ev && ev.miou !== undefined ? `${ev.miou.toFixed(1)}${typeof ev.threshold === "number" ? ` at ${fmt(ev.threshold)}` : ""}` : "–");
      }
    }
    tables.appendChild(figure(`On the ${current.images.length} images shown`, table,
      (masks ? `Computed here as puzzlecam eval does (pseudo labels before the CRF); the run's figure covers the split's ${split ? split.total : ""} images.` : "No masks: judge by the pictures and by how much of each tagged image a class covers.") +
      (current.images.some((e) => e.full[0] !== e.size[0] || e.full[1] !== e.size[1]) ? " Large images are shown and counted at a reduced size here, so these figures approximate the run's." : "")));
    // mIoU curves
    if (masks) {
      for (const [kind, name, , j] of kinds) {
        const series = DATA.branches.map((b, i) => ({ values: current.stats[b.method][kind].curve, colour: line(i).colour, dash: line(i).dash }));
        charts.appendChild(figure(`mIoU of the ${name}`, chart(series, j, 1, (v) => (100 * v).toFixed(0)),
          DATA.branches.map((b, i) => `${b.title} (${line(i).name})`).join(", ")));
      }
    }
    // the share of each tagged image a class covers
    const main = DATA.branches[DATA.branches.length - 1];
    if (main) {
      const [kind, name, , j] = kinds[kinds.length - 1];
      const from = current.stats[main.method][kind].from;
      const size = ROWS * L;
      const series = [];
      let top = 0;
      for (let c = 1; c < L; c++) {
        if (state.cls && c !== state.cls) continue;
        if (!current.tagPixels[c]) continue;
        const values = [];
        for (let k = 0; k < T; k++) {
          let labelled = 0;
          for (let g = 0; g < ROWS; g++) labelled += from[(k + 1) * size + g * L + c];
          values.push(labelled / current.tagPixels[c]);
        }
        let truth;
        if (current.tagMaskPixels[c]) {
          let gtPixels = 0;
          for (let l = 0; l < L; l++) gtPixels += from[c * L + l];
          truth = gtPixels / current.tagMaskPixels[c];
        }
        const rgb = colour(c);
        series.push({ values, colour: `rgb(${rgb.join(",")})`, level: truth });
        top = Math.max(top, values[0], truth || 0);
      }
      const yMax = Math.max(0.1, Math.ceil(top * 10) / 10);
      const legend = document.createElement("div");
      const chartEl = chart(series, j, yMax, (v) => `${(100 * v).toFixed(0)}%`);
      const wrap = document.createElement("div");
      wrap.appendChild(chartEl);
      legend.className = "legend";
      for (let c = 1; c < L; c++) {
        if (!current.tagPixels[c] || (state.cls && c !== state.cls)) continue;
        const span = document.createElement("span");
        const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = `rgb(${colour(c).join(",")})`;
        span.appendChild(sw);
        span.appendChild(document.createTextNode(`${DATA.classes[c - 1]} ${pct(series.find((s) => s.colour === `rgb(${colour(c).join(",")})`).values[j])}%`));
        legend.appendChild(span);
      }
      wrap.appendChild(legend);
      charts.appendChild(figure(`Each class's share of its images (${main.title} ${name})`, wrap,
        "Per class, the share of the pixels of the images tagged with it that are labelled that class, against the threshold (dotted: the masks' share, where there are masks). Where a share passes what the objects cover, the background and the distractors are joining the class."));
    }
    // affinity labels (CAM)
    const aff = document.createElement("table");
    aff.className = "stats";
    const ah = aff.createTHead().insertRow();
    for (const t of ["", "confident fg", "confident bg", "ignored", masks ? "fg correct" : "", masks ? "bg correct" : ""]) {
      const th = document.createElement("th"); th.textContent = t; ah.appendChild(th);
    }
    const ab = aff.createTBody();
    for (const b of DATA.branches) {
      const from = current.stats[b.method].cam.from;
      const size = ROWS * L;
      let all = 0, fg = 0, bgAll = 0, fgKnown = 0, fgRight = 0, bgKnown = 0, bgRight = 0;
      for (let g = 0; g < ROWS; g++) for (let l = 0; l < L; l++) {
        const total = from[g * L + l], above = from[(state.t.fg + 1) * size + g * L + l], notBg = from[(state.t.bg + 1) * size + g * L + l];
        all += total; fg += above; bgAll += total - notBg;
        if (g < L) { fgKnown += above; bgKnown += total - notBg; if (g === l && l > 0) fgRight += above; if (g === 0) bgRight += total - notBg; }
      }
      const tr = ab.insertRow();
      cell(tr, b.title);
      cell(tr, `${pct(fg / all)}%`); cell(tr, `${pct(bgAll / all)}%`); cell(tr, `${pct((all - fg - bgAll) / all)}%`);
      cell(tr, masks ? `${pct(fgRight / fgKnown)}%` : ""); cell(tr, masks ? `${pct(bgRight / bgKnown)}%` : "");
    }
    tables.appendChild(figure(`Affinity labels at ${fmt(GRID[state.t.fg])} / ${fmt(GRID[state.t.bg])}`, aff,
      `The pixels AffinityNet would learn from, before the CRF${DATA.settings.affinity_crf ? " the run applies" : ""}: foreground where the CAM exceeds the upper threshold, background where it stays below the lower one.`));
  }

  // --- the images ----------------------------------------------------------------------------
  function paint(canvas, e, fill) {
    const [h, w] = e.size;
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(w, h);
    const rgb = decoded.get(e.id).rgb;
    for (let i = 0; i < w * h; i++) {
      const c = fill(i, rgb);
      out.data[4 * i] = c[0]; out.data[4 * i + 1] = c[1]; out.data[4 * i + 2] = c[2]; out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }
  const mix = (a, rgb, i, alpha) => [0, 1, 2].map((k) => Math.round(a[k] * alpha + rgb[4 * i + k] * (1 - alpha)));
  function labelFill(get) {
    return (i, rgb) => {
      const v = get(i);
      if (!state.overlay) return colour(v);
      return v === 0 ? [rgb[4 * i], rgb[4 * i + 1], rgb[4 * i + 2]] : mix(colour(v), rgb, i, 0.6);
    };
  }
  const heatFill = (bucket) => (i, rgb) => mix(DATA.jet[bucket[i]], rgb, i, 0.5);

  // The label map a panel shows, (H * W) label values: what the browser test checks.
  function labelMap(e, method, panel) {
    const p = decoded.get(e.id).maps[method];
    const n = e.size[0] * e.size[1];
    const out = new Uint8Array(n);
    const { cam, fg, bg, pseudo } = state.t;
    for (let i = 0; i < n; i++) {
      if (panel === "camLabels") out[i] = p.camBucket[i] > cam ? p.camLabel[i] : 0;
      else if (panel === "pseudoLabels") out[i] = p.rwBucket[i] > pseudo ? p.rwLabel[i] : 0;
      else if (panel === "affinity") out[i] = p.camBucket[i] > fg ? p.camLabel[i] : p.camBucket[i] <= bg ? 0 : IGNORE;
      else if (panel === "runPseudo") out[i] = p.pseudo[i];
    }
    return out;
  }

  function panelBox(group, title, e, draw, empty) {
    const div = document.createElement("div");
    div.className = "panel";
    const [h, w] = e.size;
    const scale = SHOWN_SIDE / Math.max(h, w);
    if (empty) {
      const box = document.createElement("div");
      box.className = "empty"; box.style.width = `${Math.round(w * scale)}px`; box.style.height = `${Math.round(h * scale)}px`;
      box.textContent = empty;
      div.appendChild(box);
    } else {
      const canvas = document.createElement("canvas");
      canvas.style.width = `${Math.round(w * scale)}px`; canvas.style.height = `${Math.round(h * scale)}px`;
      draw(canvas);
      div.appendChild(canvas);
    }
    const label = document.createElement("span");
    label.textContent = title;
    div.appendChild(label);
    group.appendChild(div);
    return div;
  }

  function renderImages() {
    const root = $("images");
    root.replaceChildren();
    const pages = Math.max(1, Math.ceil(current.images.length / PER_PAGE));
    $("page").textContent = `page ${state.page + 1} of ${pages}`;
    const split = DATA.splits.find((s) => s.role === state.split);
    $("shown").textContent = split ? `${current.images.length} of the page's ${DATA.images.filter((e) => e.split === state.split).length} ${split.role} images (the split has ${split.total})` : "";
    const broken = DATA.images.filter((e) => e.split === state.split && e.problem);
    if (broken.length) {
      const note = document.createElement("p");
      note.className = "problem";
      note.textContent = `Not shown, not counted: ${broken.map((e) => `${e.id} (${e.problem})`).join("; ")}`;
      root.appendChild(note);
    }
    const shown = current.images.slice(state.page * PER_PAGE, (state.page + 1) * PER_PAGE);
    for (const e of shown) {
      const row = document.createElement("div");
      row.className = "imagerow";
      row.dataset.image = e.id;
      const head = document.createElement("div");
      head.className = "rowhead";
      head.textContent = `${e.id}: ${e.tags.map((t) => DATA.classes[t - 1]).join(", ") || "no tags"}`;
      row.appendChild(head);
      const base = document.createElement("div");
      base.className = "group base";
      panelBox(base, "image", e, (c) => paint(c, e, (i, rgb) => [rgb[4 * i], rgb[4 * i + 1], rgb[4 * i + 2]]));
      const anyMaps = Object.values(decoded.get(e.id).maps)[0];
      panelBox(base, "ground truth", e, (c) => paint(c, e, labelFill((i) => anyMaps.gt[i])), e.mask && anyMaps ? "" : "no mask");
      row.appendChild(base);
      for (const b of DATA.branches) {
        const outer = document.createElement("div");
        const heading = document.createElement("div");
        heading.className = "branch";
        heading.textContent = b.title;
        const group = document.createElement("div");
        group.className = "group";
        group.dataset.method = b.method;
        outer.append(heading, group);
        const p = decoded.get(e.id).maps[b.method];
        for (const panel of PANELS) {
          if (!state.panels.has(panel.key)) continue;
          const title = `${b.title}: ${panel.title}`;
          const missing = !p ? "no CAM" : ["rw", "pseudoLabels"].includes(panel.key) && !e.rw[b.method] ? "no random walk" : panel.key === "runPseudo" && !e.pseudo[b.method] ? "none" : "";
          const box = panelBox(group, panel.title, e, (c) => {
            c.dataset.image = e.id; c.dataset.method = b.method; c.dataset.panel = panel.key;
            if (panel.key === "cam") paint(c, e, heatFill(p.camBucket));
            else if (panel.key === "rw") paint(c, e, heatFill(p.rwBucket));
            else { const labels = labelMap(e, b.method, panel.key); paint(c, e, labelFill((i) => labels[i])); }
          }, missing);
          box.title = title;
        }
        row.appendChild(outer);
      }
      root.appendChild(row);
    }
  }

  function renderSetLine() {
    const parts = SLIDERS.filter((s) => s.setting && (s.key !== "pseudo" || hasRw)).map((s) => `${s.setting}=${fmt(GRID[state.t[s.key]])}`);
    $("set-line").textContent = `--set ${parts.join(" ")}`;
  }

  function render(full) {
    if (full) recount();
    renderFigures();
    renderImages();
    renderSetLine();
  }

  // --- controls ------------------------------------------------------------------------------
  function buildControls() {
    for (const s of DATA.splits) {
      const o = document.createElement("option"); o.value = s.role; o.textContent = `${s.role} (${s.count} of ${s.total})`;
      $("split").appendChild(o);
    }
    $("split").value = state.split;
    $("split").addEventListener("change", () => { state.split = $("split").value; state.page = 0; render(true); });
    DATA.classes.forEach((name, i) => {
      const o = document.createElement("option"); o.value = String(i + 1); o.textContent = name;
      $("class-filter").appendChild(o);
    });
    $("class-filter").addEventListener("change", () => { state.cls = Number($("class-filter").value); state.page = 0; render(true); });
    for (const s of SLIDERS) {
      if (s.key === "pseudo" && !hasRw) continue;
      const label = document.createElement("label");
      const name = document.createElement("span"); name.textContent = s.title;
      const value = document.createElement("span"); value.className = "value"; value.id = `value-${s.key}`;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", min: "0", max: String(T - 1), step: "1", id: `slider-${s.key}` });
      input.value = String(state.t[s.key]);
      label.append(name, value, input);
      if (s.setting) {
        const run = document.createElement("span"); run.className = "run";
        run.textContent = `the run: ${fmt(runSettings[s.key])}`;
        label.appendChild(run);
      }
      $("sliders").appendChild(label);
      const show = () => { value.textContent = fmt(GRID[state.t[s.key]]); };
      show();
      input.addEventListener("input", () => {
        state.t[s.key] = Number(input.value);
        // the affinity band stays a band: foreground above background
        if (s.key === "fg" && state.t.fg <= state.t.bg) state.t.bg = Math.max(0, state.t.fg - 1);
        if (s.key === "bg" && state.t.bg >= state.t.fg) state.t.fg = Math.min(T - 1, state.t.bg + 1);
        for (const o of ["fg", "bg"]) { $(`slider-${o}`).value = String(state.t[o]); $(`value-${o}`).textContent = fmt(GRID[state.t[o]]); }
        show();
        render(false);
      });
    }
    for (const p of PANELS) {
      if (["rw", "pseudoLabels", "runPseudo"].includes(p.key) && !hasRw) continue;
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox"; box.checked = state.panels.has(p.key); box.id = `panel-${p.key}`;
      box.addEventListener("change", () => { if (box.checked) state.panels.add(p.key); else state.panels.delete(p.key); renderImages(); });
      label.append(box, ` ${p.title}`);
      $("panels").appendChild(label);
    }
    $("overlay").addEventListener("change", () => { state.overlay = $("overlay").checked; renderImages(); });
    $("prev").addEventListener("click", () => { if (state.page > 0) { state.page--; renderImages(); } });
    $("next").addEventListener("click", () => { if ((state.page + 1) * PER_PAGE < current.images.length) { state.page++; renderImages(); } });
    $("copy").addEventListener("click", async () => {
      const text = $("set-line").textContent;
      try { await navigator.clipboard.writeText(text); } catch (error) {
        const area = document.createElement("textarea"); area.value = text; document.body.appendChild(area);
        area.select(); document.execCommand("copy"); area.remove();
      }
      $("copied").textContent = "copied";
      setTimeout(() => { $("copied").textContent = ""; }, 1500);
    });
  }

  const api = { ready: false, state, grid: GRID, labelMap: (id, method, panel) => Array.from(labelMap(DATA.images.find((e) => e.id === id), method, panel)) };
  window.puzzlecamExplorer = api;
  buildControls();
  decodeAll().then(() => {
    $("loading").remove();
    if (!DATA.images.length) { $("images").textContent = "This run has no CAMs yet: nothing to explore."; api.ready = true; return; }
    render(true);
    api.ready = true;
  }, (error) => { $("loading").textContent = `The page could not be drawn: ${error.message}`; $("loading").className = "problem"; });
})();
