// web/dom.js: a tiny element builder (no innerHTML anywhere: the CSP and safety).

/** h('div.class#id', {attr: v, on: {click}}, ...children) */
export function h(tag, attrs = {}, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || 'div');
  for (const r of rest) {
    if (r[0] === '.') el.classList.add(r.slice(1));
    else el.id = r.slice(1);
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/**
 * Replaces an element's children; a no-op when they are already these nodes in
 * this order (kept chart elements are not detached and re-attached on each render).
 */
export function fill(el, ...children) {
  const list = children.flat().filter((c) => c !== null && c !== undefined && c !== false);
  const cur = el.childNodes;
  if (list.length === cur.length && list.every((c, i) => c === cur[i])) return;
  el.replaceChildren(...list);
}

/** A <select> with options [{value, label}] (or strings). */
export function select(id, options, value, onChange, attrs = {}) {
  return h('select', { id, ...attrs, on: { change: (e) => onChange(e.target.value) } },
    options.map((o) => {
      const { value: v, label, disabled } = typeof o === 'string' ? { value: o, label: o } : o;
      return h('option', { value: v, selected: v === value, disabled }, label);
    }));
}

/** A caption saying what to look at. */
export const caption = (text) => h('p.caption', {}, text);
