// The chat page's fixed elements and the small helpers every module uses.
export const root = document.getElementById("chat");
export const thread = document.getElementById("thread");
export const form = document.getElementById("composer");
export const input = document.getElementById("question");
export const send = document.getElementById("send");
export const stop = document.getElementById("stop");
export const banner = document.getElementById("banner");
export const announcer = document.getElementById("announcer");
export const queuedNote = document.getElementById("queued");
export const template = document.getElementById("answer-template");
export const csrf = form ? form.querySelector("input[name=csrfmiddlewaretoken]").value : "";

export function showBanner(text, kind) {
  banner.textContent = text;
  banner.className = "banner " + (kind || "");
  banner.hidden = !text;
}

// The polite live region: a sentence when an answer starts and when it ends, never the tokens
// (the thread itself is not live, so a screen reader does not read every flush again).
export function announce(text) {
  announcer.textContent = "";
  // A new text node after a tick: screen readers announce a change, even of the same words.
  setTimeout(function () { announcer.textContent = text; }, 50);
}

// Turn a trusted server-rendered fragment (our own template, autoescaped) into an element.
export function fragment(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}
