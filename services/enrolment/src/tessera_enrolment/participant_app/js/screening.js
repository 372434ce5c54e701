// The personal-data check while typing, shown in the text box itself. A backdrop lies
// under the textarea (whose background is transparent) and lays out the same text the
// same way (font, padding, border, wrapping, scroll position), with <mark> around each
// finding, so the marks sit under the words as they are typed. A screen reader cannot
// see marks: what was found and what the policy will do is said in a live region that
// the textarea points at (aria-describedby).

import { call } from "./api.js";
import { el, put, uid } from "./dom.js";
import { kindName, t } from "./i18n.js";
import { state } from "./state.js";

const SCREEN_AFTER_MS = 400;

/** ``offsets[i]`` is where code point ``i`` of ``text`` starts in UTF-16 units. The
 * screening counts code points (as Python does); a JS string counts UTF-16 units, so an
 * emoji is one character there and two here. */
export function utf16Offsets(text) {
  const offsets = [0];
  for (const char of text) offsets.push(offsets[offsets.length - 1] + char.length);
  return offsets;
}

/** The findings as sorted, non-overlapping UTF-16 ranges into ``text``; a span outside
 * the text (it changed meanwhile) is clipped, never thrown on. */
export function ranges(text, findings) {
  const at = utf16Offsets(text);
  const index = (point) => at[Math.min(Math.max(point, 0), at.length - 1)];
  const out = [];
  let done = 0;
  for (const finding of [...findings].sort((a, b) => a.start - b.start)) {
    const start = Math.max(index(finding.start), done);
    const end = index(finding.end);
    if (end <= start) continue;
    out.push({ kind: finding.kind, start, end });
    done = end;
  }
  return out;
}

/** Findings about ``before`` moved onto ``after`` (both in code points): a finding in the
 * unchanged head stays, one in the unchanged tail shifts, one that was edited is dropped
 * until the next check. So the marks stay put while the participant types elsewhere. */
export function carry(before, after, findings) {
  const old = Array.from(before);
  const now = Array.from(after);
  let head = 0;
  while (head < old.length && head < now.length && old[head] === now[head]) head += 1;
  let tail = 0;
  while (tail < old.length - head && tail < now.length - head
         && old[old.length - 1 - tail] === now[now.length - 1 - tail]) tail += 1;
  const shift = now.length - old.length;
  return findings.flatMap((f) => {
    if (f.end <= head) return [f];
    if (f.start >= old.length - tail) return [{ ...f, start: f.start + shift, end: f.end + shift }];
    return [];
  });
}

/** A textarea with the screening's findings marked in place. ``show(text, findings,
 * policy)`` takes findings about ``text`` (the textarea's value, or the trimmed value
 * that was sent); ``clear()`` forgets them. */
export function screenedTextarea(attributes, value, describedBy) {
  const explanationId = uid("screening");
  const textarea = el("textarea", { ...attributes, "aria-describedby": `${describedBy} ${explanationId}` });
  textarea.value = value;
  const backdrop = el("div", { class: "backdrop", "aria-hidden": "true" });
  const node = el("div", { class: "highlight" }, backdrop, textarea);
  const explanation = el("div", { class: "screening", id: explanationId, "aria-live": "polite" });
  // The findings, about the text the backdrop shows; the policy that was named with them.
  let marked = { text: textarea.value, findings: [], policy: null };
  let said = "";

  const follow = () => {
    backdrop.classList.toggle("scrolls", textarea.scrollHeight > textarea.clientHeight);
    backdrop.scrollTop = textarea.scrollTop;
    backdrop.scrollLeft = textarea.scrollLeft;
  };

  const draw = () => {
    const text = textarea.value;
    if (marked.text !== text) marked = { ...marked, text, findings: carry(marked.text, text, marked.findings) };
    const parts = [];
    let at = 0;
    for (const span of ranges(text, marked.findings)) {
      parts.push(text.slice(at, span.start), el("mark", { "data-kind": span.kind }, text.slice(span.start, span.end)));
      at = span.end;
    }
    parts.push(text.slice(at));
    if (text === "" || text.endsWith("\n")) parts.push(" "); // a last empty line still takes its height
    put(backdrop, parts);
    follow();
  };

  const explain = (text, findings, policy) => {
    const spans = ranges(text, findings);
    const key = JSON.stringify([spans.map((s) => text.slice(s.start, s.end)), policy]);
    if (key === said) return; // the live region speaks only when something changed
    said = key;
    if (!spans.length) {
      explanation.replaceChildren();
      return;
    }
    const kinds = [...new Set(spans.map((s) => kindName(s.kind)))].join(", ");
    put(explanation,
      el("p", { class: "warning" }, t("screening.found", { kinds })),
      el("p", { class: "visually-hidden found" }, spans.map((s) => `“${text.slice(s.start, s.end)}”`).join(", ")),
      policy ? el("p", { class: "policy" }, t(`screening.policy.${policy}`)) : null);
  };

  const show = (text, findings, policy) => {
    const current = textarea.value;
    let about = findings ?? [];
    if (text !== current) {
      // Sent trimmed: the spans count from the first non-space character.
      if (current.trim() !== text) about = [];
      const lead = Array.from(current.slice(0, current.length - current.trimStart().length)).length;
      about = about.map((f) => ({ ...f, start: f.start + lead, end: f.end + lead }));
    }
    marked = { text: current, findings: about, policy };
    draw();
    explain(text, findings ?? [], policy);
  };

  let timer = null;
  let asked = 0;
  textarea.addEventListener("input", () => {
    draw();
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = textarea.value;
      const ticket = ++asked;
      if (!text.trim() || state.screening === false || !state.device) {
        show(text, [], null);
        return;
      }
      try {
        const result = await call("POST", "/v1/me/screening", { token: state.device.device_token, body: { text } });
        state.screening = true;
        if (ticket === asked && textarea.value === text) show(text, result.findings, result.policy);
      } catch (error) {
        // An older gateway has no screening route: the answer is still screened when sent.
        if (error.status === 404 || error.status === 405) state.screening = false;
      }
    }, SCREEN_AFTER_MS);
  });
  textarea.addEventListener("scroll", follow);
  new ResizeObserver(follow).observe(textarea); // a turned phone, a dragged corner
  draw();

  return { node, textarea, explanation, show, clear: () => show(textarea.value, [], null) };
}
