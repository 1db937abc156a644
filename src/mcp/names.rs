//! Target-prefixed names and URIs: how federated tools, prompts and resources are named and routed back.

use serde_json::Value;

/// Kind of listable thing, with the JSON field names the protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
    ResourceTemplate,
}

impl Kind {
    /// The `*/list` method that pages through this kind.
    pub fn list_method(self) -> &'static str {
        match self {
            Kind::Tool => "tools/list",
            Kind::Prompt => "prompts/list",
            Kind::Resource => "resources/list",
            Kind::ResourceTemplate => "resources/templates/list",
        }
    }

    /// Inverse of [`Kind::list_method`].
    pub fn from_list_method(m: &str) -> Option<Kind> {
        [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::ResourceTemplate].into_iter().find(|k| k.list_method() == m)
    }

    /// The result field holding the items of a list page.
    pub fn items_field(self) -> &'static str {
        match self {
            Kind::Tool => "tools",
            Kind::Prompt => "prompts",
            Kind::Resource => "resources",
            Kind::ResourceTemplate => "resourceTemplates",
        }
    }

    /// The item field that identifies it, and so carries the target prefix.
    pub fn key_field(self) -> &'static str {
        match self {
            Kind::Tool | Kind::Prompt => "name",
            Kind::Resource => "uri",
            Kind::ResourceTemplate => "uriTemplate",
        }
    }
}

/// `"{target}_{name}"`.
pub fn prefix_name(target: &str, name: &str) -> String {
    format!("{target}_{name}")
}

/// RFC 3986 `scheme ":"`; only such URIs are prefixed, because `target+` then reads as part of the scheme
/// and clients that parse URIs still accept the result.
pub fn has_scheme(uri: &str) -> bool {
    let Some((scheme, _)) = uri.split_once(':') else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `"{target}+{uri}"` if `uri` has a scheme, else `uri` unchanged.
pub fn prefix_uri(target: &str, uri: &str) -> String {
    if has_scheme(uri) {
        format!("{target}+{uri}")
    } else {
        uri.to_owned()
    }
}

fn position<S: AsRef<str>>(target: &str, targets: &[S]) -> Option<usize> {
    targets.iter().position(|t| t.as_ref() == target)
}

/// Find the owner of a prefixed tool/prompt name among `targets` (by name); returns (index, original name).
/// Target names never contain `_`, so the first `_` is the separator whatever the original name holds.
pub fn split_name<'a, S: AsRef<str>>(name: &'a str, targets: &[S]) -> Option<(usize, &'a str)> {
    let (target, rest) = name.split_once('_')?;
    Some((position(target, targets)?, rest))
}

/// Same for prefixed URIs (resources/read, subscribe, unsubscribe, templates in completion refs).
/// Target names never contain `+`, so the first `+` is the separator; the remainder must have a scheme
/// because scheme-less URIs are never prefixed.
pub fn split_uri<'a, S: AsRef<str>>(uri: &'a str, targets: &[S]) -> Option<(usize, &'a str)> {
    let (target, rest) = uri.split_once('+')?;
    if !has_scheme(rest) {
        return None;
    }
    Some((position(target, targets)?, rest))
}

/// Rename the key field (prefix) of one item in place. No other field of a tool, prompt, resource or
/// template names something the gateway routes (`icons[].src` are fetched by the client, not read
/// through MCP), so only the key changes. Items without a string key are left alone.
pub fn prefix_item(kind: Kind, target: &str, item: &mut Value) {
    let Some(Value::String(key)) = item.get_mut(kind.key_field()) else { return };
    *key = match kind {
        Kind::Tool | Kind::Prompt => prefix_name(target, key),
        Kind::Resource | Kind::ResourceTemplate => prefix_uri(target, key),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TARGETS: [&str; 3] = ["a", "ab", "my-target"];

    #[test]
    fn kind_fields_round_trip() {
        for kind in [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::ResourceTemplate] {
            assert_eq!(Kind::from_list_method(kind.list_method()), Some(kind));
        }
        assert_eq!(Kind::from_list_method("tools/call"), None);
        assert_eq!(Kind::ResourceTemplate.items_field(), "resourceTemplates");
        assert_eq!(Kind::ResourceTemplate.key_field(), "uriTemplate");
    }

    #[test]
    fn split_name_picks_target_at_first_underscore() {
        assert_eq!(split_name("a_x", &TARGETS), Some((0, "x")));
        assert_eq!(split_name("ab_x", &TARGETS), Some((1, "x")));
        assert_eq!(split_name("a_b_c", &TARGETS), Some((0, "b_c")));
        assert_eq!(split_name("my-target_get_weather", &TARGETS), Some((2, "get_weather")));
        assert_eq!(split_name("abc_x", &TARGETS), None);
        assert_eq!(split_name("my_target_x", &TARGETS), None);
        assert_eq!(split_name("ab", &TARGETS), None);
        let owned: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
        assert_eq!(split_name(&prefix_name("ab", "a_b"), &owned), Some((1, "a_b")));
    }

    #[test]
    fn prefix_uri_only_with_scheme() {
        assert_eq!(prefix_uri("t", "test://x"), "t+test://x");
        assert_eq!(prefix_uri("t", "urn:isbn:1"), "t+urn:isbn:1");
        assert_eq!(prefix_uri("t", "git+ssh://h/r"), "t+git+ssh://h/r");
        for unchanged in ["/tmp/x", "x", "1abc:x", ":x", "a_b:x", "{+path}", ""] {
            assert_eq!(prefix_uri("t", unchanged), unchanged);
        }
    }

    #[test]
    fn split_uri_routes_prefixed_schemes_only() {
        let targets = ["everything", "a", "ab"];
        assert_eq!(split_uri("everything+test://x", &targets), Some((0, "test://x")));
        assert_eq!(split_uri("a+file:///x+y", &targets), Some((1, "file:///x+y")));
        assert_eq!(split_uri("ab+git+ssh://h", &targets), Some((2, "git+ssh://h")));
        assert_eq!(split_uri("a+a+b:x", &targets), Some((1, "a+b:x")));
        assert_eq!(split_uri("test://x", &targets), None);
        assert_eq!(split_uri("a+/tmp/x", &targets), None);
        assert_eq!(split_uri("a+x", &targets), None);
        assert_eq!(split_uri("b+test://x", &targets), None);
        assert_eq!(split_uri("file:///a+test://x", &targets), None);
    }

    #[test]
    fn prefix_item_rewrites_key_field() {
        let mut tool = json!({"name":"echo","description":"d","inputSchema":{"type":"object"}});
        prefix_item(Kind::Tool, "ab", &mut tool);
        assert_eq!(tool, json!({"name":"ab_echo","description":"d","inputSchema":{"type":"object"}}));
        let mut prompt = json!({"name":"p"});
        prefix_item(Kind::Prompt, "a", &mut prompt);
        assert_eq!(prompt["name"], "a_p");
        let mut res = json!({"uri":"test://static/1","name":"r"});
        prefix_item(Kind::Resource, "a", &mut res);
        assert_eq!(res, json!({"uri":"a+test://static/1","name":"r"}));
        let mut tmpl = json!({"uriTemplate":"test://dyn/{id}","name":"t"});
        prefix_item(Kind::ResourceTemplate, "a", &mut tmpl);
        assert_eq!(tmpl["uriTemplate"], "a+test://dyn/{id}");
        let mut odd = json!({"name": 3});
        prefix_item(Kind::Tool, "a", &mut odd);
        assert_eq!(odd, json!({"name": 3}));
    }
}
