/**
 * The task list: filters, search and paging in the hash (#/tasks?status=running&page=2), live
 * status and progress from the all-tasks stream, cancel and retry per row, and for admins a
 * selection to cancel or retry many at once.
 */

import { FINISHED } from "../client.js";
import { costText, h, progressBar, replace, statusBadge, when } from "../dom.js";

const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
const TYPES = ["summary", "research", "content_generation", "data_analysis", "custom"];
const PRIORITIES = ["low", "normal", "high", "urgent"];
const FILTERS = ["status", "task_type", "priority", "search", "page", "page_size"];

export async function render(ctx, main, query) {
  const params = new URLSearchParams(query || "");
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  filters.page = Number(filters.page) || 1;
  filters.page_size = Number(filters.page_size) || 20;
  const rows = new Map(); // task id -> {task, row}
  const arriving = new Set(); // per reload on its way: the updates that came meanwhile
  const selected = new Set();

  const go = (changes) => {
    const next = { ...filters, ...changes };
    const hashQuery = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v && !(k === "page" && v === 1)) hashQuery.set(k, v);
    if (next.page_size === 20) hashQuery.delete("page_size");
    const text = hashQuery.toString();
    ctx.navigate(text ? `#/tasks?${text}` : "#/tasks");
  };
  const select = (name, values, label) =>
    h("div", {},
      h("label", { for: `filter-${name}` }, label),
      h("select", { id: `filter-${name}`, onchange: (e) => go({ [name]: e.target.value, page: 1 }) },
        h("option", { value: "" }, "any"),
        values.map((v) => h("option", { value: v, selected: filters[name] === v }, v))));
  const search = h("input", { type: "search", id: "filter-search", value: filters.search,
                              placeholder: "title contains ..." });
  const filterBar = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); go({ search: search.value.trim(), page: 1 }); } },
    select("status", STATUSES, "Status"),
    select("task_type", TYPES, "Type"),
    select("priority", PRIORITIES, "Priority"),
    h("div", {}, h("label", { for: "filter-search" }, "Search"), search),
    h("button", { type: "submit", id: "filters-submit" }, "Search"));

  const message = h("div", { class: "error", id: "list-message" });
  const body = h("tbody", { id: "task-rows" });
  const paging = h("div", { class: "paging" });
  const bulk = ctx.user.admin
    ? h("div", { class: "actions", id: "bulk" },
        h("button", { id: "bulk-cancel", onclick: () => bulkAction("cancel") }, "Cancel selected"),
        h("button", { id: "bulk-retry", onclick: () => bulkAction("retry") }, "Retry selected"),
        h("span", { class: "muted", id: "bulk-count" }, "0 selected"))
    : null;
  const selectAll = ctx.user.admin
    ? h("input", { type: "checkbox", title: "select all on this page", onchange: (e) => {
        for (const [id, entry] of rows) {
          entry.checkbox.checked = e.target.checked;
          if (e.target.checked) selected.add(id); else selected.delete(id);
        }
        showSelected();
      } })
    : null;

  main.append(
    h("section", {},
      h("h1", {}, "Tasks"),
      filterBar,
      bulk,
      message,
      h("table", { id: "tasks" },
        h("thead", {}, h("tr", {},
          ctx.user.admin ? h("th", {}, selectAll) : null,
          ["Title", "Type", "Priority", "Status", "Progress", "Cost", "Created", ""].map((c) => h("th", {}, c)))),
        body),
      paging),
  );

  function showSelected() {
    if (bulk) bulk.querySelector("#bulk-count").textContent = `${selected.size} selected`;
  }

  async function act(id, action) {
    message.textContent = "";
    try {
      const task = action === "cancel" ? await ctx.api.cancelTask(id) : await ctx.api.retryTask(id);
      patch(task);
    } catch (error) {
      message.textContent = `${action} failed: ${error.message}`;
    }
  }

  async function bulkAction(action) {
    const ids = [...selected];
    const outcomes = await Promise.allSettled(
      ids.map((id) => (action === "cancel" ? ctx.api.cancelTask(id) : ctx.api.retryTask(id))));
    const refused = [];
    outcomes.forEach((outcome, i) => {
      if (outcome.status === "fulfilled") patch(outcome.value);
      else refused.push(`${rows.get(ids[i])?.task.title ?? ids[i]}: ${outcome.reason.message}`);
    });
    const done = outcomes.length - refused.length;
    message.textContent = `${action}: ${done} of ${outcomes.length} done` +
      (refused.length ? `\n${refused.join("\n")}` : "");
  }

  function actionsFor(task) {
    const id = task.id;
    return [
      FINISHED.has(task.status) ? null
        : h("button", { class: "cancel", onclick: () => act(id, "cancel") }, "Cancel"),
      task.status === "failed" || task.status === "cancelled"
        ? h("button", { class: "retry", onclick: () => act(id, "retry") }, "Retry") : null,
    ];
  }

  function rowFor(task) {
    const checkbox = ctx.user.admin
      ? h("input", { type: "checkbox", class: "select", onchange: (e) => {
          if (e.target.checked) selected.add(task.id); else selected.delete(task.id);
          showSelected();
        } })
      : null;
    const cells = {
      status: h("td", { class: "status-cell" }, statusBadge(task.status)),
      progress: h("td", { class: "progress-cell" }, progressBar(task.progress), ` ${task.progress}%`),
      actions: h("td", { class: "actions" }, actionsFor(task)),
      cost: h("td", { class: "cost-cell" }, costText(task)),
    };
    const row = h("tr", { dataset: { taskId: task.id } },
      checkbox ? h("td", {}, checkbox) : null,
      h("td", { class: "title" }, h("a", { href: `#/task/${task.id}` }, task.title)),
      h("td", {}, task.task_type),
      h("td", {}, task.priority),
      cells.status, cells.progress, cells.cost,
      h("td", {}, when(task.created_at)),
      cells.actions);
    return { task, row, cells, checkbox };
  }

  /** Shows a task's new status and progress (from an answer or a live update). */
  function patch(change) {
    const id = change.id || change.task_id;
    const entry = rows.get(id);
    if (!entry) return false;
    entry.task = { ...entry.task, status: change.status, progress: change.progress };
    replace(entry.cells.status, statusBadge(change.status));
    replace(entry.cells.progress, progressBar(change.progress), ` ${change.progress}%`);
    replace(entry.cells.actions, actionsFor(entry.task));
    // The read model sums the cost exactly; a finished task's is read once, from there.
    if (change.position && FINISHED.has(change.status)) {
      ctx.api.getTask(id, { minPosition: change.position }).then((fresh) => {
        entry.task = { ...entry.task, cost_usd: fresh.cost_usd, model_calls: fresh.model_calls,
                       unpriced_calls: fresh.unpriced_calls };
        replace(entry.cells.cost, costText(entry.task));
      }).catch(() => {});
    }
    return true;
  }

  async function load() {
    const query = { ordering: "-created_at", min_position: ctx.lastPosition };
    for (const k of FILTERS) if (filters[k]) query[k] = filters[k];
    // The answer reflects every update seen so far (min_position); those arriving meanwhile
    // may be in it or not, so they are applied again on top, in order.
    const late = [];
    arriving.add(late);
    let page;
    try {
      page = await ctx.api.listTasks(query);
    } finally {
      arriving.delete(late);
    }
    rows.clear();
    replace(body);
    for (const task of page.results) {
      const entry = rowFor(task);
      rows.set(task.id, entry);
      body.append(entry.row);
      if (selected.has(task.id)) entry.checkbox.checked = true;
    }
    for (const update of late) patch(update);
    if (!page.results.length) {
      body.append(h("tr", {}, h("td", { colspan: "9", class: "muted" }, "No tasks match.")));
    }
    const pages = Math.max(1, Math.ceil(page.count / filters.page_size));
    replace(paging,
      h("button", { id: "prev", disabled: !page.previous, onclick: () => go({ page: filters.page - 1 }) }, "‹ Previous"),
      h("span", { id: "page-info" }, `page ${filters.page} of ${pages} · ${page.count} tasks`),
      h("button", { id: "next", disabled: !page.next, onclick: () => go({ page: filters.page + 1 }) }, "Next ›"));
  }

  // A task not on the page (a new one, or one whose change moves it into the filter) needs the
  // list read again; a burst of updates reads it once.
  let reloadTimer = null;
  const reloadSoon = () => {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => load().catch((e) => { message.textContent = e.message; }), 300);
  };
  const unsubscribe = ctx.onUpdate((update) => {
    for (const late of arriving) late.push(update);
    const known = patch(update);
    const filtered = filters.status || filters.task_type || filters.priority || filters.search;
    if ((!known && (update.type === "created" || filtered)) || (known && filters.status)) reloadSoon();
  });
  ctx.onReconnect.add(reloadSoon);

  await load();
  return () => {
    unsubscribe();
    ctx.onReconnect.delete(reloadSoon);
    clearTimeout(reloadTimer);
  };
}
