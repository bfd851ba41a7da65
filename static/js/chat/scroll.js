// Follow the answer only while the reader is at the bottom: once they scroll up to read,
// flushes no longer pull the page down; a "New text below" button takes them back.
import { thread } from "./dom.js";

const jump = document.getElementById("jump");
const SLACK = 80; // pixels from the bottom that still count as "at the bottom"
let following = true;

function scroller() {
  // The thread scrolls inside its pane on wide screens and with the page on phones.
  return thread.scrollHeight > thread.clientHeight + 1 && getComputedStyle(thread).overflowY !== "visible"
    ? thread : document.scrollingElement;
}

function atBottom() {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight <= SLACK;
}

function onScroll() {
  following = atBottom();
  if (following) jump.hidden = true;
}

export function follow() {
  if (!following) { jump.hidden = false; return; }
  const s = scroller();
  s.scrollTop = s.scrollHeight;
}

export function stickToBottom() {
  following = true;
  jump.hidden = true;
  const s = scroller();
  s.scrollTop = s.scrollHeight;
}

export function isFollowing() { return following; }

thread.addEventListener("scroll", onScroll, { passive: true });
window.addEventListener("scroll", onScroll, { passive: true });
jump.addEventListener("click", function () { stickToBottom(); });
