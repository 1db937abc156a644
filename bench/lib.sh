# Shell helpers shared by the bench scripts (sourced; needs ROOT set to the repository root).

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Print N free loopback ports (bound to port 0, read back, released together).
free_ports() {
    python3 - "$1" <<'EOF_PORTS'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
EOF_PORTS
}

# utime+stime of a process in clock ticks, all threads included (0 if it is gone).
proc_ticks() {
    local s f
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    read -r -a f <<<"$s"
    echo $(( f[11] + f[12] ))
}

# The commit checked out, read from .git directly (no git binary needed).
git_rev() {
    local head ref
    # a git worktree has a .git file, not a directory: ask git
    if [ -f "$ROOT/.git" ]; then git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown; return; fi
    head=$(cat "$ROOT/.git/HEAD" 2>/dev/null) || { echo unknown; return; }
    if [[ $head == ref:* ]]; then
        ref=${head#ref: }
        if [ -f "$ROOT/.git/$ref" ]; then cat "$ROOT/.git/$ref"
        else awk -v r="$ref" '$2 == r {print $1}' "$ROOT/.git/packed-refs" 2>/dev/null || echo unknown; fi
    else echo "$head"; fi
}
