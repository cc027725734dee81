// web/charts/tooltip.js: the one floating tooltip that every chart uses for exact values.

let el = null;

function node() {
  if (!el) {
    el = document.createElement('div');
    el.className = 'tooltip';
    el.setAttribute('role', 'status');
    el.hidden = true;
    document.body.append(el);
  }
  return el;
}

/** Shows lines of text near the client point (x, y). */
export function show(x, y, lines) {
  const t = node();
  t.replaceChildren(...lines.map((s, i) => {
    const d = document.createElement('div');
    if (i === 0) d.className = 'tt-title';
    d.textContent = s;
    return d;
  }));
  t.hidden = false;
  const w = t.offsetWidth, h = t.offsetHeight;
  const left = x + 14 + w > window.innerWidth ? x - w - 14 : x + 14;
  const top = y + 14 + h > window.innerHeight ? y - h - 10 : y + 14;
  t.style.left = `${Math.max(4, left) + window.scrollX}px`;
  t.style.top = `${Math.max(4, top) + window.scrollY}px`;
}

export function hide() {
  if (el) el.hidden = true;
}
