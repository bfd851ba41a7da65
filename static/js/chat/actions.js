// What a reader does with the thread: copy, regenerate, edit and resend, citation previews,
// "ask the document", suggested questions, shortcuts, and a confirmation before deleting.
import { thread, input, announce } from "./dom.js";

const scope = document.getElementById("scope");

function questionBefore(answer) {
  let node = answer.previousElementSibling;
  while (node && !node.classList.contains("user")) node = node.previousElementSibling;
  return node ? node.dataset.question : "";
}

async function copy(answer, button) {
  const text = answer.querySelector(".answer").innerText.trim();
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // No clipboard permission (an insecure origin): select the text for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents(answer.querySelector(".answer"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  button.textContent = "Copied";
  button.dataset.copied = "true";
  announce("Answer copied.");
}

function edit(question) {
  input.value = question;
  input.focus();
  input.setSelectionRange(question.length, question.length);
}

function togglePreview(button, open) {
  const item = button.closest("li");
  const show = open === undefined ? button.getAttribute("aria-expanded") !== "true" : open;
  button.setAttribute("aria-expanded", String(show));
  item.classList.toggle("open", show);
}

// A click on a preview that hover opened pins it open (it stays when the pointer leaves).
function pinOrToggle(button) {
  const item = button.closest("li");
  if (item.dataset.hovered) { delete item.dataset.hovered; togglePreview(button, true); return; }
  togglePreview(button);
}

function setScope(state, document, title) {
  state.scope = document ? { document: document, title: title } : null;
  scope.hidden = !document;
  scope.querySelector("span").textContent = document ? "Asking only “" + title + "”." : "";
  if (document) { input.focus(); announce("Your next questions are limited to " + title + "."); }
}

export function wireActions(chat) {
  thread.addEventListener("click", function (e) {
    const button = e.target.closest("button");
    if (!button) return;
    const item = button.closest("li.msg, li.intro, li.citation");
    if (button.dataset.action === "copy") copy(button.closest("li.msg"), button);
    else if (button.dataset.action === "regenerate") chat.ask(questionBefore(button.closest("li.msg")));
    else if (button.dataset.action === "edit") edit(button.closest("li.msg").dataset.question);
    else if (button.classList.contains("preview-toggle")) pinOrToggle(button);
    else if (button.classList.contains("ask-document")) setScope(chat.state, parseInt(button.dataset.document, 10), button.dataset.title);
    else if (button.classList.contains("suggestion")) chat.ask(button.dataset.question);
    return item;
  });
  // Hover opens a preview as a tap does; leaving closes what hover opened.
  thread.addEventListener("mouseover", function (e) {
    const item = e.target.closest("li.citation");
    if (item && !item.classList.contains("open")) { togglePreview(item.querySelector(".preview-toggle"), true); item.dataset.hovered = "true"; }
  });
  thread.addEventListener("mouseout", function (e) {
    const item = e.target.closest("li.citation");
    if (item && item.dataset.hovered && !item.contains(e.relatedTarget)) {
      delete item.dataset.hovered;
      togglePreview(item.querySelector(".preview-toggle"), false);
    }
  });
  document.getElementById("scope-clear").addEventListener("click", function () { setScope(chat.state, null); input.focus(); });
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
  document.addEventListener("keydown", function (e) {
    const typing = e.target.closest("input, textarea, select, [contenteditable]");
    if (e.key === "/" && !typing) { e.preventDefault(); input.focus(); return; }
    if (e.key === "ArrowUp" && e.target === input && !input.value) {
      const asked = thread.querySelectorAll("li.msg.user");
      if (asked.length) { e.preventDefault(); edit(asked[asked.length - 1].dataset.question); }
    }
  });
}
