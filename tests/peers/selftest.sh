#!/usr/bin/env bash
# Checks the installed peers against each other, without ringgate: the Python mcp 2.3.0 client
# (tests/peers/mcp_client.py) against server-everything (streamableHttp and sse) and against the
# Python mcp 2.3.0 server (tests/peers/py_server.py, modern + legacy). Starts its own servers on
# free loopback ports and stops them on exit. Run tests/peers/install.sh first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="$root/target/peers/py/bin/python"
everything="$root/target/peers/node/node_modules/.bin/mcp-server-everything"
[[ -x "$py" && -x "$everything" ]] || { echo "peers not installed: run tests/peers/install.sh" >&2; exit 1; }

logs="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$logs"
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local port=$1 name=$2
    for _ in $(seq 100); do
        if "$py" -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$name did not listen on $port; its log:" >&2
    cat "$logs/$name.log" >&2
    exit 1
}
start() { # name port cmd...
    local name=$1 port=$2
    shift 2
    PORT=$port "$@" >"$logs/$name.log" 2>&1 &
    pids+=($!)
    wait_port "$port" "$name"
}

passed=0
failed=0
# check LABEL PY_EXPR CLIENT_ARGS... : runs the client, evaluates PY_EXPR with r = its JSON output.
check() {
    local label=$1 expr=$2 out
    shift 2
    if out="$("$py" "$here/mcp_client.py" --timeout 20 "$@" 2>"$logs/client.err")" \
        && R="$out" "$py" -c "import json,os,sys; r=json.loads(os.environ['R']); sys.exit(0 if ($expr) else 1)"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n  expected: %s\n  stdout: %s\n  stderr: %s\n' "$label" "$expr" "$out" "$(cat "$logs/client.err")"
    fi
}

se_http=$(free_port)
start everything-http "$se_http" "$everything" streamableHttp
se_sse=$(free_port)
start everything-sse "$se_sse" "$everything" sse
py_port=$(free_port)
start py-server "$py_port" "$py" "$here/py_server.py" --port "$py_port" --stateless --page-size 3

lr='{"duration": 0.3, "steps": 3}'
for mode in legacy auto; do
    url="http://127.0.0.1:$se_http/mcp"
    check "everything http $mode list" \
        'r["protocol"] == "2025-11-25" and "echo" in r["tools"] and len(r["tools"]) >= 13 and r["prompts"] and r["resources"] and r["templates"]' \
        --url "$url" --mode "$mode" list
    check "everything http $mode call echo" 'r["content"] == [{"type": "text", "text": "Echo: hi"}] and not r["isError"]' \
        --url "$url" --mode "$mode" call echo '{"message": "hi"}'
    check "everything http $mode progress" 'r["progress_events"] == 3 and not r["result"]["isError"]' \
        --url "$url" --mode "$mode" progress trigger-long-running-operation "$lr"
    url="http://127.0.0.1:$se_sse/sse"
    check "everything sse $mode list" '"echo" in r["tools"]' --transport sse --url "$url" --mode "$mode" list
    check "everything sse $mode call echo" 'r["content"][0]["text"] == "Echo: hi"' \
        --transport sse --url "$url" --mode "$mode" call echo '{"message": "hi"}'
    check "everything sse $mode progress" 'r["progress_events"] == 3' \
        --transport sse --url "$url" --mode "$mode" progress trigger-long-running-operation "$lr"
done
check "everything read" 'r["contents"][0]["uri"].endswith("startup.md")' \
    --url "http://127.0.0.1:$se_http/mcp" read demo://resource/static/document/startup.md
check "everything prompt" '"Paris" in r["messages"][0]["content"]["text"]' \
    --url "http://127.0.0.1:$se_http/mcp" prompt args-prompt '{"city": "Paris"}'

for mode in 2026-07-28 auto legacy; do
    want=$([[ $mode == legacy ]] && echo 2025-11-25 || echo 2026-07-28)
    url="http://127.0.0.1:$py_port/mcp"
    check "py-server $mode list (3 pages of tools)" \
        "r['protocol'] == '$want' and len(r['tools']) == 9 and r['pages']['tools'] == 3 and r['prompts'] == ['greet']" \
        --url "$url" --mode "$mode" list
    check "py-server $mode call add" 'r["structured"] == {"sum": 3}' --url "$url" --mode "$mode" call add '{"a": 1, "b": 2}'
    check "py-server $mode call fail" 'r["isError"]' --url "$url" --mode "$mode" call fail '{"message": "boom"}'
    check "py-server $mode progress" 'r["progress_events"] == 2' --url "$url" --mode "$mode" progress slow '{"steps": 2}'
    check "py-server $mode read" 'r["contents"][0]["text"] == "item 7"' --url "$url" --mode "$mode" read test://item/7
done

echo "peers selftest: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
