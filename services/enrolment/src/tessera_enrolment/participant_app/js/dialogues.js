// The open dialogues, and one dialogue: every question, answered in place; after an
// answer, what the group answered.

import { newKey } from "./api.js";
import * as db from "./db.js";
import { el, put } from "./dom.js";
import { locale, t } from "./i18n.js";
import { queueAnswer } from "./outbox.js";
import { control, loadGroup } from "./questions.js";
import { errorText, meOrKept, say } from "./state.js";

const date = (iso) => new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));

/** Said above a view drawn from what was kept on the device, not from the gateway. */
const keptNote = (loadedAt) => (loadedAt
  ? el("p", { class: "warning kept" }, t("dialogues.kept", { date: date(loadedAt) }))
  : null);

export async function renderDialogueList(main) {
  const { data: { dialogues }, loadedAt } = await meOrKept("/v1/me/dialogues");
  put(main, 
    el("h2", {}, t("dialogues.title")),
    keptNote(loadedAt),
    dialogues.length
      ? el("ul", { class: "cards" }, dialogues.map((d) => el("li", {},
          el("a", { href: `#/dialogue/${encodeURIComponent(d.dialogue_id)}` }, d.title),
          el("p", { class: "hint" }, t("dialogues.questions", { count: d.questions }),
             d.closes_at ? ` · ${t("dialogues.open_until", { date: date(d.closes_at) })}` : ""))))
      : el("p", {}, t("dialogues.none")),
  );
}

function feedbackFor(answer) {
  const kinds = [...new Set((answer.screening?.findings ?? []).map((f) => f.kind))];
  if (answer.screening?.action === "flagged") return t("answer.saved_flagged");
  if (answer.screening?.action === "redacted") return t("answer.saved_redacted");
  return kinds.length ? t("answer.saved_flagged") : t("answer.saved");
}

export async function renderDialogue(main, dialogueId, signal) {
  const { data: dialogue, loadedAt } = await meOrKept(`/v1/me/dialogues/${encodeURIComponent(dialogueId)}`);
  const waiting = await db.waiting();
  const base = `/v1/me/dialogues/${encodeURIComponent(dialogue.dialogue_id)}/questions`;
  const sections = new Map();

  const questions = dialogue.questions.map((question) => {
    const idea = question.kind === "idea";
    const mine = dialogue.my_answers.filter((a) => a.question_id === question.question_id && a.value !== null);
    const field = control(question, idea ? null : mine[0]?.value ?? null, { idea });
    const feedback = el("p", { class: "feedback", "aria-live": "polite" });
    const group = el("div", { class: "group" });
    const ideas = idea ? el("ul", { class: "my-ideas" }, mine.map((a) => el("li", {}, a.value))) : null;
    const send = el("button", { type: "submit", disabled: !dialogue.accepting_answers },
      idea ? t("answer.add_idea") : mine.length ? t("answer.change") : t("answer.send"));
    const form = el("form", { class: "question", "data-question": question.question_id, "data-kind": question.kind,
                              novalidate: true },
      field.node,
      idea ? el("div", { class: "ideas" }, el("h4", { hidden: !mine.length }, t("answer.my_ideas")), ideas) : null,
      send, feedback, group);
    sections.set(question.question_id, { question, field, feedback, group, ideas, send, form });
    if (waiting.some((w) => w.path.startsWith(`${base}/${question.question_id}/`))) {
      feedback.textContent = t("answer.waiting");
    }
    if (mine.length) loadGroup(group, dialogue.dialogue_id, question.question_id);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const read = field.read();
      if (!read) {
        feedback.textContent = idea || question.kind === "open_text" ? t("answer.type_first") : t("answer.choose_first");
        (form.querySelector("input, textarea"))?.focus();
        return;
      }
      send.disabled = true;
      const key = newKey();
      const path = `${base}/${encodeURIComponent(question.question_id)}/${idea ? "ideas" : "answer"}`;
      try {
        await queueAnswer({ key, method: idea ? "POST" : "PUT", path, body: { value: read.value },
                            dialogue_id: dialogue.dialogue_id, question_id: question.question_id,
                            prompt: question.prompt, summary: read.summary });
        if ((await db.waiting()).some((w) => w.key === key)) {
          feedback.textContent = t("answer.waiting");
          say(t("answer.waiting"));
        }
      } catch (error) {
        feedback.textContent = errorText(error);
      } finally {
        send.disabled = !dialogue.accepting_answers;
      }
    });
    return form;
  });

  window.addEventListener("tessera:sent", (event) => {
    const { item, answer } = event.detail;
    const section = sections.get(item.question_id);
    if (!section || item.dialogue_id !== dialogue.dialogue_id) return;
    section.feedback.textContent = feedbackFor(answer);
    if (section.field.clearFindings) {
      section.field.clearFindings(); // sent: what it said is the feedback now
      if (answer.screening?.action === "redacted") section.feedback.append(" ", el("q", {}, answer.value));
    }
    if (section.ideas) {
      section.ideas.append(el("li", {}, answer.value));
      section.ideas.previousElementSibling.hidden = false;
      section.field.textarea.value = "";
      section.field.clearFindings(); // redraws the backdrop, now empty like the box
    } else {
      section.send.textContent = t("answer.change");
    }
    say(section.feedback.textContent);
    loadGroup(section.group, dialogue.dialogue_id, item.question_id);
  }, { signal });

  window.addEventListener("tessera:refused", (event) => {
    const { item, error } = event.detail;
    const section = sections.get(item.question_id);
    if (!section || item.dialogue_id !== dialogue.dialogue_id) return;
    if (error.code === "personal_data") {
      section.feedback.textContent = t("answer.rejected_personal_data");
      if (section.field.showFindings && error.detail?.findings) {
        section.field.showFindings(item.body.value, error.detail.findings, "reject");
      }
    } else {
      section.feedback.textContent = errorText(error);
    }
    say(section.feedback.textContent);
  }, { signal });

  put(main, 
    el("h2", {}, dialogue.title),
    keptNote(loadedAt),
    dialogue.intro ? el("p", { class: "intro" }, dialogue.intro) : null,
    el("p", { class: "reminder" }, t("answer.reminder")),
    dialogue.accepting_answers ? null : el("p", { class: "warning" }, t("dialogue.closed")),
    questions,
    el("p", {}, el("a", { href: "#/dialogues" }, t("dialogue.back"))),
  );
}
