// tests/browser/serve.test.mjs: the demo server: security headers, MIME types, and
// that nothing outside its allow-list can be read (traversal, encodings, symlinks).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, mkdir, writeFile, symlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startServer, CSP } from '../../scripts/serve.mjs';
import { MODELS } from './helpers.mjs';

let srv, base, tmp, tmpSrv;

/** A raw request: the path goes on the wire exactly as given (no URL normalisation). */
function get(origin, path, method = 'GET') {
  const u = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  srv = await startServer({ port: 0, models: MODELS });
  base = srv.url;
  // A root of our own for symlink tests: web/ with a link out and a link in.
  tmp = await mkdtemp(join(tmpdir(), 'qs-serve-'));
  await mkdir(join(tmp, 'web'));
  await writeFile(join(tmp, 'secret.txt'), 'secret');
  await writeFile(join(tmp, 'web', 'real.txt'), 'real');
  await symlink(join(tmp, 'secret.txt'), join(tmp, 'web', 'leak.txt'));
  await symlink(join(tmp, 'web', 'real.txt'), join(tmp, 'web', 'alias.txt'));
  await symlink(tmp, join(tmp, 'web', 'up'));
  tmpSrv = await startServer({ port: 0, root: tmp });
});

after(async () => {
  srv.server.close();
  tmpSrv.server.close();
  await rm(tmp, { recursive: true, force: true });
});

test('binds to 127.0.0.1 only', () => {
  assert.equal(srv.server.address().address, '127.0.0.1');
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
});

test('the page comes with cross-origin isolation and a strict CSP', async () => {
  const r = await get(base, '/web/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp');
  assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin');
  assert.equal(r.headers['content-security-policy'], CSP);
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  for (const bad of ["'unsafe-eval'", "'unsafe-inline'", '*']) assert.ok(!CSP.includes(bad), `CSP has ${bad}`);
  for (const need of ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "worker-src 'self'",
    "style-src 'self'", "object-src 'none'", "base-uri 'none'", "connect-src 'self'"]) assert.ok(CSP.includes(need), need);
});

test('MIME types: wasm, ES modules, JSON, safetensors, the charting library', async () => {
  const cases = [
    ['/build/wasm/quantscope_core.wasm', 'application/wasm'],
    ['/build/wasm/quantscope_core.mjs', 'text/javascript; charset=utf-8'],
    ['/wasm/quantscope.mjs', 'text/javascript; charset=utf-8'],
    ['/web/main.js', 'text/javascript; charset=utf-8'],
    ['/web/style.css', 'text/css; charset=utf-8'],
    ['/models/index.json', 'application/json; charset=utf-8'],
    ['/node_modules/uplot/dist/uPlot.esm.js', 'text/javascript; charset=utf-8'],
    ['/node_modules/uplot/dist/uPlot.min.css', 'text/css; charset=utf-8'],
  ];
  for (const [path, type] of cases) {
    const r = await get(base, path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers['content-type'], type, path);
    assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin', path);
  }
  const idx = JSON.parse((await get(base, '/models/index.json')).body);
  const st = await get(base, `/models/${idx.models[0].id}/model.safetensors`, 'HEAD');
  assert.equal(st.status, 200);
  assert.equal(st.headers['content-type'], 'application/octet-stream');
});

test('/ and /web redirect to the page', async () => {
  for (const p of ['/', '/web']) {
    const r = await get(base, p);
    assert.equal(r.status, 302, p);
    assert.equal(r.headers.location, '/web/');
  }
});

test('traversal and odd paths are refused, whatever the encoding', async () => {
  const refused = [
    '/web/../package.json', '/web/./index.html', '/web/%2e%2e/package.json', '/web/%2E%2E/%2E%2E/etc/passwd',
    '/web/..%2fpackage.json', '/web/..%2Fpackage.json', '/web/%252e%252e/package.json', '/web/%2e%2e%2fpackage.json',
    '//etc/passwd', '/web//index.html', '/web/..\\package.json', '/web/%5c..%5cpackage.json', '/web/%00',
    '/web/index.html%00.js', '/models/../package.json', '/build/wasm/../../package.json', '/web/%',
    'http://127.0.0.1/web/../package.json', '/node_modules/uplot/dist/../package.json',
  ];
  for (const p of refused) {
    const r = await get(base, p);
    assert.ok(r.status === 400 || r.status === 404, `${p} -> ${r.status}`);
    assert.ok(!r.body.toString().includes('"name": "quantscope"'), `${p} leaked package.json`);
  }
});

test('only allowed folders and file types are served', async () => {
  for (const p of ['/package.json', '/scripts/serve.mjs', '/src/model/model.c', '/include/quantscope/model.h',
    '/.git/config', '/web/.hidden', '/node_modules/playwright-core/package.json', '/node_modules/uplot/package.json',
    '/data/kjv.txt', '/tests/golden/bert/config.json', '/build/native/qs', '/wasm/exports.c', '/etc/passwd']) {
    const r = await get(base, p);
    assert.equal(r.status, 404, p);
  }
});

test('methods other than GET and HEAD are refused', async () => {
  for (const m of ['POST', 'PUT', 'DELETE']) {
    const r = await get(base, '/web/', m);
    assert.equal(r.status, 405, m);
    assert.equal(r.headers.allow, 'GET, HEAD');
  }
});

test('symlinks may not leave their allowed folder', async () => {
  assert.equal((await get(tmpSrv.url, '/web/real.txt')).body.toString(), 'real');
  assert.equal((await get(tmpSrv.url, '/web/alias.txt')).body.toString(), 'real');
  const leak = await get(tmpSrv.url, '/web/leak.txt');
  assert.equal(leak.status, 403);
  assert.ok(!leak.body.toString().includes('secret'));
  const up = await get(tmpSrv.url, '/web/up/secret.txt');
  assert.equal(up.status, 403);
  assert.ok(!up.body.toString().includes('secret'));
});
