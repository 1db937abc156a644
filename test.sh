#!/usr/bin/env bash
# Every test of ringgate: format, lints, unit tests, and the integration suite through the real
# binary on both I/O drivers (io_uring, then forced epoll). The MCP interop tests drive real
# third-party peers (and a Debian redis-server), installed and cached under target/peers first.
set -euo pipefail
cd "$(dirname "$0")"
tests/peers/install.sh
tests/peers/install_interop.sh
tests/peers/install_redis.sh target/peers/redis >/dev/null
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
RINGGATE_TEST_DRIVER=legacy cargo test --test proxy --test lifecycle --test mcp --test auth --test global_limit --test tls
