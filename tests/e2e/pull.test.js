// pull.test.js - the pull API over durable consumers (docs/PULL.md):
// GET /api/v1/messages, ack, stats, consumer configuration, admin replay,
// redelivery and parking, persistence across a restart, tenancy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { postWebhook, sleep } from './lib/server.js';
import { api, assertNoSecretLeak, createKey, keyId, startServer } from './lib/auth_helpers.js';

const HIST = { history: ['webhooks.github.>'], subscribe: ['webhooks.github.>'] };

async function reader(server, name, permissions = HIST, extra = {}) {
  const k = await createKey(server, { name, permissions, ...extra });
  return k.key;
}

const pull = (s, key, q = '') => api(s, 'GET', `/api/v1/messages${q}`, { key });
const ack = (s, key, ids) => api(s, 'POST', '/api/v1/messages/ack', { key, body: { messageIds: ids } });
const stats = async (s, key) => {
  const r = await api(s, 'GET', '/api/v1/messages/stats', { key });
  assert.equal(r.status, 200, r.text);
  return r.json;
};
const ids = (r) => r.json.messages.map((m) => m.id);

async function hook(s, path, body, headers = {}) {
  const r = await postWebhook(s, path, body, headers);
  assert.equal(r.status, 202, r.text);
  return r.body.id;
}

function expectStats(st, want) {
  for (const [k, v] of Object.entries(want)) assert.deepEqual(st[k], v, `stats.${k}`);
}

let s;
before(async () => { s = await startServer(); });
after(async () => {
  assertNoSecretLeak(s);
  await s.stop();
});

test('a new consumer replays history; limit, hasMore, nextCursor; ack moves stats', async () => {
  const first = [];
  for (let i = 0; i < 5; i++) first.push(await hook(s, '/webhook/github/org/repo', { n: i }));
  const k = await reader(s, 'r1');

  let r = await pull(s, k, '?limit=2');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(ids(r), first.slice(0, 2));
  assert.equal(r.json.hasMore, true);
  assert.equal(r.json.nextCursor, first[1]);
  const m = r.json.messages[0];
  assert.equal(m.webhookPath, '/webhook/github/org/repo');
  assert.equal(m.source, 'github');
  assert.equal(m.method, 'POST');
  assert.deepEqual(m.payload, { n: 0 });
  assert.equal(m.subject, 'webhooks.github.org.repo');
  assert.equal(m.deliveries, 1);
  assert.equal(typeof m.headers, 'object');
  assert.match(m.receivedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  expectStats(await stats(s, k), { consumerName: `key_${keyId(k)}`, pending: 2, delivered: 2,
    ackFloor: 0, redelivered: 0, filterSubjects: ['webhooks.github.>'] });

  r = await pull(s, k, '?limit=10');
  assert.deepEqual(ids(r), first.slice(2));
  assert.equal(r.json.hasMore, false);
  assert.equal(r.json.nextCursor, first[4]);
  r = await pull(s, k);
  assert.deepEqual(ids(r), []);
  assert.equal(r.json.hasMore, false);
  expectStats(await stats(s, k), { pending: 5, delivered: 5, ackFloor: 0 });

  r = await ack(s, k, [first[1]]);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { acknowledged: 1, messageIds: [first[1]], unknown: [] });
  expectStats(await stats(s, k), { pending: 4, delivered: 5, ackFloor: 0 });

  r = await ack(s, k, [Number(first[0]), '999999', 'abc', first[1]]);
  assert.deepEqual(r.json, { acknowledged: 1, messageIds: [Number(first[0])],
    unknown: ['999999', 'abc', first[1]] });
  expectStats(await stats(s, k), { pending: 3, delivered: 5, ackFloor: 2 });

  r = await ack(s, k, first.slice(2));
  assert.equal(r.json.acknowledged, 3);
  expectStats(await stats(s, k), { pending: 0, delivered: 5, ackFloor: 5, redelivered: 0 });
});

test('ids pending on another consumer are reported unknown, not acked', async () => {
  const id = await hook(s, '/webhook/github/org/other', { x: 1 });
  const a = await reader(s, 'fa');
  const b = await reader(s, 'fb');
  const ra = await pull(s, a, '?limit=100');
  assert.ok(ids(ra).includes(id));
  const before = await stats(s, a);
  const r = await ack(s, b, [id]);     // b never pulled: not pending on b
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { acknowledged: 0, messageIds: [], unknown: [id] });
  expectStats(await stats(s, a), { pending: before.pending, ackFloor: before.ackFloor });
  expectStats(await stats(s, b), { pending: 0, delivered: 0 });
});

test('payload forms: JSON, text, binary; publish has null webhook fields', async () => {
  const k = await reader(s, 'pf', { history: ['pf.>', 'webhooks.github.pf.>'],
    subscribe: ['pf.>'] });
  const text = await hook(s, '/webhook/github/pf/text', 'hello world', { 'content-type': 'text/plain' });
  const bin = await hook(s, '/webhook/github/pf/bin', new Uint8Array([0xff, 0x00, 0xfe]),
    { 'content-type': 'application/octet-stream' });
  const pr = await api(s, 'POST', '/api/v1/publish', { body: { subject: 'webhooks.github.pf.pub', data: [1, 2] } });
  assert.equal(pr.status, 202, pr.text);
  const r = await pull(s, k, '?limit=10');
  const by = Object.fromEntries(r.json.messages.map((m) => [m.id, m]));
  assert.equal(by[text].payload, 'hello world');
  assert.deepEqual(by[bin].payload, { base64: Buffer.from([0xff, 0, 0xfe]).toString('base64'),
    contentType: 'application/octet-stream' });
  const p = by[pr.json.id];
  assert.deepEqual(p.payload, [1, 2]);
  assert.equal(p.webhookPath, null);
  assert.equal(p.source, null);
  assert.equal(p.method, null);
});

test('filters by event type and branch; startSeq and startTime', async () => {
  const k = await reader(s, 'flt');
  const put = (body) => api(s, 'PUT', '/api/v1/messages/consumer', { key: k, body });
  const path = '/webhook/github/flt/repo';
  const before = await hook(s, path, { ref: 'refs/heads/main' }, { 'x-github-event': 'push' });
  let r = await put({ filterSubjects: ['webhooks.github.flt.>'], events: ['push'],
    branches: ['main', 'refs/heads/release'], startSeq: Number(before) + 1 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.events, ['push']);
  assert.deepEqual(r.json.branches, ['refs/heads/main', 'refs/heads/release']);
  assert.equal(r.json.delivered, 0);
  const want = [];
  want.push(await hook(s, path, { ref: 'refs/heads/main' }, { 'x-github-event': 'push' }));
  await hook(s, path, { ref: 'refs/heads/dev' }, { 'x-github-event': 'push' });
  await hook(s, path, { ref: 'refs/heads/main' }, { 'x-github-event': 'issues' });
  await hook(s, path, { no: 'ref' }, { 'x-github-event': 'push' });
  want.push(await hook(s, path, { ref: 'refs/heads/release' }, { 'x-github-event': 'push' }));
  await hook(s, '/webhook/github/elsewhere', { ref: 'refs/heads/main' }, { 'x-github-event': 'push' });
  r = await pull(s, k, '?limit=50');
  assert.deepEqual(ids(r), want);
  assert.ok(r.json.messages.every((m) => m.event === 'push'));
  expectStats(await stats(s, k), { delivered: 2, pending: 2, filterSubjects: ['webhooks.github.flt.>'] });

  // startTime: only messages received at or after it
  await sleep(20);
  const t = new Date().toISOString();
  await sleep(20);
  const late = await hook(s, path, { ref: 'refs/heads/main' }, { 'x-github-event': 'push' });
  r = await put({ filterSubjects: ['webhooks.github.flt.>'], startTime: t });
  assert.equal(r.status, 200, r.text);
  expectStats(r.json, { delivered: 0, pending: 0, ackFloor: 0 });
  r = await pull(s, k, '?limit=50');
  assert.deepEqual(ids(r), [late]);

  // invalid configurations
  for (const body of [{ startSeq: 0 }, { startSeq: 'x' }, { startTime: 'yesterday' },
    { startSeq: 1, startTime: t }, { filterSubjects: 'x' }, { filterSubjects: ['a..b'] },
    { events: [5] }, { branches: [''] }]) {
    r = await put(body);
    assert.equal(r.status, 400, JSON.stringify(body));
  }
  r = await api(s, 'PUT', '/api/v1/messages/consumer', { key: k, body: 'not json' });
  assert.equal(r.status, 400);
  r = await put({ filterSubjects: ['orders.>'] });   // outside its history
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'forbidden');
  assert.equal((await pull(s, k)).status, 200);      // still serving, unchanged
});

test('cursor skips new messages up to it', async () => {
  const a = await hook(s, '/webhook/github/cur/x', { i: 1 });
  const b = await hook(s, '/webhook/github/cur/x', { i: 2 });
  const k = await reader(s, 'cur', { history: ['webhooks.github.cur.>'], subscribe: [] });
  const r = await pull(s, k, `?cursor=${a}`);
  assert.deepEqual(ids(r), [b]);
  assert.equal(r.json.nextCursor, b);
  const e = await pull(s, k, `?cursor=${b}`);
  assert.deepEqual(ids(e), []);
  assert.equal(e.json.nextCursor, b);
});

test('bad limit, cursor and ids are 400; the server keeps serving', async () => {
  const k = await reader(s, 'bad');
  for (const q of ['?limit=0', '?limit=101', '?limit=abc', '?limit=', '?limit=-1', '?limit=1.5']) {
    const r = await pull(s, k, q);
    assert.equal(r.status, 400, q);
    assert.equal(r.json.error.code, 'invalid_limit');
  }
  for (const q of ['?cursor=abc', '?cursor=', '?cursor=-3', '?cursor=99999999999999999999999']) {
    const r = await pull(s, k, q);
    assert.equal(r.status, 400, q);
    assert.equal(r.json.error.code, 'invalid_cursor');
  }
  for (const body of [{}, { messageIds: 'x' }, { messageIds: Array(1001).fill('1') }, 'nope']) {
    const r = await api(s, 'POST', '/api/v1/messages/ack', { key: k, body });
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 40));
  }
  const ok = await ack(s, k, Array(1000).fill('1'));
  assert.equal(ok.status, 200);
  assert.equal(ok.json.unknown.length, 1000);
  assert.equal((await pull(s, k, '?limit=100')).status, 200);
});

test('credentials: none 401, no history 403', async () => {
  for (const [m, p] of [['GET', '/api/v1/messages'], ['POST', '/api/v1/messages/ack'],
    ['GET', '/api/v1/messages/stats'], ['PUT', '/api/v1/messages/consumer'],
    ['POST', '/api/v1/messages/replay']]) {
    const r = await api(s, m, p, { key: null, body: m === 'GET' ? undefined : {} });
    assert.equal(r.status, 401, `${m} ${p}`);
    assert.equal(r.json.error.code, 'unauthorized');
  }
  const k = await reader(s, 'nohist', { publish: ['webhooks.github.>'] });
  for (const r of [await pull(s, k), await api(s, 'GET', '/api/v1/messages/stats', { key: k }),
    await ack(s, k, ['1'])]) {
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'forbidden');
  }
  const r = await api(s, 'POST', '/api/v1/messages/replay', { key: k,
    body: { consumer: 'x', messageIds: ['1'] } });
  assert.equal(r.status, 403);
  assert.equal((await pull(s, await reader(s, 'after403'))).status, 200);
});

test('two tenants never see each other\'s messages', async () => {
  const subj = 'webhooks.github.tn.x';
  const perms = { history: ['webhooks.github.tn.>'], subscribe: [], publish: ['webhooks.github.tn.>'] };
  const a = (await createKey(s, { name: 'ta', tenant: 'acme', permissions: perms })).key;
  const b = (await createKey(s, { name: 'tb', tenant: 'globex', permissions: perms })).key;
  const pa = await api(s, 'POST', '/api/v1/publish', { key: a, body: { subject: subj, data: 'A' } });
  const pb = await api(s, 'POST', '/api/v1/publish', { key: b, body: { subject: subj, data: 'B' } });
  assert.equal(pa.status, 202, pa.text);
  assert.equal(pb.status, 202, pb.text);
  assert.equal(pa.json.stored, true);
  const ra = await pull(s, a, '?limit=100');
  const rb = await pull(s, b, '?limit=100');
  assert.deepEqual(ra.json.messages.map((m) => m.payload), ['A']);
  assert.deepEqual(rb.json.messages.map((m) => m.payload), ['B']);
  // the default tenant's reader of the same subjects sees neither
  const d = await reader(s, 'td', { history: ['webhooks.github.tn.>'], subscribe: [] });
  assert.deepEqual(ids(await pull(s, d, '?limit=100')), []);
  // b cannot ack a's message (same consumer name shape, other tenant)
  assert.deepEqual((await ack(s, b, [pa.json.id])).json, { acknowledged: 0, messageIds: [],
    unknown: [pa.json.id] });
  expectStats(await stats(s, a), { pending: 1 });
});

test('admin replay puts an acked message back for the consumer', async () => {
  const id = await hook(s, '/webhook/github/rp/x', { r: 1 });
  const k = await reader(s, 'rp', { history: ['webhooks.github.rp.>'], subscribe: [] });
  assert.deepEqual(ids(await pull(s, k)), [id]);
  assert.equal((await ack(s, k, [id])).json.acknowledged, 1);
  const name = `key_${keyId(k)}`;
  let r = await api(s, 'POST', '/api/v1/messages/replay',
    { body: { consumer: name, messageIds: [id, '999999', 'zz'] } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.replayed, 1);
  assert.deepEqual(r.json.unknown.sort(), ['999999', 'zz']);   // any order
  r = await pull(s, k);
  assert.deepEqual(ids(r), [id]);
  expectStats(await stats(s, k), { pending: 1, delivered: 2, ackFloor: 1 });
  r = await api(s, 'POST', '/api/v1/messages/replay', { body: { consumer: 'key_nobody', messageIds: [id] } });
  assert.equal(r.status, 404);
  r = await api(s, 'POST', '/api/v1/messages/replay', { key: k, body: { consumer: name, messageIds: [id] } });
  assert.equal(r.status, 403);
  r = await api(s, 'POST', '/api/v1/messages/replay', { body: { messageIds: [id] } });
  assert.equal(r.status, 400);
});

test('redelivery after the ack wait, parking at max deliveries, state survives restart', async () => {
  const args = ['--pull-ack-wait-ms', '1000', '--pull-max-deliver', '2', '--pull-max-limit', '20'];
  let t = await startServer({ args });
  try {
    const a = await hook(t, '/webhook/github/rd/x', { i: 1 });
    const b = await hook(t, '/webhook/github/rd/x', { i: 2 });
    const c = await hook(t, '/webhook/github/rd/x', { i: 3 });
    const k = await reader(t, 'rd');
    assert.equal((await pull(t, k, '?limit=21')).status, 400);   // max_limit 20
    assert.deepEqual(ids(await pull(t, k, '?limit=2')), [a, b]);
    assert.deepEqual(ids(await pull(t, k, '?limit=2')), [c]);     // not due yet
    assert.equal((await ack(t, k, [b])).json.acknowledged, 1);
    await sleep(1100);
    let r = await pull(t, k, '?limit=5');
    assert.deepEqual(ids(r), [a, c]);
    assert.deepEqual(r.json.messages.map((m) => m.deliveries), [2, 2]);
    expectStats(await stats(t, k), { pending: 2, delivered: 3, ackFloor: 0, redelivered: 2,
      ackWaitMs: 1000, maxDeliver: 2 });
    assert.equal((await ack(t, k, [c])).json.acknowledged, 1);

    // restart: position, pending and floor survive
    const st = await stats(t, k);
    await t.stop({ cleanup: false });
    t = await t.restart().start();
    assert.deepEqual(await stats(t, k), st);
    const d = await hook(t, '/webhook/github/rd/x', { i: 4 });
    r = await pull(t, k, '?limit=5');
    assert.deepEqual(ids(r), [d]);            // a is not due yet again
    await sleep(1100);
    r = await pull(t, k, '?limit=5');         // a parked (2 deliveries), d redelivered
    assert.deepEqual(ids(r), [d]);
    expectStats(await stats(t, k), { pending: 1, delivered: 4, ackFloor: 3, redelivered: 3,
      parked: [a], parkedTotal: 1 });
    assert.deepEqual((await ack(t, k, [a])).json.unknown, [a]);
  } finally {
    await t.stop();
  }
});

test('max ack pending caps new deliveries; concurrent pulls never duplicate', async () => {
  const t = await startServer({ args: ['--pull-max-ack-pending', '3'] });
  try {
    const all = [];
    for (let i = 0; i < 8; i++) all.push(await hook(t, '/webhook/github/cap/x', { i }));
    const k = await reader(t, 'cap');
    let r = await pull(t, k, '?limit=10');
    assert.deepEqual(ids(r), all.slice(0, 3));
    assert.equal(r.json.hasMore, true);
    r = await pull(t, k, '?limit=10');
    assert.deepEqual(ids(r), []);
    assert.equal(r.json.hasMore, true);
    assert.equal((await ack(t, k, [all[1]])).json.acknowledged, 1);
    assert.deepEqual(ids(await pull(t, k, '?limit=10')), [all[3]]);
    assert.equal((await ack(t, k, [all[0], all[2], all[3]])).json.acknowledged, 3);

    // many pulls at once on one consumer: each is served or refused 409,
    // and no message is handed out twice
    const got = [];
    const codes = new Set();
    for (let round = 0; round < 3 && got.length < 4; round++) {
      const rs = await Promise.all(Array.from({ length: 6 }, () => pull(t, k, '?limit=1')));
      for (const x of rs) {
        codes.add(x.status);
        if (x.status === 409) assert.equal(x.json.error.code, 'consumer_busy');
        else got.push(...ids(x));
      }
      const acked = await ack(t, k, got);
      assert.equal(acked.status, 200);
    }
    assert.ok([...codes].every((c) => c === 200 || c === 409), [...codes].join());
    assert.equal(new Set(got).size, got.length, `duplicates in ${got}`);
    assert.ok(got.every((id) => all.slice(4).includes(id)), `${got}`);
    const st = await stats(t, k);
    assert.equal(st.delivered, 4 + got.length);
    assert.equal(st.redelivered, 0);
  } finally {
    await t.stop();
  }
});

test('a JWT principal pulls from its own consumer user_<sub>', async () => {
  const k = await reader(s, 'jwtp');
  const tok = await api(s, 'POST', '/auth/token', { key: k, body: {} });
  assert.equal(tok.status, 200, tok.text);
  const st = await stats(s, tok.json.token);
  assert.equal(st.consumerName, `user_${keyId(k)}`);
  assert.equal((await pull(s, tok.json.token, '?limit=1')).status, 200);
  expectStats(await stats(s, tok.json.token), { delivered: 1 });
  expectStats(await stats(s, k), { delivered: 0 });    // the key's own consumer
});
