#!/usr/bin/env bash
# Plain reverse-proxy benchmark: direct to an nginx upstream vs through ringgate vs through
# nginx as a reverse proxy, side by side in one run. See bench/README.md.
#
# Layout on a 2-core box:  core 0 = upstream nginx + load generator,  core 1 = system under test.
# Writes bench/results/http-proxy.json and bench/results/http-proxy.md.
#
# Env knobs (defaults in brackets):
#   DURATION [10]       seconds per measured wrk run
#   WARMUP [2]          seconds of wrk warm-up before each measured run
#   CONNS [32]          connections (wrk -c, oha -c)
#   FIXED_RATE []       requests/s for the fixed-rate pass; empty = 50% of the lower saturated
#                       rate of ringgate and nginx for that body
#   OHA_INSTALL [auto]  auto = try `cargo install oha --locked` once (time-boxed, failure is
#                       remembered); 0 = never install, use oha only if already there
#   OHA_INSTALL_TIMEOUT [240]  seconds allowed for that install
#   SKIP_BUILD [0]      1 = use the existing target/release/ringgate
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$ROOT/bench/results"
TMPROOT="$RESULTS/tmp"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
FIXED_RATE=${FIXED_RATE:-}
OHA_INSTALL=${OHA_INSTALL:-auto}
OHA_INSTALL_TIMEOUT=${OHA_INSTALL_TIMEOUT:-240}
SKIP_BUILD=${SKIP_BUILD:-0}
export CARGO_TARGET_DIR="$ROOT/target"
RINGGATE="$CARGO_TARGET_DIR/release/ringgate"
LOADGEN_CPU=0
SUT_CPU=1

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$TMPROOT"
WORK=$(mktemp -d "$TMPROOT/run.XXXXXX")
RUNS="$WORK/runs"
mkdir -p "$RUNS"

# ---------------------------------------------------------------- cleanup
PIDS=()
cleanup() {
    local rc=$? p c kids=()
    # nginx workers are children of the master: collect them first so none is orphaned
    for p in "${PIDS[@]}"; do
        for c in $(pgrep -P "$p" 2>/dev/null || true); do kids+=("$c"); done
    done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
        local alive=0
        for p in "${PIDS[@]}" "${kids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}" "${kids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$rc" != 0 ]; then log "failed (exit $rc); logs kept in $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)

# ---------------------------------------------------------------- install (idempotent)
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    log "installing nginx-light and wrk"
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >"$WORK/apt.log" 2>&1; }
    if ! apt_install nginx-light wrk; then
        apt-get update >>"$WORK/apt.log" 2>&1 || true
        apt_install nginx-light wrk || apt_install nginx wrk || die "apt-get install failed, see $WORK/apt.log"
    fi
fi
NGINX=$(command -v nginx)
WRK=$(command -v wrk)
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
command -v taskset >/dev/null || die "taskset is needed"

# oha (fixed-rate load) is optional: wrk has no rate flag.
OHA_ROOT="$TMPROOT/cargo"
OHA=""
if [ -x "$OHA_ROOT/bin/oha" ]; then OHA="$OHA_ROOT/bin/oha"
elif command -v oha >/dev/null; then OHA=$(command -v oha)
elif [ "$OHA_INSTALL" = auto ] && [ ! -e "$TMPROOT/oha-install-failed" ]; then
    log "trying: cargo install oha --locked (at most ${OHA_INSTALL_TIMEOUT}s)"
    if timeout "$OHA_INSTALL_TIMEOUT" env CARGO_TARGET_DIR="$TMPROOT/cargo-target" \
        cargo install oha --locked --root "$OHA_ROOT" >"$TMPROOT/oha-install.log" 2>&1; then
        OHA="$OHA_ROOT/bin/oha"
    else
        log "oha install failed or timed out; CPU/request falls back to the saturation runs"
        touch "$TMPROOT/oha-install-failed"
    fi
fi

# ---------------------------------------------------------------- build
if [ "$SKIP_BUILD" != 1 ]; then
    log "building ringgate (cargo waits on the target-dir lock if another build is running)"
    (cd "$ROOT" && cargo build --release --bin ringgate) >"$WORK/build.log" 2>&1 \
        || { tail -20 "$WORK/build.log" >&2; die "cargo build failed"; }
fi
[ -x "$RINGGATE" ] || die "$RINGGATE missing"

# ---------------------------------------------------------------- free ports
read -r P_UP P_RG P_ADMIN P_NGX < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(4):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
EOF
)
log "ports: upstream=$P_UP ringgate=$P_RG admin=$P_ADMIN nginx-proxy=$P_NGX"

# ---------------------------------------------------------------- configs
mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/px/logs"
head -c 16384 /dev/zero | tr '\0' 'x' >"$WORK/up/www/16k"

nginx_common() { # $1 = prefix dir
    cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
EOF
}
temp_paths() {
    cat <<EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

{
    nginx_common "$WORK/up"
    cat <<EOF
http {
    access_log off;
$(temp_paths "$WORK/up")
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$P_UP;
        location = /small { return 200 "hello"; }
        location = /16k { root $WORK/up/www; default_type application/octet-stream; }
    }
}
EOF
} >"$WORK/up/nginx.conf"

{
    nginx_common "$WORK/px"
    cat <<EOF
http {
    access_log off;
$(temp_paths "$WORK/px")
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream backend {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGX;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$WORK/px/nginx.conf"

cat >"$WORK/ringgate.yaml" <<EOF
# generated by bench/http-proxy.sh
config:
  workers: 1
  adminAddr: 127.0.0.1:$P_ADMIN
frontendPolicies:
  accessLog:
    enabled: false
binds:
- port: $P_RG
  address: 127.0.0.1
  listeners:
  - routes:
    - name: upstream
      matches:
      - path:
          pathPrefix: /
      backends:
      - host: 127.0.0.1:$P_UP
EOF
"$RINGGATE" validate -c "$WORK/ringgate.yaml" >&2 || die "ringgate config invalid"
"$NGINX" -t -q -p "$WORK/up" -c "$WORK/up/nginx.conf" 2>&1 | grep -v '^$' >&2 || true
"$NGINX" -t -q -p "$WORK/px" -c "$WORK/px/nginx.conf" 2>&1 | grep -v '^$' >&2 || true

# ---------------------------------------------------------------- start servers
taskset -c "$LOADGEN_CPU" "$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" >"$WORK/up/stdout.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
taskset -c "$SUT_CPU" "$NGINX" -p "$WORK/px" -c "$WORK/px/nginx.conf" >"$WORK/px/stdout.log" 2>&1 &
NGX_PID=$!; PIDS+=("$NGX_PID")
taskset -c "$SUT_CPU" "$RINGGATE" -c "$WORK/ringgate.yaml" >"$WORK/ringgate.log" 2>&1 &
RG_PID=$!; PIDS+=("$RG_PID")

wait_http() { # url, name, pid
    for _ in $(seq 1 100); do
        kill -0 "$3" 2>/dev/null || die "$2 exited at start-up (see $WORK)"
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    die "$2 not ready at $1"
}
wait_http "http://127.0.0.1:$P_UP/small" upstream "$UP_PID"
wait_http "http://127.0.0.1:$P_NGX/small" nginx-proxy "$NGX_PID"
wait_http "http://127.0.0.1:$P_ADMIN/ready" ringgate-admin "$RG_PID"
wait_http "http://127.0.0.1:$P_RG/small" ringgate "$RG_PID"

declare -A URL_BASE=([direct]="http://127.0.0.1:$P_UP" [ringgate]="http://127.0.0.1:$P_RG" [nginx]="http://127.0.0.1:$P_NGX")
declare -A SUT_PID=([ringgate]="$RG_PID" [nginx]="$NGX_PID")
declare -A BODY_LEN=([small]=5 [16k]=16384)

# correctness: status and body length through every path
for sys in direct ringgate nginx; do
    for body in small 16k; do
        read -r code size < <(curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "${URL_BASE[$sys]}/$body")
        [ "$code" = 200 ] && [ "$size" = "${BODY_LEN[$body]}" ] \
            || die "$sys /$body: got HTTP $code with $size bytes, want 200 with ${BODY_LEN[$body]}"
    done
done
curl -s -D "$WORK/ringgate-headers.txt" -o /dev/null "${URL_BASE[ringgate]}/small"

# CPU ticks (utime+stime) of a process and all of its children (nginx master + worker; all
# threads of ringgate are inside its one /proc/PID/stat).
proc_ticks() {
    local s f
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    read -r -a f <<<"$s"
    echo $(( f[11] + f[12] ))
}
tree_ticks() {
    local t c
    t=$(proc_ticks "$1")
    for c in $(pgrep -P "$1" || true); do t=$(( t + $(proc_ticks "$c") )); done
    echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

# idle check: a gateway that burns CPU with no traffic would distort CPU/request
sleep 1
declare -A IDLE0 IDLE_PCT
for s in ringgate nginx; do IDLE0[$s]=$(tree_ticks "${SUT_PID[$s]}"); done
sleep 2
for s in ringgate nginx; do
    IDLE_PCT[$s]=$(python3 -c "print(round(($(tree_ticks "${SUT_PID[$s]}") - ${IDLE0[$s]}) / $CLK_TCK / 2 * 100, 2))")
done
log "idle CPU over 2s: ringgate ${IDLE_PCT[ringgate]}%  nginx ${IDLE_PCT[nginx]}%"

# thread affinity of the system under test (ringgate pins its shard itself, within its mask)
{
    for s in ringgate nginx; do
        for c in "${SUT_PID[$s]}" $(pgrep -P "${SUT_PID[$s]}" || true); do
            for t in /proc/"$c"/task/*; do
                printf '%s %s %s %s\n' "$s" "$(basename "$t")" "$(tr -d ' ' <"$t/comm")" \
                    "$(awk '/Cpus_allowed_list/ {print $2}' "$t/status")"
            done
        done
    done
} >"$WORK/affinity.txt"

cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
EOF

rg_metric_snapshot() { curl -s "http://127.0.0.1:$P_ADMIN/metrics" >"$1" || true; }
rg_metric_snapshot "$WORK/ringgate-metrics-before.txt"

# ---------------------------------------------------------------- saturation (wrk)
run_wrk() { # sys body
    local sys=$1 body=$2 url="${URL_BASE[$1]}/$2" pid="${SUT_PID[$1]:-}" c0 c1 out="$RUNS/wrk-$1-$2"
    taskset -c "$LOADGEN_CPU" "$WRK" -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >"$out.warmup.txt" 2>&1
    [ -n "$pid" ] && c0=$(tree_ticks "$pid")
    taskset -c "$LOADGEN_CPU" "$WRK" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/report.lua" "$url" >"$out.txt" 2>&1
    [ -n "$pid" ] && c1=$(tree_ticks "$pid")
    printf '{"sys":"%s","body":"%s","cpu_ticks":%s,"clk_tck":%s}\n' "$sys" "$body" \
        "$([ -n "$pid" ] && echo $((c1 - c0)) || echo null)" "$CLK_TCK" >"$out.meta.json"
    log "wrk $sys /$body: $(grep -E 'Requests/sec' "$out.txt" | tr -s ' ') $(grep -E 'Non-2xx|Socket errors' "$out.txt" | tr -s ' ' | tr '\n' ' ')"
}
for body in small 16k; do
    for sys in direct ringgate nginx; do run_wrk "$sys" "$body"; done
done

# ---------------------------------------------------------------- fixed rate (oha)
declare -A RATE
if [ -n "$OHA" ]; then
    for body in small 16k; do
        if [ -n "$FIXED_RATE" ]; then RATE[$body]=$FIXED_RATE; else
            RATE[$body]=$(python3 - "$RUNS/wrk-ringgate-$body.txt" "$RUNS/wrk-nginx-$body.txt" <<'EOF'
import sys, re, json
rates = []
for p in sys.argv[1:]:
    for line in open(p):
        if line.startswith("WRKJSON "):
            d = json.loads(line[8:])
            rates.append(d["requests"] / (d["duration_us"] / 1e6))
r = min(rates) * 0.5
step = 1000 if r >= 2000 else 100
print(max(step, int(r // step) * step))
EOF
)
        fi
    done
    run_oha() { # sys body
        local sys=$1 body=$2 url="${URL_BASE[$1]}/$2" pid="${SUT_PID[$1]:-}" c0 c1 out="$RUNS/oha-$1-$2"
        [ -n "$pid" ] && c0=$(tree_ticks "$pid")
        taskset -c "$LOADGEN_CPU" "$OHA" --no-tui --output-format json -z "${DURATION}s" -c "$CONNS" \
            -q "${RATE[$body]}" --latency-correction "$url" >"$out.json" 2>"$out.err" \
            || taskset -c "$LOADGEN_CPU" "$OHA" --no-tui -j -z "${DURATION}s" -c "$CONNS" \
                -q "${RATE[$body]}" --latency-correction "$url" >"$out.json" 2>"$out.err"
        [ -n "$pid" ] && c1=$(tree_ticks "$pid")
        printf '{"sys":"%s","body":"%s","rate":%s,"cpu_ticks":%s,"clk_tck":%s}\n' "$sys" "$body" "${RATE[$body]}" \
            "$([ -n "$pid" ] && echo $((c1 - c0)) || echo null)" "$CLK_TCK" >"$out.meta.json"
        log "oha $sys /$body at ${RATE[$body]} req/s done"
    }
    for body in small 16k; do
        for sys in direct ringgate nginx; do run_oha "$sys" "$body"; done
    done
fi

rg_metric_snapshot "$WORK/ringgate-metrics-after.txt"
for s in ringgate nginx; do kill -0 "${SUT_PID[$s]}" 2>/dev/null || die "$s died during the run (see $WORK)"; done

# ---------------------------------------------------------------- versions
git_rev() { # no git binary use: read .git directly
    local head ref
    head=$(cat "$ROOT/.git/HEAD" 2>/dev/null) || { echo unknown; return; }
    if [[ $head == ref:* ]]; then
        ref=${head#ref: }
        if [ -f "$ROOT/.git/$ref" ]; then cat "$ROOT/.git/$ref"
        else awk -v r="$ref" '$2 == r {print $1}' "$ROOT/.git/packed-refs" 2>/dev/null || echo unknown; fi
    else echo "$head"; fi
}
export BENCH_WORK="$WORK" BENCH_RESULTS="$RESULTS" BENCH_OHA="$OHA" BENCH_CONNS="$CONNS" \
    BENCH_DURATION="$DURATION" BENCH_WARMUP="$WARMUP" BENCH_CLK_TCK="$CLK_TCK" \
    BENCH_IDLE_RG="${IDLE_PCT[ringgate]}" BENCH_IDLE_NGX="${IDLE_PCT[nginx]}" \
    BENCH_NGINX_VERSION="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
    BENCH_WRK_VERSION="$("$WRK" -v 2>&1 | head -1 | awk '{print $2}')" \
    BENCH_OHA_VERSION="$([ -n "$OHA" ] && "$OHA" --version 2>/dev/null | head -1 || echo none)" \
    BENCH_RINGGATE_VERSION="$("$RINGGATE" --version)" \
    BENCH_RINGGATE_REV="$(git_rev)" \
    BENCH_RINGGATE_SHA256="$(sha256sum "$RINGGATE" | cut -c1-16)" \
    BENCH_RINGGATE_MTIME="$(date -u -r "$RINGGATE" +%Y-%m-%dT%H:%M:%SZ)" \
    BENCH_NPROC="$(nproc)" BENCH_KERNEL="$(uname -r)" \
    BENCH_CPU_MODEL="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
    BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" BENCH_ELAPSED="$(( $(date +%s) - T0 ))"

python3 - <<'PY'
@@REPORT@@
PY
log "done in $(( $(date +%s) - T0 ))s: $RESULTS/http-proxy.md, $RESULTS/http-proxy.json (raw output in $WORK)"
