/**
 * The dashboard's shell: sign-in, hash routing, and one live stream of all the user's tasks
 * that pages listen to. Each page module exports `render(ctx, params)` and may return a
 * cleanup function, called when the page is left.
 */

import { AgentTasksClient } from "./client.js";
import { h, replace } from "./dom.js";
import * as createPage from "./pages/create.js";
import * as signinPage from "./pages/signin.js";
import * as statsPage from "./pages/stats.js";
import * as taskPage from "./pages/task.js";
import * as tasksPage from "./pages/tasks.js";
import * as templatesPage from "./pages/templates.js";
import * as workersPage from "./pages/workers.js";

const TOKEN_KEY = "agenttasks.token";
const main = document.getElementById("main");
const connection = document.getElementById("connection");
const who = document.getElementById("who");

const api = new AgentTasksClient({ token: takeTokenFromLink() || localStorage.getItem(TOKEN_KEY) });

/** Listeners of the all-tasks stream, and the state of each stream a page opened. */
const listeners = new Set();
const streamStates = new Map();
let liveFollower = null;
let expiryTimer = null;
const EXPIRED = "Your token has expired: sign in with a new one (`agenttasks token USER`).";
const LONGEST_TIMER_MS = 2 ** 31 - 1; // setTimeout's limit (about 24.8 days)

const ctx = {
  api,
  /** The signed-in user, read from the token (the server checks it; this is for display). */
  user: null,
  /** Calls `fn(update)` for every update of the user's tasks; returns an unsubscribe function. */
  onUpdate(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  /**
   * The position of the last update the all-tasks stream delivered (null before any): a
   * page's reads pass it as `min_position`, so they show at least what the stream showed.
   */
  get lastPosition() {
    return liveFollower ? liveFollower.lastId : null;
  },
  /** Also calls `fn()` when the all-tasks stream (re)connects, so a page can catch up. */
  onReconnect: new Set(),
  /** Shows a stream's state ("live", "reconnecting", ...) in the header. */
  setStreamState(name, state) {
    if (state === null || state === "ended") streamStates.delete(name);
    else streamStates.set(name, state);
    showConnection();
  },
  signIn(token) {
    localStorage.setItem(TOKEN_KEY, token);
    api.token = token;
    ctx.signedOutBecause = "";
    startSession();
    if (api.token) navigate("#/tasks");
  },
  /** Why the user was last signed out (shown on the sign-in page), or "". */
  signedOutBecause: "",
  signOut(reason = "") {
    localStorage.removeItem(TOKEN_KEY);
    api.token = null;
    clearTimeout(expiryTimer);
    stopLive();
    ctx.user = null;
    document.getElementById("nav-workers").hidden = true;
    ctx.signedOutBecause = reason;
    replace(who);
    navigate("#/signin");
  },
  navigate,
};

function takeTokenFromLink() {
  // `agenttasks up` prints http://host:port/#token=...; a ?token= query works as well.
  const hashMatch = /^#token=([^&]+)/.exec(window.location.hash);
  const query = new URLSearchParams(window.location.search).get("token");
  const token = hashMatch ? decodeURIComponent(hashMatch[1]) : query;
  if (!token) return null;
  localStorage.setItem(TOKEN_KEY, token);
  // Keep the token out of the address bar and the history.
  history.replaceState(null, "", window.location.pathname + "#/tasks");
  return token;
}

function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

function startSession() {
  const claims = claimsOf(api.token);
  // The server refuses an expired token, but an EventSource cannot see why it was refused and
  // would retry for ever: sign out when the token runs out instead.
  clearTimeout(expiryTimer);
  if (claims && typeof claims.exp === "number") {
    const left = claims.exp * 1000 - Date.now();
    if (left <= 0) {
      ctx.signOut(EXPIRED);
      return;
    }
    if (left < LONGEST_TIMER_MS) expiryTimer = setTimeout(() => ctx.signOut(EXPIRED), left);
  }
  ctx.user = claims
    ? { id: claims.sub, admin: Array.isArray(claims.roles) && claims.roles.includes("admin") }
    : { id: "?", admin: false };
  // The Workers view answers admins only: users do not see its link.
  document.getElementById("nav-workers").hidden = !ctx.user.admin;
  replace(
    who,
    `${ctx.user.id}${ctx.user.admin ? " (admin)" : ""} `,
    h("button", { onclick: () => ctx.signOut() }, "Sign out"),
  );
  stopLive();
  let opened = false;
  liveFollower = api.follow(
    (update) => {
      for (const fn of listeners) fn(update);
    },
    {
      onState: (state) => {
        ctx.setStreamState("all", state);
        if (state === "live") {
          if (opened) for (const fn of ctx.onReconnect) fn();
          opened = true;
        }
      },
    },
  );
}

function stopLive() {
  if (liveFollower) liveFollower.close();
  liveFollower = null;
  streamStates.clear();
  showConnection();
}

function showConnection() {
  const states = [...streamStates.values()];
  let text = "";
  let state = "";
  if (states.some((s) => s === "reconnecting")) {
    state = "reconnecting";
    text = "connection lost — reconnecting …";
  } else if (states.some((s) => s === "connecting")) {
    state = "connecting";
    text = "connecting …";
  } else if (states.length) {
    state = "live";
    text = "live";
  }
  connection.className = `connection ${state}`;
  connection.dataset.state = state;
  connection.textContent = text;
}

const routes = [
  [/^#\/signin$/, signinPage],
  [/^#\/tasks(?:\?(.*))?$/, tasksPage],
  [/^#\/new(?:\?(.*))?$/, createPage],
  [/^#\/task\/([0-9a-f-]+)$/, taskPage],
  [/^#\/templates$/, templatesPage],
  [/^#\/stats$/, statsPage],
  [/^#\/workers$/, workersPage],
];
let cleanup = null;

function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

async function route() {
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  let hash = window.location.hash || "#/tasks";
  if (!api.token && hash !== "#/signin") hash = "#/signin";
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  }
  for (const [pattern, page] of routes) {
    const match = pattern.exec(hash);
    if (!match) continue;
    replace(main);
    try {
      cleanup = await page.render(ctx, main, ...match.slice(1));
    } catch (error) {
      if (error && error.status === 401) {
        ctx.signOut();
        return;
      }
      replace(main, h("section", {}, h("p", { class: "error" }, String(error.message || error))));
    }
    return;
  }
  navigate("#/tasks");
}

window.addEventListener("hashchange", route);
if (api.token) startSession();
route();
