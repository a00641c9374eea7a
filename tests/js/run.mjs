// RouterHub's JavaScript client tests (tests/routing/test_clients_js.py) run here: reads
// {"gateway": URL, "key": KEY, "steps": [{"case": "<module>.<name>", ...}, ...]} as JSON on
// stdin, runs each case in turn with the real SDK against the live server (one process, so the
// SDKs load once), and prints one JSON line: each step's result or error, and every HTTP
// exchange the SDKs made.
import { errorShape, exchanges, fetchRecorded } from "./common.mjs";

fetchRecorded();

// Each module loads only its own SDK.
const MODULES = {
  openai: "./openai_cases.mjs",
  anthropic: "./anthropic_cases.mjs",
  vercel: "./vercel_cases.mjs",
};
const MAX_INPUT_BYTES = 1 << 20;

async function readInput() {
  const chunks = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += chunk.length;
    if (size > MAX_INPUT_BYTES) throw new Error(`input over ${MAX_INPUT_BYTES} bytes`);
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function caseFunction(name) {
  const [moduleName, caseName] = String(name).split(".");
  const cases = Object.hasOwn(MODULES, moduleName) ? await import(MODULES[moduleName]) : {};
  const run = Object.hasOwn(cases, caseName) ? cases[caseName] : undefined;
  if (typeof run !== "function") throw new Error(`unknown case ${name}`);
  return run;
}

const input = await readInput();
const results = [];
for (const step of input.steps) {
  const run = await caseFunction(step.case);
  const first = exchanges.length;
  let result;
  try {
    result = { ok: await run({ gateway: input.gateway, key: input.key, ...step }) };
  } catch (error) {
    result = { error: errorShape(error) };
  }
  results.push({ ...result, exchanges: exchanges.slice(first) });
}
process.stdout.write(JSON.stringify(results) + "\n");
