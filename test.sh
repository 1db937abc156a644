#!/usr/bin/env bash
# Every test of ringgate: format, lints, unit tests, the integration suite through the real binary
# on both I/O drivers (io_uring, then forced epoll), then the instruction-count gate. The MCP
# interop tests drive real third-party peers (and a Debian redis-server), installed and cached
# under target/peers first.
set -euo pipefail
cd "$(dirname "$0")"
tests/peers/install.sh
tests/peers/install_interop.sh
tests/peers/install_redis.sh target/peers/redis >/dev/null
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
RINGGATE_TEST_DRIVER=legacy cargo test --test proxy --test lifecycle --test mcp --test mcp_sessions --test sessions --test federation --test era --test auth --test global_limit --test tls
# Instruction counts per request of the hot paths against perf/baseline.json (fails at +10%):
# a release-like build (profile `perf`) plus about 30 s under callgrind. See perf/README.md.
perf/check
