// Helpers for the access-control suites (auth.test.js, jwt.test.js): JSON
// calls with a chosen credential, API keys made through the admin API,
// WebSocket upgrades that are expected to be refused, auth metrics, and
// the check that no credential a test used ever reaches the server's
// output. Every wait is bounded.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Server } from './server.js';

// Starts a server whose credentials are tracked: server.secrets lists
// every secret string a test created or used (see trackSecret).
export async function startServer(opts = {}) {
  const s = await new Server(opts).start();
  s.secrets = [];
  if (s.adminKey) trackSecret(s, s.adminKey);
  return s;
}

// Remembers a credential to look for in the server's output: an API key
// sb_<id>_<secret> counts by its secret part (the id is public), a JWT by
// itself and by its signature.
export function trackSecret(server, cred) {
  if (!cred) return cred;
  const m = /^sb_([0-9A-Za-z]{12})_(.+)$/.exec(cred);
  if (m) server.secrets.push(m[2]);
  else server.secrets.push(cred);
  const parts = cred.split('.');
  if (parts.length === 3 && parts[2].length >= 16) server.secrets.push(parts[2]);
  return cred;
}

// Asserts that no tracked secret is in the server's stderr (the JSON log)
// or stdout, apart from the one-time print of the bootstrap key on the
// first start (which must be there exactly once).
export function assertNoSecretLeak(server, { bootstrapPrinted = true } = {}) {
  let out = server.stdout;
  if (bootstrapPrinted && server.adminKey) {
    const i = out.indexOf(server.adminKey);
    assert.ok(i >= 0, 'the bootstrap key is printed on the first start');
    out = out.slice(0, i) + out.slice(i + server.adminKey.length);
  }
  const text = server.stderr + out;
  for (const s of server.secrets) {
    assert.ok(!text.includes(s), `a secret (${s.slice(0, 6)}...) appears in the server output`);
  }
}

// One HTTP call: {status, headers, json, text}. key: the bearer credential
// (default the admin key; null sends none).
export async function api(server, method, path, { body, key = server.adminKey, headers = {} } = {}) {
  const h = { ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  let payload;
  if (body !== undefined) {
    h['content-type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(`${server.url}${path}`, { method, headers: h, body: payload });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, json, text };
}

// POST /api/v1/publish with credential key (null: none).
export function pub(server, subject, data, { key = server.adminKey, event, headers } = {}) {
  return api(server, 'POST', '/api/v1/publish', {
    key, headers, body: { subject, data, ...(event !== undefined ? { event } : {}) },
  });
}

// Creates an API key through the admin API (as `by`, default the admin
// key); asserts 201 and returns the view with its one-time "key".
export async function createKey(server, spec, by = server.adminKey) {
  const r = await api(server, 'POST', '/api/v1/keys', { key: by, body: spec });
  assert.equal(r.status, 201, `create key: ${r.text}`);
  assert.match(r.json.key, /^sb_[0-9A-Za-z]{12}_[A-Za-z0-9_-]{43}$/);
  trackSecret(server, r.json.key);
  return r.json;
}

// The id part of an API key.
export const keyId = (key) => key.split('_')[1];

// The secret part: everything after "sb_<12-char id>_" (base64url, so it
// may itself contain '_').
export const keySecret = (key) => key.slice('sb_'.length + 12 + 1);

// The same key with one secret character changed (still well-formed).
export function wrongSecret(key) {
  const i = key.length - 10;
  const c = key[i] === 'A' ? 'B' : 'A';
  return key.slice(0, i) + c + key.slice(i + 1);
}

// Asserts a 401 {"error":{"code":"unauthorized"}} with WWW-Authenticate.
export function assert401(r, message) {
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json?.error?.code, 'unauthorized', r.text);
  const www = typeof r.headers.get === 'function' ? r.headers.get('www-authenticate') : r.headers['www-authenticate'];
  assert.equal(www, 'Bearer realm="switchboard"');
  if (message !== undefined) assert.equal(r.json.error.message, message);
}

export function assert403(r) {
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json?.error?.code, 'forbidden', r.text);
  assert.match(r.json.error.message, /^not permitted/);
}

export function assert429(r, code = 'rate_limited') {
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json?.error?.code, code, r.text);
  const ra = typeof r.headers.get === 'function' ? r.headers.get('retry-after') : r.headers['retry-after'];
  assert.match(String(ra), /^\d+$/, 'Retry-After in whole seconds');
  assert.ok(Number(ra) >= 1, `Retry-After ${ra} >= 1`);
}

// A WebSocket upgrade that the server answers with an HTTP error:
// resolves {status, headers, json}. Fails if the upgrade succeeds.
export function wsRefused(url, headers = {}, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('no answer to the upgrade')); }, timeout);
    ws.on('error', () => { /* after unexpected-response: ignored */ });
    ws.on('open', () => { clearTimeout(timer); ws.terminate(); reject(new Error(`upgrade to ${url} succeeded`)); });
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        clearTimeout(timer);
        let json = null;
        try { json = JSON.parse(body); } catch { /* not JSON */ }
        req.destroy();
        resolve({ status: res.statusCode, headers: res.headers, json, text: body });
      });
    });
  });
}

// Waits for the close of a jsonWs client: {code, reason}.
export async function closedWithin(c, timeout, what = 'the WebSocket close') {
  let timer;
  const t = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out (${timeout} ms) waiting for ${what}`)), timeout); });
  try {
    return await Promise.race([c.closed, t]);
  } finally {
    clearTimeout(timer);
  }
}

// switchboard_auth_total by outcome, as numbers (missing labels are 0).
export async function authCounts(server) {
  const { values } = await server.metrics();
  const out = {};
  for (const [k, v] of Object.entries(values)) {
    const m = /^switchboard_auth_total\{outcome="([a-z_]+)"\}$/.exec(k);
    if (m) out[m[1]] = v;
  }
  return out;
}

// The "auth" log lines so far.
export const authLogs = (server) => server.logs.filter((l) => l.msg === 'auth');
