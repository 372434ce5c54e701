"use strict";
// The tenant dashboard: one page per dialogue (`?dialogue=d_…`), drawn from the same
// routes a tenant's own systems call, with the tenant's API key.
//
// Why no chart library: the charts are bars and nothing else, the page is served by a
// Python service with no front-end build, and nothing may be fetched from a CDN at run
// time; a hundred lines of SVG keep it that way. Every text is set with textContent
// (never innerHTML), so a dialogue title or a choice label cannot inject markup.

const STORAGE = "tessera.dashboard";
const SVG = "http://www.w3.org/2000/svg";
const ID = /^[a-z]_[A-Za-z0-9_-]{1,64}$/;
const FIGURE_NAMES = {
  respondents: "respondents", answers: "answers", choices: "choice", histogram: "scale point",
  mean: "mean", median: "median", over_time: "day", devices: "device type",
};

class SignedOut extends Error {}

function credentials() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE));
    return saved && ID.test(saved.tenant_id) && saved.api_key ? saved : null;
  } catch {
    return null;
  }
}

async function api(path) {
  const who = credentials();
  if (!who) throw new SignedOut();
  const response = await fetch(`/v1/tenants/${encodeURIComponent(who.tenant_id)}${path}`, {
    headers: { Authorization: `Bearer ${who.api_key}` }, cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    sessionStorage.removeItem(STORAGE);
    throw new SignedOut("That tenant ID and API key were not accepted.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body?.detail?.message ?? `The service answered ${response.status}.`);
  return body;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

function show(id, visible = true) {
  document.getElementById(id).hidden = !visible;
}

function say(text) {
  const message = document.getElementById("message");
  message.textContent = text ?? "";
  message.hidden = !text;
}

function number(value) {
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toLocaleString("en", { maximumFractionDigits: 2 });
}

// --- charts --------------------------------------------------------------------------

function hatchPattern() {
  return svg("defs", {}, svg("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
                                           patternTransform: "rotate(45)" },
    svg("rect", { width: 6, height: 6, fill: "#f6e3d8" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6,
                                                                        stroke: "#b3541e", "stroke-width": 2 })));
}

function bar(cell, label) {
  const group = svg("g", { class: cell.suppressed ? "bar suppressed" : "bar", "data-key": cell.key });
  group.dataset.label = label;
  if (cell.suppressed) {
    group.dataset.suppressed = "true";
    group.dataset.reason = cell.reason ?? "";
    group.append(svg("title", {}, `${label}: suppressed (${cell.reason})`));
  } else {
    group.dataset.value = String(cell.value);
    group.append(svg("title", {}, `${label}: ${number(cell.value)}`));
  }
  return group;
}

function scaleOf(cells) {
  return Math.max(1, ...cells.filter((c) => !c.suppressed).map((c) => c.value));
}

/** Horizontal bars, one per cell (choices, device types). */
function horizontalBars(cells, labelOf) {
  const labelWidth = 150, area = 320, lane = 24, max = scaleOf(cells);
  const chart = svg("svg", { width: labelWidth + area + 110, height: lane * cells.length + 4, role: "img" });
  cells.forEach((cell, i) => {
    const label = labelOf(cell), y = i * lane + 2, group = bar(cell, label);
    group.append(svg("text", { x: labelWidth - 8, y: y + 15, "text-anchor": "end", class: "label" }, label));
    if (cell.suppressed) {
      group.append(svg("rect", { class: "mark", x: labelWidth, y, width: area / 3, height: lane - 6 }));
      group.append(svg("text", { class: "figure", x: labelWidth + area / 3 + 6, y: y + 15 }, "suppressed"));
    } else {
      const width = (cell.value / max) * area;
      group.append(svg("rect", { class: "value", x: labelWidth, y, width, height: lane - 6 }));
      group.append(svg("text", { class: "figure", x: labelWidth + width + 6, y: y + 15 }, number(cell.value)));
    }
    chart.append(group);
  });
  return chart;
}

/** Vertical bars, one per cell (a scale's histogram, answers per day). */
function columns(cells, labelOf) {
  const height = 150, top = 18, bottom = 34, max = scaleOf(cells);
  const step = Math.max(18, Math.min(56, 560 / Math.max(1, cells.length))), width = step - 6;
  const every = Math.ceil(cells.length / 14);
  const chart = svg("svg", { width: step * cells.length + 8, height: top + height + bottom, role: "img" });
  cells.forEach((cell, i) => {
    const label = labelOf(cell), x = i * step + 4, group = bar(cell, label);
    if (i % every === 0) {
      group.append(svg("text", { x: x + width / 2, y: top + height + 14, "text-anchor": "middle", class: "label" },
                       label));
    }
    if (cell.suppressed) {
      group.append(svg("rect", { class: "mark", x, y: top + height * 0.6, width, height: height * 0.4 }));
      group.append(svg("text", { class: "figure", x: x + width / 2, y: top + height * 0.6 - 4, "text-anchor": "middle" },
                       "–"));
    } else {
      const h = (cell.value / max) * height;
      group.append(svg("rect", { class: "value", x, y: top + height - h, width, height: h }));
      group.append(svg("text", { class: "figure", x: x + width / 2, y: top + height - h - 4, "text-anchor": "middle" },
                       number(cell.value)));
    }
    chart.append(group);
  });
  return chart;
}

function chart(name, caption, drawn) {
  drawn.setAttribute("aria-label", caption);
  return el("figure", { "data-chart": name }, el("figcaption", {}, caption), drawn);
}

function tile(name, label, cell) {
  const value = el("dd");
  const box = el("div", { class: "tile", "data-figure": name }, el("dt", {}, label), value);
  if (cell.suppressed) {
    box.dataset.suppressed = "true";
    value.className = "suppressed-value";
    value.textContent = "suppressed";
    value.title = cell.reason ?? "";
  } else {
    box.dataset.value = String(cell.value);
    value.textContent = number(cell.value);
  }
  return box;
}

// --- pages ---------------------------------------------------------------------------

function questionSection(question) {
  const kinds = { single_choice: "single choice", multiple_choice: "multiple choice", scale: "scale",
                  open_text: "open text", idea: "ideas" };
  const section = el("section", { class: "question", "data-question": question.question_id },
    el("h3", {}, question.prompt, " ", el("span", { class: "kind" }, `(${kinds[question.kind] ?? question.kind})`)));
  const tiles = el("dl", { class: "tiles" }, tile("respondents", "Respondents", question.respondents),
                   tile("answers", "Answers", question.answers));
  if (question.scale) {
    tiles.append(tile("mean", "Mean", question.scale.mean), tile("median", "Median", question.scale.median));
  }
  section.append(tiles);
  const charts = el("div", { class: "charts" });
  if (question.choices) {
    const caption = question.kind === "multiple_choice" ? "Participants per choice (several each)"
                                                        : "Participants per choice";
    charts.append(chart("choices", caption, horizontalBars(question.choices, (c) => c.label ?? c.key)));
  }
  if (question.scale) {
    charts.append(chart("histogram", `Participants per point, ${question.scale.min}–${question.scale.max}`,
                        columns(question.scale.histogram, (c) => c.key)));
  }
  if (question.over_time.length) {
    charts.append(chart("over_time", "Participants who answered, per day (UTC)",
                        columns(question.over_time, (c) => c.key.slice(5))));
  }
  charts.append(chart("devices", "Participants per device type", horizontalBars(question.devices, (c) => c.key)));
  section.append(charts);
  return section;
}

function hiddenList(figures) {
  const prompts = Object.fromEntries(figures.questions.map((q) => [q.question_id, q.prompt]));
  const labels = Object.fromEntries(figures.questions.map((q) => [q.question_id, Object.fromEntries(
    (q.choices ?? []).map((c) => [c.key, c.label ?? c.key]))]));
  const rows = figures.suppressed.map((s) => el("tr", {}, el("td", {}, prompts[s.question_id] ?? ""),
    el("td", {}, FIGURE_NAMES[s.figure] ?? s.figure),
    el("td", {}, s.figure === "choices" ? labels[s.question_id]?.[s.key] ?? s.key : s.key), el("td", {}, s.reason)));
  return el("details", { class: "hidden-figures" },
    el("summary", {}, `${figures.suppressed.length} figures suppressed, and why`),
    el("table", { class: "hidden-list" },
       el("thead", {}, el("tr", {}, el("th", {}, "Question"), el("th", {}, "Figure"), el("th", {}, "Which"),
                         el("th", {}, "Reason"))),
       el("tbody", {}, ...rows)));
}

async function showDialogue(dialogueId) {
  const figures = await api(`/dialogues/${encodeURIComponent(dialogueId)}/figures`);
  const page = document.getElementById("dialogue");
  const refresh = el("button", { type: "button", id: "refresh" }, "Refresh");
  refresh.addEventListener("click", () => route());
  page.replaceChildren(
    el("p", {}, el("a", { href: "./" }, "← all dialogues")),
    el("h2", { id: "title" }, figures.title),
    el("p", { class: "note" },
       `Status ${figures.status}. Any figure about fewer than ${figures.min_group_size} participants is `
       + "suppressed (hatched), and so is any figure that would let one be worked out by subtraction. "
       + `Figures as of ${new Date().toLocaleTimeString("en-GB")}. `, refresh),
    ...figures.questions.map(questionSection),
    hiddenList(figures));
  page.prepend(svg("svg", { width: 0, height: 0, "aria-hidden": "true" }, hatchPattern()));
  document.title = `${figures.title} · Tessera figures`;
  show("dialogue");
}

async function showDialogues() {
  const { dialogues } = await api("/dialogues");
  const list = document.querySelector("#dialogues ul");
  list.replaceChildren(...dialogues.map((d) => el("li", {},
    el("a", { href: `?dialogue=${encodeURIComponent(d.dialogue_id)}` }, d.title), ` (${d.status})`)));
  if (!dialogues.length) list.append(el("li", {}, "No dialogues yet."));
  show("dialogues");
}

async function route() {
  say(null);
  for (const id of ["sign-in", "dialogues", "dialogue"]) show(id, false);
  const who = credentials();
  show("sign-out", Boolean(who));
  document.getElementById("who").textContent = who ? who.tenant_id : "";
  show("who", Boolean(who));
  if (!who) {
    show("sign-in");
    return;
  }
  const dialogueId = new URLSearchParams(location.search).get("dialogue");
  try {
    if (dialogueId === null) await showDialogues();
    else if (!ID.test(dialogueId)) say("That is not a dialogue ID.");
    else await showDialogue(dialogueId);
  } catch (error) {
    if (error instanceof SignedOut) {
      await route();
      say(error.message || null);
    } else {
      say(error.message);
    }
  }
}

document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  sessionStorage.setItem(STORAGE, JSON.stringify({ tenant_id: form.get("tenant_id").trim(),
                                                   api_key: form.get("api_key").trim() }));
  event.target.reset();
  await route();
});

document.getElementById("sign-out").addEventListener("click", async () => {
  sessionStorage.removeItem(STORAGE);
  await route();
});

route();
