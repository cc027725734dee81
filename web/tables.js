// web/tables.js: the numbers behind each view as tables, and those tables as CSV,
// JSON and Markdown: what the download and "Copy table" buttons hand over.
// Tables carry the exact numbers the worker sent; only Markdown rounds (format.js).
import { shownModels } from './state.js';
import { analysisServes } from './needs.js';
import { num, change } from './format.js';

// A table: {name, title, columns: [{key, label}], rows: [{key: value}]}.
const col = (key, label = key) => ({ key, label });

/** The tables of a view for state s ([] while its results are not in). */
export function viewTables(s, view) {
  if (view === 'outliers') return outlierTables(s);
  if (view === 'attention') return attentionTables(s);
  if (view === 'quant') return quantTables(s);
  if (view === 'train') return trainTables(s);
  return [];
}

/** The models shown that have results in byModel. */
const withResults = (s, byModel) => (byModel ? shownModels(s).filter((m) => byModel[m.id]) : []);

function outlierTables(s) {
  const a = s.analysis;
  const models = analysisServes(a, 'outliers') ? withResults(s, a.byModel) : [];
  if (!models.length) return [];
  const layers = {
    name: 'outliers', title: `Per layer at ${a.point}`,
    columns: [col('model'), col('layer'), col('point'), col('maxAbs', 'max ‖x‖∞'), col('kurtosis'),
      col('rmsKurtosis', 'RMS kurtosis'), col('mean'), col('std'), col('min'), col('max'),
      col('nOutliers', 'outlier dims'), col('topDims', 'top dims'), col('topVals', 'top |x|'), col('topTokens', 'at tokens')],
    rows: models.flatMap((m) => a.byModel[m.id].points.filter((p) => p.point === a.point).map((p) => ({
      model: m.id, layer: p.layer, point: p.point, maxAbs: p.maxAbs, kurtosis: p.kurtosis, rmsKurtosis: p.rmsKurtosis,
      mean: p.mean, std: p.std, min: p.min, max: p.max, nOutliers: p.nOutliers,
      topDims: p.topDims.join(' '), topVals: p.topVals.join(' '), topTokens: p.topTokens.join(' '),
    }))),
  };
  const summaries = models.filter((m) => a.byModel[m.id].summary);
  const keys = summaries.length ? Object.keys(a.byModel[summaries[0].id].summary) : [];
  const summary = {
    name: 'summary', title: 'The paper’s figures for this input (qs_outlier_summary)',
    columns: [col('model'), ...keys.map((k) => col(k))],
    rows: summaries.map((m) => ({ model: m.id, ...a.byModel[m.id].summary })),
  };
  const tokens = {
    name: 'tokens', title: 'The input as each model reads it',
    columns: [col('model'), col('index'), col('piece'), col('delimiter')],
    rows: models.flatMap((m) => {
      const t = a.byModel[m.id].tokens;
      return Array.from(t.pieces, (piece, i) => ({ model: m.id, index: i, piece, delimiter: t.delimiters[i] ? 1 : 0 }));
    }),
  };
  return [layers, summary, tokens];
}

const HEAD_KEYS = ['delimMass', 'outNorm', 'valueNorm', 'delimValueNorm', 'entropy', 'maxProb', 'noopScore', 'gateMean'];

function attentionTables(s) {
  const a = s.analysis;
  const models = analysisServes(a, 'attention') ? withResults(s, a.byModel) : [];
  if (!models.length) return [];
  return [{
    name: 'heads', title: 'Every head (means over query tokens)',
    columns: [col('model'), col('layer'), col('head'), ...HEAD_KEYS.map((k) => col(k))],
    rows: models.flatMap((m) => a.byModel[m.id].heads.flatMap((row, l) => row.map((st, hd) => ({
      model: m.id, layer: l, head: hd, ...Object.fromEntries(HEAD_KEYS.map((k) => [k, m.config.gate === 'none' && k === 'gateMean' ? null : st[k]])),
    })))),
  }];
}

function quantTables(s) {
  const out = [];
  const p = s.ppl;
  const pm = withResults(s, p?.byModel);
  if (pm.length && !p.pending) {
    const setting = `W${p.quant.weightBits}A${p.quant.actBits}`;
    out.push({
      name: 'perplexity', title: `Perplexity on held-out text, float and ${setting}`,
      columns: [col('model'), col('setting'), col('fpPpl', 'float'), col('qPpl', setting), col('change'),
        col('nWindows', 'windows'), col('nPredicted', 'tokens scored'), col('seqLen', 'window length'), col('unavailable')],
      rows: pm.map((m) => {
        const r = p.byModel[m.id];
        return r.unavailable ? { model: m.id, setting, unavailable: r.unavailable }
          : { model: m.id, setting, fpPpl: r.fpPpl, qPpl: r.qPpl, change: r.qPpl / r.fpPpl - 1,
            nWindows: r.nWindows, nPredicted: r.nPredicted, seqLen: r.seqLen };
      }),
    });
  }
  const qr = s.quantResult;
  const qm = withResults(s, qr?.byModel);
  if (qm.length) {
    out.push({
      name: 'sqnr', title: 'Quantization error per point and layer',
      columns: [col('model'), col('point'), col('layer'), col('quantized'), col('quantSqnrDb', 'SQNR (dB)'),
        col('quantMse', 'MSE'), col('quantMin', 'range min'), col('quantMax', 'range max'), col('maxAbs', 'max ‖x‖∞')],
      rows: qm.flatMap((m) => qr.byModel[m.id].points.map((x) => ({
        model: m.id, point: x.point, layer: x.layer, quantized: x.quantized ? 1 : 0,
        quantSqnrDb: x.quantized ? x.quantSqnrDb : null, quantMse: x.quantized ? x.quantMse : null,
        quantMin: x.quantized ? x.quantMin : null, quantMax: x.quantized ? x.quantMax : null, maxAbs: x.maxAbs,
      }))),
    });
    out.push({
      name: 'top5', title: 'Top-5 predictions, float and quantized',
      columns: [col('model'), col('position'), col('kind'), col('rank'), col('id'), col('piece'), col('p')],
      rows: qm.flatMap((m) => {
        const t = qr.byModel[m.id].top5;
        return ['fp', 'q'].flatMap((kind) => t[kind].map((it, rank) => ({
          model: m.id, position: t.pos, kind, rank: rank + 1, id: it.id, piece: it.piece, p: it.p })));
      }),
    });
  }
  return out;
}

function trainTables(s) {
  const runs = s.train.runs;
  if (!runs.length) return [];
  return [{
    name: 'steps', title: 'Training loss per step',
    columns: [col('run'), col('variant'), col('step'), col('loss')],
    rows: runs.flatMap((r) => r.curve.step.map((step, i) => ({ run: r.label, variant: r.variant, step, loss: r.curve.loss[i] }))),
  }, {
    name: 'evals', title: 'Validation and outlier figures during training',
    columns: [col('run'), col('variant'), col('step'), col('valLoss', 'validation loss'), col('maxInf', 'max ‖x‖∞'),
      col('kurt', 'max kurtosis'), col('rmsKurt', 'mean RMS kurtosis')],
    rows: runs.flatMap((r) => r.evals.step.map((step, i) => ({ run: r.label, variant: r.variant, step,
      valLoss: r.evals.valLoss[i], maxInf: r.evals.maxInf[i], kurt: r.evals.kurt[i], rmsKurt: r.evals.rmsKurt[i] }))),
  }];
}

// ----------------------------------------------------------------- formats

/** RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
function csvField(v) {
  if (v === null || v === undefined) return '';
  const t = String(v);
  return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

export function toCsv(table) {
  const lines = [table.columns.map((c) => csvField(c.key)).join(',')];
  for (const r of table.rows) lines.push(table.columns.map((c) => csvField(r[c.key])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** Every table of a view with what produced it: the page's address, the models, the time. */
export function toJson(s, view, tables, href) {
  const models = shownModels(s).map((m) => ({ id: m.id, title: m.title, variant: m.variant, arch: m.arch, source: m.source,
    config: m.config }));
  const body = { quantscope: 'page export', view, url: href, date: new Date().toISOString(), models,
    input: s.models.find((m) => m.id === s.selected)?.hasTokenizer ? { text: s.text } : { ids: s.idsText },
    settings: view === 'quant' ? { quant: s.quant, ranges: s.ranges, hist: s.hist, maskPos: s.maskPos }
      : view === 'outliers' ? { point: s.point } : view === 'attention' ? { attn: s.attn } : { train: s.train.form },
    tables: Object.fromEntries(tables.map((t) => [t.name, t.rows])) };
  // NaN and ±Infinity (an SQNR with no error) have no JSON form: JSON.stringify writes null.
  return `${JSON.stringify(body, null, 1)}\n`;
}

/** A Markdown cell: numbers rounded as the page shows them, pipes escaped. */
function mdCell(v) {
  if (v === null || v === undefined) return '–';
  const t = typeof v === 'number' ? num(v) : String(v);
  return t.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

export function toMarkdown(table, columns = table.columns) {
  const head = `| ${columns.map((c) => mdCell(c.label)).join(' | ')} |`;
  const rule = `|${columns.map(() => ' --- ').join('|')}|`;
  const rows = table.rows.map((r) => `| ${columns.map((c) => mdCell(r[c.key])).join(' | ')} |`);
  return [`**${mdCell(table.title)}**`, '', head, rule, ...rows].join('\n');
}

/**
 * The tables "Copy table" puts on the clipboard for a view, as Markdown: the
 * outlier view's per-layer table, the attention heads, the perplexities of
 * the quantization view. Model titles instead of ids.
 */
export function markdownFor(s, view) {
  const titled = (t) => ({ ...t, rows: t.rows.map((r) => ({ ...r, model: s.models.find((m) => m.id === r.model)?.title ?? r.model })) });
  const tables = viewTables(s, view).map(titled);
  const pick = (name, keys) => {
    const t = tables.find((x) => x.name === name);
    return t ? toMarkdown(t, keys.map((k) => t.columns.find((c) => c.key === k))) : null;
  };
  let parts = [];
  if (view === 'outliers') parts = [pick('outliers', ['model', 'layer', 'maxAbs', 'kurtosis', 'rmsKurtosis', 'nOutliers', 'topDims'])];
  else if (view === 'attention') parts = [pick('heads', ['model', 'layer', 'head', ...HEAD_KEYS])];
  else if (view === 'quant') {
    const t = tables.find((x) => x.name === 'perplexity');
    if (t) {
      // The change as the page writes it (+12.3 %), not as a ratio.
      const rows = t.rows.map((r) => ({ ...r, change: r.unavailable ? r.unavailable : change(r.fpPpl, r.qPpl) }));
      parts.push(toMarkdown({ ...t, rows }, ['model', 'fpPpl', 'qPpl', 'change', 'nWindows'].map((k) => t.columns.find((c) => c.key === k))));
    }
  }
  return parts.filter(Boolean).join('\n\n');
}
