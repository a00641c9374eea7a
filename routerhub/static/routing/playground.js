// Playground: sends one chat completion to this server's /v1 API with the pasted key.
(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("playground");
  if (!form) return;
  const keyInput = $("pg-key"), model = $("pg-model"), tradeoff = $("pg-tradeoff");
  keyInput.value = sessionStorage.getItem("routerhub-playground-key") || "";
  const syncTradeoff = () => {
    $("pg-tradeoff-row").hidden = !model.value.startsWith("router/");
    $("pg-tradeoff-value").textContent = Number(tradeoff.value).toFixed(2);
  };
  model.addEventListener("change", syncTradeoff);
  tradeoff.addEventListener("input", syncTradeoff);
  syncTradeoff();

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

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    sessionStorage.setItem("routerhub-playground-key", key);
    const body = { model: model.value, messages: [{ role: "user", content: $("pg-message").value }] };
    if (model.value.startsWith("router/")) body.router = { tradeoff: Number(tradeoff.value) };
    $("pg-send").disabled = true;
    text("pg-status", "Waiting for the model…");
    $("pg-error").hidden = true;
    const started = performance.now();
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
        body: JSON.stringify(body),
      });
      const data = await response.json();
      const elapsed = Math.round(performance.now() - started);
      if (!response.ok) {
        const error = data.error || {};
        text("pg-error-text", `${response.status} ${error.type || ""}: ${error.message || "request failed"}`);
        $("pg-error").hidden = false;
        $("pg-result").hidden = true;
        return;
      }
      text("pg-reply", data.choices?.[0]?.message?.content ?? "");
      text("pg-used", data.model);
      text("pg-provider", data.provider || "—");
      text("pg-cost", usd(data.usage?.cost));
      $("pg-cost").title = data.usage?.cost == null ? "" : `$${data.usage.cost} exactly`;
      text("pg-latency", `${elapsed} ms`);
      text("pg-generation", data.id);
      text("pg-tokens", `${data.usage?.prompt_tokens ?? 0} / ${data.usage?.completion_tokens ?? 0}`);
      const routing = data.routing;
      $("pg-routing").hidden = !routing;
      if (routing) {
        text("pg-router", `${routing.router}${routing.version ? ` v${routing.version}` : " (heuristic)"}`);
        text("pg-chosen", routing.chosen);
        text("pg-decision-ms", routing.latency_ms ?? "—");
        const rows = $("pg-ranked");
        rows.replaceChildren(...routing.ranked.map((r, i) => {
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
      }
      $("pg-result").hidden = false;
    } catch (error) {
      text("pg-error-text", `Network error: ${error}`);
      $("pg-error").hidden = false;
    } finally {
      $("pg-send").disabled = false;
      text("pg-status", "");
    }
  });
})();
