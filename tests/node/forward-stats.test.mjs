// tests/node/forward-stats.test.mjs: forward()'s `stats` option (C: qs_forward_opts
// skip_stats, skip_point_stats, skip_head_stats): a pass computing a selection
// reports the very numbers of a pass computing all, marks the rest as not
// measured (hasStats false, null measures) and leaves heads and summary null
// where it left out what they are made of.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadModel, pointNames } from '../../wasm/quantscope.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SUMMARY = ['ffn_out', 'ffn_res', 'layer_out'];
const TEXT = 'And God said, Let there be light: and there was light.';

/** The shipped models when built (bert-vanilla, bert-gated), else the golden BERT and OPT. */
function modelDirs() {
  const shipped = ['bert-vanilla', 'bert-gated'].map((m) => join(ROOT, 'models', m))
    .filter((d) => existsSync(join(d, 'model.safetensors')));
  return [...shipped, join(ROOT, 'tests/golden/bert'), join(ROOT, 'tests/golden/opt')];
}

async function inputs(model) {
  if (model.hasTokenizer) {
    const enc = await model.tokenize(TEXT);
    return { ids: enc.ids, delimiters: enc.delimiters };
  }
  const ids = Int32Array.from({ length: 20 }, (_, i) => 3 + ((i * 37) % (model.config.vocabSize - 3)));
  return { ids, delimiters: Uint8Array.from(ids, (_, i) => (i % 5 === 0 ? 1 : 0)) };
}

const key = (p) => `${p.layer}:${p.point}`;

/** sel against full: same logits, selected points the same objects, the rest unmeasured. */
function sameAsFull(full, sel, wanted, what) {
  assert.deepEqual(sel.logits, full.logits, `${what}: logits`);
  assert.deepEqual(sel.points.map(key), full.points.map(key), `${what}: the same points, in order`);
  const byKey = new Map(full.points.map((p) => [key(p), p]));
  for (const p of sel.points) {
    const f = byKey.get(key(p));
    assert.equal(f.hasStats, true);
    if (wanted(p.point)) {
      assert.deepEqual(p, f, `${what}: ${key(p)} as in the full pass`);
    } else {
      assert.equal(p.hasStats, false, `${what}: ${key(p)} not measured`);
      for (const k of ['maxAbs', 'mean', 'std', 'min', 'max', 'kurtosis', 'rmsKurtosis', 'quantMse', 'quantSqnrDb', 'nOutliers']) {
        assert.equal(p[k], null, `${what}: ${key(p)}.${k}`);
      }
      assert.deepEqual([p.topDims, p.topVals, p.topTokens], [[], [], []]);
      for (const k of ['rows', 'cols', 'quantized', 'quantMin', 'quantMax']) assert.equal(p[k], f[k], `${what}: ${key(p)}.${k}`);
    }
  }
}

test('a selection gives the full pass\'s numbers at the points it names, and nothing for the rest', async () => {
  const names = (await pointNames()).map((p) => p.name);
  for (const dir of modelDirs()) {
    const model = await loadModel(dir);
    const { ids, delimiters } = await inputs(model);
    const capture = ['ffn_res', 'probs'];
    for (const quant of [undefined, {}]) {
      const what = `${dir.split('/').slice(-2).join('/')}${quant ? ' W8A8' : ''}`;
      const base = { delimiters, capture, ...(quant ? { quant } : {}) };
      const full = await model.forward(ids, base);
      assert.ok(full.heads && full.summary && full.points.every((p) => p.hasStats === true));
      const selections = [
        { points: ['ffn_res', ...SUMMARY], heads: false }, // the page's outlier view
        { points: [], heads: true },                        // its attention view
        { points: ['q', 'scores', 'embed', 'final'] },
        { points: names.filter((_, i) => i % 2) , heads: false },
        {},
      ];
      for (const stats of selections) {
        const sel = await model.forward(ids, { ...base, stats });
        const wanted = (p) => !stats.points || stats.points.includes(p);
        const tag = `${what} ${JSON.stringify(stats)}`;
        sameAsFull(full, sel, wanted, tag);
        assert.deepEqual(sel.heads, stats.heads === false ? null : full.heads, `${tag}: heads`);
        assert.deepEqual(sel.summary, SUMMARY.every(wanted) ? full.summary : null, `${tag}: summary`);
        assert.deepEqual(sel.captures, full.captures, `${tag}: captures do not depend on statistics`);
      }
      // false: no statistics at all, the same logits.
      const none = await model.forward(ids, { ...base, stats: false });
      sameAsFull(full, none, () => false, `${what} stats: false`);
      assert.equal(none.heads, null);
      assert.equal(none.summary, null);
      // true is the default.
      assert.deepEqual(await model.forward(ids, { ...base, stats: true }), full);
    }
    await model.dispose();
  }
});

test('the stats option is checked: its type, its keys, point names, heads', async () => {
  const model = await loadModel(join(ROOT, 'tests/golden/bert'));
  const ids = [2, 15, 77, 120, 5, 9, 3];
  const bad = [
    [1, /^forward: stats must be true, false or an object \{ points, heads \}$/],
    [null, /^forward: stats must be true, false or an object/],
    [['ffn_res'], /^forward: stats must be true, false or an object/],
    [{ point: ['ffn_res'] }, /^forward: unknown stats key 'point' \(valid: points, heads\)$/],
    [{ points: ['ffn_resid'] }, /^forward: stats\.points: unknown point 'ffn_resid'/],
    [{ points: 'ffn_res' }, /^forward: stats\.points must be an array of point names$/],
    [{ heads: 1 }, /^forward: stats\.heads must be a boolean, got number$/],
  ];
  for (const [stats, message] of bad) {
    await assert.rejects(model.forward(ids, { stats }), (e) => e.code === 'QS_ERR_ARG' && message.test(e.message),
      JSON.stringify(stats));
  }
  // The model still works, and an empty selection with heads is just the heads.
  const r = await model.forward(ids, { stats: { points: [] } });
  assert.ok(r.points.every((p) => p.hasStats === false) && r.heads.length === model.config.nLayers && r.summary === null);
  await model.dispose();
});
