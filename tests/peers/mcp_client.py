"""Drive an MCP server (or ringgate in front of one) with the real Python `mcp` 2.3.0 client.

    target/peers/py/bin/python tests/peers/mcp_client.py --url URL [--mode auto|legacy|2026-07-28]
        [--transport http|sse] [--header 'Name: value']... [--timeout S] [--cafile PEM] [-v]
        SCENARIO [ARGS...]

Scenarios (each prints ONE JSON object on stdout; logs go to stderr):
    info                      {"protocol", "server", "capabilities", "instructions"}
    list                      {"protocol", "tools", "prompts", "resources", "templates", "pages"}
                              every page is followed (nextCursor); a capability the server does
                              not declare is reported as an empty list with 0 pages
    call TOOL JSON_ARGS       {"protocol", "isError", "content", "structured"}
    read URI                  {"protocol", "contents"}
    prompt NAME JSON_ARGS     {"protocol", "description", "messages"}
    progress TOOL JSON_ARGS   {"protocol", "progress_events", "progress", "result"}
    sample TOOL JSON_ARGS     declares sampling; answers each sampling/createMessage with the text
                              "sampled: <last user text>"; {"protocol", "samples", "result"}
    listen TOOL JSON_ARGS URI 2026-07-28 only: opens `subscriptions/listen` for tool list changes
                              and updates of URI, calls TOOL (which should cause both), and waits
                              for both events; {"protocol", "honored", "events"}
    elicit TOOL JSON_ARGS CONTENT
                              declares elicitation; accepts each elicitation/create with the JSON
                              object CONTENT; {"protocol", "elicitations", "result"}
    roots TOOL JSON_ARGS URI...
                              declares roots; answers each roots/list with the URIs;
                              {"protocol", "roots_asked", "result"}
    refuse TOOL JSON_ARGS CODE
                              declares sampling, elicitation and roots; answers each of those
                              requests with the JSON-RPC error CODE; {"protocol", "refused", "result"}

Exit status: 0 success; 1 the server answered with a JSON-RPC error (stdout has
{"error": {"code", "message", "data"}}); 2 usage; 3 any other failure (connection, timeout,
invalid result; stdout has {"error": {"type", "message"}}).

--transport http is Streamable HTTP (`Client(url, mode=...)`), --transport sse is the deprecated
2024-11-05 HTTP+SSE transport (`mcp.client.sse.sse_client`); for sse, --url is the GET endpoint
(e.g. http://127.0.0.1:3001/sse). The client's response cache is off, so every call goes on the
wire, and proxy environment variables are ignored (tests talk to loopback). For https URLs,
--cafile names the PEM file of the CA that signed the server's certificate.
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import traceback
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp_types import METHOD_NOT_FOUND
from mcp.client.streamable_http import streamable_http_client
import mcp_types as types
from pydantic import BaseModel, ValidationError

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport there
    from exceptiongroup import BaseExceptionGroup

MAX_PAGES = 1000
# scenarios that answer what the server asks during one call: (least args, usage, what the reply
# reports of the asking, an attribute of the options the callbacks fill)
ANSWERING = {
    "sample": (1, "sample TOOL [JSON_ARGS]", "samples"),
    "elicit": (3, "elicit TOOL JSON_ARGS CONTENT", "elicitations"),
    "roots": (3, "roots TOOL JSON_ARGS URI...", "roots_asked"),
    "refuse": (3, "refuse TOOL JSON_ARGS CODE", "refused"),
}
log = logging.getLogger("mcp_client")


class UsageError(Exception):
    pass


def dump(value: Any) -> Any:
    """Pydantic models (and lists of them) as wire-shaped JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(value, list):
        return [dump(v) for v in value]
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--mode", default="auto", help="auto | legacy | 2026-07-28 (default auto)")
    p.add_argument("--transport", choices=("http", "sse"), default="http")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra HTTP header, repeatable")
    p.add_argument("--timeout", type=float, default=30.0, help="whole-run limit in seconds (default 30)")
    p.add_argument("--cafile", help="PEM file of CAs trusted for https URLs (default: the system's)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs of the SDK on stderr")
    p.add_argument(
        "scenario",
        choices=("info", "list", "call", "read", "prompt", "progress", "sample", "listen", "elicit", "roots", "refuse"),
    )
    p.add_argument("args", nargs="*")
    return p.parse_args(argv)


def headers_of(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header wants 'Name: value', got {pair!r}")
        out[name.strip()] = value.strip()
    return out


def json_args(args: list[str], index: int, what: str) -> dict[str, Any]:
    if len(args) <= index:
        return {}
    try:
        value = json.loads(args[index])
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object")
    return value


def need(args: list[str], count: int, usage: str) -> None:
    if len(args) < count:
        raise UsageError(f"usage: {usage}")


def make_client(opts: argparse.Namespace) -> Client:
    headers = headers_of(opts.header)
    timeout = httpx2.Timeout(opts.timeout, read=opts.timeout)
    verify: Any = ssl.create_default_context(cafile=opts.cafile) if opts.cafile else True
    if opts.transport == "sse":

        def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, trust_env=False, verify=verify)

        transport = sse_client(
            opts.url, headers=headers or None, timeout=opts.timeout, sse_read_timeout=opts.timeout, httpx_client_factory=factory
        )
    else:
        http = httpx2.AsyncClient(headers=headers, timeout=timeout, trust_env=False, verify=verify)
        transport = _owning(streamable_http_client(opts.url, http_client=http), http)
    samples: list[Any] = []
    opts.samples = samples

    async def on_sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        texts = [m.content.text for m in params.messages if getattr(m.content, "text", None)]
        samples.append(texts)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"sampled: {texts[-1] if texts else ''}"), model="fake"
        )

    sampling: dict[str, Any] = {"sampling_callback": on_sampling} if opts.scenario == "sample" else {}
    elicitations: list[Any] = []
    opts.elicitations = elicitations

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        elicitations.append(params.message)
        return types.ElicitResult(action="accept", content=json_args(opts.args, 2, "CONTENT"))

    if opts.scenario == "elicit":
        sampling["elicitation_callback"] = on_elicit
    opts.roots_asked = 0

    async def on_roots(context: Any) -> types.ListRootsResult:
        opts.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri=u) for u in opts.args[2:]])

    if opts.scenario == "roots":
        sampling["list_roots_callback"] = on_roots
    refused: list[str] = []
    opts.refused = refused

    def refusal(method: str) -> types.ErrorData:
        refused.append(method)
        return types.ErrorData(code=int(opts.args[2]), message=f"the test refuses {method}")

    async def refuse_sampling(context: Any, params: Any) -> types.ErrorData:
        return refusal("sampling/createMessage")

    async def refuse_elicit(context: Any, params: Any) -> types.ErrorData:
        return refusal("elicitation/create")

    async def refuse_roots(context: Any) -> types.ErrorData:
        return refusal("roots/list")

    if opts.scenario == "refuse":
        sampling.update(
            sampling_callback=refuse_sampling, elicitation_callback=refuse_elicit, list_roots_callback=refuse_roots
        )
    return Client(transport, mode=opts.mode, cache=None, read_timeout_seconds=opts.timeout, **sampling)


class _owning:
    """A transport context that also closes the httpx client it was given."""

    def __init__(self, inner: Any, http: httpx2.AsyncClient) -> None:
        self.inner, self.http = inner, http

    async def __aenter__(self) -> Any:
        await self.http.__aenter__()
        try:
            return await self.inner.__aenter__()
        except BaseException:
            await self.http.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.inner.__aexit__(*exc)
        finally:
            await self.http.__aexit__(None, None, None)


async def list_all(c: Client, kind: str) -> tuple[list[Any], int]:
    fetch, field = {
        "tools": (c.list_tools, "tools"),
        "prompts": (c.list_prompts, "prompts"),
        "resources": (c.list_resources, "resources"),
        "templates": (c.list_resource_templates, "resource_templates"),
    }[kind]
    items: list[Any] = []
    cursor: str | None = None
    for page in range(1, MAX_PAGES + 1):
        result = await fetch(cursor=cursor)
        items.extend(getattr(result, field))
        cursor = result.next_cursor
        if cursor is None:
            return items, page
    raise RuntimeError(f"{kind}: more than {MAX_PAGES} pages")


async def scenario_list(c: Client, mode: str) -> dict[str, Any]:
    caps = c.server_capabilities
    declared = {"tools": caps.tools, "prompts": caps.prompts, "resources": caps.resources, "templates": caps.resources}
    # mode=<modern version> skips server/discover, so the capabilities are an empty stand-in:
    # there, list everything and count "method not found" as an empty list.
    unknown_caps = mode not in ("auto", "legacy")
    out: dict[str, Any] = {"protocol": c.protocol_version}
    pages: dict[str, int] = {}
    for kind, cap in declared.items():
        if cap is None and not unknown_caps:
            out[kind], pages[kind] = [], 0
            continue
        try:
            items, pages[kind] = await list_all(c, kind)
        except MCPError as e:
            if cap is not None or e.code != METHOD_NOT_FOUND:
                raise
            out[kind], pages[kind] = [], 0
            continue
        if kind == "resources":
            out[kind] = [r.uri for r in items]
        elif kind == "templates":
            out[kind] = [t.uri_template for t in items]
        else:
            out[kind] = [i.name for i in items]
    out["pages"] = pages
    return out


def call_result(result: Any) -> dict[str, Any]:
    return {"isError": bool(result.is_error), "content": dump(result.content), "structured": result.structured_content}


# What `run` got, kept for `main`: the SDK's transport can still fail while it closes (the
# legacy SSE transport raises BrokenResourceError for a notification that arrives during its
# teardown), which must not turn an answered request into a failure.
RESULT: list[dict[str, Any]] = []


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    with anyio.fail_after(opts.timeout):
        async with make_client(opts) as c:
            out = await scenario(c, opts)
            RESULT.append(out)
            return out


async def scenario(c: Client, opts: argparse.Namespace) -> dict[str, Any]:
    args = opts.args
    proto = c.protocol_version
    log.info("connected: protocol %s, server %s", proto, c.server_info)
    if opts.scenario == "info":
        return {
            "protocol": proto,
            "server": dump(c.server_info),
            "capabilities": dump(c.server_capabilities),
            "instructions": c.instructions,
        }
    if opts.scenario == "list":
        return await scenario_list(c, opts.mode)
    if opts.scenario == "call":
        need(args, 1, "call TOOL [JSON_ARGS]")
        return {"protocol": proto, **call_result(await c.call_tool(args[0], json_args(args, 1, "JSON_ARGS")))}
    if opts.scenario == "read":
        need(args, 1, "read URI")
        result = await c.read_resource(args[0])
        return {"protocol": proto, "contents": dump(result.contents)}
    if opts.scenario == "prompt":
        need(args, 1, "prompt NAME [JSON_ARGS]")
        raw = json_args(args, 1, "JSON_ARGS")
        result = await c.get_prompt(args[0], {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()})
        return {"protocol": proto, "description": result.description, "messages": dump(result.messages)}
    if opts.scenario == "progress":
        need(args, 1, "progress TOOL [JSON_ARGS]")
        events: list[dict[str, Any]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            events.append({"progress": progress, "total": total, "message": message})

        result = await c.call_tool(args[0], json_args(args, 1, "JSON_ARGS"), progress_callback=on_progress)
        return {
            "protocol": proto,
            "progress_events": len(events),
            "progress": events,
            "result": call_result(result),
        }
    if opts.scenario == "listen":
        need(args, 3, "listen TOOL JSON_ARGS URI")
        seen: list[dict[str, Any]] = []
        async with c.listen(tools_list_changed=True, resource_subscriptions=[args[2]]) as sub:
            await c.call_tool(args[0], json_args(args, 1, "JSON_ARGS"))
            async for event in sub:
                seen.append({"type": type(event).__name__, **{k: str(v) for k, v in vars(event).items()}})
                if {"ToolsListChanged", "ResourceUpdated"} <= {e["type"] for e in seen}:
                    break
            return {"protocol": proto, "honored": dump(sub.honored), "events": seen}
    if opts.scenario in ANSWERING:
        # a call whose server asks the client something; the reply carries what it was asked
        least, usage, asked = ANSWERING[opts.scenario]
        need(args, least, usage)
        result = await c.call_tool(args[0], json_args(args, 1, "JSON_ARGS"))
        return {"protocol": proto, asked: getattr(opts, asked), "result": call_result(result)}
    raise UsageError(f"unknown scenario {opts.scenario}")


def leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.DEBUG if opts.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    try:
        out = anyio.run(run, opts)
    except BaseException as e:  # noqa: BLE001 - everything becomes an exit status and a JSON error
        exc = leaf(e)
        if isinstance(exc, UsageError):
            print(f"mcp_client: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, MCPError):
            err = {"code": exc.code, "message": exc.message, "data": exc.data}
            print(json.dumps({"error": err}))
            print(f"mcp_client: {opts.scenario}: server error {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        if isinstance(exc, KeyboardInterrupt):
            raise
        if RESULT and isinstance(exc, anyio.BrokenResourceError):
            print(f"mcp_client: {opts.scenario}: answered; the transport then failed closing: {exc!r}", file=sys.stderr)
            print(json.dumps(RESULT[0]))
            return 0
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        if isinstance(exc, ValidationError):
            kind = "invalid_result"
        print(json.dumps({"error": {"type": kind, "message": str(exc)}}))
        print(f"mcp_client: {opts.scenario}: {kind}: {exc}", file=sys.stderr)
        # where it broke, for a test's failure output
        traceback.print_exception(e, file=sys.stderr)
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
