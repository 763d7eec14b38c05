// The key management client: `switchboard keys create|list|get|revoke|
// rotate|usage` and `switchboard token`, run as a separate process against
// a running server. Checks what each command prints and that its effect is
// real (a created key publishes, a rotated or revoked key is refused), the
// exit codes (0 done, 1 refused or unreachable, 2 usage), the ways the key
// is found, and that no run ever prints the admin key or trips a
// sanitizer (the ASan binary is the client too, so leaks count).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { Server, BIN, publish } from './lib/server.js';

const SANITIZER = /AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer/;
const KEY_RE = /^sb_([0-9A-Za-z]{12})_[A-Za-z0-9_-]{43}$/;
const CLIENT_ENV = ['SWITCHBOARD_URL', 'SWITCHBOARD_API_KEY', 'SWITCHBOARD_DATA_DIR',
  'SWITCHBOARD_ADMIN_KEY_FILE'];

let s;          // the server every test talks to
let scratch;    // cwd of every run (no ./var/admin.key) and temp files

// Runs the client; resolves to { code, stdout, stderr }. Nothing of the
// caller's environment reaches it except what env says. Every run is
// checked for a sanitizer report and for the admin key in its output.
function cli(args, env = {}) {
  const base = { ...process.env };
  for (const k of CLIENT_ENV) delete base[k];
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { env: { ...base, ...env }, cwd: scratch, timeout: 30000 });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (c) => { stdout += c; });
    p.stderr.on('data', (c) => { stderr += c; });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      try {
        assert.equal(signal, null, `client killed by ${signal}\n${stderr}`);
        assert.doesNotMatch(stderr, SANITIZER, `sanitizer report in client output\n${stderr}`);
        if (s?.adminKey) {
          assert.ok(!stdout.includes(s.adminKey), 'the admin key is on stdout');
          assert.ok(!stderr.includes(s.adminKey), 'the admin key is on stderr');
        }
        resolve({ code, stdout, stderr });
      } catch (e) { reject(e); }
    });
  });
}

// As the admin: the client finds the key file through SWITCHBOARD_DATA_DIR.
const admin = (args) => cli(args, { SWITCHBOARD_URL: s.url, SWITCHBOARD_DATA_DIR: s.dataDir });

// Expects success; returns stdout.
async function ok(p) {
  const r = await p;
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr}`);
  return r;
}

async function createKey(args) {
  const r = await ok(admin(['keys', 'create', ...args]));
  const key = r.stdout.trim();
  assert.equal(r.stdout, `${key}\n`, 'the secret alone on one line');
  const m = KEY_RE.exec(key);
  assert.ok(m, `not a key: ${key}`);
  assert.match(r.stderr, /shown only this once/);
  return { key, id: m[1] };
}

async function api(method, path, key, body) {
  const res = await fetch(`${s.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}

const jwtPayload = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url').toString('utf8'));

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'sb-cli-'));
  s = await new Server().start();
  assert.match(s.adminKey, KEY_RE, 'the harness read the admin key');
});

after(async () => {
  await s.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('keys create, list, get', () => {
  let key;
  let id;

  test('create prints the secret once; the key has exactly the permissions asked', async () => {
    ({ key, id } = await createKey(['--name', 'ci-orders', '--publish', 'orders.>',
      '--publish=audit.cli', '--subscribe', 'orders.>', '--events', 'order.*',
      '--cidr', '127.0.0.0/8', '--cidr=::1', '--rate', '50', '--burst=100',
      '--max-connections', '5', '--expires-in', '1d']));
    assert.equal((await publish(s, 'orders.eu', { n: 1 }, 'order.created', key)).status, 202);
    assert.equal((await publish(s, 'audit.cli', { n: 2 }, 'order.x', key)).status, 202);
    assert.equal((await publish(s, 'billing.eu', { n: 3 }, 'order.created', key)).status, 403);
    assert.equal((await publish(s, 'orders.eu', { n: 4 }, 'refund', key)).status, 403);
    assert.equal(await api('GET', '/api/v1/keys', key), 403, 'no admin permission');
    assert.equal((await publish(s, 'orders.eu', { n: 5 }, 'order.ok')).status, 202, 'still serving');
  });

  test('list: an aligned table with the key and without its secret', async () => {
    const r = await ok(admin(['keys', 'list']));
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^ID +TENANT +NAME +STATUS +CREATED +LAST USED$/);
    const row = lines.find((l) => l.startsWith(`${id} `));
    assert.ok(row, r.stdout);
    assert.match(row, new RegExp(`^${id} +default +ci-orders +active +\\d{4}-\\d\\d-\\d\\dT`));
    for (const col of ['TENANT', 'NAME', 'STATUS', 'CREATED', 'LAST USED'])
      for (const l of lines.slice(1))
        assert.notEqual(l[lines[0].indexOf(col) - 1], undefined, `column ${col} of ${l}`);
    assert.equal(row.indexOf('ci-orders'), lines[0].indexOf('NAME'), 'columns align');
    assert.equal(row.indexOf('active'), lines[0].indexOf('STATUS'), 'columns align');
    assert.ok(lines.some((l) => /^\w{12} +default +bootstrap +active/.test(l)), 'the admin key is listed');
    assert.ok(!r.stdout.includes(key), 'no secret in the list');
    assert.ok(!r.stdout.includes(key.slice(16)), 'no part of the secret in the list');
  });

  test('list --json: the views, no secret, the permissions as created', async () => {
    const r = await ok(admin(['keys', 'list', '--json']));
    assert.ok(!r.stdout.includes(key.slice(16)));
    const view = JSON.parse(r.stdout).keys.find((k) => k.id === id);
    assert.ok(view);
    assert.equal(view.key, undefined);
    assert.equal(view.name, 'ci-orders');
    assert.equal(view.status, 'active');
    assert.equal(view.tenant, 'default');
    assert.deepEqual(view.permissions.publish, ['orders.>', 'audit.cli']);
    assert.deepEqual(view.permissions.subscribe, ['orders.>']);
    assert.deepEqual(view.permissions.events, ['order.*']);
    assert.deepEqual(view.permissions.rate, { per_second: 50, burst: 100 });
    assert.equal(view.permissions.max_connections, 5);
    assert.notEqual(view.permissions.admin, true);
    assert.deepEqual(view.cidrs, ['127.0.0.0/8', '::1/128'], 'normalised by the server');
    const day = Date.parse(view.expires_at) - Date.parse(view.created_at);
    assert.equal(day, 86400 * 1000);
    assert.ok(view.last_used_at, 'the publishes above used it');
  });

  test('list --tenant filters, and the value is percent-encoded', async () => {
    const other = await createKey(['--name', 'acme-bot', '--tenant', 'acme', '--publish', 'x']);
    let r = await ok(admin(['keys', 'list', '--tenant', 'acme']));
    let rows = r.stdout.trimEnd().split('\n').slice(1);
    assert.equal(rows.length, 1, r.stdout);
    assert.match(rows[0], new RegExp(`^${other.id} +acme +acme-bot +active`));
    r = await ok(admin(['keys', 'list', '--tenant=default']));
    rows = r.stdout.trimEnd().split('\n').slice(1);
    assert.ok(rows.some((l) => l.startsWith(id)) && !rows.some((l) => l.startsWith(other.id)));
    // Sent raw, '#' would end the URL and list tenant "default".
    r = await admin(['keys', 'list', '--tenant', 'default#x', '--json']);
    if (r.code === 0) assert.deepEqual(JSON.parse(r.stdout).keys, []);
    else assert.match(r.stderr, /^switchboard: 400 /);
  });

  test('get: readable lines and --json', async () => {
    let r = await ok(admin(['keys', 'get', id]));
    assert.match(r.stdout, new RegExp(`^id +${id}$`, 'm'));
    assert.match(r.stdout, /^name +ci-orders$/m);
    assert.match(r.stdout, /^status +active$/m);
    assert.match(r.stdout, /^publish +orders\.>, audit\.cli$/m);
    assert.match(r.stdout, /^cidrs +127\.0\.0\.0\/8, ::1\/128$/m);
    assert.match(r.stdout, /^revoked +-$/m);
    assert.match(r.stdout, /^rate +per_second=50, burst=100$/m);
    assert.ok(!r.stdout.includes(key.slice(16)));
    r = await ok(admin(['keys', 'get', id, '--json']));
    const v = JSON.parse(r.stdout);
    assert.equal(v.id, id);
    assert.equal(v.key, undefined);
  });

  test('usage lists the uses of the key, newest first', async () => {
    let r = await ok(admin(['keys', 'usage', id]));
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^TIME +IP +ENDPOINT +OUTCOME$/);
    assert.ok(lines.some((l) => /^\S+ +127\.0\.0\.1 +POST \/api\/v1\/publish +\S+$/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /GET \/api\/v1\/keys/.test(l)), r.stdout);
    r = await ok(admin(['keys', 'usage', id, '--json']));
    const u = JSON.parse(r.stdout);
    assert.equal(u.id, id);
    assert.ok(u.usage.length >= 5, `${u.usage.length} entries`);
    const times = u.usage.map((e) => Date.parse(e.time));
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], 'newest first');
    for (const e of u.usage) assert.deepEqual(Object.keys(e).sort(), ['endpoint', 'ip', 'outcome', 'time']);
  });

  test('a key with a CIDR that excludes this client is refused', async () => {
    const far = await createKey(['--name', 'far', '--publish', '>', '--cidr', '203.0.113.0/24']);
    assert.equal((await publish(s, 'orders.eu', {}, undefined, far.key)).status, 401);
    assert.equal((await publish(s, 'orders.eu', {}, 'order.x', key)).status, 202);
  });
});

describe('token', () => {
  test('exchanges a key for a JWT that carries its permissions, and no more', async () => {
    const { key, id } = await createKey(['--name', 'tok', '--publish', 'tok.>']);
    const r = await ok(cli(['token', '--ttl', '5m'], { SWITCHBOARD_URL: s.url, SWITCHBOARD_API_KEY: key }));
    const token = r.stdout.trim();
    assert.equal(r.stdout, `${token}\n`);
    assert.equal(token.split('.').length, 3);
    const claims = jwtPayload(token);
    assert.equal(claims.sub, id);
    assert.equal(claims.exp - claims.iat, 300);
    assert.ok(!r.stdout.includes(key) && !r.stderr.includes(key), 'the key is not printed');
    assert.equal((await publish(s, 'tok.a', { n: 1 }, undefined, token)).status, 202);
    assert.equal((await publish(s, 'other.a', { n: 1 }, undefined, token)).status, 403);
    assert.equal(await api('GET', `/api/v1/keys/${id}`, token), 403, 'the key is not an admin');
  });

  test('--json gives the whole reply; the admin token manages keys', async () => {
    const r = await ok(cli(['token', '--json', `--key-file=${join(s.dataDir, 'admin.key')}`],
      { SWITCHBOARD_URL: s.url }));
    const j = JSON.parse(r.stdout);
    assert.equal(j.token_type, 'Bearer');
    assert.ok(Number.isInteger(j.expires_in) && j.expires_in > 0);
    assert.equal(typeof j.jti, 'string');
    assert.equal(j.token.split('.').length, 3);
    assert.equal(await api('GET', '/api/v1/keys', j.token), 200);
  });

  test('a refused key: exit 1 with the status; flags of other commands: exit 2', async () => {
    let r = await cli(['token'], { SWITCHBOARD_URL: s.url, SWITCHBOARD_API_KEY: 'sb_nope' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: 401 unauthorized: /);
    assert.ok(!r.stderr.includes('sb_nope'));
    r = await cli(['token', '--grace', '1'], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--grace does not apply to "token"/);
    r = await cli(['token', '--ttl', '5w'], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
  });
});

describe('rotate and revoke', () => {
  test('rotate: the old secret works within the grace; with --grace 0 it is refused', async () => {
    const first = await createKey(['--name', 'rotator', '--admin']);
    assert.equal(await api('GET', '/api/v1/keys', first.key), 200);

    let r = await ok(admin(['keys', 'rotate', first.id, '--grace', '1h']));
    const second = r.stdout.trim();
    assert.equal(r.stdout, `${second}\n`);
    assert.match(second, KEY_RE);
    assert.equal(KEY_RE.exec(second)[1], first.id, 'same id');
    assert.notEqual(second, first.key);
    assert.match(r.stderr, /shown only this once/);
    assert.equal(await api('GET', '/api/v1/keys', first.key), 200, 'old secret within the grace');
    assert.equal(await api('GET', '/api/v1/keys', second), 200);
    r = await ok(admin(['keys', 'get', first.id, '--json']));
    const v = JSON.parse(r.stdout);
    assert.ok(v.rotated_at);
    const grace = Date.parse(v.previous_valid_until) - Date.parse(v.rotated_at);
    assert.equal(grace, 3600 * 1000);

    r = await ok(admin(['keys', 'rotate', `${first.id}`, '--grace=0', '--json']));
    const j = JSON.parse(r.stdout);
    const third = j.key;
    assert.match(third, KEY_RE);
    assert.equal(j.id, first.id);
    assert.equal(await api('GET', '/api/v1/keys', second), 401, 'no grace');
    assert.equal(await api('GET', '/api/v1/keys', first.key), 401, 'two rotations ago');
    assert.equal(await api('GET', '/api/v1/keys', third), 200);

    // The refusals are in the key's usage log.
    r = await ok(admin(['keys', 'usage', first.id, '--json']));
    const outcomes = JSON.parse(r.stdout).usage.map((e) => e.outcome);
    assert.equal(outcomes[0], 'ok', 'the last request, with the newest secret');
    assert.equal(outcomes.filter((o) => o === 'bad_secret').length, 2, outcomes.join());
  });

  test('revoke: the key is refused from then on; rotating it is 409', async () => {
    const k = await createKey(['--name', 'doomed', '--publish', 'd.>', '--admin']);
    assert.equal((await publish(s, 'd.x', {}, undefined, k.key)).status, 202);
    let r = await ok(admin(['keys', 'revoke', k.id]));
    assert.match(r.stdout, /^status +revoked$/m);
    assert.match(r.stdout, /^revoked +\d{4}-/m);
    assert.equal((await publish(s, 'd.x', {}, undefined, k.key)).status, 401);
    assert.equal(await api('GET', '/api/v1/keys', k.key), 401);
    r = await ok(admin(['keys', 'list']));
    assert.match(r.stdout, new RegExp(`^${k.id} +default +doomed +revoked`, 'm'));
    r = await admin(['keys', 'rotate', k.id]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: 409 invalid_state: /);
    assert.equal(r.stdout, '', 'no key printed');
    // The revoked key cannot drive the client either.
    r = await cli(['keys', 'list'], { SWITCHBOARD_URL: s.url, SWITCHBOARD_API_KEY: k.key });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: 401 unauthorized: /);
    assert.ok(!r.stderr.includes(k.key));
  });
});

describe('errors', () => {
  test('unknown id: exit 1 with the 404 on stderr, nothing on stdout', async () => {
    for (const cmd of ['get', 'revoke', 'usage', 'rotate']) {
      const r = await admin(['keys', cmd, 'AAAAAAAAAAAA']);
      assert.equal(r.code, 1, cmd);
      assert.match(r.stderr, /^switchboard: 404 not_found: .+\n$/, cmd);
      assert.equal(r.stdout, '', cmd);
    }
    await ok(admin(['keys', 'list']));
  });

  test('the server refuses: 400 and 403 are reported with their code', async () => {
    let r = await admin(['keys', 'create', '--name', 'bad', '--publish', 'not a pattern!']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: 400 invalid_request: .*publish/);
    assert.equal(r.stdout, '');
    r = await admin(['keys', 'create', '--name', 'bad', '--cidr', '10.0.0.0/99']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: 400 invalid_request: /);
    const plain = await createKey(['--name', 'plain', '--publish', 'p']);
    r = await cli(['keys', 'get', plain.id, '--key', plain.key], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: 403 forbidden: /);
    assert.ok(!r.stderr.includes(plain.key));
    await ok(admin(['keys', 'get', plain.id]));
  });

  test('usage errors: exit 2, a message, nothing sent', async () => {
    const cases = [
      [['keys'], /usage: switchboard keys/],
      [['keys', 'frobnicate'], /unknown command "frobnicate"/],
      [['keys', 'token'], /unknown command "token"/],
      [['keys', 'list', '--bogus'], /unknown option --bogus/],
      [['keys', 'list', '--name', 'x'], /--name does not apply to "list"/],
      [['keys', 'list', '--json=1'], /--json takes no value/],
      [['keys', 'get'], /needs a key ID/],
      [['keys', 'get', 'not-an-id'], /letters and digits/],
      [['keys', 'get', 'a', 'b'], /one key ID/],
      [['keys', 'create'], /needs --name/],
      [['keys', 'create', '--name'], /--name needs a value/],
      [['keys', 'create', '--name', 'x', '--burst', '5'], /--burst needs --rate/],
      [['keys', 'create', '--name', 'x', '--expires-in', '2w'], /--expires-in: expected/],
      [['keys', 'rotate', 'abc', '--grace', '-1'], /--grace: expected/],
      [['keys', 'list', '--key', 'k', '--key-file', 'f'], /not both/],
    ];
    const before_ = (await ok(admin(['keys', 'list', '--json']))).stdout;
    for (const [args, re] of cases) {
      const r = await admin(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stdout, '', args.join(' '));
    }
    // A secret typed where an ID goes is not echoed.
    const r = await admin(['keys', 'get', 'sb_Ab12Cd34Ef56_SECRETsecretSECRETsecret']);
    assert.equal(r.code, 2);
    assert.ok(!r.stderr.includes('SECRET'));
    const after_ = (await ok(admin(['keys', 'list', '--json']))).stdout;
    assert.equal(JSON.parse(after_).keys.length, JSON.parse(before_).keys.length, 'nothing created');
  });

  test('--help: exit 0 on stdout', async () => {
    let r = await ok(cli(['keys', '--help']));
    assert.match(r.stdout, /create --name NAME/);
    assert.match(r.stdout, /--key-file FILE/);
    assert.match(r.stdout, /DURATION/);
    r = await ok(cli(['keys', 'create', '--help']));
    assert.match(r.stdout, /usage: switchboard keys/);
    r = await ok(cli(['token', '--help']));
    assert.match(r.stdout, /usage: switchboard token/);
    r = await ok(cli(['help']));
    assert.match(r.stdout, /keys +manage API keys/);
  });

  test('no key anywhere: exit 2 and a message that says where to put one', async () => {
    let r = await cli(['keys', 'list'], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\.\/var\/admin\.key/);
    assert.match(r.stderr, /--key, --key-file or SWITCHBOARD_API_KEY/);
    r = await cli(['keys', 'list', '--key-file', join(scratch, 'missing.key')], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing\.key/);
    r = await cli(['keys', 'list'], { SWITCHBOARD_URL: s.url, SWITCHBOARD_DATA_DIR: scratch });
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`${scratch}/admin\\.key`));
  });

  test('key files: trailing whitespace is trimmed; junk and oversized files are refused', async () => {
    const f = join(scratch, 'padded.key');
    writeFileSync(f, `${s.adminKey}\r\n \n\t`, { mode: 0o600 });
    await ok(cli(['keys', 'list', '--key-file', f], { SWITCHBOARD_URL: s.url }));
    await ok(cli(['keys', 'list'], { SWITCHBOARD_URL: s.url, SWITCHBOARD_ADMIN_KEY_FILE: f }));
    writeFileSync(f, `${s.adminKey} extra\n`);
    let r = await cli(['keys', 'list', '--key-file', f], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /does not hold an API key/);
    writeFileSync(f, `${s.adminKey}${'x'.repeat(9000)}`);
    r = await cli(['keys', 'list', '--key-file', f], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /does not hold an API key/);
    r = await cli(['keys', 'list', '--key-file', scratch], { SWITCHBOARD_URL: s.url });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not a regular file/);
  });

  test('where the key comes from: --key beats SWITCHBOARD_API_KEY, --key-file beats it too', async () => {
    const bad = { SWITCHBOARD_URL: s.url, SWITCHBOARD_API_KEY: 'sb_wrong' };
    let r = await cli(['keys', 'list'], bad);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /401/);
    await ok(cli(['keys', 'list', '--key', s.adminKey], bad));
    await ok(cli(['keys', 'list', '--key-file', join(s.dataDir, 'admin.key')], bad));
    await ok(cli(['keys', 'list', `--url=${s.url}/`], { SWITCHBOARD_API_KEY: s.adminKey }));
  });

  test('plain http to a host that is not loopback is refused before anything is sent', async () => {
    for (const url of ['http://192.0.2.1:8080', 'http://example.com', 'http://127.0.0.1.nip.io']) {
      const r = await cli(['keys', 'list', '--url', url], { SWITCHBOARD_API_KEY: s.adminKey });
      assert.equal(r.code, 2, url);
      assert.match(r.stderr, /refusing to send the API key in clear.*--insecure/, url);
    }
    const r = await cli(['keys', 'list', '--url', 'ftp://127.0.0.1/'], { SWITCHBOARD_API_KEY: s.adminKey });
    assert.equal(r.code, 2);
    await ok(cli(['keys', 'list', '--url', s.url.replace('127.0.0.1', 'localhost')],
      { SWITCHBOARD_API_KEY: s.adminKey }));
  });

  test('an unreachable server: exit 1 with the connection error', async () => {
    const port = await new Promise((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = srv.address().port;
        srv.close(() => resolve(p));
      });
    });
    const r = await cli(['keys', 'list'], { SWITCHBOARD_URL: `http://127.0.0.1:${port}`,
      SWITCHBOARD_API_KEY: s.adminKey });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^switchboard: .*(connect|Connection refused)/i);
    assert.equal(r.stdout, '');
  });

  test('a server that is not Switchboard: exit 1, the reply is not trusted', async () => {
    const bodies = [
      [404, 'text/html', '<html>nope</html>', /^switchboard: 404 \(the reply is not a Switchboard error\)$/m],
      [200, 'application/json', '[1,2]', /^switchboard: 200: the reply is not a JSON object$/m],
      [500, 'application/json', '{"error":{"code":"x\\u001b[31m","message":"m\\u0007"}}',
        /^switchboard: 500 x\?\[31m: m\?$/m],
      [429, 'application/json', '{"error":{"code":"rate_limited","message":"slow down"}}',
        /^switchboard: 429 rate_limited: slow down \(retry after 7 s\)$/m],
    ];
    for (const [status, type, body, re] of bodies) {
      const srv = await new Promise((resolve) => {
        const h = net.createServer((c) => {
          c.on('error', () => {});
          c.once('data', () => {
            c.end(`HTTP/1.1 ${status} X\r\ncontent-type: ${type}\r\nretry-after: 7\r\n` +
              `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
          });
        }).listen(0, '127.0.0.1', () => resolve(h));
      });
      try {
        const r = await cli(['keys', 'list'], { SWITCHBOARD_URL: `http://127.0.0.1:${srv.address().port}`,
          SWITCHBOARD_API_KEY: s.adminKey });
        assert.equal(r.code, 1, body);
        assert.match(r.stderr, re);
        assert.ok(!/\x1b|\x07/.test(r.stderr), 'control characters are replaced');
      } finally {
        await new Promise((resolve) => srv.close(resolve));
      }
    }
  });

  test('a reply over 4 MiB is cut off: exit 1', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024, 0x20);
    const srv = await new Promise((resolve) => {
      const h = net.createServer((c) => {
        c.on('error', () => {});
        c.once('data', () => {
          c.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"keys":[`);
          c.end(big);
        });
      }).listen(0, '127.0.0.1', () => resolve(h));
    });
    try {
      const r = await cli(['keys', 'list'], { SWITCHBOARD_URL: `http://127.0.0.1:${srv.address().port}`,
        SWITCHBOARD_API_KEY: s.adminKey });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /larger than 4194304 bytes/);
    } finally {
      await new Promise((resolve) => srv.close(resolve));
    }
  });

  test('the server kept serving through all of it', async () => {
    const r = await ok(admin(['keys', 'list', '--json']));
    assert.ok(JSON.parse(r.stdout).keys.length >= 8);
    assert.equal((await publish(s, 'final.x', { ok: true })).status, 202);
  });
});
