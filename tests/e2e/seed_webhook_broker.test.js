// Seed document 001 ("Webhook Broker"), its API section followed step by
// step as a client written against that document would: sign in with
// GitHub in a browser (against the fake GitHub of lib/fake_github.js), send
// the webhook with the document's curl command verbatim, pull with
// `?limit=10` and a Bearer token, ack two ids, read the stats. The curl
// commands are run with the real curl, exactly as printed in the seed
// (only the host differs). Run twice: the "github" source declared
// `"verify": "none"` in a config file (the seed's development setup), and
// GITHUB_WEBHOOK_SECRET set (the seed's production setup) with the webhooks
// signed by @octokit/webhooks as GitHub signs them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Webhooks } from '@octokit/webhooks';
import { Server, sleep } from './lib/server.js';
import { fakeGithub, ghEnv, repo } from './lib/fake_github.js';

const GH_TOKEN = 'gho_seedFAKEaccess000000000000001';
const WEBHOOK_SECRET = 'seed-webhook-secret-0123456789';
const ACK_WAIT_MS = 1000;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
// The seed's webhook body, byte for byte.
const SEED_BODY = '{"event": "push", "ref": "refs/heads/main"}';

let gh;
let cfgDir;

before(async () => {
  gh = await fakeGithub();
  // The seed's user: GitHub id 12345, "myusername", "user@example.com";
  // can read myorg/myrepo and myorg/another-repo, not myorg/private-repo.
  gh.account('code-seed', GH_TOKEN, { id: 12345, login: 'myusername', email: 'user@example.com' },
    [repo('myorg/myrepo'), repo('myorg/another-repo'), repo('myorg/private-repo', false)]);
  gh.authorizeCode = 'code-seed';
  cfgDir = mkdtempSync(join(tmpdir(), 'sb-seed-'));
});

after(async () => {
  if (gh) await gh.close();
  if (cfgDir) rmSync(cfgDir, { recursive: true, force: true });
});

// curl with the seed's arguments; resolves to {status, json, text}.
function curl(args) {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args],
      { timeout: 15000 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`curl failed: ${err.message} ${stderr}`));
        const nl = stdout.lastIndexOf('\n');
        const text = stdout.slice(0, nl);
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: Number(stdout.slice(nl + 1)), json, text });
      });
  });
}

// "open http://localhost:3000/api/v1/auth/github" in a browser: follow the
// redirects by hand (manual, so the cookie can be carried as a browser
// would) through GitHub's authorize page back to the callback.
async function browserLogin(server) {
  const r1 = await fetch(`${server.url}/api/v1/auth/github`, { redirect: 'manual' });
  await r1.text();
  assert.equal(r1.status, 302);
  const setCookie = r1.headers.get('set-cookie') || '';
  assert.match(setCookie, /^sb_oauth=[^;]+;.*Path=\/api\/v1\/auth\/github/);
  const cookie = setCookie.split(';')[0];
  const toGithub = new URL(r1.headers.get('location'));
  assert.equal(toGithub.origin + toGithub.pathname, `${gh.url}/login/oauth/authorize`);
  const r2 = await fetch(toGithub, { redirect: 'manual' });
  await r2.text();
  assert.equal(r2.status, 302);
  const back = new URL(r2.headers.get('location'));
  assert.equal(back.origin + back.pathname, `${server.url}/api/v1/auth/github/callback`);
  // the cookie's Path covers the callback: the browser sends it
  const r3 = await fetch(back, { headers: { cookie }, redirect: 'manual' });
  const text = await r3.text();
  assert.equal(r3.status, 200, text);
  assert.match(r3.headers.get('content-type') || '', /^application\/json/);
  return JSON.parse(text);
}

// The seed's steps 1-5 against a running server. post(path, body) sends a
// webhook the way the configured source expects. seedCurlAccepted: the
// seed's own unsigned curl must be accepted (else, with a signing secret
// set, it must be refused, not stored, and the signed `post` is used).
// firstLimit < 3: pull a first page of that size before ?limit=10.
// event: the messages' expected event type.
async function seedFlow(server, { post, seedCurlAccepted, firstLimit, event }) {
  // 1. Authentication: the JSON of the seed.
  const login = await browserLogin(server);
  assert.deepEqual(Object.keys(login).sort(), ['token', 'user']);
  assert.match(login.token, /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/);
  assert.deepEqual(login.user, { id: 1, githubId: '12345', username: 'myusername', email: 'user@example.com' });
  const auth = `Authorization: Bearer ${login.token}`;

  // 2. The webhook: the seed's curl verbatim.
  const seedCurl = await curl(['-X', 'POST', `${server.url}/webhook/github/myorg/myrepo`,
    '-H', 'Content-Type: application/json',
    '-d', SEED_BODY]);
  let a;
  if (seedCurlAccepted) {
    a = seedCurl;
  } else {
    // GITHUB_WEBHOOK_SECRET is set: an unsigned request is refused, not stored
    assert.equal(seedCurl.status, 401, seedCurl.text);
    assert.equal(seedCurl.json.error.code, 'invalid_signature');
    assert.equal(seedCurl.json.error.message, 'signature header missing');
    a = await post('/webhook/github/myorg/myrepo', SEED_BODY);
  }
  assert.equal(a.status, 202, a.text);
  assert.equal(a.json.status, 'accepted');
  assert.equal(a.json.webhookPath, '/webhook/github/myorg/myrepo');
  assert.equal(a.json.source, 'github');
  assert.match(a.json.receivedAt, ISO_MS);
  assert.ok(Math.abs(Date.parse(a.json.receivedAt) - Date.now()) < 60000, a.json.receivedAt);

  // another readable repository; two the user cannot read (not pullable,
  // not on the list at all); the first repository again
  const b = await post('/webhook/github/myorg/another-repo', '{"event": "push", "ref": "refs/heads/dev"}');
  const hidden1 = await post('/webhook/github/myorg/private-repo', '{"event": "push", "ref": "refs/heads/main"}');
  const hidden2 = await post('/webhook/github/otherorg/elsewhere', '{"event": "push", "ref": "refs/heads/main"}');
  const c = await post('/webhook/github/myorg/myrepo', '{"event": "push", "ref": "refs/heads/feature"}');
  for (const w of [b, hidden1, hidden2, c]) {
    assert.equal(w.status, 202, w.text);
    assert.equal(w.json.status, 'accepted');
  }
  assert.equal(b.json.webhookPath, '/webhook/github/myorg/another-repo');

  // 3. Pull: the seed's GET with limit (10, or a smaller first page)
  const pull = (limit) => curl(['-X', 'GET', `${server.url}/api/v1/messages?limit=${limit}`, '-H', auth]);
  const expected = [
    { w: a, path: '/webhook/github/myorg/myrepo', payload: { event: 'push', ref: 'refs/heads/main' } },
    { w: b, path: '/webhook/github/myorg/another-repo', payload: { event: 'push', ref: 'refs/heads/dev' } },
    { w: c, path: '/webhook/github/myorg/myrepo', payload: { event: 'push', ref: 'refs/heads/feature' } },
  ];
  const pages = [];
  if (firstLimit < expected.length) {
    const p1 = await pull(firstLimit);
    assert.equal(p1.status, 200, p1.text);
    assert.equal(p1.json.messages.length, firstLimit);
    assert.equal(p1.json.hasMore, true);
    assert.equal(p1.json.nextCursor, p1.json.messages.at(-1).id);
    pages.push(p1.json);
  }
  const p = await pull(10);
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.hasMore, false);
  assert.equal(p.json.nextCursor, p.json.messages.at(-1).id);
  pages.push(p.json);
  const msgs = pages.flatMap((pg) => pg.messages);
  // exactly the readable repositories' messages, oldest first
  assert.deepEqual(msgs.map((m) => m.id), expected.map((e) => e.w.json.id));
  for (const [i, m] of msgs.entries()) {
    const e = expected[i];
    for (const f of ['id', 'webhookPath', 'source', 'method', 'headers', 'payload', 'receivedAt']) {
      assert.ok(Object.hasOwn(m, f), `message field ${f} missing`);
    }
    assert.match(m.id, /^\d+$/);
    assert.equal(m.webhookPath, e.path);
    assert.equal(m.source, 'github');
    assert.equal(m.method, 'POST');
    assert.equal(typeof m.headers, 'object');
    assert.equal(m.headers['content-type'], 'application/json');
    assert.deepEqual(m.payload, e.payload);
    assert.equal(m.receivedAt, e.w.json.receivedAt);
    assert.equal(m.deliveries, 1);
    assert.equal(m.event, event);       // from X-GitHub-Event only
  }
  assert.ok(!msgs.some((m) => /private-repo|otherorg/.test(m.webhookPath)));

  // 4. ACK two ids, as strings like the seed's
  const ack = (ids) => curl(['-X', 'POST', `${server.url}/api/v1/messages/ack`, '-H', auth,
    '-H', 'Content-Type: application/json', '-d', JSON.stringify({ messageIds: ids })]);
  const two = [msgs[0].id, msgs[1].id];
  const k = await ack(two);
  assert.equal(k.status, 200, k.text);
  assert.equal(k.json.acknowledged, 2);
  assert.deepEqual(k.json.messageIds, two);
  assert.deepEqual(k.json.unknown, []);

  // 5. Stats: three delivered, two acked, one pending
  const stats = async () => {
    const s = await curl(['-X', 'GET', `${server.url}/api/v1/messages/stats`, '-H', auth]);
    assert.equal(s.status, 200, s.text);
    return s.json;
  };
  let st = await stats();
  assert.equal(st.consumerName, 'user_1');
  assert.deepEqual([...st.filterSubjects].sort(),
    ['webhooks.github.myorg.another-repo', 'webhooks.github.myorg.myrepo']);
  assert.deepEqual({ pending: st.pending, delivered: st.delivered, ackFloor: st.ackFloor, redelivered: st.redelivered },
    { pending: 1, delivered: 3, ackFloor: 2, redelivered: 0 });

  // the unacked message comes back after the ack wait: one redelivery
  await sleep(ACK_WAIT_MS + 300);
  const again = await pull(10);
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(again.json.messages.map((m) => [m.id, m.deliveries]), [[msgs[2].id, 2]]);
  assert.equal(again.json.hasMore, false);
  st = await stats();
  assert.deepEqual({ pending: st.pending, delivered: st.delivered, ackFloor: st.ackFloor, redelivered: st.redelivered },
    { pending: 1, delivered: 3, ackFloor: 2, redelivered: 1 });
  // acking an id twice: not counted again
  const k2 = await ack([msgs[2].id, msgs[0].id]);
  assert.equal(k2.status, 200, k2.text);
  assert.equal(k2.json.acknowledged, 1);
  assert.deepEqual(k2.json.messageIds, [msgs[2].id]);
  assert.deepEqual(k2.json.unknown, [msgs[0].id]);
  st = await stats();
  assert.equal(st.consumerName, 'user_1');
  assert.deepEqual({ pending: st.pending, delivered: st.delivered, ackFloor: st.ackFloor, redelivered: st.redelivered },
    { pending: 0, delivered: 3, ackFloor: 3, redelivered: 1 });
  // nothing more to pull
  const empty = await pull(10);
  assert.equal(empty.status, 200, empty.text);
  assert.deepEqual(empty.json.messages, []);
  assert.equal(empty.json.hasMore, false);
  // without the token: 401 (the seed's "Authorization: Bearer" is needed)
  const anon = await curl(['-X', 'GET', `${server.url}/api/v1/messages?limit=10`]);
  assert.equal(anon.status, 401, anon.text);
}

test('seed API section, "github" source with "verify": "none" (config file)', async () => {
  const cfg = join(cfgDir, 'none.json');
  writeFileSync(cfg, JSON.stringify({ sources: { github: { verify: 'none' } } }));
  const server = await new Server({
    env: ghEnv(gh), args: ['--config', cfg, '--pull-ack-wait-ms', String(ACK_WAIT_MS)],
  }).start();
  try {
    const post = (path, body) => curl(['-X', 'POST', `${server.url}${path}`,
      '-H', 'Content-Type: application/json', '-d', body]);
    await seedFlow(server, { post, seedCurlAccepted: true, firstLimit: 10, event: null });
  } finally {
    await server.stop();
  }
});

test('seed API section, GITHUB_WEBHOOK_SECRET set: webhooks signed as GitHub signs them', async () => {
  const server = await new Server({
    env: { ...ghEnv(gh), GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET },
    args: ['--pull-ack-wait-ms', String(ACK_WAIT_MS)],
  }).start();
  const webhooks = new Webhooks({ secret: WEBHOOK_SECRET });
  try {
    const post = async (path, body) => curl(['-X', 'POST', `${server.url}${path}`,
      '-H', 'Content-Type: application/json',
      '-H', 'X-GitHub-Event: push',
      '-H', `X-GitHub-Delivery: ${randomUUID()}`,
      '-H', `X-Hub-Signature-256: ${await webhooks.sign(body)}`,
      '-d', body]);
    // a wrong secret is refused and the server keeps serving
    const bad = await curl(['-X', 'POST', `${server.url}/webhook/github/myorg/myrepo`,
      '-H', 'Content-Type: application/json',
      '-H', `X-Hub-Signature-256: ${await new Webhooks({ secret: 'not-the-secret' }).sign(SEED_BODY)}`,
      '-d', SEED_BODY]);
    assert.equal(bad.status, 401, bad.text);
    assert.equal(bad.json.error.code, 'invalid_signature');
    assert.equal(bad.json.error.message, 'signature mismatch');
    await seedFlow(server, { post, seedCurlAccepted: false, firstLimit: 2, event: 'push' });
  } finally {
    await server.stop();
  }
});
