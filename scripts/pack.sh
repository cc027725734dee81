#!/usr/bin/env bash
# scripts/pack.sh DIR [--build]: the npm package as a user gets it: DIR/quantscope-VERSION.tgz
# (npm pack; DIR/pack.json is npm's report of it), installed into a fresh project
# DIR/consumer (npm install of the tarball, offline: it has no dependencies).
# The WASM builds in build/wasm and build/wasm-threads go in as they are; --build
# makes them first, as npm pack and npm publish do by themselves (the prepack script).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:?usage: scripts/pack.sh DIR [--build]}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

cd "$root"
if [ "${2:-}" = "--build" ]; then
  scripts/build-wasm.sh
  scripts/build-wasm.sh --threads
fi
for f in build/wasm/quantscope_core{.mjs,.wasm,_relaxed.wasm} build/wasm-threads/quantscope_core{.mjs,.wasm,_relaxed.wasm,.worker.js}; do
  [ -s "$f" ] || { echo "pack: $f is missing (scripts/build-wasm.sh and scripts/build-wasm.sh --threads)" >&2; exit 1; }
done
npm pack --ignore-scripts --json --pack-destination "$dir" --loglevel=error >"$dir/pack.json"
tarball="$dir/$(node -p "require('$dir/pack.json')[0].filename")"

mkdir -p "$dir/consumer"
cd "$dir/consumer"
echo '{ "name": "consumer", "private": true, "type": "module" }' >package.json
npm install --offline --no-audit --no-fund --loglevel=error "$tarball" >/dev/null
echo "$tarball"
