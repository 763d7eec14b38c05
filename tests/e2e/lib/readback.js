// Reads stored messages back over SSE (GET /api/v1/stream) with a plain
// fetch stream: every event's id, event type, raw data line and parsed
// envelope. Bounded: stops when until(events) is true or after timeout ms.
// Authenticates as `key` (default: the server's admin key).
export async function readEvents(server, {
  subject = 'webhooks.>', since = '0', until, timeout = 10000, key = server.adminKey,
} = {}) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeout);
  const events = [];
  let text = '';
  let done = false;
  const q = `subject=${encodeURIComponent(subject)}${since === null ? '' : `&since=${encodeURIComponent(since)}`}`;
  try {
    const res = await fetch(`${server.url}/api/v1/stream?${q}`, { signal: ac.signal, headers: server.auth(key) });
    if (res.status !== 200) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      text += dec.decode(value, { stream: true });
      let sep;
      while ((sep = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, sep);
        text = text.slice(sep + 2);
        const ev = { id: null, event: null, dataRaw: null };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) ev.id = line.slice(4);
          else if (line.startsWith('event: ')) ev.event = line.slice(7);
          else if (line.startsWith('data: ')) ev.dataRaw = ev.dataRaw === null ? line.slice(6) : `${ev.dataRaw}\n${line.slice(6)}`;
        }
        if (ev.dataRaw === null) continue;     // comments, retry
        ev.data = JSON.parse(ev.dataRaw);
        events.push(ev);
        if (until && until(events)) { done = true; break; }
      }
    }
    ac.abort();
  } catch (e) {
    if (e.name !== 'AbortError' && !(ac.signal.aborted && done)) throw e;
  } finally {
    clearTimeout(timer);
  }
  if (until && !done) throw new Error(`readEvents: condition not met in ${timeout} ms (${events.length} events read)`);
  return events;
}
