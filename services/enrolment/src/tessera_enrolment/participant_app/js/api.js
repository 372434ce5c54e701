// The gateway's participant routes, same origin. No cookie is sent or kept
// (credentials: "omit"); the device token travels only as a bearer header.

export class Offline extends Error {}

export class ApiError extends Error {
  constructor(status, body, headers) {
    const detail = body?.detail;
    super(typeof detail?.message === "string" ? detail.message : `HTTP ${status}`);
    this.status = status;
    this.code = typeof detail?.code === "string" ? detail.code : null;
    this.detail = detail;
    this.retryAfter = Number(headers?.get("retry-after")) || null;
  }
}

export async function call(method, path, { token, body, idempotencyKey, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
    });
  } catch {
    throw new Offline();
  }
  if (raw && response.ok) return response.text();
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed, response.headers);
  return parsed;
}

/** A fresh Idempotency-Key (the dialogue service takes 8–100 of A-Z a-z 0-9 _ . : -). */
export function newKey() {
  return `app-${crypto.randomUUID()}`;
}
