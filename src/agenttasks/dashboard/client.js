/**
 * A small client for the agenttasks API, for any frontend (the dashboard uses it).
 *
 *   import { AgentTasksClient } from "/dashboard/client.js";
 *   const api = new AgentTasksClient({ token });
 *   const task = await api.createTask({ title: "Notes", task_type: "summary",
 *                                       task_config: { content: "..." } });
 *   const follower = api.follow((update) => console.log(update.status, update.progress),
 *                               { taskId: task.id, onState: (state) => console.log(state) });
 *   // later: follower.close();
 *
 * Errors from the API reject with an ApiError carrying the problem+json body
 * (`status`, `detail`, `errors`).
 *
 * `follow` opens an EventSource (the token goes in `?token=`, since EventSource cannot send
 * headers). When the connection drops it reconnects with `?after=<last position seen>`, so the
 * updates before and after the drop together hold every update exactly once, in order; any
 * update at or before the last position seen is dropped as a repeat.
 *
 * Reads after a live update: every update carries its `position`; pass it as `minPosition`
 * (`min_position` in a query) and the answer reflects that update (docs/api.md,
 * "Consistency"). A followed task's final update already arrives once its queries show it.
 */

export const FINISHED = new Set(["completed", "failed", "cancelled"]);
const BASE = "/api/v1/utils";
const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000];

/** An error answer of the API: `status`, `detail`, and `errors` (a list of reasons). */
export class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && (body.detail || body.title)) || `HTTP ${status}`;
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.errors = (body && Array.isArray(body.errors) ? body.errors : null) || [detail];
    this.body = body;
  }
}

/** The API, for one token. */
export class AgentTasksClient {
  /** `baseUrl`: the API's origin ("" = this page's); `token`: a JWT. */
  constructor({ baseUrl = "", token = null } = {}) {
    this.baseUrl = baseUrl;
    this.token = token;
  }

  /** Sends one request; resolves with the JSON answer (null for 204), rejects with ApiError. */
  async request(method, path, { body, query, headers } = {}) {
    const url = new URL(this.baseUrl + BASE + path, window.location.href);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    }
    const init = { method, headers: { Accept: "application/json", ...(headers || {}) } };
    if (this.token) init.headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 204) return null;
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { detail: text };
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  // Tasks
  /** Creates a task; `idempotencyKey` makes a repeated call return the first task. */
  createTask(task, { idempotencyKey } = {}) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.request("POST", "/ai-tasks/", { body: task, headers });
  }
  /** A page of tasks: {count, next, previous, results}; filters as in docs/api.md. */
  listTasks(filters = {}) {
    return this.request("GET", "/ai-tasks/", { query: filters });
  }
  /** One task; `minPosition`: answered once it reflects that position. */
  getTask(id, { minPosition } = {}) {
    return this.request("GET", `/ai-tasks/${encodeURIComponent(id)}/`, {
      query: { min_position: minPosition },
    });
  }
  cancelTask(id, reason) {
    const body = reason ? { reason } : undefined;
    return this.request("POST", `/ai-tasks/${encodeURIComponent(id)}/cancel/`, { body });
  }
  retryTask(id) {
    return this.request("POST", `/ai-tasks/${encodeURIComponent(id)}/retry/`);
  }
  /** The task's update history, oldest first (after `after`, if given), one page. */
  taskUpdates(id, after, { minPosition, page, pageSize } = {}) {
    return this.request("GET", `/ai-tasks/${encodeURIComponent(id)}/updates/`, {
      query: { after, min_position: minPosition, page, page_size: pageSize },
    });
  }
  /** The task's stored events, the audit trail: one page ({count, next, previous, results}). */
  taskEvents(id, { page, pageSize } = {}) {
    return this.request("GET", `/ai-tasks/${encodeURIComponent(id)}/events/`, {
      query: { page, page_size: pageSize },
    });
  }
  /** {valid, errors}: whether a config would be accepted (with a template, as create_task). */
  validateTaskConfig(taskType, taskConfig, templateId) {
    const body = { task_type: taskType, task_config: taskConfig };
    if (templateId) body.template_id = templateId;
    return this.request("POST", "/validate-task-config/", { body });
  }
  /** Figures over the user's tasks; `{scope: "all"}` for an admin's view of everyone's. */
  statistics(query = {}) {
    return this.request("GET", "/task-statistics/", { query });
  }

  // Operations (admins)
  /** The workers, the backlog per type and priority, the oldest pending task's age. */
  workers() {
    return this.request("GET", "/workers/");
  }

  // Templates
  listTemplates(filters = {}) {
    return this.request("GET", "/ai-task-templates/", { query: filters });
  }
  popularTemplates(limit = 10) {
    return this.request("GET", "/ai-task-templates/popular/", { query: { limit } });
  }
  getTemplate(id) {
    return this.request("GET", `/ai-task-templates/${encodeURIComponent(id)}/`);
  }
  createTemplate(template) {
    return this.request("POST", "/ai-task-templates/", { body: template });
  }
  reviseTemplate(id, changes) {
    return this.request("PUT", `/ai-task-templates/${encodeURIComponent(id)}/`, { body: changes });
  }
  archiveTemplate(id) {
    return this.request("DELETE", `/ai-task-templates/${encodeURIComponent(id)}/`);
  }
  createTaskFromTemplate(id, overrides = {}, { idempotencyKey } = {}) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.request("POST", `/ai-task-templates/${encodeURIComponent(id)}/create_task/`, {
      body: overrides,
      headers,
    });
  }

  /**
   * Follows live updates: one task's (`taskId`) or all of the user's tasks'.
   *
   * `onUpdate(update)` gets each update once, in order. `onState(state)` hears "connecting",
   * "live", "reconnecting" and "ended" (a followed task finished; its stream is closed).
   * `after`: start after this position (a task's stream otherwise starts with its history; the
   * all-tasks stream starts live). Returns {close(), get lastId()}.
   */
  follow(onUpdate, { taskId = null, after = null, onState = () => {} } = {}) {
    let lastId = after;
    let source = null;
    let attempt = 0;
    let timer = null;
    let closed = false;
    const path = taskId ? `/tasks/${encodeURIComponent(taskId)}/stream/` : "/tasks/stream/";

    const connect = () => {
      if (closed) return;
      const url = new URL(this.baseUrl + BASE + path, window.location.href);
      if (this.token) url.searchParams.set("token", this.token);
      if (lastId !== null && lastId !== undefined) url.searchParams.set("after", String(lastId));
      onState(attempt === 0 ? "connecting" : "reconnecting");
      source = new EventSource(url);
      source.onopen = () => {
        attempt = 0;
        onState("live");
      };
      source.onmessage = (message) => {
        const position = Number(message.lastEventId);
        if (lastId !== null && lastId !== undefined && position <= lastId) return; // a repeat
        lastId = position;
        let update;
        try {
          update = JSON.parse(message.data);
        } catch {
          return;
        }
        onUpdate(update);
        if (taskId && FINISHED.has(update.status)) {
          // The server ends a finished task's stream; without close() EventSource would
          // reconnect and wait for a retry.
          stop("ended");
        }
      };
      source.addEventListener("resync", (message) => {
        // More history than the server replays (docs/api.md, "Resync"): what came before is
        // in the query API, which a page reloads when the stream opens; go on after it.
        lastId = Number(message.lastEventId);
      });
      source.onerror = () => {
        if (closed) return;
        // Reconnect ourselves, with ?after=, rather than leave it to EventSource: it gives up
        // for good on some failures (a 502 from a proxy while the API restarts).
        source.close();
        onState("reconnecting");
        const delay = RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)];
        attempt += 1;
        timer = setTimeout(connect, delay);
      };
    };

    const stop = (state) => {
      closed = true;
      clearTimeout(timer);
      if (source) source.close();
      if (state) onState(state);
    };

    connect();
    return {
      close: () => stop(null),
      get lastId() {
        return lastId;
      },
    };
  }
}

/** Puts together the whole text of streamed partial results (`partial` {offset, text}). */
export class PartialText {
  constructor() {
    this.text = "";
  }
  /** Applies one update; true when it added text. Pieces arrive in order; a new attempt restarts. */
  add(update) {
    // A result update carries its piece flat in `partial` (docs/events.md); a server from
    // before that field had it only nested, at update.data.data.partial.
    const fields = update && update.data;
    const nested = fields && fields.data && fields.data.partial;
    const partial = update && update.partial !== undefined ? update.partial : nested;
    if (!partial || typeof partial.text !== "string") return false;
    if (partial.offset === 0) this.text = "";
    if (partial.offset !== this.text.length) {
      // A piece that repeats text already here (a resumed stream) is cut to what is new.
      if (partial.offset + partial.text.length <= this.text.length) return false;
      this.text = this.text.slice(0, partial.offset);
    }
    this.text += partial.text;
    return true;
  }
}
