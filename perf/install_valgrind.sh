#!/usr/bin/env bash
# Finds valgrind (callgrind) for perf/check, or installs Debian's without touching the system: the
# .deb is fetched with `apt-get download` and unpacked with `dpkg -x` under the directory given as
# $1 (default: target/peers/valgrind of the repo), as tests/peers/install_redis.sh does for redis.
# Prints the directory holding `valgrind` and `callgrind_control` (the only thing on stdout):
#   bin="$(perf/install_valgrind.sh)"; "$bin/valgrind" --tool=callgrind ...
# With a system valgrind on PATH that is used and nothing is downloaded; FORCE=1 installs the
# private copy anyway (how the install path is tested on a machine that has valgrind).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
dir="${1:-$root/target/peers/valgrind}"

tag=valgrind
step_fd=2
# shellcheck source=tests/peers/lib.sh
. "$root/tests/peers/lib.sh"

works() { "$1/valgrind" --tool=callgrind --callgrind-out-file=/dev/null true >/dev/null 2>&1 && [[ -x "$1/callgrind_control" ]]; }

if [[ "${FORCE:-0}" != 1 ]] && sys="$(command -v valgrind)" && works "$(dirname "$sys")"; then
    step "using $sys ($(valgrind --version))"
    dirname "$sys"
    exit 0
fi

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [[ -f "$dir/.stamp" ]] && works "$dir/bin"; then
    step "up to date ($(cat "$dir/.stamp"))"
    printf '%s\n' "$dir/bin"
    exit 0
fi

command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs Debian's apt-get and dpkg"
candidate() { apt-cache policy valgrind 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
ver="$(candidate)"
if [[ -z "$ver" || "$ver" == "(none)" ]]; then
    [[ "$(id -u)" == 0 ]] || die "apt has no valgrind candidate; run 'apt-get update' as root first"
    step "apt-get update (no package lists yet)"
    quiet apt-get update
    ver="$(candidate)"
    [[ -n "$ver" && "$ver" != "(none)" ]] || die "apt has no valgrind package"
fi

step "downloading valgrind $ver into $dir"
rm -rf "$dir/debs" "$dir/root" "$dir/bin" "$dir/.stamp"
mkdir -p "$dir/debs" "$dir/root" "$dir/bin"
# valgrind's only other dependency, libc6-dbg, adds symbols; it is not needed to count instructions
(cd "$dir/debs" && quiet apt-get download valgrind)
quiet dpkg -x "$dir"/debs/valgrind_*.deb "$dir/root"
[[ -x "$dir/root/usr/bin/valgrind.bin" ]] || die "no usr/bin/valgrind.bin in the unpacked package"

# valgrind finds its tools through VALGRIND_LIB; callgrind_control finds vgdb next to itself
{
    printf '#!/bin/sh\n# Runs the valgrind unpacked by perf/install_valgrind.sh.\n'
    printf 'here="$(cd "$(dirname "$0")/.." && pwd)"\n'
    printf 'VALGRIND_LIB="$here/root/usr/libexec/valgrind" exec "$here/root/usr/bin/valgrind.bin" "$@"\n'
} >"$dir/bin/valgrind"
chmod +x "$dir/bin/valgrind"
ln -sf ../root/usr/bin/callgrind_control "$dir/bin/callgrind_control"
ln -sf ../root/usr/bin/vgdb "$dir/bin/vgdb"
ln -sf ../root/usr/bin/callgrind_annotate "$dir/bin/callgrind_annotate"

works "$dir/bin" || die "the unpacked valgrind does not run callgrind"
printf 'valgrind %s\n' "$ver" >"$dir/.stamp"
rm -rf "$dir/debs"
step "installed $("$dir/bin/valgrind" --version) from Debian valgrind $ver"
printf '%s\n' "$dir/bin"
