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
#   OHA_INSTALL [auto]  auto = install oha with loadtest/install-tools.sh when missing (about
#                       7 minutes once); 0 = never install, use oha only if already there
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
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD_NOTE=""
export CARGO_TARGET_DIR="$ROOT/target"
RINGGATE="$CARGO_TARGET_DIR/release/ringgate"
LOADGEN_CPU=0
SUT_CPU=1

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

mkdir -p "$TMPROOT"
WORK=$(mktemp -d "$TMPROOT/run.XXXXXX")
chmod 755 "$WORK"  # nginx workers drop to an unprivileged user and must read the 16 KiB file
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
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
# other CPU users (lifetime %CPU > 5) would distort a 2-core benchmark: recorded, not stopped
other_busy() { ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 5 && $2 !~ /^(nginx|ringgate|wrk|oha|ps|awk|python3|bash|cargo|timeout|sleep)$/ {printf "%s(%s%%) ", $2, $1}' | head -c 300; }

# ---------------------------------------------------------------- install (idempotent)
if ! command -v nginx >/dev/null; then
    log "installing nginx-light"
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >"$WORK/apt.log" 2>&1; }
    if ! apt_install nginx-light; then
        apt-get update >>"$WORK/apt.log" 2>&1 || true
        apt_install nginx-light || apt_install nginx || die "apt-get install failed, see $WORK/apt.log"
    fi
fi
# wrk (saturation) and oha (fixed rate; wrk has no rate flag): loadtest/install-tools.sh
"$ROOT/loadtest/install-tools.sh" wrk || die "wrk could not be installed"
NGINX=$(command -v nginx)
WRK=$(command -v wrk)
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
command -v taskset >/dev/null || die "taskset is needed"

OHA=""
OHA_BIN="$ROOT/target/tools/oha/bin/oha"
if [ "$OHA_INSTALL" = auto ] && [ ! -x "$OHA_BIN" ]; then
    "$ROOT/loadtest/install-tools.sh" oha || log "oha could not be installed; the fixed-rate pass uses rg-load"
fi
if [ -x "$OHA_BIN" ]; then OHA="$OHA_BIN"
elif command -v oha >/dev/null; then OHA=$(command -v oha)
fi

# without oha, the fixed-rate pass uses rg-load (loadtest/, built below with ringgate): open
# loop, latency from the intended send time, like oha's --latency-correction
RGLOAD=""
FIXED_TOOL=none
[ -n "$OHA" ] && FIXED_TOOL=oha

# ---------------------------------------------------------------- build
if [ "$SKIP_BUILD" != 1 ] && [ -z "$OHA" ]; then
    log "building rg-load (oha is not installed)"
    (cd "$ROOT" && cargo build --release -p ringgate-loadtest) >"$WORK/build-loadtest.log" 2>&1 \
        || log "WARNING: cargo build -p ringgate-loadtest failed (see $WORK/build-loadtest.log)"
fi
if [ -z "$OHA" ] && [ -x "$CARGO_TARGET_DIR/release/rg-load" ]; then
    cp "$CARGO_TARGET_DIR/release/rg-load" "$WORK/rg-load"
    RGLOAD="$WORK/rg-load"
    FIXED_TOOL=rg-load
fi
if [ "$SKIP_BUILD" != 1 ]; then
    log "building ringgate (cargo waits on the target-dir lock if another build is running)"
    if ! (cd "$ROOT" && cargo build --release --bin ringgate) >"$WORK/build.log" 2>&1; then
        tail -20 "$WORK/build.log" >&2
        # src/ may be mid-edit by someone else: measure the last good binary rather than nothing
        [ -x "$RINGGATE" ] || die "cargo build failed and there is no previous binary"
        BUILD_NOTE="cargo build failed (see raw dir build.log); measured the previous binary"
        log "WARNING: $BUILD_NOTE"
    fi
fi
[ -x "$RINGGATE" ] || die "$RINGGATE missing"

# ---------------------------------------------------------------- free ports
read -r P_UP P_RG P_ADMIN P_NGX < <(free_ports 4)
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
    rg_metric_snapshot "$out.m0.prom"
    taskset -c "$LOADGEN_CPU" "$WRK" -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >"$out.warmup.txt" 2>&1
    sleep 0.2; rg_metric_snapshot "$out.m1.prom"
    [ -n "$pid" ] && c0=$(tree_ticks "$pid")
    taskset -c "$LOADGEN_CPU" "$WRK" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/report.lua" "$url" >"$out.txt" 2>&1
    [ -n "$pid" ] && c1=$(tree_ticks "$pid")
    sleep 0.2; rg_metric_snapshot "$out.m2.prom"
    printf '{"sys":"%s","body":"%s","cpu_ticks":%s,"clk_tck":%s}\n' "$sys" "$body" \
        "$([ -n "$pid" ] && echo $((c1 - c0)) || echo null)" "$CLK_TCK" >"$out.meta.json"
    log "wrk $sys /$body: $(grep -E 'Requests/sec' "$out.txt" | tr -s ' ') $(grep -E 'Non-2xx|Socket errors' "$out.txt" | tr -s ' ' | tr '\n' ' ')"
}
for body in small 16k; do
    for sys in direct ringgate nginx; do run_wrk "$sys" "$body"; done
done

# ---------------------------------------------------------------- fixed rate (oha)
declare -A RATE
if [ "$FIXED_TOOL" != none ]; then
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
        rg_metric_snapshot "$out.m1.prom"
        [ -n "$pid" ] && c0=$(tree_ticks "$pid")
        # -w: let requests in flight at the deadline finish (else oha aborts them and the
        # gateway sees clients vanish mid-request)
        if [ "$FIXED_TOOL" = rg-load ]; then
            # rg-load checks every answer: 2xx and the exact body length
            taskset -c "$LOADGEN_CPU" "$RGLOAD" --mode http --url "$url" --conns "$CONNS" --rate "${RATE[$body]}" \
                --duration "$DURATION" --warmup 0 --expect-bytes "${BODY_LEN[$body]}" --out "$out.json" 2>"$out.err" \
                || log "rg-load $sys /$body failed (see $out.err)"
        else
            taskset -c "$LOADGEN_CPU" "$OHA" --no-tui --output-format json -w -z "${DURATION}s" -c "$CONNS" \
                -q "${RATE[$body]}" --latency-correction "$url" >"$out.json" 2>"$out.err" \
                || taskset -c "$LOADGEN_CPU" "$OHA" --no-tui -j -w -z "${DURATION}s" -c "$CONNS" \
                    -q "${RATE[$body]}" --latency-correction "$url" >"$out.json" 2>"$out.err"
        fi
        [ -n "$pid" ] && c1=$(tree_ticks "$pid")
        sleep 0.2; rg_metric_snapshot "$out.m2.prom"
        printf '{"sys":"%s","body":"%s","rate":%s,"cpu_ticks":%s,"clk_tck":%s}\n' "$sys" "$body" "${RATE[$body]}" \
            "$([ -n "$pid" ] && echo $((c1 - c0)) || echo null)" "$CLK_TCK" >"$out.meta.json"
        log "$FIXED_TOOL $sys /$body at ${RATE[$body]} req/s done"
    }
    for body in small 16k; do
        for sys in direct ringgate nginx; do run_oha "$sys" "$body"; done
    done
fi

rg_metric_snapshot "$WORK/ringgate-metrics-after.txt"
for s in ringgate nginx; do kill -0 "${SUT_PID[$s]}" 2>/dev/null || die "$s died during the run (see $WORK)"; done

# ---------------------------------------------------------------- versions
export BENCH_WORK="$WORK" BENCH_RESULTS="$RESULTS" BENCH_OHA="$OHA" BENCH_CONNS="$CONNS" \
    BENCH_DURATION="$DURATION" BENCH_WARMUP="$WARMUP" BENCH_CLK_TCK="$CLK_TCK" \
    BENCH_IDLE_RG="${IDLE_PCT[ringgate]}" BENCH_IDLE_NGX="${IDLE_PCT[nginx]}" \
    BENCH_NGINX_VERSION="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
    BENCH_WRK_VERSION="$("$WRK" -v 2>&1 | head -1 | awk '{print $2}')" \
    BENCH_OHA_VERSION="$([ -n "$OHA" ] && "$OHA" --version 2>/dev/null | head -1 || echo none)" \
    BENCH_FIXED_TOOL="$FIXED_TOOL" \
    BENCH_RGLOAD_VERSION="$([ -n "$RGLOAD" ] && echo "rg-load $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null) (sha256 $(sha256sum "$RGLOAD" | cut -c1-16))" || echo none)" \
    BENCH_RINGGATE_VERSION="$("$RINGGATE" --version)" \
    BENCH_RINGGATE_REV="$(git_rev)" \
    BENCH_RINGGATE_SHA256="$(sha256sum "$RINGGATE" | cut -c1-16)" \
    BENCH_RINGGATE_MTIME="$(date -u -r "$RINGGATE" +%Y-%m-%dT%H:%M:%SZ)" \
    BENCH_LOADAVG_START="$LOADAVG_START" BENCH_LOADAVG_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
    BENCH_OTHER_BUSY="$(other_busy)" \
    BENCH_BUILD_NOTE="$BUILD_NOTE" BENCH_NPROC="$(nproc)" BENCH_KERNEL="$(uname -r)" \
    BENCH_CPU_MODEL="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
    BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" BENCH_ELAPSED="$(( $(date +%s) - T0 ))"

python3 - <<'PY'
import json, os, re, glob, sys

E = os.environ
work, results = E["BENCH_WORK"], E["BENCH_RESULTS"]
sys.path.insert(0, os.path.dirname(os.path.abspath(results)))
from report_lib import f1, prom, rnd  # noqa: E402
runs = os.path.join(work, "runs")
FT = E.get("BENCH_FIXED_TOOL", "oha")  # the fixed-rate load generator
SYSTEMS, BODIES = ["direct", "ringgate", "nginx"], ["small", "16k"]
BODY_BYTES = {"small": 5, "16k": 16384}


def parse_wrk(sys, body):
    base = os.path.join(runs, f"wrk-{sys}-{body}")
    text = open(base + ".txt").read()
    meta = json.load(open(base + ".meta.json"))
    d = next(json.loads(l[8:]) for l in text.splitlines() if l.startswith("WRKJSON "))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    sock = dict(zip(["connect", "read", "write", "timeout"], map(int, m.groups()))) if m else {
        k: 0 for k in ["connect", "read", "write", "timeout"]}
    secs = d["duration_us"] / 1e6
    r = {
        "requests": d["requests"],
        "duration_s": rnd(secs, 3),
        "rps": rnd(d["requests"] / secs),
        "transfer_MiB_s": rnd(d["bytes"] / secs / 2**20, 2),
        "latency_ms": {"p50": d["lat_p50_us"] / 1000, "p90": d["lat_p90_us"] / 1000,
                       "p99": d["lat_p99_us"] / 1000, "max": d["lat_max_us"] / 1000,
                       "mean": rnd(d["lat_mean_us"] / 1000, 3)},
        "non_2xx_3xx": non2xx,
        "socket_errors": sock,
        "wrk_raw": os.path.relpath(base + ".txt", results),
    }
    if meta["cpu_ticks"] is not None:
        cpu_s = meta["cpu_ticks"] / meta["clk_tck"]
        r["sut_cpu_s"] = rnd(cpu_s, 2)
        r["sut_cpu_util_pct"] = rnd(cpu_s / secs * 100, 1)
        ok = max(1, d["requests"] - non2xx)
        r["sut_cpu_us_per_req"] = rnd(cpu_s * 1e6 / ok, 2)
        r["sut_req_per_cpu_s"] = rnd(ok / cpu_s) if cpu_s > 0 else None
    return r


def parse_oha(sys, body):
    base = os.path.join(runs, f"oha-{sys}-{body}")
    if not os.path.exists(base + ".meta.json"):
        return None
    meta = json.load(open(base + ".meta.json"))
    try:
        d = json.load(open(base + ".json"))
    except Exception as e:  # noqa: BLE001
        return {"error": f"cannot parse oha output: {e}"}
    if d.get("tool") == "rg-load":
        ok = d["ok"]
        secs = d["duration_s"]
        r = {
            "offered_rps": meta["rate"],
            "achieved_rps": rnd(d.get("sent", ok) / secs) if secs else None,
            "responses_2xx": ok,
            "status_codes": {k[7:]: v for k, v in d["errors"].items() if k.startswith("status_")},
            "errors": {k: v for k, v in d["errors"].items() if not k.startswith("status_")},
            "latency_ms": {k: rnd(d["latency_us"][j] / 1000, 3) for k, j in
                           (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"))},
            "rg_load_raw": os.path.relpath(base + ".json", results),
        }
        if meta["cpu_ticks"] is not None:
            cpu_s = meta["cpu_ticks"] / meta["clk_tck"]
            r["sut_cpu_s"] = rnd(cpu_s, 2)
            r["sut_cpu_util_pct"] = rnd(cpu_s / secs * 100, 1)
            r["sut_cpu_us_per_req"] = rnd(cpu_s * 1e6 / max(1, ok), 2)
            r["sut_req_per_cpu_s"] = rnd(ok / cpu_s) if cpu_s > 0 else None
        return r
    summ = d.get("summary", {})
    codes = {str(k): int(v) for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errs = {str(k): int(v) for k, v in (d.get("errorDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values()) + sum(errs.values())
    pct = d.get("latencyPercentiles") or {}
    secs = float(summ.get("total") or E["BENCH_DURATION"])
    r = {
        "offered_rps": meta["rate"],
        "achieved_rps": rnd(total / secs) if secs else None,
        "responses_2xx": ok,
        "status_codes": codes,
        "errors": errs,
        "latency_ms": {k: rnd(pct[k] * 1000, 3) if pct.get(k) is not None else None
                       for k in ("p50", "p90", "p99", "p99.9")},
        "oha_raw": os.path.relpath(base + ".json", results),
    }
    if meta["cpu_ticks"] is not None:
        cpu_s = meta["cpu_ticks"] / meta["clk_tck"]
        r["sut_cpu_s"] = rnd(cpu_s, 2)
        r["sut_cpu_util_pct"] = rnd(cpu_s / secs * 100, 1)
        r["sut_cpu_us_per_req"] = rnd(cpu_s * 1e6 / max(1, ok), 2)
        r["sut_req_per_cpu_s"] = rnd(ok / cpu_s) if cpu_s > 0 else None
    return r


sat = {b: {s: parse_wrk(s, b) for s in SYSTEMS} for b in BODIES}
fixed = {b: {s: parse_oha(s, b) for s in SYSTEMS} for b in BODIES}
have_fixed = any(v for b in fixed.values() for v in b.values())

# ringgate's own view of the run (admin /metrics delta)
before, after = prom(os.path.join(work, "ringgate-metrics-before.txt")), prom(os.path.join(work, "ringgate-metrics-after.txt"))
rg_delta = {}
for k, v in after.items():
    if k.startswith(("ringgate_requests_total", "ringgate_request_errors_total", "ringgate_upstream_retries_total",
                     "ringgate_connections_total", "ringgate_connections_rejected_total")):
        dv = v - before.get(k, 0.0)
        if dv:
            rg_delta[k] = int(dv)
notes = []
RG_KEYS = ("ringgate_requests_total", "ringgate_request_errors_total", "ringgate_upstream_retries_total",
           "ringgate_connections_total", "ringgate_connections_rejected_total")


def short(k):
    return re.sub(r'route="[^"]*",?', "", k).replace("{}", "")


def prom_delta(a, b):
    pa, pb = prom(a), prom(b)
    d = {}
    for k, v in pb.items():
        if k.startswith(RG_KEYS) and v - pa.get(k, 0.0):
            d[short(k)] = int(v - pa.get(k, 0.0))
    return d


# ringgate's counters per run phase: which run produced what (e.g. errors that wrk never saw)
rg_per_run = {}
for tool in ("wrk", "oha"):
    for b in BODIES:
        for s in SYSTEMS:
            base = os.path.join(runs, f"{tool}-{s}-{b}")
            ph = {}
            if os.path.exists(base + ".m0.prom"):
                ph["warmup"] = prom_delta(base + ".m0.prom", base + ".m1.prom")
            if os.path.exists(base + ".m1.prom"):
                ph["measured"] = prom_delta(base + ".m1.prom", base + ".m2.prom")
            if ph:
                rg_per_run[f"{tool} {s} /{b}"] = ph
for run, ph in rg_per_run.items():
    for phase, d in ph.items():
        odd = {k: v for k, v in d.items() if "errors" in k or "rejected" in k or "retries" in k
               or ("status=" in k and 'status="200"' not in k)}
        if odd:
            notes.append(f"ringgate counters during {run} ({phase}): {odd}")
        if not run.startswith(("wrk ringgate", "oha ringgate")) and d:
            notes.append(f"ringgate counters moved during {run} ({phase}), which sent it no traffic: {d}")

rg_log = [l.rstrip() for l in open(os.path.join(work, "ringgate.log")) if " info " not in l]
affinity = [l.split() for l in open(os.path.join(work, "affinity.txt")) if l.strip()]

# checks: anything too good or broken
for b in BODIES:
    for s in SYSTEMS:
        r = sat[b][s]
        errs = r["non_2xx_3xx"] + sum(r["socket_errors"].values())
        if errs:
            notes.append(f"wrk {s} /{b}: {r['non_2xx_3xx']} non-2xx/3xx, socket errors {r['socket_errors']}")
    for s in ("ringgate", "nginx"):
        if sat[b][s]["rps"] > sat[b]["direct"]["rps"]:
            r = sat[b][s]
            notes.append(f"wrk {s} /{b}: {r['rps']:,} req/s is above direct ({sat[b]['direct']['rps']:,}) with "
                         f"{r['non_2xx_3xx']} non-2xx and {sum(r['socket_errors'].values())} socket errors: in the "
                         "direct run wrk and the upstream share core 0, so a proxy on core 1 can pipeline them "
                         "a little better; not a measurement error")
        f = fixed[b][s]
        if f and not f.get("error"):
            non2 = {k: v for k, v in f["status_codes"].items() if not k.startswith("2")}
            if non2 or f["errors"]:
                notes.append(f"{FT} {s} /{b}: non-2xx {non2 or 'none'}, errors {f['errors'] or 'none'}")
            if f["achieved_rps"] and f["achieved_rps"] < 0.95 * f["offered_rps"]:
                notes.append(f"{FT} {s} /{b}: achieved {f['achieved_rps']} req/s of {f['offered_rps']} offered")
if E.get("BENCH_OTHER_BUSY", "").strip():
    notes.append(f"other processes using CPU at the end of the run (lifetime average %CPU, may distort numbers): {E['BENCH_OTHER_BUSY'].strip()}")
if E.get("BENCH_BUILD_NOTE"):
    notes.append(E["BENCH_BUILD_NOTE"])
for a in affinity:
    if a[3] != "1":
        notes.append(f"{a[0]} thread {a[2]} ({a[1]}) allowed on CPUs {a[3]}, expected 1")
if rg_log:
    notes.append(f"ringgate logged {len(rg_log)} non-info line(s), first: {rg_log[0][:200]}")

cmp = {}
for b in BODIES:
    rg, ng, di = sat[b]["ringgate"], sat[b]["nginx"], sat[b]["direct"]
    c = {
        "saturation": {
            "rps_ringgate_over_nginx": rnd(rg["rps"] / ng["rps"], 3),
            "req_per_cpu_s_ringgate_over_nginx": rnd(rg["sut_req_per_cpu_s"] / ng["sut_req_per_cpu_s"], 3),
            "cpu_us_per_req": {"ringgate": rg["sut_cpu_us_per_req"], "nginx": ng["sut_cpu_us_per_req"]},
            "added_latency_ms": {s: {p: rnd(sat[b][s]["latency_ms"][p] - di["latency_ms"][p], 3) for p in ("p50", "p99")}
                                 for s in ("ringgate", "nginx")},
        }
    }
    fr, fn, fd = fixed[b]["ringgate"], fixed[b]["nginx"], fixed[b]["direct"]
    if fr and fn and fd and not any(x.get("error") for x in (fr, fn, fd)):
        c["fixed_rate"] = {
            "offered_rps": fr["offered_rps"],
            "req_per_cpu_s_ringgate_over_nginx": rnd(fr["sut_req_per_cpu_s"] / fn["sut_req_per_cpu_s"], 3)
            if fr.get("sut_req_per_cpu_s") and fn.get("sut_req_per_cpu_s") else None,
            "cpu_us_per_req": {"ringgate": fr.get("sut_cpu_us_per_req"), "nginx": fn.get("sut_cpu_us_per_req")},
            "added_latency_ms": {s: {p: rnd(fixed[b][s]["latency_ms"][p] - fd["latency_ms"][p], 3)
                                     if fixed[b][s]["latency_ms"][p] is not None and fd["latency_ms"][p] is not None else None
                                     for p in ("p50", "p99")} for s in ("ringgate", "nginx")},
        }
    cmp[b] = c

FT_CMD = ("rg-load --mode http --rate RATE --conns {c} --duration {d} --warmup 0 --expect-bytes N (open loop, latency "
          "from the intended send time; every answer checked: 2xx and the exact body length)" if FT == "rg-load" else
          "oha -c{c} -z{d}s -w -q RATE --latency-correction").format(c=E["BENCH_CONNS"], d=E["BENCH_DURATION"])
cpu_method = (f"fixed offered rate with {FT} (latency-corrected), CPU of the gateway from /proc/PID/stat "
              "utime+stime before/after divided by 2xx responses; the saturation runs report the same ratio too"
              if have_fixed else
              "at saturation only (oha not available): CPU of the gateway from /proc/PID/stat utime+stime "
              "before/after the wrk run divided by 2xx responses completed")
env = {
    "date": E["BENCH_DATE"], "nproc": int(E["BENCH_NPROC"]), "kernel": E["BENCH_KERNEL"],
    "cpu_model": E["BENCH_CPU_MODEL"], "nginx": E["BENCH_NGINX_VERSION"], "wrk": E["BENCH_WRK_VERSION"],
    "oha": E["BENCH_OHA_VERSION"], "rg_load": E.get("BENCH_RGLOAD_VERSION"), "fixed_rate_tool": FT,
    "ringgate": E["BENCH_RINGGATE_VERSION"],
    "ringgate_git_rev": E["BENCH_RINGGATE_REV"],
    "ringgate_binary_sha256_prefix": E["BENCH_RINGGATE_SHA256"], "ringgate_binary_mtime": E["BENCH_RINGGATE_MTIME"],
    "scheduling": E.get("BENCH_SCHED") or os.popen(f"chrt -p {os.getppid()}").read().strip().replace("\n", "; "),
    "loadavg_at_start": E["BENCH_LOADAVG_START"], "loadavg_at_end": E["BENCH_LOADAVG_END"],
    "other_busy_processes": E["BENCH_OTHER_BUSY"].strip() or None,
    "clk_tck": int(E["BENCH_CLK_TCK"]), "elapsed_s": int(E["BENCH_ELAPSED"]),
}
method = {
    "layout": "core 0: upstream nginx (worker_processes 1) + load generator; core 1: system under test "
              "(ringgate workers: 1 / nginx proxy worker_processes 1), both started with taskset",
    "upstream": "nginx, access_log off, /small = return 200 \"hello\" (5 B), /16k = 16384 B static file, "
                "keepalive_requests 1000000",
    "ringgate": "workers: 1, accessLog disabled, one bind on 127.0.0.1, route pathPrefix / -> upstream, driver auto",
    "nginx_proxy": "worker_processes 1, access_log off, upstream keepalive 64, proxy_http_version 1.1, "
                   "proxy_set_header Connection \"\", keepalive_requests 1000000, default proxy buffering",
    "saturation": f"wrk -t1 -c{E['BENCH_CONNS']} -d{E['BENCH_DURATION']}s --latency, after a {E['BENCH_WARMUP']}s warm-up run",
    "fixed_rate": (f"{FT_CMD}, RATE = 50% of the "
                   "lower saturated rate of ringgate and nginx for that body (or FIXED_RATE)") if have_fixed else None,
    "cpu_per_request": cpu_method,
    "idle_cpu_pct_2s": {"ringgate": float(E["BENCH_IDLE_RG"]), "nginx": float(E["BENCH_IDLE_NGX"])},
}
out = {"env": env, "method": method, "saturation": sat, "fixed_rate": fixed if have_fixed else None,
       "comparison": cmp, "ringgate_metrics_delta": rg_delta, "ringgate_metrics_per_run": rg_per_run, "ringgate_log_non_info": rg_log[:20],
       "sut_thread_affinity": [{"sys": a[0], "tid": int(a[1]), "comm": a[2], "cpus": a[3]} for a in affinity],
       "notes": notes, "raw_dir": os.path.relpath(work, results)}
with open(os.path.join(results, "http-proxy.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")

# ---------------------------------------------------------------- markdown
L = []
w = L.append


w("# HTTP reverse-proxy benchmark: direct vs ringgate vs nginx")
w("")
w(f"Generated by `bench/http-proxy.sh` on {env['date']}. Machine-readable: `http-proxy.json`.")
w("")
w("| | |")
w("|---|---|")
w(f"| ringgate | {env['ringgate']}, HEAD `{env['ringgate_git_rev'][:12]}` (binary sha256 `{env['ringgate_binary_sha256_prefix']}…`, built {env['ringgate_binary_mtime']}; the work tree may hold uncommitted changes) |")
w(f"| nginx | {env['nginx']} (upstream and proxy) |")
w(f"| wrk | {env['wrk']} |")
w(f"| oha | {env['oha']} |")
if FT == "rg-load":
    w(f"| rg-load (fixed rate) | {env['rg_load']} |")
w(f"| machine | `nproc` = {env['nproc']}, {env['cpu_model']}, kernel {env['kernel']} |")
w(f"| scheduling | {env['scheduling']} |")
w(f"| run time | {env['elapsed_s']} s (includes the build step); load average at start {env['loadavg_at_start']}, at end {env['loadavg_at_end']} |")
w("")
for b in BODIES:
    w(f"## Saturation, {'5 B body (`/small`)' if b == 'small' else '16 KiB body (`/16k`)'}: wrk -t1 -c{E['BENCH_CONNS']} -d{E['BENCH_DURATION']}s")
    w("")
    w("| path | req/s | p50 ms | p99 ms | non-2xx | socket errors | gateway CPU % of a core | gateway CPU-µs/req | req per gateway CPU-s |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in SYSTEMS:
        r = sat[b][s]
        w(f"| {s} | {f1(r['rps'], 0)} | {r['latency_ms']['p50']:.3f} | {r['latency_ms']['p99']:.3f} | {r['non_2xx_3xx']} | "
          f"{sum(r['socket_errors'].values())} | {f1(r.get('sut_cpu_util_pct'))} | {f1(r.get('sut_cpu_us_per_req'), 2)} | "
          f"{f1(r.get('sut_req_per_cpu_s'), 0)} |")
    w("")
    if fixed[b]["ringgate"]:
        rate = fixed[b]["ringgate"].get("offered_rps")
        w(f"Fixed rate {rate:,} req/s ({FT}, latency-corrected):")
        w("")
        w("| path | achieved req/s | p50 ms | p99 ms | non-2xx + errors | gateway CPU % of a core | gateway CPU-µs/req | req per gateway CPU-s |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in SYSTEMS:
            r = fixed[b][s]
            if not r or r.get("error"):
                w(f"| {s} | {r.get('error') if r else 'missing'} | | | | | | |")
                continue
            bad = sum(v for k, v in r["status_codes"].items() if not k.startswith("2")) + sum(r["errors"].values())
            w(f"| {s} | {f1(r['achieved_rps'], 0)} | {f1(r['latency_ms']['p50'], 3)} | {f1(r['latency_ms']['p99'], 3)} | {bad} | "
              f"{f1(r.get('sut_cpu_util_pct'))} | {f1(r.get('sut_cpu_us_per_req'), 2)} | {f1(r.get('sut_req_per_cpu_s'), 0)} |")
        w("")

w("## Side by side: ringgate vs nginx")
w("")
w("| body | load | req/s ringgate ÷ nginx | req per CPU-s ringgate ÷ nginx | CPU-µs/req ringgate / nginx | added p50 ms ringgate / nginx | added p99 ms ringgate / nginx |")
w("|---|---|---:|---:|---:|---:|---:|")
for b in BODIES:
    for mode in ("saturation", "fixed_rate"):
        c = cmp[b].get(mode)
        if not c:
            continue
        a = c["added_latency_ms"]
        rps_ratio = f1(c.get("rps_ringgate_over_nginx"), 3) if mode == "saturation" else "–"
        load = "saturation" if mode == "saturation" else f"fixed {c['offered_rps']:,} req/s"
        w(f"| {b} | {load} | {rps_ratio} | {f1(c['req_per_cpu_s_ringgate_over_nginx'], 3)} | "
          f"{f1(c['cpu_us_per_req']['ringgate'], 2)} / {f1(c['cpu_us_per_req']['nginx'], 2)} | "
          f"{f1(a['ringgate']['p50'], 3)} / {f1(a['nginx']['p50'], 3)} | {f1(a['ringgate']['p99'], 3)} / {f1(a['nginx']['p99'], 3)} |")
w("")
w("\"Added\" latency is the path's percentile minus the direct run's percentile under the same load. "
  "At saturation it is mostly queueing wherever the bottleneck is (often core 0, shared by wrk and the "
  "upstream), so it can be negative; the fixed-rate rows are the meaningful ones.")
w("")
w("## Method")
w("")
for k in ("layout", "upstream", "ringgate", "nginx_proxy", "saturation", "fixed_rate"):
    if method[k]:
        w(f"- **{k}**: {method[k]}")
w(f"- **CPU per request**: {cpu_method}. Clock-tick resolution is 1/{env['clk_tck']} s; "
  "the CPU window spans wrk's whole run (connect to close). Kernel time spent on loopback "
  "TCP for the gateway's sockets is counted in the gateway's stime when it runs in its context.")
w(f"- **idle CPU** over 2 s before the load: ringgate {method['idle_cpu_pct_2s']['ringgate']}%, nginx {method['idle_cpu_pct_2s']['nginx']}%.")
w("- Both gateways run for the whole benchmark, both pinned to core 1; only one gets traffic at a time.")
w("- Correctness is checked first: each path must return 200 and the exact body length for both bodies.")
w("")
w("## Checks and notes")
w("")
if notes:
    for n in notes:
        w(f"- {n}")
else:
    w("- No non-2xx responses, socket errors or fixed-rate errors in any run; no path beat direct; "
      "all gateway threads were confined to core 1.")
w(f"- ringgate's own counters over the run (admin `/metrics` delta): " +
  (", ".join(f"`{k}` {v:,}" for k, v in sorted(rg_delta.items())) or "none"))
w("")
with open(os.path.join(results, "http-proxy.md"), "w") as f:
    f.write("\n".join(L))
PY
log "done in $(( $(date +%s) - T0 ))s: $RESULTS/http-proxy.md, $RESULTS/http-proxy.json (raw output in $WORK)"
