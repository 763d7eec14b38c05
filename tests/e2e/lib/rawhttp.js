// Raw HTTP/1.1 over node:net for byte-exact requests: a connection that
// collects everything the server sends, parses responses out of it one at a
// time, and reports when the server closes. Every wait is bounded.
import net from 'node:net';

export class RawConn {
  static open(port, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const c = new RawConn();
      c.sock = net.connect({ port, host }, () => resolve(c));
      c.sock.on('error', (e) => { c.error = e; if (!c.connected) reject(e); });
      c.sock.on('connect', () => { c.connected = true; });
      c.sock.on('data', (d) => { c.buf = Buffer.concat([c.buf, d]); c.wake(); });
      c.sock.on('close', () => { c.closed = true; c.wake(); });
    });
  }

  constructor() {
    this.buf = Buffer.alloc(0);   // received and not yet parsed
    this.closed = false;
    this.error = null;
    this.waiters = [];
  }

  wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }

  // Resolves when pred() is true, rejects after timeout ms.
  until(pred, timeout, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { clearTimeout(t); reject(e); return; }
        if (v) { clearTimeout(t); resolve(v); } else this.waiters.push(check);
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((f) => f !== check);
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}; ` +
          `received ${JSON.stringify(this.buf.toString('latin1').slice(0, 500))}, closed=${this.closed}`));
      }, timeout);
      check();
    });
  }

  write(data) {
    return new Promise((resolve) => this.sock.write(data, () => resolve()));
  }

  // Parses one response from the received bytes (waiting for it). A
  // response without Content-Length ends at close. 1xx responses are
  // returned like any other (call again for the final one).
  async response({ timeout = 5000, head = false } = {}) {
    return this.until(() => {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.closed) throw new Error(`connection closed before a response head; got ${JSON.stringify(this.buf.toString('latin1'))}`);
        return null;
      }
      const headText = this.buf.subarray(0, end).toString('latin1');
      const [statusLine, ...lines] = headText.split('\r\n');
      const m = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(statusLine);
      if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
      const headers = {};
      const rawHeaders = [];
      for (const l of lines) {
        const i = l.indexOf(':');
        const name = l.slice(0, i).toLowerCase();
        const value = l.slice(i + 1).trim();
        rawHeaders.push([name, value]);
        headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
      }
      const status = Number(m[1]);
      let bodyLen;
      if (status < 200 || status === 204 || status === 304 || head) bodyLen = 0;
      else if ('content-length' in headers) bodyLen = Number(headers['content-length']);
      else if (this.closed) bodyLen = this.buf.length - end - 4;
      else return null;
      if (this.buf.length < end + 4 + bodyLen) {
        if (this.closed) throw new Error('connection closed inside a response body');
        return null;
      }
      const body = this.buf.subarray(end + 4, end + 4 + bodyLen);
      const raw = this.buf.subarray(0, end + 4 + bodyLen);
      this.buf = this.buf.subarray(end + 4 + bodyLen);
      let json = null;
      try { json = JSON.parse(body.toString('utf8')); } catch { /* not JSON */ }
      return { status, reason: m[2], headers, rawHeaders, body, json, raw: raw.toString('latin1') };
    }, timeout, 'a response');
  }

  // Waits for the server to close; resolves to the bytes received after the
  // last parsed response (normally none).
  async waitClose(timeout = 5000) {
    await this.until(() => this.closed, timeout, 'the server to close the connection');
    return this.buf;
  }

  // True when nothing arrives and the connection stays open for ms.
  async quietFor(ms) {
    const before = this.buf.length;
    await new Promise((r) => setTimeout(r, ms));
    return this.buf.length === before && !this.closed;
  }

  destroy() { this.sock.destroy(); }
}

// One request on a fresh connection: writes `bytes`, reads one final
// response (skipping 1xx), then waits for the close if expectClose.
export async function rawRequest(port, bytes, { expectClose = false, timeout = 5000 } = {}) {
  const c = await RawConn.open(port);
  try {
    await c.write(bytes);
    let res = await c.response({ timeout });
    while (res.status < 200) res = await c.response({ timeout });
    if (expectClose) {
      const rest = await c.waitClose(timeout);
      res.trailing = rest;
    }
    return res;
  } finally {
    c.destroy();
  }
}
