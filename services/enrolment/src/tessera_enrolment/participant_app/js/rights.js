// My data: see it, download it, object to analysis, erase everything. An erasure
// keeps its status secret on the device, follows every store until all confirmed,
// checks the signed receipt in the browser, offers it as a file, and then forgets
// the device token (which the platform no longer accepts anyway).

import { ApiError, call } from "./api.js";
import * as db from "./db.js";
import { download, el, put } from "./dom.js";
import { fieldName, locale, storeName, t } from "./i18n.js";
import { verifyReceipt } from "./receipt.js";
import { errorText, forgetDevice, go, me, say, state } from "./state.js";

const POLL_MS = 1000;
const time = (iso) => new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "medium" }).format(new Date(iso));

async function request(kind) {
  return me("POST", "/v1/me/rights-requests", { body: { kind } });
}

async function gathered(kind) {
  const made = await request(kind);
  const path = `/v1/me/rights-requests/${encodeURIComponent(made.request_id)}/data?format=json`;
  return { request: made, text: await me("GET", path, { raw: true }) };
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** A stored value as a person reads it: times in their language, device facts named. */
function value(field, v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  if (typeof v === "string" && ISO_TIME.test(v)) return time(v);
  if ((field === "platform" || field === "form_factor") && t.has(`device.${v}`)) return t(`device.${v}`);
  return String(v);
}

function dataView(data) {
  return el("div", { class: "data" },
    el("p", { class: "hint" }, t("data.generated", { date: time(data.generated_at) })),
    data.stores.map((part) => el("section", { class: "store", "data-store": part.store },
      el("h3", {}, storeName(part.store)),
      part.records.length
        ? part.records.map((record) => el("dl", {}, Object.entries(record).map(([k, v]) => [el("dt", {}, fieldName(k)), el("dd", {}, value(k, v))])))
        : el("p", { class: "hint" }, t("data.nothing")))));
}

export async function renderMyData(main) {
  const device = await me("GET", "/v1/me");
  const out = el("div", { class: "result", "aria-live": "polite" });
  const busy = (button, work) => async () => {
    button.disabled = true;
    put(out, el("p", {}, t("data.working")));
    try {
      await work();
    } catch (error) {
      put(out, el("p", { class: "error" }, errorText(error)));
    } finally {
      button.disabled = false;
    }
  };

  const see = el("button", { type: "button" }, t("data.see"));
  see.addEventListener("click", busy(see, async () => {
    const { text } = await gathered("access");
    put(out, dataView(JSON.parse(text)));
    say(t("data.shown"));
    out.querySelector("h3")?.setAttribute("tabindex", "-1");
    out.querySelector("h3")?.focus();
  }));

  const take = el("button", { type: "button" }, t("data.download"));
  take.addEventListener("click", busy(take, async () => {
    const { text } = await gathered("export");
    const filename = `tessera-data-${new Date().toISOString().slice(0, 10)}.json`;
    download(filename, text);
    put(out, el("p", {}, t("data.downloaded", { filename })));
    say(t("data.downloaded", { filename }));
  }));

  const object = el("button", { type: "button", class: "secondary" }, t("data.object"));
  object.addEventListener("click", busy(object, async () => {
    await request("objection");
    put(out, el("p", {}, t("data.objected")));
    say(t("data.objected"));
  }));

  const confirm = el("div", { class: "confirm", hidden: true },
    el("p", { class: "warning" }, t("erase.warning")));
  const eraseNow = el("button", { type: "button", class: "danger" }, t("erase.confirm"));
  const keep = el("button", { type: "button", class: "secondary" }, t("erase.cancel"));
  const erase = el("button", { type: "button", class: "danger" }, t("erase.start"));
  confirm.append(el("div", { class: "actions" }, eraseNow, keep));
  erase.addEventListener("click", () => {
    confirm.hidden = false;
    erase.hidden = true;
    keep.focus();
  });
  keep.addEventListener("click", () => {
    confirm.hidden = true;
    erase.hidden = false;
    erase.focus();
  });
  eraseNow.addEventListener("click", busy(eraseNow, async () => {
    const made = await request("erasure");
    // Kept before anything else: the device token stops working during the erasure,
    // and only the status secret then reaches the request and its receipt.
    await db.set("erasure", { request_id: made.request_id, status_secret: made.status_secret ?? null, request: made });
    go("#/erasure");
  }));

  put(main, 
    el("h2", {}, t("data.title")),
    el("p", {}, t("data.you_are", { id: device.participant_id })),
    el("p", { class: "hint" }, t("data.device", { device: t(`device.${device.platform}`), form: t(`device.${device.form_factor}`) })),
    el("section", {}, el("h3", {}, t("data.see_title")), el("p", {}, t("data.see_explain")),
      el("div", { class: "actions" }, see, take)),
    out,
    el("section", {}, el("h3", {}, t("data.object_title")), el("p", {}, t("data.object_explain")), object),
    el("section", {}, el("h3", {}, t("erase.title")), el("p", {}, t("erase.explain")), erase, confirm),
  );
}

// --- the erasure, followed to its receipt ------------------------------------------------

async function erasureStatus(erasure) {
  const id = encodeURIComponent(erasure.request_id);
  if (erasure.status_secret) {
    try {
      return await call("GET", `/v1/rights-requests/${id}`, { token: erasure.status_secret });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404 && error.code === "not_found")) throw error;
      // An older gateway without the status-secret routes: ask with the device token
      // while it still works.
    }
  }
  if (!state.device) throw new ApiError(401, null);
  return call("GET", `/v1/me/rights-requests/${id}`, { token: state.device.device_token });
}

function progressList(request) {
  return el("ul", { class: "progress" }, request.progress.map((p) => el("li", { "data-store": p.store, "data-status": p.status },
    el("span", { class: "label" }, storeName(p.store)),
    el("span", { class: "state" }, p.status === "confirmed"
      ? t("erase.confirmed", { time: time(p.confirmed_at) }) : t("erase.pending")))));
}

export async function renderErasure(main, signal) {
  const erasure = await db.get("erasure");
  const progress = el("div", { class: "progress-box" });
  const result = el("div", { class: "receipt", "aria-live": "polite" });
  const done = el("button", { type: "button", class: "secondary", hidden: true }, t("erase.done"));
  done.addEventListener("click", async () => {
    await db.remove("erasure");
    go("#/");
  });
  put(main, el("h2", {}, t("erase.progress_title")), el("p", {}, t("erase.progress_explain")),
    progress, result, done);
  if (!erasure) return;
  let announced = 0;

  while (!signal.aborted) {
    let current;
    try {
      current = await erasureStatus(erasure);
    } catch (error) {
      put(progress, el("p", { class: "error" },
        error instanceof ApiError && error.status === 401 ? t("erase.cannot_follow") : errorText(error)));
      await forgetDevice();
      done.hidden = false;
      return;
    }
    put(progress, progressList(current));
    const confirmed = current.progress.filter((p) => p.status === "confirmed").length;
    if (confirmed !== announced) {
      announced = confirmed;
      say(t("erase.stores_confirmed", { done: confirmed, total: current.progress.length }));
    }
    if (current.status === "completed") break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  if (signal.aborted) return;
  await showReceipt(erasure, result);
  await forgetDevice();
  done.hidden = false;
}

async function showReceipt(erasure, box) {
  let signed = erasure.receipt;
  try {
    signed ??= await call("GET", `/v1/rights-requests/${encodeURIComponent(erasure.request_id)}/receipt`,
      { token: erasure.status_secret });
    await db.set("erasure", { ...erasure, receipt: signed });
  } catch (error) {
    put(box, el("p", { class: "error" }, t("erase.no_receipt")), el("p", { class: "hint" }, errorText(error)));
    say(t("erase.no_receipt"));
    return;
  }
  let verdict = "invalid";
  try {
    verdict = await verifyReceipt(signed, await call("GET", "/v1/rights/receipt-key"));
  } catch {
    verdict = "no_key";
  }
  const save = el("button", { type: "button" }, t("erase.save_receipt"));
  save.addEventListener("click", () => download(`tessera-receipt-${signed.receipt.request_id}.json`,
    JSON.stringify(signed, null, 2)));
  put(box, 
    el("h3", {}, t("erase.completed")),
    el("p", { class: `verdict ${verdict}`, "data-verdict": verdict }, t(`erase.verdict.${verdict}`, { key: signed.key_id })),
    el("dl", {},
      el("dt", {}, t("erase.receipt_request")), el("dd", {}, signed.receipt.request_id),
      el("dt", {}, t("erase.receipt_completed")), el("dd", {}, time(signed.receipt.completed_at)),
      el("dt", {}, t("erase.receipt_stores")), el("dd", {}, String(signed.receipt.stores.length))),
    save,
  );
  say(t(`erase.verdict.${verdict}`, { key: signed.key_id }));
  box.querySelector("h3").setAttribute("tabindex", "-1");
  box.querySelector("h3").focus();
}
