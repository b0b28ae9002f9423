// rocktor dashboard: reads /api/v1 (see /api/v1/openapi.json), draws with uPlot.
// Where the page is mounted ("/" standalone, a prefix when embedded); the API sits beside it.
const BASE = new URL(".", location.href).pathname;
// Everything shown is built with textContent, never innerHTML: topic names, keys and bodies
// come from clients.
"use strict";

const POLL_MS = 2000;
const POINTS = 150;
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const when = (ms) => (ms > 0 ? new Date(ms).toLocaleString() : "–");
const bytes = (n) => {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
};

// ---- requests, signed when ACL is on ------------------------------------------------------

const creds = {
  get() { try { return JSON.parse(sessionStorage.getItem("rocktor-creds") || "null"); } catch { return null; } },
  set(c) { sessionStorage.setItem("rocktor-creds", JSON.stringify(c)); },
  clear() { sessionStorage.removeItem("rocktor-creds"); },
};

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));

// The HTTP API's string to sign: METHOD, Content-MD5, Content-Type, Date, the x-mq-* headers
// sorted by name, the target. Browsers may not set Date, so x-mq-date carries it.
async function signedHeaders(method, target, contentType, body, c) {
  const h = {};
  if (!window.crypto || !crypto.subtle) throw new Error("signing needs a secure context: open the dashboard on localhost or over HTTPS");
  const enc = new TextEncoder();
  const mq = [["x-mq-date", new Date().toUTCString()]];
  if (body !== undefined) mq.push(["x-mq-content-sha256", hex(await crypto.subtle.digest("SHA-256", enc.encode(body)))]);
  mq.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const text = [method, "", contentType || "", ""].join("\n") + "\n" + mq.map(([k, v]) => `${k}:${v}\n`).join("") + target;
  const key = await crypto.subtle.importKey("raw", enc.encode(c.sk), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const sig = b64(await crypto.subtle.sign("HMAC", key, enc.encode(text)));
  for (const [k, v] of mq) h[k] = v;
  h["authorization"] = `MQ ${c.ak}:${sig}`;
  return h;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, payload) {
  const target = BASE + "api/v1" + path;
  const body = payload === undefined ? undefined : JSON.stringify(payload);
  const headers = body === undefined ? {} : { "content-type": "application/json" };
  const c = creds.get();
  if (c) Object.assign(headers, await signedHeaders(method, target, headers["content-type"], body, c));
  const r = await fetch(target, { method, headers, body });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const code = (data && data.code) || String(r.status);
    if (["MissingAuthorizationHeader", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"].includes(code)) showLogin(data.message);
    throw new ApiError(r.status, code, (data && data.message) || text);
  }
  return data;
}

function showLogin(why) {
  $("#login").hidden = false;
  $("#login-error").textContent = creds.get() ? why || "" : "";
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  creds.set({ ak: $("#login-ak").value.trim(), sk: $("#login-sk").value });
  $("#login").hidden = true;
  refresh();
});

function status(text, bad) {
  const s = $("#status");
  s.textContent = text;
  s.className = bad ? "bad" : "muted";
}

// ---- views --------------------------------------------------------------------------------

const views = ["overview", "topics", "groups", "messages", "dlq", "alarms", "acl"];
function current() { const v = location.hash.slice(1); return views.includes(v) ? v : "overview"; }
function show() {
  const v = current();
  for (const name of views) $(`#view-${name}`).hidden = name !== v;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === v);
  refresh();
}
window.addEventListener("hashchange", show);

function fill(table, rows) {
  const tbody = $(table).querySelector("tbody");
  tbody.replaceChildren(...rows);
}

// ---- overview: live rates and backlog -----------------------------------------------------

const series = { t: [], in: [], out: [], backlog: [] };
let last = null;
let rateChart = null;
let backlogChart = null;

function chartWidth(id) { return Math.max(320, $(id).parentElement.clientWidth - 16); }

function drawCharts() {
  if (typeof uPlot === "undefined") return;
  const data = [series.t, series.in, series.out];
  if (!rateChart) {
    rateChart = new uPlot({
      width: chartWidth("#chart-rates"), height: 220,
      series: [{}, { label: "in", stroke: "#1f6feb", width: 2 }, { label: "out", stroke: "#16a34a", width: 2 }],
      axes: [{}, { size: 60 }],
    }, data, $("#chart-rates"));
    backlogChart = new uPlot({
      width: chartWidth("#chart-backlog"), height: 220,
      series: [{}, { label: "backlog", stroke: "#d97706", width: 2, fill: "rgba(217,119,6,.1)" }],
      axes: [{}, { size: 60 }],
    }, [series.t, series.backlog], $("#chart-backlog"));
  } else {
    rateChart.setData(data);
    backlogChart.setData([series.t, series.backlog]);
  }
}

async function overview() {
  const o = await api("GET", "/overview");
  const t = o.now / 1000;
  if (last && t > last.t) {
    const dt = t - last.t;
    series.t.push(t);
    series.in.push(Math.max(0, (o.messagesIn - last.in) / dt));
    series.out.push(Math.max(0, (o.messagesOut - last.out) / dt));
    series.backlog.push(o.backlog);
    for (const k of Object.keys(series)) if (series[k].length > POINTS) series[k].shift();
    $("#rate-in").textContent = num(Math.round(series.in.at(-1)));
    $("#rate-out").textContent = num(Math.round(series.out.at(-1)));
  }
  last = { t, in: o.messagesIn, out: o.messagesOut };
  $("#backlog").textContent = num(o.backlog);
  const conns = Object.values(o.connections).reduce((a, b) => a + b, 0);
  $("#connections").textContent = num(conns);
  $("#connections-by").textContent = Object.entries(o.connections).map(([p, n]) => `${p} ${n}`).join(" · ");
  $("#disk").textContent = `${(o.diskUsedRatio * 100).toFixed(1)}%`;
  $("#store-bytes").textContent = `store ${bytes(o.storeBytes)}${o.writable ? "" : " · WRITES REFUSED"}`;
  $("#counts").textContent = `${num(o.topics)} / ${num(o.groups)}`;
  drawCharts();
}

function topicRow(t, full) {
  const cells = [
    el("td", {}, el("a", { class: "link", onclick: () => { location.hash = "topics"; topicDetail(t.name); } }, t.name)),
    el("td", {}, t.messageType),
    el("td", { class: "num" }, full ? `${t.readQueues}/${t.writeQueues}` : t.readQueues),
  ];
  if (full) cells.push(el("td", {}, t.perm));
  cells.push(el("td", { class: "num" }, num(t.messages)), el("td", {}, when(t.lastStoreTime)));
  if (full) cells.push(el("td", {}, el("button", { onclick: () => deleteTopic(t.name) }, "Delete")));
  return el("tr", {}, cells);
}

async function homeTopics() {
  const topics = await api("GET", "/topics");
  fill("#home-topics", topics.map((t) => topicRow(t, false)));
}

// ---- topics -------------------------------------------------------------------------------

async function topics() {
  const list = await api("GET", "/topics");
  fill("#topics", list.map((t) => topicRow(t, true)));
}

async function topicDetail(name) {
  const t = await api("GET", `/topics/${encodeURIComponent(name)}`);
  $("#topic-detail").replaceChildren(
    el("h3", {}, `Topic ${t.name}`),
    el("p", { class: "muted" }, `groups: ${t.groups.join(", ") || "none"}`),
    el("table", {}, el("thead", {}, el("tr", {}, ["Queue", "Min offset", "Max offset", "Last stored"].map((h) => el("th", {}, h)))),
      el("tbody", {}, t.queues.map((q) => el("tr", {}, el("td", {}, q.queueId), el("td", { class: "num" }, num(q.minOffset)),
        el("td", { class: "num" }, num(q.maxOffset)), el("td", {}, when(q.lastStoreTime)))))),
  );
}

async function deleteTopic(name) {
  if (!confirm(`Delete topic ${name} and its messages?`)) return;
  await guarded(api("DELETE", `/topics/${encodeURIComponent(name)}`));
  topics();
}

$("#topic-create").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  await guarded(api("POST", "/topics", { name: f.get("name"), queues: Number(f.get("queues")), messageType: f.get("messageType") }));
  topics();
});

// ---- groups -------------------------------------------------------------------------------

async function groups() {
  const list = await api("GET", "/groups");
  fill("#groups", list.map((g) => el("tr", {},
    el("td", {}, el("a", { class: "link", onclick: () => groupDetail(g.name) }, g.name)),
    el("td", { class: "num" }, g.online), el("td", { class: "num" }, num(g.lag)), el("td", { class: "num" }, g.retryMaxTimes),
    el("td", {}, g.consumeMessageOrderly ? "orderly" : "concurrent"),
    el("td", {}, el("a", { class: "link", onclick: () => { location.hash = "dlq"; $("#dlq-form").group.value = g.name; dlq(g.name); } }, "dead letters")))));
}

async function groupDetail(name) {
  const [c, lag] = await Promise.all([api("GET", `/groups/${encodeURIComponent(name)}/consumers`), api("GET", `/groups/${encodeURIComponent(name)}/lag`)]);
  $("#group-detail").replaceChildren(
    el("h3", {}, `Group ${name}`),
    el("p", {}, "Subscriptions: ", c.subscriptions.map((s) => `${s.topic} (${s.expressionType} ${s.expression})`).join("; ") || "none",
      " — ", c.subscriptionConsistent ? el("span", { class: "good" }, "consistent") : el("span", { class: "bad" }, `inconsistent: ${c.inconsistencies.join("; ")}`)),
    el("table", {}, el("thead", {}, el("tr", {}, ["Client", "Address", "Language", "Version"].map((h) => el("th", {}, h)))),
      el("tbody", {}, c.consumers.map((x) => el("tr", {}, el("td", {}, x.clientId), el("td", {}, x.clientAddr), el("td", {}, x.language), el("td", {}, x.version))))),
    el("table", {}, el("thead", {}, el("tr", {}, ["Topic", "Queue", "Broker offset", "Consumer offset", "Lag", "Last stored"].map((h) => el("th", {}, h)))),
      el("tbody", {}, lag.map((q) => el("tr", {}, el("td", {}, q.topic), el("td", {}, q.queueId), el("td", { class: "num" }, num(q.brokerOffset)),
        el("td", { class: "num" }, num(q.consumerOffset)), el("td", { class: "num" }, num(q.lag)), el("td", {}, when(q.lastTimestamp)))))),
  );
}

// ---- messages -----------------------------------------------------------------------------

$("#message-search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const topic = encodeURIComponent(f.get("topic"));
  if (f.get("id")) return messageDetail(f.get("topic"), f.get("id"));
  const q = new URLSearchParams({ max: "64" });
  if (f.get("key")) q.set("key", f.get("key"));
  if (f.get("begin")) q.set("begin", String(new Date(f.get("begin")).getTime()));
  if (f.get("end")) q.set("end", String(new Date(f.get("end")).getTime()));
  const r = await guarded(api("GET", `/topics/${topic}/messages?${q}`));
  if (!r) return;
  fill("#messages", r.messages.map((m) => el("tr", {},
    el("td", {}, el("a", { class: "link", onclick: () => messageDetail(m.topic, m.msgId || m.offsetMsgId) }, m.msgId || m.offsetMsgId)),
    el("td", {}, m.queueId), el("td", { class: "num" }, m.queueOffset), el("td", {}, m.tags || ""), el("td", {}, m.keys || ""),
    el("td", {}, when(m.storeTimestamp)), el("td", { class: "num" }, bytes(m.bodySize)))));
});

async function messageDetail(topic, id) {
  const m = await guarded(api("GET", `/topics/${encodeURIComponent(topic)}/messages/${encodeURIComponent(id)}`));
  if (!m) return;
  const trace = m.msgId ? await api("GET", `/messages/${encodeURIComponent(m.msgId)}/trace?topic=${encodeURIComponent(topic)}`).catch(() => null) : null;
  $("#message-detail").replaceChildren(
    el("h3", {}, `Message ${m.msgId || m.offsetMsgId}`),
    el("pre", {}, JSON.stringify({ ...m, body: undefined }, null, 2)),
    el("h3", {}, "Body"), el("pre", {}, m.body),
    el("h3", {}, "Trace"), el("pre", {}, trace ? JSON.stringify(trace, null, 2) : "no trace"),
  );
}

// ---- dead letters -------------------------------------------------------------------------

$("#dlq-form").addEventListener("submit", (e) => { e.preventDefault(); dlq(new FormData(e.target).get("group")); });

async function dlq(group) {
  const r = await guarded(api("GET", `/groups/${encodeURIComponent(group)}/dlq`));
  if (!r) return;
  fill("#dlq", r.messages.map((m) => el("tr", {},
    el("td", {}, el("input", { type: "checkbox", value: m.queueOffset })), el("td", { class: "num" }, m.queueOffset),
    el("td", {}, m.msgId || ""), el("td", {}, m.originTopic || ""), el("td", { class: "num" }, m.reconsumeTimes),
    el("td", {}, when(m.storeTimestamp)), el("td", {}, (m.body || "").slice(0, 80)))));
  const b = $("#dlq-resend");
  b.hidden = r.messages.length === 0;
  b.onclick = async () => {
    const offsets = [...document.querySelectorAll("#dlq tbody input:checked")].map((i) => Number(i.value));
    const done = await guarded(api("POST", `/groups/${encodeURIComponent(group)}/dlq/resend`, { offsets }));
    if (done) $("#dlq-result").textContent = `re-sent ${done.resent}`;
  };
}

// ---- alarms -------------------------------------------------------------------------------

function alarmBadge(view) {
  const firing = view.points.filter((p) => p.firing).length;
  $("#alarms-firing").textContent = num(firing);
  $("#alarm-count").textContent = String(firing);
  $("#alarm-count").hidden = firing === 0;
  return firing;
}

async function alarms() {
  const a = await api("GET", "/alarms");
  const firing = alarmBadge(a);
  $("#alarms-state").textContent = `${firing} firing · a point every ${a.intervalMs / 1000} s · told again at most every ${a.periodMs / 1000} s · webhook ${a.webhook || "none"} · rules from ${a.rulesFrom === "api" ? "the REST API" : "the config file"}`;
  fill("#alarm-points", a.points.map((p) => el("tr", { class: p.firing ? "firing" : "" }, el("td", {}, p.rule), el("td", {}, p.metric),
    el("td", {}, p.subject), el("td", {}, num(p.value)), el("td", {}, num(p.threshold)), el("td", {}, String(p.over)),
    el("td", {}, p.firing ? `FIRING since ${new Date(p.since).toLocaleString()}` : "ok"))));
  fill("#alarm-rules", a.rules.map((r) => el("tr", {}, el("td", {}, r.name), el("td", {}, r.metric), el("td", {}, num(r.threshold)),
    el("td", {}, String(r.points)), el("td", {}, r.group || (r.metric === "lag" || r.metric === "dlq_growth" ? "every group" : "")))));
  fill("#alarm-events", a.events.map((e) => el("tr", { class: e.state === "firing" ? "firing" : "" }, el("td", {}, new Date(e.at).toLocaleString()),
    el("td", {}, e.rule), el("td", {}, e.subject), el("td", {}, e.state + (e.repeated ? " (again)" : "")), el("td", {}, num(e.value)),
    el("td", {}, e.notified ? "queued" : "–"))));
}

// ---- ACL ----------------------------------------------------------------------------------

async function acl() {
  try {
    const r = await api("GET", "/acl/accounts");
    $("#acl-state").textContent = `global allow list: ${r.globalWhiteAddrs.join(", ") || "none"}`;
    fill("#acl", r.accounts.map((a) => el("tr", {}, el("td", {}, a.accessKey), el("td", {}, a.admin ? "yes" : "no"),
      el("td", {}, a.defaultTopicPerm), el("td", {}, a.defaultGroupPerm), el("td", {}, (a.topicPerms || []).join(", ")),
      el("td", {}, (a.groupPerms || []).join(", ")), el("td", {}, a.whiteRemoteAddress || ""))));
  } catch (e) {
    if (e.code === "AclOff") { $("#acl-state").textContent = "ACL is off on this broker (start it with --acl FILE)."; fill("#acl", []); } else throw e;
  }
}

// ---- refresh loop -------------------------------------------------------------------------

async function guarded(p) {
  try { return await p; } catch (e) { status(`${e.code || ""} ${e.message}`, true); return null; }
}

const loaders = {
  overview: () => Promise.all([overview(), homeTopics(), api("GET", "/alarms").then(alarmBadge)]),
  topics, groups, messages: async () => {}, dlq: async () => {}, alarms, acl,
};

async function refresh() {
  try {
    await loaders[current()]();
    status(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    status(`${e.code || "error"}: ${e.message}`, true);
  }
}

async function start() {
  const info = await guarded(api("GET", "/broker"));
  if (info) $("#broker-name").textContent = `${info.clusterName} / ${info.brokerName} · ${info.brokerAddr} · v${info.version}`;
  show();
  setInterval(() => { if (current() === "overview" || current() === "alarms") refresh(); }, POLL_MS);
}

start();
