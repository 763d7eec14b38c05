// Running out of file descriptors: with a low open-files limit the server
// lowers max_connections to fit, refuses the excess connections (closes
// them at once, counted), keeps serving the ones it has and new requests
// once connections go away, and still stops cleanly on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Server, waitFor, sleep } from './lib/server.js';

const LIMIT = 200;

function openIdle(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.on('connect', () => resolve(sock));
    sock.on('error', () => resolve(sock));
  });
}

test('a low open-files limit: excess connections are refused, the server keeps serving and stops cleanly', { timeout: 60000 }, async () => {
  const s = await new Server({ wrap: ['prlimit', `--nofile=${LIMIT}:${LIMIT}`, '--'] }).start();
  const socks = [];
  try {
    const warn = s.logsMatching('max_connections lowered to fit the open files limit');
    assert.equal(warn.length, 1);
    assert.ok(warn[0].max_connections < LIMIT, JSON.stringify(warn[0]));
    for (let i = 0; i < LIMIT + 50; i++) socks.push(await openIdle(s.port));
    // the excess is closed by the server
    await waitFor(() => socks.filter((k) => k.destroyed || k.readableEnded).length >= 50,
      { timeout: 15000, what: 'refused connections closed' });
    for (const k of socks) k.destroy();
    await sleep(300);
    // once they are gone, the server answers again and counted the refusals
    const { values } = await waitFor(async () => {
      try { return await s.metrics(); } catch { return null; }
    }, { timeout: 10000, what: 'metrics' });
    assert.ok(values.switchboard_refused_connections_total >= 50,
      `refused ${values.switchboard_refused_connections_total}`);
    const res = await fetch(`${s.url}/health`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  } finally {
    for (const k of socks) k.destroy();
    await s.stop();
  }
});
