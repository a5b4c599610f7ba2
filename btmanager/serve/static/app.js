// bt serve's page: the runs table, a run's page (live log, validation, equity curve, files),
// a sweep's comparison, and a form to queue a run. Plain DOM, no framework, no CDN.
// Everything shown comes from the API and goes into the page as text, never as markup.
"use strict";

const TOKEN_KEY = "bt-serve-token";
const PAGE_SIZE = 50;
const REFRESH_MS = 2000;
const LOG_KEEP = 5000; // lines kept on screen; older ones are dropped
const FINAL = new Set(["completed", "failed", "cancelled"]);

// --- state and helpers ------------------------------------------------------------------

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let needsToken = true;
let stopView = () => {}; // ends the current view's timers and streams

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const result = { ...extra };
  if (token) result.Authorization = `Bearer ${token}`;
  return result;
}

async function api(path, options = {}) {
  const init = { ...options, headers: headers(options.headers || {}) };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401 && needsToken) {
    signOut("The token was refused; enter it again.");
    throw new ApiError(401, "token refused");
  }
  let data = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) data = await response.json();
  if (!response.ok) {
    const message = data && data.error ? data.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

// Local time, compact and unambiguous: 2026-02-10 14:30:22.
function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const two = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`
  );
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function bytes(size) {
  if (size === null || size === undefined) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function scriptName(path) {
  return String(path || "").split(/[\\/]/).pop();
}

// A run id's date part (YYYYMMDD_) is hidden on phones: time and random part stay unique enough
// to read, and the link still carries the whole id.
function runLink(runId) {
  const cut = runId.indexOf("_") + 1;
  return el(
    "a",
    { href: `#/run/${runId}`, title: runId },
    el("span", { class: "id-day", text: runId.slice(0, cut) }),
    runId.slice(cut),
  );
}

function every(ms, action) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await action();
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) console.warn(error);
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// --- sign-in ------------------------------------------------------------------------------

function signOut(message = "") {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  stopView();
  $("#view").replaceChildren();
  $("#login").hidden = false;
  $("#signout").hidden = true;
  $("#login-error").textContent = message;
  $("#token").focus();
}

async function tryToken(candidate) {
  const response = await fetch("/api/backtest/list?limit=1", {
    headers: candidate ? { Authorization: `Bearer ${candidate}` } : {},
  });
  return response.status !== 401;
}

async function start() {
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = $("#token").value.trim();
    $("#login-error").textContent = "";
    if (!(await tryToken(candidate))) {
      $("#login-error").textContent = "That token is not this server's.";
      return;
    }
    token = candidate;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    $("#login").hidden = true;
    $("#signout").hidden = false;
    route();
  });
  $("#signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  every(10000, showHealth);

  // A server started with --no-auth answers without a token: no sign-in then.
  if (await tryToken("")) {
    needsToken = false;
    token = "";
  } else if (!token || !(await tryToken(token))) {
    signOut(token ? "The saved token was refused; enter it again." : "");
    return;
  }
  $("#login").hidden = true;
  $("#signout").hidden = !needsToken;
  route();
}

async function showHealth() {
  const badgeEl = $("#health");
  try {
    const response = await fetch("/api/health", { headers: headers() });
    const data = await response.json();
    badgeEl.className = `health ${data.status === "healthy" ? "ok" : "bad"}`;
    badgeEl.textContent = `${data.status} · ${data.active_runs} running · ${data.queued_runs} queued`;
  } catch {
    badgeEl.className = "health bad";
    badgeEl.textContent = "server unreachable";
  }
}

// --- routing ------------------------------------------------------------------------------

function route() {
  if (needsToken && !token) return;
  stopView();
  stopView = () => {};
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const parts = hash.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = (parts.length === 0 && link.dataset.nav === "runs") || parts[0] === link.dataset.nav;
    link.classList.toggle("active", active);
  }
  const view = $("#view");
  if (parts[0] === "new") stopView = showNew(view);
  else if (parts[0] === "run" && parts[1]) stopView = showRun(view, parts[1]);
  else if (parts[0] === "sweep" && parts[1]) stopView = showSweep(view, parts[1]);
  else stopView = showRuns(view, parts[0] === "runs" ? parts[1] || "" : "");
}

function mount(view, templateId) {
  const fragment = $(templateId).content.cloneNode(true);
  view.replaceChildren(fragment);
}

// --- runs table ---------------------------------------------------------------------------

function showRuns(view, initialStatus) {
  mount(view, "#tpl-runs");
  document.title = "bt · runs";
  let offset = 0;
  const select = $("#runs-status");
  select.value = initialStatus;
  const refresh = async () => {
    const query = new URLSearchParams({ limit: PAGE_SIZE, offset });
    if (select.value) query.set("status", select.value);
    const data = await api(`/api/backtest/list?${query}`);
    renderRuns(data, offset);
  };
  select.addEventListener("change", () => {
    offset = 0;
    refresh();
  });
  $("#runs-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    refresh();
  });
  $("#runs-next").addEventListener("click", () => {
    offset += PAGE_SIZE;
    refresh();
  });
  return every(REFRESH_MS, refresh);
}

function renderRuns(data, offset) {
  const body = $("#runs tbody");
  if (!body) return;
  $("#runs-total").textContent = `(${data.total})`;
  $("#runs-empty").hidden = data.total > 0;
  const rows = data.runs.map((run) => {
    const why = run.status === "failed" || run.status === "cancelled" ? run.error_message || "" : "";
    return el(
      "tr",
      { "data-run": run.run_id },
      el("td", { class: "mono" }, runLink(run.run_id)),
      el("td", {}, badge(run.status)),
      el(
        "td",
        { class: "clip", title: run.script_path },
        scriptName(run.script_path),
        run.sweep_id ? el("a", { class: "small", href: `#/sweep/${run.sweep_id}`, text: " · sweep" }) : null,
      ),
      el("td", { class: "wide clip", title: run.label || "" }, run.label || ""),
      el("td", { class: "wide" }, when(run.created_at)),
      el("td", { class: "num" }, duration(run.duration_seconds)),
      el("td", { class: "wide clip muted", title: why }, why),
    );
  });
  body.replaceChildren(...rows);
  const last = offset + data.runs.length;
  $("#runs-range").textContent = data.total ? `${offset + 1}–${last} of ${data.total}` : "";
  $("#runs-prev").disabled = offset === 0;
  $("#runs-next").disabled = last >= data.total;
}

// --- new run ------------------------------------------------------------------------------

function paramRow(key = "", value = "") {
  const row = el(
    "div",
    { class: "param" },
    el("input", { class: "param-key", placeholder: "key", value: key, "aria-label": "Parameter name" }),
    el("input", { class: "param-value", placeholder: "value", value, "aria-label": "Parameter value" }),
    el("button", { type: "button", class: "quiet", "aria-label": "Remove", text: "×", onclick: () => row.remove() }),
  );
  return row;
}

function showNew(view) {
  mount(view, "#tpl-new");
  document.title = "bt · new run";
  const params = $("#params");
  params.append(paramRow());
  $("#add-param").addEventListener("click", () => params.append(paramRow()));
  $("#new-run").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("#submit-run");
    const body = { script: $("#script").value.trim(), params: {} };
    for (const row of params.querySelectorAll(".param")) {
      const key = $(".param-key", row).value.trim();
      if (key) body.params[key] = $(".param-value", row).value;
    }
    const label = $("#label").value.trim();
    if (label) body.label = label;
    const priority = $("#priority").value;
    if (priority && Number(priority) !== 0) body.priority = Number.parseInt(priority, 10);
    const timeout = $("#timeout").value;
    if (timeout) body.timeout = Number(timeout);
    $("#new-error").textContent = "";
    button.disabled = true;
    try {
      const result = await api("/api/backtest/run", { json: body });
      location.hash = `#/run/${result.run_id}`;
    } catch (error) {
      $("#new-error").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
  $("#script").focus();
  return () => {};
}

// --- one run ------------------------------------------------------------------------------

function showRun(view, runId) {
  mount(view, "#tpl-run");
  document.title = `bt · ${runId}`;
  $("#run-id").textContent = runId;
  const controller = new AbortController();
  let lastStatus = null;
  let stopPolling = () => {};

  const refreshFinalParts = () => {
    loadFiles(runId);
    loadEquity(runId);
  };
  const refresh = async () => {
    let run;
    try {
      run = await api(`/api/backtest/status/${encodeURIComponent(runId)}`);
    } catch (error) {
      $("#run-error").textContent = error.message;
      return;
    }
    $("#run-error").textContent = "";
    renderRun(run);
    if (run.status !== lastStatus) {
      lastStatus = run.status;
      refreshFinalParts();
    }
    if (FINAL.has(run.status)) stopPolling();
  };
  $("#run-cancel").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      await api(`/api/backtest/cancel/${encodeURIComponent(runId)}`, { method: "POST" });
    } catch (error) {
      $("#run-error").textContent = error.message;
    }
    event.target.disabled = false;
    refresh();
  });
  $("#run-validate").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      await api(`/api/backtest/validate/${encodeURIComponent(runId)}`, { method: "POST" });
      await refresh();
    } catch (error) {
      $("#run-error").textContent = error.message;
    }
    event.target.disabled = false;
  });
  stopPolling = every(REFRESH_MS, refresh);
  followLog(runId, controller.signal, refresh);
  return () => {
    stopPolling();
    controller.abort();
  };
}

function fact(name, value) {
  return el("div", {}, el("dt", { text: name }), el("dd", {}, value));
}

function renderRun(run) {
  const status = $("#run-status");
  if (!status) return;
  status.className = `badge ${run.status}`;
  status.textContent = run.status;
  $("#run-cancel").hidden = FINAL.has(run.status);
  $("#run-validate").hidden = run.status === "queued" || run.status === "running";
  const params = Object.entries(run.params || {}).map(([key, value]) => `${key}=${value}`).join("  ");
  const facts = [
    fact("Script", el("span", { class: "mono", title: run.script_path }, scriptName(run.script_path))),
    fact("Parameters", params || "–"),
    fact("Label", run.label || "–"),
    fact("Created", when(run.created_at)),
    fact("Started", when(run.started_at)),
    fact("Finished", when(run.completed_at)),
    fact("Duration", duration(run.duration_seconds)),
    fact("Exit code", run.exit_code === null ? "–" : String(run.exit_code)),
    fact("Peak memory", bytes(run.peak_memory_bytes)),
    fact("CPU", run.cpu_seconds === null ? "–" : `${run.cpu_seconds.toFixed(2)} s`),
  ];
  if (run.sweep_id) facts.push(fact("Sweep", el("a", { href: `#/sweep/${run.sweep_id}`, text: run.sweep_id })));
  if (run.error_message) facts.push(fact("Why", el("span", { class: "error" }, run.error_message)));
  $("#run-facts").replaceChildren(...facts);
  renderValidation(run.validation_results);
}

function renderValidation(report) {
  const box = $("#validation");
  if (!box) return;
  if (!report) {
    box.replaceChildren(el("p", { class: "muted", text: "Not validated yet." }));
    return;
  }
  const parts = [
    el("p", { class: `verdict ${report.valid ? "ok" : "bad"}`, text: report.valid ? "Valid" : "Invalid" }),
  ];
  if (report.errors && report.errors.length) {
    parts.push(el("ul", { class: "findings errors" }, ...report.errors.map((text) => el("li", { text }))));
  }
  if (report.warnings && report.warnings.length) {
    parts.push(el("ul", { class: "findings warnings" }, ...report.warnings.map((text) => el("li", { text }))));
  }
  const checks = Object.entries(report.file_checks || {});
  if (checks.length) {
    const rows = checks.map(([name, check]) =>
      el(
        "tr",
        {},
        el("td", { class: "mono" }, name),
        el("td", { class: "wide" }, check.exists ? "yes" : "no"),
        el("td", { class: "num wide" }, bytes(check.size)),
        el("td", { class: "num" }, check.row_count === null ? "–" : String(check.row_count)),
        el("td", { class: "num" }, String((check.errors || []).length)),
        el("td", { class: "num wide" }, String((check.warnings || []).length)),
      ),
    );
    parts.push(
      el(
        "div",
        { class: "scroll" },
        el(
          "table",
          { class: "table" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              el("th", { text: "File" }),
              el("th", { class: "wide", text: "Exists" }),
              el("th", { class: "num wide", text: "Size" }),
              el("th", { class: "num", text: "Rows" }),
              el("th", { class: "num", text: "Errors" }),
              el("th", { class: "num wide", text: "Warnings" }),
            ),
          ),
          el("tbody", {}, ...rows),
        ),
      ),
    );
  }
  box.replaceChildren(...parts);
}

// The log over server-sent events, read with fetch (EventSource cannot send the token).
async function followLog(runId, signal, onEnd) {
  const log = $("#log");
  const state = $("#log-state");
  let last = null;
  let lines = 0;
  const append = (number, text) => {
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(el("span", { class: "n", text: number }), `${text}\n`);
    lines += 1;
    while (lines > LOG_KEEP && log.firstChild) {
      log.firstChild.remove(); // the number
      log.firstChild.remove(); // its text
      lines -= 1;
    }
    if (nearBottom) log.scrollTop = log.scrollHeight;
  };
  while (!signal.aborted) {
    state.textContent = "streaming…";
    let ended = false;
    try {
      const extra = last === null ? {} : { "Last-Event-ID": String(last) };
      const query = last === null ? "?lines=1000" : "";
      const response = await fetch(`/api/backtest/logs/${encodeURIComponent(runId)}/stream${query}`, {
        headers: headers(extra),
        signal,
      });
      if (response.status === 204) {
        ended = true;
      } else if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        throw new ApiError(response.status, data.error || response.statusText);
      } else {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const event = { type: "message", id: null, data: [] };
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              let data = colon < 0 ? "" : line.slice(colon + 1);
              if (data.startsWith(" ")) data = data.slice(1);
              if (field === "id") event.id = data;
              else if (field === "event") event.type = data;
              else if (field === "data") event.data.push(data);
            }
            if (event.type === "message" && event.id !== null) {
              last = Number(event.id);
              append(last, event.data.join("\n"));
            } else if (event.type === "end") {
              ended = true;
            } else if (event.type === "error") {
              state.textContent = event.data.join(" ");
            }
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500 && error.status !== 429) {
        state.textContent = error.message;
        return;
      }
    }
    if (ended) {
      state.textContent = lines ? `${lines} lines · run finished` : "run finished · empty log";
      if (!lines && !log.textContent) log.textContent = "(no output)";
      onEnd();
      return;
    }
    state.textContent = "reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function loadFiles(runId) {
  const body = $("#files tbody");
  if (!body) return;
  let listing;
  try {
    listing = await api(`/api/backtest/results/${encodeURIComponent(runId)}`);
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted", text: error.message })));
    return;
  }
  if (!listing.files.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted", text: "No files yet." })));
    return;
  }
  body.replaceChildren(
    ...listing.files.map((file) =>
      el(
        "tr",
        {},
        el(
          "td",
          { class: "clip", title: `Download ${file.name}` },
          el("button", { type: "button", class: "link mono", text: file.name, onclick: () => download(runId, file.name) }),
        ),
        el("td", { class: "num" }, bytes(file.size)),
        el("td", { class: "wide" }, when(file.modified)),
      ),
    ),
  );
}

async function download(runId, name) {
  const path = name.split("/").map(encodeURIComponent).join("/");
  const response = await fetch(`/api/backtest/results/${encodeURIComponent(runId)}/${path}`, {
    headers: headers(),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    $("#run-error").textContent = data.error || response.statusText;
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: name.split("/").pop() });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function loadEquity(runId) {
  const box = $("#equity");
  if (!box) return;
  let data;
  try {
    // Only runs that wrote a pnl.csv have a curve: ask for it only then.
    const listing = await api(`/api/backtest/results/${encodeURIComponent(runId)}`);
    if (!(listing.files || []).some((file) => file.name === "pnl.csv")) {
      box.replaceChildren(el("p", { class: "muted", text: "No equity curve (the run wrote no pnl.csv)." }));
      return;
    }
    data = await api(`/api/backtest/plot/${encodeURIComponent(runId)}`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "muted", text: error.message }));
    return;
  }
  const series = data && data.runs && data.runs[0];
  if (!series || !series.cumulative_pnl || series.cumulative_pnl.length < 2) {
    box.replaceChildren(el("p", { class: "muted", text: "No equity curve (too few points in pnl.csv)." }));
    return;
  }
  box.replaceChildren(equityChart(series));
}

function equityChart(series) {
  const width = 640;
  const height = 260;
  const pad = { left: 64, right: 12, top: 12, bottom: 28 };
  const values = series.cumulative_pnl.map(Number);
  const drawdown = (series.drawdown || []).map(Number);
  const low = Math.min(0, ...values, ...drawdown.filter(Number.isFinite));
  const high = Math.max(0, ...values);
  const span = high - low || 1;
  const x = (i) => pad.left + (i / (values.length - 1)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - (v - low) / span) * (height - pad.top - pad.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Equity curve" });
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  root.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }));
  root.append(
    svg("polygon", {
      class: "area",
      points: `${x(0)},${y(0)} ${points} ${x(values.length - 1)},${y(0)}`,
    }),
  );
  if (drawdown.length === values.length) {
    const dd = drawdown.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("polygon", { class: "dd", points: `${x(0)},${y(0)} ${dd} ${x(values.length - 1)},${y(0)}` }));
  }
  root.append(svg("polyline", { class: "curve", points }));
  const label = (text, attrs) => {
    const node = svg("text", attrs);
    node.textContent = text;
    root.append(node);
  };
  const money = (v) => v.toLocaleString(undefined, { maximumFractionDigits: 0 });
  label(money(high), { x: pad.left - 6, y: y(high) + 4, "text-anchor": "end" });
  label(money(low), { x: pad.left - 6, y: y(low) + 4, "text-anchor": "end" });
  if (low < 0 && high > 0) label("0", { x: pad.left - 6, y: y(0) + 4, "text-anchor": "end" });
  const dates = series.dates || [];
  label(dates[0] || "", { x: pad.left, y: height - 8 });
  label(dates[dates.length - 1] || "", { x: width - pad.right, y: height - 8, "text-anchor": "end" });
  return root;
}

// --- a sweep's comparison -----------------------------------------------------------------

function showSweep(view, sweepId) {
  mount(view, "#tpl-sweep");
  document.title = `bt · ${sweepId}`;
  $("#sweep-id").textContent = sweepId;
  let rows = [];
  let columns = [];
  let sortKey = null;
  let descending = false;

  const cell = (row, column) => {
    if (column.kind === "param") return row.params ? row.params[column.name] : undefined;
    if (column.kind === "metric") return row.metrics ? row.metrics[column.name] : undefined;
    return row[column.name];
  };
  const render = () => {
    const sorted = [...rows];
    if (sortKey !== null) {
      const column = columns[sortKey];
      sorted.sort((a, b) => {
        const left = cell(a, column);
        const right = cell(b, column);
        if (left === null || left === undefined) return 1; // missing values last, either way
        if (right === null || right === undefined) return -1;
        const numeric = typeof left === "number" && typeof right === "number";
        const order = numeric ? left - right : String(left).localeCompare(String(right), undefined, { numeric: true });
        return descending ? -order : order;
      });
    }
    const head = $("#compare thead tr");
    head.replaceChildren(
      ...columns.map((column, index) => {
        const th = el("th", {
          class: [column.numeric ? "num" : "", index === sortKey ? (descending ? "desc" : "asc") : ""].join(" ").trim(),
          text: column.title,
          title: "Sort",
        });
        th.addEventListener("click", () => {
          descending = sortKey === index ? !descending : false;
          sortKey = index;
          render();
        });
        return th;
      }),
    );
    $("#compare tbody").replaceChildren(
      ...sorted.map((row) =>
        el(
          "tr",
          {},
          ...columns.map((column) => {
            const value = cell(row, column);
            if (column.name === "run_id") return el("td", { class: "mono" }, runLink(value));
            if (column.name === "status") return el("td", {}, badge(value));
            if (column.name === "duration_seconds") return el("td", { class: "num" }, duration(value));
            const text = value === null || value === undefined ? "–" : typeof value === "number" ? value.toLocaleString(undefined, { maximumFractionDigits: 4 }) : String(value);
            return el("td", { class: column.numeric ? "num" : "" }, text);
          }),
        ),
      ),
    );
  };
  (async () => {
    let data;
    try {
      data = await api(`/api/backtest/compare?${new URLSearchParams({ sweep: sweepId })}`);
    } catch (error) {
      $("#sweep-message").textContent =
        error.status === 501 ? "Comparisons are not available on this server yet." : error.message;
      return;
    }
    rows = data.runs || [];
    columns = [
      { name: "run_id", title: "Run" },
      { name: "label", title: "Label" },
      ...(data.params || []).map((name) => ({ kind: "param", name, title: name })),
      { name: "status", title: "Status" },
      { name: "duration_seconds", title: "Duration", numeric: true },
      ...(data.metrics || []).map((name) => ({ kind: "metric", name, title: name, numeric: true })),
    ];
    $("#sweep-message").textContent = `${rows.length} runs · click a column to sort`;
    render();
  })();
  return () => {};
}

start();
