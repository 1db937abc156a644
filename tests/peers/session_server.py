"""A stdio MCP server for the gateway's per-session tests: stdlib only, one JSON-RPC message per line.

Tools:
    echo {message}  answers "Echo: <message>"
    pid             this process's pid
    caps            the capabilities the client declared in initialize (JSON)
    ask             sends elicitation/create to the client; answers with what the client answered (JSON)
    wait {tag}      never answers (but sends one progress notification when asked for progress); a
                    notifications/cancelled for it logs "cancelled <id> <reason>" on stderr
    cancelled {tag} "yes" when a `wait` with that tag was cancelled, else "no"
    log             sends notifications/message, then answers
    state           what the client set up on this process: {"level": <last logging/setLevel>,
                    "subscribed": [<URIs subscribed to and not unsubscribed from>],
                    "roots": <the client's answer to roots/list>} (JSON)
    touch {uri}     answers, then sends notifications/resources/updated for the URI if it is subscribed
    crash           exits at once
Prompt `greet` {name} ("Hello, <name>!"), resource `test://session` ("session server").
A client whose clientInfo name is "crashy" makes it exit as soon as it is initialized; one that
declared the roots capability is sent roots/list once initialized.
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


TOOLS = ("echo", "pid", "caps", "ask", "wait", "cancelled", "log", "state", "touch", "crash")
asks = {}  # the id of our request to the client -> the call waiting for its answer
waiting = {}  # id of a `wait` call -> its tag
cancelled = set()  # tags of cancelled `wait` calls
caps = {}
level = None
roots = None
subscribed = []
client = None
n = 0
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method is None:
        if m.get("id") == "roots":
            roots = m.get("result", m.get("error"))
            continue
        call = asks.pop(m.get("id"), None)
        if call is not None:
            result(call, text(json.dumps(m.get("result", m.get("error")))))
        continue
    if "id" not in m:
        if method == "notifications/cancelled":
            rid = m["params"]["requestId"]
            if rid in waiting:
                cancelled.add(waiting.pop(rid))
            log(f"cancelled {rid} {m['params'].get('reason', '')}")
        else:
            log(f"notification {method}")
            if method == "notifications/initialized" and client == "crashy":
                os._exit(4)
            if method == "notifications/initialized" and "roots" in caps:
                send({"jsonrpc": "2.0", "id": "roots", "method": "roots/list"})
            if method == "notifications/roots/list_changed":
                data = f"roots changed in {os.getpid()}"
                send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": data}})
        continue
    id = m["id"]
    params = m.get("params") or {}
    if method == "initialize":
        caps = params.get("capabilities", {})
        client = (params.get("clientInfo") or {}).get("name")
        info = {"name": "sessions", "version": str(os.getpid())}
        capabilities = {"tools": {}, "logging": {}, "prompts": {}, "resources": {"subscribe": True}}
        result(id, {"protocolVersion": params["protocolVersion"], "capabilities": capabilities, "serverInfo": info})
    elif method == "tools/list":
        result(id, {"tools": [{"name": t, "inputSchema": {"type": "object"}} for t in TOOLS]})
    elif method == "tools/call":
        name = params["name"]
        args = params.get("arguments") or {}
        if name == "echo":
            result(id, text(f"Echo: {args.get('message', '')}"))
        elif name == "cancelled":
            result(id, text("yes" if args.get("tag") in cancelled else "no"))
        elif name == "pid":
            result(id, text(str(os.getpid())))
        elif name == "caps":
            result(id, text(json.dumps(caps)))
        elif name == "ask":
            n += 1
            asks[f"ask-{n}"] = id
            schema = {"type": "object", "properties": {"name": {"type": "string"}}}
            send({"jsonrpc": "2.0", "id": f"ask-{n}", "method": "elicitation/create", "params": {"message": "your name?", "requestedSchema": schema}})
        elif name == "wait":
            waiting[id] = args.get("tag")
            token = (params.get("_meta") or {}).get("progressToken")
            if token is not None:
                send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1, "total": 2}})
            log(f"waiting {id}")
        elif name == "log":
            send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"hello from {os.getpid()}"}})
            result(id, text("logged"))
        elif name == "state":
            result(id, text(json.dumps({"level": level, "subscribed": subscribed, "roots": roots})))
        elif name == "touch":
            uri = args.get("uri")
            result(id, text("touched"))
            if uri in subscribed:
                send({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}})
        elif name == "crash":
            os._exit(3)
    elif method == "prompts/list":
        result(id, {"prompts": [{"name": "greet", "arguments": [{"name": "name", "required": True}]}]})
    elif method == "prompts/get":
        who = (params.get("arguments") or {}).get("name", "")
        result(id, {"messages": [{"role": "user", "content": {"type": "text", "text": f"Hello, {who}!"}}]})
    elif method == "resources/list":
        result(id, {"resources": [{"uri": "test://session", "name": "session"}]})
    elif method == "resources/read":
        result(id, {"contents": [{"uri": params["uri"], "mimeType": "text/plain", "text": "session server"}]})
    elif method == "resources/templates/list":
        result(id, {"resourceTemplates": []})
    elif method == "logging/setLevel":
        level = params.get("level")
        result(id, {})
    elif method == "resources/subscribe":
        if params["uri"] not in subscribed:
            subscribed.append(params["uri"])
        result(id, {})
    elif method == "resources/unsubscribe":
        if params["uri"] in subscribed:
            subscribed.remove(params["uri"])
        result(id, {})
    elif method == "ping":
        result(id, {})
    else:
        send({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": f"no {method}"}})
