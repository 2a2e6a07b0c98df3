// gengate dashboard: a live view of one account's jobs, from the API of the server
// that serves this page.
//
// The API key is kept in sessionStorage (this tab only) and sent in the Authorization
// header of every call, never in a URL. The jobs table is fed by the account's event
// stream (GET /v1/events), read with fetch because EventSource cannot send headers.
// Every value that comes from the API is put in the page as text, never as markup.

import { mountGlbViewer } from "./glb-viewer.js";

const KEY_STORAGE = "gengate.apiKey";
const API_BASE = new URL("./", window.location.href);
const PAGE_SIZE = 50;
const MAX_ROWS = 500;
const ACTIVE = new Set(["queued", "running"]);
const TERMINAL = new Set(["succeeded", "partial", "failed", "cancelled"]);
const MICRO_PER_CREDIT = 10_000;
// Four missed keep-alives at the server's default interval (15 s).
const STALL_MS = 60_000;

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  jobs: new Map(), // job id → latest record
  order: [], // ids of the rows shown, newest first
  filters: { status: "", model: "" },
  cursor: null,
  lastEventId: null,
  stream: null, // AbortController of the event stream
  changeCount: 0, // grows with every record applied; tells a list answer what is newer
  changedAt: new Map(), // job id → changeCount when its record last came in
  selected: null, // job id shown on the job page
  jobPage: null, // the job page's live parts
  balanceTimer: null,
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// -- the API ---------------------------------------------------------------------------------

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${state.key}`, ...extra };
}

async function api(path, { method = "GET", signal } = {}) {
  const response = await fetch(new URL(path, API_BASE), {
    method,
    headers: authHeaders({ Accept: "application/json" }),
    cache: "no-store",
    signal,
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    signOut("The API key was refused (unknown or revoked).");
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Server-sent events from a fetch body: yields {event, data, id} for each event, and
// {data: "", id} for an id without data (the stream's checkpoint). Calls `heard` for
// every chunk, keep-alive comments included.
async function* readEvents(body, heard) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let fields = { event: "", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      heard();
      buffer += value;
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        // A lone "\r" at the end may be the first half of "\r\n": wait for more.
        if (end < 0 || (end === buffer.length - 1 && buffer[end] === "\r")) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (fields.data.length || fields.id !== null) {
            yield { event: fields.event || "message", data: fields.data.join("\n"), id: fields.id };
          }
          fields = { event: "", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the keep-alive
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (name === "data") fields.data.push(text);
        else if (name === "event") fields.event = text;
        else if (name === "id" && !text.includes("\0")) fields.id = text;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Follows the account's event stream for as long as this key is signed in: reconnects
// with Last-Event-ID after a break, and reloads the list once the stream is open again
// (the stream's resume is best effort; the list is the truth).
async function followEvents(key) {
  let delay = 1000;
  while (state.key === key) {
    const controller = new AbortController();
    state.stream = controller;
    // A connection that went silent (no event, no keep-alive) is given up and reopened.
    let stalled = false;
    let watchdog = null;
    const heard = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, STALL_MS);
    };
    try {
      heard();
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const response = await fetch(new URL("v1/events", API_BASE), {
        headers,
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 401) {
        signOut("The API key was refused (unknown or revoked).");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      let open = false;
      for await (const event of readEvents(response.body, heard)) {
        if (event.id) state.lastEventId = event.id;
        if (event.data) {
          applyRecord(JSON.parse(event.data));
        } else if (!open) {
          // The checkpoint: from here on the stream misses nothing, so list now.
          open = true;
          delay = 1000;
          setLive("live");
          reloadJobs().catch(showListError);
        }
      }
      throw new Error("the event stream ended");
    } catch (error) {
      if (state.key !== key || (controller.signal.aborted && !stalled)) return; // signed out
      setLive("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    } finally {
      clearTimeout(watchdog);
    }
  }
}

function setLive(mode) {
  const live = $("live");
  live.dataset.state = mode;
  live.textContent = { live: "live", reconnecting: "reconnecting…", connecting: "connecting…" }[mode];
}

// -- the jobs --------------------------------------------------------------------------------

function matchesFilters(job) {
  const { status, model } = state.filters;
  return (!status || job.status === status) && (!model || job.model === model);
}

function applyRecord(job) {
  const before = state.jobs.get(job.id);
  state.changeCount += 1;
  state.changedAt.set(job.id, state.changeCount);
  state.jobs.set(job.id, job);
  placeRow(job, before === undefined);
  if (state.selected === job.id) updateJobPage(job);
  if (!before || before.status !== job.status) refreshBalanceSoon();
}

function placeRow(job, isNew) {
  const shown = state.order.indexOf(job.id);
  if (!matchesFilters(job)) {
    forget(job.id);
    if (shown >= 0) {
      state.order.splice(shown, 1);
      document.querySelector(`tr[data-job-id="${job.id}"]`)?.remove();
      updateCount();
    }
    return;
  }
  if (shown >= 0) {
    fillRow(document.querySelector(`tr[data-job-id="${job.id}"]`), job);
    return;
  }
  // Ids are time-ordered: the newest job has the greatest id.
  let at = state.order.findIndex((other) => other < job.id);
  if (at < 0) at = state.order.length;
  state.order.splice(at, 0, job.id);
  const row = document.createElement("tr");
  row.dataset.jobId = job.id;
  if (isNew) row.classList.add("fresh");
  row.addEventListener("click", () => {
    window.location.hash = `#/jobs/${job.id}`;
  });
  for (const name of ["id", "status", "model", "progress", "cost", "age"]) {
    const cell = document.createElement("td");
    cell.dataset.col = name;
    if (name === "cost" || name === "age") cell.className = "num";
    row.append(cell);
  }
  fillRow(row, job);
  const body = $("jobs-body");
  body.insertBefore(row, body.children[at] || null);
  while (state.order.length > MAX_ROWS) {
    const dropped = state.order.pop();
    document.querySelector(`tr[data-job-id="${dropped}"]`)?.remove();
    forget(dropped);
  }
  updateCount();
}

// Records of jobs not shown are dropped, so that a dashboard left open stays small.
function forget(jobId) {
  if (state.selected === jobId) return;
  state.jobs.delete(jobId);
  state.changedAt.delete(jobId);
}

function fillRow(row, job) {
  row.dataset.status = job.status;
  const cell = (name) => row.querySelector(`td[data-col="${name}"]`);
  const id = el("span", "job-id mono", shortId(job.id));
  id.title = job.id;
  const prompt = el("span", "prompt", promptOf(job));
  prompt.title = prompt.textContent;
  cell("id").replaceChildren(id, prompt);
  cell("status").replaceChildren(statusBadge(job.status));
  cell("model").replaceChildren(document.createTextNode(job.model), el("span", "modality", job.modality));
  cell("progress").replaceChildren(progressBar(job));
  cell("cost").textContent = costText(job);
  cell("age").dataset.since = job.created_at;
  cell("age").textContent = age(job.created_at);
}

function updateCount() {
  $("jobs-empty").hidden = state.order.length > 0;
  $("jobs-count").textContent = state.order.length ? `${state.order.length} shown` : "";
}

async function reloadJobs() {
  const startedAt = state.changeCount;
  const page = await api(`v1/jobs?${listQuery(null)}`);
  state.order = [];
  $("jobs-body").replaceChildren();
  showRecords(page, startedAt);
}

async function loadMore() {
  if (!state.cursor) return;
  const startedAt = state.changeCount;
  showRecords(await api(`v1/jobs?${listQuery(state.cursor)}`), startedAt);
}

function listQuery(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.filters.status) query.set("status", state.filters.status);
  if (state.filters.model) query.set("model", state.filters.model);
  if (cursor) query.set("cursor", cursor);
  return query;
}

// A list answer can be older than an event that came in while it was on its way: for
// those jobs the event's record stays.
function showRecords(page, startedAt) {
  for (const job of page.jobs) {
    const fresher = (state.changedAt.get(job.id) || 0) > startedAt;
    const record = fresher ? state.jobs.get(job.id) : job;
    if (!fresher) state.jobs.set(job.id, job);
    placeRow(record, false);
    if (state.selected === job.id && !fresher) updateJobPage(job);
  }
  state.cursor = page.has_more ? page.cursor : null;
  $("load-more").hidden = !state.cursor;
  updateCount();
}

function showListError(error) {
  $("jobs-count").textContent = `Could not list the jobs: ${error.message}`;
}

// -- the account -----------------------------------------------------------------------------

async function refreshBalance() {
  const account = await api("v1/account");
  $("account-name").textContent = account.name;
  $("balance-available").textContent = credits(account.available_micro);
  $("balance-reserved").textContent = credits(account.reserved_micro);
}

function refreshBalanceSoon() {
  clearTimeout(state.balanceTimer);
  state.balanceTimer = setTimeout(() => refreshBalance().catch(() => {}), 300);
}

async function loadModels() {
  const { models } = await api("v1/models");
  const select = $("filter-model");
  for (const model of models) {
    const option = el("option", null, model.id);
    option.value = model.id;
    select.append(option);
  }
}

// -- the job page ----------------------------------------------------------------------------

async function showJob(jobId) {
  state.selected = jobId;
  const view = $("job-view");
  view.replaceChildren(el("p", "muted", "Loading…"));
  let job = state.jobs.get(jobId);
  try {
    // Always fetch: the record in the table may lack fields only a read gives (queue position).
    job = await api(`v1/jobs/${encodeURIComponent(jobId)}`);
    state.jobs.set(jobId, job);
  } catch (error) {
    if (!job) {
      view.replaceChildren(backLink(), el("p", "notice", `Could not load the job: ${error.message}`));
      return;
    }
  }
  if (state.selected !== jobId) return;
  buildJobPage(job);
}

function backLink() {
  const link = el("a", "back", "← All jobs");
  link.href = "#/";
  return link;
}

function buildJobPage(job) {
  const page = {
    id: job.id,
    badge: el("span"),
    cancel: el("button", "danger", "Cancel job"),
    notice: el("p", "notice"),
    progress: el("div"),
    facts: el("dl", "facts"),
    error: el("div", "error-box"),
    outputs: el("div", "previews"),
    outputsPanel: el("section", "card panel"),
    outputsKey: null,
    input: el("pre", "json"),
    metadata: el("pre", "json"),
    metadataPanel: el("section", "card panel"),
    webhook: el("dl", "facts"),
    deliveries: el("tbody"),
    webhookPanel: el("section", "card panel"),
    webhookKey: null,
  };
  page.cancel.type = "button";
  page.cancel.addEventListener("click", () => cancelJob(page));
  page.notice.hidden = true;

  const head = el("div", "job-head");
  head.append(el("h1", null, job.id), page.badge, el("span", "spacer"), page.cancel);
  page.outputsPanel.append(el("h2", null, "Outputs"), page.outputs);
  page.metadataPanel.append(el("h2", null, "Metadata"), page.metadata);
  const table = el("table", "deliveries");
  const header = el("tr");
  for (const name of ["Attempt", "Sent", "Answer", "Latency", "Error"]) header.append(el("th", null, name));
  table.append(el("thead"), page.deliveries);
  table.tHead.append(header);
  page.webhookPanel.append(el("h2", null, "Webhook"), page.webhook, table);

  const main = el("div");
  const summary = el("section", "card panel");
  summary.append(page.progress);
  main.append(page.error, page.outputsPanel, page.webhookPanel);
  const side = el("div");
  const details = el("section", "card panel");
  details.append(el("h2", null, "Details"), page.facts);
  const input = el("section", "card panel");
  input.append(el("h2", null, "Input"), page.input);
  side.append(details, input, page.metadataPanel);
  const grid = el("div", "job-grid");
  grid.append(main, side);

  $("job-view").replaceChildren(backLink(), head, page.notice, summary, grid);
  state.jobPage = page;
  updateJobPage(job);
}

function updateJobPage(job) {
  const page = state.jobPage;
  if (!page || page.id !== job.id) return;
  page.badge.replaceWith((page.badge = statusBadge(job.status)));
  page.cancel.hidden = !ACTIVE.has(job.status);
  page.progress.replaceChildren(progressBar(job));

  const facts = [
    ["Model", `${job.model} (${job.modality})`],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Completed", when(job.completed_at)],
    ["Run time", runTime(job)],
    ["Cost", TERMINAL.has(job.status) ? `${costText(job)} ($${job.cost.cost_usd.toFixed(4)})` : "reserved until it ends"],
    ["Attempts", String(job.attempts ?? "–")],
    ["Priority", String(job.priority ?? 0)],
  ];
  if (job.status === "queued" && job.queue_position !== null && job.queue_position !== undefined) {
    facts.push(["Queue position", String(job.queue_position)]);
  }
  if (job.tags && job.tags.length) facts.push(["Tags", job.tags.map((t) => `${t.key}:${t.value}`).join(", ")]);
  page.facts.replaceChildren(...facts.flatMap(([term, value]) => [el("dt", null, term), el("dd", null, value)]));

  page.error.hidden = !job.error;
  if (job.error) page.error.replaceChildren(el("strong", null, job.error.code), document.createTextNode(job.error.message));

  renderOutputs(page, job);
  page.input.textContent = JSON.stringify(job.input, null, 2);
  const hasMetadata = job.metadata && Object.keys(job.metadata).length > 0;
  page.metadataPanel.hidden = !hasMetadata;
  if (hasMetadata) page.metadata.textContent = JSON.stringify(job.metadata, null, 2);
  renderWebhook(page, job);
}

function renderOutputs(page, job) {
  const outputs = (job.result && job.result.outputs) || [];
  // Rebuilt only when the files change: a media element being played stays as it is.
  const key = outputs.map((o) => `${o.asset_id}:${o.expired}`).join(",");
  page.outputsPanel.hidden = outputs.length === 0;
  if (key === page.outputsKey) return;
  page.outputsKey = key;
  page.outputs.replaceChildren(...outputs.map((output, index) => preview(output, index)));
}

function preview(output, index) {
  const figure = el("figure", "preview");
  figure.dataset.contentType = output.content_type;
  const kind = output.content_type.split("/")[0];
  if (output.expired || !output.url) {
    figure.append(el("div", "expired", "File deleted after the retention period"));
  } else if (kind === "image") {
    const image = el("img");
    image.alt = `output ${index + 1}`;
    image.src = output.url;
    figure.append(image);
  } else if (kind === "video") {
    const video = el("video");
    video.controls = true;
    video.preload = "metadata";
    video.src = output.url;
    figure.append(video);
  } else if (kind === "audio") {
    const audio = el("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = output.url;
    figure.append(audio);
  } else if (output.content_type === "model/gltf-binary") {
    const canvas = el("canvas");
    canvas.width = 640;
    canvas.height = 480;
    figure.append(canvas);
    mountGlbViewer(canvas, output.url).catch((error) => {
      canvas.replaceWith(el("div", "expired", `3D preview unavailable: ${error.message}`));
    });
  }
  const caption = el("figcaption");
  const facts = [output.content_type, bytes(output.bytes)];
  if (output.width && output.height) facts.push(`${output.width}×${output.height}`);
  if (output.duration_sec) facts.push(`${output.duration_sec.toFixed(1)} s`);
  caption.append(el("span", null, facts.join(" · ")));
  if (output.url && !output.expired) {
    const link = el("a", null, "Download");
    link.href = output.url;
    link.download = "";
    caption.append(link);
  }
  figure.append(caption);
  return figure;
}

function renderWebhook(page, job) {
  page.webhookPanel.hidden = !job.webhook;
  if (!job.webhook) return;
  const { url, status, attempts } = job.webhook;
  page.webhook.replaceChildren(
    el("dt", null, "URL"), el("dd", "mono", url),
    el("dt", null, "Status"), el("dd", null, status),
    el("dt", null, "Attempts"), el("dd", null, String(attempts)),
  );
  const key = `${status}:${attempts}`;
  if (key === page.webhookKey) return;
  page.webhookKey = key;
  api(`v1/jobs/${encodeURIComponent(job.id)}/webhook-deliveries`)
    .then(({ deliveries }) => {
      if (state.jobPage !== page) return;
      page.deliveries.replaceChildren(...deliveries.map(deliveryRow));
      if (!deliveries.length) {
        const none = el("td", "muted", "No attempt yet.");
        none.colSpan = 5;
        page.deliveries.replaceChildren(el("tr"));
        page.deliveries.firstChild.append(none);
      }
    })
    .catch(() => {});
}

function deliveryRow(delivery) {
  const row = el("tr");
  const answer = delivery.status_code === null ? "no answer" : String(delivery.status_code);
  const ok = delivery.status_code !== null && delivery.status_code < 300;
  row.append(
    el("td", null, String(delivery.attempt)),
    el("td", null, when(delivery.created_at)),
    el("td", ok ? "code-ok" : "code-bad", answer),
    el("td", "num", delivery.latency_ms === null ? "–" : `${delivery.latency_ms} ms`),
    el("td", null, delivery.error || ""),
  );
  return row;
}

async function cancelJob(page) {
  page.cancel.disabled = true;
  page.notice.hidden = true;
  try {
    applyRecord(await api(`v1/jobs/${encodeURIComponent(page.id)}/cancel`, { method: "POST" }));
  } catch (error) {
    page.notice.textContent = `Not cancelled: ${error.message}`;
    page.notice.hidden = false;
  } finally {
    page.cancel.disabled = false;
  }
}

// -- small views and formats -------------------------------------------------------------------

function el(tag, className = null, text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

function statusBadge(status) {
  const badge = el("span", "status", status);
  badge.dataset.status = status;
  return badge;
}

function progressBar(job) {
  const wrap = el("div", "progress");
  const bar = el("div", "bar");
  bar.dataset.status = job.status;
  const fill = el("span");
  const percent = job.status === "succeeded" ? 100 : job.progress;
  fill.style.width = `${percent}%`;
  bar.append(fill);
  let text = `${percent}%`;
  if (job.status === "failed" && job.error) {
    text = job.error.code;
  } else if (job.status === "queued") {
    text = job.queue_position ? `${job.queue_position} ahead` : "waiting";
  } else if (job.scenes_total) {
    text = `${percent}% · ${job.scenes_completed || 0}/${job.scenes_total} scenes`;
  }
  wrap.append(bar, el("span", "progress-text", text));
  return wrap;
}

function promptOf(job) {
  const input = job.input || {};
  const text = input.prompt ?? input.text ?? "";
  return typeof text === "string" ? text : "";
}

function shortId(jobId) {
  return `${jobId.slice(0, 4)}…${jobId.slice(-8)}`;
}

function costText(job) {
  if (!TERMINAL.has(job.status)) return "–";
  return `${formatNumber(job.cost.credits)} cr`;
}

function credits(micro) {
  return `${formatNumber(micro / MICRO_PER_CREDIT)} credits`;
}

function formatNumber(value) {
  return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KB`;
  return `${(count / 1024 / 1024).toFixed(1)} MB`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function runTime(job) {
  if (!job.started_at) return "–";
  const end = job.completed_at ? new Date(job.completed_at) : new Date();
  const seconds = (end - new Date(job.started_at)) / 1000;
  return seconds < 10 ? `${seconds.toFixed(1)}s` : duration(seconds);
}

function age(iso) {
  return duration(Math.max(0, (Date.now() - new Date(iso)) / 1000));
}

function duration(seconds) {
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${Math.floor(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

// -- signing in and out, and the page's two views -------------------------------------------------

async function signIn(key) {
  state.key = key;
  await refreshBalance(); // proves the key (401 otherwise)
  sessionStorage.setItem(KEY_STORAGE, key);
  $("sign-in").hidden = true;
  $("account-bar").hidden = false;
  setLive("connecting");
  loadModels().catch(() => {});
  route();
  followEvents(key);
}

function signOut(message = "") {
  state.key = null;
  state.stream?.abort();
  state.stream = null;
  state.lastEventId = null;
  state.jobs.clear();
  state.changedAt.clear();
  state.order = [];
  state.selected = null;
  state.jobPage = null;
  sessionStorage.removeItem(KEY_STORAGE);
  $("jobs-body").replaceChildren();
  $("account-bar").hidden = true;
  $("jobs-view").hidden = true;
  $("job-view").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").value = "";
  $("sign-in-error").textContent = message;
  $("sign-in-error").hidden = !message;
}

function route() {
  if (!state.key) return;
  const match = /^#\/jobs\/([\w-]+)$/.exec(window.location.hash);
  $("jobs-view").hidden = Boolean(match);
  $("job-view").hidden = !match;
  if (match) {
    showJob(match[1]);
  } else {
    state.selected = null;
    state.jobPage = null;
  }
}

function start() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    const button = event.submitter;
    if (button) button.disabled = true;
    signIn(key)
      .catch((error) => {
        if (state.key === key) signOut(error instanceof ApiError && error.status === 401
          ? "The API key was refused (unknown or revoked)."
          : `Could not reach the server: ${error.message}`);
      })
      .finally(() => {
        if (button) button.disabled = false;
      });
  });
  $("sign-out").addEventListener("click", () => signOut());
  for (const [name, select] of [["status", $("filter-status")], ["model", $("filter-model")]]) {
    select.addEventListener("change", () => {
      state.filters[name] = select.value;
      reloadJobs().catch(showListError);
    });
  }
  $("load-more").addEventListener("click", () => loadMore().catch(showListError));
  window.addEventListener("hashchange", route);
  setInterval(() => {
    for (const cell of document.querySelectorAll("td[data-since]")) cell.textContent = age(cell.dataset.since);
  }, 1000);

  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    signIn(saved).catch(() => signOut("Please sign in again."));
  } else {
    signOut();
  }
}

start();
