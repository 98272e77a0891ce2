// Taskforge console: a plain ES module, no framework, no build step.
// Credentials live in this page's memory (and this tab's sessionStorage, so
// that a reload keeps the session); never in lasting storage, a cookie or a URL.
// Every API call sends them in the Authorization header; streams are read
// with fetch, since the browser's event-source API cannot send headers. DOM text is always set
// with textContent: nothing the API returns is parsed as HTML.

const KEY = "taskforge.credential";
const STATUSES = ["pending", "running", "retrying", "completed", "failed", "cancelled"];
const PRIORITIES = ["critical", "high", "normal", "low"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
// The task list's filters by what made a task: a schedule, a trigger, a workflow.
const SOURCE_FILTERS = ["schedule_id", "trigger_id", "workflow_id"];

// freshSecret is a webhook trigger's secret from the answer that made it,
// until the trigger's page has shown it once.
const state = { token: null, me: null, types: null, cleanup: [], down: false, freshSecret: null };

// ---------- DOM helpers ----------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

function time(iso) {
  if (!iso) return h("span", { class: "muted", text: "—" });
  const d = new Date(iso);
  return h("time", { datetime: iso, title: d.toISOString().replace(".000Z", "Z") + " (UTC)", text: d.toLocaleString() });
}
function ms(v) {
  if (v === null || v === undefined) return "—";
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(1)} s`;
  return `${(v / 60000).toFixed(1)} min`;
}
function statusBadge(s) { return h("span", { class: `status status-${s}`, "data-status": s, text: s }); }
function pct(p) { return `${Math.round((p || 0) * 100)} %`; }

// ---------- roles ----------
const role = () => (state.me && state.me.role) || "viewer";
const canCreate = () => role() === "operator" || role() === "admin";
const isAdmin = () => role() === "admin";

// ---------- API ----------
class APIError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", signal: opts.signal, referrerPolicy: "no-referrer" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    apiDown();
    throw new APIError(0, { title: "The API is unreachable" });
  }
  apiUp();
  if (resp.status === 401 && state.token && !opts.signingIn) {
    signOut("Your credential was refused (expired or revoked). Sign in again.");
    throw new APIError(401, { title: "Unauthenticated" });
  }
  if (opts.raw) return resp;
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (!resp.ok) throw new APIError(resp.status, data);
  return data;
}

// stream reads a server-sent event stream with fetch, calling onEvent(type,
// data) per event, and reconnects with Last-Event-ID until the server ends it
// after a terminal state (onEnd) or the returned stop() is called.
function stream(path, onEvent, onEnd) {
  const ctl = new AbortController();
  let lastID = "";
  let stopped = false;
  const run = async () => {
    let backoff = 500;
    while (!stopped) {
      try {
        const headers = { Accept: "text/event-stream", Authorization: `Bearer ${state.token}` };
        if (lastID) headers["Last-Event-ID"] = lastID;
        const resp = await fetch(path, { headers, signal: ctl.signal, credentials: "omit", cache: "no-store" });
        if (resp.status === 401) { signOut("Your credential was refused. Sign in again."); return; }
        if (!resp.ok) {
          if (resp.status === 404 || resp.status === 400 || resp.status === 403) return;
          throw new Error(`stream: HTTP ${resp.status}`);
        }
        apiUp();
        backoff = 500;
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        let ev = { type: "message", data: [], id: null };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let nl;
          while ((nl = buf.search(/\r?\n/)) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + (buf[nl] === "\r" ? 2 : 1));
            if (line === "") {
              if (ev.id !== null) lastID = ev.id;
              if (ev.data.length) {
                let data = null;
                try { data = JSON.parse(ev.data.join("\n")); } catch { data = null; }
                if (data) onEvent(ev.type, data);
              }
              ev = { type: "message", data: [], id: null };
              continue;
            }
            if (line.startsWith(":")) continue;
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "event") ev.type = val;
            else if (field === "data") ev.data.push(val);
            else if (field === "id") ev.id = val;
          }
        }
        // The server ended the stream: after a terminal task it is done.
        if (onEnd && (await onEnd())) return;
      } catch (err) {
        if (stopped || err.name === "AbortError") return;
        apiDown();
      }
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  };
  run();
  const stop = () => { stopped = true; ctl.abort(); };
  state.cleanup.push(stop);
  return stop;
}

// ---------- API reachability banner ----------
let healthTimer = null;
function apiDown() {
  if (state.down) return;
  state.down = true;
  const b = $("#banner");
  b.textContent = "The API is unreachable. Retrying…";
  b.hidden = false;
  healthTimer = setInterval(async () => {
    try {
      const r = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
      if (r.ok) { apiUp(); route(); }
    } catch { /* still down */ }
  }, 2000);
}
function apiUp() {
  if (!state.down) return;
  state.down = false;
  clearInterval(healthTimer);
  $("#banner").hidden = true;
}

// ---------- confirmation dialog ----------
function confirmAction(text) {
  const d = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "yes"), { once: true });
    d.returnValue = "";
    d.showModal();
    $("#confirm-no").focus();
  });
}

// ---------- sign-in ----------
function setCredential(tok) {
  state.token = tok;
  try { if (tok) sessionStorage.setItem(KEY, tok); else sessionStorage.removeItem(KEY); } catch { /* storage off */ }
}

function signOut(message) {
  stopViews();
  setCredential(null);
  state.me = null;
  state.types = null;
  state.freshSecret = null;
  try { sessionStorage.clear(); } catch { /* storage off */ }
  $("#top").hidden = true;
  clear($("#nav"));
  $("#who").textContent = "";
  if (location.hash && location.hash !== "#/") history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

function showSignIn(message) {
  const main = clear($("#main"));
  const err = h("p", { id: "signin-error", class: "error", role: "alert", hidden: !message, text: message || "" });
  const input = h("input", { id: "signin-token", name: "token", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "signin-hint", spellcheck: "false" });
  const form = h("form", { class: "card signin", id: "signin-form", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", text: "Sign in to Taskforge" }),
    h("div", { class: "form-row" },
      h("label", { for: "signin-token", text: "API key or JWT" }), input,
      h("span", { id: "signin-hint", class: "hint muted", text: "Kept in this tab only; sent as a bearer token to this server." })),
    err,
    h("button", { id: "signin-submit", type: "submit", text: "Sign in" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const tok = input.value.trim();
    if (!tok) return;
    state.token = tok;
    try {
      state.me = await api("GET", "/api/v1/whoami", undefined, { signingIn: true });
      input.value = "";
      setCredential(tok);
      start();
    } catch (x) {
      state.token = null;
      err.hidden = false;
      err.textContent = x.status === 401 ? "That credential was refused." : `Could not sign in: ${x.message}`;
      input.focus();
    }
  });
  main.append(form);
  input.focus();
}

// ---------- navigation ----------
function navItems() {
  const items = [["#/tasks", "Tasks"]];
  if (canCreate()) items.push(["#/new", "New task"]);
  items.push(["#/schedules", "Schedules"]);
  // Viewers may not read triggers (the API answers 403): no link for them.
  if (canCreate()) items.push(["#/triggers", "Triggers"]);
  items.push(["#/workflows", "Workflows"], ["#/dead", "Dead letters"], ["#/stats", "Queues & stats"]);
  if (isAdmin()) items.push(["#/keys", "API keys"], ["#/audit", "Audit log"]);
  return items;
}

function start() {
  $("#top").hidden = false;
  $("#who").textContent = `${state.me.name || state.me.id} · ${state.me.role}`;
  $("#who").setAttribute("data-role", state.me.role);
  const nav = clear($("#nav"));
  for (const [href, label] of navItems()) nav.append(h("a", { href, text: label, id: `nav-${href.slice(2)}` }));
  if (!location.hash || location.hash === "#/") location.hash = "#/tasks";
  else route();
}

function stopViews() {
  for (const f of state.cleanup.splice(0)) { try { f(); } catch { /* ignore */ } }
}

async function taskTypes() {
  if (!state.types) state.types = (await api("GET", "/api/v1/task-types")).items;
  return state.types;
}

function route() {
  if (!state.token || !state.me) return;
  stopViews();
  const hash = location.hash || "#/tasks";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of $("#nav").querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${parts[0] || "tasks"}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = clear($("#main"));
  let view;
  switch (parts[0]) {
    case "tasks": view = parts[1] ? taskDetail(main, decodeURIComponent(parts[1])) : taskList(main, params); break;
    case "new": view = newTask(main, params); break;
    case "schedules": view = schedules(main, parts[1] ? decodeURIComponent(parts[1]) : null); break;
    case "triggers": view = parts[1] ? triggerDetail(main, decodeURIComponent(parts[1])) : triggers(main); break;
    case "workflows": view = parts[1] ? workflowDetail(main, decodeURIComponent(parts[1])) : workflows(main, params); break;
    case "dead": view = deadLetters(main); break;
    case "stats": view = stats(main); break;
    case "keys": view = apiKeys(main); break;
    case "audit": view = auditLog(main, params); break;
    default: main.append(h("h1", { text: "Not found" }), h("p", {}, h("a", { href: "#/tasks", text: "Back to tasks" })));
  }
  Promise.resolve(view).catch((err) => showError(main, err));
  main.focus({ preventScroll: true });
}

function showError(main, err) {
  if (err && err.name === "AbortError") return;
  if (err instanceof APIError && err.status === 401) return;
  main.append(h("p", { class: "error", role: "alert", text: err instanceof APIError && err.status === 0
    ? "The API is unreachable; the page reloads when it is back." : `Error: ${err.message}` }));
}

// ---------- tasks list ----------
function taskRow(t) {
  const tr = h("tr", { "data-task-id": t.task_id, "data-status": t.status },
    h("td", {}, h("a", { href: `#/tasks/${encodeURIComponent(t.task_id)}`, text: t.task_id })),
    h("td", { text: t.type }),
    h("td", {}, statusBadge(t.status)),
    h("td", { class: "num", text: pct(t.progress) }),
    h("td", { text: t.priority }),
    h("td", { class: "wide" }, time(t.created_at)),
    h("td", { class: "wide" }, time(t.scheduled_for)),
    h("td", { class: "wide", text: t.created_by }));
  return tr;
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

async function taskList(main, params, opts = {}) {
  const fixedStatus = opts.status;
  main.append(h("h1", { text: opts.title || "Tasks" }));
  const types = await taskTypes();
  const q = Object.fromEntries(params.entries());
  const statuses = new Set((fixedStatus || q.status || "").split(",").filter(Boolean));
  const form = h("form", { class: "card filters", id: "task-filters", "aria-label": "Filters" });
  if (!fixedStatus) {
    const fs = h("fieldset", {}, h("legend", { text: "Status" }));
    for (const s of STATUSES) {
      fs.append(h("label", {}, h("input", { type: "checkbox", name: "status", value: s, checked: statuses.has(s) }), s));
    }
    form.append(fs);
  }
  const sel = (name, label, values, cur) => h("div", {}, h("label", { for: `f-${name}`, text: label }),
    h("select", { id: `f-${name}`, name }, h("option", { value: "", text: "any" }),
      values.map((v) => h("option", { value: v, text: v, selected: v === cur }))));
  form.append(
    sel("type", "Type", types.map((t) => t.name), q.type),
    sel("priority", "Priority", PRIORITIES, q.priority),
    h("div", {}, h("label", { for: "f-created_after", text: "Created after" }),
      h("input", { id: "f-created_after", name: "created_after", type: "datetime-local", value: toLocalInput(q.created_after) })),
    h("div", {}, h("label", { for: "f-created_before", text: "Created before" }),
      h("input", { id: "f-created_before", name: "created_before", type: "datetime-local", value: toLocalInput(q.created_before) })),
    h("div", {}, h("label", { for: "f-schedule_id", text: "Schedule id" }),
      h("input", { id: "f-schedule_id", name: "schedule_id", value: q.schedule_id || "", size: 16 })),
    h("div", {}, h("label", { for: "f-trigger_id", text: "Trigger id" }),
      h("input", { id: "f-trigger_id", name: "trigger_id", value: q.trigger_id || "", size: 16 })),
    h("div", {}, h("label", { for: "f-workflow_id", text: "Workflow id" }),
      h("input", { id: "f-workflow_id", name: "workflow_id", value: q.workflow_id || "", size: 16 })),
    h("div", {}, h("label", { for: "f-sort", text: "Sort" }),
      h("select", { id: "f-sort", name: "sort" }, [["-created_at", "newest first"], ["created_at", "oldest first"],
        ["-scheduled_for", "scheduled, latest first"], ["scheduled_for", "scheduled, earliest first"]]
        .map(([v, l]) => h("option", { value: v, text: l, selected: v === (q.sort || "-created_at") })))),
    h("button", { type: "submit", text: "Apply" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const out = new URLSearchParams();
    const st = fd.getAll("status");
    if (st.length) out.set("status", st.join(","));
    for (const k of ["type", "priority", ...SOURCE_FILTERS, "sort"]) if (fd.get(k)) out.set(k, fd.get(k));
    for (const k of ["created_after", "created_before"]) if (fd.get(k)) out.set(k, new Date(fd.get(k)).toISOString());
    if (out.get("sort") === "-created_at") out.delete("sort");
    location.hash = `${opts.base || "#/tasks"}${out.toString() ? "?" + out : ""}`;
  });
  main.append(form);
  if (canCreate() && !fixedStatus) main.append(h("p", {}, h("a", { class: "button", id: "new-task-link", href: "#/new", text: "New task" })));

  const summary = h("p", { class: "muted", id: "task-total", "aria-live": "polite" });
  const tbody = h("tbody", { id: "task-rows" });
  const table = h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "visually-hidden", text: "Tasks" }),
    h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Progress", "Priority"].map((c) => h("th", { scope: "col", text: c })),
      ["Created", "Scheduled for", "Created by"].map((c) => h("th", { scope: "col", class: "wide", text: c })))),
    tbody));
  const pager = h("div", { class: "actions" });
  main.append(summary, table, pager);

  const api_q = new URLSearchParams();
  if (fixedStatus) api_q.set("status", fixedStatus);
  for (const k of ["status", "type", "priority", "created_after", "created_before", ...SOURCE_FILTERS, "sort"]) {
    if (q[k] && !(fixedStatus && k === "status")) api_q.set(k, q[k]);
  }
  api_q.set("limit", "50");
  const cursors = [];
  const rows = new Map();
  let firstPage = true;
  const load = async (cursor) => {
    const qq = new URLSearchParams(api_q);
    if (cursor) qq.set("cursor", cursor);
    const page = await api("GET", `/api/v1/tasks?${qq}`);
    clear(tbody); rows.clear(); clear(pager);
    firstPage = !cursor;
    summary.textContent = `${page.total_is_estimate ? "about " : ""}${page.total} task${page.total === 1 ? "" : "s"}`;
    if (!page.items.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "empty", text: "No tasks match these filters." })));
    for (const t of page.items) { const tr = taskRow(t); rows.set(t.task_id, tr); tbody.append(tr); if (opts.rowExtra) opts.rowExtra(tr, t); }
    if (cursors.length) pager.append(h("button", { type: "button", class: "secondary", text: "← Previous", id: "page-prev",
      onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]).catch((e) => showError(main, e)); } }));
    if (page.next_cursor) pager.append(h("button", { type: "button", class: "secondary", text: "Next →", id: "page-next",
      onclick: () => { cursors.push(page.next_cursor); load(page.next_cursor).catch((e) => showError(main, e)); } }));
  };
  await load();

  // Live rows: every task event the caller may see, with the list's filters.
  const eq = new URLSearchParams();
  for (const k of ["status", "type", "priority", ...SOURCE_FILTERS]) if (api_q.get(k)) eq.set(k, api_q.get(k));
  const sortDefault = !api_q.get("sort") || api_q.get("sort") === "-created_at";
  stream(`/api/v1/events${eq.toString() ? "?" + eq : ""}`, (type, t) => {
    if (type !== "task" || !t.task_id) return;
    const old = rows.get(t.task_id);
    if (old) {
      const tr = taskRow(t);
      tr.classList.add("flash");
      old.replaceWith(tr);
      rows.set(t.task_id, tr);
      if (opts.rowExtra) opts.rowExtra(tr, t);
      setTimeout(() => tr.classList.remove("flash"), 800);
    } else if (firstPage && sortDefault && !q.created_before && !(q.created_after && t.created_at < q.created_after)) {
      const empty = tbody.querySelector("td.empty");
      if (empty) empty.parentElement.remove();
      const tr = taskRow(t);
      rows.set(t.task_id, tr);
      tbody.prepend(tr);
      if (opts.rowExtra) opts.rowExtra(tr, t);
    }
  });
}

// ---------- task detail ----------
async function taskDetail(main, id) {
  const t0 = await api("GET", `/api/v1/tasks/${encodeURIComponent(id)}`);
  const title = h("h1", {}, "Task ", h("code", { text: id }));
  const status = h("span", { id: "task-status" });
  const progress = h("progress", { id: "task-progress", max: 1, value: 0, "aria-label": "Progress" });
  const progressText = h("span", { id: "task-progress-text", "aria-live": "polite" });
  const step = h("span", { id: "task-step" });
  const messages = h("ul", { id: "task-messages" });
  const facts = h("dl", { class: "kv", id: "task-facts" });
  const controls = h("div", { class: "actions", id: "task-controls" });
  const err = h("div", { id: "task-error" });
  const result = h("div", { id: "task-result" });
  const params = h("pre", { id: "task-params" });
  const attempts = h("tbody", { id: "task-attempts" });
  const logs = h("ol", { class: "logs", id: "task-logs", "aria-live": "off" });
  const level = h("select", { id: "log-level", "aria-label": "Log level" },
    ["", "debug", "info", "warn", "error"].map((l) => h("option", { value: l, text: l || "all levels" })));
  const metrics = h("p", { class: "muted", id: "task-metrics" });
  const notice = h("p", { id: "task-notice", role: "status" });
  main.append(title, notice,
    h("div", { class: "card" }, h("div", { class: "progress-row" }, status, progress, progressText),
      h("p", {}, "Current step: ", step), messages, controls, err),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", { text: "Details" }), facts),
      h("div", { class: "card" }, h("h2", { text: "Params" }), params, h("p", { class: "muted", text: "Secret fields read as the API masks them." }))),
    h("div", { class: "card" }, h("h2", { text: "Result" }), result),
    h("div", { class: "card" }, h("h2", { text: "Attempts" }), metrics, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["#", "Worker", "Started", "Finished", "Duration", "Queue wait", "Outcome", "Error"].map((c) => h("th", { scope: "col", text: c })))),
      attempts))),
    h("div", { class: "card" }, h("h2", { text: "Logs" }), h("p", {}, h("label", { for: "log-level", text: "Level" }), level), logs));

  let cur = t0;
  let logLines = [];
  const renderLogs = () => {
    clear(logs);
    const lv = level.value;
    const shown = logLines.filter((l) => !lv || l.level === lv);
    if (!shown.length) logs.append(h("li", { class: "empty", text: "No log lines." }));
    for (const l of shown) {
      logs.append(h("li", { class: `lvl-${l.level}`, "data-level": l.level }, time(l.ts), ` [${l.level}] #${l.attempt} `, l.message,
        l.fields && Object.keys(l.fields).length ? ` ${JSON.stringify(l.fields)}` : ""));
    }
  };
  level.addEventListener("change", renderLogs);

  const loadLogs = async () => {
    const all = [];
    let cursor = "";
    let page;
    for (let i = 0; i < 10; i++) {
      page = await api("GET", `/api/v1/tasks/${encodeURIComponent(id)}/logs?limit=500${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
      all.push(...page.logs);
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    logLines = all;
    renderLogs();
    clear(attempts);
    if (!page.attempts.length) attempts.append(h("tr", {}, h("td", { colspan: 8, class: "empty", text: "No attempt yet." })));
    for (const a of page.attempts) {
      attempts.append(h("tr", { "data-attempt": a.attempt },
        h("td", { text: a.attempt }), h("td", { text: a.worker }), h("td", {}, time(a.started_at)), h("td", {}, time(a.finished_at)),
        h("td", { class: "num", text: ms(a.duration_ms) }), h("td", { class: "num", text: ms(a.queue_wait_ms) }),
        h("td", {}, statusBadge(a.outcome)),
        h("td", {}, a.error ? h("span", { class: "error", text: `${a.error_kind ? "[" + a.error_kind + "] " : ""}${a.error}` }) : "—")));
    }
    const m = page.metrics;
    metrics.textContent = `Queue wait ${ms(m.queue_wait_ms)} · run ${ms(m.run_ms)} · total ${ms(m.total_ms)} · retries ${m.retries}`;
  };

  let resultShownFor = "";
  const renderResult = async (t) => {
    if (!TERMINAL.has(t.status) || resultShownFor === t.status) {
      if (!TERMINAL.has(t.status)) { clear(result); result.append(h("p", { class: "muted", text: "No result until the task ends." })); }
      return;
    }
    resultShownFor = t.status;
    clear(result);
    if (t.status !== "completed") { result.append(h("p", { class: "muted", text: "The task did not complete." })); return; }
    let value = t.result;
    if (value === undefined || value === null) {
      try { value = (await api("GET", `/api/v1/tasks/${encodeURIComponent(id)}/result`)).result; } catch (e) {
        result.append(h("p", { class: "muted", text: e.status === 404 ? "No result stored." : `Result unavailable: ${e.message}` }));
        return;
      }
    }
    const text = JSON.stringify(value, null, 2);
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    state.cleanup.push(() => URL.revokeObjectURL(url));
    result.append(h("pre", { id: "task-result-json", tabindex: "0", text }),
      h("a", { class: "button secondary", id: "task-result-download", href: url, download: `${id}-result.json`, text: "Download result" }));
  };

  const render = (t) => {
    // Answers and events may cross: never go back to an older state.
    if (cur !== t && Date.parse(t.updated_at) < Date.parse(cur.updated_at)) return;
    cur = t;
    clear(status).append(statusBadge(t.status));
    progress.value = t.progress || 0;
    progress.setAttribute("aria-valuetext", pct(t.progress));
    progressText.textContent = pct(t.progress);
    step.textContent = t.current_step || "—";
    clear(messages);
    for (const m of t.messages || []) messages.append(h("li", { text: m }));
    clear(facts);
    const kv = (k, v) => [h("dt", { text: k }), h("dd", {}, v)];
    append(facts, [kv("Type", t.type), kv("Priority", t.priority), kv("Created", time(t.created_at)), kv("Created by", t.created_by),
      kv("Scheduled for", time(t.scheduled_for)), kv("Started", time(t.started_at)), kv("Ended", time(t.completed_at)),
      kv("Duration", ms(t.duration_ms)), kv("Attempts", `${t.attempts} (max retries ${t.max_retries})`),
      kv("Next retry", time(t.next_retry_at)), kv("Timeout", `${t.timeout_seconds} s`),
      kv("Retry policy", `${t.retry_policy.retry_delay} s${t.retry_policy.exponential_backoff ? ", exponential" : ""}, at most ${t.retry_policy.max_retry_delay} s`),
      t.schedule_id ? kv("Schedule", h("a", { href: `#/tasks?schedule_id=${encodeURIComponent(t.schedule_id)}`, text: t.schedule_id })) : null,
      t.trigger_id ? kv("Trigger", h("span", { id: "task-trigger" }, canCreate()
        ? h("a", { href: `#/triggers/${encodeURIComponent(t.trigger_id)}`, text: t.trigger_id }) : h("code", { text: t.trigger_id }),
        " · ", h("a", { href: `#/tasks?trigger_id=${encodeURIComponent(t.trigger_id)}`, text: "its tasks" }))) : null,
      t.workflow_id ? kv("Workflow", h("span", { id: "task-workflow" },
        h("a", { href: `#/workflows/${encodeURIComponent(t.workflow_id)}`, text: t.workflow_id }), t.step_id ? ` (step ${t.step_id})` : "")) : null,
      t.cancel_requested && !TERMINAL.has(t.status) ? kv("Cancel", "requested") : null].filter(Boolean));
    params.textContent = JSON.stringify(t.params || {}, null, 2);
    clear(err);
    if (t.error) err.append(h("p", { class: "error", id: "task-error-text", text: `Error${t.error.kind ? " (" + t.error.kind + ")" : ""}${t.error.attempt ? ", attempt " + t.error.attempt : ""}: ${t.error.message}` }));
    clear(controls);
    if (canCreate()) {
      if (!TERMINAL.has(t.status) && !t.cancel_requested) controls.append(h("button", { type: "button", class: "danger", id: "cancel-task", text: "Cancel task", onclick: doCancel }));
      if (t.status === "failed" || t.status === "cancelled") controls.append(h("button", { type: "button", id: "retry-task", text: "Retry task", onclick: doRetry }));
    }
    renderResult(t);
  };
  const doCancel = async () => {
    if (!(await confirmAction(`Cancel task ${id}? A running task is told to stop.`))) return;
    try {
      const t = await api("DELETE", `/api/v1/tasks/${encodeURIComponent(id)}`);
      notice.textContent = t.status === "cancelled" ? "Cancelled." : "Cancellation requested; the worker is stopping the task.";
      render(t);
    } catch (e) { notice.textContent = `Cancel failed: ${e.message}`; }
  };
  const doRetry = async () => {
    if (!(await confirmAction(`Run task ${id} again?`))) return;
    try {
      const t = await api("POST", `/api/v1/tasks/${encodeURIComponent(id)}/retry`);
      notice.textContent = "Queued again.";
      resultShownFor = "";
      render(t);
      watch();
    } catch (e) { notice.textContent = `Retry failed: ${e.message}`; }
  };

  render(t0);
  await loadLogs();
  let stopStream = null;
  let logsTimer = null;
  const refreshLogs = () => { clearTimeout(logsTimer); logsTimer = setTimeout(() => loadLogs().catch(() => {}), 300); };
  state.cleanup.push(() => clearTimeout(logsTimer));
  const watch = () => {
    if (stopStream) stopStream();
    stopStream = stream(`/api/v1/tasks/${encodeURIComponent(id)}/events`, (type, data) => {
      if (type === "task") {
        const prev = cur.status;
        render(data);
        if (prev !== data.status) refreshLogs();
      } else if (type === "log") {
        logLines.push(data);
        renderLogs();
      }
    }, async () => {
      // The server ends the stream after a terminal state; make sure this
      // page has seen it before stopping.
      if (!TERMINAL.has(cur.status)) {
        try { render(await api("GET", `/api/v1/tasks/${encodeURIComponent(id)}`)); } catch { /* reconnect */ }
      }
      if (TERMINAL.has(cur.status)) { refreshLogs(); return true; }
      return false;
    });
  };
  if (!TERMINAL.has(t0.status)) watch();
}

// ---------- create task ----------
function fieldInput(name, schema, idp, value) {
  const id = `${idp}${name}`;
  const t = schema.type;
  const secret = schema["x-secret"] || schema["x-sensitive"];
  if (t === "boolean") return h("input", { id, name, type: "checkbox", checked: !!value });
  if (t === "integer" || t === "number") return h("input", { id, name, type: "number", step: t === "integer" ? "1" : "any", value: value ?? "" });
  if (t === "string") return h("input", { id, name, type: schema["x-secret"] ? "password" : "text", autocomplete: secret ? "off" : undefined, value: value ?? "" });
  return h("textarea", { id, name, rows: 3, placeholder: t === "array" ? "[…] JSON" : "{…} JSON", text: value === undefined ? "" : JSON.stringify(value) });
}

// paramsForm renders the inputs of a params schema; collect() returns the
// params or throws naming a field.
function paramsForm(container, schema, idp, values = {}) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const names = Object.keys(props).sort((a, b) => (required.has(b) - required.has(a)) || a.localeCompare(b));
  if (!names.length) container.append(h("p", { class: "muted", text: "This type takes no params." }));
  for (const n of names) {
    const s = props[n];
    const hint = [s.type === "array" ? "JSON array" : s.type === "object" || !s.type ? "JSON" : s.type,
      required.has(n) ? "required" : "optional", s["x-secret"] ? "secret" : s["x-sensitive"] ? "sensitive" : ""].filter(Boolean).join(", ");
    const input = fieldInput(n, s, idp, values[n]);
    input.setAttribute("aria-describedby", `${idp}${n}-hint ${idp}${n}-error`);
    if (required.has(n)) input.setAttribute("aria-required", "true");
    container.append(h("div", { class: "form-row" },
      h("label", { for: `${idp}${n}` }, n, " ", h("span", { class: "hint", id: `${idp}${n}-hint`, text: `(${hint})` })),
      input, h("span", { class: "field-error", id: `${idp}${n}-error`, "data-field": `params.${n}`, "aria-live": "polite" })));
  }
  return () => {
    const out = {};
    for (const n of names) {
      const s = props[n];
      const el = container.querySelector(`#${CSS.escape(idp + n)}`);
      if (s.type === "boolean") { if (el.checked) out[n] = true; continue; }
      const v = el.value.trim();
      if (v === "") continue;
      if (s.type === "integer" || s.type === "number") out[n] = Number(v);
      else if (s.type === "string") out[n] = el.value;
      else {
        try { out[n] = JSON.parse(v); } catch { throw new APIError(422, { title: "Invalid JSON", errors: [{ field: `params.${n}`, message: "is not valid JSON" }] }); }
      }
    }
    return out;
  };
}

// showFieldErrors puts each of a 422's field errors next to its field (by
// data-field), the rest in the form's summary.
function showFieldErrors(form, summary, err) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  clear(summary);
  const errors = (err.problem && err.problem.errors) || [];
  const rest = [];
  let first = null;
  for (const fe of errors) {
    const slot = [...form.querySelectorAll(".field-error")].find((s) => s.dataset.field === fe.field ||
      (fe.field.startsWith(s.dataset.field + ".") || fe.field.startsWith(s.dataset.field + "[")));
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent}; ${fe.message}` : fe.message;
      const input = $(`#${CSS.escape(slot.id.replace(/-error$/, ""))}`, form);
      if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
    } else rest.push(`${fe.field}: ${fe.message}`);
  }
  summary.append(h("p", { class: "error", role: "alert", text: errors.length ? "Please fix the fields below." : err.message }));
  for (const r of rest) summary.append(h("p", { class: "error", text: r }));
  if (first) first.focus();
}

async function newTask(main, params) {
  main.append(h("h1", { text: "New task" }));
  if (!canCreate()) { main.append(h("p", { class: "notice", text: "Your role may not create tasks." })); return; }
  const types = (await taskTypes()).filter((t) => isAdmin() || !t.admin_only);
  if (!types.length) { main.append(h("p", { class: "empty", text: "No task type is available to you." })); return; }
  const chosen = types.find((t) => t.name === params.get("type")) || types[0];
  const typeSel = h("select", { id: "new-type", name: "type" }, types.map((t) => h("option", { value: t.name, text: `${t.name} (${t.category})`, selected: t === chosen })));
  typeSel.addEventListener("change", () => { location.hash = `#/new?type=${encodeURIComponent(typeSel.value)}`; });
  const summary = h("div", { id: "new-summary" });
  const paramsBox = h("fieldset", { id: "new-params" }, h("legend", { text: "Params" }));
  const collect = paramsForm(paramsBox, chosen.params_schema, "param-");
  const prio = h("select", { id: "new-priority", name: "priority" }, h("option", { value: "", text: `type default (${chosen.default_priority})` }),
    PRIORITIES.map((p) => h("option", { value: p, text: p })));
  const when = h("input", { id: "new-scheduled_for", type: "datetime-local", name: "scheduled_for" });
  const timeout = h("input", { id: "new-timeout_seconds", type: "number", min: 1, max: 86400, placeholder: String(chosen.timeout_seconds) });
  const retries = h("input", { id: "new-max_retries", type: "number", min: 0, max: 25, placeholder: String(chosen.retry_policy.max_retries) });
  const row = (id, label, input, field) => h("div", { class: "form-row" }, h("label", { for: id, text: label }), input,
    h("span", { class: "field-error", id: `${id}-error`, "data-field": field }));
  const form = h("form", { class: "card", id: "new-task-form", novalidate: true },
    row("new-type", "Type", typeSel, "type"),
    h("p", { class: "muted", text: chosen.description }),
    summary, paramsBox,
    row("new-priority", "Priority", prio, "priority"),
    row("new-scheduled_for", "Run at (empty: now)", when, "scheduled_for"),
    row("new-timeout_seconds", "Timeout, seconds", timeout, "timeout_seconds"),
    row("new-max_retries", "Max retries", retries, "retry_policy"),
    h("button", { type: "submit", id: "new-submit", text: "Create task" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const btn = $("#new-submit");
    btn.disabled = true;
    try {
      const body = { type: chosen.name, params: collect() };
      if (prio.value) body.priority = prio.value;
      if (when.value) body.scheduled_for = new Date(when.value).toISOString();
      if (timeout.value) body.timeout_seconds = Number(timeout.value);
      if (retries.value) body.retry_policy = { max_retries: Number(retries.value) };
      const created = await api("POST", "/api/v1/tasks", body);
      location.hash = `#/tasks/${encodeURIComponent(created.task_id)}`;
    } catch (err) {
      if (err instanceof APIError && err.status !== 0) showFieldErrors(form, summary, err);
      else showError(main, err);
    } finally { btn.disabled = false; }
  });
  main.append(form);
}

// ---------- schedules ----------
async function schedules(main, editID) {
  main.append(h("h1", { text: "Schedules" }));
  const list = await api("GET", "/api/v1/schedules?limit=200");
  const tbody = h("tbody", { id: "schedule-rows" });
  main.append(h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Name", "Cron", "Zone", "Type", "Enabled", "Next run", "Last run", ""].map((c) => h("th", { scope: "col", text: c })))),
    tbody)));
  if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "empty", text: "No schedules yet." })));
  for (const s of list.items) {
    const actions = h("td", { class: "actions" }, h("a", { href: `#/tasks?schedule_id=${encodeURIComponent(s.id)}`, text: "Runs" }));
    if (isAdmin()) {
      actions.append(
        h("a", { href: `#/schedules/${encodeURIComponent(s.id)}`, class: "button secondary", text: "Edit", "data-action": "edit" }),
        h("button", { type: "button", class: "secondary", "data-action": "toggle", text: s.enabled ? "Disable" : "Enable", onclick: async () => {
          try { await api("PATCH", `/api/v1/schedules/${encodeURIComponent(s.id)}`, { enabled: !s.enabled }); route(); } catch (e) { showError(main, e); }
        } }),
        h("button", { type: "button", class: "danger", "data-action": "delete", text: "Delete", onclick: async () => {
          if (!(await confirmAction(`Delete schedule ${s.name}?`))) return;
          try { await api("DELETE", `/api/v1/schedules/${encodeURIComponent(s.id)}`); route(); } catch (e) { showError(main, e); }
        } }));
    }
    tbody.append(h("tr", { "data-schedule-id": s.id, "data-name": s.name, "data-enabled": String(s.enabled) },
      h("td", { text: s.name }), h("td", {}, h("code", { text: s.cron })), h("td", { text: s.timezone }), h("td", { text: s.workflow ? "workflow" : s.type }),
      h("td", { text: s.enabled ? "yes" : "no" }), h("td", {}, time(s.next_run_at)), h("td", {}, time(s.last_run_at)), actions));
  }
  const editing = editID ? await api("GET", `/api/v1/schedules/${encodeURIComponent(editID)}`) : null;
  if (editing) {
    const runs = await api("GET", `/api/v1/schedules/${encodeURIComponent(editID)}/runs?limit=10`);
    const rb = h("tbody", { id: "schedule-runs" });
    if (!runs.items.length) rb.append(h("tr", {}, h("td", { colspan: 4, class: "empty", text: "No runs yet." })));
    for (const r of runs.items) rb.append(h("tr", {}, h("td", {}, h("a", { href: `#/tasks/${encodeURIComponent(r.task_id)}`, text: r.task_id })),
      h("td", {}, time(r.fire_time)), h("td", {}, statusBadge(r.status)), h("td", { text: r.error ? r.error.message : "" })));
    main.append(h("h2", { text: `Recent runs of ${editing.name}` }), h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Task", "Fire time", "Status", "Error"].map((c) => h("th", { scope: "col", text: c })))), rb)));
  }
  if (isAdmin()) await scheduleForm(main, editing);
}

async function scheduleForm(main, s) {
  const types = await taskTypes();
  const summary = h("div", { id: "schedule-summary" });
  const form = h("form", { class: "card", id: "schedule-form", novalidate: true }, h("h2", { text: s ? `Edit ${s.name}` : "New schedule" }), summary);
  const row = (id, label, input, field) => h("div", { class: "form-row" }, h("label", { for: id, text: label }), input,
    h("span", { class: "field-error", id: `${id}-error`, "data-field": field }));
  const name = h("input", { id: "sch-name", value: s ? s.name : "", required: true });
  const cron = h("input", { id: "sch-cron", value: s ? s.cron : "", placeholder: "0 9 * * *", required: true });
  const tz = h("input", { id: "sch-timezone", value: s ? s.timezone : Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" });
  const type = h("select", { id: "sch-type" }, types.map((t) => h("option", { value: t.name, text: t.name, selected: s ? s.type === t.name : false })));
  const prio = h("select", { id: "sch-priority" }, h("option", { value: "", text: "type default" }), PRIORITIES.map((p) => h("option", { value: p, text: p, selected: s && s.priority === p })));
  const enabled = h("input", { id: "sch-enabled", type: "checkbox", checked: s ? s.enabled : true });
  const paramsBox = h("fieldset", { id: "sch-params" }, h("legend", { text: "Params" }));
  let collect;
  const renderParams = () => {
    clear(paramsBox).append(h("legend", { text: "Params" }));
    const t = types.find((x) => x.name === type.value);
    collect = paramsForm(paramsBox, t && t.params_schema, "sch-param-", s && s.type === type.value ? s.params : {});
  };
  type.addEventListener("change", renderParams);
  renderParams();
  // A schedule starts a task, or a workflow given as its JSON definition
  // (the body of POST /api/v1/workflows).
  const kind = h("select", { id: "sch-kind" }, h("option", { value: "task", text: "a task" }),
    h("option", { value: "workflow", text: "a workflow", selected: !!(s && s.workflow) }));
  const shownWorkflow = s && s.workflow ? JSON.stringify(s.workflow, null, 2) : "";
  const wf = h("textarea", { id: "sch-workflow", rows: 8, spellcheck: "false", text: shownWorkflow,
    placeholder: '{"steps": [{"id": "prices", "type": "refresh_all_prices"}, {"id": "values", "type": "refresh_portfolio", "params": {"all": true}, "depends_on": ["prices"]}]}' });
  const taskPart = h("div", { id: "sch-task-part" }, row("sch-type", "Task type", type, "type"), paramsBox, row("sch-priority", "Priority", prio, "priority"));
  const workflowPart = h("div", { id: "sch-workflow-part" }, formRow("sch-workflow", "Workflow (JSON)", wf, "workflow",
    "Named steps, each a task with depends_on; as in POST /api/v1/workflows."));
  const showKind = () => { taskPart.hidden = kind.value !== "task"; workflowPart.hidden = kind.value !== "workflow"; };
  kind.addEventListener("change", showKind);
  showKind();
  form.append(row("sch-name", "Name", name, "name"), row("sch-cron", "Cron", cron, "cron"), row("sch-timezone", "Time zone (IANA)", tz, "timezone"),
    row("sch-kind", "Starts", kind, "kind"), taskPart, workflowPart,
    h("div", { class: "form-row" }, h("label", { for: "sch-enabled" }, enabled, " Enabled")),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "sch-submit", text: s ? "Save schedule" : "Create schedule" }),
      s ? h("a", { href: "#/schedules", class: "button secondary", text: "Cancel edit" }) : null));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = { name: name.value.trim(), cron: cron.value.trim(), timezone: tz.value.trim() || "UTC", enabled: enabled.checked };
      if (kind.value === "task") {
        Object.assign(body, { type: type.value, params: collect() });
        if (prio.value) body.priority = prio.value;
      } else {
        try {
          body.workflow = JSON.parse(wf.value);
        } catch {
          throw new APIError(422, { title: "invalid workflow", errors: [{ field: "workflow", message: "must be a JSON object" }] });
        }
      }
      if (s) await api("PUT", `/api/v1/schedules/${encodeURIComponent(s.id)}`, body);
      else await api("POST", "/api/v1/schedules", body);
      location.hash = "#/schedules";
      route();
    } catch (err) {
      if (err instanceof APIError && err.status !== 0) {
        for (const fe of (err.problem.errors || [])) if (!fe.field.includes(".")) fe.field = fe.field.replace(/^schedule\./, "");
        showFieldErrors(form, summary, err);
      } else showError(main, err);
    }
  });
  main.append(form);
}

// ---------- shared form and copy helpers ----------
function formRow(id, label, input, field, hint) {
  return h("div", { class: "form-row" }, h("label", { for: id, text: label }), input,
    hint ? h("span", { class: "hint muted", id: `${id}-hint`, text: hint }) : null,
    h("span", { class: "field-error", id: `${id}-error`, "data-field": field }));
}

// copyText puts text on the clipboard; where the browser refuses, it selects
// the text in el for the person to copy.
async function copyText(text, el, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch {
    const r = document.createRange();
    r.selectNodeContents(el);
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(r);
    status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
}
function copyButton(id, label, text, el) {
  const status = h("span", { class: "muted", role: "status", id: `${id}-status` });
  return [h("button", { type: "button", class: "secondary", id, text: label, onclick: () => copyText(text, el, status) }), " ", status];
}

// ---------- triggers (operators and admins; viewers get 403) ----------
const TRIGGER_KINDS = ["webhook", "database", "upload"];
const TRIGGER_TABLES = ["prices", "holdings", "portfolios", "assets", "benchmarks"];
const TRIGGER_OPS = ["insert", "update", "delete"];
const TRIGGER_EVENTS = {
  webhook: "An outside system POSTs signed JSON to the trigger's hook URL; the signing secret is shown once, after creation. The event is {\"body\": <the JSON body>, \"webhook_id\"}.",
  database: "A change to the table makes the task (the changes within the debounce window make one). The event is {\"table\", \"operation\", \"row\", \"changes\"}.",
  upload: "Each upload matching the filter makes the task. The event is {\"upload_id\", \"name\", \"size\", \"sha256\", \"content_type\"}.",
};

function triggerControls(tr, main) {
  const enc = encodeURIComponent(tr.trigger_id);
  const box = h("div", { class: "actions" });
  box.append(h("button", { type: "button", class: "secondary", "data-action": "toggle", text: tr.enabled ? "Disable" : "Enable",
    "aria-label": `${tr.enabled ? "Disable" : "Enable"} trigger ${tr.name}`, onclick: async () => {
      try { await api("PATCH", `/api/v1/triggers/${enc}`, { enabled: !tr.enabled }); route(); } catch (e) { showError(main, e); }
    } }));
  if (tr.kind === "webhook") {
    box.append(h("button", { type: "button", class: "secondary", "data-action": "rotate", text: "Rotate secret",
      "aria-label": `Rotate the secret of trigger ${tr.name}`, onclick: async () => {
        if (!(await confirmAction(`Rotate the signing secret of ${tr.name}? The new secret is shown once; the previous one keeps verifying only until its overlap ends.`))) return;
        try {
          const r = await api("POST", `/api/v1/triggers/${enc}/rotate-secret`);
          state.freshSecret = { id: tr.trigger_id, secret: r.secret, previous_expires_at: r.previous_expires_at, rotated: true };
          if (location.hash === `#/triggers/${enc}`) route(); else location.hash = `#/triggers/${enc}`;
        } catch (e) { showError(main, e); }
      } }));
  }
  box.append(h("button", { type: "button", class: "danger", "data-action": "delete", text: "Delete",
    "aria-label": `Delete trigger ${tr.name}`, onclick: async () => {
      if (!(await confirmAction(`Delete trigger ${tr.name}? Its deliveries go with it; the tasks it made stay.`))) return;
      try {
        await api("DELETE", `/api/v1/triggers/${enc}`);
        if (location.hash === "#/triggers") route(); else location.hash = "#/triggers";
      } catch (e) { showError(main, e); }
    } }));
  return box;
}

async function triggers(main) {
  main.append(h("h1", { text: "Triggers" }));
  if (!canCreate()) { main.append(h("p", { class: "notice", text: "Operators and admins only." })); return; }
  const list = await api("GET", "/api/v1/triggers?limit=200");
  const tbody = h("tbody", { id: "trigger-rows" });
  main.append(h("div", { class: "table-wrap" }, h("table", { class: "wrap" },
    h("caption", { class: "visually-hidden", text: "Triggers" }),
    h("thead", {}, h("tr", {}, ["Name", "Kind", "Enabled", "Task type"].map((c) => h("th", { scope: "col", text: c })),
      h("th", { scope: "col", class: "wide", text: "Created" }), h("th", { scope: "col", text: "" }))),
    tbody)));
  if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "empty", text: "No triggers yet." })));
  for (const tr of list.items) {
    tbody.append(h("tr", { "data-trigger-id": tr.trigger_id, "data-name": tr.name, "data-enabled": String(tr.enabled) },
      h("td", {}, h("a", { href: `#/triggers/${encodeURIComponent(tr.trigger_id)}`, text: tr.name })),
      h("td", { text: tr.kind }), h("td", { text: tr.enabled ? "yes" : "no" }), h("td", { text: (tr.task && tr.task.type) || "—" }),
      h("td", { class: "wide" }, time(tr.created_at)), h("td", {}, triggerControls(tr, main))));
  }
  if (list.next_cursor) main.append(h("p", { class: "muted", text: "The first 200 triggers are shown." }));
  main.append(await triggerForm(main));
}

async function triggerForm(main) {
  const types = (await taskTypes()).filter((t) => isAdmin() || !t.admin_only);
  const summary = h("div", { id: "trigger-summary" });
  const name = h("input", { id: "trg-name", required: true, maxlength: 100 });
  const kind = h("select", { id: "trg-kind" }, TRIGGER_KINDS.map((k) => h("option", { value: k, text: k })));
  const enabled = h("input", { id: "trg-enabled", type: "checkbox", checked: true });
  const table = h("select", { id: "trg-table" }, TRIGGER_TABLES.map((t) => h("option", { value: t, text: t })));
  const ops = TRIGGER_OPS.map((o) => h("input", { type: "checkbox", id: `trg-op-${o}`, value: o }));
  const debounce = h("input", { id: "trg-debounce_seconds", type: "number", min: 0, max: 86400, placeholder: "0" });
  const ctype = h("input", { id: "trg-content_type", placeholder: "text/csv" });
  const glob = h("input", { id: "trg-name_glob", placeholder: "prices-*.csv" });
  const kindBox = h("fieldset", { id: "trg-kind-fields" });
  const renderKind = () => {
    clear(kindBox).append(h("legend", { text: `${kind.value} trigger` }), h("p", { class: "muted", text: TRIGGER_EVENTS[kind.value] }));
    if (kind.value === "database") {
      kindBox.append(formRow("trg-table", "Table", table, "table"),
        h("fieldset", { id: "trg-operations" }, h("legend", { text: "Operations (none ticked: every one)" }),
          ops.map((o) => h("label", { for: o.id, class: "inline" }, o, " ", o.value)),
          h("span", { class: "field-error", id: "trg-operations-error", "data-field": "operations" })),
        formRow("trg-debounce_seconds", "Debounce, seconds", debounce, "debounce_seconds", "Changes within this window make one task."));
    } else if (kind.value === "upload") {
      kindBox.append(formRow("trg-content_type", "Content type (empty: any)", ctype, "filter.content_type"),
        formRow("trg-name_glob", "File name pattern (empty: any)", glob, "filter.name_glob"));
    }
  };
  kind.addEventListener("change", renderKind);
  renderKind();

  const type = h("select", { id: "trg-type" }, types.map((t) => h("option", { value: t.name, text: `${t.name} (${t.category})` })));
  const paramsBox = h("fieldset", { id: "trg-params" });
  let collect;
  const renderParams = () => {
    clear(paramsBox).append(h("legend", { text: "Params" }), h("p", { class: "muted", text: "Leave empty a param that the param map supplies from the event." }));
    const t = types.find((x) => x.name === type.value);
    collect = paramsForm(paramsBox, t && t.params_schema, "trg-param-");
  };
  type.addEventListener("change", renderParams);
  renderParams();
  const paramMap = h("textarea", { id: "trg-param_map", rows: 3, placeholder: "{\"portfolio_id\": \"/body/portfolio\"}", spellcheck: "false" });
  const prio = h("select", { id: "trg-priority" }, h("option", { value: "", text: "type default" }), PRIORITIES.map((p) => h("option", { value: p, text: p })));
  const timeout = h("input", { id: "trg-timeout_seconds", type: "number", min: 1, max: 86400, placeholder: "type default" });
  const retries = h("input", { id: "trg-max_retries", type: "number", min: 0, max: 25, placeholder: "type default" });
  const callback = h("input", { id: "trg-callback_url", type: "url", placeholder: "empty: none", spellcheck: "false" });

  const form = h("form", { class: "card", id: "trigger-form", novalidate: true }, h("h2", { text: "New trigger" }), summary,
    formRow("trg-name", "Name", name, "name"), formRow("trg-kind", "Kind", kind, "kind"),
    h("div", { class: "form-row" }, h("label", { for: "trg-enabled" }, enabled, " Enabled")), kindBox,
    h("h3", { text: "The task it creates" }),
    formRow("trg-type", "Task type", type, "task.type"), paramsBox,
    formRow("trg-param_map", "Param map (JSON: param → JSON Pointer into the event)", paramMap, "task.param_map"),
    formRow("trg-priority", "Priority", prio, "task.priority"),
    formRow("trg-timeout_seconds", "Timeout, seconds", timeout, "task.timeout_seconds"),
    formRow("trg-max_retries", "Max retries", retries, "task.retry_policy"),
    formRow("trg-callback_url", "Callback URL", callback, "task.callback_url", "POSTed each task on completion, signed with your callback secret."),
    h("button", { type: "submit", id: "trg-submit", text: "Create trigger" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const btn = $("#trg-submit");
    btn.disabled = true;
    try {
      const task = { type: type.value, params: collect() };
      const pm = paramMap.value.trim();
      if (pm) {
        try { task.param_map = JSON.parse(pm); } catch {
          throw new APIError(422, { title: "Invalid JSON", errors: [{ field: "task.param_map", message: "is not valid JSON" }] });
        }
      }
      if (prio.value) task.priority = prio.value;
      if (timeout.value) task.timeout_seconds = Number(timeout.value);
      if (retries.value) task.retry_policy = { max_retries: Number(retries.value) };
      if (callback.value.trim()) task.callback_url = callback.value.trim();
      const body = { name: name.value.trim(), kind: kind.value, enabled: enabled.checked, task };
      if (kind.value === "database") {
        body.table = table.value;
        const picked = ops.filter((o) => o.checked).map((o) => o.value);
        if (picked.length) body.operations = picked;
        if (debounce.value) body.debounce_seconds = Number(debounce.value);
      } else if (kind.value === "upload") {
        const filter = {};
        if (ctype.value.trim()) filter.content_type = ctype.value.trim();
        if (glob.value.trim()) filter.name_glob = glob.value.trim();
        if (Object.keys(filter).length) body.filter = filter;
      }
      const tr = await api("POST", "/api/v1/triggers", body);
      // The secret is in this answer only: the trigger's page shows it once.
      if (tr.secret) state.freshSecret = { id: tr.trigger_id, secret: tr.secret };
      location.hash = `#/triggers/${encodeURIComponent(tr.trigger_id)}`;
    } catch (err) {
      if (err instanceof APIError && err.status !== 0) {
        // The params form names its fields params.<name>; the API task.params.<name>.
        for (const fe of (err.problem.errors || [])) if (fe.field.startsWith("task.params.")) fe.field = fe.field.slice("task.".length);
        showFieldErrors(form, summary, err);
      } else showError(main, err);
    } finally { btn.disabled = false; }
  });
  return form;
}

async function triggerDetail(main, id) {
  // A secret just made for this trigger is shown this once, then forgotten.
  const fresh = state.freshSecret && state.freshSecret.id === id ? state.freshSecret : null;
  state.freshSecret = null;
  main.append(h("h1", {}, "Trigger ", h("code", { text: id })));
  if (!canCreate()) { main.append(h("p", { class: "notice", text: "Operators and admins only." })); return; }
  const enc = encodeURIComponent(id);
  const tr = await api("GET", `/api/v1/triggers/${enc}`);
  const hookURL = tr.hook_url ? new URL(tr.hook_url, location.origin).href : "";
  if (fresh) {
    const code = h("code", { id: "trigger-secret", class: "copyable", text: fresh.secret });
    main.append(h("div", { class: "card notice", id: "trigger-secret-box", role: "status" },
      h("p", {}, h("strong", { text: fresh.rotated ? "The new signing secret is shown once." : "The signing secret is shown once." }),
        " Copy it now into the system that will call the hook: neither the console nor the API shows it again (rotating makes a new one)."),
      fresh.rotated && fresh.previous_expires_at ? h("p", {}, "The previous secret keeps verifying until ", time(fresh.previous_expires_at), ".") : null,
      code, h("div", { class: "actions" }, copyButton("trigger-secret-copy", "Copy secret", fresh.secret, code)),
      hookURL ? h("p", {}, "Hook URL: ", h("code", { class: "copyable", text: hookURL })) : null));
  }
  const kv = (k, v) => [h("dt", { text: k }), h("dd", {}, v)];
  const rows = [kv("Name", tr.name), kv("Kind", tr.kind), kv("Enabled", h("span", { id: "trigger-enabled", text: tr.enabled ? "yes" : "no" })),
    kv("Owner", tr.owner), kv("Created", time(tr.created_at)), kv("Updated", time(tr.updated_at))];
  if (tr.kind === "webhook") {
    const url = h("code", { id: "trigger-hook-url", class: "copyable", text: hookURL });
    rows.push(kv("Hook URL", h("span", {}, url, " ", copyButton("trigger-hook-copy", "Copy URL", hookURL, url))));
    if (tr.previous_secret_expires_at) rows.push(kv("Previous secret verifies until", time(tr.previous_secret_expires_at)));
  } else if (tr.kind === "database") {
    rows.push(kv("Table", tr.table), kv("Operations", (tr.operations || []).join(", ") || "every one"), kv("Debounce", `${tr.debounce_seconds || 0} s`));
  } else if (tr.kind === "upload") {
    rows.push(kv("Content type", (tr.filter && tr.filter.content_type) || "any"), kv("Name pattern", (tr.filter && tr.filter.name_glob) || "any"));
  }
  const task = tr.task || {};
  rows.push(kv("Task type", task.type || "—"), kv("Priority", task.priority || "—"),
    kv("Tasks", h("a", { id: "trigger-tasks-link", href: `#/tasks?trigger_id=${enc}`, text: "every task it made" })));
  const facts = h("dl", { class: "kv", id: "trigger-facts" }, rows.flat());
  const taskPre = h("pre", { id: "trigger-task", text: JSON.stringify({ params: task.params || {}, param_map: task.param_map || {} }, null, 2) });
  const dbody = h("tbody", { id: "delivery-rows" });
  const recent = h("ul", { id: "trigger-recent-tasks" });
  main.append(h("div", { class: "grid" },
    h("div", { class: "card" }, h("h2", { text: "Details" }), facts, triggerControls(tr, main)),
    h("div", { class: "card" }, h("h2", { text: "The task it creates" }), taskPre)),
  h("div", { class: "card" }, h("h2", { text: "Recent deliveries" }),
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "deliveries-refresh", text: "Refresh",
      onclick: () => load().catch((e) => showError(main, e)) })),
    h("div", { class: "table-wrap" }, h("table", { class: "wrap" }, h("caption", { class: "visually-hidden", text: "Deliveries" }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Received" }), h("th", { scope: "col", class: "wide", text: "Webhook id" }),
        h("th", { scope: "col", text: "Outcome" }), h("th", { scope: "col", class: "wide", text: "HTTP" }), h("th", { scope: "col", text: "Task or reason" }))),
      dbody))),
  h("div", { class: "card" }, h("h2", { text: "Recent tasks" }), recent,
    h("p", {}, h("a", { href: `#/tasks?trigger_id=${enc}`, text: "All its tasks →" }))));
  const load = async () => {
    const [page, tasks] = await Promise.all([api("GET", `/api/v1/triggers/${enc}/deliveries?limit=50`),
      api("GET", `/api/v1/tasks?trigger_id=${enc}&limit=10`)]);
    clear(dbody);
    if (!page.items.length) dbody.append(h("tr", {}, h("td", { colspan: 5, class: "empty", text: "No deliveries yet." })));
    for (const d of page.items) {
      dbody.append(h("tr", { "data-delivery-id": d.delivery_id, "data-accepted": String(d.accepted) },
        h("td", {}, time(d.received_at)), h("td", { class: "wide" }, d.webhook_id ? h("code", { text: d.webhook_id }) : "—"),
        h("td", {}, h("span", { class: `status status-${d.accepted ? "completed" : "failed"}`, text: d.accepted ? "accepted" : "refused" })),
        h("td", { class: "num wide", text: d.status }),
        h("td", {}, d.accepted && d.task_id ? h("a", { href: `#/tasks/${encodeURIComponent(d.task_id)}`, text: d.task_id }) : h("span", { class: "error", text: d.reason || "refused" }),
          d.excerpt ? h("code", { class: "excerpt", text: d.excerpt }) : null)));
    }
    clear(recent);
    if (!tasks.items.length) recent.append(h("li", { class: "muted", text: "No task yet." }));
    for (const t of tasks.items) recent.append(h("li", { "data-task-id": t.task_id }, h("a", { href: `#/tasks/${encodeURIComponent(t.task_id)}`, text: t.task_id }), " ", statusBadge(t.status), " ", time(t.created_at)));
  };
  await load();
  // Each task the trigger makes (an accepted delivery) reloads the lists.
  let soon = null;
  stream(`/api/v1/events?trigger_id=${enc}&limit=1`, (type) => {
    if (type === "task") { clearTimeout(soon); soon = setTimeout(() => load().catch(() => {}), 300); }
  });
  state.cleanup.push(() => clearTimeout(soon));
}

// ---------- workflows ----------
const WORKFLOW_STATUSES = ["pending", "running", "completed", "failed", "cancelled"];

async function workflows(main, params) {
  main.append(h("h1", { text: "Workflows" }));
  const cur = params.get("status") || "";
  const sel = h("select", { id: "wf-status", name: "status" }, h("option", { value: "", text: "any" }),
    WORKFLOW_STATUSES.map((st) => h("option", { value: st, text: st, selected: st === cur })));
  const form = h("form", { class: "card filters", id: "workflow-filters", "aria-label": "Filters" },
    h("div", {}, h("label", { for: "wf-status", text: "Status" }), sel), h("button", { type: "submit", text: "Apply" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/workflows${sel.value ? "?status=" + encodeURIComponent(sel.value) : ""}`;
  });
  const tbody = h("tbody", { id: "workflow-rows" });
  const pager = h("div", { class: "actions" });
  main.append(form, h("div", { class: "table-wrap" }, h("table", { class: "wrap" }, h("caption", { class: "visually-hidden", text: "Workflows" }),
    h("thead", {}, h("tr", {}, ["Workflow", "Status", "Created"].map((c) => h("th", { scope: "col", text: c })),
      ["Ended", "Created by"].map((c) => h("th", { scope: "col", class: "wide", text: c })))), tbody)), pager,
  h("p", { class: "muted", text: "Workflows are created through the API (POST /api/v1/workflows) or the command-line client." }));
  const load = async (cursor) => {
    const q = new URLSearchParams({ limit: "50" });
    if (cur) q.set("status", cur);
    if (cursor) q.set("cursor", cursor);
    const page = await api("GET", `/api/v1/workflows?${q}`);
    if (!cursor) clear(tbody);
    clear(pager);
    if (!page.items.length && !cursor) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "empty", text: "No workflows match." })));
    for (const w of page.items) {
      tbody.append(h("tr", { "data-workflow-id": w.workflow_id, "data-status": w.status },
        h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(w.workflow_id)}`, text: w.name }), h("br"), h("code", { class: "muted", text: w.workflow_id })),
        h("td", {}, statusBadge(w.status)), h("td", {}, time(w.created_at)),
        h("td", { class: "wide" }, time(w.completed_at)), h("td", { class: "wide", text: w.created_by })));
    }
    if (page.next_cursor) pager.append(h("button", { type: "button", class: "secondary", id: "workflows-more", text: "Load more",
      onclick: () => load(page.next_cursor).catch((e) => showError(main, e)) }));
  };
  await load();
}

// workflowGraph draws the steps as an SVG: one column per dependency depth
// (a step sits one column right of its deepest dependency), an arrow from
// each dependency to its dependent, each node coloured by its status and
// linking to its task when it has one.
function workflowGraph(steps) {
  const byID = new Map(steps.map((st) => [st.id, st]));
  const depth = new Map();
  const depthOf = (st, seen) => {
    if (depth.has(st.id)) return depth.get(st.id);
    if (seen.has(st.id)) return 0; // the API refuses cycles; never loop on one
    seen.add(st.id);
    let d = 0;
    for (const dep of st.depends_on || []) if (byID.has(dep)) d = Math.max(d, depthOf(byID.get(dep), seen) + 1);
    depth.set(st.id, d);
    return d;
  };
  const layers = [];
  for (const st of steps) (layers[depthOf(st, new Set())] ||= []).push(st);
  const NW = 170, NH = 58, GX = 60, GY = 18, PAD = 6;
  const cols = Math.max(1, layers.length), rows = Math.max(1, ...layers.map((l) => l.length));
  const W = PAD * 2 + cols * NW + (cols - 1) * GX, H = PAD * 2 + rows * NH + (rows - 1) * GY;
  const pos = new Map();
  layers.forEach((layer, x) => {
    const off = ((rows - layer.length) * (NH + GY)) / 2;
    layer.forEach((st, y) => pos.set(st.id, { x: PAD + x * (NW + GX), y: PAD + off + y * (NH + GY) }));
  });
  const clip = (t, n) => (t.length > n ? t.slice(0, n - 1) + "…" : t);
  const svg = s("svg", { class: "wf", id: "workflow-svg", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "group", "aria-label": "Graph of the workflow's steps" });
  svg.append(s("defs", {}, s("marker", { id: "wf-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" },
    s("path", { d: "M0,0 L10,5 L0,10 z", class: "wf-arrowhead" }))));
  if (!steps.length) svg.append(s("text", { x: PAD, y: 20 }, "No steps."));
  for (const st of steps) {
    for (const dep of st.depends_on || []) {
      const a = pos.get(dep), b = pos.get(st.id);
      if (!a || !b) continue;
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x - 1, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
      svg.append(s("path", { class: "wf-edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#wf-arrow)", "data-from": dep, "data-to": st.id }));
    }
  }
  for (const st of steps) {
    const p = pos.get(st.id);
    const g = s("g", { class: `wf-node wf-${st.status}`, "data-step-id": st.id, "data-status": st.status, transform: `translate(${p.x},${p.y})` },
      s("title", {}, `${st.id} (${st.type}): ${st.status}${st.error ? " — " + st.error : ""}`),
      s("rect", { width: NW, height: NH, rx: 6 }),
      s("text", { x: 10, y: 18, class: "wf-id" }, clip(st.id, 22)),
      s("text", { x: 10, y: 34 }, clip(st.type, 24)),
      s("text", { x: 10, y: 50, class: "wf-state" }, st.status));
    svg.append(st.task_id ? s("a", { href: `#/tasks/${encodeURIComponent(st.task_id)}`, "aria-label": `Step ${st.id}, ${st.type}, ${st.status}: its task` }, g) : g);
  }
  return svg;
}

async function workflowDetail(main, id) {
  const enc = encodeURIComponent(id);
  let wf = await api("GET", `/api/v1/workflows/${enc}`);
  const status = h("span", { id: "workflow-status" });
  const notice = h("p", { id: "workflow-notice", role: "status" });
  const controls = h("div", { class: "actions", id: "workflow-controls" });
  const facts = h("dl", { class: "kv", id: "workflow-facts" });
  const graph = h("div", { id: "workflow-graph", class: "wf-graph" });
  const list = h("ol", { id: "workflow-steps", class: "wf-steps" });
  main.append(h("h1", {}, "Workflow ", h("code", { text: id })), notice,
    h("div", { class: "card" }, h("p", {}, status, " ", h("strong", { id: "workflow-name", text: wf.name })), graph, controls),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", { text: "Steps" }), list),
      h("div", { class: "card" }, h("h2", { text: "Details" }), facts)));
  const doCancel = async () => {
    if (!(await confirmAction(`Cancel workflow ${wf.name}? No further step starts; running steps are told to stop.`))) return;
    try {
      render(await api("DELETE", `/api/v1/workflows/${enc}`));
      notice.textContent = "Cancel requested.";
    } catch (e) { notice.textContent = `Cancel failed: ${e.message}`; }
  };
  const render = (w) => {
    wf = w;
    clear(status).append(statusBadge(w.status));
    status.dataset.cancelRequested = String(!!w.cancel_requested);
    const kv = (k, v) => [h("dt", { text: k }), h("dd", {}, v)];
    clear(facts);
    append(facts, [kv("Name", w.name), kv("Status", w.status + (w.cancel_requested && !TERMINAL.has(w.status) ? " (cancel requested)" : "")),
      kv("Created", time(w.created_at)), kv("Created by", w.created_by), kv("Updated", time(w.updated_at)), kv("Ended", time(w.completed_at)),
      kv("Tasks", h("a", { id: "workflow-tasks-link", href: `#/tasks?workflow_id=${enc}`, text: "its step tasks" }))]);
    const steps = w.steps || [];
    clear(graph).append(workflowGraph(steps));
    clear(list);
    for (const st of steps) {
      list.append(h("li", { "data-step-id": st.id, "data-status": st.status },
        st.task_id ? h("a", { href: `#/tasks/${encodeURIComponent(st.task_id)}`, text: st.id }) : h("strong", { text: st.id }),
        ` (${st.type}) `, statusBadge(st.status),
        (st.depends_on || []).length ? ` after ${st.depends_on.join(", ")}` : "",
        st.error ? h("span", { class: "error", text: ` — ${st.error}` }) : null));
    }
    clear(controls);
    if (canCreate() && !TERMINAL.has(w.status) && !w.cancel_requested) {
      controls.append(h("button", { type: "button", class: "danger", id: "cancel-workflow", "data-action": "cancel", text: "Cancel workflow", onclick: doCancel }));
    }
  };
  render(wf);
  // Live: each event of one of its tasks re-reads the workflow (one read at
  // a time; events during a read make one more).
  let reading = false, again = false;
  const reread = async () => {
    if (reading) { again = true; return; }
    reading = true;
    try {
      do { again = false; render(await api("GET", `/api/v1/workflows/${enc}`)); } while (again);
    } catch (e) {
      if (!(e instanceof APIError && (e.status === 0 || e.status === 401))) notice.textContent = `Could not refresh: ${e.message}`;
    } finally { reading = false; }
  };
  stream(`/api/v1/events?workflow_id=${enc}`, (type) => { if (type === "task") reread(); });
  // The workflow's own status may change after its last task's event (the
  // scheduler ends it): read it now and then until it has ended.
  const timer = setInterval(() => { if (!TERMINAL.has(wf.status)) reread(); }, 5000);
  state.cleanup.push(() => clearInterval(timer));
}

// ---------- dead letters ----------
async function deadLetters(main) {
  const retry = (tr, t) => {
    if (!canCreate() || t.status !== "failed") return;
    const td = h("td", {}, h("button", { type: "button", class: "secondary", "data-action": "retry", text: "Retry", onclick: async () => {
      if (!(await confirmAction(`Run task ${t.task_id} again?`))) return;
      try { await api("POST", `/api/v1/tasks/${encodeURIComponent(t.task_id)}/retry`); tr.remove(); } catch (e) { showError(main, e); }
    } }));
    tr.append(td);
  };
  await taskList(main, new URLSearchParams(location.hash.split("?")[1] || ""), { status: "failed", title: "Dead letters (failed tasks)", base: "#/dead", rowExtra: retry });
}

// ---------- charts (SVG, drawn here) ----------
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) el.setAttribute(k, v);
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}
function barChart(title, rows, fmt, cls) {
  const W = 480, rowH = 22, left = 150, H = Math.max(1, rows.length) * rowH + 10;
  const max = Math.max(1e-9, ...rows.map((r) => r.value || 0));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  if (!rows.length) svg.append(s("text", { x: 10, y: 20 }, "No data in this window."));
  rows.forEach((r, i) => {
    const y = 5 + i * rowH;
    const w = Math.max(0, ((r.value || 0) / max) * (W - left - 70));
    svg.append(s("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, r.label),
      s("rect", { x: left, y, width: w, height: rowH - 6, class: (typeof cls === "function" ? cls(r) : cls) || "bar" }, s("title", {}, `${r.label}: ${fmt(r.value)}`)),
      s("text", { x: left + w + 4, y: y + 14 }, r.value === null || r.value === undefined ? "—" : fmt(r.value)));
  });
  return svg;
}
function lineChart(title, points, fmt, cls, maxY) {
  const W = 480, H = 140, pad = 30;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title), s("line", { x1: pad, y1: H - pad, x2: W - 5, y2: H - pad, class: "axis" }), s("line", { x1: pad, y1: 5, x2: pad, y2: H - pad, class: "axis" }));
  const vals = points.map((p) => p.v).filter((v) => v !== null && v !== undefined);
  const top = maxY || Math.max(1e-9, ...vals);
  svg.append(s("text", { x: 2, y: 12 }, fmt(top)), s("text", { x: 2, y: H - pad }, fmt(0)));
  if (points.length < 2) { svg.append(s("text", { x: pad + 10, y: H / 2 }, points.length ? `now: ${fmt(points[0].v)}` : "Collecting samples…")); return svg; }
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const xy = points.filter((p) => p.v !== null && p.v !== undefined).map((p) =>
    `${pad + ((p.t - t0) / Math.max(1, t1 - t0)) * (W - pad - 10)},${(H - pad) - (p.v / top) * (H - pad - 10)}`);
  svg.append(s("polyline", { points: xy.join(" "), class: cls }),
    s("text", { x: pad, y: H - 10 }, new Date(t0).toLocaleTimeString()), s("text", { x: W - 5, y: H - 10, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  return svg;
}
const QSTATES = ["pending", "running", "scheduled", "retrying", "dead"];
function queueChart(queues) {
  const W = 480, rowH = 26, left = 70, H = queues.length * rowH + 10;
  const max = Math.max(1, ...queues.map((q) => QSTATES.reduce((a, k) => a + q[k], 0)));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Queue sizes by state" });
  svg.append(s("title", {}, "Queue sizes by state"));
  queues.forEach((q, i) => {
    const y = 5 + i * rowH;
    svg.append(s("text", { x: left - 6, y: y + 15, "text-anchor": "end" }, q.name + (q.paused ? " ⏸" : "")));
    let x = left;
    for (const k of QSTATES) {
      const w = (q[k] / max) * (W - left - 60);
      if (w > 0) svg.append(s("rect", { x, y, width: w, height: rowH - 8, class: `s-${k}` }, s("title", {}, `${q.name} ${k}: ${q[k]}`)));
      x += w;
    }
    svg.append(s("text", { x: x + 4, y: y + 15 }, String(QSTATES.reduce((a, k) => a + q[k], 0))));
  });
  return svg;
}

// ---------- queues & statistics ----------
async function stats(main) {
  main.append(h("h1", { text: "Queues & statistics" }));
  const win = h("select", { id: "stats-window", "aria-label": "Window" }, ["15m", "1h", "24h", "7d"].map((w) => h("option", { value: w, text: w, selected: w === "1h" })));
  const updated = h("span", { class: "muted", id: "stats-updated", "aria-live": "polite" });
  const body = h("div", { id: "stats-body" });
  main.append(h("p", {}, h("label", { for: "stats-window", text: "Statistics window" }), win, " ", updated), body);
  const history = [];
  let timer = null;
  let busy = false;
  const refresh = async () => {
    if (busy) return;
    busy = true;
    try {
      const [qs, st] = await Promise.all([api("GET", "/api/v1/queues"), api("GET", `/api/v1/stats?window=${win.value}`)]);
      history.push({ t: Date.now(), thr: st.total.throughput_per_min, ok: st.total.success_rate });
      if (history.length > 120) history.shift();
      clear(body);
      const qt = h("tbody", { id: "queue-rows" });
      for (const q of qs.items) qt.append(h("tr", { "data-queue": q.name }, h("td", { text: q.name }), ...["size", ...QSTATES].map((k) => h("td", { class: "num", text: q[k] })),
        h("td", { class: "num", text: `${q.latency.toFixed(1)} s` }), h("td", { "data-paused": String(q.paused), text: q.paused ? "paused" : "running" }),
        isAdmin() ? h("td", {}, queueToggle(q)) : null));
      const types = st.types.slice().sort((a, b) => (a.type || "").localeCompare(b.type || ""));
      const tot = st.total;
      append(body, [
        h("div", { class: "card" }, h("h2", { text: "Queues" }), h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ["Queue", "Size", ...QSTATES, "Latency", "State", ...(isAdmin() ? ["Intake"] : [])].map((c) => h("th", { scope: "col", text: c })))), qt)),
          queueChart(qs.items), h("div", { class: "legend" }, QSTATES.map((k) => h("span", { class: `s-${k}`, text: k })))),
        h("p", { id: "stats-total" }, `Window ${st.window}: ${tot.completed} completed, ${tot.failed} failed, ${tot.cancelled} cancelled · `,
          `${tot.throughput_per_min.toFixed(2)} per minute · success ${tot.success_rate === null ? "—" : (tot.success_rate * 100).toFixed(1) + " %"} · p95 ${ms(tot.p95_duration_ms)}`),
        h("div", { class: "grid" },
          h("div", { class: "card" }, h("h2", { text: "Throughput (tasks/min), sampled" }), lineChart("Throughput over time", history.map((p) => ({ t: p.t, v: p.thr })), (v) => v.toFixed(2), "line")),
          h("div", { class: "card" }, h("h2", { text: "Success rate, sampled" }), lineChart("Success rate over time", history.map((p) => ({ t: p.t, v: p.ok })), (v) => `${Math.round(v * 100)} %`, "line-ok", 1)),
          h("div", { class: "card" }, h("h2", { text: "Throughput per type" }), barChart("Throughput per type (per minute)", types.map((t) => ({ label: t.type, value: t.throughput_per_min })), (v) => v.toFixed(2), "bar")),
          h("div", { class: "card" }, h("h2", { text: "Success rate per type" }), barChart("Success rate per type", types.map((t) => ({ label: t.type, value: t.success_rate })),
            (v) => `${Math.round(v * 100)} %`, (r) => (r.value !== null && r.value < 0.9 ? "bar-bad" : "bar-ok"))),
          h("div", { class: "card" }, h("h2", { text: "p95 duration per type" }), barChart("p95 duration per type", types.map((t) => ({ label: t.type, value: t.p95_duration_ms })), ms, "bar")))]);
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } finally { busy = false; }
  };
  // Admins pause and resume a queue's intake: workers take no new task from
  // a paused queue; running ones finish.
  const queueToggle = (q) => h("button", { type: "button", class: "secondary", "data-action": q.paused ? "resume" : "pause",
    text: q.paused ? "Resume" : "Pause", "aria-label": `${q.paused ? "Resume" : "Pause"} queue ${q.name}`, onclick: async () => {
      const text = q.paused ? `Let the workers take tasks from queue ${q.name} again?` :
        `Pause queue ${q.name}? Workers take no new task from it until it is resumed; running tasks finish.`;
      if (!(await confirmAction(text))) return;
      try { await api("POST", `/api/v1/queues/${encodeURIComponent(q.name)}/${q.paused ? "resume" : "pause"}`); await refresh(); } catch (e) { showError(main, e); }
    } });
  win.addEventListener("change", () => { history.length = 0; refresh().catch((e) => showError(main, e)); });
  await refresh();
  timer = setInterval(() => refresh().catch(() => {}), 5000);
  state.cleanup.push(() => clearInterval(timer));
  // A finished task changes the statistics: refresh soon after one.
  let soon = null;
  stream("/api/v1/events", (type, t) => {
    if (type === "task" && TERMINAL.has(t.status)) { clearTimeout(soon); soon = setTimeout(() => refresh().catch(() => {}), 500); }
  });
  state.cleanup.push(() => clearTimeout(soon));
}

// ---------- API keys (admins) ----------
async function apiKeys(main) {
  main.append(h("h1", { text: "API keys" }));
  if (!isAdmin()) { main.append(h("p", { class: "notice", text: "Admins only." })); return; }
  const list = await api("GET", "/api/v1/api-keys");
  const shown = h("div", { id: "key-created", "aria-live": "polite" });
  const summary = h("div");
  const name = h("input", { id: "key-name", required: true, maxlength: 100 });
  const krole = h("select", { id: "key-role" }, ["viewer", "operator", "admin"].map((r) => h("option", { value: r, text: r })));
  const exp = h("input", { id: "key-expires_at", type: "datetime-local" });
  const row = (id, label, input, field) => h("div", { class: "form-row" }, h("label", { for: id, text: label }), input, h("span", { class: "field-error", id: `${id}-error`, "data-field": field }));
  const form = h("form", { class: "card", id: "key-form", novalidate: true }, h("h2", { text: "New key" }), summary,
    row("key-name", "Name", name, "name"), row("key-role", "Role", krole, "role"), row("key-expires_at", "Expires (empty: never)", exp, "expires_at"),
    h("button", { type: "submit", text: "Create key" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = { name: name.value.trim(), role: krole.value };
      if (exp.value) body.expires_at = new Date(exp.value).toISOString();
      const k = await api("POST", "/api/v1/api-keys", body);
      await apiKeys(clear(main));
      $("#key-created").append(h("div", { class: "notice" }, h("p", { text: `Key ${k.name} created. It is shown once: copy it now.` }), h("pre", { text: k.key })));
    } catch (err) { if (err instanceof APIError && err.status) showFieldErrors(form, summary, err); else showError(main, err); }
  });
  const tb = h("tbody", { id: "key-rows" });
  if (!list.items.length) tb.append(h("tr", {}, h("td", { colspan: 7, class: "empty", text: "No API keys." })));
  for (const k of list.items) {
    tb.append(h("tr", { "data-key-id": k.id }, h("td", { text: k.name }), h("td", {}, h("code", { text: k.prefix })), h("td", { text: k.role }),
      h("td", {}, time(k.created_at)), h("td", {}, time(k.expires_at)), h("td", {}, time(k.last_used_at)),
      h("td", {}, k.revoked_at ? h("span", {}, "revoked ", time(k.revoked_at)) : h("button", { type: "button", class: "danger", text: "Revoke", onclick: async () => {
        if (!(await confirmAction(`Revoke key ${k.name}? Callers using it are refused at once.`))) return;
        try { await api("DELETE", `/api/v1/api-keys/${encodeURIComponent(k.id)}`); route(); } catch (e) { showError(main, e); }
      } }))));
  }
  main.append(shown, h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Prefix", "Role", "Created", "Expires", "Last used", ""].map((c) => h("th", { scope: "col", text: c })))), tb)), form);
}

// ---------- audit log (admins) ----------
async function auditLog(main, params) {
  main.append(h("h1", { text: "Audit log" }));
  if (!isAdmin()) { main.append(h("p", { class: "notice", text: "Admins only." })); return; }
  const q = Object.fromEntries(params.entries());
  const form = h("form", { class: "card filters", id: "audit-filters" });
  for (const [k, l] of [["actor", "Actor"], ["action", "Action"], ["resource_id", "Resource id"]]) {
    form.append(h("div", {}, h("label", { for: `a-${k}`, text: l }), h("input", { id: `a-${k}`, name: k, value: q[k] || "" })));
  }
  form.append(h("button", { type: "submit", text: "Apply" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const out = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) out.set(k, v);
    location.hash = `#/audit${out.toString() ? "?" + out : ""}`;
  });
  main.append(form);
  const tb = h("tbody", { id: "audit-rows" });
  const pager = h("div", { class: "actions" });
  main.append(h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Resource", "Outcome", "Client", "Details"].map((c) => h("th", { scope: "col", text: c })))), tb)), pager);
  const load = async (cursor) => {
    const qq = new URLSearchParams();
    for (const k of ["actor", "action", "resource_id"]) if (q[k]) qq.set(k, q[k]);
    qq.set("limit", "50");
    if (cursor) qq.set("cursor", cursor);
    const page = await api("GET", `/api/v1/audit?${qq}`);
    if (!cursor) clear(tb);
    clear(pager);
    if (!page.items.length && !cursor) tb.append(h("tr", {}, h("td", { colspan: 7, class: "empty", text: "No entries." })));
    for (const a of page.items) tb.append(h("tr", {}, h("td", {}, time(a.ts)), h("td", { text: a.actor }), h("td", { text: a.action }),
      h("td", { text: `${a.resource_type} ${a.resource_id}` }), h("td", { text: a.outcome + (a.count > 1 ? ` ×${a.count}` : "") }),
      h("td", { text: a.client_ip }), h("td", {}, h("code", { text: JSON.stringify(a.details) }))));
    if (page.next_cursor) pager.append(h("button", { type: "button", class: "secondary", text: "Load more", onclick: () => load(page.next_cursor).catch((e) => showError(main, e)) }));
  };
  await load();
}

// ---------- boot ----------
$("#signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
(async () => {
  let tok = null;
  try { tok = sessionStorage.getItem(KEY); } catch { tok = null; }
  if (!tok) { showSignIn(); return; }
  state.token = tok;
  try {
    state.me = await api("GET", "/api/v1/whoami", undefined, { signingIn: true });
    start();
  } catch (e) {
    if (e.status === 401) signOut("Your session has ended. Sign in again.");
    else { state.token = tok; showSignIn("The API is unreachable; try again when it is back."); }
  }
})();
