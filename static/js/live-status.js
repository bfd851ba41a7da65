// Shows whether the browser reaches the server's websocket path (through the channel layer).
(function () {
  "use strict";
  const el = document.getElementById("live-status");
  if (!el) return;
  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + el.dataset.wsUrl);
    ws.onopen = function () { ws.send(JSON.stringify({ type: "ping", id: "home" })); };
    ws.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.type === "pong") {
        el.textContent = "Connected";
        el.className = "status ok";
        delay = 1000;
      }
    };
    ws.onclose = function () {
      el.textContent = "Connection lost — reconnecting…";
      el.className = "status warn";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  connect();
})();
