// Lifecycle: SIGTERM drains gracefully (WebSocket close 1001, SSE ends,
// in-flight requests answered and durable), and kill -9 in the middle of
// concurrent ingest loses nothing that was acknowledged - three times over
// on one data directory.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Server, postWebhook, sleep, waitFor } from './lib/server.js';
import { RawConn } from './lib/rawhttp.js';
import { readEvents } from './lib/readback.js';

// Every stored message, in order, up to the store's last sequence.
async function readAll(s) {
  const h = await (await fetch(`${s.url}/health`)).json();
  const last = String(h.storage.lastSeq);
  if (h.storage.lastSeq === 0) return { events: [], lastSeq: 0 };
  const events = await readEvents(s, {
    subject: 'webhooks.>', since: '0', timeout: 60000,
    until: (evs) => evs.length > 0 && evs[evs.length - 1].id === last,
  });
  return { events, lastSeq: h.storage.lastSeq };
}

// p, or `fallback` after ms (the timer is cleared either way).
function within(p, ms, fallback = null) {
  let t;
  return Promise.race([p, new Promise((r) => { t = setTimeout(() => r(fallback), ms); })])
    .finally(() => clearTimeout(t));
}

function wsOpen(url, headers) {
  const ws = new WebSocket(url, { headers });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const messages = [];
  ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
  ws.on('error', () => {});
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, closed, messages }));
    ws.once('error', reject);
  });
}

describe('graceful shutdown (SIGTERM)', () => {
  test('WebSocket gets 1001, SSE ends, in-flight request answered 202 and durable, exit 0', async () => {
    const s = await new Server().start();
    let s2;
    try {
      // an SSE stream, live
      const ac = new AbortController();
      const sse = await fetch(`${s.url}/api/v1/stream?subject=webhooks.>`, { signal: ac.signal, headers: s.auth() });
      assert.equal(sse.status, 200);
      const reader = sse.body.getReader();
      let sseText = '';
      const sseEnded = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return true;
          sseText += Buffer.from(value).toString();
        }
      })().catch((e) => e);
      // a WebSocket, subscribed
      const w = await wsOpen(`${s.wsUrl}/api/v1/ws`, s.auth());
      w.ws.send(JSON.stringify({ type: 'subscribe', id: 's1', subject: 'webhooks.>' }));
      await waitFor(() => w.messages.some((m) => m.type === 'subscribed'), { timeout: 5000, what: 'subscribed' });

      // a request in flight: its head read by the server (the 100 Continue
      // proves it) and part of its body sent before SIGTERM
      const body = JSON.stringify({ inflight: true, pad: 'x'.repeat(64) });
      const c = await RawConn.open(s.port);
      await c.write(`POST /webhook/life/inflight HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n` +
        `Authorization: Bearer ${s.adminKey}\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
      assert.equal((await c.response()).status, 100);
      await c.write(body.slice(0, 20));
      // a webhook just before the signal: its answer must be a 202
      const before = postWebhook(s, '/webhook/life/before', { before: true });
      const b = await before;
      assert.equal(b.status, 202);

      s.proc.kill('SIGTERM');
      await waitFor(() => s.logsMatching('shutting down').length === 1, { timeout: 5000, what: '"shutting down" log' });
      await c.write(body.slice(20));
      const res = await c.response({ timeout: 5000 });
      assert.equal(res.status, 202, 'the request in flight is answered');
      assert.equal(res.headers.connection, 'close');
      await c.waitClose();
      c.destroy();

      const wsClose = await within(w.closed, 10000);
      assert.ok(wsClose, 'WebSocket closed');
      assert.equal(wsClose.code, 1001);
      const ended = await within(sseEnded, 10000, 'timeout');
      assert.equal(ended, true, 'SSE stream ended');
      assert.match(sseText, /"subject":"webhooks\.life\.before"/, 'the live SSE client got the message first');
      assert.ok(w.messages.some((m) => m.type === 'message' && m.message.subject === 'webhooks.life.before'));

      await s.stop({ cleanup: false });    // asserts exit 0 and no sanitizer report
      assert.equal(s.logsMatching('shutting down').length, 1);
      assert.equal(s.logsMatching('stopped').length, 1);
      const order = s.logs.map((l) => l.msg);
      assert.ok(order.indexOf('shutting down') < order.indexOf('stopped'));

      // both messages are there after a restart (same data directory: same admin key)
      s2 = await s.restart().start();
      assert.equal(s2.adminKey, s.adminKey);
      const { events } = await readAll(s2);
      const subjects = events.map((e) => e.data.subject);
      assert.deepEqual(subjects, ['webhooks.life.before', 'webhooks.life.inflight']);
      assert.equal(events[0].id, b.body.id);
      assert.equal(events[1].id, res.json.id);
      assert.equal(JSON.stringify(events[1].data.payload), body);
    } finally {
      if (s2) await s2.stop();
      if (!s.exited) await s.kill9();
      s.cleanup();
    }
  });

  test('new connections are refused once shutdown begins, idle keep-alive ones are closed', async () => {
    const s = await new Server({ env: { SWITCHBOARD_SHUTDOWN_TIMEOUT_MS: '15000' } }).start();
    try {
      const idle = await RawConn.open(s.port);
      await idle.write('GET /health HTTP/1.1\r\nHost: t\r\n\r\n');
      assert.equal((await idle.response()).status, 200);
      // a slow upload (its head read: 100 Continue) keeps the server in its grace period
      const slow = await RawConn.open(s.port);
      await slow.write('POST /webhook/life/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n' +
        `Authorization: Bearer ${s.adminKey}\r\n\r\n`);
      assert.equal((await slow.response()).status, 100);
      await slow.write('abc');
      s.proc.kill('SIGTERM');
      await waitFor(() => s.logsMatching('shutting down').length === 1, { timeout: 5000, what: '"shutting down" log' });
      assert.equal((await idle.waitClose()).length, 0, 'the idle connection is closed without a response');
      idle.destroy();
      await waitFor(() => RawConn.open(s.port).then((c) => { c.destroy(); return false; }, () => true),
        { timeout: 5000, what: 'new connections to be refused' });
      await slow.write('defghij');
      const res = await slow.response();
      assert.equal(res.status, 202);
      slow.destroy();
      await s.stop();
    } finally {
      if (!s.exited) { await s.kill9(); s.cleanup(); }
    }
  });
});

describe('kill -9 durability', () => {
  test('every acknowledged webhook survives SIGKILL under concurrent load, 3 cycles on one data dir', async (t) => {
    const CLIENTS = 8;
    const acked = new Map();        // id -> body text
    let s = await new Server().start();
    const first = s;
    let maxSeen = 0n;
    try {
      for (let cycle = 0; cycle < 3; cycle++) {
        let stop = false;
        let inflightFailures = 0;
        let okThisCycle = 0;
        const client = async (k) => {
          for (let n = 0; !stop; n++) {
            const body = JSON.stringify({ cycle, client: k, n, pad: 'd'.repeat((k * 37 + n) % 300) });
            let res;
            try {
              res = await fetch(`${s.url}/webhook/durable/c${k}`, {
                method: 'POST', headers: { 'content-type': 'application/json', ...s.auth() }, body,
              });
            } catch {
              inflightFailures++;
              return;               // the server is gone
            }
            if (res.status === 202) {
              let j;
              try { j = await res.json(); } catch { inflightFailures++; return; }
              acked.set(j.id, body);
              okThisCycle++;
            } else {
              await res.arrayBuffer().catch(() => {});
              throw new Error(`unexpected status ${res.status}`);
            }
          }
        };
        const clients = Array.from({ length: CLIENTS }, (_, k) => client(k));
        await sleep(1500);
        await s.kill9();
        stop = true;
        await Promise.all(clients);
        assert.ok(okThisCycle > 0, `cycle ${cycle}: some webhooks were acknowledged`);
        assert.ok(inflightFailures >= 1, `cycle ${cycle}: requests were in flight at the kill`);
        assert.equal(s.exited.signal, 'SIGKILL');
        assert.doesNotMatch(s.stderr, /AddressSanitizer|runtime error:/);

        s = first.restart();
        await s.start();
        assert.equal(s.adminKey, first.adminKey, 'the admin key survives the kill');
        const { events, lastSeq } = await readAll(s);
        t.diagnostic(`cycle ${cycle}: ${okThisCycle} acknowledged, ${inflightFailures} in flight at the kill, ` +
          `${events.length} stored in all (last id ${lastSeq})`);
        // ids in order, no duplicates, nothing beyond lastSeq
        const ids = events.map((e) => BigInt(e.id));
        for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], 'strictly increasing ids');
        assert.equal(ids[ids.length - 1], BigInt(lastSeq));
        const byId = new Map(events.map((e) => [e.id, e]));
        for (const [id, body] of acked) {
          const e = byId.get(id);
          assert.ok(e, `cycle ${cycle}: acknowledged id ${id} is present`);
          assert.ok(e.dataRaw.endsWith(`"payload":${body}}`), `cycle ${cycle}: id ${id} has its body`);
        }
        // a new webhook gets an id above everything stored before
        const r = await postWebhook(s, '/webhook/durable/after', { cycle });
        assert.equal(r.status, 202);
        const newId = BigInt(r.body.id);
        assert.ok(newId > BigInt(lastSeq), `new id ${newId} > last stored ${lastSeq}`);
        assert.ok(newId > maxSeen);
        maxSeen = newId;
        acked.set(r.body.id, JSON.stringify({ cycle }));
      }
      await s.stop();
    } finally {
      if (!s.exited) await s.kill9();
      first.cleanup();
    }
  });
});
