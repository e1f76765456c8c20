// A task follower on another origin, written the way the guide's React example is: a state
// object, a render function of it, and effects that call the API with fetch, EventSource and
// WebSocket. Plain JS so the e2e test needs no build step.
//
// The fragment says what to do: #api=<service origin>&token=<JWT>[&follow=<task id>][&keep=1].
// Without `follow` the page creates a task and follows it; with it, it follows that task only.
// With `keep` the stream stays open after the final update, as a page that forgets to close()
// it: EventSource reconnects with Last-Event-ID and the stream waits for a retry.
// With `sneak=<task id>` it only sends the requests a browser sends without a preflight
// (`no-cors`: the page cannot read the answer, but the server acts on what it accepts).

const params = new URLSearchParams(location.hash.slice(1));
const API = params.get("api");
const TOKEN = params.get("token");
const FOLLOW = params.get("follow");
const KEEP = params.get("keep") === "1";
const SNEAK = params.get("sneak");
const BASE = `${API}/api/v1/utils`;
const FINAL = new Set(["completed", "failed", "cancelled"]);

const state = {
  taskId: "-", created: "-", writePosition: "-", stream: "-", live: [], final: "-", stored: "-",
  reconnects: 0, sneaked: "-", socket: "-", socketFinals: [], errors: [],
};

function setState(patch) {
  Object.assign(state, patch);
  render();
}

function render() {
  const text = (id, value) => { document.getElementById(id).textContent = String(value); };
  text("origin", location.origin);
  text("task-id", state.taskId);
  text("created", state.created);
  text("write-position", state.writePosition);
  text("stream", state.stream);
  text("live-count", state.live.length);
  text("reconnects", state.reconnects);
  text("sneaked", state.sneaked);
  text("final", state.final);
  text("stored-count", state.stored);
  text("socket", state.socket);
  const items = (id, values) => {
    document.getElementById(id).replaceChildren(...values.map((value) => {
      const item = document.createElement("li");
      item.textContent = value;
      return item;
    }));
  };
  items("timeline", state.live.map((u) => `${u.position} ${u.type} ${u.status} ${u.progress}%`));
  items("socket-finals", state.socketFinals);
  items("errors", state.errors);
}

function failed(step, error) {
  setState({errors: [...state.errors, `${step}: ${error}`]});
}

// Every call carries the token as a header: a cross-origin request the browser preflights.
async function call(path, options = {}) {
  const response = await fetch(`${BASE}${path}`, {
    ...options,
    headers: {Authorization: `Bearer ${TOKEN}`, ...(options.headers ?? {})},
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`${response.status} ${body.detail ?? body.title}`);
  return {body, headers: response.headers};
}

async function createTask() {
  const {body, headers} = await call("/ai-tasks/", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      title: `From ${location.origin}`,
      task_type: "summary",
      task_config: {content: "Solar panels turn sunlight into electricity. ".repeat(8)},
    }),
  });
  // Readable only if the API exposes it (Access-Control-Expose-Headers).
  setState({taskId: body.id, created: body.status, writePosition: headers.get("X-Position") ?? "not readable"});
  return body.id;
}

// EventSource cannot send headers: the token rides in the query. Resolves with the final update.
function follow(taskId) {
  return new Promise((resolve, reject) => {
    const url = `${BASE}/tasks/${taskId}/stream/?token=${encodeURIComponent(TOKEN)}`;
    const source = new EventSource(url);
    setState({stream: "connecting"});
    source.onopen = () => setState({stream: "open"});
    source.onmessage = (message) => {
      const update = JSON.parse(message.data);
      setState({live: [...state.live, update]});
      if (FINAL.has(update.status)) {
        if (!KEEP) {
          source.close(); // or it reconnects and waits for a retry
          setState({stream: "ended"});
        }
        resolve(update);
      }
    };
    source.onerror = () => {
      // CONNECTING: a dropped connection it retries by itself. CLOSED: refused for good.
      if (source.readyState === EventSource.CLOSED) {
        setState({stream: "refused"});
        reject(new Error(`closed after ${state.live.length} messages`));
      } else {
        setState({stream: "reconnecting", reconnects: state.reconnects + 1});
      }
    };
  });
}

// The WebSocket sends every update of the user's tasks; resolves once it is open or refused.
function openSocket() {
  return new Promise((resolve) => {
    const socket = new WebSocket(`${API.replace(/^http/, "ws")}/ws/tasks/?token=${encodeURIComponent(TOKEN)}`);
    let opened = false;
    socket.onopen = () => { opened = true; setState({socket: "open"}); resolve(); };
    socket.onmessage = (message) => {
      const update = JSON.parse(message.data);
      if (update.stream === "task" && FINAL.has(update.status)) {
        setState({socketFinals: [...state.socketFinals, `${update.task_id} ${update.status}`]});
      }
    };
    socket.onclose = (event) => {
      setState({socket: opened ? `closed ${event.code}` : `refused ${event.code}`});
      resolve();
    };
  });
}

// A cancel with the token in the query and no body, and a create as a text/plain "form".
async function sneak(taskId) {
  const query = `?token=${encodeURIComponent(TOKEN)}`;
  const body = JSON.stringify({title: "sneaked in", task_type: "summary", task_config: {content: "x"}});
  await Promise.all([
    fetch(`${BASE}/ai-tasks/${taskId}/cancel/${query}`, {method: "POST", mode: "no-cors"}),
    fetch(`${BASE}/ai-tasks/${query}`, {
      method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body,
    }),
  ]);
  setState({sneaked: "answered"}); // opaque answers: the server has answered both
}

async function main() {
  render();
  if (SNEAK) {
    await sneak(SNEAK).catch((error) => failed("sneak", error));
    return;
  }
  await openSocket();
  let taskId = FOLLOW;
  if (taskId) {
    setState({taskId});
  } else {
    try {
      taskId = await createTask();
    } catch (error) {
      failed("create", error);
      return;
    }
  }
  let position = null;
  try {
    position = (await follow(taskId)).position;
  } catch (error) {
    failed("stream", error);
  }
  // Whatever the stream showed, a read with its position reflects it (docs/api.md, Consistency).
  const since = position === null ? "" : `?min_position=${position}`;
  try {
    const [task, updates] = await Promise.all([
      call(`/ai-tasks/${taskId}/${since}`),
      call(`/ai-tasks/${taskId}/updates/${since}`),
    ]);
    setState({final: task.body.status, stored: updates.body.count});
  } catch (error) {
    failed("read", error);
  }
}

main();
