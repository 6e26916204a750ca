#!/usr/bin/env bash
# run-fuzzers.sh BUILDDIR SECONDS: build every libFuzzer target with clang
# and run each for SECONDS on its corpus (t/fuzz/corpus/<target>, copied so
# the tree is not modified). Fails on any crash, leak or sanitizer report.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-build-fuzz}
secs=${2:-30}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ ! -f "$dir/Makefile" ]; then
	(cd "$dir" && CC=clang "$top/configure" -q --enable-fuzzers)
fi
make -C "$dir" -j"$(nproc)"
status=0
for bin in "$dir"/t/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus="$dir/t/fuzz/corpus-run/$name"
	mkdir -p "$corpus"
	if [ -d "$top/t/fuzz/corpus/$name" ]; then
		cp -n "$top/t/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
	fi
	echo "== $name (${secs}s)"
	if ! (cd "$dir/t/fuzz" && "$bin" -max_total_time="$secs" \
		-print_final_stats=1 -rss_limit_mb=2048 "$corpus" \
		>"$dir/t/fuzz/$name.out" 2>&1); then
		echo "FAIL: $name"
		tail -n 60 "$dir/t/fuzz/$name.out"
		status=1
	else
		grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' \
			"$dir/t/fuzz/$name.out" || true
	fi
done
exit $status
