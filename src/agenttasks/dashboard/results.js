/**
 * A finished task's result_data for people: text as sanitised Markdown, figures as tables, and
 * always the raw JSON underneath.
 */

import { h, jsonBlock, table } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export function renderResult(taskType, result) {
  const render = RENDERERS[taskType] || (() => null);
  return h("div", { class: "result" },
    render(result),
    engineLine(result),
    h("details", {}, h("summary", {}, "Result as JSON"), jsonBlock(result)));
}

const RENDERERS = {
  summary: (r) => [renderMarkdown(r.summary), sources(r.sources)],
  research: (r) => [
    (r.answers || []).map((a) => h("div", { class: "answer" },
      h("h3", {}, a.question), renderMarkdown(a.answer),
      a.sources && a.sources.length ? h("p", { class: "muted" }, `Sources: ${a.sources.map(citation).join(", ")}`) : null)),
    r.key_findings && r.key_findings.length
      ? [h("h3", {}, "Key findings"), h("ul", {}, r.key_findings.map((f) => h("li", {}, typeof f === "string" ? f : JSON.stringify(f))))]
      : null,
    sources(r.sources),
  ],
  content_generation: (r) => [h("h2", {}, r.title || ""), renderMarkdown(r.content)],
  data_analysis: (r) => [
    statistics(r.statistics),
    r.insights && r.insights.length
      ? [h("h3", {}, "Insights"), h("ul", {}, r.insights.map((i) => h("li", {}, typeof i === "string" ? i : JSON.stringify(i))))]
      : null,
    r.narrative ? [h("h3", {}, "Narrative"), renderMarkdown(r.narrative)] : null,
  ],
  custom: (r) => [
    (r.steps || []).map((step, i) => h("details", { open: i === r.steps.length - 1 },
      h("summary", {}, `Step ${i + 1}: ${step.name || ""}`), renderMarkdown(step.output))),
    h("h3", {}, "Final"),
    renderMarkdown(r.final),
  ],
};

function citation(source) {
  return typeof source === "string" ? source : source.url || source.title || JSON.stringify(source);
}

function sources(list) {
  if (!list || !list.length) return null;
  return [h("h3", {}, "Sources"), table(list, Object.keys(list[0]))];
}

/** Statistics: one table per series (figures as rows), nested objects as their own tables. */
function statistics(stats) {
  if (!stats || typeof stats !== "object") return null;
  return [h("h3", {}, "Statistics"), valueTable(stats)];
}

function valueTable(value) {
  if (Array.isArray(value)) {
    if (value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      return table(value, [...new Set(value.flatMap((v) => Object.keys(v)))]);
    }
    return h("span", {}, value.map((v) => (typeof v === "number" ? round(v) : JSON.stringify(v))).join(", "));
  }
  if (value && typeof value === "object") {
    return h("table", { class: "kv" }, h("tbody", {}, Object.entries(value).map(([k, v]) =>
      h("tr", {}, h("th", {}, k), h("td", {}, v && typeof v === "object" ? valueTable(v) : scalar(v))))));
  }
  return scalar(value);
}

function scalar(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "number" ? round(v) : String(v);
}

function round(n) {
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6)));
}

function engineLine(r) {
  if (!r || !r.engine) return null;
  const usage = r.usage ? ` · ${r.usage.total_tokens ?? "?"} tokens` : "";
  return h("p", { class: "muted" }, `Engine: ${r.engine}${r.model ? ` (${r.model})` : ""}${usage}`);
}
