(() => {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);
  const make = (tag, className, text) => {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  };
  // As tamx.report.visible_whitespace: spaces, tabs and newlines drawn (so " a" and "a" differ),
  // other control characters escaped.
  const visible = (text) =>
    text
      .replace(/ /g, "␣")
      .replace(/\t/g, "⇥")
      .replace(/\n/g, "⏎")
      .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => (c === "\r" ? "\\r" : "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0")));
  const fmt = (x) => (x === 0 ? "0" : Math.abs(x) >= 1000 || Math.abs(x) < 0.01 ? x.toExponential(2) : x.toPrecision(3));

  // ---------------------------------------------------------------- packed arrays
  function decode(packed) {
    const binary = atob(packed.data);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const Type = { uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array }[packed.dtype];
    return { values: new Type(bytes.buffer), shape: packed.shape };
  }
  function row(arr, index) {
    const width = arr.shape[arr.shape.length - 1];
    return arr.values.subarray(index * width, (index + 1) * width);
  }
  function maxRows(arr, indices) {
    if (indices.length === 1) return row(arr, indices[0]);
    const out = new Uint8Array(row(arr, indices[0]));
    for (const i of indices.slice(1)) {
      const r = row(arr, i);
      for (let c = 0; c < out.length; c++) if (r[c] > out[c]) out[c] = r[c];
    }
    return out;
  }

  // ---------------------------------------------------------------- state
  // shown = what is hovered, else what is pinned, else the first answer token of the first run.
  let D = null;
  let runs = [];
  let lut = null;
  let variants = []; // the variants shown side by side
  let hover = null; // {run, kind, index, candidate}
  let pinned = null;
  // The colour scale: "map" (the image map and the text relevance each on its own range) or
  // "joint" (together, Eq. 3). Set by the first page data, then by the #scale control.
  let scale = null;
  const SCALE_LABELS = {
    map: "own range: the map alone (text: its own range)",
    joint: "joint range: map and text together (Eq. 3)",
  };
  const grouping = () => $("#group-words").checked;
  // A span (a phrase, the whole answer): pinned = {run, kind: "span", index: start, stop, candidate: -1},
  // answer tokens start..stop-1, chosen by shift-click or a drag over the answer's tokens.
  let spanRule = "mean"; // as tamx.spans: "mean" or "weighted" (by each map's total positive activation)
  let dragFrom = null;
  const shown = () => hover || pinned || { run: 0, kind: "answer", index: 0, candidate: -1 };

  function newRun(data, r) {
    const cache = new Map();
    return {
      data,
      r,
      answerSpans: [],
      promptSpans: [],
      columns: [],
      array(variant, name) {
        const key = variant + "/" + name;
        if (!cache.has(key)) {
          const packed = data.variants[variant] && data.variants[variant][name];
          cache.set(key, packed ? decode(packed) : null);
        }
        return cache.get(key);
      },
    };
  }
  const variantsOf = () => {
    const names = [];
    for (const run of runs) for (const name of Object.keys(run.data.variants)) if (!names.includes(name)) names.push(name);
    return names;
  };
  const runTitle = (run) => run.data.model + (run.data.run ? " · " + run.data.run : "");

  // ---------------------------------------------------------------- words across runs
  const wordKey = (text) => text.toLowerCase().replace(/[\s\p{P}\p{S}]+/gu, "");
  function wordText(run, word) {
    const words = run.data.answer_words;
    return run.answerTexts.filter((_, i) => words[i] === word).join("");
  }
  function wordMembers(run, word) {
    const members = [];
    run.data.answer_words.forEach((w, i) => w === word && members.push(i));
    return members;
  }
  // The word of `run` that matches word `word` of run `from`: the same text, the same occurrence.
  function alignedWord(from, word, run) {
    if (from === run) return word;
    const key = wordKey(wordText(from, word));
    let seen = 0;
    for (let w = 0; w < word; w++) if (wordKey(wordText(from, w)) === key) seen++;
    const last = run.data.answer_words.length ? run.data.answer_words[run.data.answer_words.length - 1] : -1;
    for (let w = 0; w <= last; w++) {
      if (wordKey(wordText(run, w)) === key) {
        if (seen === 0) return w;
        seen--;
      }
    }
    return null;
  }
  // What run `run` shows for the current selection: {kind, index, candidate, members} or null.
  function selectionFor(run) {
    const sel = shown();
    const from = runs[sel.run];
    if (!from) return null;
    if (sel.kind === "span") {
      if (run !== from) return null;
      const members = [];
      for (let i = sel.index; i < sel.stop; i++) members.push(i);
      return { kind: "span", index: sel.index, stop: sel.stop, candidate: -1, members };
    }
    if (run === from) {
      const members = sel.kind === "answer" && grouping() ? wordMembers(run, run.data.answer_words[sel.index]) : [sel.index];
      return { kind: sel.kind, index: sel.index, candidate: sel.candidate, members };
    }
    if (sel.kind === "prompt" || !from.data.answer_words.length) return null;
    const word = alignedWord(from, from.data.answer_words[sel.index], run);
    if (word === null) return null;
    const members = wordMembers(run, word);
    return { kind: "answer", index: members[0], candidate: -1, members };
  }

  // ---------------------------------------------------------------- media
  function colourBar(column) {
    const bar = make("div", "scale");
    const gradient = document.createElement("canvas");
    gradient.width = 256;
    gradient.height = 1;
    gradient.className = "bar";
    const ctx = gradient.getContext("2d");
    const image = ctx.createImageData(256, 1);
    for (let i = 0; i < 256; i++) {
      image.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i);
    }
    ctx.putImageData(image, 0, 0);
    const labels = make("div", "bar-labels");
    column.low = make("span", "bar-low", "0");
    column.high = make("span", "bar-high", "1");
    column.mid = make("span", "bar-mid", SCALE_LABELS[scale]);
    labels.append(column.low, column.mid, column.high);
    column.range = make("div", "bar-range muted");
    bar.append(gradient, labels, column.range);
    return bar;
  }

  function placeCanvas(canvas, frame, size) {
    // The grid's outer edges in source pixels (frame.box) as a share of the shown image;
    // the figure clips what lies past the image (processor padding).
    if (!frame.box || !size) return false;
    const [x0, y0, x1, y1] = frame.box;
    const [w, h] = size;
    Object.assign(canvas.style, {
      left: (100 * x0) / w + "%",
      top: (100 * y0) / h + "%",
      width: (100 * (x1 - x0)) / w + "%",
      height: (100 * (y1 - y0)) / h + "%",
      right: "auto",
      bottom: "auto",
    });
    return x0 > 0 || y0 > 0 || x1 < w || y1 < h;
  }

  function buildFrame(run, column, frame, index, source, j) {
    const data = run.data;
    const figure = make("figure", "frame");
    figure.dataset.frame = String(index);
    let base;
    const size = source === null ? null : data.image_sizes[source];
    if (source === null) {
      base = make("div", "blank");
      base.style.aspectRatio = frame.width + " / " + frame.height;
    } else {
      base = document.createElement("img");
      base.src = data.images[source];
      base.alt = data.blocks[frame.block].label;
    }
    figure.appendChild(base);
    const canvas = document.createElement("canvas");
    canvas.width = frame.width;
    canvas.height = frame.height;
    canvas.dataset.block = String(frame.block);
    canvas.dataset.slice = String(frame.slice);
    canvas.dataset.run = String(run.r);
    canvas.dataset.variant = column.variant;
    figure.appendChild(canvas);
    const caption = [];
    if (placeCanvas(canvas, frame, size)) {
      // The model saw only the box: the rest of the image is shaded.
      const seen = make("div", "seen");
      for (const key of ["left", "top", "width", "height"]) seen.style[key] = canvas.style[key];
      seen.title = "the model saw only this region";
      figure.appendChild(seen);
      figure.classList.add("cropped");
      caption.push("crop: the model saw the dashed region");
    }
    if (frame.kind === "video") {
      const f = frame.frames.length ? frame.frames[j % frame.frames.length] : null;
      caption.push(f === null ? "slice " + frame.slice : "frame " + f);
    } else if (frame.label && frame.label !== "image") caption.push(frame.label);
    if (caption.length) figure.appendChild(make("figcaption", "", caption.join(" ")));
    const ctx = canvas.getContext("2d");
    column.canvases.push({ canvas, ctx, image: ctx.createImageData(frame.width, frame.height), frame });
    return figure;
  }

  function timeline(block, frames) {
    const list = make("ol", "timeline");
    list.setAttribute("aria-label", "timeline of the video's slices");
    for (const frame of frames) {
      const covered = frame.frames.length ? "frames " + frame.frames[0] + "–" + frame.frames[frame.frames.length - 1] : "frames not recorded";
      const time = frame.times ? " · " + frame.times[0].toFixed(2) + "–" + frame.times[1].toFixed(2) + " s" : "";
      list.appendChild(make("li", "", "slice " + frame.slice + ": " + covered + time));
    }
    return list;
  }

  function buildColumn(run, variant) {
    const data = run.data;
    const column = { variant, canvases: [], element: make("div", "column") };
    column.element.dataset.run = String(run.r);
    column.element.dataset.variant = variant;
    const heading = data.variants[variant] ? data.variants[variant].label || variant : variant;
    const title = make("h2", "", (runs.length > 1 ? runTitle(run) + " · " : "") + heading);
    title.title = variant; // the stored variant name
    if (!data.variants[variant]) title.textContent += " (not stored for this run)";
    column.element.append(title, colourBar(column));
    column.empty = make("div", "empty", "Empty map: every cell is 0 for this token (the colours show no activation, not a weak one).");
    column.empty.hidden = true;
    column.element.appendChild(column.empty);
    data.blocks.forEach((block, b) => {
      const box = make("div", "block " + block.kind);
      const note = block.assumed ? " · placement assumed (no box recorded: the grid is drawn over the whole image)" : "";
      box.appendChild(make("h3", "", block.label + " · " + block.grid.join("×") + note));
      const holder = make("div", "frames");
      const frames = data.frames.filter((f) => f.block === b);
      for (const frame of frames) {
        const sources = frame.images.length ? frame.images : [null];
        sources.forEach((source, j) => holder.appendChild(buildFrame(run, column, frame, data.frames.indexOf(frame), source, j)));
      }
      box.appendChild(holder);
      if (block.kind === "video") box.appendChild(timeline(block, frames));
      column.element.appendChild(box);
    });
    column.faith = make("div", "faith");
    column.faith.hidden = true;
    column.element.appendChild(column.faith);
    return column;
  }

  // ---------------------------------------------------------------- faithfulness curves
  // The selected answer token's stored deletion and insertion curves (tamx faithfulness): the
  // variant's order against the random control (and the mask control where stored), AUCs printed.
  const CURVE_STYLE = { "": ["#c0392b", "", "own"], random_: ["#7f8c8d", "4 3", "random"], mask_: ["#27ae60", "1 3", "mask"] };
  const svg = (tag, attrs) => {
    const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) element.setAttribute(k, v);
    return element;
  };
  function paintFaith(run, column, sel) {
    const record = run.data.variants[column.variant] && run.data.variants[column.variant].faithfulness;
    const t = record && sel && sel.kind === "answer" ? record.tokens.indexOf(sel.index) : -1;
    const key = t < 0 ? "" : sel.index + ":" + column.variant;
    if (column.faith.dataset.key === key) return;
    column.faith.dataset.key = key;
    column.faith.replaceChildren();
    column.faith.hidden = t < 0;
    if (t < 0) return;
    if (!record.decoded) record.decoded = decode(record.curves);
    const [, tokens, points] = record.decoded.shape;
    const curve = (name) => {
      const c = record.names.indexOf(name);
      return c < 0 ? null : { values: record.decoded.values.subarray((c * tokens + t) * points, (c * tokens + t + 1) * points), auc: record.aucs[c][t] };
    };
    const settings = record.settings || {};
    column.faith.appendChild(make("h3", "", "Faithfulness of token " + sel.index + " · " + record.steps + " steps" + (settings.baseline ? " · baseline " + settings.baseline : "")));
    const plots = make("div", "faith-plots");
    const [W, H, L, B] = [220, 120, 28, 16];
    for (const kind of ["deletion", "insertion"]) {
      const box = make("figure", "faith-plot");
      box.dataset.curve = kind;
      const plot = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img" });
      const x = (i) => L + ((W - L - 6) * i) / record.steps;
      const y = (p) => 6 + (H - B - 6) * (1 - p);
      plot.append(svg("rect", { x: L, y: 6, width: W - L - 6, height: H - B - 6, fill: "#fff", stroke: "#ccc" }));
      for (const [p, label] of [[0, "0"], [1, "1"]]) {
        const text = svg("text", { x: L - 4, y: y(p) + 4, "text-anchor": "end", "font-size": 10 });
        text.textContent = label;
        plot.append(text);
      }
      const axis = svg("text", { x: (W + L) / 2, y: H - 3, "text-anchor": "middle", "font-size": 10 });
      axis.textContent = "fraction of cells " + (kind === "deletion" ? "removed" : "restored");
      plot.append(axis);
      const legend = make("figcaption", "");
      legend.append(kind + " AUC: ");
      for (const [prefix, [colour, dash, kindClass]] of Object.entries(CURVE_STYLE)) {
        const c = curve(prefix + kind);
        if (!c) continue;
        const points_ = [];
        c.values.forEach((p, i) => Number.isFinite(p) && points_.push(x(i).toFixed(1) + "," + y(p).toFixed(1)));
        if (points_.length) plot.append(svg("polyline", { points: points_.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5, "stroke-dasharray": dash || "none" }));
        const name = prefix ? prefix.slice(0, -1) : column.variant;
        const value = make("span", "auc auc-" + kindClass, name + " " + (c.auc === null ? "–" : c.auc.toFixed(3)));
        value.dataset.curve = prefix + kind;
        legend.append(value, " ");
      }
      box.append(plot, legend);
      plots.appendChild(box);
    }
    column.faith.appendChild(plots);
  }

  function buildMedia() {
    const media = $("#media");
    media.replaceChildren();
    media.classList.toggle("compare", runs.length * variants.length > 1);
    for (const run of runs) {
      run.columns = variants.map((variant) => buildColumn(run, variant));
      for (const column of run.columns) media.appendChild(column.element);
    }
    setOpacity();
  }

  // ---------------------------------------------------------------- text
  function buildConversation(run) {
    const data = run.data;
    const conversation = make("div", "conversation");
    conversation.dataset.run = String(run.r);
    conversation.setAttribute("role", "listbox");
    conversation.setAttribute("aria-label", runTitle(run) + ": hover or click a token, arrow keys step, Escape unpins");
    if (runs.length > 1) conversation.appendChild(make("h2", "", runTitle(run)));
    run.answerSpans = [];
    run.promptSpans = [];
    run.answerTexts = [];
    let lastTurn;
    data.segments.forEach((segment, k) => {
      // a turn's label goes before its images too: a vision block takes the turn of the text after it
      const next = segment.kind === "vision" ? data.segments.slice(k).find((s) => s.kind === "prompt" || s.kind === "answer") : segment;
      if (next && next.kind === "prompt" && next.turn !== lastTurn) {
        lastTurn = next.turn;
        const role = next.role === "assistant" ? "assistant (earlier turn, context)" : next.role;
        conversation.appendChild(make("div", "role turn-role", role)); // hidden with the template, which names the turn
      } else if (segment.kind === "answer") {
        lastTurn = "answer";
        const how = data.mode === "teacher-forced" ? "teacher-forced: a given answer, not generated" : "generated";
        const label = make("div", "role answer-role");
        label.append(make("span", "role-name", "assistant · "), "explained answer · " + how);
        if (data.mode === "teacher-forced") label.classList.add("forced");
        conversation.appendChild(label);
      }
      const div = make("div", "segment " + segment.kind);
      if (segment.kind === "vision") {
        div.appendChild(make("span", "chip", "[" + data.blocks[segment.block].label + "]"));
      } else {
        segment.tokens.forEach(([text, index]) => {
          const span = make("span", "tok " + segment.kind, text);
          if (segment.kind === "answer") {
            span.dataset.answerIndex = String(index);
            span.dataset.word = String(data.answer_words[index]);
            span.setAttribute("role", "option");
            span.setAttribute("aria-selected", "false");
            if (data.answer_probs) span.title = "p = " + (100 * data.answer_probs[index]).toFixed(1) + "%";
            run.answerSpans[index] = span;
            run.answerTexts[index] = text;
          } else if (segment.kind === "prompt") {
            span.dataset.promptIndex = String(index);
            span.setAttribute("role", "option");
            span.setAttribute("aria-selected", "false");
            run.promptSpans[index] = span;
          }
          span.dataset.run = String(run.r);
          div.appendChild(span);
        });
      }
      conversation.appendChild(div);
    });
    return conversation;
  }

  // ---------------------------------------------------------------- spans
  // The map of answer tokens start..stop-1 as tamx.spans.span_map computes it, from the page's 8-bit
  // maps on their own range (each token's value back in raw units: min + q / 255 * (max - min)).
  function spanMap(run, variant, start, stop, rule) {
    const own = run.array(variant, "answer_own");
    const ranges = run.array(variant, "answer_own_scale");
    if (!own || !ranges || !(start >= 0 && start < stop && stop <= own.shape[0])) return null;
    const width = own.shape[1];
    const raws = [];
    const weights = [];
    for (let i = start; i < stop; i++) {
      const q = row(own, i);
      const [low, high] = row(ranges, i);
      const raw = new Float64Array(width);
      let total = 0;
      for (let c = 0; c < width; c++) {
        raw[c] = low + (q[c] / 255) * (high - low);
        if (raw[c] > 0) total += raw[c];
      }
      raws.push(raw);
      weights.push(rule === "weighted" ? total : 1);
    }
    let sum = weights.reduce((a, b) => a + b, 0);
    if (!(sum > 0)) {
      weights.fill(1);
      sum = weights.length;
    }
    const out = new Float64Array(width);
    raws.forEach((raw, k) => {
      for (let c = 0; c < width; c++) out[c] += (weights[k] * raw[c]) / sum;
    });
    return out;
  }
  // On its own range, quantised as tamx.report.normalise: [uint8 map, min, max].
  function quantise(values) {
    let low = Infinity;
    let high = -Infinity;
    for (const x of values) {
      low = Math.min(low, x);
      high = Math.max(high, x);
    }
    if (!values.length) low = high = 0;
    const range = high > low ? high - low : 1;
    const out = new Uint8Array(values.length);
    for (let c = 0; c < values.length; c++) out[c] = Math.max(0, Math.min(255, Math.round(((values[c] - low) / range) * 255)));
    return [out, low, high];
  }

  // ---------------------------------------------------------------- painting
  function rowsOf(run, variant, sel) {
    if (!sel) return null;
    if (sel.kind === "span") {
      const values = spanMap(run, variant, sel.index, sel.stop, spanRule);
      if (!values) return null;
      const [map, low, high] = quantise(values);
      return { map, text: null, scale: [[low, high, high]], textScale: null, joint: false, span: { rule: spanRule, tokens: sel.stop - sel.index }, raw: values };
    }
    if (sel.kind === "candidate") {
      const candidates = run.array(variant, "candidates");
      if (!candidates) return null;
      const k = candidates.shape[1];
      const at = sel.index * k + sel.candidate;
      return { map: row(candidates, at), text: null, scale: [row(run.array(variant, "candidates_scale"), at)], textScale: null, joint: false };
    }
    // scale "map": the *_own arrays, each on its own range (pages built before them have the joint ones only)
    const names = sel.kind === "prompt" ? ["prompt", "prompt_text", "prompt_scale", "prompt_own", "prompt_text_own", "prompt_own_scale", "prompt_text_own_scale"] : ["answer", "answer_text", "answer_scale", "answer_own", "answer_text_own", "answer_own_scale", "answer_text_own_scale"];
    const arrays = names.map((name) => run.array(variant, name));
    const own = scale === "map" && arrays[3] !== null;
    const [maps, text, ranges, textRanges] = own ? arrays.slice(3) : [...arrays.slice(0, 3), null];
    if (!maps) return null;
    return {
      map: maxRows(maps, sel.members),
      text: text ? maxRows(text, sel.members) : null,
      scale: ranges ? sel.members.map((i) => row(ranges, i)) : [],
      textScale: textRanges ? sel.members.map((i) => row(textRanges, i)) : null,
      joint: !own,
    };
  }
  function paintColumn(column, rows, sel) {
    for (const c of column.canvases) {
      const pixels = c.image.data;
      const size = c.frame.height * c.frame.width;
      const offset = c.frame.offset;
      for (let i = 0; i < size; i++) {
        const value = rows ? rows.map[offset + i] * 3 : -1;
        if (value < 0) {
          pixels[4 * i + 3] = 0;
          continue;
        }
        pixels[4 * i] = lut[value];
        pixels[4 * i + 1] = lut[value + 1];
        pixels[4 * i + 2] = lut[value + 2];
        pixels[4 * i + 3] = 255;
      }
      c.ctx.putImageData(c.image, 0, 0);
    }
    column.rows = rows;
    if (!rows) {
      setText(column.low, "–");
      setText(column.high, "–");
      setText(column.range, sel === null ? "nothing here matches the selection (another run's prompt token or span, or a word this answer lacks)" : "no map stored");
      column.empty.hidden = true;
      return;
    }
    let low = Infinity;
    let high = -Infinity;
    let mapMax = 0;
    for (const s of rows.scale) {
      low = Math.min(low, s[0]);
      high = Math.max(high, s[1]);
      mapMax = Math.max(mapMax, s[2]);
    }
    if (!rows.scale.length) low = high = 0;
    column.scale = { low, high, single: rows.scale.length === 1 };
    setText(column.low, fmt(low));
    setText(column.high, fmt(high));
    const word = rows.scale.length > 1 ? " · a word: the max over its " + rows.scale.length + " tokens, each on its own scale" : "";
    let what = rows.joint ? " (min and max of the map and the text relevance together)" : " (min and max of the map alone)";
    if (rows.textScale) {
      const textLow = Math.min(...rows.textScale.map((s) => s[0]));
      const textHigh = Math.max(...rows.textScale.map((s) => s[1]));
      what += "; text relevance on its own range " + fmt(textLow) + " … " + fmt(textHigh);
    }
    if (rows.span) {
      const how = rows.span.rule === "weighted" ? "weighted by each map's total activation" : "their mean";
      what = " (min and max of the span's map: its " + rows.span.tokens + " token maps, " + how + ")";
    }
    const mid = rows.span ? "own range: the span's map (" + rows.span.rule + ")" : sel && sel.kind === "candidate" ? "own range: the candidate's map alone" : SCALE_LABELS[rows.joint ? "joint" : "map"];
    setText(column.mid, mid);
    setText(column.range, "raw range " + fmt(low) + " … " + fmt(high) + what + word);
    if (column.empty.hidden !== mapMax > 0) column.empty.hidden = mapMax > 0;
  }
  // Only touch the DOM where the text changes: a token switch stays cheap.
  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }
  // Spans remember what they show, so a token switch only touches those that change.
  function tint(span, value) {
    const shownValue = value === null || value === 0 ? 0 : value;
    if (span.tintValue === shownValue) return;
    span.tintValue = shownValue;
    if (!shownValue) {
      span.style.backgroundColor = "";
      return;
    }
    const i = shownValue * 3;
    span.style.backgroundColor = "rgba(" + lut[i] + "," + lut[i + 1] + "," + lut[i + 2] + "," + (0.15 + 0.7 * (shownValue / 255)).toFixed(3) + ")";
  }
  function mark(span, isCurrent, isLater, isPinned) {
    const flags = (isCurrent ? 1 : 0) | (isLater ? 2 : 0) | (isPinned ? 4 : 0);
    if (span.flags === flags) return;
    span.flags = flags;
    span.classList.toggle("current", isCurrent);
    span.classList.toggle("later", isLater);
    span.classList.toggle("pinned", isPinned);
    span.setAttribute("aria-selected", isPinned ? "true" : "false");
  }
  function paintText(run, sel, text) {
    const nContext = run.data.n_context;
    const kind = sel ? sel.kind : null;
    const selected = new Set(sel && kind !== "prompt" ? sel.members : []);
    const inSpan = (j) => pin !== null && pin.kind === "span" && j >= pin.index && j < pin.stop;
    const pin = pinned && runs[pinned.run] === run ? pinned : null;
    run.promptSpans.forEach((span, j) => {
      const isLater = kind === "prompt" && j >= sel.index;
      const isPinned = pin !== null && pin.kind === "prompt" && pin.index === j;
      mark(span, kind === "prompt" && j === sel.index, isLater, isPinned);
      tint(span, text && !isLater ? text[j] : null);
    });
    const step = kind === "prompt" || !sel ? -1 : sel.index;
    const last = Math.max(step, ...selected);
    run.answerSpans.forEach((span, j) => {
      const isCurrent = kind !== null && kind !== "prompt" && (selected.has(j) || j === step);
      const isLater = kind === "prompt" || (!isCurrent && j > last);
      const isPinned = inSpan(j) || (pin !== null && pin.kind !== "prompt" && pin.kind !== "span" && pin.index === j);
      mark(span, isCurrent, isLater, isPinned);
      tint(span, text && !isLater && !isCurrent && kind === "answer" ? text[nContext + j] : null);
    });
  }
  function paintCandidates() {
    const box = $("#candidates");
    const sel = shown();
    const run = runs[sel.run];
    const single = sel.kind === "answer" || sel.kind === "candidate"; // not a prompt token, not a span
    const has = run && single && run.data.candidates.length && run.array(variants[0], "candidates");
    const texts = has ? run.data.candidates[sel.index] : [];
    while (box.children.length < texts.length) {
      const button = make("button");
      button.type = "button";
      button.dataset.candidateIndex = String(box.children.length);
      box.appendChild(button);
    }
    [...box.children].forEach((button, k) => {
      button.hidden = k >= texts.length;
      if (button.hidden) return;
      const probs = run.data.candidate_probs;
      const p = probs.length ? probs[sel.index][k] : null;
      const label = visible(texts[k]) + (p === null ? "" : "  " + (100 * p).toFixed(1) + "%");
      if (button.textContent !== label) button.textContent = label;
      button.title = JSON.stringify(texts[k]);
      button.classList.toggle("selected", sel.kind === "candidate" && sel.candidate === k);
    });
  }
  function paintStatus() {
    const sel = shown();
    const run = runs[sel.run];
    let what;
    if (sel.kind === "prompt") what = "prompt token " + sel.index;
    else if (sel.kind === "span") {
      const phrase = run.answerTexts.slice(sel.index, sel.stop).join("");
      what = "answer tokens " + sel.index + "–" + (sel.stop - 1) + " “" + visible(phrase) + "” as one map (" + spanRule + ")";
    }
    else {
      const text = run.answerTexts[sel.index];
      const probs = run.data.answer_probs;
      const p = probs ? " (p = " + (100 * probs[sel.index]).toFixed(1) + "%" + (run.data.mode === "teacher-forced" ? ", forced" : "") + ")" : "";
      what = "answer token " + sel.index + " “" + visible(text === undefined ? "" : text) + "”" + p;
      if (sel.kind === "candidate") what = "candidate " + (sel.candidate + 1) + " at " + what;
    }
    const from = runs.length > 1 ? runTitle(run) + ": " : "";
    setText($("#status"), from + what + " · " + variants.join(" | ") + (pinned && !hover ? " · pinned" : ""));
  }
  function paint() {
    if (!variants.length) {
      $("#status").textContent = "No maps are stored for this sample: run `tamx explain` on the run, then render again.";
      return;
    }
    const sel = shown();
    if (!runs[sel.run] || (!runs[sel.run].data.answer_words.length && sel.kind === "answer")) return;
    for (const run of runs) {
      const s = selectionFor(run);
      run.columns.forEach((column, k) => {
        const rows = rowsOf(run, column.variant, s);
        paintColumn(column, rows, s);
        paintFaith(run, column, s);
        if (k === 0) paintText(run, s, rows ? rows.text : null);
      });
      if (!run.columns.length) paintText(run, s, null);
    }
    const textFrom = variants.length > 1 ? "Text colours: " + variants[0] + "'s relevance (the first ticked variant)." : "";
    setText($("#text-source"), textFrom);
    paintCandidates();
    paintStatus();
    const spanned = sel.kind === "span" ? "-" + sel.stop + ":" + spanRule : "";
    document.body.dataset.painted = sel.kind + ":" + sel.index + spanned + ":" + sel.candidate + ":" + variants.join("+");
  }

  // ---------------------------------------------------------------- events
  function tokenOf(target) {
    const span = target.closest && target.closest("[data-answer-index], [data-prompt-index]");
    if (!span) return null;
    const run = Number(span.dataset.run);
    if (span.dataset.answerIndex !== undefined) return { run, kind: "answer", index: Number(span.dataset.answerIndex), candidate: -1 };
    if (!runs[run].array(variants[0], "prompt")) return null;
    return { run, kind: "prompt", index: Number(span.dataset.promptIndex), candidate: -1 };
  }
  const same = (a, b) => a && b && a.run === b.run && a.kind === b.kind && a.index === b.index && a.candidate === b.candidate;
  function onOver(event) {
    const token = tokenOf(event.target);
    if (same(token, hover)) return;
    hover = token;
    paint();
  }
  function onLeave() {
    if (hover === null) return;
    hover = null;
    paint();
  }
  function pin(token) {
    pinned = token;
    hover = null;
    paint();
  }
  // Answer tokens a..b (either order) of run `r` as one pinned span; grouping widens it to whole words.
  function pinSpan(r, a, b) {
    let start = Math.min(a, b);
    let stop = Math.max(a, b) + 1;
    if (grouping()) {
      const words = runs[r].data.answer_words;
      while (start > 0 && words[start - 1] === words[start]) start--;
      while (stop < words.length && words[stop] === words[stop - 1]) stop++;
    }
    if (stop - start === 1) pin({ run: r, kind: "answer", index: start, candidate: -1 });
    else pin({ run: r, kind: "span", index: start, stop, candidate: -1 });
  }
  function step(delta) {
    const sel = shown();
    const run = runs[sel.run];
    const words = run.data.answer_words;
    const n = words.length;
    if (!n) return;
    let index = sel.kind === "prompt" ? 0 : sel.kind === "span" && delta > 0 ? sel.stop - 1 : sel.index;
    if (grouping()) {
      const next = words.indexOf(Math.max(0, Math.min(words[n - 1], words[index] + delta)));
      index = next < 0 ? index : next;
    } else {
      index = Math.max(0, Math.min(n - 1, index + delta));
    }
    pin({ run: sel.run, kind: "answer", index, candidate: -1 });
  }
  function onCellMove(event) {
    const figure = event.target.closest("figure.frame");
    const column = figure && runs.flatMap((r) => r.columns).find((c) => c.element.contains(figure));
    const entry = column && column.canvases.find((c) => c.canvas.parentElement === figure);
    if (!entry) return;
    const rect = entry.canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    const out = $("#cell");
    if (x < 0 || y < 0 || x >= 1 || y >= 1) {
      out.textContent = "outside the map: the model never saw this part of the image";
      return;
    }
    const r = Math.floor(y * entry.frame.height);
    const c = Math.floor(x * entry.frame.width);
    if (!column.rows) {
      out.textContent = "cell (" + r + ", " + c + "): no map";
      return;
    }
    const q = column.rows.map[entry.frame.offset + r * entry.frame.width + c];
    let text = "cell (" + r + ", " + c + ") of " + (entry.frame.label || "image") + ": " + (q / 255).toFixed(3) + " of the scale";
    if (column.scale && column.scale.single) {
      text += " ≈ raw " + fmt(column.scale.low + (q / 255) * (column.scale.high - column.scale.low));
    }
    out.textContent = text;
  }
  function setOpacity() {
    const opacity = $("#opacity");
    for (const run of runs) for (const column of run.columns) for (const c of column.canvases) c.canvas.style.opacity = String(opacity.value / 100);
  }
  function bindOnce() {
    const conversations = $("#conversations");
    conversations.addEventListener("mouseover", onOver);
    conversations.addEventListener("mouseleave", onLeave);
    conversations.addEventListener("click", (event) => {
      const token = tokenOf(event.target);
      if (!token) return;
      const anchor = pinned && pinned.run === token.run && (pinned.kind === "answer" || pinned.kind === "span") ? pinned : null;
      if (event.shiftKey && anchor && token.kind === "answer") pinSpan(token.run, anchor.index, token.index);
      else pin(token);
    });
    // a drag over answer tokens: mouse down on one, up on another of the same answer
    conversations.addEventListener("mousedown", (event) => {
      const token = tokenOf(event.target);
      dragFrom = token && token.kind === "answer" && !event.shiftKey ? token : null;
      if (dragFrom) event.preventDefault(); // no text selection while dragging
    });
    document.addEventListener("mouseup", (event) => {
      const from = dragFrom;
      dragFrom = null;
      const token = from && tokenOf(event.target);
      if (token && token.kind === "answer" && token.run === from.run && token.index !== from.index) pinSpan(from.run, from.index, token.index);
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        hover = null;
        pin(null);
      } else if (event.key === "ArrowRight" || event.key === "ArrowDown") step(1);
      else if (event.key === "ArrowLeft" || event.key === "ArrowUp") step(-1);
      else return;
      event.preventDefault();
    });
    $("#candidates").addEventListener("click", (event) => {
      const button = event.target.closest("[data-candidate-index]");
      const sel = shown();
      if (button) pin({ run: sel.run, kind: "candidate", index: sel.kind === "prompt" ? 0 : sel.index, candidate: Number(button.dataset.candidateIndex) });
    });
    $("#variants").addEventListener("change", (event) => {
      const checked = [...document.querySelectorAll("input[name=variant]:checked")].map((i) => i.value);
      if (!checked.length) {
        event.target.checked = true;
        return;
      }
      showVariants(checked);
    });
    $("#media").addEventListener("mousemove", onCellMove);
    $("#opacity").addEventListener("input", setOpacity);
    $("#group-words").addEventListener("change", paint);
    $("#scale").addEventListener("change", (event) => setScale(event.target.value));
    $("#span-rule").addEventListener("change", (event) => setSpanRule(event.target.value));
    $("#show-template").addEventListener("change", (event) => document.body.classList.toggle("show-template", event.target.checked));
  }
  // Colour by this scale ("map" or "joint"): the bars' labels, the maps and the text follow.
  function setScale(name) {
    if (!(name in SCALE_LABELS)) return;
    scale = name;
    $("#scale").value = name;
    for (const run of runs) for (const column of run.columns) setText(column.mid, SCALE_LABELS[scale]);
    paint();
  }
  // A span's map: the mean of its token maps, or "weighted" by each one's total positive activation.
  function setSpanRule(name) {
    if (name !== "mean" && name !== "weighted") return;
    spanRule = name;
    $("#span-rule").value = name;
    paint();
  }
  // Show these variants side by side, in the page's order (the boxes follow).
  function showVariants(names) {
    variants = variantsOf().filter((v) => names.includes(v));
    for (const input of document.querySelectorAll("input[name=variant]")) input.checked = variants.includes(input.value);
    const sel = pinned;
    if (sel && sel.kind !== "answer" && !runs[sel.run].array(variants[0], sel.kind === "prompt" ? "prompt" : "candidates")) pinned = { ...sel, kind: "answer", candidate: -1 };
    buildMedia();
    paint();
  }
  function buildVariantControls(previous) {
    const names = variantsOf();
    const box = $("#variants");
    box.replaceChildren(make("legend", "", "variants (tick two or more to compare)"));
    variants = previous.filter((v) => names.includes(v));
    if (!variants.length) variants = (D.shown_variants || []).filter((v) => names.includes(v));
    if (!variants.length && names.length) variants = [names[0]];
    for (const name of names) {
      const label = make("label");
      const input = make("input");
      input.type = "checkbox";
      input.name = "variant";
      input.value = name;
      input.checked = variants.includes(name);
      label.append(input, " " + name);
      box.appendChild(label);
    }
  }

  // Re-render the page from a page-data payload; the pinned token stays where it still exists.
  function load(data) {
    D = data;
    if (scale === null) scale = data.scale in SCALE_LABELS ? data.scale : "map"; // the first data sets it, the control after
    $("#scale").value = scale;
    runs = (data.runs || [data]).map(newRun);
    lut = decode(runs[0].data.lut).values;
    buildVariantControls(variants);
    const header = runs.map(runTitle).join("  vs  ");
    $("#model").textContent = header;
    const notice = [...new Set(runs.map((r) => r.data.notice).filter(Boolean))].join(" "); // once, not once per run
    $("#notice").textContent = notice;
    $("#notice").hidden = !notice;
    const conversations = $("#conversations");
    conversations.replaceChildren(...runs.map(buildConversation));
    const keep = (token) => {
      if (!token || !runs[token.run]) return null;
      const n = token.kind === "prompt" ? runs[token.run].promptSpans.length : runs[token.run].answerSpans.length;
      return token.index < n && (token.kind !== "span" || token.stop <= n) ? token : null;
    };
    pinned = keep(pinned);
    hover = null;
    buildMedia();
    for (const run of runs) for (const v of variants) if (run.data.variants[v]) for (const [name, value] of Object.entries(run.data.variants[v])) if (value && value.data) run.array(v, name);
    paint();
  }

  bindOnce();
  load(JSON.parse(document.getElementById("tamx-data").textContent));
  // The page's API (tamx serve, notebooks, tests): load(data) re-renders from a page_data payload;
  // show(names) ticks exactly these variants (names the page lacks are ignored; none: no change);
  // setScale(name) colours by "map" or "joint"; setSpanRule(name) aggregates spans by "mean" or "weighted";
  // spanMap(variant, start, stop, rule) is the raw map of answer tokens start..stop-1 of the first run, as
  // the page computes it (tamx.spans); state is the current sample, variants, scale and token or span.
  window.tamx = {
    load,
    setSpanRule,
    spanMap(variant, start, stop, rule = spanRule) {
      const values = runs.length ? spanMap(runs[0], variant, start, stop, rule) : null;
      return values ? Array.from(values) : null;
    },
    show(names) {
      if (variantsOf().some((v) => names.includes(v))) showVariants(names);
    },
    setScale,
    get state() {
      const sel = shown();
      return {
        sample: D.id,
        variant: variants[0] || null,
        variants: [...variants],
        scale,
        run: sel.run,
        kind: sel.kind,
        index: sel.index,
        candidate: sel.candidate,
        stop: sel.kind === "span" ? sel.stop : null,
        spanRule,
        pinned: pinned ? { ...pinned } : null,
      };
    },
  };
  document.body.dataset.readyMs = performance.now().toFixed(1); // since navigation start
  document.body.dataset.ready = "1";
})();
