// What the app knows while it runs, shared by the views; persisted parts live in db.js.

import { ApiError, Offline, call } from "./api.js";
import * as db from "./db.js";
import { t } from "./i18n.js";

export const state = {
  /** {participant_id, device_token, tenant_id} once enrolled */
  device: null,
  /** null: not asked yet; false: the gateway has no screening route (older gateway) */
  screening: null,
};

/** A call with the device token; a refused token means this device is no longer
 * enrolled (erased, or the tenant removed it), so it is forgotten. */
export async function me(method, path, options = {}) {
  try {
    return await call(method, path, { ...options, token: state.device?.device_token });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && state.device) {
      await forgetDevice();
      say(t("status.token_refused"));
      go("#/");
    }
    throw error;
  }
}

export async function forgetDevice() {
  state.device = null;
  await db.remove("device");
  await db.clearOutbox();
  await db.clearLoaded(); // it holds this participant's answers (my_answers)
}

/** GET ``path`` with the token and keep the answer on the device; without a connection,
 * the copy kept last time, with ``loadedAt`` set so the view can say it is not fresh. */
export async function meOrKept(path) {
  try {
    const data = await me("GET", path);
    await db.keep(path, data);
    return { data, loadedAt: null };
  } catch (error) {
    const kept = error instanceof Offline ? await db.kept(path) : null;
    if (!kept) throw error;
    return { data: kept.data, loadedAt: kept.loaded_at };
  }
}

/** The live region: read out by screen readers, shown to everyone. */
let quiet = null;

export function say(text) {
  const status = document.getElementById("status");
  status.textContent = "";
  clearTimeout(quiet);
  // Set on the next frame, so the same sentence twice is announced twice; cleared
  // after a while, so the bar does not cover the page for good.
  if (text) requestAnimationFrame(() => { status.textContent = text; });
  quiet = setTimeout(() => { status.textContent = ""; }, 8000);
}

/** Moves focus to a view's heading, so a screen reader starts there after navigation. */
export function focusHeading(root) {
  const heading = root.querySelector("h2");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

export function errorText(error) {
  if (error instanceof Offline) return t("error.offline");
  if (error instanceof ApiError) {
    const known = error.code && t.has(`error.${error.code}`) ? t(`error.${error.code}`) : null;
    if (known) return known;
    if (error.status === 429) return t("error.too_many_attempts");
    if (error.status >= 500) return t("error.unavailable");
    return t("error.generic", { status: error.status });
  }
  return t("error.unexpected");
}

/** Shows the view of ``hash``, also when the address already says it. */
export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new Event("tessera:route"));
  else location.hash = hash;
}
