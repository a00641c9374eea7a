// What the cases share: an SDK error's shape for the test, and the record of every HTTP
// exchange the SDKs made (installed by run.mjs before any SDK is loaded).

// An SDK error as the test reads it: its class, status and message, and the body it parsed.
export function errorShape(error) {
  return {
    thrown: error?.constructor?.name ?? typeof error,
    status: error?.status ?? error?.statusCode ?? null,
    message: String(error?.message ?? error),
    type: error?.type ?? error?.error?.type ?? error?.error?.error?.type ?? null,
    body: error?.error ?? parsedOrNull(error?.responseBody),
    retryable: error?.isRetryable ?? null,
  };
}

function parsedOrNull(text) {
  try {
    return typeof text === "string" ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function bodyOf(init) {
  return typeof init?.body === "string" ? parsedOrNull(init.body) : null;
}

// Every request an SDK sends through fetch: what it sent (method, path, JSON body) and what it
// met (status, the headers a client acts on, and the fields RouterHub said it dropped).
export const exchanges = [];

export function fetchRecorded() {
  const original = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    const response = await original(url, init);
    exchanges.push({
      method: init?.method ?? "GET",
      path: new URL(String(url instanceof Request ? url.url : url)).pathname,
      sent: bodyOf(init),
      status: response.status,
      retryAfter: response.headers.get("retry-after"),
      shouldRetry: response.headers.get("x-should-retry"),
      dropped: response.headers.get("x-routerhub-dropped"),
      contentType: response.headers.get("content-type"),
    });
    return response;
  };
}
