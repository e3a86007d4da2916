// Every script of the portal's pages. The pages carry no inline script nor handler
// (Content-Security-Policy: script-src 'self'): values reach this file only through
// data-* attributes and DOM text, never through JavaScript source a template wrote.
"use strict";

// Scripts that call the JSON API send the session's CSRF token, as HTMX does.
window.api = async (method, path, body) => {
  const r = await fetch(path, {method, headers: {"Content-Type": "application/json",
    "X-CSRF-Token": document.querySelector("meta[name=csrf]").content},
    body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
};

const byId = (id) => document.getElementById(id);
const onSubmit = (id, handler) => {
  const form = byId(id);
  if (form) form.addEventListener("submit", async (e) => { e.preventDefault(); await handler(e.target); });
};
const rowData = (button, name) => button.closest("tr").dataset[name];

// Buttons name what they do in data-action; the object is their row's data-*.
const actions = {
  async logout() { await api("POST", "/api/logout").catch(() => {}); location.href = "/login"; },
  async "remove-subscriber"(button) {
    const aor = rowData(button, "aor");
    if (!confirm(`Remove ${aor}?`)) return;
    await api("DELETE", `/api/subscribers/${encodeURIComponent(aor)}`);
    htmx.ajax("GET", "/subscribers", "#subscriber-rows");
  },
  async "reset-password"(button) {
    const aor = rowData(button, "aor");
    const password = prompt(`New SIP password for ${aor}`);
    if (password) { await api("POST", `/api/subscribers/${encodeURIComponent(aor)}/password`, {password}); alert("password reset"); }
  },
  async "hang-up"(button) {
    const callId = rowData(button, "callId");
    if (!confirm("Hang up this call?")) return;
    try { await api("POST", `/api/calls/${encodeURIComponent(callId)}/hangup`); }
    catch (err) { alert(err.message); }
    htmx.ajax("GET", "/calls", "#call-rows");
  },
  async toggle(button) {
    const name = encodeURIComponent(rowData(button, "carrier"));
    try { await api("POST", `/api/carriers/${name}/${button.dataset.on === "true" ? "enable" : "disable"}`); location.reload(); }
    catch (err) { alert(err.message); }
  },
  upload(button) { upload(button, rowData(button, "carrier")); },
};
document.addEventListener("click", async (e) => {
  const button = e.target.closest("[data-action]");
  const action = button && actions[button.dataset.action];
  if (!action) return;
  e.preventDefault();
  try { await action(button); } catch (err) { alert(err.message); }
});

function upload(button, name) {
  const cell = button.parentElement, file = cell.querySelector(".deck-file").files[0];
  const bar = cell.querySelector("progress"), report = cell.querySelector(".deck-report");
  if (!file) { report.className = "deck-report error"; report.textContent = "choose a CSV file first"; return; }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/carriers/${encodeURIComponent(name)}/deck`);
  xhr.setRequestHeader("Content-Type", "text/csv");
  xhr.setRequestHeader("X-Filename", file.name);
  xhr.setRequestHeader("X-CSRF-Token", document.querySelector("meta[name=csrf]").content);
  bar.hidden = false; bar.value = 0; report.textContent = "uploading…";
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total * 100; };
  xhr.upload.onload = () => { bar.removeAttribute("value"); report.textContent = "checking and loading…"; };
  xhr.onload = () => {
    bar.hidden = true;
    const data = JSON.parse(xhr.responseText || "{}");
    if (xhr.status === 200) { report.className = "deck-report ok"; report.textContent = `loaded ${data.rates} rates`; }
    else { report.className = "deck-report error"; report.textContent = data.detail || xhr.statusText; }
  };
  xhr.send(file);
}

onSubmit("login", async (form) => {
  const f = new FormData(form);
  try {
    await api("POST", "/api/login", {username: f.get("username"), password: f.get("password")});
    location.href = "/";
  } catch (err) { byId("login-error").textContent = err.message; }
});

onSubmit("add-subscriber", async (form) => {
  const f = new FormData(form), out = byId("add-result");
  try {
    const s = await api("POST", "/api/subscribers", Object.fromEntries(f.entries()));
    out.className = "ok"; out.textContent = `added ${s.aor}`; form.reset();
    htmx.ajax("GET", "/subscribers", "#subscriber-rows");
  } catch (err) { out.className = "error"; out.textContent = err.message; }
});

onSubmit("set-licence", async (form) => {
  const f = new FormData(form), hours = f.get("grace_hours");
  try {
    await api("POST", "/api/accounts", {name: f.get("name"), licence: Number(f.get("licence")),
      grace_hours: hours === "" ? null : Number(hours)});
    location.reload();
  } catch (err) { const out = byId("licence-result"); out.className = "error"; out.textContent = err.message; }
});

onSubmit("add-did", async (form) => {
  const f = new FormData(form), out = byId("did-result");
  const backups = (f.get("backups") || "").split(",").map(s => s.trim()).filter(Boolean);
  try { await api("POST", "/api/dids", {number: f.get("number"), proxy: f.get("proxy"), backups, account: f.get("account") || ""}); location.reload(); }
  catch (err) { out.className = "error"; out.textContent = err.message; }
});

onSubmit("explain", async (form) => {
  const out = byId("explanation");
  try {
    const number = new FormData(form).get("number");
    const data = await (await fetch(`/api/explain?number=${encodeURIComponent(number)}`)).json();
    out.textContent = data.text ? `(${data.source})\n${data.text}` : data.detail;
  } catch (err) { out.textContent = err.message; }
});

// The dashboard: its first figures come in a JSON data block (not executed), then over SSE.
const fmt = (v, d) => v === null || v === undefined ? "-" : (d === undefined ? String(v) : Number(v).toFixed(d));
const SVG = "http://www.w3.org/2000/svg";
function svgNode(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
function bars(rows) {
  // Inline SVG: two bars per carrier, ASR (0..100 %) and ACD (scaled to the longest).
  // Built as DOM nodes with textContent: a carrier's name is text, never markup.
  if (!rows.length) { const p = document.createElement("p"); p.textContent = "No calls in the last hour."; return p; }
  const maxAcd = Math.max(1, ...rows.map(r => r.acd)), h = 26, w = 300;
  const svg = svgNode("svg", {width: w + 260, height: rows.length * h * 2 + 10, role: "img"});
  rows.forEach((r, i) => {
    const y = i * h * 2 + 4, asr = r.asr * w, acd = r.acd / maxAcd * w;
    svg.append(
      svgNode("text", {x: 0, y: y + 14, "font-size": 12}, String(r.carrier)),
      svgNode("rect", {x: 120, y, width: asr, height: 18, fill: "#2f6fd6"}),
      svgNode("text", {x: 126 + asr, y: y + 14, "font-size": 12}, `ASR ${(r.asr * 100).toFixed(1)} % (${r.calls} calls)`),
      svgNode("rect", {x: 120, y: y + h, width: acd, height: 18, fill: "#2fa36b"}),
      svgNode("text", {x: 126 + acd, y: y + h + 14, "font-size": 12}, `ACD ${Number(r.acd).toFixed(1)} s`));
  });
  return svg;
}
function show(d) {
  const set = (id, v) => { const e = byId(id); if (e) e.textContent = v; };
  set("t-calls", fmt(d.calls)); set("t-cps", fmt(d.cps, 1)); set("t-regs", fmt(d.registrations));
  set("t-today-calls", fmt(d.today && d.today.calls)); set("t-today-cost", fmt(d.today && d.today.cost, 4));
  set("t-at", new Date(d.at * 1000).toISOString().substring(11, 19) + "Z");
  byId("carriers").replaceChildren(bars(d.carriers));
  const body = document.querySelector("#nodes tbody");
  if (body && d.nodes) {
    body.replaceChildren();
    for (const n of d.nodes) {
      const tr = document.createElement("tr");
      const gw = n.gateways_up === null && n.gateways_down === null ? "-" : `${n.gateways_up || 0} up/${n.gateways_down || 0} down`;
      const state = n.detail ? `${n.state} (${n.detail})` : n.state;
      for (const [v, cls] of [[n.role], [n.name], [n.address], [n.version || "-"],
          [state, "state-" + n.state.replaceAll(" ", "-")], [fmt(n.calls)], [fmt(n.cps, 1)],
          [fmt(n.registrations)], [gw], [fmt(n.config_version)], [n.last_error || "-"]]) {
        const td = document.createElement("td"); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }
}
const initial = byId("dashboard-data");
if (initial) {
  show(JSON.parse(initial.textContent));
  const source = new EventSource("/api/live/dashboard");
  source.addEventListener("dashboard", (e) => show(JSON.parse(e.data)));
}
