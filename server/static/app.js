// The search page: asks /api/ask and renders each turn's answer, keeping the whole conversation
// on the page; follow-ups continue the conversation. An answer's permalink page (/answers/ID)
// renders the stored answer the same way. No inline script: every handler is attached here.
"use strict";

const CITATION = /(?<!\\)\[(\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?(?:\s*,\s*\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?)*)\]/g;
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
function cited(text, answerId, numbers) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(CITATION)) {
    // Only the text's own citations are links; any other bracket (an escaped "[3]" in the source) is text.
    const named = match[1].split(",").map((part) => Number(part.split(/[-\u2013]/)[0].trim()));
    if (numbers && !named.every((n) => numbers.includes(n))) continue;
    frag.append(text.slice(last, match.index));
    const first = match[1].split(/[,\u2013-]/)[0].trim();
    frag.append(el("a", { class: "cite", href: `#${answerId}-ref-${first}` }, match[0]));
    last = match.index + match[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

// An absolute http(s) URL as a link target, or null: anything else (javascript:, data:, ...) is shown as text.
function httpUrl(value) {
  if (typeof value !== "string" || /[\s\u0000-\u001f\u007f\\]/.test(value)) return null;
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname ? url.href : null;
  } catch {
    return null;
  }
}

function badge(status, review) {
  return el("span", { class: `badge status-${status} state-${review.state}`, title: "Article review status" }, review.label);
}

// Who approved the article and when, or why it is pending.
function reviewLine(review) {
  return review.approved
    ? el("p", { class: "review approved" }, review.note)
    : el("p", { class: "passage-caution review" }, review.note);
}

const COMMENT_CHARS = 2000;

// Helpful / not helpful, with an optional comment, sent with the answer's id.
function feedbackBox(answerId) {
  const box = el("div", { class: "feedback" }, el("span", { class: "feedback-ask" }, "Was this answer helpful? "));
  const yes = el("button", { type: "button", class: "feedback-helpful", "data-helpful": "true" }, "Helpful");
  const no = el("button", { type: "button", class: "feedback-not-helpful", "data-helpful": "false" }, "Not helpful");
  const comment = el("textarea", { class: "feedback-comment", maxlength: String(COMMENT_CHARS), rows: "2",
    placeholder: "Optional: what was missing or wrong?", "aria-label": "Feedback comment (optional)" });
  const send = el("button", { type: "button", class: "feedback-send" }, "Send feedback");
  const form = el("div", { class: "feedback-form", hidden: "" }, comment, send);
  const said = el("p", { class: "feedback-status", role: "status" });
  let helpful = null;
  for (const button of [yes, no]) {
    button.addEventListener("click", () => {
      helpful = button.dataset.helpful === "true";
      yes.setAttribute("aria-pressed", String(helpful));
      no.setAttribute("aria-pressed", String(!helpful));
      form.hidden = false;
      comment.focus();
    });
  }
  send.addEventListener("click", async () => {
    if (helpful === null) return;
    send.disabled = true;
    const body = { helpful };
    if (comment.value.trim()) body.comment = comment.value.trim();
    try {
      const response = await fetch(`/api/answers/${encodeURIComponent(answerId)}/feedback`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const data = await response.json();
      if (response.ok) {
        form.hidden = true; yes.disabled = true; no.disabled = true;
        said.textContent = "Thank you: your feedback was recorded with this answer.";
      } else {
        said.textContent = data.error ? data.error.message : `Error ${response.status}`;
        send.disabled = false;
      }
    } catch (error) {
      said.textContent = "The server could not be reached.";
      send.disabled = false;
    }
  });
  box.append(yes, " ", no, form, said);
  return box;
}

// Permalink, reference export and feedback for a kept answer.
function answerActions(data) {
  const actions = el("div", { class: "answer-actions" });
  if (!data.answer_id) return actions;
  const id = encodeURIComponent(data.answer_id);
  actions.append(el("p", { class: "permalink" }, "Permalink: ", el("a", { href: data.permalink, class: "permalink-link" }, `${location.origin}${data.permalink}`)));
  if (data.references.length) {
    actions.append(el("p", { class: "export" }, "Export references: ",
      el("a", { href: `/api/answers/${id}/references.ris`, class: "export-ris" }, "RIS"), " · ",
      el("a", { href: `/api/answers/${id}/references.bib`, class: "export-bib" }, "BibTeX"), " · ",
      el("a", { href: `/api/answers/${id}/references.txt`, class: "export-txt" }, "Text (NLM)")));
  }
  actions.append(feedbackBox(data.answer_id));
  return actions;
}

function suggestionLinks(questions) {
  const list = el("ul", { class: "related suggestions" });
  for (const q of questions) {
    const link = el("a", { href: `/?q=${encodeURIComponent(q)}`, class: "related-question" }, q);
    // On the search page a suggestion is asked in place; on a permalink page the link goes to the search page.
    if (!document.body.dataset.answerId) link.addEventListener("click", (event) => { event.preventDefault(); ask(q, false); });
    list.append(el("li", {}, link));
  }
  return list;
}

function renderAnswer(data) {
  turn += 1;
  const id = `a${turn}`;
  const card = el("article", { class: `answer turn-${data.turn || "question"}`, id, "data-conversation": data.conversation_id || "",
    "data-turn": data.turn || "question", "data-answer": data.answer_id || "" });
  card.append(el("h2", { class: "answer-question" }, data.question));
  if (data.notice) card.append(el("p", { class: "notice", role: "note" }, data.notice));
  if (data.turn === "acknowledgement") {
    card.append(el("p", { class: "reply" }, data.reply || "OK."));
    return card;
  }
  if (data.searched_for) card.append(el("p", { class: "searched-for" }, "Searched for: ", el("q", {}, data.searched_for)));
  if (data.resolved_query && data.resolved_query !== data.question) {
    card.append(el("p", { class: "resolved" }, "Searched as: ", el("q", {}, data.resolved_query)));
  }
  if (data.searched_for) card.append(el("p", { class: "searched-for" }, "Searched for: ", el("q", {}, data.searched_for)));
  if (data.no_match) {
    card.append(el("p", { class: "no-match", role: "note" }, data.no_match));
    if (data.related_questions.length) card.append(el("h3", {}, "Try instead"), suggestionLinks(data.related_questions));
    card.append(answerActions(data));
    return card;
  }
  if (data.coverage) card.append(el("p", { class: "coverage" }, data.coverage.summary));
  if (data.caution) card.append(el("div", { class: "caution", role: "note" }, data.caution));

  const statuses = el("ul", { class: "article-statuses" });
  for (const a of data.articles) {
    statuses.append(el("li", { "data-article": a.id, "data-status": a.review_status }, badge(a.review_status, a.review), " ", a.title,
      el("span", { class: "updated" }, ` · updated ${a.last_updated || "unknown"}`), reviewLine(a.review)));
  }
  card.append(el("details", { class: "sources" }, el("summary", {}, `${data.articles.length} source article${data.articles.length === 1 ? "" : "s"} and their review status`), statuses));

  const points = el("ul", { class: "key-points" });
  for (const p of data.key_points) {
    points.append(el("li", {}, cited(p.text, id, p.citations), p.note ? el("span", { class: "note" }, ` (${p.note})`) : null));
  }
  if (data.aspect_note) {
    card.append(el("p", { class: "aspect-note", role: "note" }, data.aspect_note));
  } else {
    card.append(el("h3", {}, "Key points"), data.key_points.length ? points : el("p", { class: "empty" }, "No cited sentence answers this directly; see the passages below."));
  }

  for (const group of data.groups) {
    if (!group.passages.length) continue;
    const list = el("ol", { class: "passages" });
    for (const p of group.passages) {
      list.append(el("li", { class: "passage", "data-article": p.article_id, "data-status": p.review_status },
        el("div", { class: "meta" }, badge(p.review_status, p.review), " ", el("span", { class: "article" }, p.article_title)),
        el("div", { class: "section" }, p.section_path.join(" › ")),
        el("p", { class: "text" }, cited(p.text, id, p.citations)),
        reviewLine(p.review),
        p.retraction_warning ? el("p", { class: "retraction-warning", role: "alert" }, p.retraction_warning) : null,
        p.note ? el("p", { class: "note" }, p.note) : null));
    }
    card.append(el("h3", { class: `group group-${group.name}` }, group.label), list);
  }

  const refs = el("ol", { class: "refs", "aria-label": "References" });
  for (const r of data.references) {
    const ids = [];
    if (r.identifiers.pmid) ids.push(el("a", { href: `https://pubmed.ncbi.nlm.nih.gov/${encodeURIComponent(r.identifiers.pmid)}/`, rel: "noopener noreferrer" }, `PMID ${r.identifiers.pmid}`));
    if (r.identifiers.doi) ids.push(el("a", { href: `https://doi.org/${r.identifiers.doi.split("/").map(encodeURIComponent).join("/")}`, rel: "noopener noreferrer" }, `doi:${r.identifiers.doi}`));
    if (r.identifiers.url && !ids.length) {
      const href = httpUrl(r.identifiers.url);
      ids.push(href ? el("a", { href, rel: "noopener noreferrer" }, "source") : el("span", { class: "url" }, r.identifiers.url));
    }
    refs.append(el("li", { class: r.unresolved ? "ref unresolved" : "ref", id: `${id}-ref-${r.number}`, value: r.number },
      el("span", { class: "kind" }, r.kind || "unresolved"), " ", r.title, r.source ? ". " : "", r.source ? el("em", {}, r.source) : null,
      r.year ? `, ${r.year}` : "", ". ", ...ids.flatMap((link, i) => (i ? [" ", link] : [link])),
      ...r.notices.map((n) => el("span", { class: `ref-notice ref-notice-${n.type}` }, ` ${n.type.replace(/_/g, " ")}${n.pmid ? ` (PMID ${n.pmid})` : ""}${n.citation ? `: ${n.citation}` : ""}`)), el("span", { class: "from" }, ` (in: ${(r.cited_in && r.cited_in.length ? r.cited_in : [r]).map((c) => c.article_title).join("; ")})`)));
  }
  card.append(el("h3", {}, "References"), refs);

  if (data.related_questions.length) card.append(el("h3", {}, "Related questions"), suggestionLinks(data.related_questions));
  card.append(answerActions(data));
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
    if (response.status === 404 && body.conversation_id) {
      // The conversation expired or was dropped: forget it, or every later follow-up gets the same 404.
      conversationId = null;
      status.textContent = "This conversation has expired, so the follow-up could not use it: ask the question in full (it starts a new conversation).";
      return;
    }
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

// The permalink page: the stored answer, rendered as the search page renders answers.
async function showStoredAnswer(answerId) {
  const status = document.getElementById("status");
  try {
    const response = await fetch(`/api/answers/${encodeURIComponent(answerId)}`);
    if (!response.ok) return; // the page already lists the answer without the script
    const data = await response.json();
    document.getElementById("answers").replaceChildren(renderAnswer(data));
  } catch (error) {
    status.textContent = "The server could not be reached; the answer is shown without its feedback buttons.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const stored = document.body.dataset.answerId;
  if (stored) {
    showStoredAnswer(stored);
    return; // the search box there is an ordinary form to the search page
  }
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
