// The Bote web console: polls /api/v1/console twice a second and draws the
// mesh as the router that served this page sees it. Plain JavaScript and
// SVG, no dependencies (it is embedded in boted and works offline).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 500;
let state = null;          // last answer of /api/v1/console
let selected = null;       // selected address (string) or null
let lastOk = 0;

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Routers on a circle, in id order so a router keeps its place while others
// come and go; the circle grows with the mesh so 100 routers stay apart.
function layout(ids) {
  const n = ids.length;
  const pos = new Map();
  if (n === 1) { pos.set(ids[0], [0, 0]); return { pos, extent: 120 }; }
  const r = Math.max(120, (n * 46) / (2 * Math.PI));
  ids.forEach((id, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    pos.set(id, [r * Math.cos(a), r * Math.sin(a)]);
  });
  return { pos, extent: r + 60 };
}

// Shortest paths (by link cost) from `from` over the undirected links.
function dijkstra(from, ids, links) {
  const dist = new Map(ids.map((id) => [id, Infinity]));
  const prev = new Map();
  const adj = new Map(ids.map((id) => [id, []]));
  for (const l of links) {
    if (adj.has(l.from) && adj.has(l.to)) {
      adj.get(l.from).push([l.to, l.cost]);
      adj.get(l.to).push([l.from, l.cost]);
    }
  }
  dist.set(from, 0);
  const todo = new Set(ids);
  while (todo.size) {
    let u = null;
    for (const id of todo) if (u === null || dist.get(id) < dist.get(u)) u = id;
    if (dist.get(u) === Infinity) break;
    todo.delete(u);
    for (const [v, c] of adj.get(u)) {
      const d = dist.get(u) + c;
      if (d < dist.get(v) || (d === dist.get(v) && u < prev.get(v))) { dist.set(v, d); prev.set(v, u); }
    }
  }
  return { dist, prev };
}

function linkKey(a, b) { return a < b ? a + "|" + b : b + "|" + a; }

// Where the selected address's messages go from this router: the routers
// with consumers, the closest of them, and the links on the way.
function routeOf(address, me, ids, links) {
  const consumers = new Set(address.routers.filter((r) => ids.includes(r)));
  if (address.local_consumers > 0) consumers.add(me);
  const { dist, prev } = dijkstra(me, ids, links);
  let target = null;
  for (const c of consumers) {
    if (target === null || dist.get(c) < dist.get(target) ||
        (dist.get(c) === dist.get(target) && c < target)) target = c;
  }
  const onPath = new Set();
  const pathLinks = new Set();
  if (target !== null && dist.get(target) !== Infinity) {
    let v = target;
    onPath.add(v);
    while (v !== me) { const u = prev.get(v); pathLinks.add(linkKey(u, v)); onPath.add(u); v = u; }
  }
  return { consumers, target, onPath, pathLinks, cost: target === null ? null : dist.get(target) };
}

function draw() {
  const svg = document.getElementById("graph");
  const topo = state.topology;
  const me = topo.router;
  const ids = topo.routers.map((r) => r.id).sort();
  const { pos, extent } = layout(ids);
  svg.setAttribute("viewBox", `${-extent} ${-extent} ${2 * extent} ${2 * extent}`);
  const big = ids.length > 30;
  const addrs = state.addresses;
  const address = addrs.find((a) => a.address === selected) || null;
  const route = address ? routeOf(address, me, ids, topo.links) : null;

  // Addresses with consumers on each router.
  const addrCount = new Map(ids.map((id) => [id, 0]));
  for (const a of addrs) {
    for (const r of a.routers) if (addrCount.has(r)) addrCount.set(r, addrCount.get(r) + 1);
    if (a.local_consumers > 0) addrCount.set(me, addrCount.get(me) + 1);
  }

  const frag = document.createDocumentFragment();
  const linkLayer = el("g", { class: "links" });
  const labelLayer = el("g", { class: "labels" });
  for (const l of topo.links) {
    if (!pos.has(l.from) || !pos.has(l.to)) continue;
    const [x1, y1] = pos.get(l.from);
    const [x2, y2] = pos.get(l.to);
    const key = linkKey(l.from, l.to);
    const cls = route && route.pathLinks.has(key) ? "link path" : "link";
    const line = el("line", { class: cls, x1, y1, x2, y2, "data-link": key, "data-cost": l.cost });
    line.appendChild(el("title", {}, `${l.from} — ${l.to}, cost ${l.cost}`));
    linkLayer.appendChild(line);
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
    if (!big || (route && route.pathLinks.has(key))) {
      labelLayer.appendChild(el("text", { class: "cost", x: mx, y: my - 3 }, String(l.cost)));
    }
    // Deliveries this router sent over its own links for the address.
    if (address && (l.from === me || l.to === me)) {
      const other = l.from === me ? l.to : l.from;
      const sent = address.to_neighbour[other] || 0;
      labelLayer.appendChild(el("text", { class: "traffic", x: mx, y: my + 12, "data-traffic": key },
        `${sent} msg${sent === 1 ? "" : "s"}`));
    }
  }
  frag.appendChild(linkLayer);
  frag.appendChild(labelLayer);

  const nodeLayer = el("g", { class: "routers" });
  const radius = big ? 8 : 14;
  for (const id of ids) {
    const [x, y] = pos.get(id);
    const cls = ["router"];
    if (id === me) cls.push("self");
    if (route && route.consumers.has(id)) cls.push("consumer");
    if (route && route.onPath.has(id)) cls.push("onpath");
    const g = el("g", { class: cls.join(" "), "data-router": id, transform: `translate(${x},${y})` });
    g.appendChild(el("circle", { r: radius }));
    g.appendChild(el("text", { class: "name", y: -radius - 4 }, id));
    const clients = id === me ? String(state.clients) : "–";
    const counts = `${clients} clients · ${addrCount.get(id)} addr`;
    // On a large mesh only the routers that matter now carry their counts
    // (every router has them in its tooltip).
    if (!big || cls.length > 1 || addrCount.get(id) > 0) {
      g.appendChild(el("text", { class: "counts", y: radius + 11 }, counts));
    }
    const r = topo.routers.find((x) => x.id === id);
    g.appendChild(el("title", {}, `${id}: ${counts}; next hop ${r.next_hop}, cost ${r.cost} from ${me}`));
    nodeLayer.appendChild(g);
  }
  frag.appendChild(nodeLayer);
  svg.replaceChildren(frag);

  // The address list (kept in order; a vanished selection is dropped).
  const list = document.getElementById("addresses");
  const items = addrs.map((a) => {
    const li = document.createElement("li");
    li.dataset.address = a.address;
    li.textContent = a.address;
    if (a.address === selected) li.className = "selected";
    li.onclick = () => { selected = selected === a.address ? null : a.address; draw(); };
    return li;
  });
  list.replaceChildren(...items);
  const detail = document.getElementById("detail");
  if (address) {
    const lines = [`${address.address}`,
      `consumers on: ${[...route.consumers].sort().join(", ") || "none"}`,
      route.target === null ? "no reachable consumer" :
        `closest: ${route.target} (cost ${route.cost}) via ${[...route.onPath].join(" → ")}`,
      `in here: ${address.ingress}, to local consumers: ${address.egress}`,
      `sent to neighbours: ${Object.entries(address.to_neighbour).map(([k, v]) => `${k} ${v}`).join(", ") || "0"}`];
    if (route.target !== null) {
      // onPath was built from the target back; show it from here.
      const path = [...route.onPath].reverse();
      lines[2] = `closest: ${route.target} (cost ${route.cost}) via ${path.join(" → ")}`;
    }
    detail.textContent = lines.join("\n");
  } else {
    detail.textContent = "";
  }
}

async function poll() {
  try {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 2000);
    const r = await fetch("/api/v1/console", { signal: ctl.signal, cache: "no-store" });
    clearTimeout(t);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    state = await r.json();
    lastOk = Date.now();
    const topo = state.topology;
    const status = document.getElementById("status");
    status.className = "";
    status.textContent = `${topo.router} · ${topo.routers.length} routers · ${topo.links.length} links · ` +
      `${state.clients} clients · updated ${new Date(lastOk).toLocaleTimeString()}`;
    status.dataset.routers = topo.routers.length;
    draw();
  } catch (e) {
    const status = document.getElementById("status");
    status.className = "stale";
    status.textContent = `no answer from the router (${e.message}); last update ` +
      (lastOk ? new Date(lastOk).toLocaleTimeString() : "never");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
