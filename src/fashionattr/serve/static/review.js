// Label review queue: each candidate with its image, the label it has and the model's suggestion, shown alike (the
// model is not assumed right), and four decisions. A decision is sent to /v1/review/decisions, which appends it to
// the dataset's corrections file; the card then shows what was decided.
"use strict";

const PAGE = 20;
const queue = document.getElementById("queue");
const progress = document.getElementById("progress");
const undecidedBox = document.getElementById("undecided");
const moreButton = document.getElementById("more");
let offset = 0;

const DECISION_WORDS = { accept: "suggestion accepted", relabel: "relabelled", maybe: "alternative marked 'm'",
                         keep: "label kept" };

function classPicker(candidate, purpose) {
  const options = candidate.classes.filter((c) => purpose !== "maybe" || c !== candidate.given);
  return el("select", { "data-testid": `${purpose}-class`, "aria-label": `class to ${purpose === "maybe" ? "mark m" : "relabel as"}` },
    ...options.map((c) => el("option", { value: c, text: c })));
}

function describeLabel(candidate, label) {
  return [...label].map((mark, i) => mark === "y" ? candidate.classes[i] : mark === "m" ? `${candidate.classes[i]} (m)` : null)
    .filter(Boolean).join(", ");
}

function card(candidate) {
  const relabel = classPicker(candidate, "relabel");
  const maybe = classPicker(candidate, "maybe");
  const decided = el("p", { class: "decided", "data-testid": "decided" },
    candidate.decision ? `${DECISION_WORDS[candidate.decision]}: ${describeLabel(candidate, candidate.decided_label)}` : "");
  const node = el("article", { class: `candidate${candidate.decision ? " done" : ""}`, "data-testid": "candidate",
                               "data-path": candidate.path, "data-attribute": candidate.attribute },
    el("img", { src: candidate.image_url, alt: candidate.path, loading: "lazy" }),
    el("div", { class: "candidate-body" },
      el("h3", { text: attributeLabel(candidate.attribute) }),
      el("p", { class: "path", text: candidate.path }),
      el("dl", { class: "labels" },
        el("dt", { text: "label" }), el("dd", { "data-testid": "given", text: describeLabel(candidate, candidate.label) }),
        el("dt", { text: "model suggests" }), el("dd", { "data-testid": "suggested", text: candidate.suggested }),
        el("dt", { text: "disagreement" }), el("dd", { text: candidate.score.toFixed(2) })),
      el("div", { class: "decisions" },
        el("button", { class: "button", type: "button", "data-testid": "accept", text: `Accept "${candidate.suggested}"`,
                       onclick: () => decide(node, candidate, "accept") }),
        el("button", { class: "button", type: "button", "data-testid": "keep", text: "Keep the label",
                       onclick: () => decide(node, candidate, "keep") }),
        el("span", { class: "pick" }, relabel, el("button", { class: "button", type: "button", "data-testid": "relabel",
          text: "Relabel", onclick: () => decide(node, candidate, "relabel", relabel.value) })),
        el("span", { class: "pick" }, maybe, el("button", { class: "button", type: "button", "data-testid": "maybe",
          text: "Mark m", onclick: () => decide(node, candidate, "maybe", maybe.value) }))),
      decided));
  return node;
}

async function decide(node, candidate, decision, cls) {
  const body = { path: candidate.path, attribute: candidate.attribute, decision };
  if (cls) body.class = cls;
  try {
    const answer = await api("/v1/review/decisions", { method: "POST", headers: { "content-type": "application/json" },
                                                       body: JSON.stringify(body) });
    node.classList.add("done");
    node.querySelector("[data-testid=decided]").textContent = `${DECISION_WORDS[decision]}: ${describeLabel(candidate, answer.label)}`;
    progress.textContent = progress.textContent.replace(/^\d+ of/, `${answer.decided} of`);
    progress.classList.remove("error");
  } catch (error) {
    progress.textContent = error.message;
    progress.classList.add("error");
  }
}

async function load(append) {
  const params = new URLSearchParams({ offset: String(offset), limit: String(PAGE), undecided: String(undecidedBox.checked) });
  try {
    const data = await api(`/v1/review?${params}`);
    const cards = data.candidates.map(card);
    if (append) queue.append(...cards); else queue.replaceChildren(...cards);
    progress.textContent = `${data.decided} of the candidates decided · ${data.total} ${undecidedBox.checked ? "left to check" : "in the queue"}`;
    moreButton.hidden = offset + data.candidates.length >= data.total;
  } catch (error) {
    progress.textContent = error.message;
    progress.classList.add("error");
  }
}

undecidedBox.addEventListener("change", () => { offset = 0; load(false); });
moreButton.addEventListener("click", () => { offset += PAGE; load(true); });
showModelInfo().then(() => load(false));
