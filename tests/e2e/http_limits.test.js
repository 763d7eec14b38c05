// HTTP/1.1 framing and limits, byte-exact over raw TCP: keep-alive,
// pipelining, 100-continue, every limit (414, 431, 413), malformed framing
// (400, 501, 505), the header and idle timeouts, 404/405 - each answered
// with a JSON error body, and the server serving normally afterwards.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Server } from './lib/server.js';
import { RawConn, rawRequest } from './lib/rawhttp.js';

const MAX_URI = 64;
const MAX_HEADER_BYTES = 512;
const MAX_HEADERS = 5;
const MAX_BODY = 1000;

const H = 'Host: test\r\n';
// The admin credential as a raw header line (set once the server is up).
// Requests that must reach a handler carry it; requests refused by the
// parser or the router (400, 404, 405, 408, 413, 414, 417, 431, 501, 505)
// are sent without one: those answers come before authentication.
let A = '';

// An error answer: the status, a JSON body of exactly {"error":{"code","message"}}
// with the right code, and a Content-Length that matches.
function assertError(res, status, code) {
  assert.equal(res.status, status, `status; body ${res.body}`);
  assert.match(res.headers['content-type'], /^application\/json/);
  assert.equal(Number(res.headers['content-length']), res.body.length);
  assert.ok(res.json, `JSON body: ${res.body}`);
  assert.deepEqual(Object.keys(res.json), ['error']);
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message']);
  assert.equal(res.json.error.code, code);
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 0);
}

// The server still answers a good request on a new connection.
async function assertServing(s) {
  const res = await rawRequest(s.port, `GET /health HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    { expectClose: true });
  assert.equal(res.status, 200);
  assert.equal(res.json.status, 'ok');
}

// A request that must be refused with status/code and a closed connection.
async function assertRefused(s, bytes, status, code) {
  const res = await rawRequest(s.port, bytes, { expectClose: true });
  assertError(res, status, code);
  assert.equal(res.headers.connection, 'close');
  assert.equal(res.trailing.length, 0, 'nothing after the error response');
  await assertServing(s);
  return res;
}

describe('HTTP/1.1 framing and limits', () => {
  let s;
  before(async () => {
    s = await new Server({
      env: {
        SWITCHBOARD_MAX_URI: String(MAX_URI),
        SWITCHBOARD_MAX_HEADER_BYTES: String(MAX_HEADER_BYTES),
        SWITCHBOARD_MAX_HEADERS: String(MAX_HEADERS),
        SWITCHBOARD_MAX_BODY: String(MAX_BODY),
      },
    }).start();
    A = `Authorization: Bearer ${s.adminKey}\r\n`;
  });
  after(async () => { await s.stop(); });

  test('keep-alive: two requests on one connection', async () => {
    const c = await RawConn.open(s.port);
    try {
      await c.write(`GET /health HTTP/1.1\r\n${H}\r\n`);
      const a = await c.response();
      assert.equal(a.status, 200);
      assert.equal(a.headers.connection, undefined, 'no Connection: close on a keep-alive answer');
      await c.write(`POST /webhook/ka/one HTTP/1.1\r\n${H}${A}Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"k":1}`);
      const b = await c.response();
      assert.equal(b.status, 202);
      assert.equal(b.json.subject, 'webhooks.ka.one');
      assert.equal(c.closed, false);
    } finally { c.destroy(); }
  });

  test('HTTP/1.0 closes after the response unless keep-alive is asked', async () => {
    const res = await rawRequest(s.port, 'GET /health HTTP/1.0\r\n\r\n', { expectClose: true });
    assert.equal(res.status, 200);
    assert.equal(res.headers.connection, 'close');
    const c = await RawConn.open(s.port);
    try {
      await c.write('GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      assert.equal((await c.response()).status, 200);
      await c.write('GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      assert.equal((await c.response()).status, 200);
    } finally { c.destroy(); }
  });

  test('pipelining: three requests in one write are answered in order', async () => {
    const c = await RawConn.open(s.port);
    try {
      await c.write(
        `POST /webhook/pipe/a HTTP/1.1\r\n${H}${A}Content-Length: 5\r\n\r\nfirst` +
        `GET /nope HTTP/1.1\r\n${H}\r\n` +
        `POST /webhook/pipe/b HTTP/1.1\r\n${H}${A}Transfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n` +
        `GET /health HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      const r1 = await c.response();
      const r2 = await c.response();
      const r3 = await c.response();
      const r4 = await c.response();
      assert.equal(r1.status, 202);
      assert.equal(r1.json.subject, 'webhooks.pipe.a');
      assertError(r2, 404, 'not_found');
      assert.equal(r3.status, 202);
      assert.equal(r3.json.subject, 'webhooks.pipe.b');
      assert.ok(BigInt(r3.json.id) > BigInt(r1.json.id));
      assert.equal(r4.status, 200);
      assert.equal(r4.headers.connection, 'close');
      assert.equal((await c.waitClose()).length, 0);
    } finally { c.destroy(); }
  });

  test('Expect: 100-continue gets "100 Continue" before the body is sent, then 202', async () => {
    const c = await RawConn.open(s.port);
    try {
      const body = '{"expect":"continue"}';
      await c.write(`POST /webhook/exp/a HTTP/1.1\r\n${H}${A}Content-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
      await c.until(() => c.buf.length >= 25, 5000, '100 Continue');
      assert.equal(c.buf.subarray(0, 25).toString('latin1'), 'HTTP/1.1 100 Continue\r\n\r\n');
      const cont = await c.response();
      assert.equal(cont.status, 100);
      await c.write(body);
      const res = await c.response();
      assert.equal(res.status, 202);
      assert.equal(res.json.subject, 'webhooks.exp.a');
    } finally { c.destroy(); }
  });

  test('an unknown expectation is 417', async () => {
    await assertRefused(s, `POST /webhook/exp/b HTTP/1.1\r\n${H}Content-Length: 2\r\nExpect: 200-ok\r\n\r\n{}`,
      417, 'expectation_failed');
  });

  test('request-target: at the limit is served, one byte over is 414', async () => {
    const at = `/health?${'q'.repeat(MAX_URI - '/health?'.length)}`;
    assert.equal(at.length, MAX_URI);
    const ok = await rawRequest(s.port, `GET ${at} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, { expectClose: true });
    assert.equal(ok.status, 200);
    await assertRefused(s, `GET ${at}q HTTP/1.1\r\n${H}\r\n`, 414, 'uri_too_long');
    // decided from the partial target alone: no need to wait for the rest
    const c = await RawConn.open(s.port);
    try {
      await c.write(`GET /${'x'.repeat(MAX_URI * 2)}`);
      assertError(await c.response(), 414, 'uri_too_long');
      await c.waitClose();
    } finally { c.destroy(); }
    await assertServing(s);
  });

  test('header fields: at the limit are served, one more is 431', async () => {
    const fields = (n) => Array.from({ length: n }, (_, i) => `X-F${i}: v\r\n`).join('');
    const ok = await rawRequest(s.port, `GET /health HTTP/1.1\r\n${H}${fields(MAX_HEADERS - 2)}Connection: close\r\n\r\n`,
      { expectClose: true });
    assert.equal(ok.status, 200);
    await assertRefused(s, `GET /health HTTP/1.1\r\n${H}${fields(MAX_HEADERS)}\r\n`, 431, 'headers_too_large');
  });

  test('header bytes over the limit are 431, also before the head is complete', async () => {
    await assertRefused(s, `GET /health HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`,
      431, 'headers_too_large');
    const c = await RawConn.open(s.port);
    try {
      await c.write(`GET /health HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(MAX_HEADER_BYTES)}`);
      assertError(await c.response(), 431, 'headers_too_large');
      await c.waitClose();
    } finally { c.destroy(); }
    await assertServing(s);
  });

  test('Content-Length body: at the limit is accepted, over it is 413 (head only, and with the body)', async () => {
    const okBody = 'a'.repeat(MAX_BODY);
    const ok = await rawRequest(s.port, `POST /webhook/size/ok HTTP/1.1\r\n${H}${A}Content-Type: text/plain\r\n` +
      `Content-Length: ${MAX_BODY}\r\nConnection: close\r\n\r\n${okBody}`, { expectClose: true });
    assert.equal(ok.status, 202);
    // the body limit is the parser's: 413 with or without a credential
    await assertRefused(s, `POST /webhook/size/big HTTP/1.1\r\n${H}Content-Length: ${MAX_BODY + 1}\r\n\r\n`,
      413, 'payload_too_large');
    await assertRefused(s, `POST /webhook/size/big HTTP/1.1\r\n${H}${A}Content-Length: ${MAX_BODY + 1}\r\n\r\n`,
      413, 'payload_too_large');
    await assertRefused(s, `POST /api/v1/publish HTTP/1.1\r\n${H}${A}Content-Length: ${MAX_BODY + 1}\r\n\r\n`,
      413, 'payload_too_large');
    // A client that sends its whole body at once must still read the 413
    // (the server may not reset the connection under it).
    for (let i = 0; i < 3; i++)
      await assertRefused(s, `POST /webhook/size/big HTTP/1.1\r\n${H}Content-Length: 1000000\r\n\r\n${'z'.repeat(1000000)}`,
        413, 'payload_too_large');
  });

  test('chunked body: at the limit is accepted, over it is 413', async () => {
    const chunks = (sizes) => sizes.map((n) => `${n.toString(16)}\r\n${'c'.repeat(n)}\r\n`).join('') + '0\r\n\r\n';
    const ok = await rawRequest(s.port, `POST /webhook/size/chunked HTTP/1.1\r\n${H}${A}Content-Type: text/plain\r\n` +
      `Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks([400, 400, 200])}`, { expectClose: true });
    assert.equal(ok.status, 202);
    // one chunk too large (refused at its size line), and many small ones adding up
    await assertRefused(s, `POST /webhook/size/chunked HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunks([MAX_BODY + 1])}`,
      413, 'payload_too_large');
    await assertRefused(s, `POST /webhook/size/chunked HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunks(Array(400).fill(255))}`,
      413, 'payload_too_large');
  });

  test('malformed chunked encoding is 400', async () => {
    const head = `POST /webhook/bad/chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
    for (const body of [
      'zz\r\nabc\r\n0\r\n\r\n',          // not hex
      '3\r\nabcX\r\n0\r\n\r\n',          // data not followed by CRLF
      '3\nabc\r\n0\r\n\r\n',             // bare LF after the size
      '11111111111111111\r\n',          // 17 hex digits
      '\r\n',                            // empty size line
      '3;=x\r\nabc\r\n0\r\n\r\n',        // extension without a name
      '0\r\nBad Trailer\r\n\r\n',        // trailer that is not a field
    ]) {
      const res = await rawRequest(s.port, head + body, { expectClose: true });
      assertError(res, 400, 'bad_request');
      await assertServing(s);
    }
  });

  test('bare LF line endings are 400', async () => {
    await assertRefused(s, `GET /health HTTP/1.1\nHost: test\n\n`, 400, 'bad_request');
    await assertRefused(s, `GET /health HTTP/1.1\r\nHost: test\n\r\n`, 400, 'bad_request');
  });

  test('Transfer-Encoding with Content-Length is 400', async () => {
    await assertRefused(s, `POST /webhook/a/b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
      400, 'bad_request');
  });

  test('Transfer-Encoding: gzip, chunked is 501; chunked not last is 400', async () => {
    await assertRefused(s, `POST /webhook/a/b HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
      501, 'not_implemented');
    await assertRefused(s, `POST /webhook/a/b HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`,
      400, 'bad_request');
  });

  test('HTTP/2.0 in a request line is 505, a malformed version 400', async () => {
    await assertRefused(s, `GET /health HTTP/2.0\r\n${H}\r\n`, 505, 'http_version_not_supported');
    await assertRefused(s, `GET /health HTTP/1.x\r\n${H}\r\n`, 400, 'bad_request');
  });

  test('HTTP/1.1 without Host, or with two, is 400', async () => {
    await assertRefused(s, 'GET /health HTTP/1.1\r\n\r\n', 400, 'bad_request');
    await assertRefused(s, `GET /health HTTP/1.1\r\n${H}${H}\r\n`, 400, 'bad_request');
  });

  test('a request without a credential is 401 with a JSON error and WWW-Authenticate; the connection stays usable', async () => {
    const body = '{"subject":"rooms.h1","data":1}';
    const c = await RawConn.open(s.port);
    try {
      await c.write(`POST /api/v1/publish HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      const res = await c.response();
      assertError(res, 401, 'unauthorized');
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="switchboard"');
      assert.equal(res.headers.connection, undefined, 'no Connection: close on a 401');
      await c.write(`POST /api/v1/publish HTTP/1.1\r\n${H}${A}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      const ok = await c.response();
      assert.equal(ok.status, 202, ok.body.toString());
      assert.equal(ok.json.subject, 'rooms.h1');
    } finally { c.destroy(); }
  });

  test('unknown path is 404 with a JSON error, and the connection stays usable', async () => {
    const c = await RawConn.open(s.port);
    try {
      for (const path of ['/nope', '/api/v1', '/webhookx', '/health/extra']) {
        await c.write(`GET ${path} HTTP/1.1\r\n${H}\r\n`);
        assertError(await c.response(), 404, 'not_found');
      }
      await c.write(`GET /health HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.response()).status, 200);
    } finally { c.destroy(); }
  });

  test('wrong method is 405 with an Allow header', async () => {
    const cases = [
      ['DELETE', '/health', 'GET, HEAD'],
      ['POST', '/metrics', 'GET'],
      ['GET', '/webhook/x', 'POST, PUT, PATCH, DELETE'],
      ['GET', '/api/v1/publish', 'POST'],
      ['POST', '/api/v1/stream', 'GET'],
    ];
    const c = await RawConn.open(s.port);
    try {
      for (const [method, path, allow] of cases) {
        await c.write(`${method} ${path} HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`);
        const res = await c.response();
        assertError(res, 405, 'method_not_allowed');
        assert.equal(res.headers.allow, allow, `${method} ${path}`);
      }
    } finally { c.destroy(); }
    await assertServing(s);
  });

  test('HEAD answers headers only', async () => {
    const c = await RawConn.open(s.port);
    try {
      await c.write(`HEAD /health HTTP/1.1\r\n${H}\r\n`);
      const res = await c.response({ head: true });
      assert.equal(res.status, 200);
      assert.ok(Number(res.headers['content-length']) > 0);
      await c.write(`GET /health HTTP/1.1\r\n${H}\r\n`);
      const get = await c.response();
      assert.equal(get.status, 200, 'no body bytes were sent for HEAD');
      assert.equal(get.json.status, 'ok');
    } finally { c.destroy(); }
  });

  test('garbage and invalid request lines are 400', async () => {
    for (const bytes of ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', 'GET  /health HTTP/1.1\r\n\r\n',
      'GET health HTTP/1.1\r\n\r\n', `GET /he\x01lth HTTP/1.1\r\n${H}\r\n`, `GET /health HTTP/1.1\r\n${H} folded\r\n\r\n`,
      `GET /health HTTP/1.1\r\n${H}Bad Name: v\r\n\r\n`, `POST /webhook/a/b HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`,
      `POST /webhook/a/b HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`]) {
      const res = await rawRequest(s.port, bytes, { expectClose: true });
      assertError(res, 400, 'bad_request');
      await assertServing(s);
    }
  });
});

// Default head limits (a real client's headers fit), short timeouts.
describe('HTTP timeouts, and a real client over the body limit', () => {
  let s;
  let auth;
  before(async () => {
    s = await new Server({
      env: {
        SWITCHBOARD_HEADER_TIMEOUT_MS: '300', SWITCHBOARD_IDLE_TIMEOUT_MS: '400',
        SWITCHBOARD_BODY_TIMEOUT_MS: '300', SWITCHBOARD_MAX_BODY: String(MAX_BODY),
      },
    }).start();
    auth = s.auth();
  });
  after(async () => { await s.stop(); });

  test('fetch() posting an oversized body gets 413, not a reset (with a credential or without)', async () => {
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${s.url}/webhook/size/fetch`,
        { method: 'POST', headers: i === 3 ? {} : auth, body: Buffer.alloc(2_000_000, 0x61) });
      assert.equal(res.status, 413);
      assert.equal((await res.json()).error.code, 'payload_too_large');
    }
    await assertServing(s);
  });


  test('a partial head gets 408 and the connection closes', async () => {
    const c = await RawConn.open(s.port);
    try {
      await c.write('GET /health HTTP/1.1\r\nHo');
      assertError(await c.response(), 408, 'request_timeout');
      assert.equal((await c.waitClose()).length, 0);
    } finally { c.destroy(); }
    await assertServing(s);
  });

  test('a partial body gets 408 and the connection closes', async () => {
    const c = await RawConn.open(s.port);
    try {
      await c.write(`POST /webhook/slow/body HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nabc`);
      assertError(await c.response(), 408, 'request_timeout');
      await c.waitClose();
    } finally { c.destroy(); }
    await assertServing(s);
  });

  test('an idle keep-alive connection is closed silently', async () => {
    const c = await RawConn.open(s.port);
    try {
      await c.write(`GET /health HTTP/1.1\r\n${H}\r\n`);
      assert.equal((await c.response()).status, 200);
      const rest = await c.waitClose(5000);
      assert.equal(rest.length, 0, 'no bytes (no 408) on an idle close');
    } finally { c.destroy(); }
  });

  test('a connection that never sends a byte is closed silently', async () => {
    const c = await RawConn.open(s.port);
    try {
      const rest = await c.waitClose(5000);
      assert.equal(rest.length, 0);
    } finally { c.destroy(); }
    await assertServing(s);
  });
});
