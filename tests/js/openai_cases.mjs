// The official openai SDK (openai-node) against RouterHub's /v1 paths.
import OpenAI from "openai";
import { zodResponseFormat, zodTextFormat } from "openai/helpers/zod";
import { z } from "zod";

import { errorShape } from "./common.mjs";

export const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
  },
};

function client(input, options = {}) {
  return new OpenAI({
    baseURL: `${input.gateway}/v1`,
    apiKey: input.key,
    maxRetries: 0,
    timeout: 20_000,
    ...options,
  });
}

export async function chat(input) {
  return await client(input).chat.completions.create({
    model: input.model,
    messages: [{ role: "user", content: input.prompt }],
    max_tokens: 50,
  });
}

export async function chatStream(input) {
  const stream = await client(input).chat.completions.create({
    model: input.model,
    messages: [{ role: "user", content: input.prompt }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

export async function tools(input) {
  const openai = client(input);
  const question = { role: "user", content: "What is the weather in Lisbon?" };
  const first = await openai.chat.completions.create({
    model: input.model,
    messages: [question],
    tools: [WEATHER_TOOL],
  });
  const call = first.choices[0].message.tool_calls[0];
  const second = await openai.chat.completions.create({
    model: input.model,
    messages: [
      question,
      first.choices[0].message, // the assistant message as the SDK returned it
      { role: "tool", tool_call_id: call.id, content: '{"temp_c": 19}' },
    ],
    tools: [WEATHER_TOOL],
  });
  return { first, second };
}

const Person = z.object({ name: z.string(), age: z.number().int() });

export async function structured(input) {
  const openai = client(input);
  const parsed = await openai.chat.completions.parse({
    model: input.model,
    messages: [{ role: "user", content: "Invent a person" }],
    response_format: zodResponseFormat(Person, "person"),
  });
  return { parsed: parsed.choices[0].message.parsed, content: parsed.choices[0].message.content };
}

export async function embeddings(input) {
  const openai = client(input);
  const request = { model: input.model, input: ["first text", "second, longer text"] };
  const byDefault = await openai.embeddings.create(request); // the SDK asks for base64
  const floats = await openai.embeddings.create({ ...request, encoding_format: "float" });
  return {
    default: byDefault.data.map((d) => ({ index: d.index, embedding: Array.from(d.embedding) })),
    float: floats.data.map((d) => d.embedding),
    usage: byDefault.usage,
    model: byDefault.model,
  };
}

export async function responses(input) {
  const openai = client(input);
  const whole = await openai.responses.create({ model: input.model, input: input.prompt });
  const stream = openai.responses.stream({ model: input.model, input: input.prompt });
  const kinds = [];
  let deltas = "";
  for await (const event of stream) {
    kinds.push(event.type);
    if (event.type === "response.output_text.delta") deltas += event.delta;
  }
  const final = await stream.finalResponse();
  return {
    whole: { ...whole, output_text: whole.output_text },
    kinds,
    deltas,
    final: { ...final, output_text: final.output_text },
  };
}

export async function error(input) {
  const body = {
    model: "test/gpt",
    messages: [{ role: "user", content: "hi" }],
    ...(input.body ?? {}),
  };
  try {
    await client(input).chat.completions.create(body);
  } catch (error) {
    return {
      ...errorShape(error),
      classes: {
        APIError: error instanceof OpenAI.APIError,
        BadRequestError: error instanceof OpenAI.BadRequestError,
        AuthenticationError: error instanceof OpenAI.AuthenticationError,
      },
      code: error.code ?? null,
      param: error.param ?? null,
      requestID: error.requestID ?? null,
    };
  }
  throw new Error("the request succeeded");
}

export async function retried(input) {
  const completion = await client(input, { maxRetries: 1 }).chat.completions.create({
    model: input.model,
    messages: [{ role: "user", content: "hi" }],
  });
  return { content: completion.choices[0].message.content };
}

// The SDK's streaming helper accumulates deltas into a whole completion (and checks their
// shape: a tool call's first delta needs its id, name and index).
export async function streamHelper(input) {
  const stream = client(input).chat.completions.stream({
    model: input.model,
    messages: [{ role: "user", content: "What is the weather in Lisbon?" }],
    tools: [WEATHER_TOOL],
    stream_options: { include_usage: true },
  });
  const toolArgs = [];
  stream.on("tool_calls.function.arguments.done", (event) => toolArgs.push(event));
  return { final: await stream.finalChatCompletion(), toolArgs };
}

// runTools: the SDK calls the function and sends its result back until the model answers.
export async function runTools(input) {
  const calls = [];
  const runner = client(input).chat.completions.runTools({
    model: input.model,
    stream: Boolean(input.stream),
    messages: [{ role: "user", content: "What is the weather in Lisbon?" }],
    tools: [
      {
        type: "function",
        function: {
          ...WEATHER_TOOL.function,
          parse: JSON.parse,
          function: (args) => {
            calls.push(args);
            return { temp_c: 19 };
          },
        },
      },
    ],
  });
  return { calls, content: await runner.finalContent(), messages: runner.messages.length };
}

const RESPONSES_TOOL = { type: "function", name: "get_weather", ...WEATHER_TOOL.function };

export async function responsesTools(input) {
  const openai = client(input);
  const question = "What is the weather in Lisbon?";
  const stream = openai.responses.stream({ model: input.model, input: question, tools: [RESPONSES_TOOL] });
  const kinds = [];
  for await (const event of stream) kinds.push(event.type);
  const first = await stream.finalResponse();
  const call = first.output.find((item) => item.type === "function_call");
  const second = await openai.responses.create({
    model: input.model,
    tools: [RESPONSES_TOOL],
    input: [
      { role: "user", content: question },
      ...first.output,
      { type: "function_call_output", call_id: call.call_id, output: '{"temp_c": 19}' },
    ],
  });
  return { kinds, call, second: { ...second, output_text: second.output_text } };
}

export async function responsesParse(input) {
  const parsed = await client(input).responses.parse({
    model: input.model,
    input: "Invent a person",
    text: { format: zodTextFormat(Person, "person") },
  });
  return { parsed: parsed.output_parsed, text: parsed.output_text };
}

export async function models(input) {
  const page = await client(input).models.list();
  const ids = [];
  for await (const model of page) ids.push(model.id);
  const one = await client(input).models.retrieve(input.model);
  return { ids, one };
}
