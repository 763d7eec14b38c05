// Operations: /health (open; its 503 when the store cannot write), /metrics
// (admin credential only; valid Prometheus text per promtool, counters that
// move, authentication outcomes counted), and
// configuration (unknown flags, bad values, --config file < env < flags).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import WebSocket from 'ws';
import { Server, BIN, postWebhook, publish, waitFor } from './lib/server.js';
import { readEvents } from './lib/readback.js';

function promtool(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, timeout: 20000 });
  if (r.error) throw new Error(`promtool not runnable (install the prometheus package): ${r.error.message}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function assertHealthShape(j, status) {
  assert.deepEqual(Object.keys(j), ['status', 'version', 'uptimeSeconds', 'connections', 'storage']);
  assert.equal(j.status, status);
  assert.match(j.version, /^\d+\.\d+\.\d+/);
  assert.ok(Number.isInteger(j.uptimeSeconds) && j.uptimeSeconds >= 0);
  assert.ok(Number.isInteger(j.connections) && j.connections >= 1, 'this request is a connection');
  assert.deepEqual(Object.keys(j.storage), ['status', 'backend', 'lastSeq', 'messages', 'bytes']);
  assert.equal(j.storage.status, status);
  assert.equal(j.storage.backend, 'sqlite');
}

describe('health and metrics', () => {
  let s;
  before(async () => { s = await new Server().start(); });
  after(async () => { await s.stop(); });

  test('GET /health is 200 with the storage status, and follows the store', async () => {
    let res = await fetch(`${s.url}/health`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/json/);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const before_ = await res.json();
    assertHealthShape(before_, 'ok');
    const r = await postWebhook(s, '/webhook/health/check', { a: 1 });
    assert.equal(r.status, 202);
    res = await fetch(`${s.url}/health`);
    const after_ = await res.json();
    assertHealthShape(after_, 'ok');
    assert.equal(after_.storage.lastSeq, Number(r.body.id));
    assert.equal(after_.storage.messages, before_.storage.messages + 1);
    assert.ok(after_.storage.bytes > before_.storage.bytes);
  });

  test('HEAD /health: 200, headers only', async () => {
    const res = await fetch(`${s.url}/health`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.ok(Number(res.headers.get('content-length')) > 0);
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });

  test('GET /metrics passes promtool check metrics', async () => {
    // some traffic first, so that labelled series exist
    await postWebhook(s, '/webhook/m/a', { x: 1 });
    await (await fetch(`${s.url}/nope`)).arrayBuffer();
    const res = await fetch(`${s.url}/metrics`, { headers: s.auth() });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const p = promtool(text);
    assert.equal(p.status, 0, `promtool: ${p.out}`);
    assert.equal(p.out.trim(), '', 'no lint findings');
    for (const name of ['switchboard_connections', 'switchboard_messages_in_total', 'switchboard_http_responses_total',
      'switchboard_store_commit_seconds', 'switchboard_store_healthy', 'switchboard_store_last_sequence',
      'switchboard_auth_total'])
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  });

  test('counters move: messages in, responses by code, connections by protocol', async () => {
    const N = 7;
    const m0 = (await s.metrics()).values;
    for (let i = 0; i < N; i++) assert.equal((await postWebhook(s, '/webhook/m/count', { i })).status, 202);
    assert.equal((await publish(s, 'rooms.m', { p: 1 })).status, 202);
    const m1 = (await s.metrics()).values;
    const d = (k) => (m1[k] ?? 0) - (m0[k] ?? 0);
    assert.ok(d('switchboard_messages_in_total{source="webhook"}') >= N);
    assert.ok(d('switchboard_messages_in_total{source="publish"}') >= 1);
    assert.ok(d('switchboard_http_responses_total{code="202"}') >= N + 1);
    assert.ok(d('switchboard_store_last_sequence') >= N);
    assert.ok(d('switchboard_received_bytes_total') > 0);
    assert.ok(m1['switchboard_store_healthy'] === 1);

    // an SSE stream and a WebSocket show up in the gauges, and leave them
    const ac = new AbortController();
    const sse = await fetch(`${s.url}/api/v1/stream?subject=rooms.>`, { signal: ac.signal, headers: s.auth() });
    assert.equal(sse.status, 200);
    const ws = new WebSocket(`${s.wsUrl}/api/v1/ws`, { headers: s.auth() });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      const g = await waitFor(async () => {
        const v = (await s.metrics()).values;
        return v['switchboard_connections{protocol="sse"}'] >= 1 && v['switchboard_connections{protocol="websocket"}'] >= 1 && v;
      }, { timeout: 5000, what: 'sse and websocket gauges' });
      assert.ok(g['switchboard_connections_total{protocol="sse"}'] >= 1);
      assert.ok(g['switchboard_connections_total{protocol="websocket"}'] >= 1);
      assert.ok(g['switchboard_connections{protocol="http"}'] >= 1, 'the scrape itself');
    } finally {
      ac.abort();
      ws.close();
    }
    await waitFor(async () => {
      const v = (await s.metrics()).values;
      return v['switchboard_connections{protocol="sse"}'] === 0 && v['switchboard_connections{protocol="websocket"}'] === 0;
    }, { timeout: 5000, what: 'gauges back to 0' });
  });
});

describe('access to /metrics and /health', () => {
  let s;
  before(async () => { s = await new Server().start(); });
  after(async () => { await s.stop(); });

  const AUTH = (outcome) => `switchboard_auth_total{outcome="${outcome}"}`;

  async function createKey(body) {
    const res = await fetch(`${s.url}/api/v1/keys`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...s.auth() }, body: JSON.stringify(body),
    });
    const j = await res.json();
    assert.equal(res.status, 201, JSON.stringify(j));
    assert.match(j.key, /^sb_/);
    return j;
  }

  test('/metrics: 401 without a credential, 403 for a non-admin key, 200 for the admin key; /health open', async () => {
    const reader = await createKey({ name: 'metrics-reader', permissions: { subscribe: ['>'], history: ['>'] } });
    const m0 = (await s.metrics()).values;
    for (const o of ['ok', 'missing', 'forbidden']) assert.equal(typeof m0[AUTH(o)], 'number', AUTH(o));

    // no credential: 401 with the challenge
    let res = await fetch(`${s.url}/metrics`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="switchboard"');
    let j = await res.json();
    assert.deepEqual(Object.keys(j), ['error']);
    assert.equal(j.error.code, 'unauthorized');
    assert.doesNotMatch(JSON.stringify(j), /switchboard_/, 'no metrics in the refusal');

    // a valid key without admin permission: 403
    res = await fetch(`${s.url}/metrics`, { headers: s.auth(reader.key) });
    assert.equal(res.status, 403);
    j = await res.json();
    assert.equal(j.error.code, 'forbidden');
    assert.match(j.error.message, /^not permitted/);
    assert.doesNotMatch(JSON.stringify(j), /switchboard_/);

    // /health needs nothing (load balancers), and is not an auth attempt
    res = await fetch(`${s.url}/health`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).status, 'ok');
    res = await fetch(`${s.url}/health`, { method: 'HEAD' });
    assert.equal(res.status, 200);

    // the admin key: 200, valid Prometheus text
    res = await fetch(`${s.url}/metrics`, { headers: s.auth() });
    assert.equal(res.status, 200);
    const text = await res.text();
    const p = promtool(text);
    assert.equal(p.status, 0, `promtool: ${p.out}`);
    assert.equal(p.out.trim(), '', 'no lint findings');

    const m1 = (await s.metrics()).values;
    const d = (o) => m1[AUTH(o)] - m0[AUTH(o)];
    assert.equal(d('missing'), 1, 'the request without a credential, and nothing else');
    assert.equal(d('forbidden'), 1, 'the non-admin key');
    // the reader authenticated (then was refused), the admin scrape, this scrape
    assert.ok(d('ok') >= 2, `ok moved by ${d('ok')}`);
    for (const o of ['malformed', 'unknown', 'bad_secret', 'revoked', 'expired', 'rate_limited'])
      assert.equal(d(o), 0, o);

    // audited, without the secrets
    const audit = s.logsMatching('auth').filter((l) => l.endpoint === 'GET /metrics');
    const missing = audit.filter((l) => l.outcome === 'missing');
    assert.equal(missing.length, 1, JSON.stringify(audit));
    assert.equal(missing[0].level, 'warn');
    const forbidden = audit.filter((l) => l.outcome === 'forbidden');
    assert.equal(forbidden.length, 1, JSON.stringify(audit));
    assert.equal(forbidden[0].key, reader.id);
    assert.ok(!s.stderr.includes(reader.key) && !s.stderr.includes(s.adminKey), 'no key in the logs');
  });

  test('after refusals the admin key still gets 200 (a few failures are not rate limited)', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${s.url}/metrics`);
      assert.equal(res.status, 401);
      await res.arrayBuffer();
    }
    const { text, values } = await s.metrics();
    assert.match(text, /^# TYPE switchboard_auth_total counter$/m);
    assert.ok(values[AUTH('missing')] >= 4);
  });
});

describe('health when the store cannot write', () => {
  // A real write failure: the server runs with a file-size limit (RLIMIT_FSIZE,
  // SIGXFSZ ignored), so once the SQLite WAL would grow past it every write
  // fails with EFBIG - as on a full disk.
  const FSIZE = 600000;
  const wrap = ['sh', '-c', `trap '' XFSZ; exec prlimit --fsize=${FSIZE} -- "$@"`, 'sh'];

  test('ingest answers 503 store_unavailable, /health 503, and all else keeps working; a restart recovers', async () => {
    const s = await new Server({ wrap, loops: 1 }).start();
    const acked = new Map();
    let failed = null;
    try {
      for (let i = 0; i < 40 && !failed; i++) {
        const body = JSON.stringify({ i, pad: 'p'.repeat(100000) });
        const r = await postWebhook(s, '/webhook/full/disk', body);
        if (r.status === 202) acked.set(r.body.id, body);
        else failed = r;
      }
      assert.ok(failed, 'a write eventually failed');
      assert.ok(acked.size >= 1, 'writes below the limit succeeded');
      assert.equal(failed.status, 503);
      assert.equal(failed.body.error.code, 'store_unavailable');

      const h = await fetch(`${s.url}/health`);
      assert.equal(h.status, 503);
      assertHealthShape(await h.json(), 'error');
      const m = (await s.metrics()).values;
      assert.equal(m.switchboard_store_healthy, 0);
      assert.ok(m.switchboard_store_errors_total >= 1);
      // what does not need the writer still works
      const p = await publish(s, 'rooms.live', { still: 'here' });
      assert.equal(p.status, 202);
      assert.equal(p.body.stored, false);
      assert.equal((await fetch(`${s.url}/nope`)).status, 404);
      // and a second failing webhook is a 503 again, not a hang or a crash
      const again = await postWebhook(s, '/webhook/full/disk', JSON.stringify({ pad: 'q'.repeat(100000) }));
      assert.equal(again.status, 503);
      // the failure is logged as JSON, like every line
      assert.ok(s.logsMatching('store error').length >= 1, 'store error logged');
      for (const line of s.stderr.split('\n').filter(Boolean))
        assert.doesNotThrow(() => JSON.parse(line), `log line is JSON: ${line}`);
    } finally {
      await s.stop({ cleanup: false });
    }

    const s2 = await s.restart({ wrap: undefined }).start();
    try {
      const h = await fetch(`${s2.url}/health`);
      assert.equal(h.status, 200);
      const maxAcked = Math.max(...[...acked.keys()].map(Number));
      const evs = await readEvents(s2, { subject: 'webhooks.>', since: '0', until: (e) => e.length >= acked.size });
      assert.deepEqual(evs.map((e) => e.id), [...acked.keys()], 'exactly the acknowledged messages were stored');
      for (const e of evs) assert.equal(JSON.stringify(e.data.payload), acked.get(e.id));
      const r = await postWebhook(s2, '/webhook/full/disk', { after: 'restart' });
      assert.equal(r.status, 202);
      assert.ok(Number(r.body.id) > maxAcked);
    } finally {
      await s2.stop();
      s.cleanup();
    }
  });
});

describe('configuration', () => {
  function run(args, env = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'sb-cfg-'));
    try {
      const r = spawnSync(BIN, ['serve', '--port', '0', '--data-dir', dir, ...args],
        { env: { ...process.env, ...env }, timeout: 10000, encoding: 'utf8' });
      return { code: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }

  test('an unknown flag exits 2 with a message', () => {
    const r = run(['--no-such-flag']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /unknown option "--no-such-flag"/);
    const r2 = run(['stray']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /unexpected argument "stray"/);
    const r3 = run(['--max-body']);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /needs a value/);
  });

  test('bad values exit 2 naming the option, from flags, env and file', () => {
    let r = run(['--max-uri', '10']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /limits\.max_uri must be between 64 and/);
    r = run([], { SWITCHBOARD_MAX_BODY: 'lots' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /SWITCHBOARD_MAX_BODY: limits\.max_body: not a number/);
    r = run([], { LOG_LEVEL: 'chatty' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /log_level/);
    r = run([], { SWITCHBOARD_FSYNC: 'sometimes' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /fsync/);
    const dir = mkdtempSync(join(tmpdir(), 'sb-cfgfile-'));
    try {
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"limits": {"max_body": 10,}}');
      r = run(['--config', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /bad\.json/);
      writeFileSync(bad, '{"limits": {"max_body": "ten"}}');
      r = run(['--config', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /max_body/);
      writeFileSync(bad, '{"port": 0, "streams": [{"name": "x", "subjects": ["a.>.b"]}]}');
      r = run(['--config', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /invalid subject pattern/);
      r = run(['--config', join(dir, 'missing.json')]);
      assert.equal(r.code, 2);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  test('--help and version exit 0', () => {
    const h = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(h.status, 0);
    assert.match(h.stdout, /--max-body\s+SWITCHBOARD_MAX_BODY/);
    const v = spawnSync(BIN, ['version'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^switchboard \d+\.\d+\.\d+/);
    const u = spawnSync(BIN, ['bogus'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(u.status, 2);
  });

  function freePort() {
    return new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
      srv.on('error', reject);
    });
  }

  test('--config file applies; env overrides the file; flags override env', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-cfgfile-'));
    const filePort = await freePort();
    const envPort = await freePort();
    const file = join(dir, 'switchboard.json');
    writeFileSync(file, JSON.stringify({
      port: filePort,
      log_level: 'error',                     // env LOG_LEVEL=debug wins
      limits: { max_uri: 64, max_body: 100 }, // env 200, then flag --max-body 300 wins
      webhook: { max_depth: 1 },              // env 2 wins
      streams: [{ name: 'rooms', subjects: ['rooms.>'] }],
    }));
    const s = new Server({
      port: null,
      args: ['--config', file, '--max-body', '300'],
      env: { PORT: String(envPort), LOG_LEVEL: 'debug', SWITCHBOARD_MAX_BODY: '200', SWITCHBOARD_WEBHOOK_MAX_DEPTH: '2' },
    });
    try {
      await s.start();
      assert.equal(s.port, envPort, 'PORT from the environment, not the file');
      // log level from env: debug lines appear
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
      await waitFor(() => s.logs.some((l) => l.level === 'debug' && l.msg === 'request'), { timeout: 5000, what: 'debug request log' });
      // max_body from the flag (300), over env (200) and file (100)
      let r = await postWebhook(s, '/webhook/cfg/a', 'x'.repeat(300), { 'content-type': 'text/plain' });
      assert.equal(r.status, 202);
      r = await postWebhook(s, '/webhook/cfg/a', 'x'.repeat(301), { 'content-type': 'text/plain' });
      assert.equal(r.status, 413);
      // max_uri from the file
      assert.equal((await fetch(`${s.url}/health?${'q'.repeat(64 - 8)}`)).status, 200);
      assert.equal((await fetch(`${s.url}/health?${'q'.repeat(64 - 7)}`)).status, 414);
      // webhook.max_depth from env (2), over the file (1)
      assert.equal((await postWebhook(s, '/webhook/cfg/1/2', {})).status, 202);
      assert.equal((await postWebhook(s, '/webhook/cfg/1/2/3', {})).status, 400);
      // streams from the file: rooms.> is stored, webhooks.> no longer is
      const p = await publish(s, 'rooms.a', { stored: 'yes' });
      assert.equal(p.status, 202);
      assert.equal(p.body.stored, true);
      const w = await postWebhook(s, '/webhook/cfg/live', {});
      assert.equal(w.status, 202);
      assert.equal(w.body.id, null, 'webhooks.> is not in any configured stream');
      const evs = await readEvents(s, { subject: 'rooms.>', since: '0', until: (e) => e.length >= 1 });
      assert.equal(evs[0].id, p.body.id);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (s.exited) s.cleanup(); else await s.stop();
    }
  });
});
