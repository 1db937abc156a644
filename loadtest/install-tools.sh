#!/usr/bin/env bash
# Installs the third-party HTTP load tools the benchmarks use, idempotently:
#   wrk  Debian package (saturation runs)
#   oha  `cargo install oha --locked` at the pinned version, under target/tools/oha (fixed-rate
#        runs with latency correction); its build tree is kept in target/tools/oha-build, so a
#        rebuild after a toolchain update is incremental. About 7 minutes cold on 2 cores.
# Usage: loadtest/install-tools.sh [wrk] [oha]   (default: both). Prints nothing but progress on
# stderr; the exit status is non-zero if any tool could not be installed. rg-load (this crate)
# covers both kinds of run when neither can be installed.
set -uo pipefail

OHA_VERSION=1.16.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag=load-tools
step_fd=2
# shellcheck source=tests/peers/lib.sh
. "$root/tests/peers/lib.sh"
tools="$root/target/tools"
mkdir -p "$tools"

install_wrk() {
    if command -v wrk >/dev/null; then step "wrk present ($(command -v wrk))"; return 0; fi
    step "installing wrk (Debian)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y wrk >"$tools/wrk-install.log" 2>&1 \
        || { $sudo apt-get update >>"$tools/wrk-install.log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y wrk >>"$tools/wrk-install.log" 2>&1; } \
        || { tail -5 "$tools/wrk-install.log" >&2; return 1; }
}

install_oha() {
    local bin="$tools/oha/bin/oha"
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q " $OHA_VERSION\$"; then
        step "oha $OHA_VERSION present ($bin)"
        return 0
    fi
    step "installing oha $OHA_VERSION with cargo install --locked (about 7 minutes cold)"
    cargo install oha --version "=$OHA_VERSION" --locked --root "$tools/oha" --target-dir "$tools/oha-build" \
        >"$tools/oha-install.log" 2>&1 || { tail -20 "$tools/oha-install.log" >&2; return 1; }
}

failed=0
for t in "${@:-wrk oha}"; do
    for one in $t; do
        case "$one" in
            wrk) install_wrk || failed=1 ;;
            oha) install_oha || failed=1 ;;
            *) die "unknown tool $one (wrk, oha)" ;;
        esac
    done
done
exit "$failed"
