/* Collage playground: draw an edit, run it through the public REST API, see the result.
 *
 * Plain JavaScript, no build step, no framework and no dependencies, on purpose: the service installs
 * with pip alone (no node toolchain at install time, nothing generated to keep in sync), and the page is
 * small enough (one file) that modules, a bundler or a UI framework would cost more than they save.
 *
 * Nothing here knows a family. Every form is generated from what GET /v1/models publishes for each op
 * (params_schema, inputs_schema), and each canvas tool is chosen by the shape of an input field:
 *   - an asset id whose name or description says mask      -> brush / eraser layer (uploaded as a grey PNG)
 *   - an asset id described as drawn strokes (edges)        -> thin-stroke layer
 *   - any other asset id                                    -> image picker (example, bundled, upload, result)
 *   - a list of [x, y] points                               -> draggable keypoints (pose)
 *   - a list of objects that each hold a mask               -> one layer per item (regions, references);
 *     an item's [dx, dy] pair ("shift")                     -> drag a shift arrow
 *   - a list of objects with width and height               -> size, aspect and top-corner handles
 *   - an object with a seed (a latent of the model)         -> seed / class / projection controls, and a
 *                                                              preview through the model's own `sample` op
 * so a new op of any family appears here without front-end work.
 */
"use strict";

const BUNDLED_EXAMPLES = ["astronaut", "coffee", "chelsea"]; // service/playground/examples/*.png (64x64 skimage crops)
const ASSET_ID = /^[0-9a-f]{64}$/;
const TERMINAL = ["succeeded", "completed_with_errors", "failed", "cancelled"];
const LAYER_COLORS = ["#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#00c7be", "#ffcc00", "#ff2d55"];
// OpenPose's COCO-18 limbs (nose, neck, r_shoulder, ... l_ear), drawn when a model names 18 keypoints
const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12], [12, 13],
  [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];

const $ = (id) => document.getElementById(id);
const state = {
  key: "", models: [], model: null, op: null, fitSchema: null,
  fields: [],          // top-level fields of the current op form: {scope, name, get(), set(v), error}
  fitFields: [],
  layers: [],          // canvas layers (masks, strokes): {id, label, kind, canvas, color, touched, assetId, ghost}
  activeLayer: null,
  pose: null,          // {field, names, points, touched, selected}
  shifts: [],          // {item, layer, get(), set([dx, dy])}
  boxes: null,         // {field, items: [{width, height, top_left, top_right}], active, base: [h, w], multiple}
  tool: null, brush: 4, history: [],
  background: null, bgSize: null, // image drawn under the layers, native [w, h] of the canvas
  cursor: [0, 0], results: [], lastResult: null, job: null, previewToken: 0,
  runs: 0,             // edits (or jobs) finished, failed ones included: tests and tools wait on it
};
window.playground = state; // for tests and the console

// ---------------------------------------------------------------------------------------------- API
function authHeaders() { return state.key ? { Authorization: "Bearer " + state.key } : {}; }

async function api(method, path, body) {
  const headers = authHeaders();
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const response = await fetch(path, { method, headers, body: payload, cache: "no-store", credentials: "omit" });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const problem = data && typeof data === "object" ? data : { status: response.status, detail: text || response.statusText };
    const error = new Error(problem.detail || problem.title || `HTTP ${response.status}`);
    error.problem = problem; error.status = response.status;
    throw error;
  }
  return data;
}

async function uploadBlob(blob, name) {
  const form = new FormData();
  form.append("file", blob, name || "upload.png");
  return (await api("POST", "/v1/assets", form)).asset_id;
}

async function assetUrl(id) { return (await api("GET", "/v1/assets/" + id)).url; }

// ------------------------------------------------------------------------------------------ schemas
function resolve(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    const target = (root.$defs || {})[name] || {};
    const { $ref, ...rest } = schema;
    return { ...target, ...rest };
  }
  return schema || {};
}

/** anyOf [X, null] -> X with the outer description/default/title, marked nullable. */
function unwrap(schema, root) {
  const s = resolve(schema, root);
  if (Array.isArray(s.anyOf)) {
    const options = s.anyOf.map((x) => resolve(x, root));
    const real = options.filter((x) => x.type !== "null");
    const nullable = real.length < options.length;
    if (real.length === 1) {
      const { anyOf, ...outer } = s;
      return { ...real[0], ...outer, description: s.description || real[0].description, nullable };
    }
    return { ...s, anyOf: real, nullable };
  }
  return s;
}

const isAssetId = (s) => s.type === "string" && s.pattern === ASSET_ID.source;
const isPair = (s) => s.type === "array" && Array.isArray(s.prefixItems) && s.prefixItems.length === 2;
function isPointList(s, root) {
  if (s.type !== "array" || !s.items) return false;
  const item = unwrap(s.items, root);
  return isPair(item) && (item.prefixItems || []).every((p) => p.type === "number");
}
function objectProps(s, root) { const o = unwrap(s, root); return o.type === "object" && o.properties ? o : null; }
function isMaskName(name, s) { return /mask$/i.test(name) || (/\bmask\b/i.test(s.description || "") && /white/i.test(s.description || "")); }
function isStrokeField(name, s) { return /edges?$/i.test(name) && /drawn|stroke/i.test(s.description || ""); }
function itemSchema(s, root) { return s.type === "array" && s.items ? objectProps(s.items, root) : null; }
function isLayerList(s, root) {
  const item = itemSchema(s, root);
  return !!(item && item.properties.mask && isAssetId(unwrap(item.properties.mask, root)));
}
function isBoxList(s, root) {
  const item = itemSchema(s, root);
  return !!(item && item.properties.width && item.properties.height);
}
function isLatent(s, root) { const o = objectProps(s, root); return !!(o && o.properties.seed && !o.properties.mask); }
const titleOf = (name) => name.charAt(0).toUpperCase() + name.slice(1).replace(/_/g, " ");

// --------------------------------------------------------------------------------------------- DOM
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "hidden" || k === "checked" || k === "disabled" || k === "multiple" || k === "required") node[k] = !!v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const idOf = (path) => path.join("-").replace(/[^A-Za-z0-9_-]/g, "_");

/** Label, control, description and the error slot that problem+json details are shown in. */
function wrapField(path, label, control, s, required) {
  const id = idOf(path);
  const help = s.description ? el("p", { class: "help", id: id + "-help" }, s.description) : null;
  const error = el("p", { class: "field-error", id: "err-" + id, role: "alert" });
  if (control.setAttribute) {
    control.id = control.id || id;
    control.setAttribute("aria-describedby", [help && help.id, error.id].filter(Boolean).join(" "));
    if (required) control.setAttribute("aria-required", "true");
  }
  const text = label + (required ? " (required)" : "");
  const labelNode = control.type === "checkbox" ? null : el("label", { for: control.id }, text);
  const body = control.type === "checkbox"
    ? el("label", { class: "inline", for: control.id }, control, " " + text)
    : control;
  return el("div", { class: "field", "data-field": id }, labelNode, body, help, error);
}

// ------------------------------------------------------------------------------------ generic controls
/** A control for one schema property: {node, get(), set(v)}; get() returns undefined to leave it out. */
function makeControl(path, name, schema, root, required, ctx) {
  const s = unwrap(schema, root);
  const id = idOf(path);
  const label = titleOf(name, s);
  const hasDefault = s.default !== undefined && s.default !== null;

  if (isAssetId(s) && ctx.inputs && !/result_id/.test(s.description || "")) {
    if (isMaskName(name, s)) return layerControl(path, label, s, required, "mask");
    if (isStrokeField(name, s)) return layerControl(path, label, s, required, "edges");
    return imageControl(path, name, label, s, required, ctx);
  }
  if (isPointList(s, root) && ctx.inputs && !state.pose && (required || /^(target|pose)/.test(name))) {
    return poseControl(path, name, label, s, required);
  }
  if (isLayerList(s, root) && ctx.inputs) return itemListControl(path, name, label, s, root, required, ctx, true);
  if (isBoxList(s, root)) return itemListControl(path, name, label, s, root, required, ctx, false);
  if (isLatent(s, root) && ctx.inputs) return objectControl(path, label, objectProps(s, root), root, required, ctx, true);
  if (/^class(_id)?$/.test(name) && state.model && state.model.classes && (s.type === undefined || s.anyOf || s.type === "integer" || s.type === "string")) {
    const select = el("select", { id }, required ? null : el("option", { value: "" }, "(none)"),
      state.model.classes.map((c, i) => el("option", { value: c }, `${c} (${i})`)));
    select.value = state.model.classes[0]; // a class by default: the ops that take one need it
    if (s.default !== undefined && s.default !== null) select.value = String(s.default);
    return { node: wrapField(path, label, select, s, required), get: () => select.value === "" ? undefined : select.value,
      set: (v) => { select.value = v === undefined || v === null ? "" : String(v); }, control: select };
  }
  if (Array.isArray(s.enum)) {
    const select = el("select", { id }, (required || hasDefault) ? null : el("option", { value: "" }, "(default)"),
      s.enum.map((v) => el("option", { value: JSON.stringify(v) }, String(v))));
    if (hasDefault) select.value = JSON.stringify(s.default);
    return { node: wrapField(path, label, select, s, required), get: () => select.value === "" ? undefined : JSON.parse(select.value),
      set: (v) => { select.value = v === undefined ? "" : JSON.stringify(v); }, control: select };
  }
  if (s.type === "boolean") {
    const box = el("input", { id, type: "checkbox", checked: s.default === true });
    return { node: wrapField(path, label, box, s, required), get: () => box.checked, set: (v) => { box.checked = !!v; }, control: box };
  }
  if (s.type === "number" || s.type === "integer") return numberControl(path, label, s, required);
  if (s.type === "string") {
    const input = el("input", { id, type: "text", value: hasDefault ? s.default : "", spellcheck: "false" });
    return { node: wrapField(path, label, input, s, required), get: () => input.value.trim() === "" ? undefined : input.value.trim(),
      set: (v) => { input.value = v === undefined || v === null ? "" : v; }, control: input };
  }
  if (s.type === "array" && s.items) {
    const item = unwrap(s.items, root);
    if (Array.isArray(item.enum)) { // a set of choices: one checkbox each
      const boxes = item.enum.map((v, i) => el("input", { type: "checkbox", id: `${id}-${i}`, value: JSON.stringify(v),
        checked: Array.isArray(s.default) && s.default.includes(v) }));
      const group = el("fieldset", { id, class: "checks" }, el("legend", {}, label + (required ? " (required)" : "")),
        boxes.map((b, i) => el("label", { class: "inline", for: b.id }, b, " " + item.enum[i])));
      const wrap = el("div", { class: "field" }, group, s.description ? el("p", { class: "help" }, s.description) : null,
        el("p", { class: "field-error", id: "err-" + id, role: "alert" }));
      return { node: wrap, get: () => boxes.filter((b) => b.checked).map((b) => JSON.parse(b.value)),
        set: (v) => boxes.forEach((b) => { b.checked = (v || []).includes(JSON.parse(b.value)); }), control: boxes[0] };
    }
    if (item.type === "string" || item.type === "integer" || item.type === "number") { // a short list: comma separated
      const numeric = item.type !== "string";
      const input = el("input", { id, type: "text", spellcheck: "false",
        value: Array.isArray(s.default) ? s.default.join(", ") : "", placeholder: numeric ? "e.g. 0, 1, 2" : "comma separated" });
      const get = () => {
        const parts = input.value.split(",").map((x) => x.trim()).filter(Boolean);
        if (!parts.length) return undefined;
        return numeric ? parts.map(Number) : parts;
      };
      return { node: wrapField(path, label + " (comma separated)", input, s, required), get,
        set: (v) => { input.value = Array.isArray(v) ? v.join(", ") : ""; }, control: input };
    }
  }
  return jsonControl(path, label, s, required);
}

function numberControl(path, label, s, required) {
  const id = idOf(path);
  const min = s.minimum ?? s.exclusiveMinimum, max = s.maximum ?? s.exclusiveMaximum;
  const step = s.type === "integer" ? 1 : (max !== undefined && min !== undefined ? Math.min(0.01, (max - min) / 100) : "any");
  const input = el("input", { id, type: "number", min, max, step, value: s.default ?? "", inputmode: s.type === "integer" ? "numeric" : "decimal" });
  const node = wrapField(path, label + (min !== undefined && max !== undefined ? ` (${min} to ${max})` : ""), input, s, required);
  if (min !== undefined && max !== undefined && max - min <= 1000) { // a bounded range: a slider beside the number
    const range = el("input", { type: "range", id: id + "-range", min, max, step, value: s.default ?? min,
      "aria-label": label + " slider" });
    range.addEventListener("input", () => { input.value = range.value; input.dispatchEvent(new Event("change")); });
    input.addEventListener("input", () => { if (input.value !== "") range.value = input.value; });
    node.insertBefore(range, input.nextSibling);
  }
  return { node, control: input,
    get: () => input.value === "" ? undefined : Number(input.value),
    set: (v) => { input.value = v === undefined || v === null ? "" : v; input.dispatchEvent(new Event("input")); } };
}

function jsonControl(path, label, s, required) {
  const id = idOf(path);
  const value = s.default !== undefined && s.default !== null ? JSON.stringify(s.default) : "";
  const area = el("textarea", { id, spellcheck: "false", rows: 2 });
  area.value = value;
  return { node: wrapField(path, label + " (JSON)", area, s, required), control: area,
    get: () => {
      if (area.value.trim() === "") return undefined;
      try { return JSON.parse(area.value); } catch (e) { throw fieldError(path, "not valid JSON: " + e.message); }
    },
    set: (v) => { area.value = v === undefined || v === null ? "" : JSON.stringify(v); } };
}

function fieldError(path, message) {
  const error = new Error(message);
  error.problem = { status: 0, detail: message, errors: [{ loc: path, msg: message }] };
  return error;
}

/** An object: its properties as controls (latents: seed, class, projection; items: mask, shift, ...). */
function objectControl(path, label, s, root, required, ctx, isLatentObject) {
  const props = s.properties;
  const box = el("fieldset", { class: "object", id: idOf(path) }, el("legend", {}, label + (required ? " (required)" : "")));
  if (s.description) box.append(el("p", { class: "help" }, s.description));
  const advanced = el("details", {}, el("summary", {}, "more (latents, soft classes, layers)"));
  const controls = {};
  for (const [name, prop] of Object.entries(props)) {
    const p = unwrap(prop, root);
    const req = (s.required || []).includes(name);
    const sub = [...path, name];
    let control;
    if (isPair(p) && /shift|offset/i.test(name)) control = shiftControl(sub, titleOf(name, p), p, ctx);
    else control = makeControl(sub, name, prop, root, req, ctx);
    controls[name] = control;
    const common = name === "seed" || /^class(_id)?$/.test(name) || name === "projection" || control.layer || control.shift
      || (p.type === "number" || p.type === "integer") || req;
    (common ? box : advanced).append(control.node);
  }
  if (advanced.children.length > 1) box.append(advanced);
  box.append(el("p", { class: "field-error", id: "err-" + idOf(path), role: "alert" }));
  const n = ctx.seedDefault ?? 1;
  if (controls.seed) controls.seed.set(n); // a seed by default, so that the latent names an image at once
  const classes = (state.model && state.model.classes) || [];
  if (controls.class_id && classes.length) controls.class_id.set(classes[n % classes.length]);
  if (isLatentObject) box.addEventListener("change", () => schedulePreview());
  const self = {
    node: box, controls, latent: isLatentObject,
    get: () => {
      const out = {};
      for (const [name, c] of Object.entries(controls)) {
        const v = c.get();
        if (v !== undefined) out[name] = v;
      }
      if (out.projection || out.z || out.w) delete out.seed; // exactly one source of the latent
      return Object.keys(out).length ? out : undefined;
    },
    set: (v) => { for (const [name, c] of Object.entries(controls)) c.set(v ? v[name] : undefined); },
    restore: (snap) => restoreInto(self, snap),
  };
  return self;
}

// ------------------------------------------------------------------------------------- image inputs
function imageControl(path, name, label, s, required, ctx) {
  const id = idOf(path);
  const examples = Object.keys((state.model && state.model.examples) || {});
  const select = el("select", { id: id + "-source" },
    el("option", { value: "" }, required ? "— choose an image —" : "(none)"),
    examples.length ? el("optgroup", { label: "the model's examples" },
      examples.map((e, i) => el("option", { value: "example:" + e }, `example ${i + 1}`))) : null,
    el("optgroup", { label: "bundled with the page" }, BUNDLED_EXAMPLES.map((b) => el("option", { value: "bundled:" + b }, b))),
    el("optgroup", { label: "results of this session", class: "results-group" },
      state.results.map((r) => el("option", { value: "result:" + r.id }, `${r.op} result ${r.id.slice(0, 8)}`))));
  const file = el("input", { type: "file", id: id + "-file", accept: "image/png,image/jpeg,image/webp" });
  const idInput = el("input", { type: "text", id, spellcheck: "false", placeholder: "asset id (64 hex characters)", pattern: ASSET_ID.source });
  const thumb = el("img", { class: "thumb", alt: label + " preview", hidden: true });
  const error = el("p", { class: "field-error", id: "err-" + id, role: "alert" });
  const help = el("p", { class: "help", id: id + "-help" }, s.description || "");
  idInput.setAttribute("aria-describedby", `${help.id} ${error.id}`);
  const box = el("fieldset", { class: "image-field", "data-image-field": name },
    el("legend", {}, label + (required ? " (required)" : "")),
    el("label", { for: select.id }, "Pick"), select,
    el("label", { for: file.id }, "or upload your own"), file,
    el("label", { for: id }, "Asset id"), idInput, thumb, help, error);
  let generation = 0; // a pick still uploading must not overwrite a later choice
  const control = { node: box, image: true, name, control: idInput, objectUrl: null, size: null,
    get: () => idInput.value.trim() === "" ? undefined : idInput.value.trim(),
    set: (v) => { generation++; idInput.value = v || ""; select.value = v && examples.includes(v) ? "example:" + v : ""; showImage(null); } };

  async function showImage(blob) {
    thumb.hidden = true; control.size = null;
    const assetId = idInput.value.trim();
    if (!blob && !ASSET_ID.test(assetId)) { imageChanged(control); return; }
    try {
      const src = blob ? URL.createObjectURL(blob) : await assetUrl(assetId);
      await new Promise((ok, fail) => { thumb.onload = ok; thumb.onerror = () => fail(new Error("the image did not load")); thumb.src = src; });
      control.size = [thumb.naturalWidth, thumb.naturalHeight];
      thumb.hidden = false;
      error.textContent = "";
    } catch (e) { error.textContent = e.message; }
    imageChanged(control);
  }
  async function pick(value) {
    error.textContent = "";
    const g = ++generation;
    if (!value) { idInput.value = ""; return showImage(null); }
    const [kind, ref] = [value.slice(0, value.indexOf(":")), value.slice(value.indexOf(":") + 1)];
    try {
      if (kind === "bundled") {
        const blob = await (await fetch(`/playground/examples/${ref}.png`)).blob();
        const id = await uploadBlob(blob, ref + ".png");
        if (g !== generation) return undefined;
        idInput.value = id;
        return showImage(blob);
      }
      idInput.value = ref;
      return showImage(null);
    } catch (e) { showProblem(e, path); }
  }
  select.addEventListener("change", () => pick(select.value));
  file.addEventListener("change", async () => {
    if (!file.files.length) return;
    const blob = file.files[0];
    generation++;
    try { idInput.value = await uploadBlob(blob, blob.name); select.value = ""; await showImage(blob); } catch (e) { showProblem(e, path); }
  });
  idInput.addEventListener("change", () => showImage(null));
  control.thumb = thumb;
  control.pickDefault = (index) => {
    if (!required) return Promise.resolve();
    const value = examples.length ? "example:" + examples[index % examples.length] : "bundled:" + BUNDLED_EXAMPLES[index % BUNDLED_EXAMPLES.length];
    select.value = value;
    return pick(value);
  };
  control.refreshResults = () => {
    const group = select.querySelector(".results-group");
    group.replaceChildren(...state.results.map((r) => el("option", { value: "result:" + r.id }, `${r.op} result ${r.id.slice(0, 8)}`)));
  };
  return control;
}

/** The canvas shows the first image input of the op; keypoints follow the example images picked. */
function imageChanged(control) {
  const images = allControls().filter((c) => c.image);
  if (images[0] === control) {
    if (control.size && control.thumb.src) setBackground(control.thumb, control.size);
    else if (!hasLatentPreview()) setBackground(null, null);
  }
  if (state.pose && !state.pose.touched) initPose();
  render();
}

function allControls(list) {
  const out = [];
  const walk = (c) => { out.push(c); if (c.controls) Object.values(c.controls).forEach(walk); if (c.items) c.items.forEach((i) => walk(i)); };
  (list || state.fields).forEach(walk);
  return out;
}

// ------------------------------------------------------------------------------ canvas-backed inputs
function nativeSize() {
  if (state.bgSize) return state.bgSize;
  const m = state.model || {};
  if (Array.isArray(m.image_size)) return [m.image_size[1], m.image_size[0]];
  if (m.resolution) return [m.resolution, m.resolution];
  return [64, 64];
}

function newLayer(label, kind) {
  const [w, h] = nativeSize();
  const canvas = el("canvas", { width: w, height: h });
  const layer = { id: "layer" + Math.random().toString(36).slice(2), label, kind, canvas, touched: false, assetId: null, ghost: null,
    color: kind === "edges" ? "#00e5ff" : LAYER_COLORS[state.layers.filter((l) => l.kind === "mask").length % LAYER_COLORS.length] };
  state.layers.push(layer);
  if (!state.activeLayer) state.activeLayer = layer;
  return layer;
}

function layerControl(path, label, s, required, kind) {
  const layer = newLayer(label, kind);
  const status = el("p", { class: "help", id: idOf(path) + "-status" }, "nothing drawn yet");
  const paint = el("button", { type: "button", id: idOf(path) + "-paint", "aria-pressed": "false" }, `Draw ${label.toLowerCase()}`);
  paint.addEventListener("click", () => { state.activeLayer = layer; setTool(kind === "edges" ? "stroke" : "brush"); });
  const swatch = el("span", { class: "swatch", "aria-hidden": "true" }, "■ ");
  swatch.style.color = layer.color;
  const error = el("p", { class: "field-error", id: "err-" + idOf(path), role: "alert" });
  const help = s.description ? el("p", { class: "help" }, s.description) : null;
  const node = el("div", { class: "field layer-field", "data-layer": layer.id },
    el("span", { class: "label" }, swatch, label + (required ? " (required)" : "")), paint, status, help, error);
  layer.paintButton = paint; layer.status = status;
  return { node, layer, control: paint,
    get: async () => {
      if (layer.touched) {
        if (!layer.assetId) layer.assetId = await uploadBlob(await layerPng(layer), "mask.png");
        return layer.assetId;
      }
      return layer.ghost ? layer.ghost.id : undefined;
    },
    set: (v) => {
      layer.touched = false; layer.assetId = null; layer.canvas.getContext("2d").clearRect(0, 0, layer.canvas.width, layer.canvas.height);
      layer.ghost = null;
      if (v && ASSET_ID.test(v)) { // a mask of a reopened edit: shown until something is drawn over it
        layer.ghost = { id: v, image: null };
        assetUrl(v).then((url) => { const img = new Image(); img.onload = () => { layer.ghost.image = img; render(); }; img.src = url; })
          .catch(() => {});
        status.textContent = "the mask of the reopened edit (draw to replace it)";
      }
    } };
}

function poseControl(path, name, label, s, required) {
  const names = (state.model && state.model.keypoint_names) || [];
  state.pose = { field: name, names, points: [], touched: false, selected: 0, required };
  const area = el("textarea", { id: idOf(path), rows: 2, spellcheck: "false" });
  const status = el("p", { class: "help" }, required ? "drag the points on the canvas" : "optional: drag a point on the canvas to set this pose");
  state.pose.area = area; state.pose.status = status;
  area.addEventListener("change", () => {
    try { state.pose.points = JSON.parse(area.value); state.pose.touched = true; render(); } catch (_) { /* shown on run */ }
  });
  const node = wrapField(path, label + " (JSON, or drag on the canvas)", area, s, required);
  node.insertBefore(status, node.querySelector(".field-error"));
  return { node, control: area, pose: true,
    get: () => {
      if (!required && !state.pose.touched) return undefined;
      try { return JSON.parse(area.value); } catch (e) { throw fieldError(path, "keypoints are not valid JSON: " + e.message); }
    },
    set: (v) => { if (Array.isArray(v)) { state.pose.points = v.map((p) => (p ? [...p] : null)); state.pose.touched = true; syncPose(); } } };
}

function syncPose() {
  if (!state.pose) return;
  state.pose.area.value = JSON.stringify(state.pose.points.map((p) => (p ? [round2(p[0]), round2(p[1])] : null)));
  const select = $("keypoint");
  if (select) [...select.options].forEach((o, i) => { o.textContent = keypointLabel(i); });
}
const round2 = (x) => Math.round(x * 100) / 100;
function keypointLabel(i) { const p = state.pose.points[i]; return `${state.pose.names[i] || "point " + i}${p ? "" : " (hidden)"}`; }

/** Keypoints to start from: the example image's own (or its target_<field>), else a centred copy of any example's. */
function initPose() {
  const pose = state.pose;
  const examples = (state.model && state.model.examples) || {};
  const images = allControls().filter((c) => c.image);
  const prefix = pose.field.replace(/_?keypoints$/, "");
  const ordered = [...images.filter((c) => c.name === prefix), ...images];
  let points = null;
  for (const c of ordered) {
    const ex = examples[c.get()];
    if (!ex) continue;
    points = ex[pose.field] || ex.keypoints;
    if (points) break;
  }
  if (!points) { const any = Object.values(examples)[0]; points = any ? any.keypoints : null; }
  if (!points) points = Array.from({ length: pose.names.length || 18 }, () => null);
  pose.points = points.map((p) => (p ? [...p] : null));
  syncPose();
}

/** A [dx, dy] pair of an item (a reference's shift): two numbers and the canvas shift tool. */
function shiftControl(path, label, s, ctx) {
  const id = idOf(path);
  const dx = el("input", { type: "number", id: id + "-dx", step: 1, value: 0 });
  const dy = el("input", { type: "number", id: id + "-dy", step: 1, value: 0 });
  const node = el("div", { class: "field", id },
    el("span", { class: "label" }, label + " (output pixels; or drag with the shift tool)"),
    el("div", { class: "pair" }, el("div", {}, el("label", { for: dx.id }, "dx"), dx), el("div", {}, el("label", { for: dy.id }, "dy"), dy)),
    s.description ? el("p", { class: "help" }, s.description) : null,
    el("p", { class: "field-error", id: "err-" + id, role: "alert" }));
  const shift = { get: () => [Number(dx.value) || 0, Number(dy.value) || 0], set: (v) => { dx.value = v[0]; dy.value = v[1]; render(); }, layer: null };
  dx.addEventListener("input", render); dy.addEventListener("input", render);
  state.shifts.push(shift);
  ctx.lastShift = shift;
  return { node, shift, control: dx, get: () => shift.get(), set: (v) => shift.set(Array.isArray(v) ? v : [0, 0]) };
}

/** A list of objects: regions / references (each with its mask layer), or retarget output boxes. */
function itemListControl(path, name, label, s, root, required, ctx, withLayers) {
  const item = itemSchema(s, root);
  const list = el("div", { class: "items" });
  const add = el("button", { type: "button", id: idOf(path) + "-add" }, `Add ${singular(label)}`);
  const box = el("fieldset", { id: idOf(path) }, el("legend", {}, label + (required ? " (required)" : "")),
    s.description ? el("p", { class: "help" }, s.description) : null, list, add,
    el("p", { class: "field-error", id: "err-" + idOf(path), role: "alert" }));
  const control = { node: box, items: [], get: null, set: null };
  const max = s.maxItems ?? 8, min = Math.max(1, s.minItems ?? 1);

  function addItem(value) {
    const index = control.items.length;
    const sub = [...path, String(index)];
    const subCtx = { ...ctx, seedDefault: index + 2 };
    const c = objectControl(sub, `${singular(label)} ${index + 1}`, item, root, true, subCtx, false);
    c.node.classList.add("item");
    const maskControl = c.controls.mask;
    if (maskControl && maskControl.layer) {
      c.node.style.borderLeftColor = maskControl.layer.color;
      maskControl.layer.label = `${singular(label)} ${index + 1}`;
      state.activeLayer = maskControl.layer;
      if (c.controls.shift && c.controls.shift.shift) c.controls.shift.shift.layer = maskControl.layer;
    }
    if (!withLayers) { // output boxes
      state.boxes = state.boxes || { field: name, items: [], active: 0 };
      const boxItem = { control: c };
      state.boxes.items.push(boxItem);
      const [h, w] = (state.model && state.model.image_size) || [64, 64];
      const defaults = [[h, w * 2], [h * 2, Math.round(w * 0.5)], [h, w]][index % 3];
      if (c.controls.height) c.controls.height.set(defaults[0]);
      if (c.controls.width) c.controls.width.set(defaults[1]);
      const select = el("button", { type: "button", id: idOf(sub) + "-select" }, "Edit on the canvas");
      select.addEventListener("click", () => { state.boxes.active = control.items.indexOf(c); setTool("resize"); render(); });
      c.node.append(el("div", { class: "item-actions" }, select));
      c.node.addEventListener("input", render);
    }
    const remove = el("button", { type: "button", id: idOf(sub) + "-remove" }, "Remove");
    remove.addEventListener("click", () => {
      if (control.items.length <= min) return;
      rebuildWithout(control, c);
    });
    (c.node.querySelector(".item-actions") || c.node.appendChild(el("div", { class: "item-actions" }))).append(remove);
    control.items.push(c);
    list.append(c.node);
    add.disabled = control.items.length >= max;
    if (value) c.set(value);
    render();
    return c;
  }
  function clearItems(ctrl) {
    ctrl.items.forEach((i) => { const l = i.controls.mask && i.controls.mask.layer; if (l) dropLayer(l); });
    if (!withLayers && state.boxes) state.boxes.items = [];
    state.shifts = state.shifts.filter((sh) => !ctrl.items.some((i) => i.controls.shift && i.controls.shift.shift === sh));
    ctrl.items = []; list.replaceChildren();
    if (state.boxes) state.boxes.active = 0;
  }
  function rebuildWithout(ctrl, removed) {
    const values = ctrl.items.filter((i) => i !== removed).map((i) => snapshot(i));
    clearItems(ctrl);
    values.forEach((v) => addItem(null).restore(v));
    state.history = [];
    renderToolbar(); render();
  }
  add.addEventListener("click", () => { addItem(null); renderToolbar(); });
  control.get = async () => {
    const out = [];
    for (const c of control.items) {
      const v = {};
      for (const [k, sub] of Object.entries(c.controls)) { const x = await sub.get(); if (x !== undefined) v[k] = x; }
      if (v.projection || v.z) delete v.seed;
      out.push(v);
    }
    return out;
  };
  control.set = (values) => {
    if (!Array.isArray(values) || !values.length) return;
    clearItems(control);
    values.slice(0, max).forEach((v) => addItem(v));
    renderToolbar(); render();
  };
  for (let i = 0; i < min; i++) addItem(null);
  return control;
}

/** An item's state, to rebuild a list after a removal (layers keep their strokes). */
function snapshot(c) {
  const values = {};
  for (const [k, sub] of Object.entries(c.controls)) if (!sub.layer) { try { values[k] = sub.get(); } catch (_) { /* kept empty */ } }
  const layer = c.controls.mask && c.controls.mask.layer;
  const pixels = layer ? layer.canvas.getContext("2d").getImageData(0, 0, layer.canvas.width, layer.canvas.height) : null;
  return { values, pixels, touched: layer && layer.touched };
}
function restoreInto(c, snap) {
  for (const [k, v] of Object.entries(snap.values)) if (c.controls[k]) c.controls[k].set(v);
  const layer = c.controls.mask && c.controls.mask.layer;
  if (layer && snap.pixels) { layer.canvas.getContext("2d").putImageData(snap.pixels, 0, 0); layer.touched = snap.touched; }
}

function singular(label) { return label.replace(/ies$/i, "y").replace(/s$/i, "").toLowerCase(); }
function dropLayer(layer) {
  state.layers = state.layers.filter((l) => l !== layer);
  if (state.activeLayer === layer) state.activeLayer = state.layers[0] || null;
}

// ----------------------------------------------------------------------------------- latent preview
function hasLatentPreview() {
  return !!(state.model && state.model.ops.some((o) => o.name === "sample") && state.fields.some((f) => f.latent));
}

/** The base image of a latent input (seed, class), drawn by the model's own `sample` op, under the layers. */
function schedulePreview() {
  if (!hasLatentPreview()) return;
  const token = ++state.previewToken;
  setTimeout(() => { if (token === state.previewToken) preview(token); }, 250);
}

async function preview(token) {
  const latentField = state.fields.find((f) => f.latent);
  const sample = state.model.ops.find((o) => o.name === "sample");
  const allowed = Object.keys(sample.inputs_schema.properties || {});
  let latent;
  try { latent = latentField.get(); } catch (_) { return; }
  if (!latent) return;
  const inputs = Object.fromEntries(Object.entries(latent).filter(([k]) => allowed.includes(k)));
  const params = {};
  const truncation = state.fields.find((f) => f.name === "truncation" && f.scope === "params");
  if (truncation && sample.params_schema.properties && sample.params_schema.properties.truncation) {
    const t = truncation.get(); if (t !== undefined) params.truncation = t;
  }
  try {
    const res = await api("POST", "/v1/edits", { model: state.model.name, op: "sample", params, inputs, output: { inline: true } });
    if (token !== state.previewToken) return;
    const img = new Image();
    img.onload = () => { setBackground(img, [res.width, res.height]); render(); };
    img.src = res.image_base64 ? `data:${res.content_type};base64,${res.image_base64}` : res.url;
    $("status").textContent = `base image: ${latentField.name} previewed with the ${sample.name} op`;
  } catch (e) { $("status").textContent = "no preview of the base image: " + e.message; }
}

function setBackground(img, size) {
  state.background = img;
  const changed = size && (!state.bgSize || state.bgSize[0] !== size[0] || state.bgSize[1] !== size[1]);
  state.bgSize = size;
  if (changed) resizeLayers();
  const inputImage = $("input-image");
  if (img && img.src) { enlarge(inputImage); inputImage.src = img.src; $("input-figure").hidden = false; } else $("input-figure").hidden = true;
}

function resizeLayers() {
  const [w, h] = nativeSize();
  for (const layer of state.layers) {
    if (layer.canvas.width === w && layer.canvas.height === h) continue;
    const old = layer.canvas;
    const fresh = el("canvas", { width: w, height: h });
    const ctx = fresh.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(old, 0, 0, w, h);
    layer.canvas = fresh; layer.assetId = null;
  }
  state.history = [];
  state.brush = Math.max(1, Math.round(Math.max(w, h) / 12));
  const size = $("brush-size"); if (size) { size.max = Math.max(8, Math.round(Math.max(w, h) / 2)); size.value = state.brush; $("brush-size-out").textContent = String(state.brush); }
}

// ----------------------------------------------------------------------------------- canvas & tools
function displayScale() {
  const [w, h] = canvasFrame();
  return Math.max(1, Math.floor(Math.min(512 / w, 420 / h)));
}
function canvasFrame() {
  if (state.boxes && !state.layers.length && !state.pose) {
    const [h, w] = (state.model && state.model.image_size) || [64, 64];
    const maxW = Math.max(w * 2.2, ...state.boxes.items.map((b) => boxOf(b).width * 1.1 + 4));
    const maxH = Math.max(h * 2.2, ...state.boxes.items.map((b) => boxOf(b).height * 1.1 + 4));
    return [Math.ceil(maxW), Math.ceil(maxH)];
  }
  return nativeSize();
}
function boxOf(b) {
  const c = b.control.controls;
  const num = (k, d) => { const v = c[k] ? c[k].get() : undefined; return v === undefined || isNaN(v) ? d : v; };
  return { width: num("width", 64), height: num("height", 64), top_left: num("top_left", 0), top_right: num("top_right", 0) };
}

function availableTools() {
  const tools = [];
  if (state.layers.some((l) => l.kind === "mask")) tools.push(["brush", "Brush"], ["eraser", "Eraser"]);
  if (state.layers.some((l) => l.kind === "edges")) tools.push(["stroke", "Edge stroke"]);
  if (state.layers.some((l) => l.kind === "edges") && !tools.some((t) => t[0] === "eraser")) tools.push(["eraser", "Eraser"]);
  if (state.pose) tools.push(["keypoints", "Move keypoints"]);
  if (state.shifts.length) tools.push(["shift", "Shift reference"]);
  if (state.boxes) tools.push(["resize", "Resize output"]);
  return tools;
}

function setTool(tool) {
  state.tool = tool;
  if (tool === "brush" && state.activeLayer && state.activeLayer.kind !== "mask") state.activeLayer = state.layers.find((l) => l.kind === "mask") || state.activeLayer;
  if (tool === "stroke" && (!state.activeLayer || state.activeLayer.kind !== "edges")) state.activeLayer = state.layers.find((l) => l.kind === "edges");
  renderToolbar();
  render();
}

function renderToolbar() {
  const bar = $("toolbar"), options = $("tool-options");
  const tools = availableTools();
  const hasCanvas = tools.length > 0 || state.background;
  $("canvas").hidden = !hasCanvas; $("canvas-help").hidden = !tools.length; $("canvas-empty").hidden = !!hasCanvas;
  if (!tools.some((t) => t[0] === state.tool)) state.tool = tools.length ? tools[0][0] : null;
  bar.replaceChildren(...tools.map(([id, label]) => el("button", { type: "button", id: "tool-" + id, "aria-pressed": String(state.tool === id),
    onclick: () => setTool(id) }, label)));
  if (tools.length) {
    bar.append(el("button", { type: "button", id: "tool-undo", onclick: undo, disabled: !state.history.length }, "Undo"),
      el("button", { type: "button", id: "tool-clear", onclick: clearTool }, "Clear"));
  }
  options.replaceChildren();
  const paintable = state.layers;
  if (paintable.length > 1) {
    const select = el("select", { id: "active-layer" }, paintable.map((l) => el("option", { value: l.id }, l.label)));
    select.value = state.activeLayer ? state.activeLayer.id : "";
    select.addEventListener("change", () => { state.activeLayer = state.layers.find((l) => l.id === select.value); render(); });
    options.append(el("div", {}, el("label", { for: "active-layer" }, "Layer to draw on"), select));
  }
  if (paintable.length) {
    const size = el("input", { type: "range", id: "brush-size", min: 1, max: Math.max(8, Math.round(Math.max(...nativeSize()) / 2)), value: state.brush });
    const out = el("output", { for: "brush-size", id: "brush-size-out" }, String(state.brush));
    size.addEventListener("input", () => { state.brush = Number(size.value); out.textContent = size.value; });
    options.append(el("div", {}, el("label", { for: "brush-size" }, "Brush size (pixels) ", out), size));
  }
  if (state.pose) {
    const select = el("select", { id: "keypoint" }, state.pose.points.map((_, i) => el("option", { value: i }, keypointLabel(i))));
    select.value = state.pose.selected;
    select.addEventListener("change", () => { state.pose.selected = Number(select.value); render(); });
    const hide = el("button", { type: "button", id: "keypoint-hide" }, "Hide / show point");
    hide.addEventListener("click", () => togglePoint(state.pose.selected));
    options.append(el("div", {}, el("label", { for: "keypoint" }, "Keypoint"), select), el("div", {}, hide));
  }
  for (const layer of state.layers) if (layer.paintButton) layer.paintButton.setAttribute("aria-pressed", String(layer === state.activeLayer && ["brush", "eraser", "stroke"].includes(state.tool)));
}

function pushHistory(entry) {
  state.history.push(entry);
  if (state.history.length > 50) state.history.shift();
  const undoButton = $("tool-undo"); if (undoButton) undoButton.disabled = false;
}
function snapshotLayer(layer) {
  const ctx = layer.canvas.getContext("2d");
  const pixels = ctx.getImageData(0, 0, layer.canvas.width, layer.canvas.height);
  const touched = layer.touched;
  return () => { if (layer.canvas.width === pixels.width) ctx.putImageData(pixels, 0, 0); layer.touched = touched; layerChanged(layer); };
}
function snapshotPose() {
  const points = state.pose.points.map((p) => (p ? [...p] : null)), touched = state.pose.touched;
  return () => { state.pose.points = points; state.pose.touched = touched; syncPose(); };
}
function undo() {
  const restore = state.history.pop();
  if (restore) restore();
  renderToolbar(); render();
}
function clearTool() {
  if (state.tool === "keypoints" && state.pose) { pushHistory(snapshotPose()); initPose(); state.pose.touched = false; }
  else if (state.tool === "shift") { const sh = activeShift(); if (sh) { const v = sh.get(); pushHistory(() => sh.set(v)); sh.set([0, 0]); } }
  else if (state.activeLayer) {
    const layer = state.activeLayer;
    pushHistory(snapshotLayer(layer));
    layer.canvas.getContext("2d").clearRect(0, 0, layer.canvas.width, layer.canvas.height);
    layer.touched = false; layer.ghost = null; layerChanged(layer);
  }
  render();
}
function layerChanged(layer) {
  layer.assetId = null;
  if (layer.status) layer.status.textContent = layer.touched ? "drawn (uploaded as a grey PNG when the edit runs)" : "nothing drawn yet";
}
function togglePoint(i) {
  const pose = state.pose;
  pushHistory(snapshotPose());
  const [w, h] = nativeSize();
  pose.points[i] = pose.points[i] ? null : [w / 2, h / 2];
  pose.touched = true; syncPose(); render();
}
function activeShift() { return state.shifts.find((s) => s.layer === state.activeLayer) || state.shifts[0]; }

/** A point in the canvas's own pixels (the mask's or image's, or the output frame's) -> client coordinates. */
function clientPoint(x, y) {
  const rect = $("canvas").getBoundingClientRect();
  const [w, h] = canvasFrame();
  return [rect.left + x / w * rect.width, rect.top + y / h * rect.height];
}
state.clientPoint = clientPoint;

function toNative(event) {
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  const [w, h] = canvasFrame();
  return [(event.clientX - rect.left) / rect.width * w, (event.clientY - rect.top) / rect.height * h];
}

let drag = null;
function onPointerDown(event) {
  if (!state.tool) return;
  const canvas = $("canvas");
  canvas.setPointerCapture(event.pointerId);
  const p = toNative(event);
  state.cursor = p;
  const tool = state.tool;
  if (tool === "brush" || tool === "eraser" || tool === "stroke") {
    const layer = state.activeLayer;
    if (!layer) return;
    pushHistory(snapshotLayer(layer));
    drag = { kind: "paint", layer, last: p };
    paintAt(layer, p, p);
  } else if (tool === "keypoints" && state.pose) {
    const pose = state.pose;
    const scale = displayScale();
    let best = -1, bestD = 14 / scale;
    pose.points.forEach((q, i) => { if (q) { const d = Math.hypot(q[0] - p[0], q[1] - p[1]); if (d < bestD) { best = i; bestD = d; } } });
    pushHistory(snapshotPose());
    if (best < 0) { best = pose.selected; if (pose.points[best] === undefined) return; }
    pose.selected = best;
    pose.points[best] = [...p];
    pose.touched = true;
    drag = { kind: "keypoint", index: best };
    syncPose(); const select = $("keypoint"); if (select) select.value = best;
  } else if (tool === "shift") {
    const sh = activeShift();
    if (!sh) return;
    const start = sh.get();
    pushHistory(() => sh.set(start));
    drag = { kind: "shift", shift: sh, from: p, start };
  } else if (tool === "resize" && state.boxes) {
    const b = state.boxes.items[state.boxes.active];
    if (!b) return;
    const box = boxOf(b);
    const handles = boxHandles(box);
    let best = "br", bestD = Infinity;
    for (const [k, q] of Object.entries(handles)) { const d = Math.hypot(q[0] - p[0], q[1] - p[1]); if (d < bestD) { best = k; bestD = d; } }
    const before = { ...box };
    pushHistory(() => setBox(b, before));
    drag = { kind: "box", handle: best, box: b };
    moveHandle(b, best, p);
  }
  render();
}
function onPointerMove(event) {
  if (!drag) return;
  const p = toNative(event);
  state.cursor = p;
  if (drag.kind === "paint") { paintAt(drag.layer, drag.last, p); drag.last = p; }
  else if (drag.kind === "keypoint") { state.pose.points[drag.index] = [...p]; syncPose(); }
  else if (drag.kind === "shift") drag.shift.set([Math.round(drag.start[0] + p[0] - drag.from[0]), Math.round(drag.start[1] + p[1] - drag.from[1])]);
  else if (drag.kind === "box") moveHandle(drag.box, drag.handle, p);
  render();
}
function onPointerUp() { drag = null; renderToolbar(); render(); }

function paintAt(layer, from, to) {
  const ctx = layer.canvas.getContext("2d");
  const erase = state.tool === "eraser";
  ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = "#fff";
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = layer.kind === "edges" && !erase ? Math.max(1, Math.round(state.brush / 4)) : state.brush;
  ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0] + 0.01, to[1]); ctx.stroke();
  ctx.globalCompositeOperation = "source-over";
  layer.touched = true;
  if (layer.ghost) layer.ghost = null;
  layerChanged(layer);
}

function boxHandles(box) {
  return { br: [box.width, box.height], tl: [box.top_left * box.width, 0], tr: [box.width + box.top_right * box.width, 0] };
}
function setBox(b, values) { for (const [k, v] of Object.entries(values)) if (b.control.controls[k]) b.control.controls[k].set(v); render(); }
function moveHandle(b, handle, p) {
  const box = boxOf(b);
  const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
  if (handle === "br") setBox(b, { width: Math.max(8, Math.round(p[0])), height: Math.max(8, Math.round(p[1])) });
  else if (handle === "tl") setBox(b, { top_left: round2(clamp(p[0] / box.width, -0.5, 0.5)) });
  else setBox(b, { top_right: round2(clamp((p[0] - box.width) / box.width, -0.5, 0.5)) });
}

function onKey(event) {
  const step = event.shiftKey ? 4 : 1;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { undo(); event.preventDefault(); return; }
  if (state.tool === "keypoints" && state.pose) {
    const pose = state.pose;
    if (event.key === "[" || event.key === "]") {
      pose.selected = (pose.selected + (event.key === "]" ? 1 : pose.points.length - 1)) % pose.points.length;
      const select = $("keypoint"); if (select) select.value = pose.selected;
      event.preventDefault(); render(); return;
    }
    if (moves[event.key] && pose.points[pose.selected]) {
      pushHistory(snapshotPose());
      const q = pose.points[pose.selected];
      pose.points[pose.selected] = [q[0] + moves[event.key][0], q[1] + moves[event.key][1]];
      pose.touched = true; syncPose(); event.preventDefault(); render();
    }
    return;
  }
  if (state.tool === "shift" && moves[event.key]) {
    const sh = activeShift(); if (!sh) return;
    const v = sh.get(); pushHistory(() => sh.set(v));
    sh.set([v[0] + moves[event.key][0], v[1] + moves[event.key][1]]); event.preventDefault(); return;
  }
  if (state.tool === "resize" && moves[event.key] && state.boxes) {
    const b = state.boxes.items[state.boxes.active]; if (!b) return;
    const box = boxOf(b), m = 8 * step;
    pushHistory(() => setBox(b, box));
    setBox(b, { width: Math.max(8, box.width + Math.sign(moves[event.key][0]) * m), height: Math.max(8, box.height + Math.sign(moves[event.key][1]) * m) });
    event.preventDefault(); return;
  }
  if (moves[event.key]) {
    const [w, h] = canvasFrame();
    state.cursor = [Math.max(0, Math.min(w, state.cursor[0] + moves[event.key][0])), Math.max(0, Math.min(h, state.cursor[1] + moves[event.key][1]))];
    event.preventDefault(); render(); return;
  }
  if ((event.key === " " || event.key === "Enter") && state.activeLayer && ["brush", "eraser", "stroke"].includes(state.tool)) {
    pushHistory(snapshotLayer(state.activeLayer));
    paintAt(state.activeLayer, state.cursor, state.cursor);
    event.preventDefault(); renderToolbar(); render();
  }
}

function render() {
  const canvas = $("canvas");
  const [w, h] = canvasFrame();
  const scale = displayScale();
  if (canvas.width !== w * scale || canvas.height !== h * scale) { canvas.width = w * scale; canvas.height = h * scale; }
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.background && state.background.complete && !state.boxes) ctx.drawImage(state.background, 0, 0, w * scale, h * scale);
  const tint = el("canvas", { width: w, height: h });
  const tctx = tint.getContext("2d");
  for (const layer of state.layers) {
    tctx.globalCompositeOperation = "source-over";
    tctx.clearRect(0, 0, w, h);
    if (layer.ghost && layer.ghost.image) tctx.drawImage(layer.ghost.image, 0, 0, w, h);
    tctx.drawImage(layer.canvas, 0, 0, w, h);
    tctx.globalCompositeOperation = "source-in";
    tctx.fillStyle = layer.color; tctx.fillRect(0, 0, w, h);
    ctx.globalAlpha = layer === state.activeLayer ? 0.6 : 0.35;
    if (layer.kind === "edges") ctx.globalAlpha = 0.95;
    ctx.drawImage(tint, 0, 0, w * scale, h * scale);
    ctx.globalAlpha = 1;
  }
  for (const sh of state.shifts) drawShift(ctx, sh, scale);
  if (state.pose) drawPose(ctx, scale);
  if (state.boxes) drawBoxes(ctx, scale);
  if (document.activeElement === canvas && ["brush", "eraser", "stroke"].includes(state.tool)) {
    ctx.strokeStyle = "#f4b400"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(state.cursor[0] * scale, state.cursor[1] * scale, Math.max(3, state.brush * scale / 2), 0, 2 * Math.PI); ctx.stroke();
  }
  canvas.setAttribute("aria-label", canvasLabel());
}

function canvasLabel() {
  const parts = [];
  if (state.tool) parts.push(`tool: ${state.tool}`);
  if (state.activeLayer) parts.push(`drawing on ${state.activeLayer.label}`);
  if (state.pose) parts.push(`keypoint ${keypointLabel(state.pose.selected)}`);
  return "Drawing canvas, " + (parts.join(", ") || "preview");
}

function layerCentroid(layer) {
  const { width: w, height: h } = layer.canvas;
  const data = layer.canvas.getContext("2d").getImageData(0, 0, w, h).data;
  let sx = 0, sy = 0, n = 0;
  for (let i = 3, p = 0; i < data.length; i += 4, p++) if (data[i] > 127) { sx += p % w; sy += Math.floor(p / w); n++; }
  return n ? [sx / n, sy / n] : [w / 2, h / 2];
}
function drawShift(ctx, sh, scale) {
  const [dx, dy] = sh.get();
  if (!dx && !dy && state.tool !== "shift") return;
  const [cx, cy] = sh.layer ? layerCentroid(sh.layer) : nativeSize().map((v) => v / 2);
  // the reference's features move by (dx, dy) before they are blended in: arrow from where they come from to the mask
  const from = [(cx - dx) * scale, (cy - dy) * scale], to = [cx * scale, cy * scale];
  ctx.strokeStyle = sh.layer ? sh.layer.color : "#fff"; ctx.fillStyle = ctx.strokeStyle; ctx.lineWidth = 3;
  ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  const a = Math.atan2(to[1] - from[1], to[0] - from[0]);
  ctx.beginPath(); ctx.moveTo(...to);
  ctx.lineTo(to[0] - 10 * Math.cos(a - 0.4), to[1] - 10 * Math.sin(a - 0.4));
  ctx.lineTo(to[0] - 10 * Math.cos(a + 0.4), to[1] - 10 * Math.sin(a + 0.4)); ctx.fill();
}
function drawPose(ctx, scale) {
  const pts = state.pose.points;
  ctx.lineWidth = 2; ctx.strokeStyle = "rgba(255,255,255,0.85)";
  if (pts.length === 18) for (const [a, b] of LIMBS) {
    if (!pts[a] || !pts[b]) continue;
    ctx.beginPath(); ctx.moveTo(pts[a][0] * scale, pts[a][1] * scale); ctx.lineTo(pts[b][0] * scale, pts[b][1] * scale); ctx.stroke();
  }
  pts.forEach((p, i) => {
    if (!p) return;
    ctx.beginPath(); ctx.arc(p[0] * scale, p[1] * scale, i === state.pose.selected ? 6 : 4, 0, 2 * Math.PI);
    ctx.fillStyle = i === state.pose.selected ? "#f4b400" : LAYER_COLORS[i % LAYER_COLORS.length];
    ctx.fill(); ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke();
  });
}
function drawBoxes(ctx, scale) {
  const [h, w] = (state.model && state.model.image_size) || [64, 64];
  ctx.setLineDash([4, 4]); ctx.strokeStyle = "#888"; ctx.lineWidth = 1;
  ctx.strokeRect(0.5, 0.5, w * scale, h * scale); ctx.setLineDash([]);
  ctx.fillStyle = "#555"; ctx.font = "12px sans-serif"; ctx.fillText(`model image ${w}×${h}`, 4, h * scale + 14);
  state.boxes.items.forEach((b, i) => {
    const box = boxOf(b);
    const active = i === state.boxes.active;
    const hd = boxHandles(box);
    ctx.strokeStyle = active ? "#0b57d0" : "rgba(11,87,208,0.3)"; ctx.lineWidth = active ? 2 : 1;
    ctx.beginPath(); ctx.moveTo(hd.tl[0] * scale, 0); ctx.lineTo(hd.tr[0] * scale, 0);
    ctx.lineTo(box.width * scale, box.height * scale); ctx.lineTo(0, box.height * scale); ctx.closePath(); ctx.stroke();
    if (!active) return;
    for (const q of Object.values(hd)) { ctx.fillStyle = "#0b57d0"; ctx.fillRect(q[0] * scale - 5, q[1] * scale - 5, 10, 10); }
    ctx.fillStyle = "#0b57d0"; ctx.fillText(`output ${i + 1}: ${box.width}×${box.height}`, 4, box.height * scale - 6);
  });
}

// ---------------------------------------------------------------------------------- grey PNG masks
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; t[n] = c >>> 0; }
  return t;
})();
function crc32(bytes) { let c = 0xffffffff; for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }
function chunk(type, data) {
  const out = new Uint8Array(12 + data.length), view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set([...type].map((ch) => ch.charCodeAt(0)), 4); out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A layer as an 8-bit greyscale PNG (white = drawn, black = not): the masks the service decodes as mode L. */
async function layerPng(layer) {
  const { width: w, height: h } = layer.canvas;
  const flat = el("canvas", { width: w, height: h });
  const ctx = flat.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
  ctx.drawImage(layer.canvas, 0, 0);
  if (typeof CompressionStream === "undefined") return new Promise((ok) => flat.toBlob(ok, "image/png"));
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const raw = new Uint8Array((w + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w + 1)] = 0; // filter: none
    for (let x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = rgba[(y * w + x) * 4];
  }
  const zlib = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
  const header = new Uint8Array(13), view = new DataView(header.buffer);
  view.setUint32(0, w); view.setUint32(4, h); header.set([8, 0, 0, 0, 0], 8); // 8-bit, greyscale
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, chunk("IHDR", header), chunk("IDAT", zlib), chunk("IEND", new Uint8Array())], { type: "image/png" });
}

// ----------------------------------------------------------------------------------- forms per op
function buildForm() {
  state.fields = []; state.layers = []; state.activeLayer = null; state.pose = null; state.shifts = []; state.boxes = null;
  state.history = []; state.background = null; state.bgSize = null; state.previewToken++;
  const op = state.op;
  const inputsBox = $("inputs"), paramsBox = $("params");
  inputsBox.replaceChildren(); paramsBox.replaceChildren();
  clearErrors();
  if (!op) return;
  $("op-desc").textContent = op.description;
  for (const [scope, schema, box] of [["inputs", op.inputs_schema, inputsBox], ["params", op.params_schema, paramsBox]]) {
    const required = schema.required || [];
    const props = Object.entries(schema.properties || {});
    // image inputs first: the canvas is sized by the first one
    const picker = ([n, p]) => { const u = unwrap(p, schema); return Number(isAssetId(u) && !isMaskName(n, u) && !isStrokeField(n, u)); };
    props.sort((a, b) => picker(b) - picker(a));
    for (const [name, prop] of props) {
      const ctx = { inputs: scope === "inputs" };
      const c = makeControl([scope, name], name, prop, schema, required.includes(name), ctx);
      c.scope = scope; c.name = name;
      state.fields.push(c);
      box.append(c.node);
    }
    if (!props.length) box.append(el("p", { class: "help" }, `this op takes no ${scope}`));
  }
  // a long op (a work budget, steps or samples, of 100+ out of 1000+) runs as a job by default; sizes in
  // pixels (inpaint's crop_margin, resize_limit) have such bounds too but cost nothing by themselves
  const budgets = /^(steps|n_samples|iterations)$/;
  const long = Object.entries(op.params_schema.properties || {}).some(([name, p]) => budgets.test(name) && p.type === "integer" && (p.maximum || 0) >= 1000 && (p.default || 0) >= 100);
  $("as-job").checked = long;
  if (state.pose) initPose();
  renderToolbar();
  const images = state.fields.filter((f) => f.image);
  Promise.all(images.map((c, i) => c.pickDefault(i))).then(() => { if (state.pose && !state.pose.touched) initPose(); render(); });
  schedulePreview();
  render();
}

async function buildRequest() {
  const request = { model: state.model.name, op: state.op.name, params: {}, inputs: {} };
  for (const f of state.fields) {
    const v = await f.get();
    if (v !== undefined) request[f.scope][f.name] = v;
  }
  return request;
}

// ---------------------------------------------------------------------------------------- errors
function clearErrors() {
  document.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
  document.querySelectorAll("[aria-invalid=true]").forEach((e) => e.removeAttribute("aria-invalid"));
}

/** A problem+json body next to the field it names: each errors[].loc, else a field named in the detail. */
function showProblem(error, fallbackPath) {
  const problem = error.problem || { detail: error.message };
  if (error.status === 401 || error.status === 403) { $("err-api-key").textContent = problem.detail || error.message; $("api-key").setAttribute("aria-invalid", "true"); $("api-key").focus(); return; }
  const placed = [];
  const entries = Array.isArray(problem.errors) && problem.errors.length ? problem.errors : [];
  for (const entry of entries) {
    let loc = (entry.loc || []).map(String);
    if (loc[0] === "body") loc = loc.slice(1);
    const target = errorSlot(loc);
    const text = `${entry.msg || problem.detail}`;
    if (target) { target.textContent = target.textContent ? target.textContent + "\n" + text : text; markInvalid(target); placed.push(target); }
  }
  if (!placed.length) {
    const guess = fallbackPath ? errorSlot(fallbackPath) : guessSlot(problem.detail || "");
    if (guess) { guess.textContent = problem.detail || error.message; markInvalid(guess); placed.push(guess); }
  }
  const general = $("err-general");
  general.textContent = `${problem.status ? problem.status + " " : ""}${problem.title || "Error"}: ${problem.detail || error.message}`;
  if (placed[0]) placed[0].scrollIntoView({ block: "nearest" });
}
function errorSlot(loc) {
  for (let n = loc.length; n > 0; n--) { const e = document.getElementById("err-" + idOf(loc.slice(0, n))); if (e) return e; }
  return null;
}
function guessSlot(detail) {
  const names = [];
  for (const f of allControls()) if (f.name && f.scope) names.push([f.scope, f.name]);
  for (const f of state.fields) names.push([f.scope, f.name]);
  const dotted = detail.match(/\b(inputs|params)\.([a-z_]+)(?:\.(\d+))?(?:\.([a-z_]+))?/);
  if (dotted) return errorSlot(dotted.slice(1).filter(Boolean));
  for (const f of state.fields) {
    const v = (() => { try { return f.control && f.control.value; } catch (_) { return null; } })();
    if (typeof v === "string" && ASSET_ID.test(v) && detail.includes(v)) return errorSlot([f.scope, f.name]);
  }
  const sorted = [...state.fields].sort((a, b) => b.name.length - a.name.length);
  for (const f of sorted) if (new RegExp(`\\b${f.name}\\b`).test(detail)) return errorSlot([f.scope, f.name]);
  return null;
}
function markInvalid(slot) {
  const field = slot.closest(".field, fieldset");
  const control = field && field.querySelector("input, select, textarea, button");
  if (control) control.setAttribute("aria-invalid", "true");
}

// ------------------------------------------------------------------------------------------- run
function setBusy(busy, text) {
  $("run").disabled = busy;
  $("status").textContent = text || "";
}

async function run(event) {
  if (event) event.preventDefault();
  clearErrors();
  if (!state.model || !state.op) return;
  let request;
  setBusy(true, "preparing the inputs…");
  try {
    request = await buildRequest();
    const batch = Math.max(1, Math.min(16, Number($("batch").value) || 1));
    if ($("as-job").checked || batch > 1) await runJob(request, batch);
    else {
      setBusy(true, `running ${request.op}…`);
      const started = performance.now();
      const response = await api("POST", "/v1/edits", { ...request, output: { inline: true } });
      showResult(response, request, performance.now() - started);
    }
  } catch (e) { showProblem(e); setBusy(false, "failed: " + e.message); state.runs++; return; }
  $("run").disabled = false;
  state.runs++;
}

function withSeed(request, offset) {
  const copy = JSON.parse(JSON.stringify(request));
  if (!offset) return copy;
  if (Number.isInteger(copy.inputs.seed)) { copy.inputs.seed += offset; return copy; }
  for (const v of Object.values(copy.inputs)) if (v && typeof v === "object" && Number.isInteger(v.seed)) { v.seed += offset; return copy; }
  return copy;
}

async function runJob(request, count) {
  const items = Array.from({ length: count }, (_, i) => withSeed(request, i));
  const status = await api("POST", "/v1/jobs", { items });
  await followJob(status, (page) => {
    const done = page.items.filter((i) => i.state === "succeeded");
    $("gallery").replaceChildren(...done.map((item) => {
      const img = el("img", { src: item.url, alt: `job item ${item.index + 1} result` });
      const a = el("a", { href: permalink(item.result_id, items[item.index]), title: "reopen this item" }, img);
      return a;
    }));
    const failed = page.items.find((i) => i.state === "failed");
    if (failed && failed.problem) showProblem({ problem: failed.problem, status: failed.problem.status });
    if (done[0]) showResult({ ...done[0], url: done[0].url, timings: null }, items[done[0].index]);
  });
}

async function followJob(status, onDone) {
  const box = $("job"), progress = $("job-progress"), text = $("job-state"), cancel = $("job-cancel");
  box.hidden = false; cancel.disabled = false;
  state.job = status.job_id;
  cancel.onclick = async () => {
    cancel.disabled = true;
    try { await api("DELETE", "/v1/jobs/" + status.job_id); } catch (e) { text.textContent = "cancel: " + e.message; }
  };
  while (true) {
    const c = status.counts || {};
    const fit = status.fit;
    const fraction = fit && fit.iterations ? (fit.iteration || 0) / fit.iterations : c.total ? (c.succeeded + c.failed + c.cancelled) / c.total : 0;
    progress.value = fraction;
    text.textContent = `job ${status.job_id.slice(0, 8)}: ${status.state}` + (fit ? `, iteration ${fit.iteration || 0} of ${fit.iterations}` +
      (fit.eta_s ? `, about ${Math.round(fit.eta_s)} s left` : "") : `, ${c.succeeded || 0} of ${c.total} done` + (c.failed ? `, ${c.failed} failed` : ""));
    if (TERMINAL.includes(status.state)) break;
    await new Promise((ok) => setTimeout(ok, 1000));
    status = await api("GET", "/v1/jobs/" + status.job_id);
  }
  cancel.disabled = true;
  state.job = null;
  const page = await api("GET", `/v1/jobs/${status.job_id}/results?limit=100`);
  await onDone(page, status);
  $("status").textContent = `job ${status.state}`;
}

function permalink(resultId, request) {
  const { output, ...edit } = request || {};
  const encoded = btoa(unescape(encodeURIComponent(JSON.stringify(edit)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `#result=${resultId}&edit=${encoded}`;
}
function parseHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const result = params.get("result");
  let edit = null;
  const raw = params.get("edit");
  if (raw) {
    try { edit = JSON.parse(decodeURIComponent(escape(atob(raw.replace(/-/g, "+").replace(/_/g, "/"))))); } catch (_) { edit = null; }
  }
  return { result: result && ASSET_ID.test(result) ? result : null, edit, model: params.get("model"), op: params.get("op") };
}

/** Small images (32-96 px) shown enlarged, pixelated, up to about 256 px on their longer side. */
function enlarge(img) {
  const apply = () => { const k = Math.max(1, Math.floor(256 / Math.max(img.naturalWidth, img.naturalHeight, 1))); img.style.width = `${img.naturalWidth * k}px`; };
  if (img.complete && img.naturalWidth) apply(); else img.addEventListener("load", apply, { once: true });
}

// The crop boxes of a strategy (extras.crop_boxes: [x, y, w, h] in the image's pixels) drawn over the
// result, so the user sees which part of the photo the model computed; a result cut to its region
// (output.region) is drawn in the region's own coordinates. Returns how many were drawn.
function drawBoxes(response) {
  const layer = $("result-boxes");
  layer.replaceChildren();
  const extras = response.extras || {};
  const boxes = Array.isArray(extras.crop_boxes) ? extras.crop_boxes : [];
  const width = response.width, height = response.height;
  if (!boxes.length || !width || !height) return 0;
  const origin = extras.region ? [extras.region.x, extras.region.y] : [0, 0];
  for (const [x, y, w, h] of boxes) {
    const box = el("div", { class: "box" });  // placed through the CSSOM: the page's CSP allows no inline style attribute
    Object.assign(box.style, { left: `${(100 * (x - origin[0])) / width}%`, top: `${(100 * (y - origin[1])) / height}%`, width: `${(100 * w) / width}%`, height: `${(100 * h) / height}%` });
    layer.append(box);
  }
  return boxes.length;
}

function showResult(response, request, clientMs) {
  const figure = $("result-figure"), img = $("result-image");
  enlarge(img);
  img.src = response.image_base64 ? `data:${response.content_type};base64,${response.image_base64}` : response.url;
  figure.hidden = false;
  figure.dataset.resultId = response.result_id;
  const boxes = drawBoxes(response);
  $("result-caption").textContent = `${response.op || request.op} result ${response.result_id.slice(0, 12)}… ${response.width ? response.width + "×" + response.height : ""}` +
    (response.cached ? " (from the cache)" : "") + (boxes ? ` · ${boxes} crop box${boxes > 1 ? "es" : ""} (dashed): what the model ran on` : "");
  const timings = $("timings");
  timings.replaceChildren();
  const rows = [];
  if (response.timings) for (const [k, v] of Object.entries(response.timings)) if (v !== null && v !== undefined) rows.push([k.replace(/_/g, " "), typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : String(v)]);
  if (clientMs) rows.push(["in the browser ms", clientMs.toFixed(0)]);
  if (response.seed !== null && response.seed !== undefined) rows.push(["seed", String(response.seed)]);
  if (!response.timings) rows.push(["timings", "not kept with a stored result (run it again to time it)"]);
  for (const [k, v] of rows) timings.append(el("dt", {}, k), el("dd", {}, v));
  $("status").textContent = `${request.op || "edit"} done` + (response.timings ? ` in ${Math.round(response.timings.total_ms)} ms` : "");
  const link = permalink(response.result_id, request);
  $("permalink").href = link;
  $("result-links").hidden = false;
  history.replaceState(null, "", link);
  state.lastResult = { id: response.result_id, op: request.op, request, response };
  if (!state.results.some((r) => r.id === response.result_id)) state.results.unshift({ id: response.result_id, op: request.op });
  state.results = state.results.slice(0, 20);
  allControls().filter((c) => c.image).forEach((c) => c.refreshResults());
  const extras = $("extras");
  extras.replaceChildren();
  for (const [k, v] of Object.entries(response.extras || {})) {
    if (/_asset_id$/.test(k) && typeof v === "string" && ASSET_ID.test(v)) {
      const fig = el("figure", {}, el("img", { alt: k.replace(/_asset_id$/, "").replace(/_/g, " ") }), el("figcaption", {}, k.replace(/_asset_id$/, "")));
      extras.append(fig);
      assetUrl(v).then((url) => { fig.querySelector("img").src = url; }).catch(() => {});
    }
  }
  const rest = Object.fromEntries(Object.entries(response.extras || {}).filter(([k]) => !/_asset_id$/.test(k)));
  if (Object.keys(rest).length) {
    const text = JSON.stringify(rest);
    extras.append(el("details", {}, el("summary", {}, "extras"), el("pre", {}, text.length > 3000 ? text.slice(0, 3000) + " …" : text)));
  }
}

async function reopen(result, edit) {
  try {
    if (edit && edit.model) {
      await selectModel(edit.model, edit.op);
      for (const f of state.fields) {
        const v = (edit[f.scope] || {})[f.name];
        if (v !== undefined) f.set(v);
      }
      schedulePreview();
    }
    if (result) {
      const info = await api("GET", "/v1/assets/" + result);
      showResult({ result_id: result, url: info.url, width: info.width, height: info.height, op: edit ? edit.op : "", timings: null },
        edit || { op: "" });
      $("status").textContent = "reopened result " + result.slice(0, 12) + "…";
    }
  } catch (e) { showProblem(e); }
}

// ------------------------------------------------------------------------------------ fit jobs
async function loadFitSchema() {
  try {
    const spec = await (await fetch("/openapi.json", { cache: "no-store", credentials: "omit" })).json();
    const schemas = (spec.components || {}).schemas || {};
    if (schemas.FitJob) state.fitSchema = { ...schemas.FitJob, $defs: schemas };
  } catch (_) { state.fitSchema = null; }
}

function buildFitForm() {
  const panel = $("fit-panel");
  const s = state.fitSchema;
  const family = s && s.properties && s.properties.family ? unwrap(s.properties.family, s) : null;
  const families = family ? [family.const, family.default, ...(family.enum || [])].filter(Boolean) : [];
  panel.hidden = !(state.model && families.includes(state.model.family));
  const box = $("fit-fields");
  box.replaceChildren();
  state.fitFields = [];
  if (panel.hidden) return;
  const saved = { pose: state.pose, layers: state.layers };
  for (const [name, prop] of Object.entries(s.properties)) {
    if (name === "family") continue;
    const c = makeControl(["fit", name], name, prop, s, (s.required || []).includes(name), { inputs: true });
    c.name = name; c.scope = "fit";
    state.fitFields.push(c);
    box.append(c.node);
  }
  state.pose = saved.pose; state.layers = saved.layers;
  state.fitFields.filter((c) => c.image).forEach((c) => c.pickDefault(1));
}

async function runFit(event) {
  event.preventDefault();
  clearErrors();
  const fit = { family: state.model.family };
  try {
    for (const c of state.fitFields) { const v = await c.get(); if (v !== undefined) fit[c.name] = v; }
    const status = await api("POST", "/v1/jobs", { fit });
    $("fit-run").disabled = true;
    await followJob(status, async (page, final) => {
      const item = page.items[0];
      if (item && item.state === "succeeded") {
        const name = (final.fit && final.fit.model) || (item.extras && item.extras.model);
        await loadModels(name);
        if (item.url) showResult({ ...item, timings: null, op: "fit" }, { op: "fit" });
      } else if (item && item.problem) showProblem({ problem: item.problem, status: item.problem.status }, ["fit"]);
    });
  } catch (e) {
    if (e.problem && Array.isArray(e.problem.errors)) e.problem.errors = e.problem.errors.map((x) => ({ ...x, loc: (x.loc || []).map(String).filter((p) => p !== "body") }));
    showProblem(e, ["fit"]);
  } finally { $("fit-run").disabled = false; }
}

// ---------------------------------------------------------------------------------- models & ops
async function loadModels(select) {
  $("err-api-key").textContent = "";
  $("api-key").removeAttribute("aria-invalid");
  let list;
  try { list = await api("GET", "/v1/models"); } catch (e) {
    if (e.status === 401 || e.status === 403) { $("err-api-key").textContent = `${e.message} Enter an API key and press Connect.`; $("api-key").setAttribute("aria-invalid", "true"); }
    else $("err-general").textContent = e.message;
    return false;
  }
  state.models = list.models;
  const model = $("model");
  model.replaceChildren(...state.models.map((m) => el("option", { value: m.name, disabled: !!m.broken },
    `${m.name} (${m.family})${m.random_init ? " [untrained]" : ""}${m.broken ? " [broken]" : ""}`)));
  const wanted = select && state.models.find((m) => m.name === select) ? select : (state.model && state.models.find((m) => m.name === state.model.name) ? state.model.name : (state.models.find((m) => !m.broken && !m.random_init) || {}).name);
  if (wanted) await selectModel(wanted);
  return true;
}

async function selectModel(name, opName) {
  const model = state.models.find((m) => m.name === name);
  if (!model) return;
  state.model = model;
  $("model").value = name;
  $("model-desc").textContent = model.description + (model.broken ? ` Broken: ${typeof model.broken === "string" ? model.broken : JSON.stringify(model.broken)}` : "");
  const op = $("op");
  op.replaceChildren(...model.ops.map((o) => el("option", { value: o.name }, o.name)));
  // the op to show first: the one asked for, else the first with something to draw
  const spatial = model.ops.find((o) => Object.entries(o.inputs_schema.properties || {}).some(([n, p]) => {
    const s = unwrap(p, o.inputs_schema);
    return (isAssetId(s) && isMaskName(n, s)) || isPointList(s, o.inputs_schema) || isLayerList(s, o.inputs_schema);
  })) || model.ops.find((o) => isBoxList(unwrap((o.params_schema.properties || {}).outputs || {}, o.params_schema), o.params_schema));
  selectOp((opName && model.ops.find((o) => o.name === opName)) ? opName : (spatial || model.ops[0]).name);
  buildFitForm();
}

function selectOp(name) {
  state.op = state.model.ops.find((o) => o.name === name);
  $("op").value = name;
  buildForm();
}

// ------------------------------------------------------------------------------------------ start
async function start() {
  const remembered = sessionStorage.getItem("collage-api-key");
  if (remembered) { state.key = remembered; $("api-key").value = remembered; $("remember-key").checked = true; }
  $("auth-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    if ($("remember-key").checked && state.key) sessionStorage.setItem("collage-api-key", state.key);
    else sessionStorage.removeItem("collage-api-key");
    await openFromHash();
  });
  $("remember-key").addEventListener("change", () => { if (!$("remember-key").checked) sessionStorage.removeItem("collage-api-key"); });
  $("model").addEventListener("change", () => selectModel($("model").value));
  $("op").addEventListener("change", () => selectOp($("op").value));
  $("edit-form").addEventListener("submit", run);
  $("fit-form").addEventListener("submit", runFit);
  $("use-result").addEventListener("click", () => {
    const image = allControls().find((c) => c.image);
    if (image && state.lastResult) { image.control.value = state.lastResult.id; image.control.dispatchEvent(new Event("change")); image.control.focus(); }
  });
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("keydown", onKey);
  canvas.addEventListener("focus", render); canvas.addEventListener("blur", render);
  window.addEventListener("hashchange", () => {
    const h = parseHash();
    if (h.edit && (!state.lastResult || h.result !== state.lastResult.id)) reopen(h.result, h.edit);
    else if (!h.edit && h.model && state.models.some((m) => m.name === h.model)) selectModel(h.model, h.op);
  });
  await loadFitSchema();
  await openFromHash();
  document.body.dataset.ready = "true";
}

/** #result=<id>&edit=<request> reopens an edit; #model=<name>&op=<op> opens a view. */
async function openFromHash() {
  const hash = parseHash();
  if (!(await loadModels(hash.model || (hash.edit && hash.edit.model)))) return;
  if (hash.result || hash.edit) await reopen(hash.result, hash.edit);
  else if (hash.op && state.model.ops.some((o) => o.name === hash.op)) selectOp(hash.op);
}

document.addEventListener("DOMContentLoaded", start);
