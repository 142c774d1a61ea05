(() => {
  "use strict";
  let D = JSON.parse(document.getElementById("tamx-data").textContent);
  const $ = (selector) => document.querySelector(selector);

  // ---------------------------------------------------------------- packed arrays
  function decode(packed) {
    const binary = atob(packed.data);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const Type = { uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array }[packed.dtype];
    return { values: new Type(bytes.buffer), shape: packed.shape };
  }
  const decoded = new Map();
  function array(variant, name) {
    const key = variant + "/" + name;
    if (!decoded.has(key)) {
      const packed = D.variants[variant] && D.variants[variant][name];
      decoded.set(key, packed ? decode(packed) : null);
    }
    return decoded.get(key);
  }
  function row(arr, index) {
    const width = arr.shape[arr.shape.length - 1];
    return arr.values.subarray(index * width, (index + 1) * width);
  }
  const lut = decode(D.lut).values;

  // ---------------------------------------------------------------- state
  const state = { sample: D.id, variant: D.default_variant, kind: "answer", index: 0, candidate: -1 };
  let answerWords = D.answer_words;
  let nAnswer = answerWords.length;

  // ---------------------------------------------------------------- media
  const canvases = []; // {canvas, ctx, image, offset, h, w}
  function buildMedia() {
    const media = $("#media");
    media.replaceChildren();
    canvases.length = 0;
    D.blocks.forEach((block) => {
      const box = document.createElement("div");
      box.className = "block " + block.kind;
      const title = document.createElement("h3");
      title.textContent = block.label + " · " + block.grid.join("×");
      box.appendChild(title);
      const frames = document.createElement("div");
      frames.className = "frames";
      const [, h, w] = block.grid;
      block.slices.forEach((slice, t) => {
        const sources = slice.images.length ? slice.images : [null];
        sources.forEach((source, j) => {
          const figure = document.createElement("figure");
          figure.className = "frame";
          figure.style.margin = "0";
          let base;
          if (source === null) {
            base = document.createElement("div");
            base.className = "blank";
            base.style.aspectRatio = w + " / " + h;
          } else {
            base = document.createElement("img");
            base.src = D.images[source];
            base.alt = block.label;
          }
          figure.appendChild(base);
          const canvas = document.createElement("canvas");
          canvas.width = w;
          canvas.height = h;
          canvas.dataset.block = String(D.blocks.indexOf(block));
          canvas.dataset.slice = String(t);
          figure.appendChild(canvas);
          if (block.kind === "video") {
            const caption = document.createElement("figcaption");
            caption.textContent = slice.frames.length ? "frame " + slice.frames[j % slice.frames.length] : "t=" + t;
            figure.appendChild(caption);
          }
          frames.appendChild(figure);
          const ctx = canvas.getContext("2d");
          canvases.push({ canvas, ctx, image: ctx.createImageData(w, h), offset: slice.offset, h, w });
        });
      });
      box.appendChild(frames);
      media.appendChild(box);
    });
  }

  // ---------------------------------------------------------------- text
  const answerSpans = [];
  const promptSpans = [];
  function buildConversation() {
    const conversation = $("#conversation");
    conversation.replaceChildren();
    answerSpans.length = 0;
    promptSpans.length = 0;
    D.segments.forEach((segment) => {
      const div = document.createElement("div");
      div.className = "segment " + segment.kind;
      if (segment.kind === "vision") {
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.textContent = "[" + D.blocks[segment.block].label + "]";
        div.appendChild(chip);
      } else {
        segment.tokens.forEach(([text, index]) => {
          const span = document.createElement("span");
          span.className = "tok " + segment.kind;
          span.textContent = text;
          if (segment.kind === "answer") {
            span.dataset.answerIndex = String(index);
            span.dataset.word = String(answerWords[index]);
            answerSpans[index] = span;
          } else if (segment.kind === "prompt") {
            span.dataset.promptIndex = String(index);
            promptSpans[index] = span;
          }
          div.appendChild(span);
        });
      }
      conversation.appendChild(div);
    });
  }

  // ---------------------------------------------------------------- painting
  const grouping = () => $("#group-words").checked;
  function wordMembers(index) {
    const word = answerWords[index];
    const members = [];
    for (let i = 0; i < nAnswer; i++) if (answerWords[i] === word) members.push(i);
    return members;
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
  function current() {
    const v = state.variant;
    if (state.kind === "candidate") {
      const candidates = array(v, "candidates");
      const k = candidates.shape[1];
      return { map: row(candidates, state.index * k + state.candidate), text: null };
    }
    if (state.kind === "prompt") {
      return { map: row(array(v, "prompt"), state.index), text: row(array(v, "prompt_text"), state.index) };
    }
    const members = grouping() ? wordMembers(state.index) : [state.index];
    return { map: maxRows(array(v, "answer"), members), text: maxRows(array(v, "answer_text"), members), members };
  }
  function paintMaps(map) {
    for (const c of canvases) {
      const pixels = c.image.data;
      const size = c.h * c.w;
      for (let i = 0; i < size; i++) {
        const value = map[c.offset + i] * 3;
        pixels[4 * i] = lut[value];
        pixels[4 * i + 1] = lut[value + 1];
        pixels[4 * i + 2] = lut[value + 2];
        pixels[4 * i + 3] = 255;
      }
      c.ctx.putImageData(c.image, 0, 0);
    }
  }
  // Spans remember what they show, so a token switch only touches those that change.
  function tint(span, value) {
    const shown = value === null || value === 0 ? 0 : value;
    if (span.tintValue === shown) return;
    span.tintValue = shown;
    if (!shown) {
      span.style.backgroundColor = "";
      return;
    }
    const i = shown * 3;
    span.style.backgroundColor = "rgba(" + lut[i] + "," + lut[i + 1] + "," + lut[i + 2] + "," + (0.15 + 0.7 * (shown / 255)).toFixed(3) + ")";
  }
  function mark(span, isCurrent, isLater) {
    const flags = (isCurrent ? 1 : 0) | (isLater ? 2 : 0);
    if (span.flags === flags) return;
    span.flags = flags;
    span.classList.toggle("current", isCurrent);
    span.classList.toggle("later", isLater);
  }
  function paintText(text, members) {
    const nContext = D.n_context;
    const selected = new Set(members || []);
    promptSpans.forEach((span, j) => {
      const isLater = state.kind === "prompt" && j >= state.index;
      mark(span, state.kind === "prompt" && j === state.index, isLater);
      tint(span, text && !isLater ? text[j] : null);
    });
    const step = state.kind === "prompt" ? -1 : state.index;
    answerSpans.forEach((span, j) => {
      const isCurrent = state.kind !== "prompt" && (selected.has(j) || j === step);
      const isLater = state.kind === "prompt" || (!isCurrent && j > step);
      mark(span, isCurrent, isLater);
      tint(span, text && !isLater && !isCurrent && state.kind === "answer" ? text[nContext + j] : null);
    });
  }
  function paintCandidates() {
    const box = $("#candidates");
    const shown = state.kind !== "prompt" && D.candidates.length && array(state.variant, "candidates");
    const texts = shown ? D.candidates[state.index] : [];
    while (box.children.length < texts.length) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.candidateIndex = String(box.children.length);
      box.appendChild(button);
    }
    [...box.children].forEach((button, k) => {
      button.hidden = k >= texts.length;
      if (button.hidden) return;
      const p = D.candidate_probs.length ? D.candidate_probs[state.index][k] : null;
      const label = JSON.stringify(texts[k]).slice(1, -1) + (p === null ? "" : "  " + (100 * p).toFixed(1) + "%");
      if (button.textContent !== label) button.textContent = label;
      button.classList.toggle("selected", state.kind === "candidate" && state.candidate === k);
    });
  }
  function paintStatus() {
    let what;
    if (state.kind === "prompt") what = "prompt token " + state.index;
    else if (state.kind === "candidate") what = "candidate " + (state.candidate + 1) + " at answer token " + state.index;
    else what = "answer token " + state.index;
    $("#status").textContent = what + " · " + state.variant;
  }
  function paint() {
    if (state.variant === null) {
      $("#status").textContent = "No maps are stored for this sample: run `tamx explain` on the run, then render again.";
      return;
    }
    if (!nAnswer && state.kind === "answer") return;
    const { map, text, members } = current();
    paintMaps(map);
    paintText(text, members);
    paintCandidates();
    paintStatus();
    document.body.dataset.painted = state.kind + ":" + state.index + ":" + state.candidate + ":" + state.variant;
  }

  // ---------------------------------------------------------------- events
  function select(kind, index, candidate = -1) {
    state.kind = kind;
    state.index = index;
    state.candidate = candidate;
    paint();
  }
  function onToken(event) {
    const target = event.target.closest("[data-answer-index], [data-prompt-index]");
    if (!target) return;
    if (target.dataset.answerIndex !== undefined) select("answer", Number(target.dataset.answerIndex));
    else if (array(state.variant, "prompt")) select("prompt", Number(target.dataset.promptIndex));
  }
  function step(delta) {
    if (!nAnswer) return;
    let index = state.kind === "prompt" ? 0 : state.index;
    if (grouping()) {
      const word = answerWords[index] + delta;
      const next = answerWords.indexOf(Math.max(0, Math.min(answerWords[nAnswer - 1], word)));
      index = next < 0 ? index : next;
    } else {
      index = Math.max(0, Math.min(nAnswer - 1, index + delta));
    }
    select("answer", index);
  }
  function setOpacity() {
    const opacity = $("#opacity").value / 100;
    canvases.forEach((c) => (c.canvas.style.opacity = String(opacity)));
  }
  function bind() {
    const conversation = $("#conversation");
    conversation.addEventListener("mouseover", onToken);
    conversation.addEventListener("click", onToken);
    document.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight" || event.key === "ArrowDown") step(1);
      else if (event.key === "ArrowLeft" || event.key === "ArrowUp") step(-1);
      else return;
      event.preventDefault();
    });
    $("#candidates").addEventListener("click", (event) => {
      const button = event.target.closest("[data-candidate-index]");
      if (button) select("candidate", state.kind === "prompt" ? 0 : state.index, Number(button.dataset.candidateIndex));
    });
    $("#variants").addEventListener("change", (event) => {
      if (event.target.name !== "variant") return;
      state.variant = event.target.value;
      if (state.kind === "candidate" && !array(state.variant, "candidates")) state.kind = "answer";
      if (state.kind === "prompt" && !array(state.variant, "prompt")) state.kind = "answer";
      paint();
    });
    $("#opacity").addEventListener("input", setOpacity);
    setOpacity();
    $("#group-words").addEventListener("change", paint);
    $("#show-template").addEventListener("change", (event) => document.body.classList.toggle("show-template", event.target.checked));
  }

  // ---------------------------------------------------------------- live reload (minimal, for `tamx serve`;
  // the report rewrite supersedes this block): re-render from a new page-data payload, keeping
  // the selected token, variant and candidate where they still exist.
  function buildVariants() {
    const legend = $("#variants legend");
    $("#variants").replaceChildren(legend);
    for (const name of Object.keys(D.variants)) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "variant";
      input.value = name;
      input.checked = name === state.variant;
      label.append(input, " " + name);
      $("#variants").appendChild(label);
    }
  }
  function load(data) {
    D = data;
    decoded.clear();
    answerWords = D.answer_words;
    nAnswer = answerWords.length;
    state.sample = D.id;
    const title = $("header .title strong");
    if (title) title.textContent = D.id;
    if (!(state.variant in D.variants)) state.variant = D.default_variant;
    if (state.kind === "prompt" && (state.index >= D.n_context || !array(state.variant, "prompt"))) state.kind = "answer";
    if (state.kind === "candidate" && (state.candidate >= (D.candidates[state.index] || []).length || !array(state.variant, "candidates"))) {
      state.kind = "answer";
    }
    if (state.kind !== "prompt" && state.index >= nAnswer) state.index = 0;
    if (state.kind === "answer") state.candidate = -1;
    buildVariants();
    buildMedia();
    buildConversation();
    setOpacity();
    paint();
  }
  window.tamx = { load, state };

  buildMedia();
  buildConversation();
  bind();
  if (state.variant !== null) {
    // Decode the shown variant now, so that the first token switch is as fast as the others.
    for (const [name, value] of Object.entries(D.variants[state.variant])) if (value.data) array(state.variant, name);
  }
  paint();
  document.body.dataset.readyMs = performance.now().toFixed(1); // since navigation start
  document.body.dataset.ready = "1";
})();
