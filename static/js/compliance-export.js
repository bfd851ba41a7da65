// Export page: poll the export's state (kept in PostgreSQL) until it is done or failed.
// Everything from the server is inserted with textContent.
(function () {
  "use strict";
  const box = document.getElementById("export");
  if (!box) return;
  const labels = { queued: "Queued", running: "Running", done: "Done", failed: "Failed" };
  const state = document.getElementById("export-state");
  const bar = document.getElementById("export-progress");
  const count = document.getElementById("export-count");
  const sha = document.getElementById("export-sha256");
  const links = document.getElementById("export-links");
  const error = document.getElementById("export-error");

  function render(s) {
    box.dataset.state = s.state;
    state.className = "state state-" + s.state;
    state.textContent = labels[s.state] || s.state;
    bar.value = s.percent;
    bar.hidden = s.state === "done" || s.state === "failed";
    count.textContent = s.written + " of " + s.total + " entries";
    if (s.sha256) sha.textContent = s.sha256;
    links.hidden = s.state !== "done";
    error.textContent = s.error || "";
    error.hidden = !s.error;
  }

  async function poll() {
    try {
      const response = await fetch(box.dataset.status, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const s = await response.json();
        render(s);
        if (s.state === "done" || s.state === "failed") return;
      }
    } catch (e) { /* the next poll tries again */ }
    setTimeout(poll, 1000);
  }

  if (box.dataset.state !== "done" && box.dataset.state !== "failed") poll();
})();
