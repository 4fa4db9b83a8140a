// The chat page in a real browser: headless Debian chromium driven by
// playwright-core opens the page twice, picks nicknames, and a message
// typed in one page appears in the other. Also: user data is shown as
// text (never HTML), raw and binary messages, history for a late page,
// and reconnecting after the daemon restarts on the same port.
//
// Usage: node test_browser.mjs CHATFANOUTD
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SKIP = 77;
let passed = 0;
const failed = [];
const daemons = [];
let context = null;
let userDir = null;

function skip(why) {
  if (process.env.CF_TEST_NO_SKIP) {
    console.error('FAIL (skips not allowed): ' + why);
    process.exit(1);
  }
  console.log('SKIP: ' + why);
  process.exit(SKIP);
}

function ok(cond, name, detail = '') {
  if (cond) {
    passed++;
    console.log('ok - ' + name);
  } else {
    failed.push(name + (detail ? ': ' + detail : ''));
    console.log('not ok - ' + name + (detail ? ': ' + detail : ''));
  }
}

function startDaemon(exe, listen) {
  return new Promise((resolve, reject) => {
    const p = spawn(exe, ['--listen', listen], {
      stdio: ['ignore', 'inherit', 'pipe'] });
    daemons.push(p);
    let buf = '';
    const timer = setTimeout(() => reject(new Error('no listening line')),
                             10000);
    p.stderr.on('data', (chunk) => {
      process.stderr.write('[daemon] ' + chunk);
      buf += chunk;
      const m = buf.match(/listening\b.*\burl=(\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc: p, url: m[1] });
      }
    });
    p.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error('daemon exited with ' + code + ' before listening'));
    });
  });
}

function stopDaemon(d, sig = 'SIGKILL') {
  return new Promise((resolve) => {
    if (d.proc.exitCode !== null || d.proc.signalCode !== null) {
      resolve(d.proc.exitCode);
      return;
    }
    d.proc.once('exit', (code) => resolve(code));
    process.kill(d.proc.pid, sig);
  });
}

async function cleanup() {
  if (context) await context.close().catch(() => {});
  for (const p of daemons) {
    if (p.exitCode === null && p.signalCode === null) {
      try { process.kill(p.pid, 'SIGKILL'); } catch (e) { /* gone */ }
    }
  }
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
}

async function joinAs(page, url, nick, room) {
  await page.goto(url);
  await page.fill('#nick', nick);
  await page.fill('#room', room);
  await page.click('#join');
  await page.waitForSelector('#status.up', { timeout: 10000 });
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// Waits for a log entry of class cls whose .text is exactly text.
async function seen(page, cls, text, nick = null, timeout = 5000) {
  try {
    await page.waitForFunction(([c, t, n]) => {
      for (const li of document.querySelectorAll('#log li.' + c)) {
        const tx = li.querySelector('.text');
        const nk = li.querySelector('.nick');
        if (tx && tx.textContent === t &&
            (n === null || (nk && nk.textContent === n)))
          return true;
      }
      return false;
    }, [cls, text, nick], { timeout });
    return true;
  } catch (e) {
    return false;
  }
}

async function main() {
  const exe = process.argv[2] || process.env.CHATFANOUTD;
  if (!exe) skip('no daemon given');
  if (!fs.existsSync(CHROMIUM)) skip(CHROMIUM + ' missing (apt chromium)');
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    skip('playwright-core missing: run npm ci in tests/integration');
  }

  let d = await startDaemon(exe, '127.0.0.1:0');
  const url = d.url;
  const listen = url.replace(/^http:\/\//, '').replace(/\/$/, '');
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-chromium-'));
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
           '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  const watch = (p, who) => {
    p.on('pageerror', (e) => errors.push(who + ': ' + e.message));
    p.on('console', (m) => {
      // Chromium reports failed reconnect attempts on the console.
      if (m.type() === 'error' && !/WebSocket connection/.test(m.text()))
        errors.push(who + ': ' + m.text());
    });
  };
  const alice = context.pages()[0] || await context.newPage();
  const bob = await context.newPage();
  watch(alice, 'alice');
  watch(bob, 'bob');
  const room = 'browser-test';

  await joinAs(alice, url, 'alice', room);
  await joinAs(bob, url, 'bob', room);
  ok(true, 'both pages connected to room ' + room);

  await say(alice, 'hello from alice');
  ok(await seen(bob, 'msg', 'hello from alice', 'alice'),
     'a message typed in one page appears in the other, with its nick');
  ok(await seen(alice, 'msg', 'hello from alice', 'alice'),
     'the sender sees its own message');

  const evil = '<img src=x onerror="window.pwned=1"><b>bold</b> & "q"';
  await say(bob, evil);
  ok(await seen(alice, 'msg', evil, 'bob'),
     'markup in a message is shown as text');
  const injected = await alice.evaluate(() =>
    document.querySelectorAll('#log img, #log b').length +
    (window.pwned ? 100 : 0));
  ok(injected === 0, 'no element or script from user data', injected);

  // Messages other clients send: non-JSON text and binary.
  await alice.evaluate(([r]) => new Promise((resolve, reject) => {
    const s = new WebSocket('ws://' + location.host + '/ws?room=' + r);
    s.onopen = () => {
      s.send('plain raw text');
      s.send('{"foo":1}');
      s.send(new Uint8Array([1, 2, 3]));
      setTimeout(() => { s.close(); resolve(); }, 200);
    };
    s.onerror = () => reject(new Error('ws error'));
  }), [room]);
  ok(await seen(bob, 'raw', 'plain raw text'),
     'non-JSON text is displayed raw');
  ok(await seen(bob, 'raw', '{"foo":1}'),
     'JSON without nick/text is displayed raw');
  ok(await seen(bob, 'raw', '[binary, 3 bytes]'),
     'a binary message is shown as such');

  const carol = await context.newPage();
  watch(carol, 'carol');
  await joinAs(carol, url, 'carol', room);
  ok(await seen(carol, 'msg', 'hello from alice', 'alice'),
     'a page joining later gets the room history');

  // Restart the daemon on the same port: the pages reconnect by
  // themselves.
  const code = await stopDaemon(d, 'SIGTERM');
  ok(code === 0, 'daemon exits 0 on SIGTERM', code);
  try {
    await bob.waitForFunction(() => /1001/.test(
      document.getElementById('status').textContent), null,
    { timeout: 5000 });
    ok(true, 'the page shows the close code 1001');
  } catch (e) {
    ok(false, 'the page shows the close code 1001',
       await bob.textContent('#status'));
  }
  let restarted = null;
  for (let i = 0; i < 30 && !restarted; i++) {
    try {
      restarted = await startDaemon(exe, listen);
    } catch (e) {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  ok(restarted !== null, 'daemon restarts on the same port ' + listen);
  if (restarted) {
    d = restarted;
    let up = true;
    for (const p of [alice, bob]) {
      try {
        await p.waitForSelector('#status.up', { timeout: 20000 });
      } catch (e) {
        up = false;
      }
    }
    ok(up, 'both pages reconnect with backoff');
    await say(alice, 'after restart');
    ok(await seen(bob, 'msg', 'after restart', 'alice'),
       'chat works again after reconnecting');
  }
  if (process.env.CF_SCREENSHOT)
    await bob.screenshot({ path: process.env.CF_SCREENSHOT });
  ok(errors.length === 0, 'no page errors', errors.join(' | '));
  await stopDaemon(d);
}

const guard = setTimeout(() => {
  console.log('not ok - test did not finish within 120 s');
  cleanup().finally(() => process.exit(1));
}, 120000);

main().then(async () => {
  clearTimeout(guard);
  await cleanup();
  console.log(passed + ' passed, ' + failed.length + ' failed');
  for (const f of failed) console.log('FAILED: ' + f);
  process.exit(failed.length ? 1 : 0);
}, async (e) => {
  clearTimeout(guard);
  console.log('not ok - ' + (e && e.stack ? e.stack : e));
  await cleanup();
  process.exit(1);
});
