// Server-Sent Events: GET /api/v1/stream?subject=P[&subject=P...]
// Headers, live delivery, event/id lines, NATS wildcards, several
// patterns, replay (?since=, Last-Event-ID), resume without gap or
// duplicate under continuous publishing across loops, heartbeats, and the
// 400 errors.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { Server, postWebhook, publish } from './lib/server.js';
import {
  openSse, sseUrl, rawConnect, parseHead, SseParser, Publisher, pool, until, sleep,
} from './lib/clients.js';

const MAX_SUBS = 4;
let server;

before(async () => {
  server = await new Server({
    env: {
      SWITCHBOARD_HEARTBEAT_MS: '1000',
      SWITCHBOARD_MAX_SUBSCRIPTIONS: String(MAX_SUBS),
      SWITCHBOARD_FSYNC: 'normal',
    },
  }).start();
});

after(async () => {
  await server.stop();
});

// Posts n webhooks one after the other on path; returns their 202 bodies.
async function postMany(path, n, headers = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await postWebhook(server, path, { i }, headers);
    assert.equal(r.status, 202, r.text);
    out.push(r.body);
  }
  return out;
}

const ids = (events) => events.map((e) => e.id);

// EventSource cannot set headers itself: its fetch adds the credential.
const withAuth = (init) => ({ ...init, headers: { ...init.headers, ...server.auth() } });
const authFetch = (url, init) => fetch(url, withAuth(init));

describe('stream response', () => {
  test('headers: text/event-stream, no-cache, X-Accel-Buffering: no; retry and connected comment first', async () => {
    const s = await openSse(sseUrl(server, ['webhooks.hdr.>']), { headers: server.auth() });
    try {
      assert.equal(s.status, 200);
      assert.match(s.headers.get('content-type'), /^text\/event-stream/);
      assert.match(s.headers.get('cache-control'), /(^|,\s*)no-cache(,|$)/);
      assert.equal(s.headers.get('x-accel-buffering'), 'no');
      assert.equal(s.headers.get('content-length'), null);
      await until(() => s.comments.length >= 1, 5000, 'the connected comment');
      assert.deepEqual(s.retries, ['2000']);
      assert.ok(s.raw.startsWith('retry: 2000\n'), JSON.stringify(s.raw.slice(0, 40)));
    } finally {
      s.close();
    }
  });

  test('raw bytes: head then event blocks with id:, event:, data: lines', async () => {
    const c = await rawConnect(server.port);
    try {
      c.sock.write('GET /api/v1/stream?subject=webhooks.rawsse.%3E HTTP/1.1\r\nHost: x\r\n' +
        `Authorization: Bearer ${server.adminKey}\r\n\r\n`);
      const head = await until(() => parseHead(c.data), 5000, 'response head');
      assert.equal(head.status, 200);
      assert.equal(head.headers['transfer-encoding'], undefined, 'no chunking');
      const r = await postWebhook(server, '/webhook/rawsse/o/r', { hello: 'world' }, { 'X-GitHub-Event': 'issues' });
      assert.equal(r.status, 202);
      const complete = () => c.data.subarray(head.headLen).toString().split('\n\n').slice(0, -1);
      const block = await until(() => complete().find((b) => b.startsWith('id: ')), 5000, 'a complete event');
      const lines = block.split('\n');
      assert.equal(lines[0], `id: ${r.body.id}`);
      assert.equal(lines[1], 'event: issues');
      assert.ok(lines[2].startsWith('data: {'), lines[2]);
      assert.equal(lines.length, 3, 'one data line: the envelope is on one line');
      const env = JSON.parse(lines[2].slice(6));
      assert.equal(env.id, r.body.id);
      assert.equal(env.subject, 'webhooks.rawsse.o.r');
      assert.deepEqual(env.payload, { hello: 'world' });
    } finally {
      c.sock.destroy();
    }
  });
});

describe('live delivery', () => {
  test('a webhook arrives live with id = message id and the event type', async () => {
    const s = await openSse(sseUrl(server, ['webhooks.live.>']), { headers: server.auth() });
    try {
      const r = await postWebhook(server, '/webhook/live/myorg/myrepo', { action: 'opened' }, { 'X-GitHub-Event': 'pull_request' });
      assert.equal(r.status, 202);
      const [ev] = await s.waitEvents(1);
      assert.equal(ev.id, r.body.id);
      assert.equal(ev.event, 'pull_request');
      assert.equal(ev.msg.id, r.body.id);
      assert.equal(ev.msg.seq, Number(r.body.id));
      assert.equal(ev.msg.subject, 'webhooks.live.myorg.myrepo');
      assert.equal(ev.msg.webhookPath, '/webhook/live/myorg/myrepo');
      assert.equal(ev.msg.method, 'POST');
      assert.equal(ev.msg.headers['x-github-event'], 'pull_request');
      assert.deepEqual(ev.msg.payload, { action: 'opened' });
    } finally {
      s.close();
    }
  });

  test('a publish arrives live; a publish without event has no event: line', async () => {
    const s = await openSse(sseUrl(server, ['webhooks.pub.>']), { headers: server.auth() });
    try {
      const a = await publish(server, 'webhooks.pub.x', { n: 1 }, 'deploy');
      const b = await publish(server, 'webhooks.pub.y', [1, 2, 3]);
      assert.equal(a.status, 202);
      assert.equal(b.status, 202);
      const [e1, e2] = await s.waitEvents(2);
      assert.equal(e1.id, a.body.id);
      assert.equal(e1.event, 'deploy');
      assert.deepEqual(e1.msg.payload, { n: 1 });
      assert.equal(e2.id, b.body.id);
      assert.equal(e2.event, undefined);
      assert.ok(!e2.lines.some((l) => l.startsWith('event:')));
      assert.deepEqual(e2.msg.payload, [1, 2, 3]);
    } finally {
      s.close();
    }
  });

  test('EventSource: addEventListener(type) gets typed events, onmessage untyped ones, lastEventId = id', async () => {
    const es = new EventSource(sseUrl(server, ['webhooks.es.>']), { fetch: authFetch });
    const pushes = [];
    const plain = [];
    es.addEventListener('push', (e) => pushes.push(e));
    es.onmessage = (e) => plain.push(e);
    try {
      await until(() => es.readyState === EventSource.OPEN, 5000, 'EventSource open');
      const r1 = await postWebhook(server, '/webhook/es/o/r', { ref: 'main' }, { 'X-GitHub-Event': 'push' });
      const r2 = await publish(server, 'webhooks.es.plain', { p: 1 });
      await until(() => pushes.length >= 1 && plain.length >= 1, 5000, 'both events');
      assert.equal(pushes.length, 1);
      assert.equal(plain.length, 1);
      assert.equal(pushes[0].lastEventId, r1.body.id);
      assert.deepEqual(JSON.parse(pushes[0].data).payload, { ref: 'main' });
      assert.equal(plain[0].lastEventId, r2.body.id);
      assert.equal(JSON.parse(plain[0].data).subject, 'webhooks.es.plain');
    } finally {
      es.close();
    }
  });

  test('live-only subjects (rooms.a) arrive without an id line and with id null', async () => {
    const s = await openSse(sseUrl(server, ['rooms.a', 'webhooks.lo.>']), { headers: server.auth() });
    try {
      const r = await publish(server, 'rooms.a', { typing: true }, 'typing');
      assert.equal(r.status, 202);
      assert.equal(r.body.stored, false);
      assert.equal(r.body.id, null);
      const [ev] = await s.waitEvents(1);
      assert.equal(ev.id, undefined);
      assert.ok(!ev.lines.some((l) => l.startsWith('id')), JSON.stringify(ev.lines));
      assert.equal(ev.event, 'typing');
      assert.equal(ev.msg.id, null);
      assert.equal(ev.msg.seq, null);
      assert.equal(ev.msg.subject, 'rooms.a');
      // a stored message after it still carries its id
      const w = await postWebhook(server, '/webhook/lo/x', {});
      const evs = await s.waitEvents(2);
      assert.equal(evs[1].id, w.body.id);
    } finally {
      s.close();
    }
  });

  test('EventSource keeps its last id across a live-only message and resumes from it', async () => {
    // A fetch whose current response can be ended on demand.
    const sent = [];
    let endCurrent = null;
    const cutFetch = async (u, init) => {
      sent.push(init.headers['Last-Event-ID']);
      const res = await fetch(u, withAuth(init));
      const reader = res.body.getReader();
      let ended = false;
      const body = new ReadableStream({
        start(ctrl) { endCurrent = () => { ended = true; reader.cancel().catch(() => {}); ctrl.close(); }; },
        async pull(ctrl) {
          const { done, value } = await reader.read().catch(() => ({ done: true }));
          if (ended) return;
          if (done) ctrl.close(); else ctrl.enqueue(value);
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const es = new EventSource(sseUrl(server, ['webhooks.esl.>', 'rooms.esl']), { fetch: cutFetch });
    const got = [];
    es.onmessage = (e) => got.push(e);
    try {
      await until(() => es.readyState === EventSource.OPEN, 5000, 'EventSource open');
      const w = await postWebhook(server, '/webhook/esl/x', {});
      await until(() => got.length >= 1, 5000, 'the stored message');
      await publish(server, 'rooms.esl', { t: 1 });
      await until(() => got.length >= 2, 5000, 'the live-only message');
      assert.equal(got[0].lastEventId, w.body.id);
      assert.equal(got[1].lastEventId, '');
      assert.equal(JSON.parse(got[1].data).id, null);
      endCurrent();
      const w2 = await postWebhook(server, '/webhook/esl/y', {});
      await until(() => got.length >= 3, 10000, 'the message after the reconnect');
      // the reconnect carried the last stored id, not the live-only message's
      assert.deepEqual(sent, [undefined, w.body.id]);
      assert.equal(got[2].lastEventId, w2.body.id);
      await sleep(100);
      assert.equal(got.length, 3);
    } finally {
      es.close();
    }
  });
});

describe('subject patterns (NATS semantics)', () => {
  // Publishes every subject in `all` (live-only or stored, one kind per
  // call, so order holds) then a sentinel that matches; returns the
  // subjects delivered before the sentinel.
  async function delivered(patterns, all, sentinel) {
    const s = await openSse(sseUrl(server, patterns), { headers: server.auth() });
    try {
      for (const subj of all) {
        const r = await publish(server, subj, { subj });
        assert.equal(r.status, 202, JSON.stringify(r.body));
      }
      const r = await publish(server, sentinel, { sentinel: true });
      assert.equal(r.status, 202);
      await until(() => s.events.some((e) => e.msg.subject === sentinel), 5000, `sentinel ${sentinel}`);
      await sleep(50);
      return s.events.map((e) => e.msg.subject).filter((x) => x !== sentinel);
    } finally {
      s.close();
    }
  }

  test('* matches exactly one token: webhooks.*.myorg.*', async () => {
    const got = await delivered(['webhooks.*.myorg.*'], [
      'webhooks.github.myorg.repo', // yes
      'webhooks.github.other.repo', // no
      'webhooks.gitlab.myorg.r2', // yes
      'webhooks.github.myorg', // no: too short
      'webhooks.github.myorg.repo.extra', // no: too long
      'webhooks.myorg.myorg.x', // yes
    ], 'webhooks.sentinel.myorg.end');
    assert.deepEqual(got, ['webhooks.github.myorg.repo', 'webhooks.gitlab.myorg.r2', 'webhooks.myorg.myorg.x']);
  });

  test('> matches one or more trailing tokens; a.> does not match a', async () => {
    const got = await delivered(['a.>'], ['a', 'a.b', 'a.b.c.d', 'ab.c', 'b.a', 'A.b'], 'a.end');
    assert.deepEqual(got, ['a.b', 'a.b.c.d']);
  });

  test('* in the middle and > at the end combined; literal tokens are case-sensitive', async () => {
    const got = await delivered(['x.*.y.>'], ['x.1.y', 'x.1.y.z', 'x.1.2.y.z', 'x.q.y.z.w', 'X.1.y.z', 'x.1.Y.z'], 'x.s.y.end');
    assert.deepEqual(got, ['x.1.y.z', 'x.q.y.z.w']);
  });

  test('several ?subject= in one stream; a message matching two arrives once', async () => {
    const s = await openSse(sseUrl(server, ['webhooks.multi.a.>', 'webhooks.multi.*.b', 'rooms.multi']), { headers: server.auth() });
    try {
      const r1 = await postWebhook(server, '/webhook/multi/a/x', { n: 1 }); // first only
      const r2 = await postWebhook(server, '/webhook/multi/c/b', { n: 2 }); // second only
      const r3 = await postWebhook(server, '/webhook/multi/a/b', { n: 3 }); // both
      const r4 = await postWebhook(server, '/webhook/multi/c/d', { n: 4 }); // neither
      const r5 = await postWebhook(server, '/webhook/multi/a/b/c', { n: 5 }); // first
      await publish(server, 'rooms.multi', { n: 6 }); // third (live-only)
      await until(() => s.events.some((e) => e.msg.subject === 'rooms.multi'), 5000, 'live-only message');
      await until(() => s.events.some((e) => e.id === r5.body.id), 5000, 'last stored message');
      await sleep(100);
      const stored = s.events.filter((e) => e.id !== undefined);
      assert.deepEqual(ids(stored), [r1.body.id, r2.body.id, r3.body.id, r5.body.id]);
      assert.ok(!s.events.some((e) => e.id === r4.body.id));
      assert.equal(s.events.length, 5);
    } finally {
      s.close();
    }
  });

  test('several patterns on replay: a message matching two is replayed once', async () => {
    const r = await postMany('/webhook/multirep/a/b', 3);
    const s = await openSse(sseUrl(server, ['webhooks.multirep.>', 'webhooks.multirep.a.*', 'webhooks.multirep.*.b'], '&since=0'), { headers: server.auth() });
    try {
      await s.waitEvents(3);
      await sleep(200);
      assert.deepEqual(ids(s.events), r.map((x) => x.id));
    } finally {
      s.close();
    }
  });
});

describe('replay and resume', () => {
  test('?since=0 replays the history in order, then goes live', async () => {
    const hist = await postMany('/webhook/hist/o/r', 5);
    const s = await openSse(sseUrl(server, ['webhooks.hist.>'], '&since=0'), { headers: server.auth() });
    try {
      await s.waitEvents(5);
      assert.deepEqual(ids(s.events), hist.map((h) => h.id));
      const live = await postMany('/webhook/hist/o/r', 2);
      await s.waitEvents(7);
      await sleep(100);
      assert.deepEqual(ids(s.events), [...hist, ...live].map((h) => h.id));
    } finally {
      s.close();
    }
  });

  test('?since=<id> resumes after that id', async () => {
    const hist = await postMany('/webhook/sinceid/o/r', 5);
    const s = await openSse(sseUrl(server, ['webhooks.sinceid.>'], `&since=${hist[2].id}`), { headers: server.auth() });
    try {
      await s.waitEvents(2);
      const live = await postMany('/webhook/sinceid/o/r', 1);
      await s.waitEvents(3);
      await sleep(100);
      assert.deepEqual(ids(s.events), [hist[3].id, hist[4].id, live[0].id]);
    } finally {
      s.close();
    }
  });

  test('?since=<last id> replays nothing and goes live', async () => {
    const hist = await postMany('/webhook/sincelast/o/r', 2);
    const s = await openSse(sseUrl(server, ['webhooks.sincelast.>'], `&since=${hist[1].id}`), { headers: server.auth() });
    try {
      await sleep(200);
      assert.equal(s.events.length, 0);
      const live = await postMany('/webhook/sincelast/o/r', 1);
      await s.waitEvents(1);
      assert.deepEqual(ids(s.events), [live[0].id]);
    } finally {
      s.close();
    }
  });

  test('?since=<RFC 3339 time> replays messages received at or after it', async () => {
    const early = await postMany('/webhook/sincetime/o/r', 2);
    await sleep(30);
    const t = new Date().toISOString();
    await sleep(30);
    const hist = [];
    for (let i = 0; i < 3; i++) {
      hist.push(...await postMany('/webhook/sincetime/o/r', 1));
      await sleep(5);
    }
    // a time given as the exact receivedAt of a message includes it
    const exact = await openSse(sseUrl(server, ['webhooks.sincetime.>'], `&since=${encodeURIComponent(hist[1].receivedAt)}`), { headers: server.auth() });
    const s = await openSse(sseUrl(server, ['webhooks.sincetime.>'], `&since=${encodeURIComponent(t)}`), { headers: server.auth() });
    // an offset form of the same instant
    const off = new Date(Date.parse(t)).toISOString().replace('Z', '+00:00');
    const s2 = await openSse(sseUrl(server, ['webhooks.sincetime.>'], `&since=${encodeURIComponent(off)}`), { headers: server.auth() });
    try {
      await s.waitEvents(3);
      await s2.waitEvents(3);
      await sleep(200);
      assert.deepEqual(ids(s.events), hist.map((h) => h.id));
      assert.deepEqual(ids(s2.events), hist.map((h) => h.id));
      assert.ok(!s.events.some((e) => early.some((x) => x.id === e.id)));
      assert.ok(ids(exact.events).includes(hist[1].id), `exact receivedAt: ${ids(exact.events)}`);
      assert.ok(!ids(exact.events).includes(early[0].id));
      assert.deepEqual(ids(exact.events).slice(-2), [hist[1].id, hist[2].id]);
    } finally {
      s.close();
      s2.close();
      exact.close();
    }
  });

  test('Last-Event-ID wins over ?since', async () => {
    const hist = await postMany('/webhook/lastid/o/r', 5);
    const s = await openSse(sseUrl(server, ['webhooks.lastid.>'], '&since=0'),
      { headers: { ...server.auth(), 'Last-Event-ID': hist[3].id } });
    try {
      await s.waitEvents(1);
      await sleep(200);
      assert.deepEqual(ids(s.events), [hist[4].id]);
    } finally {
      s.close();
    }
  });

  test('EventSource reconnects with Last-Event-ID after the stream ends', async () => {
    // A fetch that ends the first response after its first event.
    let connects = 0;
    const sent = [];
    const cutFetch = async (url, init) => {
      connects++;
      sent.push(init.headers['Last-Event-ID']);
      const res = await fetch(url, withAuth(init));
      if (connects > 1) return res;
      const reader = res.body.getReader();
      const body = new ReadableStream({
        async pull(ctrl) {
          const { done, value } = await reader.read();
          if (done) return ctrl.close();
          ctrl.enqueue(value);
          if (new TextDecoder().decode(value).includes('\nid: ') || new TextDecoder().decode(value).startsWith('id: ')) {
            reader.cancel().catch(() => {});
            ctrl.close();
          }
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const hist = await postMany('/webhook/esre/o/r', 1);
    const got = [];
    const es = new EventSource(sseUrl(server, ['webhooks.esre.>'], '&since=0'), { fetch: cutFetch });
    es.onmessage = (e) => got.push(e.lastEventId);
    try {
      await until(() => got.length >= 1, 5000, 'the first event');
      const more = await postMany('/webhook/esre/o/r', 2);
      await until(() => got.length >= 3, 10000, 'events after the reconnect');
      await sleep(100);
      assert.equal(connects, 2);
      assert.deepEqual(sent, [undefined, hist[0].id]);
      assert.deepEqual(got, [hist[0].id, more[0].id, more[1].id]);
    } finally {
      es.close();
    }
  });
});

describe('resume under continuous publishing, across loops', () => {
  test('every id exactly once, in order, through repeated disconnects (EventSource and manual)', { timeout: 90000 }, async (t) => {
    const PATH = '/webhook/resume/org/repo';
    const MIN_MESSAGES = 2000;
    const MAX_MESSAGES = 8000;
    const CYCLES = 4; // disconnects per consumer
    const pub = new Publisher(server, { sockets: 8 });
    const published = [];
    let stopPublishing = false;
    let publishError = null;

    // Publisher: 8 connections (spread over the loops by SO_REUSEPORT),
    // keeps going until MIN_MESSAGES are in and both consumers have done
    // their reconnects, so every reconnect happens while publishing.
    let n = 0;
    const publisher = (async () => {
      const worker = async () => {
        while (!stopPublishing && n < MAX_MESSAGES) {
          const i = n++;
          const r = await pub.webhook(PATH, { i }, { 'X-GitHub-Event': 'push' });
          if (r.status !== 202) throw new Error(`publish ${i}: ${r.status} ${r.text}`);
          published.push(r.json.id);
          await sleep(15); // paced: publishing spans every reconnect

        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
    })().catch((e) => { publishError = e; });

    // Consumer A: EventSource with its native reconnect. A fetch wrapper
    // ends the response after a number of events; EventSource then
    // reconnects on its own (retry: 2000) with Last-Event-ID.
    const a = { got: [], connects: 0, sentIds: [], lastSeen: [], publishedAt: [], cutAfter: 0 };
    const aFetch = async (url, init) => {
      a.connects++;
      a.sentIds.push(init.headers['Last-Event-ID']);
      a.lastSeen.push(a.got.length ? a.got[a.got.length - 1] : undefined);
      a.publishedAt.push(published.length);
      a.cutAfter = a.connects <= CYCLES ? a.got.length + 150 + Math.floor(Math.random() * 200) : Infinity;
      const res = await fetch(url, withAuth(init));
      const reader = res.body.getReader();
      const body = new ReadableStream({
        async pull(ctrl) {
          if (a.got.length >= a.cutAfter) {
            reader.cancel().catch(() => {});
            ctrl.close();
            return;
          }
          const { done, value } = await reader.read();
          if (done) ctrl.close(); else ctrl.enqueue(value);
        },
        cancel(reason) { return reader.cancel(reason); },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const es = new EventSource(sseUrl(server, ['webhooks.resume.>'], '&since=0'), { fetch: aFetch });
    es.addEventListener('push', (e) => a.got.push(e.lastEventId));

    // Consumer B: manual reconnects with the Last-Event-ID header on a new
    // connection each time (and ?since=0 in the URL, which must lose).
    const b = { got: [], connects: 0 };
    const consumerB = (async () => {
      for (let cycle = 0; cycle <= CYCLES; cycle++) {
        const last = b.got[b.got.length - 1];
        const target = cycle < CYCLES ? b.got.length + 100 + Math.floor(Math.random() * 250) : Infinity;
        b.connects++;
        const s = await openSse(sseUrl(server, ['webhooks.resume.>'], '&since=0'),
          { headers: { ...server.auth(), ...(last ? { 'Last-Event-ID': last } : {}) }, onEvent: (ev, st) => { if (!st.dropped) b.got.push(ev.id); } });
        assert.equal(s.status, 200);
        if (target === Infinity) return s;
        await until(() => b.got.length >= target || s.ended, 30000, 'consumer B progress');
        s.dropped = true; // whole events parsed so far count; nothing after
        s.close();
        await sleep(Math.floor(Math.random() * 50));
      }
      return null;
    })();

    let bStream = null;
    try {
      bStream = await consumerB;
      await until(() => a.connects > CYCLES || publishError, 60000, 'consumer A reconnects');
      stopPublishing = true;
      await publisher;
      if (publishError) throw publishError;
      assert.ok(published.length >= MIN_MESSAGES || n >= MAX_MESSAGES, `published ${published.length}`);
      // top up to at least MIN_MESSAGES (all consumers are live now)
      while (published.length < MIN_MESSAGES) {
        const r = await pub.webhook(PATH, { i: published.length }, { 'X-GitHub-Event': 'push' });
        assert.equal(r.status, 202);
        published.push(r.json.id);
      }
      const expected = [...published].sort((x, y) => Number(x) - Number(y));
      await until(() => a.got.length >= expected.length && b.got.length >= expected.length, 30000,
        `all ${expected.length} messages (A ${a.got.length}, B ${b.got.length})`);
      await sleep(300);
      t.diagnostic(`published ${expected.length}; EventSource resumed from ${a.sentIds.slice(1)} while ${a.publishedAt.slice(1)} were published; manual consumer connects ${b.connects}`);
      assert.equal(b.connects, CYCLES + 1);
      assert.equal(a.connects, CYCLES + 1);
      // EventSource sent the last id it had seen on every reconnect
      assert.deepEqual(a.sentIds.slice(1), a.lastSeen.slice(1));
      assert.ok(a.sentIds.slice(1).every((x) => x !== undefined));
      for (const [name, got] of [['EventSource', a.got], ['manual', b.got]]) {
        const dup = got.filter((x, i) => got.indexOf(x) !== i);
        assert.deepEqual(dup, [], `${name}: duplicates`);
        assert.equal(got.length, expected.length, `${name}: count`);
        assert.deepEqual(got, expected, `${name}: every id once, in order`);
      }
    } finally {
      stopPublishing = true;
      await publisher;
      es.close();
      if (bStream) bStream.close();
      pub.close();
    }
  });

  test('many subscribers on many connections each get every message once (publishers on other connections)', { timeout: 60000 }, async () => {
    const subs = [];
    try {
      for (let i = 0; i < 24; i++) subs.push(await openSse(sseUrl(server, ['webhooks.loops.>']), { headers: server.auth() }));
      const pub = new Publisher(server, { sockets: 12 });
      const res = await pool(300, 12, (i) => pub.webhook(`/webhook/loops/o/r${i % 3}`, { i }));
      pub.close();
      assert.ok(res.every((r) => r.status === 202));
      const expected = res.map((r) => r.json.id).sort((x, y) => Number(x) - Number(y));
      await until(() => subs.every((s) => s.events.length >= expected.length), 30000, 'every subscriber');
      await sleep(200);
      for (const s of subs) assert.deepEqual(ids(s.events), expected);
    } finally {
      for (const s of subs) s.close();
    }
  });
});

describe('heartbeat', () => {
  test('comment lines arrive every SWITCHBOARD_HEARTBEAT_MS on a quiet stream', async () => {
    const c = await rawConnect(server.port);
    try {
      c.sock.write('GET /api/v1/stream?subject=webhooks.quiet.%3E HTTP/1.1\r\nHost: x\r\n' +
        `Authorization: Bearer ${server.adminKey}\r\n\r\n`);
      const head = await until(() => parseHead(c.data), 5000, 'response head');
      assert.equal(head.status, 200);
      const blocks = [];
      const p = new SseParser((b) => blocks.push(b));
      let fed = head.headLen;
      await until(() => {
        p.feed(c.data.subarray(fed).toString());
        fed = c.data.length;
        return blocks.filter((b) => b.comments.length && b.data === undefined).length >= 3;
      }, 8000, 'three comment blocks (connected + 2 heartbeats)');
      assert.deepEqual(blocks[0].lines, ['retry: 2000', ': connected']);
      const hb = blocks.slice(1);
      assert.ok(hb.length >= 2);
      for (const b of hb) {
        assert.deepEqual(b.lines, [':']);
        assert.equal(b.data, undefined);
      }
    } finally {
      c.sock.destroy();
    }
  });
});

describe('errors', () => {
  async function expect400(query, code, headers = {}) {
    const res = await fetch(`${server.url}/api/v1/stream${query}`, { headers: { ...server.auth(), ...headers } });
    assert.equal(res.status, 400, `${query}`);
    assert.match(res.headers.get('content-type'), /application\/json/);
    const body = await res.json();
    assert.equal(body.error.code, code, `${query}: ${JSON.stringify(body)}`);
    assert.equal(typeof body.error.message, 'string');
  }

  async function stillServes() {
    const s = await openSse(sseUrl(server, ['webhooks.after.>']), { headers: server.auth() });
    try {
      assert.equal(s.status, 200);
      const r = await postWebhook(server, '/webhook/after/x', {});
      const [ev] = await s.waitEvents(1);
      assert.equal(ev.id, r.body.id);
    } finally {
      s.close();
    }
  }

  test('invalid subjects -> 400 invalid_subject', async () => {
    for (const q of ['', '?', '?subject=', '?subject=a..b', '?subject=.a', '?subject=a.', '?subject=a.%3E.b',
      '?subject=a*', '?subject=a.b*', '?subject=%3E%3E', '?subject=a%20b', '?subject=a/b',
      `?subject=${'x'.repeat(129)}`, `?subject=${Array(17).fill('t').join('.')}`,
      '?subject=webhooks.ok&subject=bad..one', '?other=webhooks.x']) {
      await expect400(q, 'invalid_subject');
    }
    await stillServes();
  });

  test(`more than SWITCHBOARD_MAX_SUBSCRIPTIONS (${MAX_SUBS}) subjects -> 400 too_many_subjects; exactly the limit works`, async () => {
    const pats = Array.from({ length: MAX_SUBS + 1 }, (_, i) => `webhooks.many${i}.>`);
    const res = await fetch(sseUrl(server, pats), { headers: server.auth() });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.code, 'too_many_subjects');
    const ok = await openSse(sseUrl(server, pats.slice(0, MAX_SUBS)), { headers: server.auth() });
    try {
      assert.equal(ok.status, 200);
      const r = await postWebhook(server, `/webhook/many${MAX_SUBS - 1}/x`, {});
      const [ev] = await ok.waitEvents(1);
      assert.equal(ev.id, r.body.id);
    } finally {
      ok.close();
    }
    await stillServes();
  });

  test('bad since / Last-Event-ID -> 400 invalid_since', async () => {
    const base = '?subject=webhooks.x.%3E';
    for (const v of ['abc', '-1', '1.5', '12abc', '2024-13-45T00:00:00Z', '2024-01-01', 'yesterday',
      '99999999999999999999999', '']) {
      if (v === '') continue;
      await expect400(`${base}&since=${encodeURIComponent(v)}`, 'invalid_since');
    }
    await expect400(base, 'invalid_since', { 'Last-Event-ID': 'not-an-id' });
    // Last-Event-ID wins, so a bad one fails even with a good ?since
    await expect400(`${base}&since=0`, 'invalid_since', { 'Last-Event-ID': 'x1' });
    await stillServes();
  });

  test('wrong method -> 405 with Allow: GET', async () => {
    // the router answers before authentication: no credential needed
    const res = await fetch(sseUrl(server, ['webhooks.x']), { method: 'POST', body: '{}' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET');
    assert.equal((await res.json()).error.code, 'method_not_allowed');
    await stillServes();
  });
});
