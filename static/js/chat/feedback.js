// Thumbs and comments without leaving the page. Enter in the comment saves the comment with the
// rating already chosen (never a rating of its own: implicit submission used the first button,
// "Helpful", and turned a thumbs-down into a thumbs-up).
import { thread, csrf } from "./dom.js";

function post(f, rating) {
  const body = new FormData(f);
  if (rating) body.append("rating", rating);
  return fetch(f.action, { method: "POST", body: body, headers: { "X-CSRFToken": csrf, "Accept": "application/json" }, credentials: "same-origin" });
}

function chosen(f) {
  const pressed = f.querySelector('button[aria-pressed="true"]');
  return pressed ? pressed.value : "";
}

export function wireFeedback() {
  thread.addEventListener("submit", function (e) {
    const f = e.target.closest("form.feedback");
    if (!f) return;
    e.preventDefault();
    const button = e.submitter && e.submitter.name === "rating" ? e.submitter : null;
    if (!button) return; // only the thumbs rate
    post(f, button.value).then(function (r) {
      if (!r.ok) return;
      f.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      f.dataset.saved = "rating";
    });
  });
  thread.addEventListener("keydown", function (e) {
    const field = e.target.closest("form.feedback input[name=comment]");
    if (!field || e.key !== "Enter") return;
    e.preventDefault();
    const f = field.form;
    if (!chosen(f)) {
      field.setAttribute("aria-invalid", "true");
      field.title = "Choose Helpful or Not helpful first";
      return;
    }
    field.removeAttribute("aria-invalid");
    post(f, chosen(f)).then(function (r) { if (r.ok) f.dataset.saved = "comment"; });
  });
}
