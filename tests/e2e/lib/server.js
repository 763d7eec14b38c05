// Test harness: starts the built switchboard binary on a free port with its
// own data directory, reads its JSON log lines, and stops it, asserting a
// clean exit and no sanitizer report.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

export const BIN = process.env.SWITCHBOARD_BIN ||
  new URL('../../../build/release/switchboard', import.meta.url).pathname;

const SANITIZER = /AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer/;

export class Server {
  // opts.env: extra environment variables; opts.args: extra CLI flags;
  // opts.dataDir: reuse a data directory (restart tests); opts.port and
  // opts.wrap: see start().
  constructor(opts = {}) {
    this.opts = opts;
    this.dataDir = opts.dataDir || mkdtempSync(join(tmpdir(), 'sb-e2e-'));
    this.ownsDir = !opts.dataDir;
    this.logs = [];       // parsed JSON log lines
    this.stderr = '';     // raw stderr (sanitizer reports are not JSON)
    this.exited = null;
  }

  async start() {
    // opts.port: null leaves the port to the environment or a config file.
    const port = this.opts.port === null ? [] : ['--port', String(this.opts.port ?? 0)];
    const args = ['serve', ...port, '--host', '127.0.0.1', '--data-dir', this.dataDir,
      '--loops', String(this.opts.loops || 2), ...(this.opts.args || [])];
    // opts.wrap: a command prefix that execs the binary, e.g.
    // ['prlimit', '--fsize=N', '--'] (the pid stays the server's).
    const wrap = this.opts.wrap || [];
    this.proc = spawn(wrap.length ? wrap[0] : BIN, [...wrap.slice(1), ...(wrap.length ? [BIN] : []), ...args], {
      env: { ...process.env, LOG_LEVEL: 'info', ...(this.opts.env || {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.stdout = '';
    this.proc.stdout.setEncoding('utf8');   // no multi-byte character split across chunks
    this.proc.stderr.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk) => { this.stdout += chunk.toString(); });
    // 'close' (not 'exit'): it comes after stdout and stderr are drained, so
    // the last log lines and any sanitizer report are in by then.
    this.exitPromise = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => { this.exited = { code, signal }; resolve(this.exited); });
    });
    let pending = '';
    let timer;
    const listening = new Promise((resolve, reject) => {
      this.proc.stderr.on('data', (chunk) => {
        const text = chunk.toString();
        this.stderr += text;
        pending += text;
        let nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          try {
            const entry = JSON.parse(line);
            this.logs.push(entry);
            if (entry.msg === 'listening') resolve(entry.port);
          } catch { /* not a log line (e.g. sanitizer output) */ }
        }
      });
      this.exitPromise.then((e) => reject(new Error(`server exited early: ${JSON.stringify(e)}\n${this.stderr}`)));
      timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        reject(new Error(`server did not start in time\n${this.stderr}`));
      }, 15000);
    });
    try {
      this.port = await listening;
    } finally {
      clearTimeout(timer);   // a pending timer would keep the test process alive
    }
    this.url = `http://127.0.0.1:${this.port}`;
    this.wsUrl = `ws://127.0.0.1:${this.port}`;
    // The admin key the server wrote on its first start (kept across
    // restarts on the same data directory).
    const keyFile = join(this.dataDir, 'admin.key');
    if (existsSync(keyFile)) this.adminKey = readFileSync(keyFile, 'utf8').trim();
    return this;
  }

  // Headers that authenticate as the admin key (or as `key`).
  auth(key = this.adminKey) {
    return { authorization: `Bearer ${key}` };
  }

  // Graceful stop: SIGTERM, expect exit code 0 and a clean sanitizer log.
  async stop({ cleanup = true } = {}) {
    if (!this.exited) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
      await this.exitPromise;
      clearTimeout(timer);
    }
    assert.doesNotMatch(this.stderr, SANITIZER, 'sanitizer report in server output');
    assert.equal(this.exited.code, 0, `server exit ${JSON.stringify(this.exited)}\n${this.stderr.slice(-4000)}`);
    if (cleanup && this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  // Hard stop: SIGKILL, as a crash would. The data directory is kept.
  async kill9() {
    this.proc.kill('SIGKILL');
    await this.exitPromise;
  }

  // A new server on the same data directory (after kill9 or stop).
  restart(opts = {}) {
    return new Server({ ...this.opts, ...opts, dataDir: this.dataDir });
  }

  cleanup() {
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  logsMatching(msg) { return this.logs.filter((l) => l.msg === msg); }

  async metrics() {
    const res = await fetch(`${this.url}/metrics`, { headers: this.auth() });
    const text = await res.text();
    const values = {};
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const i = line.lastIndexOf(' ');
      values[line.slice(0, i)] = Number(line.slice(i + 1));
    }
    return { text, values };
  }
}

// POST a webhook; resolves to { status, body }. It authenticates as the
// admin key unless headers has its own `authorization` ('' sends none).
export async function postWebhook(server, path, body, headers = {}) {
  const h = { 'content-type': 'application/json', ...server.auth(), ...headers };
  if (h.authorization === '') delete h.authorization;
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: h,
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

export async function publish(server, subject, data, event, key = server.adminKey) {
  const res = await fetch(`${server.url}/api/v1/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...server.auth(key) },
    body: JSON.stringify({ subject, data, ...(event ? { event } : {}) }),
  });
  return { status: res.status, body: await res.json() };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns a truthy value or the time is up.
export async function waitFor(fn, { timeout = 10000, interval = 20, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(interval);
  }
}
