"""One row of the interop matrix (tests/interop.rs): drive ringgate with the real Python `mcp` SDK.

    target/peers/py/bin/python  tests/peers/interop_py.py --url URL [--mode auto|legacy|2026-07-28] [--transport http|sse] SPEC
    target/peers/py1/bin/python tests/peers/interop_py.py --url URL [--transport http|sse] SPEC

Works with mcp 2.x (`Client`, with --mode) and mcp 1.x (`ClientSession`, legacy era only). SPEC is
JSON: {"TARGET": {"call": [TOOL, ARGS], "prompt": [NAME, ARGS], "read": URI,
"progress": [TOOL, ARGS], "sample": [TOOL, ARGS], "elicit": [TOOL, ARGS, CONTENT],
"cancel": [WAIT_TOOL, CHECK_TOOL, TAG], "log": [TOOL, ARGS, UNDO_TOOL, TEXT],
"subscribe": [URI, TOOL, ARGS, UNDO_TOOL], "crash": [CRASH_TOOL, PID_TOOL, TOOL, ARGS, TEXT],
"renew": [FORGET_TOOL, TOOL, ARGS], "resume": [TOOL, ARGS]}, ...},
every key optional. `elicit` accepts each
elicitation/create with CONTENT; `cancel` calls WAIT_TOOL {"tag": TAG}, cancels it at its first
progress notification, then calls CHECK_TOOL {"tag": TAG} until it answers "yes" (the server saw
the cancellation). `log` (after one `logging/setLevel` "debug" for the connection) calls TOOL and
waits up to 10 s for a notifications/message containing TEXT (in 2026-07-28 every request asks
for "debug" in its _meta instead); `subscribe` subscribes to URI (in 2026-07-28: opens a
subscriptions/listen stream for it), calls TOOL and waits up to 10 s for a
notifications/resources/updated of URI, then unsubscribes (closes the stream);
both then call UNDO_TOOL {} when not null (a server's periodic messages switched off again).
`crash` (run after the target's other operations) calls PID_TOOL, then CRASH_TOOL, which must
get a JSON-RPC error within 15 s, then calls TOOL ARGS until it answers TEXT (at most 10 s),
then PID_TOOL again. `renew` (also last) calls FORGET_TOOL, which must answer "forgotten" (the
target forgot the upstream session), then TOOL ARGS once. `resume` (Streamable HTTP only) calls
TOOL ARGS with a progress callback and drops the connection its SSE answer comes on right after
the first progress notification (a read error, as a network would); the SDK then resumes the
stream with a GET carrying `Last-Event-ID`. The client connects
once, lists every page of tools, prompts and resources, then runs each operation; a failing
operation is reported in its cell and does not stop the others. Over Streamable HTTP with a
session, leaving the client terminates it (DELETE) and a raw POST with the old session id follows.
Prints one JSON object: {"sdk", "protocol", "tools", "prompts", "resources", "pages", "setLevel",
"session": {"status": of that POST}, "cells": {TARGET: {OP: {...}}}}, where an operation is
{"text": first text (or blob) of the result, ...} or {"error": "..."}.
Exit status 0 when that was printed, 3 when the client could not connect (stdout: {"error"}).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio

SDK = importlib.metadata.version("mcp")
V1 = SDK.startswith("1.")

if V1:
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamablehttp_client
    import httpx
    import mcp.types as types
else:
    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client
    import mcp_types as types

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


def field(obj: Any, snake: str, camel: str) -> Any:
    """mcp 2.x names result fields in snake case, 1.x in camel case."""
    return getattr(obj, snake, getattr(obj, camel, None))


def first_text(items: list[Any]) -> str | None:
    for item in items:
        item = getattr(item, "content", item)  # prompt messages wrap their content
        for name in ("text", "blob"):
            value = getattr(item, name, None)
            if isinstance(value, str):
                return value[:200]
    return None


async def sampled(context: Any, params: Any) -> Any:
    texts = [m.content.text for m in params.messages if getattr(m.content, "text", None)]
    SAMPLES.append(texts)
    text = types.TextContent(type="text", text=f"sampled: {texts[-1] if texts else ''}")
    return types.CreateMessageResult(role="assistant", content=text, model="fake")


SAMPLES: list[Any] = []
ELICITED: list[Any] = []
ELICIT_CONTENT: dict[str, Any] = {}
# notifications/message data and notifications/resources/updated URIs, in arrival order
LOGS: list[str] = []
UPDATED: list[str] = []
# the Mcp-Session-Id the gateway gave (Streamable HTTP only)
SESSION: dict[str, str] = {}
HTTP = httpx if V1 else httpx2
# the tool whose next call's answer `Drop` cuts, how many it cut, the Last-Event-IDs of resumes
DROP: dict[str, Any] = {"tool": None, "cut": 0, "resumed": []}


class Cut(HTTP.AsyncByteStream):  # type: ignore[misc,name-defined]
    """An SSE body that breaks off after its first whole progress notification event."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __aiter__(self) -> Any:
        buf, sent = b"", 0
        async for chunk in self.inner:
            buf += chunk
            at = buf.find(b"notifications/progress")
            end = buf.find(b"\n\n", at) if at >= 0 else -1
            if end >= 0:
                yield buf[sent : end + 2]
                DROP["cut"] += 1
                DROP["tool"] = None
                # the connection goes (its answer was not read to the end), as a dropped one would
                await self.inner.aclose()
                raise HTTP.ReadError("the test dropped the stream")
            yield buf[sent:]
            sent = len(buf)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Drop(HTTP.AsyncBaseTransport):  # type: ignore[misc,name-defined]
    """HTTP that cuts the SSE answer to the next `tools/call` of DROP["tool"] (see `Cut`) and
    notes the Last-Event-ID of every GET."""

    def __init__(self) -> None:
        self.inner = HTTP.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: Any) -> Any:
        if request.method == "GET" and "last-event-id" in request.headers:
            DROP["resumed"].append(request.headers["last-event-id"])
        response = await self.inner.handle_async_request(request)
        try:
            body = json.loads(request.content) if request.method == "POST" else {}
        except ValueError:
            body = {}
        if (
            DROP["tool"] is not None
            and isinstance(body, dict)
            and body.get("method") == "tools/call"
            and (body.get("params") or {}).get("name") == DROP["tool"]
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            cut = Cut(response.stream)
            return HTTP.Response(response.status_code, headers=response.headers, stream=cut, extensions=response.extensions)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def logged(params: Any) -> None:
    LOGS.append(str(params.data))


async def on_message(message: Any) -> None:
    message = getattr(message, "root", message)  # 1.x wraps notifications in a RootModel
    if getattr(message, "method", None) == "notifications/resources/updated":
        UPDATED.append(str(message.params.uri))


async def seen(events: list[str], before: int, want: Any, limit: float) -> list[str]:
    """The events after `before` once one satisfies `want`, waiting at most `limit` seconds."""
    with anyio.move_on_after(limit):
        while not any(want(e) for e in events[before:]):
            await anyio.sleep(0.02)
    return events[before:]


async def elicited(context: Any, params: Any) -> Any:
    ELICITED.append(params.message)
    return types.ElicitResult(action="accept", content=ELICIT_CONTENT)


async def connect(stack: AsyncExitStack, opts: argparse.Namespace) -> tuple[Any, str]:
    """A connected client (1.x ClientSession or 2.x Client) and the negotiated protocol version."""
    if V1:
        if opts.transport == "sse":
            read, write = await stack.enter_async_context(sse_client(opts.url, timeout=opts.timeout))
        else:

            def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> Any:
                return httpx.AsyncClient(headers=headers, timeout=timeout, auth=auth, transport=Drop())

            read, write, session_id = await stack.enter_async_context(
                streamablehttp_client(opts.url, timeout=opts.timeout, httpx_client_factory=factory)
            )
        session = await stack.enter_async_context(
            ClientSession(
                read,
                write,
                sampling_callback=sampled,
                elicitation_callback=elicited,
                logging_callback=logged,
                message_handler=on_message,
            )
        )
        init = await session.initialize()
        if opts.transport != "sse" and session_id():
            SESSION["id"] = session_id()
        return session, init.protocolVersion
    if opts.transport == "sse":

        def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> Any:
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, trust_env=False)

        transport = sse_client(opts.url, timeout=opts.timeout, sse_read_timeout=opts.timeout, httpx_client_factory=factory)
    else:

        async def keep_session_id(response: Any) -> None:
            if "mcp-session-id" in response.headers:
                SESSION["id"] = response.headers["mcp-session-id"]

        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                timeout=opts.timeout, trust_env=False, event_hooks={"response": [keep_session_id]}, transport=Drop()
            )
        )
        transport = streamable_http_client(opts.url, http_client=http)
    client = Client(
        transport,
        mode=opts.mode,
        cache=None,
        read_timeout_seconds=opts.timeout,
        sampling_callback=sampled,
        elicitation_callback=elicited,
        logging_callback=logged,
        # 2026-07-28 has no logging/setLevel: this level goes with every request instead
        log_level="debug",
        message_handler=on_message,
    )
    client = await stack.enter_async_context(client)
    return client, client.protocol_version


async def list_all(fetch: Any, items_field: str, name_of: Any) -> tuple[list[str], int]:
    names: list[str] = []
    cursor = None
    for page in range(1, 101):
        result = await fetch(cursor=cursor)
        names.extend(name_of(x) for x in getattr(result, items_field))
        cursor = field(result, "next_cursor", "nextCursor")
        if cursor is None:
            return names, page
    raise RuntimeError("more than 100 pages")


async def operation(c: Any, op: str, arg: Any) -> dict[str, Any]:
    if op == "call":
        r = await c.call_tool(arg[0], arg[1])
        return {"text": first_text(r.content), "isError": bool(field(r, "is_error", "isError"))}
    if op == "prompt":
        r = await c.get_prompt(arg[0], arg[1])
        return {"text": first_text(r.messages)}
    if op == "read":
        r = await c.read_resource(arg)
        return {"text": first_text(r.contents), "uri": str(r.contents[0].uri) if r.contents else None}
    if op == "progress":
        events: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            events.append(progress)

        r = await c.call_tool(arg[0], arg[1], progress_callback=on_progress)
        return {"text": first_text(r.content), "events": len(events)}
    if op == "sample":
        before = len(SAMPLES)
        r = await c.call_tool(arg[0], arg[1])
        return {"text": first_text(r.content), "samples": len(SAMPLES) - before}
    if op == "elicit":
        before = len(ELICITED)
        ELICIT_CONTENT.clear()
        ELICIT_CONTENT.update(arg[2])
        r = await c.call_tool(arg[0], arg[1])
        return {"text": first_text(r.content), "elicitations": len(ELICITED) - before}
    if op == "cancel":
        wait_tool, check_tool, tag = arg
        started = anyio.Event()

        async def on_first(progress: float, total: float | None, message: str | None) -> None:
            started.set()

        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await c.call_tool(wait_tool, {"tag": tag}, progress_callback=on_first)

            tg.start_soon(call)
            await started.wait()
            tg.cancel_scope.cancel()
        # the cancellation travels on its own (a notification, or the closed stream)
        with anyio.fail_after(10):
            while True:
                r = await c.call_tool(check_tool, {"tag": tag})
                if first_text(r.content) == "yes":
                    return {"text": "cancelled"}
                await anyio.sleep(0.05)
    if op == "log":
        tool, args, undo, expect = arg
        before = len(LOGS)
        await c.call_tool(tool, args)
        logs = await seen(LOGS, before, lambda m: expect in m, 10)
        if undo:
            await c.call_tool(undo, {})
        text = next((m for m in logs if expect in m), None)
        return {"logs": len(logs), "text": text[:200] if text else None}
    if op == "subscribe" and SESSION.get("protocol") == "2026-07-28":
        # no resources/subscribe in this era: a subscriptions/listen stream for the URI
        uri, tool, args, undo = arg
        updates = 0
        async with c.listen(resource_subscriptions=[uri]) as sub:
            await c.call_tool(tool, args)
            with anyio.move_on_after(10):
                async for event in sub:
                    if getattr(event, "uri", None) == uri:
                        updates += 1
                        break
            if undo:
                await c.call_tool(undo, {})
        return {"updates": updates, "uri": uri}
    if op == "subscribe":
        uri, tool, args, undo = arg
        before = len(UPDATED)
        await c.subscribe_resource(uri)
        await c.call_tool(tool, args)
        updates = await seen(UPDATED, before, lambda u: u == uri, 10)
        if undo:
            await c.call_tool(undo, {})
        await c.unsubscribe_resource(uri)
        return {"updates": updates.count(uri), "uri": uri}
    if op == "crash":
        crash_tool, pid_tool, tool, args, expect = arg
        before = first_text((await c.call_tool(pid_tool, {})).content)
        try:
            # a JSON-RPC error, not a hang
            with anyio.fail_after(15):
                r = await c.call_tool(crash_tool, {})
            return {"error": f"{crash_tool} answered: {first_text(r.content)}"}
        except TimeoutError:
            return {"error": f"{crash_tool}: no answer within 15 s"}
        except Exception as e:  # noqa: BLE001 - the error the gateway answers with
            crashed = describe(e)
        # the gateway restarts the server (after a backoff): retried until answered, within 10 s
        tries, last = 0, None
        with anyio.move_on_after(10):
            while True:
                tries += 1
                try:
                    r = await c.call_tool(tool, args)
                    last = first_text(r.content)
                    if last == expect and not field(r, "is_error", "isError"):
                        break
                except Exception as e:  # noqa: BLE001 - still restarting
                    last = describe(e)
                await anyio.sleep(0.1)
        after = first_text((await c.call_tool(pid_tool, {})).content)
        return {"crashError": crashed, "text": last, "tries": tries, "pids": [before, after]}
    if op == "renew":
        forget_tool, tool, args = arg
        forgot = first_text((await c.call_tool(forget_tool, {})).content)
        if forgot != "forgotten":
            return {"error": f"{forget_tool} answered {forgot}"}
        # once, no retry: the gateway renews the forgotten upstream session on the way
        r = await c.call_tool(tool, args)
        return {"text": first_text(r.content), "isError": bool(field(r, "is_error", "isError"))}
    if op == "resume":
        tool, args = arg
        events: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            events.append(progress)

        DROP.update(tool=tool, cut=0, resumed=[])
        try:
            r = await c.call_tool(tool, args, progress_callback=on_progress)
        finally:
            DROP["tool"] = None
        return {
            "text": first_text(r.content),
            "isError": bool(field(r, "is_error", "isError")),
            "events": events,
            "cut": DROP["cut"],
            "resumed": len(DROP["resumed"]),
        }
    raise ValueError(f"unknown operation {op}")


# operations run after a target's others
LAST = ("crash", "renew")


def describe(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


async def run(opts: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    with anyio.fail_after(opts.timeout):
        async with AsyncExitStack() as stack:
            c, protocol = await connect(stack, opts)
            SESSION["protocol"] = protocol
            out: dict[str, Any] = {"sdk": f"python mcp {SDK}", "protocol": protocol, "pages": {}}
            for kind, fetch, items, name_of in [
                ("tools", c.list_tools, "tools", lambda t: t.name),
                ("prompts", c.list_prompts, "prompts", lambda p: p.name),
                ("resources", c.list_resources, "resources", lambda r: str(r.uri)),
            ]:
                try:
                    out[kind], out["pages"][kind] = await list_all(fetch, items, name_of)
                except Exception as e:  # noqa: BLE001 - reported in the row
                    out[kind] = {"error": describe(e)}
            if protocol == "2026-07-28":
                out["setLevel"] = "debug"  # in each request's _meta
            elif any("log" in ops for ops in spec.values()):
                try:
                    await c.set_logging_level("debug")
                    out["setLevel"] = "debug"
                except Exception as e:  # noqa: BLE001 - reported in the row
                    out["setLevel"] = {"error": describe(e)}
            cells: dict[str, Any] = {}
            for target, ops in spec.items():
                cells[target] = {}
                # what breaks the target's state (a crash) comes last
                for op, arg in sorted(ops.items(), key=lambda kv: kv[0] in LAST):
                    try:
                        cells[target][op] = await operation(c, op, arg)
                    except Exception as e:  # noqa: BLE001 - one failing cell must not hide the others
                        cells[target][op] = {"error": describe(e)}
            out["cells"] = cells
        # leaving the client's context terminated its session (DELETE); the old id must be gone
        if "id" in SESSION and protocol != "2026-07-28":
            out["session"] = await after_terminate(opts.url, SESSION["id"], protocol)
        return out


async def after_terminate(url: str, session_id: str, protocol: str) -> dict[str, Any]:
    """The status a request with the terminated session's id gets (a raw POST, not the SDK's)."""
    http = httpx if V1 else httpx2
    headers = {
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": protocol,
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    try:
        async with http.AsyncClient(trust_env=False) as client:
            r = await client.post(url, json=body, headers=headers)
        return {"status": r.status_code}
    except Exception as e:  # noqa: BLE001 - reported in the row
        return {"error": describe(e)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--mode", default="auto", help="mcp 2.x only: auto | legacy | 2026-07-28")
    p.add_argument("--transport", choices=("http", "sse"), default="http")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("spec")
    opts = p.parse_args(argv)
    try:
        out = anyio.run(run, opts, json.loads(opts.spec))
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"sdk": f"python mcp {SDK}", "error": describe(e)}))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
