// tests/browser/share.test.mjs: the page's address and exports in headless Chromium:
// every control round-trips through the URL into a fresh tab, back and forward
// restore settings (a slider drag is one history entry), hostile addresses are
// clamped or ignored with a message and never run, charts save as PNG, each view's
// numbers download as CSV and JSON equal to what the page shows, and "Copy table"
// puts Markdown on the clipboard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

import { missing, open, until, state, pplDone } from './helpers.mjs';

const skip = missing() ?? false;
let b; // {page, url, errors, close}

const ready = (page) => until(page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);

/** Waits until the analysis answers the current input and models shown. */
const analysed = (page) => until(page, () => {
  const s = globalThis.quantscope.state();
  const a = s.analysis;
  return a && !a.pending && a.byModel && a.input.text === s.text && a.point === s.point
    && JSON.stringify(a.models) === JSON.stringify(globalThis.quantscope.shown());
});

/** Waits until the quantization results answer the current settings. */
const quantised = (page) => until(page, () => {
  const s = globalThis.quantscope.state();
  const q = s.quantResult;
  return q && !q.pending && q.byModel && JSON.stringify(q.quant) === JSON.stringify(s.quant)
    && q.input.text === s.text && q.ranges === s.ranges && JSON.stringify(q.hist) === JSON.stringify(s.hist)
    && JSON.stringify(q.models) === JSON.stringify(globalThis.quantscope.shown());
});

/** Waits until the address has settled on what the state says (writes are throttled). */
const urlHas = (page, fn) => page.waitForFunction(fn, null, { timeout: 10000, polling: 20 });
const params = (page) => Object.fromEntries(new URL(page.url()).searchParams);

// The controls' part of the state, as the address restores it.
const CONTROLS = ['selected', 'compare', 'text', 'idsText', 'view', 'point', 'scale', 'attn', 'quant', 'ranges', 'hist', 'maskPos',
  'postHocFix'];
const controls = (s) => Object.fromEntries(CONTROLS.map((k) => [k, s[k]]));

const messages = (page) => page.$$eval('#messages .msg', (els) => els.map((e) => ({
  kind: e.classList.contains('error') ? 'error' : 'info', source: e.dataset.source, text: e.querySelector('.msg-text').textContent })));

/** Clicks sel and returns the download it starts: {name, bytes}. */
async function downloadOf(page, sel) {
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), page.click(sel)]);
  return { name: dl.suggestedFilename(), bytes: await readFile(await dl.path()) };
}

/** RFC 4180 rows of objects by the header. */
function parseCsv(text) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; } else if (ch === '\n') { row.push(field.replace(/\r$/, '')); rows.push(row); row = []; field = ''; } else field += ch;
  }
  const [head, ...body] = rows;
  return body.map((r) => Object.fromEntries(head.map((k, j) => [k, r[j]])));
}

before(async () => {
  if (skip) return;
  b = await open();
  await ready(b.page);
  await analysed(b.page);
});

after(async () => {
  if (!b) return;
  await b.close();
  assert.deepEqual(b.errors, [], 'console errors');
});

test('every control round-trips through the address into a fresh tab', { skip }, async () => {
  const p = b.page;
  await p.click('.chip[data-variant=gated]');
  await p.check('#compare');
  await p.fill('#text', 'And God said, Let there be light: and there was light.');
  await p.selectOption('#point', 'ffn_out');
  await p.selectOption('#scale', 'own');
  await analysed(p);
  await p.click('#tab-attention');
  await p.click('#view-attention button.head[aria-label^="layer 1 head 2:"] >> nth=0');
  await p.click('#tab-quant');
  await p.fill('#wbits', '6');
  await p.fill('#abits', '5');
  await p.selectOption('#wgran', 'channel');
  await p.selectOption('#estimator', 'percentile');
  await p.fill('#percentile', '99.9');
  await p.dispatchEvent('#percentile', 'change');
  await p.uncheck('fieldset.points input[value=q]');
  await p.selectOption('#ranges', 'dynamic');
  await p.selectOption('#hist-point', 'attn_res');
  await p.selectOption('#hist-layer', '1');
  await quantised(p);
  // The post-hoc fix: LLM.int8()'s threshold, then SmoothQuant's α (both stay in the state).
  const fixIs = (k, v) => until(p, ([key, val]) => globalThis.quantscope.state().postHocFix[key] === val, [k, v], 60000);
  await p.check('#fix-int8split');
  await fixIs('kind', 'int8split');
  await p.fill('#fix-threshold', '3');
  await fixIs('threshold', 3);
  await p.check('#fix-smoothquant');
  await fixIs('kind', 'smoothquant');
  await p.fill('#fix-alpha', '0.75');
  await fixIs('alpha', 0.75);
  await quantised(p);
  await p.click('#view-quant .top5 button.tok >> nth=3');
  await urlHas(p, () => location.search.includes('mask='));
  const s = await state(p);
  const want = {
    variant: 'gated', compare: '1', text: s.text, view: 'quant', point: 'ffn_out', scale: 'own', layer: '1', head: '2',
    wbits: '6', abits: '5', wgran: 'channel', est: 'percentile', pct: '99.9',
    points: s.pointNames.filter((x) => x !== 'q').join(','), ranges: 'dynamic', hpoint: 'attn_res', hlayer: '1', mask: '3',
    fix: 'smoothquant', alpha: '0.75', threshold: '3',
  };
  assert.deepEqual(params(p), want);

  // The same address in a new tab shows the same controls, in the state and on screen.
  const tab = await p.context().newPage();
  await tab.goto(p.url());
  await ready(tab);
  await quantised(tab);
  assert.deepEqual(controls(await state(tab)), controls(s));
  assert.equal(tab.url(), p.url(), 'the restored page writes the same address');
  for (const [sel, v] of [['#wbits', '6'], ['#abits', '5'], ['#wgran', 'channel'], ['#estimator', 'percentile'],
    ['#percentile', '99.9'], ['#ranges', 'dynamic'], ['#hist-point', 'attn_res'], ['#hist-layer', '1']]) {
    assert.equal(await tab.inputValue(sel), v, sel);
  }
  assert.equal(await tab.isChecked('fieldset.points input[value=q]'), false);
  assert.equal(await tab.isChecked('#fix-smoothquant'), true);
  assert.equal(await tab.inputValue('#fix-alpha'), '0.75');
  assert.equal(await tab.isChecked('#compare'), true);
  assert.equal(await tab.getAttribute('.chip[data-variant=gated]', 'aria-pressed'), 'true');
  assert.equal(await tab.getAttribute('#tab-quant', 'aria-selected'), 'true');
  assert.equal(await tab.inputValue('#text'), s.text);
  // A shipped model by id is written back as its fix chip; the outlier view's selects follow too.
  await tab.goto(`${b.url}web/?model=bert-clipped&point=attn_out&scale=own`);
  await ready(tab);
  await analysed(tab);
  assert.equal((await state(tab)).selected, 'bert-clipped');
  assert.deepEqual(params(tab), { variant: 'clipped', point: 'attn_out', scale: 'own' });
  assert.equal(await tab.inputValue('#point'), 'attn_out');
  assert.equal(await tab.inputValue('#scale'), 'own');
  assert.deepEqual(await messages(tab), []);
  await tab.close();
});

test('back and forward restore the settings; a slider drag is one history entry', { skip }, async () => {
  const p = await b.page.context().newPage();
  await p.goto(`${b.url}web/`);
  await ready(p);
  await analysed(p);
  assert.equal(new URL(p.url()).search, '');
  const h0 = await p.evaluate(() => history.length);
  await p.click('#tab-quant');
  await urlHas(p, () => location.search === '?view=quant');
  // A drag: one input event per step, 30 ms apart.
  await p.evaluate(async () => {
    const el = document.querySelector('#abits');
    for (const v of [7, 6, 5, 4, 3]) {
      el.value = String(v);
      el.dispatchEvent(new Event('input', { bubbles: true }));
      await new Promise((r) => setTimeout(r, 30));
    }
  });
  await urlHas(p, () => location.search === '?view=quant&abits=3');
  assert.equal(await p.evaluate(() => history.length), h0 + 2, 'the view and the whole drag: two entries');
  await p.selectOption('#estimator', 'mse');
  await urlHas(p, () => location.search === '?view=quant&abits=3&est=mse');
  assert.equal(await p.evaluate(() => history.length), h0 + 3);

  const back = async (search) => {
    await p.evaluate(() => history.back());
    await p.waitForFunction((s) => location.search === s, search, { timeout: 10000 });
    await until(p, () => true);
  };
  await back('?view=quant&abits=3');
  let s = await state(p);
  assert.equal(s.quant.estimator, 'running_minmax');
  assert.equal(s.quant.actBits, 3);
  assert.equal(await p.inputValue('#estimator'), 'running_minmax');
  await back('?view=quant');
  s = await state(p);
  assert.equal(s.quant.actBits, 8);
  assert.equal(await p.inputValue('#abits'), '8');
  await back('');
  assert.equal((await state(p)).view, 'outliers');
  assert.equal(await p.getAttribute('#tab-outliers', 'aria-selected'), 'true');
  await p.evaluate(() => history.go(3));
  await p.waitForFunction(() => location.search === '?view=quant&abits=3&est=mse');
  await quantised(p);
  s = await state(p);
  assert.deepEqual([s.view, s.quant.actBits, s.quant.estimator], ['quant', 3, 'mse']);
  assert.equal(await p.evaluate(() => history.length), h0 + 3, 'going back and forth adds no entries');
  await p.close();
});

test('a hostile address is clamped or ignored with a message, and nothing in it runs', { skip }, async () => {
  const p = await b.page.context().newPage();
  let dialogs = 0;
  p.on('dialog', (d) => { dialogs++; d.dismiss(); });
  const text = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>"\'&';
  const q = new URLSearchParams({
    text, abits: '99', wbits: '-3', head: '99999999999999999999999999', layer: '1e400', pct: '1e308',
    est: '<script>alert(1)</script>', model: 'no-such-model', view: 'quant', points: 'q,k,bogus', mask: 'NaN',
    scale: 'x'.repeat(200), compare: 'yes', evil: 'javascript:alert(1)', ['a'.repeat(30)]: '1',
  });
  await p.goto(`${b.url}web/?${q}`);
  await ready(p);
  await quantised(p);
  const s = await state(p);
  assert.equal(s.text, text, 'the text is kept as text');
  assert.equal(await p.inputValue('#text'), text);
  assert.equal(await p.evaluate(() => window.__pwned), undefined, 'no script ran');
  assert.equal(dialogs, 0);
  assert.equal(await p.$('img[src=x]'), null, 'no element came from the text');
  assert.equal(await p.$$eval('script', (els) => els.filter((e) => e.textContent.includes('__pwned')).length), 0);
  assert.equal(s.quant.actBits, 16);
  assert.equal(s.quant.weightBits, 2);
  assert.equal(s.attn.head, 3, 'clamped to the model\'s last head');
  assert.equal(s.attn.layer, 0, 'not a whole number: left at the default');
  assert.equal(s.quant.percentile, 100);
  assert.equal(s.quant.estimator, 'running_minmax');
  assert.deepEqual(s.quant.points, ['q', 'k']);
  assert.equal(s.selected, 'bert-vanilla');
  assert.equal(s.scale, 'shared');
  assert.equal(s.compare, false);
  const msgs = await messages(p);
  const m = msgs.find((x) => x.source === 'url');
  assert.ok(m, `a message about the link: ${JSON.stringify(msgs)}`);
  assert.equal(m.kind, 'error');
  const cut = (v) => `“${v.slice(0, 23)}…”`; // values over 24 characters are cut in messages
  for (const part of [`unknown settings “evil”, ${cut('a'.repeat(30))} ignored`, 'activation bits “99” is above 16: using 16',
    'weight bits “-3” is below 2: using 2', `attention head ${cut('9'.repeat(26))} is above 3: using 3`,
    'attention layer “1e400” is not a whole number: ignored', 'percentile “1e308” is above 100: using 100',
    `range estimator ${cut('<script>alert(1)</script>')} is not one of minmax, running_minmax, percentile, mse: ignored`,
    'model “no-such-model” is not loaded on this page', 'unknown quantized point “bogus”: left out',
    'masked position “NaN” is not a whole number: ignored', 'scale is longer than 64 characters: ignored',
    'compare “yes” is not 0 or 1: ignored']) {
    assert.ok(m.text.includes(part), `the message says: ${part}\n${m.text}`);
  }
  // The address now says what the page shows: clamped values, nothing unknown.
  assert.deepEqual(params(p), { text, view: 'quant', head: '3', wbits: '2', abits: '16', pct: '100', points: 'q,k' });
  await p.close();
});

/** Decodes a PNG in the page: its size and the share of pixels that are not white. */
const decode = (page, bytes) => page.evaluate(async (b64) => {
  const img = new Image(); // the page's CSP allows data: images, not data: fetches
  img.src = `data:image/png;base64,${b64}`;
  await img.decode();
  const c = new OffscreenCanvas(img.width, img.height);
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, img.width, img.height).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240) ink++;
  return { width: img.width, height: img.height, ink: ink / (img.width * img.height) };
}, bytes.toString('base64'));

test('every kind of chart saves as a PNG with its title', { skip }, async () => {
  const p = b.page;
  await p.goto(`${b.url}web/?variant=gated&compare=1`);
  await ready(p);
  await analysed(p);
  const charts = [
    ['outliers', '#view-outliers .bars-row figure.chart >> nth=0', 'canvas.bars', /^max-x-per-layer\.png$/],
    ['outliers', '#view-outliers figure.heat >> nth=0', 'canvas.heatmap', /^vanilla-softmax-layer-0-x-at-ffn-input-output/],
    ['attention', '#view-attention figure.scatter-fig', 'canvas.scatter', /^heads-delimiter-mass-against-output-norm/],
    ['attention', '#view-attention .model-col figure.heat >> nth=0', 'canvas.heatmap', /^vanilla-softmax-layer-0-head-0-attention-map\.png$/],
    ['quant', '#view-quant figure.hist >> nth=0', 'canvas.histogram', /^vanilla-softmax-ffn-input-output/],
    ['quant', '#view-quant .sqnr-row figure.chart', '.linechart canvas', /^sqnr-per-layer\.png$/],
  ];
  for (const [view, fig, canvasSel, name] of charts) {
    await p.click(`#tab-${view}`);
    if (view === 'quant') await quantised(p);
    // A view asks for its own statistics (web/needs.js): the attention view re-runs the
    // forward with head statistics, and its charts redraw when that answer lands.
    else if (view === 'attention') await until(p, () => {
      const a = globalThis.quantscope.state().analysis;
      return a && !a.pending && a.byModel && a.needs?.heads;
    });
    else await until(p, () => true);
    await p.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const figure = p.locator(fig);
    const canvas = figure.locator(canvasSel).first();
    const size = await canvas.evaluate((c) => ({ w: c.width, h: c.height, cssW: c.clientWidth }));
    await figure.hover();
    const { name: file, bytes } = await downloadOf(p, `${fig} >> .save-png`);
    assert.match(file, name);
    assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${file} is a PNG`);
    const img = await decode(p, bytes);
    const dpr = size.w / size.cssW;
    assert.equal(img.width, Math.round((size.cssW + 16) * dpr), `${file}: the chart's width and a margin`);
    assert.ok(img.height > size.h, `${file}: a title above the chart`);
    assert.ok(img.ink > 0.02, `${file}: not blank (${(100 * img.ink).toFixed(1)} % ink)`);
  }
});

test('each view\'s numbers download as CSV and JSON equal to the page\'s', { skip }, async () => {
  const p = b.page;
  await p.goto(`${b.url}web/?variant=gated&compare=1`);
  await ready(p);
  await analysed(p);
  // Outliers: the CSV's figures are the table's exact numbers.
  const shown = await p.$$eval('#outlier-table tbody tr', (rows) => rows.map((r) => ({ model: r.dataset.model, layer: r.dataset.layer,
    ...Object.fromEntries([...r.querySelectorAll('td[data-key]')].map((td) => [td.dataset.key, td.dataset.value])) })));
  const csv = await downloadOf(p, '#exports-outliers button.export-csv[data-table=outliers]');
  assert.equal(csv.name, 'quantscope-outliers-bert-gated-outliers.csv');
  const rows = parseCsv(csv.bytes.toString('utf8'));
  assert.equal(rows.length, shown.length);
  for (const r of shown) {
    const c = rows.find((x) => x.model === r.model && x.layer === r.layer);
    for (const k of ['maxAbs', 'kurtosis', 'rmsKurtosis', 'nOutliers']) assert.equal(c[k], r[k], `${r.model} L${r.layer} ${k}`);
    assert.equal(c.point, 'ffn_res');
  }
  const tokensCsv = parseCsv((await downloadOf(p, '#exports-outliers button.export-csv[data-table=tokens]')).bytes.toString('utf8'));
  const s = await state(p);
  assert.equal(tokensCsv.filter((t) => t.model === 'bert-gated').length, s.analysis.byModel['bert-gated'].T);
  const json = JSON.parse((await downloadOf(p, '#exports-outliers button.export-json')).bytes.toString('utf8'));
  assert.equal(json.view, 'outliers');
  assert.equal(json.url, p.url());
  assert.deepEqual(json.models.map((m) => m.id), ['bert-vanilla', 'bert-gated']);
  assert.equal(json.tables.outliers.length, shown.length);
  for (const r of json.tables.outliers) {
    assert.equal(String(r.maxAbs), shown.find((x) => x.model === r.model && x.layer === String(r.layer)).maxAbs);
  }
  assert.equal(json.tables.summary.length, 2);
  assert.equal(json.input.text, s.text);

  // Attention: every head.
  await p.click('#tab-attention');
  await until(p, () => !!document.querySelector('#head-table'));
  const heads = await p.$$eval('#head-table tbody tr', (trs) => trs.map((tr) => ({ model: tr.dataset.model, layer: tr.dataset.layer,
    head: tr.dataset.head, delimMass: tr.querySelector('td[data-key=delimMass]').dataset.value,
    noopScore: tr.querySelector('td[data-key=noopScore]').dataset.value })));
  const headCsv = parseCsv((await downloadOf(p, '#exports-attention button.export-csv[data-table=heads]')).bytes.toString('utf8'));
  assert.equal(headCsv.length, heads.length);
  for (const r of heads) {
    const c = headCsv.find((x) => x.model === r.model && x.layer === r.layer && x.head === r.head);
    assert.equal(c.delimMass, r.delimMass);
    assert.equal(c.noopScore, r.noopScore);
  }

  // Quantization: perplexities and SQNR.
  await p.click('#tab-quant');
  await quantised(p);
  await pplDone(p);
  const ppl = parseCsv((await downloadOf(p, '#exports-quant button.export-csv[data-table=perplexity]')).bytes.toString('utf8'));
  assert.equal(ppl.length, 2);
  for (const r of ppl) {
    assert.equal(r.setting, 'W8A8');
    assert.equal(r.fpPpl, await p.getAttribute(`#ppl .card[data-model="${r.model}"] .fp-ppl`, 'data-value'));
    assert.equal(r.qPpl, await p.getAttribute(`#ppl .card[data-model="${r.model}"] .q-ppl`, 'data-value'));
  }
  const sqnrShown = await p.$$eval('#sqnr-table td[data-key=sqnr]', (tds) => tds.map((td) => ({
    model: td.closest('tr').dataset.model, point: td.dataset.point, layer: td.dataset.layer, value: td.dataset.value })));
  const sqnr = parseCsv((await downloadOf(p, '#exports-quant button.export-csv[data-table=sqnr]')).bytes.toString('utf8'));
  assert.ok(sqnrShown.length > 0);
  for (const c of sqnrShown) {
    assert.equal(sqnr.find((x) => x.model === c.model && x.point === c.point && x.layer === c.layer).quantSqnrDb, c.value);
  }
  const qjson = JSON.parse((await downloadOf(p, '#exports-quant button.export-json')).bytes.toString('utf8'));
  assert.deepEqual(Object.keys(qjson.tables), ['perplexity', 'sqnr', 'top5']);
  assert.equal(qjson.settings.quant.actBits, 8);
});

test('"Copy table" puts the outlier and perplexity tables on the clipboard as Markdown', { skip }, async () => {
  const p = b.page;
  await p.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: b.url });
  await p.goto(`${b.url}web/?variant=gated&compare=1`);
  await ready(p);
  await analysed(p);
  await p.click('#exports-outliers button.copy-table');
  await until(p, () => globalThis.quantscope.state().messages.some((m) => m.source === 'export'));
  let md = await p.evaluate(() => navigator.clipboard.readText());
  let lines = md.split('\n');
  assert.equal(lines[0], '**Per layer at ffn_res**');
  assert.equal(lines[2], '| model | layer | max ‖x‖∞ | kurtosis | RMS kurtosis | outlier dims | top dims |');
  assert.equal(lines[3], '| --- | --- | --- | --- | --- | --- | --- |');
  const shown = await p.$$eval('#outlier-table tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].slice(0, 6)
    .map((td) => td.textContent)));
  assert.equal(lines.length - 4, shown.length);
  // The cells read as the page's table does (same rounding).
  shown.forEach((cells, i) => assert.deepEqual(lines[4 + i].split(' | ').slice(0, 6).map((c) => c.replace(/^\| /, '')), cells));
  assert.match((await messages(p)).find((m) => m.source === 'export').text, /^Copied the outlier table as Markdown \(8 rows\)\.$/);

  await p.click('#tab-quant');
  await quantised(p);
  await pplDone(p);
  await p.click('#exports-quant button.copy-table');
  await p.waitForFunction(() => navigator.clipboard.readText().then((t) => t.startsWith('**Perplexity')));
  md = await p.evaluate(() => navigator.clipboard.readText());
  lines = md.split('\n');
  assert.equal(lines[0], '**Perplexity on held-out text, float and W8A8**');
  assert.equal(lines[2], '| model | float | W8A8 | change | windows |');
  assert.equal(lines.length, 6);
  for (const [i, id] of ['bert-vanilla', 'bert-gated'].entries()) {
    const card = `#ppl .card[data-model="${id}"]`;
    const cells = lines[4 + i].slice(2, -2).split(' | ');
    assert.equal(cells[0], await p.textContent(`${card} .card-title`));
    assert.equal(cells[1], await p.textContent(`${card} .fp-ppl`));
    assert.equal(cells[2], await p.textContent(`${card} .q-ppl`));
    assert.equal(` ${cells[3]}`, await p.textContent(`${card} .delta`));
  }
});
