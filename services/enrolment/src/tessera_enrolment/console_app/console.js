// The tenant console: sign-in with a second factor, invitations, the team and the
// activity log. It talks to /console/api on this origin only. The session cookie is
// HttpOnly (this page never sees it); the CSRF token comes with the session and goes
// with every change. Text from the server is set as text, never parsed as HTML.
import { LANGUAGES, initialLanguage, language, setLanguage, t } from "./i18n.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const statusLine = document.getElementById("status");
let session = null;
let view = null;

// --- the API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code) { super(code); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const response = await fetch(`/console/api${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin",
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = response.status === 422 && Array.isArray(data.detail) ? "validation_failed" : data.detail?.code;
    throw new ApiError(response.status, code || "generic");
  }
  return data;
}

function errorText(error) {
  const key = `error.${error.code}`;
  const text = t(key);
  return text === key ? t("error.generic") : text;
}

// --- the page ----------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== false && value !== undefined && value !== null) element.setAttribute(name, value);
  }
  for (const child of children.flat()) if (child) element.append(child);
  return element;
}

function field(id, labelKey, attributes = {}, hintKey = null) {
  const hint = hintKey ? el("p", { class: "hint", id: `${id}-hint`, text: t(hintKey) }) : null;
  return el("div", { class: "field" },
    el("label", { for: id, text: t(labelKey) }),
    hint,
    el("input", { id, name: id, "aria-describedby": hint ? `${id}-hint` : undefined, ...attributes }));
}

function errorBox() {
  return el("p", { class: "error", role: "alert", id: "form-error" });
}

let shownBefore = false;

function show(title, ...content) {
  main.replaceChildren(el("h1", { text: title }), ...content.flat().filter((c) => c !== ""));
  document.title = `${title} · ${t("title")}`;
  // A new view takes the focus (a screen reader reads it from its heading); the first
  // one does not, so that the keyboard starts at the skip link.
  if (shownBefore) main.focus();
  shownBefore = true;
}

function say(text) {
  statusLine.textContent = text;
  setTimeout(() => { if (statusLine.textContent === text) statusLine.textContent = ""; }, 6000);
}

function form(onsubmit, ...children) {
  const box = errorBox();
  const element = el("form", { novalidate: true }, box, ...children);
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    box.textContent = "";
    const button = element.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      await onsubmit(new FormData(element));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.code === "session_required") { session = null; go("sign-in"); say(errorText(error)); return; }
      box.textContent = errorText(error);
      element.querySelector("input")?.focus();
    } finally {
      if (button) button.disabled = false;
    }
  });
  return element;
}

function renderNav() {
  if (!session) { nav.hidden = true; nav.replaceChildren(); return; }
  const items = [["home", "nav.home"]];
  if (["owner", "editor"].includes(session.role)) items.push(["dialogues", "nav.dialogues"], ["codes", "nav.codes"]);
  if (["owner", "editor", "analyst"].includes(session.role)) items.push(["figures", "nav.figures"]);
  if (["owner", "privacy_officer"].includes(session.role)) items.push(["rights", "nav.rights"]);
  if (session.role === "owner") {
    items.push(["team", "nav.team"], ["activity", "nav.activity"], ["keys", "nav.keys"], ["settings", "nav.settings"]);
  }
  nav.replaceChildren(el("ul", {}, items.map(([name, key]) => el("li", {},
    el("a", { href: `#${name}`, text: t(key), "aria-current": view === name ? "page" : undefined })))));
  nav.hidden = false;
}

// --- views -------------------------------------------------------------------------------

function signIn() {
  show(t("signin.title"), form(async (data) => {
    const next = await api("POST", "/sign-in", { email: data.get("email"), password: data.get("password") });
    secondFactor(next);
  },
  field("email", "signin.email", { type: "email", autocomplete: "username", required: true }),
  field("password", "signin.password", { type: "password", autocomplete: "current-password", required: true }),
  el("button", { type: "submit", text: t("signin.submit") })));
}

function totpSetup(setup) {
  const image = el("img", { class: "qr", alt: t("setup.qr"),
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(setup.qr_svg)}` });
  return el("div", {}, el("p", { text: t("setup.hint") }), image,
    el("p", {}, el("span", { text: `${t("setup.key")}: ` }),
      el("span", { class: "secret", id: "totp-secret", text: setup.secret.replace(/(.{4})/g, "$1 ").trim() })));
}

function secondFactor(next) {
  const setup = next.next === "totp_setup";
  show(setup ? t("setup.title") : t("factor.title"), setup ? totpSetup(next.totp_setup) : "", form(async (data) => {
    const code = (data.get("code") || "").replace(/\s/g, "");
    const recovery = (data.get("recovery") || "").trim();
    const body = recovery && !setup ? { recovery_code: recovery } : { code };
    const signedIn = await api("POST", "/sign-in/factor", body);
    session = signedIn;
    if (signedIn.recovery_codes) recoveryCodes(signedIn.recovery_codes); else go("home");
  },
  field("code", "factor.code", { inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9 ]*",
                                 maxlength: 8 }, "factor.hint"),
  setup ? "" : field("recovery", "factor.recovery", { autocomplete: "off", maxlength: 16 }),
  el("button", { type: "submit", text: t("factor.submit") })),
  setup || !window.PublicKeyCredential ? "" : el("button", { type: "button", class: "secondary", text: t("passkey.use"),
    onclick: async (event) => {
      const box = event.target.parentElement.querySelector("#form-error");
      box.textContent = "";
      try {
        const options = await api("POST", "/sign-in/passkey/options");
        const credential = await navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
        session = await api("POST", "/sign-in/passkey", { credential: credential.toJSON() });
        go("home");
      } catch (error) {
        box.textContent = error instanceof ApiError ? errorText(error) : t("passkey.cancelled");
      }
    } }));
}

function recoveryCodes(codes) {
  show(t("recovery.title"), el("p", { text: t("recovery.hint") }),
    el("ol", { class: "codes", id: "recovery-codes" }, codes.map((code) => el("li", { text: code }))),
    el("button", { type: "button", text: t("recovery.done"), onclick: () => go("home") }));
}

async function invitation(token) {
  let about;
  try {
    about = await api("POST", "/invitation", { token });
  } catch (error) {
    show(t("signin.title"), el("p", { class: "error", role: "alert", text: errorText(error) }));
    return;
  }
  const role = t(`role.${about.role}`);
  show(t("invite.title", { tenant: about.tenant_name }),
    el("p", { text: t("invite.as", { role, email: about.email }) }),
    form(async (data) => {
      const setup = await api("POST", "/invitation/password", {
        token, display_name: data.get("name"), password: data.get("password") });
      show(t("setup.title"), totpSetup(setup), form(async (confirm) => {
        session = await api("POST", "/invitation/confirm", { token, code: (confirm.get("code") || "").replace(/\s/g, "") });
        history.replaceState(null, "", "/console/#home");  // the link's secret leaves the address bar
        recoveryCodes(session.recovery_codes);
      },
      field("code", "factor.code", { inputmode: "numeric", autocomplete: "one-time-code", maxlength: 8 }, "factor.hint"),
      el("button", { type: "submit", text: t("factor.submit") })));
    },
    field("name", "invite.name", { autocomplete: "name", required: true, maxlength: 100 }),
    field("password", "invite.password", { type: "password", autocomplete: "new-password", required: true,
                                           maxlength: 128 }, "invite.password.hint"),
    el("button", { type: "submit", text: t("invite.submit") })));
}

async function home() {
  const keys = await api("GET", "/passkeys");
  const list = keys.passkeys.length ? el("ul", { id: "passkeys" }, keys.passkeys.map((k) => el("li", {},
    el("span", { text: `${k.name} (${date(k.created_at)}) ` }),
    el("button", { type: "button", class: "secondary", text: t("passkey.remove", { name: k.name }), onclick: async () => {
      await withFreshFactor(() => api("DELETE", `/passkeys/${k.passkey_id}`));
      say(t("passkey.removed"));
      home();
    } }))))
    : el("p", { text: t("passkey.none") });
  show(t("home.title", { name: session.display_name }),
    el("p", { text: t("home.role", { tenant: session.tenant_name, role: t(`role.${session.role}`) }) }),
    el("button", { type: "button", class: "secondary", text: t("home.signout"), onclick: () => signOut("/sign-out") }),
    el("button", { type: "button", class: "secondary", text: t("home.everywhere"),
                   onclick: () => signOut("/sign-out-everywhere") }),
    el("h2", { text: t("passkey.title") }), el("p", { class: "hint", text: t("passkey.hint") }), list,
    window.PublicKeyCredential ? form(async (values) => {
      const options = await withFreshFactor(() => api("POST", "/passkeys/options"));
      let credential;
      try {
        credential = await navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) });
      } catch {
        say(t("passkey.cancelled"));
        return;
      }
      await api("POST", "/passkeys", { name: values.get("passkey-name"), credential: credential.toJSON() });
      say(t("passkey.added"));
      await home();
    },
    field("passkey-name", "passkey.name", { required: true, maxlength: 100, autocomplete: "off" }),
    el("button", { type: "submit", text: t("passkey.add") })) : "");
}

async function signOut(path) {
  await api("POST", path);
  session = null;
  go("sign-in");
  say(t("signedout"));
}

function date(value) {
  return new Intl.DateTimeFormat(language(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(value));
}

function table(headers, rows) {
  return el("div", { class: "table" }, el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows)));
}

async function freshFactor() {
  return new Promise((resolve) => {
    const dialog = el("section", { "aria-labelledby": "fresh-title" },
      el("h2", { id: "fresh-title", text: t("fresh.title") }),
      el("p", { text: t("fresh.hint") }),
      form(async (data) => {
        await api("POST", "/session/factor", { code: (data.get("code") || "").replace(/\s/g, "") });
        dialog.remove();
        resolve();
      }, field("fresh-code", "factor.code", { name: "code", inputmode: "numeric", autocomplete: "one-time-code",
                                               maxlength: 8 }),
      el("button", { type: "submit", text: t("factor.submit") })));
    main.append(dialog);
    dialog.querySelector("input").focus();
  });
}

async function team() {
  const data = await api("GET", "/team");
  const result = el("div", { "aria-live": "polite" });
  const rows = data.accounts.map((account) => el("tr", {},
    el("td", { text: account.display_name }), el("td", { text: account.email }),
    el("td", { text: t(`role.${account.role}`) }),
    el("td", { text: account.has_totp ? t("team.totp") : t("team.none") }),
    el("td", { text: date(account.created_at) }),
    el("td", {}, account.account_id === session.account_id ? "" : el("button", {
      type: "button", class: "secondary", text: t("team.reset"), "aria-label": `${t("team.reset")}: ${account.display_name}`,
      onclick: async () => {
        try {
          await api("POST", `/team/${account.account_id}/factor-reset`);
        } catch (error) {
          if (error.code !== "fresh_factor_required") throw error;
          await freshFactor();
          await api("POST", `/team/${account.account_id}/factor-reset`);
        }
        say(t("team.reset.done"));
        team();
      } }))));
  const pending = data.invitations.map((inv) => el("tr", {},
    el("td", { text: inv.email }), el("td", { text: t(`role.${inv.role}`) }), el("td", { text: date(inv.expires_at) })));
  show(t("team.title"),
    table([t("team.name"), t("team.email"), t("team.role"), t("team.factors"), t("team.since"), ""], rows),
    pending.length ? el("h2", { text: t("team.pending") }) : "",
    pending.length ? table([t("team.email"), t("team.role"), t("team.expires")], pending) : "",
    el("h2", { text: t("team.invite") }),
    form(async (values) => {
      const made = await api("POST", "/team/invitations", { email: values.get("invite-email"), role: values.get("invite-role") });
      result.replaceChildren(el("p", { text: t("team.invited", { date: date(made.expires_at) }) }),
        field("invitation-link", "team.link", { value: made.invitation_url, readonly: true }));
    },
    field("invite-email", "team.email", { type: "email", autocomplete: "off", required: true }),
    el("div", { class: "field" }, el("label", { for: "invite-role", text: t("team.role") }),
      el("select", { id: "invite-role", name: "invite-role" },
        ["editor", "analyst", "privacy_officer", "owner"].map((r) => el("option", { value: r, text: t(`role.${r}`) })))),
    el("button", { type: "submit", text: t("team.invite.submit") })),
    result);
}

async function activity() {
  const data = await api("GET", "/activity");
  const rows = data.entries.map((entry) => el("tr", {},
    el("td", { text: date(entry.at) }), el("td", { text: entry.email || "—" }), el("td", { text: entry.action }),
    el("td", { text: Object.entries(entry.detail).map(([k, v]) => `${k}: ${v}`).join(", ") }),
    el("td", { text: entry.network || "" })));
  show(t("activity.title"),
    el("p", {}, el("a", { href: "/console/api/activity.csv", download: "activity.csv", text: t("activity.export") })),
    table([t("activity.at"), t("activity.who"), t("activity.what"), t("activity.detail"), t("activity.network")], rows));
}

async function codes() {
  const data = await api("GET", "/codes?limit=500");
  const rows = data.codes.map((code) => el("tr", {},
    el("td", { class: "secret", text: code.display }),
    el("td", { text: t(`status.${code.status}`) }),
    el("td", { text: `${code.enrolments} / ${code.max_enrolments ?? t("codes.unlimited")}` }),
    el("td", { text: code.expires_at ? date(code.expires_at) : t("codes.never") }),
    el("td", {},
      el("a", { href: `/console/api/codes/${code.code}/poster.pdf?lang=${language()}`, download: `poster-${code.code}.pdf`,
                text: t("codes.poster"), "aria-label": `${t("codes.poster")}: ${code.display}` }), " · ",
      el("a", { href: `/console/api/codes/${code.code}/qr.svg`, target: "_blank", rel: "noopener",
                text: t("codes.qr"), "aria-label": `${t("codes.qr")}: ${code.display}` }),
      code.status === "active" ? el("button", { type: "button", class: "secondary", text: t("codes.revoke"),
        "aria-label": `${t("codes.revoke")}: ${code.display}`, onclick: async () => {
          await api("DELETE", `/codes/${code.code}`);
          say(t("codes.revoked", { code: code.display }));
          codes();
        } }) : "")));
  show(t("codes.title"), el("p", { class: "hint", text: t("codes.hint") }),
    rows.length ? table([t("codes.code"), t("codes.status"), t("codes.used"), t("codes.expires"), t("codes.actions")], rows)
      : el("p", { text: t("codes.none") }),
    el("h2", { text: t("codes.new") }),
    form(async (values) => {
      const body = {};
      if (values.get("max")) body.max_enrolments = Number(values.get("max"));
      if (values.get("expiry")) body.expires_at = new Date(`${values.get("expiry")}T23:59:59`).toISOString();
      const made = await api("POST", "/codes", body);
      await codes();
      say(t("codes.made", { code: made.display }));
    },
    field("max", "codes.max", { type: "number", min: 1, max: 1000000, inputmode: "numeric" }),
    field("expiry", "codes.expiry", { type: "date" }),
    el("button", { type: "submit", text: t("codes.submit") })));
}

// --- dialogues (owners and editors, through the gateway to the dialogue service) -------------

const KINDS = ["single_choice", "multiple_choice", "scale", "open_text", "idea"];

function questionEditor(n, onremove, question = null) {
  const id = (name) => `q${n}-${name}`;
  const box = el("fieldset", { class: "question", "data-question": n },
    el("legend", { text: t("dialogue.question", { n }) }),
    el("div", { class: "field" }, el("label", { for: id("kind"), text: t("dialogue.kind") }),
      el("select", { id: id("kind"), name: id("kind") }, KINDS.map((k) => el("option", { value: k, text: t(`kind.${k}`) })))),
    field(id("prompt"), "dialogue.prompt", { required: true, maxlength: 1000 }),
    el("div", { class: "field", "data-for": "choices" }, el("label", { for: id("choices"), text: t("dialogue.choices") }),
      el("textarea", { id: id("choices"), name: id("choices"), rows: 4 })),
    el("div", { class: "field scale", "data-for": "scale", hidden: true },
      field(id("min"), "dialogue.scale.min", { type: "number", value: 1, min: -100, max: 100 }),
      field(id("max"), "dialogue.scale.max", { type: "number", value: 5, min: -100, max: 100 }),
      field(id("minlabel"), "dialogue.scale.minLabel", { maxlength: 200 }),
      field(id("maxlabel"), "dialogue.scale.maxLabel", { maxlength: 200 })),
    el("button", { type: "button", class: "secondary", text: t("dialogue.remove", { n }), onclick: () => onremove(box) }));
  const kind = box.querySelector("select");
  if (question) {  // editing: the question as it is, keeping its ID
    box.dataset.questionId = question.question_id;
    kind.value = question.kind;
    box.querySelector(`#${id("prompt")}`).value = question.prompt;
    box.querySelector(`#${id("choices")}`).value = (question.choices || []).map((c) => c.label).join("\n");
    if (question.scale) {
      box.querySelector(`#${id("min")}`).value = question.scale.min;
      box.querySelector(`#${id("max")}`).value = question.scale.max;
      box.querySelector(`#${id("minlabel")}`).value = question.scale.labels?.[String(question.scale.min)] || "";
      box.querySelector(`#${id("maxlabel")}`).value = question.scale.labels?.[String(question.scale.max)] || "";
    }
  }
  const sync = () => {
    box.querySelector("[data-for=choices]").hidden = !["single_choice", "multiple_choice"].includes(kind.value);
    box.querySelector("[data-for=scale]").hidden = kind.value !== "scale";
  };
  kind.addEventListener("change", sync);
  sync();
  return box;
}

function readQuestion(box) {
  const value = (name) => box.querySelector(`[name=q${box.dataset.question}-${name}]`).value.trim();
  const question = { kind: value("kind"), prompt: value("prompt") };
  if (box.dataset.questionId) question.question_id = box.dataset.questionId;
  if (question.kind.endsWith("_choice")) {
    question.choices = value("choices").split("\n").map((l) => l.trim()).filter(Boolean)
      .map((label, i) => ({ key: `c${i + 1}`, label }));
  }
  if (question.kind === "scale") {
    const min = Number(value("min")), max = Number(value("max"));
    const labels = {};
    if (value("minlabel")) labels[String(min)] = value("minlabel");
    if (value("maxlabel")) labels[String(max)] = value("maxlabel");
    question.scale = { min, max, labels };
  }
  return question;
}

function localTime(value) {
  // An ISO instant as the value of a datetime-local field, in the person's own zone.
  const d = new Date(value);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function newDialogue(existing = null) {
  const list = el("div", { id: "questions" });
  let count = 0;
  const add = (question = null) => {
    count += 1;
    const box = questionEditor(count, (b) => b.remove(), question);
    list.append(box);
    if (!question) box.querySelector("select").focus();
  };
  show(existing ? existing.title : t("dialogues.new"), form(async (data) => {
    const body = { title: data.get("title"), intro: data.get("intro") || "",
                   questions: [...list.querySelectorAll("fieldset")].map(readQuestion) };
    for (const [name, key] of [["opens", "opens_at"], ["closes", "closes_at"]]) {
      if (data.get(name)) body[key] = new Date(data.get(name)).toISOString();
    }
    const saved = existing ? await api("PATCH", `/dialogue/dialogues/${existing.dialogue_id}`, body)
      : await api("POST", "/dialogue/dialogues", body);
    say(t("dialogue.saved"));
    go(`dialogue=${saved.dialogue_id}`);
  },
  field("title", "dialogues.name", { required: true, maxlength: 200 }),
  el("div", { class: "field" }, el("label", { for: "intro", text: t("dialogue.intro") }),
    el("textarea", { id: "intro", name: "intro", rows: 3, maxlength: 5000 })),
  field("opens", "dialogue.opens", { type: "datetime-local" }),
  field("closes", "dialogue.closes", { type: "datetime-local" }),
  list,
  el("button", { type: "button", class: "secondary", text: t("dialogue.add"), onclick: () => add() }),
  el("button", { type: "submit", text: existing ? t("settings.save") : t("dialogue.save") })));
  if (existing) {
    document.getElementById("title").value = existing.title;
    document.getElementById("intro").value = existing.intro || "";
    if (existing.opens_at) document.getElementById("opens").value = localTime(existing.opens_at);
    if (existing.closes_at) document.getElementById("closes").value = localTime(existing.closes_at);
    existing.questions.forEach((q) => add(q));
  } else {
    add();
  }
  document.getElementById("title").focus();
}

async function dialogues() {
  const data = await api("GET", "/dialogue/dialogues?limit=100");
  const rows = data.dialogues.map((d) => el("tr", {},
    el("td", {}, el("a", { href: `#dialogue=${d.dialogue_id}`, text: d.title })),
    el("td", { text: t(`dstatus.${d.status}`) }),
    el("td", { text: String(d.questions.length) })));
  show(t("dialogues.title"),
    el("button", { type: "button", text: t("dialogues.new"), onclick: () => newDialogue() }),
    rows.length ? table([t("dialogues.name"), t("dialogues.status"), t("dialogues.questions")], rows)
      : el("p", { text: t("dialogues.none") }));
}

function previewQuestion(question, n) {
  const name = `preview-${n}`;
  const body = el("div", { class: "preview-question" }, el("p", { class: "prompt", id: `${name}-prompt`, text: question.prompt }));
  if (question.kind.endsWith("_choice")) {
    const type = question.kind === "single_choice" ? "radio" : "checkbox";
    body.append(el("div", { role: type === "radio" ? "radiogroup" : "group", "aria-labelledby": `${name}-prompt` },
      question.choices.map((c, i) => el("label", { class: "choice" },
        el("input", { type, name, value: c.key, id: `${name}-${i}` }), ` ${c.label}`))));
  } else if (question.kind === "scale") {
    const points = [];
    for (let v = question.scale.min; v <= question.scale.max; v += 1) points.push(v);
    body.append(el("div", { role: "radiogroup", "aria-labelledby": `${name}-prompt`, class: "scale-points" },
      points.map((v) => el("label", { class: "choice" }, el("input", { type: "radio", name, value: v }),
        ` ${v}${question.scale.labels?.[String(v)] ? ` (${question.scale.labels[String(v)]})` : ""}`))));
  } else {
    body.append(el("textarea", { rows: 3, "aria-labelledby": `${name}-prompt` }));
  }
  body.append(el("button", { type: "button", class: "secondary", disabled: true,
                             text: question.kind === "idea" ? t("preview.idea") : t("preview.send") }));
  return body;
}

async function dialogueDetail(dialogueId) {
  const d = await api("GET", `/dialogue/dialogues/${dialogueId}`);
  const moves = { draft: ["publish"], published: ["close"], closed: ["archive", "publish"], archived: [] }[d.status] || [];
  const answers = await api("GET", `/dialogue/dialogues/${dialogueId}/answers?limit=100`);
  const prompts = Object.fromEntries(d.questions.map((q) => [q.question_id, q.prompt]));
  const shown = (value) => Array.isArray(value) ? value.join(", ") : (value === null ? "—" : String(value));
  const rows = answers.answers.map((a) => el("tr", {},
    el("td", { text: prompts[a.question_id] || "" }), el("td", { text: shown(a.value) }),
    el("td", { text: (a.screening?.findings || []).map((f) => f.kind).join(", ") || t("dialogue.clean") })));
  show(d.title,
    el("p", { text: `${t("dialogues.status")}: ${t(`dstatus.${d.status}`)}` }),
    d.has_answers ? "" : el("button", { type: "button", class: "secondary", text: t("dialogue.edit"),
                                        onclick: () => newDialogue(d) }),
    moves.map((move) => el("button", { type: "button", text: t(`dialogue.${move}`), onclick: async () => {
      const moved = await api("POST", `/dialogue/dialogues/${dialogueId}/${move}`);
      say(t("dialogue.moved", { status: t(`dstatus.${moved.status}`) }));
      dialogueDetail(dialogueId);
    } })),
    el("h2", { text: t("dialogue.preview") }),
    el("section", { class: "preview", "aria-label": t("dialogue.preview") },
      d.intro ? el("p", { text: d.intro }) : "", d.questions.map(previewQuestion)),
    el("h2", { text: t("dialogue.answers") }),
    rows.length ? table([t("dialogues.questions"), t("dialogue.answer"), t("dialogue.findings")], rows)
      : el("p", { text: t("dialogue.noAnswers") }));
}

// --- figures (owners, editors and analysts, through the gateway to analytics) ------------------

async function figures() {
  const data = await api("GET", "/analytics/dialogues");
  if (!data.dialogues.length) { show(t("figures.title"), el("p", { text: t("figures.none") })); return; }
  const sections = [];
  for (const summary of data.dialogues) {
    const f = await api("GET", `/analytics/dialogues/${summary.dialogue_id}/figures`);
    sections.push(el("h2", { text: f.title }),
      el("button", { type: "button", class: "secondary", text: t("figures.csv"),
                     "aria-label": `${t("figures.csv")}: ${f.title}`,
                     onclick: () => downloadCsv(`figures-${f.dialogue_id}.csv`, figureRows(f)) }),
      ...f.questions.map((q) => figureOf(q, f.min_group_size)));
  }
  show(t("figures.title"), ...sections);
}

// A dialogue's figures as a spreadsheet: one row per value of each question; a figure
// about fewer than k people stays empty, with the reason beside it, as on the page.
function figureRows(figures) {
  const rows = [[t("figures.question"), t("figures.value"), t("figures.count"), t("figures.note")]];
  for (const q of figures.questions) {
    const respondents = q.respondents.suppressed ? "" : q.respondents.value;
    rows.push([q.prompt, t("figures.respondents.column"), respondents,
               q.respondents.suppressed ? t("figures.suppressed", { k: figures.min_group_size }) : ""]);
    for (const c of q.choices || q.scale?.histogram || []) {
      rows.push([q.prompt, c.label || c.key, c.suppressed ? "" : c.value,
                 c.suppressed ? t("figures.suppressed", { k: figures.min_group_size }) : ""]);
    }
  }
  return rows;
}

function downloadCsv(name, rows) {
  // RFC 4180 quoting; a cell that a spreadsheet would run as a formula is quoted first.
  const cell = (value) => {
    let text = String(value ?? "");
    if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const csv = rows.map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
  save(name, new Blob(["\ufeff", csv], { type: "text/csv;charset=utf-8" }));
}

function bar(share) {
  // Its width through the CSSOM: the page's CSP refuses style attributes.
  const element = el("span", { class: "bar", "aria-hidden": "true" });
  element.style.width = `${Math.round(share * 70)}%`;
  return element;
}

function figureOf(question, k) {
  const cells = question.choices || question.scale?.histogram || [];
  const released = cells.filter((c) => !c.suppressed);
  const top = Math.max(1, ...released.map((c) => c.value));
  const respondents = question.respondents.suppressed ? t("figures.suppressed", { k })
    : t("figures.respondents", { n: question.respondents.value });
  const rows = cells.map((c) => el("tr", {},
    el("th", { scope: "row", text: c.label || c.key }),
    el("td", {}, c.suppressed ? el("span", { text: t("figures.suppressed", { k }) }) : el("span", { class: "bar-cell" },
      bar(c.value / top), el("span", { text: String(c.value) })))));
  return el("section", { class: "figure", "aria-label": question.prompt },
    el("h3", { text: question.prompt }), el("p", { class: "hint", text: respondents }),
    question.scale && !question.scale.mean.suppressed
      ? el("p", { text: t("figures.mean", { mean: Number(question.scale.mean.value).toFixed(1) }) }) : "",
    cells.length ? table([t("figures.value"), t("figures.count")], rows) : "");
}

// --- the rights desk (owners and privacy officers, through the gateway to rights) ------------

function download(name, data) {
  save(name, new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
}

function save(name, blob) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function withFreshFactor(action) {
  try {
    return await action();
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "fresh_factor_required") throw error;
    await freshFactor();
    return action();
  }
}

async function rights() {
  const data = await api("GET", "/rights/rights-requests?limit=200");
  const rows = data.requests.map((r) => el("tr", {},
    el("td", { text: t(`rkind.${r.kind}`) }),
    el("td", { text: t(`rstatus.${r.status}`) === `rstatus.${r.status}` ? r.status : t(`rstatus.${r.status}`) }),
    el("td", { class: `urgency-${r.urgency}`, text: t(`urgency.${r.urgency}`) }),
    el("td", { text: date(r.received_at) }), el("td", { text: date(r.deadline) }),
    el("td", { text: `${r.progress.filter((p) => p.status === "confirmed").length} / ${r.progress.length}` }),
    el("td", {}, r.kind === "erasure" && r.status === "completed" ? el("button", {
      type: "button", class: "secondary", text: t("rights.download"), onclick: async () => {
        download(`receipt-${r.request_id}.json`, await api("GET", `/rights/rights-requests/${r.request_id}/receipt`));
      } }) : "")));
  const verdict = el("div", { "aria-live": "polite" });
  show(t("rights.title"),
    rows.length ? table([t("rights.kind"), t("rights.status"), t("rights.urgency"), t("rights.received"),
                         t("rights.deadline"), t("rights.progress"), t("rights.receipt")], rows)
      : el("p", { text: t("rights.none") }),
    el("h2", { text: t("rights.behalf") }),
    form(async (values) => {
      const body = { kind: values.get("rights-kind"), participant_id: values.get("rights-participant").trim() };
      await withFreshFactor(() => api("POST", "/rights/rights-requests", body));
      await rights();
      say(t("rights.made"));
    },
    field("rights-participant", "rights.participant", { required: true, autocomplete: "off", maxlength: 64 },
          "rights.behalf.hint"),
    el("div", { class: "field" }, el("label", { for: "rights-kind", text: t("rights.kind") }),
      el("select", { id: "rights-kind", name: "rights-kind" },
        ["access", "export", "erasure", "objection"].map((k) => el("option", { value: k, text: t(`rkind.${k}`) })))),
    el("button", { type: "submit", text: t("rights.submit") })),
    el("h2", { text: t("rights.audit") }),
    el("button", { type: "button", text: t("rights.verify"), onclick: async () => {
      const result = await api("GET", "/rights/audit/verification");
      verdict.replaceChildren(
        el("p", { class: result.valid ? "ok" : "error",
                  text: result.valid ? t("rights.valid", { n: result.entries }) : t("rights.broken", { n: result.broken_at }) }),
        el("button", { type: "button", class: "secondary", text: t("rights.statement"),
                       onclick: () => download("audit-verification.json", result.signed) }));
    } }),
    verdict);
}

// --- settings (owners): the dialogue service's, the rights service's and the allow-list -------

async function settings() {
  const [tenant, retention, allow] = await Promise.all([
    api("GET", "/dialogue/settings"), api("GET", "/rights/retention"), api("GET", "/allow-list")]);
  const number = (id, labelKey, value, extra = {}) => field(id, labelKey,
    { type: "number", inputmode: "numeric", value: value ?? "", ...extra });
  const policy = el("select", { id: "policy", name: "policy" },
    ["warn", "redact", "reject"].map((p) => el("option", { value: p, text: t(`policy.${p}`), selected: p === tenant.pii_policy })));
  show(t("settings.title"),
    form(async (values) => {
      await withFreshFactor(() => api("PUT", "/dialogue/settings", {
        min_group_size: Number(values.get("k")), pii_policy: values.get("policy") }));
      say(t("settings.saved"));
    },
    number("k", "settings.k", tenant.min_group_size, { min: 3, max: 1000, required: true }),
    el("div", { class: "field" }, el("label", { for: "policy", text: t("settings.policy") }), policy),
    el("button", { type: "submit", text: t("settings.save") })),
    el("h2", { text: t("settings.retention") }),
    form(async (values) => {
      const days = (name) => values.get(name) ? Number(values.get(name)) : null;
      await withFreshFactor(() => api("PUT", "/rights/retention", {
        answers_days_after_close: days("answers-days"), idle_device_days: days("device-days") }));
      say(t("settings.saved"));
    },
    number("answers-days", "settings.answers", retention.answers_days_after_close, { min: 1, max: 3650 }),
    number("device-days", "settings.devices", retention.idle_device_days, { min: 1, max: 3650 }),
    el("button", { type: "submit", text: t("settings.save") })),
    el("h2", { text: t("settings.network") }),
    form(async (values) => {
      const networks = (values.get("networks") || "").split("\n").map((l) => l.trim()).filter(Boolean);
      await withFreshFactor(() => api("PUT", "/allow-list", { networks }));
      say(t("settings.saved"));
    },
    el("p", { class: "hint", id: "networks-you", text: t("settings.network.you", { address: allow.your_address || "?" }) }),
    el("div", { class: "field" }, el("label", { for: "networks", text: t("settings.network") }),
      el("p", { class: "hint", id: "networks-hint", text: t("settings.network.hint") }),
      el("textarea", { id: "networks", name: "networks", rows: 4, "aria-describedby": "networks-hint networks-you" })),
    el("button", { type: "submit", text: t("settings.save") })));
  document.getElementById("networks").value = allow.networks.join("\n");
}

// --- API keys (owners): for the organisation's own systems ---------------------------------

const SCOPES = ["dialogues", "figures", "rights", "codes", "streams"];

async function apiKeys(made = null) {
  const data = await api("GET", "/api-keys");
  // The first key's name is the server's; the console says it in the reader's language.
  const nameOf = (key) => (key.key_id === "k_initial" ? t("keys.initial") : key.name);
  const rows = data.keys.map((key) => el("tr", {},
    el("td", { text: nameOf(key) }),
    el("td", { text: key.scopes.map((s) => t(`scope.${s}`)).join(", ") }),
    el("td", { text: t(`status.${key.status}`) }),
    el("td", { text: key.created_by ? `${date(key.created_at)} · ${key.created_by}` : date(key.created_at) }),
    el("td", { text: key.last_used_at ? date(key.last_used_at) : t("keys.never") }),
    el("td", {}, key.status === "active" ? el("button", { type: "button", class: "secondary", text: t("keys.revoke"),
      "aria-label": `${t("keys.revoke")}: ${nameOf(key)}`, onclick: async () => {
        if (!window.confirm(t("keys.revoke.confirm", { name: nameOf(key) }))) return;
        await api("DELETE", `/api-keys/${key.key_id}`);
        await apiKeys();
        say(t("keys.revoked", { name: nameOf(key) }));
      } }) : "")));
  const shown = made ? el("div", { class: "once", role: "status" },
    el("h2", { text: t("keys.made", { name: made.name }) }),
    el("p", { text: t("keys.once") }),
    el("p", {}, el("code", { class: "secret", id: "new-key", text: made.key })),
    el("button", { type: "button", class: "secondary", text: t("keys.copy"), onclick: async () => {
      await navigator.clipboard?.writeText(made.key);
      say(t("keys.copied"));
    } })) : "";
  show(t("keys.title"), shown, el("p", { class: "hint", text: t("keys.hint") }),
    data.last_use_complete ? "" : el("p", { class: "hint", text: t("keys.partial") }),
    rows.length ? table([t("keys.name"), t("keys.scopes"), t("keys.status"), t("keys.created"), t("keys.used"),
                         t("keys.actions")], rows) : el("p", { text: t("keys.none") }),
    el("h2", { text: t("keys.new") }),
    form(async (values) => {
      const body = { name: (values.get("key-name") || "").trim(), scopes: values.getAll("scope") };
      const created = await withFreshFactor(() => api("POST", "/api-keys", body));
      await apiKeys(created);
    },
    field("key-name", "keys.name.label", { required: true, maxlength: 100, autocomplete: "off" }, "keys.name.hint"),
    el("fieldset", { class: "field" }, el("legend", { text: t("keys.scopes") }),
      SCOPES.map((s) => el("div", { class: "check" },
        el("input", { type: "checkbox", id: `scope-${s}`, name: "scope", value: s }),
        el("label", { for: `scope-${s}`, text: `${t(`scope.${s}`)}: ${t(`scope.${s}.hint`)}` })))),
    el("button", { type: "submit", text: t("keys.submit") })));
  if (made) document.getElementById("new-key")?.focus();
}

// --- routing -------------------------------------------------------------------------------

const VIEWS = { home, team, activity, codes, dialogues, figures, rights, keys: apiKeys, settings };

function go(name) {
  if (location.hash !== `#${name}`) history.pushState(null, "", `#${name}`);
  route();
}

async function route() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("invitation=")) { view = "invitation"; renderNav(); await invitation(decodeURIComponent(hash.slice(11))); return; }
  if (!session) {
    try { session = await api("GET", "/session"); } catch { session = null; }
  }
  const detail = hash.startsWith("dialogue=") ? hash.slice(9) : null;
  view = session && detail ? "dialogues" : (session && VIEWS[hash] ? hash : (session ? "home" : "sign-in"));
  renderNav();
  try {
    if (view === "sign-in") signIn(); else if (detail) await dialogueDetail(detail); else await VIEWS[view]();
  } catch (error) {
    if (error instanceof ApiError && error.code === "session_required") { session = null; view = "sign-in"; renderNav(); signIn(); return; }
    if (error instanceof ApiError) { show(t("title"), el("p", { class: "error", role: "alert", text: errorText(error) })); return; }
    throw error;
  }
}

const picker = document.getElementById("language");
for (const [code, name] of Object.entries(LANGUAGES)) picker.append(el("option", { value: code, text: name, lang: code }));
picker.value = initialLanguage();
setLanguage(picker.value);
picker.addEventListener("change", () => { setLanguage(picker.value); statusLine.textContent = ""; route(); });
window.addEventListener("hashchange", route);
route();
