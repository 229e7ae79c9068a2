// End-to-end browser test: the real server binary, the real pages, a real Chromium.
//
// A patient reports emergency symptoms on the patient page; the page must show the emergency
// banner, the nurse console must put the conversation first in its queue, the nurse claims it and
// replies, and the patient page must show the nurse's message. Screenshots of both pages go to
// test-output/ at the repository root.
//
//   node tests/e2e/e2e.mjs            (or: bash scripts/e2e.sh, which installs what it needs)
//
// Environment:
//   CAREBRIDGE_BIN        server binary (default: target/debug/carebridge)
//   E2E_CHROMIUM          browser executable (default: /usr/bin/chromium)
//   E2E_PAGES_FROM_DISK=1 serve static/*.html from disk through a small proxy in front of the
//                         server, to try page changes without rebuilding the binary (the
//                         binary embeds the pages)

import { spawn, execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const bin = process.env.CAREBRIDGE_BIN
  ? path.resolve(process.env.CAREBRIDGE_BIN)
  : path.resolve(here, '../../target/debug/carebridge');
const chromiumPath = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const pagesFromDisk = process.env.E2E_PAGES_FROM_DISK === '1';
const outDir = path.join(root, 'test-output');

const OVERALL_MS = 60_000;
const STEP_MS = 5_000;
const PATIENT_TEXT = 'I have crushing chest pain and my left arm is numb';
const NURSE_TEXT = 'This is the nurse, I am calling an ambulance for you now.';

const execFileAsync = promisify(execFile);
const log = (line) => console.log(`e2e: ${line}`);

// ---- helpers ---------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The environment of the server and its `token` command: ours, never an inherited setting. */
function serverEnv(port) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('CAREBRIDGE_')) env[key] = value;
  }
  return Object.assign(env, {
    CAREBRIDGE_SERVER__PORT: String(port),
    CAREBRIDGE_AUTH__DEV_SECRET: 'e2e-secret',
    CAREBRIDGE_POLICIES__DIR: path.join(root, 'policies'),
    CAREBRIDGE_PROMPTS_DIR: path.join(root, 'prompts'),
    CAREBRIDGE_LLM__DEMO_WORD_DELAY_MS: '5',
    NO_COLOR: '1',
  });
}

/** Keeps the last lines of the server's output, to show when something fails. */
function tail(limit) {
  const lines = [];
  let partial = '';
  return {
    push(chunk) {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop();
      for (const line of parts) {
        lines.push(line);
        if (lines.length > limit) lines.shift();
      }
    },
    text() { return [...lines, partial].filter(Boolean).join('\n'); },
  };
}

async function waitForHealth(base, server, deadline) {
  let lastError = 'no answer';
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`the server exited during start-up (code ${server.exitCode ?? server.signalCode})`);
    }
    try {
      const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
      lastError = `HTTP ${response.status}`;
    } catch (error) {
      lastError = error.cause?.code || error.message;
    }
    await sleep(200);
  }
  throw new Error(`GET /healthz did not answer 200 in time (last: ${lastError})`);
}

async function mintToken(env, cwd, role, sub) {
  const { stdout } = await execFileAsync(bin, ['token', '--role', role, '--sub', sub], { env, cwd, timeout: 15_000 });
  const token = stdout.trim().split('\n').pop();
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`\`carebridge token --role ${role}\` printed no token`);
  return token;
}

/** Serves the pages from static/ and passes everything else (WebSockets too) to the server. */
function diskPagesProxy(serverPort) {
  const pages = { '/': 'patient.html', '/nurse': 'nurse.html' };
  const proxy = http.createServer(async (request, response) => {
    const pathname = new URL(request.url, 'http://x').pathname;
    if (request.method === 'GET' && pages[pathname]) {
      const upstream = await fetch(`http://127.0.0.1:${serverPort}${pathname}`);
      const body = await readFile(path.join(root, 'static', pages[pathname]));
      response.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': upstream.headers.get('content-security-policy') || "default-src 'self'",
      });
      response.end(body);
      return;
    }
    const forward = http.request(
      { host: '127.0.0.1', port: serverPort, method: request.method, path: request.url, headers: request.headers },
      (answer) => { response.writeHead(answer.statusCode, answer.headers); answer.pipe(response); },
    );
    forward.on('error', () => { response.writeHead(502); response.end(); });
    request.pipe(forward);
  });
  proxy.on('upgrade', (request, socket, head) => {
    const upstream = net.connect(serverPort, '127.0.0.1', () => {
      let raw = `${request.method} ${request.url} HTTP/1.1\r\n`;
      for (let i = 0; i < request.rawHeaders.length; i += 2) raw += `${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}\r\n`;
      upstream.write(`${raw}\r\n`);
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    const drop = () => { upstream.destroy(); socket.destroy(); };
    upstream.on('error', drop);
    socket.on('error', drop);
  });
  return new Promise((resolve) => proxy.listen(0, '127.0.0.1', () => resolve(proxy)));
}

async function step(name, action) {
  const started = Date.now();
  try {
    const detail = await action();
    log(`  ok   ${name} (${Date.now() - started} ms)${detail ? `: ${detail}` : ''}`);
  } catch (error) {
    throw new Error(`${name}: ${error.message.split('\n')[0]}`);
  }
}

// ---- the test --------------------------------------------------------------------------------

const state = { server: null, output: tail(80), browser: null, proxy: null, pages: {}, workDir: null, problems: [] };

async function run() {
  state.workDir = await mkdtemp(path.join(os.tmpdir(), 'carebridge-e2e-'));
  const port = await freePort();
  const env = serverEnv(port);
  // A scratch working directory, so that a developer's ./carebridge.toml is not picked up.
  const cwd = state.workDir;

  log(`starting ${path.relative(root, bin) || bin} on port ${port}`);
  state.server = spawn(bin, ['serve'], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  state.server.stdout.on('data', (chunk) => state.output.push(chunk));
  state.server.stderr.on('data', (chunk) => state.output.push(chunk));
  const spawned = await new Promise((resolve) => {
    state.server.once('spawn', () => resolve(null));
    state.server.once('error', (error) => resolve(error));
  });
  if (spawned) throw new Error(`cannot start the server ${bin}: ${spawned.message} (build it with \`cargo build\`)`);

  const serverBase = `http://127.0.0.1:${port}`;
  await step('server answers /healthz', async () => {
    const started = Date.now();
    await waitForHealth(serverBase, state.server, started + 40_000);
  });

  const [patientToken, nurseToken] = await Promise.all([
    mintToken(env, cwd, 'patient', 'e2e-patient'),
    mintToken(env, cwd, 'nurse', 'e2e-nurse'),
  ]);

  let base = serverBase;
  if (pagesFromDisk) {
    state.proxy = await diskPagesProxy(port);
    base = `http://127.0.0.1:${state.proxy.address().port}`;
    log(`serving static/*.html from disk through ${base}`);
  } else {
    await step('the binary serves the pages on disk', async () => {
      for (const [route, file] of [['/', 'patient.html'], ['/nurse', 'nurse.html']]) {
        const served = await (await fetch(`${serverBase}${route}`)).text();
        const onDisk = await readFile(path.join(root, 'static', file), 'utf8');
        if (served !== onDisk) {
          throw new Error(`GET ${route} differs from static/${file}: the binary embeds the page and was built before it changed; rebuild it (cargo build), or set E2E_PAGES_FROM_DISK=1`);
        }
      }
    });
  }

  state.browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const open = async (name) => {
    const context = await state.browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.on('pageerror', (error) => state.problems.push(`${name} page: uncaught ${error.message}`));
    page.on('console', (message) => {
      const text = message.text();
      if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(text)) {
        state.problems.push(`${name} page: ${text}`);
      }
    });
    state.pages[name] = page;
    return page;
  };
  const nurse = await open('nurse');
  const patient = await open('patient');

  await step('nurse console connects', async () => {
    await nurse.goto(`${base}/nurse#token=${nurseToken}`);
    await nurse.locator('#status[data-state="connected"]').waitFor();
  });
  await step('patient page connects', async () => {
    await patient.goto(`${base}/#token=${patientToken}`);
    await patient.locator('#status[data-state="connected"]').waitFor();
  });

  await step('patient sends the message with Enter', async () => {
    await patient.locator('#message').fill(PATIENT_TEXT);
    await patient.locator('#message').press('Enter');
    await patient.locator('.bubble.patient.acked', { hasText: PATIENT_TEXT }).waitFor();
  });

  await step('patient page shows the emergency banner with 999', async () => {
    const banner = patient.locator('#alert');
    await banner.waitFor({ state: 'visible' });
    await patient.waitForFunction(() => document.querySelector('#alert')?.textContent.includes('999'));
    const severity = await banner.getAttribute('data-severity');
    if (severity !== 'emergency') throw new Error(`the banner's severity is ${severity}, not emergency`);
    return (await banner.locator('.guidance').textContent()).slice(0, 60) + '…';
  });

  const sessionId = await patient.evaluate(() => sessionStorage.getItem('carebridge.session_id'));
  if (!sessionId) throw new Error('the patient page kept no session id in sessionStorage');

  await step('nurse queue shows that emergency first', async () => {
    await nurse.waitForFunction((id) => {
      const first = document.querySelector('#queue .queue-item');
      return first && first.dataset.session === id
        && /emergency/i.test(first.querySelector('.severity')?.textContent || '');
    }, sessionId, { timeout: STEP_MS });
    const first = nurse.locator('.queue-item').first();
    return `${await first.locator('.severity').textContent()} · ${await first.locator('.rule').textContent()} · ${await first.locator('.state').textContent()}`;
  });

  await step('nurse claims it and sees the flagged words', async () => {
    await nurse.locator('.queue-item').first().locator('.claim').click();
    await nurse.locator(`.queue-item[data-session="${sessionId}"][data-state="claimed"]`).waitFor();
    await nurse.locator('#transcript .msg.patient', { hasText: PATIENT_TEXT }).waitFor();
    const flags = await nurse.locator('#transcript mark.flag').allTextContents();
    if (!flags.length) throw new Error('no mark.flag in the transcript');
    return flags.map((flag) => `“${flag}”`).join(', ');
  });

  await step('nurse replies', async () => {
    await nurse.locator('#reply-text').fill(NURSE_TEXT);
    await nurse.locator('#reply-send').click();
    await nurse.locator('#transcript .msg.nurse', { hasText: NURSE_TEXT }).waitFor();
  });

  await step("patient page shows the nurse's message", async () => {
    await patient.locator('.bubble.nurse', { hasText: NURSE_TEXT }).waitFor();
  });

  if (state.problems.length) throw new Error(`the pages reported errors:\n  ${state.problems.join('\n  ')}`);
}

async function screenshots() {
  await mkdir(outDir, { recursive: true });
  for (const [name, page] of Object.entries(state.pages)) {
    const file = path.join(outDir, `e2e-${name}.png`);
    try {
      await withTimeout(page.screenshot({ path: file, fullPage: true }), 10_000, `screenshot of the ${name} page`);
      log(`screenshot ${path.relative(root, file)}`);
    } catch (error) {
      log(`no screenshot of the ${name} page: ${error.message.split('\n')[0]}`);
    }
  }
}

async function stopServer() {
  const server = state.server;
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  const stopped = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
  if (!stopped) {
    server.kill('SIGKILL');
    await Promise.race([exited, sleep(2_000)]);
  }
}

async function cleanup() {
  if (Object.keys(state.pages).length) await screenshots();
  if (state.browser) await withTimeout(state.browser.close(), 10_000, 'closing the browser').catch(() => {});
  if (state.proxy) state.proxy.close();
  await stopServer();
  if (state.workDir) await rm(state.workDir, { recursive: true, force: true }).catch(() => {});
}

// Whatever happens, the server does not outlive the test.
process.on('exit', () => { if (state.server && state.server.exitCode === null) state.server.kill('SIGKILL'); });
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (state.server && state.server.exitCode === null) state.server.kill('SIGKILL');
    process.exit(130);
  });
}

let failure = null;
let timer;
const running = run();
running.catch(() => {}); // on the overall timeout it is abandoned; its later failures do not matter
try {
  await Promise.race([
    running,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the test did not finish within ${OVERALL_MS / 1000} s`)), OVERALL_MS);
    }),
  ]);
} catch (error) {
  failure = error;
} finally {
  clearTimeout(timer);
  await cleanup();
}

if (failure) {
  console.error(`e2e: FAILED: ${failure.message}`);
  const output = state.output.text();
  if (output) console.error(`e2e: last lines of the server's output:\n${output}`);
  console.log('e2e: 0 passed, 1 failed');
  process.exit(1);
}
console.log('e2e: 1 passed, 0 failed');
process.exit(0);
