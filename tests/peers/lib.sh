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
