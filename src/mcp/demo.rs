//! The built-in demo MCP server (target kind `demo`), so the quickstart works with nothing else installed.

use serde_json::{json, Number, Value};

use super::jsonrpc::{RpcError, INVALID_PARAMS, METHOD_NOT_FOUND};

/// MCP's code for a `resources/read` of a URI the server does not have.
const RESOURCE_NOT_FOUND: i64 = -32002;
const PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";
const README_URI: &str = "demo://readme";
const ECHO_URI_PREFIX: &str = "demo://echo/";
const NAMES: [&str; 3] = ["Ada", "Alan", "Grace"];
const README: &str = "# ringgate demo\n\n\
    This server is built into ringgate, a thread-per-core agent gateway for MCP, A2A, LLM and HTTP traffic. \
    It answers in-process, so you can try the gateway before wiring up real MCP servers: call the `echo`, `add` \
    and `now` tools, get the `greeting` prompt, or read `demo://echo/{text}`.\n";

/// Answer one request to the demo server. `method` and `params` come straight from JSON-RPC.
pub fn handle(method: &str, params: Option<&Value>) -> Result<Value, RpcError> {
    let params = params.unwrap_or(&Value::Null);
    match method {
        "initialize" => Ok(initialize(params)),
        "ping" => Ok(json!({})),
        "tools/list" => {
            // built once: `json!` converts every leaf through serde, which made this list cost
            // more than the gateway's own work in a merged tools/list over several demo targets
            static TOOLS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(tools);
            let mut result = serde_json::Map::new();
            result.insert("tools".into(), TOOLS.clone());
            Ok(Value::Object(result))
        }
        "tools/call" => call_tool(params),
        "prompts/list" => Ok(json!({ "prompts": [greeting_prompt()] })),
        "prompts/get" => get_prompt(params),
        "resources/list" => Ok(json!({ "resources": [{
            "uri": README_URI,
            "name": "readme",
            "title": "About ringgate",
            "description": "What this demo server is",
            "mimeType": "text/markdown",
        }] })),
        "resources/templates/list" => Ok(json!({ "resourceTemplates": [{
            "uriTemplate": "demo://echo/{text}",
            "name": "echo",
            "title": "Echo",
            "description": "Returns the (percent-decoded) text in the URI",
            "mimeType": "text/plain",
        }] })),
        "resources/read" => read_resource(params),
        "completion/complete" => complete(params),
        _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("method not found: {method}"))),
    }
}

fn initialize(params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested.filter(|v| PROTOCOL_VERSIONS.contains(v)).unwrap_or(LATEST_PROTOCOL_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": {}, "prompts": {}, "resources": {}, "completions": {} },
        "serverInfo": { "name": "ringgate-demo", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "A demo server built into ringgate. Try the echo, add and now tools, the greeting prompt, \
            and the demo://readme resource.",
    })
}

fn tools() -> Value {
    json!([
        {
            "name": "echo",
            "title": "Echo",
            "description": "Returns the message it is given",
            "inputSchema": {
                "type": "object",
                "properties": { "message": { "type": "string", "description": "Text to echo back" } },
                "required": ["message"],
            },
        },
        {
            "name": "add",
            "title": "Add",
            "description": "Adds two numbers",
            "inputSchema": {
                "type": "object",
                "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
                "required": ["a", "b"],
            },
            "outputSchema": {
                "type": "object",
                "properties": { "sum": { "type": "number" } },
                "required": ["sum"],
            },
        },
        {
            "name": "now",
            "title": "Now",
            "description": "The current time in milliseconds since the Unix epoch",
            "inputSchema": { "type": "object", "properties": {} },
        },
    ])
}

fn call_tool(params: &Value) -> Result<Value, RpcError> {
    let name = required_str(params, "name")?;
    let args = params.get("arguments").unwrap_or(&Value::Null);
    Ok(match name {
        "echo" => match args.get("message").and_then(Value::as_str) {
            Some(message) => text_result(message),
            None => tool_error("argument `message` must be a string"),
        },
        "add" => match (args.get("a").and_then(Value::as_number), args.get("b").and_then(Value::as_number)) {
            (Some(a), Some(b)) => match sum(a, b) {
                Some(sum) => {
                    let mut result = text_result(&sum.to_string());
                    result["structuredContent"] = json!({ "sum": sum });
                    result
                }
                None => tool_error("the sum is out of range"),
            },
            _ => tool_error("arguments `a` and `b` must be numbers"),
        },
        "now" => match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(elapsed) => text_result(&elapsed.as_millis().to_string()),
            Err(_) => tool_error("the system clock is before 1970"),
        },
        _ => return Err(RpcError::new(INVALID_PARAMS, format!("unknown tool: {name}"))),
    })
}

/// Exact for integers that fit in i64 (so 2 + 2 is "4", not "4.0"), floating point otherwise.
fn sum(a: &Number, b: &Number) -> Option<Number> {
    if let Some(sum) = a.as_i64().zip(b.as_i64()).and_then(|(a, b)| a.checked_add(b)) {
        return Some(sum.into());
    }
    Number::from_f64(a.as_f64()? + b.as_f64()?)
}

fn text_result(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": false })
}

/// Bad tool arguments are reported in the result, not as a JSON-RPC error, so the model can see and correct them.
fn tool_error(message: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

fn greeting_prompt() -> Value {
    json!({
        "name": "greeting",
        "title": "Greeting",
        "description": "Asks the model to greet someone",
        "arguments": [{ "name": "name", "description": "Who to greet", "required": true }],
    })
}

fn get_prompt(params: &Value) -> Result<Value, RpcError> {
    let name = required_str(params, "name")?;
    if name != "greeting" {
        return Err(RpcError::new(INVALID_PARAMS, format!("unknown prompt: {name}")));
    }
    let who = params
        .pointer("/arguments/name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, "missing required argument: name"))?;
    Ok(json!({
        "description": "Greet someone",
        "messages": [{ "role": "user", "content": { "type": "text", "text": format!("Say hello to {who}.") } }],
    }))
}

fn read_resource(params: &Value) -> Result<Value, RpcError> {
    let uri = required_str(params, "uri")?;
    let (mime, text) = if uri == README_URI {
        ("text/markdown", README.to_owned())
    } else if let Some(encoded) = uri.strip_prefix(ECHO_URI_PREFIX) {
        ("text/plain", percent_decode(encoded))
    } else {
        let mut error = RpcError::new(RESOURCE_NOT_FOUND, format!("resource not found: {uri}"));
        error.data = Some(json!({ "uri": uri }));
        return Err(error);
    };
    Ok(json!({ "contents": [{ "uri": uri, "mimeType": mime, "text": text }] }))
}

/// Lenient like WHATWG URL decoding: a '%' not followed by two hex digits stays literal, invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten().and_then(hex_byte) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Two hex digits as a byte; `from_str_radix` alone would also take "+1".
fn hex_byte(digits: &str) -> Option<u8> {
    digits.bytes().all(|b| b.is_ascii_hexdigit()).then(|| u8::from_str_radix(digits, 16).ok()).flatten()
}

/// Only the greeting prompt's `name` argument has suggestions; matching ignores case, as users type "a" for "Ada".
fn complete(params: &Value) -> Result<Value, RpcError> {
    let reference = params.get("ref").unwrap_or(&Value::Null);
    let argument = params.get("argument").unwrap_or(&Value::Null);
    let prefix = argument.get("value").and_then(Value::as_str).unwrap_or("").to_lowercase();
    let prompt = (reference.get("type").and_then(Value::as_str) == Some("ref/prompt"))
        .then(|| reference.get("name").and_then(Value::as_str).unwrap_or(""));
    let values: Vec<&str> = match prompt {
        Some("greeting") if argument.get("name").and_then(Value::as_str) == Some("name") => {
            NAMES.into_iter().filter(|n| n.to_lowercase().starts_with(&prefix)).collect()
        }
        Some(name) if name != "greeting" => {
            return Err(RpcError::new(INVALID_PARAMS, format!("unknown prompt: {name}")));
        }
        _ => Vec::new(),
    };
    Ok(json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }))
}

fn required_str<'a>(params: &'a Value, key: &str) -> Result<&'a str, RpcError> {
    params.get(key).and_then(Value::as_str).ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("missing {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, params: Value) -> Result<Value, RpcError> {
        handle(method, Some(&params))
    }

    fn ok(method: &str, params: Value) -> Value {
        call(method, params).unwrap()
    }

    fn err(method: &str, params: Value) -> RpcError {
        call(method, params).unwrap_err()
    }

    fn tool(name: &str, arguments: Value) -> Value {
        ok("tools/call", json!({ "name": name, "arguments": arguments }))
    }

    fn text(result: &Value) -> &str {
        result["content"][0]["text"].as_str().unwrap()
    }

    #[test]
    fn initialize_negotiates_known_versions_only() {
        for version in PROTOCOL_VERSIONS {
            assert_eq!(ok("initialize", json!({ "protocolVersion": version }))["protocolVersion"], version);
        }
        assert_eq!(ok("initialize", json!({ "protocolVersion": "2099-01-01" }))["protocolVersion"], "2025-11-25");
        let result = handle("initialize", None).unwrap();
        assert_eq!(result["protocolVersion"], "2025-11-25");
        assert_eq!(result["serverInfo"], json!({ "name": "ringgate-demo", "version": env!("CARGO_PKG_VERSION") }));
        assert_eq!(result["capabilities"], json!({ "tools": {}, "prompts": {}, "resources": {}, "completions": {} }));
        assert!(result["instructions"].as_str().is_some_and(|s| !s.is_empty()));
    }

    #[test]
    fn ping_and_unknown_method() {
        assert_eq!(handle("ping", None), Ok(json!({})));
        assert_eq!(
            err("tools/frobnicate", json!({})),
            RpcError::new(METHOD_NOT_FOUND, "method not found: tools/frobnicate")
        );
    }

    #[test]
    fn tools_list_describes_every_tool() {
        let tools = ok("tools/list", json!({}));
        let tools = tools["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["echo", "add", "now"]);
        for t in tools {
            assert!(t["title"].is_string() && t["description"].is_string(), "{t}");
            assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        }
        assert_eq!(tools[1]["outputSchema"]["required"], json!(["sum"]));
    }

    #[test]
    fn echo_tool() {
        let result = tool("echo", json!({ "message": "hi there" }));
        assert_eq!(result, json!({ "content": [{ "type": "text", "text": "hi there" }], "isError": false }));
        let bad = tool("echo", json!({ "message": 5 }));
        assert_eq!(bad["isError"], true);
        assert!(text(&bad).contains("message"));
        assert_eq!(ok("tools/call", json!({ "name": "echo" }))["isError"], true);
    }

    #[test]
    fn add_tool() {
        let result = tool("add", json!({ "a": 2, "b": 40 }));
        assert_eq!(
            (text(&result), &result["structuredContent"], &result["isError"]),
            ("42", &json!({ "sum": 42 }), &json!(false))
        );
        let result = tool("add", json!({ "a": 1.5, "b": -4 }));
        assert_eq!((text(&result), &result["structuredContent"]["sum"]), ("-2.5", &json!(-2.5)));
        // i64 overflow falls back to floating point rather than wrapping.
        assert_eq!(
            tool("add", json!({ "a": i64::MAX, "b": 1 }))["structuredContent"]["sum"],
            json!(9.223372036854776e18)
        );
        assert_eq!(tool("add", json!({ "a": f64::MAX, "b": f64::MAX }))["isError"], true);
        for args in [json!({ "a": 1 }), json!({ "a": "1", "b": 2 }), json!([1, 2])] {
            let result = tool("add", args);
            assert_eq!(result["isError"], true);
            assert!(result.get("structuredContent").is_none());
        }
    }

    #[test]
    fn now_tool_is_current_unix_millis() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let result = tool("now", json!({}));
        let ms: u128 = text(&result).parse().unwrap();
        assert!(ms >= before && ms < before + 60_000, "{ms} vs {before}");
        assert_eq!(ok("tools/call", json!({ "name": "now" }))["isError"], false);
    }

    #[test]
    fn unknown_or_unnamed_tool_is_invalid_params() {
        assert_eq!(err("tools/call", json!({ "name": "rm" })), RpcError::new(INVALID_PARAMS, "unknown tool: rm"));
        assert_eq!(err("tools/call", json!({})).code, INVALID_PARAMS);
        assert_eq!(handle("tools/call", None).unwrap_err().code, INVALID_PARAMS);
    }

    #[test]
    fn prompts() {
        let list = ok("prompts/list", json!({}));
        assert_eq!(list["prompts"][0]["name"], "greeting");
        assert_eq!(
            list["prompts"][0]["arguments"],
            json!([{ "name": "name", "description": "Who to greet", "required": true }])
        );

        let got = ok("prompts/get", json!({ "name": "greeting", "arguments": { "name": "Ada" } }));
        assert_eq!(
            got["messages"],
            json!([{ "role": "user", "content": { "type": "text", "text": "Say hello to Ada." } }])
        );

        let missing = err("prompts/get", json!({ "name": "greeting", "arguments": {} }));
        assert_eq!(missing, RpcError::new(INVALID_PARAMS, "missing required argument: name"));
        assert_eq!(err("prompts/get", json!({ "name": "greeting" })).code, INVALID_PARAMS);
        assert_eq!(
            err("prompts/get", json!({ "name": "nope" })),
            RpcError::new(INVALID_PARAMS, "unknown prompt: nope")
        );
    }

    #[test]
    fn resources_list_and_read() {
        let list = ok("resources/list", json!({}));
        assert_eq!(
            (&list["resources"][0]["uri"], &list["resources"][0]["mimeType"]),
            (&json!(README_URI), &json!("text/markdown"))
        );
        let templates = ok("resources/templates/list", json!({}));
        assert_eq!(templates["resourceTemplates"][0]["uriTemplate"], "demo://echo/{text}");

        let readme = ok("resources/read", json!({ "uri": "demo://readme" }));
        let content = &readme["contents"][0];
        assert_eq!((&content["uri"], &content["mimeType"]), (&json!("demo://readme"), &json!("text/markdown")));
        assert!(content["text"].as_str().unwrap().contains("ringgate"));

        let echo = ok("resources/read", json!({ "uri": "demo://echo/hello%20w%C3%B6rld%2x%" }));
        assert_eq!(
            echo["contents"],
            json!([{ "uri": "demo://echo/hello%20w%C3%B6rld%2x%", "mimeType": "text/plain", "text": "hello wörld%2x%" }])
        );
        assert_eq!(ok("resources/read", json!({ "uri": "demo://echo/%+1%ff" }))["contents"][0]["text"], "%+1\u{fffd}");
    }

    #[test]
    fn unknown_resource_is_not_found() {
        let error = err("resources/read", json!({ "uri": "demo://nope" }));
        assert_eq!((error.code, error.message.as_str()), (-32002, "resource not found: demo://nope"));
        assert_eq!(error.data, Some(json!({ "uri": "demo://nope" })));
        assert_eq!(err("resources/read", json!({})).code, INVALID_PARAMS);
    }

    #[test]
    fn completion() {
        let complete = |value: &str| {
            let params = json!({
                "ref": { "type": "ref/prompt", "name": "greeting" },
                "argument": { "name": "name", "value": value },
            });
            ok("completion/complete", params)["completion"]["values"].clone()
        };
        assert_eq!(complete("A"), json!(["Ada", "Alan"]));
        assert_eq!(complete("al"), json!(["Alan"]));
        assert_eq!(complete(""), json!(["Ada", "Alan", "Grace"]));
        assert_eq!(complete("Z"), json!([]));

        let full = ok(
            "completion/complete",
            json!({ "ref": { "type": "ref/prompt", "name": "greeting" }, "argument": { "name": "name", "value": "G" } }),
        );
        assert_eq!(full, json!({ "completion": { "values": ["Grace"], "total": 1, "hasMore": false } }));

        let other_arg =
            json!({ "ref": { "type": "ref/prompt", "name": "greeting" }, "argument": { "name": "x", "value": "" } });
        assert_eq!(ok("completion/complete", other_arg)["completion"]["values"], json!([]));
        let resource = json!({ "ref": { "type": "ref/resource", "uri": "demo://echo/{text}" }, "argument": { "name": "text", "value": "" } });
        assert_eq!(ok("completion/complete", resource)["completion"]["values"], json!([]));
        let unknown =
            json!({ "ref": { "type": "ref/prompt", "name": "nope" }, "argument": { "name": "name", "value": "" } });
        assert_eq!(err("completion/complete", unknown), RpcError::new(INVALID_PARAMS, "unknown prompt: nope"));
    }
}
