#!/usr/bin/env bash
# scripts/test-browser.sh: the demo page's tests (tests/browser/): the server's
# security tests, then the page in headless Chromium driven by playwright-core.
# Needs scripts/setup.sh --browser, scripts/build.sh and npm ci; makes the corpus
# slice (build/web/) when data/kjv.txt can be made. Screenshots: test-results/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -s data/kjv.txt ]; then
  scripts/kjv.sh || echo "test-browser: no corpus: perplexity and training checks are skipped"
fi
node scripts/web-corpus.mjs
# Chromium runs the relaxed-SIMD module (FMA); the tests compare the page's
# numbers with the Node API's exactly, so Node runs the same module.
node --experimental-wasm-relaxed-simd --test tests/browser/
