// Shows whether the browser reaches the server's websocket path (through the channel layer).
(function () {
  "use strict";
  const el = document.getElementById("live-status");
  if (!el) return;
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
  let delay = 1000;
  let reason = ""; // what the server said before closing for good
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + el.dataset.wsUrl);
    ws.onopen = function () { ws.send(JSON.stringify({ type: "ping", id: "home" })); };
    ws.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.fatal) reason = msg.message;
      if (msg.type === "pong") {
        el.textContent = "Connected";
        el.className = "status ok";
        delay = 1000;
      }
    };
    ws.onclose = function (event) {
      if (SIGNED_OUT[event.code]) {
        el.className = "status warn";
        showSignIn(el, reason || SIGNED_OUT[event.code]);
        return;
      }
      el.textContent = "Connection lost — reconnecting…";
      el.className = "status warn";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  connect();
})();
