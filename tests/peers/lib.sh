# Shell helpers shared by the peer installers (sourced). Set `tag` (the log prefix) first, and
# `step_fd=2` when stdout is the script's answer.

step() { printf '%s: %s\n' "$tag" "$*" >&"${step_fd:-1}"; }
die() { printf '%s: error: %s\n' "$tag" "$*" >&2; exit 1; }

# Runs a command quietly; on failure shows what it printed and stops.
quiet() {
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "failed: $*"
    fi
    rm -f "$log"
}

# Makes the venv DIR with the pinned REQUIREMENTS (a file) and checks that `mcp` MCP_VERSION
# imports from it; skipped when DIR's stamp (interpreter version and requirements) is current,
# so a re-run is a no-op. Uses $python (needs the venv module, or pip >= 22.3).
#   py_venv DIR REQUIREMENTS MCP_VERSION
py_venv() {
    local dir=$1 req=$2 want=$3 version stamp pip
    command -v "$python" >/dev/null || die "$python not found (set PYTHON=)"
    version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    stamp="$(printf 'python %s\n' "$version"; cat "$req")"
    if [[ -x "$dir/bin/python" && -f "$dir/.stamp" ]] && [[ "$(cat "$dir/.stamp")" == "$stamp" ]]; then
        step "python venv up to date ($dir, mcp $want, Python $version)"
        return
    fi
    step "creating python venv $dir (Python $version)"
    rm -rf "$dir"
    if "$python" -m venv "$dir" >/dev/null 2>&1; then
        pip=("$dir/bin/python" -m pip)
    else
        # Debian without python3-venv has no ensurepip: make the venv without pip and drive it
        # with the interpreter's own pip (>= 22.3 has --python).
        rm -rf "$dir"
        quiet "$python" -m venv --without-pip "$dir"
        pip=("$python" -m pip --python "$dir/bin/python")
    fi
    step "installing mcp $want and its pinned dependencies ($(basename "$req"))"
    quiet "${pip[@]}" install --quiet --disable-pip-version-check --no-input -r "$req"
    MCP_WANT="$want" "$dir/bin/python" -c 'import os, mcp, importlib.metadata as m; assert m.version("mcp") == os.environ["MCP_WANT"], m.version("mcp")' \
        || die "mcp $want did not import from $dir"
    printf '%s\n' "$stamp" >"$dir/.stamp"
}
