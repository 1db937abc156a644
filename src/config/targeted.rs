//! agentgateway's top-level `policies`: route policies attached from outside to gateways (binds and listeners), routes and named backends, merged into the inline ones.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{Bind, RoutePolicies};
use super::tls::BackendPolicies;

/// A policy attached to a target by name instead of written inline.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetedPolicy {
    /// The policy's name (a string, or agentgateway's `{name, namespace}`); used in errors.
    pub name: ResourceName,
    /// What the policy applies to.
    pub target: PolicyTarget,
    /// `route` (default): applied after routing; `gateway`: before routing in agentgateway. Here
    /// both apply to every route of the targeted gateway, so policies that would change the
    /// routing decision (header changes meant to select a route) do not.
    #[serde(default)]
    pub phase: PolicyPhase,
    /// The policies: the same fields as a route's inline `policies`.
    pub policy: RoutePolicies,
}

/// A resource name: plain, or namespaced as agentgateway's Kubernetes-shaped schema writes it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ResourceName {
    /// Just the name.
    Plain(String),
    /// `{name, namespace}`; a standalone file has one namespace, so it is not compared.
    Namespaced(NamespacedName),
}

/// `{name, namespace}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacedName {
    /// The name.
    pub name: String,
    /// The namespace (not compared: a standalone file has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ResourceName {
    /// The name without its namespace.
    pub fn name(&self) -> &str {
        match self {
            ResourceName::Plain(n) => n,
            ResourceName::Namespaced(n) => &n.name,
        }
    }
}

/// When a targeted policy runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicyPhase {
    /// After a route was chosen.
    #[default]
    Route,
    /// Before routing (agentgateway); here the same as `route` for every route of the gateway.
    Gateway,
}

/// What a targeted policy is attached to.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PolicyTarget {
    /// Every route of the binds (and listeners) that match.
    Gateway(GatewayTarget),
    /// The routes with this name.
    Route(NamespacedName),
    /// A top-level named backend (`backendTLS` only).
    Backend(BackendTarget),
    /// agentgateway's Kubernetes ListenerSet: a standalone file defines none, so this is an
    /// error (target a `gateway` and its `listenerName` instead).
    ListenerSet(ListenerSetTarget),
}

/// agentgateway's `listenerSet` target `{name, namespace, section}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerSetTarget {
    /// Name of the ListenerSet resource.
    pub name: String,
    /// Namespace of the ListenerSet resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One listener of the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
}

/// A gateway target: a named entry of `gateways`, or (for `binds`, which have no name) any bind,
/// narrowed by port and listener name.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayTarget {
    /// Only the entry of `gateways` with this name; `binds` have no name and always match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_name: Option<String>,
    /// agentgateway's gateway namespace (not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_namespace: Option<String>,
    /// Only the listener with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_name: Option<String>,
    /// Only the bind on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `{backend: {name, namespace}}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTarget {
    /// The top-level backend's name.
    pub backend: NamespacedName,
}

/// A targeted-policy error: the path under `policies[i]` and what is wrong.
pub type TargetError = (String, String);

/// Where a route is served: its bind (and the bind's gateway name, for `gateways` entries), and
/// its listener's name.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    /// The bind.
    pub bind: &'a Bind,
    /// The name of the `gateways` entry the bind comes from.
    pub gateway: Option<&'a str>,
    /// The listener's name.
    pub listener: Option<&'a str>,
}

/// The policies of the route named `name` served at `at`: its inline policies, then
/// route-targeted ones, then `layers` (the listener's and the gateway's own, for `gateways`),
/// then gateway-targeted ones. A policy kind set at a more specific level replaces the same kind
/// from a less specific one (as in agentgateway).
pub fn route_policies(
    targeted: &[TargetedPolicy],
    inline: &RoutePolicies,
    at: Place,
    name: Option<&str>,
    layers: &[RoutePolicies],
) -> Result<Option<RoutePolicies>, TargetError> {
    let for_route = targeted.iter().enumerate().filter(|(_, t)| match &t.target {
        PolicyTarget::Route(r) => name == Some(r.name.as_str()),
        _ => false,
    });
    let for_gateway = targeted.iter().enumerate().filter(|(_, t)| match &t.target {
        PolicyTarget::Gateway(g) => gateway_matches(g, at),
        _ => false,
    });
    let for_route: Vec<(usize, &RoutePolicies)> = for_route.map(|(i, t)| (i, &t.policy)).collect();
    let own = layers.iter().map(|l| (usize::MAX, l));
    let mut merged: Option<serde_json::Value> = None;
    for (i, policy) in for_route.into_iter().chain(own).chain(for_gateway.map(|(i, t)| (i, &t.policy))) {
        let base = match merged.take() {
            Some(m) => m,
            None => to_value(inline, i)?,
        };
        merged = Some(fill(base, to_value(policy, i)?));
    }
    merged
        .map(|m| serde_json::from_value(m).map_err(|e| ("policies".to_string(), format!("cannot merge policies: {e}"))))
        .transpose()
}

/// The policies of the named backend `name`: its own, then backend-targeted ones.
pub fn backend_policies(
    targeted: &[TargetedPolicy],
    own: Option<&BackendPolicies>,
    name: &str,
) -> Option<BackendPolicies> {
    let mut out = own.cloned();
    for t in targeted {
        if let (PolicyTarget::Backend(b), Some(tls)) = (&t.target, &t.policy.backend_tls) {
            if b.backend.name == name {
                out.get_or_insert_with(BackendPolicies::default).backend_tls.get_or_insert_with(|| tls.clone());
            }
        }
    }
    out
}

/// Checks that need the whole file: every target names something that exists, and a backend
/// target carries only what a backend takes.
pub fn check(
    targeted: &[TargetedPolicy],
    binds: &[(&Bind, Option<&str>)],
    route_names: &[&str],
    backend_names: &[&str],
) -> Result<(), TargetError> {
    for (i, t) in targeted.iter().enumerate() {
        let at = format!("policies[{i}].target");
        match &t.target {
            PolicyTarget::Route(r) if !route_names.contains(&r.name.as_str()) => {
                return Err((format!("{at}.route.name"), format!("no route is named `{}`", r.name)));
            }
            PolicyTarget::Gateway(g) => {
                if !binds.iter().any(|&(bind, gateway)| {
                    let place = |listener| Place { bind, gateway, listener };
                    bind.listeners.iter().any(|l| gateway_matches(g, place(l.name.as_deref())))
                        || (g.listener_name.is_none() && gateway_matches(g, place(None)))
                }) {
                    let msg = "matches no gateway (name), bind (port) and listener (name)";
                    return Err((format!("{at}.gateway"), msg.into()));
                }
            }
            PolicyTarget::Backend(b) => {
                if !backend_names.contains(&b.backend.name.as_str()) {
                    let msg = format!("no top-level backend is named `{}`", b.backend.name);
                    return Err((format!("{at}.backend.name"), msg));
                }
                let only_tls = RoutePolicies { backend_tls: t.policy.backend_tls.clone(), ..Default::default() };
                if to_value(&t.policy, i)? != to_value(&only_tls, i)? {
                    let msg = "a backend target takes only `backendTLS`; attach other policies to the routes";
                    return Err((format!("policies[{i}].policy"), msg.into()));
                }
            }
            PolicyTarget::ListenerSet(_) => {
                let msg = "ringgate has no listener sets (Kubernetes ListenerSet resources); target \
                           `gateway: {gatewayName, listenerName}` instead";
                return Err((format!("{at}.listenerSet"), msg.into()));
            }
            PolicyTarget::Route(_) => {}
        }
    }
    Ok(())
}

fn gateway_matches(g: &GatewayTarget, at: Place) -> bool {
    g.port.is_none_or(|p| p == at.bind.port)
        && g.listener_name.as_deref().is_none_or(|n| Some(n) == at.listener)
        && match (g.gateway_name.as_deref(), at.gateway) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
}

fn to_value(p: &RoutePolicies, i: usize) -> Result<serde_json::Value, TargetError> {
    serde_json::to_value(p).map_err(|e| {
        let at = if i == usize::MAX { "policies".to_string() } else { format!("policies[{i}].policy") };
        (at, e.to_string())
    })
}

/// `specific` with the policy kinds it lacks taken from `general`.
fn fill(mut specific: serde_json::Value, general: serde_json::Value) -> serde_json::Value {
    if let (Some(s), serde_json::Value::Object(g)) = (specific.as_object_mut(), general) {
        for (k, v) in g {
            s.entry(k).or_insert(v);
        }
    }
    specific
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(yaml: &str) -> Vec<TargetedPolicy> {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn bind(port: u16, listeners: &[&str]) -> Bind {
        let l = listeners.iter().map(|n| format!("{{name: {n}, routes: []}}")).collect::<Vec<_>>().join(", ");
        serde_saphyr::from_str(&format!("{{port: {port}, listeners: [{l}]}}")).unwrap()
    }

    #[test]
    fn more_specific_levels_win_per_policy_kind() {
        let t = policies(
            r#"
- name: gw
  target: { gateway: { port: 8080 } }
  policy:
    cors: { allowOrigins: ["https://gw.example"] }
    timeout: { requestTimeout: 9s }
- name: { name: r, namespace: default }
  target: { route: { name: api, namespace: default } }
  policy:
    cors: { allowOrigins: ["https://route.example"] }
"#,
        );
        let inline: RoutePolicies = serde_saphyr::from_str("timeout: { requestTimeout: 1s }").unwrap();
        let b = bind(8080, &["l"]);
        let at = |b| Place { bind: b, gateway: None, listener: Some("l") };
        let got = route_policies(&t, &inline, at(&b), Some("api"), &[]).unwrap().unwrap();
        let v = serde_json::to_value(&got).unwrap();
        assert_eq!(v["cors"]["allowOrigins"][0], "https://route.example");
        assert_eq!(v["timeout"]["requestTimeout"], "1s");
        // another route on the gateway gets the gateway's policies only
        let got = route_policies(&t, &RoutePolicies::default(), at(&b), Some("web"), &[]).unwrap().unwrap();
        let v = serde_json::to_value(&got).unwrap();
        assert_eq!(
            (v["cors"]["allowOrigins"][0].as_str(), v["timeout"]["requestTimeout"].as_str()),
            (Some("https://gw.example"), Some("9s"))
        );
        // nothing targets port 9090
        assert!(route_policies(&t, &inline, at(&bind(9090, &["l"])), Some("x"), &[]).unwrap().is_none());
    }

    #[test]
    fn targets_must_exist_and_backends_take_tls_only() {
        let b = bind(8080, &["main"]);
        let t = policies("- {name: p, target: {route: {name: nope}}, policy: {}}");
        let e = check(&t, &[(&b, None)], &["api"], &[]).unwrap_err();
        assert_eq!(e.0, "policies[0].target.route.name");
        let t = policies("- {name: p, target: {gateway: {port: 8080, listenerName: other}}, policy: {}}");
        assert!(check(&t, &[(&b, None)], &[], &[]).unwrap_err().1.contains("matches no gateway"));
        let t = policies("- {name: p, target: {gateway: {listenerName: main}}, policy: {}}");
        assert!(check(&t, &[(&b, None)], &[], &[]).is_ok());
        let t =
            policies("- {name: p, target: {backend: {backend: {name: be}}}, policy: {cors: {allowOrigins: ['*']}}}");
        assert!(check(&t, &[(&b, None)], &[], &["be"]).unwrap_err().1.contains("only `backendTLS`"));
        let t =
            policies("- {name: p, target: {backend: {backend: {name: be}}}, policy: {backendTLS: {insecure: true}}}");
        assert!(check(&t, &[(&b, None)], &[], &["be"]).is_ok());
        assert!(backend_policies(&t, None, "be").and_then(|p| p.backend_tls).is_some_and(|t| t.insecure));
        assert!(backend_policies(&t, None, "other").is_none());
    }
}
