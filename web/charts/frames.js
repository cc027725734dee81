// web/charts/frames.js: draws queued by key and run a few per animation frame, so a
// render never holds the main thread long (typing stays smooth). A newer draw with
// the same key replaces a queued one: stale charts are never drawn.

const queue = new Map();
let scheduled = false;
let waiters = [];
const BUDGET_MS = 8;

export function later(key, fn) {
  queue.delete(key);
  queue.set(key, fn);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(run);
  }
}

function run() {
  scheduled = false;
  const t0 = performance.now();
  for (const [key, fn] of queue) {
    queue.delete(key);
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
    if (performance.now() - t0 > BUDGET_MS) break;
  }
  if (queue.size) {
    scheduled = true;
    requestAnimationFrame(run);
  } else {
    const w = waiters;
    waiters = [];
    for (const r of w) r();
  }
}

/** Resolves once every queued draw has run. */
export function drawn() {
  return queue.size ? new Promise((r) => waiters.push(r)) : Promise.resolve();
}

export const pendingDraws = () => queue.size;
