#!/usr/bin/env bash
# scripts/test-install.sh: `cmake --install` into a prefix whose path has a
# space, then an outside consumer (tests/install/consumer.c) built against it
# three ways: pkg-config with the static library, pkg-config with the shared
# one (found through its soname at run time), and find_package(quantscope);
# each is run on the golden BERT model. Needs build/native (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/installed tree"
cmake --install build/native --prefix "$prefix" >/dev/null
model=tests/golden/bert
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

echo "-- installed: $(cd "$prefix" && find . -type f | sort | tr '\n' ' ')"
[ -x "$prefix/bin/qs" ] || { echo "test-install: qs was not installed" >&2; exit 1; }
objdump -p "$prefix/lib/libquantscope.so" | grep -q 'SONAME *libquantscope.so.0' ||
  { echo "test-install: the shared library has no soname libquantscope.so.0" >&2; exit 1; }
leaked=$(nm -D --defined-only "$prefix/lib/libquantscope.so" | awk '{print $3}' | grep -v '^qs_' || true)
[ -z "$leaked" ] || { echo "test-install: the shared library exports non-qs_ symbols: $leaked" >&2; exit 1; }

# pkg-config: static (Libs.private brings -lm -pthread), then shared. It
# escapes the space in the prefix with a backslash, which a shell (as make
# runs commands) reads back: hence eval.
# -l:libquantscope.a (GNU ld) picks the archive where -lquantscope prefers the .so.
eval gcc -std=c11 -o '"$work/static"' tests/install/consumer.c \
    "$(pkg-config --static --cflags --libs quantscope | sed 's/-lquantscope/-l:libquantscope.a/')"
ldd "$work/static" | grep -q libquantscope && { echo "test-install: the static consumer links the shared library" >&2; exit 1; }
"$work/static" "$model" | sed 's/^/-- pkg-config, static: /'
eval gcc -std=c11 -o '"$work/shared"' tests/install/consumer.c "$(pkg-config --cflags --libs quantscope)"
LD_LIBRARY_PATH="$prefix/lib" "$work/shared" "$model" | sed 's/^/-- pkg-config, shared: /'

# find_package, both targets.
cmake -S tests/install -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer_static" "$model" | sed 's/^/-- find_package, static: /'
LD_LIBRARY_PATH="$prefix/lib" "$work/cmake/consumer_shared" "$model" | sed 's/^/-- find_package, shared: /'
echo "-- install test passed (prefix with a space: '$prefix')"
