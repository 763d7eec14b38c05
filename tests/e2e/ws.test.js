// The native WebSocket protocol on /api/v1/ws (src/edge/ws_native.c):
// subscribe / unsubscribe / publish / ping and their errors, replay with
// caught_up, RFC 6455 conformance over a hand-made raw connection, bad
// handshakes, and fan-out to many WebSocket and SSE clients.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, postWebhook, publish } from './lib/server.js';
import {
  jsonWs, rawWs, rawRequest, encodeFrame, openSse, sseUrl, Publisher, pool, until, sleep,
} from './lib/clients.js';

const MAX_SUBS = 4;
const MAX_MSG = 4096;
let server;
let url;

before(async () => {
  server = await new Server({
    env: {
      SWITCHBOARD_MAX_SUBSCRIPTIONS: String(MAX_SUBS),
      SWITCHBOARD_MAX_WS_MESSAGE: String(MAX_MSG),
      SWITCHBOARD_FSYNC: 'normal',
    },
  }).start();
  url = `${server.wsUrl}/api/v1/ws`;
});

after(async () => {
  await server.stop();
});

const messagesOf = (c) => c.msgs.filter((m) => m.type === 'message').map((m) => m.message);

// A round trip on c proves the connection still works.
async function pingPong(c, id = `p${Math.random()}`) {
  const r = await c.request({ type: 'ping', id });
  assert.deepEqual(r, { type: 'pong', id });
}

// A fresh connection works end to end (used after every failure case).
async function serverServes() {
  const c = await jsonWs(url, { headers: server.auth() });
  try {
    await pingPong(c);
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
  } finally {
    c.close();
  }
}

describe('JSON protocol', () => {
  test('subscribe -> subscribed; live messages arrive as {"type":"message","message":envelope}', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      const sub = await c.request({ type: 'subscribe', id: 's1', subject: 'webhooks.wslive.>' });
      assert.deepEqual(sub, { type: 'subscribed', id: 's1', subject: 'webhooks.wslive.>' });
      const r = await postWebhook(server, '/webhook/wslive/o/r', { x: 1 }, { 'X-GitHub-Event': 'push' });
      assert.equal(r.status, 202);
      const m = await c.next((x) => x.type === 'message');
      assert.deepEqual(Object.keys(m).sort(), ['message', 'type']);
      assert.equal(m.message.id, r.body.id);
      assert.equal(m.message.seq, Number(r.body.id));
      assert.equal(m.message.subject, 'webhooks.wslive.o.r');
      assert.equal(m.message.event, 'push');
      assert.deepEqual(m.message.payload, { x: 1 });
    } finally {
      c.close();
    }
  });

  test('subscribe without id: the id is the subject; integer ids come back as strings', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      c.send({ type: 'subscribe', subject: 'webhooks.noid.>' });
      const sub = await c.next((m) => m.type === 'subscribed');
      assert.deepEqual(sub, { type: 'subscribed', id: 'webhooks.noid.>', subject: 'webhooks.noid.>' });
      c.send({ type: 'ping', id: 42 });
      assert.deepEqual(await c.next((m) => m.type === 'pong'), { type: 'pong', id: '42' });
      c.send({ type: 'ping' });
      assert.deepEqual(await c.next((m) => m.type === 'pong' && m.id === undefined), { type: 'pong' });
    } finally {
      c.close();
    }
  });

  test('subscribe with since=<id> replays then sends caught_up, then goes live', async () => {
    const hist = [];
    for (let i = 0; i < 4; i++) hist.push((await postWebhook(server, '/webhook/wsreplay/o/r', { i })).body.id);
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      for (const [id, since] of [['a', hist[1]], ['b', Number(hist[1])]]) {
        const from = c.msgs.length;
        const sub = await c.request({ type: 'subscribe', id, subject: `webhooks.wsreplay.${id === 'a' ? 'o' : '*'}.>`, since });
        assert.equal(sub.type, 'subscribed');
        const cu = await c.next((m) => m.type === 'caught_up' && m.id === id, 5000, from);
        assert.deepEqual(cu, { type: 'caught_up', id });
        const idx = c.msgs.indexOf(cu);
        const replayed = c.msgs.slice(from, idx).filter((m) => m.type === 'message').map((m) => m.message.id);
        assert.deepEqual(replayed, [hist[2], hist[3]], `replay for ${id}`);
        assert.equal(c.msgs.slice(idx).filter((m) => m.type === 'message').length, 0);
      }
      // live: one message matching both subscriptions arrives once
      const live = (await postWebhook(server, '/webhook/wsreplay/o/r', { i: 4 })).body.id;
      await c.next((m) => m.type === 'message' && m.message.id === live);
      await pingPong(c);
      assert.equal(messagesOf(c).filter((m) => m.id === live).length, 1);
    } finally {
      c.close();
    }
  });

  test('subscribe with since=0 replays everything; since=<RFC 3339 time> from that time', async () => {
    const early = (await postWebhook(server, '/webhook/wstime/o/r', {})).body.id;
    await sleep(30);
    const t = new Date().toISOString();
    await sleep(30);
    const later = [];
    for (let i = 0; i < 3; i++) later.push((await postWebhook(server, '/webhook/wstime/o/r', { i })).body.id);
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      await c.request({ type: 'subscribe', id: 'all', subject: 'webhooks.wstime.>', since: 0 });
      await c.next((m) => m.type === 'caught_up' && m.id === 'all');
      assert.deepEqual(messagesOf(c).map((m) => m.id), [early, ...later]);
      await c.request({ type: 'unsubscribe', id: 'all' });
      const from = c.msgs.length;
      await c.request({ type: 'subscribe', id: 't', subject: 'webhooks.wstime.>', since: t });
      await c.next((m) => m.type === 'caught_up' && m.id === 't', 5000, from);
      assert.deepEqual(c.msgs.slice(from).filter((m) => m.type === 'message').map((m) => m.message.id), later);
    } finally {
      c.close();
    }
  });

  test('unsubscribe -> unsubscribed, and no more messages for it', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      await c.request({ type: 'subscribe', id: 'a', subject: 'webhooks.unsub.a' });
      await c.request({ type: 'subscribe', id: 'b', subject: 'webhooks.unsub.b' });
      const first = (await postWebhook(server, '/webhook/unsub/a', {})).body.id;
      await c.next((m) => m.type === 'message' && m.message.id === first);
      assert.deepEqual(await c.request({ type: 'unsubscribe', id: 'a' }), { type: 'unsubscribed', id: 'a' });
      const gone = (await postWebhook(server, '/webhook/unsub/a', {})).body.id;
      const sentinel = (await postWebhook(server, '/webhook/unsub/b', {})).body.id;
      await c.next((m) => m.type === 'message' && m.message.id === sentinel);
      await pingPong(c);
      assert.ok(!messagesOf(c).some((m) => m.id === gone), 'a message after unsubscribe');
      // the id can be used again
      assert.equal((await c.request({ type: 'subscribe', id: 'a', subject: 'webhooks.unsub.a' })).type, 'subscribed');
    } finally {
      c.close();
    }
  });

  test('publish -> published with seq/stored, and the message reaches subscribers', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    const other = await jsonWs(url, { headers: server.auth() });
    try {
      await other.request({ type: 'subscribe', id: 's', subject: 'webhooks.wspub.>' });
      await other.request({ type: 'subscribe', id: 'r', subject: 'rooms.wspub' });
      const p1 = await c.request({ type: 'publish', id: 'p1', subject: 'webhooks.wspub.x', event: 'created', data: { a: [1, 0.1, 'x'] } });
      assert.equal(p1.type, 'published');
      assert.equal(p1.stored, true);
      assert.equal(typeof p1.seq, 'number');
      assert.ok(p1.seq > 0);
      const p2 = await c.request({ type: 'publish', id: 'p2', subject: 'rooms.wspub', data: 'hi' });
      assert.deepEqual(p2, { type: 'published', id: 'p2', seq: null, stored: false });
      const m1 = await other.next((m) => m.type === 'message' && m.message.subject === 'webhooks.wspub.x');
      assert.equal(m1.message.seq, p1.seq);
      assert.equal(m1.message.event, 'created');
      assert.deepEqual(m1.message.payload, { a: [1, 0.1, 'x'] });
      const m2 = await other.next((m) => m.type === 'message' && m.message.subject === 'rooms.wspub');
      assert.equal(m2.message.id, null);
      assert.equal(m2.message.payload, 'hi');
      // a published message is also readable over SSE replay
      const s = await openSse(sseUrl(server, ['webhooks.wspub.>'], `&since=${p1.seq - 1}`), { headers: server.auth() });
      try {
        const [ev] = await s.waitEvents(1);
        assert.equal(ev.id, String(p1.seq));
      } finally {
        s.close();
      }
    } finally {
      c.close();
      other.close();
    }
  });

  test('ping -> pong with the same id', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      for (const id of ['x', 'ünï', 'a'.repeat(128)]) await pingPong(c, id);
    } finally {
      c.close();
    }
  });
});

describe('JSON protocol errors (the connection stays usable)', () => {
  test('each bad command gets {"type":"error","code":...}', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      const cases = [
        ['not json', undefined, 'invalid_json'],
        ['[1,2]', undefined, 'invalid_json'],
        ['"str"', undefined, 'invalid_json'],
        ['{"type":"ping","id":"x"', undefined, 'invalid_json'],
        [{ id: 'e1', type: 'frobnicate' }, 'e1', 'unknown_type'],
        [{ id: 'e2' }, 'e2', 'bad_request'],
        [{ id: 'e3', type: 7 }, 'e3', 'bad_request'],
        [{ id: { x: 1 }, type: 'ping' }, undefined, 'bad_request'],
        [{ id: 'a'.repeat(129), type: 'ping' }, undefined, 'bad_request'],
        [{ id: 'e4', type: 'subscribe', subject: 'a..b' }, 'e4', 'invalid_subject'],
        [{ id: 'e5', type: 'subscribe', subject: 'a.>.b' }, 'e5', 'invalid_subject'],
        [{ id: 'e6', type: 'subscribe' }, 'e6', 'invalid_subject'],
        [{ id: 'e7', type: 'subscribe', subject: 5 }, 'e7', 'invalid_subject'],
        [{ id: 'e8', type: 'subscribe', subject: 'webhooks.x', since: 'nope' }, 'e8', 'invalid_since'],
        [{ id: 'e9', type: 'subscribe', subject: 'webhooks.x', since: -5 }, 'e9', 'invalid_since'],
        [{ id: 'e10', type: 'unsubscribe' }, 'e10', 'not_found'],
        [{ id: 'e11', type: 'publish', subject: 'webhooks.*', data: 1 }, 'e11', 'invalid_subject'],
        [{ id: 'e12', type: 'publish', subject: 'webhooks.x' }, 'e12', 'bad_request'],
        [{ id: 'e13', type: 'publish', subject: 'webhooks.x', event: 'bad\nevent', data: 1 }, 'e13', 'bad_request'],
      ];
      for (const [msg, id, code] of cases) {
        const from = c.msgs.length;
        c.send(msg);
        const e = await c.next((m) => m.type === 'error', 5000, from);
        assert.equal(e.code, code, `${JSON.stringify(msg)} -> ${JSON.stringify(e)}`);
        assert.equal(e.id, id, `${JSON.stringify(msg)} -> ${JSON.stringify(e)}`);
        assert.equal(typeof e.message, 'string');
        await pingPong(c);
      }
      assert.equal(c.closeInfo, null);
    } finally {
      c.close();
    }
  });

  test('duplicate id, unsubscribe of an unknown id, too many subscriptions', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    try {
      assert.equal((await c.request({ type: 'subscribe', id: 'd', subject: 'webhooks.dup.a' })).type, 'subscribed');
      const dup = await c.request({ type: 'subscribe', id: 'd', subject: 'webhooks.dup.b' });
      assert.deepEqual([dup.type, dup.code, dup.id], ['error', 'duplicate_id', 'd']);
      const nf = await c.request({ type: 'unsubscribe', id: 'nope' });
      assert.deepEqual([nf.type, nf.code, nf.id], ['error', 'not_found', 'nope']);
      for (let i = 1; i < MAX_SUBS; i++) {
        assert.equal((await c.request({ type: 'subscribe', id: `m${i}`, subject: `webhooks.dup.m${i}` })).type, 'subscribed');
      }
      const tm = await c.request({ type: 'subscribe', id: 'over', subject: 'webhooks.dup.over' });
      assert.deepEqual([tm.type, tm.code, tm.id], ['error', 'too_many_subscriptions', 'over']);
      // the refused subscriptions deliver nothing; the accepted ones work
      const over = (await postWebhook(server, '/webhook/dup/over', {})).body.id;
      const b = (await postWebhook(server, '/webhook/dup/b', {})).body.id;
      const a = (await postWebhook(server, '/webhook/dup/a', {})).body.id;
      await c.next((m) => m.type === 'message' && m.message.id === a);
      assert.ok(!messagesOf(c).some((m) => m.id === over || m.id === b));
      // freeing one makes room again
      await c.request({ type: 'unsubscribe', id: 'm1' });
      assert.equal((await c.request({ type: 'subscribe', id: 'over', subject: 'webhooks.dup.over' })).type, 'subscribed');
    } finally {
      c.close();
    }
  });

  test('a binary message -> close 1003', async () => {
    const c = await jsonWs(url, { headers: server.auth() });
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    const info = await c.closed;
    assert.equal(info.code, 1003);
    await serverServes();
  });
});

describe('RFC 6455 over a raw socket', () => {
  const PING_JSON = (id) => Buffer.from(JSON.stringify({ type: 'ping', id }));

  async function expectClose(frames, code) {
    const w = await rawWs(server.port, '/api/v1/ws', server.auth());
    try {
      for (const f of frames) w.send(f);
      const close = await w.nextFrame((f) => f.opcode === 8);
      assert.equal(close.closeCode, code);
      assert.equal(close.masked, false);
      await w.waitClosed();
    } finally {
      w.close();
    }
    await serverServes();
  }

  test('handshake: 101 with the right Sec-WebSocket-Accept; a masked text frame works', async () => {
    const w = await rawWs(server.port, '/api/v1/ws', server.auth());
    try {
      assert.equal(w.head.headers.upgrade.toLowerCase(), 'websocket');
      w.send(encodeFrame(1, PING_JSON('raw')));
      const f = await w.nextFrame((x) => x.opcode === 1);
      assert.equal(f.fin, true);
      assert.equal(f.masked, false);
      assert.deepEqual(JSON.parse(f.text), { type: 'pong', id: 'raw' });
    } finally {
      w.close();
    }
  });

  test('unmasked client frame -> close 1002', () => expectClose([encodeFrame(1, PING_JSON('u'), { mask: false })], 1002));
  test('invalid UTF-8 in a text frame -> close 1007', () => expectClose([encodeFrame(1, Buffer.from([0x7b, 0xc3, 0x28, 0x7d]))], 1007));
  test('invalid UTF-8 split across fragments -> close 1007', () => expectClose([
    encodeFrame(1, Buffer.from([0x22, 0xe2, 0x82]), { fin: false }), encodeFrame(0, Buffer.from([0x41, 0x22]))], 1007));
  test('message over SWITCHBOARD_MAX_WS_MESSAGE -> close 1009', () => expectClose([encodeFrame(1, Buffer.alloc(MAX_MSG + 1, 0x20))], 1009));
  test('fragments adding up to more than the limit -> close 1009', () => expectClose([
    encodeFrame(1, Buffer.alloc(MAX_MSG - 10, 0x20), { fin: false }), encodeFrame(0, Buffer.alloc(11, 0x20))], 1009));
  test('reserved opcode 3 -> close 1002', () => expectClose([encodeFrame(3, 'x')], 1002));
  test('reserved control opcode 0xB -> close 1002', () => expectClose([encodeFrame(0xb, 'x')], 1002));
  test('RSV1 set without an extension -> close 1002', () => expectClose([encodeFrame(1, PING_JSON('r'), { rsv: 4 })], 1002));
  test('continuation without a start -> close 1002', () => expectClose([encodeFrame(0, PING_JSON('c'))], 1002));
  test('a new text frame inside a fragmented message -> close 1002', () => expectClose([
    encodeFrame(1, '{"type":', { fin: false }), encodeFrame(1, '"ping"}')], 1002));
  test('fragmented control frame -> close 1002', () => expectClose([encodeFrame(9, 'x', { fin: false })], 1002));
  test('control frame payload over 125 bytes -> close 1002', () => expectClose([encodeFrame(9, Buffer.alloc(126), { len16: true })], 1002));
  test('non-minimal length encoding -> close 1002', () => expectClose([encodeFrame(1, PING_JSON('n'), { len16: true })], 1002));
  test('close frame with a 1-byte body -> close 1002', () => expectClose([encodeFrame(8, Buffer.from([3]))], 1002));
  test('close frame with a reserved code (1005) -> close 1002', () => expectClose([encodeFrame(8, Buffer.from([0x03, 0xed]))], 1002));

  test('a fragmented message is reassembled, with a ping between its fragments', async () => {
    const w = await rawWs(server.port, '/api/v1/ws', server.auth());
    try {
      const text = Buffer.from(JSON.stringify({ type: 'ping', id: 'fragmented-ü-message' }));
      w.send(Buffer.concat([
        encodeFrame(1, text.subarray(0, 5), { fin: false }),
        encodeFrame(0, text.subarray(5, 19), { fin: false }), // splits the ü in two
        encodeFrame(9, 'mid'),
        encodeFrame(0, text.subarray(19), { fin: true }),
      ]));
      const pong = await w.nextFrame((f) => f.opcode === 10);
      assert.equal(pong.payload.toString(), 'mid');
      const reply = await w.nextFrame((f) => f.opcode === 1);
      assert.deepEqual(JSON.parse(reply.text), { type: 'pong', id: 'fragmented-ü-message' });
      // and byte-at-a-time delivery of a whole frame works too
      const frame = encodeFrame(1, PING_JSON('slow'));
      for (const byte of frame) { w.send(Buffer.from([byte])); await sleep(1); }
      const r2 = await w.nextFrame((f) => f.opcode === 1 && f.text.includes('slow'));
      assert.deepEqual(JSON.parse(r2.text), { type: 'pong', id: 'slow' });
    } finally {
      w.close();
    }
  });

  test('a ping frame is answered by a pong with the same payload (also empty)', async () => {
    const w = await rawWs(server.port, '/api/v1/ws', server.auth());
    try {
      const payload = Buffer.from([0, 1, 2, 255, 254, 0x80]);
      w.send(encodeFrame(9, payload));
      const pong = await w.nextFrame((f) => f.opcode === 10);
      assert.deepEqual(pong.payload, payload);
      assert.equal(pong.fin, true);
      w.send(encodeFrame(9, Buffer.alloc(125, 7)));
      const pong2 = await w.nextFrame((f) => f.opcode === 10 && f.payload.length === 125);
      assert.deepEqual(pong2.payload, Buffer.alloc(125, 7));
      w.send(encodeFrame(9, ''));
      await w.nextFrame((f) => f.opcode === 10 && f.payload.length === 0);
      // unsolicited pongs are ignored
      w.send(encodeFrame(10, 'whatever'));
      w.send(encodeFrame(1, PING_JSON('after-pong')));
      const r = await w.nextFrame((f) => f.opcode === 1);
      assert.deepEqual(JSON.parse(r.text), { type: 'pong', id: 'after-pong' });
    } finally {
      w.close();
    }
  });

  test('close handshake echoes the code; then the server closes the TCP connection', async () => {
    for (const code of [1000, 1001, 3000, 4321]) {
      const w = await rawWs(server.port, '/api/v1/ws', server.auth());
      try {
        const body = Buffer.alloc(2 + 3);
        body.writeUInt16BE(code, 0);
        body.write('bye', 2);
        w.send(encodeFrame(8, body));
        const close = await w.nextFrame((f) => f.opcode === 8);
        assert.equal(close.closeCode, code);
        await w.waitClosed();
      } finally {
        w.close();
      }
    }
    // a close without a status is answered by an empty close or 1000
    const w = await rawWs(server.port, '/api/v1/ws', server.auth());
    try {
      w.send(encodeFrame(8, ''));
      const close = await w.nextFrame((f) => f.opcode === 8);
      assert.ok(close.payload.length === 0 || close.closeCode === 1000, `close code ${close.closeCode}`);
      await w.waitClosed();
    } finally {
      w.close();
    }
    await serverServes();
  });
});

describe('handshake errors', () => {
  // With the credential, so that each request passes authentication and
  // reaches the handshake checks (an upgrade without one may authenticate
  // in its first message, so the handshake is checked the same way).
  const req = (lines) => rawRequest(server.port, `${lines.join('\r\n')}\r\n\r\n`);
  const base = (extra = [], method = 'GET', ver = '13', key = 'dGhlIHNhbXBsZSBub25jZQ==') => [
    `${method} /api/v1/ws HTTP/1.1`, 'Host: x', 'Upgrade: websocket', 'Connection: Upgrade',
    `Authorization: Bearer ${server.adminKey}`,
    ...(key ? [`Sec-WebSocket-Key: ${key}`] : []), ...(ver ? [`Sec-WebSocket-Version: ${ver}`] : []), ...extra];

  test('the reference handshake from RFC 6455 section 1.3', async () => {
    const r = await req(base());
    assert.equal(r.status, 101);
    assert.equal(r.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  test('missing or malformed Sec-WebSocket-Key -> 400', async () => {
    for (const key of [null, 'short', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25j!Q==', 'dGhlIHNhbXBsZSBub25jZQ=====']) {
      const r = await req(base([], 'GET', '13', key));
      assert.equal(r.status, 400, `key ${key}`);
      assert.equal(r.json.error.code, 'bad_request');
    }
    await serverServes();
  });

  test('Sec-WebSocket-Version 8 (or none) -> 426 with Sec-WebSocket-Version: 13', async () => {
    for (const ver of ['8', null, '14']) {
      const r = await req(base([], 'GET', ver));
      assert.equal(r.status, 426, `version ${ver}`);
      assert.equal(r.headers['sec-websocket-version'], '13');
      assert.equal(r.json.error.code, 'upgrade_required');
    }
    await serverServes();
  });

  test('POST -> 405; no Upgrade / Connection headers -> 400; HTTP/1.0 -> 400', async () => {
    const post = await req([...base([], 'POST'), 'Content-Length: 0']);
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET');
    const plain = await rawRequest(server.port,
      `GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${server.adminKey}\r\n\r\n`);
    assert.equal(plain.status, 400);
    const noConn = await req(base().filter((l) => !l.startsWith('Connection')));
    assert.equal(noConn.status, 400);
    const old = await req(base().map((l) => l.replace('HTTP/1.1', 'HTTP/1.0')));
    assert.equal(old.status, 400);
    await serverServes();
  });

  test('an upgrade request with a body -> 400', async () => {
    const r = await rawRequest(server.port, [...base(), 'Content-Length: 2', '', 'xx'].join('\r\n'));
    assert.equal(r.status, 400);
    await serverServes();
  });
});

describe('resume and fan-out', () => {
  test('resubscribing with since=<last seq> under continuous publishing: every message once, in order', { timeout: 60000 }, async () => {
    const pub = new Publisher(server, { sockets: 6 });
    const published = [];
    let stop = false;
    const publisher = Promise.all(Array.from({ length: 6 }, async () => {
      while (!stop && published.length < 5000) {
        const r = await pub.webhook('/webhook/wsresume/o/r', {});
        assert.equal(r.status, 202);
        published.push(r.json.id);
        await sleep(5);
      }
    }));
    const got = [];
    let conns = 0;
    try {
      for (let cycle = 0; cycle < 6; cycle++) {
        const c = await jsonWs(url, { headers: server.auth() });
        conns++;
        const last = got.length ? Number(got[got.length - 1]) : 0;
        c.ws.on('message', (d) => {
          const m = JSON.parse(d.toString());
          if (m.type === 'message' && !c.dropped) got.push(m.message.id);
        });
        await c.request({ type: 'subscribe', id: 's', subject: 'webhooks.wsresume.>', since: last });
        if (cycle === 5) {
          stop = true;
          await publisher;
          published.sort((x, y) => Number(x) - Number(y));
          await until(() => got.length >= published.length, 30000, `all ${published.length} (have ${got.length})`);
          await pingPong(c);
          c.dropped = true;
          c.close();
          break;
        }
        const target = got.length + 100 + Math.floor(Math.random() * 200);
        await until(() => got.length >= target, 30000, 'progress');
        c.dropped = true;
        c.terminate();
      }
      assert.equal(conns, 6);
      assert.deepEqual(got, published);
    } finally {
      stop = true;
      await publisher;
      pub.close();
    }
  });

  test('200 WebSocket + 50 SSE clients on one subject each get all 100 messages exactly once', { timeout: 60000 }, async () => {
    const wss = [];
    const sses = [];
    try {
      await pool(200, 20, async () => {
        const c = await jsonWs(url, { headers: server.auth() });
        wss.push(c);
        await c.request({ type: 'subscribe', id: 'f', subject: 'webhooks.fanout.room' });
      });
      await pool(50, 10, async () => { sses.push(await openSse(sseUrl(server, ['webhooks.fanout.room']), { headers: server.auth() })); });
      const pub = new Publisher(server, { sockets: 4 });
      const res = await pool(100, 4, (i) => pub.publish('webhooks.fanout.room', { i }));
      pub.close();
      assert.ok(res.every((r) => r.status === 202));
      const expected = res.map((r) => r.json.id).sort((a, b) => Number(a) - Number(b));
      await until(() => wss.every((c) => messagesOf(c).length >= 100) && sses.every((s) => s.events.length >= 100),
        30000, 'every client to have 100 messages');
      await sleep(300);
      for (const c of wss) assert.deepEqual(messagesOf(c).map((m) => m.id), expected);
      for (const s of sses) assert.deepEqual(s.events.map((e) => e.id), expected);
    } finally {
      for (const c of wss) c.close();
      for (const s of sses) s.close();
    }
    await serverServes();
  });
});
