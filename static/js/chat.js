// Chat page: websocket protocol in docs/chat-protocol.md. Streamed text is shown with
// textContent; the final answer arrives as server-sanitised HTML.
(function () {
  "use strict";
  const root = document.getElementById("chat");
  if (!root) return;
  const thread = document.getElementById("thread");
  const form = document.getElementById("composer");
  const input = document.getElementById("question");
  const send = document.getElementById("send");
  const stop = document.getElementById("stop");
  const banner = document.getElementById("banner");
  const template = document.getElementById("answer-template");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let conversation = root.dataset.conversation ? parseInt(root.dataset.conversation, 10) : null;
  let socket = null;
  let delay = 1000;
  let current = null; // { id, node, text, question }
  let pending = null; // a question typed before the socket opened
  let reason = ""; // what the server said before it closed the socket for good (a fatal error)
  // Close codes after which reconnecting cannot help (docs/chat-protocol.md): no session, not
  // allowed (or a temporary password to change), the session ended.
  const SIGNED_OUT = { 4401: "You are signed out.", 4403: "You may not use the chat.", 4410: "Your session has ended." };
  const stages = { searching: "Searching your documents…", answering: "Writing the answer…" };

  function showBanner(text, kind) {
    banner.textContent = text;
    banner.className = "banner " + (kind || "");
    banner.hidden = !text;
  }

  // A plain message with a sign-in link, and no more reconnecting.
  function showSignIn(text) {
    showBanner(text + " ", "error");
    const link = document.createElement("a");
    link.href = (root.dataset.loginUrl || "/accounts/login/") + "?next=" + encodeURIComponent(location.pathname);
    link.textContent = "Sign in";
    banner.append(link);
  }

  function busy(on) {
    send.hidden = on;
    stop.hidden = !on;
    input.readOnly = on;
  }

  function scrollDown() { thread.lastElementChild && thread.lastElementChild.scrollIntoView({ block: "end" }); }

  function addUser(text) {
    const intro = document.getElementById("intro");
    if (intro) intro.remove();
    const li = document.createElement("li");
    li.className = "msg user";
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    li.append(bubble);
    thread.append(li);
  }

  // The same thumbs-up/down form the page renders for earlier answers, for a live one.
  function addFeedback(node, messageId) {
    if (!messageId || node.querySelector("form.feedback")) return;
    const f = document.createElement("form");
    f.method = "post";
    f.className = "feedback";
    f.action = root.dataset.feedbackUrl.replace("/0/", "/" + encodeURIComponent(messageId) + "/");
    for (const [value, label] of [["up", "Helpful"], ["down", "Not helpful"]]) {
      const b = document.createElement("button");
      b.type = "submit";
      b.name = "rating";
      b.value = value;
      b.setAttribute("aria-label", label);
      b.title = label;
      f.append(b);
    }
    const comment = document.createElement("input");
    comment.name = "comment";
    comment.placeholder = "Comment (optional)";
    comment.setAttribute("aria-label", "Comment");
    comment.maxLength = 2000;
    f.append(comment);
    node.append(f);
  }

  function addCitations(node, citations) {
    const list = node.querySelector(".citations");
    list.textContent = "";
    for (const c of citations) {
      const li = document.createElement("li");
      if (c.referenced) li.className = "referenced";
      const num = document.createElement("span");
      num.className = "num";
      num.textContent = "[" + c.number + "] ";
      li.append(num);
      const link = document.createElement(c.url ? "a" : "span");
      if (c.url) link.href = c.url;
      link.textContent = c.title;
      li.append(link);
      if (c.heading || c.page) {
        const where = document.createElement("span");
        where.className = "muted";
        where.textContent = (c.heading ? " — " + c.heading : "") + (c.page ? " · page " + c.page : "");
        li.append(where);
      }
      list.append(li);
    }
  }

  // The supporting quote: real sentences of a readable source, shown before the model's first
  // token. Text only (textContent): nothing in it is markup.
  function showQuote(node, quote) {
    const figure = node.querySelector("figure.quote");
    if (!figure) return;
    if (!quote || !quote.text) { figure.hidden = true; return; }
    figure.querySelector("blockquote").textContent = quote.text;
    const source = figure.querySelector(".quote-source");
    source.textContent = "— ";
    const link = document.createElement(quote.url ? "a" : "span");
    if (quote.url) link.href = quote.url;
    link.textContent = quote.title || "";
    source.append(link);
    if (quote.heading) {
      const where = document.createElement("span");
      where.className = "muted";
      where.textContent = " — " + quote.heading;
      source.append(where);
    }
    figure.hidden = false;
  }

  // Which route answered, discreetly; an adapter's answer may not cite sources.
  function showRoute(node, msg) {
    if (!msg.route) return;
    const p = document.createElement("p");
    p.className = "route muted small";
    p.dataset.route = msg.route;
    const label = document.createElement("strong");
    const adapter = msg.adapter ? " " + msg.adapter : "";
    label.textContent = msg.route === "tuned"
      ? "Answered by the fine-tuned model" + adapter + " — it may not cite sources. "
      : msg.route === "hybrid"
        ? "Answered by the fine-tuned model" + adapter + " with passages from your documents. "
        : "Answered from your documents. ";
    const reason = document.createElement("span");
    reason.className = "route-reason";
    reason.textContent = msg.route_reason || "";
    p.append(label, reason);
    node.append(p);
  }

  function finish() { current = null; busy(false); input.focus(); }

  function rememberConversation(id, title) {
    if (conversation === id) return;
    conversation = id;
    root.dataset.conversation = id;
    history.replaceState(null, "", "/chat/" + id + "/");
    const list = document.getElementById("conversation-list");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "/chat/" + id + "/";
    a.textContent = title || "Untitled";
    a.setAttribute("aria-current", "page");
    li.append(a);
    list.prepend(li);
  }

  function handle(msg) {
    if (msg.type === "hello") { showBanner("", ""); return; }
    if (!current || msg.id !== current.id) return;
    const node = current.node;
    const statusLine = node.querySelector(".status-line");
    if (msg.type === "status") { statusLine.textContent = stages[msg.stage] || ""; return; }
    if (msg.type === "queued") { statusLine.textContent = "Busy — you are number " + msg.position + " in the queue…"; return; }
    if (msg.type === "quote") { showQuote(node, msg.quote); return; }
    if (msg.type === "delta") {
      current.text += msg.text;
      node.querySelector(".stream").textContent = current.text;
      statusLine.textContent = "";
      scrollDown();
      return;
    }
    if (msg.type === "done") {
      node.classList.remove("streaming");
      node.classList.add("status-" + msg.status);
      statusLine.textContent = "";
      node.querySelector(".answer").innerHTML = msg.html; // sanitised on the server (nh3)
      showQuote(node, msg.quote); // the stored one: none when the answer was a refusal
      addCitations(node, msg.citations || []);
      showRoute(node, msg);
      node.dataset.message = msg.message;
      addFeedback(node, msg.message);
      rememberConversation(msg.conversation, msg.conversation_title);
      finish();
      scrollDown();
      return;
    }
    if (msg.type === "stopped") {
      node.classList.remove("streaming");
      const stream = node.querySelector(".stream");
      statusLine.textContent = "Stopped.";
      if (!stream.textContent.trim()) {
        stream.classList.add("muted");
        stream.textContent = "Stopped before any answer was written.";
      }
      // Recorded, in a new conversation perhaps, titled by its first question as on the server.
      if (msg.conversation) rememberConversation(msg.conversation, current.question.slice(0, 80));
      finish();
      return;
    }
    if (msg.type === "error") {
      node.classList.remove("streaming");
      node.classList.add("status-error");
      if (msg.discard) node.querySelector(".stream").textContent = "";
      statusLine.textContent = "";
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = msg.message;
      node.querySelector(".answer").append(p);
      if (msg.conversation) rememberConversation(msg.conversation, current.question.slice(0, 80));
      finish();
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.ws);
    socket.onopen = function () {
      delay = 1000;
      showBanner("", "");
      root.dataset.connected = "true";
      if (pending) { socket.send(JSON.stringify(pending)); pending = null; }
    };
    socket.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.fatal) reason = msg.message;
      handle(msg);
    };
    socket.onclose = function (event) {
      root.dataset.connected = "false";
      if (current) {
        handle({ type: "error", id: current.id, message: "The connection dropped; the answer was stopped. Ask again." });
      }
      if (SIGNED_OUT[event.code]) {
        root.dataset.refused = String(event.code);
        showSignIn(reason || SIGNED_OUT[event.code]);
        return;
      }
      if (event.code === 4409) {
        showBanner("Too many chat windows are open for your account. Close one, then reload this page.", "error");
        return;
      }
      if (event.code === 4429) {
        showBanner("Too many messages were sent too quickly. Reload the page to go on.", "error");
        return;
      }
      showBanner("Connection lost — reconnecting…", "warn");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }

  function ask() {
    const text = input.value.trim();
    if (!text || current || root.dataset.refused) return; // signed out: the message stays
    const id = "q" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7);
    addUser(text);
    const node = template.content.firstElementChild.cloneNode(true);
    thread.append(node);
    current = { id: id, node: node, text: "", question: text };
    busy(true);
    input.value = "";
    scrollDown();
    const frame = { type: "ask", id: id, text: text, conversation: conversation };
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
    } else {
      pending = frame; // sent as soon as the socket (re)opens
      showBanner("Connecting…", "warn");
    }
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); ask(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); ask(); }
  });
  stop.addEventListener("click", function () {
    if (current && socket) socket.send(JSON.stringify({ type: "stop", id: current.id }));
  });
  thread.addEventListener("submit", function (e) {
    // Feedback without leaving the page.
    const f = e.target.closest("form.feedback");
    if (!f) return;
    e.preventDefault();
    const body = new FormData(f);
    body.append("rating", e.submitter ? e.submitter.value : "up");
    fetch(f.action, { method: "POST", body: body, headers: { "X-CSRFToken": csrf, "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) return;
        f.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-pressed", String(b === e.submitter)); });
      });
  });
  connect();
})();
