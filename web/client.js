// web/client.js: the page's side of the worker: requests by channel, answers as
// promises. A request that a newer one on its channel replaced resolves to
// {superseded: true}; so does an answer that arrives after a newer request was sent.

export function createClient(onEvent) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const waiting = new Map();
  const latest = {};
  let nextId = 1;
  // Per channel: requests sent, answered with results, and dropped as stale.
  const counts = {};
  const count = (ch, k) => { counts[ch] ??= { sent: 0, done: 0, stale: 0 }; counts[ch][k]++; };

  worker.onmessage = (e) => {
    const m = e.data;
    if (m.event) { onEvent(m); return; }
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    const stale = m.superseded || (m.channel !== 'control' && latest[m.channel] !== m.id);
    count(m.channel ?? 'control', stale ? 'stale' : 'done');
    if (stale) w.resolve({ superseded: true });
    else if (m.ok) w.resolve({ value: m.value, workerMs: m.workerMs, roundTripMs: performance.now() - w.t0 });
    else w.reject(Object.assign(new Error(m.error), { user: m.user, code: m.code }));
  };
  worker.onerror = (e) => {
    e.preventDefault?.();
    const err = new Error(`the worker failed: ${e.message || 'script error (see the console)'}`);
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
    onEvent({ event: 'crash', message: err.message });
  };

  /** Sends a request; channel 'control' runs every one, others only the newest. */
  function request(channel, kind, args = {}) {
    const id = nextId++;
    if (channel !== 'control') latest[channel] = id;
    count(channel, 'sent');
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject, t0: performance.now() });
      worker.postMessage({ id, channel, kind, args });
    });
  }

  return { request, counts };
}
