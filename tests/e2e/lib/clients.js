// Client helpers for the delivery tests (SSE, WebSocket, slow consumers):
// an SSE stream reader over fetch, raw TCP HTTP/SSE/WebSocket clients for
// byte-level checks, a JSON WebSocket client over the `ws` package, and a
// pooled webhook publisher that spreads its requests over many connections
// (so that, with SO_REUSEPORT, publishers and subscribers sit on different
// loops). Every wait is bounded.
import net from 'node:net';
import http from 'node:http';
import crypto from 'node:crypto';
import WebSocket from 'ws';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves when pred() is truthy, rejects after timeout ms.
export async function until(pred, timeout, what) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out (${timeout} ms) waiting for ${what}`);
    await sleep(10);
  }
}

// --- SSE -----------------------------------------------------------------

// Incremental text/event-stream parser (LF line endings, as the server
// writes them; CRLF and CR tolerated). Calls onBlock({id, event, data,
// retry, comments, lines}) for every block ended by a blank line.
export class SseParser {
  constructor(onBlock) {
    this.onBlock = onBlock;
    this.buf = '';
    this.lines = [];
  }

  feed(text) {
    this.buf += text;
    let i;
    while ((i = this.buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buf.slice(0, i);
      const nl = this.buf[i] === '\r' && this.buf[i + 1] === '\n' ? 2 : 1;
      this.buf = this.buf.slice(i + nl);
      if (line === '') {
        if (this.lines.length) this.flush();
      } else {
        this.lines.push(line);
      }
    }
  }

  flush() {
    const b = { id: undefined, event: undefined, data: undefined, retry: undefined, comments: [], lines: this.lines };
    const data = [];
    for (const line of this.lines) {
      if (line.startsWith(':')) { b.comments.push(line.slice(1)); continue; }
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'id') b.id = value;
      else if (field === 'event') b.event = value;
      else if (field === 'retry') b.retry = value;
    }
    if (data.length) b.data = data.join('\n');
    this.lines = [];
    this.onBlock(b);
  }
}

// One SSE block with data becomes an event: {id, event, data (raw), msg
// (parsed envelope), lines}.
function toEvent(b) {
  let msg = null;
  try { msg = JSON.parse(b.data); } catch { /* left null: a test will fail on it */ }
  return { id: b.id, event: b.event, data: b.data, msg, lines: b.lines };
}

// GET an SSE stream with fetch. Resolves once the response head is in:
// {status, headers, json (error body when not 200), events, comments,
// retries, ended, close(), waitEvents(n, timeout)}. onEvent(ev, stream) is
// called for each event as it is parsed.
export async function openSse(url, { headers = {}, onEvent } = {}) {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal });
  const s = {
    status: res.status, headers: res.headers, json: null, raw: '',
    events: [], comments: [], retries: [], ended: false, error: null,
    close() { ac.abort(); },
    waitEvents(n, timeout = 10000) {
      return until(() => this.events.length >= n || (this.ended && this.events.length < n && fail(this, n)),
        timeout, `${n} SSE events on ${url} (have ${this.events.length})`).then(() => this.events);
    },
  };
  if (res.status !== 200) {
    const text = await res.text();
    try { s.json = JSON.parse(text); } catch { s.json = text; }
    s.ended = true;
    return s;
  }
  const parser = new SseParser((b) => {
    s.comments.push(...b.comments);
    if (b.retry !== undefined) s.retries.push(b.retry);
    if (b.data !== undefined) {
      const ev = toEvent(b);
      s.events.push(ev);
      if (onEvent) onEvent(ev, s);
    }
  });
  const decoder = new TextDecoder();
  (async () => {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        if (s.raw.length < 65536) s.raw += text;  // the start, for byte checks
        parser.feed(text);
      }
    } catch (e) {
      if (e.name !== 'AbortError') s.error = e;
    } finally {
      s.ended = true;
    }
  })();
  return s;
}

function fail(s, n) {
  throw new Error(`SSE stream ended after ${s.events.length} of ${n} events${s.error ? `: ${s.error}` : ''}`);
}

export function sseUrl(server, subjects, extra = '') {
  const q = subjects.map((p) => `subject=${encodeURIComponent(p)}`).join('&');
  return `${server.url}/api/v1/stream?${q}${extra}`;
}

// --- raw TCP ------------------------------------------------------------------

// A raw TCP connection collecting everything it receives.
export function rawConnect(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const c = { sock, data: Buffer.alloc(0), ended: false, closed: false, error: null };
    sock.on('data', (d) => { c.data = Buffer.concat([c.data, d]); });
    sock.on('end', () => { c.ended = true; });
    sock.on('error', (e) => { c.error = e; });
    sock.on('close', () => { c.closed = true; });
    sock.once('connect', () => resolve(c));
    sock.once('error', reject);
  });
}

// Parses an HTTP/1.1 response head at the start of buf: null when the head
// is incomplete, else {status, headers (lower-case names), headLen}.
export function parseHead(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(lines[0].split(' ')[1]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    const name = l.slice(0, c).trim().toLowerCase();
    const v = l.slice(c + 1).trim();
    headers[name] = headers[name] !== undefined ? `${headers[name]}, ${v}` : v;
  }
  return { status, headers, headLen: end + 4, statusLine: lines[0] };
}

// Sends raw request bytes and reads one response with a Content-Length
// body: {status, headers, body (string), json}.
export async function rawRequest(port, bytes, timeout = 5000) {
  const c = await rawConnect(port);
  c.sock.write(bytes);
  let head;
  try {
    await until(() => {
      head = parseHead(c.data);
      if (!head) return c.closed;
      const len = Number(head.headers['content-length'] || 0);
      return c.data.length >= head.headLen + len || c.closed;
    }, timeout, 'a raw HTTP response');
  } finally {
    c.sock.destroy();
  }
  if (!head) throw new Error(`no response head: ${JSON.stringify(c.data.toString('latin1'))}`);
  const body = c.data.subarray(head.headLen, head.headLen + Number(head.headers['content-length'] || 0)).toString();
  let json = null;
  try { json = JSON.parse(body); } catch { /* not JSON */ }
  return { ...head, body, json };
}

// --- WebSocket, raw -----------------------------------------------------------------

export function acceptKey(key) {
  return crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}

// Encodes one client frame. opts: fin (true), rsv (0..7), mask (true),
// maskKey (4 bytes), len16/len64 (force a longer length encoding).
export function encodeFrame(opcode, payload = Buffer.alloc(0), opts = {}) {
  const { fin = true, rsv = 0, mask = true } = opts;
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const parts = [];
  const b0 = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  let hdr;
  if (p.length <= 125 && !opts.len16 && !opts.len64) {
    hdr = Buffer.from([b0, (mask ? 0x80 : 0) | p.length]);
  } else if (p.length <= 0xffff && !opts.len64) {
    hdr = Buffer.alloc(4);
    hdr[0] = b0; hdr[1] = (mask ? 0x80 : 0) | 126; hdr.writeUInt16BE(p.length, 2);
  } else {
    hdr = Buffer.alloc(10);
    hdr[0] = b0; hdr[1] = (mask ? 0x80 : 0) | 127; hdr.writeBigUInt64BE(BigInt(p.length), 2);
  }
  parts.push(hdr);
  if (mask) {
    const key = opts.maskKey || crypto.randomBytes(4);
    const masked = Buffer.alloc(p.length);
    for (let i = 0; i < p.length; i++) masked[i] = p[i] ^ key[i & 3];
    parts.push(key, masked);
  } else {
    parts.push(p);
  }
  return Buffer.concat(parts);
}

// Decodes the server frames at the start of buf: {frames, rest}. Each frame
// {fin, rsv, opcode, masked, payload, closeCode, closeReason, text}.
export function decodeFrames(buf) {
  const frames = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off], b1 = buf[off + 1];
    let len = b1 & 0x7f, pos = off + 2;
    if (len === 126) {
      if (buf.length - pos < 2) break;
      len = buf.readUInt16BE(pos); pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) break;
      len = Number(buf.readBigUInt64BE(pos)); pos += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    if (masked) pos += 4;
    if (buf.length - pos < len) break;
    const payload = buf.subarray(pos, pos + len);
    const f = { fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload };
    if (f.opcode === 8) {
      f.closeCode = len >= 2 ? payload.readUInt16BE(0) : null;
      f.closeReason = len > 2 ? payload.subarray(2).toString() : '';
    }
    if (f.opcode === 1) f.text = payload.toString();
    frames.push(f);
    off = pos + len;
  }
  return { frames, rest: buf.subarray(off) };
}

// Raw header lines ("Name: value\r\n" each) for a headers object, e.g.
// server.auth() -> "authorization: Bearer sb_...\r\n".
export function headerLines(headers = {}) {
  return Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
}

// Opens /api/v1/ws (or path) with a hand-made handshake and checks the
// 101 and Sec-WebSocket-Accept; `headers` (e.g. server.auth()) are added
// to the upgrade request. Returns {sock, frames, head, send(buf),
// nextFrame(pred, timeout), waitClosed(timeout)}.
export async function rawWs(port, path = '/api/v1/ws', headers = {}) {
  const c = await rawConnect(port);
  const key = crypto.randomBytes(16).toString('base64');
  c.sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    `${headerLines(headers)}\r\n`);
  let head;
  await until(() => (head = parseHead(c.data)) || c.closed, 5000, 'the WebSocket handshake');
  if (!head || head.status !== 101) throw new Error(`handshake failed: ${c.data.toString('latin1')}`);
  if (head.headers['sec-websocket-accept'] !== acceptKey(key)) throw new Error('bad Sec-WebSocket-Accept');
  const w = {
    sock: c.sock, conn: c, head, frames: [], consumed: 0,
    send(buf) { c.sock.write(buf); },
    parse() {
      const { frames, rest } = decodeFrames(c.data.subarray(head.headLen + this.consumed));
      this.consumed = c.data.length - head.headLen - rest.length;
      this.frames.push(...frames);
    },
    async nextFrame(pred = () => true, timeout = 5000) {
      let i = 0;
      return until(() => {
        this.parse();
        for (; i < this.frames.length; i++) if (pred(this.frames[i])) return this.frames[i];
        if (c.closed) throw new Error(`connection closed; frames: ${JSON.stringify(this.frames.map((f) => [f.opcode, f.closeCode, f.text]))}`);
        return null;
      }, timeout, 'a WebSocket frame');
    },
    waitClosed(timeout = 5000) { return until(() => c.closed, timeout, 'the TCP connection to close'); },
    close() { c.sock.destroy(); },
  };
  return w;
}

// --- WebSocket, JSON protocol (ws package) ---------------------------------

// {ws, msgs, send(obj), next(pred, timeout), closed (promise of {code,
// reason}), close()}. Every text message is parsed into msgs. opts go to
// the ws package (e.g. {headers: server.auth()}).
export async function jsonWs(url, opts = {}) {
  const ws = new WebSocket(url, opts);
  const c = {
    ws, msgs: [], closeInfo: null,
    send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
    // The first message after index `from` (default: any) matching pred.
    next(pred = () => true, timeout = 5000, from = 0) {
      return until(() => {
        for (let i = from; i < this.msgs.length; i++) if (pred(this.msgs[i])) return this.msgs[i];
        if (this.closeInfo) throw new Error(`closed ${JSON.stringify(this.closeInfo)} before the expected message`);
        return null;
      }, timeout, 'a WebSocket message');
    },
    // Sends obj and waits for the reply carrying the same id.
    async request(obj, timeout = 5000) {
      const from = this.msgs.length;
      this.send(obj);
      return this.next((m) => m.id === String(obj.id) && m.type !== 'message', timeout, from);
    },
    close() { if (ws.readyState <= 1) ws.close(); },
    terminate() { ws.terminate(); },
  };
  c.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => { c.closeInfo = { code, reason: reason.toString() }; resolve(c.closeInfo); });
  });
  ws.on('message', (data, isBinary) => {
    c.msgs.push(isBinary ? { binary: data } : JSON.parse(data.toString()));
  });
  ws.on('error', (e) => { c.error = e; });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
  });
  return c;
}

// --- publishing ------------------------------------------------------------

// POSTs with node:http through an agent of `sockets` keep-alive
// connections, authenticated as `key` (default: the server's admin key).
// post(path, body, headers) -> {status, json}.
export class Publisher {
  constructor(server, { sockets = 8, key = server.adminKey } = {}) {
    this.server = server;
    this.auth = server.auth(key);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
  }

  post(path, body, headers = {}) {
    const data = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: this.server.port, method: 'POST', path, agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': data.length, ...this.auth, ...headers },
      }, (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json = null;
          try { json = JSON.parse(text); } catch { /* not JSON */ }
          resolve({ status: res.statusCode, json, text });
        });
        res.on('error', reject);
      });
      req.setTimeout(20000, () => req.destroy(new Error('publish request timed out')));
      req.on('error', reject);
      req.end(data);
    });
  }

  webhook(path, body, headers) { return this.post(path, body, headers); }

  publish(subject, data, event) {
    return this.post('/api/v1/publish', { subject, data, ...(event ? { event } : {}) });
  }

  close() { this.agent.destroy(); }
}

// Runs fn(i) for i in [0, n) with at most `concurrency` in flight; resolves
// to the results in order.
export async function pool(n, concurrency, fn) {
  const out = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

// --- a subscriber in a child process (see reader_child.js) -----------------

// Resolves once the child is subscribed: {report() -> {ids, ended,
// closeCode}, stop()}. The child authenticates with `key` (passed in its
// environment, SB_E2E_KEY, not on its command line).
export async function forkReader(kind, port, subject, key) {
  const { fork } = await import('node:child_process');
  if (!key) throw new Error('forkReader: a credential is needed');
  const child = fork(new URL('./reader_child.js', import.meta.url).pathname, [kind, String(port), subject],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, SB_E2E_KEY: key } });
  const waiters = [];
  child.on('message', (m) => { const w = waiters.shift(); if (w) w(m); });
  const next = (timeout, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`reader child: timed out waiting for ${what}`)), timeout);
    waiters.push((m) => { clearTimeout(t); resolve(m); });
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let ready;
  try {
    ready = await next(10000, 'ready');
    if (ready.type !== 'ready') throw new Error(`reader child: ${JSON.stringify(ready)}`);
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    throw e;
  }
  return {
    async report() { const p = next(10000, 'report'); child.send('report'); return p; },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.send('exit');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}
