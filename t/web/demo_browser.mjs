// The demo page in headless chromium, driven by playwright-core. Started
// by test_demo_browser.py, which runs the servers and restarts
// imgate-comet when this script prints RESTART-COMET (it answers
// RESTARTED on stdin). Environment: DEMO_URL, PW_DIR (where playwright-core
// is installed), SHOT_DIR (screenshots), CHROMIUM.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const { DEMO_URL, PW_DIR, SHOT_DIR, CHROMIUM } = process.env;
const require = createRequire(join(PW_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const T = 15000; // any single wait
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
const problems = [];
let step = 'start';

function say(msg) {
  console.log(`# ${msg}`);
}

async function open(ctx, name, room) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${name}: HTTP ${r.status()} for ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console: ${m.text()}`);
  });
  await page.goto(DEMO_URL);
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#connect');
  return page;
}

const state = (page, s) =>
  page.waitForSelector(`#status[data-state="${s}"]`, { timeout: T });

async function online(page, n) {
  await page.waitForFunction(
    (want) => document.getElementById('online').textContent === want,
    String(n),
    { timeout: T },
  );
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

const seen = (page, text) =>
  page.waitForSelector(`#messages li.msg:has-text(${JSON.stringify(text)})`, {
    timeout: T,
  });

async function count(page, text) {
  return page.locator('#messages li.msg', { hasText: text }).count();
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), 'imgate-chromium-'));
let ctx = null;
let rc = 0;
try {
  // A persistent context: chromium runs with this fresh --user-data-dir.
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 760, height: 720 },
  });
  say(`chromium ${ctx.browser()?.version() ?? ''} on ${DEMO_URL}`);

  step = 'three pages join';
  const alice = await open(ctx, 'alice', '1000');
  const bob = await open(ctx, 'bob', '1000');
  const carol = await open(ctx, 'carol', '2000');
  for (const p of [alice, bob, carol]) await state(p, 'connected');

  step = 'online counts from heartbeat replies';
  await online(alice, 2);
  await online(bob, 2);
  await online(carol, 1);

  step = 'a message reaches its room only';
  await send(alice, 'hello room 1000, alice here');
  await seen(alice, 'hello room 1000, alice here');
  await seen(bob, 'hello room 1000, alice here');
  // Carol's own message arriving after alice's shows her room is live.
  await send(carol, 'carol alone in 2000');
  await seen(carol, 'carol alone in 2000');
  check((await count(carol, 'hello room 1000')) === 0, 'room 2000 got room 1000');
  check((await count(alice, 'carol alone')) === 0, 'room 1000 got room 2000');
  check((await count(bob, 'carol alone')) === 0, 'room 1000 got room 2000');
  check((await alice.locator('#messages li.mine').count()) === 1, 'own message marked');
  await alice.screenshot({ path: join(SHOT_DIR, 'demo-alice.png') });
  await bob.screenshot({ path: join(SHOT_DIR, 'demo-bob.png') });
  await carol.screenshot({ path: join(SHOT_DIR, 'demo-carol.png') });

  step = 'imgate-comet restarts; the pages reconnect by themselves';
  console.log('RESTART-COMET');
  const answer = await lines.next();
  check(answer.value === 'RESTARTED', 'restart acknowledged');
  for (const p of [alice, bob, carol])
    await p.waitForSelector('#status[data-connects="2"][data-state="connected"]', {
      timeout: T,
    });
  for (const p of [alice, bob, carol]) {
    const sys = await p.locator('#messages li.system').allTextContents();
    check(
      sys.some((t) => t.includes('disconnected (server shutting down)')),
      `the server's op-6 reason shown: ${sys}`,
    );
    check(
      sys.filter((t) => t.startsWith('reconnected')).length === 1,
      `one reconnect shown: ${sys}`,
    );
  }

  step = 'messages flow again after the restart';
  await online(alice, 2);
  await send(bob, 'bob after the restart');
  await seen(alice, 'bob after the restart');
  await seen(bob, 'bob after the restart');
  await send(carol, 'carol after the restart');
  await seen(carol, 'carol after the restart');
  check((await count(carol, 'bob after')) === 0, 'room 2000 got room 1000 after restart');
  await alice.screenshot({ path: join(SHOT_DIR, 'demo.png') });
  await carol.screenshot({ path: join(SHOT_DIR, 'demo-carol-after.png') });

  step = 'a page changes room (op 12) and gets that room\'s messages';
  await carol.fill('#room', '1000');
  await carol.click('#connect');
  await carol.waitForSelector('#messages li.system:has-text("moved to room 1000")', {
    timeout: T,
  });
  await online(alice, 3);
  await online(carol, 3);
  await send(alice, 'welcome carol');
  await seen(carol, 'welcome carol');
  await seen(bob, 'welcome carol');
  await carol.screenshot({ path: join(SHOT_DIR, 'demo-carol-moved.png') });

  step = 'no page errors';
  check(problems.length === 0, problems.join('; '));
  say('all steps passed');
} catch (e) {
  console.log(`# FAILED at "${step}": ${e.message}`);
  for (const p of problems) console.log(`# ${p}`);
  if (ctx)
    for (const [i, p] of ctx.pages().entries())
      await p.screenshot({ path: join(SHOT_DIR, `failure-${i}.png`) }).catch(() => {});
  rc = 1;
} finally {
  if (ctx) await ctx.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  stdin.close();
}
process.exit(rc);
