// Catalogue page: facet filters with counts (only tags that apply are counted; how many photos have no value for an
// attribute is said under it), a grid of thumbnails with their tags by name, an item view (every tag with its
// confidence, the large image, heatmaps where the server's model can make them, similar items), and an export of
// the current selection. The state (filters, minimum confidence, open item) lives in the URL hash.
"use strict";

const PAGE = 48;
const state = { filters: {}, minConfidence: 0, offset: 0, item: null };
const grid = document.getElementById("grid");
const summary = document.getElementById("summary");
const moreButton = document.getElementById("more");
const slider = document.getElementById("min-confidence");

function readHash() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  state.filters = {};
  for (const expression of params.getAll("filter")) {
    const at = expression.indexOf("=");
    if (at > 0) state.filters[expression.slice(0, at)] = expression.slice(at + 1);
  }
  state.minConfidence = Number(params.get("min_confidence") || 0);
  state.item = params.get("item") || params.get("similar");  // `similar=` is the older spelling of a link
}

function writeHash() {
  const params = query();
  if (state.item) params.set("item", state.item);
  history.replaceState(null, "", `#${params.toString()}`);
}

function query() {
  const params = new URLSearchParams();
  for (const [attribute, value] of Object.entries(state.filters)) params.append("filter", `${attribute}=${value}`);
  if (state.minConfidence > 0) params.set("min_confidence", String(state.minConfidence));
  return params;
}

function toggleFilter(attribute, value) {
  if (state.filters[attribute] === value) delete state.filters[attribute];
  else state.filters[attribute] = value;
  state.item = null;
  refresh().then(() => window.scrollTo({ top: 0 }));
}

function renderFacets(data) {
  const container = document.getElementById("facets");
  container.replaceChildren(...Object.entries(data.facets).map(([attribute, counts]) => {
    const buttons = Object.entries(counts).map(([value, count]) => {
      const active = state.filters[attribute] === value;
      return el("li", {}, el("button", {
        type: "button", class: `${active ? "active" : ""} ${count === 0 ? "empty" : ""}`,
        "data-attribute": attribute, "data-value": value, "data-testid": "facet-value",
        onclick: () => toggleFilter(attribute, value),
      }, el("span", { text: value }), el("span", { class: "count", text: String(count) })));
    });
    const missing = data.no_value ? data.no_value[attribute] : undefined;
    const note = missing ? el("p", { class: "no-value", "data-testid": "no-value", "data-attribute": attribute,
      text: `${missing} photo${missing === 1 ? "" : "s"} with no ${attributeLabel(attribute).toLowerCase()} (it does not apply)` }) : null;
    return el("section", { class: "facet", "data-attribute": attribute },
      el("h3", { text: attributeLabel(attribute) }), el("ul", {}, ...buttons), note);
  }));
  const chips = document.getElementById("active-filters");
  chips.replaceChildren(...Object.entries(state.filters).map(([attribute, value]) =>
    el("button", { class: "chip", type: "button", title: `remove the ${attributeLabel(attribute).toLowerCase()} filter`,
                   onclick: () => toggleFilter(attribute, value), text: `${attributeLabel(attribute)}: ${value}` })));
  document.getElementById("clear-filters").hidden = Object.keys(state.filters).length === 0;
}

function cardOptions() {
  return { tags: Object.keys(state.filters), onclick: (item) => openItem(item.id) };
}

function updateExportLinks() {
  for (const format of ["csv", "jsonl"]) {
    const params = query();
    params.set("format", format);
    document.getElementById(`export-${format}`).href = `/v1/catalog/export?${params}`;
  }
}

async function loadPage(append) {
  const params = query();
  params.set("limit", String(PAGE));
  params.set("offset", String(state.offset));
  const data = await api(`/v1/catalog/search?${params}`);
  const cards = data.items.map((item) => itemCard(item, cardOptions()));
  if (append) grid.append(...cards); else grid.replaceChildren(...cards);
  const shown = state.offset + data.items.length;
  summary.classList.remove("error");
  summary.textContent = data.total === 0 ? "No image matches these filters." :
    `${data.total} image${data.total === 1 ? "" : "s"} match${data.total === 1 ? "es" : ""}` +
    (shown < data.total ? ` · showing ${shown}` : "");
  moreButton.hidden = shown >= data.total;
}

async function refresh() {
  writeHash();
  updateExportLinks();
  state.offset = 0;
  try {
    const facets = await api(`/v1/catalog/facets?${query()}`);
    renderFacets(facets);
    await loadPage(false);
    if (state.item) await openItem(state.item); else closeItem();
  } catch (error) {
    summary.textContent = error.message;
    summary.classList.add("error");
  }
}

function heatmapsOffered() {
  // Heatmaps of a catalogue image come from the served model: only when it is the catalogue's and a PyTorch one.
  return Boolean(serverSchema && serverSchema.heatmaps && serverSchema.similar_uploads);
}

function tagRow(itemId, attribute, tag) {
  const shown = applies(tag);
  const explain = shown && heatmapsOffered() ? () => showHeatmap(itemId, attribute) : undefined;
  return el("tr", { "data-attribute": attribute, "data-applies": String(tag.applies !== false),
                    class: `${shown ? "" : "inapplicable"}${explain ? " explainable" : ""}`, onclick: explain,
                    title: explain ? "show where the model looks for this" : undefined },
    el("th", { text: attributeLabel(attribute) }),
    el("td", { class: "value", text: shown ? tag.value : "n/a" }),
    el("td", { class: "probability", text: shown ? percent(tag.confidence)
      : tag.applicability !== null && tag.applicability !== undefined ? `applies ${percent(tag.applicability)}` : "" }));
}

async function showHeatmap(itemId, attribute) {
  const caption = document.getElementById("item-heatmap-caption");
  try {
    const body = await api(`/v1/catalog/items/${encodeURIComponent(itemId)}/heatmap?attribute=${encodeURIComponent(attribute)}`);
    document.getElementById("item-image").src = body.overlay;
    document.getElementById("item-heatmap-text").textContent =
      `${attributeLabel(body.attribute)}: where the model sees ${body.class} (${percent(body.probability)})`;
    caption.hidden = false;
  } catch (error) {
    document.getElementById("item-heatmap-text").textContent = error.message;
    caption.hidden = false;
  }
}

async function openItem(id) {
  state.item = String(id);
  writeHash();
  try {
    const [item, similar] = await Promise.all([
      api(`/v1/catalog/items/${encodeURIComponent(id)}`),
      api(`/v1/catalog/similar/${encodeURIComponent(id)}?k=12`),
    ]);
    document.getElementById("item-title").textContent = item.path.split("/").pop();
    document.getElementById("item-path").textContent = item.path;
    const image = document.getElementById("item-image");
    image.src = item.image_url;
    image.alt = item.path;
    image.dataset.photo = item.image_url;
    document.getElementById("item-heatmap-caption").hidden = true;
    document.getElementById("item-heatmap-hint").hidden = !heatmapsOffered();
    const rows = Object.entries(item.tags);
    rows.sort((a, b) => !applies(a[1]) - !applies(b[1]));
    document.getElementById("item-tags").replaceChildren(...rows.map(([a, tag]) => tagRow(item.id, a, tag)));
    const cards = similar.results.filter((other) => other.id !== item.id).map((other) => itemCard(other, cardOptions()));
    document.getElementById("similar-grid").replaceChildren(...cards);
    document.getElementById("item-view").hidden = false;
    document.getElementById("results-view").hidden = true;
    window.scrollTo({ top: 0 });
  } catch (error) {
    summary.textContent = error.message;
    summary.classList.add("error");
  }
}

function closeItem() {
  state.item = null;
  writeHash();
  document.getElementById("item-view").hidden = true;
  document.getElementById("results-view").hidden = false;
}

slider.addEventListener("input", () => {
  document.getElementById("confidence-value").textContent = percent(Number(slider.value));
});
slider.addEventListener("change", () => { state.minConfidence = Number(slider.value); refresh(); });
moreButton.addEventListener("click", () => { state.offset += PAGE; loadPage(true); });
document.getElementById("back").addEventListener("click", closeItem);
document.getElementById("item-show-photo").addEventListener("click", () => {
  const image = document.getElementById("item-image");
  image.src = image.dataset.photo;
  document.getElementById("item-heatmap-caption").hidden = true;
});
document.getElementById("clear-filters").addEventListener("click", () => { state.filters = {}; refresh(); });

readHash();
slider.value = String(state.minConfidence);
document.getElementById("confidence-value").textContent = percent(state.minConfidence);
showModelInfo().then(refresh);
