/**
 * One task: status and progress, the timeline of its updates, partial results growing while
 * they stream, the rendered result, and the raw stored events. Fed by the task's own stream,
 * which starts with its history; a retry follows on from the last position seen.
 */

import { FINISHED, PartialText } from "../client.js";
import { costText, h, jsonBlock, progressBar, replace, statusBadge, table, tokensText, when } from "../dom.js";
import { renderResult } from "../results.js";

export async function render(ctx, main, taskId) {
  let task = await ctx.api.getTask(taskId);
  const partial = new PartialText();
  const header = h("div", { id: "task-header" });
  const actions = h("div", { class: "actions", id: "task-actions" });
  const message = h("div", { class: "error", id: "task-message" });
  const details = h("div", { id: "task-details" });
  const partialBox = h("pre", { id: "partial" });
  const partialSection = h("section", { hidden: true }, h("h2", {}, "Partial result (streaming)"), partialBox);
  const result = h("div", { id: "result" });
  const resultSection = h("section", { hidden: true }, h("h2", {}, "Result"), result);
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const events = h("div", { id: "events" });
  const eventsSection = h("details", { id: "raw-events", ontoggle: (e) => e.target.open && loadEvents() },
    h("summary", {}, "Raw event history (audit)"), events);

  main.append(
    h("section", {}, header, actions, message, details),
    partialSection,
    resultSection,
    h("section", {}, h("h2", {}, "Timeline"), timeline),
    h("section", {}, eventsSection),
  );

  function showTask() {
    replace(header,
      h("h1", { id: "task-title" }, task.title),
      h("p", {}, statusBadge(task.status), " ", progressBar(task.progress),
        h("span", { id: "task-progress" }, ` ${task.progress}%`),
        h("span", { class: "muted" }, ` · ${task.task_type} · ${task.priority} · attempt ${task.attempt}`)));
    replace(actions,
      FINISHED.has(task.status) ? null : h("button", { id: "cancel", onclick: () => act("cancel") }, "Cancel"),
      ["failed", "cancelled"].includes(task.status)
        ? h("button", { id: "retry", onclick: () => act("retry") }, "Retry") : null);
    replace(details, table([
      ["Id", task.id],
      ["Created", `${when(task.created_at)} by ${task.created_by}`],
      ["Started", when(task.started_at)],
      ["Finished", when(task.completed_at)],
      ["Template", task.template_id || ""],
      ["Cost", h("span", { id: "task-cost" }, costText(task))],
      ["Model calls", `${task.model_calls ?? 0}`],
      ["Tokens", tokensText(task.tokens)],
      ["Error", task.error_message || ""],
    ]));
    const configBlock = h("details", {}, h("summary", {}, "Configuration"), jsonBlock(task.task_config));
    details.append(configBlock);
    if (task.status === "completed" && task.result_data) {
      replace(result, renderResult(task.task_type, task.result_data));
      resultSection.hidden = false;
      partialSection.hidden = true;
    } else {
      resultSection.hidden = true;
    }
  }

  async function act(action) {
    message.textContent = "";
    try {
      task = action === "cancel" ? await ctx.api.cancelTask(task.id) : await ctx.api.retryTask(task.id);
      showTask();
      if (action === "retry") follow(); // the stream ended with the task; follow the new attempt
    } catch (error) {
      message.textContent = `${action} failed: ${error.message}`;
    }
  }

  async function loadEvents() {
    try {
      const stored = await ctx.api.taskEvents(task.id, { pageSize: 1000 });
      const list = Array.isArray(stored) ? stored : stored.results || [];
      const rows = table(list.map((e) => ({ ...e, timestamp: when(e.timestamp) })),
        ["position", "version", "type", "timestamp", "data"]);
      // The events come in pages: say so rather than show the first page as the whole trail.
      const more = stored.next ? h("p", { class: "muted" }, `The first ${list.length} of ${stored.count} events.`) : null;
      replace(events, rows, more);
    } catch (error) {
      replace(events, h("p", { class: "error" }, error.message));
    }
  }

  function onUpdate(update) {
    timeline.append(h("li", { dataset: { position: update.position } },
      h("span", { class: "kind" }, update.type),
      h("span", { class: "muted" }, `${when(update.timestamp)} · ${update.progress}% · `),
      h("span", { class: update.update_type === "error" ? "error" : "" }, update.message || "")));
    if (partial.add(update)) {
      partialSection.hidden = false;
      partialBox.textContent = partial.text;
    }
    if (update.type === "started") partial.text = "";
    task = { ...task, status: update.status, progress: update.progress };
    if (update.type === "started") task.attempt = update.data.attempt ?? task.attempt;
    if (update.type === "completed") {
      // `data` holds the event's fields: the result is its `result_data`.
      task.result_data = update.data.result_data;
      task.completed_at = update.timestamp;
    }
    if (update.type === "failed") task.error_message = update.message;
    showTask();
    // A call's cost is summed by the read model (exact decimals): read it there, once a burst.
    if (update.type === "model_call" && !FINISHED.has(update.status)) costSoon(update.position);
    if (FINISHED.has(update.status)) {
      clearTimeout(costTimer); // the finished read below brings the final cost
      showFinished(update.position);
      if (eventsSection.open) loadEvents();
    }
  }

  let costTimer = null;
  function costSoon(position) {
    clearTimeout(costTimer);
    costTimer = setTimeout(() => {
      ctx.api.getTask(task.id, { minPosition: position }).then((fresh) => {
        task = { ...task, cost_usd: fresh.cost_usd, tokens: fresh.tokens,
                 model_calls: fresh.model_calls, unpriced_calls: fresh.unpriced_calls };
        showTask();
      }).catch(() => {}); // the next update or the finished read shows it
    }, 300);
  }

  /** Shows the finished task as stored (times, result): a read that reflects `position`. */
  function showFinished(position) {
    ctx.api.getTask(task.id, { minPosition: position }).then((fresh) => {
      task = fresh;
      showTask();
    }).catch((error) => {
      message.textContent = `could not read the finished task: ${error.message}`;
    });
  }

  let follower = null;
  function follow() {
    const after = follower ? follower.lastId : null;
    if (follower) follower.close();
    follower = ctx.api.follow(onUpdate, {
      taskId: task.id,
      after,
      onState: (state) => ctx.setStreamState(`task-${task.id}`, state),
    });
  }

  showTask();
  follow();
  return () => {
    clearTimeout(costTimer);
    follower.close();
    ctx.setStreamState(`task-${task.id}`, null);
  };
}
