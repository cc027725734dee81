#!/usr/bin/env node
// scripts/web-corpus.mjs [CORPUS]: the page's corpus slice, cut from data/kjv.txt
// (scripts/kjv.sh) with the trainer's own train/validation split (qs_text_split, the
// trainer's default validation share):
//   build/web/kjv-train.txt    ~192 KiB of training text, for training in the tab
//   build/web/kjv-heldout.txt  ~64 KiB of validation text, which the shipped models
//                              never saw, for the page's perplexities
// Both are whole lines. Idempotent; exits 0 with a note when the corpus is missing
// (the page then explains how to make it).
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { textSplit } from '../wasm/quantscope.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const corpus = process.argv[2] ?? join(ROOT, 'data', 'kjv.txt');
const outDir = join(ROOT, 'build', 'web');
const TRAIN_BYTES = 192 * 1024;
const HELDOUT_BYTES = 64 * 1024;

/** The first whole lines of text that fit in n bytes (ASCII text: chars = bytes). */
function head(text, n) {
  if (text.length <= n) return text;
  const cut = text.lastIndexOf('\n', n);
  return text.slice(0, cut > 0 ? cut + 1 : n);
}

async function writeAtomic(path, text) {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

let text;
try {
  text = await readFile(corpus, 'utf8');
} catch {
  console.log(`web-corpus: ${corpus} is missing: run scripts/kjv.sh first; the page works without `
    + 'it but cannot train or show perplexities');
  process.exit(0);
}
const [train, val] = await Promise.all([
  textSplit(text, { split: 'train' }),
  textSplit(text, { split: 'val' }),
]);
await mkdir(outDir, { recursive: true });
const files = [[join(outDir, 'kjv-train.txt'), head(train, TRAIN_BYTES)],
  [join(outDir, 'kjv-heldout.txt'), head(val, HELDOUT_BYTES)]];
for (const [path, body] of files) {
  await mkdir(dirname(path), { recursive: true });
  await writeAtomic(path, body);
}
console.log(`web-corpus: wrote ${files.map(([p, b]) => `${p.slice(ROOT.length)} (${b.length} B)`).join(', ')}`);
