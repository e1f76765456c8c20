/**
 * Templates: the list (own and shared), a form to create or revise one (default config and
 * JSON Schema as JSON text, each error shown beside its field), archive, and "create a task"
 * (which opens the task form for the template).
 */

import { h, replace, when } from "../dom.js";

const TYPES = ["summary", "research", "content_generation", "data_analysis", "custom"];
const EXAMPLE_SCHEMA = `{
  "type": "object",
  "properties": {"max_length": {"type": "integer", "maximum": 500}}
}`;

export async function render(ctx, main) {
  const listBody = h("tbody", { id: "template-rows" });
  const showArchived = h("input", { type: "checkbox", id: "show-archived", onchange: () => load() });
  const listError = h("div", { class: "error", id: "templates-message" });
  const formBox = h("section", { id: "template-form-box" });
  main.append(
    h("section", {},
      h("h1", {}, "Templates"),
      h("div", { class: "filters" },
        h("button", { class: "primary", id: "new-template", onclick: () => showForm(null) }, "New template"),
        h("div", {}, h("label", { for: "show-archived" }, "Show archived"), showArchived)),
      listError,
      h("table", { id: "templates" },
        h("thead", {}, h("tr", {}, ["Name", "Type", "Version", "Shared", "Owner", "Used", "Updated", ""].map((c) => h("th", {}, c)))),
        listBody)),
    formBox);

  async function load() {
    const page = await ctx.api.listTemplates({ archived: showArchived.checked ? "true" : "", page_size: 100 });
    replace(listBody, page.results.map(row));
    if (!page.results.length) listBody.append(h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No templates yet.")));
  }

  function row(t) {
    return h("tr", { dataset: { templateId: t.id } },
      h("td", { class: "title" }, t.name, t.archived ? h("span", { class: "muted" }, " (archived)") : null,
        t.description ? h("div", { class: "muted" }, t.description) : null),
      h("td", {}, t.task_type), h("td", {}, String(t.version)), h("td", {}, t.shared ? "yes" : "no"),
      h("td", {}, t.owner), h("td", {}, String(t.usage ? t.usage.usage_count : 0)), h("td", {}, when(t.updated_at)),
      h("td", { class: "actions" }, t.archived ? null : [
        h("button", { class: "use", onclick: () => ctx.navigate(`#/new?template=${t.id}`) }, "Create task"),
        h("button", { class: "revise", onclick: () => showForm(t) }, "Revise"),
        h("button", { class: "archive", onclick: () => archive(t) }, "Archive"),
      ]));
  }

  async function archive(t) {
    listError.textContent = "";
    try {
      await ctx.api.archiveTemplate(t.id);
      await load();
    } catch (error) {
      listError.textContent = `archive failed: ${error.message}`;
    }
  }

  function showForm(template) {
    const fields = new Map();
    const field = (name, label, input) => {
      const error = h("div", { class: "field-error", id: `template-error-${name}` });
      fields.set(name, { input, error });
      return h("div", { class: "field" }, h("label", { for: `template-${name}` }, label), input, error);
    };
    const json = (value) => (value === undefined || value === null ? "" : JSON.stringify(value, null, 2));
    const general = h("div", { class: "error", id: "template-form-error" });
    const form = h("form", { id: "template-form", onsubmit: (e) => { e.preventDefault(); save(); } },
      field("name", "Name", h("input", { id: "template-name", type: "text", value: template ? template.name : "" })),
      field("description", "Description", h("input", { id: "template-description", type: "text", value: template ? template.description : "" })),
      field("task_type", "Task type", h("select", { id: "template-task_type" },
        TYPES.map((t) => h("option", { value: t, selected: template ? template.task_type === t : false }, t)))),
      field("default_config", "Default config (JSON)", h("textarea", { id: "template-default_config", rows: "5" })),
      field("config_schema", "Config schema (JSON Schema)", h("textarea", { id: "template-config_schema", rows: "8" })),
      field("shared", "Shared with everyone", h("input", { id: "template-shared", type: "checkbox", checked: Boolean(template && template.shared) })),
      general,
      h("div", { class: "actions" },
        h("button", { class: "primary", type: "submit", id: "save-template" }, template ? `Save as version ${template.version + 1}` : "Create template"),
        h("button", { type: "button", onclick: () => replace(formBox) }, "Close")));
    fields.get("default_config").input.value = template ? json(template.default_config) : "{}";
    fields.get("config_schema").input.value = template ? json(template.config_schema) : EXAMPLE_SCHEMA;
    replace(formBox, h("h2", {}, template ? `Revise “${template.name}”` : "New template"), form);

    async function save() {
      general.textContent = "";
      for (const { input, error } of fields.values()) { error.textContent = ""; input.classList.remove("invalid"); }
      const body = {};
      const problems = [];
      for (const name of ["name", "description", "task_type"]) body[name] = fields.get(name).input.value.trim();
      body.shared = fields.get("shared").input.checked;
      for (const name of ["default_config", "config_schema"]) {
        const raw = fields.get(name).input.value.trim();
        if (!raw) continue;
        try { body[name] = JSON.parse(raw); } catch (e) { problems.push(`\`${name}\`: not valid JSON (${e.message})`); }
      }
      if (problems.length) return showErrors(problems);
      try {
        if (template) await ctx.api.reviseTemplate(template.id, body);
        else await ctx.api.createTemplate(body);
        replace(formBox);
        await load();
      } catch (error) {
        if (error.status === 400) showErrors(error.errors);
        else general.textContent = error.message;
      }
    }

    function showErrors(messages) {
      const rest = [];
      for (const message of messages) {
        const named = /`([A-Za-z_]+)[.`]/.exec(message);
        const target = named && fields.get(named[1]);
        if (target) {
          target.error.textContent += (target.error.textContent ? "\n" : "") + message;
          target.input.classList.add("invalid");
        } else rest.push(message);
      }
      general.textContent = rest.join("\n");
    }
  }

  await load();
}
