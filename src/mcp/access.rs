//! What one caller may see and use: per-target tool filters and `mcpAuthorization` rules, applied alike to lists and calls.

use std::net::SocketAddr;

use serde_json::Value;

use super::names::Kind;
use super::plan::McpPlan;
use crate::auth::cel::{self, Decision, RuleSet};
use crate::auth::Identity;
use crate::http::codec::RequestHead;

/// The caller of one request and the rules that apply to it.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    /// `mcpAuthorization` of the route.
    pub rules: Option<&'a RuleSet>,
    /// Who is calling.
    pub id: &'a Identity,
    /// The request, for `request.*` (none for messages on a legacy SSE stream).
    pub head: Option<&'a RequestHead>,
    /// The client address, for `source.*`.
    pub peer: SocketAddr,
}

/// The caller of a legacy HTTP+SSE stream, kept with the stream: its messages arrive in other
/// requests (possibly on another shard) and are judged as the identity that opened the stream.
pub struct StreamCaller {
    /// `mcpAuthorization` of the route.
    pub rules: Option<RuleSet>,
    /// Who opened the stream.
    pub id: Identity,
    /// From where.
    pub peer: SocketAddr,
}

impl StreamCaller {
    /// The access of a message on the stream.
    pub fn access(&self) -> Access<'_> {
        Access { rules: self.rules.as_ref(), id: &self.id, head: None, peer: self.peer }
    }
}

impl Access<'_> {
    /// Whether the caller may see and use item `name` (as target `ti` knows it). A denied item
    /// behaves as if it did not exist, as in agentgateway.
    pub fn allows(&self, plan: &McpPlan, ti: usize, kind: Kind, name: &str) -> bool {
        let target = &plan.targets[ti];
        if kind == Kind::Tool && !target.tools.as_ref().is_none_or(|f| f.allows(name)) {
            return false;
        }
        let Some(rules) = self.rules else { return true };
        let kind = match kind {
            Kind::Tool => cel::McpKind::Tool,
            Kind::Prompt => cel::McpKind::Prompt,
            Kind::Resource | Kind::ResourceTemplate => cel::McpKind::Resource,
        };
        let mut cx = match self.head {
            Some(head) => crate::proxy::admission::rule_ctx(self.id, head, self.peer),
            None => cel::Ctx { source: Some(self.peer), ..crate::proxy::admission::identity_ctx(self.id) },
        };
        cx.mcp = Some(cel::Mcp { kind, name, target: &target.name });
        rules.check(&cx) == Decision::Allow
    }

    /// Drop the items of target `ti`'s list page the caller may not see.
    pub fn filter_page(&self, plan: &McpPlan, ti: usize, kind: Kind, page: &mut Value) {
        if self.rules.is_none() && (kind != Kind::Tool || plan.targets[ti].tools.is_none()) {
            return;
        }
        if let Some(items) = page.get_mut(kind.items_field()).and_then(Value::as_array_mut) {
            items.retain(|it| {
                it.get(kind.key_field()).and_then(Value::as_str).is_some_and(|n| self.allows(plan, ti, kind, n))
            });
        }
    }
}
