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

# Wait until the ringgate whose output goes to LOG serves (its admin server is up); else stop.
wait_ringgate() {
    for _ in $(seq 1 100); do grep -q "admin listening" "$1" && break; sleep 0.1; done
    grep -q "admin listening" "$1" || die "ringgate did not start: $(cat "$1")"
}

# One saturation run of wrk (core 0) against URL, after checking it answers 200 and a 1 s warm-up:
# appends `name, requests, gateway CPU-µs, p50, p99, errors` as a tab-separated line to ROWS.
# ERRORS says what is counted: `non2xx` (answers other than 2xx) or `socket` (wrk's socket errors).
# Needs GW_PID (the gateway), CONNS and DURATION.
#   wrk_row ROWS NAME URL ERRORS [HEADER]
wrk_row() {
    local rows=$1 name=$2 url=$3 errors=$4 hdr=${5:-} args=() t0 t1 out reqs p50 p99 errs
    [ -n "$hdr" ] && args=(-H "$hdr")
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "${args[@]}" "$url")" = 200 ] || die "$url does not answer 200"
    taskset -c 0 wrk -t1 -c"$CONNS" -d1s "${args[@]}" "$url" >/dev/null
    t0=$(proc_ticks "$GW_PID")
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${args[@]}" "$url")
    t1=$(proc_ticks "$GW_PID")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    case $errors in
        non2xx) errs=$(awk '/Non-2xx/ {print $NF}' <<<"$out") ;;
        socket) errs=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out") ;;
        *) die "wrk_row: unknown error kind $errors" ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$reqs" "$(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) ))" "$p50" "$p99" "${errs:-0}" >>"$rows"
    log "$name: $reqs requests"
}
