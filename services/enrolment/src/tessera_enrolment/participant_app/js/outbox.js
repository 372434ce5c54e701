// Answers wait here (IndexedDB) until the gateway has them. Each keeps the
// Idempotency-Key it was given when the participant pressed "send", so a send whose
// answer was lost on the way is repeated with the same key and stored once.

import { ApiError, Offline } from "./api.js";
import * as db from "./db.js";
import { el } from "./dom.js";
import { t } from "./i18n.js";
import { me, say, state } from "./state.js";

let flushing = null;

/** Queues an answer (replacing a queued one to the same question) and tries to send. */
export async function queueAnswer(item) {
  if (item.method === "PUT") {
    for (const queued of await db.waiting()) {
      if (queued.method === "PUT" && queued.path === item.path) await db.dequeue(queued.seq);
    }
  }
  await db.enqueue({ ...item, queued_at: new Date().toISOString() });
  await showWaiting();
  return flush();
}

/** Sends what waits, oldest first, one at a time; stops at the first lost connection. */
export function flush() {
  flushing ??= (async () => {
    try {
      for (;;) {
        // Read again each time: an answer queued while this one was on its way is next.
        const [item] = await db.waiting();
        if (!item || !state.device) return;
        try {
          const answer = await me(item.method, item.path, { body: item.body, idempotencyKey: item.key });
          await db.dequeue(item.seq);
          window.dispatchEvent(new CustomEvent("tessera:sent", { detail: { item, answer } }));
        } catch (error) {
          if (error instanceof Offline) return;
          if (error instanceof ApiError && (error.status >= 500 || error.status === 429)) return;
          // Refused for good (personal data under "reject", a closed dialogue, …):
          // it will never be stored, so it stops waiting and the participant is told.
          await db.dequeue(item.seq);
          window.dispatchEvent(new CustomEvent("tessera:refused", { detail: { item, error } }));
        }
      }
    } finally {
      flushing = null;
      await showWaiting();
    }
  })();
  return flushing;
}

/** The list of answers that wait, under the view, or nothing when none waits. */
export async function showWaiting() {
  const box = document.getElementById("waiting");
  const items = state.device ? await db.waiting() : [];
  box.replaceChildren();
  box.hidden = items.length === 0;
  if (!items.length) return;
  box.append(
    el("h2", {}, t("waiting.title", { count: items.length })),
    el("p", {}, navigator.onLine ? t("waiting.retrying") : t("waiting.offline")),
    el("ul", {}, items.map((item) => el("li", { "data-key": item.key },
      el("span", { class: "prompt" }, item.prompt), " ", el("span", { class: "value" }, item.summary)))),
  );
}

export function watchConnection() {
  const banner = document.getElementById("offline");
  const update = () => {
    banner.hidden = navigator.onLine;
    showWaiting();
  };
  window.addEventListener("online", () => {
    update();
    say(t("status.online"));
    flush();
  });
  window.addEventListener("offline", () => {
    update();
    say(t("status.offline"));
  });
  // A connection can come back without an "online" event (a captive portal, a
  // server that was down): try again now and then while anything waits.
  setInterval(() => { if (navigator.onLine) flush(); }, 15_000);
  update();
}
