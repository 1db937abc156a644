#!/usr/bin/env python3
"""Latency a `globalRateLimit` check adds to a request (see bench/README.md).

Sequential requests on one keep-alive connection through ringgate (`workers: 1`, pinned to core 1) to
`directResponse` routes: without a limit, with `localRateLimit`, and with `globalRateLimit` of one and of
two buckets against a local redis-server (core 0, with this client). Redis's own EVALSHA round trip from
this client is measured too, for reference. Prints a Markdown table.

    bench/global-limit.py [REQUESTS]     # default 20000 per route; needs target/release/ringgate and
                                         # target/peers/redis (tests/peers/install_redis.sh)
    RINGGATE_ARGS="--driver legacy" bench/global-limit.py   # extra gateway arguments
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
WARMUP = 2000
BIG = "maxTokens: 1000000000, tokensPerFill: 1000000000, fillInterval: 1h"


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
            return p, lines
    raise SystemExit("did not start:\n" + "".join(lines))


def recv_response(s, buf):
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            total = end + 4 + length
            if len(buf) >= total:
                return head.split(" ")[1], buf[total:]
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk


def measure(addr, path):
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = f"GET {path} HTTP/1.1\r\nhost: bench\r\nx-user: u1\r\n\r\n".encode()
    buf, times = b"", []
    for i in range(WARMUP + N):
        t = time.perf_counter_ns()
        s.sendall(req)
        status, buf = recv_response(s, buf)
        if status != "200":
            raise SystemExit(f"{path}: status {status}")
        if i >= WARMUP:
            times.append(time.perf_counter_ns() - t)
    s.close()
    return times


def redis_rtt(port):
    """EVALSHA of the bucket script, as the gateway sends it, timed from here."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def cmd(*args):
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out

    script = open(os.path.join(ROOT, "src/ratelimit/redis.rs")).read()
    script = script.split('pub const BUCKET_SCRIPT: &str = r#"')[1].split('"#;')[0]
    s.sendall(cmd("SCRIPT", "LOAD", script))
    sha = s.recv(4096).split(b"\r\n")[1]
    req = cmd("EVALSHA", sha, 1, "bench:rtt", 1000000000, 1000000000, 3600000000, 1, "take")
    times = []
    for i in range(WARMUP + N):
        t = time.perf_counter_ns()
        s.sendall(req)
        got = b""
        while got.count(b"\r\n") < 5:
            got += s.recv(4096)
        if i >= WARMUP:
            times.append(time.perf_counter_ns() - t)
    return times


def stats(times):
    us = sorted(t / 1000 for t in times)
    pick = lambda q: us[min(len(us) - 1, int(q * len(us)))]
    return statistics.mean(us), pick(0.5), pick(0.99)


def main():
    redis_bin = os.path.join(ROOT, "target/peers/redis/bin/redis-server")
    gateway = os.path.join(ROOT, "target/release/ringgate")
    rport, gport, aport = free_port(), free_port(), free_port()
    redis, _ = start(
        ["taskset", "-c", "0", redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        lambda l: "Ready to accept connections" in l,
    )
    g = f"        globalRateLimit:\n          redis: 127.0.0.1:{rport}\n          limits:\n"
    routes = {
        "/plain": "",
        "/local": f"        localRateLimit:\n        - {{ {BIG} }}\n",
        "/global": g + f"          - {{ {BIG} }}\n",
        "/global2": g + f"          - {{ {BIG} }}\n          - {{ {BIG}, key: 'request.headers[\"x-user\"]' }}\n",
    }
    cfg = f"config:\n  workers: 1\n  adminAddr: 127.0.0.1:{aport}\nfrontendPolicies:\n  accessLog:\n    enabled: false\n"
    cfg += f"binds:\n- port: {gport}\n  address: 127.0.0.1\n  listeners:\n  - routes:\n"
    for path, pol in routes.items():
        cfg += f"    - matches: [{{path: {{exact: {path}}}}}]\n      policies:\n{pol}        directResponse: {{ status: 200, body: ok }}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg)
    gw, _ = start(["taskset", "-c", "1", gateway, "-c", f.name] + os.environ.get("RINGGATE_ARGS", "").split(), lambda l: "admin listening" in l)
    try:
        rows = [(p, stats(measure(("127.0.0.1", gport), p))) for p in routes]
        rows.append(("redis EVALSHA alone", stats(redis_rtt(rport))))
    finally:
        gw.kill()
        redis.kill()
        os.unlink(f.name)
    base = rows[0][1]
    print(f"{N} sequential requests per row, one keep-alive connection, after {WARMUP} warm-up\n")
    print("| route | mean µs | p50 µs | p99 µs | p50 added vs /plain |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (mean, p50, p99) in rows:
        added = f"{p50 - base[1]:+.1f}" if name.startswith("/") else ""
        print(f"| {name} | {mean:.1f} | {p50:.1f} | {p99:.1f} | {added} |")


if __name__ == "__main__":
    main()
