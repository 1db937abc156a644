#!/usr/bin/env python3
"""mcp-peers: the same MCP `tools/call` through ringgate and through other MCP gateways, side by side.

Usage: bench/mcp-peers.py   (writes bench/results/mcp-peers.json and .md)

Two upstream shapes, each gateway with an equivalent one-target config:
  http   rg-fixture's Streamable HTTP MCP server on core 0 (with rg-load), gateways on core 1:
         direct | ringgate (workers: 1) | IBM ContextForge (mcpgateway, one uvicorn process)
         | LiteLLM's proxy (its MCP gateway, config.yaml mcp_servers, one uvicorn worker, no database)
  stdio  `rg-fixture stdio` started by the gateway (so on core 1 with it), rg-load on core 0:
         ringgate (stdio target) | supergateway --stateful (stdio -> Streamable HTTP)
A peer that cannot be installed or started is reported as such (in the report's Peers list).
Phases per system: a fixed rate every peer can sustain (PEER_RATE calls/s over PEER_CONNS legacy
sessions: CPU-µs per call at the same offered load), then saturation (closed loop, CONNS sessions).

Env knobs: DURATION [10] s per measured run, WARMUP [2] s before each, PEER_RATE [10],
PEER_CONNS [4], CONNS [8], SKIP_BUILD [0], SKIP_INSTALL [0], BIN_DIR (as bench/mcp.py),
PEERS ["ringgate contextforge litellm supergateway"]: the systems to run besides direct (e.g.
PEERS=litellm for a LiteLLM smoke run; the ratios need ringgate in the same run).
Peers are installed by bench/peers/install.sh under target/peers/bench/.
"""

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_mcp", os.path.join(HERE, "mcp.py"))
M = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)
log, die, PROCS, f = M.log, M.die, M.PROCS, M.f

E = os.environ
PEER_RATE = float(E.get("PEER_RATE", 10))
PEER_CONNS = int(E.get("PEER_CONNS", 4))
CONNS = int(E.get("CONNS", 8))
SKIP_INSTALL = E.get("SKIP_INSTALL", "0") == "1"
PEER_DIR = os.path.join(M.ROOT, "target", "peers", "bench")
ALL_PEERS = ("ringgate", "contextforge", "litellm", "supergateway")
PEERS = E.get("PEERS", " ".join(ALL_PEERS)).replace(",", " ").split()
for _p in PEERS:
    if _p not in ALL_PEERS:
        die(f"PEERS: unknown system {_p!r} (one of {', '.join(ALL_PEERS)})")


# ------------------------------------------------------------------ CPU of a process tree


def descendants(pid):
    """pid and every live descendant, as {pid: comm}."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append((int(d), comm))
            except (OSError, ValueError):
                pass
    out, todo = {pid: "root"}, [pid]
    while todo:
        for c, comm in children.get(todo.pop(), []):
            out[c] = comm
            todo.append(c)
    return out


class Tree:
    """CPU of a gateway's process tree, split into the gateway and the upstreams it spawned."""

    def __init__(self, p, upstream_comm="rg-fixture"):
        self.p, self.upstream_comm = p, upstream_comm

    def sample(self):
        gw = up = 0
        for pid, comm in descendants(self.p.pid).items():
            ns = M.cpu_ns(pid)[0]
            if comm == self.upstream_comm:
                up += ns
            else:
                gw += ns
        return gw, up

    def rss_kib(self):
        return sum(M.rss_kib(pid)[0] for pid, c in descendants(self.p.pid).items() if c != self.upstream_comm)


def run_load(bins, work, tag, url, tree, fx, *args, tool="echo", headers=()):
    """One rg-load run (legacy sessions, tools/call) with the gateway tree's and fixture's CPU per call."""
    out = os.path.join(work, f"{tag}.json")
    argv = ["taskset", "-c", M.LOAD_CPU, bins.load, "--url", url, "--mode", "mcp-call-legacy", "--tool", tool,
            "--out", out, "--timeout-ms", "20000"] + [str(a) for a in args]
    for h in headers:
        argv += ["--header", h]
    g0 = tree.sample() if tree else (0, 0)
    f0 = M.cpu_ns(fx.p.pid)[0] if fx else 0
    c0 = M.core_times()
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, preexec_fn=M.raise_nofile)
    t1 = time.time()
    c1 = M.core_times()
    g1 = tree.sample() if tree else (0, 0)
    f1 = M.cpu_ns(fx.p.pid)[0] if fx else 0
    if r.returncode != 0:
        die(f"rg-load {tag} failed: {r.stderr[-1000:]}")
    rep = json.load(open(out))
    whole = rep["ok"] * (rep["duration_s"] + rep["warmup_s"]) / max(rep["duration_s"], 1e-9) if rep["ok"] else 0
    per = lambda ns: round(ns / 1e3 / whole, 1) if whole else None  # noqa: E731
    rep["meta"] = {
        "gateway_cpu_us_per_req": per(g1[0] - g0[0]) if tree else None,
        "upstream_cpu_us_per_req": per(g1[1] - g0[1] + f1 - f0) if (tree or fx) else None,
        "gateway_cpu_pct": round(100 * (g1[0] - g0[0]) / 1e9 / max(t1 - t0, 1e-9), 1) if tree else None,
        "core0_busy_pct": M.busy_pct(c0, c1, "0")[0], "core1_busy_pct": M.busy_pct(c0, c1, "1")[0],
        "gateway_rss_kib": tree.rss_kib() if tree else None,
        "others": M.others_busy(),
    }
    lat = rep["latency_us"]
    log(f"{tag}: {rep['throughput_rps']:,.1f}/s p50 {lat['p50']} p99 {lat['p99']} µs, errors {rep['error_total']}, "
        f"gateway {rep['meta']['gateway_cpu_us_per_req']} µs/call")
    if rep["error_total"]:
        log(f"  errors: {rep['errors']} sample: {json.dumps(rep.get('error_samples'))[:300]}")
    return rep


def wait_http(url, p, name, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if p.poll() is not None:
            return f"{name} exited at start-up (status {p.returncode})"
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return None
        except OSError:
            time.sleep(0.5)
    return f"{name} not answering {url} after {timeout} s"


def http_json(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def items(doc):
    return doc if isinstance(doc, list) else doc.get("items", doc.get("data", []))


# ------------------------------------------------------------------ systems


def ringgate(work, bins, name, target_yaml):
    admin, port = M.free_ports(2)
    y = ["# generated by bench/mcp-peers.py", "config:", "  workers: 1", f"  adminAddr: 127.0.0.1:{admin}",
         "frontendPolicies:", "  accessLog:", "    enabled: false", "binds:", f"- port: {port}",
         "  address: 127.0.0.1", "  listeners:", "  - routes:", "    - matches:", "      - path:",
         "          pathPrefix: /mcp", "      backends:", "      - mcp:", "          targets:",
         "          - name: fx"] + [f"            {line}" for line in target_yaml]
    cfg = os.path.join(work, f"{name}.yaml")
    open(cfg, "w").write("\n".join(y) + "\n")
    p = PROCS.start(M.SUT_CPU, [bins.ringgate, "-c", cfg], os.path.join(work, f"{name}.log"))
    M.wait_port(port, p, name)
    return p, f"http://127.0.0.1:{port}/mcp", {"config": "\n".join(y)}


def contextforge(work, fx_url):
    exe = os.path.join(PEER_DIR, "contextforge", "bin", "mcpgateway")
    if not os.path.exists(exe):
        return None, None, {"error": "not installed (bench/peers/install.sh contextforge failed)"}
    (port,) = M.free_ports(1)
    tok = lambda n: secrets.token_urlsafe(n)  # noqa: E731
    env = dict(os.environ, JWT_SECRET_KEY=tok(48), PLATFORM_ADMIN_PASSWORD=tok(24), BASIC_AUTH_PASSWORD=tok(24),
               AUTH_ENCRYPTION_SECRET=tok(32), AUTH_REQUIRED="false", MCP_REQUIRE_AUTH="false",
               ALLOW_UNAUTHENTICATED_ADMIN="true", PLATFORM_ADMIN_EMAIL="admin@example.com",
               SSRF_ALLOW_LOCALHOST="true", RATE_LIMITING_ENABLED="false",
               DATABASE_URL=f"sqlite:///{work}/contextforge.db", MCPGATEWAY_UI_ENABLED="false",
               MCPGATEWAY_ADMIN_API_ENABLED="true", LOG_LEVEL="ERROR")
    settings = {k: env[k] for k in ("AUTH_REQUIRED", "MCP_REQUIRE_AUTH", "SSRF_ALLOW_LOCALHOST",
                                    "RATE_LIMITING_ENABLED", "DATABASE_URL", "LOG_LEVEL")}
    p = PROCS.start(M.SUT_CPU, [exe, "--host", "127.0.0.1", "--port", str(port)],
                    os.path.join(work, "contextforge.log"), env=env)
    base = f"http://127.0.0.1:{port}"
    err = wait_http(base + "/health", p, "ContextForge", timeout=180)
    if err:
        return None, None, {"error": err}
    try:
        http_json("POST", base + "/gateways", {"name": "fx", "url": fx_url, "transport": "STREAMABLEHTTP"})
        tools = items(http_json("GET", base + "/tools"))
        echo = next(t for t in tools if t["name"].endswith("echo"))
        srv = http_json("POST", base + "/servers", {"server": {"name": "bench", "associated_tools": [echo["id"]]}})
    except (OSError, StopIteration, KeyError, ValueError) as e:
        return None, None, {"error": f"registration failed: {e!r}"}
    settings["registration"] = ("POST /gateways {name: fx, url, transport: STREAMABLEHTTP}; "
                                f"POST /servers with the tool {echo['name']}; clients at /servers/<id>/mcp")
    return p, f"{base}/servers/{srv['id']}/mcp", {"settings": settings, "tool": echo["name"]}


def supergateway(work, fixture_cmd):
    exe = os.path.join(PEER_DIR, "supergateway", "node_modules", ".bin", "supergateway")
    if not os.path.exists(exe):
        return None, None, {"error": "not installed (bench/peers/install.sh supergateway failed)"}
    (port,) = M.free_ports(1)
    argv = [exe, "--stdio", fixture_cmd, "--outputTransport", "streamableHttp", "--stateful", "--port", str(port),
            "--logLevel", "none", "--healthEndpoint", "/healthz"]
    # node stays SCHED_OTHER (as bench/mcp-call.sh runs server-everything): pinned to one core
    # under SCHED_FIFO its threads spin and it never answers
    p = PROCS.start(M.SUT_CPU, ["chrt", "-o", "0"] + argv, os.path.join(work, "supergateway.log"))
    err = wait_http(f"http://127.0.0.1:{port}/healthz", p, "supergateway")
    if err:
        return None, None, {"error": err}
    return p, f"http://127.0.0.1:{port}/mcp", {"argv": " ".join(argv[1:])}


def not_installed(name):
    """Why bench/peers/install.sh NAME left no working install: the last ERROR line of its pip log."""
    log_path = os.path.join(PEER_DIR, f"{name}.log")
    why = ""
    if os.path.exists(log_path):
        lines = [line.strip() for line in open(log_path) if "ERROR" in line]
        why = lines[-1][:300] if lines else ""
    return {"error": f"not installable here: {why or f'see bench/peers/install.sh {name}'}"}


def mcp_post(url, headers, body, session=None):
    """One JSON-RPC POST to a Streamable HTTP MCP endpoint: (answer, Mcp-Session-Id); JSON or SSE."""
    h = dict(headers, **{"content-type": "application/json", "accept": "application/json, text/event-stream"})
    if session:
        h.update({"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(), headers=h)
    with urllib.request.urlopen(req, timeout=60) as r:
        text, sid = r.read().decode(), r.headers.get("mcp-session-id")
    if "id" not in body:
        return None, sid
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and '"id"' in line)
    return json.loads(text), sid


def litellm(work, fx_url):
    """LiteLLM's proxy with rg-fixture as its one MCP server, from config.yaml (no database)."""
    d = os.path.join(PEER_DIR, "litellm")
    exe = os.path.join(d, "bin", "litellm")
    if not (os.path.exists(os.path.join(d, ".stamp")) and os.path.exists(exe)):
        return None, None, not_installed("litellm")
    (port,) = M.free_ports(1)
    key = "sk-" + secrets.token_urlsafe(24)
    # one MCP server "fx" (so its tools are listed as fx-<tool>); the master key is the only key
    # (no database: STORE_MODEL_IN_DB unset, no DATABASE_URL)
    config = "\n".join(["# generated by bench/mcp-peers.py", "general_settings:", "  master_key: {KEY}",
                        "mcp_servers:", "  fx:", f"    url: {fx_url}", "    transport: http"])
    cfg = os.path.join(work, "litellm.yaml")
    open(cfg, "w").write(config.replace("{KEY}", key) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STORE_MODEL_IN_DB")}
    # LITELLM_LOG=ERROR also sets uvicorn's level (no access log); the local model cost map keeps
    # it from fetching the remote one at start-up
    env.update(LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True")
    argv = [exe, "--config", cfg, "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    p = PROCS.start(M.SUT_CPU, argv, os.path.join(work, "litellm.log"), env=env)
    base = f"http://127.0.0.1:{port}"
    err = wait_http(base + "/health/liveliness", p, "LiteLLM", timeout=180)
    if err:
        PROCS.stop(p)
        return None, None, {"error": err}
    auth = {"x-litellm-api-key": f"Bearer {key}"}
    try:
        init, sid = mcp_post(base + "/mcp", auth, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-peers", "version": "1"}}})
        mcp_post(base + "/mcp", auth, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
        listed, _ = mcp_post(base + "/mcp", auth, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
        tool = next(t["name"] for t in listed["result"]["tools"] if t["name"].endswith("echo"))
    except (OSError, StopIteration, KeyError, ValueError, TypeError) as e:
        PROCS.stop(p)
        return None, None, {"error": f"no echo tool listed through LiteLLM's /mcp: {e!r}"}
    settings = {"config.yaml": config.replace("{KEY}", "<random>"), "argv": " ".join(["litellm"] + argv[1:]),
                "env": "LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True, no DATABASE_URL",
                "client": f"POST /mcp with x-litellm-api-key: Bearer <master key>; tools/call {tool}",
                "server": init.get("result", {}).get("serverInfo")}
    return p, base + "/mcp", {"settings": settings, "tool": tool, "headers": [f"x-litellm-api-key: Bearer {key}"]}


def versions():
    v = {}
    try:
        for line in open(os.path.join(PEER_DIR, "contextforge", "freeze.txt")):
            if line.startswith(("mcp-contextforge-gateway==", "mcp==", "uvicorn==")):
                k, _, ver = line.strip().partition("==")
                v[f"contextforge:{k}"] = ver
    except OSError:
        pass
    try:
        for line in open(os.path.join(PEER_DIR, "litellm", "freeze.txt")):
            if line.startswith(("litellm==", "litellm-proxy-extras==", "mcp==", "uvicorn==")):
                k, _, ver = line.strip().partition("==")
                v[f"litellm:{k}"] = ver
    except OSError:
        pass
    try:
        pkg = json.load(open(os.path.join(PEER_DIR, "supergateway", "node_modules", "supergateway", "package.json")))
        v["supergateway"] = pkg["version"]
        v["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except (OSError, ValueError, KeyError):
        pass
    return v


# ------------------------------------------------------------------ the scenario


def measure(bins, work, label, url, tree, fx, tool="echo", headers=()):
    """Prime, fixed rate, saturation: one row each."""
    run_load(bins, work, f"prime-{label}", url, tree, fx, "--conns", PEER_CONNS, "--duration", 2, "--warmup", 0,
             tool=tool, headers=headers)
    fixed = run_load(bins, work, f"fixed-{label}", url, tree, fx, "--conns", PEER_CONNS, "--rate", PEER_RATE,
                     "--duration", M.DURATION, "--warmup", M.WARMUP, tool=tool, headers=headers)
    sat = run_load(bins, work, f"sat-{label}", url, tree, fx, "--conns", CONNS, "--duration", M.DURATION,
                   "--warmup", M.WARMUP, tool=tool, headers=headers)
    return {"fixed": fixed, "saturation": sat}


def summary(rep):
    lat, m = rep["latency_us"], rep["meta"]
    return {"calls_per_s": round(rep["throughput_rps"], 1), "p50_us": lat["p50"], "p99_us": lat["p99"],
            "errors": rep["error_total"], "error_kinds": rep["errors"], **{k: m[k] for k in (
                "gateway_cpu_us_per_req", "upstream_cpu_us_per_req", "gateway_cpu_pct", "core0_busy_pct",
                "core1_busy_pct", "gateway_rss_kib")}}


def scenario(work, bins):
    results, peers = {}, {}
    fx = M.Fixture(work, bins, "fixture", "--tools", "8")
    fx_mcp = fx.url + "/mcp"
    # http upstream
    results["http/direct"] = measure(bins, work, "direct", fx_mcp, None, fx)
    if "ringgate" in PEERS:
        p, url, info = ringgate(work, bins, "ringgate-http", ["mcp:", f"  host: {fx_mcp}"])
        peers["ringgate-http"] = info
        results["http/ringgate"] = measure(bins, work, "ringgate-http", url, Tree(p), fx)
        PROCS.stop(p)
    for name, label, start in (("contextforge", "ContextForge", contextforge), ("litellm", "LiteLLM", litellm)):
        if name not in PEERS:
            continue
        p, url, info = start(work, fx_mcp)
        peers[name] = info
        if p:
            results[f"http/{name}"] = measure(bins, work, name, url, Tree(p), fx, tool=info["tool"],
                                              headers=info.get("headers", ()))
            PROCS.stop(p)
        else:
            log(f"{label}: {info['error']}")
    PROCS.stop(fx.p)
    # stdio upstream, spawned by each gateway
    if "ringgate" in PEERS:
        p, url, info = ringgate(work, bins, "ringgate-stdio",
                                ["stdio:", f"  cmd: {bins.fixture}", "  args: [stdio]"])
        peers["ringgate-stdio"] = info
        results["stdio/ringgate"] = measure(bins, work, "ringgate-stdio", url, Tree(p), None)
        PROCS.stop(p)
    if "supergateway" in PEERS:
        p, url, info = supergateway(work, f"{bins.fixture} stdio")
        peers["supergateway"] = info
        if p:
            results["stdio/supergateway"] = measure(bins, work, "supergateway", url, Tree(p), None)
            PROCS.stop(p)
        else:
            log(f"supergateway: {info['error']}")
    for v in peers.values():
        v.pop("headers", None)  # the API key stays out of the results
    return results, peers


LABELS = {
    "http/direct": "direct to rg-fixture (HTTP)",
    "http/ringgate": "ringgate → rg-fixture (HTTP target)",
    "http/contextforge": "ContextForge → rg-fixture (HTTP gateway)",
    "http/litellm": "LiteLLM proxy → rg-fixture (config.yaml MCP server)",
    "stdio/ringgate": "ringgate → `rg-fixture stdio` (stdio target)",
    "stdio/supergateway": "supergateway --stateful → `rg-fixture stdio`",
}


def report(results, peers, env):
    s = {k: {ph: summary(v[ph]) for ph in v} for k, v in results.items()}
    out = []
    w = out.append
    head = ("| system | calls/s | p50 µs | p99 µs | errors | gateway CPU-µs/call | upstream CPU-µs/call | "
            "gateway CPU % | gateway RSS MiB | core 0 busy % | core 1 busy % |")
    for ph, title in (("fixed", f"Fixed rate {PEER_RATE:g} calls/s, {PEER_CONNS} legacy sessions, "
                              f"{M.DURATION:g} s (latency from the intended send time)"),
                      ("saturation", f"Saturation, closed loop, {CONNS} legacy sessions, {M.DURATION:g} s")):
        w(f"## {title}\n")
        w(head)
        w("|---|" + "---:|" * (head.count("|") - 2))
        for k, v in s.items():
            r = v[ph]
            rss = None if r["gateway_rss_kib"] is None else r["gateway_rss_kib"] / 1024
            w(f"| {LABELS[k]} | {f(r['calls_per_s'], 1)} | {f(r['p50_us'], 0)} | {f(r['p99_us'], 0)} | "
              f"{r['errors']} | {f(r['gateway_cpu_us_per_req'])} | {f(r['upstream_cpu_us_per_req'])} | "
              f"{f(r['gateway_cpu_pct'])} | {f(rss)} | {f(r['core0_busy_pct'])} | {f(r['core1_busy_pct'])} |")
        w("")
    w("## Ratios (ringgate ÷ peer, same upstream, same run)\n")
    w("| peer | CPU per call at the fixed rate: peer ÷ ringgate | saturated calls per gateway CPU-second: "
      "ringgate ÷ peer |")
    w("|---|---:|---:|")
    ratios = {}
    for peer, rg in (("http/contextforge", "http/ringgate"), ("http/litellm", "http/ringgate"),
                     ("stdio/supergateway", "stdio/ringgate")):
        if peer not in s or rg not in s:
            continue
        a, b = s[peer], s[rg]
        cpu = (a["fixed"]["gateway_cpu_us_per_req"] or 0) / max(b["fixed"]["gateway_cpu_us_per_req"] or 0, 1e-9)
        eff = lambda r: r["calls_per_s"] / max(r["gateway_cpu_pct"] or 0, 1e-9)  # noqa: E731
        sat = eff(b["saturation"]) / max(eff(a["saturation"]), 1e-9)
        ratios[peer] = {"cpu_per_call_at_fixed_rate": round(cpu, 1), "calls_per_cpu_second_saturated": round(sat, 1)}
        w(f"| {LABELS[peer]} | {cpu:,.1f}× | {sat:,.1f}× |")
    w("")
    w("## Peers\n")
    for k, v in peers.items():
        if "error" in v:
            w(f"- **{k}**: could not be measured: {v['error']}")
        elif "settings" in v:
            w(f"- **{k}**: {json.dumps(v['settings'])}")
        elif "argv" in v:
            w(f"- **{k}**: `supergateway {v['argv']}`")
    w(f"- versions: {json.dumps(versions())}")
    return s, ratios, "\n".join(out)


def method_text():
    return {
        "layout": "core 0: rg-load (+ rg-fixture for the HTTP upstream); core 1: the gateway under test, and for "
                  "the stdio rows the `rg-fixture stdio` processes it spawns (they inherit its CPU); all started "
                  "with taskset",
        "load": "rg-load mcp-call-legacy: each connection initializes a legacy-era session (sessionless when the "
                "server sends no Mcp-Session-Id, as ContextForge does by default), then calls tools/call echo; "
                "every answer checked (status, id, echo text)",
        "cpu": "schedstat of the gateway's whole process tree (minus the rg-fixture processes it spawned, which "
               "count as upstream) over the whole rg-load run, divided by the checked answers of the run",
        "fairness": "each system runs its shipped defaults with logging off or at error level; ContextForge with "
                    "auth, rate limiting and the UI off (its default rate limiter would lock the client out); "
                    "LiteLLM with a master key only (no database, so no virtual keys, spend tracking or UI), "
                    "rg-load sending it as x-litellm-api-key on every request",
    }


def main():
    if len(sys.argv) > 1:
        print(__doc__)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    if not SKIP_INSTALL:
        log("installing peers (bench/peers/install.sh; a no-op when current)")
        want = [p for p in PEERS if p != "ringgate"]
        if want:
            r = subprocess.run([os.path.join(HERE, "peers", "install.sh")] + want, capture_output=True, text=True)
            sys.stderr.write(r.stdout[-1500:] + r.stderr[-1500:])
    os.makedirs(M.TMPROOT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="mcp-peers.", dir=M.TMPROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bins = M.Bins(work)
        t0, load0 = time.time(), " ".join(open("/proc/loadavg").read().split()[:3])
        results, peers = scenario(work, bins)
        PROCS.stop_all()
        env = M.environment(bins)
        env.update(loadavg_start=load0, loadavg_end=" ".join(open("/proc/loadavg").read().split()[:3]),
                   elapsed_s=round(time.time() - t0), peer_versions=versions())
        s, ratios, md = report(results, peers, env)
        doc = {"scenario": "mcp-peers", "env": env, "method": method_text(),
               "knobs": {"DURATION": M.DURATION, "WARMUP": M.WARMUP, "PEER_RATE": PEER_RATE,
                         "PEER_CONNS": PEER_CONNS, "CONNS": CONNS, "PEERS": " ".join(PEERS)},
               "results": s, "ratios": ratios, "peers": peers, "raw_dir": os.path.relpath(work, M.RESULTS)}
        with open(os.path.join(M.RESULTS, "mcp-peers.json"), "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        text = [f"# MCP gateways side by side: tools/call through ringgate, ContextForge, LiteLLM and "
                f"supergateway\n",
                f"Generated by `bench/mcp-peers.py` on {env['date']}. Machine-readable: `mcp-peers.json`.\n",
                "| | |", "|---|---|",
                f"| ringgate | {env['ringgate']}, HEAD `{env['ringgate_git_rev'][:12]}` |",
                f"| peers | {json.dumps(env['peer_versions'])} |",
                f"| machine | `nproc` = {env['nproc']}, {env['cpu_model']}, kernel {env['kernel']} |",
                f"| run | {env['elapsed_s']} s; load average at start {env['loadavg_start']}, at end "
                f"{env['loadavg_end']}; {env['scheduling']} |", "", md, "", "## Method", ""]
        text += [f"- **{k}**: {v}" for k, v in method_text().items()]
        with open(os.path.join(M.RESULTS, "mcp-peers.md"), "w") as fh:
            fh.write("\n".join(text) + "\n")
        log("wrote bench/results/mcp-peers.{json,md}")
    finally:
        PROCS.stop_all()


if __name__ == "__main__":
    main()
