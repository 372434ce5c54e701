// Tessera's trace view: Jaeger's query API (/api/services, /api/traces) as a list of
// traces and a waterfall of one trace's spans. Written here because Jaeger's own UI
// (jaeger-ui) is built from a project no package registry this platform reaches ships.
const $ = (id) => document.getElementById(id);
const say = (text) => { $("status").textContent = text; };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function api(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return (await response.json()).data || [];
}

const ms = (micros) => `${(micros / 1000).toFixed(1)} ms`;

async function loadServices() {
  const services = (await api("/api/services")).sort();
  $("service").replaceChildren(...services.map((s) => el("option", { value: s }, s)));
  const wanted = services.includes("tessera-enrolment") ? "tessera-enrolment" : services[0];
  if (wanted) $("service").value = wanted;
  await loadOperations();
  say(services.length ? "" : "No traces yet: use the platform, then look again.");
}

async function loadOperations() {
  const service = $("service").value;
  if (!service) return;
  const operations = (await api(`/api/services/${encodeURIComponent(service)}/operations`))
    .map((o) => o.name).sort();
  $("operation").replaceChildren(el("option", { value: "" }, "any"),
    ...operations.map((o) => el("option", { value: o }, o)));
}

function root(trace) {
  return trace.spans.find((s) => !(s.references || []).some((r) => r.refType === "CHILD_OF")) || trace.spans[0];
}

async function findTraces(event) {
  event?.preventDefault();
  const params = new URLSearchParams({ service: $("service").value, lookback: $("lookback").value, limit: "50" });
  if ($("operation").value) params.set("operation", $("operation").value);
  say("Looking…");
  const traces = await api(`/api/traces?${params}`);
  traces.sort((a, b) => root(b).startTime - root(a).startTime);
  $("traces").replaceChildren(...traces.map((trace) => {
    const first = root(trace);
    const services = [...new Set(Object.values(trace.processes).map((p) => p.serviceName))].sort();
    const button = el("button", { type: "button", class: "trace" },
      el("span", {}, new Date(first.startTime / 1000).toLocaleTimeString()),
      el("span", {}, `${trace.processes[first.processID].serviceName}: ${first.operationName}`),
      el("span", {}, ms(first.duration)),
      el("span", {}, `${trace.spans.length} spans`),
      el("span", { class: "services" }, services.join(" · ")));
    button.addEventListener("click", () => showTrace(trace));
    return el("li", {}, button);
  }));
  say(`${traces.length} traces.`);
}

function showTrace(trace) {
  const children = new Map();
  for (const span of trace.spans) {
    const parent = (span.references || []).find((r) => r.refType === "CHILD_OF")?.spanID;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const known = new Set(trace.spans.map((s) => s.spanID));
  const start = Math.min(...trace.spans.map((s) => s.startTime));
  const end = Math.max(...trace.spans.map((s) => s.startTime + s.duration));
  const rows = [];
  const visit = (span, depth) => {
    const service = trace.processes[span.processID].serviceName;
    const bar = el("span");
    bar.style.left = `${((span.startTime - start) / (end - start || 1)) * 100}%`;
    bar.style.width = `${(span.duration / (end - start || 1)) * 100}%`;
    const row = el("button", { type: "button", class: "span", role: "treeitem", "aria-level": String(depth + 1),
                               "aria-expanded": "false" },
      el("span", { class: "name" }, "\u00a0".repeat(depth * 2), el("span", { class: "service" }, service), " ",
         span.operationName),
      el("span", { class: "bar" }, bar), el("span", {}, ms(span.duration)));
    const tags = el("table", { class: "tags" },
      el("tbody", {}, ...span.tags.map((t) => el("tr", {}, el("td", {}, t.key), el("td", {}, String(t.value))))));
    tags.hidden = true;
    row.addEventListener("click", () => {
      tags.hidden = !tags.hidden;
      row.setAttribute("aria-expanded", String(!tags.hidden));
    });
    rows.push(row, tags);
    for (const child of (children.get(span.spanID) || []).sort((a, b) => a.startTime - b.startTime)) {
      visit(child, depth + 1);
    }
  };
  const roots = trace.spans.filter((s) => {
    const parent = (s.references || []).find((r) => r.refType === "CHILD_OF")?.spanID;
    return !parent || !known.has(parent);
  }).sort((a, b) => a.startTime - b.startTime);
  roots.forEach((span) => visit(span, 0));
  $("spans").replaceChildren(...rows);
  $("trace-title").textContent = `Trace ${trace.traceID}: ${trace.spans.length} spans, ${ms(end - start)}`;
  $("trace").hidden = false;
  $("trace-title").focus();
}

$("service").addEventListener("change", loadOperations);
$("find").addEventListener("submit", (event) => findTraces(event).catch((e) => say(`Could not search: ${e.message}`)));
loadServices().then(() => findTraces()).catch((e) => say(`Jaeger did not answer: ${e.message}`));
