// End-to-end test of the operator page (GET /) in headless Chromium, run by
// .ci/browser-test.sh. It serves a copy of examples/db-3.yaml with the real
// binary, opens the page, checks the members appear, changes the file to
// examples/db-5.yaml and sees the plan arrive without a reload, reports
// moves done and turns a member not-ready and sees both live, saves a
// screenshot for the README, and checks the read-token form against a
// coordinator whose reads need a token. Any failed check exits non-zero;
// everything started here is stopped on the way out.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.resolve(root, process.env.RINGLEADER_BIN || 'target/debug/ringleader');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshot = path.resolve(root, process.env.SCREENSHOT || 'docs/operator-page.png');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringleader-browser-'));
const pidFile = process.env.PID_FILE || path.join(work, 'pids');
const WAIT = 20000;

const servers = [];
let context = null;
let failed = false;

function check(condition, what) {
  if (!condition) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// EndpointSlices of `n` ready pods db-0…db-(n-1), 100 per slice, over
// three zones (for the scale run).
function slicesFor(n) {
  const lines = ['apiVersion: v1', 'kind: List', 'items:'];
  for (let s = 0; s < n; s += 100) {
    lines.push('- apiVersion: discovery.k8s.io/v1', '  kind: EndpointSlice', '  metadata:', `    name: db-${s / 100}`,
      '    labels:', '      kubernetes.io/service-name: db', '  addressType: IPv4', '  endpoints:');
    for (let i = s; i < Math.min(n, s + 100); i += 1) {
      lines.push(`  - addresses: ["10.1.${i >> 8}.${i & 255}"]`, '    conditions: {ready: true, serving: true, terminating: false}',
        `    targetRef: {kind: Pod, name: db-${i}}`, `    zone: zone-${'abc'[i % 3]}`);
    }
  }
  return lines.join('\n') + '\n';
}

async function startServer(name, extra, text) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const slices = path.join(dir, 'slices.yaml');
  if (text) fs.writeFileSync(slices, text);
  else fs.copyFileSync(path.join(root, 'examples/db-3.yaml'), slices);
  const port = await freePort();
  const log = fs.openSync(path.join(dir, 'server.log'), 'w');
  const args = ['serve', '--source', 'file:' + slices, '--state', 'file:' + path.join(dir, 'state.json'),
    '--listen', '127.0.0.1:' + port, '--settle', '1s', '--settle-max', '2s', '--down-grace', '5m', ...extra];
  const proc = spawn(bin, args, { stdio: ['ignore', log, log] });
  fs.appendFileSync(pidFile, proc.pid + '\n');
  const server = { name, dir, slices, proc, url: 'http://127.0.0.1:' + port, log: path.join(dir, 'server.log') };
  servers.push(server);
  const deadline = Date.now() + WAIT;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(name + ' exited early: ' + fs.readFileSync(server.log, 'utf8'));
    try {
      const r = await fetch(server.url + '/healthz');
      if (r.ok) break;
    } catch (_) { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(name + ' did not answer /healthz in time');
    await sleep(100);
  }
  return server;
}

function stopAll() {
  for (const s of servers) {
    if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
  }
}

// Collects page errors and console errors (a CSP violation is one).
function watchErrors(page, allowed) {
  const errors = [];
  page.on('pageerror', (e) => errors.push('page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !(allowed || []).some((a) => m.text().includes(a))) errors.push('console: ' + m.text());
  });
  return errors;
}

async function rowCount(page, selector) {
  return page.locator(selector).count();
}

async function main() {
  check(fs.existsSync(bin), 'the binary exists at ' + bin + ' (cargo build -p ringleader, or set RINGLEADER_BIN)');
  const open = await startServer('open', ['--auth', 'none']);
  const userData = path.join(work, 'chromium-profile');
  context = await chromium.launchPersistentContext(userData, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-breakpad', '--disable-crash-reporter'],
    viewport: { width: 1440, height: 1100 },
    timeout: 60000,
  });
  context.setDefaultTimeout(WAIT);
  const page = context.pages()[0] || await context.newPage();
  const errors = watchErrors(page);

  // 1. Three members, no plan.
  await page.goto(open.url + '/');
  await page.waitForSelector('#members tbody tr[data-member="db-2"]');
  await page.waitForSelector('body[data-epoch="1"]');
  check(await rowCount(page, '#members tbody tr[data-member]') === 3, 'the page lists the three members of db-3.yaml');
  check(await rowCount(page, '#members tbody tr[data-state="up"]') === 3, 'all three are up');
  check(await page.locator('#no-plan').isVisible(), 'it says no plan is pending');
  check(await rowCount(page, '#ring-arcs path') >= 3, 'the ring is drawn with arcs');
  await page.waitForSelector('#conn[data-state="live"]');
  check(true, 'the watch stream is live');
  // A marker that a reload would wipe.
  await page.evaluate(() => { window.notReloaded = true; });

  // 2. The file changes to five endpoints: db-3 joins, db-4 is terminating.
  fs.copyFileSync(path.join(root, 'examples/db-5.yaml'), open.slices);
  await page.waitForSelector('#members tbody tr[data-member="db-3"]');
  await page.waitForSelector('#plan-head[data-plan-id]');
  check(await rowCount(page, '#moves tbody tr[data-move]') > 0, 'the plan and its moves appear');
  check(await rowCount(page, '#plan-arcs .move') > 0, 'the moves are drawn on the ring');
  await page.waitForSelector('#outside tbody tr[data-endpoint="db-4"][data-reason="terminating"]');
  check(true, 'db-4 is listed outside the ring as terminating');
  check(await page.locator('#members tbody tr[data-member="db-3"]').getAttribute('data-state') === 'joining', 'db-3 is joining');
  check(await page.evaluate(() => window.notReloaded === true), 'the page did not reload');

  // 3. Shards report moves done: progress moves live.
  const plan = (await (await fetch(open.url + '/v1/plan')).json()).plan;
  const acked = Math.min(4, plan.moves.length - 1);
  for (const m of plan.moves.slice(0, acked)) {
    const r = await fetch(open.url + '/v1/plan/moves/' + m.id + '/done', { method: 'POST' });
    check(r.ok, 'move ' + m.id + ' reported done');
  }
  await page.waitForFunction((n) => (document.getElementById('plan-progress') || {}).textContent.startsWith(n + ' of '), acked);
  check(true, 'the page shows ' + acked + ' moves done');

  // 4. The search narrows the members table.
  await page.fill('#search', 'db-3');
  await page.waitForFunction(() => document.querySelectorAll('#members tbody tr[data-member]').length === 1);
  check(true, 'the member search narrows the table');
  await page.fill('#search', '');
  await page.waitForFunction(() => document.querySelectorAll('#members tbody tr[data-member]').length === 4);

  // Colouring by state: the legend counts members by state.
  await page.selectOption('#colour-by', 'state');
  await page.waitForFunction(() => document.getElementById('legend').textContent.includes('joining (1)'));
  check(await page.locator('#ring-arcs path[data-key="up"]').count() > 0, 'colouring by state draws the ring by state');
  await page.selectOption('#colour-by', 'auto');
  await page.waitForSelector('#ring-arcs path[data-key="db-0"]');

  // The screenshot for the README: a plan in progress, a member joining,
  // one terminating outside the ring.
  await page.locator('#search').blur();
  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  check(fs.statSync(screenshot).size > 10000, 'screenshot saved to ' + path.relative(root, screenshot));
  check(errors.length === 0, 'no script or console errors' + (errors.length ? ': ' + errors.join('; ') : ''));

  // 5. db-1 turns not ready: down, with its grace counting down.
  const text = fs.readFileSync(open.slices, 'utf8');
  const blocks = text.split('  - addresses:');
  const i = blocks.findIndex((b) => b.includes('name: db-1'));
  check(i > 0, 'db-1 is in the file');
  // As the EndpointSlice controller writes a pod that fails its readiness
  // probe: neither ready nor serving (ringleader reads `serving`).
  blocks[i] = blocks[i].replace('ready: true', 'ready: false').replace('serving: true', 'serving: false');
  fs.writeFileSync(open.slices, blocks.join('  - addresses:'));
  await page.waitForSelector('#members tbody tr[data-member="db-1"][data-state="down"]');
  await page.waitForFunction(() => /leaves in \d/.test(document.querySelector('#members tr[data-member="db-1"] .countdown').textContent));
  check(true, 'db-1 shows down, with the time left of its grace');
  check(await page.evaluate(() => window.notReloaded === true), 'still no reload');
  check(errors.length === 0, 'still no script or console errors' + (errors.length ? ': ' + errors.join('; ') : ''));

  // 6. Reads need a token: the page asks for it, then works.
  const tokenFile = path.join(work, 'token');
  const token = 'browser-test-token-' + Math.random().toString(36).slice(2, 12);
  fs.writeFileSync(tokenFile, token + '\n');
  const locked = await startServer('locked', ['--auth-token-file', tokenFile, '--auth-reads']);
  check((await fetch(locked.url + '/v1/status')).status === 401, 'without the token, GET /v1/status is 401');
  const second = await context.newPage();
  const lockedErrors = watchErrors(second, ['401']);
  await second.goto(locked.url + '/');
  await second.waitForSelector('#auth:not([hidden])');
  check(true, 'the page asks for a read token');
  await second.fill('#token', token);
  await second.click('#auth button');
  await second.waitForSelector('#members tbody tr[data-member="db-2"]');
  await second.waitForSelector('#conn[data-state="live"]');
  check(true, 'with the token, the members appear and the watch stream is live');
  check(lockedErrors.length === 0, 'no script errors with a token' + (lockedErrors.length ? ': ' + lockedErrors.join('; ') : ''));

  // 7. Optional scale run: SCALE=MEMBERSxTOKENS (e.g. 1000x256) times the
  // page's first load, then a join, as docs/operations.md reports.
  const scale = /^(\d+)x(\d+)$/.exec(process.env.SCALE || '');
  if (scale) {
    const [n, tokens] = [Number(scale[1]), scale[2]];
    const big = await startServer('scale', ['--auth', 'none', '--tokens-per-member', tokens], slicesFor(n));
    for (let i = 0; ; i += 1) {
      const status = await (await fetch(big.url + '/v1/status')).json();
      if (status.epoch >= 1) break;
      if (i > 600) throw new Error('the scale ring did not commit');
      await sleep(100);
    }
    const third = await context.newPage();
    const scaleErrors = watchErrors(third);
    const started = Date.now();
    await third.goto(big.url + '/');
    await third.waitForSelector(`#members tbody tr[data-member="db-${n - 1}"]`, { timeout: 120000 });
    const loaded = Date.now() - started;
    fs.writeFileSync(big.slices, slicesFor(n + 1));
    const joined = Date.now();
    await third.waitForSelector('#plan-head[data-plan-id]', { timeout: 120000 });
    const redraw = await third.evaluate(() => {
      const t = performance.now();
      draw();
      return performance.now() - t;
    });
    console.log(`scale ${n} x ${tokens}: first load ${loaded} ms; plan on the page ${Date.now() - joined} ms after the file changed (1 s settle included); a full redraw ${redraw.toFixed(0)} ms`);
    check(scaleErrors.length === 0, 'no script errors at scale' + (scaleErrors.length ? ': ' + scaleErrors.join('; ') : ''));
  }
}

const timer = setTimeout(() => {
  console.error('browser test: out of time');
  stopAll();
  process.exit(1);
}, Number(process.env.TEST_TIMEOUT_MS || 150000));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopAll();
    process.exit(1);
  });
}

try {
  await main();
} catch (e) {
  failed = true;
  console.error('not ok - ' + (e && e.stack ? e.stack : e));
  for (const s of servers) {
    console.error('--- ' + s.name + ' server log (last 40 lines)');
    console.error(fs.readFileSync(s.log, 'utf8').split('\n').slice(-40).join('\n'));
  }
} finally {
  if (context) await context.close().catch(() => {});
  stopAll();
  clearTimeout(timer);
  if (!failed) fs.rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
