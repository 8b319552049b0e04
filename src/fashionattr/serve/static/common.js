// Helpers shared by the predict and catalogue pages: API calls with readable errors, names, small DOM builders.
"use strict";

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

function shortName(attribute) {
  return attribute.replace(/_labels$/, "").replace(/_/g, " ");
}

function percent(p) {
  return `${(p * 100).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
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
  // Filtered attributes show how sure the model is of the matched tag; otherwise the first two tags say what it is.
  const filtered = options && options.tags;
  const shown = (filtered || Object.keys(item.tags).slice(0, 2)).filter((a) => item.tags[a]);
  const tags = shown.map((a) => item.tags[a].value + (filtered ? ` ${percent(item.tags[a].confidence)}` : "")).join(" · ");
  const score = item.similarity !== undefined ? el("span", { class: "score", text: percent(item.similarity) + " alike" }) : null;
  return el("button", { class: "item", type: "button", "data-id": item.id, "data-testid": "item", title: item.path,
                        onclick: options && options.onclick ? () => options.onclick(item) : undefined },
    el("img", { src: item.image_url, alt: item.path, loading: "lazy" }),
    el("div", { class: "caption" },
      el("div", { class: "file", text: item.path.split("/").pop() }),
      el("div", { class: "tags", text: tags }),
      score));
}

async function showModelInfo() {
  try {
    const schema = await api("/v1/schema");
    const count = Object.keys(schema.attributes).length;
    const models = schema.models.map((m) => m.arch || m.backend).join(", ");
    document.getElementById("model-info").textContent = `${models} · ${count} attributes${schema.tta ? " · TTA" : ""}`;
    const link = document.getElementById("catalog-link");
    if (link && schema.catalog) link.hidden = false;
    return schema;
  } catch (error) {
    document.getElementById("model-info").textContent = "service unreachable";
    return null;
  }
}
