#!/usr/bin/env bash
# Installs Debian's redis-server (bookworm: 7.0.x) for the global rate-limit tests, without touching the
# system: the .deb files of redis-server, redis-tools and whichever of their libraries the host lacks are
# fetched with `apt-get download` and unpacked with `dpkg -x` under the directory given as $1
# (default: target/peers/redis of the repo). bin/redis-server there is a wrapper that sets
# LD_LIBRARY_PATH and runs the unpacked binary; its path is the only thing printed on stdout:
#   redis="$(tests/peers/install_redis.sh target/peers/redis)"
# A re-run is a no-op while the cached binary still runs (delete the directory to pick up a newer
# Debian build). Needs: Debian with apt and dpkg; root when the apt package lists must be fetched.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${1:-$root/target/peers/redis}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
wrapper="$dir/bin/redis-server"

tag=redis
step_fd=2
# shellcheck source=tests/peers/lib.sh
. "$here/lib.sh"

if [[ -x "$wrapper" && -f "$dir/.stamp" ]] && version="$("$wrapper" --version 2>/dev/null)"; then
    step "up to date ($(cat "$dir/.stamp"))"
    printf '%s\n' "$wrapper"
    exit 0
fi

command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs Debian's apt-get and dpkg"
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
ver="$(candidate redis-tools)"
if [[ -z "$ver" || "$ver" == "(none)" ]]; then
    [[ "$(id -u)" == 0 ]] || die "apt has no redis-tools candidate; run 'apt-get update' as root first"
    step "apt-get update (no package lists yet)"
    quiet apt-get update
    ver="$(candidate redis-tools)"
    [[ -n "$ver" && "$ver" != "(none)" ]] || die "apt has no redis-tools package"
fi

# redis-tools holds the binary (redis-check-rdb; redis-server is a symlink to it that selects server mode);
# its library dependencies are fetched only when the host lacks them.
pkgs=(redis-server redis-tools)
deps="$(apt-cache show --no-all-versions redis-tools | sed -n 's/^Depends: //p' | tr ',' '\n' \
    | sed 's/([^)]*)//g; s/|.*//; s/ //g' | grep '^lib' || true)"
for dep in $deps; do
    if [[ "$(dpkg-query -W -f='${Status}' "$dep" 2>/dev/null)" != "install ok installed" ]]; then
        pkgs+=("$dep")
    fi
done

step "downloading ${pkgs[*]} (redis-tools $ver) into $dir"
rm -rf "$dir/debs" "$dir/root" "$dir/bin" "$dir/.stamp"
mkdir -p "$dir/debs" "$dir/root" "$dir/bin"
# `apt-get download` writes to the working directory; as root it warns that _apt cannot write there.
(cd "$dir/debs" && quiet apt-get download "${pkgs[@]}")
for deb in "$dir"/debs/*.deb; do
    quiet dpkg -x "$deb" "$dir/root"
done
[[ -e "$dir/root/usr/bin/redis-server" ]] || die "no usr/bin/redis-server in the unpacked packages"

libdirs="$(find "$dir/root" -name '*.so*' -printf '%h\n' | sort -u | sed "s|^$dir/||" | tr '\n' ' ')"
{
    printf '#!/bin/sh\n# Runs the redis-server unpacked by tests/peers/install_redis.sh with its libraries.\n'
    printf 'here="$(cd "$(dirname "$0")/.." && pwd)"\n'
    printf 'lib=""\nfor d in %s; do lib="$lib${lib:+:}$here/$d"; done\n' "$libdirs"
    printf 'LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/root/usr/bin/redis-server" "$@"\n'
} >"$wrapper"
chmod +x "$wrapper"

version="$("$wrapper" --version)" || die "the unpacked redis-server does not run: $version"
[[ "$version" == "Redis server v="* ]] || die "unexpected --version output: $version"
printf 'redis-tools %s (%s)\n' "$ver" "${pkgs[*]}" >"$dir/.stamp"
rm -rf "$dir/debs"
step "installed $(cut -d' ' -f1-3 <<<"$version") from redis-tools $ver"
printf '%s\n' "$wrapper"
