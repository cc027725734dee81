#!/usr/bin/env bash
# scripts/screenshots.sh: regenerates README's screenshots (web/screenshots/*.png)
# from the browser tests: the page tests take them on the shipped models
# (test-results/readme-NAME.png, a 1280 x 1500 crop of the page) and this
# copies them over the ones in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-browser.sh
for f in test-results/readme-*.png; do
  name=${f#test-results/readme-}
  cp "$f" "web/screenshots/$name"
  echo "screenshots: web/screenshots/$name"
done
