// The trade-review page's behaviour: explanations, the chat box, the admin token and kill switch.
// Outside text (answers, headlines) is only ever set with textContent; the explanation fragments
// come from the server already escaped by Jinja2. The admin token lives in this tab's
// sessionStorage only and is sent as a bearer token; the server never stores it.
"use strict";

(function () {
  const TOKEN_KEY = "sextant-admin-token";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function loadExplanation(target, subject, id) {
    target.replaceChildren(el("p", "pending", "Loading the explanation…"));
    try {
      const url = "/review/explain?subject=" + encodeURIComponent(subject) + "&id=" + encodeURIComponent(id);
      const response = await fetch(url, { headers: { Accept: "text/html" } });
      target.innerHTML = await response.text(); // server-rendered, autoescaped fragment
      target.dataset.status = String(response.status);
    } catch (err) {
      target.replaceChildren(el("p", "error", "The explanation could not be loaded: " + err));
    }
  }

  function sessionId(key) {
    let id = sessionStorage.getItem(key);
    if (!id) {
      id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
        : "s-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
      sessionStorage.setItem(key, id);
    }
    return id;
  }

  function renderAnswer(record) {
    const box = el("div", "chat-answer");
    box.dataset.grounded = record.grounded ? "true" : "false";
    const badges = el("p", "badges");
    badges.append(el("span", "badge " + (record.grounded ? "grounded" : "ungrounded"),
      record.grounded ? "grounded" : "not grounded"));
    badges.append(el("span", "badge model", "model: " + record.model));
    box.append(badges);
    const answer = record.answer || {};
    box.append(el("p", "summary", answer.summary));
    for (const [title, items] of [["Drivers", answer.drivers], ["Risk notes", answer.risk_notes],
      ["Claims that failed the grounding check", record.failed_claims]]) {
      if (items && items.length) {
        box.append(el("h4", null, title));
        const list = el("ul");
        for (const item of items) list.append(el("li", null, item));
        box.append(list);
      }
    }
    return box;
  }

  function setUpChat() {
    const form = document.getElementById("chat-form");
    if (!form) return;
    const log = document.getElementById("chat-log");
    const input = document.getElementById("chat-message");
    const decisionId = form.dataset.decisionId;
    const key = "sextant-chat-" + decisionId;
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const started = sessionStorage.getItem(key + "-started") === "1";
      // the first message of a session names the decision, so that "why?" has a subject
      const message = started ? text : "Decision " + decisionId + ": " + text;
      const turn = el("div", "chat-turn");
      turn.append(el("p", "chat-question", text));
      const pending = el("p", "pending", "…");
      turn.append(pending);
      log.append(turn);
      input.value = "";
      try {
        const response = await fetch("/v1/chat", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ session_id: sessionId(key), message: message }),
        });
        const body = await response.json();
        if (response.ok) {
          sessionStorage.setItem(key + "-started", "1");
          pending.replaceWith(renderAnswer(body));
        } else {
          pending.replaceWith(el("p", "error", "HTTP " + response.status + ": " + (body.detail || "")));
        }
      } catch (err) {
        pending.replaceWith(el("p", "error", "The question could not be sent: " + err));
      }
    });
  }

  function setUpAdmin() {
    const form = document.getElementById("admin-token-form");
    const controls = document.getElementById("kill-switch");
    const result = document.getElementById("kill-result");
    if (!form || !controls) return;
    const show = function () {
      const has = !!sessionStorage.getItem(TOKEN_KEY);
      controls.hidden = !has;
      form.hidden = has;
    };
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const field = document.getElementById("admin-token");
      const token = field.value.trim();
      field.value = "";
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      show();
    });
    document.getElementById("admin-forget").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      result.textContent = "";
      show();
    });
    async function setSwitch(engaged) {
      result.textContent = "…";
      const response = await fetch("/v1/admin/kill-switch", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY),
        },
        body: JSON.stringify({ engaged: engaged }),
      });
      const body = await response.json();
      if (response.ok) {
        result.textContent = "kill switch " + (body.gate.kill_switch ? "engaged" : "released") +
          " for " + body.account + " (state " + body.gate.state + ")";
        const state = document.getElementById("trading-state");
        if (state) state.textContent = body.gate.state + (body.gate.kill_switch ? " · kill switch engaged" : "");
      } else {
        if (response.status === 401 || response.status === 403) sessionStorage.removeItem(TOKEN_KEY);
        result.textContent = "refused (HTTP " + response.status + "): " + (body.detail || "");
        show();
        controls.hidden = false; // keep the message in view; the token form is back too
      }
    }
    document.getElementById("kill-engage").addEventListener("click", function () { setSwitch(true); });
    document.getElementById("kill-release").addEventListener("click", function () { setSwitch(false); });
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const main = document.getElementById("explanation");
    if (main && main.dataset.load === "1") loadExplanation(main, main.dataset.subject, main.dataset.id);
    for (const button of document.querySelectorAll(".explain-button")) {
      button.addEventListener("click", function () {
        const target = button.parentElement.querySelector(".anomaly-explanation");
        loadExplanation(target, button.dataset.subject, button.dataset.id);
      });
    }
    setUpChat();
    setUpAdmin();
  });
})();
