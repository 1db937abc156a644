#!/usr/bin/env bash
# Installs the other gateways the MCP benchmarks compare ringgate with, under target/peers/bench/:
#   contextforge  Python venv with IBM ContextForge (PyPI mcp-contextforge-gateway), console script mcpgateway
#   litellm       Python venv with LiteLLM's proxy (PyPI litellm[proxy]), console script litellm
#   supergateway  npm dir with supergateway (stdio MCP server -> Streamable HTTP)
# Pins are the versions below; each peer is skipped when its stamp (pin + runtime version) is
# current, so a re-run is a no-op. `pip freeze` of each venv is kept next to it (freeze.txt) and
# recorded with the results. Usage: bench/peers/install.sh [contextforge] [litellm] [supergateway]
# (default: all). A peer that fails to install is reported and the others still install; the
# exit status is non-zero if any failed.
set -uo pipefail

CONTEXTFORGE_VERSION=1.0.7.post20260921
LITELLM_VERSION=1.108.7
SUPERGATEWAY_VERSION=4.0.0
# LiteLLM: the newest release whose [proxy] extra resolves from the PyPI this project reaches.
# [proxy] pins litellm-proxy-extras and litellm-enterprise exactly; 1.108.8 and later pin
# litellm-enterprise 0.1.79.post2 and 1.108.13 and later litellm-proxy-extras 0.4.110.post1 or newer,
# none of which can be had here yet (the index has litellm-proxy-extras up to 0.4.110 and
# litellm-enterprise 0.1.79.post1, 0.1.80 and up). Check a newer pin with
# `pip install --dry-run 'litellm[proxy]==X'` before raising it.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="$root/target/peers/bench"
python="${PYTHON:-python3}"
tag=bench-peers
# shellcheck source=tests/peers/lib.sh
. "$root/tests/peers/lib.sh"
mkdir -p "$dir"

# venv NAME PIP-SPEC CHECK-COMMAND: a venv at $dir/NAME with PIP-SPEC, skipped when stamped.
venv() {
    local name=$1 spec=$2 check=$3 d="$dir/$1" stamp
    stamp="$("$python" -c 'import sys; print("python %d.%d" % sys.version_info[:2])') $spec"
    if [[ -f "$d/.stamp" && "$(cat "$d/.stamp")" == "$stamp" ]]; then
        step "$name up to date ($spec)"
        return 0
    fi
    step "installing $spec into $d (a few minutes)"
    rm -rf "$d"
    "$python" -m venv "$d" >/dev/null 2>&1 || return 1
    "$d/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$spec" >"$d.log" 2>&1 \
        || { tail -20 "$d.log" >&2; return 1; }
    "$d/bin/$check" --help >/dev/null 2>&1 || { step "$name: $check --help failed"; return 1; }
    "$d/bin/python" -m pip freeze --disable-pip-version-check >"$d/freeze.txt"
    printf '%s\n' "$stamp" >"$d/.stamp"
}

supergateway() {
    local d="$dir/supergateway" stamp
    stamp="node $(node -p 'process.versions.node.split(".")[0]') supergateway@$SUPERGATEWAY_VERSION"
    if [[ -f "$d/.stamp" && "$(cat "$d/.stamp")" == "$stamp" ]]; then
        step "supergateway up to date ($SUPERGATEWAY_VERSION)"
        return 0
    fi
    step "installing supergateway@$SUPERGATEWAY_VERSION into $d"
    rm -rf "$d" && mkdir -p "$d" || return 1
    (cd "$d" && npm_config_update_notifier=false npm install --no-audit --no-fund --loglevel=error \
        "supergateway@$SUPERGATEWAY_VERSION" >"$d.log" 2>&1) || { tail -20 "$d.log" >&2; return 1; }
    [[ -x "$d/node_modules/.bin/supergateway" ]] || return 1
    printf '%s\n' "$stamp" >"$d/.stamp"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(contextforge litellm supergateway)
failed=()
for p in "${want[@]}"; do
    case "$p" in
        contextforge) venv contextforge "mcp-contextforge-gateway==$CONTEXTFORGE_VERSION" mcpgateway || failed+=("$p") ;;
        litellm) venv litellm "litellm[proxy]==$LITELLM_VERSION" litellm || failed+=("$p") ;;
        supergateway) supergateway || failed+=("$p") ;;
        *) die "unknown peer $p (contextforge, litellm, supergateway)" ;;
    esac
done
if [[ ${#failed[@]} -gt 0 ]]; then
    step "could not install: ${failed[*]}"
    exit 1
fi
step "ready under $dir"
