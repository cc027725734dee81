// web/panels/exports.js: each view's export bar: its numbers as CSV (one file per
// table) and JSON (all tables with the settings and address), and "Copy table"
// (Markdown) where the view has a table worth pasting.
import { h } from '../dom.js';
import * as act from '../actions.js';
import { getState } from '../state.js';
import { viewTables, toCsv, toJson, markdownFor } from '../tables.js';
import { download, copyText } from '../save.js';

// The tables each view has (tables.js), and whether it copies as Markdown.
const VIEW_TABLES = {
  outliers: { tables: ['outliers', 'summary', 'tokens'], copy: 'the outlier table' },
  attention: { tables: ['heads'], copy: 'the head table' },
  quant: { tables: ['perplexity', 'sqnr', 'top5'], copy: 'the perplexity table' },
  train: { tables: ['steps', 'evals'], copy: null },
};

function tablesNow(view) {
  const s = getState();
  const tables = viewTables(s, view);
  if (!tables.length) act.message('info', 'Nothing to export yet: the results are still being computed.', 'export');
  return { s, tables };
}

const baseName = (s, view) => `quantscope-${view}-${s.selected ?? 'page'}`;

function saveCsv(view, name) {
  const { s, tables } = tablesNow(view);
  if (!tables.length) return;
  const t = tables.find((x) => x.name === name);
  if (!t) { act.message('info', `No ${name} table yet: its results are still being computed.`, 'export'); return; }
  download(`${baseName(s, view)}-${name}.csv`, toCsv(t), 'text/csv');
}

function saveJson(view) {
  const { s, tables } = tablesNow(view);
  if (tables.length) download(`${baseName(s, view)}.json`, toJson(s, view, tables, location.href), 'application/json');
}

async function copy(view, what) {
  const md = markdownFor(getState(), view);
  if (!md) { act.message('info', `Nothing to copy yet: ${what} is still being computed.`, 'export'); return; }
  try {
    await copyText(md);
    act.message('info', `Copied ${what} as Markdown (${md.split('\n').length - 4} rows).`, 'export');
  } catch (e) {
    act.message('error', `Could not copy ${what}: ${e.message}.`, 'export');
  }
}

/** Puts the export bar at the top of a view's section. */
export function mount(root, view) {
  const spec = VIEW_TABLES[view];
  const bar = h(`div.exports#exports-${view}`, { role: 'group', 'aria-label': `export the ${view} view` },
    h('span.label', {}, 'Numbers:'),
    spec.tables.map((name) => h('button.export-csv', { type: 'button', dataset: { table: name },
      title: `download the ${name} table as CSV`, on: { click: () => saveCsv(view, name) } }, `${name}.csv`)),
    h('button.export-json', { type: 'button', title: 'download every table of this view with its settings as JSON',
      on: { click: () => saveJson(view) } }, 'JSON'),
    spec.copy ? h('button.copy-table', { type: 'button', title: `copy ${spec.copy} as Markdown`,
      on: { click: () => copy(view, spec.copy) } }, 'Copy table') : null);
  root.prepend(bar);
}
