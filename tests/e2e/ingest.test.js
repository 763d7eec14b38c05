// Ingest: POST /webhook/** and POST /api/v1/publish - the 202 answer, the
// subject built from the path, and the stored message read back over SSE
// (method, path, query, headers without hop-by-hop fields, event type,
// payload byte-exact as json / text / base64).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Server, postWebhook, publish } from './lib/server.js';
import { rawRequest } from './lib/rawhttp.js';
import { readEvents } from './lib/readback.js';

const ISO_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const DECIMAL_ID = /^[1-9][0-9]*$/;
const MAX_DEPTH = 3;

// The stored message with id `id`, read back over SSE.
async function stored(s, id) {
  const evs = await readEvents(s, {
    subject: 'webhooks.>', since: String(BigInt(id) - 1n), until: (e) => e.length >= 1,
  });
  assert.equal(evs[0].id, id, 'the first event after id-1 is id');
  assert.equal(evs[0].data.id, id);
  assert.equal(evs[0].data.seq, Number(id));
  return evs[0];
}

async function assertServing(s) {
  const res = await fetch(`${s.url}/health`);
  assert.equal(res.status, 200);
  await res.arrayBuffer();
}

function assertAccepted(r, { path, source, subject }) {
  assert.equal(r.status, 202, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(Object.keys(r.body), ['status', 'id', 'webhookPath', 'source', 'subject', 'receivedAt']);
  assert.equal(r.body.status, 'accepted');
  assert.match(r.body.id, DECIMAL_ID);
  assert.equal(r.body.webhookPath, path);
  assert.equal(r.body.source, source);
  assert.equal(r.body.subject, subject);
  assert.match(r.body.receivedAt, ISO_MS_Z);
}

function assertError(r, status, code) {
  assert.equal(r.status, status, r.text);
  assert.deepEqual(Object.keys(r.body), ['error']);
  assert.equal(r.body.error.code, code);
  assert.equal(typeof r.body.error.message, 'string');
}

describe('webhook ingest', () => {
  let s;
  before(async () => {
    s = await new Server({ env: { SWITCHBOARD_WEBHOOK_MAX_DEPTH: String(MAX_DEPTH) } }).start();
  });
  after(async () => { await s.stop(); });

  test('POST JSON -> 202 with exactly status, id, webhookPath, source, subject, receivedAt', async () => {
    const t0 = Date.now();
    const r = await postWebhook(s, '/webhook/github/myorg/myrepo', { action: 'opened', number: 1 },
      { 'X-GitHub-Event': 'pull_request' });
    const t1 = Date.now();
    assertAccepted(r, { path: '/webhook/github/myorg/myrepo', source: 'github', subject: 'webhooks.github.myorg.myrepo' });
    // receivedAt is the server's UTC clock at receipt, in milliseconds
    const at = Date.parse(r.body.receivedAt);
    assert.ok(at >= t0 - 1000 && at <= t1 + 1000, `receivedAt ${r.body.receivedAt} near now`);
    const ev = await stored(s, r.body.id);
    assert.equal(ev.event, 'pull_request');
    assert.equal(ev.data.event, 'pull_request');
    assert.equal(ev.data.receivedAt, r.body.receivedAt);
    assert.equal(ev.data.subject, 'webhooks.github.myorg.myrepo');
    assert.equal(ev.data.webhookPath, '/webhook/github/myorg/myrepo');
    assert.equal(ev.data.source, 'github');
    assert.equal(ev.data.method, 'POST');
    assert.equal(ev.data.query, undefined, 'no query: no "query" field');
    assert.equal(ev.data.payloadEncoding, 'json');
    assert.deepEqual(ev.data.payload, { action: 'opened', number: 1 });
  });

  test('a retried delivery (same X-GitHub-Delivery / webhook-id) is stored once and answered with the original id', async () => {
    const path = '/webhook/github/dedupe/repo';
    const hdr = { 'X-GitHub-Delivery': randomUUID() };
    const first = await postWebhook(s, path, { try: 1 }, hdr);
    assertAccepted(first, { path, source: 'github', subject: 'webhooks.github.dedupe.repo' });
    const again = await postWebhook(s, path, { try: 2 }, hdr);
    assert.equal(again.status, 202, again.text);
    assert.equal(again.body.id, first.body.id, 'the retry gets the original id');
    assert.equal(again.body.duplicate, true);
    // another delivery id (Standard Webhooks header) is a new message
    const msgId = `msg_${randomUUID()}`;
    const other = await postWebhook(s, path, { try: 3 }, { 'webhook-id': msgId });
    assert.notEqual(other.body.id, first.body.id);
    assert.equal(other.body.duplicate, undefined);
    const repeat = await postWebhook(s, path, { try: 4 }, { 'webhook-id': msgId });
    assert.equal(repeat.body.id, other.body.id);
    // the stream holds exactly the two originals, with the first bodies
    const evs = await readEvents(s, {
      subject: 'webhooks.github.dedupe.repo', since: '0', timeout: 1500,
    });
    assert.deepEqual(evs.map((e) => e.id), [first.body.id, other.body.id]);
    assert.deepEqual(evs.map((e) => e.data.payload.try), [1, 3]);
  });

  test('PUT, PATCH and DELETE are accepted and keep their method; GET is 405', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const res = await fetch(`${s.url}/webhook/svc/${method.toLowerCase()}`, {
        method, headers: { 'content-type': 'application/json', ...s.auth() }, body: JSON.stringify({ m: method }),
      });
      const body = await res.json();
      assert.equal(res.status, 202);
      assert.equal(body.subject, `webhooks.svc.${method.toLowerCase()}`);
      const ev = await stored(s, body.id);
      assert.equal(ev.data.method, method);
      assert.deepEqual(ev.data.payload, { m: method });
    }
    // 405 comes from the router, before authentication: no credential needed
    for (const method of ['GET', 'HEAD', 'OPTIONS']) {
      const res = await fetch(`${s.url}/webhook/x`, { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'POST, PUT, PATCH, DELETE');
      if (method !== 'HEAD') assert.equal((await res.json()).error.code, 'method_not_allowed');
    }
    await assertServing(s);
  });

  test('path segments are decoded, sanitised into tokens, empty ones skipped', async () => {
    const cases = [
      ['/webhook/github/my.repo', 'github', 'webhooks.github.my_repo'],
      ['/webhook/git.hub/org', 'git_hub', 'webhooks.git_hub.org'],
      ['/webhook/gitlab/a%20b/c%2Fd', 'gitlab', 'webhooks.gitlab.a_b.c_d'],
      ['/webhook/%67itea/%41-b_c:d@e~f', 'gitea', 'webhooks.gitea.A-b_c:d@e~f'],
      ['/webhook//stripe///acct//', 'stripe', 'webhooks.stripe.acct'],
      ['/webhook/kakao/caf%C3%A9', 'kakao', 'webhooks.kakao.caf__'],
      ['/webhook/only', 'only', 'webhooks.only'],
      ['/webhook/src/a/b/c', 'src', 'webhooks.src.a.b.c'],                 // MAX_DEPTH segments
      ['/webhook/src/a//b//c/', 'src', 'webhooks.src.a.b.c'],              // empty ones do not count
    ];
    for (const [path, source, subject] of cases) {
      const r = await postWebhook(s, path, { path });
      assertAccepted(r, { path, source, subject });
      const ev = await stored(s, r.body.id);
      assert.equal(ev.data.subject, subject);
      assert.equal(ev.data.webhookPath, path, 'webhookPath is the path as received');
    }
    // a 128-byte token is kept whole, a longer one is cut to 128
    const long = 'x'.repeat(200);
    const r = await postWebhook(s, `/webhook/long/${long}`, {});
    assert.equal(r.status, 202);
    assert.equal(r.body.subject, `webhooks.long.${'x'.repeat(128)}`);
  });

  test('no source, too many segments, bad percent-encoding, too long -> 400 invalid_path', async () => {
    for (const path of ['/webhook/', '/webhook//', '/webhook///',
      '/webhook/src/a/b/c/d', '/webhook/src/a/b/c/d/e/f/g/h/i/j',
      '/webhook/src/%zz', '/webhook/src/a%2', '/webhook/src/%']) {
      const r = await postWebhook(s, path, { x: 1 });
      assertError(r, 400, 'invalid_path');
    }
    // a subject over 255 bytes
    const r = await postWebhook(s, `/webhook/${'s'.repeat(120)}/${'t'.repeat(120)}/${'u'.repeat(20)}`, {});
    assertError(r, 400, 'invalid_path');
    await assertServing(s);
  });

  test('ids are decimal strings, strictly increasing, unique under concurrency', async () => {
    let last = 0n;
    for (let i = 0; i < 10; i++) {
      const r = await postWebhook(s, '/webhook/seq/test', { i });
      assert.equal(r.status, 202);
      const id = BigInt(r.body.id);
      assert.ok(id > last, `${id} > ${last}`);
      last = id;
    }
    const many = await Promise.all(Array.from({ length: 30 }, (_, i) => postWebhook(s, '/webhook/seq/conc', { i })));
    const ids = many.map((r) => { assert.equal(r.status, 202); return BigInt(r.body.id); });
    assert.equal(new Set(ids).size, ids.length, 'no id given twice');
    for (const id of ids) assert.ok(id > last);
  });

  test('stored headers: lower-cased, repeated joined, hop-by-hop, Connection-named and the credential removed', async () => {
    const body = '{"ref":"refs/heads/main"}';
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const res = await rawRequest(s.port,
      'POST /webhook/github/myorg/myrepo?ref=main&x=%20y HTTP/1.1\r\n' +
      'Host: hooks.example\r\n' +
      'Content-Type: application/json\r\n' +
      'X-GitHub-Event: push\r\n' +
      'X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n' +
      'X-Multi: a\r\n' +
      'Connection: keep-alive, X-Hop-Only\r\n' +
      'X-Hop-Only: secret\r\n' +
      'Keep-Alive: timeout=5\r\n' +
      'TE: trailers\r\n' +
      'Upgrade: example/1\r\n' +
      'Proxy-Authorization: Basic c2VjcmV0\r\n' +
      'x-multi: b\r\n' +
      'User-Agent: GitHub-Hookshot/abc\r\n' +
      `Authorization: Bearer ${s.adminKey}\r\n` +
      'Transfer-Encoding: chunked\r\n\r\n' + chunked);
    assert.equal(res.status, 202);
    const ev = await stored(s, res.json.id);
    // the bearer credential that authenticated the post is not part of
    // the message: every subscriber of the subject would read it
    assert.equal(ev.data.headers.authorization, undefined, 'the credential is not stored');
    assert.ok(!ev.dataRaw.includes(s.adminKey), 'the key appears nowhere in the stored message');
    assert.deepEqual(ev.data.headers, {
      host: 'hooks.example',
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      'x-multi': 'a, b',
      'user-agent': 'GitHub-Hookshot/abc',
    });
    assert.equal(ev.data.query, 'ref=main&x=%20y', 'query kept as received');
    assert.equal(ev.data.method, 'POST');
    assert.equal(ev.data.webhookPath, '/webhook/github/myorg/myrepo');
    assert.equal(ev.data.source, 'github');
    assert.equal(ev.data.event, 'push');
    assert.equal(ev.data.contentType, 'application/json');
    assert.ok(ev.dataRaw.endsWith(`"payloadEncoding":"json","payload":${body}}`), ev.dataRaw);
  });

  test('event type: from the first known header; invalid values are ignored', async () => {
    let r = await postWebhook(s, '/webhook/gitlab/g', {}, { 'X-Gitlab-Event': 'Push Hook' });
    assert.equal((await stored(s, r.body.id)).data.event, 'Push Hook');
    r = await postWebhook(s, '/webhook/any/e', {}, { 'X-Event-Type': 'e'.repeat(129), 'X-Webhook-Event': 'fallback' });
    assert.equal((await stored(s, r.body.id)).data.event, 'fallback', 'a 129-byte event is skipped');
    r = await postWebhook(s, '/webhook/any/none', {});
    const ev = await stored(s, r.body.id);
    assert.equal(ev.event, null, 'no event: line');
    assert.equal('event' in ev.data, false);
  });

  test('JSON payload is relayed byte-exact (numbers, escapes), only white space dropped', async () => {
    const compact = '{"n":0.1,"p":1.10,"e":1E+2,"neg":-0,"big":9007199254740993,' +
      '"s":"caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\n","u":"é😀","arr":[1.0,2.50,[]],"o":{}}';
    let r = await postWebhook(s, '/webhook/exact/json', compact);
    let ev = await stored(s, r.body.id);
    assert.equal(ev.data.payloadEncoding, 'json');
    assert.ok(ev.dataRaw.endsWith(`"payload":${compact}}`), `payload bytes kept: ${ev.dataRaw}`);

    const spaced = '{ "a" : 0.10 ,\n\t"b": [ 1, 2 ] , "s": "keep  these   spaces" }\r\n';
    r = await postWebhook(s, '/webhook/exact/json', spaced);
    ev = await stored(s, r.body.id);
    assert.equal(ev.data.payloadEncoding, 'json');
    assert.ok(ev.dataRaw.endsWith('"payload":{"a":0.10,"b":[1,2],"s":"keep  these   spaces"}}'), ev.dataRaw);

    // top-level scalars and arrays are JSON too
    for (const v of ['42', '"str"', 'null', '[1,"two"]']) {
      r = await postWebhook(s, '/webhook/exact/scalar', v);
      ev = await stored(s, r.body.id);
      assert.equal(ev.data.payloadEncoding, 'json', v);
      assert.ok(ev.dataRaw.endsWith(`"payload":${v}}`), ev.dataRaw);
    }
  });

  test('JSON that jansson cannot represent (1e400, integers past int64) is relayed as text, bytes intact', async () => {
    // Documented (docs/API.md, core/msg.h): a payload is "json" when jansson
    // parses it, otherwise UTF-8 text. jansson refuses reals that overflow a
    // double and integers past int64, so these bodies, though valid JSON
    // grammar, are kept as their exact text.
    for (const body of ['{"a":0.1,"b":1e400}', '{"id":18446744073709551615}']) {
      const r = await postWebhook(s, '/webhook/exact/range', body);
      assert.equal(r.status, 202);
      const ev = await stored(s, r.body.id);
      assert.equal(ev.data.payloadEncoding, 'text', body);
      assert.equal(ev.data.payload, body);
    }
  });

  test('text/plain body -> payloadEncoding text; empty body -> empty text', async () => {
    const text = 'hello\nwörld\t"quoted" {not json';
    let r = await postWebhook(s, '/webhook/plain/t', text, { 'content-type': 'text/plain; charset=utf-8' });
    let ev = await stored(s, r.body.id);
    assert.equal(ev.data.payloadEncoding, 'text');
    assert.equal(ev.data.payload, text);
    assert.equal(ev.data.contentType, 'text/plain; charset=utf-8');
    // valid JSON sent as text/plain stays text (the content type decides)
    r = await postWebhook(s, '/webhook/plain/t', '{"a":1}', { 'content-type': 'text/plain' });
    ev = await stored(s, r.body.id);
    assert.equal(ev.data.payloadEncoding, 'text');
    assert.equal(ev.data.payload, '{"a":1}');
    r = await postWebhook(s, '/webhook/plain/empty', '');
    ev = await stored(s, r.body.id);
    assert.equal(ev.data.payloadEncoding, 'text');
    assert.equal(ev.data.payload, '');
  });

  test('binary body (NULs, invalid UTF-8) -> base64 of the same bytes', async () => {
    const bytes = Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0, 0x80, 0xc3]), randomBytes(70000), Buffer.from([0])]);
    const r = await postWebhook(s, '/webhook/bin/blob', new Uint8Array(bytes), { 'content-type': 'application/octet-stream' });
    assert.equal(r.status, 202);
    const ev = await stored(s, r.body.id);
    assert.equal(ev.data.payloadEncoding, 'base64');
    assert.equal(ev.data.contentType, 'application/octet-stream');
    assert.ok(Buffer.from(ev.data.payload, 'base64').equals(bytes), 'decodes to the bytes sent');
    // invalid JSON claimed as JSON is not JSON either
    const r2 = await postWebhook(s, '/webhook/bin/claims-json', new Uint8Array([0x7b, 0xff, 0x7d]));
    const ev2 = await stored(s, r2.body.id);
    assert.equal(ev2.data.payloadEncoding, 'base64');
    assert.deepEqual([...Buffer.from(ev2.data.payload, 'base64')], [0x7b, 0xff, 0x7d]);
  });
});

describe('POST /api/v1/publish', () => {
  let s;
  before(async () => { s = await new Server().start(); });
  after(async () => { await s.stop(); });

  test('a live-only subject is accepted unstored; a subscriber gets it', async () => {
    const ac = new AbortController();
    const res = await fetch(`${s.url}/api/v1/stream?subject=rooms.*`, { signal: ac.signal, headers: s.auth() });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    try {
      const r = await publish(s, 'rooms.a', { text: 'hi', n: 0.1 }, 'chat');
      assert.equal(r.status, 202);
      assert.deepEqual(Object.keys(r.body), ['status', 'id', 'seq', 'stored', 'subject', 'receivedAt']);
      assert.equal(r.body.status, 'accepted');
      assert.equal(r.body.id, null);
      assert.equal(r.body.seq, null);
      assert.equal(r.body.stored, false);
      assert.equal(r.body.subject, 'rooms.a');
      assert.match(r.body.receivedAt, ISO_MS_Z);
      let text = '';
      const timer = setTimeout(() => ac.abort(), 5000);
      while (!text.includes('"subject":"rooms.a"')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      clearTimeout(timer);
      assert.match(text, /event: chat\ndata: \{"id":null,"seq":null,"subject":"rooms.a",.*"payload":\{"text":"hi","n":0.1\}\}\n\n/);
      assert.doesNotMatch(text, /^id: /m, 'a live-only message carries no SSE id');
    } finally { ac.abort(); }
  });

  test('a stored subject gets an id and seq and is read back byte-exact', async () => {
    const body = '{"subject":"webhooks.x.y","event":"deploy","data":{"v":1.50,"big":1e2,"s":"\\u00e9"}}';
    const res = await fetch(`${s.url}/api/v1/publish`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...s.auth() }, body,
    });
    const r = await res.json();
    assert.equal(res.status, 202);
    assert.equal(r.stored, true);
    assert.match(r.id, DECIMAL_ID);
    assert.equal(r.seq, Number(r.id));
    assert.equal(r.subject, 'webhooks.x.y');
    const ev = await stored(s, r.id);
    assert.equal(ev.event, 'deploy');
    assert.equal(ev.data.payloadEncoding, 'json');
    assert.ok(ev.dataRaw.endsWith('"payload":{"v":1.50,"big":1e2,"s":"\\u00e9"}}'), ev.dataRaw);
    const r2 = await publish(s, 'webhooks.x.y', 'second');
    assert.ok(BigInt(r2.body.id) > BigInt(r.id));
  });

  test('bad requests are 400 with the right code, and publishing goes on', async () => {
    const cases = [
      ['{"subject":"rooms.a","data":', 'invalid_json'],
      ['not json', 'invalid_json'],
      ['', 'invalid_json'],
      ['{"subject":"rooms.a"}', 'bad_request'],                          // no data
      ['{"subject":"rooms.*","data":1}', 'invalid_subject'],
      ['{"subject":"rooms.>","data":1}', 'invalid_subject'],
      ['{"subject":"rooms..a","data":1}', 'invalid_subject'],
      ['{"subject":"rooms a","data":1}', 'invalid_subject'],
      ['{"subject":"","data":1}', 'invalid_subject'],
      ['{"data":1}', 'invalid_subject'],
      ['{"subject":42,"data":1}', 'invalid_subject'],
      ['{"subject":"rooms.a","event":5,"data":1}', 'bad_request'],
      ['{"subject":"rooms.a","event":"","data":1}', 'bad_request'],
      ['{"subject":"rooms.a","event":"a\\nb","data":1}', 'bad_request'],
      [`{"subject":"rooms.a","event":"${'e'.repeat(129)}","data":1}`, 'bad_request'],
    ];
    for (const [body, code] of cases) {
      const res = await fetch(`${s.url}/api/v1/publish`, {
        method: 'POST', headers: { 'content-type': 'application/json', ...s.auth() }, body,
      });
      const j = await res.json();
      assert.equal(res.status, 400, body);
      assert.deepEqual(Object.keys(j), ['error']);
      assert.equal(j.error.code, code, body);
      assert.equal(typeof j.error.message, 'string');
    }
    const ok = await publish(s, 'rooms.a', null, 'e'.repeat(128));
    assert.equal(ok.status, 202, 'null data and a 128-byte event are fine');
  });
});
