// Dataset upload: a column-mapping UI. When a CSV or JSONL file is chosen, read its first rows in
// the browser, guess what each column holds (prompt, a model's score or cost, or nothing) and
// which catalog model it measures, let the person correct it, and write the result into the
// form's "columns" JSON field (which works without JavaScript too).
(() => {
  const file = document.getElementById("id_file");
  const columnsField = document.getElementById("id_columns");
  const box = document.getElementById("mapping");
  if (!file || !columnsField || !box) return;
  const catalog = JSON.parse(document.getElementById("catalog-ids").textContent);
  const PREVIEW_BYTES = 256 * 1024, PREVIEW_ROWS = 5, CELL_CHARS = 60;
  const PROMPT_NAMES = ["prompt", "messages", "question", "input", "query", "instruction", "text"];
  const ROLES = [["ignore", "Nothing (ignored)"], ["prompt", "The prompt"], ["score", "A model's score"], ["cost", "A model's cost (USD)"]];

  const datalist = document.createElement("datalist");
  datalist.id = "catalog-datalist";
  datalist.append(...catalog.map((id) => Object.assign(document.createElement("option"), { value: id })));
  box.appendChild(datalist);

  // --- reading the first rows --------------------------------------------------------------------
  // Records of `text` split at `sep`, as Python's csv module and pandas read them: a quote opens a
  // quoted cell only at the start of a cell (where a separator or line end inside it is text).
  const records = (text, sep, limit) => {
    const rows = [];
    let row = [], cell = "", quoted = false, opened = false;
    const end = () => { row.push(cell); cell = ""; opened = false; };
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
      } else if (c === '"' && cell === "" && !opened) { quoted = true; opened = true; }
      else if (c === sep) end();
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        end(); rows.push(row); row = [];
        if (rows.length >= limit) return rows;
      } else cell += c;
    }
    if (cell || row.length) { end(); rows.push(row); }
    return rows;
  };
  // The separator as the server picks it (training/dataset_files.py): a comma, or a tab or
  // semicolon when the header line splits into one field by commas (quotes respected) and more
  // by it: a spreadsheet's TSV, a European locale's CSV.
  const separator = (text) => {
    const first = text.split("\n", 1)[0];
    const fields = (sep) => (records(first, sep, 1)[0] || []).length;
    if (fields(",") > 1) return ",";
    return ["\t", ";"].find((sep) => fields(sep) > 1) || ",";
  };
  const parseCsv = (text) => {
    const sep = separator(text);
    const [header = [], ...body] = records(text, sep, PREVIEW_ROWS + 1);
    return { header, rows: body.slice(0, PREVIEW_ROWS), decimalComma: sep === ";" };
  };
  const parseJsonl = (text) => {
    const objects = text.split("\n").filter((l) => l.trim()).slice(0, PREVIEW_ROWS).map((l) => JSON.parse(l));
    const header = [...new Set(objects.flatMap((o) => Object.keys(o)))];
    const show = (v) => (v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
    return { header, rows: objects.map((o) => header.map((h) => show(o[h]))) };
  };

  // --- guessing ----------------------------------------------------------------------------------
  const baseName = (name) => name.toLowerCase()
    .replace(/(\/|\|)(score|cost|total_cost)$/, "")
    .replace(/[_\- ](is_correct|correct|score|scores|acc|accuracy|ok|pass|cost|usd|price|total_cost)$/, "");
  const bigrams = (s) => { const out = []; for (let i = 0; i < s.length - 1; i++) out.push(s.slice(i, i + 2)); return out; };
  const dice = (a, b) => {
    const x = bigrams(a), y = bigrams(b);
    if (!x.length || !y.length) return a === b ? 1 : 0;
    const pool = [...y];
    let hits = 0;
    for (const g of x) { const k = pool.indexOf(g); if (k >= 0) { hits++; pool.splice(k, 1); } }
    return (2 * hits) / (x.length + y.length);
  };
  const similarity = (base, id) => {
    const tail = id.split("/").slice(1).join("/") || id;
    if (base === id.toLowerCase()) return 1;
    if (base === tail.toLowerCase()) return 0.99;
    return Math.max(dice(base, id.toLowerCase()), dice(base, tail.toLowerCase()));
  };
  const suggestions = (name) => {
    const base = baseName(name);
    return catalog.map((id) => [similarity(base, id), id]).filter(([s]) => s >= 0.3)
      .sort((a, b) => b[0] - a[0]).slice(0, 3);
  };
  const guessModel = (name) => {
    const [best] = suggestions(name);
    return best && best[0] >= 0.5 ? best[1] : baseName(name);
  };
  // A semicolon-separated file may write 0,75 for 0.75, as the server reads it.
  const looksNumeric = (values, decimalComma) => values.length > 0 && values.every((v) => v === "" ||
    (decimalComma ? /^(true|false|[-+]?\d*[.,]?\d+(e[-+]?\d+)?)$/i : /^(true|false|[-+]?\d*\.?\d+(e[-+]?\d+)?)$/i).test(v.trim()));
  const guessRole = (name, values, promptTaken, decimalComma) => {
    const lower = name.toLowerCase();
    const numeric = looksNumeric(values, decimalComma);
    if (!promptTaken && PROMPT_NAMES.includes(lower)) return "prompt";
    if (/(^|[\/_|\- ])(cost|price|usd|total_cost)$/.test(lower)) return numeric ? "cost" : "ignore";
    if (numeric) return "score";
    return "ignore";
  };

  // --- the mapping table -------------------------------------------------------------------------
  const tbody = box.querySelector("#mapping-table tbody");
  const problems = document.getElementById("mapping-problems");
  let state = [];  // {name, role, model}

  const cellText = (v) => (v.length > CELL_CHARS ? `${v.slice(0, CELL_CHARS)}…` : v);
  const renderPreview = (header, rows) => {
    const table = document.getElementById("mapping-preview");
    const head = document.createElement("tr");
    head.append(...header.map((h) => Object.assign(document.createElement("th"), { textContent: h })));
    const body = rows.map((r) => {
      const tr = document.createElement("tr");
      tr.append(...header.map((_, i) => Object.assign(document.createElement("td"), { textContent: cellText(r[i] ?? "") })));
      return tr;
    });
    table.replaceChildren(document.createElement("thead"), document.createElement("tbody"));
    table.tHead.appendChild(head);
    table.tBodies[0].append(...body);
  };

  const suggestionButtons = (entry, cell) => {
    // Unchanged: keep the buttons (a click on one blurs the input first, firing "change").
    if (cell.dataset.shownFor === `${entry.role}:${entry.model}`) return;
    cell.dataset.shownFor = `${entry.role}:${entry.model}`;
    cell.querySelector(".suggestions")?.remove();
    if (entry.role !== "score" && entry.role !== "cost") return;
    if (catalog.includes(entry.model)) return;
    const list = document.createElement("div");
    list.className = "suggestions";
    const found = suggestions(entry.model).filter(([, id]) => id !== entry.model);
    list.append(found.length ? "Not a catalog model; did you mean " : "Not a catalog model.");
    found.forEach(([, id], i) => {
      const button = Object.assign(document.createElement("button"), { type: "button", className: "suggestion", textContent: id });
      button.addEventListener("click", () => { entry.model = id; cell.querySelector("input").value = id; update(); suggestionButtons(entry, cell); });
      list.append(button, i < found.length - 1 ? " " : "?");
    });
    cell.appendChild(list);
  };

  const renderTable = (rows) => {
    tbody.replaceChildren(...state.map((entry, index) => {
      const tr = document.createElement("tr");
      const name = Object.assign(document.createElement("td"), {});
      name.appendChild(Object.assign(document.createElement("code"), { textContent: entry.name }));
      const roleCell = document.createElement("td");
      const select = document.createElement("select");
      select.setAttribute("aria-label", `Column ${entry.name} holds`);
      select.append(...ROLES.map(([v, l]) => Object.assign(document.createElement("option"), { value: v, textContent: l, selected: v === entry.role })));
      roleCell.appendChild(select);
      const modelCell = document.createElement("td");
      const input = Object.assign(document.createElement("input"), { type: "text", value: entry.model });
      input.setAttribute("list", "catalog-datalist");
      input.setAttribute("aria-label", `Model id for ${entry.name}`);
      input.disabled = entry.role !== "score" && entry.role !== "cost";
      modelCell.appendChild(input);
      const sample = Object.assign(document.createElement("td"), { className: "muted", textContent: rows.map((r) => cellText(r[index] ?? "")).slice(0, 2).join(" · ") });
      select.addEventListener("change", () => {
        if (select.value === "prompt") state.forEach((other) => { if (other !== entry && other.role === "prompt") other.role = "ignore"; });
        entry.role = select.value;
        renderTable(rows);
        update();
      });
      input.addEventListener("input", () => { entry.model = input.value.trim(); update(); });
      input.addEventListener("change", () => suggestionButtons(entry, modelCell));
      suggestionButtons(entry, modelCell);
      tr.append(name, roleCell, modelCell, sample);
      return tr;
    }));
  };

  // Write the mapping into the form's JSON field and list what would make the upload fail.
  const update = () => {
    const prompt = state.find((e) => e.role === "prompt");
    const scores = {}, costs = {}, found = [];
    for (const e of state) {
      if (e.role !== "score" && e.role !== "cost") continue;
      const target = e.role === "score" ? scores : costs;
      if (!e.model) found.push(`Column ${e.name} needs a model id.`);
      else if (target[e.model]) found.push(`Two ${e.role} columns name ${e.model}: ${target[e.model]} and ${e.name}.`);
      else target[e.model] = e.name;
    }
    if (!prompt) found.push("Pick the column that holds the prompt.");
    const models = Object.keys(scores);
    if (models.length < 2) found.push("Map at least two models' score columns: a router chooses between models.");
    for (const m of Object.keys(costs)) if (!scores[m]) found.push(`${m} has a cost column but no score column.`);
    if (Object.keys(costs).length && models.some((m) => !costs[m])) found.push("Give a cost column for every model or for none.");
    const outside = models.filter((m) => !catalog.includes(m));
    if (outside.length) found.push(`Not catalog models (requests routed to them would fail): ${outside.join(", ")}.`);
    problems.replaceChildren(...found.map((p) => Object.assign(document.createElement("li"), { textContent: p })));
    document.getElementById("mapping-summary").textContent = `(${models.length} model${models.length === 1 ? "" : "s"}${prompt ? `, prompt: ${prompt.name}` : ""})`;
    const mapping = { prompt: prompt ? prompt.name : undefined, scores };
    if (Object.keys(costs).length) mapping.costs = costs;
    columnsField.value = JSON.stringify(mapping);
  };

  const show = (header, rows, decimalComma = false) => {
    let promptTaken = false;
    state = header.map((name, i) => {
      const role = guessRole(name, rows.map((r) => r[i] ?? ""), promptTaken, decimalComma);
      promptTaken = promptTaken || role === "prompt";
      return { name, role, model: role === "score" || role === "cost" ? guessModel(name) : "" };
    });
    renderPreview(header, rows);
    renderTable(rows);
    update();
    box.hidden = false;
  };

  file.addEventListener("change", async () => {
    box.hidden = true;
    const chosen = file.files[0];
    if (!chosen) return;
    const text = await chosen.slice(0, PREVIEW_BYTES).text();
    const name = chosen.name.toLowerCase();
    try {
      const jsonl = name.endsWith(".jsonl") || name.endsWith(".ndjson") || text.trimStart().startsWith("{");
      const other = name.endsWith(".parquet") || text.startsWith("PAR1") || text.trimStart().startsWith("[");
      if (other) return;  // no preview: the server reads and checks these
      const { header, rows, decimalComma } = jsonl ? parseJsonl(text) : parseCsv(text);
      if (header.length) show(header, rows, decimalComma);
    } catch (error) {
      box.hidden = true;  // the server validates the file and says what is wrong with it
    }
  });
})();
