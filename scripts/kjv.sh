#!/usr/bin/env bash
# scripts/kjv.sh [OUT]: makes the King James Bible training corpus (default data/kjv.txt),
# plain verse text one verse per line, from Debian's bible-kjv packages; nothing is downloaded.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/data/kjv.txt}

if [ -s "$out" ]; then
  echo "kjv: $out exists ($(wc -c <"$out") bytes), nothing to do"
  exit 0
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# The text ships compressed in the package's own format; only its `bible` program reads it.
if ! installed bible-kjv || ! installed bible-kjv-text; then
  cmd="apt-get update && apt-get install -y --no-install-recommends bible-kjv bible-kjv-text"
  if [ "$(id -u)" -eq 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "kjv: bible-kjv is not installed and this is not root and has no sudo; as root run:" >&2
    echo "  $cmd" >&2
    exit 1
  fi
  echo "kjv: installing bible-kjv bible-kjv-text"
  if ! { $sudo apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
           bible-kjv bible-kjv-text >/dev/null; }; then
    echo "kjv: installing bible-kjv failed; run this yourself and retry:" >&2
    echo "  ${sudo:+sudo }$cmd" >&2
    exit 1
  fi
fi

# The data directory is wherever the text package put bible.data (/usr/lib on Debian 12).
data=$(dpkg -L bible-kjv-text | grep '/bible\.data$' | head -n 1)
if [ -z "$data" ] || [ ! -f "$data" ]; then
  echo "kjv: bible-kjv-text is installed but lists no bible.data (dpkg -L bible-kjv-text)" >&2
  exit 1
fi
datadir=$(dirname "$data")

mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX.tmp")
trap 'rm -f "$tmp"' EXIT

# -f turns pretty-printing off: one verse per line, each preceded by its reference
# ("Ge1:1 In the beginning ..."). sed drops that reference (the first word), trailing
# blanks and the two doubled spaces the source has, leaving only the English text.
bible -f -p "$datadir" -m 8192 "Gen1:1-Rev22:21" </dev/null |
  sed -e 's/^[^ ]* //' -e 's/[[:space:]]*$//' -e 's/  */ /g' >"$tmp"

# The KJV has 31102 verses; a different count means the output format is not what we parse.
lines=$(wc -l <"$tmp")
bytes=$(wc -c <"$tmp")
first=$(head -n 1 "$tmp")
want="In the beginning God created the heaven and the earth."
if [ "$lines" -ne 31102 ] || [ "$first" != "$want" ]; then
  echo "kjv: unexpected output from bible: $lines lines (want 31102), first line: $first" >&2
  exit 1
fi

mv "$tmp" "$out"
trap - EXIT
echo "kjv: wrote $out: $bytes bytes, $lines verses"
