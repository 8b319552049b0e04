// Predict page: drop or choose a photo, send it to /v1/predict, draw a card per attribute with a bar per class.
// An attribute that does not apply to the photo (a close-up has no skirt length) shows "n/a", not a value. Where
// the served model can make heatmaps (PyTorch, not ONNX), clicking a card (or one of its classes) asks
// /v1/explain for the heatmap of that attribute and shows it in place of the photo.
"use strict";

const dropZone = document.getElementById("drop-zone");
const fileInput = document.getElementById("file-input");
const preview = document.getElementById("preview");
const hint = document.getElementById("drop-hint");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const heatmapCaption = document.getElementById("heatmap-caption");
const heatmapText = document.getElementById("heatmap-text");
const explainHint = document.getElementById("explain-hint");
let currentFile = null;
let photoUrl = null;

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", Boolean(isError));
}

function heatmapsOffered() {
  return Boolean(serverSchema && serverSchema.heatmaps);
}

function attributeCard(name, answer) {
  const classes = serverSchema ? serverSchema.attributes[name] : Object.keys(answer.probabilities);
  const top = classes[answer.index];
  const explainable = heatmapsOffered();
  const rows = classes.map((cls) => {
    const p = answer.probabilities[cls] || 0;
    const onclick = explainable ? (event) => { event.stopPropagation(); explain(name, cls); } : undefined;
    return el("li", { class: cls === top ? "top" : "", title: explainable ? `where the model sees ${cls}` : cls, onclick },
      el("span", { class: "name", text: cls }),
      el("span", { class: "pct", text: percent(p) }),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width: ${(p * 100).toFixed(1)}%` })));
  });
  const shown = applies(answer);
  const value = shown
    ? el("div", { class: "value", "data-testid": "value" }, answer.value, el("small", { text: percent(answer.confidence) }))
    : el("div", { class: "value not-applicable", "data-testid": "value",
                  title: answer.applies === false ? "the photo does not show this attribute's part" : "no class is sure enough" },
      answer.applies === false ? "n/a" : top,
      el("small", { text: answer.applies === false ? `applies ${percent(answer.applicability)}` : percent(answer.confidence) }));
  const badge = answer.applies === false ? el("span", { class: "badge muted", text: "not shown" })
    : answer.uncertain ? el("span", { class: "badge", text: "uncertain" }) : null;
  return el("article", { class: `attribute${explainable ? " explainable" : ""}${answer.applies === false ? " inapplicable" : ""}`,
                         "data-attribute": name, "data-testid": "attribute", "data-applies": String(answer.applies !== false),
                         title: explainable ? "show where the model looks for this" : undefined,
                         onclick: explainable ? () => explain(name) : undefined },
    el("header", {}, el("h3", { text: attributeLabel(name) }), badge),
    value,
    el("ul", { class: "probs" }, ...rows));
}

function showPhoto() {
  if (photoUrl) preview.src = photoUrl;
  preview.dataset.view = "photo";
  heatmapCaption.hidden = true;
  for (const card of results.querySelectorAll(".attribute.explained")) card.classList.remove("explained");
}

async function explain(name, cls) {
  if (!currentFile || !heatmapsOffered()) return;
  const form = new FormData();
  form.append("files", currentFile, currentFile.name);
  const query = new URLSearchParams({ attribute: name });
  if (cls) query.set("class", cls);
  setStatus(`Looking for ${attributeLabel(name).toLowerCase()}${cls ? ` (${cls})` : ""}…`);
  try {
    const body = await api(`/v1/explain?${query}`, { method: "POST", body: form });
    preview.src = body.overlay;
    preview.dataset.view = "heatmap";
    heatmapText.textContent = `${attributeLabel(body.attribute)}: where the model sees ${body.class} (${percent(body.probability)})`;
    heatmapCaption.hidden = false;
    for (const card of results.querySelectorAll(".attribute")) {
      card.classList.toggle("explained", card.dataset.attribute === body.attribute);
    }
    setStatus(`${currentFile.name}: heatmap in ${Math.round(body.elapsed_ms)} ms (${body.method})`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function predict(file) {
  if (!file) return;
  currentFile = file;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  showPhoto();
  preview.hidden = false;
  hint.hidden = true;
  explainHint.hidden = true;
  results.replaceChildren();
  setStatus(`Predicting ${file.name}…`);
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const started = performance.now();
    const body = await api("/v1/predict", { method: "POST", body: form });
    const prediction = body.predictions[0];
    if (prediction.error) { setStatus(prediction.error, true); return; }
    const entries = Object.entries(prediction.attributes);
    // Attributes the photo shows first, in schema order; the ones that do not apply after them.
    entries.sort((a, b) => (a[1].applies === false) - (b[1].applies === false));
    for (const [name, answer] of entries) results.append(attributeCard(name, answer));
    explainHint.hidden = !heatmapsOffered();
    const inapplicable = entries.filter(([, a]) => a.applies === false).length;
    setStatus(`${file.name}: ${entries.length} attributes in ${Math.round(performance.now() - started)} ms` +
      (inapplicable ? ` · ${inapplicable} do not apply to this photo` : ""));
    if (serverSchema && serverSchema.similar_uploads) showSimilar(file);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function showSimilar(file) {
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const body = await api("/v1/catalog/similar?k=8", { method: "POST", body: form });
    const row = document.getElementById("similar");
    row.replaceChildren(...body.results.map((item) => itemCard(item, {
      onclick: () => { window.location.href = `/catalog#item=${item.id}`; } })));
    document.getElementById("similar-block").hidden = body.results.length === 0;
  } catch (_) {
    document.getElementById("similar-block").hidden = true;
  }
}

fileInput.addEventListener("change", () => predict(fileInput.files[0]));
document.getElementById("show-photo").addEventListener("click", showPhoto);
for (const type of ["dragenter", "dragover"]) {
  dropZone.addEventListener(type, (event) => { event.preventDefault(); dropZone.classList.add("dragging"); });
}
for (const type of ["dragleave", "drop"]) {
  dropZone.addEventListener(type, (event) => { event.preventDefault(); dropZone.classList.remove("dragging"); });
}
dropZone.addEventListener("drop", (event) => predict(event.dataTransfer.files[0]));

showModelInfo();
