// Documents page: drag-and-drop upload through the JSON API, live state over a websocket.
// Everything from the server is inserted with textContent: file names may be hostile.
(function () {
  "use strict";
  const section = document.getElementById("upload");
  if (!section) return;
  const form = document.getElementById("upload-form");
  const input = document.getElementById("upload-files");
  const zone = document.getElementById("dropzone");
  const results = document.getElementById("upload-results");
  const rows = document.getElementById("document-rows");
  const template = document.getElementById("row-template");
  const live = document.getElementById("live");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  // Close codes after which reconnecting cannot help (docs/chat-protocol.md): no session, not
  // allowed, the session ended. The page says so, with a sign-in link, and stops.
  const SIGNED_OUT = { 4401: "You are signed out.", 4403: "You may not see this live.", 4410: "Your session has ended." };
  function showSignIn(target, text) {
    target.textContent = text + " ";
    const link = document.createElement("a");
    link.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
    link.textContent = "Sign in";
    target.append(link);
  }
  let signedOut = false;
  const stateLabels = { queued: "Queued", processing: "Processing", indexed: "Indexed", failed: "Failed", expired: "Expired" };

  function rowFor(id) { return rows.querySelector('tr[data-doc-id="' + id + '"]'); }

  function render(row, doc) {
    const state = doc.state;
    row.dataset.state = state;
    const badge = row.querySelector(".state");
    badge.className = "state state-" + state;
    badge.textContent = stateLabels[state] || state;
    const bar = row.querySelector(".bar");
    const busy = state === "queued" || state === "processing";
    bar.hidden = !busy;
    if (doc.percent !== undefined) bar.value = doc.percent;
    if (doc.reason !== undefined) row.querySelector(".reason").textContent = doc.reason || "";
    if (doc.chunks !== undefined) row.querySelector(".doc-chunks").textContent = doc.chunks;
    if (doc.title) row.querySelector(".doc-title").textContent = doc.title;
    const actions = row.querySelector(".actions");
    const retry = actions.querySelector("form.retry");
    if ((state === "failed" || state === "expired") && !retry) {
      const f = document.createElement("form");
      f.method = "post";
      f.className = "retry";
      f.action = "/manage/documents/" + row.dataset.docId + "/retry/";
      const token = document.createElement("input");
      token.type = "hidden"; token.name = "csrfmiddlewaretoken"; token.value = csrf;
      const button = document.createElement("button");
      button.type = "submit"; button.textContent = "Retry";
      f.append(token, button);
      actions.prepend(f);
    } else if (retry && busy) {
      retry.remove();
    }
  }

  function addRow(doc) {
    let row = rowFor(doc.id);
    if (!row) {
      row = template.content.firstElementChild.cloneNode(true);
      row.dataset.docId = doc.id;
      const title = row.querySelector(".doc-title");
      title.textContent = doc.title;
      title.href = doc.url;
      row.querySelector(".doc-file").textContent = doc.original_name;
      row.querySelector(".doc-collection").textContent = doc.collection.name;
      row.querySelector(".doc-delete").href = doc.url + "delete/";
      const empty = rows.querySelector("tr.empty");
      if (empty) empty.remove();
      rows.prepend(row);
    }
    render(row, { state: doc.state, percent: doc.progress.percent, reason: doc.reason, chunks: doc.chunks });
  }

  function note(text, kind) {
    const li = document.createElement("li");
    li.className = kind;
    li.textContent = text;
    results.prepend(li);
  }

  async function upload(file) {
    const body = new FormData();
    body.append("collection", form.elements.collection.value);
    body.append("file", file, file.name);
    try {
      const response = await fetch(section.dataset.api, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf, "Accept": "application/json" },
      });
      const data = await response.json();
      if (!response.ok && !data.results) { note(file.name + ": " + (data.error || response.statusText), "error"); return; }
      for (const result of data.results) {
        note(result.message, result.outcome === "refused" ? "error" : "ok");
        addRow(result.document);
      }
    } catch (err) {
      note(file.name + ": upload failed (" + err.message + ")", "error");
    }
  }

  function uploadAll(files) { for (const file of files) upload(file); }
  input.addEventListener("change", function () { uploadAll(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) { uploadAll(e.dataTransfer.files); });

  // Pushes can be lost (Redis may drop them, a socket may reconnect): while any row is still
  // queued or processing, re-read those documents from the API every few seconds.
  async function resync() {
    if (signedOut) return;
    const busyRows = rows.querySelectorAll('tr[data-state="queued"], tr[data-state="processing"]');
    for (const row of busyRows) {
      try {
        const response = await fetch(section.dataset.api + row.dataset.docId + "/", {
          credentials: "same-origin", headers: { "Accept": "application/json" },
        });
        if (!response.ok) continue;
        const doc = await response.json();
        render(row, { state: doc.state, percent: doc.progress.percent, reason: doc.reason, chunks: doc.chunks, title: doc.title });
      } catch (err) { /* offline for a moment: the next round tries again */ }
    }
  }
  setInterval(resync, 5000);

  let delay = 1000;
  let reason = ""; // what the server said before closing for good
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + section.dataset.ws);
    ws.onopen = function () { live.textContent = "Live"; delay = 1000; resync(); };
    ws.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.fatal) reason = msg.message;
      if (msg.type !== "progress") return;
      const row = rowFor(msg.id);
      if (!row) return;
      const update = { state: msg.state };
      if (msg.total) update.percent = Math.round(100 * msg.done / msg.total);
      if (msg.state === "indexed") { update.percent = 100; update.chunks = msg.total; update.reason = ""; update.title = msg.title; }
      if (msg.reason !== undefined) update.reason = msg.reason;
      render(row, update);
    };
    ws.onclose = function (event) {
      if (SIGNED_OUT[event.code]) {
        signedOut = true;
        section.dataset.refused = String(event.code);
        showSignIn(live, reason || SIGNED_OUT[event.code]);
        return;
      }
      live.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  connect();
})();
