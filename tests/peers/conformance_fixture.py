"""A fixture MCP server for the official conformance suite's server scenarios, on Python `mcp` 2.3.0.

    target/peers/py/bin/python tests/peers/conformance_fixture.py --port N

Written from the scenario descriptions of `@modelcontextprotocol/conformance` (`conformance list`;
each scenario's description says which tool, prompt or resource it calls and what it expects):
tools test_simple_text, test_image_content, test_audio_content, test_embedded_resource,
test_multiple_content_types, test_tool_with_logging, test_tool_with_progress,
test_error_handling, test_sampling, test_elicitation, test_elicitation_sep1034_defaults,
test_elicitation_sep1330_enums, json_schema_2020_12_tool, the 2026-07-28 multi-round-trip
tools test_input_required_result_{elicitation,sampling,list_roots,request_state,tampered_state,
multiple_inputs,multi_round,capabilities} and prompt test_input_required_result_prompt; resources test://static-text,
test://static-binary, test://template/{id}/data, test://watched-resource; prompts
test_simple_prompt, test_prompt_with_arguments, test_prompt_with_embedded_resource,
test_prompt_with_image; completions. Streamable HTTP with legacy sessions at /mcp, 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp_types import ListToolsResult, PaginatedRequestParams

# a 1x1 red PNG and a 1-sample silent WAV, made here rather than shipped
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
        "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
    )
).decode()
WAV = base64.b64encode(
    b"RIFF" + (38).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + b"data" + (2).to_bytes(4, "little") + b"\x00\x00"
).decode()

SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


class Fixture(MCPServer):
    async def _handle_list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        tools = await self.list_tools()
        # the SDK derives schemas from signatures; this tool's is given verbatim
        tools = [t.model_copy(update={"input_schema": SCHEMA_2020_12}) if t.name == "json_schema_2020_12_tool" else t for t in tools]
        return ListToolsResult(tools=tools)


mcp = Fixture("ringgate-conformance-fixture", version="1.0.0")


def text(t: str) -> types.TextContent:
    return types.TextContent(type="text", text=t)


def image() -> types.ImageContent:
    return types.ImageContent(type="image", data=PNG, mime_type="image/png")


def embedded(uri: str, mime: str, body: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(type="resource", resource=types.TextResourceContents(uri=uri, mime_type=mime, text=body))


@mcp.tool(description="Returns simple text")
def test_simple_text() -> types.CallToolResult:
    return types.CallToolResult(content=[text("This is a simple text response for testing.")])


@mcp.tool(description="Returns an image")
def test_image_content() -> types.CallToolResult:
    return types.CallToolResult(content=[image()])


@mcp.tool(description="Returns audio")
def test_audio_content() -> types.CallToolResult:
    return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])


@mcp.tool(description="Returns an embedded resource")
def test_embedded_resource() -> types.CallToolResult:
    return types.CallToolResult(
        content=[embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]
    )


@mcp.tool(description="Returns text, an image and a resource")
def test_multiple_content_types() -> types.CallToolResult:
    body = json.dumps({"test": "data", "value": 123}, separators=(",", ":"))
    return types.CallToolResult(
        content=[
            text("Multiple content types test:"),
            image(),
            embedded("test://mixed-content-resource", "application/json", body),
        ]
    )


@mcp.tool(description="Logs three messages while it runs")
async def test_tool_with_logging(ctx: Context) -> str:
    await ctx.info("Tool execution started")
    await anyio.sleep(0.05)
    await ctx.info("Tool processing data")
    await anyio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@mcp.tool(description="Reports progress 0, 50 and 100 of 100")
async def test_tool_with_progress(ctx: Context) -> str:
    for p in (0, 50, 100):
        await ctx.report_progress(p, 100)
        if p < 100:
            await anyio.sleep(0.05)
    return "Tool with progress executed successfully"


@mcp.tool(description="Always fails")
def test_error_handling() -> str:
    raise ValueError("This tool intentionally returns an error for testing")


@mcp.tool(description="Asks the client's LLM")
async def test_sampling(prompt: str, ctx: Context) -> str:
    r = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=text(prompt))], max_tokens=100, related_request_id=ctx.request_id
    )
    return f"LLM response: {getattr(r.content, 'text', r.content)}"


async def elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
    r = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return f"Elicitation completed: action={r.action}, content={json.dumps(r.content)}"


@mcp.tool(description="Asks the user for a name and an email")
async def test_elicitation(message: str, ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    return "User response: " + await elicit(ctx, message, schema)


@mcp.tool(description="Elicitation with defaults for every primitive type (SEP-1034)")
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": True},
        },
    }
    return await elicit(ctx, "Please review the defaults", schema)


@mcp.tool(description="Elicitation with the five enum shapes (SEP-1330)")
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    options = ["option1", "option2", "option3"]
    titled = [{"const": f"value{i}", "title": t} for i, t in ((1, "First Option"), (2, "Second Option"), (3, "Third Option"))]
    choices = [{"const": f"value{i}", "title": t} for i, t in ((1, "First Choice"), (2, "Second Choice"), (3, "Third Choice"))]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": options},
            "titledSingle": {"type": "string", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": options}},
            "titledMulti": {"type": "array", "items": {"anyOf": choices}},
        },
    }
    return await elicit(ctx, "Please choose", schema)


@mcp.tool(name="json_schema_2020_12_tool", description="Tool with JSON Schema 2020-12 features")
def json_schema_tool(name: str = "") -> str:
    return f"ok {name}"


# 2026-07-28 multi-round-trip requests (SEP-2322): a tool answers `input_required` until the
# client's retry carries the answers it asked for. The SDK seals `requestState` (AES-GCM, a
# key of this process) and rejects a tampered echo before the tool runs.
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def elicit_request(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}


def sample_request(prompt: str, max_tokens: int) -> dict[str, Any]:
    message = {"role": "user", "content": {"type": "text", "text": prompt}}
    return {"method": "sampling/createMessage", "params": {"messages": [message], "maxTokens": max_tokens}}


ROOTS_REQUEST = {"method": "roots/list", "params": {}}


def input_required(requests: dict[str, Any], state: str | None = None) -> types.InputRequiredResult:
    body: dict[str, Any] = {"inputRequests": requests}
    if state is not None:
        body["requestState"] = state
    return types.InputRequiredResult.model_validate(body)


def answers(ctx: Context, *keys: str) -> dict[str, Any] | None:
    """The client's answers to `keys`, or None while one is missing (it is asked again)."""
    got = ctx.input_responses or {}
    return {k: got[k] for k in keys} if all(k in got for k in keys) else None


def said(answer: Any) -> str:
    """What an answer says, whichever kind it is (elicitation, sampling, roots)."""
    if isinstance(answer, types.ElicitResult):
        return json.dumps(answer.content or {}, sort_keys=True)
    if isinstance(answer, types.ListRootsResult):
        return ", ".join(str(r.uri) for r in answer.roots)
    return str(getattr(getattr(answer, "content", None), "text", answer))


Mrtr = types.CallToolResult | types.InputRequiredResult


@mcp.tool(description="Asks the user's name (input_required), then greets them")
def test_input_required_result_elicitation(ctx: Context) -> Mrtr:
    got = answers(ctx, "user_name")
    if got is None:
        return input_required({"user_name": elicit_request("What is your name?", NAME_SCHEMA)})
    answer = got["user_name"]
    name = (answer.content or {}).get("name", "stranger") if isinstance(answer, types.ElicitResult) else "stranger"
    return types.CallToolResult(content=[text(f"Hello, {name}!")])


@mcp.tool(description="Asks the client's LLM (input_required), then reports its answer")
def test_input_required_result_sampling(ctx: Context) -> Mrtr:
    got = answers(ctx, "capital_question")
    if got is None:
        return input_required({"capital_question": sample_request("What is the capital of France?", 100)})
    return types.CallToolResult(content=[text(f"LLM said: {said(got['capital_question'])}")])


@mcp.tool(description="Asks the client's roots (input_required), then lists them")
def test_input_required_result_list_roots(ctx: Context) -> Mrtr:
    got = answers(ctx, "client_roots")
    if got is None:
        return input_required({"client_roots": ROOTS_REQUEST})
    return types.CallToolResult(content=[text(f"Roots: {said(got['client_roots'])}")])


CONFIRM = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def confirmed(ctx: Context, state: str) -> Mrtr:
    """Ask for a confirmation with `state`; complete once it comes back with that same state."""
    if answers(ctx, "confirm") is None or ctx.request_state != state:
        return input_required({"confirm": elicit_request("Please confirm", CONFIRM)}, state)
    return types.CallToolResult(content=[text(f"state-ok: {said(ctx.input_responses['confirm'])}")])


@mcp.tool(description="input_required with a requestState that must come back")
def test_input_required_result_request_state(ctx: Context) -> Mrtr:
    return confirmed(ctx, "awaiting-confirmation")


@mcp.tool(description="input_required with a sealed requestState; a tampered echo is an error")
def test_input_required_result_tampered_state(ctx: Context) -> Mrtr:
    return confirmed(ctx, "awaiting-untampered-confirmation")


@mcp.tool(description="Asks for a name, a greeting and the roots at once")
def test_input_required_result_multiple_inputs(ctx: Context) -> Mrtr:
    got = answers(ctx, "user_name", "greeting", "client_roots")
    if got is None or ctx.request_state != "all-three":
        requests = {
            "user_name": elicit_request("What is your name?", NAME_SCHEMA),
            "greeting": sample_request("Generate a greeting", 50),
            "client_roots": ROOTS_REQUEST,
        }
        return input_required(requests, "all-three")
    return types.CallToolResult(content=[text(" | ".join(said(got[k]) for k in sorted(got)))])


@mcp.tool(description="Two rounds of questions, the state changing between them")
def test_input_required_result_multi_round(ctx: Context) -> Mrtr:
    state = ctx.request_state or ""
    step1, step2 = answers(ctx, "step1"), answers(ctx, "step2")
    if state.startswith("round-2:") and step2 is not None:
        return types.CallToolResult(content=[text(f"{state[len('round-2:'):]} likes {said(step2['step2'])}")])
    if state == "round-1" and step1 is not None:
        color = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
        ask = elicit_request("Step 2: What is your favorite color?", color)
        return input_required({"step2": ask}, f"round-2:{said(step1['step1'])}")
    return input_required({"step1": elicit_request("Step 1: What is your name?", NAME_SCHEMA)}, "round-1")


@mcp.tool(description="Asks only what the client's declared capabilities allow")
def test_input_required_result_capabilities(ctx: Context) -> Mrtr:
    caps = ctx.client_capabilities
    wanted = {}
    if caps is not None and caps.elicitation is not None:
        wanted["user_name"] = elicit_request("What is your name?", NAME_SCHEMA)
    if caps is not None and caps.sampling is not None:
        wanted["greeting"] = sample_request("Generate a greeting", 50)
    if not wanted:
        return types.CallToolResult(content=[text("the client can answer no input request")])
    got = answers(ctx, *wanted)
    if got is None:
        return input_required(wanted)
    return types.CallToolResult(content=[text(" | ".join(said(got[k]) for k in sorted(got)))])


@mcp.prompt(description="A prompt that asks for its context first (input_required)")
def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | types.InputRequiredResult:
    got = answers(ctx, "user_context")
    if got is None:
        schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
        return input_required({"user_context": elicit_request("What context should the prompt use?", schema)})
    return [UserMessage(f"Use this context: {said(got['user_context'])}")]


@mcp.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@mcp.resource("test://template/{id}/data", mime_type="application/json")
def template(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


@mcp.resource("test://watched-resource", mime_type="text/plain")
def watched() -> str:
    return "Watched resource content."


@mcp.prompt(description="A simple prompt")
def test_simple_prompt() -> list[UserMessage]:
    return [UserMessage("This is a simple prompt for testing.")]


@mcp.prompt(description="A prompt with arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]


@mcp.prompt(description="A prompt with an embedded resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    return [
        UserMessage(embedded(resourceUri, "text/plain", "Embedded resource content for testing.")),
        UserMessage("Please process the embedded resource above."),
    ]


@mcp.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[UserMessage]:
    return [UserMessage(image()), UserMessage("Please analyze the image above.")]


# legacy-era methods MCPServer leaves to the low-level server: the level is accepted (logging
# goes out at every level), subscriptions are remembered
SUBSCRIBED: set[str] = set()


async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.discard(str(params.uri))
    return types.EmptyResult()


mcp._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
mcp._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)


@mcp.completion()
async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
    return types.Completion(values=[], total=0, has_more=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    opts = p.parse_args()
    mcp.run("streamable-http", host="127.0.0.1", port=opts.port)


if __name__ == "__main__":
    main()
