// web/charts/pool.js: keeps chart elements alive between renders, by key. A fresh
// canvas costs milliseconds to allocate (more than drawing into it), so panels
// reuse theirs and only drop the ones a render no longer asks for.

export function pool() {
  const items = new Map();
  let used = new Set();
  return {
    /** The item for key, made by make() the first time. */
    get(key, make) {
      used.add(key);
      if (!items.has(key)) items.set(key, make());
      return items.get(key);
    },
    /** Forgets the items not asked for since the last sweep. */
    sweep() {
      for (const k of [...items.keys()]) if (!used.has(k)) items.delete(k);
      used = new Set();
    },
  };
}
