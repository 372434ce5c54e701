// The participant app: enrol with a code, answer dialogues, see the group, and use
// one's rights. Views are drawn from the gateway's participant routes; the route is
// the URL's fragment (#/dialogues, #/dialogue/d_…, #/answers, #/data, #/erasure).

import { ApiError, call } from "./api.js";
import * as db from "./db.js";
import { el, put } from "./dom.js";
import { LANGUAGES, lang, setLanguage, t } from "./i18n.js";
import { renderAnswers } from "./answers.js";
import { renderDialogue, renderDialogueList } from "./dialogues.js";
import { flush, showWaiting, watchConnection } from "./outbox.js";
import { renderErasure, renderMyData } from "./rights.js";
import { errorText, focusHeading, go, say, state } from "./state.js";

const main = document.getElementById("main");
let viewAbort = new AbortController();

function guessDevice() {
  const ua = navigator.userAgent;
  const ios = /iPhone|iPad|iPod/.test(ua) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
  const tablet = /iPad|Tablet/.test(ua) || (/Android/.test(ua) && !/Mobile/.test(ua))
    || Math.min(screen.width, screen.height) >= 600;
  return { platform: ios ? "ios" : "android", form_factor: tablet ? "tablet" : "phone" };
}

/** A code from a link (`/app/?code=…` or `/app/#code=…`), then removed from the address. */
function codeFromLink() {
  const query = new URLSearchParams(location.search).get("code");
  const fragment = new URLSearchParams(location.hash.replace(/^#/, "")).get("code");
  const code = query || fragment;
  if (code) history.replaceState(null, "", location.pathname);
  return code ? code.slice(0, 32) : null;
}

function renderWelcome(code) {
  const guess = guessDevice();
  const select = (id, name, options, chosen) => el("select", { id, name },
    options.map((o) => el("option", { value: o, selected: o === chosen }, t(`device.${o}`))));
  const error = el("p", { class: "error", id: "enrol-error", hidden: true });
  const input = el("input", { id: "code", name: "code", required: true, autocomplete: "off", autocapitalize: "characters",
                              spellcheck: "false", maxlength: 32, "aria-describedby": "code-hint enrol-error" });
  input.value = code ?? "";
  const submit = el("button", { type: "submit" }, t("welcome.join"));
  const form = el("form", { id: "enrol", novalidate: true },
    el("label", { for: "code" }, t("welcome.code")), input,
    el("p", { class: "hint", id: "code-hint" }, code ? t("welcome.code_from_link") : t("welcome.code_hint")),
    el("fieldset", { class: "device" }, el("legend", {}, t("welcome.device")),
      el("label", { for: "platform" }, t("welcome.platform")), select("platform", "platform", ["android", "ios"], guess.platform),
      el("label", { for: "form-factor" }, t("welcome.form_factor")),
      select("form-factor", "form_factor", ["phone", "tablet"], guess.form_factor)),
    submit, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!input.value.trim()) {
      error.textContent = t("welcome.code_missing");
      error.hidden = false;
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const device = await call("POST", "/v1/enrolments", { body: {
        code: input.value.trim(), platform: form.platform.value, form_factor: form.form_factor.value } });
      state.device = { participant_id: device.participant_id, device_token: device.device_token,
                       tenant_id: device.tenant_id };
      await db.set("device", state.device);
      say(t("welcome.joined"));
      go("#/dialogues");
    } catch (problem) {
      error.textContent = problem instanceof ApiError && problem.status === 429
        ? t("error.too_many_attempts_wait", { seconds: problem.retryAfter ?? 60 }) : errorText(problem);
      error.hidden = false;
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  put(main, 
    el("h2", {}, t("welcome.title")),
    el("p", {}, t("welcome.intro")),
    el("section", { class: "stored" },
      el("h3", {}, t("welcome.stored_title")),
      el("ul", {}, ["welcome.stored_id", "welcome.stored_device", "welcome.stored_nothing_else", "welcome.stored_here"]
        .map((key) => el("li", {}, t(key))))),
    el("p", { class: "reminder" }, t("welcome.no_personal_data")),
    form,
  );
  if (code) submit.focus();
}

function renderNav(current, shown = Boolean(state.device)) {
  const nav = document.getElementById("nav");
  nav.hidden = !shown;
  put(nav, el("ul", {}, [["#/dialogues", "nav.dialogues", "dialogues"], ["#/answers", "nav.answers", "answers"],
                                    ["#/data", "nav.data", "data"]]
    .map(([href, key, name]) => el("li", {}, el("a", { href, "aria-current": name === current ? "page" : false }, t(key))))));
}

let pendingCode = null;

async function route() {
  viewAbort.abort();
  viewAbort = new AbortController();
  const signal = viewAbort.signal;
  const [, view, id] = location.hash.match(/^#\/([a-z]+)?\/?(.*)$/) ?? [];
  const erasure = await db.get("erasure");
  try {
    if (erasure && (view === "erasure" || !state.device)) {
      renderNav(null, false); // the device is being erased: nothing else to go to
      await renderErasure(main, signal);
    } else if (!state.device) {
      renderNav(null);
      renderWelcome(pendingCode);
      pendingCode = null;
    } else if (view === "dialogue" && id) {
      renderNav("dialogues");
      await renderDialogue(main, decodeURIComponent(id), signal);
    } else if (view === "answers") {
      renderNav("answers");
      await renderAnswers(main);
    } else if (view === "data") {
      renderNav("data");
      await renderMyData(main);
    } else {
      renderNav("dialogues");
      await renderDialogueList(main);
    }
  } catch (error) {
    if (signal.aborted) return;
    put(main, el("h2", {}, t("error.title")), el("p", { class: "error" }, errorText(error)),
      el("button", { type: "button", onclick: route }, t("error.retry")));
  }
  if (!signal.aborted && !main.contains(document.activeElement)) focusHeading(main);
  showWaiting();
}

function renderChrome() {
  document.documentElement.lang = lang();
  document.title = t("app.title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("nav").setAttribute("aria-label", t("app.nav"));
  const picker = document.getElementById("language");
  put(picker, ...LANGUAGES.map((code) =>
    el("option", { value: code, lang: code, selected: code === lang() }, t(`language.${code}`))));
}

async function start() {
  const saved = await db.get("language");
  setLanguage(saved ?? navigator.languages ?? [navigator.language]);
  renderChrome();
  document.getElementById("language").addEventListener("change", async (event) => {
    setLanguage([event.target.value]);
    await db.set("language", lang());
    renderChrome();
    await route();
    document.getElementById("language").focus();
  });
  state.device = (await db.get("device")) ?? null;
  const code = codeFromLink();
  if (code && state.device) say(t("welcome.already_enrolled"));
  else pendingCode = code;
  window.addEventListener("hashchange", route);
  window.addEventListener("tessera:route", route);
  watchConnection();
  await route();
  flush();
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch(() => {}); // the app works without it, online
  }
}

start();
