// The official @anthropic-ai/sdk against RouterHub's Anthropic-compatible /v1/messages.
import Anthropic from "@anthropic-ai/sdk";

import { errorShape } from "./common.mjs";

const LOOKUP_TOOL = {
  name: "get_weather",
  description: "Current weather for a city",
  input_schema: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
  },
};

function client(input) {
  return new Anthropic({ baseURL: input.gateway, apiKey: input.key, maxRetries: 0, timeout: 20_000 });
}

export async function messages(input) {
  return await client(input).messages.create({
    model: input.model,
    max_tokens: 200,
    system: input.system,
    messages: [{ role: "user", content: input.prompt }],
  });
}

export async function stream(input) {
  const stream = client(input).messages.stream({
    model: input.model,
    max_tokens: 300,
    messages: [{ role: "user", content: input.prompt }],
  });
  const kinds = [];
  let text = "";
  stream.on("text", (delta) => {
    text += delta;
  });
  for await (const event of stream) kinds.push(event.type);
  return { kinds, text, final: await stream.finalMessage() };
}

export async function tools(input) {
  const anthropic = client(input);
  const question = { role: "user", content: "What is the weather in Lisbon?" };
  const first = await anthropic.messages.create({
    model: input.model,
    max_tokens: 200,
    tools: [LOOKUP_TOOL],
    messages: [question],
  });
  const use = first.content.find((block) => block.type === "tool_use");
  const second = await anthropic.messages.create({
    model: input.model,
    max_tokens: 200,
    tools: [LOOKUP_TOOL],
    messages: [
      question,
      { role: "assistant", content: first.content },
      {
        role: "user",
        content: [{ type: "tool_result", tool_use_id: use.id, content: '{"temp_c": 19}' }],
      },
    ],
  });
  return { first, second };
}

export async function error(input) {
  const body = {
    model: "test/gpt",
    max_tokens: 50,
    messages: [{ role: "user", content: "hi" }],
    ...(input.body ?? {}),
  };
  try {
    await client(input).messages.create(body);
  } catch (error) {
    return {
      ...errorShape(error),
      classes: {
        APIError: error instanceof Anthropic.APIError,
        BadRequestError: error instanceof Anthropic.BadRequestError,
        AuthenticationError: error instanceof Anthropic.AuthenticationError,
        PaymentRequiredError:
          Anthropic.PaymentRequiredError !== undefined &&
          error instanceof Anthropic.PaymentRequiredError,
      },
      requestID: error.requestID ?? null,
    };
  }
  throw new Error("the request succeeded");
}

// A streamed tool use: MessageStream assembles input_json_delta fragments into the input.
export async function streamTools(input) {
  const stream = client(input).messages.stream({
    model: input.model,
    max_tokens: 200,
    tools: [LOOKUP_TOOL],
    messages: [{ role: "user", content: "What is the weather in Lisbon?" }],
  });
  const kinds = [];
  for await (const event of stream) kinds.push(event.type === "content_block_delta" ? event.delta.type : event.type);
  return { kinds, final: await stream.finalMessage() };
}

export async function countTokens(input) {
  const anthropic = client(input);
  const count = await anthropic.messages.countTokens({
    model: input.model,
    system: "Be brief.",
    messages: [{ role: "user", content: "Tell me about owls" }],
  });
  const ids = [];
  for await (const model of anthropic.models.list()) ids.push(model.id);
  return { count, ids };
}
