#!/usr/bin/env bash
# What TLS costs the gateway: CPU-µs per request on one kept-alive connection per client, plain
# vs HTTPS, and per new connection (`Connection: close` on every request, so each request pays
# a connect and, for HTTPS, a full handshake: wrk does not resume sessions), for an ECDSA P-256
# and an RSA-2048 certificate. Every route is a gateway-answered directResponse (2 bytes), so
# no upstream takes part.
#
# Layout on a 2-core box: core 1 = ringgate (workers: 1), core 0 = wrk. Saturation runs.
# Writes bench/results/tls.json and bench/results/tls.md.
#
# Runs are interleaved over ROUNDS rounds (machine drift hits all alike); the median round per
# run is reported, with the spread.
# Env knobs: DURATION [5] seconds per run, ROUNDS [3], CONNS [16], SKIP_BUILD [0].
# Needs: wrk (Debian), taskset, openssl (certificates).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS="$ROOT/bench/results"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
SKIP_BUILD=${SKIP_BUILD:-0}
RINGGATE="$ROOT/target/release/ringgate"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1 || die "wrk is needed"
command -v taskset >/dev/null || die "taskset is needed"
command -v openssl >/dev/null || die "openssl is needed (certificates)"
[ "$SKIP_BUILD" = 1 ] || (cd "$ROOT" && cargo build --release --quiet --bin ringgate)

mkdir -p "$RESULTS/tmp"
WORK=$(mktemp -d "$RESULTS/tmp/tls.XXXXXX")
GW_PID=""
trap '[ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null; wait 2>/dev/null || true' EXIT

# self-signed certificates for localhost (wrk does not verify)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$WORK/ec.key" -out "$WORK/ec.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$WORK/rsa.key" -out "$WORK/rsa.crt" 2>/dev/null

read -r PLAIN EC RSA ADMIN <<<"$(free_ports 4)"
route='routes: [{ policies: { directResponse: { status: 200, body: ok } } }]'
cat >"$WORK/config.yaml" <<EOF
config: { workers: 1, adminAddr: "127.0.0.1:$ADMIN" }
frontendPolicies: { accessLog: { enabled: false } }
binds:
- { port: $PLAIN, address: 127.0.0.1, listeners: [{ $route }] }
- port: $EC
  address: 127.0.0.1
  listeners: [{ protocol: HTTPS, tls: { cert: "$WORK/ec.crt", key: "$WORK/ec.key" }, $route }]
- port: $RSA
  address: 127.0.0.1
  listeners: [{ protocol: HTTPS, tls: { cert: "$WORK/rsa.crt", key: "$WORK/rsa.key" }, $route }]
EOF
taskset -c 1 "$RINGGATE" -c "$WORK/config.yaml" >"$WORK/gw.log" 2>&1 &
GW_PID=$!
wait_ringgate "$WORK/gw.log"

: >"$WORK/rows.tsv"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run() { wrk_row "$WORK/rows.tsv" "$1" "$2" socket "${3:-}"; } # name url [header]
for _ in $(seq 1 "$ROUNDS"); do
    run plain-keepalive "http://127.0.0.1:$PLAIN/"
    run tls-ec-keepalive "https://localhost:$EC/"
    run plain-close "http://127.0.0.1:$PLAIN/" "Connection: close"
    run tls-ec-close "https://localhost:$EC/" "Connection: close"
    run tls-rsa-close "https://localhost:$RSA/" "Connection: close"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^ringgate_tls' >"$WORK/tls-metrics.txt" || true
# what an OpenSSL client (as wrk) negotiates
for p in "$EC" "$RSA"; do
    openssl s_client -connect "localhost:$p" -servername localhost </dev/null 2>/dev/null |
        grep -E "^(New|Protocol|Cipher is)|Server Temp Key|Peer signature type" | tr '\n' ' ' || true
    echo
done | sed 's/  */ /g' >"$WORK/negotiated.txt"

python3 - "$WORK/rows.tsv" "$RESULTS" "$DURATION" "$CONNS" "$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || git_rev)" "$ROUNDS" "$WORK/tls-metrics.txt" "$WORK/negotiated.txt" "$LOAD_BEFORE" "$LOAD_AFTER" <<'EOF'
import json, sys
rows_path, results, duration, conns, rev, rounds, metrics_path, negotiated_path, load0, load1 = sys.argv[1:]
negotiated = open(negotiated_path).read().strip()
runs = {}
for line in open(rows_path):
    name, reqs, cpu_us, p50, p99, errs = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append({"requests": int(reqs), "cpu_us_per_req": int(cpu_us) / int(reqs),
                                      "req_per_s": int(reqs) / float(duration), "p50": p50, "p99": p99,
                                      "socket_errors": int(errs)})
rows = {}
for name, rs in runs.items():
    cpu = [r["cpu_us_per_req"] for r in rs]
    med = sorted(rs, key=lambda r: r["cpu_us_per_req"])[len(rs) // 2]
    rows[name] = dict(med, run=name, cpu_min=min(cpu), cpu_max=max(cpu), runs=rs)
c = lambda n: rows[n]["cpu_us_per_req"]
derived = {
    "tls_keepalive_added_cpu_us_per_req": c("tls-ec-keepalive") - c("plain-keepalive"),
    "ec_handshake_cpu_us": c("tls-ec-close") - c("plain-close"),
    "rsa_handshake_cpu_us": c("tls-rsa-close") - c("plain-close"),
}
metrics = open(metrics_path).read()
method = (f"wrk -t1 -c{conns} -d{duration}s per run, {rounds} interleaved rounds, median round reported; "
          "ringgate workers:1 pinned to core 1, wrk (OpenSSL, TLS 1.3, no session resumption) on core 0; "
          "gateway CPU from /proc/<pid>/stat utime+stime over the run divided by the requests wrk counted")
json.dump({"method": method, "commit": rev, "rows": list(rows.values()), "derived": derived, "metrics": metrics,
           "negotiated": negotiated, "loadavg_before": load0, "loadavg_after": load1},
          open(f"{results}/tls.json", "w"), indent=2)
with open(f"{results}/tls.md", "w") as f:
    f.write("# TLS cost\n\nGenerated by `bench/tls.sh` at commit `%s`. Every route answers a 2-byte "
            "directResponse, so the gateway's work is HTTP/1.1 plus TLS. Method: %s. `close` runs send "
            "`Connection: close`, so every request opens a connection (and, over TLS, does a full handshake; "
            "rustls sends two session tickets that wrk never uses). Negotiated with an OpenSSL client "
            "(EC bind, then RSA bind):\n\n```\n%s\n```\n\n"
            % (rev[:12], method, negotiated))
    f.write("| run | req/s | gateway CPU-µs/req (median) | min–max over rounds | p50 | p99 | socket errors |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    for r in rows.values():
        f.write(f"| {r['run']} | {r['req_per_s']:,.0f} | {r['cpu_us_per_req']:.2f} | {r['cpu_min']:.2f}–{r['cpu_max']:.2f} | "
                f"{r['p50']} | {r['p99']} | {r['socket_errors']} |\n")
    f.write("\nDerived (medians):\n\n"
            f"- TLS on a kept-alive connection adds **{derived['tls_keepalive_added_cpu_us_per_req']:.2f} CPU-µs** per request "
            "(decrypt the request, encrypt the response, one extra copy each way through rustls' buffers).\n"
            f"- A full handshake costs the gateway about **{derived['ec_handshake_cpu_us']:.0f} CPU-µs** with an ECDSA P-256 "
            f"certificate and **{derived['rsa_handshake_cpu_us']:.0f} CPU-µs** with RSA-2048 (the `close` runs minus the plain `close` run, "
            "which already pays accept, connect and close).\n\n"
            "Gateway TLS counters after the run (the few `peer_closed`/`io` errors are wrk closing the "
            "connections it has mid-handshake when each `close` run ends):\n\n```\n" + metrics + "```\n\n"
            f"Load average (1/5/15 min) before the runs: {load0}; after: {load1}. On this 2-core VM other "
            "jobs share the cores, so compare the min–max spread of a row before reading small differences.\n")
print(open(f"{results}/tls.md").read())
EOF
