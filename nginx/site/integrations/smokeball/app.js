"use strict";
// The Smokeball settings page. It reads and changes everything through the integration's routes
// (API below), authenticated by the user's CaseHug JWT: the host app hands it over in the URL
// fragment (#token=..., never a query string: fragments reach no server log) or by postMessage
// when it embeds the page; the page keeps it in sessionStorage only.

const API = "/api/v1/integrations/smokeball/";
const TOKEN_KEY = "casehug.token";
const NAME_KEY = "casehug.name";
const FINISHED = ["succeeded", "dead", "superseded"];
const $ = (id) => document.getElementById(id);

// The callback's ?smokeball=error&reason= codes (docs/connection.md), in words.
const CALLBACK_REASONS = {
  invalid_state: "the sign-in link expired or was already used. Connect again.",
  access_denied: "access was denied on Smokeball's sign-in page.",
  authorization_failed: "Smokeball refused the authorization. Try again.",
  token_exchange_failed: "Smokeball did not accept the sign-in. Try again.",
  smokeball_unavailable: "Smokeball is not answering. Try again in a few minutes.",
  account_in_use: "that Smokeball account is connected to another CaseHug firm.",
  different_account: "this firm is connected to another Smokeball account: disconnect it first.",
  not_configured: "Smokeball integration is not configured on this server.",
  service_unavailable: "CaseHug is unavailable. Try again in a few minutes.",
};

const RECONNECT_REASONS = {
  refresh_token_expired: "Smokeball's sign-in ran out",
  invalid_grant: "Smokeball no longer accepts the sign-in (revoked or expired)",
};

let current = null; // the last status answer
let historyCursor = null;

class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `The request failed (HTTP ${status}).`);
    this.status = status;
    this.code = error && error.code;
    this.field = error && error.field;
  }
}

async function api(method, route, { query, body } = {}) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = API + route + (query ? "?" + new URLSearchParams(query) : "");
  const response = await fetch(url, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (response.status === 401) signOut("Your CaseHug sign-in has expired. Sign in again.");
  if (!response.ok) throw new ApiError(response.status, answer && answer.error);
  return answer;
}

// ---- small DOM helpers (text only: nothing from an answer is ever parsed as HTML) ----

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function duration(seconds) {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 360) / 10} h`;
}

function details(list, pairs) {
  list.replaceChildren();
  for (const [term, value] of pairs) {
    if (value === undefined) continue;
    list.append(element("dt", term), element("dd", value === null ? "—" : value));
  }
}

function notify(text, kind) {
  const notice = $("notice");
  notice.replaceChildren(element("p", text, { class: kind }));
  notice.hidden = false;
}

function setMessage(id, text) {
  $(id).textContent = text;
}

// ---- signing in: the host app's token, or a demo user (DEMO_MODE only) ----

function takeTokenFromFragment() {
  const handed = new URLSearchParams(location.hash.slice(1)).get("token");
  if (handed) {
    sessionStorage.setItem(TOKEN_KEY, handed);
    sessionStorage.removeItem(NAME_KEY);
  }
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
}

function listenForHostToken() {
  if (window.parent === window) return;
  window.addEventListener("message", (event) => {
    // Only the CaseHug page embedding this one, on this origin, may hand over a token.
    if (event.origin !== location.origin || event.source !== window.parent) return;
    const data = event.data || {};
    if (data.type !== "casehug:token" || typeof data.token !== "string") return;
    sessionStorage.setItem(TOKEN_KEY, data.token);
    sessionStorage.removeItem(NAME_KEY);
    start();
  });
  window.parent.postMessage({ type: "casehug:ready" }, location.origin);
}

async function showSignIn() {
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  const list = $("demo-users");
  list.replaceChildren();
  // demo-users.json exists only when the server runs with DEMO_MODE=1 (scripts/run).
  const response = await fetch("demo-users.json", { cache: "no-store" }).catch(() => null);
  if (!response || !response.ok) return;
  const demo = await response.json().catch(() => null);
  if (!demo || !Array.isArray(demo.users)) return;
  $("sign-in-text").textContent = "Demo mode: choose a demo user.";
  for (const user of demo.users) {
    const role = user.role === "firm_admin" ? "firm administrator" : "standard user";
    const button = element("button", `Sign in as ${user.name} (${role})`, { type: "button" });
    button.addEventListener("click", () => {
      sessionStorage.setItem(TOKEN_KEY, user.token);
      sessionStorage.setItem(NAME_KEY, `${user.name} (${role})`);
      start();
    });
    list.append(element("li"));
    list.lastChild.append(button);
  }
}

function signOut(text) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(NAME_KEY);
  current = null;
  for (const panel of Object.keys(following)) following[panel]++;
  if (text) notify(text, "bad");
  showSignIn();
}

function showCallbackResult() {
  const query = new URLSearchParams(location.search);
  const result = query.get("smokeball");
  if (!result) return;
  if (result === "connected") {
    notify("Connected to Smokeball.", "ok");
  } else {
    const reason = CALLBACK_REASONS[query.get("reason")] || "something went wrong. Try again.";
    notify("Smokeball was not connected: " + reason, "bad");
  }
  // Shown once: a reload does not repeat it.
  history.replaceState(null, "", location.pathname);
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showSignIn();
  try {
    await loadStatus();
  } catch (error) {
    if (error.status !== 401) notify(error.message, "bad");
    return;
  }
  $("sign-in").hidden = true;
  $("app").hidden = false;
  loadMappings().catch((error) => setMessage("mappings-source", error.message));
  loadHistory().catch((error) => setMessage("history-empty", error.message));
  const running = current.import;
  if (running && !FINISHED.includes(running.status)) followJob("sync-job", "Import from Smokeball", running.job_id);
}

// ---- status: connection card, toggles, advanced ----

async function loadStatus() {
  current = await api("GET", "status");
  renderStatus(current);
}

function renderStatus(status) {
  const admin = status.can_manage_settings;
  const name = sessionStorage.getItem(NAME_KEY) || (admin ? "Firm administrator" : "Standard user");
  $("who-name").textContent = "Signed in: " + name;
  $("who").hidden = false;
  $("read-only").hidden = admin;
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = !admin;
  renderConnection(status, admin);
  for (const input of document.querySelectorAll("input[data-setting]")) {
    input.checked = status.settings[input.dataset.setting] === true;
    input.disabled = !admin;
  }
  renderWebhooks(status);
}

function renderConnection(status, admin) {
  const account = status.smokeball || {};
  $("connection-state").textContent = status.connected
    ? `Connected to ${account.firm_name || "Smokeball"}`
    : "Not connected to Smokeball.";
  details($("connection-details"), status.connected ? [
    ["Smokeball firm", account.firm_name],
    ["Region", account.region],
    ["Smokeball user", [account.user_name, account.user_email].filter(Boolean).join(", ") || null],
    ["Connected by", status.connected_by ? status.connected_by.name || status.connected_by.email : null],
    ["Connected on", when(status.connected_at)],
    ["Access token renews", when(status.token_expires_at)],
    ["Sign-in valid until", when(status.refresh_token_expires_at)],
  ] : []);
  const warnings = [];
  if (status.needs_reconnect) {
    const reason = RECONNECT_REASONS[status.needs_reconnect_reason] || status.needs_reconnect_reason;
    warnings.push(`Reconnect Smokeball: ${reason}. Syncs wait until then.`);
  } else if (status.reconnect_by) {
    warnings.push(`Smokeball's sign-in runs out on ${when(status.reconnect_by)}: reconnect before then to keep syncing.`);
  }
  if (warnings.length && !admin) warnings.push("Ask a firm administrator to reconnect.");
  $("connection-warning").textContent = warnings.join(" ");
  $("connection-warning").hidden = warnings.length === 0;
  $("connect-form").hidden = !admin || (status.connected && !status.needs_reconnect);
  $("connect").textContent = status.connected ? "Reconnect to Smokeball" : "Connect to Smokeball";
  if (account.region) $("region").value = account.region;
  $("disconnect").hidden = !admin || !status.connected;
}

function renderWebhooks(status) {
  const subscription = status.webhook_subscription;
  const delivery = status.webhook_delivery || {};
  const health = {
    verified: `working: the last check event (noop) arrived ${when(delivery.noop_arrived_at)}`,
    waiting: `waiting: a check event (noop) was sent ${when(delivery.noop_sent_at)} and has not arrived`,
    unchecked: "not checked yet",
  }[delivery.state] || delivery.state;
  const last = status.last_webhook;
  const failed = status.failed_links || {};
  const night = status.last_reconciliation;
  details($("webhook-details"), [
    ["Webhook subscription", subscription ? subscription.id : "none"],
    ["Events", subscription ? subscription.event_types.join(", ") : undefined],
    ["Registered", subscription ? when(subscription.ensured_at) : undefined],
    ["Delivery", health],
    ["Last noop received", when(delivery.noop_arrived_at)],
    ["Last event", last ? `${last.event_type}, ${when(last.received_at)}` : "none yet"],
    ["Events waiting / failed", `${status.webhook_events.pending} / ${status.webhook_events.failed}`],
    ["Links that failed", `${failed.matters || 0} matters, ${failed.contacts || 0} contacts` +
      (failed.latest ? ` (latest: ${failed.latest.message})` : "")],
    ["Nightly check", night ? `${night.run_date}: ${night.status}, ${night.drift} changes caught` : "not run yet"],
  ]);
  $("ensure-webhooks").disabled = !status.connected;
}

async function changeSetting(event) {
  const input = event.target;
  const key = input.dataset.setting;
  input.disabled = true;
  try {
    current = await api("PATCH", "status", { body: { [key]: input.checked } });
    renderStatus(current);
    setMessage("settings-message", "Saved.");
  } catch (error) {
    input.checked = !input.checked;
    input.disabled = false;
    setMessage("settings-message", error.message);
  }
}

async function connect(event) {
  event.preventDefault();
  $("connect").disabled = true;
  try {
    const answer = await api("GET", "connect", { query: { region: $("region").value } });
    location.assign(answer.authorize_url);
  } catch (error) {
    notify(error.message, "bad");
    $("connect").disabled = false;
  }
}

async function disconnect() {
  if (!confirm("Disconnect Smokeball? Syncs stop until someone connects again; settings and history stay.")) return;
  try {
    const answer = await api("POST", "disconnect");
    const errors = answer.webhook_errors || [];
    notify("Disconnected from Smokeball." + (errors.length ? " Some webhooks could not be deleted at Smokeball." : ""), "ok");
    await loadStatus();
    await loadMappings();
  } catch (error) {
    notify(error.message, "bad");
  }
}

// ---- case type mappings ----

async function loadMappings(refresh) {
  const query = refresh ? { include: "mappings", refresh: "1" } : { include: "mappings" };
  const status = await api("GET", "status", { query });
  renderMappings(status.mappings, status.can_manage_settings);
}

function renderMappings(mappings, admin) {
  const rows = $("mappings-rows");
  rows.replaceChildren();
  $("mappings-error").hidden = true;
  if (!mappings) {
    setMessage("mappings-source", "This server does not list matter types.");
    return;
  }
  const types = mappings.matter_types || [];
  $("matter-types").replaceChildren(...types.map((type) => element("option", null, { value: type.name, label: type.category || "" })));
  setMessage("mappings-source", mappings.error
    ? `Smokeball's matter types could not be read: ${mappings.error.message}`
    : `${types.length} Smokeball matter types${mappings.location ? " for " + mappings.location : ""}, read ${when(mappings.fetched_at)}.`);
  let category = null;
  for (const caseType of mappings.case_types) {
    if (caseType.category !== category) {
      category = caseType.category;
      const header = element("tr");
      header.append(element("th", category, { colspan: "3", scope: "colgroup", class: "group" }));
      rows.append(header);
    }
    rows.append(mappingRow(caseType, admin));
  }
}

function mappingRow(caseType, admin) {
  const row = element("tr", null, { "data-key": caseType.key });
  const id = "map-" + caseType.key;
  row.append(element("th", caseType.name, { scope: "row" }));
  row.append(element("td", caseType.default ? caseType.default.name : "none found", { "data-label": "Default" }));
  const cell = element("td", null, { "data-label": "Smokeball matter type" });
  cell.append(element("label", `Smokeball matter type for ${caseType.name}`, { for: id, class: "visually-hidden" }));
  const input = element("input", null, {
    id, list: "matter-types", autocomplete: "off", placeholder: "Default", "data-key": caseType.key,
    "aria-describedby": id + "-problem",
  });
  input.defaultValue = caseType.override || "";
  input.readOnly = !admin;
  cell.append(input);
  const effective = caseType.effective ? caseType.effective.name : "no matter type: a sync would fail";
  cell.append(element("p", "Syncs as: " + effective, { class: "effective" }));
  cell.append(element("p", caseType.problem, { class: "problem", id: id + "-problem" }));
  row.append(cell);
  return row;
}

async function saveMappings(event) {
  event.preventDefault();
  const error = $("mappings-error");
  error.hidden = true;
  setMessage("mappings-message", "");
  const changes = {};
  for (const input of document.querySelectorAll("#mappings-rows input")) {
    input.removeAttribute("aria-invalid");
    const value = input.value.trim();
    if (value !== input.defaultValue) changes[input.dataset.key] = value || null;
  }
  if (Object.keys(changes).length === 0) return setMessage("mappings-message", "Nothing changed.");
  try {
    await api("PATCH", "status", { body: { case_type_mappings: changes } });
    await loadMappings();
    setMessage("mappings-message", "Mappings saved.");
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
    const key = (failure.field || "").replace(/^case_type_mappings\./, "");
    const input = key && document.querySelector(`#mappings-rows input[data-key="${CSS.escape(key)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-errormessage", "mappings-error");
      input.focus();
    }
  }
}

// ---- sync jobs: start, follow with a progress bar and an ETA ----

// A job panel ("sync-job" or "webhooks-job") follows one job at a time; a newer one replaces it.
const following = {};

async function startJob(panel, title, body) {
  try {
    const answer = await api("POST", "sync", { body });
    await followJob(panel, title, answer.job_id);
  } catch (error) {
    showJob(panel, title);
    $(panel + "-progress").value = 0;
    setMessage(panel + "-text", error.message);
  }
}

function showJob(panel, title) {
  $(panel).hidden = false;
  $(panel + "-title").textContent = title;
}

async function followJob(panel, title, jobID) {
  const mine = (following[panel] = (following[panel] || 0) + 1);
  showJob(panel, title);
  for (;;) {
    const job = await api("GET", "sync", { query: { job_id: jobID } });
    if (mine !== following[panel]) return;
    renderJob(panel, job);
    if (FINISHED.includes(job.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await Promise.all([loadHistory(), loadStatus()]).catch(() => {});
}

function renderJob(panel, job) {
  const bar = $(panel + "-progress");
  const { done, total, failed } = job.progress || { done: 0, total: null, failed: 0 };
  if (job.status === "succeeded") {
    bar.max = 1;
    bar.value = 1;
  } else if (total) {
    bar.max = total;
    bar.value = done;
  } else {
    bar.removeAttribute("value"); // indeterminate until the job knows its total
  }
  const counts = total ? `${done} of ${total} done` : done ? `${done} done` : "";
  const failures = failed ? `, ${failed} failed` : "";
  let text = {
    pending: "Waiting to start…",
    running: (counts || "Running") + failures + (job.eta_seconds !== null ? `, about ${duration(job.eta_seconds)} left` : ""),
    succeeded: counts ? `Finished: ${counts}${failures}.` : "Finished.",
    dead: `Failed: ${job.error || "the job stopped"}.`,
    superseded: "Merged with a request already waiting.",
  }[job.status] || job.status;
  if (job.error && job.status !== "dead") text += ` (last attempt: ${job.error}; retrying)`;
  setMessage(panel + "-text", text);
}

// ---- history ----

async function loadHistory(more) {
  const query = { limit: "20" };
  if (more && historyCursor) query.cursor = historyCursor;
  const page = await api("GET", "sync", { query });
  if (!more) $("history-rows").replaceChildren();
  historyCursor = page.next_cursor;
  for (const entry of page.entries) $("history-rows").append(historyRow(entry));
  $("more-history").hidden = !historyCursor;
  $("history-empty").textContent = "No syncs yet.";
  $("history-empty").hidden = $("history-rows").children.length > 0;
  filterHistory();
}

function historyRow(entry) {
  const row = element("tr", null, { "data-status": entry.status });
  const what = entry.action.replace(/[._]/g, " ");
  row.append(element("td", when(entry.created_at), { "data-label": "When" }));
  row.append(element("td", what, { "data-label": "What" }));
  const result = element("td", entry.status, { "data-label": "Result", class: "status-" + entry.status });
  if (entry.error_message) result.append(element("div", entry.error_message, { class: "note" }));
  row.append(result);
  row.append(element("td", entry.matter_id || "—", { "data-label": "Matter" }));
  const actions = element("td");
  if (entry.status === "failed" && entry.job_id) {
    const retry = element("button", "Retry", { type: "button", "aria-label": `Retry ${what}, ${when(entry.created_at)}` });
    retry.addEventListener("click", () => startJob("sync-job", "Retry", { action: "retry", job_id: entry.job_id }));
    actions.append(retry);
  }
  row.append(actions);
  return row;
}

function filterHistory() {
  const only = $("failures-only").checked;
  for (const row of $("history-rows").children) row.hidden = only && row.dataset.status !== "failed";
}

// ---- wiring ----

function wire() {
  $("sign-out").addEventListener("click", () => signOut());
  $("connect-form").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", disconnect);
  for (const input of document.querySelectorAll("input[data-setting]")) input.addEventListener("change", changeSetting);
  $("mappings-form").addEventListener("submit", saveMappings);
  $("refresh-types").addEventListener("click", () => loadMappings(true).catch((error) => setMessage("mappings-source", error.message)));
  $("sync-matter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startJob("sync-job", "Sync matter", { action: "sync_matter", matter_id: $("matter-id").value.trim() });
  });
  $("sync-all").addEventListener("click", () => startJob("sync-job", "Sync all matters", { action: "sync_all" }));
  $("import-matters").addEventListener("click", () => startJob("sync-job", "Import from Smokeball", { action: "import_matters" }));
  $("failures-only").addEventListener("change", filterHistory);
  $("reload-history").addEventListener("click", () => loadHistory());
  $("more-history").addEventListener("click", () => loadHistory(true));
  $("ensure-webhooks").addEventListener("click", () => {
    const button = $("ensure-webhooks");
    button.disabled = true;
    startJob("webhooks-job", "Re-register webhooks", { action: "ensure_webhooks" }).finally(() => { button.disabled = false; });
  });
}

takeTokenFromFragment();
listenForHostToken();
showCallbackResult();
wire();
start();
