// Webhook signatures per source (config "sources", GITHUB_WEBHOOK_SECRET /
// KAKAO_SIGNATURE_SECRET): signatures minted by the providers' own
// libraries (@octokit/webhooks, standardwebhooks) are accepted and stored;
// every kind of bad signature is 401, counted by result, logged without
// the secret, and not stored; Standard Webhooks replays are refused while
// a sender's retry (same id, new timestamp) is stored once; sources without
// a configuration need a credential allowed to publish; bad source
// configuration stops start-up (exit 2) without printing the secret.
//
// "Not stored" is checked without waiting for time to pass: after the
// refused requests, one good request goes to the same subject, and the
// subject's history (read from the start over SSE) must hold only it.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhooks } from '@octokit/webhooks';
import { Webhook } from 'standardwebhooks';
import { BIN, Server, waitFor } from './lib/server.js';
import { readEvents } from './lib/readback.js';

const GH_SECRET = 'gh-s3cret-for-e2e';
const KAKAO_SECRET = 'kakao-s3cret-for-e2e';
const ACME_SECRET = 'acme-s3cret-for-e2e';
const WHSEC = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const WHSEC_OTHER = 'whsec_aGVsbG8gd29ybGQsIHRoaXMgaXMgYSBrZXk=';
const TENANT_SECRET = 'tenant-s3cret-for-e2e';
const SECRETS = [GH_SECRET, KAKAO_SECRET, ACME_SECRET, WHSEC.slice(6), TENANT_SECRET];

function tempConfig(doc) {
  const dir = mkdtempSync(join(tmpdir(), 'sb-sigcfg-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(doc));
  return { dir, file };
}

function adminKey(s) {
  return s.adminKey ?? readFileSync(join(s.dataDir, 'admin.key'), 'utf8').trim();
}

async function post(s, path, body, headers = {}, method = 'POST') {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

function assertAccepted(r, subject) {
  assert.equal(r.status, 202, r.text);
  assert.equal(r.body.status, 'accepted');
  assert.match(r.body.id, /^[1-9][0-9]*$/);
  assert.equal(r.body.subject, subject);
}

function assertRefused(r, status, code, message) {
  assert.equal(r.status, status, r.text);
  assert.deepEqual(Object.keys(r.body), ['error']);
  assert.equal(r.body.error.code, code);
  if (message !== undefined) assert.equal(r.body.error.message, message);
}

// Every stored event of `subject` (a pattern) from the start, read over SSE
// with `key`, until `until(events)` holds (bounded by timeout).
async function readStored(s, subject, until, { key = adminKey(s), timeout = 10000 } = {}) {
  const evs = await readEvents(s, { subject, key, timeout, until: (e) => until(e.map((x) => x.data)) });
  return evs.map((x) => x.data);
}

// The history of subject holds exactly the message `id` (the last good
// request): nothing refused before it was stored.
async function assertOnlyStored(s, subject, id, opts) {
  const evs = await readStored(s, subject, (e) => e.some((m) => m.id === id), opts);
  assert.deepEqual(evs.map((m) => m.id), [id], 'only the accepted message is stored');
  return evs[0];
}

async function metrics(s) {
  const res = await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${adminKey(s)}` } });
  assert.equal(res.status, 200);
  const values = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    values[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return values;
}

const sigMetric = (m, result) => m[`switchboard_webhook_signatures_total{result="${result}"}`];

async function createKey(s, body) {
  const r = await post(s, '/api/v1/keys', JSON.stringify(body), { authorization: `Bearer ${adminKey(s)}` });
  assert.equal(r.status, 201, r.text);
  assert.equal(typeof r.body.key, 'string');
  return r.body.key;
}

const ghSign = (secret, body) => new Webhooks({ secret }).sign(body);
const hmac = (alg, secret, body, enc) => createHmac(alg, secret).update(body).digest(enc);

// Standard Webhooks headers for (id, time, body) with secret.
function stdHeaders(secret, id, date, body) {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(date.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, date, body),
  };
}

function assertNoSecretIn(s) {
  for (const secret of SECRETS) assert.ok(!s.stderr.includes(secret), 'a secret in the server log');
}

describe('webhook signatures: configured sources', () => {
  let s;
  let cfg;
  before(async () => {
    cfg = tempConfig({
      sources: {
        github: { verify: 'github', secret_env: 'SB_E2E_GH_SECRET' },
        billing: { verify: 'standard', secret: WHSEC },
        acme: {
          verify: 'hmac', secret_env: 'SB_E2E_ACME_SECRET', header: 'X-Acme-Signature',
          algorithm: 'sha1', encoding: 'base64', prefix: 'sha1=',
        },
        open: { verify: 'none' },
        elsewhere: { verify: 'github', secret: TENANT_SECRET, tenant: 'other' },
      },
    });
    s = await new Server({
      args: ['--config', cfg.file],
      env: {
        SB_E2E_GH_SECRET: GH_SECRET, SB_E2E_ACME_SECRET: ACME_SECRET,
        KAKAO_SIGNATURE_SECRET: KAKAO_SECRET, GITHUB_WEBHOOK_SECRET: 'ignored: the file configures github',
      },
    }).start();
  });
  after(async () => {
    assertNoSecretIn(s);
    await s.stop();
    rmSync(cfg.dir, { recursive: true, force: true });
  });

  test('GitHub: a signature from @octokit/webhooks -> 202, stored byte for byte', async () => {
    const body = JSON.stringify({ action: 'opened', number: 7 });
    const r = await post(s, '/webhook/github/acme/app', body, {
      'X-Hub-Signature-256': await ghSign(GH_SECRET, body), 'X-GitHub-Event': 'pull_request',
    });
    assertAccepted(r, 'webhooks.github.acme.app');
    assert.equal(r.body.source, 'github');
    const m = await assertOnlyStored(s, 'webhooks.github.acme.>', r.body.id);
    assert.deepEqual(m.payload, { action: 'opened', number: 7 });
    assert.equal(m.event, 'pull_request');
  });

  test('GitHub: wrong secret, missing header, tampered body, sha1 only, malformed -> 401, not stored, counted', async () => {
    const before = await metrics(s);
    const subject = 'webhooks.github.bad.repo';
    const body = JSON.stringify({ ref: 'refs/heads/main' });
    const good = await ghSign(GH_SECRET, body);
    const cases = [
      [{ 'X-Hub-Signature-256': await ghSign('not-the-secret', body) }, body, 'signature mismatch'],
      [{}, body, 'signature header missing'],
      [{ 'X-Hub-Signature-256': good }, body.replace('main', 'evil'), 'signature mismatch'],
      [{ 'X-Hub-Signature': `sha1=${hmac('sha1', GH_SECRET, body, 'hex')}` }, body, 'signature header missing'],
      [{ 'X-Hub-Signature-256': good.replace('sha256=', 'sha1=') }, body, 'signature malformed'],
      [{ 'X-Hub-Signature-256': 'sha256=zz' }, body, 'signature malformed'],
      [{ 'X-Hub-Signature-256': '' }, body, 'signature header missing'],
    ];
    for (const [headers, sent, message] of cases) {
      const r = await post(s, '/webhook/github/bad/repo', sent, headers);
      assertRefused(r, 401, 'invalid_signature', message);
    }
    // the same request, signed, still works
    const ok = await post(s, '/webhook/github/bad/repo', body, { 'X-Hub-Signature-256': good });
    assertAccepted(ok, subject);
    await assertOnlyStored(s, 'webhooks.github.bad.>', ok.body.id);
    const afterM = await metrics(s);
    assert.equal(sigMetric(afterM, 'mismatch') - sigMetric(before, 'mismatch'), 2);
    assert.equal(sigMetric(afterM, 'missing') - sigMetric(before, 'missing'), 3);
    assert.equal(sigMetric(afterM, 'malformed') - sigMetric(before, 'malformed'), 2);
    assert.equal(sigMetric(afterM, 'ok') - sigMetric(before, 'ok'), 1);
    // logged once per refusal, with source, reason and ip, never the signature
    const lines = await waitFor(() => {
      const l = s.logsMatching('webhook signature refused').filter((e) => e.source === 'github');
      return l.length >= cases.length && l;
    }, { what: 'refusal log lines' });
    assert.equal(lines.length, cases.length);
    for (const l of lines) {
      assert.equal(l.level, 'warn');
      assert.equal(l.ip, '127.0.0.1');
      assert.ok(['signature mismatch', 'signature header missing', 'signature malformed'].includes(l.reason));
    }
    assert.ok(!s.stderr.includes(good.slice(7)), 'a signature in the log');
  });

  test('GitHub: a repeated X-GitHub-Delivery is answered duplicate and stored once', async () => {
    const body = JSON.stringify({ zen: 'Keep it logically awesome.' });
    const headers = {
      'X-Hub-Signature-256': await ghSign(GH_SECRET, body), 'X-GitHub-Delivery': randomUUID(),
      'X-GitHub-Event': 'ping',
    };
    const a = await post(s, '/webhook/github/dup/repo', body, headers);
    assertAccepted(a, 'webhooks.github.dup.repo');
    assert.equal(a.body.duplicate, undefined);
    const b = await post(s, '/webhook/github/dup/repo', body, headers);
    assertAccepted(b, 'webhooks.github.dup.repo');
    assert.equal(b.body.duplicate, true);
    assert.equal(b.body.id, a.body.id);
    await assertOnlyStored(s, 'webhooks.github.dup.>', a.body.id);
  });

  test('a delivery id is scoped to its source: another source may reuse it', async () => {
    const id = randomUUID();
    const body = '{"n":1}';
    const a = await post(s, '/webhook/open/scope', body, { 'X-GitHub-Delivery': id });
    assertAccepted(a, 'webhooks.open.scope');
    const b = await post(s, '/webhook/github/scope', body, {
      'X-GitHub-Delivery': id, 'X-Hub-Signature-256': await ghSign(GH_SECRET, body),
    });
    assertAccepted(b, 'webhooks.github.scope');
    assert.equal(b.body.duplicate, undefined, 'the verified delivery is not swallowed');
    assert.notEqual(b.body.id, a.body.id);
  });

  test('Standard Webhooks: valid -> 202; stale -> 401; exact replay -> 401 replayed; retry -> duplicate, stored once', async () => {
    const before = await metrics(s);
    const body = JSON.stringify({ type: 'invoice.paid', amount: 42 });
    const id = `msg_${randomUUID()}`;
    const first = stdHeaders(WHSEC, id, new Date(Date.now() - 5000), body);
    const a = await post(s, '/webhook/billing/invoices', body, first);
    assertAccepted(a, 'webhooks.billing.invoices');
    assert.equal(a.body.source, 'billing');

    // the same bytes again: a replay
    assertRefused(await post(s, '/webhook/billing/invoices', body, first), 401, 'replayed');
    // older than the 5-minute tolerance, and as far in the future
    for (const when of [Date.now() - 6 * 60 * 1000, Date.now() + 6 * 60 * 1000]) {
      const h = stdHeaders(WHSEC, `msg_${randomUUID()}`, new Date(when), body);
      assertRefused(await post(s, '/webhook/billing/invoices', body, h), 401, 'invalid_signature',
        'timestamp outside tolerance');
    }
    // wrong key, tampered body, missing header, no v1 entry
    const wrong = stdHeaders(WHSEC_OTHER, `msg_${randomUUID()}`, new Date(), body);
    assertRefused(await post(s, '/webhook/billing/invoices', body, wrong), 401, 'invalid_signature',
      'signature mismatch');
    const fresh = stdHeaders(WHSEC, `msg_${randomUUID()}`, new Date(), body);
    assertRefused(await post(s, '/webhook/billing/invoices', body.replace('42', '43'), fresh), 401,
      'invalid_signature', 'signature mismatch');
    assertRefused(await post(s, '/webhook/billing/invoices', body,
      { 'webhook-id': fresh['webhook-id'], 'webhook-timestamp': fresh['webhook-timestamp'] }),
    401, 'invalid_signature', 'signature header missing');
    assertRefused(await post(s, '/webhook/billing/invoices', body,
      { ...fresh, 'webhook-signature': fresh['webhook-signature'].replace('v1,', 'v2,') }),
    401, 'invalid_signature', 'signature malformed');

    // the sender's retry: same id, new timestamp and signature
    const retry = stdHeaders(WHSEC, id, new Date(), body);
    assert.notEqual(retry['webhook-timestamp'], first['webhook-timestamp']);
    const b = await post(s, '/webhook/billing/invoices', body, retry);
    assertAccepted(b, 'webhooks.billing.invoices');
    assert.equal(b.body.duplicate, true);
    assert.equal(b.body.id, a.body.id);
    // ... and a replay of the retry is refused too
    assertRefused(await post(s, '/webhook/billing/invoices', body, retry), 401, 'replayed');

    await assertOnlyStored(s, 'webhooks.billing.>', a.body.id);
    const afterM = await metrics(s);
    assert.equal(sigMetric(afterM, 'replayed') - sigMetric(before, 'replayed'), 2);
    assert.equal(sigMetric(afterM, 'stale') - sigMetric(before, 'stale'), 2);
    assert.equal(sigMetric(afterM, 'mismatch') - sigMetric(before, 'mismatch'), 2);
    assert.equal(sigMetric(afterM, 'ok') - sigMetric(before, 'ok'), 2);
  });

  test('hmac kind: sha1, base64, prefix "sha1=" from X-Acme-Signature', async () => {
    const body = 'plain text, not JSON';
    const sig = `sha1=${hmac('sha1', ACME_SECRET, body, 'base64')}`;
    const bad = [
      [{ 'X-Acme-Signature': hmac('sha1', ACME_SECRET, body, 'base64') }, 'signature malformed'],
      [{ 'X-Acme-Signature': `sha1=${hmac('sha1', ACME_SECRET, body, 'hex')}` }, 'signature malformed'],
      [{ 'X-Acme-Signature': `sha1=${hmac('sha256', ACME_SECRET, body, 'base64')}` }, 'signature malformed'],
      [{ 'X-Acme-Signature': `sha1=${hmac('sha1', 'nope', body, 'base64')}` }, 'signature mismatch'],
      [{ 'X-Hub-Signature-256': sig }, 'signature header missing'],
    ];
    for (const [headers, message] of bad) {
      assertRefused(await post(s, '/webhook/acme/orders', body, { 'content-type': 'text/plain', ...headers }),
        401, 'invalid_signature', message);
    }
    const r = await post(s, '/webhook/acme/orders', body, { 'content-type': 'text/plain', 'x-acme-signature': sig });
    assertAccepted(r, 'webhooks.acme.orders');
    const m = await assertOnlyStored(s, 'webhooks.acme.>', r.body.id);
    assert.equal(m.payload, body);
  });

  test('kakao kind (KAKAO_SIGNATURE_SECRET): hex HMAC-SHA256 in X-Kakao-Signature', async () => {
    const body = JSON.stringify({ userRequest: { utterance: '/status' } });
    assertRefused(await post(s, '/webhook/kakao/skill', body,
      { 'X-Kakao-Signature': hmac('sha256', 'wrong', body, 'hex') }), 401, 'invalid_signature', 'signature mismatch');
    assertRefused(await post(s, '/webhook/kakao/skill', body), 401, 'invalid_signature', 'signature header missing');
    const r = await post(s, '/webhook/kakao/skill', body, { 'X-Kakao-Signature': hmac('sha256', KAKAO_SECRET, body, 'hex') });
    assertAccepted(r, 'webhooks.kakao.skill');
    await assertOnlyStored(s, 'webhooks.kakao.>', r.body.id);
  });

  test('the file\'s github source wins over GITHUB_WEBHOOK_SECRET', async () => {
    const body = '{"x":1}';
    const r = await post(s, '/webhook/github/envwins', body,
      { 'X-Hub-Signature-256': await ghSign('ignored: the file configures github', body) });
    assertRefused(r, 401, 'invalid_signature', 'signature mismatch');
  });

  test('verify none: accepted without signature or credential, for every method', async () => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const r = await post(s, '/webhook/open/any', '{"m":1}', {}, method);
      assertAccepted(r, 'webhooks.open.any');
    }
  });

  test('a source\'s tenant: its messages are stored in that tenant only', async () => {
    const body = '{"t":"other"}';
    const r = await post(s, '/webhook/elsewhere/x', body, { 'X-Hub-Signature-256': await ghSign(TENANT_SECRET, body) });
    assertAccepted(r, 'webhooks.elsewhere.x');
    const otherKey = await createKey(s, { name: 'reader', tenant: 'other', permissions: { subscribe: ['>'], history: ['>'] } });
    await assertOnlyStored(s, 'webhooks.elsewhere.>', r.body.id, { key: otherKey });
    // the default tenant's history of that subject is empty: a sentinel
    // published there is the first thing it holds
    const sentinel = await post(s, '/webhook/open/sentinel', '{}', {});
    assertAccepted(sentinel, 'webhooks.open.sentinel');
    const evs = await readStored(s, '>', (e) => e.some((m) => m.id === sentinel.body.id));
    assert.ok(!evs.some((m) => m.subject === 'webhooks.elsewhere.x'), 'not in the default tenant');
  });

  test('an unconfigured source needs a credential allowed to publish the subject', async () => {
    const body = '{"c":1}';
    const none = await post(s, '/webhook/custom/a', body);
    assertRefused(none, 401, 'unauthorized');
    assert.match(none.headers.get('www-authenticate') || '', /^Bearer/);
    assertRefused(await post(s, '/webhook/custom/a', body, { authorization: 'Bearer sb_nope_nope' }), 401, 'unauthorized');
    // a GitHub signature does not stand in for a credential here
    assertRefused(await post(s, '/webhook/custom/a', body, { 'X-Hub-Signature-256': await ghSign(GH_SECRET, body) }),
      401, 'unauthorized');

    const other = await createKey(s, { name: 'x', permissions: { publish: ['other.>'] } });
    assertRefused(await post(s, '/webhook/custom/a', body, { authorization: `Bearer ${other}` }), 403, 'forbidden');
    const pushOnly = await createKey(s, {
      name: 'push-only', permissions: { publish: ['webhooks.custom.>'], events: ['push'] },
    });
    assertRefused(await post(s, '/webhook/custom/a', body,
      { authorization: `Bearer ${pushOnly}`, 'X-GitHub-Event': 'issues' }), 403, 'forbidden');
    const pushed = await post(s, '/webhook/custom/a', body,
      { authorization: `Bearer ${pushOnly}`, 'X-GitHub-Event': 'push' });
    assertAccepted(pushed, 'webhooks.custom.a');
    const admin = await post(s, '/webhook/custom/a', body, { authorization: `Bearer ${adminKey(s)}` });
    assertAccepted(admin, 'webhooks.custom.a');
    const evs = await readStored(s, 'webhooks.custom.>', (e) => e.some((m) => m.id === admin.body.id));
    assert.deepEqual(evs.map((m) => m.id), [pushed.body.id, admin.body.id]);
  });
});

describe('webhook signatures: GITHUB_WEBHOOK_SECRET alone', () => {
  let s;
  before(async () => { s = await new Server({ env: { GITHUB_WEBHOOK_SECRET: GH_SECRET } }).start(); });
  after(async () => {
    assertNoSecretIn(s);
    await s.stop();
  });

  test('configures source github: signed -> 202, unsigned -> 401; other sources still need a credential', async () => {
    const body = JSON.stringify({ hook_id: 1 });
    assertRefused(await post(s, '/webhook/github/o/r', body), 401, 'invalid_signature', 'signature header missing');
    assertRefused(await post(s, '/webhook/github/o/r', body, { 'X-Hub-Signature-256': await ghSign('x', body) }),
      401, 'invalid_signature', 'signature mismatch');
    // the percent-encoded spelling of the source is the same source
    assertRefused(await post(s, '/webhook/git%68ub/o/r', body), 401, 'invalid_signature');
    const r = await post(s, '/webhook/github/o/r', body, { 'X-Hub-Signature-256': await ghSign(GH_SECRET, body) });
    assertAccepted(r, 'webhooks.github.o.r');
    await assertOnlyStored(s, 'webhooks.github.>', r.body.id);
    assertRefused(await post(s, '/webhook/gitlab/o/r', body), 401, 'unauthorized');
  });
});

// Runs the binary with a config that must be refused; resolves to
// { code, stderr }.
function runRefused(doc, env = {}) {
  const cfg = tempConfig(doc);
  const data = mkdtempSync(join(tmpdir(), 'sb-sigdata-'));
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ['serve', '--port', '0', '--host', '127.0.0.1', '--data-dir', data, '--config', cfg.file], {
      env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    p.stderr.setEncoding('utf8');
    p.stdout.setEncoding('utf8');
    p.stderr.on('data', (c) => { stderr += c; });
    p.stdout.on('data', (c) => { stdout += c; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`still running\n${stderr}`)); }, 15000);
    p.on('close', (code) => {
      clearTimeout(timer);
      rmSync(cfg.dir, { recursive: true, force: true });
      rmSync(data, { recursive: true, force: true });
      resolve({ code, stderr, stdout });
    });
  });
}

describe('webhook signatures: bad source configuration stops start-up', () => {
  const SHORT_WHSEC = 'whsec_c2hvcnRTZWNyZXQ=';     // 11 bytes of key
  const BAD_WHSEC = 'whsec_notBase64ButSecret';
  const cases = [
    ['a whsec secret that is too short', { billing: { verify: 'standard', secret: SHORT_WHSEC } }, {},
      'sources.billing: standard secret must decode to at least 16 bytes'],
    ['a whsec secret that is not base64', { billing: { verify: 'standard', secret: BAD_WHSEC } }, {},
      'sources.billing: standard secret after whsec_ must be base64'],
    ['a standard secret without whsec_', { billing: { verify: 'standard', secret: 'plainS3cretValue' } }, {},
      'sources.billing: standard secret must start with whsec_'],
    ['an unset secret_env', { gh: { verify: 'github', secret_env: 'SB_E2E_UNSET_VAR' } }, {},
      'sources.gh: environment variable SB_E2E_UNSET_VAR (secret_env) is not set or empty'],
    ['an unknown member', { gh: { verify: 'github', secret: 'tYpoS3cret', secrte: 'x' } }, {},
      'sources.gh: unknown member "secrte"'],
    ['secret and secret_env', { gh: { verify: 'github', secret: 'bothS3cret', secret_env: 'HOME' } }, {},
      'sources.gh: give "secret" or "secret_env", not both'],
    ['an unknown kind', { gh: { verify: 'gitlab', secret: 'kindS3cret' } }, {}, 'sources.gh: unknown kind'],
    ['hmac without header', { h: { verify: 'hmac', secret: 'hdrS3cret' } }, {}, 'sources.h: hmac needs option header'],
    ['a bad tenant', { gh: { verify: 'none', tenant: 'a.b' } }, {}, 'sources.gh: tenant must be'],
    ['a name the path cannot reach', { 'a.b': { verify: 'none' } }, {}, 'sources.a.b: a source name is'],
    ['a GITHUB_WEBHOOK_SECRET above 1024 bytes', {}, { GITHUB_WEBHOOK_SECRET: `huge${'s'.repeat(1100)}` },
      'GITHUB_WEBHOOK_SECRET: a secret of 1 to 1024 bytes is required'],
  ];
  for (const [what, sources, env, want] of cases) {
    test(`${what} -> exit 2 with one line, without the secret`, async () => {
      const { code, stderr, stdout } = await runRefused({ sources }, env);
      assert.equal(code, 2, stderr);
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, stderr);
      assert.ok(lines[0].startsWith('switchboard: '), lines[0]);
      assert.ok(lines[0].includes(want), `${lines[0]} lacks ${want}`);
      for (const v of ['c2hvcnRTZWNyZXQ', 'notBase64ButSecret', 'plainS3cretValue', 'tYpoS3cret', 'bothS3cret', 'kindS3cret', 'hdrS3cret', 'huge']) {
        assert.ok(!stderr.includes(v) && !stdout.includes(v), `the secret ${v} was printed`);
      }
    });
  }

  test('a good configuration still starts afterwards', async () => {
    const cfg = tempConfig({ sources: { billing: { verify: 'standard', secret: WHSEC } } });
    const s = await new Server({ args: ['--config', cfg.file] }).start();
    try {
      const body = '{"ok":true}';
      const r = await post(s, '/webhook/billing/x', body, stdHeaders(WHSEC, 'msg_1', new Date(), body));
      assertAccepted(r, 'webhooks.billing.x');
    } finally {
      await s.stop();
      rmSync(cfg.dir, { recursive: true, force: true });
    }
  });
});
