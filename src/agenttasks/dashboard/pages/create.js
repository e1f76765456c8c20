/**
 * Create a task: a form made for each type (#/new?type=research), or from a template
 * (#/new?template=<id>). The config is checked by the server (validate-task-config) and each
 * error is shown beside the field it names (`task_config.<field>`).
 */

import { h } from "../dom.js";

const TYPES = {
  summary: [
    { name: "content", kind: "textarea", label: "Text to summarise" },
    { name: "urls", kind: "lines", label: "URLs (one per line)" },
    { name: "max_length", kind: "number", label: "Maximum length (words)", placeholder: "200" },
  ],
  research: [
    { name: "topic", kind: "text", label: "Topic" },
    { name: "urls", kind: "lines", label: "Sources: URLs (one per line)" },
    { name: "questions", kind: "lines", label: "Questions (one per line)" },
    { name: "content", kind: "textarea", label: "Source text" },
  ],
  content_generation: [
    { name: "topic", kind: "text", label: "Topic" },
    { name: "content_type", kind: "select", label: "Kind",
      options: ["article", "blog_post", "report", "social_post", "email", "newsletter", "product_description"] },
    { name: "length", kind: "number", label: "Length (words)", placeholder: "500" },
    { name: "tone", kind: "select", label: "Tone",
      options: ["professional", "casual", "friendly", "formal", "persuasive", "informative"] },
    { name: "keywords", kind: "commas", label: "Keywords (comma separated)" },
  ],
  data_analysis: [
    { name: "data", kind: "json", label: "Data (JSON: {\"series\": [1, 2, 3]} or a list of records)" },
    { name: "analysis_type", kind: "select", label: "Analysis",
      options: ["statistical", "trend", "correlation", "distribution"] },
  ],
  custom: [
    { name: "steps", kind: "steps",
      label: "Steps (one instruction per line, or a JSON list of steps such as {\"action\": \"fetch\", \"url\": \"...\"})" },
  ],
};
const COMMON = ["title", "priority", "max_retries", "timeout_seconds"];

export async function render(ctx, main, query) {
  const params = new URLSearchParams(query || "");
  const templateId = params.get("template");
  const template = templateId ? await ctx.api.getTemplate(templateId) : null;
  const taskType = template ? template.task_type : TYPES[params.get("type")] ? params.get("type") : "summary";
  const fields = new Map(); // name -> {input, error, spec}

  const field = (spec, input) => {
    const error = h("div", { class: "field-error", id: `error-${spec.name}` });
    fields.set(spec.name, { input, error, spec });
    return h("div", { class: "field" }, h("label", { for: `field-${spec.name}` }, spec.label), input, error);
  };
  const inputFor = (spec) => {
    const id = `field-${spec.name}`;
    if (spec.kind === "select") {
      return h("select", { id, name: spec.name }, h("option", { value: "" }, "(default)"),
        spec.options.map((o) => h("option", { value: o }, o)));
    }
    if (["textarea", "lines", "json", "steps"].includes(spec.kind)) {
      return h("textarea", { id, name: spec.name, rows: spec.kind === "textarea" ? "6" : "4" });
    }
    return h("input", { id, name: spec.name, type: spec.kind === "number" ? "number" : "text",
                        placeholder: spec.placeholder });
  };

  const typeSelect = h("select", { id: "task-type", disabled: Boolean(template),
                                   onchange: (e) => ctx.navigate(`#/new?type=${e.target.value}`) },
    Object.keys(TYPES).map((t) => h("option", { value: t, selected: t === taskType }, t)));
  const general = h("div", { class: "error", id: "form-error" });
  const form = h("form", { id: "create-form", onsubmit: (e) => { e.preventDefault(); submit(); } },
    h("div", { class: "field" }, h("label", { for: "task-type" }, "Type"), typeSelect),
    field({ name: "title", label: "Title" }, h("input", { id: "field-title", type: "text", required: true, maxlength: "200" })),
    TYPES[taskType].map((spec) => field(spec, inputFor(spec))),
    field({ name: "priority", label: "Priority" },
      h("select", { id: "field-priority" }, ["normal", "low", "high", "urgent"].map((p) => h("option", { value: p }, p)))),
    field({ name: "max_retries", label: "Retries (0-10)" }, h("input", { id: "field-max_retries", type: "number", placeholder: "3" })),
    field({ name: "timeout_seconds", label: "Timeout (seconds)" }, h("input", { id: "field-timeout_seconds", type: "number", placeholder: "7200" })),
    general,
    h("button", { class: "primary", type: "submit", id: "create" }, "Create task"));

  main.append(h("section", {},
    h("h1", {}, template ? `New task from template “${template.name}” (v${template.version})` : "New task"),
    template ? h("p", { class: "muted" }, "Fields left empty take the template's defaults: ",
      h("code", {}, JSON.stringify(template.default_config))) : null,
    form));

  function clearErrors() {
    general.textContent = "";
    for (const { input, error } of fields.values()) {
      error.textContent = "";
      input.classList.remove("invalid");
    }
  }

  /** Puts each message beside the field it names; the rest above the button. */
  function showErrors(messages) {
    const rest = [];
    for (const message of messages) {
      const named = /`task_config\.([A-Za-z_]+)/.exec(message) || /`([A-Za-z_]+)`/.exec(message);
      const target = named && fields.get(named[1]);
      if (target) {
        target.error.textContent += (target.error.textContent ? "\n" : "") + message;
        target.input.classList.add("invalid");
      } else {
        rest.push(message);
      }
    }
    general.textContent = rest.join("\n");
  }

  /** The task_config the form describes; empty fields are left out (the defaults apply). */
  function config() {
    const out = {};
    const bad = [];
    for (const [name, { input, spec }] of fields) {
      if (COMMON.includes(name)) continue;
      const raw = input.value.trim();
      if (!raw) continue;
      if (spec.kind === "number") out[name] = Number(raw);
      else if (spec.kind === "lines") out[name] = raw.split("\n").map((l) => l.trim()).filter(Boolean);
      else if (spec.kind === "commas") out[name] = raw.split(",").map((l) => l.trim()).filter(Boolean);
      else if (spec.kind === "json") {
        try { out[name] = JSON.parse(raw); } catch (e) { bad.push(`\`task_config.${name}\`: not valid JSON (${e.message})`); }
      } else if (spec.kind === "steps") {
        if (raw.startsWith("[")) {
          try { out[name] = JSON.parse(raw); } catch (e) { bad.push(`\`task_config.${name}\`: not valid JSON (${e.message})`); }
        } else {
          out[name] = raw.split("\n").map((l) => l.trim()).filter(Boolean);
        }
      } else out[name] = raw;
    }
    return { config: out, bad };
  }

  async function submit() {
    clearErrors();
    const { config: taskConfig, bad } = config();
    if (bad.length) return showErrors(bad);
    const common = {
      title: fields.get("title").input.value.trim(),
      priority: fields.get("priority").input.value,
    };
    for (const name of ["max_retries", "timeout_seconds"]) {
      const raw = fields.get(name).input.value.trim();
      if (raw) common[name] = Number(raw);
    }
    const button = form.querySelector("#create");
    button.disabled = true;
    try {
      const check = await ctx.api.validateTaskConfig(taskType, taskConfig, templateId);
      if (!check.valid) return showErrors(check.errors);
      const task = template
        ? await ctx.api.createTaskFromTemplate(templateId, { ...common, task_config: taskConfig })
        : await ctx.api.createTask({ ...common, task_type: taskType, task_config: taskConfig });
      ctx.navigate(`#/task/${task.id}`);
    } catch (error) {
      if (error.status === 400) showErrors(error.errors);
      else general.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }
}
