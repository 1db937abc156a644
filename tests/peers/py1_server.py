"""A legacy-only MCP server on the real Python `mcp` 1.30.0 SDK (FastMCP), for the interop matrix.

    target/peers/py1/bin/python tests/peers/py1_server.py --port N [--transport streamable-http|sse]

Speaks 2025-11-25 at most and knows nothing of 2026-07-28 (`server/discover` is "method not
found"). Streamable HTTP serves `/mcp` with legacy sessions; sse serves `GET /sse` +
`POST /messages/`. Listens on 127.0.0.1.

Tools: echo(message), slow(steps) (one progress notification per step), log(message) (sends it
as an info log message, then answers). Resource test://static,
prompt greet(name).
"""

from __future__ import annotations

import argparse

import anyio
from mcp.server.fastmcp import Context, FastMCP


def build(port: int) -> FastMCP:
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
    opts = p.parse_args()
    build(opts.port).run(opts.transport)


if __name__ == "__main__":
    main()
