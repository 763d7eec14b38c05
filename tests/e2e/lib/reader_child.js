// A subscriber in its own process (child_process.fork), so that the test
// process's own work (publishing, garbage collection) never stalls its
// reading: the "healthy consumer" of the slow-consumer tests.
//
//   fork(reader_child.js, ['sse' | 'ws', port, subject]), env SB_E2E_KEY =
//   the credential (sent as Authorization: Bearer)
//   child -> parent: {type:'ready'} once subscribed, or {type:'refused',
//   status|closeCode} when the server said no
//   parent -> child: 'report'  ->  child: {type:'report', ids, ended, closeCode}
//   parent -> child: 'exit'
//
// SSE is read over a raw socket and only the id: lines are kept; WebSocket
// uses the ws package and keeps only message ids.
import net from 'node:net';
import WebSocket from 'ws';

const [kind, port, subject] = process.argv.slice(2);
const key = process.env.SB_E2E_KEY;
const ids = [];
let ended = false;
let closeCode = null;

if (kind === 'sse') {
  const sock = net.connect({ port: Number(port), host: '127.0.0.1' });
  let pending = '';
  let headDone = false;
  sock.setEncoding('latin1');
  sock.on('connect', () => {
    sock.write(`GET /api/v1/stream?subject=${encodeURIComponent(subject)} HTTP/1.1\r\nHost: x\r\n` +
      `Authorization: Bearer ${key}\r\n\r\n`);
  });
  sock.on('data', (text) => {
    pending += text;
    if (!headDone) {
      const i = pending.indexOf('\r\n\r\n');
      if (i < 0) return;
      if (!pending.startsWith('HTTP/1.1 200')) {
        ended = true;
        process.send({ type: 'refused', status: Number(pending.split(' ')[1]) });
        sock.destroy();
        return;
      }
      pending = pending.slice(i + 4);
      headDone = true;
      process.send({ type: 'ready' });
    }
    // Complete events only: an id counts once its block's blank line is in.
    let end;
    while ((end = pending.indexOf('\n\n')) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (block.startsWith('id: ')) ids.push(block.slice(4, block.indexOf('\n')));
    }
  });
  sock.on('close', () => { ended = true; });
  sock.on('error', () => { ended = true; });
} else {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/ws`, { headers: { authorization: `Bearer ${key}` } });
  let ready = false;
  ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', id: 'h', subject })));
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('{"type":"message"')) {
      const m = /"id":"(\d+)"/.exec(text);
      ids.push(m ? m[1] : null);
    } else if (JSON.parse(text).type === 'subscribed') {
      ready = true;
      process.send({ type: 'ready' });
    } else if (!ready) {
      process.send({ type: 'refused', reply: text });
    }
  });
  ws.on('unexpected-response', (req, res) => {
    ended = true;
    process.send({ type: 'refused', status: res.statusCode });
    req.destroy();
  });
  ws.on('close', (code) => { ended = true; closeCode = code; if (!ready) process.send({ type: 'refused', closeCode: code }); });
  ws.on('error', () => { ended = true; });
  process.on('message', (m) => { if (m === 'exit') ws.terminate(); });
}

process.on('message', (m) => {
  if (m === 'report') process.send({ type: 'report', ids, ended, closeCode });
  if (m === 'exit') process.exit(0);
});
