// End-to-end test of spout's built-in viewer page (GET /) in headless Chromium.
//
// Run with:  node tests/browser/viewer.test.mjs
// (after `npm ci` in tests/browser and building the binaries; see README.md)
//
// It builds nothing: it runs the server binary named by SPOUT_BIN (default
// target/debug/spout) and, when it exists, SPOUT_BLOCKING_BIN (default
// target/debug/spout-blocking), each on a loopback port with a config of its own,
// then drives the page like a user: click Start, watch, reload the shared URL, stop.
// Every check prints one `ok` / `not ok` line; any failure makes the exit code 1.
// Waits are conditions with a deadline (never a sleep standing in for an assertion).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const artifacts = path.join(repo, 'tests', 'artifacts');
const chromiumPath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const binFrom = (name, fallback) => (process.env[name] ? path.resolve(process.env[name]) : path.join(repo, fallback));
const SPOUT_BIN = binFrom('SPOUT_BIN', 'target/debug/spout');
const SPOUT_BLOCKING_BIN = binFrom('SPOUT_BLOCKING_BIN', 'target/debug/spout-blocking');
const WAIT = 20000; // deadline for any one condition; generous for a loaded machine

// The command under test writes, through sh, everything the page must render:
// SGR colours and bold, 256/truecolor, a CR progress bar spread over several events,
// stderr, markup that must stay text, a CRLF line, and a non-zero exit code.
const COLOURS = [
  "printf '\\033[31mred line\\033[0m\\n'",
  "printf '\\033[1;32mbold green\\033[0m then plain\\n'",
  "printf '\\033[94mbright blue\\033[39m back to default\\n'",
  "printf '\\033[38;5;208morange 256\\033[0m\\n'",
  "printf '\\033[38;2;10;200;30mtruecolor\\033[0m\\n'",
  "for p in 10 40 70 100; do printf '\\rprogress %3d%%' \"$p\"; sleep 0.15; done",
  "printf '\\n'",
  "printf 'warning: this is stderr\\n' >&2",
  "printf '<script>alert(1)</script> <b>not bold</b> <img src=x onerror=alert(2)>\\n'",
  "printf 'crlf line\\r\\n'",
  "printf 'done\\n'",
  'exit 3',
].join('; ');

// A "pty": true command: the terminal sends `\n` as `\r\n`, and tools redraw with
// CR and erase-in-line (ESC[K); screen clearing and a window title are dropped.
const TERMINAL = [
  "printf 'abc\\rX\\033[K\\n'",
  "printf '\\033[2J\\033]0;title\\007\\033[32mgreen\\033[0m\\r\\n'",
  "printf 'loading...\\rdone\\033[K\\n'",
].join('; ');

const CONFIG = {
  commands: {
    colours: { description: 'colours, a progress bar, stderr, markup', argv: ['sh', '-c', COLOURS] },
    greet: { description: 'echo with an allowed argument', argv: ['echo', 'hello'], args: { allow: ['world', 'there'] } },
    sleeper: { description: 'sleeps until stopped', argv: ['sh', '-c', 'echo sleeping; exec sleep 60'] },
    many: { description: '20,000 lines', argv: ['seq', '1', '20000'] },
    brief: { description: 'runs a moment, exits 4', argv: ['sh', '-c', 'sleep 1.5; exit 4'] },
    terminal: { description: 'on a terminal: redraws, erase in line', argv: ['sh', '-c', TERMINAL], pty: true },
  },
};

// ---------------------------------------------------------------- reporting
let failures = 0;
function check(name, cond, detail) {
  if (cond) console.log(`ok - ${name}`);
  else {
    failures++;
    console.log(`not ok - ${name}${detail !== undefined ? ` (${typeof detail === 'string' ? detail : JSON.stringify(detail)})` : ''}`);
  }
  return cond;
}

/** Waits for fn(arg) in the page to be truthy; returns whether it became so. */
async function waitFor(page, fn, arg, timeout = WAIT) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
    return true;
  } catch (e) {
    return false;
  }
}

// ---------------------------------------------------------------- server
/** Starts a server; resolves to {addr, stop, log} or rejects (with .exitedEarly when it quit). */
function startServer(bin, dir, config = CONFIG) {
  const cfg = path.join(dir, 'spout.json');
  fs.writeFileSync(cfg, JSON.stringify(config, null, 2));
  const child = spawn(bin, ['serve', '--config', cfg, '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  let exited = false;
  const exitedP = new Promise((res) => child.on('exit', (code, sig) => { exited = true; res({ code, sig }); }));
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 10000);
    await exitedP;
    clearTimeout(t);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { stop(); reject(new Error(`no "listening on" line within ${WAIT} ms; stderr:\n${log}`)); }, WAIT);
    child.on('error', (e) => { clearTimeout(timer); reject(Object.assign(e, { exitedEarly: true })); });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(log);
      if (m) { clearTimeout(timer); resolve({ addr: m[1], stop, log: () => log }); }
    });
    exitedP.then(({ code, sig }) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`exited at once (code ${code}, signal ${sig}); stderr:\n${log.trim()}`), { exitedEarly: true }));
    });
  });
}

// ---------------------------------------------------------------- page helpers
/** The rendered output lines as {text, stream, cls}. */
const linesOf = (page) => page.$$eval('#lines > .ln', (els) => els.map((e) => ({ text: e.textContent, stream: e.dataset.stream, cls: e.className })));

async function startFromPage(page, command, arg) {
  const form = page.locator(`form.cmd[data-command="${command}"]`);
  if (arg !== undefined) await form.locator('select').selectOption(arg);
  const before = await page.evaluate(() => location.hash);
  await form.locator('button[type=submit]').click();
  const ok = await waitFor(page, (b) => /^#\/jobs\/[A-Za-z0-9_-]+$/.test(location.hash) && location.hash !== b, before);
  return ok ? page.evaluate(() => location.hash.slice('#/jobs/'.length)) : null;
}

/** Waits until the job view shows job `id` (or any job, without one) as ended. */
const ended = (page, id) => waitFor(page, (want) => {
  const s = document.getElementById('pill').dataset.state;
  const shown = document.getElementById('j-id').textContent;
  return (!want || shown === want) && (s === 'ok' || s === 'fail');
}, id || '');

// ---------------------------------------------------------------- the checks
async function colourJob(page, label) {
  const id = await startFromPage(page, 'colours');
  check(`${label}: clicking Start on "colours" opens the job at #/jobs/ID`, !!id);
  if (!id) return null;
  check(`${label}: the job ends`, await ended(page, id));
  await assertColourView(page, label);
  return id;
}

async function assertColourView(page, label) {
  const pill = await page.$eval('#pill', (p) => ({ text: p.textContent, state: p.dataset.state, code: p.dataset.code }));
  check(`${label}: status pill shows the ended state with exit code 3`, pill.state === 'fail' && pill.code === '3' && /exit 3/.test(pill.text), pill);
  const lines = await linesOf(page);
  const out = lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
  const want = ['red line', 'bold green then plain', 'bright blue back to default', 'orange 256', 'truecolor', 'progress 100%',
    '<script>alert(1)</script> <b>not bold</b> <img src=x onerror=alert(2)>', 'crlf line', 'done'];
  check(`${label}: stdout lines render in order, CRLF as one newline`, JSON.stringify(out) === JSON.stringify(want), out);
  const progress = lines.filter((l) => l.stream !== 'sys' && l.text.includes('progress'));
  check(`${label}: the CR progress bar is one line with its final text`, progress.length === 1 && progress[0].text === 'progress 100%', progress);
  const exitLine = lines.find((l) => l.stream === 'sys' && /exited with code 3/.test(l.text));
  check(`${label}: an exit marker says "exited with code 3"`, !!exitLine, lines.filter((l) => l.stream === 'sys'));

  const styles = await page.evaluate(() => {
    const span = (t) => [...document.querySelectorAll('#lines span')].find((s) => s.textContent === t);
    const css = (el) => el && { color: getComputedStyle(el).color, weight: getComputedStyle(el).fontWeight };
    const lineOf = (t) => [...document.querySelectorAll('#lines > .ln:not(.sys)')].find((l) => l.textContent.includes(t));
    const plain = lineOf('back to default');
    const plainNode = plain && [...plain.childNodes].find((n) => n.textContent === ' back to default');
    const err = lineOf('warning: this is stderr');
    const outLine = lineOf('done');
    return {
      red: css(span('red line')), green: css(span('bold green')), blue: css(span('bright blue')),
      orange: css(span('orange 256')), truecolor: css(span('truecolor')),
      plainIsText: !!plainNode && plainNode.nodeType === Node.TEXT_NODE,
      errStream: err && err.dataset.stream, errColor: err && getComputedStyle(err).color,
      errBorder: err && getComputedStyle(err).borderLeftColor,
      outColor: outLine && getComputedStyle(outLine).color, outBorder: outLine && getComputedStyle(outLine).borderLeftColor,
    };
  });
  const rgb = (c) => (c && /rgba?\((\d+), (\d+), (\d+)/.exec(c.color || c) || []).slice(1).map(Number);
  const [r1, g1, b1] = rgb(styles.red);
  check(`${label}: SGR 31 renders red`, r1 > 180 && g1 < 150 && b1 < 150, styles.red);
  const [r2, g2, b2] = rgb(styles.green);
  check(`${label}: SGR 1;32 renders bold green`, g2 > 150 && r2 < 120 && b2 < 120 && Number(styles.green.weight) >= 600, styles.green);
  const [r3, g3, b3] = rgb(styles.blue);
  check(`${label}: SGR 94 renders bright blue, SGR 39 returns to the default`, b3 > 200 && r3 < 150 && styles.plainIsText, { blue: styles.blue, plainIsText: styles.plainIsText });
  const [r4, g4, b4] = rgb(styles.orange);
  check(`${label}: 256-colour 208 renders orange`, r4 === 255 && g4 > 100 && g4 < 200 && b4 === 0, styles.orange);
  check(`${label}: truecolor renders rgb(10, 200, 30)`, styles.truecolor && styles.truecolor.color === 'rgb(10, 200, 30)', styles.truecolor);
  check(`${label}: stderr is its own stream, styled apart from stdout`,
    styles.errStream === 'stderr' && styles.errColor !== styles.outColor && styles.errBorder !== styles.outBorder, styles);

  const injected = await page.evaluate(() => ({
    scripts: document.querySelectorAll('#lines script, #lines b, #lines img').length,
    allScripts: document.scripts.length,
  }));
  check(`${label}: markup in the output is shown as text, no element injected`, injected.scripts === 0 && injected.allScripts === 1, injected);
}

async function runAgainst(label, bin, browser) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spout-viewer-'));
  let server;
  try {
    try {
      server = await startServer(bin, dir);
    } catch (e) {
      if (e.exitedEarly && label !== 'spout') {
        console.log(`skip - ${label}: ${e.message.split('\n').slice(0, 6).join('\n  ')}`);
        return false;
      }
      check(`${label}: server starts and prints its address`, false, e.message);
      return;
    }
    console.log(`# ${label}: ${bin} at ${server.addr}`);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
    page.on('request', (r) => { if (!r.url().startsWith(server.addr) && !r.url().startsWith('data:')) problems.push(`external request: ${r.url()}`); });
    // The event streams' heads as the browser received them (for the gzip check).
    const streamHeads = new Map();
    page.on('response', (r) => { if (/\/events(\?|$)/.test(r.url())) streamHeads.set(new URL(r.url()).pathname, r); });
    try {
      await page.goto(server.addr + '/');
      check(`${label}: the page lists the declared commands`,
        await waitFor(page, () => document.querySelectorAll('form.cmd').length === 6));
      const greetSelect = await page.$$eval('form.cmd[data-command="greet"] select option', (os) => os.map((o) => o.value));
      check(`${label}: a command with an allow list gets a select`, JSON.stringify(greetSelect) === '["","world","there"]', greetSelect);
      check(`${label}: a command without args gets no args field`,
        (await page.$$('form.cmd[data-command="colours"] input, form.cmd[data-command="colours"] select')).length === 0);
      if (label === 'spout') await page.screenshot({ path: path.join(artifacts, 'viewer-home.png') });

      const id = await colourJob(page, label);
      if (id) {
        check(`${label}: the job list shows the job`, await waitFor(page, (j) => !!document.querySelector(`#jobs a[data-job="${j}"]`), id));
        await page.screenshot({ path: path.join(artifacts, label === 'spout' ? 'viewer.png' : `viewer-${label}.png`) });
        // The shareable URL restores the view after a reload.
        await page.reload();
        check(`${label}: reloading #/jobs/${id} restores the job`, await ended(page, id) &&
          (await page.$eval('#j-cmd', (e) => e.textContent)) === 'colours');
        await assertColourView(page, `${label} (reloaded)`);
      }

      // Args from a select reach argv.
      const gid = await startFromPage(page, 'greet', 'there');
      check(`${label}: Start with the selected argument`, !!gid && await ended(page, gid));
      const greetOut = (await linesOf(page)).filter((l) => l.stream === 'stdout').map((l) => l.text);
      check(`${label}: the argument reached the process`, JSON.stringify(greetOut) === '["hello there"]', greetOut);
      check(`${label}: exit 0 is shown as a clean end`, await page.$eval('#pill', (p) => p.dataset.state === 'ok' && /exit 0/.test(p.textContent)));

      // The live job list: a job started outside the page (curl, another tab)
      // appears within a second and its state changes in place, with no reload
      // and no JSON polling of /jobs.
      await page.evaluate(() => { window.__sameDocument = true; });
      let listPolls = 0;
      const countPolls = (r) => { if (r.url() === server.addr + '/jobs' && r.resourceType() === 'fetch') listPolls++; };
      page.on('request', countPolls);
      const made = await fetch(server.addr + '/jobs', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: 'brief' }),
      });
      const bid = made.status === 201 ? (await made.json()).id : null;
      check(`${label}: a job started outside the page is created`, !!bid, made.status);
      check(`${label}: a job started elsewhere appears in the list within a second`,
        !!bid && await waitFor(page, (j) => !!document.querySelector(`#jobs a[data-job="${j}"]`), bid, 1000));
      check(`${label}: the list shows it running`,
        !!bid && await waitFor(page, (j) => { const b = document.querySelector(`#jobs a[data-job="${j}"] .badge`); return !!b && b.textContent === 'running'; }, bid, 1500));
      check(`${label}: its exit code replaces the state in place`,
        !!bid && await waitFor(page, (j) => { const b = document.querySelector(`#jobs a[data-job="${j}"] .badge`); return !!b && b.textContent === 'exit 4'; }, bid, 5000));
      page.off('request', countPolls);
      check(`${label}: ... without a reload or polling of /jobs`,
        await page.evaluate(() => window.__sameDocument === true) && listPolls === 0, { listPolls });
      // A job on a terminal: CR redraws and ESC[K leave the final text, other
      // sequences vanish without a trace.
      const tid = await startFromPage(page, 'terminal');
      check(`${label}: a "pty" job ends`, !!tid && await ended(page, tid));
      const termOut = (await linesOf(page)).filter((l) => l.stream === 'stdout').map((l) => l.text);
      check(`${label}: terminal output renders CR redraws, ESC[K and \\r\\n, drops the rest`,
        JSON.stringify(termOut) === '["X","green","done"]', termOut);

      // Stop a running job.
      const sid = await startFromPage(page, 'sleeper');
      const live = await waitFor(page, (want) => document.getElementById('j-id').textContent === want &&
        document.getElementById('pill').dataset.state === 'live' &&
        [...document.querySelectorAll('#lines > .ln.o')].some((l) => l.textContent === 'sleeping'), sid);
      check(`${label}: a running job is shown live with its output`, !!sid && live);
      // Chromium's EventSource sends Accept-Encoding: gzip by itself: the stream it
      // just rendered live was gzip (so nothing was held back for a buffer).
      const head = streamHeads.get(`/jobs/${sid}/events`);
      const sent = head ? await head.request().allHeaders() : {};
      const got = head ? await head.allHeaders() : {};
      check(`${label}: the live stream was gzip (Chromium asked for it)`,
        /gzip/.test(sent['accept-encoding'] || '') && got['content-encoding'] === 'gzip' && got['vary'] === 'Accept-Encoding',
        { sent: sent['accept-encoding'], got });
      check(`${label}: a running job has a Stop button`, await page.isVisible('#stop'));
      await page.click('#stop');
      const stopped = await ended(page, sid) && await page.$eval('#pill', (p) => p.textContent);
      check(`${label}: Stop ends the job (SIGTERM, stopped)`, !!stopped && /SIGTERM/.test(stopped) && /stopped/.test(stopped), stopped);
      check(`${label}: the Stop button is gone once the job ended`, !(await page.isVisible('#stop')));

      // Long output: the DOM stays capped, the end is shown, and follow mode works.
      const mid = await startFromPage(page, 'many');
      check(`${label}: 20,000 lines arrive and the job ends`, await ended(page, mid) &&
        await waitFor(page, () => { const l = [...document.querySelectorAll('#lines > .ln[data-stream=stdout]')]; return l.length && l[l.length - 1].textContent === '20000'; }));
      const cap = await page.evaluate(() => ({
        lines: document.querySelectorAll('#lines > .ln').length,
        note: !document.getElementById('note').hidden && document.getElementById('note').textContent,
        href: document.getElementById('note-link').getAttribute('href'),
      }));
      check(`${label}: the DOM keeps at most 5,000 lines and points to the full log`,
        cap.lines <= 5000 && /earlier lines/.test(cap.note || '') && /^\/jobs\/[A-Za-z0-9_-]+\/log$/.test(cap.href || ''), cap);
      const bottom = () => waitFor(page, () => { const o = document.getElementById('out'); return o.scrollHeight - o.scrollTop - o.clientHeight < 8; });
      check(`${label}: follow mode keeps the view at the bottom`, await bottom());
      await page.hover('#out');
      await page.mouse.wheel(0, -3000);
      check(`${label}: scrolling up pauses follow mode and shows the Follow button`,
        await waitFor(page, () => !document.getElementById('follow').hidden));
      await page.click('#follow');
      check(`${label}: the Follow button returns to the bottom`, await bottom() && !(await page.isVisible('#follow')));

      // Phone-sized screen: no sideways scrolling, the job view fills the screen.
      if (id) {
        await page.setViewportSize({ width: 390, height: 844 });
        await page.goto(`${server.addr}/#/jobs/${id}`);
        await ended(page, id);
        const phone = await page.evaluate(() => ({
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          sideHidden: getComputedStyle(document.getElementById('side')).display === 'none',
          outWidth: document.getElementById('out').getBoundingClientRect().width,
        }));
        check(`${label}: on a phone-sized screen the job view fits without sideways scrolling`,
          phone.overflow <= 0 && phone.sideHidden && phone.outWidth >= 380, phone);
        await page.screenshot({ path: path.join(artifacts, label === 'spout' ? 'viewer-phone.png' : `viewer-phone-${label}.png`) });
        await page.click('.back');
        check(`${label}: on a phone the back link shows the list`, await waitFor(page, () =>
          getComputedStyle(document.getElementById('side')).display !== 'none'));
      }
      check(`${label}: no console errors, page errors, dialogs or external requests`, problems.length === 0, problems);
    } finally {
      await context.close();
    }
  } catch (e) {
    check(`${label}: test ran to the end`, false, e.stack || String(e));
  } finally {
    if (server) {
      await server.stop();
      if (failures) console.log(`# ${label} server stderr:\n${server.log().replace(/^/gm, '#   ')}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return true;
}

/** A server with a token: the page asks for it, then sends it as Bearer and ?token=. */
async function tokenPhase(label, bin, browser) {
  const TOKEN = 'viewer-test-token-0123456789';
  const config = { ...CONFIG, tokens: [{ token: TOKEN, scopes: ['start', 'watch', 'share'] }] };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spout-viewer-'));
  let server, context;
  try {
    server = await startServer(bin, dir, config);
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(server.addr + '/');
    check(`${label} with tokens: without a token the page asks for one`,
      await waitFor(page, () => !document.getElementById('authbanner').hidden));
    await page.fill('#token', TOKEN);
    await page.press('#token', 'Enter');
    await page.locator('#token').blur();
    check(`${label} with tokens: with the token the commands load`,
      await waitFor(page, () => document.querySelectorAll('form.cmd').length === 6 && document.getElementById('authbanner').hidden));
    const id = await startFromPage(page, 'greet', 'world');
    const out = id && await ended(page, id) && (await linesOf(page)).filter((l) => l.stream === 'stdout').map((l) => l.text);
    check(`${label} with tokens: a job starts (Bearer) and streams (?token=)`, JSON.stringify(out) === '["hello world"]', out);
    check(`${label} with tokens: the live job list works with ?token=`,
      !!id && await waitFor(page, (j) => !!document.querySelector(`#jobs a[data-job="${j}"]`), id));
    check(`${label} with tokens: the token is kept in localStorage`,
      await page.evaluate((t) => localStorage.getItem('spout.token') === t, TOKEN));
    await page.reload();
    check(`${label} with tokens: after a reload the stored token still works`, !!id && await ended(page, id) &&
      (await linesOf(page)).some((l) => l.text === 'hello world'));
    // Leave no token behind for the next run in this browser profile (and the
    // share link below must work without one).
    await page.evaluate(() => localStorage.removeItem('spout.token'));

    // Share: a read-only link that works without a token, for this job only.
    let link = null;
    if (id) {
      await page.click('#share');
      if (await waitFor(page, () => !!document.getElementById('share').dataset.link)) {
        link = await page.$eval('#share', (b) => b.dataset.link);
      }
    }
    check(`${label} with tokens: Share makes a link to the viewer's job page`,
      !!link && link.startsWith(server.addr + '/?sig=') && link.endsWith('#/jobs/' + id), link);
    if (link) {
      await page.goto(link);
      const shared = await ended(page, id) && await page.evaluate(() => ({
        lines: [...document.querySelectorAll('#lines > .ln')].map((e) => e.textContent),
        side: getComputedStyle(document.getElementById('side')).display,
        stop: getComputedStyle(document.getElementById('stop')).display,
        share: getComputedStyle(document.getElementById('share')).display,
        banner: document.getElementById('authbanner').hidden,
        token: localStorage.getItem('spout.token'),
      }));
      check(`${label} with tokens: the share link shows the job without a token, read-only`,
        !!shared && shared.lines.includes('hello world') && shared.side === 'none' && shared.stop === 'none' &&
        shared.share === 'none' && shared.banner && shared.token === null, shared);
      const tampered = link.replace(/sig=(\d+)\./, (m, exp) => `sig=${Number(exp) + 60}.`);
      await page.goto(tampered);
      check(`${label} with tokens: a tampered share link is refused with its reason`,
        await waitFor(page, () => document.getElementById('pill').dataset.state === 'fail' &&
          /403: .*not valid for this job/.test(document.getElementById('lines').textContent)));
    }
  } catch (e) {
    check(`${label} with tokens: test ran to the end`, false, e.stack || String(e));
  } finally {
    if (context) await context.close();
    if (server) await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  if (!fs.existsSync(SPOUT_BIN)) {
    console.log(`not ok - spout binary not found at ${SPOUT_BIN} (run cargo build -p spout, or set SPOUT_BIN)`);
    process.exit(1);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'spout-chromium-'));
  // A persistent context on a fresh directory is how Playwright takes --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // launchPersistentContext gives one context; wrap it so runAgainst can open pages.
  const contextLike = { newContext: async (opts) => {
    const page = await browser.newPage();
    await page.setViewportSize(opts.viewport);
    return { newPage: async () => page, close: () => page.close() };
  } };
  try {
    await runAgainst('spout', SPOUT_BIN, contextLike);
    await tokenPhase('spout', SPOUT_BIN, contextLike);
    if (!fs.existsSync(SPOUT_BLOCKING_BIN)) {
      console.log(`skip - spout-blocking: no binary at ${SPOUT_BLOCKING_BIN} (cargo build -p spout-blocking, or set SPOUT_BLOCKING_BIN)`);
    } else if (await runAgainst('spout-blocking', SPOUT_BLOCKING_BIN, contextLike)) {
      await tokenPhase('spout-blocking', SPOUT_BLOCKING_BIN, contextLike);
    }
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(failures ? `# FAILED: ${failures} check(s)` : '# all checks passed');
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.log(`not ok - unexpected error: ${e.stack || e}`);
  process.exit(1);
});
