/**
 * Statistics: tasks by status and type, tasks per day, success rate, durations and tokens, and
 * template usage; charts by Chart.js (vendored, loaded by index.html as `window.Chart`).
 */

import { FINISHED } from "../client.js";
import { h, replace, table } from "../dom.js";

const STATUS_COLOURS = { pending: "#e0b43a", running: "#2f5fd0", completed: "#2e9a55",
                         failed: "#c8372d", cancelled: "#9aa1ad" };

export async function render(ctx, main) {
  const charts = [];
  const scope = h("input", { type: "checkbox", id: "scope-all" });
  const since = h("input", { type: "date", id: "since" });
  const body = h("div", { id: "stats-body" });
  const error = h("div", { class: "error" });
  main.append(h("section", {},
    h("h1", {}, "Statistics"),
    h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); load(); } },
      ctx.user.admin ? h("div", {}, h("label", { for: "scope-all" }, "Everyone's tasks"), scope) : null,
      h("div", {}, h("label", { for: "since" }, "Since"), since),
      h("button", { type: "submit" }, "Show")),
    error),
    body);

  function chart(kind, labels, values, { colours, label } = {}) {
    const canvas = h("canvas");
    const box = h("div", { class: "chart" }, canvas);
    if (window.Chart) {
      charts.push(new window.Chart(canvas, {
        type: kind,
        data: { labels, datasets: [{ label: label || "tasks", data: values,
                                     backgroundColor: colours || "#2f5fd0", borderColor: "#2f5fd0" }] },
        options: { animation: false, maintainAspectRatio: false,
                   plugins: { legend: { display: kind === "doughnut" } },
                   scales: kind === "doughnut" ? {} : { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      }));
    } else {
      box.append(table(labels.map((l, i) => [l, values[i]])));
    }
    return box;
  }

  async function load() {
    error.textContent = "";
    for (const c of charts.splice(0)) c.destroy();
    let stats;
    let popular = [];
    try {
      // Figures that reflect every update seen (min_position), not an older state.
      const query = { min_position: ctx.lastPosition };
      if (scope.checked) query.scope = "all";
      if (since.value) query.since = since.value;
      // Usage of every visible template, archived ones too (popular/ leaves those out).
      const usage = ctx.api.listTemplates(
        { ordering: "-usage", archived: "true", page_size: 20, min_position: ctx.lastPosition });
      [stats, popular] = await Promise.all([ctx.api.statistics(query), usage]);
      popular = popular.results.filter((t) => t.usage && t.usage.usage_count > 0);
    } catch (failure) {
      error.textContent = failure.message;
      return;
    }
    const statuses = Object.keys(stats.by_status);
    const rate = stats.success_rate === null || stats.success_rate === undefined
      ? "–" : `${Math.round(stats.success_rate * 1000) / 10}%`;
    const d = stats.duration || {};
    const seconds = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(2)} s`);
    replace(body,
      h("div", { class: "grid" },
        h("section", {}, h("h2", {}, "Tasks"), h("div", { class: "figure", id: "total" }, String(stats.total)),
          h("p", { class: "muted" }, `success rate ${rate}`)),
        h("section", {}, h("h2", {}, "Durations of completed tasks"), table([
          ["count", d.count ?? 0], ["average", seconds(d.average_seconds)],
          ["p50", seconds(d.p50_seconds)], ["p95", seconds(d.p95_seconds)]])),
        h("section", {}, h("h2", {}, "Tokens"), table(Object.entries(stats.tokens || {}))),
        costSection(stats.cost)),
      h("div", { class: "grid" },
        h("section", {}, h("h2", {}, "By status"),
          chart("doughnut", statuses, statuses.map((s) => stats.by_status[s]),
                { colours: statuses.map((s) => STATUS_COLOURS[s] || "#888") })),
        h("section", {}, h("h2", {}, "By type"),
          chart("bar", Object.keys(stats.by_type), Object.values(stats.by_type))),
        h("section", {}, h("h2", {}, "By priority"),
          chart("bar", Object.keys(stats.by_priority), Object.values(stats.by_priority))),
        h("section", {}, h("h2", {}, "Tasks per day"),
          chart("bar", stats.tasks_per_day.map((p) => p.date), stats.tasks_per_day.map((p) => p.count)))),
      costGroups(stats.cost),
      h("section", {}, h("h2", {}, "Template usage"),
        popular.length
          ? table(popular.map((t) => ({ name: t.archived ? `${t.name} (archived)` : t.name, type: t.task_type, version: t.version,
              used: t.usage.usage_count, "success rate": t.usage.success_rate,
              "average duration (s)": t.usage.average_duration_seconds,
              "average cost": t.usage.average_cost_usd == null ? "–" : `$${t.usage.average_cost_usd}`,
              "last used": t.usage.last_used_at })),
            ["name", "type", "version", "used", "success rate", "average duration (s)", "average cost", "last used"])
          : h("p", { class: "muted" }, "No template has been used yet.")));
  }

  await load();
  // Figures change when tasks are created or finish; a burst of them reloads once.
  let timer = null;
  const reload = () => {
    clearTimeout(timer);
    timer = setTimeout(load, 1000);
  };
  const unsubscribe = ctx.onUpdate((update) => {
    if (update.type === "created" || FINISHED.has(update.status)) reload();
  });
  ctx.onReconnect.add(reload);
  return () => {
    unsubscribe();
    clearTimeout(timer);
    ctx.onReconnect.delete(reload);
    for (const c of charts.splice(0)) c.destroy();
  };
}


/** The cost of the tasks in scope (docs/cost.md): the priced calls' sum, and what is unpriced. */
function costSection(cost) {
  if (!cost) return null;
  const total = cost.total;
  const unpriced = total.unpriced_calls
    ? `${total.unpriced_calls} call(s) without a price are not counted: at least this much`
    : "every call priced";
  return h("section", {}, h("h2", {}, "Cost"),
    h("div", { class: "figure", id: "total-cost" }, `$${total.cost_usd}`),
    h("p", { class: "muted" }, `${total.model_calls} model call(s) · ${unpriced}`));
}

/** Cost by user, task type, template and day, as tables. */
function costGroups(cost) {
  if (!cost) return null;
  const rows = (groups) => groups.map((g) => ({
    "": g.key, tasks: g.tasks, calls: g.model_calls, cost: `$${g.cost_usd}`,
    unpriced: g.unpriced_calls, prompt: g.prompt_tokens, completion: g.completion_tokens }));
  const columns = ["", "tasks", "calls", "cost", "unpriced", "prompt", "completion"];
  const part = (title, id, groups) => h("section", { id },
    h("h2", {}, title), groups.length ? table(rows(groups), columns) : h("p", { class: "muted" }, "None yet."));
  return h("div", { class: "grid" },
    part("Cost by user", "cost-by-user", cost.by_user),
    part("Cost by type", "cost-by-type", cost.by_type),
    part("Cost by template", "cost-by-template", cost.by_template),
    part("Cost by day", "cost-by-day", cost.by_day));
}
