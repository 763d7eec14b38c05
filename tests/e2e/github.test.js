// GitHub login (docs/GITHUB.md) against a fake GitHub: the
// OAuth redirect and its CSRF state cookie, the callback's refusals, user
// creation and update, permission filtering for two users with
// overlapping repositories (SSE live + replay, and the pull API), loss of
// access after the repository TTL, the sealed token (never in the
// database files), no secret in the logs, and "not configured".
// The fake GitHub is in lib/fake_github.js.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createHmac } from 'node:crypto';
import { Server, postWebhook, waitFor, sleep } from './lib/server.js';
import { readEvents } from './lib/readback.js';
import { openSse } from './lib/clients.js';
import { fakeGithub, ghEnv, repo, CLIENT_ID, CLIENT_SECRET, TOKEN_KEY } from './lib/fake_github.js';

// --- helpers -------------------------------------------------------------------

// GET /api/v1/auth/github: {status, location (URL), cookie ("sb_oauth=..."), setCookie}
async function startLogin(server) {
  const res = await fetch(`${server.url}/api/v1/auth/github`, { redirect: 'manual' });
  await res.text();
  const setCookie = res.headers.get('set-cookie') || '';
  const loc = res.headers.get('location');
  return { status: res.status, location: loc ? new URL(loc) : null, setCookie,
    cookie: setCookie.split(';')[0], headers: res.headers };
}

async function callback(server, query, cookie) {
  const res = await fetch(`${server.url}/api/v1/auth/github/callback?${query}`, {
    headers: cookie ? { cookie } : {},
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, headers: res.headers };
}

async function login(server, code) {
  const s = await startLogin(server);
  assert.equal(s.status, 302);
  const state = s.location.searchParams.get('state');
  const r = await callback(server, `code=${encodeURIComponent(code)}&state=${encodeURIComponent(state)}`, s.cookie);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r;
}

// Status of a replaying SSE subscription (since=0) to the subjects.
async function streamStatus(server, token, subjects) {
  const ac = new AbortController();
  const q = subjects.map((s) => `subject=${encodeURIComponent(s)}`).join('&');
  const res = await fetch(`${server.url}/api/v1/stream?${q}&since=0`, {
    headers: { authorization: `Bearer ${token}` }, signal: ac.signal,
  });
  const status = res.status;
  let json = null;
  if (status !== 200) json = await res.json();
  ac.abort();
  return { status, json };
}

// A state as the server builds it: nonce | issued_at (ms, BE) | HMAC-SHA256(
// HMAC-SHA256(token key, "state"), nonce | issued_at), base64url.
function signedState(nonce, issuedMs) {
  const stateKey = createHmac('sha256', Buffer.from(TOKEN_KEY, 'hex')).update('state').digest();
  const body = Buffer.alloc(24);
  nonce.copy(body, 0);
  body.writeBigUInt64BE(BigInt(issuedMs), 16);
  const mac = createHmac('sha256', stateKey).update(body).digest();
  return Buffer.concat([body, mac]).toString('base64url');
}

function assertInvalidState(r) {
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'invalid_state');
}

function dbHas(server, needle) {
  for (const f of ['switchboard.db', 'switchboard.db-wal']) {
    const p = join(server.dataDir, f);
    if (existsSync(p) && readFileSync(p).includes(Buffer.from(needle))) return true;
  }
  return false;
}

const subj = (r) => `webhooks.github.org.${r}`;

// The distinct subjects one pull (GET /api/v1/messages) returns, sorted.
async function pulledSubjects(server, token) {
  const res = await fetch(`${server.url}/api/v1/messages?limit=50`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return [...new Set(JSON.parse(text).messages.map((m) => m.subject))].sort();
}

// --- the main server ---------------------------------------------------------------

let gh;
let server;
const TOKENS = { alice: 'gho_aliceFAKEaccess0000000000001', bob: 'gho_bobFAKEaccess00000000000002' };
const issued = [];

before(async () => {
  gh = await fakeGithub();
  const many = Array.from({ length: 118 }, (_, i) => repo(`other/r${i}`));
  // alice: repoA, repoB (+ one she cannot pull), with no public email
  gh.account('code-alice', TOKENS.alice, { id: 5001, login: 'alice', email: null },
    [repo('org/repoA'), repo('org/repoB'), repo('org/repoC', false)],
    [{ email: 'other@example.com', primary: false, verified: true },
      { email: 'alice@example.com', primary: true, verified: true }]);
  // bob: repoB, repoC and 118 others: 120 repositories over two pages
  gh.account('code-bob', TOKENS.bob, { id: 5002, login: 'bob', email: 'bob@example.com' },
    [repo('org/repoB'), ...many, repo('org/repoC')]);
  server = await new Server({ env: ghEnv(gh) }).start();
});

after(async () => {
  if (server) await server.stop();
  if (gh) await new Promise((r) => gh.server.close(r));
});

test('GET /api/v1/auth/github redirects to GitHub with a state bound to a cookie', async () => {
  const s = await startLogin(server);
  assert.equal(s.status, 302);
  assert.equal(s.location.origin + s.location.pathname, `${gh.url}/login/oauth/authorize`);
  assert.equal(s.location.searchParams.get('client_id'), CLIENT_ID);
  assert.equal(s.location.searchParams.get('redirect_uri'), `${server.url}/api/v1/auth/github/callback`);
  assert.equal(s.location.searchParams.get('scope'), 'read:user user:email repo');
  const state = s.location.searchParams.get('state');
  assert.match(state, /^[A-Za-z0-9_-]{60,}$/);
  assert.match(s.setCookie, /^sb_oauth=[A-Za-z0-9_-]{22};/);
  assert.match(s.setCookie, /HttpOnly/);
  assert.match(s.setCookie, /SameSite=Lax/);
  assert.match(s.setCookie, /Path=\/api\/v1\/auth\/github/);
  assert.match(s.setCookie, /Max-Age=600/);
  assert.doesNotMatch(s.setCookie, /Secure/);      // http redirect URL
  const s2 = await startLogin(server);
  assert.notEqual(s2.location.searchParams.get('state'), state);   // fresh every time
});

test('the callback refuses a state that is not this browser\'s', async () => {
  const a = await startLogin(server);
  const b = await startLogin(server);
  const stateA = a.location.searchParams.get('state');
  const q = (st) => `code=code-alice&state=${encodeURIComponent(st)}`;
  assertInvalidState(await callback(server, q(stateA), null));                 // no cookie
  assertInvalidState(await callback(server, 'code=code-alice', a.cookie));     // no state
  assertInvalidState(await callback(server, q('not-a-state'), a.cookie));      // garbage
  assertInvalidState(await callback(server, q(stateA), b.cookie));             // other browser
  assertInvalidState(await callback(server, q(stateA), 'sb_oauth=AAAAAAAAAAAAAAAAAAAAAA'));
  // issued_at changed: the MAC no longer holds
  const raw = Buffer.from(stateA, 'base64url');
  raw.writeBigUInt64BE(BigInt(Date.now() - 3600 * 1000), 16);
  assertInvalidState(await callback(server, q(raw.toString('base64url')), a.cookie));
  // correctly signed (the test knows the key) but 11 minutes old, or from the future
  const nonce = Buffer.from(a.cookie.split('=')[1], 'base64url');
  assertInvalidState(await callback(server, q(signedState(nonce, Date.now() - 660 * 1000)), a.cookie));
  assertInvalidState(await callback(server, q(signedState(nonce, Date.now() + 600 * 1000)), a.cookie));
  // the same construction, fresh, is accepted below (so the forgery above is faithful)
  const fresh = signedState(nonce, Date.now() - 1000);
  // a good state and cookie but no code
  const nc = await callback(server, `state=${encodeURIComponent(stateA)}`, a.cookie);
  assert.equal(nc.status, 400);
  assert.equal(nc.json.error.code, 'invalid_request');
  assert.equal(gh.requests.filter((r) => r.path === '/login/oauth/access_token').length, 0);
  // the server still serves: a valid state with its own cookie works
  assert.equal((await callback(server, q(fresh), a.cookie)).status, 200);
  const ok = await callback(server, q(stateA), a.cookie);
  assert.equal(ok.status, 200);
});

test('GitHub errors are 502 github_error and leak nothing', async () => {
  const s = await startLogin(server);
  const state = encodeURIComponent(s.location.searchParams.get('state'));
  const bad = await callback(server, `code=no-such-code&state=${state}`, s.cookie);
  assert.equal(bad.status, 502);
  assert.equal(bad.json.error.code, 'github_error');
  gh.tokenStatus = 500;
  try {
    const r = await callback(server, `code=code-alice&state=${state}`, s.cookie);
    assert.equal(r.status, 502);
    assert.equal(r.json.error.code, 'github_error');
    assert.ok(!JSON.stringify(r.json).includes(CLIENT_SECRET));
  } finally {
    gh.tokenStatus = 200;
  }
  const ok = await callback(server, `code=code-alice&state=${state}`, s.cookie);
  assert.equal(ok.status, 200);
});

test('login creates the user and a second login updates it', async () => {
  const r = await login(server, 'code-alice');
  issued.push(r.json.token);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.match(r.headers.get('set-cookie'), /^sb_oauth=;.*Max-Age=0/);
  assert.deepEqual(r.json.user, { id: 1, githubId: '5001', username: 'alice', email: 'alice@example.com' });
  assert.match(r.json.token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const claims = JSON.parse(Buffer.from(r.json.token.split('.')[1], 'base64url'));
  assert.equal(claims.sub, 'user_1');
  assert.equal(claims.tenant, 'default');
  // the token the exchange sent GitHub, and the bearer GitHub saw
  const ex = gh.requests.filter((q) => q.path === '/login/oauth/access_token').at(-1);
  assert.equal(new URLSearchParams(ex.body).get('redirect_uri'), `${server.url}/api/v1/auth/github/callback`);
  assert.equal(gh.requests.filter((q) => q.path === '/user').at(-1).headers.authorization, `Bearer ${TOKENS.alice}`);

  gh.accounts.get(TOKENS.alice).user.login = 'alice-renamed';
  const r2 = await login(server, 'code-alice');
  issued.push(r2.json.token);
  assert.equal(r2.json.user.id, 1);
  assert.equal(r2.json.user.username, 'alice-renamed');
  const rb = await login(server, 'code-bob');
  issued.push(rb.json.token);
  assert.deepEqual(rb.json.user, { id: 2, githubId: '5002', username: 'bob', email: 'bob@example.com' });
  // 120 repositories: two pages of /user/repos were read
  const pages = gh.requests.filter((q) => q.path === '/user/repos' && q.headers.authorization === `Bearer ${TOKENS.bob}`);
  assert.deepEqual(pages.map((p) => new URLSearchParams(p.query).get('page')), ['1', '2']);
});

test('two users with overlapping repositories see exactly their own', async () => {
  const alice = (await login(server, 'code-alice')).json.token;
  const bob = (await login(server, 'code-bob')).json.token;
  issued.push(alice, bob);
  for (const r of ['repoA', 'repoB', 'repoC']) {
    const w = await postWebhook(server, `/webhook/github/org/${r}`, { repo: r });
    assert.equal(w.status, 202, JSON.stringify(w.body));
  }
  const allowed = { alice: ['repoA', 'repoB'], bob: ['repoB', 'repoC'] };
  for (const [who, tok] of [['alice', alice], ['bob', bob]]) {
    for (const r of ['repoA', 'repoB', 'repoC']) {
      const st = await streamStatus(server, tok, [subj(r)]);
      assert.equal(st.status, allowed[who].includes(r) ? 200 : 403, `${who} ${r}`);
      if (st.status === 403) assert.equal(st.json.error.code, 'forbidden');
    }
    assert.equal((await streamStatus(server, tok, ['>'])).status, 403);
    assert.equal((await streamStatus(server, tok, ['webhooks.github.org.*'])).status, 403);
    // replay of both allowed subjects: exactly their messages
    const evs = await readEvents(server, {
      subject: subj(allowed[who][0]), key: tok, since: '0', until: (e) => e.length >= 1, timeout: 5000,
    });
    assert.equal(evs[0].data.subject, subj(allowed[who][0]));
  }
  // publish is not granted
  const pub = await fetch(`${server.url}/api/v1/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice}` },
    body: JSON.stringify({ subject: subj('repoA'), data: {} }),
  });
  assert.equal(pub.status, 403);
  // the pull API: exactly the user's repositories
  assert.deepEqual(await pulledSubjects(server, alice), [subj('repoA'), subj('repoB')]);
});

// bob can read 120 repositories, repoC among the last: his consumer must
// filter on all of them.
test('pull for a user with more than 64 repositories', async () => {
  const bob = (await login(server, 'code-bob')).json.token;
  issued.push(bob);
  assert.deepEqual(await pulledSubjects(server, bob), [subj('repoB'), subj('repoC')]);
});

test('tokens: a forged user token and an unknown user are refused', async () => {
  const alice = issued[0];
  const [h, p, s] = alice.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  claims.sub = 'user_99';
  const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
  assert.equal((await streamStatus(server, forged, [subj('repoA')])).status, 401);
  assert.equal((await streamStatus(server, alice, [subj('repoA')])).status, 200);
});

test('the database never holds the GitHub access token; the logs hold no secret', async () => {
  await sleep(200);
  assert.ok(dbHas(server, 'alice-renamed'), 'the user record is in the database');
  assert.ok(!dbHas(server, TOKENS.alice), 'alice\'s GitHub token is in the database');
  assert.ok(!dbHas(server, TOKENS.bob), 'bob\'s GitHub token is in the database');
  const out = server.stderr + (server.stdout || '');
  for (const secret of [TOKENS.alice, TOKENS.bob, CLIENT_SECRET, TOKEN_KEY, ...issued.map((t) => t.split('.')[2])]) {
    assert.ok(!out.includes(secret), `secret ${secret.slice(0, 8)}... in the server output`);
  }
  assert.ok(server.logsMatching('GitHub login').length >= 3);
});

test('users, their ids and sealed tokens survive a restart', async () => {
  const alice = issued[0];
  await server.stop({ cleanup: false });
  server = await server.restart().start();
  assert.equal((await streamStatus(server, alice, [subj('repoA')])).status, 200);
  assert.equal((await streamStatus(server, alice, [subj('repoC')])).status, 403);
  gh.account('code-carol', 'gho_carolFAKEaccess000000000003', { id: 5003, login: 'carol', email: null }, []);
  const c = await login(server, 'code-carol');
  assert.deepEqual(c.json.user, { id: 3, githubId: '5003', username: 'carol', email: null });
  // no repositories: nothing at all
  assert.equal((await streamStatus(server, c.json.token, [subj('repoA')])).status, 403);
  const again = await login(server, 'code-alice');
  assert.equal(again.json.user.id, 1);
  await sleep(200);
  assert.ok(dbHas(server, 'carol'));
  assert.ok(!dbHas(server, 'gho_carolFAKEaccess000000000003'));
});

test('the login endpoints count against the per-IP rate limit', async () => {
  const s = await new Server({ env: ghEnv(gh), args: ['--auth-ip-rate', '1', '--auth-ip-burst', '2'] }).start();
  try {
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await startLogin(s)).status);
    assert.deepEqual(codes, [302, 302, 429]);
    const cb = await fetch(`${s.url}/api/v1/auth/github/callback?code=x&state=y`);
    assert.equal(cb.status, 429);
    assert.ok(Number(cb.headers.get('retry-after')) >= 1);
    assert.equal((await cb.json()).error.code, 'rate_limited');
    await waitFor(async () => (await startLogin(s)).status === 302,
      { timeout: 5000, interval: 250, what: 'the bucket to refill' });
  } finally {
    await s.stop();
  }
});

// --- loss of access after the TTL -------------------------------------------------------

test('losing access on GitHub removes it here after the TTL', async () => {
  const s = await new Server({ env: ghEnv(gh), args: ['--github-repos-ttl-ms', '1000', '--heartbeat-ms', '1000'] }).start();
  let live = null;
  try {
    const bob = (await login(s, 'code-bob')).json.token;
    const alice = (await login(s, 'code-alice')).json.token;
    assert.equal((await streamStatus(s, bob, [subj('repoC')])).status, 200);
    assert.equal((await streamStatus(s, alice, [subj('repoA')])).status, 200);
    live = await openSse(`${s.url}/api/v1/stream?subject=${subj('repoC')}`,
      { headers: { authorization: `Bearer ${bob}` } });
    assert.equal(live.status, 200);
    assert.equal((await postWebhook(s, '/webhook/github/org/repoA', { n: 1 })).status, 202);
    assert.deepEqual(await pulledSubjects(s, alice), [subj('repoA')]);
    // bob loses repoC; alice's token is revoked on GitHub altogether
    const acct = gh.accounts.get(TOKENS.bob);
    acct.repos = acct.repos.filter((r) => r.full_name !== 'org/repoC');
    gh.accounts.get(TOKENS.alice).revoked = true;
    await sleep(1500);
    // the refresh lands: repoB readable again (fresh list), repoC not
    await waitFor(async () => (await streamStatus(s, bob, [subj('repoB')])).status === 200,
      { timeout: 10000, interval: 200, what: 'bob\'s refreshed repositories' });
    assert.equal((await streamStatus(s, bob, [subj('repoC')])).status, 403);
    // the stream opened before is ended at a heartbeat
    await waitFor(() => live.ended, { timeout: 10000, what: 'the repoC stream to end' });
    await sleep(300);
    assert.equal((await streamStatus(s, alice, [subj('repoA')])).status, 403);
    const pa = await fetch(`${s.url}/api/v1/messages`, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(pa.status, 403);
    assert.ok(s.logsMatching('GitHub permissions refreshed').length >= 1);
    // the server keeps serving
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  } finally {
    if (live) live.close();
    gh.accounts.get(TOKENS.alice).revoked = false;
    await s.stop();
  }
});

test('GitHub login is off without a client id; a client id needs a token key', async () => {
  const s = await new Server().start();
  try {
    const r = await fetch(`${s.url}/api/v1/auth/github`, { redirect: 'manual' });
    assert.equal(r.status, 404);
    const doc = await r.json();
    assert.equal(doc.error.code, 'not_found');
    assert.equal(doc.error.message, 'GitHub login is not configured');
    assert.equal((await fetch(`${s.url}/api/v1/auth/github/callback?code=x&state=y`)).status, 404);
  } finally {
    await s.stop();
  }
  const bad = new Server({ env: { GITHUB_CLIENT_ID: CLIENT_ID, SWITCHBOARD_TOKEN_KEY: 'short' } });
  await assert.rejects(bad.start(), /token_key/);
  bad.cleanup();
});
