// The raftorch dashboard: plain JavaScript, no libraries. Reads /api/overview, re-reads it on
// every change the server-sent stream /api/changes reports, and never goes blank on an error.
"use strict";

let state = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// Who showed the error: a background refresh clears only its own, so that the error of a
// user's action stays until the next action (or a click on it).
let errorFrom = "";

function showError(message, from = "action") {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
  errorFrom = message ? from : "";
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the master did not answer: " + err.message);
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (response.status === 401) {
    // The token expired or was revoked: back to the login page.
    window.location.reload();
  }
  if (!response.ok) {
    throw new Error((body && body.error) || ("HTTP " + response.status + " from " + path));
  }
  return body;
}

function fill(id, headers, rows) {
  const table = document.getElementById(id);
  table.replaceChildren(el("tr", {}, ...headers.map(h => el("th", {}, h))));
  if (rows.length === 0) {
    table.append(el("tr", {}, el("td", { colspan: headers.length }, "none")));
  }
  for (const row of rows) table.append(el("tr", {}, ...row.map(c => el("td", {}, c))));
}

function age(ts) {
  if (!ts) return "";
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  return Math.floor(s / 3600) + "h";
}

// Plain byte counts in Kubernetes' binary units, like raftctl prints them.
function memText(value) {
  if (!/^\d+$/.test(value || "")) return value || "";
  let n = Number(value);
  for (const [suffix, f] of [["Gi", 2 ** 30], ["Mi", 2 ** 20], ["Ki", 2 ** 10]]) {
    if (n >= f && n % f === 0) return n / f + suffix;
  }
  return n >= 1024 ? Math.floor(n / 1024) + "Ki" : String(n);
}

function ready(obj) {
  const c = ((obj.status || {}).conditions || []).find(c => c.type === "Ready");
  return c && c.status === "True";
}

function podStatus(p) {
  const st = p.status || {};
  for (const cs of st.containerStatuses || []) {
    const w = (cs.state || {});
    if (w.waiting && w.waiting.reason) return w.waiting.reason;
  }
  return st.phase || "Pending";
}

function render() {
  const s = state;
  document.getElementById("mode").textContent = s.writes ? "read-write" : "read-only";
  const leader = s.masters.find(m => m.role === "leader");
  fill("masters", ["NAME", "ROLE", "TERM", "COMMIT", "LAG", "HEALTHY"], s.masters.map(m => [
    m.name, m.role, m.term, m.commitIndex,
    leader ? Math.max(0, leader.appliedIndex - m.appliedIndex) : "", m.healthy ? "yes" : (m.error || "no")]));
  fill("nodes", ["NAME", "STATUS", "CPU", "MEMORY", "CPU USED", "MEMORY USED"], s.nodes.map(n => {
    const cap = (n.status || {}).capacity || {};
    const u = n.usage || {};
    return [n.metadata.name, el("span", { class: ready(n) ? "ok" : "bad" }, ready(n) ? "Ready" : "NotReady"),
      cap.cpu || "", memText(cap.memory), u.cpu || "", u.memory || ""];
  }));
  fill("deployments", ["NAMESPACE", "NAME", "READY", "SCALE"], s.deployments.map(d => {
    const want = (d.spec || {}).replicas || 0;
    const have = (d.status || {}).readyReplicas || 0;
    const ns = d.metadata.namespace, name = d.metadata.name;
    const scale = s.writes ? el("span", {},
      el("button", { "data-scale": name + ":-1", onclick: () => scaleTo(ns, name, want - 1) }, "−"), " ",
      want, " ",
      el("button", { "data-scale": name + ":+1", onclick: () => scaleTo(ns, name, want + 1) }, "+"), " ",
      el("button", { "data-restart": name, onclick: () => restart(ns, name) }, "restart")) : String(want);
    return [ns, name, have + "/" + want, scale];
  }));
  fill("pods", ["NAMESPACE", "NAME", "STATUS", "RESTARTS", "NODE", "IP", "AGE", ""], s.pods.map(p => {
    const st = p.status || {};
    const restarts = (st.containerStatuses || []).reduce((a, c) => a + (c.restartCount || 0), 0);
    return [p.metadata.namespace, p.metadata.name, podStatus(p), restarts, (p.spec || {}).nodeName || "",
      st.podIP || "", age(p.metadata.creationTimestamp),
      el("button", { "data-logs": p.metadata.name, onclick: () => showLogs(p.metadata.namespace, p.metadata.name) },
        "logs")];
  }));
  fill("services", ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORTS"], s.services.map(v => {
    const spec = v.spec || {};
    return [v.metadata.namespace, v.metadata.name, spec.type || "ClusterIP", spec.clusterIP || "",
      (spec.ports || []).map(p => p.port + (p.nodePort ? ":" + p.nodePort : "") + "/" + (p.protocol || "TCP")).join(",")];
  }));
  const events = s.events.slice().sort((a, b) => Date.parse(b.lastTimestamp || 0) - Date.parse(a.lastTimestamp || 0));
  fill("events", ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], events.slice(0, 100).map(e => [
    age(e.lastTimestamp) + (e.count > 1 ? " (x" + e.count + ")" : ""), e.type || "Normal", e.reason,
    (e.involvedObject.kind || "").toLowerCase() + "/" + e.involvedObject.name, e.message]));
}

async function refresh() {
  try {
    state = await api("/api/overview");
    render();
    if (errorFrom === "refresh") showError("");
  } catch (err) {
    showError("Could not read the cluster: " + err.message, "refresh");
  }
}

async function scaleTo(namespace, name, replicas) {
  try {
    await api("/api/scale/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ replicas }) });
    showError("");
  } catch (err) {
    showError("Could not scale " + name + ": " + err.message);
  }
}

async function restart(namespace, name) {
  try {
    await api("/api/restart/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name), { method: "POST" });
    showError("");
  } catch (err) {
    showError("Could not restart " + name + ": " + err.message);
  }
}

// The open log pane follows its pod live (a server-sent stream) until closed.
let logSource = null;
const LOG_CHARS = 64 * 1024;

function closeLogs() {
  if (logSource) { logSource.close(); logSource = null; }
}

function showLogs(namespace, name) {
  closeLogs();
  document.getElementById("logpane").hidden = false;
  document.getElementById("logpod").textContent = namespace + "/" + name;
  const pre = document.getElementById("logs");
  pre.textContent = "loading…";
  let received = false;
  const source = new EventSource("/api/logs/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name) +
    "?follow=1");
  logSource = source;
  source.addEventListener("log", (e) => {
    if (!received) { pre.textContent = ""; received = true; }
    pre.textContent = (pre.textContent + JSON.parse(e.data)).slice(-LOG_CHARS);
    pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (e) => {
    const why = JSON.parse(e.data);
    if (!received) pre.textContent = "(no output)";
    if (why) showError("The log of " + name + " ended: " + why);
    closeLogs();
  });
  source.onerror = async () => {
    // Not a stream: the server answered with an error (JSON) before it began.
    closeLogs();
    if (received) return;
    pre.textContent = "";
    try {
      await api("/api/logs/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name));
    } catch (err) {
      showError("Could not read the logs of " + name + ": " + err.message);
    }
  };
}

function follow() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/changes");
  source.addEventListener("ready", () => { live.textContent = "live"; live.className = "badge live"; refresh(); });
  source.addEventListener("change", refresh);
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "badge"; };
}

document.getElementById("closelogs").addEventListener("click", () => {
  closeLogs();
  document.getElementById("logpane").hidden = true;
});
document.getElementById("error").addEventListener("click", () => showError(""));
refresh();
follow();
