// My answers: every current answer, changed or withdrawn while its dialogue is open.

import { newKey } from "./api.js";
import { el, put } from "./dom.js";
import { t } from "./i18n.js";
import { control, summarise } from "./questions.js";
import { errorText, me, say } from "./state.js";

export async function renderAnswers(main) {
  const { answers } = await me("GET", "/v1/me/answers");
  const current = answers.filter((a) => a.value !== null);
  const dialogueIds = [...new Set(current.map((a) => a.dialogue_id))];
  const dialogues = new Map(await Promise.all(dialogueIds.map(async (id) => {
    try {
      return [id, await me("GET", `/v1/me/dialogues/${encodeURIComponent(id)}`)];
    } catch {
      return [id, null]; // archived or gone: the answer is shown, not editable
    }
  })));

  const heading = el("h2", {}, t("answers.title"));
  if (!current.length) {
    put(main, heading, el("p", {}, t("answers.none")));
    return;
  }
  put(main, heading, el("p", { class: "hint" }, t("answers.explain")),
    dialogueIds.map((id) => {
      const dialogue = dialogues.get(id);
      return el("section", { class: "answer-group" },
        el("h3", {}, dialogue?.title ?? t("answers.unknown_dialogue")),
        el("ul", { class: "answers" }, current.filter((a) => a.dialogue_id === id).map((a) => answerItem(a, dialogue))));
    }));
}

function answerItem(answer, dialogue) {
  const question = dialogue?.questions.find((q) => q.question_id === answer.question_id) ?? null;
  const item = el("li", { "data-answer": answer.answer_id, "data-question": answer.question_id });
  const status = el("p", { class: "feedback", "aria-live": "polite" });

  const show = () => {
    const actions = dialogue?.accepting_answers
      ? el("div", { class: "actions" },
          el("button", { type: "button", class: "secondary", onclick: edit }, t("answers.change")),
          el("button", { type: "button", class: "secondary danger", onclick: withdraw }, t("answers.withdraw")))
      : el("p", { class: "hint" }, t("answers.closed"));
    put(item, 
      el("p", { class: "prompt" }, question?.prompt ?? ""),
      el("p", { class: "value" }, summarise(question, answer.value)),
      actions, status);
  };

  const edit = () => {
    const field = control(question, answer.value);
    const save = el("button", { type: "submit" }, t("answers.save"));
    const cancel = el("button", { type: "button", class: "secondary", onclick: () => { show(); item.querySelector("button")?.focus(); } },
      t("answers.cancel"));
    const form = el("form", { class: "question", novalidate: true }, field.node, el("div", { class: "actions" }, save, cancel),
      status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const read = field.read();
      if (!read) {
        status.textContent = t("answer.choose_first");
        return;
      }
      save.disabled = true;
      try {
        answer = await me("PUT", `/v1/me/answers/${encodeURIComponent(answer.answer_id)}`,
          { body: { value: read.value }, idempotencyKey: newKey() });
        show();
        status.textContent = t("answers.changed");
        say(t("answers.changed"));
        item.querySelector("button")?.focus();
      } catch (error) {
        status.textContent = error.code === "personal_data" ? t("answer.rejected_personal_data") : errorText(error);
        if (error.code === "personal_data" && field.showFindings && error.detail?.findings) {
          field.showFindings(read.value, error.detail.findings, "reject");
        }
        save.disabled = false;
      }
    });
    put(item, form);
    form.querySelector("input, textarea")?.focus();
  };

  const withdraw = async () => {
    try {
      await me("DELETE", `/v1/me/answers/${encodeURIComponent(answer.answer_id)}`);
      const list = item.parentElement;
      const next = item.nextElementSibling ?? item.previousElementSibling;
      item.remove();
      say(t("answers.withdrawn"));
      if (!list.children.length) list.closest("section").append(el("p", {}, t("answers.withdrawn")));
      (next?.querySelector("button") ?? document.querySelector("main h2"))?.focus();
    } catch (error) {
      status.textContent = errorText(error);
    }
  };

  show();
  return item;
}
