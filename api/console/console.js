// 值班派单台: polls /api/console every few seconds and dispatches with one click.
// Plain JS, no build step. Every value from the server goes in through textContent (no HTML).
"use strict";

const REFRESH_MS = 5000;
const TOKEN_KEY = "hotline.dispatcherToken";
const COUNTERS = [
  ["new", "新工单"], ["dispatched", "已派单待签收"], ["manual", "待人工派单"],
  ["overdue", "超期"], ["reopened", "重办"], ["supervised", "督办"],
];
const ALERT_QUEUES = new Set(["manual", "overdue", "supervised"]);
const DEADLINE_NAMES = { "签收": "签收超期", "办结": "办结超期", "回访": "回访超期" };

let timer = null;
let busy = false;
let lastState = null;

function $(selector) { return document.querySelector(selector); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function call(method, path, body, key) {
  const headers = { "Authorization": "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { status: response.status, data };
}

function toast(message, isError) {
  const box = $("#toast");
  box.textContent = message;
  box.className = "toast show" + (isError ? " error" : "");
  clearTimeout(box.hideTimer);
  box.hideTimer = setTimeout(() => { box.className = "toast"; }, 4000);
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $("#board").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#who").textContent = "";
}

function time(iso) { return iso ? iso.replace("T", " ").slice(5, 16) : ""; }

function confidenceBar(value) {
  const bar = el("span", "conf" + (value !== null && value < 0.55 ? " low" : ""));
  const fill = el("i");
  fill.style.width = Math.round(Math.max(0, Math.min(1, value || 0)) * 100) + "%";
  bar.appendChild(fill);
  bar.title = "置信度 " + (value === null ? "—" : value.toFixed(2));
  return bar;
}

function orderHead(order) {
  const head = el("div", "head");
  head.appendChild(el("span", "id", order.id));
  head.appendChild(el("span", "title", order.title || "（无标题）"));
  if (order.is_enterprise) head.appendChild(el("span", "tag", "涉企"));
  if (order.appeal_type) head.appendChild(el("span", "tag", order.appeal_type));
  if (order.supervised) head.appendChild(el("span", "tag bad", "督办"));
  for (const kind of order.overdue) head.appendChild(el("span", "tag bad", DEADLINE_NAMES[kind] || kind + "超期"));
  if (order.reopen_count > 0) head.appendChild(el("span", "tag warn", "重办 " + order.reopen_count + " 次"));
  if (order.return_count > 0) head.appendChild(el("span", "tag warn", "退单 " + order.return_count + " 次"));
  return head;
}

function orderMeta(order) {
  const parts = ["受理 " + time(order.received_at)];
  if (order.enterprise_name) parts.push(order.enterprise_name);
  if (order.area) parts.push(order.area);
  if (order.lead_unit) parts.push("主办 " + order.lead_unit);
  if (order.co_units.length) parts.push("协办 " + order.co_units.join("、"));
  if (order.returned_units.length) parts.push("已退单：" + order.returned_units.join("、"));
  if (order.next_due) parts.push("时限 " + time(order.next_due));
  return el("div", "meta", parts.join(" · "));
}

function orderRow(order, withActions) {
  const row = el("div", "order");
  row.dataset.orderId = order.id;
  row.appendChild(orderHead(order));
  row.appendChild(el("div", "snippet", order.snippet));
  row.appendChild(orderMeta(order));
  if (withActions) row.appendChild(dispatchActions(order));
  return row;
}

function dispatchActions(order) {
  const actions = el("div", "actions");
  order.suggestions.forEach((s, i) => {
    const button = el("button", i === 0 ? "primary" : "", "派给 " + s.unit + "（" + s.probability.toFixed(2) + "）");
    button.type = "button";
    button.dataset.unit = s.unit;
    button.dataset.testid = "dispatch-suggestion";
    button.addEventListener("click", () => dispatch(order.id, s.unit, button));
    actions.appendChild(button);
  });
  const select = el("select");
  select.setAttribute("aria-label", "选择其他承办单位");
  select.appendChild(el("option", "", "其他单位…"));
  for (const unit of (lastState ? lastState.units : [])) {
    if (!order.returned_units.includes(unit)) select.appendChild(el("option", "", unit));
  }
  const other = el("button", "", "派单");
  other.type = "button";
  other.addEventListener("click", () => {
    if (select.selectedIndex > 0) dispatch(order.id, select.value, other);
  });
  actions.appendChild(select);
  actions.appendChild(other);
  if (order.reasons.length) actions.appendChild(el("span", "meta", order.reasons[0]));
  return actions;
}

function dispatchedRow(order) {
  const row = orderRow(order, false);
  const why = el("div", "meta");
  why.appendChild(confidenceBar(order.confidence));
  const rules = order.rules.length ? " 规则：" + order.rules.join("、") : "";
  why.appendChild(el("span", "", " " + (order.confidence === null ? "—" : order.confidence.toFixed(2)) + rules));
  if (order.reasons.length) why.appendChild(el("div", "", order.reasons.join("；")));
  row.appendChild(why);
  return row;
}

async function dispatch(orderId, unit, button) {
  if (busy) return;
  busy = true;
  button.disabled = true;
  const key = idempotencyKey();
  try {
    let result = await call("POST", "/api/orders/" + encodeURIComponent(orderId) + "/dispatch", { unit }, key);
    if (result.status >= 500 || result.status === 0) {  // one retry with the same key changes nothing twice
      result = await call("POST", "/api/orders/" + encodeURIComponent(orderId) + "/dispatch", { unit }, key);
    }
    if (result.status === 401) { showLogin("令牌已失效，请重新输入"); return; }
    if (result.status === 200 || result.status === 202) {
      toast("工单 " + orderId + " 已派给 " + unit + (result.status === 202 ? "（已提交，处理中）" : ""));
      await refresh();
    } else {
      toast("派单失败：" + ((result.data && result.data.detail) || ("HTTP " + result.status)), true);
    }
  } catch (e) {
    toast("派单失败：网络异常", true);
  } finally {
    busy = false;
    button.disabled = false;
  }
}

function renderList(name, render) {
  const queue = lastState.queues[name];
  const list = $("#q-" + name + " .list");
  list.replaceChildren();
  if (!queue.orders.length) list.appendChild(el("div", "empty", "暂无"));
  for (const order of queue.orders) list.appendChild(render(order));
  if (queue.count > queue.orders.length) {
    list.appendChild(el("div", "empty", "另有 " + (queue.count - queue.orders.length) + " 件未显示"));
  }
}

function renderCounters() {
  const box = $("#counters");
  box.replaceChildren();
  for (const [name, label] of COUNTERS) {
    const count = lastState.queues[name].count;
    const card = el("div", "counter" + (ALERT_QUEUES.has(name) && count > 0 ? " alert" : ""));
    card.dataset.queue = name;
    card.appendChild(el("b", "", count));
    card.appendChild(el("span", "", label));
    box.appendChild(card);
  }
}

function renderLoad() {
  const body = $("#load tbody");
  body.replaceChildren();
  const max = Math.max(1, ...lastState.load.map((u) => u.open));
  const kinds = { line: "条线", territorial: "街镇", historical: "其他" };
  for (const unit of lastState.load) {
    const tr = el("tr");
    tr.appendChild(el("td", "", unit.unit));
    tr.appendChild(el("td", "", kinds[unit.kind] || unit.kind));
    for (const n of [unit.open, unit.waiting_accept, unit.overdue, unit.supervised]) tr.appendChild(el("td", "num", n));
    const cell = el("td");
    const bar = el("div", "bar");
    bar.style.width = Math.round((unit.open / max) * 100) + "%";
    cell.appendChild(bar);
    tr.appendChild(cell);
    body.appendChild(tr);
  }
  if (!lastState.load.length) {
    const tr = el("tr");
    const td = el("td", "empty", "暂无在办工单");
    td.colSpan = 7;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function render() {
  $("#who").textContent = "派单员：" + lastState.dispatcher;
  $("#mode").textContent = (lastState.mode === "kafka" ? "Kafka 集群" : "内嵌模式") + " · 模型 " + lastState.model_version;
  $("#refreshed").textContent = "刷新于 " + lastState.generated_at.replace("T", " ");
  renderCounters();
  renderList("manual", (o) => orderRow(o, true));
  renderList("overdue", (o) => orderRow(o, false));
  renderList("supervised", (o) => orderRow(o, false));
  renderList("reopened", (o) => orderRow(o, false));
  renderList("new", (o) => orderRow(o, false));
  renderList("dispatched", dispatchedRow);
  renderLoad();
}

async function refresh() {
  if (!token()) { showLogin(""); return; }
  let result;
  try {
    result = await call("GET", "/api/console");
  } catch (e) {
    $("#refreshed").textContent = "刷新失败（网络异常），稍后自动重试";
    return;
  }
  if (result.status === 401 || result.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin((result.data && result.data.detail) || "令牌无效");
    return;
  }
  if (result.status !== 200) {
    $("#refreshed").textContent = "刷新失败：" + ((result.data && result.data.detail) || result.status);
    return;
  }
  const focused = document.activeElement && document.activeElement.tagName === "SELECT";
  lastState = result.data;
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#logout").hidden = false;
  if (!focused) render();  // do not rebuild a dropdown the dispatcher is using
}

function start() {
  refresh();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("#token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("#token").value = "";
  start();
});

$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("已退出");
});

if (token()) start(); else showLogin("");
