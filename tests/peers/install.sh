#!/usr/bin/env bash
# Installs the third-party MCP peers the integration tests drive, under target/peers/ of the repo:
#   target/peers/py    Python venv with mcp 2.3.0 (client + server), pinned by requirements.txt
#   target/peers/node  npm dir with @modelcontextprotocol/server-everything 2026.8.31 and
#                      @modelcontextprotocol/sdk 1.32.2, installed with `npm ci` from package-lock.json
# Each half is skipped when its stamp file equals what it would write (the pins and the
# interpreter/runtime version), so a re-run is a no-op and CI can cache target/peers/.
# Needs: python3 >= 3.10 with the venv module (or pip >= 22.3), node >= 20 and npm, and the
# PyPI and npm registries. PYTHON=/path/to/python3 picks another interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
peers="$root/target/peers"
py_dir="$peers/py"
node_dir="$peers/node"
python="${PYTHON:-python3}"

tag=peers
# shellcheck source=tests/peers/lib.sh
. "$here/lib.sh"

mkdir -p "$peers"

# ---------------------------------------------------------------- Python: mcp 2.3.0 in a venv
command -v "$python" >/dev/null || die "$python not found (set PYTHON=)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "mcp 2.3.0 needs Python >= 3.10, $python is older"
py_venv "$py_dir" "$here/requirements.txt" 2.3.0

# ---------------------------------------------------------------- Node: server-everything + TS SDK
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
node_version="$(node -p 'process.versions.node')"
[[ "${node_version%%.*}" -ge 20 ]] || die "server-everything needs Node >= 20, found $node_version"
node_stamp="$(printf 'node %s\n' "${node_version%%.*}"; cat "$here/package.json" "$here/package-lock.json")"

if [[ -x "$node_dir/node_modules/.bin/mcp-server-everything" && -f "$node_dir/.stamp" ]] \
    && [[ "$(cat "$node_dir/.stamp")" == "$node_stamp" ]]; then
    step "node peers up to date ($node_dir, server-everything 2026.8.31, sdk 1.32.2, Node $node_version)"
else
    step "installing node peers into $node_dir with npm ci (Node $node_version)"
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
    quiet env npm_config_update_notifier=false npm ci --prefix "$node_dir" \
        --ignore-scripts --no-audit --no-fund --loglevel=error
    [[ -x "$node_dir/node_modules/.bin/mcp-server-everything" ]] || die "mcp-server-everything missing after npm ci"
    printf '%s\n' "$node_stamp" >"$node_dir/.stamp"
fi

step "ready: $py_dir/bin/python, $node_dir/node_modules/.bin/mcp-server-everything"
