"""A stdio MCP server for the gateway's per-session tests: stdlib only, one JSON-RPC message per line.

Tools:
    pid     this process's pid
    caps    the capabilities the client declared in initialize (JSON)
    ask     sends elicitation/create to the client; answers with what the client answered (JSON)
    wait    never answers; a notifications/cancelled for it logs "cancelled <id> <reason>" on stderr
    log     sends notifications/message, then answers
    crash   exits at once
Every other client notification is logged on stderr as "notification <method>", and
notifications/roots/list_changed is answered with a notifications/message outside of any request.
"""

import json
import os
import sys


def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()


def result(id, r):
    send({"jsonrpc": "2.0", "id": id, "result": r})


def text(t):
    return {"content": [{"type": "text", "text": t}]}


def log(line):
    print(line, file=sys.stderr, flush=True)


TOOLS = ("pid", "caps", "ask", "wait", "log", "crash")
asks = {}  # the id of our request to the client -> the call waiting for its answer
caps = {}
n = 0
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method is None:
        call = asks.pop(m.get("id"), None)
        if call is not None:
            result(call, text(json.dumps(m.get("result", m.get("error")))))
        continue
    if "id" not in m:
        if method == "notifications/cancelled":
            log(f"cancelled {m['params']['requestId']} {m['params'].get('reason', '')}")
        else:
            log(f"notification {method}")
            if method == "notifications/roots/list_changed":
                data = f"roots changed in {os.getpid()}"
                send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": data}})
        continue
    id = m["id"]
    params = m.get("params") or {}
    if method == "initialize":
        caps = params.get("capabilities", {})
        info = {"name": "sessions", "version": str(os.getpid())}
        result(id, {"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}, "logging": {}}, "serverInfo": info})
    elif method == "tools/list":
        result(id, {"tools": [{"name": t, "inputSchema": {"type": "object"}} for t in TOOLS]})
    elif method == "tools/call":
        name = params["name"]
        if name == "pid":
            result(id, text(str(os.getpid())))
        elif name == "caps":
            result(id, text(json.dumps(caps)))
        elif name == "ask":
            n += 1
            asks[f"ask-{n}"] = id
            schema = {"type": "object", "properties": {"name": {"type": "string"}}}
            send({"jsonrpc": "2.0", "id": f"ask-{n}", "method": "elicitation/create", "params": {"message": "your name?", "requestedSchema": schema}})
        elif name == "wait":
            log(f"waiting {id}")
        elif name == "log":
            send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"hello from {os.getpid()}"}})
            result(id, text("logged"))
        elif name == "crash":
            os._exit(3)
    elif method in ("logging/setLevel", "ping"):
        result(id, {})
    else:
        send({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": f"no {method}"}})
