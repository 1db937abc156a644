#!/usr/bin/env python3
"""How exactly rate limits hold under load from many connections spread over shards and replicas.

Two scenarios, each a `directResponse` route limited to MAX tokens with FILL more per second:
  local   one gateway, `workers: 2`, `localRateLimit`; wrk with 64 connections (the kernel spreads
          them over both shards' SO_REUSEPORT listeners)
  global  two gateway processes (`workers: 1` each) sharing one `globalRateLimit` bucket in a local
          redis-server; one wrk per gateway, 32 connections each
wrk runs for DURATION seconds at saturation. The allowed count is read from the gateways' own
`ringgate_requests_total{status="200"}`; the bucket admits MAX plus FILL per fill that happens
while the load runs, so the count must fall within [MAX + FILL*(n-1), MAX + FILL*(n+1)] with n the
fills in DURATION (the window's phase against the fill ticks is unknown). Writes
bench/results/ratelimit-accuracy.{json,md}.

    bench/ratelimit-accuracy.py [DURATION]   # default 10 s; needs wrk, target/peers/redis
    RINGGATE_BIN=target/debug/ringgate bench/ratelimit-accuracy.py   # default target/release/ringgate
"""

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = int(sys.argv[1]) if len(sys.argv) > 1 else 10
MAX, FILL = 500, 500  # per second
BIN = os.path.join(ROOT, os.environ.get("RINGGATE_BIN", "target/release/ringgate"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, ready):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if ready(line):
            return p
    raise SystemExit("did not start:\n" + "".join(lines))


def gateway(workers, policy, core):
    # `port: 0` in every replica's config: the global bucket's Redis key names the route by its
    # configured port, so replicas share it when their configs agree, as on separate hosts
    admin = free_port()
    cfg = (
        f"config:\n  workers: {workers}\n  adminAddr: 127.0.0.1:{admin}\n"
        "frontendPolicies:\n  accessLog:\n    enabled: false\n"
        f"binds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n"
        f"    - name: rl\n      policies:\n{policy}        directResponse: {{ status: 200, body: ok }}\n"
    )
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(cfg)
    f.close()
    p = start(["taskset", "-c", core, BIN, "-c", f.name], lambda l: "admin listening" in l)
    listeners = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/listeners"))
    port = int(listeners[0]["address"].rsplit(":", 1)[1])
    return p, port, admin


def counts(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    out = {"200": 0, "429": 0}
    for line in text.splitlines():
        if line.startswith("ringgate_requests_total{") and '/rl"' in line:
            for status in out:
                if f'status="{status}"' in line:
                    out[status] += int(float(line.rsplit(" ", 1)[1]))
    return out


def wrk(port, conns):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{DURATION}s", f"http://127.0.0.1:{port}/"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(name, gws, conns):
    before = [counts(a) for _, _, a in gws]
    t0 = time.monotonic()
    loads = [wrk(port, conns) for _, port, _ in gws]
    for l in loads:
        l.communicate()
    elapsed = time.monotonic() - t0
    after = [counts(a) for _, _, a in gws]
    allowed = sum(a["200"] - b["200"] for a, b in zip(after, before))
    refused = sum(a["429"] - b["429"] for a, b in zip(after, before))
    n = DURATION  # fills of one second each
    lo, hi = MAX + FILL * (n - 1), MAX + FILL * (n + 1)
    row = {
        "scenario": name,
        "requests": allowed + refused,
        "allowed": allowed,
        "refused": refused,
        "bound_low": lo,
        "bound_high": hi,
        "within": lo <= allowed <= hi,
        "elapsed_s": round(elapsed, 2),
    }
    print(json.dumps(row), file=sys.stderr)
    return row


def main():
    rows = []
    limit = f"{{ maxTokens: {MAX}, tokensPerFill: {FILL}, fillInterval: 1s }}"
    p, port, admin = gateway(2, f"        localRateLimit:\n        - {limit}\n", "1")
    try:
        rows.append(run("local: 1 gateway × 2 shards, 64 connections", [(p, port, admin)], 64))
    finally:
        p.kill()
    redis_bin = os.path.join(ROOT, "target/peers/redis/bin/redis-server")
    rport = free_port()
    redis = start(
        ["taskset", "-c", "0", redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        lambda l: "Ready to accept connections" in l,
    )
    gws = []
    try:
        pol = f"        globalRateLimit:\n          redis: 127.0.0.1:{rport}\n          limits:\n          - {limit}\n"
        gws = [gateway(1, pol, "1"), gateway(1, pol, "1")]
        rows.append(run("global: 2 gateways sharing Redis, 2×32 connections", gws, 32))
    finally:
        for g in gws:
            g[0].kill()
        redis.kill()
    meta = {
        "method": __doc__.strip().splitlines()[0],
        "duration_s": DURATION,
        "limit": {"maxTokens": MAX, "tokensPerFill": FILL, "fillInterval": "1s"},
        "binary": os.path.relpath(BIN, ROOT),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows": rows,
    }
    out = os.path.join(ROOT, "bench/results/ratelimit-accuracy")
    with open(out + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write("# Rate-limit accuracy under load\n\n")
        f.write(f"`bench/ratelimit-accuracy.py {DURATION}`; limit {MAX} tokens, +{FILL}/s; wrk at saturation for ")
        f.write(f"{DURATION} s. The bucket's own bound is MAX + FILL per fill during the run, with ±1 fill for the ")
        f.write("window's phase. Gateways pinned to core 1, wrk and redis-server to core 0.\n\n")
        f.write("| scenario | requests | allowed | refused (429) | bucket bound | within |\n|---|---:|---:|---:|---|---|\n")
        for r in rows:
            f.write(
                f"| {r['scenario']} | {r['requests']} | {r['allowed']} | {r['refused']} | "
                f"{r['bound_low']}–{r['bound_high']} | {'yes' if r['within'] else '**no**'} |\n"
            )
    print(open(out + ".md").read())
    if not all(r["within"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
