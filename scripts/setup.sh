#!/usr/bin/env bash
# scripts/setup.sh: installs what quantscope needs on Debian 12, idempotently:
# compiler, CMake, Emscripten + SIMDe (WASM), Node.js, and with --browser Chromium;
# --m32 gcc-multilib (the 32-bit test build);
# --torch tries PyTorch for the trainer's parity test, which skips without it.
set -euo pipefail

packages=(build-essential cmake emscripten libsimde-dev)
optional=() # a failed install only warns: what needs them skips, saying so
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
for arg in "$@"; do
  case "$arg" in
    --browser) packages+=(chromium) ;;
    --train) packages+=(bible-kjv bible-kjv-text) ;;
    --bench) packages+=(libopenblas-dev python3-torch) ;;
    --torch) optional+=(python3-torch) ;;
    --m32) packages+=(gcc-multilib) ;; # gcc -m32: the test suite's 32-bit build (size_t of WASM)
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() missing_optional=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${optional[@]}"; do installed "$p" || missing_optional+=("$p"); done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ((${#missing[@]})); then
  $sudo apt-get update -qq
elif ((${#missing_optional[@]})); then
  $sudo apt-get update -qq || echo "setup: apt-get update failed" >&2
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${missing_optional[@]}"; do
  echo "setup: installing $p (optional)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
    echo "setup: could not install $p; the tests that need it will skip" >&2
done

# npm packages (browser tests, benchmark peers) are pinned in package-lock.json.
cd "$(dirname "$0")/.."
if [ -f package-lock.json ] && grep -q '"node_modules/' package-lock.json; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
