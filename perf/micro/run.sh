#!/usr/bin/env bash
# Builds and runs the parser micro-benchmarks twice: natively (CPU ns per operation, best and median
# of 9 calibrated rounds) and under callgrind (instructions per operation, each case between a
# zero and a dump made by client requests), then writes bench/results/micro.md.
# Not part of CI (sonic-rs and simd-json take minutes to build). Args: an optional case filter.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tdir="$root/target/micro"
(cd "$root/perf/micro" && cargo build --quiet --release --target-dir "$tdir")
bin="$tdir/release/ringgate-micro"
vg="$("$root/perf/install_valgrind.sh")"
rm -rf "$tdir/cg" && mkdir -p "$tdir/cg"
"$bin" "$@" >"$tdir/native.tsv"
MICRO_CALLGRIND=1 "$vg/valgrind" --tool=callgrind --dump-instr=no --callgrind-out-file="$tdir/cg/cg.out" \
    "$bin" "$@" 2>"$tdir/cg/valgrind.log"
python3 "$root/perf/micro/report.py" "$tdir/native.tsv" "$tdir/cg" >"$root/bench/results/micro.md"
echo "wrote bench/results/micro.md" >&2
