#!/usr/bin/env bash
# One command, one flamegraph: the gateway (profile perf, native, default driver) under load on one
# of perf/check's paths, sampled by Linux perf, rendered by perf/flame.py.
#
#   perf/flamegraph.sh [PATH] [SECONDS]     PATH: http-proxy | http-proxy-16k | mcp-call-modern (default)
#                                            | mcp-call-legacy | mcp-list8;  SECONDS: 10
# Writes target/flamegraph/PATH.svg (open it in a browser; hover for numbers) and PATH.folded.
#
# Sampling uses the software event cpu-clock, which works where the hardware counters do not
# (`perf stat -e instructions true` says "not supported" on this VM), and DWARF unwinding, since
# release code has no frame pointers. perf comes from Debian's linux-perf, installed if missing.
# Env: SKIP_BUILD=1 uses the existing target/perf/ringgate; DRIVER=legacy|uring|auto (auto);
# CLIENTS (2) load processes, each one keep-alive connection, one request at a time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
path="${1:-mcp-call-modern}"
secs="${2:-10}"
out="$root/target/flamegraph"
mkdir -p "$out"

if ! command -v perf >/dev/null; then
    echo "flamegraph: installing Debian's linux-perf" >&2
    apt-get install -y -qq linux-perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
fi
if ! perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
    echo "flamegraph: 'perf record -e cpu-clock' does not work here (perf_event_paranoid is" \
        "$(cat /proc/sys/kernel/perf_event_paranoid)); use perf/check --keep and callgrind_annotate instead" >&2
    exit 1
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --quiet --profile perf --bin ringgate)
fi
exec python3 "$root/perf/flame_run.py" --path "$path" --seconds "$secs" --out "$out" \
    --driver "${DRIVER:-auto}" --clients "${CLIENTS:-2}"
