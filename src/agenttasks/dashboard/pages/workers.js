/**
 * Workers (admins only): each worker process with its state, types, concurrency and running
 * attempts (from its heartbeats), the backlog per task type and priority (JetStream's counts),
 * and the oldest pending task's age; read from GET /utils/workers/ every few seconds.
 */

import { h, replace, table, when } from "../dom.js";

const REFRESH_MS = 3000;

export async function render(ctx, main) {
  if (!ctx.user.admin) {
    main.append(h("section", {}, h("h1", {}, "Workers"),
      h("p", { class: "error" }, "Only admins see the workers and queues.")));
    return null;
  }
  const summary = h("div", { id: "workers-summary", class: "grid" });
  const rows = h("tbody", { id: "worker-rows" });
  const backlog = h("div", { id: "backlog" });
  const message = h("div", { class: "error", id: "workers-message" });
  const asOf = h("p", { class: "muted", id: "workers-as-of" });
  main.append(
    h("section", {}, h("h1", {}, "Workers"), asOf, message, summary),
    h("section", {}, h("h2", {}, "Worker processes"),
      h("table", { id: "workers" },
        h("thead", {}, h("tr", {}, ["Worker", "State", "Types", "Running", "Last heartbeat", "Started"]
          .map((c) => h("th", {}, c)))),
        rows)),
    h("section", {}, h("h2", {}, "Backlog"),
      h("p", { class: "muted" }, "Pending: waiting in JetStream for a worker. In flight: taken by a worker (in its local queue or running)."),
      backlog));

  let stopped = false;
  let timer = null;

  async function load() {
    let view;
    try {
      view = await ctx.api.workers();
      message.textContent = "";
    } catch (failure) {
      if (failure && failure.status === 401) throw failure;
      message.textContent = `could not read the workers: ${failure.message}`;
      return;
    }
    if (stopped) return;
    asOf.textContent = `as of ${when(view.as_of)}; refreshed every ${REFRESH_MS / 1000} s`;
    const counts = view.counts || {};
    replace(summary,
      figure("alive", counts.alive ?? 0, "workers alive"),
      figure("lost", counts.lost ?? 0, "lost (no heartbeat)"),
      figure("pending", totalOf(view.backlog, "pending"), "tasks waiting for a worker"),
      figure("oldest", age(view.oldest_pending_age_seconds), "oldest pending task"));
    replace(rows, view.workers.map(workerRow));
    if (!view.workers.length) {
      rows.append(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No worker has reported yet.")));
    }
    if (view.truncated) {
      rows.append(h("tr", { id: "workers-truncated" }, h("td", { colspan: "6", class: "muted" },
        `Only the first ${view.limit} workers are listed (AGENTTASKS_WORKERS_LIST_MAX).`)));
    }
    replace(backlog, view.backlog === null
      ? h("p", { class: "error" }, view.backlog_error || "the backlog could not be read")
      : backlogTable(view.backlog));
  }

  function figure(id, value, label) {
    return h("section", {}, h("div", { class: "figure", id: `workers-${id}` }, String(value)),
      h("p", { class: "muted" }, label));
  }

  function workerRow(w) {
    return h("tr", { dataset: { workerId: w.id, state: w.state } },
      h("td", { class: "title" }, w.id, h("div", { class: "muted" }, `${w.host} · pid ${w.pid}`)),
      h("td", {}, h("span", { class: `status worker-${w.state}` }, w.state)),
      h("td", {}, w.task_types.join(", ")),
      h("td", { class: "running" }, `${w.running.length} of ${w.concurrency}`,
        w.running.map((r) => h("div", {},
          h("a", { href: `#/task/${r.task_id}`, class: "running-task" }, r.task_id),
          h("span", { class: "muted" }, ` attempt ${r.attempt}, since ${when(r.started_at)}`)))),
      h("td", {}, `${age(w.seconds_since_heartbeat)} ago`),
      h("td", {}, when(w.started_at)));
  }

  async function tick() {
    await load();
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  }

  await tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function backlogTable(queues) {
  // Only the queues that hold something, most urgent first within each type.
  const busy = queues.filter((q) => q.pending || q.in_flight);
  if (!busy.length) return h("p", { class: "muted", id: "backlog-empty" }, "Every queue is empty.");
  const shown = table(
    busy.map((q) => ({ Type: q.task_type, Priority: q.priority, Pending: q.pending, "In flight": q.in_flight })),
    ["Type", "Priority", "Pending", "In flight"]);
  shown.id = "backlog-table";
  return shown;
}

function totalOf(queues, key) {
  return queues ? queues.reduce((sum, q) => sum + (q[key] || 0), 0) : "–";
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}
