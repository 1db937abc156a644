//! agentgateway's newer top-level form: named `gateways` (ports, with optional listeners and
//! gateway-level policies) and top-level `routes` attached to them by name. It is desugared here
//! into the same `binds → listeners → routes` model the older form is written in, so compiling
//! and serving are unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::{
    Backend, Bind, Config, Cors, Listener, ListenerProtocol, Route, RouteMatch, RoutePolicies, Rules, Transformations,
};
use super::security::{ApiKeyAuth, BasicAuth, ExtAuthz, JwtAuth};
use super::tls::ListenerTls;

/// The gateway routes attach to when they name none.
pub const DEFAULT_GATEWAY: &str = "default";

/// A named gateway: one port, served by an implicit listener (set `protocol`, `hostname`, `tls`
/// here) or by named `listeners` that split it by hostname.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// TCP port (0 picks a free one, another for each such gateway or bind; the bound port is
    /// logged and shown at `/listeners` on the admin server). Two gateways never share a port,
    /// even on different addresses.
    pub port: u16,
    /// Address to bind (default 0.0.0.0); every listener of the gateway shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    /// `HTTP` (default, or `HTTPS` when `tls` is set) or `HTTPS`, for the implicit listener.
    /// `TCP` and `TLS` gateways are refused: ringgate has no TCP routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<GatewayProtocol>,
    /// Host the implicit listener serves (exact or `*.` wildcard); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The certificate of the implicit listener (makes it `HTTPS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Named listeners splitting the port by hostname; routes attach to one as `gateway/listener`.
    /// With listeners, `protocol`, `hostname` and `tls` are set on each listener instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<GatewayListener>,
    /// Bearer JWT authentication for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_auth: Option<JwtAuth>,
    /// API key authentication for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// HTTP Basic authentication for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// External authorization for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_authz: Option<ExtAuthz>,
    /// CEL header transformations for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformations: Option<Transformations>,
    /// CORS for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// CEL authorization rules for every route of this gateway (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Rules>,
    /// agentgateway's external processing: not implemented by ringgate, so an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_proc: Option<Unsupported>,
    /// agentgateway's browser OIDC login: not implemented by ringgate, so an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Unsupported>,
}

/// A named listener of a gateway.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayListener {
    /// Name routes use in `gateways: [gateway/name]`; also used in logs and metrics.
    pub name: String,
    /// Host this listener serves (exact or `*.` wildcard); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `HTTP` (default, or `HTTPS` when `tls` is set) or `HTTPS`; every listener of a gateway
    /// speaks the same one. `TCP` and `TLS` are refused: ringgate has no TCP routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<GatewayProtocol>,
    /// The certificate of this listener (chosen by SNI among the gateway's listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Bearer JWT authentication for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_auth: Option<JwtAuth>,
    /// API key authentication for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// HTTP Basic authentication for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// External authorization for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_authz: Option<ExtAuthz>,
    /// CEL header transformations for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformations: Option<Transformations>,
    /// CORS for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// CEL authorization rules for every route of this listener (a route's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Rules>,
    /// agentgateway's external processing: not implemented by ringgate, so an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_proc: Option<Unsupported>,
    /// agentgateway's browser OIDC login: not implemented by ringgate, so an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Unsupported>,
}

/// Gateway-level policies as route policies (the kinds a gateway or listener may set).
macro_rules! gateway_policies {
    ($g:expr) => {
        RoutePolicies {
            jwt_auth: $g.jwt_auth.clone(),
            api_key: $g.api_key.clone(),
            basic_auth: $g.basic_auth.clone(),
            ext_authz: $g.ext_authz.clone(),
            transformations: $g.transformations.clone(),
            cors: $g.cors.clone(),
            authorization: $g.authorization.clone(),
            ..Default::default()
        }
    };
}

/// A top-level route: a route (as under `binds`) plus the gateways it attaches to.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRoute {
    // The route's fields are repeated rather than `#[serde(flatten)]`ed: serde cannot combine
    // flatten with deny_unknown_fields, and typos must stay errors. `route()` maps them back.
    /// Gateways this route is served on: `name` (every listener of it) or `name/listener`.
    /// Default: the gateway named `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Name used in logs, metrics and route-targeted `policies` (default `route<N>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hosts this route serves (exact or `*.` wildcard); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Any one of these must match (empty = match everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Traffic policies applied to requests on this route.
    #[serde(default)]
    pub policies: RoutePolicies,
    /// Where requests go; several are chosen by weight.
    #[serde(default)]
    pub backends: Vec<Backend>,
}

impl GatewayRoute {
    /// The route as it is written under `binds`.
    pub fn route(&self) -> Route {
        Route {
            name: self.name.clone(),
            hostnames: self.hostnames.clone(),
            matches: self.matches.clone(),
            policies: self.policies.clone(),
            backends: self.backends.clone(),
        }
    }
}

/// A gateway's or listener's protocol: agentgateway's names; only the HTTP ones are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayProtocol(pub ListenerProtocol);

impl<'de> Deserialize<'de> for GatewayProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "HTTP" => Ok(GatewayProtocol(ListenerProtocol::Http)),
            "HTTPS" => Ok(GatewayProtocol(ListenerProtocol::Https)),
            "TCP" | "TLS" | "HBONE" => Err(serde::de::Error::custom(format!(
                "`{s}` gateways are not supported: ringgate has no TCP routing (use `HTTP` or `HTTPS`)"
            ))),
            _ => Err(serde::de::Error::unknown_variant(&s, &["HTTP", "HTTPS"])),
        }
    }
}

impl Serialize for GatewayProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl JsonSchema for GatewayProtocol {
    fn schema_name() -> String {
        ListenerProtocol::schema_name()
    }
    fn json_schema(generator: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        ListenerProtocol::json_schema(generator)
    }
}

/// Declares a type no value deserializes into: any value is an error with the given message,
/// and the schema says `false`, so an editor flags the field too.
macro_rules! refused {
    ($(#[$doc:meta])* $name:ident, $why:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Err(serde::de::Error::custom($why))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_unit()
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> String {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
                schemars::schema::Schema::Bool(false)
            }
            fn is_referenceable() -> bool {
                false
            }
        }
    };
}

refused!(
    /// A field agentgateway has and ringgate does not implement: any value is an error naming it
    /// (by its path), so a config never silently loses a policy.
    Unsupported,
    "agentgateway has this field but ringgate does not implement it; remove it (README, Configuration)"
);

refused!(
    /// An entry of agentgateway's `tcpRoutes`: ringgate has no TCP routing, so any entry is an error.
    TcpRoute,
    "TCP routes are not supported: ringgate has no TCP routing (HTTP and HTTPS `routes` only)"
);

/// A listener of a bind to compile, with where its parts were written.
pub struct ListenerSource {
    /// Field path of the listener (errors in it are reported there).
    pub path: String,
    /// Per route of the listener, its field path.
    pub routes: Vec<String>,
    /// Listener-level, then gateway-level policies: filled into each route's after the
    /// route-targeted ones.
    pub layers: Vec<RoutePolicies>,
}

/// A bind to compile: written under `binds`, desugared from a gateway, or the `mcp` shorthand's.
pub struct BindSource<'a> {
    /// The bind.
    pub bind: Cow<'a, Bind>,
    /// Field path of the bind (`binds[0]`, `gateways.web`, `mcp`).
    pub path: String,
    /// The gateway's name (compared by gateway-targeted policies); `None` for `binds`.
    pub gateway: Option<&'a str>,
    /// Per listener of `bind`, where it and its routes were written.
    pub listeners: Vec<ListenerSource>,
}

/// A desugaring error: the field path and what is wrong.
pub type SourceError = (String, String);

/// Every bind of the file, in order: `binds`, then `gateways` (by name) with the top-level
/// `routes` attached, then the `mcp` shorthand's own bind when it is not attached to gateways.
/// `mcp_route` is the shorthand's route (built by the compiler).
pub fn sources<'a>(config: &'a Config, mcp_route: Option<Route>) -> Result<Vec<BindSource<'a>>, SourceError> {
    let mut out = Vec::with_capacity(config.binds.len() + config.gateways.len() + 1);
    for (bi, b) in config.binds.iter().enumerate() {
        let path = format!("binds[{bi}]");
        let listeners = b
            .listeners
            .iter()
            .enumerate()
            .map(|(li, l)| {
                let lp = format!("{path}.listeners[{li}]");
                let routes = (0..l.routes.len()).map(|ri| format!("{lp}.routes[{ri}]")).collect();
                ListenerSource { path: lp, routes, layers: Vec::new() }
            })
            .collect();
        out.push(BindSource { bind: Cow::Borrowed(b), path, gateway: None, listeners });
    }

    let first_gateway = out.len();
    for (name, g) in &config.gateways {
        out.push(gateway_bind(name, g)?);
    }
    let find = |target: &str, at: &str| -> Result<(usize, Option<usize>), SourceError> {
        let (gw, listener) = match target.split_once('/') {
            Some((g, l)) => (g, Some(l)),
            None => (target, None),
        };
        let (gi, g) = (config.gateways.iter().enumerate())
            .find_map(|(i, (k, g))| (k == gw).then_some((i, g)))
            .ok_or_else(|| (at.to_string(), format!("no gateway is named `{gw}`")))?;
        let li = match listener {
            None => None,
            Some(l) => Some(g.listeners.iter().position(|x| x.name == l).ok_or_else(|| {
                let msg = if g.listeners.is_empty() {
                    format!("gateway `{gw}` has no named listeners, so `{target}` names nothing; attach to `{gw}`")
                } else {
                    format!("gateway `{gw}` has no listener named `{l}`")
                };
                (at.to_string(), msg)
            })?),
        };
        Ok((first_gateway + gi, li))
    };
    let attach = |out: &mut Vec<BindSource<'a>>,
                  targets: Option<&Vec<String>>,
                  at: &str,
                  route: &Route,
                  route_path: &str|
     -> Result<(), SourceError> {
        let default = [DEFAULT_GATEWAY.to_string()];
        let (targets, explicit) = match targets {
            Some(t) => (t.as_slice(), true),
            None => (&default[..], false),
        };
        if explicit && targets.is_empty() {
            return Err((format!("{at}.gateways"), "names no gateway; leave it out to use `default`".into()));
        }
        // each listener serves a route once, even when named through its gateway and itself
        let mut done: Vec<(usize, usize)> = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            let tat = if explicit { format!("{at}.gateways[{ti}]") } else { at.to_string() };
            let (bi, li) = find(t, &tat).map_err(|(p, m)| {
                if explicit {
                    (p, m)
                } else {
                    (p, format!("{m}: without `gateways`, it attaches to the gateway `{DEFAULT_GATEWAY}`"))
                }
            })?;
            let Some(source) = out.get_mut(bi) else {
                continue;
            };
            let all: Vec<usize> = match li {
                Some(li) => vec![li],
                None => (0..source.listeners.len()).collect(),
            };
            for li in all {
                if done.contains(&(bi, li)) {
                    continue;
                }
                done.push((bi, li));
                if let Some(l) = source.bind.to_mut().listeners.get_mut(li) {
                    l.routes.push(route.clone());
                }
                if let Some(ls) = source.listeners.get_mut(li) {
                    ls.routes.push(route_path.to_string());
                }
            }
        }
        Ok(())
    };
    for (ri, r) in config.routes.iter().enumerate() {
        let at = format!("routes[{ri}]");
        attach(&mut out, r.gateways.as_ref(), &at, &r.route(), &at)?;
    }

    if let (Some(m), Some(route)) = (&config.mcp, mcp_route) {
        if m.port.is_some() && m.gateways.is_some() {
            return Err(("mcp.port".into(), "set `port` (a port of its own) or `gateways`, not both".into()));
        }
        if m.gateways.is_some() || (m.port.is_none() && !config.gateways.is_empty()) {
            attach(&mut out, m.gateways.as_ref(), "mcp", &route, "mcp")?;
        } else {
            let bind = Bind {
                port: m.port(),
                address: m.address.clone(),
                listeners: vec![Listener {
                    name: Some("mcp".into()),
                    hostname: None,
                    protocol: None,
                    tls: None,
                    routes: vec![route],
                }],
            };
            let listeners = vec![ListenerSource {
                path: "mcp.listeners[0]".into(),
                routes: vec!["mcp.listeners[0].routes[0]".into()],
                layers: vec![],
            }];
            out.push(BindSource { bind: Cow::Owned(bind), path: "mcp".into(), gateway: None, listeners });
        }
    }
    if let Some(m) = &config.mcp {
        if m.address.is_some() && (m.gateways.is_some() || (m.port.is_none() && !config.gateways.is_empty())) {
            let msg = "the MCP route is served on gateways, which bind their own `bindAddress`";
            return Err(("mcp.address".into(), msg.into()));
        }
    }
    Ok(out)
}

/// A gateway as a bind: its listeners (or the implicit one), without routes yet.
fn gateway_bind<'a>(name: &'a str, g: &'a Gateway) -> Result<BindSource<'a>, SourceError> {
    let path = format!("gateways.{name}");
    if name.is_empty() || name.contains('/') {
        return Err((path, "a gateway name must be non-empty and without `/` (routes name `gateway/listener`)".into()));
    }
    let protocol = |p: Option<GatewayProtocol>, tls: bool| match (p, tls) {
        (Some(p), _) => Some(p.0),
        (None, true) => Some(ListenerProtocol::Https),
        (None, false) => None,
    };
    let gateway_layer = gateway_policies!(g);
    let (listeners, sources) = if g.listeners.is_empty() {
        let l = Listener {
            name: None,
            hostname: g.hostname.clone(),
            protocol: protocol(g.protocol, g.tls.is_some()),
            tls: g.tls.clone(),
            routes: Vec::new(),
        };
        (vec![l], vec![ListenerSource { path: path.clone(), routes: Vec::new(), layers: vec![gateway_layer] }])
    } else {
        for (field, set) in
            [("protocol", g.protocol.is_some()), ("hostname", g.hostname.is_some()), ("tls", g.tls.is_some())]
        {
            if set {
                let msg = format!("a gateway with `listeners` sets `{field}` on each listener");
                return Err((format!("{path}.{field}"), msg));
            }
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut listeners = Vec::with_capacity(g.listeners.len());
        let mut sources = Vec::with_capacity(g.listeners.len());
        for (li, l) in g.listeners.iter().enumerate() {
            let lp = format!("{path}.listeners[{li}]");
            if let Some(first) = names.insert(&l.name, li) {
                let msg = format!("`{}` is also the name of listeners[{first}]", l.name);
                return Err((format!("{lp}.name"), msg));
            }
            if l.name.is_empty() || l.name.contains('/') {
                return Err((format!("{lp}.name"), "a listener name must be non-empty and without `/`".into()));
            }
            listeners.push(Listener {
                name: Some(l.name.clone()),
                hostname: l.hostname.clone(),
                protocol: protocol(l.protocol, l.tls.is_some()),
                tls: l.tls.clone(),
                routes: Vec::new(),
            });
            sources.push(ListenerSource {
                path: lp,
                routes: Vec::new(),
                layers: vec![gateway_policies!(l), gateway_layer.clone()],
            });
        }
        (listeners, sources)
    };
    let bind = Bind { port: g.port, address: g.bind_address.clone(), listeners };
    Ok(BindSource { bind: Cow::Owned(bind), path, gateway: Some(name), listeners: sources })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn err(yaml: &str) -> SourceError {
        match sources(&config(yaml), None) {
            Err(e) => e,
            Ok(_) => panic!("{yaml} should fail"),
        }
    }

    #[test]
    fn routes_attach_to_default_gateways_and_listeners() {
        let cfg = config(
            r#"
gateways:
  default: {port: 8080}
  web:
    port: 8443
    bindAddress: 127.0.0.1
    jwtAuth: {issuer: i, jwks: {file: /dev/null}}
    listeners:
    - {name: a, hostname: a.example.com}
    - {name: b, hostname: b.example.com, cors: {allowOrigins: ["*"]}}
routes:
- {name: plain, backends: [{host: "127.0.0.1:1"}]}
- {name: only-a, gateways: [web/a], backends: [{host: "127.0.0.1:1"}]}
- {name: both, gateways: [web, web/b, default], backends: [{host: "127.0.0.1:1"}]}
"#,
        );
        let s = sources(&cfg, None).unwrap();
        assert_eq!(s.len(), 2);
        let names = |b: &BindSource, li: usize| -> Vec<String> {
            b.bind.listeners[li].routes.iter().map(|r| r.name.clone().unwrap()).collect()
        };
        // gateways in name order: default, web
        assert_eq!((s[0].path.as_str(), s[0].gateway, s[0].bind.port), ("gateways.default", Some("default"), 8080));
        assert_eq!(names(&s[0], 0), ["plain", "both"]);
        assert_eq!(s[0].listeners[0].routes, ["routes[0]", "routes[2]"]);
        assert_eq!(s[1].bind.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(names(&s[1], 0), ["only-a", "both"]);
        assert_eq!(names(&s[1], 1), ["both"], "named twice, served once");
        assert_eq!(s[1].bind.listeners[1].hostname.as_deref(), Some("b.example.com"));
        assert_eq!(s[1].listeners[1].path, "gateways.web.listeners[1]");
        // listener b: its own cors, then the gateway's jwtAuth
        let layers = &s[1].listeners[1].layers;
        assert!(layers[0].cors.is_some() && layers[0].jwt_auth.is_none());
        assert!(layers[1].jwt_auth.is_some() && layers[1].cors.is_none());
    }

    #[test]
    fn tls_makes_https_and_listeners_own_their_settings() {
        let cfg = config("gateways:\n  s:\n    port: 1\n    tls: {cert: c, key: k}\n");
        let s = sources(&cfg, None).unwrap();
        assert_eq!(s[0].bind.listeners[0].protocol, Some(ListenerProtocol::Https));
        let e = err("gateways:\n  s:\n    port: 1\n    hostname: a.example\n    listeners: [{name: x}]\n");
        assert_eq!(e.0, "gateways.s.hostname");
        let e = err("gateways:\n  s:\n    port: 1\n    listeners: [{name: x}, {name: x}]\n");
        assert_eq!(e.0, "gateways.s.listeners[1].name");
    }

    #[test]
    fn unknown_attachments_name_the_field() {
        let e = err("gateways: {web: {port: 1}}\nroutes: [{backends: []}]\n");
        assert_eq!(e.0, "routes[0]");
        assert!(e.1.contains("no gateway is named `default`") && e.1.contains("without `gateways`"), "{}", e.1);
        let e = err("gateways: {web: {port: 1}}\nroutes: [{gateways: [web, nope], backends: []}]\n");
        assert_eq!((e.0.as_str(), e.1.as_str()), ("routes[0].gateways[1]", "no gateway is named `nope`"));
        let e = err("gateways: {web: {port: 1}}\nroutes: [{gateways: [web/x], backends: []}]\n");
        assert!(e.1.contains("no named listeners"), "{}", e.1);
        let e = err("gateways: {web: {port: 1, listeners: [{name: a}]}}\nroutes: [{gateways: [web/b]}]\n");
        assert_eq!(e.1, "gateway `web` has no listener named `b`");
        let e = err("gateways: {web: {port: 1}}\nroutes: [{gateways: []}]\n");
        assert_eq!(e.0, "routes[0].gateways");
    }
}

#[cfg(test)]
mod load_tests {
    use crate::config::load::{parse_str, ConfigError};

    fn parse_err(text: &str) -> (String, Option<usize>, String) {
        match parse_str(text, "t.yaml") {
            Err(ConfigError::Parse { path, line, message, .. }) => (path, line, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn what_ringgate_lacks_is_an_error_naming_the_field() {
        let (path, line, message) = parse_err("gateways:\n  t:\n    port: 1\n    protocol: TCP\n");
        assert_eq!((path.as_str(), line), ("gateways.t.protocol", Some(4)));
        assert!(message.contains("`TCP` gateways are not supported"), "{message}");
        let (path, line, message) = parse_err("gateways: {}\ntcpRoutes:\n- gateways: [tcp]\n  backends: []\n");
        assert_eq!((path.as_str(), line), ("tcpRoutes[0]", Some(3)));
        assert!(message.contains("TCP routes are not supported"), "{message}");
        assert!(parse_str("tcpRoutes: []\n", "t.yaml").is_ok(), "an empty list asks for nothing");
        let (path, line, message) = parse_err("gateways:\n  g:\n    port: 1\n    extProc: {}\n");
        assert_eq!((path.as_str(), line), ("gateways.g.extProc", Some(4)));
        assert!(message.contains("ringgate does not implement it"), "{message}");
        let (path, _, _) = parse_err("gateways:\n  g:\n    port: 1\n    listeners:\n    - name: a\n      oidc: {}\n");
        assert_eq!(path, "gateways.g.listeners[0].oidc");
        let (path, line, _) = parse_err("gateways: {}\nllm:\n  models: []\n");
        assert_eq!((path.as_str(), line), ("llm", Some(3)));
        let (path, _, message) = parse_err("routes:\n- gateways: [default]\n  ruleName: x\n");
        assert_eq!(path, "routes[0]");
        assert!(message.contains("unknown field `ruleName`"), "{message}");
    }
}
