// The dashboard's client module, loaded from the API's origin and pointed at it by baseUrl.
const params = new URLSearchParams(location.hash.slice(1));
const API = params.get("api");
const text = (id, value) => { document.getElementById(id).textContent = String(value); };

async function main() {
  text("origin", location.origin);
  const { AgentTasksClient } = await import(`${API}/dashboard/client.js`);
  const api = new AgentTasksClient({ baseUrl: API, token: params.get("token") });
  const task = await api.createTask({
    title: `client.js from ${location.origin}`,
    task_type: "summary",
    task_config: { content: "Tidal power turns the tides into electricity. ".repeat(8) },
  });
  text("task-id", task.id);
  const states = [];
  let seen = 0;
  let last = null;
  await new Promise((resolve) => {
    api.follow((update) => { seen += 1; last = update; text("live-count", seen); }, {
      taskId: task.id,
      onState: (state) => {
        states.push(state);
        text("states", states.join(" "));
        if (state === "ended") resolve();
      },
    });
  });
  const [final, updates] = await Promise.all([
    api.getTask(task.id, { minPosition: last.position }),
    api.taskUpdates(task.id, undefined, { minPosition: last.position }),
  ]);
  text("final", final.status);
  text("stored-count", updates.count);
}

main().catch((error) => text("error", `${error.name}: ${error.message}`));
