#!/usr/bin/env python3
"""stdio-rss: what an idle per-session stdio process costs the gateway (RSS and threads).

Usage: bench/stdio-rss.py [--sessions N (200)] [--label TEXT] [--out FILE.json]

Starts ringgate (target/release/ringgate if built, else target/debug/ringgate; RINGGATE=path
overrides) with `workers: 2` and one stdio target running `rg-fixture stdio` (target/*/rg-fixture;
FIXTURE=path overrides) in its default perSession mode. --warmup sessions (20) are opened (so the
first-use allocations, the shared machinery and the I/O threads exist), then VmRSS and Threads
of the gateway process are read from /proc/<pid>/status; then N more sessions are opened
(initialize, notifications/initialized, tools/list: each has its own child process, now idle),
memory is left to settle, and both are read again. Per session = (after - before) / N, and
the least-squares slope of RssAnon over readings taken every N/10 sessions (RssAnon: the
binary's file-backed pages come and go by megabytes and are no session's). The
children's own memory is theirs, not counted. Output: one JSON object on stdout (and in --out).
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pick(env, names):
    if os.environ.get(env):
        return os.environ[env]
    for n in names:
        p = os.path.join(ROOT, n)
        if os.path.exists(p):
            return p
    sys.exit(f"none of {names} is built")


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "Threads"):
                out[k] = int(v.split()[0])
    return out


def children(pid):
    n = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                n += len(f.read().split())
        except OSError:
            pass
    return n


def post(conn, body, sid=None):
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if sid:
        h["mcp-session-id"] = sid
    conn.request("POST", "/mcp", body=json.dumps(body), headers=h)
    r = conn.getresponse()
    data = r.read()
    if r.status not in (200, 202):
        sys.exit(f"HTTP {r.status}: {data[:300]!r}")
    return r.getheader("mcp-session-id"), data


def open_session(conn, i):
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": f"c{i}", "version": "1"}}
    sid, data = post(conn, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
    if not sid:
        sys.exit(f"no session: {data[:300]!r}")
    post(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    if not os.environ.get("NO_LIST"):
        _, data = post(conn, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
        if b'"tools"' not in data:
            sys.exit(f"tools/list failed: {data[:300]!r}")
    return sid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--label", default="")
    ap.add_argument("--demo", action="store_true", help="the built-in demo target instead (no process): the session's own cost")
    ap.add_argument("--warmup", type=int, default=20, help="sessions opened before the baseline")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds before each reading")
    ap.add_argument("--out")
    a = ap.parse_args()
    gw_bin = pick("RINGGATE", ["target/release/ringgate", "target/debug/ringgate"])
    fixture = pick("FIXTURE", ["target/release/rg-fixture", "target/debug/rg-fixture"])
    d = tempfile.mkdtemp(prefix="stdio-rss-")
    cfg = os.path.join(d, "config.yaml")
    with open(cfg, "w") as f:
        f.write(
            "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n  mcp:\n    sessionTtl: 1h\n"
            "binds:\n- port: 0\n  address: 127.0.0.1\n  listeners:\n  - routes:\n"
            "    - matches: [{path: {pathPrefix: /mcp}}]\n      backends:\n      - mcp:\n          targets:\n"
            + (
                "          - name: fx\n            demo: {}\n"
                if a.demo
                else f"          - name: fx\n            stdio: {{ cmd: \"{fixture}\", args: [stdio] }}\n"
                f"            maxSessions: {a.sessions + a.warmup + 10}\n"
            )
        )
    log = open(os.path.join(d, "gateway.log"), "w+")
    gw = subprocess.Popen([gw_bin, "-c", cfg], stdout=log, stderr=subprocess.STDOUT)
    try:
        addr = None
        deadline = time.time() + 20
        while addr is None:
            if time.time() > deadline:
                sys.exit("gateway did not start")
            log.seek(0)
            for line in log:
                if "listening bind=" in line:
                    addr = line.split("address=")[1].split()[0]
            time.sleep(0.05)
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        # warm-up: first-use allocations, the I/O and restarter threads, allocator pages
        for i in range(a.warmup):
            open_session(conn, -1 - i)
        time.sleep(a.settle)
        before = status(gw.pid)
        t0 = time.time()
        # readings along the way: the allocator commits memory in chunks, so the slope over
        # many points says more than the difference of two
        points = [(0, before["RssAnon"])]
        step = max(1, a.sessions // 10)
        for i in range(1, a.sessions + 1):
            open_session(conn, i)
            if i % step == 0 and i < a.sessions:
                points.append((i, status(gw.pid)["RssAnon"]))
        setup = time.time() - t0
        # let freed setup buffers go back and lazily started threads settle
        time.sleep(a.settle)
        after = status(gw.pid)
        kids = children(gw.pid)
        points.append((a.sessions, after["RssAnon"]))
        mx = sum(p[0] for p in points) / len(points)
        my = sum(p[1] for p in points) / len(points)
        slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
        n = a.sessions
        res = {
            "label": a.label,
            "gateway": os.path.relpath(gw_bin, ROOT),
            "sessions": n,
            "children": kids,
            "rss_kib_before": before["VmRSS"],
            "rss_kib_after": after["VmRSS"],
            "rss_kib_per_session": round((after["VmRSS"] - before["VmRSS"]) / n, 2),
            "anon_kib_before": before["RssAnon"],
            "anon_kib_after": after["RssAnon"],
            "anon_kib_per_session": round((after["RssAnon"] - before["RssAnon"]) / n, 2),
            "anon_kib_per_session_slope": round(slope, 2),
            "threads_before": before["Threads"],
            "threads_after": after["Threads"],
            "setup_s": round(setup, 2),
        }
        print(json.dumps(res))
        if a.out:
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1)
    finally:
        gw.terminate()
        try:
            gw.wait(10)
        except subprocess.TimeoutExpired:
            gw.kill()


if __name__ == "__main__":
    main()
