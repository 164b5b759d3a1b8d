// obstop's page: clusters, tasks, and one task's DAG, live from the controller's own API (same origin,
// the same HTTP Basic login). No framework, no CDN: everything here ships in the wheel. Text from the
// API is only ever set as textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const NODE_W = 170, NODE_H = 50, WAIT_W = 26, COL_GAP = 30, ROW_GAP = 10, PAD = 16, HEAD = 18;
const state = { me: null, clusters: [], tasks: [], task: null, taskId: null, subId: null, plan: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const badge = (status, prefix = "s") => el("span", { class: `badge ${prefix}-${status} s-${status}` }, status);
const can = (role) => state.me !== null && state.me.roles.includes(role);

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let answer;
  try { answer = await r.json(); } catch { throw new Error(`${method} ${path}: HTTP ${r.status}`); }
  if (!answer.successful) {
    const e = answer.error || {};
    throw new Error(`${e.message || "refused"} (code ${e.code}, HTTP ${r.status})`);
  }
  return answer.data;
}

function showError(err) {
  const box = $("error");
  if (err) { box.textContent = String(err.message || err); box.hidden = false; } else { box.hidden = true; }
}

function confirmThen(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    try { await action(); showError(null); } catch (err) { showError(err); }
    refresh();
  };
  dialog.returnValue = "";
  dialog.showModal();
}

// --- time ---------------------------------------------------------------------------------------

function took(start, finish) {
  if (!start) return "";
  const ms = (finish ? Date.parse(finish) : Date.now()) - Date.parse(start);
  return ms < 10000 ? `${Math.max(0, ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

// --- clusters -----------------------------------------------------------------------------------

function renderClusters() {
  const box = $("clusters");
  box.replaceChildren();
  for (const c of state.clusters) {
    const actions = el("div", { class: "actions" });
    if (can("CLUSTER_MANAGER")) {
      actions.append(
        el("button", { onclick: () => showPlan(c, "stop") }, "Plan stop"),
        el("button", { class: "danger", "data-action": "stop", onclick: () => operate(c, "stop") }, "Stop"),
        el("button", { onclick: () => showPlan(c, "start") }, "Plan start"),
        el("button", { "data-action": "start", onclick: () => operate(c, "start") }, "Start"),
      );
    }
    const zones = c.zones.map((z) =>
      el("div", { class: "zone" },
        el("div", { class: "zname" }, z.name, badge(z.status)),
        ...z.servers.map((s) =>
          el("div", { class: "server", "data-server": s.id },
            el("span", { class: "addr" }, `${s.ip}:${s.svrPort}`), el("span", {}, s.hostName), badge(s.status)))));
    box.append(el("div", { class: "cluster", "data-cluster": c.id },
      el("div", { class: "title" }, `${c.name}`, el("span", { class: "meta" }, `#${c.id}`), badge(c.status)),
      actions, ...zones));
  }
}

function operate(cluster, verb) {
  const what = verb === "stop" ? "Stop OB cluster" : "Start OB cluster";
  const servers = cluster.zones.reduce((n, z) => n + z.servers.length, 0);
  confirmThen(`${what} ${cluster.name}: ${verb} ${servers} observer(s)?`, async () => {
    const task = await api("POST", `/api/v2/ob/clusters/${cluster.id}/${verb}`);
    state.plan = null;
    renderPlan();
    choose(task.id);
  });
}

async function showPlan(cluster, verb) {
  try {
    state.plan = await api("POST", `/api/v2/ob/clusters/${cluster.id}/${verb}?dryRun=true`);
    state.plan.verb = verb;
    renderPlan();
    showError(null);
  } catch (err) { showError(err); }
}

function renderPlan() {
  const box = $("plan");
  const p = state.plan;
  if (!p) { box.hidden = true; return; }
  const rows = p.servers.map((s) => el("tr", {},
    el("td", {}, s.id), el("td", {}, s.zone), el("td", {}, s.host), el("td", {}, s.observed),
    el("td", {}, s.action), el("td", { class: "blocker" }, s.blockers.join("; "))));
  const cluster = state.clusters.find((c) => c.id === p.cluster.id);
  box.replaceChildren(
    el("div", {},
      el("span", { class: `verdict ${p.executable ? "ok" : "no"}` },
        `Plan · ${p.operation} · ${p.cluster.name}: ${p.executable ? "would run" : "BLOCKED"}`), " ",
      p.executable && cluster ? el("button", { class: "danger", onclick: () => operate(cluster, p.verb) },
        p.verb === "stop" ? "Stop now" : "Start now") : null,
      el("button", { onclick: () => { state.plan = null; renderPlan(); } }, "Close")),
    el("table", {}, el("thead", {}, el("tr", {}, ...["server", "zone", "host", "observed", "would", "blocked by"]
      .map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)),
    ...p.blockers.filter((b) => !b.startsWith("server ")).map((b) => el("div", { class: "blocker" }, b)),
    ...p.notes.map((n) => el("div", { class: "meta" }, n)),
    el("div", { class: "meta" }, `${p.tasks.length} subtasks; nothing was done.`));
  box.hidden = false;
}

// --- tasks --------------------------------------------------------------------------------------

function renderTasks() {
  const body = $("tasks").tBodies[0];
  body.replaceChildren(...state.tasks.map((t) =>
    el("tr", { class: t.id === state.taskId ? "chosen" : "", "data-task": t.id, onclick: () => choose(t.id) },
      el("td", {}, t.id), el("td", {}, t.name), el("td", {}, t.cluster.name || t.cluster.id),
      el("td", {}, badge(t.status)), el("td", {}, clock(t.startTime)), el("td", {}, took(t.startTime, t.finishTime)))));
}

function choose(taskId) {
  state.taskId = taskId;
  state.subId = null;
  $("subtask").hidden = true;
  refreshTask();
}

function target(sub) {
  const server = /server_id=(\d+)/.exec(sub.context || "");
  const zone = /zone_name=([^,}]+)/.exec(sub.context || "");
  if (server) return `server ${server[1]}${zone ? " · " + zone[1] : ""}`;
  return zone ? zone[1] : "";
}

function renderTaskHead() {
  const t = state.task;
  const head = $("task-head");
  if (!t) return;
  const actions = el("div", { class: "actions" });
  if (can("TASK_MANAGER") && t.status === "FAILED") {
    if (t.operation !== "ROLLBACK") {
      actions.append(el("button", { onclick: () => confirmThen(`Retry every FAILED subtask of task ${t.id}?`,
        () => api("POST", `/api/v2/tasks/instances/${t.id}/retry`)) }, "Retry"));
    }
    if (!t.prohibitRollback) {
      actions.append(el("button", { class: "danger", onclick: () => confirmThen(
        `Roll task ${t.id} back? Observers it stopped are started again, statuses go back.`,
        () => api("POST", `/api/v2/tasks/instances/${t.id}/rollback`)) }, "Roll back"));
    }
  }
  head.replaceChildren(
    el("span", { class: "name", id: "task-name" }, `#${t.id} ${t.name}`),
    el("span", { id: "task-status", class: `badge task-status s-${t.status}` }, t.status),
    el("span", { class: "meta" }, `${t.cluster.name} · ${t.operation} · by ${t.creator.name} · ${took(t.startTime, t.finishTime)}`),
    actions);
}

// The seed's graph: stages left to right (a node's stage is one more than its furthest upstream), the
// fan-out of each stage stacked, edges from each upstream, colour by status, durations in the nodes.
function renderDag() {
  const t = state.task;
  const box = $("dag");
  if (!t) return;
  const subs = t.tasks;
  const byId = new Map(subs.map((s) => [s.id, s]));
  const stage = new Map();
  const stageOf = (s) => {
    if (!stage.has(s.id)) stage.set(s.id, s.upstreams.length === 0 ? 0
      : 1 + Math.max(...s.upstreams.map((u) => stageOf(byId.get(u)))));
    return stage.get(s.id);
  };
  const columns = [];
  for (const s of subs) (columns[stageOf(s)] ||= []).push(s);
  const pos = new Map();
  const tallest = Math.max(...columns.map((c) => c.length));
  const height = PAD * 2 + HEAD + tallest * (NODE_H + ROW_GAP);
  // a Wait node only joins a stage: drawn as a small dot, so the whole DAG fits a screen more often
  const isWait = (s) => s.name === "Wait node";
  const colW = columns.map((col) => (col.every(isWait) ? WAIT_W : NODE_W));
  const colX = [];
  colW.reduce((x, w, i) => { colX[i] = x; return x + w + COL_GAP; }, PAD);
  columns.forEach((col, i) => {
    const top = PAD + HEAD + ((tallest - col.length) * (NODE_H + ROW_GAP)) / 2;
    col.forEach((s, j) => pos.set(s.id, { x: colX[i], y: top + j * (NODE_H + ROW_GAP), w: colW[i] }));
  });
  const width = colX[columns.length - 1] + colW[columns.length - 1] + PAD;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "dag-svg" });
  let shown = 0;
  columns.forEach((col, i) => {
    if (colW[i] === WAIT_W) return;
    const label = svg("text", { x: colX[i], y: PAD + 6, class: "stage" });
    label.textContent = `stage ${++shown}${col.length > 1 ? ` · ×${col.length}` : ""}`;
    root.append(label);
  });
  for (const s of subs) {
    const to = pos.get(s.id);
    for (const u of s.upstreams) {
      const from = pos.get(u);
      const x1 = from.x + from.w, y1 = from.y + NODE_H / 2, x2 = to.x, y2 = to.y + NODE_H / 2, mid = (x1 + x2) / 2;
      root.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
    }
  }
  for (const s of subs) {
    const p = pos.get(s.id);
    const g = svg("g", {
      class: `node st-${s.status}${s.id === state.subId ? " chosen" : ""}${p.w === WAIT_W ? " wait" : ""}`,
      transform: `translate(${p.x},${p.y})`, "data-subtask": s.id, "data-name": s.name, "data-status": s.status,
    });
    if (p.w === WAIT_W) {
      g.append(svg("rect", { x: 0, y: NODE_H / 2 - WAIT_W / 2, width: WAIT_W, height: WAIT_W, rx: WAIT_W / 2 }));
    } else {
      g.append(svg("rect", { width: NODE_W, height: NODE_H }));
      const lines = [[s.name, "name"], [target(s), ""], [`${s.status}${s.operation !== "EXECUTE" ? " · " + s.operation : ""}  ${took(s.startTime, s.finishTime)}`, ""]];
      lines.forEach(([text, cls], k) => {
        const node = svg("text", { x: 8, y: 15 + k * 14, class: cls });
        node.textContent = text.length > 27 ? text.slice(0, 26) + "…" : text;
        g.append(node);
      });
    }
    const title = svg("title");
    title.textContent = `${s.name} (${s.id})${target(s) ? " · " + target(s) : ""} · ${s.status} · ${took(s.startTime, s.finishTime)}`;
    g.append(title);
    g.addEventListener("click", () => { state.subId = s.id; renderDag(); refreshLog(); });
    root.append(g);
  }
  box.replaceChildren(root);
}

function renderSubtaskHead(sub) {
  const t = state.task;
  const actions = el("div", { class: "actions" });
  const op = (verb, label, danger) => el("button", { class: danger ? "danger" : "", onclick: () => confirmThen(
    `${label} subtask ${sub.id} (${sub.name}${target(sub) ? ", " + target(sub) : ""}) of task ${t.id}?`,
    () => api("POST", `/api/v2/tasks/instances/${t.id}/subtasks/${sub.id}/${verb}`)) }, label);
  if (can("TASK_MANAGER")) {
    if (sub.status === "FAILED" && sub.operation !== "ROLLBACK") actions.append(op("retry", "Retry"));
    if (sub.status === "FAILED") actions.append(op("skip", "Skip"));
    if (sub.status === "RUNNING") actions.append(op("cancel", "Cancel", true));
  }
  $("subtask-head").replaceChildren(
    el("strong", {}, `${sub.name}`), el("span", { class: "meta" }, `#${sub.id} ${target(sub)}`),
    badge(sub.status), el("span", { class: "meta" }, `run ${sub.runTime} · ${took(sub.startTime, sub.finishTime)}`),
    actions);
}

// --- refresh ------------------------------------------------------------------------------------

async function refreshLog() {
  const t = state.task;
  const sub = t && t.tasks.find((s) => s.id === state.subId);
  if (!sub) return;
  renderSubtaskHead(sub);
  $("subtask").hidden = false;
  try {
    const data = await api("GET", `/api/v2/tasks/instances/${t.id}/subtasks/${sub.id}/log`);
    $("log").textContent = data.log || "(nothing logged yet: the subtask has not run)";
  } catch (err) { showError(err); }
}

async function refreshTask() {
  if (state.taskId === null) return;
  try {
    state.task = await api("GET", `/api/v2/tasks/instances/${state.taskId}`);
    renderTaskHead();
    renderDag();
    renderTasks();
    if (state.subId !== null) await refreshLog();
  } catch (err) { showError(err); }
}

async function refresh() {
  try {
    const [clusters, tasks] = await Promise.all([
      api("GET", "/api/v2/ob/clusters"),
      api("GET", "/api/v2/tasks/instances?size=15&sort=id,desc"),
    ]);
    state.clusters = clusters.contents;
    state.tasks = tasks.contents;
    renderClusters();
    renderTasks();
    $("live").classList.add("on");
  } catch (err) {
    $("live").classList.remove("on");
    showError(err);
  }
  await refreshTask();
}

async function main() {
  try {
    state.me = await api("GET", "/ui/me");
    $("me").textContent = `${state.me.name} · ${state.me.roles.join(", ")}`;
  } catch (err) { showError(err); }
  await refresh();
  const loop = async () => { await refresh(); setTimeout(loop, POLL_MS); };
  setTimeout(loop, POLL_MS);
}

main();
