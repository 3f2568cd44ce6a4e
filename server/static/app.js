// The search page: asks /api/ask and renders a cited answer; follow-ups continue the conversation.
"use strict";

const CITATION = /\[(\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?(?:\s*,\s*\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?)*)\]/g;
let conversationId = null;
let turn = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Text with its [n] citations turned into links to the answer's reference list.
function cited(text, answerId) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(CITATION)) {
    frag.append(text.slice(last, match.index));
    const first = match[1].split(/[,\u2013-]/)[0].trim();
    frag.append(el("a", { class: "cite", href: `#${answerId}-ref-${first}` }, match[0]));
    last = match.index + match[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

function badge(status, label) {
  return el("span", { class: `badge status-${status}`, title: "Article review status" }, label);
}

function renderAnswer(data) {
  turn += 1;
  const id = `a${turn}`;
  const card = el("article", { class: "answer", id, "data-conversation": data.conversation_id });
  card.append(el("h2", { class: "answer-question" }, data.question));
  if (data.resolved_query !== data.question) {
    card.append(el("p", { class: "resolved" }, "Searched as: ", el("q", {}, data.resolved_query)));
  }
  if (data.searched_for) card.append(el("p", { class: "searched-for" }, "Searched for: ", el("q", {}, data.searched_for)));
  if (data.no_match) card.append(el("p", { class: "empty no-match" }, data.no_match));
  if (data.caution) card.append(el("div", { class: "caution", role: "note" }, data.caution));

  const statuses = el("ul", { class: "article-statuses" });
  for (const a of data.articles) {
    statuses.append(el("li", {}, badge(a.review_status, a.review_status_label), " ", a.title, el("span", { class: "updated" }, ` · updated ${a.last_updated || "unknown"}`)));
  }
  card.append(el("details", { class: "sources" }, el("summary", {}, `${data.articles.length} source article${data.articles.length === 1 ? "" : "s"} and their review status`), statuses));

  const points = el("ul", { class: "key-points" });
  for (const p of data.key_points) {
    points.append(el("li", {}, cited(p.text, id), p.note ? el("span", { class: "note" }, ` (${p.note})`) : null));
  }
  if (!data.no_match) card.append(el("h3", {}, "Key points"), data.key_points.length ? points : el("p", { class: "empty" }, "No cited sentence answers this directly; see the passages below."));

  for (const group of data.groups) {
    if (!group.passages.length) continue;
    const list = el("ol", { class: "passages" });
    for (const p of group.passages) {
      list.append(el("li", { class: "passage", "data-article": p.article_id, "data-status": p.review_status },
        el("div", { class: "meta" }, badge(p.review_status, p.review_status_label), " ", el("span", { class: "article" }, p.article_title)),
        el("div", { class: "section" }, p.section_path.join(" › ")),
        el("p", { class: "text" }, cited(p.text, id)),
        p.retraction_warning ? el("p", { class: "retraction-warning", role: "alert" }, p.retraction_warning) : null,
        p.note ? el("p", { class: "note" }, p.note) : null));
    }
    card.append(el("h3", { class: `group group-${group.name}` }, group.label), list);
  }

  const refs = el("ol", { class: "refs", "aria-label": "References" });
  for (const r of data.references) {
    const ids = [];
    if (r.identifiers.pmid) ids.push(el("a", { href: `https://pubmed.ncbi.nlm.nih.gov/${r.identifiers.pmid}/`, rel: "noopener" }, `PMID ${r.identifiers.pmid}`));
    if (r.identifiers.doi) ids.push(el("a", { href: `https://doi.org/${r.identifiers.doi}`, rel: "noopener" }, `doi:${r.identifiers.doi}`));
    if (r.identifiers.url && !ids.length) ids.push(el("a", { href: r.identifiers.url, rel: "noopener" }, "source"));
    refs.append(el("li", { class: r.unresolved ? "ref unresolved" : "ref", id: `${id}-ref-${r.number}`, value: r.number },
      el("span", { class: "kind" }, r.kind || "unresolved"), " ", r.title, r.source ? ". " : "", r.source ? el("em", {}, r.source) : null,
      r.year ? `, ${r.year}` : "", ". ", ...ids,
      ...r.notices.map((n) => el("span", { class: `notice notice-${n.type}` }, ` ${n.type.replace(/_/g, " ")}${n.pmid ? ` (PMID ${n.pmid})` : ""}${n.citation ? `: ${n.citation}` : ""}`)), el("span", { class: "from" }, ` (in: ${r.article_title})`)));
  }
  card.append(el("h3", {}, "References"), refs);

  if (data.related_questions.length) {
    const related = el("ul", { class: "related" });
    for (const q of data.related_questions) {
      const link = el("a", { href: `/?q=${encodeURIComponent(q)}`, class: "related-question" }, q);
      link.addEventListener("click", (event) => { event.preventDefault(); ask(q, false); });
      related.append(el("li", {}, link));
    }
    card.append(el("h3", {}, "Related questions"), related);
  }
  return card;
}

async function ask(question, followUp) {
  const status = document.getElementById("status");
  status.textContent = "Searching…";
  const body = { question };
  if (followUp && conversationId) body.conversation_id = conversationId;
  try {
    const response = await fetch("/api/ask", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await response.json();
    if (!response.ok) { status.textContent = data.error ? data.error.message : `Error ${response.status}`; return; }
    conversationId = data.conversation_id;
    const answers = document.getElementById("answers");
    if (!followUp) answers.replaceChildren();
    const card = renderAnswer(data);
    answers.append(card);
    document.getElementById("followup").hidden = false;
    status.textContent = "";
    card.scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    status.textContent = "The server could not be reached.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("search-form");
  const box = document.getElementById("q");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!box.value.trim()) return;
    history.replaceState(null, "", `/?q=${encodeURIComponent(box.value.trim())}`);
    document.getElementById("results")?.remove();
    ask(box.value.trim(), false);
  });
  const followForm = document.getElementById("followup");
  const followBox = document.getElementById("followup-q");
  followForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!followBox.value.trim()) return;
    ask(followBox.value.trim(), true);
    followBox.value = "";
  });
  const initial = new URLSearchParams(location.search).get("q");
  if (initial && initial.trim()) {
    document.getElementById("results")?.remove();
    ask(initial.trim(), false);
  }
});
