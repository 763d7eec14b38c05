// Slow consumers with SWITCHBOARD_OUTBOUND_QUEUE=65536 (soft limit; the
// hard limit is 8 x that): a subscriber that stops reading is disconnected
// (SSE: the connection ends; WebSocket: close 4008 or the connection end),
// counted and logged, while a healthy
// subscriber on the same subject gets every message; the dropped one
// resumes from the store without loss. A long replay to a reader that
// keeps up is paced and never counted as slow.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server } from './lib/server.js';
import {
  openSse, sseUrl, rawConnect, parseHead, SseParser, jsonWs, Publisher, pool, until, sleep, forkReader,
} from './lib/clients.js';

const QUEUE = 65536;
const MSG_BYTES = 8 * 1024;    // payload per message (the envelope adds ~400 bytes)
const TOTAL_BYTES = 20 * 1024 * 1024;
const COUNT = Math.ceil(TOTAL_BYTES / MSG_BYTES);
let server;

before(async () => {
  server = await new Server({
    env: { SWITCHBOARD_OUTBOUND_QUEUE: String(QUEUE), SWITCHBOARD_FSYNC: 'normal' },
  }).start();
});

after(async () => {
  await server.stop();
});

async function slowMetric(protocol) {
  const { values } = await server.metrics();
  const v = values[`switchboard_slow_consumer_disconnects_total{protocol="${protocol}"}`];
  assert.equal(typeof v, 'number', `metric for ${protocol}`);
  return v;
}

// Publishes count messages of `bytes` on subject, `concurrency` at a time,
// each worker pausing `paceMs` between requests: a healthy reader (in its
// own process, on a 2-core machine shared with an ASan server) must be
// able to keep up, since with a 64 KiB queue it may only fall that far
// (plus the kernel's socket buffers) behind. Returns the ids in order.
async function publishBulk(subject, { count = COUNT, bytes = MSG_BYTES, concurrency = 2, paceMs = 3 } = {}) {
  const pub = new Publisher(server, { sockets: concurrency });
  const filler = 'x'.repeat(bytes);
  try {
    const res = await pool(count, concurrency, async (i) => {
      const r = await pub.publish(subject, { i, filler });
      if (paceMs) await sleep(paceMs);
      return r;
    });
    for (const r of res) assert.equal(r.status, 202, r.text);
    return res.map((r) => r.json.id).sort((a, b) => Number(a) - Number(b));
  } finally {
    pub.close();
  }
}

// SSE event ids in raw stream bytes (complete events only).
function sseIds(buf) {
  const out = [];
  const p = new SseParser((b) => { if (b.data !== undefined) out.push(b.id); });
  p.feed(buf.toString());
  return out;
}

describe('slow consumers', () => {
  test('SSE: a reader that stops reading is disconnected, counted and logged; a healthy one gets everything; resume loses nothing', { timeout: 90000 }, async () => {
    const subject = 'webhooks.slowsse.x';
    const before = await slowMetric('sse');
    // the healthy reader runs in its own process: the test's own work
    // (publishing 20 MB) must not stall it
    const healthy = await forkReader('sse', server.port, 'webhooks.slowsse.>', server.adminKey);
    const slow = await rawConnect(server.port);
    let resumed = null;
    try {
      slow.sock.write('GET /api/v1/stream?subject=webhooks.slowsse.%3E HTTP/1.1\r\nHost: x\r\n' +
        `Authorization: Bearer ${server.adminKey}\r\n\r\n`);
      const head = await until(() => parseHead(slow.data), 5000, 'the slow stream head');
      assert.equal(head.status, 200);
      slow.sock.pause(); // stops reading: the kernel buffers fill, then the server's queue

      const expected = await publishBulk(subject);
      let rep;
      for (const end = Date.now() + 60000; Date.now() < end; await sleep(100)) {
        rep = await healthy.report();
        if (rep.ids.length >= COUNT || rep.ended) break;
      }
      assert.equal(rep.ended, false, `the healthy reader was disconnected after ${rep.ids.length} messages`);
      assert.deepEqual(rep.ids, expected);

      let after = before;
      const deadline = Date.now() + 10000;
      while (after === before && Date.now() < deadline) { after = await slowMetric('sse'); await sleep(50); }
      assert.equal(after, before + 1, 'switchboard_slow_consumer_disconnects_total{protocol="sse"}');
      const logs = server.logsMatching('slow consumer disconnected').filter((l) => l.protocol === 'sse');
      assert.equal(logs.length, 1, JSON.stringify(logs));
      assert.equal(logs[0].level, 'warn');
      assert.ok(logs[0].queued > 0 && logs[0].queued <= 8 * QUEUE, `queued ${logs[0].queued}`);

      // Reading again: what the kernel held, then the end of the stream.
      slow.sock.resume();
      await until(() => slow.closed || slow.ended, 30000, 'the slow connection to end');
      const got = sseIds(slow.data.subarray(head.headLen));
      assert.ok(got.length > 0, 'some messages reached the slow reader before it stalled');
      assert.ok(got.length < expected.length, `the slow reader cannot have everything (${got.length})`);
      assert.deepEqual(got, expected.slice(0, got.length), 'what it got is a gapless prefix');

      // Resume with Last-Event-ID: the rest comes from the store.
      resumed = await openSse(sseUrl(server, ['webhooks.slowsse.>']),
        { headers: { ...server.auth(), 'Last-Event-ID': got[got.length - 1] } });
      assert.equal(resumed.status, 200);
      await resumed.waitEvents(expected.length - got.length, 60000);
      await sleep(200);
      assert.deepEqual([...got, ...resumed.events.map((e) => e.id)], expected);
      assert.equal(await slowMetric('sse'), before + 1, 'the replay did not count as slow');
    } finally {
      await healthy.stop();
      slow.sock.destroy();
      if (resumed) resumed.close();
    }
  });

  test('WebSocket: a reader that stops reading gets close 4008 (or the end), counted and logged; resume with since loses nothing', { timeout: 90000 }, async () => {
    const subject = 'webhooks.slowws.x';
    const url = `${server.wsUrl}/api/v1/ws`;
    const before = await slowMetric('websocket');
    const sseBefore = await slowMetric('sse');
    const healthy = await forkReader('ws', server.port, 'webhooks.slowws.>', server.adminKey);
    const slow = await jsonWs(url, { headers: server.auth() });
    let again = null;
    try {
      await slow.request({ type: 'subscribe', id: 's', subject: 'webhooks.slowws.>' });
      slow.ws.pause();

      const expected = await publishBulk(subject);
      let rep;
      for (const end = Date.now() + 60000; Date.now() < end; await sleep(100)) {
        rep = await healthy.report();
        if (rep.ids.length >= COUNT || rep.ended) break;
      }
      assert.equal(rep.ended, false, `the healthy reader was closed (${rep.closeCode}) after ${rep.ids.length} messages`);
      assert.deepEqual(rep.ids, expected);

      let after = before;
      const deadline = Date.now() + 10000;
      while (after === before && Date.now() < deadline) { after = await slowMetric('websocket'); await sleep(50); }
      assert.equal(after, before + 1, 'switchboard_slow_consumer_disconnects_total{protocol="websocket"}');
      assert.equal(await slowMetric('sse'), sseBefore);
      const logs = server.logsMatching('slow consumer disconnected').filter((l) => l.protocol === 'websocket');
      assert.equal(logs.length, 1, JSON.stringify(logs));

      slow.ws.resume();
      const info = await until(() => slow.closeInfo, 30000, 'the slow connection to end');
      assert.ok(info.code === 4008 || info.code === 1006, `close code ${info.code}`);
      const got = slow.msgs.filter((m) => m.type === 'message').map((m) => m.message.id);
      assert.ok(got.length > 0 && got.length < expected.length, `slow reader got ${got.length}`);
      assert.deepEqual(got, expected.slice(0, got.length), 'what it got is a gapless prefix');

      again = await jsonWs(url, { headers: server.auth() });
      await again.request({ type: 'subscribe', id: 'r', subject: 'webhooks.slowws.>', since: got[got.length - 1] });
      await again.next((m) => m.type === 'caught_up', 60000);
      const rest = again.msgs.filter((m) => m.type === 'message').map((m) => m.message.id);
      assert.deepEqual([...got, ...rest], expected);
      assert.equal(await slowMetric('websocket'), before + 1, 'the replay did not count as slow');
    } finally {
      await healthy.stop();
      slow.terminate();
      if (again) again.close();
    }
  });

  test('replaying 5000 stored messages of 2 KB (far more than the queue) is paced, not a slow consumer', { timeout: 90000 }, async () => {
    const N = 5000;
    const expected = await publishBulk('webhooks.longreplay.x', { count: N, bytes: 2048, concurrency: 8, paceMs: 0 });
    const sseBefore = await slowMetric('sse');
    const wsBefore = await slowMetric('websocket');
    const s = await openSse(sseUrl(server, ['webhooks.longreplay.>'], '&since=0'), { headers: server.auth() });
    const w = await jsonWs(`${server.wsUrl}/api/v1/ws`, { headers: server.auth() });
    try {
      await w.request({ type: 'subscribe', id: 'all', subject: 'webhooks.longreplay.>', since: 0 });
      await until(() => s.events.length >= N || s.ended, 60000, `SSE replay (${s.events.length}/${N})`);
      assert.equal(s.ended, false, 'the SSE replay reader was disconnected');
      assert.deepEqual(s.events.map((e) => e.id), expected);
      await w.next((m) => m.type === 'caught_up', 60000);
      assert.deepEqual(w.msgs.filter((m) => m.type === 'message').map((m) => m.message.id), expected);
      assert.equal(await slowMetric('sse'), sseBefore);
      assert.equal(await slowMetric('websocket'), wsBefore);
      // both are live afterwards
      const pub = new Publisher(server, { sockets: 1 });
      const r = await pub.publish('webhooks.longreplay.x', { last: true });
      pub.close();
      await until(() => s.events.some((e) => e.id === r.json.id), 5000, 'live SSE message');
      await w.next((m) => m.type === 'message' && m.message.id === r.json.id);
    } finally {
      s.close();
      w.close();
    }
  });

  test('a burst above the soft limit that an idle, fast reader drains is not a slow consumer', { timeout: 60000 }, async () => {
    const sseBefore = await slowMetric('sse');
    const wsBefore = await slowMetric('websocket');
    const s = await openSse(sseUrl(server, ['webhooks.burst.>']), { headers: server.auth() });
    const w = await jsonWs(`${server.wsUrl}/api/v1/ws`, { headers: server.auth() });
    try {
      await w.request({ type: 'subscribe', id: 'b', subject: 'webhooks.burst.>' });
      // 32 concurrent 4 KB publishes: ~140 KB, more than the 64 KiB soft
      // limit, typically arriving in one or two group commits
      const ids = await publishBulk('webhooks.burst.x', { count: 32, bytes: 4096, concurrency: 32, paceMs: 0 });
      await until(() => s.events.length >= 32 || s.ended, 20000, `SSE burst (${s.events.length}/32)`);
      assert.equal(s.ended, false, 'the SSE reader was dropped by a burst');
      assert.deepEqual(s.events.map((e) => e.id), ids);
      await until(() => w.msgs.filter((m) => m.type === 'message').length >= 32, 20000, 'WebSocket burst');
      assert.equal(await slowMetric('sse'), sseBefore);
      assert.equal(await slowMetric('websocket'), wsBefore);
    } finally {
      s.close();
      w.close();
    }
  });
});
