// Chat page: websocket protocol in docs/chat-protocol.md. One answer streams at a time; the
// question box stays open meanwhile, and questions typed then wait in a queue, sent in order.
import { root, input, send, stop, form, queuedNote, showBanner, announce } from "./dom.js";
import { connect } from "./socket.js";
import * as render from "./render.js";
import { follow, stickToBottom } from "./scroll.js";
import { wireFeedback } from "./feedback.js";
import { wireActions } from "./actions.js";

const STAGES = { searching: "Searching your documents…", answering: "Writing the answer…" };
const RECOVER_TRIES = 6; // the stopped answer is recorded within seconds of a dropped socket
const state = {
  conversation: root.dataset.conversation ? parseInt(root.dataset.conversation, 10) : null,
  current: null, // { id, node, text, question, document, lost }
  queue: [], // questions typed while an answer was streaming
  pending: null, // a frame waiting for the socket to open
  scope: null, // "ask the document": { document, title } for the next questions
};
let socket = null;

function busy(on) {
  stop.hidden = !on;
  send.textContent = on ? "Queue" : "Send";
  root.dataset.busy = String(on);
}

function showQueue() {
  queuedNote.hidden = !state.queue.length;
  queuedNote.textContent = state.queue.length
    ? "Queued: " + state.queue.map(function (q) { return "“" + q.text.slice(0, 60) + "”"; }).join(", ") + " — sent when this answer finishes."
    : "";
}

export function ask(text, options) {
  text = (text || "").trim();
  if (!text || root.dataset.refused) return false; // refused: the message stays in the box
  const question = { text: text, document: (options && options.document) || (state.scope && state.scope.document) || null };
  if (state.current) {
    state.queue.push(question);
    showQueue();
    return true;
  }
  start(question);
  return true;
}

function start(question) {
  const id = "q" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7);
  render.addUser(question.text);
  const node = render.addAnswer();
  state.current = { id: id, node: node, text: "", question: question.text, lost: false };
  busy(true);
  stickToBottom();
  announce("Counsel is answering.");
  const frame = { type: "ask", id: id, text: question.text, conversation: state.conversation };
  if (question.document) frame.document = question.document;
  if (socket && socket.ready()) socket.send(frame);
  else { state.pending = frame; showBanner("Connecting…", "warn"); }
}

function finish(announcement) {
  const hadFocus = document.activeElement === stop || document.activeElement === document.body;
  state.current = null;
  busy(false);
  announce(announcement);
  if (hadFocus) input.focus(); // the Stop button is gone: focus goes back to the question
  const next = state.queue.shift();
  showQueue();
  if (next) start(next);
}

async function swapRecorded(node, url) {
  try {
    const recorded = await render.loadRecorded(node, url);
    if (recorded) render.rememberConversation(state, parseInt(recorded.dataset.conversation, 10), recorded.dataset.conversationTitle);
    return recorded;
  } catch (e) {
    return null; // the live answer stays as it is
  }
}

function handle(msg) {
  if (msg.type === "hello") { showBanner("", ""); return; }
  const current = state.current;
  if (!current || msg.id !== current.id) return;
  const node = current.node;
  const statusLine = node.querySelector(".status-line");
  if (msg.type === "status") { statusLine.textContent = STAGES[msg.stage] || ""; return; }
  if (msg.type === "queued") { statusLine.textContent = "Busy — you are number " + msg.position + " in the queue…"; return; }
  if (msg.type === "quote") { render.showQuote(node, msg.quote); return; }
  if (msg.type === "delta") {
    current.text += msg.text;
    render.showStream(node, msg, current.text);
    statusLine.textContent = "";
    follow();
    return;
  }
  if (msg.type === "done") {
    node.classList.remove("streaming");
    node.classList.add("status-" + msg.status);
    statusLine.textContent = "";
    node.querySelector(".answer").innerHTML = msg.html; // sanitised on the server (nh3)
    render.showQuote(node, msg.quote);
    render.showCitations(node, msg.citations || []);
    node.dataset.message = msg.message;
    render.rememberConversation(state, msg.conversation, msg.conversation_title);
    follow();
    swapRecorded(node, render.answerUrl(msg.message)).then(function () { follow(); });
    finish("The answer is ready.");
    return;
  }
  if (msg.type === "stopped") {
    node.classList.remove("streaming");
    statusLine.textContent = "Stopped.";
    const stream = node.querySelector(".stream");
    if (!stream.textContent.trim()) {
      stream.classList.add("muted");
      stream.textContent = "Stopped before any answer was written.";
    }
    // Recorded, in a new conversation perhaps, titled by its first question as on the server.
    if (msg.conversation) render.rememberConversation(state, msg.conversation, current.question.slice(0, 80));
    finish("The answer was stopped.");
    return;
  }
  if (msg.type === "error") {
    render.showError(node, msg.message, msg.discard);
    if (msg.conversation) render.rememberConversation(state, msg.conversation, current.question.slice(0, 80));
    finish("The answer failed.");
  }
}

// After a dropped socket the server stops the answer and records it (docs/chat-protocol.md):
// once connected again, the page fetches that record instead of losing what was streaming.
async function recover() {
  const current = state.current;
  for (let i = 1; i <= RECOVER_TRIES && state.current === current; i++) {
    const recorded = await swapRecorded(current.node, render.recoverUrl(current.id));
    if (recorded) { finish("The connection came back; the answer as it was recorded is shown."); return; }
    await new Promise(function (resolve) { setTimeout(resolve, 500 * i); });
  }
  if (state.current !== current) return;
  render.showError(current.node, "The connection dropped and the answer was not recorded. Ask again.");
  finish("The answer was lost.");
}

function stopAnswer() {
  if (state.current && socket && socket.ready()) socket.send({ type: "stop", id: state.current.id });
}

socket = connect({
  message: handle,
  open: function () {
    if (state.current && state.current.lost) { recover(); return; }
    if (state.pending) { socket.send(state.pending); state.pending = null; }
  },
  lost: function () {
    if (!state.current || state.pending) return;
    state.current.lost = true;
    state.current.node.querySelector(".status-line").textContent = "Connection lost — the answer will be recovered…";
  },
  refused: function (message) {
    if (!state.current) return;
    render.showError(state.current.node, message);
    state.queue = [];
    finish("The chat was closed.");
  },
});

form.addEventListener("submit", function (e) {
  e.preventDefault();
  if (ask(input.value)) input.value = "";
});
input.addEventListener("keydown", function (e) {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    if (ask(input.value)) input.value = "";
  }
});
stop.addEventListener("click", stopAnswer);
document.addEventListener("keydown", function (e) {
  if (e.key === "Escape" && state.current && !e.target.closest("dialog, details[open] summary")) {
    e.preventDefault();
    stopAnswer();
  }
});

wireFeedback();
wireActions({ ask: ask, state: state });
