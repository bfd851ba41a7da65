// Building and updating answers in the thread. Text from the server is set as text; the only
// HTML inserted is what the server rendered and sanitised: the answer (rendering.answer_html,
// also while it streams) and the recorded answer's fragment (our own autoescaped template).
import { root, thread, template, fragment } from "./dom.js";

export function addUser(text) {
  const intro = document.getElementById("intro");
  if (intro) intro.remove();
  const li = document.createElement("li");
  li.className = "msg user";
  li.dataset.question = text;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text;
  const edit = document.createElement("button");
  edit.type = "button";
  edit.className = "edit link small";
  edit.dataset.action = "edit";
  edit.textContent = "Edit";
  const hidden = document.createElement("span");
  hidden.className = "visually-hidden";
  hidden.textContent = " this question";
  edit.append(hidden);
  li.append(bubble, edit);
  thread.append(li);
}

export function addAnswer() {
  const node = template.content.firstElementChild.cloneNode(true);
  thread.append(node);
  return node;
}

// The answer so far, as the server's sanitiser rendered it (the `html` of a delta frame); an
// older server without it gets the text as text.
export function showStream(node, msg, text) {
  const stream = node.querySelector(".stream");
  if (typeof msg.html === "string") stream.innerHTML = msg.html; // sanitised on the server (nh3)
  else stream.textContent = text;
}

export function showCitations(node, citations) {
  const list = node.querySelector(".citations");
  list.textContent = "";
  for (const c of citations) {
    const li = document.createElement("li");
    if (c.referenced) li.className = "referenced";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = "[" + c.number + "] ";
    const link = document.createElement(c.url ? "a" : "span");
    if (c.url) link.href = c.url;
    link.textContent = c.title;
    li.append(num, link);
    if (c.heading || c.page) {
      const where = document.createElement("span");
      where.className = "muted";
      where.textContent = (c.heading ? " — " + c.heading : "") + (c.page ? " · page " + c.page : "");
      li.append(where);
    }
    list.append(li);
  }
}

// The supporting quote: real sentences of a readable source, shown before the model's first
// token. Text only.
export function showQuote(node, quote) {
  const figure = node.querySelector("figure.quote");
  if (!figure) return;
  if (!quote || !quote.text) { figure.hidden = true; return; }
  figure.querySelector("blockquote").textContent = quote.text;
  const source = figure.querySelector(".quote-source");
  source.textContent = "— ";
  const link = document.createElement(quote.url ? "a" : "span");
  if (quote.url) link.href = quote.url;
  link.textContent = quote.title || "";
  source.append(link);
  if (quote.heading) {
    const where = document.createElement("span");
    where.className = "muted";
    where.textContent = " — " + quote.heading;
    source.append(where);
  }
  figure.hidden = false;
}

export function showError(node, message, discard) {
  node.classList.remove("streaming");
  node.classList.add("status-error");
  if (discard) node.querySelector(".stream").textContent = "";
  node.querySelector(".status-line").textContent = "";
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = message;
  node.querySelector(".answer").append(p);
}

// Swap the live answer for the recorded one as the page renders it after a reload: previews,
// "why this answer", feedback. Resolves to the new element, or null when it is not recorded
// (yet): the caller keeps what it shows.
export async function loadRecorded(node, url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
  if (!response.ok) return null;
  const recorded = fragment(await response.text());
  if (!recorded || !recorded.classList.contains("msg")) return null;
  node.replaceWith(recorded);
  return recorded;
}

export function answerUrl(messageId) {
  return root.dataset.answerUrl.replace("/0/", "/" + encodeURIComponent(messageId) + "/");
}

export function recoverUrl(questionId) {
  return root.dataset.recoverUrl + "?question=" + encodeURIComponent(questionId);
}

export function rememberConversation(state, id, title) {
  if (!id || state.conversation === id) return;
  state.conversation = id;
  root.dataset.conversation = id;
  history.replaceState(null, "", "/chat/" + id + "/");
  const list = document.getElementById("conversation-list");
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = "/chat/" + id + "/";
  a.textContent = title || "Untitled";
  a.setAttribute("aria-current", "page");
  li.append(a);
  list.prepend(li);
}
