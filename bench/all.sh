#!/usr/bin/env bash
# Every benchmark scenario, one after another: http-proxy, mcp-call (rg-fixture + server-everything),
# mcp-list-fanout, mcp-session-setup, mcp-streams, mcp-idle-sessions, mcp-peers (ContextForge,
# supergateway). Results in bench/results/.
# Knobs are passed through the environment (see each script); run as root on an idle machine.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR="$ROOT/target"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building ringgate and the load tools once (release)"
    cargo build --release --bin ringgate -p ringgate
    cargo build --release -p ringgate-loadtest
fi
export SKIP_BUILD=1
# RT=1 (default as root): every benchmark process runs SCHED_FIFO priority 1 (chrt -f 1,
# inherited by everything a script starts), so compile jobs or other tenants on the same cores
# cannot preempt the pinned gateway, upstream or load generator; this is what the one-core-each
# layout assumes. The kernel still leaves 5 % of each second to normal tasks (sched_rt_runtime_us).
RT=${RT:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}
PREFIX=()
[ "$RT" = 1 ] && PREFIX=(chrt -f 1)
export BENCH_SCHED="$([ "$RT" = 1 ] && echo "SCHED_FIFO priority 1 (chrt -f 1)" || echo "normal (SCHED_OTHER)")"
failed=()
run() { log "=== $* (${BENCH_SCHED})"; "${PREFIX[@]}" "$@" || { log "FAILED: $*"; failed+=("$*"); }; }
run bench/http-proxy.sh
run bench/mcp-call.sh
run bench/mcp.py mcp-list-fanout mcp-session-setup mcp-streams mcp-idle-sessions
run bench/mcp-peers.py
if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}"
    exit 1
fi
log "all scenarios done; results in bench/results/"
