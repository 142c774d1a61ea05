// tamx serve: live controls over the report page (run and sample browser, explain settings with
// the map method and layer where the sample recorded more than the last layer, save as variant,
// figure download, compare, and in model mode an upload form with its queue).
// The page itself is the report page; this script only fetches JSON from the server and calls
// window.tamx.load(data). Every string from the server is shown through textContent.
(() => {
  "use strict";
  const tamx = window.tamx;
  const $ = (selector) => document.querySelector(selector);
  const params = new URLSearchParams(location.search);
  let config = null;
  let data = JSON.parse(document.getElementById("tamx-data").textContent);
  let run = null;
  let live = null; // the settings the "live" variant was computed for

  function element(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }
  function say(message, isError = false) {
    const status = $("#serve-status");
    if (!status) {
      document.body.dataset.serveError = message;
      return;
    }
    status.textContent = message;
    status.classList.toggle("error", isError);
  }
  async function api(url, options) {
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({ message: response.statusText }));
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }
  const q = (value) => encodeURIComponent(value);
  const sampleUrl = (runId, sampleId) => "/api/runs/" + q(runId) + "/samples/" + q(sampleId);

  // ---------------------------------------------------------------- panel
  // What each setting does (tooltips, and the help line under the controls).
  const HELP = {
    method:
      "Map method: TAM, or a baseline the sample's encode recorded (attention and rollout with " +
      "`tamx encode --attention`, Grad-CAM with `--gradients`); a baseline's filter starts at none and ECI does not apply.",
    layer:
      "Layer whose states the map is computed from: -1 the last, others as recorded by " +
      "`tamx encode --layers` (Grad-CAM: the layer it was recorded at).",
    eci:
      "ECI (estimated causal inference, Eq. 4) removes from an answer token's map what the earlier " +
      "tokens already explain: relevance weights them by their relevance to it, uniform by a plain mean " +
      "(ECI-mean), off skips it.",
    filter:
      "Denoising filter run over each image and video frame of the map: rank-gaussian is the paper's, " +
      "none shows the raw map.",
    kernel:
      "The filter's window in map cells: odd, at most the longest side of the largest grid " +
      "(a wider one is refused).",
  };
  function options(select, values, labels) {
    select.replaceChildren(...values.map((value, i) => element("option", { value, text: labels ? labels[i] : value })));
  }
  function buildPanel() {
    const panel = element("section", { id: "serve", "aria-label": "tamx serve controls" });
    panel.append(
      element("div", { class: "serve-row" }, [
        element("label", { text: "run " }, [element("select", { id: "serve-run" })]),
        element("label", { text: "sample " }, [element("select", { id: "serve-sample" })]),
        element("a", { id: "serve-compare", href: "/compare", text: "compare side by side" }),
      ]),
      element("form", { id: "serve-settings", class: "serve-row" }, [
        element("label", { id: "serve-method-label", text: "method ", title: HELP.method, hidden: "" }, [
          element("select", { id: "serve-method", name: "method" }),
        ]),
        element("label", { id: "serve-layer-label", text: "layer ", title: HELP.layer, hidden: "" }, [
          element("select", { id: "serve-layer", name: "layer" }),
        ]),
        element("label", { text: "ECI ", title: HELP.eci }, [element("select", { id: "serve-eci", name: "eci" })]),
        element("label", { text: "filter ", title: HELP.filter }, [element("select", { id: "serve-filter", name: "filter" })]),
        element("label", { text: "kernel ", title: HELP.kernel }, [
          element("input", { id: "serve-kernel", name: "kernel_size", type: "number", min: "1", step: "2", value: String(config.defaults.kernel_size) }),
        ]),
        element("input", { id: "serve-variant-name", placeholder: "variant name", "aria-label": "variant name" }),
        element("label", {}, [element("input", { id: "serve-all", type: "checkbox" }), " all samples"]),
        element("button", { id: "serve-save", type: "button", text: "save as variant" }),
        element("a", { id: "serve-figure", href: "#", download: "", text: "download figure" }),
      ]),
      element("p", { id: "serve-help" }),
      element("div", { id: "serve-status", role: "status", "aria-live": "polite" })
    );
    document.body.prepend(panel);
    // The report's "all samples" link leads to the server's list of runs and samples.
    const back = $("#to-index");
    if (back) back.textContent = "\u2190 runs and samples";
    options($("#serve-eci"), config.eci_modes);
    options($("#serve-filter"), config.filters);
    $("#serve-eci").value = config.defaults.eci; // the settings `tamx explain` uses unless told (tamx/defaults.py)
    $("#serve-filter").value = config.defaults.filter;
    methodControls();
    if (config.model) buildUpload(panel);
  }
  // The method and layer selectors offer what the sample recorded (data.methods, tam first); a
  // sample with nothing but the last layer shows neither, and the page is the plain one.
  const methodOf = (name) => (data.methods || []).find((m) => m.name === name) || null;
  const layerText = (layer) => String(layer) + (layer === -1 ? " (last)" : "");
  function methodControls() {
    const methods = data.methods || [];
    const extra = methods.length > 1 || methods.some((m) => m.layers.some((layer) => layer !== -1));
    const select = $("#serve-method");
    const previous = select.value || "tam";
    const layer = $("#serve-layer").value;
    options(select, methods.map((m) => m.name), methods.map((m) => m.title));
    $("#serve-method-label").hidden = !extra;
    select.disabled = methods.length < 2; // TAM alone, at several layers
    $("#serve-help").textContent =
      (extra ? HELP.method + " " + HELP.layer + " " : "") + HELP.eci + " " + HELP.filter + " " + HELP.kernel +
      " A change recomputes the maps as the “live” variant, which is not stored until saved.";
    if (!methods.length) return layerChoices(null);
    select.value = methodOf(previous) ? previous : "tam";
    if (select.value !== previous) methodChosen(); // not recorded for this sample: TAM, with its filter
    else layerChoices(layer);
  }
  // The chosen method's layers (kept where it has the one shown); ECI only where it applies (tam).
  function layerChoices(keep) {
    const method = methodOf($("#serve-method").value);
    const layers = method ? method.layers : [];
    const select = $("#serve-layer");
    options(select, layers.map(String), layers.map(layerText));
    if (layers.map(String).includes(keep)) select.value = keep;
    select.disabled = layers.length < 2;
    $("#serve-layer-label").hidden = $("#serve-method-label").hidden || !layers.length;
    $("#serve-eci").disabled = method !== null && method.name !== "tam";
  }
  // A method chosen: its layers, and the filter `tamx explain --method` uses unless told.
  function methodChosen() {
    layerChoices(null);
    const method = methodOf($("#serve-method").value);
    if (method) $("#serve-filter").value = method.filter;
  }
  function buildUpload(panel) {
    const form = element("form", { id: "serve-upload", class: "serve-row" }, [
      element("input", { id: "serve-files", name: "files", type: "file", multiple: "", accept: "image/*,video/*" }),
      element("textarea", { id: "serve-prompt", name: "prompt", rows: "2", placeholder: "prompt", "aria-label": "prompt" }),
      element("input", { id: "serve-answer", name: "answer", placeholder: "forced answer (optional)", "aria-label": "forced answer" }),
      element("input", { id: "serve-id", name: "id", placeholder: "sample id (optional)", "aria-label": "sample id" }),
      element("button", { id: "serve-generate", type: "submit", text: "generate with " + config.model.id }),
      element("span", { id: "serve-queue" }),
    ]);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      generate(form).catch((error) => say(error.message, true));
    });
    panel.append(form);
  }

  // ---------------------------------------------------------------- browsing
  let runs = [];
  async function loadRuns(selectRun) {
    runs = await api("/api/runs");
    options($("#serve-run"), runs.map((r) => r.id), runs.map((r) => r.id + " (" + r.samples + ", " + r.model + ")"));
    run = selectRun && runs.some((r) => r.id === selectRun) ? selectRun : runs.length ? runs[0].id : null;
    if (run !== null) $("#serve-run").value = run;
  }
  async function loadSamples(selectSample) {
    if (run === null) return;
    const samples = await api("/api/runs/" + q(run) + "/samples");
    options($("#serve-sample"), samples.map((s) => s.id), samples.map((s) => s.id + (s.answer ? " · " + s.answer.slice(0, 40) : "")));
    const chosen = selectSample && samples.some((s) => s.id === selectSample) ? selectSample : samples.length ? samples[0].id : null;
    if (chosen !== null) $("#serve-sample").value = chosen;
  }
  // A live variant on screen follows to the next sample (recomputed for it, the same variants ticked).
  async function showSample(sampleId) {
    const shown = tamx.state.variants;
    const keepLive = live !== null && shown.includes(config.live_variant);
    data = await api(sampleUrl(run, sampleId));
    live = null;
    tamx.load(data);
    methodControls();
    nameSample();
    history.replaceState(null, "", "/?run=" + q(run) + "&sample=" + q(sampleId));
    updateCompareLink();
    if (keepLive) {
      await recompute();
      tamx.show(shown);
    }
    document.body.dataset.serveSample = run + "/" + sampleId;
  }
  // The page's heading and tab title name the sample shown (the template wrote the first one's).
  function nameSample() {
    const heading = $("header .title strong");
    if (heading) heading.textContent = data.id;
    document.title = data.id ? data.id + " \u00b7 " + run + " \u00b7 tamx serve" : "tamx serve";
  }
  function updateCompareLink() {
    if (!data.id) return;
    const here = run + "/" + data.id;
    $("#serve-compare").href = "/compare?left=" + q(here) + "&right=" + q(here);
  }
  // Compare with the same sample in another run where one has it, else with another run's first sample.
  async function compareTarget() {
    const here = run + "/" + data.id;
    for (const other of runs.filter((r) => r.id !== run)) {
      const samples = await api("/api/runs/" + q(other.id) + "/samples");
      if (samples.some((s) => s.id === data.id)) return other.id + "/" + data.id;
    }
    const other = runs.find((r) => r.id !== run);
    return other ? other.id : here;
  }

  // ---------------------------------------------------------------- live settings
  // The live request's settings: TAM at the last layer sends eci, filter and kernel_size alone
  // (the plain page's); another method or layer adds method= and layer= and drops the ECI it ignores.
  function settings() {
    const method = methodOf($("#serve-method").value);
    const layer = $("#serve-layer").value;
    const plain = method === null || (method.name === "tam" && layer === "-1");
    const wanted = method === null || method.name === "tam" ? { eci: $("#serve-eci").value } : {};
    wanted.filter = $("#serve-filter").value;
    wanted.kernel_size = $("#serve-kernel").value;
    if (!plain) wanted.method = method.name;
    if (!plain && method.layers.length) wanted.layer = layer;
    return wanted;
  }
  const settingsKey = (s) => Object.values(s).join("/");
  // The live variant goes first: its column is the leftmost beside the stored ones compared to it.
  function withLive(view) {
    const stored = { ...data.variants };
    delete stored[config.live_variant];
    data.variants = { [config.live_variant]: view, ...stored };
  }
  async function recompute() {
    if (!data.id) return;
    const wanted = settings();
    const query = new URLSearchParams(wanted).toString();
    say("computing " + settingsKey(wanted) + " ...");
    let result;
    try {
      result = await api(sampleUrl(run, data.id) + "/live?" + query);
    } catch (error) {
      if (settingsKey(settings()) !== settingsKey(wanted)) return;
      throw new Error(error.message + markStale(wanted));
    }
    if (settingsKey(settings()) !== settingsKey(wanted)) return; // a newer change is on its way
    delete document.body.dataset.liveStale;
    withLive(result.view);
    live = wanted;
    tamx.load(data);
    // The live maps are shown: alone at first; the stored variants ticked beside them stay.
    if (!tamx.state.variants.includes(config.live_variant)) tamx.show([config.live_variant]);
    $("#serve-variant-name").placeholder = result.name;
    say("live: " + result.label + " · " + settingsKey(wanted) + " (not stored; save it as a variant to keep it)");
    document.body.dataset.live = settingsKey(wanted);
    document.body.dataset.liveLabel = result.label;
  }
  // Refused settings: the live maps on screen are still the last ones computed; say so on them.
  function markStale(refused) {
    const columns = document.querySelectorAll(".column[data-variant='" + config.live_variant + "']");
    if (live === null || !columns.length) return "";
    const note = "stale: computed for " + settingsKey(live) + "; " + settingsKey(refused) + " was refused";
    for (const column of columns) {
      column.classList.add("stale");
      let mark = column.querySelector(".stale-note");
      if (!mark) {
        mark = element("div", { class: "stale-note" });
        column.querySelector("h2").after(mark);
      }
      mark.textContent = note;
    }
    document.body.dataset.liveStale = settingsKey(refused);
    return " (the live maps shown are still for " + settingsKey(live) + ")";
  }
  async function save() {
    const body = { ...settings(), kernel_size: Number($("#serve-kernel").value) };
    const name = $("#serve-variant-name").value.trim();
    if (name) body.name = name;
    if (!$("#serve-all").checked) body.samples = [data.id];
    say("saving ...");
    const result = await api("/api/runs/" + q(run) + "/variants", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const liveView = data.variants[config.live_variant];
    data = await api(sampleUrl(run, data.id));
    if (liveView) withLive(liveView);
    tamx.load(data);
    say("saved variant " + result.variant + ": " + result.done.length + " sample(s) explained, " + result.skipped.length + " already stored");
  }
  // The figure of the shown token in the first (leftmost) shown variant.
  function figureHref() {
    const state = tamx.state;
    const query = new URLSearchParams({ index: state.kind === "prompt" ? 0 : state.index });
    if (state.variant === config.live_variant && live) Object.entries(live).forEach(([k, v]) => query.set(k, v));
    else query.set("variant", state.variant);
    return sampleUrl(run, data.id) + "/figure.png?" + query.toString();
  }

  // ---------------------------------------------------------------- model mode
  async function generate(form) {
    const body = new FormData(form);
    if (!$("#serve-files").files.length) throw new Error("choose one or more images, or a video");
    $("#serve-generate").disabled = true;
    try {
      let job = await api("/api/generate", { method: "POST", body });
      while (job.state === "queued" || job.state === "running") {
        $("#serve-queue").textContent = job.state === "queued" ? "in line: " + job.ahead + " before yours" : "generating ...";
        document.body.dataset.job = job.state + ":" + job.ahead;
        await new Promise((resolve) => setTimeout(resolve, 400));
        job = await api("/api/jobs/" + q(job.id));
      }
      $("#serve-queue").textContent = "";
      document.body.dataset.job = job.state;
      if (job.state === "failed") throw new Error("generation failed: " + job.error);
      await loadRuns(job.run);
      await loadSamples(job.sample);
      await showSample(job.sample);
      say("generated " + job.sample + " into run " + job.run);
    } finally {
      $("#serve-generate").disabled = false;
    }
  }

  // ---------------------------------------------------------------- start
  function guard(fn) {
    return (...args) => fn(...args).catch((error) => say(error.message, true));
  }
  async function start() {
    config = await api("/api/config");
    buildPanel();
    await loadRuns(params.get("run"));
    await loadSamples(params.get("sample") || data.id);
    updateCompareLink();
    if (data.id) nameSample();
    $("#serve-run").addEventListener("change", guard(async (event) => {
      run = event.target.value;
      await loadSamples(null);
      if ($("#serve-sample").value) await showSample($("#serve-sample").value);
    }));
    $("#serve-sample").addEventListener("change", guard((event) => showSample(event.target.value)));
    $("#serve-settings").addEventListener("change", (event) => {
      if (event.target.id === "serve-method") methodChosen();
      if (["serve-method", "serve-layer", "serve-eci", "serve-filter", "serve-kernel"].includes(event.target.id)) guard(recompute)();
    });
    $("#serve-settings").addEventListener("submit", (event) => event.preventDefault());
    $("#serve-save").addEventListener("click", guard(save));
    $("#serve-compare").addEventListener("click", (event) => {
      if (!data.id) return;
      event.preventDefault();
      guard(async () => {
        location.href = "/compare?left=" + q(run + "/" + data.id) + "&right=" + q(await compareTarget());
      })();
    });
    $("#serve-figure").addEventListener("click", (event) => {
      if (!data.id || !tamx.state.variant) {
        event.preventDefault();
        say("no maps to draw yet", true);
        return;
      }
      event.currentTarget.href = figureHref();
    });
    if (!data.id) say("no samples yet" + (config.model ? ": upload images or a video, type a prompt and generate" : ""));
    document.body.dataset.serveSample = data.id ? run + "/" + data.id : "";
    document.body.dataset.serveReady = "1";
  }
  start().catch((error) => say(error.message, true));
})();
