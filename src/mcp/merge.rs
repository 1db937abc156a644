//! Merging fanned-out target results into one gateway answer, and prefixing what targets return.

use serde_json::{json, Map, Value};

use super::cursor;
use super::names::{prefix_item, prefix_uri, Kind};

/// Protocol versions the gateway speaks with clients, oldest first.
pub const LEGACY_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", LATEST_LEGACY];
const LATEST_LEGACY: &str = "2025-11-25";
/// The stateless protocol version, negotiated by `server/discover` rather than `initialize`.
pub const MODERN_VERSION: &str = "2026-07-28";

/// Version negotiation for `initialize`: echo the client's requested version if it is in LEGACY_VERSIONS,
/// else the latest legacy version.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    LEGACY_VERSIONS.iter().copied().find(|v| Some(*v) == requested).unwrap_or(LATEST_LEGACY)
}

/// One target's answer to a fanned-out request.
pub struct Part<'a> {
    pub target: &'a str,
    pub result: &'a Value,
}

/// Merge list results (`tools/list` etc.) of `(target, result)` parts: items in target order then upstream
/// order, each prefixed when `prefixed`, and a gateway `nextCursor` covering every part that returned one.
/// Upstream `_meta`, `ttlMs`, `cacheScope` and `resultType` are dropped: they describe one target, and the
/// caller adds its own. Items are moved, not copied, out of the parts.
pub fn merge_list<'a>(kind: Kind, parts: impl IntoIterator<Item = (&'a str, Value)>, prefixed: bool) -> Value {
    let mut items = Vec::new();
    let mut pending = Vec::new();
    for (target, mut result) in parts {
        if let Some(Value::Array(upstream)) = result.get_mut(kind.items_field()).map(Value::take) {
            items.reserve(upstream.len());
            items.extend(upstream.into_iter().map(|mut item| {
                if prefixed {
                    prefix_item(kind, target, &mut item);
                }
                item
            }));
        }
        // "" is a valid cursor since 2026-07-28; only an absent or null nextCursor ends a target.
        if let Some(next) = result.get("nextCursor").and_then(Value::as_str) {
            pending.push((target.to_owned(), next.to_owned()));
        }
    }
    let mut out = Map::new();
    out.insert(kind.items_field().into(), Value::Array(items));
    if let Some(next) = cursor::encode(kind.list_method(), &pending) {
        out.insert("nextCursor".into(), next.into());
    }
    Value::Object(out)
}

/// Merge `initialize` results of several targets into the gateway's own InitializeResult. With exactly one
/// part and !prefixed the gateway is transparent: that result is returned unchanged except `protocolVersion`
/// forced to `version`. Otherwise capabilities are merged as in [`merge_capabilities`], `serverInfo` is the
/// gateway's, and `instructions` (omitted if no part has any) is a preamble plus each part's under `[target]`.
pub fn merge_initialize(
    parts: &[Part<'_>],
    prefixed: bool,
    version: &str,
    server_name: &str,
    server_version: &str,
) -> Value {
    if let ([only], false) = (parts, prefixed) {
        let mut result = only.result.clone();
        if let Some(obj) = result.as_object_mut() {
            obj.insert("protocolVersion".into(), version.into());
        }
        return result;
    }
    let mut out = json!({
        "protocolVersion": version,
        "capabilities": merge_capabilities(parts),
        "serverInfo": {"name": server_name, "version": server_version},
    });
    let sections: String = parts
        .iter()
        .filter_map(|p| Some(format!("\n\n[{}]\n{}", p.target, p.result.get("instructions")?.as_str()?)))
        .collect();
    if !sections.is_empty() {
        let naming = if prefixed {
            "tool and prompt names are prefixed `target_`, resource URIs `target+`"
        } else {
            "names are not prefixed"
        };
        out["instructions"] =
            format!("{server_name} is an MCP gateway federating several servers; {naming}.{sections}").into();
    }
    out
}

/// Merged server capabilities of `parts` (each result's `capabilities`), for `initialize` and the modern
/// `server/discover`. Each capability is advertised if any part has it; `listChanged` is always on because a
/// change in any one target's list changes the merged list.
pub fn merge_capabilities(parts: &[Part<'_>]) -> Value {
    let caps = |name: &'static str| {
        parts.iter().filter_map(move |p| p.result.get("capabilities")?.get(name)).filter(|c| !c.is_null())
    };
    let mut out = Map::new();
    for name in ["tools", "prompts"] {
        if caps(name).next().is_some() {
            out.insert(name.into(), json!({"listChanged": true}));
        }
    }
    if caps("resources").next().is_some() {
        let subscribe = caps("resources").any(|c| c.get("subscribe") == Some(&Value::Bool(true)));
        out.insert("resources".into(), json!({"listChanged": true, "subscribe": subscribe}));
    }
    for name in ["logging", "completions"] {
        if caps(name).next().is_some() {
            out.insert(name.into(), json!({}));
        }
    }
    Value::Object(out)
}

/// Unprefixed names (`prefixMode: never`): drop from list pages `(target, page)` every item whose
/// key another target's page also has, so a name in a list is one a call can be routed by.
pub fn drop_clashes<T: PartialEq + Copy>(kind: Kind, parts: &mut [(T, Value)]) {
    use std::collections::HashMap;
    let field = kind.key_field();
    let key = |it: &Value| it.get(field).and_then(Value::as_str).map(str::to_owned);
    let items = |page: &Value| page.get(kind.items_field()).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut seen: HashMap<String, Option<T>> = HashMap::new();
    for (t, page) in parts.iter() {
        for k in items(page).iter().filter_map(key) {
            // `None`: served by more than one target
            seen.entry(k).and_modify(|o| *o = o.filter(|o| o == t)).or_insert(Some(*t));
        }
    }
    for (_, page) in parts.iter_mut() {
        if let Some(items) = page.get_mut(kind.items_field()).and_then(Value::as_array_mut) {
            items.retain(|it| key(it).is_none_or(|k| seen.get(&k).is_some_and(Option::is_some)));
        }
    }
}

/// The targets among complete lists `(target, page)` that serve `key` (by `kind`'s key field;
/// resource templates by matching the URI against each `uriTemplate`), each once.
pub fn owners<T: PartialEq + Copy>(kind: Kind, key: &str, pages: &[(T, Value)]) -> Vec<T> {
    let mut out = Vec::new();
    for (t, page) in pages {
        let items = page.get(kind.items_field()).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let serves = items.iter().filter_map(|it| it.get(kind.key_field())?.as_str()).any(|k| match kind {
            Kind::ResourceTemplate => k == key || template_matches(k, key),
            _ => k == key,
        });
        if serves && !out.contains(t) {
            out.push(*t);
        }
    }
    out
}

/// Whether `uri` could be an expansion of the RFC 6570 `template`: its literal parts appear in
/// order, the first as a prefix and the last as a suffix (each expression matches anything).
pub fn template_matches(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => return false,
        }
    }
    literals.push(rest);
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    if literals.len() == 1 {
        return first == uri;
    }
    let Some(mut tail) = uri.strip_prefix(first) else { return false };
    for lit in &literals[1..literals.len() - 1] {
        match tail.find(lit) {
            Some(at) if !lit.is_empty() => tail = &tail[at + lit.len()..],
            Some(_) => {}
            None => return false,
        }
    }
    tail.ends_with(last)
}

fn prefix_uri_field(target: &str, obj: &mut Value) {
    if let Some(Value::String(uri)) = obj.get_mut("uri") {
        *uri = prefix_uri(target, uri);
    }
}

/// Prefix `contents[].uri` of a `resources/read` result in place, so the client can read them back through
/// the gateway. No-op when !prefixed.
pub fn prefix_read_result(target: &str, result: &mut Value, prefixed: bool) {
    if !prefixed {
        return;
    }
    if let Some(Value::Array(contents)) = result.get_mut("contents") {
        contents.iter_mut().for_each(|c| prefix_uri_field(target, c));
    }
}

/// Prefix the uri in a target's `notifications/resources/updated`, matching what the client subscribed to.
/// No-op for other methods and when !prefixed.
pub fn prefix_notification(target: &str, method: &str, params: &mut Value, prefixed: bool) {
    if prefixed && method == "notifications/resources/updated" {
        prefix_uri_field(target, params);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::cursor::decode;

    #[test]
    fn negotiate_echoes_known_legacy_versions() {
        for v in LEGACY_VERSIONS {
            assert_eq!(negotiate(Some(v)), *v);
        }
        assert_eq!(negotiate(Some(MODERN_VERSION)), "2025-11-25");
        assert_eq!(negotiate(Some("1999-01-01")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }

    #[test]
    fn merge_list_prefixes_orders_and_pages() {
        let a = json!({"tools":[{"name":"x"},{"name":"y"}],"nextCursor":"a2","_meta":{"m":1},"ttlMs":5});
        let b = json!({"tools":[{"name":"x"}],"cacheScope":"global","resultType":"complete"});
        let parts = || [("a", a.clone()), ("b", b.clone())];
        let merged = merge_list(Kind::Tool, parts(), true);
        assert_eq!(merged["tools"], json!([{"name":"a_x"},{"name":"a_y"},{"name":"b_x"}]));
        let next = merged["nextCursor"].as_str().unwrap();
        assert_eq!(decode("tools/list", next, &["a", "b"]).unwrap().pending, [("a".to_string(), "a2".to_string())]);
        assert_eq!(merged.as_object().unwrap().len(), 2, "upstream extras must be dropped: {merged}");

        let unprefixed = merge_list(Kind::Tool, parts(), false);
        assert_eq!(unprefixed["tools"], json!([{"name":"x"},{"name":"y"},{"name":"x"}]));
    }

    #[test]
    fn unprefixed_names_of_two_targets_are_dropped_from_lists() {
        let mut parts = vec![
            (0, json!({"tools":[{"name":"echo"},{"name":"add"},{"name":"echo"}]})),
            (1, json!({"tools":[{"name":"echo"},{"name":"now"}]})),
            (2, json!({"tools":"garbage"})),
        ];
        drop_clashes(Kind::Tool, &mut parts);
        // a name listed twice by one target is still that target's
        assert_eq!(parts[0].1, json!({"tools":[{"name":"add"}]}));
        assert_eq!(parts[1].1, json!({"tools":[{"name":"now"}]}));
        let mut res = vec![(0, json!({"resources":[{"uri":"a://x"}]})), (1, json!({"resources":[{"uri":"a://y"}]}))];
        drop_clashes(Kind::Resource, &mut res);
        assert_eq!(res[1].1["resources"][0]["uri"], "a://y", "different URIs do not clash");
        assert_eq!(res[0].1["resources"][0]["uri"], "a://x");
    }

    #[test]
    fn owners_find_every_target_serving_a_name() {
        let pages = [
            (0, json!({"tools":[{"name":"echo"},{"name":"add"}]})),
            (1, json!({"tools":[{"name":"echo"}]})),
            (2, json!({})),
        ];
        assert_eq!(owners(Kind::Tool, "add", &pages), [0]);
        assert_eq!(owners(Kind::Tool, "echo", &pages), [0, 1]);
        assert!(owners(Kind::Tool, "missing", &pages).is_empty());
        let templates = [(5, json!({"resourceTemplates":[{"uriTemplate":"test://item/{id}"}]}))];
        assert_eq!(owners(Kind::ResourceTemplate, "test://item/42", &templates), [5]);
        assert_eq!(owners(Kind::ResourceTemplate, "test://item/{id}", &templates), [5], "completion refs");
        assert!(owners(Kind::ResourceTemplate, "test://other/1", &templates).is_empty());
    }

    #[test]
    fn uri_templates_match_their_expansions() {
        assert!(template_matches("test://item/{id}", "test://item/7"));
        assert!(template_matches("file:///{dir}/{name}.txt", "file:///a/b.txt"));
        assert!(!template_matches("file:///{dir}/{name}.txt", "file:///a/b.md"));
        assert!(template_matches("{+path}", "anything"));
        assert!(template_matches("plain://x", "plain://x"));
        assert!(!template_matches("plain://x", "plain://xy"));
        assert!(!template_matches("broken://{id", "broken://1"));
        assert!(!template_matches("a://{x}/b/{y}", "a://1/c/2"));
    }

    #[test]
    fn merge_list_cursor_edge_cases() {
        let done = json!({"resources":[{"uri":"/rel","name":"r"}],"nextCursor":null});
        let empty = json!({"resources":[{"uri":"s://1","name":"s"}],"nextCursor":""});
        let merged = merge_list(Kind::Resource, [("a", done), ("b", empty)], true);
        assert_eq!(merged["resources"], json!([{"uri":"/rel","name":"r"},{"uri":"b+s://1","name":"s"}]));
        let next = merged["nextCursor"].as_str().unwrap();
        assert_eq!(decode("resources/list", next, &["a", "b"]).unwrap().pending, [("b".to_string(), String::new())]);

        let garbage = json!({"prompts":"nope"});
        let merged = merge_list(Kind::Prompt, [("a", garbage)], true);
        assert_eq!(merged, json!({"prompts":[]}));
    }

    fn init(caps: Value, instructions: Option<&str>) -> Value {
        let mut v =
            json!({"protocolVersion":"2025-03-26","capabilities":caps,"serverInfo":{"name":"up","version":"9"}});
        if let Some(i) = instructions {
            v["instructions"] = i.into();
        }
        v
    }

    #[test]
    fn merge_initialize_single_unprefixed_is_transparent() {
        let only = init(json!({"tools":{}}), Some("hi"));
        let merged = merge_initialize(&[Part { target: "a", result: &only }], false, "2025-06-18", "gw", "1");
        let mut want = only.clone();
        want["protocolVersion"] = "2025-06-18".into();
        assert_eq!(merged, want);

        let merged = merge_initialize(&[Part { target: "a", result: &only }], true, "2025-06-18", "gw", "1");
        assert_eq!(merged["serverInfo"], json!({"name":"gw","version":"1"}));
        assert_eq!(merged["capabilities"], json!({"tools":{"listChanged":true}}));
    }

    #[test]
    fn merge_initialize_multi() {
        let a = init(json!({"tools":{},"resources":{"subscribe":false},"logging":{}}), Some("Use a.\nCarefully."));
        let b = init(json!({"prompts":{"listChanged":false},"resources":{"subscribe":true},"completions":{}}), None);
        let c = init(json!({"tools":null}), Some("C here."));
        let parts =
            [Part { target: "a", result: &a }, Part { target: "b", result: &b }, Part { target: "c", result: &c }];
        let merged = merge_initialize(&parts, true, "2025-11-25", "ringgate", "0.1.0");
        assert_eq!(merged["protocolVersion"], "2025-11-25");
        assert_eq!(merged["serverInfo"], json!({"name":"ringgate","version":"0.1.0"}));
        assert_eq!(
            merged["capabilities"],
            json!({
                "tools":{"listChanged":true},
                "prompts":{"listChanged":true},
                "resources":{"listChanged":true,"subscribe":true},
                "logging":{},
                "completions":{},
            })
        );
        let instructions = merged["instructions"].as_str().unwrap();
        let (preamble, rest) = instructions.split_once("\n\n").unwrap();
        assert!(preamble.contains("ringgate") && preamble.contains("`target_`") && !preamble.contains('\n'));
        assert_eq!(rest, "[a]\nUse a.\nCarefully.\n\n[c]\nC here.");

        let none = [Part { target: "b", result: &b }, Part { target: "a", result: &init(json!({}), None) }];
        let merged = merge_initialize(&none, true, "2025-11-25", "ringgate", "0.1.0");
        assert!(merged.get("instructions").is_none());
        assert_eq!(merged["capabilities"]["resources"], json!({"listChanged":true,"subscribe":true}));
    }

    #[test]
    fn capabilities_of_nothing_is_empty() {
        let bare = json!({});
        assert_eq!(merge_capabilities(&[]), json!({}));
        assert_eq!(merge_capabilities(&[Part { target: "a", result: &bare }]), json!({}));
        let r = json!({"capabilities":{"resources":{}}});
        assert_eq!(merge_capabilities(&[Part { target: "a", result: &r }])["resources"]["subscribe"], false);
    }

    #[test]
    fn prefixes_read_results_and_notifications() {
        let mut read = json!({"contents":[{"uri":"test://x","text":"t"},{"uri":"rel","blob":""},{"text":"no uri"}]});
        let orig = read.clone();
        prefix_read_result("ev", &mut read, false);
        assert_eq!(read, orig);
        prefix_read_result("ev", &mut read, true);
        assert_eq!(
            read,
            json!({"contents":[{"uri":"ev+test://x","text":"t"},{"uri":"rel","blob":""},{"text":"no uri"}]})
        );

        let mut params = json!({"uri":"test://x"});
        prefix_notification("ev", "notifications/message", &mut params, true);
        prefix_notification("ev", "notifications/resources/updated", &mut params, false);
        assert_eq!(params["uri"], "test://x");
        prefix_notification("ev", "notifications/resources/updated", &mut params, true);
        assert_eq!(params["uri"], "ev+test://x");
    }
}
