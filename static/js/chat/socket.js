// The chat socket (docs/chat-protocol.md): reconnects with backoff, except after a refusal that
// reconnecting cannot cure (signed out, not allowed, session ended, too many windows, flood).
import { root, showBanner } from "./dom.js";

const SIGNED_OUT = { 4401: "You are signed out.", 4403: "You may not use the chat.", 4410: "Your session has ended." };
const FINAL = {
  4409: "Too many chat windows are open for your account. Close one, then reload this page.",
  4429: "Too many messages were sent too quickly. Reload the page to go on.",
};

// A plain message with a sign-in link, and no more reconnecting.
function showSignIn(text) {
  showBanner(text + " ", "error");
  const link = document.createElement("a");
  link.href = (root.dataset.loginUrl || "/accounts/login/") + "?next=" + encodeURIComponent(location.pathname);
  link.textContent = "Sign in";
  document.getElementById("banner").append(link);
}

// handlers: { message(msg), open(), lost() } — lost() runs when a socket that may come back
// closed, before the next try.
export function connect(handlers) {
  let socket = null;
  let delay = 1000;
  let reason = ""; // what the server said before it closed the socket for good

  function open() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.ws);
    socket.onopen = function () {
      delay = 1000;
      showBanner("", "");
      root.dataset.connected = "true";
      handlers.open();
    };
    socket.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.fatal) reason = msg.message;
      handlers.message(msg);
    };
    socket.onclose = function (event) {
      root.dataset.connected = "false";
      if (SIGNED_OUT[event.code]) {
        root.dataset.refused = String(event.code);
        handlers.refused(reason || SIGNED_OUT[event.code]);
        showSignIn(reason || SIGNED_OUT[event.code]);
        return;
      }
      if (FINAL[event.code]) {
        root.dataset.refused = String(event.code);
        handlers.refused(FINAL[event.code]);
        showBanner(FINAL[event.code], "error");
        return;
      }
      handlers.lost();
      showBanner("Connection lost — reconnecting…", "warn");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }

  open();
  return {
    ready: function () { return socket && socket.readyState === WebSocket.OPEN; },
    send: function (frame) { socket.send(JSON.stringify(frame)); },
  };
}
