// One control per question kind, usable by touch and keyboard alike: native radio
// groups and checkboxes (arrow keys, space), a scale as radio buttons with their
// labels, a textarea for text with the screening's findings marked in it (screening.js).
// Also: the group view.

import { el, uid } from "./dom.js";
import { locale, t } from "./i18n.js";
import { screenedTextarea } from "./screening.js";
import { me } from "./state.js";

function scaleLabel(question, value) {
  const label = question.scale?.labels?.[String(value)];
  return label ? `${value} · ${label}` : String(value);
}

/** A scale point as its number with its label (if any) under it; read as "1 · label". */
function scalePoint(question, point) {
  const label = question.scale?.labels?.[String(point)];
  return el("span", { class: "point" }, String(point),
    label ? el("span", { class: "point-label" }, el("span", { class: "visually-hidden" }, " · "), label) : null);
}

/** What a value reads as, for the participant (My answers, the waiting list). */
export function summarise(question, value) {
  if (value === null || value === undefined) return "";
  if (!question) return typeof value === "string" ? value : JSON.stringify(value);
  const label = (key) => question.choices.find((c) => c.key === key)?.label ?? key;
  switch (question.kind) {
    case "single_choice": return label(value);
    case "multiple_choice": return value.map(label).join(", ");
    case "scale": return scaleLabel(question, value);
    default: return value;
  }
}

/** The control for ``question`` holding ``value``; ``read()`` gives {value, summary}
 * or null when nothing was chosen or typed. */
export function control(question, value = null, { idea = false } = {}) {
  const name = uid("q");
  if (question.kind === "open_text" || question.kind === "idea") {
    const id = uid("text");
    const hintId = uid("hint");
    const text = screenedTextarea({ id, name, rows: 4, maxlength: 2000, spellcheck: "true" },
                                  idea ? "" : (value ?? ""), hintId);
    const node = el("div", { class: "field" },
      el("h3", {}, el("label", { for: id }, question.prompt)),
      el("p", { class: "hint", id: hintId }, t("answer.no_personal_data")),
      text.node, text.explanation);
    return {
      node, textarea: text.textarea, showFindings: text.show, clearFindings: text.clear,
      read() {
        const typed = text.textarea.value.trim();
        return typed ? { value: typed, summary: typed.length > 80 ? `${typed.slice(0, 77)}…` : typed } : null;
      },
    };
  }
  const multiple = question.kind === "multiple_choice";
  const options = question.kind === "scale"
    ? Array.from({ length: question.scale.max - question.scale.min + 1 }, (_, i) => question.scale.min + i)
        .map((point) => ({ key: String(point), label: scaleLabel(question, point) }))
    : question.choices;
  const chosen = new Set(Array.isArray(value) ? value.map(String) : value === null ? [] : [String(value)]);
  const fieldset = el("fieldset", { class: question.kind === "scale" ? "scale" : "choices" },
    el("legend", {}, el("h3", {}, question.prompt)),
    multiple ? el("p", { class: "hint" }, t("answer.choose_any")) : null,
    options.map((option) => el("label", { class: "option" },
      el("input", { type: multiple ? "checkbox" : "radio", name, value: option.key, checked: chosen.has(option.key) }),
      question.kind === "scale" ? scalePoint(question, Number(option.key)) : el("span", {}, option.label))));
  return {
    node: fieldset,
    read() {
      const picked = [...fieldset.querySelectorAll("input:checked")].map((input) => input.value);
      if (!picked.length) return null;
      const value = question.kind === "scale" ? Number(picked[0]) : multiple ? picked : picked[0];
      return { value, summary: summarise(question, value) };
    },
  };
}

// --- the group view ------------------------------------------------------------------

function bars(items, total) {
  return el("ul", { class: "bars" }, items.map((item) => {
    const share = total ? Math.round((item.count / total) * 100) : 0;
    const bar = el("span", { class: "bar", "aria-hidden": "true" }, el("span", { class: "fill" }));
    bar.firstChild.style.width = `${share}%`; // CSSOM, which the CSP allows (no style attribute)
    return el("li", { "data-key": item.key, "data-count": item.count },
      el("span", { class: "label" }, item.label),
      bar,
      el("span", { class: "count" }, t("group.count", { count: item.count, share })));
  }));
}

export function renderGroup(box, view) {
  box.replaceChildren();
  if (view.status !== "ready") {
    box.append(el("p", { class: "not-enough" }, t("group.not_enough", { k: view.min_group_size })));
    return;
  }
  const number = new Intl.NumberFormat(locale());
  box.append(el("h4", {}, t("group.title", { count: view.respondents })));
  if (view.choices) {
    box.append(bars(view.choices.map((c) => ({ key: c.key, label: c.label, count: c.count })), view.respondents));
  } else if (view.histogram) {
    const answered = view.histogram.reduce((sum, h) => sum + h.count, 0);
    box.append(bars(view.histogram.map((h) => ({ key: String(h.value), label: h.label ? `${h.value} · ${h.label}` : String(h.value),
                                                count: h.count })), answered),
               el("p", { class: "mean" }, t("group.mean", { mean: number.format(view.mean) })));
  } else {
    const texts = view.texts ?? [];
    box.append(texts.length
      ? el("ul", { class: "texts" }, texts.map((text) => el("li", {}, text)))
      : el("p", {}, t("group.no_texts")));
    if ((view.texts_total ?? 0) > texts.length) {
      box.append(el("p", { class: "hint" }, t("group.texts_shown", { shown: texts.length, total: view.texts_total })));
    }
  }
}

export async function loadGroup(box, dialogueId, questionId) {
  const path = `/v1/me/dialogues/${encodeURIComponent(dialogueId)}/questions/${encodeURIComponent(questionId)}/group`;
  try {
    const view = await me("GET", path);
    renderGroup(box, view);
    if (view.status !== "ready") {
      const again = el("button", { type: "button", class: "secondary" }, t("group.look_again"));
      again.addEventListener("click", async () => {
        await loadGroup(box, dialogueId, questionId);
        // The button was replaced: keep focus where the participant is reading.
        (box.querySelector("button") ?? box.querySelector("h4"))?.focus();
      });
      box.append(again);
    } else {
      box.querySelector("h4").setAttribute("tabindex", "-1");
    }
  } catch (error) {
    if (error.code !== "answer_first") box.replaceChildren();
  }
}
