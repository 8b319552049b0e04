// Predict page: drop or choose a photo, send it to /v1/predict, draw a card per attribute with a bar per class.
"use strict";

const dropZone = document.getElementById("drop-zone");
const fileInput = document.getElementById("file-input");
const preview = document.getElementById("preview");
const hint = document.getElementById("drop-hint");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
let schema = null;

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", Boolean(isError));
}

function attributeCard(name, answer) {
  const classes = schema ? schema.attributes[name] : Object.keys(answer.probabilities);
  const top = classes[answer.index];
  const rows = classes.map((cls) => {
    const p = answer.probabilities[cls] || 0;
    return el("li", { class: cls === top ? "top" : "" },
      el("span", { class: "name", text: cls, title: cls }),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width: ${(p * 100).toFixed(1)}%` })),
      el("span", { class: "pct", text: percent(p) }));
  });
  const value = el("div", { class: "value", "data-testid": "value" }, answer.value || top,
    el("small", { text: percent(answer.confidence) }));
  return el("article", { class: "attribute", "data-attribute": name, "data-testid": "attribute" },
    el("header", {}, el("h3", { text: shortName(name) }),
      answer.uncertain ? el("span", { class: "badge", text: "uncertain" }) : null),
    value,
    el("ul", { class: "probs" }, ...rows));
}

async function predict(file) {
  if (!file) return;
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  hint.hidden = true;
  results.replaceChildren();
  setStatus(`Predicting ${file.name}…`);
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const started = performance.now();
    const body = await api("/v1/predict", { method: "POST", body: form });
    const prediction = body.predictions[0];
    for (const [name, answer] of Object.entries(prediction.attributes)) results.append(attributeCard(name, answer));
    setStatus(`${file.name}: ${Object.keys(prediction.attributes).length} attributes in ${Math.round(performance.now() - started)} ms`);
    if (schema && schema.similar_uploads) showSimilar(file);
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
      onclick: () => { window.location.href = `/catalog#similar=${item.id}`; } })));
    document.getElementById("similar-block").hidden = body.results.length === 0;
  } catch (_) {
    document.getElementById("similar-block").hidden = true;
  }
}

fileInput.addEventListener("change", () => predict(fileInput.files[0]));
for (const type of ["dragenter", "dragover"]) {
  dropZone.addEventListener(type, (event) => { event.preventDefault(); dropZone.classList.add("dragging"); });
}
for (const type of ["dragleave", "drop"]) {
  dropZone.addEventListener(type, (event) => { event.preventDefault(); dropZone.classList.remove("dragging"); });
}
dropZone.addEventListener("drop", (event) => predict(event.dataTransfer.files[0]));

showModelInfo().then((s) => { schema = s; });
