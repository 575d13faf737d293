#!/usr/bin/env bash
# Build xmppfs with AddressSanitizer + UBSan and warnings as errors, then run
# every test (unit, parser, real FUSE mounts against a private Prosody on
# 127.0.0.1, interop with slixmpp) and a short fuzz smoke run.
# Usage: scripts/test.sh [ctest args...]     (run as root: FUSE mounts, apt)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

BUILD=${XFS_TEST_BUILD:-build-asan}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DXFS_SANITIZE=ON \
	-DXFS_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

# The same code must also build warning-free with clang (STYLE.md §8).
if command -v clang >/dev/null; then
	CC=clang cmake -S . -B build-clang -DXFS_WERROR=ON \
		-DXFS_INTEGRATION=OFF >/dev/null
	cmake --build build-clang -j"$(nproc)" >/dev/null
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export XMPPFS_BIN="$PWD/$BUILD/xmppfs"

# Fuzz smoke: every libFuzzer target for a few seconds (clang only).
if command -v clang >/dev/null && [ "${XFS_SKIP_FUZZ:-0}" != 1 ] &&
	[ -x scripts/fuzz.sh ]; then
	scripts/fuzz.sh "${XFS_FUZZ_SECONDS:-10}"
fi

# Benchmark smoke: tiny sizes, one run, no thresholds, so bench/ never rots.
if [ "${XFS_SKIP_BENCH:-0}" != 1 ]; then
	/usr/bin/python3 bench/run.py --quick --bin "$XMPPFS_BIN"
fi

cd "$BUILD"
ctest --output-on-failure --timeout 900 -j2 "$@"
