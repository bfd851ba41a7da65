// Adapter pages: live training progress (steps, loss, state) over a websocket.
// Everything from the server is inserted with textContent.
(function () {
  "use strict";
  const root = document.querySelector("[data-ws='/ws/adapters/']");
  if (!root) return;
  const live = document.getElementById("live");
  const detail = document.getElementById("adapter");
  const history = [];
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
  let reason = ""; // what the server said before closing for good
  if (detail) {
    try { history.push(...JSON.parse(document.getElementById("loss-chart").dataset.history || "[]")); } catch (e) { /* empty */ }
  }

  function drawLoss() {
    const line = document.querySelector("#loss-chart polyline");
    if (!line || !history.length) return;
    const W = 420, H = 160, P = 28;
    const top = Math.max(...history.map(function (h) { return h[1]; })) || 1;
    const last = Math.max(history[history.length - 1][0], 1);
    line.setAttribute("points", history.map(function (h) {
      return (P + (W - 2 * P) * h[0] / last).toFixed(1) + "," + (H - P - (H - 2 * P) * h[1] / top).toFixed(1);
    }).join(" "));
  }

  function onDetail(msg) {
    if (String(msg.id) !== detail.dataset.adapterId) return;
    if (msg.state !== detail.dataset.state || msg.metrics) { location.reload(); return; }
    document.getElementById("adapter-step").textContent = msg.step;
    document.getElementById("adapter-total").textContent = msg.total;
    let phase = msg.phase === "evaluating" ? "Evaluating" : (msg.phase === "training" ? "Training" : "");
    if (msg.phase === "evaluating" && msg.to_evaluate) phase += " (" + msg.evaluated + " of " + msg.to_evaluate + " answers)";
    document.getElementById("adapter-phase").textContent = phase;
    if (msg.total) document.getElementById("adapter-progress").value = Math.round(100 * msg.step / msg.total);
    if (msg.loss !== null && msg.loss !== undefined) {
      document.getElementById("adapter-loss").textContent = msg.loss;
      if (!history.length || history[history.length - 1][0] !== msg.step) history.push([msg.step, msg.loss]);
      drawLoss();
    }
  }

  function onList(msg) {
    const row = document.querySelector('tr[data-adapter-id="' + msg.id + '"]');
    if (!row) return;
    if (row.dataset.state !== msg.state) { location.reload(); return; }
    const bar = row.querySelector("progress");
    if (bar && msg.total) bar.value = Math.round(100 * msg.step / msg.total);
  }

  function shownIds() {
    if (detail) return [Number(detail.dataset.adapterId)];
    return Array.from(document.querySelectorAll("tr[data-adapter-id]"), function (row) {
      return Number(row.dataset.adapterId);
    });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.ws);
    socket.onopen = function () {
      // Ask for the current state of what this page shows: a change pushed while the page
      // loaded or the socket was down would otherwise never reach it.
      socket.send(JSON.stringify({ type: "sync", ids: shownIds() }));
      root.dataset.connected = "true";
      if (live) live.textContent = "Live";
    };
    socket.onclose = function (event) {
      root.dataset.connected = "false";
      if (SIGNED_OUT[event.code]) {
        root.dataset.refused = String(event.code);
        if (live) showSignIn(live, reason || SIGNED_OUT[event.code]);
        return;
      }
      if (live) live.textContent = "Reconnecting…";
      setTimeout(connect, 2000);
    };
    socket.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.fatal) reason = msg.message;
      if (msg.type !== "progress") return;
      if (detail) onDetail(msg); else onList(msg);
    };
  }
  connect();
})();
