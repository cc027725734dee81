#!/usr/bin/env bash
# scripts/setup.sh: installs what quantscope needs on Debian 12, idempotently:
# compiler, CMake, Emscripten + SIMDe (WASM), Node.js, and with --browser Chromium.
set -euo pipefail

packages=(build-essential cmake emscripten libsimde-dev)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
for arg in "$@"; do
  case "$arg" in
    --browser) packages+=(chromium) ;;
    --train) packages+=(bible-kjv bible-kjv-text) ;;
    --bench) packages+=(libopenblas-dev python3-torch) ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages (browser tests, benchmark peers) are pinned in package-lock.json.
cd "$(dirname "$0")/.."
if [ -f package-lock.json ] && grep -q '"node_modules/' package-lock.json; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
