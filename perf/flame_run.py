#!/usr/bin/env python3
"""The run behind perf/flamegraph.sh: gateway + upstream + load from perf/check's paths, `perf record`
on the gateway, then perf/flame.py. Standard library only."""

import argparse
import importlib.machinery
import importlib.util
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


check = load("check", os.path.join(HERE, "check"))
flame = load("flame", os.path.join(HERE, "flame.py"))


def drive(path_name, port, until):
    """One client process: one connection, requests back to back until `until`."""
    p = next(p for p in check.PATHS if p.name == path_name)
    c = check.Client(port)
    p.setup(c)
    n = 0
    while time.time() < until:
        p.one(c)
        n += 1
    print(f"flamegraph: client {os.getpid()}: {n} requests", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True, choices=[p.name for p in check.PATHS])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("--driver", default="auto")
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "perf", "ringgate")
    path = next(p for p in check.PATHS if p.name == args.path)

    up_proc, up_port = check.start_upstream()
    work = tempfile.mkdtemp(prefix="flamegraph.", dir=args.out)
    names = ["http", "demo", "list8", "mcphttp"]
    ports = dict(zip(names, check.free_ports(len(names))))
    cfg = os.path.join(work, "ringgate.yaml")
    with open(cfg, "w") as f:
        f.write(check.config(ports, up_port))
    log = open(os.path.join(work, "gateway.log"), "w")
    gw = subprocess.Popen([binary, "-c", cfg, "--driver", args.driver], stdout=log, stderr=subprocess.STDOUT)
    clients = []
    try:
        check.wait_ports(gw, ports.values(), log.name)
        warm = 1.0
        until = time.time() + warm + args.seconds + 0.5
        ctx = multiprocessing.get_context("fork")
        clients = [ctx.Process(target=drive, args=(path.name, ports[path.bind], until)) for _ in range(args.clients)]
        for c in clients:
            c.start()
        time.sleep(warm)
        data = os.path.join(work, "perf.data")
        rec = subprocess.run(["perf", "record", "-q", "-F", "999", "-e", "cpu-clock", "--call-graph", "dwarf,65528",
                              "-p", str(gw.pid), "-o", data, "--", "sleep", str(args.seconds)],
                             capture_output=True, text=True)
        if rec.returncode != 0:
            sys.exit(f"flamegraph: perf record failed: {rec.stderr}")
        for c in clients:
            c.join()
        script = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True)
        if script.returncode != 0:
            sys.exit(f"flamegraph: perf script failed: {script.stderr[-2000:]}")
    finally:
        for c in clients:
            if c.is_alive():
                c.terminate()
        gw.terminate()
        gw.wait()
        up_proc.kill()
        up_proc.wait()
    stacks = flame.fold(script.stdout.splitlines())
    folded = os.path.join(args.out, f"{args.path}.folded")
    with open(folded, "w") as f:
        for stack, n in sorted(stacks.items()):
            f.write(f"{stack} {n}\n")
    svg = os.path.join(args.out, f"{args.path}.svg")
    with open(svg, "w") as f:
        f.write(flame.svg(stacks, f"ringgate {args.path} ({path.what}), driver {args.driver}, cpu-clock"))
    print(svg)
    print(f"flamegraph: {sum(stacks.values())} samples; folded stacks in {folded}; raw data in {work}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
