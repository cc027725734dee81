// tests/browser/optimizer.test.mjs: the training view's optimiser choice in headless
// Chromium: SOAP picked in the form trains a tiny model in the tab, the loss stays
// finite and the signal-propagation chart draws its points.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { missing, open, state, until, screenshot, setNumber } from './helpers.mjs';

const skip = missing() ?? false;
let b;

before(async () => {
  if (skip) return;
  b = await open();
  await until(b.page, () => globalThis.quantscope?.state().phase === 'ready', null, 60000);
});

after(async () => { if (b) await b.close(); });

/** Pixels of the canvas under sel that are coloured (series), not white, grey or black (background, grid, text). */
const colouredPixels = (page, sel) => page.$eval(sel, (canvas) => {
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, bl, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 128 && Math.max(r, g, bl) - Math.min(r, g, bl) > 60) n++;
  }
  return n;
});

test('training view: SOAP picked in the form trains, and the correlation chart draws', { skip }, async () => {
  if (!(await state(b.page)).corpus.train) {
    assert.ok(await b.page.isDisabled('#train-start'));
    return; // no corpus slice in build/web: training is off, as the page says
  }
  await b.page.click('#tab-train');
  const lr = await b.page.inputValue('#train-lr');
  const hint = () => b.page.textContent('#train-optimizer-hint');
  assert.match(await hint(), /^AdamW/);
  await b.page.selectOption('#train-optimizer', 'soap');
  // The form re-renders on the store's next frame, not inside the change event: wait for it
  // (a loaded machine read the old hint here once).
  await b.page.waitForFunction(() => document.querySelector('#train-optimizer-hint').textContent.startsWith('SOAP'));
  assert.match(await hint(), /^SOAP.*switching leaves it alone/);
  assert.equal(await b.page.inputValue('#train-lr'), lr, 'the learning rate stays as shown');
  assert.equal(await b.page.getAttribute('#train-optimizer', 'aria-describedby'), 'train-optimizer-hint');
  // A small run: 1 layer, d 32, 4 x 32 tokens, 20 steps (evaluations at 0 and 20).
  await setNumber(b.page, '#train-layers', 1);
  await b.page.selectOption('#train-hidden', '32');
  await b.page.selectOption('#train-heads', '2');
  await b.page.selectOption('#train-seq', '32');
  await setNumber(b.page, '#train-batch', 4);
  await setNumber(b.page, '#train-steps', 20);
  assert.equal((await state(b.page)).train.form.optimizer, 'soap');
  const t0 = Date.now();
  await b.page.click('#train-start');
  await until(b.page, () => globalThis.quantscope.state().train.runs.at(-1)?.status === 'done', null, 45000);
  const run = (await state(b.page)).train.runs.at(-1);
  assert.equal(run.optimizer, 'soap', 'the worker\'s trainer reports SOAP');
  assert.match(run.label, /soap/);
  assert.equal(run.step, 20);
  assert.equal(run.curve.loss.length, 20);
  for (const l of run.curve.loss) assert.ok(Number.isFinite(l) && l > 0, `loss ${l}`);
  assert.ok(run.evals.valLoss.every(Number.isFinite));
  assert.deepEqual(run.evals.step, [0, 20]);
  for (const c of run.evals.corr) assert.ok(c > -1 && c < 1 && c !== 0, `avg input-wise correlation ${c}`);
  assert.match(await b.page.textContent(`.run[data-run="${run.runId}"] .run-status`), /corr \d\.\d{3}/);
  // The fourth chart: labelled for screen readers, captioned, and its points drawn (uPlot draws the axis titles on the canvas).
  const fig = '#view-train #train-corr';
  assert.match(await b.page.getAttribute(`${fig} .linechart`, 'aria-label'), /signal propagation/);
  assert.match(await b.page.textContent(`${fig} figcaption`), /He et al\./);
  assert.ok(await colouredPixels(b.page, `${fig} canvas`) > 20, 'the series is drawn');
  console.log(`# SOAP run in the tab: 20 steps in ${((Date.now() - t0) / 1000).toFixed(1)} s, `
    + `loss ${run.curve.loss[0].toFixed(3)} -> ${run.curve.loss.at(-1).toFixed(3)}, corr ${run.evals.corr.map((c) => c.toFixed(3)).join(' -> ')}`);
  await screenshot(b.page, 'train-soap');
  assert.deepEqual(b.errors, []);
});
