// Playground: multi-turn chat and a side-by-side compare, sent with the dashboard session to
// /dashboard/playground/chat (the gateway's chat path, billed and rate limited like the API).
(() => {
  const $ = (id) => document.getElementById(id);
  const app = $("pg-app");
  if (!app) return;
  const chatUrl = app.dataset.chatUrl, generationUrl = app.dataset.generationUrl;
  const csrf = app.querySelector("[name=csrfmiddlewaretoken]").value;
  const model = $("pg-model"), tradeoff = $("pg-tradeoff");
  const conversation = [];  // this tab's turns: {role, content}

  const text = (id, value) => { $(id).textContent = value; };
  // The dashboard's one money format (routerhub/templatetags/money.py): 2 to 6 decimals.
  const usd = (value) => {
    if (value === null || value === undefined) return "—";
    const amount = Number(value);
    if (amount !== 0 && Math.abs(amount) < 0.0000005) return "<$0.000001";
    const [whole, decimals] = Math.abs(amount).toFixed(6).split(".");
    const shown = decimals.replace(/0+$/, "").padEnd(2, "0");
    return `${amount < 0 ? "-" : ""}$${Number(whole).toLocaleString("en-US")}.${shown}`;
  };
  const syncTradeoff = () => { $("pg-tradeoff-value").textContent = Number(tradeoff.value).toFixed(2); };
  tradeoff.addEventListener("input", syncTradeoff);
  syncTradeoff();
  // The parameters are read by the chat and compare forms; Enter in one of them sends nothing.
  $("pg-settings").addEventListener("submit", (event) => event.preventDefault());

  // The request body: the conversation, the system prompt and the parameters that are set.
  const requestBody = (modelId, messages) => {
    const body = { model: modelId, messages: [] };
    const system = $("pg-system").value.trim();
    if (system) body.messages.push({ role: "system", content: system });
    body.messages.push(...messages);
    const temperature = $("pg-temperature").value, maxTokens = $("pg-max-tokens").value;
    if (temperature !== "") body.temperature = Number(temperature);
    if (maxTokens !== "") body.max_tokens = Number(maxTokens);
    if (modelId.startsWith("router/")) body.router = { tradeoff: Number(tradeoff.value) };
    if ($("pg-stream").checked) {
      body.stream = true;
      body.stream_options = { include_usage: true };
    }
    return body;
  };

  // Read a server-sent event stream, calling onChunk for each JSON event.
  const readEvents = async (response, onChunk) => {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          onChunk(JSON.parse(line.slice(6)));
        }
      }
    }
  };

  // One call; ``onText`` sees the reply grow. Resolves to {ok, status, result | error}.
  const call = async (body, onText) => {
    const started = performance.now();
    const response = await fetch(chatUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      const data = await response.json().catch(() => ({}));
      if (!response.ok) return { ok: false, status: response.status, error: data.error || {} };
      const reply = data.choices?.[0]?.message?.content ?? "";
      onText(reply);
      return { ok: true, result: { ...data, reply, elapsed: Math.round(performance.now() - started) } };
    }
    const result = { reply: "", usage: null, firstToken: null };
    let error = null;
    await readEvents(response, (chunk) => {
      if (chunk.error) { error = chunk.error; return; }
      Object.assign(result, { id: chunk.id, model: chunk.model, provider: chunk.provider, routing: chunk.routing });
      if (chunk.usage) result.usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        if (result.firstToken === null) result.firstToken = Math.round(performance.now() - started);
        result.reply += delta;
        onText(result.reply);
      }
    });
    result.elapsed = Math.round(performance.now() - started);
    if (error) return { ok: false, status: 502, error, partial: result };
    return { ok: true, result };
  };

  const latencyText = (r) => `${r.elapsed} ms${r.firstToken !== null && r.firstToken !== undefined ? ` (first token ${r.firstToken} ms)` : ""}`;
  const errorText = (outcome) => `${outcome.status} ${outcome.error.type || ""}: ${outcome.error.message || "request failed"}`;
  const generationHref = (id) => `${generationUrl}${encodeURIComponent(id)}/`;

  // --- chat --------------------------------------------------------------------------------------
  const log = $("pg-log");
  const bubble = (role, content) => {
    log.querySelector(".pg-empty")?.remove();
    const item = document.createElement("div");
    item.className = `turn ${role}`;
    const who = document.createElement("div");
    who.className = "who-said";
    who.textContent = role === "user" ? "You" : "Assistant";
    const said = document.createElement("div");
    said.className = "said";
    said.textContent = content;
    item.append(who, said);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  };

  const showRouting = (routing) => {
    $("pg-routing").hidden = !routing;
    if (!routing) return;
    text("pg-router", `${routing.router}${routing.version ? ` v${routing.version}` : " (heuristic)"}`);
    text("pg-chosen", routing.chosen);
    text("pg-decision-ms", routing.latency_ms ?? "—");
    $("pg-ranked").replaceChildren(...routing.ranked.map((r, i) => {
      const tr = document.createElement("tr");
      for (const [value, numeric] of [[i + 1, false], [r.model, false],
        [r.score === null ? "—" : Number(r.score).toFixed(3), true], [usd(r.expected_cost), true]]) {
        const td = document.createElement("td");
        td.textContent = value;
        if (numeric) td.className = "num";
        tr.appendChild(td);
      }
      return tr;
    }));
  };

  const showResult = (r) => {
    text("pg-used", r.model);
    text("pg-provider", r.provider || "—");
    text("pg-cost", usd(r.usage?.cost));
    $("pg-cost").title = r.usage?.cost == null ? "" : `$${r.usage.cost} exactly`;
    text("pg-latency", latencyText(r));
    text("pg-generation", r.id);
    $("pg-generation-link").href = generationHref(r.id);
    text("pg-tokens", `${r.usage?.prompt_tokens ?? 0} / ${r.usage?.completion_tokens ?? 0}`);
    showRouting(r.routing);
    text("pg-feedback-status", "");
    $("pg-result").hidden = false;
  };

  // Thumbs on the last reply: the same feedback as POST /api/v1/feedback, as the signed-in person.
  const sendFeedback = async (score) => {
    const id = $("pg-generation").textContent;
    if (!id) return;
    const response = await fetch(app.dataset.feedbackUrl + encodeURIComponent(id), {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf },
      body: new URLSearchParams({ score }),
    });
    const failed = response.status === 404 ? "Still being recorded; try again in a moment." : "Feedback not recorded.";
    text("pg-feedback-status", response.ok ? `Feedback recorded (${score}).` : failed);
  };
  for (const button of document.querySelectorAll("#pg-feedback [data-score]")) {
    button.addEventListener("click", () => sendFeedback(button.dataset.score));
  }

  const meta = (item, r) => {
    const line = document.createElement("div");
    line.className = "turn-meta muted";
    line.append(`${r.model} · ${usd(r.usage?.cost)} · ${latencyText(r)} · `);
    const link = document.createElement("a");
    link.href = generationHref(r.id);
    link.textContent = "details";
    line.appendChild(link);
    item.appendChild(line);
  };

  $("playground").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = $("pg-message").value.trim();
    if (!message) return;
    conversation.push({ role: "user", content: message });
    bubble("user", message);
    $("pg-message").value = "";
    const answer = bubble("assistant", "…");
    $("pg-send").disabled = true;
    $("pg-error").hidden = true;
    text("pg-status", "Waiting for the model…");
    try {
      const outcome = await call(requestBody(model.value, conversation), (reply) => {
        answer.querySelector(".said").textContent = reply;
      });
      if (!outcome.ok) {
        conversation.pop();  // the failed turn is not context for the next one
        answer.remove();
        text("pg-error-text", errorText(outcome));
        $("pg-error").hidden = false;
        return;
      }
      conversation.push({ role: "assistant", content: outcome.result.reply });
      meta(answer, outcome.result);
      showResult(outcome.result);
    } catch (error) {
      conversation.pop();
      answer.remove();
      text("pg-error-text", `Network error: ${error}`);
      $("pg-error").hidden = false;
    } finally {
      $("pg-send").disabled = false;
      text("pg-status", "");
    }
  });

  $("pg-clear").addEventListener("click", () => {
    conversation.length = 0;
    log.replaceChildren();
    const empty = document.createElement("p");
    empty.className = "muted pg-empty";
    empty.textContent = "New conversation: the next message starts without context.";
    log.appendChild(empty);
    $("pg-result").hidden = true;
  });

  // --- compare -----------------------------------------------------------------------------------
  const column = (modelId) => {
    const node = $("pg-column").content.firstElementChild.cloneNode(true);
    node.querySelector(".compare-title").textContent = modelId;
    node.dataset.model = modelId;
    return node;
  };
  const fill = (node, field, value) => { node.querySelector(`[data-field=${field}]`).textContent = value; };

  const compareOne = async (node, body) => {
    try {
      const outcome = await call(body, (reply) => fill(node, "reply", reply));
      if (!outcome.ok) {
        const error = node.querySelector(".compare-error");
        error.textContent = errorText(outcome);
        error.hidden = false;
        return;
      }
      const r = outcome.result;
      fill(node, "model", r.model);
      fill(node, "provider", r.provider || "—");
      fill(node, "cost", usd(r.usage?.cost));
      fill(node, "latency", latencyText(r));
      fill(node, "tokens", `${r.usage?.prompt_tokens ?? 0} / ${r.usage?.completion_tokens ?? 0}`);
      if (r.routing) {
        const routing = node.querySelector(".compare-routing");
        routing.textContent = `${r.routing.router}${r.routing.version ? ` v${r.routing.version}` : ""} chose ${r.routing.chosen}`;
        routing.hidden = false;
      }
      const link = node.querySelector("[data-field=generation]");
      link.href = generationHref(r.id);
      link.hidden = false;
      node.dataset.generation = r.id;
    } catch (error) {
      const box = node.querySelector(".compare-error");
      box.textContent = `Network error: ${error}`;
      box.hidden = false;
    }
  };

  $("pg-compare").addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = $("pg-compare-message").value.trim();
    const models = ["pg-compare-1", "pg-compare-2", "pg-compare-3"].map((id) => $(id).value).filter(Boolean);
    if (!prompt || !models.length) return;
    const results = $("pg-compare-results");
    const nodes = models.map(column);
    results.replaceChildren(...nodes);
    results.dataset.columns = String(nodes.length);
    $("pg-compare-send").disabled = true;
    text("pg-compare-status", `Asking ${models.length} at once…`);
    await Promise.all(nodes.map((node, i) => compareOne(node, requestBody(models[i], [{ role: "user", content: prompt }]))));
    $("pg-compare-send").disabled = false;
    text("pg-compare-status", "");
  });

  // The last chat reply's card belongs to the chat tab.
  $("pg-tab-compare").addEventListener("click", () => { $("pg-result").hidden = true; $("pg-error").hidden = true; });
  $("pg-tab-chat").addEventListener("click", () => { $("pg-result").hidden = !$("pg-generation").textContent; });
})();
