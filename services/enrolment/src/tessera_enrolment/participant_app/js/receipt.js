// Checks an erasure receipt in the browser, against the key the platform publishes
// (GET /v1/rights/receipt-key), with WebCrypto's Ed25519: no code of Tessera's is
// trusted for the check itself.
//
// The signed bytes are the canonical JSON of `receipt`, as tessera_rights.domain
// `canonical_json` makes them: json.dumps(sort_keys=True, separators=(",", ":"),
// ensure_ascii=False), UTF-8. JSON.stringify writes strings, integers, booleans and
// null exactly as Python does (non-ASCII unescaped, control characters as \u00XX);
// keys are sorted by code point, as Python sorts them. A receipt holds no fractions.

export function canonicalJson(value) {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isInteger(value)) {
      throw new TypeError("a receipt holds whole numbers only");
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort(byCodePoint);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`).join(",")}}`;
}

function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function base64Bytes(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function ed25519Available() {
  return Boolean(globalThis.crypto?.subtle);
}

/** "valid", "invalid" (wrong key, or the receipt or signature changed) or
 * "unsupported" (this browser's WebCrypto has no Ed25519). */
export async function verifyReceipt(signed, published) {
  if (signed?.algorithm !== "Ed25519" || published?.algorithm !== "Ed25519") return "invalid";
  if (signed.key_id !== published.key_id) return "invalid";
  let key;
  try {
    key = await crypto.subtle.importKey("raw", base64Bytes(published.public_key), { name: "Ed25519" }, false,
      ["verify"]);
  } catch (error) {
    return error?.name === "NotSupportedError" ? "unsupported" : "invalid";
  }
  try {
    const message = new TextEncoder().encode(canonicalJson(signed.receipt));
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, base64Bytes(signed.signature), message);
    return ok ? "valid" : "invalid";
  } catch {
    return "invalid";
  }
}
