// web/panels/controls.js: model picker, fix chips, side-by-side switch, the input
// (text, or token ids for models without a tokenizer) and importing a checkpoint.
import { h, fill } from '../dom.js';
import * as act from '../actions.js';
import { shownModels } from '../state.js';
import { VARIANT_COLORS } from '../charts/colors.js';

const CHIPS = [
  { variant: 'clipped', label: 'clipped softmax', cite: 'Bondarenko et al. 2023, eq. 4.1' },
  { variant: 'gated', label: 'gated attention', cite: 'Bondarenko et al. 2023, eq. 5' },
  { variant: 'op', label: 'OP block', cite: 'He et al. 2024: no norms in the branches, QK-norm' },
  { variant: 'softmax1', label: 'softmax1', cite: 'exp(x) / (1 + Σ exp(x))' },
];

export function mount(root) {
  const modelSel = h('select#model', { on: { change: (e) => act.selectModel(e.target.value) } });
  const chips = CHIPS.map((c) => {
    const b = h('button.chip', { type: 'button', 'aria-pressed': 'false', dataset: { variant: c.variant },
      title: c.cite, on: { click: () => act.toggleVariant(c.variant) } },
    h('span.dot', {}), c.label);
    b.querySelector('.dot').style.background = VARIANT_COLORS[c.variant];
    return b;
  });
  const compare = h('input#compare', { type: 'checkbox', on: { change: (e) => act.setCompare(e.target.checked) } });
  const compareHint = h('span.help', { hidden: true }, '← pick a fix to see it beside vanilla');
  const text = h('textarea#text', { rows: 3, spellcheck: false, 'aria-describedby': 'text-help',
    on: { input: (e) => act.setText(e.target.value) } });
  const ids = h('input#ids', { type: 'text', spellcheck: false, 'aria-describedby': 'ids-help',
    on: { input: (e) => act.setIdsText(e.target.value) } });
  const textHelp = h('p.help#text-help', {});
  const idsHelp = h('p.help#ids-help', {});
  const textBox = h('div.field.textbox', {}, h('label', { for: 'text' }, 'Input text'), text, textHelp);
  const idsBox = h('div.field.idsbox', { hidden: true },
    h('label', { for: 'ids' }, 'Token ids'), ids, idsHelp);
  const file = h('input#import-files', { type: 'file', multiple: true, accept: '.json,.safetensors,.txt',
    on: { change: (e) => { act.importFiles(e.target.files); e.target.value = ''; } } });
  const drop = h('div.dropzone#dropzone', { tabindex: '-1' },
    h('label', { for: 'import-files' }, 'Import a Hugging Face BERT or OPT checkpoint: '),
    file,
    h('span.help', {}, ' or drop config.json + model.safetensors (+ vocab.txt) anywhere on the page.'));

  fill(root,
    h('div.row', {},
      h('div.field', {}, h('label', { for: 'model' }, 'Model'), modelSel),
      h('div.field', { role: 'group', 'aria-labelledby': 'chips-label' },
        h('span.label#chips-label', {}, 'Fix'), h('div.chips', {}, chips)),
      h('div.field.check', {}, compare, h('label', { for: 'compare' }, 'side by side with vanilla'), compareHint)),
    textBox, idsBox, drop);

  // Drag and drop anywhere on the page.
  let depth = 0;
  document.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; document.body.classList.add('dragging'); });
  document.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; document.body.classList.remove('dragging'); } });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove('dragging');
    act.importFiles(e.dataTransfer?.files);
  });

  let modelsKey = '';
  return (s) => {
    const key = s.models.map((m) => m.id).join();
    if (key !== modelsKey) {
      modelsKey = key;
      const groups = [['shipped', 'Shipped models'], ['imported', 'Imported'], ['trained', 'Trained in this tab']];
      fill(modelSel, groups.map(([src, name]) => {
        const ms = s.models.filter((m) => m.source === src);
        return ms.length ? h('optgroup', { label: name }, ms.map((m) => h('option', { value: m.id }, m.title))) : null;
      }));
    }
    modelSel.value = s.selected ?? '';
    modelSel.disabled = s.phase !== 'ready';
    const sel = s.models.find((m) => m.id === s.selected);
    for (const b of chips) {
      const v = b.dataset.variant;
      const has = s.models.some((m) => m.variant === v);
      b.disabled = !has;
      b.setAttribute('aria-pressed', String(sel?.variant === v));
      b.title = has ? CHIPS.find((c) => c.variant === v).cite
        : `No ${v} model is shipped: train one in the Train tab, then open it.`;
    }
    compare.checked = s.compare;
    compare.disabled = !sel?.hasTokenizer;
    compareHint.hidden = !(s.compare && sel?.variant === 'vanilla' && sel?.source === 'shipped');
    const byIds = sel && !sel.hasTokenizer;
    textBox.hidden = !!byIds;
    idsBox.hidden = !byIds;
    if (document.activeElement !== text && text.value !== s.text) text.value = s.text;
    if (document.activeElement !== ids && ids.value !== s.idsText) ids.value = s.idsText;
    const shown = shownModels(s);
    const a = s.analysis?.byModel?.[shown[0]?.id];
    textHelp.textContent = a && !a.tokens.byIds
      ? `${a.T} tokens (bytes, with [CLS] and [SEP])${a.tokens.truncated ? `; the last ${a.tokens.truncated} did not fit the model's ${sel.config.maxPositions} positions and are left out` : ''}.`
      : 'Delimiters (spaces, punctuation, [SEP]) are where “no-op” heads park their attention.';
    idsHelp.textContent = byIds
      ? `${sel.note ?? 'This model has no tokenizer.'} Ids 0 to ${sel.config.vocabSize - 1}, separated by spaces; at most ${sel.config.maxPositions}.`
      : '';
  };
}
