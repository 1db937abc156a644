#!/usr/bin/env python3
"""MCP benchmarks with rg-fixture and rg-load: direct to the fixture vs through ringgate.

Usage: bench/mcp.py [SCENARIO ...] [--fragment DIR]
  SCENARIO: mcp-call, mcp-list-fanout, mcp-session-setup, mcp-streams, mcp-idle-sessions
            (default: all but mcp-call, which bench/mcp-call.sh runs together with its
            server-everything rows)
  --fragment DIR: write DIR/<scenario>.json and .md instead of bench/results/<scenario>.* (used
            by bench/mcp-call.sh, which merges them into its own report)

Layout on a 2-core box: core 0 = rg-load + rg-fixture, core 1 = ringgate (workers: 1). Every
process is started with taskset and stopped at exit. See bench/README.md for the method.

Env knobs: DURATION [10] s per measured run, WARMUP [2] s before each, CONNS [16], RATE [3000]
calls/s of the fixed-rate phase, ROUNDS [3] interleaved rounds of the fixed-rate phase (the
report gives the median and the spread), LIST_RATE [500], SESSION_RATE [500],
STREAMS ["500 2000"], STREAM_EVERY_MS [1000], SESSIONS ["10000 100000"], SKIP_BUILD [0],
BIN_DIR [target/release]: take ringgate, rg-fixture and rg-load from there, unbuilt (e.g. a copy
of an older build, for a before/after comparison).
"""

import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
TMPROOT = os.path.join(RESULTS, "tmp")
LOAD_CPU, SUT_CPU = "0", "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

E = os.environ
DURATION = float(E.get("DURATION", 10))
WARMUP = float(E.get("WARMUP", 2))
CONNS = int(E.get("CONNS", 16))
RATE = float(E.get("RATE", 3000))
ROUNDS = int(E.get("ROUNDS", 3))
LIST_RATE = float(E.get("LIST_RATE", 500))
SESSION_RATE = float(E.get("SESSION_RATE", 500))
STREAMS = [int(x) for x in E.get("STREAMS", "500 2000").split()]
STREAM_EVERY_MS = int(E.get("STREAM_EVERY_MS", 1000))
SESSIONS = [int(x) for x in E.get("SESSIONS", "10000 100000").split()]
SKIP_BUILD = E.get("SKIP_BUILD", "0") == "1" or "BIN_DIR" in E
BIN_DIR = E.get("BIN_DIR")

ALL = ["mcp-call", "mcp-list-fanout", "mcp-session-setup", "mcp-streams", "mcp-idle-sessions"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"ERROR: {msg}")
    sys.exit(1)


# ------------------------------------------------------------------ processes


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Procs:
    """Every process started here, stopped on exit (by pid, never by name)."""

    def __init__(self):
        self.procs = []

    def start(self, cpu, argv, log_path, env=None):
        f = open(log_path, "w")
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=f, stderr=subprocess.STDOUT,
                             preexec_fn=raise_nofile, env=env)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


PROCS = Procs()


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, p, name):
    for _ in range(200):
        if p.poll() is not None:
            die(f"{name} exited at start-up (status {p.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{name} not listening on {port}")


def cpu_ns(pid):
    """Run time of all live threads of pid in ns (/proc/PID/task/*/schedstat), and utime+stime ticks."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks = int(f[11]) + int(f[12])
    except OSError:
        return 0, 0
    return total, ticks


def rss_kib(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def core_times():
    """Per core: (busy, steal, total) jiffies from /proc/stat."""
    out = {}
    for line in open("/proc/stat"):
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:9]]
            out[f[0][3:]] = (v[0] + v[1] + v[2] + v[5] + v[6], v[7], sum(v))
    return out


def busy_pct(a, b, core):
    (b0, s0, t0), (b1, s1, t1) = a[core], b[core]
    dt = max(t1 - t0, 1)
    return round(100 * (b1 - b0) / dt, 1), round(100 * (s1 - s0) / dt, 1)


def others_busy():
    """Other processes using CPU right now (a hint for a noisy machine), from ps."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True).stdout
    except OSError:
        return ""
    mine = {str(p.pid) for p in PROCS.procs} | {str(os.getpid())}
    hits = []
    for line in out.splitlines():
        f = line.split(None, 2)
        if len(f) == 3 and f[0] not in mine and float(f[1]) > 5 and f[2] not in ("ps", "taskset", "rg-load"):
            hits.append(f"{f[2]}({f[1]}%)")
    return " ".join(hits[:8])


# ------------------------------------------------------------------ build and versions


class Bins:
    def __init__(self, work):
        rel = BIN_DIR or os.path.join(ROOT, "target", "release")
        self.note = f"binaries from {BIN_DIR}. " if BIN_DIR else ""
        if not SKIP_BUILD:
            log("building ringgate and the load tools (release; cargo waits on the target-dir lock)")
            for pkg_args in (["--bin", "ringgate", "-p", "ringgate"], ["-p", "ringgate-loadtest"]):
                r = subprocess.run(["cargo", "build", "--release"] + pkg_args, cwd=ROOT, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.stderr.write(r.stderr[-2000:])
                    self.note += f"cargo build {' '.join(pkg_args)} failed; measured the previous binary. "
        # private copies: a rebuild during the run changes nothing
        for name in ("ringgate", "rg-fixture", "rg-load"):
            src = os.path.join(rel, name)
            if not os.path.exists(src):
                die(f"{src} missing")
            shutil.copy2(src, os.path.join(work, name))
        self.ringgate = os.path.join(work, "ringgate")
        self.fixture = os.path.join(work, "rg-fixture")
        self.load = os.path.join(work, "rg-load")
        self.ringgate_mtime = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(os.path.join(rel, "ringgate"))))


def git(*args):
    try:
        return subprocess.run(["git"] + list(args), cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def sha256_prefix(path):
    import hashlib
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]


def sched_policy():
    """How this script (and so everything it starts) is scheduled."""
    pol = os.sched_getscheduler(0)
    if pol == os.SCHED_FIFO:
        return f"SCHED_FIFO priority {os.sched_getparam(0).sched_priority} (inherited by every process started)"
    return f"SCHED_OTHER, nice {os.nice(0)}"


def environment(bins):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "kernel": os.uname().release,
        "cpu_model": cpu,
        "ringgate": subprocess.run([bins.ringgate, "--version"], capture_output=True, text=True).stdout.strip(),
        "ringgate_git_rev": git("rev-parse", "HEAD"),
        "uncommitted_changes_in": git("status", "--porcelain", "--untracked-files=no", "--", "src", "runtime",
                                      "loadtest", "Cargo.toml", "Cargo.lock").split()[1::2] or None,
        "ringgate_binary_sha256_prefix": sha256_prefix(bins.ringgate),
        "ringgate_binary_mtime": bins.ringgate_mtime,
        "load_tools_sha256_prefix": {"rg-load": sha256_prefix(bins.load), "rg-fixture": sha256_prefix(bins.fixture)},
        "build_note": bins.note or None,
        "scheduling": sched_policy(),
    }


# ------------------------------------------------------------------ systems


class Fixture:
    def __init__(self, work, bins, name, *args, cpu=LOAD_CPU):
        (self.port,) = free_ports(1)
        self.p = PROCS.start(cpu, [bins.fixture, "--listen", f"127.0.0.1:{self.port}"] + [str(a) for a in args],
                             os.path.join(work, f"{name}.log"))
        wait_port(self.port, self.p, name)
        self.url = f"http://127.0.0.1:{self.port}"


class Gateway:
    def __init__(self, work, bins, name, binds, uncached=()):
        """binds: {bind_name: [(target_name, url), ...]}; one ringgate, one port per bind. The
        targets of the binds named in `uncached` have the catalog cache off (`catalogMaxAge: 0s`)."""
        ports = free_ports(len(binds) + 1)
        self.admin = ports[-1]
        self.ports = dict(zip(binds, ports))
        y = [f"# generated by bench/mcp.py", "config:", "  workers: 1", f"  adminAddr: 127.0.0.1:{self.admin}",
             "frontendPolicies:", "  accessLog:", "    enabled: false", "binds:"]
        for b, targets in binds.items():
            y += [f"- port: {self.ports[b]}", "  address: 127.0.0.1", "  listeners:", "  - routes:",
                  f"    - name: {b}", "      matches:", "      - path:", "          pathPrefix: /mcp",
                  "      backends:", "      - mcp:", "          targets:"]
            for tn, url in targets:
                y += [f"          - name: {tn}", "            mcp:", f"              host: {url}"]
                if b in uncached:
                    y += ["            catalogMaxAge: 0s"]
        self.config = os.path.join(work, f"{name}.yaml")
        open(self.config, "w").write("\n".join(y) + "\n")
        r = subprocess.run([bins.ringgate, "validate", "-c", self.config], capture_output=True, text=True)
        if r.returncode != 0:
            die(f"ringgate config invalid: {r.stderr or r.stdout}")
        self.p = PROCS.start(SUT_CPU, [bins.ringgate, "-c", self.config], os.path.join(work, f"{name}.log"))
        for port in list(self.ports.values()) + [self.admin]:
            wait_port(port, self.p, "ringgate")
        self.log = os.path.join(work, f"{name}.log")

    def url(self, bind):
        return f"http://127.0.0.1:{self.ports[bind]}/mcp"

    def alive(self):
        if self.p.poll() is not None:
            die(f"ringgate exited during the benchmark (status {self.p.returncode}), see {self.log}")

    def affinity(self):
        out = set()
        for t in os.listdir(f"/proc/{self.p.pid}/task"):
            for line in open(f"/proc/{self.p.pid}/task/{t}/status"):
                if line.startswith("Cpus_allowed_list"):
                    out.add(line.split()[1])
        return sorted(out)


def rg_load(bins, work, tag, url, mode, *args, gw=None, fx=None):
    """One rg-load run on core 0, with CPU of the gateway and fixture and core busy % over it."""
    out = os.path.join(work, f"{tag}.json")
    argv = [bins.load, "--url", url, "--mode", mode, "--out", out] + [str(a) for a in args]
    g0 = cpu_ns(gw.p.pid) if gw else (0, 0)
    f0 = cpu_ns(fx.p.pid) if fx else (0, 0)
    c0 = core_times()
    t0 = time.time()
    r = subprocess.run(["taskset", "-c", LOAD_CPU] + argv, capture_output=True, text=True, preexec_fn=raise_nofile)
    t1 = time.time()
    c1 = core_times()
    g1 = cpu_ns(gw.p.pid) if gw else (0, 0)
    f1 = cpu_ns(fx.p.pid) if fx else (0, 0)
    if r.returncode != 0:
        die(f"rg-load {tag} failed: {r.stderr[-1000:]}")
    rep = json.load(open(out))
    ok = max(rep["ok"], 1)
    # CPU over the whole rg-load run (warm-up included) per answer of the whole run: the warm-up
    # runs at the same rate, so it changes the count, not the ratio; the ratio is per checked answer
    whole = rep["ok"] * (rep["duration_s"] + rep["warmup_s"]) / max(rep["duration_s"], 1e-9) if rep["ok"] else 1
    meta = {
        "wall_s": round(t1 - t0, 2),
        "gateway_cpu_s": round((g1[0] - g0[0]) / 1e9, 3) if gw else None,
        "gateway_ticks": g1[1] - g0[1] if gw else None,
        "fixture_cpu_s": round((f1[0] - f0[0]) / 1e9, 3) if fx else None,
        "core0_busy_pct": busy_pct(c0, c1, "0")[0], "core1_busy_pct": busy_pct(c0, c1, "1")[0],
        "steal_pct": max(busy_pct(c0, c1, "0")[1], busy_pct(c0, c1, "1")[1]),
        "others": others_busy(),
    }
    meta["gateway_cpu_us_per_req"] = round((g1[0] - g0[0]) / 1e3 / whole, 2) if gw else None
    meta["fixture_cpu_us_per_req"] = round((f1[0] - f0[0]) / 1e3 / whole, 2) if fx else None
    wall = max(t1 - t0, 1e-9)
    meta["gateway_cpu_pct"] = round(100 * (g1[0] - g0[0]) / 1e9 / wall, 1) if gw else None
    rep["meta"] = meta
    lat = rep["latency_us"]
    log(f"{tag}: {rep['throughput_rps']:,.0f}/s p50 {lat['p50']} p99 {lat['p99']} p99.9 {lat['p99_9']} µs, "
        f"errors {rep['error_total']}, gateway {meta['gateway_cpu_us_per_req']} µs/req, core1 {meta['core1_busy_pct']}%")
    if rep["error_total"]:
        log(f"  errors: {rep['errors']} sample: {json.dumps(rep.get('error_samples'))[:300]}")
    if gw:
        gw.alive()
    return rep


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return [round(min(xs), 2), round(max(xs), 2)] if xs else None


def f(x, n=1):
    return "–" if x is None else f"{x:,.{n}f}"


def row_summary(reps):
    """Median over rounds of the numbers a table shows."""
    g = lambda k: [r["latency_us"][k] for r in reps]  # noqa: E731
    return {
        "rounds": len(reps),
        "throughput_rps": med([r["throughput_rps"] for r in reps]),
        "p50_us": med(g("p50")), "p99_us": med(g("p99")), "p99_9_us": med(g("p99_9")), "max_us": med(g("max")),
        "service_p50_us": med([r.get("service_time_us", {}).get("p50") for r in reps]),
        "errors": sum(r["error_total"] for r in reps),
        "error_kinds": {k: sum(r["errors"].get(k, 0) for r in reps) for r in reps for k in r["errors"]},
        "gateway_cpu_us_per_req": med([r["meta"]["gateway_cpu_us_per_req"] for r in reps]),
        "gateway_cpu_us_per_req_spread": spread([r["meta"]["gateway_cpu_us_per_req"] for r in reps]),
        "fixture_cpu_us_per_req": med([r["meta"]["fixture_cpu_us_per_req"] for r in reps]),
        "gateway_cpu_pct": med([r["meta"]["gateway_cpu_pct"] for r in reps]),
        "core0_busy_pct": med([r["meta"]["core0_busy_pct"] for r in reps]),
        "core1_busy_pct": med([r["meta"]["core1_busy_pct"] for r in reps]),
        "steal_pct": max(r["meta"]["steal_pct"] for r in reps),
        "others_busy": sorted({r["meta"]["others"] for r in reps if r["meta"]["others"]}),
    }


def added(via, direct, key):
    """Per round (same round = side by side) via minus direct, then the median and the spread."""
    d = [v["latency_us"][key] - x["latency_us"][key] for v, x in zip(via, direct)]
    return med(d), spread(d)


def table(w, rows, fixed):
    head = "| path | calls/s | p50 µs | p99 µs | p99.9 µs | max µs | errors | gateway CPU-µs/call | gateway CPU % | fixture CPU-µs/call | core 0 busy % | core 1 busy % |"
    w(head)
    w("|---|" + "---:|" * (head.count("|") - 2))
    for label, s in rows:
        w(f"| {label} | {f(s['throughput_rps'], 0)} | {f(s['p50_us'])} | {f(s['p99_us'])} | {f(s['p99_9_us'])} | "
          f"{f(s['max_us'])} | {s['errors']} | {f(s['gateway_cpu_us_per_req'], 2)} | {f(s['gateway_cpu_pct'])} | "
          f"{f(s['fixture_cpu_us_per_req'], 2)} | {f(s['core0_busy_pct'])} | {f(s['core1_busy_pct'])} |")


# ------------------------------------------------------------------ scenarios


def scenario_mcp_call(work, bins):
    fx = Fixture(work, bins, "fixture", "--tools", "8")
    gw = Gateway(work, bins, "ringgate", {"call": [("fx", fx.url + "/mcp")]})
    paths = {
        "direct-legacy": (fx.url + "/mcp", "mcp-call-legacy", None),
        "via-legacy": (gw.url("call"), "mcp-call-legacy", gw),
        "direct-modern": (fx.url + "/mcp", "mcp-call-modern", None),
        "via-modern": (gw.url("call"), "mcp-call-modern", gw),
    }
    # direct again with the fixture on the gateway's core: its calls cross cores twice, as the
    # gateway's do four times, so this row shows what crossing costs on this machine
    fx1 = Fixture(work, bins, "fixture-core1", "--tools", "8", cpu=SUT_CPU)
    paths["xcore-legacy"] = (fx1.url + "/mcp", "mcp-call-legacy", None)
    paths["xcore-modern"] = (fx1.url + "/mcp", "mcp-call-modern", None)
    fxs = {"xcore-legacy": fx1, "xcore-modern": fx1}
    # (key in the JSON, label in the table, via path, direct path)
    eras = [("legacy", "legacy", "via-legacy", "direct-legacy"), ("modern", "modern", "via-modern", "direct-modern"),
            ("legacy_xcore", "legacy, over direct across cores", "via-legacy", "xcore-legacy"),
            ("modern_xcore", "modern, over direct across cores", "via-modern", "xcore-modern")]
    base = ["--conns", CONNS, "--duration", DURATION, "--warmup", WARMUP]
    # a short unmeasured run per path first: connections, pooled upstream sessions, page cache
    for p, (url, mode, g) in paths.items():
        rg_load(bins, work, f"prime-{p}", url, mode, "--conns", CONNS, "--duration", 1, "--warmup", 0, gw=g,
                fx=fxs.get(p, fx))
    fixed = {p: [] for p in paths}
    for r in range(ROUNDS):
        for p, (url, mode, g) in paths.items():
            fixed[p].append(rg_load(bins, work, f"fixed{r}-{p}", url, mode, "--rate", RATE, *base, gw=g,
                                    fx=fxs.get(p, fx)))
    sat = {}
    for p, (url, mode, g) in paths.items():
        sat[p] = [rg_load(bins, work, f"sat-{p}", url, mode, *base, gw=g, fx=fxs.get(p, fx))]
    out = {
        "fixed_rate": {p: row_summary(v) for p, v in fixed.items()},
        "saturation": {p: row_summary(v) for p, v in sat.items()},
        "added_latency_us": {},
        "raw": {"fixed_rate": fixed, "saturation": sat},
        "gateway_thread_cpus": gw.affinity(),
    }
    for era, _, via, direct in eras:
        for k in ("p50", "p99", "p99_9"):
            m, s = added(fixed[via], fixed[direct], k)
            out["added_latency_us"][f"{era}_{k}"] = {"median": m, "per_round_spread": s}
    for era in ("legacy", "modern"):
        v, d = sat[f"via-{era}"][0], sat[f"direct-{era}"][0]
        out.setdefault("saturation_ratio", {})[era] = round(v["throughput_rps"] / max(d["throughput_rps"], 1), 3)
    L = []
    w = L.append
    w(f"### rg-fixture direct vs through ringgate (`tools/call echo`, one target)\n")
    w(f"Fixed rate {RATE:,.0f} calls/s, rg-load open loop over {CONNS} connections, latency from the intended send "
      f"time; median of {ROUNDS} interleaved rounds of {DURATION:g} s (after {WARMUP:g} s of warm-up each):\n")
    labels = {"direct-legacy": "direct, legacy session", "via-legacy": "via ringgate, legacy session",
              "direct-modern": "direct, modern (2026-07-28)", "via-modern": "via ringgate, modern (2026-07-28)",
              "xcore-legacy": "direct across cores (fixture on core 1), legacy session",
              "xcore-modern": "direct across cores (fixture on core 1), modern (2026-07-28)"}
    table(w, [(labels[p], out["fixed_rate"][p]) for p in paths], True)
    w("")
    w("| latency added by ringgate at the fixed rate | p50 µs | p99 µs | p99.9 µs | target |")
    w("|---|---:|---:|---:|---|")
    for era, label, _, _ in eras:
        a = out["added_latency_us"]
        p50, p99, p999 = a[f"{era}_p50"], a[f"{era}_p99"], a[f"{era}_p99_9"]
        verdict = "met" if p50["median"] is not None and p50["median"] <= 100 and p99["median"] <= 250 else "missed"
        w(f"| {label} (median; per-round range) | {f(p50['median'])} ({f(p50['per_round_spread'][0])} to "
          f"{f(p50['per_round_spread'][1])}) | {f(p99['median'])} ({f(p99['per_round_spread'][0])} to "
          f"{f(p99['per_round_spread'][1])}) | {f(p999['median'])} | ≤ 100 / ≤ 250: {verdict} |")
    w("")
    w(f"Saturation, closed loop, {CONNS} connections, {DURATION:g} s:\n")
    table(w, [(labels[p], out["saturation"][p]) for p in paths], False)
    w("")
    w(f"Saturated calls/s via ÷ direct: legacy {out['saturation_ratio']['legacy']}, modern "
      f"{out['saturation_ratio']['modern']}. Direct, rg-load and the fixture share core 0; via the gateway core 0 "
      "still runs both while ringgate has core 1, so compare the gateway's CPU-µs per call with the fixture's "
      "(the fixture must cost less per call than the gateway, or it would be the bottleneck).")
    return out, "\n".join(L)


def scenario_list_fanout(work, bins):
    # its 2026-07-28 lists carry the cache hint ttlMs 60000 (public), so the "cached" paths may
    # keep modern pages; legacy-era pages come through each client's own upstream session and
    # carry no hint, so they are fetched every time there too
    fx = Fixture(work, bins, "fixture", "--tools", "8", "--list-ttl-ms", "60000")
    # eight targets on one fixture (distinct paths, distinct upstream sessions); in the "slow"
    # bind they answer tools/* after 1 ms, the last one after 2 ms: the slowest target
    fast = [(f"t{i}", f"{fx.url}/mcp/t{i}") for i in range(1, 9)]
    slow = [(f"t{i}", f"{fx.url}/mcp/t{i}/delay-{2000 if i == 8 else 1000}") for i in range(1, 9)]
    # "fast"/"slow" measure the fan-out itself (catalog cache off); "*-cached" the same targets
    # with the cache on (the default), where a list is answered from the shard's cached pages
    gw = Gateway(work, bins, "ringgate", {"fast": fast, "slow": slow, "fast-cached": fast, "slow-cached": slow},
                 uncached=("fast", "slow"))
    paths = {
        "direct-one-target": (fx.url + "/mcp/t1", 8, None),
        "via-8-targets": (gw.url("fast"), 64, gw),
        "via-8-targets-cached": (gw.url("fast-cached"), 64, gw),
        "direct-slowest-target": (fx.url + "/mcp/t8/delay-2000", 8, None),
        "via-8-slow-targets": (gw.url("slow"), 64, gw),
        "via-8-slow-targets-cached": (gw.url("slow-cached"), 64, gw),
    }
    runs = {"fixed_rate": {}, "saturation": {}}
    for era in ("modern", "legacy"):
        mode = f"mcp-list-{era}"
        for p, (url, n, g) in paths.items():
            rg_load(bins, work, f"prime-{era}-{p}", url, mode, "--conns", CONNS, "--duration", 1, "--warmup", 0,
                    "--expect-tools", n, gw=g, fx=fx)
        for p, (url, n, g) in paths.items():
            runs["fixed_rate"][f"{era}/{p}"] = row_summary([rg_load(
                bins, work, f"fixed-{era}-{p}", url, mode, "--rate", LIST_RATE, "--conns", CONNS, "--duration",
                DURATION, "--warmup", WARMUP, "--expect-tools", n, gw=g, fx=fx)])
        for p in ("direct-one-target", "via-8-targets", "via-8-targets-cached"):
            url, n, g = paths[p]
            runs["saturation"][f"{era}/{p}"] = row_summary([rg_load(
                bins, work, f"sat-{era}-{p}", url, mode, "--conns", CONNS, "--duration", DURATION, "--warmup", WARMUP,
                "--expect-tools", n, gw=g, fx=fx)])
    out = dict(runs)
    out["slowest_ratio"] = {}
    for era in ("modern", "legacy"):
        d = runs["fixed_rate"][f"{era}/direct-slowest-target"]
        for via in ("via-8-slow-targets", "via-8-slow-targets-cached"):
            v = runs["fixed_rate"][f"{era}/{via}"]
            out["slowest_ratio"][f"{era}/{via}"] = {k: round(v[k] / d[k], 3) for k in ("p50_us", "p99_us")}
    L = []
    w = L.append
    w(f"Fixed rate {LIST_RATE:,.0f} lists/s (rg-load open loop, {CONNS} connections, {DURATION:g} s after "
      f"{WARMUP:g} s warm-up). One rg-fixture process serves all eight targets (8 tools each, so 64 merged, "
      "prefixed tools through ringgate). \"slow\": every target waits 1 ms before answering tools/*, the "
      "eighth 2 ms (the slowest target). Paths without \"cached\" have the catalog cache off "
      "(`catalogMaxAge: 0s`): every list fans out to the eight targets; \"cached\" paths run with the "
      "cache on (the default): the fixture's 2026-07-28 lists carry the hint `ttlMs: 60000`, public, so modern "
      "lists are answered from each shard's cached pages; legacy clients' lists go through their own upstream "
      "sessions without hints, which are never cached.\n")
    table(w, [(k, v) for k, v in runs["fixed_rate"].items()], True)
    w("")
    w("| era / path | ÷ slowest target direct, p50 | p99 | target |")
    w("|---|---:|---:|---|")
    for k, r in out["slowest_ratio"].items():
        w(f"| {k} | {r['p50_us']} | {r['p99_us']} | ≤ 1.1×: {'met' if r['p50_us'] <= 1.1 else 'missed'} (p50) |")
    w("")
    w(f"Saturation (closed loop, {CONNS} connections), no delays:\n")
    table(w, [(k, v) for k, v in runs["saturation"].items()], False)
    return out, "\n".join(L)


def scenario_session_setup(work, bins):
    fx = Fixture(work, bins, "fixture", "--tools", "8")
    gw = Gateway(work, bins, "ringgate", {"four": [(f"s{i}", f"{fx.url}/mcp/s{i}") for i in range(1, 5)]})
    paths = {"direct (one server)": (fx.url + "/mcp/s1", None), "via ringgate (4 targets)": (gw.url("four"), gw)}
    out = {"fixed_rate": {}, "saturation": {}}
    for p, (url, g) in paths.items():
        out["fixed_rate"][p] = row_summary([rg_load(
            bins, work, f"fixed-{p[:6]}", url, "mcp-session", "--rate", SESSION_RATE, "--conns", CONNS,
            "--duration", DURATION, "--warmup", WARMUP, gw=g, fx=fx)])
    for p, (url, g) in paths.items():
        out["saturation"][p] = row_summary([rg_load(
            bins, work, f"sat-{p[:6]}", url, "mcp-session", "--conns", CONNS, "--duration", DURATION, "--warmup",
            WARMUP, gw=g, fx=fx)])
    d, v = out["saturation"]["direct (one server)"], out["saturation"]["via ringgate (4 targets)"]
    out["saturation_ratio"] = round(v["throughput_rps"] / max(d["throughput_rps"], 1), 3)
    L = []
    w = L.append
    w("One session = `initialize` → `notifications/initialized` → `DELETE`, three HTTP exchanges on one "
      "keep-alive connection; through ringgate each becomes four upstream exchanges (one per target, in parallel). "
      "\"calls/s\" below is sessions/s and CPU is per session.\n")
    w(f"Fixed rate {SESSION_RATE:,.0f} sessions/s ({CONNS} connections, {DURATION:g} s):\n")
    table(w, list(out["fixed_rate"].items()), True)
    w("")
    w(f"Saturation ({CONNS} connections, {DURATION:g} s):\n")
    table(w, list(out["saturation"].items()), False)
    w("")
    w(f"Saturated sessions/s via ÷ direct: {out['saturation_ratio']}.")
    return out, "\n".join(L)


def wait_file(path, p, limit):
    t0 = time.time()
    while not os.path.exists(path):
        if p.poll() is not None or time.time() - t0 > limit:
            return False
        time.sleep(0.05)
    return True


def scenario_streams(work, bins):
    out = {"runs": []}
    hold = max(DURATION, 6)
    for n in STREAMS:
        for via in (False, True):
            fx = Fixture(work, bins, f"fixture-{n}-{via}", "--notify-ms", str(STREAM_EVERY_MS))
            gw = Gateway(work, bins, f"ringgate-{n}-{via}", {"s": [("fx", fx.url + "/mcp")]}) if via else None
            # one call first, so the baseline includes a warmed-up shard (buffers, pools)
            rg_load(bins, work, f"prime-{n}-{via}", gw.url("s") if via else fx.url + "/mcp", "mcp-call-legacy",
                    "--conns", 2, "--duration", 1, "--warmup", 0, gw=gw, fx=fx)
            time.sleep(0.5)
            base = rss_kib(gw.p.pid)[0] if gw else None
            fx_base = rss_kib(fx.p.pid)[0]
            ready = os.path.join(work, f"ready-{n}-{via}")
            url = gw.url("s") if via else fx.url + "/mcp"
            argv = [bins.load, "--url", url, "--mode", "mcp-streams", "--conns", str(n), "--duration", str(hold),
                    "--warmup", "2", "--timeout-ms", "20000", "--ready-file", ready,
                    "--out", os.path.join(work, f"streams-{n}-{via}.json")]
            g0 = cpu_ns(gw.p.pid) if gw else (0, 0)
            lp = subprocess.Popen(["taskset", "-c", LOAD_CPU] + argv, preexec_fn=raise_nofile,
                                  stderr=subprocess.PIPE, text=True)
            opened = wait_file(ready, lp, 60)
            time.sleep(2)  # every stream has had an event through it
            open_rss = rss_kib(gw.p.pid)[0] if gw else None
            fx_open = rss_kib(fx.p.pid)[0]
            _, err = lp.communicate()
            g1 = cpu_ns(gw.p.pid) if gw else (0, 0)
            if lp.returncode != 0:
                die(f"rg-load streams failed: {err[-500:]}")
            rep = json.load(open(os.path.join(work, f"streams-{n}-{via}.json")))
            r = {
                "streams": n, "via": via, "opened": rep["streams_opened"], "all_open_after_s": rep["all_open_after_s"],
                "events": rep["events"], "errors": rep["errors"], "event_latency_us": rep["latency_us"],
                "gateway_rss_kib_before": base, "gateway_rss_kib_open": open_rss,
                "gateway_kib_per_stream": round((open_rss - base) / n, 2) if gw else None,
                "gateway_cpu_s": round((g1[0] - g0[0]) / 1e9, 3) if gw else None,
                "fixture_kib_per_stream": round((fx_open - fx_base) / n, 2),
                "ready": opened,
            }
            if gw:
                r["gateway_cpu_us_per_event"] = round((g1[0] - g0[0]) / 1e3 / max(rep["events"], 1), 2)
            out["runs"].append(r)
            log(f"streams {n} {'via' if via else 'direct'}: opened {rep['streams_opened']}, events {rep['events']}, "
                f"p50 {rep['latency_us']['p50']} µs, errors {rep['error_total']}, gateway KiB/stream "
                f"{r['gateway_kib_per_stream']}")
            if gw:
                PROCS.stop(gw.p)
            PROCS.stop(fx.p)
    via = [r for r in out["runs"] if r["via"]]
    if len(via) >= 2:
        a, b = via[0], via[-1]
        out["gateway_kib_per_stream_slope"] = round((b["gateway_rss_kib_open"] - b["gateway_rss_kib_before"]
                                                     - a["gateway_rss_kib_open"] + a["gateway_rss_kib_before"])
                                                    / (b["streams"] - a["streams"]), 2)
    L = []
    w = L.append
    w(f"N legacy sessions, each with its GET stream open through ringgate (one target, so ringgate holds two "
      f"sockets per stream: the client's and its own GET upstream); rg-fixture sends one `notifications/message` "
      f"per stream every {STREAM_EVERY_MS} ms carrying its send time; rg-load measures receive time minus that "
      f"time. A fresh gateway and fixture per row; RSS (VmRSS) after one warm-up call, then with all streams open "
      f"(2 s after the last opened). Streams held {hold:g} s, latency over the last {hold - 2:g} s.\n")
    w("| streams | path | opened | events | errors | event latency p50 µs | p99 µs | p99.9 µs | max µs | gateway RSS before → open KiB | gateway KiB/stream | gateway CPU-µs/event |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in out["runs"]:
        l = r["event_latency_us"]
        rss = "–" if r["gateway_rss_kib_before"] is None else \
            f"{r['gateway_rss_kib_before']:,} → {r['gateway_rss_kib_open']:,}"
        w(f"| {r['streams']:,} | {'via ringgate' if r['via'] else 'direct'} | {r['opened']:,} | {r['events']:,} | "
          f"{sum(r['errors'].values())} | {f(l['p50'])} | {f(l['p99'])} | {f(l['p99_9'])} | {f(l['max'])} | "
          f"{rss} | {f(r['gateway_kib_per_stream'], 2)} | {f(r.get('gateway_cpu_us_per_event'), 2)} |")
    if "gateway_kib_per_stream_slope" in out:
        s = out["gateway_kib_per_stream_slope"]
        w(f"\nMarginal gateway memory per open stream (RSS slope between {via[0]['streams']:,} and "
          f"{via[-1]['streams']:,} streams): **{s} KiB** (target ≤ 16 KiB: {'met' if s <= 16 else 'missed'}). "
          "RSS counts user-space memory only; the kernel's socket buffers are not in it.")
    return out, "\n".join(L)


def scenario_idle_sessions(work, bins):
    fx = Fixture(work, bins, "fixture", "--tools", "8")
    gw = Gateway(work, bins, "ringgate", {"s": [("fx", fx.url + "/mcp")]})
    rg_load(bins, work, "prime", gw.url("s"), "mcp-call-legacy", "--conns", 2, "--duration", 1, "--warmup", 0,
            gw=gw, fx=fx)
    time.sleep(0.5)
    points = [{"sessions": 0, "gateway_rss_kib": rss_kib(gw.p.pid)[0], "fixture_rss_kib": rss_kib(fx.p.pid)[0]}]
    made = 0
    for n in SESSIONS:
        rep = rg_load(bins, work, f"make-{n}", gw.url("s"), "mcp-session-keep", "--conns", CONNS, "--requests",
                      n - made, "--duration", 3600, "--warmup", 0, gw=gw, fx=fx)
        if rep["error_total"]:
            die(f"creating sessions failed: {rep['errors']}")
        made = n
        time.sleep(2)
        rss, hwm = rss_kib(gw.p.pid)
        points.append({"sessions": n, "gateway_rss_kib": rss, "gateway_hwm_kib": hwm,
                       "fixture_rss_kib": rss_kib(fx.p.pid)[0], "create_rate": rep["throughput_rps"],
                       "gateway_cpu_us_per_session": rep["meta"]["gateway_cpu_us_per_req"]})
    # are the sessions still good after the wait? one call on one of them is not possible from
    # rg-load (it opens its own), so check that the gateway still accepts new ones and calls
    check = rg_load(bins, work, "after", gw.url("s"), "mcp-call-legacy", "--conns", 2, "--duration", 1, "--warmup", 0,
                    gw=gw, fx=fx)
    out = {"points": points, "check_after": {"ok": check["ok"], "errors": check["errors"]}}
    for i in range(1, len(points)):
        a, b = points[i - 1], points[i]
        ds = b["sessions"] - a["sessions"]
        b["gateway_bytes_per_session"] = round((b["gateway_rss_kib"] - a["gateway_rss_kib"]) * 1024 / ds, 1)
        b["fixture_bytes_per_session"] = round((b["fixture_rss_kib"] - a["fixture_rss_kib"]) * 1024 / ds, 1)
    L = []
    w = L.append
    w("Legacy sessions (initialize + notifications/initialized, no DELETE) made through ringgate with one "
      f"rg-fixture target, {CONNS} connections, then left idle; VmRSS 2 s after each step. Each gateway session "
      "also opens one upstream session on the fixture (its cost is the fixture's column).\n")
    w("| sessions | gateway RSS KiB | gateway bytes/session over the step | fixture RSS KiB | fixture bytes/session | sessions made per s | gateway CPU-µs per session |")
    w("|---:|---:|---:|---:|---:|---:|---:|")
    for p in points:
        w(f"| {p['sessions']:,} | {p['gateway_rss_kib']:,} | {f(p.get('gateway_bytes_per_session'))} | "
          f"{p['fixture_rss_kib']:,} | {f(p.get('fixture_bytes_per_session'))} | {f(p.get('create_rate'), 0)} | "
          f"{f(p.get('gateway_cpu_us_per_session'), 2)} |")
    last = points[-1].get("gateway_bytes_per_session")
    if last is not None:
        w(f"\nGateway memory per idle session (last step): **{last:,.0f} bytes** (target ≤ 2 KiB: "
          f"{'met' if last <= 2048 else 'missed'}).")
    return out, "\n".join(L)


SCENARIOS = {
    "mcp-call": (scenario_mcp_call, "MCP tools/call: rg-fixture direct vs through ringgate"),
    "mcp-list-fanout": (scenario_list_fanout, "MCP tools/list fan-out over 8 targets"),
    "mcp-session-setup": (scenario_session_setup, "MCP session setup with 4 targets"),
    "mcp-streams": (scenario_streams, "MCP GET streams: memory per stream and event latency"),
    "mcp-idle-sessions": (scenario_idle_sessions, "MCP idle sessions: gateway memory per session"),
}


def method_text():
    return {
        "layout": "core 0: rg-load + rg-fixture (one monoio thread each); core 1: ringgate (workers: 1); all started "
                  "with taskset",
        "ringgate": "workers: 1, accessLog disabled, driver auto; route pathPrefix /mcp -> mcp backend with "
                    "rg-fixture targets `mcp: {host: http://127.0.0.1:PORT/mcp/...}`",
        "load": "rg-load (loadtest/): open loop at a fixed rate (latency from the intended send time when the "
                "connection was busy; coordinated-omission correction) or closed loop; every answer checked "
                "(status, JSON-RPC response to that id, result not error, echo text / tool count); errors by kind",
        "cpu": "gateway and fixture CPU from /proc/PID/task/*/schedstat (ns) over the whole rg-load run, divided by "
               "the checked answers of the whole run (warm-up included, same rate)",
        "memory": "VmRSS from /proc/PID/status",
        "scheduling": sched_policy() + "; bench/all.sh runs everything under SCHED_FIFO (chrt -f 1) so that other "
                      "tenants' jobs cannot preempt the pinned processes",
        "rounds": f"fixed-rate phase of mcp-call: {ROUNDS} rounds, the four paths interleaved in each; medians and "
                  "per-round spread reported",
    }


def main():
    args = sys.argv[1:]
    fragment = None
    if "--fragment" in args:
        i = args.index("--fragment")
        fragment = args[i + 1]
        del args[i:i + 2]
    if any(a.startswith("-") for a in args):
        print(__doc__)
        sys.exit(0 if "-h" in args or "--help" in args else 2)
    chosen = args or ALL[1:]
    for a in chosen:
        if a not in SCENARIOS:
            die(f"unknown scenario {a}; one of {', '.join(ALL)}")
    os.makedirs(TMPROOT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="mcp.", dir=TMPROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bins = Bins(work)
        for sc in chosen:
            fn, title = SCENARIOS[sc]
            sw = os.path.join(work, sc)
            os.makedirs(sw, exist_ok=True)
            t0 = time.time()
            load0 = open("/proc/loadavg").read().split()[:3]
            log(f"--- {sc}")
            data, md = fn(sw, bins)
            PROCS.stop_all()
            env = environment(bins)
            env["loadavg_start"] = " ".join(load0)
            env["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
            env["elapsed_s"] = round(time.time() - t0)
            doc = {"scenario": sc, "env": env, "method": method_text(), "knobs": {
                "DURATION": DURATION, "WARMUP": WARMUP, "CONNS": CONNS, "RATE": RATE, "ROUNDS": ROUNDS,
                "LIST_RATE": LIST_RATE, "SESSION_RATE": SESSION_RATE, "STREAMS": STREAMS,
                "STREAM_EVERY_MS": STREAM_EVERY_MS, "SESSIONS": SESSIONS},
                "results": data, "raw_dir": os.path.relpath(sw, RESULTS)}
            head = [f"# {title}\n", f"Generated by `bench/mcp.py {sc}` on {env['date']}. Machine-readable: `{sc}.json`.\n",
                    "| | |", "|---|---|",
                    f"| ringgate | {env['ringgate']}, HEAD `{env['ringgate_git_rev'][:12]}` (binary sha256 "
                    f"`{env['ringgate_binary_sha256_prefix']}…`, built {env['ringgate_binary_mtime']}"
                    f"{'; uncommitted changes in ' + ', '.join(env['uncommitted_changes_in']) if env['uncommitted_changes_in'] else ''}) |",
                    f"| load tools | rg-load + rg-fixture from `loadtest/` at the same commit |",
                    f"| machine | `nproc` = {env['nproc']}, {env['cpu_model']}, kernel {env['kernel']} |",
                    f"| run | {env['elapsed_s']} s; load average at start {env['loadavg_start']}, at end {env['loadavg_end']}; {env['scheduling']} |",
                    ""]
            if env["build_note"]:
                head.append(f"**Build:** {env['build_note']}\n")
            tail = ["", "## Method", ""] + [f"- **{k}**: {v}" for k, v in method_text().items()]
            text = "\n".join(head) + "\n" + md + "\n" + "\n".join(tail) + "\n"
            dest = fragment or RESULTS
            os.makedirs(dest, exist_ok=True)
            with open(os.path.join(dest, f"{sc}.json"), "w") as fh:
                json.dump(doc, fh, indent=2)
                fh.write("\n")
            with open(os.path.join(dest, f"{sc}.md"), "w") as fh:
                fh.write(text if not fragment else md + "\n")
            log(f"wrote {os.path.join(dest, sc)}.{{json,md}}")
    finally:
        PROCS.stop_all()


if __name__ == "__main__":
    main()
