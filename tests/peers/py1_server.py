"""A legacy-only MCP server on the real Python `mcp` 1.30.0 SDK (FastMCP), for the interop matrix.

    target/peers/py1/bin/python tests/peers/py1_server.py --port N [--transport streamable-http|sse] [--forgetful]

Speaks 2025-11-25 at most and knows nothing of 2026-07-28 (`server/discover` is "method not
found"). Streamable HTTP serves `/mcp` with legacy sessions; sse serves `GET /sse` +
`POST /messages/`. Listens on 127.0.0.1.

Tools: echo(message), slow(steps) (one progress notification per step), log(message) (sends it
as an info log message, then answers). Resource test://static,
prompt greet(name). --forgetful adds forget(), which forgets the caller's Streamable HTTP session
as a restarted server would (its id answers 404 from then on) and answers "forgotten" ("no
session" without one).
"""

from __future__ import annotations

import argparse

import anyio
from mcp.server.fastmcp import Context, FastMCP


def build(port: int, forgetful: bool = False) -> FastMCP:
    mcp = FastMCP("ringgate-py1-peer", instructions="Legacy-only test peer for ringgate.", host="127.0.0.1", port=port)

    @mcp.tool()
    def echo(message: str) -> str:
        """Echo the message back."""
        return f"Echo: {message}"

    @mcp.tool()
    async def slow(steps: int, ctx: Context) -> str:
        """Report one progress notification per step, then finish."""
        for i in range(1, steps + 1):
            await anyio.sleep(0.05)
            await ctx.report_progress(i, steps, f"step {i}")
        return f"done after {steps} steps"

    @mcp.tool()
    async def log(message: str, ctx: Context) -> str:
        """Send the message as an info log message, then answer."""
        await ctx.info(message)
        return "logged"

    def forget(ctx: Context) -> str:
        """Forget this session, as a restarted server would."""
        request = ctx.request_context.request
        sid = request.headers.get("mcp-session-id") if request is not None else None
        # the SDK has no call for it: what its idle reaper does first, without ending the
        # transport that still carries this answer
        manager = mcp.session_manager
        if sid is None or manager._server_instances.pop(sid, None) is None:
            return "no session"
        manager._session_owners.pop(sid, None)
        return "forgotten"

    if forgetful:
        mcp.add_tool(forget)

    @mcp.resource("test://static")
    def static_text() -> str:
        return "static text from mcp 1.x"

    @mcp.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Hello, {name}!"

    return mcp


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--transport", choices=("streamable-http", "sse"), default="streamable-http")
    p.add_argument("--forgetful", action="store_true", help="add forget(), which forgets the caller's session")
    opts = p.parse_args()
    build(opts.port, opts.forgetful).run(opts.transport)


if __name__ == "__main__":
    main()
