// The Loligo dashboard: renders what the manager pushes (server-sent events on /api/events).
// No framework, no build step, nothing from the internet. Every value from the cluster goes
// into the page as text (textContent), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

const rate = (n) => `${bytes(n)}/s`;
const count = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en");
const plural = (n, word) => `${count(n)} ${word}${n === 1 ? "" : "s"}`;
const pct = (part, whole) => whole > 0 ? Math.min(100, (100 * part) / whole) : 0;

function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function clock(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8);
}

function stateClass(state) {
  const words = state.split("+");
  if (words.some((w) => ["down", "incomplete", "stale", "inconsistent", "unknown"].includes(w))) return "st-bad";
  if (words.includes("peering")) return "st-peering";
  if (words.some((w) => w.startsWith("recover") || w.startsWith("backfill"))) return "st-recovering";
  if (words.some((w) => ["degraded", "undersized", "remapped"].includes(w))) return "st-degraded";
  if (words.includes("active") && words.includes("clean")) return "st-clean";
  return "st-other";
}

// --- sections -------------------------------------------------------------------------------

function tile(label, value, sub, mood) {
  return el("div", {class: "tile"}, el("div", {class: "label", text: label}),
    el("div", {class: "value" + (mood ? ` ${mood}` : ""), text: value}),
    sub ? el("div", {class: "sub", text: sub}) : null);
}

function renderTiles(s) {
  const tiles = [];
  if (s.mons) {
    const n = s.mons.mons.length, q = s.mons.quorum.length;
    tiles.push(tile("monitors", `${q}/${n}`, q ? "in quorum" : "no quorum", q === n ? "" : q * 2 > n ? "meh" : "bad"));
  }
  if (s.osds) {
    const n = s.osds.length, up = s.osds.filter((o) => o.up).length, inn = s.osds.filter((o) => o.in).length;
    tiles.push(tile("OSDs", `${up}/${n} up`, `${inn} in`, up === n ? "" : "bad"));
  }
  if (s.pgs) {
    const clean = s.pgs.by_state.filter((x) => x.state === "active+clean").reduce((a, x) => a + x.count, 0);
    tiles.push(tile("placement groups", `${clean}/${s.pgs.total}`, "active+clean", clean === s.pgs.total ? "" : "meh"));
  }
  if (s.pools) tiles.push(tile("pools", String(s.pools.length), `${count(s.usage ? s.usage.objects : 0)} objects`));
  const gw = s.gateway && s.gateway.totals;
  if (gw && gw.users !== undefined) tiles.push(tile("gateway", `${gw.buckets} buckets`, `${gw.users} users`));
  $("tiles").replaceChildren(...tiles);
}

function renderHealth(s) {
  renderTiles(s);
  const status = s.health.status;
  const badge = $("health");
  badge.textContent = status;
  badge.dataset.status = status;
  badge.className = "health-badge " + ({HEALTH_OK: "ok", HEALTH_WARN: "warn", HEALTH_ERR: "err"}[status] || "unknown");
  document.title = `${status} · Loligo`;
  const checks = $("checks");
  checks.replaceChildren();
  if (!s.health.checks.length) {
    const pgs = s.pgs ? `${count(s.pgs.total)} placement groups, ` : "";
    $("health-summary").replaceChildren(el("span", {class: "ok-text",
      text: `All checks pass: ${pgs}every copy where it belongs.`}));
    return;
  }
  $("health-summary").textContent = `${s.health.checks.length} check${s.health.checks.length > 1 ? "s" : ""} need${s.health.checks.length > 1 ? "" : "s"} attention:`;
  for (const c of s.health.checks) {
    checks.append(el("li", {class: c.severity === "HEALTH_ERR" ? "err" : "warn"},
      el("span", {class: "code", text: c.code}),
      el("span", {class: "what", text: c.summary}),
      c.detail ? el("div", {class: "fix", text: c.detail}) : null));
  }
}

function renderCapacity(s) {
  const u = s.usage;
  if (!u) return;
  $("cap-used").textContent = bytes(u.used);
  $("cap-total").textContent = `stored, of ${bytes(u.total)}`;
  // the OSDs' own use, then what other files take on the same disks, then what is free
  const mine = pct(u.used, u.total);
  const other = Math.max(0, pct(u.total - u.avail, u.total) - mine);
  const full = mine + other;
  const bar = $("cap-bar");
  bar.style.width = `${Math.max(mine, u.used > 0 ? 0.6 : 0)}%`;
  bar.className = "fill" + (full > 85 ? " err" : full > 70 ? " warn" : "");
  $("cap-other").style.width = `${other}%`;
  $("cap-avail").textContent = `${bytes(u.avail)} (${(100 - full).toFixed(1)}% free)`;
  $("cap-objects").textContent = count(u.objects);
  $("cap-data").textContent = bytes(u.data);
}

function niceMax(v) {
  if (v <= 0) return 1024;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function renderThroughput(s) {
  const io = s.io || {};
  $("io-read").textContent = rate(io.read_bytes_sec || 0);
  $("io-write").textContent = rate(io.write_bytes_sec || 0);
  $("io-recovery").textContent = rate(io.recovery_bytes_sec || 0);
  $("io-ops").textContent = `${(io.read_ops_sec || 0).toFixed(0)} rd, ${(io.write_ops_sec || 0).toFixed(0)} wr /s`;
  const hist = history;
  const chart = $("chart");
  chart.replaceChildren();
  const W = 800, H = 220, L = 64, B = 22, T = 8;
  if (hist.length < 2) {
    chart.append(svg("text", {x: W / 2, y: H / 2, class: "axis", "text-anchor": "middle"}));
    chart.lastChild.textContent = "collecting the first samples…";
    return;
  }
  const t1 = hist[hist.length - 1].t, t0 = hist[0].t;
  const span = Math.max(t1 - t0, 1);
  $("tp-window").textContent = `last ${duration(span)}`;
  const keys = [["read", "read_bytes_sec"], ["write", "write_bytes_sec"], ["recovery", "recovery_bytes_sec"]];
  const top = niceMax(Math.max(...hist.flatMap((p) => keys.map(([, k]) => p[k] || 0))));
  const x = (t) => L + ((t - t0) / span) * (W - L - 6);
  const y = (v) => H - B - (v / top) * (H - B - T);
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    chart.append(svg("line", {x1: L, x2: W - 6, y1: y(v), y2: y(v), class: "grid-line"}));
    const label = svg("text", {x: L - 8, y: y(v) + 4, class: "axis", "text-anchor": "end"});
    label.textContent = i === 0 ? "0" : rate(v);
    chart.append(label);
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (span * i) / 4;
    const label = svg("text", {x: x(t), y: H - 5, class: "axis", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle"});
    label.textContent = i === 4 ? "now" : `-${duration(t1 - t)}`;
    chart.append(label);
  }
  for (const [name, key] of keys) {
    const pts = hist.map((p) => `${x(p.t).toFixed(1)},${y(p[key] || 0).toFixed(1)}`);
    if (name !== "recovery") {
      chart.append(svg("path", {class: `area ${name}`,
        d: `M${x(t0)},${y(0)} L${pts.join(" L")} L${x(t1)},${y(0)} Z`}));
    }
    chart.append(svg("path", {class: `series ${name}`, d: `M${pts.join(" L")}`}));
  }
}

function renderRecovery(s) {
  const r = s.recovery;
  const busy = r && (r.missing > 0 || r.degraded > 0);
  $("recovery-idle").hidden = !!busy;
  $("recovery-busy").hidden = !busy;
  if (!busy) return;
  const done = Math.round(100 * r.progress);
  const down = (s.osds || []).filter((o) => !o.up && o.in).map((o) => `osd.${o.id}`);
  if (r.missing > 0) {  // copies are being made: how far, how fast, how long
    $("rec-pct").textContent = String(done);
    $("rec-unit").textContent = "% recovered";
    $("rec-why").textContent = "copying what the returning or new OSDs lack";
    $("rec-bar").style.width = `${done}%`;
  } else {  // copies are lacking, but nowhere to copy them to yet
    $("rec-pct").textContent = (100 * r.degraded / Math.max(1, r.degraded_total)).toFixed(1);
    $("rec-unit").textContent = "% of copies degraded";
    $("rec-why").textContent = down.length ? `waiting for ${down.join(", ")}: recovery starts when it returns, or when it is marked out and its data re-replicated` : "waiting for the PGs to peer";
    $("rec-bar").style.width = "0%";
  }
  $("rec-degraded").textContent = `${count(r.degraded)} of ${count(r.degraded_total)}`;
  $("rec-missing").textContent = r.missing > 0 ? `${count(r.missing)} copies (~${bytes(r.missing_bytes)})` : "–";
  $("rec-rate").textContent = r.objects_per_sec > 0 ? `${rate(r.bytes_per_sec)}, ${r.objects_per_sec} objects/s` : "–";
  $("rec-eta").textContent = r.eta_seconds !== null ? duration(r.eta_seconds) : "–";
}

function renderMons(s) {
  const m = s.mons;
  const list = $("mons");
  list.replaceChildren();
  if (!m) return;
  $("mon-term").textContent = m.quorum.length ? `quorum ${m.quorum.join(", ")} · term ${m.term}` : "no quorum";
  for (const mon of m.mons) {
    list.append(el("li", {},
      el("span", {class: "dot " + (mon.in_quorum ? "up" : "down")}),
      el("b", {text: `mon.${mon.name}`}),
      mon.leader ? el("span", {class: "tag", text: "leader"}) : null,
      mon.in_quorum ? null : el("span", {class: "tag err", text: mon.last_seen_ago >= 0 ? `silent ${Math.round(mon.last_seen_ago)} s` : "never seen"}),
      el("span", {class: "addr", text: mon.addr})));
  }
}

let session = null;

async function act(body) {
  const resp = await fetch("/api/action", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Loligo-Dashboard": "1"},
    body: JSON.stringify(body)});
  const answer = await resp.json().catch(() => ({}));
  if (!resp.ok) alert(answer.error || `refused (${resp.status})`);
}

function renderOsds(s) {
  const body = $("osds").tBodies[0];
  body.replaceChildren();
  const osds = s.osds || [];
  const up = osds.filter((o) => o.up).length, inn = osds.filter((o) => o.in).length;
  $("osd-summary").textContent = `${osds.length} OSDs: ${up} up, ${inn} in · osdmap epoch ${s.osdmap_epoch ?? "–"}`;
  const flags = $("flags");
  flags.replaceChildren(...(s.flags || []).map((f) => el("span", {class: "tag warn", text: f})));
  if (session) {
    const noout = (s.flags || []).includes("noout");
    flags.append(el("button", {class: "small ghost", type: "button", text: noout ? "unset noout" : "set noout",
      onclick: () => act({action: noout ? "unset_flag" : "set_flag", flag: "noout"})}));
  }
  const byId = Object.fromEntries(osds.map((o) => [o.id, o]));
  for (const host of s.hosts || []) {
    body.append(el("tr", {class: "host"}, el("td", {colspan: 9, text: `host ${host.name}`})));
    for (const id of host.osds) {
      const o = byId[id];
      const p = pct(o.used, o.size);
      const state = o.up ? (o.in ? "up, in" : "up, out") : (o.in ? "down, in" : "down, out");
      const lat = (v) => v === null ? "–" : `${v.toFixed(v < 10 ? 2 : 1)} ms`;
      const usageBar = el("div", {class: "bar"}, el("div", {class: "fill"}));
      usageBar.firstChild.style.width = `${Math.max(p, o.used > 0 ? 0.8 : 0)}%`;
      body.append(el("tr", {class: o.up ? "" : "down", "data-osd": String(o.id)},
        el("td", {}, el("b", {text: `osd.${o.id}`})),
        el("td", {class: "muted", text: o.host}),
        el("td", {}, el("span", {class: "dot " + (o.up ? (o.in ? "up" : "out") : "down")}), " ", state),
        el("td", {class: "num", text: `${o.pgs} (${o.primary_pgs} primary)`}),
        el("td", {}, el("div", {class: "usage"}, usageBar,
          el("span", {text: `${bytes(o.used)} / ${bytes(o.size)}`}))),
        el("td", {class: "num", text: o.up ? o.ops_per_sec.toFixed(1) : "–"}),
        el("td", {class: "num", text: lat(o.op_latency_ms)}),
        el("td", {class: "num", text: lat(o.commit_latency_ms)}),
        el("td", {class: "act"}, session ? el("button", {class: "small " + (o.in ? "danger" : "ghost"), type: "button",
          text: o.in ? "out" : "in", onclick: () => act({action: o.in ? "osd_out" : "osd_in", osd: o.id})}) : null)));
    }
  }
}

function renderPools(s) {
  const pgs = s.pgs;
  const bar = $("pgbar");
  bar.replaceChildren();
  if (pgs && pgs.total) {
    $("pg-summary").textContent = pgs.by_state.map((x) => `${x.count} ${x.state}`).join(" · ");
    for (const x of pgs.by_state) {
      const part = el("div", {class: stateClass(x.state), title: `${x.count} ${x.state}`});
      part.style.width = `${pct(x.count, pgs.total)}%`;
      bar.append(part);
    }
  }
  const body = $("pools").tBodies[0];
  body.replaceChildren();
  for (const p of s.pools || []) {
    const chips = el("div", {class: "chips"}, ...Object.entries(p.pg_states).map(([st, n]) =>
      el("span", {class: "chip " + stateClass(st), text: `${n} ${st}`})));
    body.append(el("tr", {},
      el("td", {}, el("b", {text: p.name})),
      el("td", {class: "num muted", text: String(p.id)}),
      el("td", {class: "num", text: `${p.size}/${p.min_size}`}),
      el("td", {class: "num", text: String(p.pg_num)}),
      el("td", {}, chips),
      el("td", {class: "num", text: count(p.objects)}),
      el("td", {class: "num", text: bytes(p.stored)}),
      el("td", {class: "num", text: bytes(p.max_avail)})));
  }
}

function renderGateway(s) {
  // a cluster without a gateway: no empty card; the events take the row
  const none = !(s.gateways || []).length && !((s.gateway || {}).users || []).length;
  $("card-gateway").hidden = none;
  $("card-gateway").classList.toggle("span-2", hasFs(s));
  $("card-gateway").classList.toggle("span-3", !hasFs(s));
  const list = $("gateways");
  list.replaceChildren();
  for (const g of s.gateways || []) {
    list.append(el("li", {},
      el("span", {class: "dot " + (g.up ? "up" : "down")}),
      el("b", {text: g.name}),
      el("code", {text: g.url}),
      el("span", {class: "muted", text: g.up ? `${g.requests_per_sec.toFixed(1)} req/s · in ${rate(g.received_bytes_sec)} · out ${rate(g.sent_bytes_sec)}${g.errors_per_sec > 0 ? ` · ${g.errors_per_sec.toFixed(1)} errors/s` : ""}` : "not answering"})));
  }
  const data = s.gateway || {users: [], buckets: [], totals: {}};
  const t = data.totals || {};
  $("gw-summary").textContent = t.users !== undefined ? `${t.users} users · ${t.buckets} buckets · ${count(t.objects)} objects · ${bytes(t.bytes)}` : "";
  const users = $("users").tBodies[0];
  users.replaceChildren(...data.users.map((u) => el("tr", {},
    el("td", {}, el("b", {text: u.uid}), u.suspended ? el("span", {class: "tag err", text: "suspended"}) : null,
      u.display_name && u.display_name !== u.uid ? el("div", {class: "muted small", text: u.display_name}) : null),
    el("td", {class: "num", text: String(u.buckets)}),
    el("td", {class: "num", text: count(u.objects)}),
    el("td", {class: "num", text: bytes(u.bytes)}))));
  if (!data.users.length) users.append(el("tr", {}, el("td", {colspan: 4, class: "muted", text: "no users yet"})));
  const buckets = $("buckets").tBodies[0];
  buckets.replaceChildren(...data.buckets.map((b) => el("tr", {},
    el("td", {}, el("b", {text: b.name}), b.versioning !== "off" ? el("span", {class: "tag", text: "versioned"}) : null),
    el("td", {class: "muted", text: b.owner}),
    el("td", {class: "num", text: count(b.objects)}),
    el("td", {class: "num", text: bytes(b.bytes)}))));
  if (!data.buckets.length) buckets.append(el("tr", {}, el("td", {colspan: 4, class: "muted", text: "no buckets yet"})));
}

const hasFs = (s) => !!s.fs && (s.fs.filesystems.length > 0 || s.fs.mdss.length > 0);

function renderFs(s) {
  // a cluster without a file system or MDS: no card; one without a gateway: the whole row
  $("card-fs").hidden = !hasFs(s);
  $("card-fs").classList.toggle("span-3", $("card-gateway").hidden);
  if (!hasFs(s)) return;
  const fs = s.fs;
  const active = fs.mdss.filter((m) => m.state === "active");
  const reqs = active.reduce((n, m) => n + m.requests_per_sec, 0);
  $("fs-summary").textContent = `${plural(fs.clients, "client")} · ${reqs.toFixed(1)} requests/s`;
  $("filesystems").replaceChildren(...fs.filesystems.map((f) => el("li", {},
    el("span", {class: "dot " + (f.joinable && active.length ? "up" : "down")}),
    el("b", {text: f.name}),
    el("span", {class: "muted", text: `pools ${f.metadata_pool}, ${f.data_pool}`}),
    f.joinable ? (active.length ? null : el("span", {class: "tag err", text: "no active MDS"}))
      : el("span", {class: "tag warn", text: "failed (not joinable)"}))));
  if (!fs.filesystems.length) $("filesystems").append(el("li", {class: "muted", text: "no file system yet: loligo fs new NAME META_POOL DATA_POOL"}));
  const ms = (v) => v === null ? "–" : `${v.toFixed(v < 10 ? 2 : 1)} ms`;
  $("mdss").replaceChildren(...fs.mdss.map((m) => el("li", {"data-mds": m.name},
    el("span", {class: "dot " + (m.answering ? "up" : "down")}),
    el("b", {text: `mds.${m.name}`}),
    el("span", {class: "tag" + (m.state === "active" ? " ok" : ""), text: m.state === "active" ? `active (rank ${m.rank})` : m.state}),
    el("span", {class: "muted small", text: !m.answering ? "metrics not answering"
      : m.state === "active" ? `${m.requests_per_sec.toFixed(1)} req/s · ${ms(m.latency_ms)} · ${plural(m.sessions, "session")} · ${count(m.inodes)} inodes cached · ${count(m.unapplied)} to apply`
      : "ready to take over"}),
    el("span", {class: "addr", text: m.addr}))));
  if (!fs.mdss.length) $("mdss").append(el("li", {class: "muted", text: "no MDS running: loligo mds --conf FILE --id a"}));
}

function renderEvents(s) {
  const list = $("events");
  list.replaceChildren(...(s.events || []).map((e) => el("li", {},
    el("time", {text: clock(e.time)}),
    el("span", {class: e.severity, text: e.message}))));
  if (!(s.events || []).length) list.append(el("li", {}, el("span", {class: "empty", text: "nothing has happened since the manager started"})));
}

// the plots' window: whole when the stream (re)starts, then one new point per update
let history = [];
function remember(s) {
  if (s.history) history = s.history.slice();
  else if (s.point && (!history.length || s.point.t > history[history.length - 1].t)) history.push(s.point);
  const oldest = (s.point ? s.point.t : Date.now() / 1000) - (s.history_seconds || 600);
  while (history.length && history[0].t < oldest) history.shift();
}

function render(s) {
  remember(s);
  $("fsid").textContent = `cluster ${s.fsid}`;
  session = s.session;
  $("who").textContent = session ? `signed in as ${session.entity}` : "read-only";
  $("signin").textContent = session ? "Sign out" : "Sign in";
  renderHealth(s);
  renderCapacity(s);
  renderThroughput(s);
  renderRecovery(s);
  renderMons(s);
  renderOsds(s);
  renderPools(s);
  renderGateway(s);
  renderFs(s);
  renderEvents(s);
  lastUpdate = s.updated;
  showAge();
}

let lastUpdate = 0;
function showAge() {
  if (!lastUpdate) return;
  const age = Math.max(0, Date.now() / 1000 - lastUpdate);
  $("updated").textContent = age < 2 ? "updated just now" : `updated ${Math.round(age)} s ago`;
}

// --- live updates and sign-in ---------------------------------------------------------------

let source = null;

function connect() {
  // again after signing in or out: the stream sends the state as its session sees it
  if (source) source.close();
  const live = $("live");
  source = new EventSource("/api/events");
  source.addEventListener("state", (ev) => {
    live.className = "live on";
    live.textContent = "live";
    render(JSON.parse(ev.data));
  });
  source.addEventListener("open", () => { live.className = "live on"; });
  source.addEventListener("error", () => {
    // the browser reconnects by itself; say so meanwhile
    live.className = "live off";
    live.textContent = "reconnecting";
  });
}

function setupLogin() {
  const dialog = $("login");
  $("signin").addEventListener("click", async () => {
    if (session) {
      await fetch("/api/logout", {method: "POST", credentials: "same-origin"});
      session = null;
      connect();
      return;
    }
    $("login-error").hidden = true;
    dialog.showModal();
  });
  $("login-cancel").addEventListener("click", () => dialog.close());
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const resp = await fetch("/api/login", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({entity: $("login-entity").value, key: $("login-key").value})});
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      $("login-error").textContent = answer.error || `refused (${resp.status})`;
      $("login-error").hidden = false;
      return;
    }
    $("login-key").value = "";
    dialog.close();
    connect();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupLogin();
  connect();
  setInterval(showAge, 1000);
});
