// Catalogue page: facet filters with counts, a grid of matching images, and "more like this" on click.
// The state (filters, minimum confidence, similar item) lives in the URL hash so views can be linked and reloaded.
"use strict";

const PAGE = 48;
const state = { filters: {}, minConfidence: 0, offset: 0, similar: null };
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
  state.similar = params.get("similar");
}

function writeHash() {
  const params = query();
  if (state.similar) params.set("similar", state.similar);
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
  state.similar = null;
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
    return el("section", { class: "facet" }, el("h3", { text: shortName(attribute) }), el("ul", {}, ...buttons));
  }));
  const chips = document.getElementById("active-filters");
  chips.replaceChildren(...Object.entries(state.filters).map(([attribute, value]) =>
    el("button", { class: "chip", type: "button", title: `remove ${shortName(attribute)} filter`,
                   onclick: () => toggleFilter(attribute, value), text: `${shortName(attribute)}: ${value}` })));
  document.getElementById("clear-filters").hidden = Object.keys(state.filters).length === 0;
}

function cardOptions() {
  const filtered = Object.keys(state.filters);
  return { tags: filtered.length ? filtered : undefined, onclick: (item) => openSimilar(item.id) };
}

async function loadPage(append) {
  const params = query();
  params.set("limit", String(PAGE));
  params.set("offset", String(state.offset));
  const data = await api(`/v1/catalog/search?${params}`);
  const cards = data.items.map((item) => itemCard(item, cardOptions()));
  if (append) grid.append(...cards); else grid.replaceChildren(...cards);
  const shown = state.offset + data.items.length;
  summary.textContent = data.total === 0 ? "No image matches these filters." :
    `${data.total} image${data.total === 1 ? "" : "s"} match${data.total === 1 ? "es" : ""}` +
    (shown < data.total ? ` · showing ${shown}` : "");
  moreButton.hidden = shown >= data.total;
}

async function refresh() {
  writeHash();
  state.offset = 0;
  try {
    const facets = await api(`/v1/catalog/facets?${query()}`);
    renderFacets(facets);
    await loadPage(false);
    if (state.similar) await openSimilar(state.similar); else closeSimilar();
  } catch (error) {
    summary.textContent = error.message;
    summary.classList.add("error");
  }
}

async function openSimilar(id) {
  state.similar = String(id);
  writeHash();
  try {
    const data = await api(`/v1/catalog/similar/${encodeURIComponent(id)}?k=12`);
    const cards = data.results.map((item) => {
      const card = itemCard(item, cardOptions());
      if (item.id === data.query.id) card.classList.add("query");
      return card;
    });
    document.getElementById("similar-grid").replaceChildren(...cards);
    document.getElementById("similar-view").hidden = false;
    window.scrollTo({ top: 0, behavior: "smooth" });
  } catch (error) {
    summary.textContent = error.message;
  }
}

function closeSimilar() {
  state.similar = null;
  writeHash();
  document.getElementById("similar-view").hidden = true;
}

slider.addEventListener("input", () => {
  document.getElementById("confidence-value").textContent = percent(Number(slider.value));
});
slider.addEventListener("change", () => { state.minConfidence = Number(slider.value); refresh(); });
moreButton.addEventListener("click", () => { state.offset += PAGE; loadPage(true); });
document.getElementById("back").addEventListener("click", closeSimilar);
document.getElementById("clear-filters").addEventListener("click", () => { state.filters = {}; refresh(); });

readHash();
slider.value = String(state.minConfidence);
document.getElementById("confidence-value").textContent = percent(state.minConfidence);
showModelInfo();
refresh();
