#!/usr/bin/env node
// scripts/serve.mjs [--port 8080] [--models DIR]: serves the demo page and only the files it needs
// (an allow-list of folders), on 127.0.0.1, with COOP/COEP/CORP and a strict CSP.
// No dependencies: node:http and node:fs only, so it works offline from a fresh clone.
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { extname, join, resolve as resolve_, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// URL paths mirror the repository layout, so the page's relative imports
// (web/worker.js -> ../wasm/quantscope.mjs -> js/runtime.mjs -> ../../build/wasm/...)
// resolve the same way on disk and over HTTP. Only these folders are reachable.
export const ALLOWED = [
  'web',                  // the page
  'wasm',                 // the ES module API
  'build/wasm',           // its Emscripten artefacts
  'build/wasm-threads',   // the optional pthreads build of them
  'build/web',            // the corpus slice (scripts/web-corpus.mjs)
  'models',               // shipped checkpoints and index.json
  'node_modules/uplot/dist', // the charting library
];

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.csv': 'text/csv; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

// 'wasm-unsafe-eval' lets WebAssembly compile; no 'unsafe-eval' or 'unsafe-inline'.
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
  + "style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
  + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const SECURITY_HEADERS = {
  // Cross-origin isolation: SharedArrayBuffer (WASM threads) needs COOP + COEP.
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/**
 * The file a URL path names, or an HTTP status explaining why not. Rejects
 * anything that is not a plain relative path of ordinary segments: '..' and '.'
 * (also percent-encoded), empty segments ('//'), backslashes, NUL, hidden
 * files, and paths outside the allow-list; symlinks are resolved and must
 * stay inside their allowed folder.
 */
export async function resolvePath(urlPath, root = ROOT, dirs = {}) {
  if (urlPath === '/' || urlPath === '') return { redirect: '/web/' };
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return { status: 400, why: 'bad percent-encoding' };
  }
  if (!decoded.startsWith('/')) return { status: 400, why: 'not an absolute URL path' };
  if (/[\\\0]/.test(decoded)) return { status: 400, why: 'backslash or NUL in path' };
  // A second decode must not reveal dots or slashes (double encoding).
  if (/%2e|%2f|%5c/i.test(decoded)) return { status: 400, why: 'encoded dot or slash in path' };
  let rel = decoded.slice(1);
  const dirIndex = rel === '' || rel.endsWith('/');
  if (dirIndex) rel += 'index.html';
  const segments = rel.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') return { status: 400, why: 'empty, . or .. segment' };
    if (s.startsWith('.')) return { status: 404, why: 'hidden file' };
  }
  const relPath = segments.join('/');
  const base = ALLOWED.find((a) => relPath.startsWith(`${a}/`));
  if (!base) {
    // /web (no slash) -> /web/; anything else is not served.
    if (ALLOWED.includes(relPath) && !dirIndex) return { redirect: `/${relPath}/` };
    return { status: 404, why: 'not in an allowed folder' };
  }
  const type = MIME[extname(relPath).toLowerCase()];
  if (!type) return { status: 404, why: 'file type not served' };
  // Each allowed folder is the repository's own unless dirs moves it (--models DIR).
  const baseDir = dirs[base] ?? join(root, ...base.split('/'));
  const file = join(baseDir, ...segments.slice(base.split('/').length));
  let real, realBase, info;
  try {
    [real, realBase] = await Promise.all([realpath(file), realpath(baseDir)]);
    info = await stat(real);
  } catch {
    return { status: 404, why: 'no such file' };
  }
  if (!(real + sep).startsWith(realBase + sep) || real === realBase) {
    return { status: 403, why: 'symlink leaves its allowed folder' };
  }
  if (!info.isFile()) return { status: 404, why: 'not a file' };
  return { file: real, type, size: info.size, mtime: info.mtime };
}

/** The request handler (exported for tests). */
export function handler(root = ROOT, { log = false, dirs = {} } = {}) {
  return async (req, res) => {
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, 'method not allowed\n', { Allow: 'GET, HEAD' });
      return;
    }
    const raw = req.url ?? '/';
    const path = raw.split('?')[0].split('#')[0];
    const r = await resolvePath(path, root, dirs);
    if (log) console.log(`${req.method} ${raw} -> ${r.file ? 200 : r.redirect ? 302 : r.status}`);
    if (r.redirect) {
      send(302, `see ${r.redirect}\n`, { Location: r.redirect });
      return;
    }
    if (!r.file) {
      send(r.status, `${r.status}: ${r.why}\n`);
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': r.type,
      'Content-Length': r.size,
      'Last-Modified': r.mtime.toUTCString(),
      // The page is a development build: always revalidate so a rebuild shows at once.
      'Cache-Control': 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(r.file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };
}

/**
 * Starts the server on 127.0.0.1 (port 0 = any free port); resolves to {server, url}.
 * models: serve this folder as /models/ instead of the repository's.
 */
export function startServer({ port = 8080, root = ROOT, log = false, models = null } = {}) {
  return new Promise((resolve, reject) => {
    const server = createServer(handler(root, { log, dirs: models ? { models: resolve_(models) } : {} }));
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: p } = server.address();
      resolve({ server, url: `http://127.0.0.1:${p}/` });
    });
  });
}

function parseArgs(argv) {
  const out = { port: 8080, log: false, models: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port' || a === '-p') out.port = Number(argv[++i]);
    else if (a.startsWith('--port=')) out.port = Number(a.slice(7));
    else if (a === '--log') out.log = true;
    else if (a === '--models') out.models = argv[++i];
    else if (a === '--help' || a === '-h') out.help = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('--port must be 0..65535');
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`serve: ${e.message}\nusage: node scripts/serve.mjs [--port 8080] [--models DIR] [--log]`);
    process.exit(2);
  }
  if (args.help) {
    console.log('usage: node scripts/serve.mjs [--port 8080] [--models DIR] [--log]\n'
      + 'Serves the demo page on 127.0.0.1; --models serves another folder of models (index.json + one folder each).');
    process.exit(0);
  }
  const { stat: statSync } = await import('node:fs/promises');
  for (const need of ['build/wasm/quantscope_core.wasm', 'node_modules/uplot/dist/uPlot.esm.js']) {
    await statSync(join(ROOT, need)).catch(() => {
      console.warn(`serve: warning: ${need} is missing (run scripts/build.sh and npm ci)`);
    });
  }
  startServer(args).then(({ url }) => {
    console.log(`quantscope demo: ${url}web/  (pthreads build: ${url}web/?threads=2; Ctrl-C stops)`);
  }, (e) => {
    console.error(`serve: ${e.code === 'EADDRINUSE' ? `port ${args.port} is in use (try --port 0)` : e.message}`);
    process.exit(1);
  });
}
