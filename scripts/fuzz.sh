#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, seed their
# corpora from the captured stanzas in shared/fixtures/stanzas, and run each
# target for N seconds. Prints executions per target; exits nonzero if any
# target crashed (the reproducer is kept in $BUILD/fuzz-artifacts/).
#
# Usage: scripts/fuzz.sh [seconds-per-target (default 30)] [target...]
# Env:   XFS_FUZZ_BUILD (default build-fuzz), XFS_FIXTURES (fixture dir),
#        XFS_FUZZ_JOBS (targets run at once, default 1).
#
# The whole build gets -fsanitize=fuzzer-no-link plus ASan/UBSan
# (XFS_SANITIZE), not only the fuzz_*.c files: the code under test lives in
# the xproto library, and without coverage instrumentation there libFuzzer
# would be fuzzing blind.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
[ $# -gt 0 ] && shift
build=${XFS_FUZZ_BUILD:-build-fuzz}
fixtures=${XFS_FIXTURES:-$PWD/../shared/fixtures/stanzas}
jobs=${XFS_FUZZ_JOBS:-1}

if ! command -v clang >/dev/null; then
	echo "fuzz.sh: clang not found, skipping" >&2
	exit 0
fi

if [ $# -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for f in tests/fuzz/fuzz_*.c; do
		targets+=("$(basename "$f" .c)")
	done
fi

CC=clang cmake -S . -B "$build" -DXFS_FUZZ=ON -DXFS_INTEGRATION=OFF \
	-DXFS_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$build" --target "${targets[@]}" -j2 >/dev/null

seeds=$build/fuzz-seeds
corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts
mkdir -p "$seeds" "$corpus" "$artifacts"

# Seeds. fuzz_stanza: every fixture as is. fuzz_b64: the IBB payloads plus
# RFC 4648 vectors. fuzz_name: offered names plus hostile ones. fuzz_socks5:
# a valid greeting, CONNECT and reply.
seed_all() {
	local d
	d=$seeds/fuzz_stanza
	mkdir -p "$d"
	if [ -d "$fixtures" ]; then
		for f in "$fixtures"/*/*.xml; do
			cp "$f" "$d/$(basename "$(dirname "$f")")-$(basename "$f")"
		done
	else
		echo "fuzz.sh: no fixtures at $fixtures (set XFS_FIXTURES)" >&2
	fi

	d=$seeds/fuzz_b64
	mkdir -p "$d"
	local i=0 v
	for v in "" Zg== Zm8= Zm9v Zm9vYg== Zm9vYmE= Zm9vYmFy "Zm9v YmE=
"; do
		printf '%s' "$v" >"$d/vec$i"
		i=$((i + 1))
	done
	if [ -d "$fixtures" ]; then
		for f in "$fixtures"/*/ibb-data.xml; do
			sed -e 's/.*<data[^>]*>//' -e 's/<\/data>.*//' "$f" \
				>"$d/$(basename "$(dirname "$f")")-data"
		done
	fi

	d=$seeds/fuzz_name
	mkdir -p "$d"
	i=0
	for v in f20k.bin img0545.png ../../etc/passwd 'a\b' . .. ' .hidden. ' \
		"résumé.pdf" "公共房间.txt" "invoice$(printf '\342\200\256')txt.exe"; do
		printf '%s' "$v" >"$d/name$i"
		i=$((i + 1))
	done
	printf 'a\000b\377c\001.txt' >"$d/bytes"
	head -c 300 /dev/zero | tr '\0' 'a' >"$d/long"
	printf '.tar.gz' >>"$d/long"

	d=$seeds/fuzz_socks5
	mkdir -p "$d"
	printf '\005\001\000' >"$d/greeting"
	printf '\005\000' >"$d/choice"
	{
		printf '\005\001\000\003\050'
		printf '98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff'
		printf '\000\000'
	} >"$d/connect"
	{
		printf '\005\000\000\003\050'
		printf '98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff'
		printf '\000\000'
	} >"$d/reply"
	printf '\005\000\000\001\177\000\000\001\036\141' >"$d/reply-v4"
}
seed_all

run_one() {
	local t=$1 log=$build/fuzz-$1.log
	mkdir -p "$corpus/$t" "$seeds/$t"
	set +e
	"$build/$t" -max_total_time="$secs" -print_final_stats=1 \
		-artifact_prefix="$artifacts/$t-" -max_len=65536 \
		"$corpus/$t" "$seeds/$t" >"$log" 2>&1
	local rc=$?
	set -e
	local execs
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ $rc -ne 0 ]; then
		echo "$t: CRASH (rc=$rc) after ${execs:-?} executions; see $log"
		grep -m1 -E 'ERROR|SUMMARY|Test unit written' "$log" || true
		return 1
	fi
	echo "$t: ${execs:-?} executions in ${secs}s, corpus $(ls "$corpus/$t" | wc -l) files"
}

fail=0
pids=()
names=()
for t in "${targets[@]}"; do
	run_one "$t" &
	pids+=($!)
	names+=("$t")
	if [ ${#pids[@]} -ge "$jobs" ]; then
		wait "${pids[0]}" || fail=1
		pids=("${pids[@]:1}")
	fi
done
for p in "${pids[@]}"; do
	wait "$p" || fail=1
done
exit $fail
