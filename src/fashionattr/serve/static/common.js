// Helpers shared by the pages: API calls with readable errors, attribute names, small DOM builders, item cards.
"use strict";

let serverSchema = null;  // GET /v1/schema, once loaded: attribute labels and what the server offers

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function attributeLabel(attribute) {
  // The server's label for people ("Skirt length"); the key itself until the schema has arrived.
  if (serverSchema && serverSchema.labels && serverSchema.labels[attribute]) return serverSchema.labels[attribute];
  const words = attribute.replace(/_labels$/, "").replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function percent(p) {
  return `${(p * 100).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
}

function applies(answer) {
  // A tag is shown only where its attribute applies to the photo and it has a value.
  return answer && answer.applies !== false && answer.value !== null && answer.value !== undefined;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function itemCard(item, options) {
  // A thumbnail and a few tags by name ("Skirt length: Knee Length"): the filtered ones first, with confidence.
  const filtered = (options && options.tags) || [];
  const others = Object.keys(item.tags).filter((a) => !filtered.includes(a) && applies(item.tags[a]));
  const shown = [...filtered.filter((a) => applies(item.tags[a])), ...others].slice(0, Math.max(3, filtered.length));
  const lines = shown.map((a) => el("li", { "data-attribute": a },
    el("span", { class: "tag-name", text: `${attributeLabel(a)}: ` }),
    el("span", { class: "tag-value", text: item.tags[a].value }),
    filtered.includes(a) ? el("span", { class: "tag-confidence", text: ` ${percent(item.tags[a].confidence)}` }) : null));
  const score = item.similarity !== undefined ? el("span", { class: "score", text: percent(item.similarity) + " alike" }) : null;
  return el("button", { class: "item", type: "button", "data-id": item.id, "data-testid": "item", title: item.path,
                        onclick: options && options.onclick ? () => options.onclick(item) : undefined },
    el("img", { src: item.thumbnail_url || item.image_url, alt: item.path, loading: "lazy" }),
    el("div", { class: "caption" },
      el("div", { class: "file", text: item.path.split("/").pop() }),
      el("ul", { class: "tags", "data-testid": "card-tags" }, ...lines),
      score));
}

async function showModelInfo() {
  try {
    const schema = await api("/v1/schema");
    serverSchema = schema;
    const count = Object.keys(schema.attributes).length;
    const models = schema.models.map((m) => m.arch || m.backend).join(", ");
    document.getElementById("model-info").textContent = `${models} · ${count} attributes${schema.tta ? " · TTA" : ""}`;
    const link = document.getElementById("catalog-link");
    if (link && schema.catalog) link.hidden = false;
    const review = document.getElementById("review-link");
    if (review && schema.review) review.hidden = false;
    return schema;
  } catch (error) {
    document.getElementById("model-info").textContent = "service unreachable";
    return null;
  }
}
