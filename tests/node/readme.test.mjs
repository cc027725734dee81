// tests/node/readme.test.mjs: every code block in README.md runs as written,
// so the front door cannot rot. C blocks are compiled with the build line the
// README gives and run; JS blocks run as modules inside the package (so
// `import ... from 'quantscope'` resolves as it does for a user); sh blocks
// run line by line with bash. A block that cannot run here is marked
// `<!-- readme-test: skip (why) -->` on the line before its fence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');

// Blocks in order: language, code, the line where the fence opens, the skip reason
// if marked, and the prose just before (where the C build line is).
function blocks(text) {
  const lines = text.split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^```(\w*)\s*$/);
    if (!open) continue;
    let j = i + 1;
    while (j < lines.length && lines[j] !== '```') j++;
    const skip = (lines[i - 1] ?? '').match(/^<!-- readme-test: skip \((.+)\) -->$/);
    out.push({ lang: open[1], code: lines.slice(i + 1, j).join('\n') + '\n', line: i + 1,
      skip: skip?.[1], before: lines.slice(Math.max(0, i - 6), i).join('\n') });
    i = j;
  }
  return out;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', timeout: 120_000, ...opts });
  return { code: r.status, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

const all = blocks(readme);

test('README has runnable C, JS and sh blocks, and every skipped one says why', () => {
  const langs = new Set(all.filter((b) => !b.skip).map((b) => b.lang));
  for (const l of ['c', 'js', 'sh']) assert.ok(langs.has(l), `no runnable ${l} block`);
  for (const b of all) assert.ok(['c', 'js', 'sh'].includes(b.lang), `README.md:${b.line}: fence language '${b.lang}' (c, js or sh expected)`);
});

for (const b of all) {
  const name = `README.md:${b.line} (${b.lang})`;
  if (b.skip) {
    test(name, { skip: b.skip }, () => {});
    continue;
  }
  test(name, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qs-readme-'));
    try {
      if (b.lang === 'c') {
        const build = b.before.match(/`(gcc [^`]+)`/);
        assert.ok(build, 'a C block is preceded by its build line in backquotes');
        const src = path.join(dir, 'ex.c'), exe = path.join(dir, 'ex');
        writeFileSync(src, b.code);
        const argv = build[1].split(/\s+/).map((a) => (a === 'ex.c' ? src : a === 'ex' ? exe : a));
        const cc = run(argv[0], argv.slice(1));
        assert.equal(cc.code, 0, `${build[1]}\n${cc.err}`);
        const r = run(exe, []);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /max\|x\| [\d.]+ kurtosis [\d.]+/);
        assert.match(r.out, /W8A8 SQNR at layer 1 ffn_res: [\d.]+ dB/);
      } else if (b.lang === 'js') {
        // inside the package, so the bare 'quantscope' import resolves to package.json's exports
        const file = path.join(root, 'build', `readme-example-${process.pid}.mjs`);
        writeFileSync(file, b.code);
        try {
          const r = run(process.execPath, [file]);
          assert.equal(r.code, 0, r.err);
          // Examples may label their figures; they must print at least four, none NaN.
          const words = r.out.trim().split(/\s+/);
          const nums = words.map(Number).filter(Number.isFinite);
          assert.ok(nums.length >= 4 && !words.some((w) => /nan/i.test(w)), r.out);
        } finally {
          rmSync(file, { force: true });
        }
      } else {
        for (const line of b.code.split('\n').filter((l) => l.trim())) {
          const r = run('bash', ['-euo', 'pipefail', '-c', line]);
          assert.equal(r.code, 0, `${line}\n${r.err}`);
          assert.ok(r.out.length > 0, `${line}: printed nothing`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
