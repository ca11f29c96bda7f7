// Drives the boted web console in headless Chromium (playwright-core, the
// Debian chromium) for test_console.py. Talks to the test over stdio: it
// prints one JSON line per phase and, between phases, waits for a line
// from the test (the test kills a router in between).
//
//   node drive.mjs CONSOLE_URL ADDRESS OUT_DIR USER_DATA_DIR
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, address, outDir, userDataDir] = process.argv.slice(2);
const input = readline.createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// What the page draws, read from the SVG and the side panel.
async function graph(page) {
  return page.evaluate(() => ({
    routers: [...document.querySelectorAll("#graph g.router")].map((g) => ({
      id: g.dataset.router, cls: g.getAttribute("class"),
      counts: g.querySelector("text.counts")?.textContent ?? null })),
    links: [...document.querySelectorAll("#graph line.link")].map((l) => ({
      key: l.dataset.link, cost: Number(l.dataset.cost), cls: l.getAttribute("class") })),
    traffic: Object.fromEntries([...document.querySelectorAll("#graph text.traffic")]
      .map((t) => [t.dataset.traffic, t.textContent])),
    addresses: [...document.querySelectorAll("#addresses li")].map((li) => li.dataset.address),
    detail: document.getElementById("detail").textContent,
    status: document.getElementById("status").textContent,
  }));
}

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1100, height: 750 },
});
try {
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => { if (!r.url().includes("/api/v1/console")) errors.push(`${r.url()} failed`); });
  await page.goto(url);
  // Phase 1: the mesh is drawn; select the address.
  await page.waitForFunction(() => document.querySelectorAll("#graph g.router").length === 3
    && document.querySelectorAll("#graph line.link").length === 3, null, { timeout: 20000 });
  const drawn = await graph(page);
  await page.screenshot({ path: `${outDir}/console-mesh.png` });
  await page.locator(`#addresses li[data-address="${address}"]`).click({ timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#graph line.link.path") !== null,
    null, { timeout: 10000 });
  const selected = await graph(page);
  await page.screenshot({ path: `${outDir}/console-address.png` });
  say({ phase: "selected", drawn, selected, errors });
  // Phase 2: the test kills a router; the graph must lose it by itself.
  await lines.next();
  const t0 = Date.now();
  await page.waitForFunction(() => document.querySelectorAll("#graph g.router").length === 2,
    null, { timeout: 30000, polling: 50 });
  const seconds = (Date.now() - t0) / 1000;
  await page.waitForFunction(() => document.querySelector("#graph line.link.path") !== null,
    null, { timeout: 10000 });
  const after = await graph(page);
  await page.screenshot({ path: `${outDir}/console-after-kill.png` });
  say({ phase: "after-kill", seconds, after, errors });
  // Phase 3: legibility at 100 routers. No 100 boted processes on this
  // machine: the page is served a made-up answer of the same shape (a ring
  // of cost 1 with five chords of cost 3 across it, a consumer on
  // R050), and it must draw every router and the cheapest path to R050.
  const ids = Array.from({ length: 100 }, (_, i) => `R${String(i).padStart(3, "0")}`);
  const links = ids.map((id, i) => ({ from: id, to: ids[(i + 1) % 100], cost: 1 }));
  for (let i = 0; i < 50; i += 10) links.push({ from: ids[i], to: ids[(i + 50) % 100], cost: 3 });
  const fake = {
    topology: { router: "R000", links: links.map((l) => (l.from < l.to ? l : { ...l, from: l.to, to: l.from })),
                routers: ids.map((id) => ({ id, next_hop: "?", cost: 0, neighbours: [] })) },
    clients: 4,
    addresses: [{ address: "queue.far", local_consumers: 0, routers: ["R050"], to_neighbour: { R050: 7 },
                  ingress: 7, egress: 0 }],
  };
  await page.route("**/api/v1/console", (route) => route.fulfill({ json: fake }));
  await page.waitForFunction(() => document.querySelectorAll("#graph g.router").length === 100,
    null, { timeout: 10000 });
  await page.locator('#addresses li[data-address="queue.far"]').click({ timeout: 10000 });
  await page.waitForFunction(() => document.querySelector("#graph line.link.path") !== null,
    null, { timeout: 10000 });
  const hundred = await graph(page);
  await page.screenshot({ path: `${outDir}/console-100-routers.png` });
  say({ phase: "hundred", hundred: { routers: hundred.routers.length, links: hundred.links.length,
    path: hundred.links.filter((l) => l.cls.split(" ").includes("path")).map((l) => l.key).sort(),
    detail: hundred.detail }, errors });
} finally {
  await context.close();
  input.close();
}
