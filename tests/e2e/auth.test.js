// Access control end to end (src/auth/*, src/edge/keys_api.c and every
// edge's use of auth.h): the bootstrap key, 401s, the key lifecycle
// through the admin API, permissions, tenants, IP allowlists and trusted
// proxies, rate limits, connection caps, WebSocket authentication, and the
// audit trail (log lines, usage log, metrics) without a secret in it.
// Every credential is minted by the server and used by real clients
// (fetch, EventSource-style SSE over fetch, the ws package).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor, sleep } from './lib/server.js';
import { openSse, sseUrl, jsonWs, until } from './lib/clients.js';
import {
  startServer, trackSecret, assertNoSecretLeak, api, pub, createKey, keyId, keySecret, wrongSecret,
  assert401, assert403, assert429, wsRefused, closedWithin, authCounts, authLogs,
} from './lib/auth_helpers.js';

const INVALID = 'invalid credentials';
const MISSING = 'a credential is required: Authorization: Bearer <API key or token>';

// A well-formed key whose id exists nowhere.
const UNKNOWN_KEY = 'sb_ZZZZZZZZZZZZ_' + 'A'.repeat(43);

const wsUrl = (s, q = '') => `${s.wsUrl}/api/v1/ws${q}`;
const bearer = (key) => ({ authorization: `Bearer ${key}` });
const messagesOf = (c) => c.msgs.filter((m) => m.type === 'message').map((m) => m.message);

// A follow-up request that must succeed: the server still serves.
async function stillServes(s) {
  const h = await fetch(`${s.url}/health`);
  assert.equal(h.status, 200);
  const r = await pub(s, 'alive.check', { ok: true });
  assert.equal(r.status, 202, r.text);
}

// A config file with stored streams for x.> and ev.> (replay tests).
function streamsConfig() {
  const dir = mkdtempSync(join(tmpdir(), 'sb-auth-cfg-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({
    streams: [
      { name: 'x', subjects: ['x.>'] },
      { name: 'ev', subjects: ['ev.>'] },
      { name: 'webhooks', subjects: ['webhooks.>'] },
    ],
  }));
  return { dir, file };
}

// --- bootstrap ------------------------------------------------------------------

describe('bootstrap key', () => {
  test('first start: admin.key 0600 equals the key printed once; a restart prints none and the key still works', async () => {
    const s = await startServer();
    let s2;
    try {
      const file = join(s.dataDir, 'admin.key');
      const st = statSync(file);
      assert.equal(st.mode & 0o777, 0o600);
      const key = readFileSync(file, 'utf8').trim();
      assert.match(key, /^sb_[0-9A-Za-z]{12}_[A-Za-z0-9_-]{43}$/);
      const printed = s.stdout.match(/sb_[0-9A-Za-z]{12}_[A-Za-z0-9_-]{43}/g);
      assert.deepEqual(printed, [key], 'the key is printed exactly once on stdout');
      // the bootstrap key is a superadmin in tenant "default"
      const list = await api(s, 'GET', '/api/v1/keys', { key });
      assert.equal(list.status, 200);
      const boot = list.json.keys.find((k) => k.id === keyId(key));
      assert.equal(boot.name, 'bootstrap');
      assert.equal(boot.tenant, 'default');
      assert.equal(boot.superadmin, true);
      assert.equal(boot.permissions.admin, true);
      assert.equal((await pub(s, 'boot.a', 1, { key })).status, 202);
      assertNoSecretLeak(s);
      await s.stop({ cleanup: false });

      s2 = await s.restart().start();
      s2.secrets = [...s.secrets];
      assert.equal(s2.stdout, '', 'no key printed on a restart');
      assert.equal(s2.adminKey, key, 'admin.key unchanged');
      assert.equal(readFileSync(file, 'utf8').trim(), key);
      const again = await api(s2, 'GET', '/api/v1/keys', { key });
      assert.equal(again.status, 200);
      assert.equal(again.json.keys.length, 1, 'no second bootstrap key');
      assert.equal((await pub(s2, 'boot.b', 2, { key })).status, 202);
      assertNoSecretLeak(s2, { bootstrapPrinted: false });
      assert.ok(!s2.stderr.includes(keySecret(key)));
    } finally {
      if (s2) await s2.stop(); else await s.stop();
      s.cleanup();
    }
  });
});

// --- the main server ---------------------------------------------------------------

describe('one server, heartbeat 1 s', () => {
  let s;
  let cfg;

  before(async () => {
    cfg = streamsConfig();
    s = await startServer({
      args: ['--config', cfg.file, '--heartbeat-ms', '1000', '--auth-fail-burst', '100000'],
      env: { SWITCHBOARD_FSYNC: 'normal' },
    });
  });

  after(async () => {
    try {
      // no query string (?token=...) and no secret anywhere in the output
      assert.ok(!s.stderr.includes('token='), 'a query string reached the log');
      assertNoSecretLeak(s);
    } finally {
      await s.stop();
      rmSync(cfg.dir, { recursive: true, force: true });
    }
  });

  describe('401', () => {
    test('missing credential: publish, stream, ws upgrade, keys API, metrics -> 401 + WWW-Authenticate', async () => {
      assert401(await pub(s, 'x.a', 1, { key: null }), MISSING);
      const sse = await openSse(sseUrl(s, ['x.>']));
      assert.equal(sse.status, 401);
      assert.equal(sse.headers.get('www-authenticate'), 'Bearer realm="switchboard"');
      assert.equal(sse.json.error.code, 'unauthorized');
      assert.equal(sse.json.error.message, MISSING);
      // a WebSocket upgrade that presents an empty credential is refused
      // before any WebSocket exists (without one it must authenticate by
      // its first message: see the WebSocket tests)
      for (const [q, h] of [['?token=', {}], ['', { authorization: 'Bearer ' }], ['', { authorization: 'Basic dXNlcjpwYXNz' }]]) {
        const ws = await wsRefused(wsUrl(s, q), h);
        assert.equal(ws.status, 401, `${q} ${JSON.stringify(h)}`);
        assert.equal(ws.headers['www-authenticate'], 'Bearer realm="switchboard"');
        assert.equal(ws.json.error.code, 'unauthorized');
        assert.equal(ws.json.error.message, MISSING);
      }
      assert401(await api(s, 'GET', '/api/v1/keys', { key: null }), MISSING);
      assert401(await api(s, 'POST', '/api/v1/keys', { key: null, body: { name: 'x' } }), MISSING);
      assert401(await api(s, 'GET', `/api/v1/keys/${keyId(s.adminKey)}`, { key: null }), MISSING);
      assert401(await api(s, 'GET', '/metrics', { key: null }), MISSING);
      assert401(await api(s, 'POST', '/auth/token', { key: null }), MISSING);
      // ?token= is for EventSource and WebSocket only
      assert401(await api(s, 'POST', `/api/v1/publish?token=${s.adminKey}`, { key: null, body: { subject: 'x.a', data: 1 } }), MISSING);
      assert401(await api(s, 'GET', `/api/v1/keys?token=${s.adminKey}`, { key: null }), MISSING);
      assert401(await api(s, 'GET', `/metrics?token=${s.adminKey}`, { key: null }), MISSING);
      // /health stays open
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
      await stillServes(s);
    });

    test('malformed, unknown id, wrong secret, wrong scheme: 401 with one generic message', async () => {
      const k = await createKey(s, { name: 'gen', permissions: { publish: ['x.>'] } });
      const bad = [
        'garbage', 'sb_', 'sb_short_x', k.key + 'A', k.key.slice(0, -1), 'a.b', 'x'.repeat(9000),
        UNKNOWN_KEY, wrongSecret(k.key), `sb_${keyId(k.key)}_${'B'.repeat(43)}`,
      ];
      for (const cred of bad) if (cred.startsWith('sb_') && cred.length > 40) trackSecret(s, cred);
      const bodies = new Set();
      for (const cred of bad) {
        const r = await pub(s, 'x.a', 1, { key: cred });
        assert401(r, INVALID);
        bodies.add(r.text);
        if (cred.length > 1000) continue;      // a URL that long is refused as such (414)
        const sse = await openSse(sseUrl(s, ['x.>'], `&token=${encodeURIComponent(cred)}`));
        assert.equal(sse.status, 401);
        assert.equal(sse.json.error.message, INVALID);
      }
      assert.equal(bodies.size, 1, 'every invalid credential gets the very same answer');
      // the log tells them apart
      const outcomes = new Set(authLogs(s).filter((l) => l.endpoint === 'POST /api/v1/publish').map((l) => l.outcome));
      for (const o of ['malformed', 'unknown', 'bad_secret']) assert.ok(outcomes.has(o), o);
      assert.equal((await pub(s, 'x.a', 1, { key: k.key })).status, 202);
      await stillServes(s);
    });
  });

  describe('key lifecycle', () => {
    test('create: 201, the key shown once; GET and list never return it or any hash', async () => {
      const r = await api(s, 'POST', '/api/v1/keys', {
        body: { name: 'svc', permissions: { publish: ['x.>'], subscribe: ['x.>'], history: ['x.>'] } },
      });
      assert.equal(r.status, 201);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      const k = r.json;
      trackSecret(s, k.key);
      assert.equal(k.name, 'svc');
      assert.equal(k.tenant, 'default');
      assert.equal(k.status, 'active');
      assert.equal(k.id, keyId(k.key));
      assert.deepEqual(k.permissions, { publish: ['x.>'], subscribe: ['x.>'], history: ['x.>'], admin: false });
      const secret = keySecret(k.key);
      const got = await api(s, 'GET', `/api/v1/keys/${k.id}`);
      assert.equal(got.status, 200);
      assert.equal(got.json.id, k.id);
      assert.equal(got.json.key, undefined);
      const list = await api(s, 'GET', '/api/v1/keys');
      assert.equal(list.status, 200);
      assert.ok(list.json.keys.some((x) => x.id === k.id));
      for (const text of [got.text, list.text]) {
        assert.ok(!text.includes(secret), 'the secret is never shown again');
        assert.ok(!text.includes(k.key));
        assert.doesNotMatch(text, /[0-9a-f]{64}/, 'no hash');
        assert.doesNotMatch(text, /hash/i);
        assert.doesNotMatch(text, /"key"/);
      }
      // invalid requests
      assert.equal((await api(s, 'POST', '/api/v1/keys', { body: {} })).status, 400);
      assert.equal((await api(s, 'POST', '/api/v1/keys', { body: 'not json' })).status, 400);
      const typo = await api(s, 'POST', '/api/v1/keys', { body: { name: 'x', permissions: { publsh: ['>'] } } });
      assert.equal(typo.status, 400);
      assert.equal(typo.json.error.code, 'invalid_request');
      assert.equal((await api(s, 'GET', '/api/v1/keys/ZZZZZZZZZZZZ')).status, 404);
      assert.equal((await pub(s, 'x.svc', 1, { key: k.key })).status, 202);
    });

    test('permissions: publish pattern, subscribe covering, history for since=0, events whitelist', async () => {
      const k = await createKey(s, {
        name: 'perm',
        permissions: { publish: ['ev.a.>'], subscribe: ['ev.>'], events: ['push', 'pr.*'] },
      });
      const h = await createKey(s, {
        name: 'hist', permissions: { subscribe: ['ev.>'], history: ['ev.>'] },
      });
      // publish: pattern and event type
      assert.equal((await pub(s, 'ev.a.b', 1, { key: k.key, event: 'push' })).status, 202);
      assert.equal((await pub(s, 'ev.a.b', 1, { key: k.key, event: 'pr.opened' })).status, 202);
      assert403(await pub(s, 'ev.b.c', 1, { key: k.key, event: 'push' }));
      assert403(await pub(s, 'ev.a', 1, { key: k.key, event: 'push' }));
      const ev = await pub(s, 'ev.a.b', 1, { key: k.key, event: 'pull' });
      assert403(ev);
      assert.match(ev.json.error.message, /event type pull/);
      assert403(await pub(s, 'ev.a.b', 1, { key: k.key, event: 'pr' }));
      const none = await pub(s, 'ev.a.b', 1, { key: k.key });
      assert403(none);
      // subscribe: covered patterns only
      for (const ok of ['ev.>', 'ev.a.>', 'ev.*', 'ev.a.b']) {
        const c = await openSse(sseUrl(s, [ok]), { headers: bearer(k.key) });
        assert.equal(c.status, 200, ok);
        c.close();
      }
      for (const no of ['>', 'x.>', '*.a', 'ev']) {
        const c = await openSse(sseUrl(s, [no]), { headers: bearer(k.key) });
        assert.equal(c.status, 403, no);
        assert.equal(c.json.error.code, 'forbidden');
      }
      const mixed = await openSse(sseUrl(s, ['ev.>', 'x.>']), { headers: bearer(k.key) });
      assert.equal(mixed.status, 403, 'every pattern must be allowed');
      // history: since=0 / Last-Event-ID need it
      const noHist = await openSse(sseUrl(s, ['ev.>'], '&since=0'), { headers: bearer(k.key) });
      assert.equal(noHist.status, 403);
      assert.match(noHist.json.error.message, /history/);
      const lastId = await openSse(sseUrl(s, ['ev.>']), { headers: { ...bearer(k.key), 'last-event-id': '1' } });
      assert.equal(lastId.status, 403);
      const withHist = await openSse(sseUrl(s, ['ev.>'], '&since=0'), { headers: bearer(h.key) });
      assert.equal(withHist.status, 200);
      await withHist.waitEvents(2);
      assert.ok(withHist.events.every((e) => e.msg.subject === 'ev.a.b'));
      withHist.close();
      // a non-admin key has no business with the keys API or metrics
      assert403(await api(s, 'GET', '/api/v1/keys', { key: k.key }));
      assert403(await api(s, 'POST', '/api/v1/keys', { key: k.key, body: { name: 'y' } }));
      assert403(await api(s, 'GET', '/metrics', { key: k.key }));
      await stillServes(s);
    });

    test('event filter on delivery: a subscriber allowed only "push" gets push messages, not others', async () => {
      const k = await createKey(s, { name: 'pushonly', permissions: { subscribe: ['evf.>'], events: ['push'] } });
      const sse = await openSse(sseUrl(s, ['evf.>']), { headers: bearer(k.key) });
      assert.equal(sse.status, 200);
      const ws = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
      try {
        assert.equal((await ws.request({ type: 'subscribe', id: 'e', subject: 'evf.>' })).type, 'subscribed');
        const sent = [['push', 1], ['pull', 2], [undefined, 3], ['pushy', 4], ['push', 5]];
        for (const [event, n] of sent) assert.equal((await pub(s, 'evf.a', { n }, { event })).status, 202);
        await sse.waitEvents(2);
        await ws.next((m) => m.type === 'message' && m.message.payload.n === 5);
        await sleep(200);
        assert.deepEqual(sse.events.map((e) => e.msg.payload.n), [1, 5]);
        assert.deepEqual(sse.events.map((e) => e.event), ['push', 'push']);
        assert.deepEqual(messagesOf(ws).map((m) => m.payload.n), [1, 5]);
      } finally {
        sse.close();
        ws.close();
      }
    });

    test('revoke: 401 afterwards; an open SSE stream and an open WebSocket end at the next heartbeat (4401)', async () => {
      const k = await createKey(s, { name: 'rev', permissions: { publish: ['x.>'], subscribe: ['x.>'] } });
      const other = await createKey(s, { name: 'rev-other', permissions: { publish: ['x.>'], subscribe: ['x.>'] } });
      const sse = await openSse(sseUrl(s, ['x.rev.>']), { headers: bearer(k.key) });
      assert.equal(sse.status, 200);
      const ws = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
      const ws2 = await jsonWs(wsUrl(s), { headers: bearer(other.key) });
      try {
        await ws.request({ type: 'subscribe', id: 'r', subject: 'x.rev.>' });
        await ws2.request({ type: 'subscribe', id: 'r', subject: 'x.rev.>' });
        assert.equal((await pub(s, 'x.rev.1', 1, { key: k.key })).status, 202);
        await sse.waitEvents(1);
        await ws.next((m) => m.type === 'message');

        const r = await api(s, 'DELETE', `/api/v1/keys/${k.id}`);
        assert.equal(r.status, 200);
        assert.equal(r.json.status, 'revoked');
        assert.match(r.json.revoked_at, /^\d{4}-\d\d-\d\dT/);
        assert401(await pub(s, 'x.rev.2', 2, { key: k.key }), INVALID);
        const again = await openSse(sseUrl(s, ['x.>']), { headers: bearer(k.key) });
        assert.equal(again.status, 401);
        assert.equal((await wsRefused(wsUrl(s), bearer(k.key))).status, 401);

        await until(() => sse.ended, 5000, 'the SSE stream of a revoked key to end');
        const info = await closedWithin(ws, 5000);
        assert.equal(info.code, 4401);
        // revoking again is harmless; POST .../revoke is the same
        const twice = await api(s, 'POST', `/api/v1/keys/${k.id}/revoke`);
        assert.equal(twice.status, 200);
        assert.equal(twice.json.status, 'revoked');
        // a revoked key cannot be rotated back to life
        assert.equal((await api(s, 'POST', `/api/v1/keys/${k.id}/rotate`, { body: {} })).status, 409);
        // other keys' connections are untouched
        assert.equal((await pub(s, 'x.rev.3', 3, { key: other.key })).status, 202);
        const m = await ws2.next((x) => x.type === 'message' && x.message.payload === 3);
        assert.equal(m.message.subject, 'x.rev.3');
        assert.equal(ws2.closeInfo, null);
        assert.equal(authLogs(s).filter((l) => l.key === k.id && l.outcome === 'revoked').length >= 3, true);
      } finally {
        sse.close();
        ws.close();
        ws2.close();
      }
      await stillServes(s);
    });

    test('rotate with grace: old and new both work; rotate with grace_seconds 0: the old one is refused', async () => {
      const k = await createKey(s, { name: 'rot', permissions: { publish: ['x.>'] } });
      const r1 = await api(s, 'POST', `/api/v1/keys/${k.id}/rotate`, { body: { grace_seconds: 60 } });
      assert.equal(r1.status, 200);
      assert.equal(r1.headers.get('cache-control'), 'no-store');
      const k2 = trackSecret(s, r1.json.key);
      assert.equal(keyId(k2), k.id, 'same id, new secret');
      assert.notEqual(k2, k.key);
      assert.ok(r1.json.rotated_at);
      assert.ok(r1.json.previous_valid_until);
      assert.equal((await pub(s, 'x.rot', 1, { key: k.key })).status, 202, 'old key within the grace period');
      assert.equal((await pub(s, 'x.rot', 2, { key: k2 })).status, 202, 'new key');

      const r2 = await api(s, 'POST', `/api/v1/keys/${k.id}/rotate`, { body: { grace_seconds: 0 } });
      assert.equal(r2.status, 200);
      const k3 = trackSecret(s, r2.json.key);
      assert401(await pub(s, 'x.rot', 3, { key: k2 }), INVALID);
      assert401(await pub(s, 'x.rot', 4, { key: k.key }), INVALID);
      assert.equal((await pub(s, 'x.rot', 5, { key: k3 })).status, 202);
      const view = await api(s, 'GET', `/api/v1/keys/${k.id}`);
      assert.equal(view.json.status, 'active');
      assert.ok(!view.text.includes(keySecret(k3)));
      // bad grace values
      for (const g of [-1, 'x', 1e9]) {
        assert.equal((await api(s, 'POST', `/api/v1/keys/${k.id}/rotate`, { body: { grace_seconds: g } })).status, 400);
      }
      assert.equal((await pub(s, 'x.rot', 6, { key: k3 })).status, 202, 'a refused rotation changed nothing');
    });

    test('expiry: expires_in 1 works at once, then 401 and status "expired"', async () => {
      const k = await createKey(s, { name: 'exp', permissions: { publish: ['x.>'], subscribe: ['x.>'] }, expires_in: 1 });
      assert.ok(k.expires_at);
      assert.equal((await pub(s, 'x.exp', 1, { key: k.key })).status, 202);
      const ws = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
      assert.equal((await closedWithin(ws, 5000, 'the WebSocket of an expired key to close')).code, 4401);
      await waitFor(async () => (await api(s, 'GET', `/api/v1/keys/${k.id}`)).json.status === 'expired',
        { timeout: 5000, interval: 200, what: 'the key to expire' });
      const r = await pub(s, 'x.exp', 2, { key: k.key });
      assert401(r, INVALID);
      assert.ok(authLogs(s).some((l) => l.key === k.id && l.outcome === 'expired'));
      assert.equal((await api(s, 'POST', `/api/v1/keys/${k.id}/rotate`, { body: {} })).status, 409);
      // expires_in must make the key expire: 0 or less is refused, not an eternal key
      for (const e of [-1, 0, 1.5, '10']) {
        const bad = await api(s, 'POST', '/api/v1/keys', { body: { name: 'e', expires_in: e } });
        assert.equal(bad.status, 400, `expires_in ${e}: ${bad.text}`);
        assert.equal(bad.json.error.code, 'invalid_request');
      }
      const never = await createKey(s, { name: 'never', expires_in: null });
      assert.equal(never.expires_at, null);
      await stillServes(s);
    });

    test('usage log: endpoint, outcome, ip, newest first, no query string', async () => {
      const k = await createKey(s, { name: 'use', permissions: { publish: ['x.>'], subscribe: ['x.>'] } });
      assert.equal((await pub(s, 'x.use', 1, { key: k.key })).status, 202);
      assert401(await pub(s, 'x.use', 2, { key: wrongSecret(k.key) }));
      const sse = await openSse(sseUrl(s, ['x.use'], `&token=${encodeURIComponent(k.key)}`));
      assert.equal(sse.status, 200);
      sse.close();
      const ws = await jsonWs(wsUrl(s, `?token=${encodeURIComponent(k.key)}&x=1`));
      ws.close();
      assert403(await pub(s, 'y.use', 3, { key: k.key }));
      const r = await api(s, 'GET', `/api/v1/keys/${k.id}/usage`);
      assert.equal(r.status, 200);
      assert.equal(r.json.id, k.id);
      const u = r.json.usage;
      const seen = u.map((e) => [e.endpoint, e.outcome]);
      assert.deepEqual(seen, [
        ['POST /api/v1/publish', 'forbidden'],    // authenticated (ok), then refused
        ['POST /api/v1/publish', 'ok'],
        ['GET /api/v1/ws', 'ok'],
        ['GET /api/v1/stream', 'ok'],
        ['POST /api/v1/publish', 'bad_secret'],
        ['POST /api/v1/publish', 'ok'],
      ]);
      for (const e of u) {
        assert.equal(e.ip, '127.0.0.1');
        assert.match(e.time, /^\d{4}-\d\d-\d\dT/);
      }
      assert.ok(!r.text.includes('?'), 'no query string in the usage log');
      assert.ok(!r.text.includes('token'), 'no token in the usage log');
      const view = await api(s, 'GET', `/api/v1/keys/${k.id}`);
      assert.ok(view.json.last_used_at);
      assert.ok(!s.stderr.includes('token='));
      assert.equal((await api(s, 'GET', '/api/v1/keys/ZZZZZZZZZZZZ/usage')).status, 404);
    });
  });

  describe('tenants', () => {
    const perms = { publish: ['>'], subscribe: ['>'], history: ['>'], admin: true };
    let a; let b;

    before(async () => {
      a = await createKey(s, { name: 'a-admin', tenant: 'a', permissions: perms });
      b = await createKey(s, { name: 'b-admin', tenant: 'b', permissions: perms });
      assert.equal(a.tenant, 'a');
      assert.equal(b.tenant, 'b');
    });

    test('a publish on x.y in tenant a never reaches tenant b on ">" or "x.>" (SSE and WS)', async () => {
      const bAll = await openSse(sseUrl(s, ['>']), { headers: bearer(b.key) });
      const bX = await openSse(sseUrl(s, ['x.>']), { headers: bearer(b.key) });
      const aX = await openSse(sseUrl(s, ['x.>']), { headers: bearer(a.key) });
      const bWs = await jsonWs(wsUrl(s), { headers: bearer(b.key) });
      const dWs = await jsonWs(wsUrl(s), { headers: bearer(s.adminKey) });
      try {
        for (const c of [bAll, bX, aX]) assert.equal(c.status, 200);
        await bWs.request({ type: 'subscribe', id: '1', subject: '>' });
        await bWs.request({ type: 'subscribe', id: '2', subject: 'x.>' });
        await dWs.request({ type: 'subscribe', id: '1', subject: '>' });
        assert.equal((await pub(s, 'x.y', { from: 'a' }, { key: a.key })).status, 202);
        const wsA = await jsonWs(wsUrl(s), { headers: bearer(a.key) });
        const wp = await wsA.request({ type: 'publish', id: 'p', subject: 'x.y', data: { from: 'a-ws' } });
        assert.equal(wp.type, 'published');
        wsA.close();
        await aX.waitEvents(2);
        // then a sentinel in tenant b: once it is in, a's would have been too
        assert.equal((await pub(s, 'x.y', { from: 'b' }, { key: b.key })).status, 202);
        await bAll.waitEvents(1);
        await bX.waitEvents(1);
        await bWs.next((m) => m.type === 'message' && m.message.payload.from === 'b');
        await sleep(200);
        assert.deepEqual(bAll.events.map((e) => e.msg.payload.from), ['b']);
        assert.deepEqual(bX.events.map((e) => e.msg.payload.from), ['b']);
        assert.deepEqual(messagesOf(bWs).map((m) => m.payload.from), ['b']);
        assert.deepEqual(aX.events.map((e) => e.msg.payload.from), ['a', 'a-ws']);
        assert.ok(messagesOf(dWs).every((m) => !['a', 'a-ws', 'b'].includes(m.payload?.from)), 'default tenant saw nothing');
        // the envelope carries the subject as the tenant knows it
        assert.equal(aX.events[0].msg.subject, 'x.y');
      } finally {
        for (const c of [bAll, bX, aX, bWs, dWs]) c.close();
      }
    });

    test('since=0 replays only the own tenant (SSE and WS), both ways', async () => {
      assert.equal((await pub(s, 'x.r', { from: 'a', n: 1 }, { key: a.key })).status, 202);
      const last = await pub(s, 'x.r', { from: 'b', n: 1 }, { key: b.key });
      assert.equal(last.status, 202);
      assert.equal(last.json.stored, true);
      for (const [me, mine] of [[a, 'a'], [b, 'b']]) {
        const ws = await jsonWs(wsUrl(s), { headers: bearer(me.key) });
        try {
          await ws.request({ type: 'subscribe', id: 'h', subject: '>', since: 0 });
          await ws.next((m) => m.type === 'caught_up' && m.id === 'h', 10000);
          const got = messagesOf(ws);
          assert.ok(got.length >= 1, `${mine} replays its own messages`);
          assert.ok(got.every((m) => typeof m.payload?.from === 'string' && m.payload.from.startsWith(mine)),
            `${mine} replayed ${JSON.stringify(got.map((m) => m.payload))}`);
          assert.ok(got.some((m) => m.payload?.from === mine && m.subject === 'x.r'));
        } finally {
          ws.close();
        }
        // SSE with since=0 over ">": the own message is replayed, not the other's
        const sse = await openSse(sseUrl(s, ['x.>'], '&since=0'), { headers: bearer(me.key) });
        try {
          assert.equal(sse.status, 200);
          await until(() => sse.events.some((e) => e.msg.subject === 'x.r'), 10000, 'the replay');
          // a live sentinel after the replay: everything before it is replay
          assert.equal((await pub(s, 'x.sentinel', { from: mine }, { key: me.key })).status, 202);
          await until(() => sse.events.some((e) => e.msg.subject === 'x.sentinel'), 10000, 'the sentinel');
          assert.ok(sse.events.every((e) => typeof e.msg.payload?.from === 'string' && e.msg.payload.from.startsWith(mine)),
            `${mine}: ${JSON.stringify(sse.events.map((e) => e.msg.payload))}`);
        } finally {
          sse.close();
        }
      }
    });

    test('an admin of tenant a cannot see, revoke or rotate b\'s keys (404) nor create keys in b (403)', async () => {
      const bk = await createKey(s, { name: 'b-svc', tenant: 'b', permissions: { publish: ['x.>'] } });
      for (const [m, p] of [['GET', ''], ['GET', '/usage'], ['DELETE', ''], ['POST', '/revoke'], ['POST', '/rotate']]) {
        const r = await api(s, m, `/api/v1/keys/${bk.id}${p}`, { key: a.key, body: m === 'POST' ? {} : undefined });
        assert.equal(r.status, 404, `${m} ${p}`);
        assert.equal(r.json.error.code, 'not_found');
      }
      const list = await api(s, 'GET', '/api/v1/keys', { key: a.key });
      assert.equal(list.status, 200);
      assert.ok(list.json.keys.length >= 1);
      assert.ok(list.json.keys.every((k) => k.tenant === 'a'), 'a lists its own tenant only');
      assert403(await api(s, 'GET', '/api/v1/keys?tenant=b', { key: a.key }));
      assert403(await api(s, 'POST', '/api/v1/keys', { key: a.key, body: { name: 'sneak', tenant: 'b' } }));
      // a's own keys: fine, and they land in tenant a
      const own = await createKey(s, { name: 'a-svc', permissions: { publish: ['x.>'] } }, a.key);
      assert.equal(own.tenant, 'a');
      // the superadmin sees b's key; it is still active
      const sup = await api(s, 'GET', `/api/v1/keys/${bk.id}`);
      assert.equal(sup.json.status, 'active');
      assert.equal(sup.json.tenant, 'b');
      const supList = await api(s, 'GET', '/api/v1/keys?tenant=b');
      assert.ok(supList.json.keys.every((k) => k.tenant === 'b'));
      assert.equal((await pub(s, 'x.b', { from: 'b-svc' }, { key: bk.key })).status, 202);
      const nonAdmin = await createKey(s, { name: 'a-plain', permissions: { publish: ['>'] } }, a.key);
      assert403(await api(s, 'GET', '/api/v1/keys', { key: nonAdmin.key }));
      assert403(await api(s, 'GET', `/api/v1/keys/${own.id}`, { key: nonAdmin.key }));
      assert403(await api(s, 'DELETE', `/api/v1/keys/${own.id}`, { key: nonAdmin.key }));
      assert.equal((await api(s, 'GET', `/api/v1/keys/${own.id}`, { key: a.key })).json.status, 'active');
    });
  });

  test('key IP allowlist: cidrs 10.0.0.0/8 from 127.0.0.1 -> 401; X-Forwarded-For from an untrusted peer is ignored', async () => {
    const k = await createKey(s, { name: 'cidr', permissions: { publish: ['x.>'], subscribe: ['x.>'] }, cidrs: ['10.0.0.0/8'] });
    assert.deepEqual(k.cidrs, ['10.0.0.0/8']);
    assert401(await pub(s, 'x.c', 1, { key: k.key }), INVALID);
    assert401(await pub(s, 'x.c', 1, { key: k.key, headers: { 'x-forwarded-for': '10.1.2.3' } }), INVALID);
    const sse = await openSse(sseUrl(s, ['x.>']), { headers: { ...bearer(k.key), 'x-forwarded-for': '10.1.2.3' } });
    assert.equal(sse.status, 401);
    const lines = authLogs(s).filter((l) => l.key === k.id);
    assert.ok(lines.length >= 3);
    assert.ok(lines.every((l) => l.outcome === 'ip_not_allowed' && l.ip === '127.0.0.1'), JSON.stringify(lines));
    const bad = await api(s, 'POST', '/api/v1/keys', { body: { name: 'c', cidrs: ['10.0.0.0/33'] } });
    assert.equal(bad.status, 400);
    await stillServes(s);
  });

  test('key rate {per_second:1, burst:3}: the 4th quick publish -> 429 rate_limited with Retry-After; refills', async () => {
    const k = await createKey(s, { name: 'rate', permissions: { publish: ['x.>'], rate: { per_second: 1, burst: 3 } } });
    // every authentication takes from the key's bucket: the WebSocket upgrade too
    const ws = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
    try {
      for (let i = 0; i < 2; i++) assert.equal((await pub(s, 'x.rate', i, { key: k.key })).status, 202);
      const r = await pub(s, 'x.rate', 3, { key: k.key });
      assert429(r, 'rate_limited');
      assert.equal(r.json.error.message, 'too many requests; retry later');
      // other credentials are not affected
      assert.equal((await pub(s, 'x.rate', 'admin')).status, 202);
      // WebSocket publishes share the bucket: error "rate_limited", the connection stays
      const e = await ws.request({ type: 'publish', id: 'p', subject: 'x.rate', data: 1 });
      assert.equal(e.type, 'error');
      assert.equal(e.code, 'rate_limited');
      assert.deepEqual(await ws.request({ type: 'ping', id: 'q' }), { type: 'pong', id: 'q' });
    } finally {
      ws.close();
    }
    await waitFor(async () => (await pub(s, 'x.rate', 4, { key: k.key })).status === 202,
      { timeout: 5000, interval: 500, what: 'the key bucket to refill' });
    assert.equal((await api(s, 'POST', '/api/v1/keys', { body: { name: 'r', permissions: { rate: { per_second: 0 } } } })).status, 400);
  });

  test('key max_connections 2: third stream 429 too_many_connections; closing one frees a slot', async () => {
    const k = await createKey(s, { name: 'cap', permissions: { subscribe: ['x.>'], max_connections: 2 } });
    const s1 = await openSse(sseUrl(s, ['x.cap']), { headers: bearer(k.key) });
    const w1 = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
    const open = [s1, w1];
    try {
      assert.equal(s1.status, 200);
      const third = await openSse(sseUrl(s, ['x.cap']), { headers: bearer(k.key) });
      assert429(third, 'too_many_connections');
      const thirdWs = await wsRefused(wsUrl(s), bearer(k.key));
      assert429(thirdWs, 'too_many_connections');
      // authenticated by its first message: close 4429
      const fm = await jsonWs(wsUrl(s));
      fm.send({ type: 'auth', token: k.key });
      const info = await closedWithin(fm, 5000);
      assert.equal(info.code, 4429);
      // other keys are not capped by this key's cap
      const other = await openSse(sseUrl(s, ['x.cap']), { headers: bearer(s.adminKey) });
      assert.equal(other.status, 200);
      other.close();
      // free one: a new stream gets in (the release is asynchronous)
      w1.close();
      const again = await waitFor(async () => {
        const c = await openSse(sseUrl(s, ['x.cap']), { headers: bearer(k.key) });
        if (c.status === 200) return c;
        assert.equal(c.status, 429);
        return null;
      }, { timeout: 5000, interval: 100, what: 'a freed connection slot' });
      open.push(again);
      assert429(await openSse(sseUrl(s, ['x.cap']), { headers: bearer(k.key) }), 'too_many_connections');
      assert.ok(authLogs(s).some((l) => l.key === k.id && l.outcome === 'connection_limited'));
    } finally {
      for (const c of open) c.close();
    }
    await stillServes(s);
  });

  describe('WebSocket authentication', () => {
    test('header, ?token= and first-message auth', async () => {
      const k = await createKey(s, { name: 'ws', permissions: { publish: ['x.>'], subscribe: ['x.>'] } });
      const viaHeader = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
      const viaQuery = await jsonWs(wsUrl(s, `?token=${encodeURIComponent(k.key)}`));
      const viaMsg = await jsonWs(wsUrl(s));
      try {
        const a = await viaMsg.request({ type: 'auth', id: 'a1', token: k.key });
        assert.deepEqual(a, { type: 'authenticated', id: 'a1', tenant: 'default', key: k.id });
        const twice = await viaMsg.request({ type: 'auth', id: 'a2', token: k.key });
        assert.equal(twice.code, 'already_authenticated');
        for (const c of [viaHeader, viaQuery, viaMsg]) {
          assert.equal((await c.request({ type: 'subscribe', id: 's', subject: 'x.ws.>' })).type, 'subscribed');
        }
        const p = await viaMsg.request({ type: 'publish', id: 'p', subject: 'x.ws.1', data: 'hi' });
        assert.equal(p.type, 'published');
        for (const c of [viaHeader, viaQuery, viaMsg]) {
          const m = await c.next((x) => x.type === 'message');
          assert.equal(m.message.payload, 'hi');
        }
        // a bad ?token= is answered 401 before any WebSocket exists
        const r = await wsRefused(wsUrl(s, `?token=${encodeURIComponent(wrongSecret(k.key))}`));
        assert.equal(r.status, 401);
        assert.equal(r.json.error.message, INVALID);
      } finally {
        viaHeader.close();
        viaQuery.close();
        viaMsg.close();
      }
    });

    test('wrong first message -> 4401; bad token in the auth message -> 4401', async () => {
      const k = await createKey(s, { name: 'ws2', permissions: { subscribe: ['x.>'] } });
      const firsts = [
        { type: 'subscribe', subject: 'x.>' },
        { type: 'ping' },
        'not json',
        { type: 'auth' },
        { type: 'auth', token: 42 },
      ];
      for (const f of firsts) {
        const c = await jsonWs(wsUrl(s));
        c.send(f);
        const info = await closedWithin(c, 5000);
        assert.equal(info.code, 4401, JSON.stringify(f));
        assert.equal(c.msgs.length, 0, 'nothing was acted on');
      }
      for (const tok of [wrongSecret(k.key), UNKNOWN_KEY, 'garbage', 'a.b.c']) {
        const c = await jsonWs(wsUrl(s));
        c.send({ type: 'auth', token: tok });
        const info = await closedWithin(c, 5000);
        assert.equal(info.code, 4401, tok);
        assert.equal(info.reason, INVALID);
      }
      const ok = await jsonWs(wsUrl(s));
      try {
        assert.equal((await ok.request({ type: 'auth', id: 1, token: k.key })).type, 'authenticated');
      } finally {
        ok.close();
      }
    });

    test('forbidden subscribe -> error "forbidden"; the same connection then subscribes to an allowed subject', async () => {
      const k = await createKey(s, { name: 'ws3', permissions: { publish: ['x.ok.>'], subscribe: ['x.ok.>'] } });
      const c = await jsonWs(wsUrl(s), { headers: bearer(k.key) });
      try {
        for (const subject of ['>', 'x.>', 'y.ok.>']) {
          const e = await c.request({ type: 'subscribe', id: subject, subject });
          assert.equal(e.type, 'error');
          assert.equal(e.code, 'forbidden');
        }
        const h = await c.request({ type: 'subscribe', id: 'h', subject: 'x.ok.>', since: 0 });
        assert.equal(h.code, 'forbidden', 'replay needs history');
        const fp = await c.request({ type: 'publish', id: 'fp', subject: 'x.no', data: 1 });
        assert.equal(fp.code, 'forbidden');
        const sub = await c.request({ type: 'subscribe', id: 'ok', subject: 'x.ok.>' });
        assert.deepEqual(sub, { type: 'subscribed', id: 'ok', subject: 'x.ok.>' });
        assert.equal((await c.request({ type: 'publish', id: 'p', subject: 'x.ok.1', data: 7 })).type, 'published');
        const m = await c.next((x) => x.type === 'message');
        assert.equal(m.message.payload, 7);
        assert.equal(c.closeInfo, null);
      } finally {
        c.close();
      }
    });
  });
});

// --- trusted proxies and admin_allow ---------------------------------------------------

describe('trusted proxies and admin_allow', () => {
  let s;
  before(async () => {
    s = await startServer({ args: ['--auth-trusted-proxies', '127.0.0.1/32', '--auth-admin-allow', '10.0.0.0/8'] });
  });
  after(async () => {
    try { assertNoSecretLeak(s); } finally { await s.stop(); }
  });

  test('admin_allow 10.0.0.0/8: keys API 403 from 127.0.0.1, allowed via a trusted proxy; publish still works', async () => {
    const r = await api(s, 'GET', '/api/v1/keys');
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'forbidden');
    assert.equal((await api(s, 'POST', '/api/v1/keys', { body: { name: 'x' } })).status, 403);
    assert.equal((await api(s, 'GET', `/api/v1/keys/${keyId(s.adminKey)}`)).status, 403);
    assert.equal((await pub(s, 'x.a', 1)).status, 202, 'publish is not the admin API');
    const via = await api(s, 'GET', '/api/v1/keys', { headers: { 'x-forwarded-for': '10.9.9.9' } });
    assert.equal(via.status, 200);
    // a proxy chain: the right-most address that is not a trusted proxy counts
    const spoof = await api(s, 'GET', '/api/v1/keys', { headers: { 'x-forwarded-for': '10.9.9.9, 192.168.1.1' } });
    assert.equal(spoof.status, 403);
    const chain = await api(s, 'GET', '/api/v1/keys', { headers: { 'x-forwarded-for': '192.168.1.1, 10.9.9.9, 127.0.0.1' } });
    assert.equal(chain.status, 200);
  });

  test('key cidrs 10.0.0.0/8: X-Forwarded-For 10.1.2.3 from the trusted proxy is accepted', async () => {
    const xff = { 'x-forwarded-for': '10.1.2.3' };
    const r = await api(s, 'POST', '/api/v1/keys', {
      headers: xff, body: { name: 'cidr', permissions: { publish: ['x.>'], subscribe: ['x.>'] }, cidrs: ['10.0.0.0/8'] },
    });
    assert.equal(r.status, 201);
    const k = trackSecret(s, r.json.key);
    assert.equal((await pub(s, 'x.c', 1, { key: k, headers: xff })).status, 202);
    const sse = await openSse(sseUrl(s, ['x.>']), { headers: { ...bearer(k), ...xff } });
    assert.equal(sse.status, 200);
    sse.close();
    assert401(await pub(s, 'x.c', 2, { key: k }), INVALID);
    assert401(await pub(s, 'x.c', 3, { key: k, headers: { 'x-forwarded-for': '10.1.2.3, 192.168.0.7' } }), INVALID);
    assert401(await pub(s, 'x.c', 4, { key: k, headers: { 'x-forwarded-for': 'not-an-ip' } }), INVALID);
    const use = await api(s, 'GET', `/api/v1/keys/${keyId(k)}/usage`, { headers: xff });
    assert.equal(use.status, 200);
    const ips = use.json.usage.map((e) => e.ip);
    assert.ok(ips.includes('10.1.2.3'), JSON.stringify(ips));
    assert.ok(ips.includes('127.0.0.1'));
    assert.ok(authLogs(s).some((l) => l.key === keyId(k) && l.ip === '10.1.2.3' && l.outcome === 'ok'));
    assert.equal((await pub(s, 'x.c', 5)).status, 202);
  });
});

// --- rate limits ----------------------------------------------------------------------

describe('per-IP rate limit (--auth-ip-rate 2 --auth-ip-burst 5)', () => {
  let s;
  before(async () => { s = await startServer({ args: ['--auth-ip-rate', '2', '--auth-ip-burst', '5'] }); });
  after(async () => { try { assertNoSecretLeak(s); } finally { await s.stop(); } });

  test('the 6th quick request from one IP -> 429 rate_limited; refills', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await pub(s, 'x.ip', i)).status, 202, `request ${i + 1}`);
    assert429(await pub(s, 'x.ip', 5), 'rate_limited');
    // the limit is per IP, whatever the credential (even none)
    assert.equal((await pub(s, 'x.ip', 6, { key: null })).status, 429);
    await sleep(600);
    await waitFor(async () => (await pub(s, 'x.ip', 7)).status === 202,
      { timeout: 5000, interval: 600, what: 'the IP bucket to refill' });
    const lines = authLogs(s).filter((l) => l.outcome === 'rate_limited');
    assert.ok(lines.length >= 2);
    assert.equal(lines[0].reason, 'client IP rate limit');
  });
});

describe('failed-authentication limit (--auth-fail-rate 1 --auth-fail-burst 3)', () => {
  let s;
  before(async () => { s = await startServer({ args: ['--auth-fail-rate', '1', '--auth-fail-burst', '3'] }); });
  after(async () => { try { assertNoSecretLeak(s); } finally { await s.stop(); } });

  test('after 3 bad keys even the good admin key gets 429 until the bucket refills', async () => {
    // missing credentials do not count as guesses
    for (let i = 0; i < 5; i++) assert.equal((await pub(s, 'x.f', i, { key: null })).status, 401);
    assert.equal((await pub(s, 'x.f', 'ok')).status, 202);
    for (const k of [UNKNOWN_KEY, wrongSecret(s.adminKey), 'garbage']) assert401(await pub(s, 'x.f', 1, { key: k }), INVALID);
    const r = await pub(s, 'x.f', 2);
    assert429(r, 'rate_limited');
    assert.equal(r.json.error.message, 'too many requests; retry later');
    assert.equal((await openSse(sseUrl(s, ['x.>']), { headers: bearer(s.adminKey) })).status, 429);
    // refused while limited: not counted as another failure
    const ok = await waitFor(async () => {
      const x = await pub(s, 'x.f', 3);
      return x.status === 202 ? x : (assert.equal(x.status, 429), null);
    }, { timeout: 5000, interval: 500, what: 'the failure bucket to refill' });
    assert.equal(ok.status, 202);
    const lines = authLogs(s).filter((l) => l.outcome === 'rate_limited');
    assert.ok(lines.every((l) => l.reason === 'too many failed attempts from this address'));
    assert.ok(lines.some((l) => l.key === '' || l.key === keyId(s.adminKey)));
  });
});

// --- connection caps --------------------------------------------------------------------

describe('per-IP connection cap (--auth-ip-max-connections 3)', () => {
  let s;
  before(async () => { s = await startServer({ args: ['--auth-ip-max-connections', '3'] }); });
  after(async () => { try { assertNoSecretLeak(s); } finally { await s.stop(); } });

  test('three streams with different keys; the fourth 429 / 4429; closing one frees a slot', async () => {
    const spec = { permissions: { subscribe: ['x.>'] } };
    const k1 = await createKey(s, { name: 'c1', ...spec });
    const k2 = await createKey(s, { name: 'c2', ...spec });
    const k3 = await createKey(s, { name: 'c3', ...spec });
    const a = await openSse(sseUrl(s, ['x.a']), { headers: bearer(k1.key) });
    const b = await jsonWs(wsUrl(s), { headers: bearer(k2.key) });
    const c = await jsonWs(wsUrl(s));
    const open = [a, b, c];
    try {
      assert.equal(a.status, 200);
      assert.equal((await c.request({ type: 'auth', id: 'x', token: s.adminKey })).type, 'authenticated');
      assert429(await openSse(sseUrl(s, ['x.a']), { headers: bearer(k3.key) }), 'too_many_connections');
      assert429(await wsRefused(wsUrl(s), bearer(k3.key)), 'too_many_connections');
      const fm = await jsonWs(wsUrl(s));
      fm.send({ type: 'auth', token: k3.key });
      assert.equal((await closedWithin(fm, 5000)).code, 4429);
      // plain requests are not streams: still fine
      assert.equal((await pub(s, 'x.a', 1)).status, 202);
      await a.waitEvents(1);
      a.close();
      const d = await waitFor(async () => {
        const x = await openSse(sseUrl(s, ['x.a']), { headers: bearer(k3.key) });
        if (x.status === 200) return x;
        assert.equal(x.status, 429);
        return null;
      }, { timeout: 5000, interval: 100, what: 'a freed slot' });
      open.push(d);
      assert429(await openSse(sseUrl(s, ['x.a']), { headers: bearer(k1.key) }), 'too_many_connections');
    } finally {
      for (const x of open) x.close();
    }
  });
});

describe('WebSocket auth timeout (--auth-ws-auth-timeout-ms 500 --heartbeat-ms 5000)', () => {
  let s;
  before(async () => { s = await startServer({ args: ['--auth-ws-auth-timeout-ms', '500', '--heartbeat-ms', '5000'] }); });
  after(async () => { try { assertNoSecretLeak(s); } finally { await s.stop(); } });

  test('no auth message -> close 4401 "authentication timeout" (well before the 5 s heartbeat)', async () => {
    const c = await jsonWs(wsUrl(s));
    const info = await closedWithin(c, 3500, 'the auth timeout');
    assert.equal(info.code, 4401);
    assert.equal(info.reason, 'authentication timeout');
    assert.equal(c.msgs.length, 0);
    // an authenticated connection outlives that deadline
    const ok = await jsonWs(wsUrl(s));
    try {
      assert.equal((await ok.request({ type: 'auth', id: 1, token: s.adminKey })).type, 'authenticated');
      await sleep(1000);
      assert.deepEqual(await ok.request({ type: 'ping', id: 'p' }), { type: 'pong', id: 'p' });
    } finally {
      ok.close();
    }
  });
});

// --- audit ----------------------------------------------------------------------------------

describe('audit log and metrics', () => {
  let s;
  before(async () => { s = await startServer(); });
  after(async () => { await s.stop(); });

  test('one "auth" line per attempt, counters match, no secret in any output', async () => {
    const metricsLines = () => authLogs(s).filter((l) => l.endpoint === 'GET /metrics').length;
    const base = await authCounts(s);
    // the log arrives through a pipe: wait for the line of that metrics read
    await waitFor(() => metricsLines() === 1, { timeout: 5000, what: 'the metrics auth line' });
    const linesBefore = authLogs(s).length;
    let ok = 1;                                              // the closing metrics read counts itself
    const k = await createKey(s, { name: 'aud', permissions: { publish: ['p.>'], rate: { per_second: 0.01, burst: 1 } } });
    ok++;
    const v = await createKey(s, { name: 'victim', permissions: { publish: ['p.>'] } });
    ok++;
    const tok = await api(s, 'POST', '/auth/token', { key: v.key });
    assert.equal(tok.status, 200);
    trackSecret(s, tok.json.token);
    ok++;

    assert401(await pub(s, 'p.a', 1, { key: null }), MISSING);                   // missing
    assert401(await pub(s, 'p.a', 1, { key: 'bogus' }), INVALID);                // malformed
    assert401(await pub(s, 'p.a', 1, { key: UNKNOWN_KEY }), INVALID);            // unknown
    assert401(await pub(s, 'p.a', 1, { key: wrongSecret(k.key) }), INVALID);     // bad_secret
    assert401(await pub(s, 'p.a', 1, { key: wrongSecret(v.key) }), INVALID);     // bad_secret
    assert.equal((await pub(s, 'p.a', 1, { key: k.key })).status, 202); ok++;
    assert429(await pub(s, 'p.a', 2, { key: k.key }));                            // rate_limited
    assert.equal((await pub(s, 'p.a', 3, { key: v.key })).status, 202); ok++;
    assert403(await pub(s, 'q.a', 4, { key: v.key })); ok++;                      // ok, then forbidden
    assert.equal((await pub(s, 'p.a', 5, { key: tok.json.token })).status, 202); ok++;
    assert.equal((await api(s, 'DELETE', `/api/v1/keys/${v.id}`)).status, 200); ok++;
    assert401(await pub(s, 'p.a', 6, { key: v.key }), INVALID);                  // revoked
    assert401(await pub(s, 'p.a', 7, { key: tok.json.token }), INVALID);         // revoked (its key)
    const sse = await openSse(sseUrl(s, ['p.>'], `&token=${encodeURIComponent(k.key)}`));
    assert.equal(sse.status, 429);                                                // rate_limited again
    const after1 = await authCounts(s);
    const d = (o) => (after1[o] || 0) - (base[o] || 0);
    const want = {
      ok, missing: 1, malformed: 1, unknown: 1, bad_secret: 2, revoked: 2, expired: 0,
      ip_not_allowed: 0, invalid_token: 0, forbidden: 1, rate_limited: 2, connection_limited: 0,
    };
    for (const [o, n] of Object.entries(want)) assert.equal(d(o), n, `switchboard_auth_total{outcome="${o}"}`);

    // the log: one line per attempt (the forbidden publish: ok, then forbidden)
    await waitFor(() => metricsLines() === 2, { timeout: 5000, what: 'the last metrics auth line' });
    const lines = authLogs(s).slice(linesBefore);
    const byOutcome = {};
    for (const l of lines) byOutcome[l.outcome] = (byOutcome[l.outcome] || 0) + 1;
    for (const [o, n] of Object.entries(want)) assert.equal(byOutcome[o] || 0, n, `log lines of ${o}`);
    assert.equal(lines.length, Object.values(want).reduce((a, b) => a + b, 0));
    for (const l of lines) {
      assert.equal(l.ip, '127.0.0.1');
      assert.ok(['POST /api/v1/publish', 'POST /api/v1/keys', 'POST /auth/token', 'GET /metrics',
        `DELETE /api/v1/keys/${v.id}`, 'GET /api/v1/stream'].includes(l.endpoint), l.endpoint);
      assert.equal(l.level, l.outcome === 'ok' ? 'info' : 'warn');
      assert.equal(typeof l.reason, 'string');
      assert.equal(typeof l.key, 'string');
    }
    const badSecret = lines.filter((l) => l.outcome === 'bad_secret').map((l) => l.key).sort();
    assert.deepEqual(badSecret, [k.id, v.id].sort());
    const forb = lines.find((l) => l.outcome === 'forbidden');
    assert.equal(forb.key, v.id);
    assert.equal(forb.tenant, 'default');
    assert.match(forb.reason, /q\.a/);
    assert.ok(lines.some((l) => l.outcome === 'revoked' && l.key === v.id));
    assert.deepEqual(lines.filter((l) => l.outcome === 'rate_limited').map((l) => l.key), [k.id, k.id]);
    assert.ok(!s.stderr.includes('token='));
    assertNoSecretLeak(s);
  });
});

// --- usage log persistence ----------------------------------------------------------------

describe('usage log across restarts', () => {
  test('a graceful stop stores it, the 10 s writer stores it before a crash, a revoked key keeps it', async () => {
    const usage = async (srv, id) => {
      const r = await api(srv, 'GET', `/api/v1/keys/${id}/usage`);
      assert.equal(r.status, 200, r.text);
      return r.json.usage;
    };
    let cur = await startServer();
    const first = cur;
    try {
      const k = await createKey(cur, { name: 'persist', permissions: { publish: ['x.>'] } });
      assert.equal((await pub(cur, 'x.a', 1, { key: k.key })).status, 202);
      assert401(await pub(cur, 'x.a', 2, { key: wrongSecret(k.key) }));
      assert403(await pub(cur, 'y.a', 3, { key: k.key }));
      const before = await usage(cur, k.id);
      assert.deepEqual(before.map((e) => e.outcome), ['forbidden', 'ok', 'bad_secret', 'ok']);
      const lastUsed = (await api(cur, 'GET', `/api/v1/keys/${k.id}`)).json.last_used_at;
      assert.ok(lastUsed);

      // graceful stop (well inside the writer's interval: the shutdown flush stores it)
      await cur.stop({ cleanup: false });
      assertNoSecretLeak(cur);
      const secrets = [...cur.secrets];
      cur = await first.restart().start();
      cur.secrets = secrets;
      assert.deepEqual(await usage(cur, k.id), before, 'the log is back, entry for entry');
      assert.equal((await api(cur, 'GET', `/api/v1/keys/${k.id}`)).json.last_used_at, lastUsed);
      // recording goes on on top of the restored entries
      assert.equal((await pub(cur, 'x.b', 4, { key: k.key })).status, 202);
      const grown = await usage(cur, k.id);
      assert.equal(grown.length, before.length + 1);
      assert.equal(grown[0].outcome, 'ok');
      assert.deepEqual(grown.slice(1), before);

      // revoked: the refused attempt is logged; after one writer interval
      // (10 s) a crash does not lose it, and the history stays
      assert.equal((await api(cur, 'DELETE', `/api/v1/keys/${k.id}`)).status, 200);
      assert401(await pub(cur, 'x.c', 5, { key: k.key }), INVALID);
      const revoked = await usage(cur, k.id);
      assert.equal(revoked[0].outcome, 'revoked');
      await sleep(12000);
      await cur.kill9();
      assertNoSecretLeak(cur, { bootstrapPrinted: false });
      cur = await first.restart().start();
      cur.secrets = secrets;
      assert.deepEqual(await usage(cur, k.id), revoked, 'stored by the periodic writer');
      const view = await api(cur, 'GET', `/api/v1/keys/${k.id}`);
      assert.equal(view.json.status, 'revoked');
      await stillServes(cur);
      assertNoSecretLeak(cur, { bootstrapPrinted: false });
    } finally {
      if (!cur.exited) await cur.stop({ cleanup: false });
      first.cleanup();
    }
  });
});
