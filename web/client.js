// web/client.js: the page's side of the worker: requests by channel, answers as
// promises. A request that a newer one on its channel replaced resolves to
// {superseded: true}; so does an answer that arrives after a newer request was sent.
// It also notices when the worker is gone and can start a fresh one (restart()).

export function createClient(onEvent) {
  const waiting = new Map();
  const latest = {};
  let nextId = 1;
  let worker = null;
  let generation = 0;
  // Per channel: requests sent, answered with results, and dropped as stale.
  const counts = {};
  const count = (ch, k) => { counts[ch] ??= { sent: 0, done: 0, stale: 0 }; counts[ch][k]++; };

  function onMessage(e) {
    const m = e.data;
    if (m.event === 'alive') { watch(m.lock, generation); return; }
    if (m.event) { onEvent(m); return; }
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    const stale = m.superseded || (m.channel !== 'control' && latest[m.channel] !== m.id);
    count(m.channel ?? 'control', stale ? 'stale' : 'done');
    if (stale) w.resolve({ superseded: true });
    else if (m.ok) w.resolve({ value: m.value, workerMs: m.workerMs, roundTripMs: performance.now() - w.t0 });
    else w.reject(Object.assign(new Error(m.error), { user: m.user, code: m.code }));
  }

  function onError(e) {
    e.preventDefault?.();
    const err = new Error(`the worker failed: ${e.message || 'script error (see the console)'}`);
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
    onEvent({ event: 'crash', message: err.message });
  }

  /**
   * No event says that a worker has gone (closed itself, was terminated, or its
   * process died), but it holds a Web Lock for its whole life, and the page's
   * request for that lock is granted only once the worker no longer exists.
   */
  function watch(lock, gen) {
    navigator.locks.request(lock, () => {
      if (gen !== generation) return; // restart() ended it on purpose
      // What the worker was computing is lost: views ask again after the restart,
      // commands (import, training) fail.
      for (const [id, w] of waiting) {
        if (w.channel === 'control') w.reject(new Error('the worker stopped before it answered'));
        else w.resolve({ superseded: true });
        waiting.delete(id);
      }
      onEvent({ event: 'died', message: 'it closed or its process ended' });
    });
  }

  function start() {
    generation++;
    // The lock's name travels as the worker's name; locks need a secure context (https or 127.0.0.1).
    const lock = globalThis.navigator?.locks ? `quantscope-worker-${Date.now()}-${Math.random().toString(36).slice(2)}` : '';
    worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: lock });
    worker.onmessage = onMessage;
    worker.onerror = onError;
  }

  /** Sends a request; channel 'control' runs every one, others only the newest. */
  function request(channel, kind, args = {}) {
    const id = nextId++;
    if (channel !== 'control') latest[channel] = id;
    count(channel, 'sent');
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject, channel, t0: performance.now() });
      worker.postMessage({ id, channel, kind, args });
    });
  }

  /** Ends the worker (if it still runs) and starts a fresh one; requests sent after go to the new one. */
  function restart() {
    worker.terminate();
    start();
  }

  start();
  return { request, counts, restart };
}
