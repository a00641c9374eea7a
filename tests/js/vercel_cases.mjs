// The Vercel AI SDK (ai) through its OpenAI, OpenAI-compatible and Anthropic providers.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { APICallError, embed, embedMany, generateObject, generateText, stepCountIs, streamObject, streamText, tool } from "ai";
import { z } from "zod";

import { errorShape } from "./common.mjs";

// input.provider names how the model is reached: "openai" (the OpenAI provider's default,
// the Responses API), "openai-chat" (its chat completions), "compatible" (the
// OpenAI-compatible provider) or "anthropic" (the Anthropic provider on /v1/messages).
function languageModel(input) {
  const v1 = `${input.gateway}/v1`;
  switch (input.provider) {
    case "openai":
      return createOpenAI({ baseURL: v1, apiKey: input.key })(input.model);
    case "openai-chat":
      return createOpenAI({ baseURL: v1, apiKey: input.key }).chat(input.model);
    case "compatible":
      return createOpenAICompatible({
        name: "routerhub",
        baseURL: v1,
        apiKey: input.key,
        includeUsage: true,
        supportsStructuredOutputs: true,
      })(input.model);
    case "anthropic":
      return createAnthropic({ baseURL: v1, apiKey: input.key })(input.model);
    default:
      throw new Error(`unknown provider ${input.provider}`);
  }
}

const settings = (input) => ({ model: languageModel(input), maxRetries: 0, maxOutputTokens: 300 });

export async function text(input) {
  const result = await generateText({
    ...settings(input),
    system: "Be brief.",
    prompt: input.prompt,
  });
  return {
    text: result.text,
    finishReason: result.finishReason,
    usage: result.usage,
    modelId: result.response.modelId,
    responseId: result.response.id,
  };
}

export async function stream(input) {
  const result = streamText({ ...settings(input), prompt: input.prompt });
  const deltas = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error; // a failure mid-stream is a part, not a throw
    if (part.type === "text-delta") deltas.push(part.text);
  }
  return {
    deltas,
    text: await result.text,
    finishReason: await result.finishReason,
    usage: await result.usage,
  };
}

// The weather question with a tool the SDK runs itself, and up to two steps (call, answer);
// each call's city is pushed to calls.
function weatherAsked(input, calls) {
  return {
    ...settings(input),
    prompt: "What is the weather in Lisbon?",
    tools: {
      get_weather: tool({
        description: "Current weather for a city",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          calls.push(city);
          return { temp_c: 19 };
        },
      }),
    },
    stopWhen: stepCountIs(2),
  };
}

export async function tools(input) {
  const calls = [];
  const result = await generateText(weatherAsked(input, calls));
  return {
    calls,
    text: result.text,
    steps: result.steps.map((step) => ({
      finishReason: step.finishReason,
      toolCalls: step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })),
    })),
  };
}

export async function object(input) {
  const result = await generateObject({
    ...settings(input),
    schema: z.object({ name: z.string(), age: z.number().int() }),
    prompt: "Invent a person",
  });
  return { object: result.object, finishReason: result.finishReason };
}

export async function streamTools(input) {
  const calls = [];
  const result = streamText(weatherAsked(input, calls));
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part.type);
  }
  return { calls, parts, text: await result.text, steps: (await result.steps).length };
}

export async function streamedObject(input) {
  const result = streamObject({
    ...settings(input),
    schema: z.object({ name: z.string(), age: z.number().int() }),
    prompt: "Invent a person",
  });
  let partials = 0;
  for await (const partial of result.partialObjectStream) partials += partial ? 1 : 0;
  return { object: await result.object, partials };
}

export async function embeddings(input) {
  const v1 = `${input.gateway}/v1`;
  const model =
    input.provider === "compatible"
      ? createOpenAICompatible({ name: "routerhub", baseURL: v1, apiKey: input.key }).embeddingModel(input.model)
      : createOpenAI({ baseURL: v1, apiKey: input.key }).embedding(input.model);
  const one = await embed({ model, value: "first text", maxRetries: 0 });
  const many = await embedMany({ model, values: ["first text", "second, longer text"], maxRetries: 0 });
  return { one: one.embedding, many: many.embeddings, usage: many.usage };
}

export async function error(input) {
  try {
    await generateText({ ...settings(input), prompt: "hi" });
  } catch (error) {
    return { ...errorShape(error), name: error.name, isAPICallError: APICallError.isInstance(error) };
  }
  throw new Error("the request succeeded");
}

// A second turn built the AI SDK's way: the first answer's response.messages (which carry the
// provider's item ids in their metadata) followed by a new question.
export async function conversation(input) {
  const question = { role: "user", content: input.prompt };
  const first = await generateText({ ...settings(input), messages: [question] });
  const messages = [...[question], ...first.response.messages, { role: "user", content: "And then?" }];
  const second = await generateText({ ...settings(input), messages });
  return { first: first.text, second: second.text };
}

export async function retried(input) {
  const result = await generateText({ ...settings(input), maxRetries: 1, prompt: "hi" });
  return { text: result.text };
}
