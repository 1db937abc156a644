//! CEL authorization rules (`authorization`, `mcpAuthorization`): compiling, per-request variables, the decision.

// Expressions are parsed once at config load with the `cel` crate (cel-rust). Nothing is converted per
// request: the variables (`jwt`, `apiKey`, `basicAuth`, `mcp`, `request`, `source`) are resolved lazily
// from borrowed request data through a `VariableResolver`, so a rule that reads `jwt.sub` touches only
// that claim and a rule set that never names `request` never looks at the headers.
//
// Error semantics follow agentgateway (`Executor::eval_bool`): a rule whose evaluation fails (missing
// key, type mismatch) or yields a non-bool counts as false. So an erroring `allow` does not allow, an
// erroring `require` denies, and an erroring `deny` does not deny. The last is deliberate: in CEL a
// missing map key is an error, and `deny: request.headers["x"] == "1"` must not deny every request
// that lacks the header. Write `require` to fail closed.
//
// `::cel` (leading colons) names the crate: this module may itself be called `cel`.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use ::cel::common::ast::{EntryExpr, Expr, SourceInfo};
use ::cel::common::traits::{Container, Indexer, Sizer};
use ::cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelNull, CelString, CelUInt, Type, MAP_TYPE};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;
use ::cel::{Context, Env, ExecutionError, IdedExpr};
use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A root variable a rule can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `jwt`: the verified token's claims.
    Jwt,
    /// `apiKey`: the matched key's name (`apiKey.key`) and metadata fields.
    ApiKey,
    /// `basicAuth`: `basicAuth.username`.
    BasicAuth,
    /// `mcp`: `mcp.tool|prompt|resource.{name,target}`.
    Mcp,
    /// `request`: method, path, host, headers.
    Request,
    /// `source`: the peer's address and port.
    Source,
    /// `response`: `response.code`, known only where the answer is (access log fields and filter).
    Response,
}

impl Var {
    /// Every variable, in bit order.
    pub const ALL: [Var; 7] =
        [Var::Jwt, Var::ApiKey, Var::BasicAuth, Var::Mcp, Var::Request, Var::Source, Var::Response];

    /// The name rules use for it.
    pub fn name(self) -> &'static str {
        match self {
            Var::Jwt => "jwt",
            Var::ApiKey => "apiKey",
            Var::BasicAuth => "basicAuth",
            Var::Mcp => "mcp",
            Var::Request => "request",
            Var::Source => "source",
            Var::Response => "response",
        }
    }

    /// The variable called `name`, if rules can use it.
    pub fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Var`]s: which parts of the request context a program or rule set reads.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Vars(u8);

impl Vars {
    /// Whether `v` is in the set.
    pub fn contains(self, v: Var) -> bool {
        self.0 & v.bit() != 0
    }

    /// Both sets together.
    pub fn union(self, other: Vars) -> Vars {
        Vars(self.0 | other.0)
    }

    /// Whether no variable is read.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn insert(&mut self, v: Var) {
        self.0 |= v.bit();
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(Var::ALL.into_iter().filter(|v| self.contains(*v)).map(Var::name)).finish()
    }
}

/// Identifiers that name CEL types rather than variables (`type(x) == map`).
const TYPE_NAMES: [&str; 10] = ["bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type"];

thread_local! {
    // One environment per shard: its refcount is bumped on every evaluation and must stay core-local.
    static ENV: Arc<Env> = Arc::new(Env::stdlib());
}

fn env() -> Arc<Env> {
    ENV.with(Arc::clone)
}

/// A compiled CEL expression.
pub struct Program {
    source: String,
    program: ::cel::Program,
    vars: Vars,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program").field("source", &self.source).field("vars", &self.vars).finish()
    }
}

impl Program {
    /// Parses `src`. Errors say what is wrong and where (`line:column`): syntax errors, variables other
    /// than the six rules can read, and functions the standard library does not have.
    pub fn compile(src: &str) -> Result<Program, String> {
        let env = env();
        let program = env.compile(src).map_err(|e| match e.errors.first() {
            Some(first) => format!("syntax error at {}:{}: {}", first.pos.0, first.pos.1, strip_prefix(&first.msg)),
            None => "syntax error".to_string(),
        })?;
        let mut walk = Walk { info: program.source_info(), bound: Vec::new(), vars: Vars::default(), error: None };
        walk.expr(program.expression());
        if let Some(e) = walk.error {
            return Err(e);
        }
        let vars = walk.vars;
        for name in program.references().functions() {
            // Operators (`_==_`, `@in`, `!_`) are not callable names; everything else must be declared.
            if name.starts_with(['_', '@', '!']) {
                continue;
            }
            let mut probe = Context::with_env(Arc::clone(&env));
            if probe.add_function(name, || 0i64).is_ok() {
                return Err(format!("unknown function `{name}`"));
            }
        }
        Ok(Program { source: src.to_string(), program, vars })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `v`.
    pub fn uses(&self, v: Var) -> bool {
        self.vars.contains(v)
    }

    /// Every variable the expression reads.
    pub fn vars(&self) -> Vars {
        self.vars
    }

    /// Evaluates to a bool; `Err` says why it could not (a rule counts that as false).
    pub fn eval(&self, cx: &Ctx<'_>) -> Result<bool, String> {
        let mut c = Context::with_env(env());
        c.set_variable_resolver(cx);
        self.eval_in(&c)
    }

    /// Evaluates to text (a bucket key, a header value, a log field): a string as is, a number or
    /// bool printed; `None` on an error or another type.
    pub fn eval_string(&self, cx: &Ctx<'_>) -> Option<String> {
        let mut c = Context::with_env(env());
        c.set_variable_resolver(cx);
        let v = ::cel::Value::resolve_val(self.program.expression(), &c).ok()?;
        if let Some(s) = v.downcast_ref::<CelString>() {
            return Some(s.inner().to_string());
        }
        if let Some(i) = v.downcast_ref::<CelInt>() {
            return Some(i.inner().to_string());
        }
        if let Some(u) = v.downcast_ref::<CelUInt>() {
            return Some(u.inner().to_string());
        }
        v.downcast_ref::<CelBool>().map(|b| b.inner().to_string())
    }

    /// [`Program::eval`], with errors as false: the rule semantics.
    pub fn matches(&self, cx: &Ctx<'_>) -> bool {
        self.eval(cx).unwrap_or(false)
    }

    fn eval_in(&self, c: &Context<'_, '_>) -> Result<bool, String> {
        let v = ::cel::Value::resolve_val(self.program.expression(), c).map_err(|e| e.to_string())?;
        match v.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(format!("evaluated to a {}, not a bool", v.get_type().name())),
        }
    }
}

fn strip_prefix(msg: &str) -> &str {
    msg.strip_prefix("Syntax error: ").unwrap_or(msg)
}

/// Finds the free variables of an expression: those not bound by a comprehension (`exists(g, ...)`).
struct Walk<'e> {
    info: &'e SourceInfo,
    bound: Vec<&'e str>,
    vars: Vars,
    error: Option<String>,
}

impl<'e> Walk<'e> {
    fn expr(&mut self, e: &'e IdedExpr) {
        if self.error.is_some() {
            return;
        }
        match &e.expr {
            Expr::Ident(name) => self.ident(name, e.id),
            Expr::Select(s) => self.expr(&s.operand),
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.expr(t);
                }
                c.args.iter().for_each(|a| self.expr(a));
            }
            Expr::List(l) => l.elements.iter().for_each(|a| self.expr(a)),
            Expr::Map(m) => m.entries.iter().for_each(|en| match &en.expr {
                EntryExpr::MapEntry(me) => {
                    self.expr(&me.key);
                    self.expr(&me.value);
                }
                EntryExpr::StructField(sf) => self.expr(&sf.value),
            }),
            Expr::Struct(s) => s.entries.iter().for_each(|en| match &en.expr {
                EntryExpr::MapEntry(me) => {
                    self.expr(&me.key);
                    self.expr(&me.value);
                }
                EntryExpr::StructField(sf) => self.expr(&sf.value),
            }),
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range);
                self.expr(&c.accu_init);
                let depth = self.bound.len();
                self.bound.push(&c.iter_var);
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push(v2);
                }
                self.bound.push(&c.accu_var);
                self.expr(&c.loop_cond);
                self.expr(&c.loop_step);
                self.expr(&c.result);
                self.bound.truncate(depth);
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn ident(&mut self, name: &str, id: u64) {
        if self.bound.contains(&name) || TYPE_NAMES.contains(&name) {
            return;
        }
        match Var::from_name(name) {
            Some(v) => self.vars.insert(v),
            None => {
                let at = self.info.offset_for(id).map(|(start, _)| line_col(&self.info.source, start as usize));
                let at = at.map(|(l, c)| format!(" at {l}:{c}")).unwrap_or_default();
                self.error = Some(format!(
                    "unknown variable `{name}`{at} (expressions can read jwt, apiKey, basicAuth, mcp, request, source, response)"
                ));
            }
        }
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---------------------------------------------------------------------------------------------------
// Per-request context

/// Request headers as rules see them (`request.headers["x-foo"]`).
pub trait Headers: Sync {
    /// First value of the header called `name`, matched case-insensitively; `None` if absent or not UTF-8.
    fn get(&self, name: &str) -> Option<&str>;
    /// Calls `f` with each header's name and value, in order; names may be in any case.
    fn for_each(&self, f: &mut dyn FnMut(&str, &str));
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.iter().for_each(|(n, v)| f(n, v));
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.iter().for_each(|(n, v)| f(n, v));
    }
}

/// The request as rules see it (`request.*`).
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// `request.method`, e.g. `GET`.
    pub method: &'a str,
    /// `request.path`, without the query.
    pub path: &'a str,
    /// `request.host`: the authority, empty if the request had none.
    pub host: &'a str,
    /// `request.headers`.
    pub headers: &'a dyn Headers,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request").field("method", &self.method).field("path", &self.path).finish_non_exhaustive()
    }
}

/// Which kind of MCP item a call names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McpKind {
    /// `mcp.tool`.
    Tool,
    /// `mcp.prompt`.
    Prompt,
    /// `mcp.resource`.
    Resource,
}

impl McpKind {
    fn name(self) -> &'static str {
        match self {
            McpKind::Tool => "tool",
            McpKind::Prompt => "prompt",
            McpKind::Resource => "resource",
        }
    }
}

/// The MCP item a request is about (`mcp.tool.name`, `mcp.tool.target`, likewise prompt and resource).
#[derive(Clone, Copy, Debug)]
pub struct Mcp<'a> {
    /// Which of `mcp.tool`, `mcp.prompt`, `mcp.resource` is set; the other two are absent.
    pub kind: McpKind,
    /// The item's name as the target knows it.
    pub name: &'a str,
    /// The target (backend) that serves it.
    pub target: &'a str,
}

/// The matched API key (`apiKey.key` and its metadata fields, `apiKey.team`).
#[derive(Clone, Copy, Debug)]
pub struct ApiKey<'a> {
    /// `apiKey.key`: the key's name, never the secret.
    pub key: &'a str,
    /// The configured metadata; a `key` field here is shadowed by the name.
    pub metadata: &'a Map<String, Value>,
}

/// Everything a rule can read, borrowed from the request. Absent parts read as empty maps, so
/// `has(jwt.sub)` is false without a token and `jwt.sub == "x"` is an error (hence false).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx<'a> {
    /// `jwt`: verified claims.
    pub jwt: Option<&'a Map<String, Value>>,
    /// `apiKey`.
    pub api_key: Option<ApiKey<'a>>,
    /// `basicAuth.username`.
    pub basic_auth: Option<&'a str>,
    /// `mcp`.
    pub mcp: Option<Mcp<'a>>,
    /// `request`.
    pub request: Option<Request<'a>>,
    /// `source.address` (string) and `source.port` (int).
    pub source: Option<SocketAddr>,
    /// `response.code`: the status sent.
    pub response: Option<u16>,
}

impl<'a> Ctx<'a> {
    fn root(&self, name: &str) -> Option<Node<'a>> {
        let n = match Var::from_name(name)? {
            Var::Jwt => self.jwt.map(Node::Json),
            Var::ApiKey => self.api_key.map(Node::ApiKey),
            Var::BasicAuth => self.basic_auth.map(Node::BasicAuth),
            Var::Mcp => self.mcp.map(Node::Mcp),
            Var::Request => self.request.map(Node::Request),
            Var::Source => self.source.map(Node::Source),
            Var::Response => self.response.map(Node::Response),
        };
        Some(n.unwrap_or(Node::Empty))
    }
}

impl VariableResolver for Ctx<'_> {
    // The interpreter asks for the whole dotted name first (`mcp.tool.name`), then shorter prefixes.
    // Answering the long form directly skips building the intermediate objects.
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let mut parts = variable.split('.');
        let mut node = self.root(parts.next()?)?;
        let mut leaf: Option<Box<dyn Val + 'b>> = None;
        for part in parts {
            if leaf.is_some() {
                return None;
            }
            match node.field(part)? {
                Field::Node(n) => node = n,
                Field::Leaf(v) => leaf = Some(v),
            }
        }
        Some(CowVal::Owned(leaf.unwrap_or_else(|| Box::new(node))))
    }
}

/// A map-typed value read lazily from the request: fields are looked up on access, never copied in bulk.
#[derive(Clone, Copy)]
enum Node<'a> {
    Empty,
    Json(&'a Map<String, Value>),
    ApiKey(ApiKey<'a>),
    BasicAuth(&'a str),
    Mcp(Mcp<'a>),
    McpItem(Mcp<'a>),
    Request(Request<'a>),
    Headers(&'a dyn Headers),
    Source(SocketAddr),
    Response(u16),
}

enum Field<'a> {
    Node(Node<'a>),
    Leaf(Box<dyn Val + 'a>),
}

fn leaf<'a, V: Val + 'a>(v: V) -> Option<Field<'a>> {
    Some(Field::Leaf(Box::new(v)))
}

fn json_field(v: &Value) -> Field<'_> {
    match v {
        Value::Object(m) => Field::Node(Node::Json(m)),
        other => Field::Leaf(json_leaf(other)),
    }
}

fn json_leaf(v: &Value) -> Box<dyn Val + '_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(a) => Box::new(CelList::from(a.iter().map(json_leaf).collect::<Vec<_>>())),
        Value::Object(m) => Box::new(Node::Json(m)),
    }
}

impl<'a> Node<'a> {
    fn field(&self, key: &str) -> Option<Field<'a>> {
        match *self {
            Node::Empty => None,
            Node::Json(m) => m.get(key).map(json_field),
            Node::ApiKey(k) if key == "key" => leaf(CelString::from(k.key)),
            Node::ApiKey(k) => k.metadata.get(key).map(json_field),
            Node::BasicAuth(u) => (key == "username").then(|| Field::Leaf(Box::new(CelString::from(u)))),
            Node::Mcp(m) => (key == m.kind.name()).then_some(Field::Node(Node::McpItem(m))),
            Node::McpItem(m) => match key {
                "name" => leaf(CelString::from(m.name)),
                "target" => leaf(CelString::from(m.target)),
                _ => None,
            },
            Node::Request(r) => match key {
                "method" => leaf(CelString::from(r.method)),
                "path" => leaf(CelString::from(r.path)),
                "host" => leaf(CelString::from(r.host)),
                "headers" => Some(Field::Node(Node::Headers(r.headers))),
                _ => None,
            },
            Node::Headers(h) => h.get(key).map(|v| Field::Leaf(Box::new(CelString::from(v)))),
            Node::Source(a) => match key {
                "address" => leaf(CelString::from(a.ip().to_string())),
                "port" => leaf(CelInt::from(i64::from(a.port()))),
                _ => None,
            },
            Node::Response(code) => (key == "code").then(|| Field::Leaf(Box::new(CelInt::from(i64::from(code))))),
        }
    }

    fn keys(&self) -> Vec<Cow<'a, str>> {
        match *self {
            Node::Empty => vec![],
            Node::Json(m) => m.keys().map(|k| Cow::Borrowed(k.as_str())).collect(),
            Node::ApiKey(k) => std::iter::once(Cow::Borrowed("key"))
                .chain(k.metadata.keys().filter(|n| *n != "key").map(|n| Cow::Borrowed(n.as_str())))
                .collect(),
            Node::BasicAuth(_) => vec![Cow::Borrowed("username")],
            Node::Mcp(m) => vec![Cow::Borrowed(m.kind.name())],
            Node::McpItem(_) => vec![Cow::Borrowed("name"), Cow::Borrowed("target")],
            Node::Request(_) => ["method", "path", "host", "headers"].into_iter().map(Cow::Borrowed).collect(),
            Node::Headers(h) => {
                let mut names: Vec<Cow<'a, str>> = Vec::new();
                h.for_each(&mut |n, _| {
                    let n = n.to_ascii_lowercase();
                    if !names.iter().any(|x| *x == n) {
                        names.push(Cow::Owned(n));
                    }
                });
                names
            }
            Node::Source(_) => vec![Cow::Borrowed("address"), Cow::Borrowed("port")],
            Node::Response(_) => vec![Cow::Borrowed("code")],
        }
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Node::Empty => "empty",
            Node::Json(_) => "json",
            Node::ApiKey(_) => "apiKey",
            Node::BasicAuth(_) => "basicAuth",
            Node::Mcp(_) => "mcp",
            Node::McpItem(_) => "mcpItem",
            Node::Request(_) => "request",
            Node::Headers(_) => "headers",
            Node::Source(_) => "source",
            Node::Response(_) => "response",
        };
        write!(f, "Node({kind})")
    }
}

fn key_str(idx: &dyn Val) -> Result<&str, ExecutionError> {
    <&str>::try_from(idx).map_err(|_| ExecutionError::UnexpectedType {
        got: idx.get_type().name().to_owned(),
        want: "string".to_owned(),
    })
}

impl Val for Node<'_> {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }

    // Compared through the other side's map traits, so a lazy map equals a built-in one with the same
    // entries. (A built-in map on the left only compares equal to built-in maps.)
    fn equals(&self, other: &dyn Val) -> bool {
        let (Some(indexer), Some(sizer)) = (other.as_indexer(), other.as_sizer()) else {
            return false;
        };
        let keys = self.keys();
        if other.get_type().kind() != MAP_TYPE.kind() || *sizer.size().inner() != keys.len() as i64 {
            return false;
        }
        keys.iter().all(|k| {
            let key = CelString::from(k.as_ref());
            match (self.field(k), indexer.get(&key)) {
                (Some(Field::Leaf(mine)), Ok(theirs)) => mine.equals(theirs.as_ref()),
                (Some(Field::Node(mine)), Ok(theirs)) => mine.equals(theirs.as_ref()),
                _ => false,
            }
        })
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl<'a> Indexer for Node<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let key = key_str(idx)?;
        match self.field(key) {
            Some(Field::Leaf(v)) => Ok(CowVal::Owned(v)),
            Some(Field::Node(n)) => Ok(CowVal::Owned(Box::new(n))),
            None => Err(ExecutionError::no_such_key(key)),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl Container for Node<'_> {
    fn contains(&self, idx: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.field(key_str(idx)?).is_some())
    }
}

impl Sizer for Node<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(self.keys().len() as i64)
    }
}

// ---------------------------------------------------------------------------------------------------
// Config and rule sets

/// One authorization rule as configured: a bare expression (allow), or `{allow|deny|require: expr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RuleConfig {
    /// Allow when the expression is true (same as `{allow: expr}`).
    Bare(String),
    /// `{allow: expr}`, `{deny: expr}` or `{require: expr}`.
    Tagged(TaggedRule),
}

/// The object form of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TaggedRule {
    /// Allow the request when this expression is true.
    Allow(String),
    /// Deny the request when this expression is true.
    Deny(String),
    /// Deny the request unless this expression is true.
    Require(String),
}

impl<'de> Deserialize<'de> for RuleConfig {
    // Hand-written rather than `untagged`, whose only error is "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CEL expression, or an object with one of `allow`, `deny`, `require`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RuleConfig, E> {
                Ok(RuleConfig::Bare(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<RuleConfig, E> {
                Ok(RuleConfig::Bare(s))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RuleConfig, A::Error> {
                const KINDS: &[&str] = &["allow", "deny", "require"];
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("a rule object needs one of `allow`, `deny`, `require`"));
                };
                if !KINDS.contains(&kind.as_str()) {
                    return Err(de::Error::unknown_field(&kind, KINDS));
                }
                let expr: String = map.next_value()?;
                if let Some(other) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a rule object has exactly one of `allow`, `deny`, `require`; found `{kind}` and `{other}`"
                    )));
                }
                Ok(RuleConfig::Tagged(match kind.as_str() {
                    "allow" => TaggedRule::Allow(expr),
                    "deny" => TaggedRule::Deny(expr),
                    _ => TaggedRule::Require(expr),
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a rule does when its expression is true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// Allow (bare string or `allow:`).
    Allow,
    /// Deny.
    Deny,
    /// Required to be true.
    Require,
}

impl RuleConfig {
    /// The rule's kind and expression.
    pub fn parts(&self) -> (RuleKind, &str) {
        match self {
            RuleConfig::Bare(e) | RuleConfig::Tagged(TaggedRule::Allow(e)) => (RuleKind::Allow, e),
            RuleConfig::Tagged(TaggedRule::Deny(e)) => (RuleKind::Deny, e),
            RuleConfig::Tagged(TaggedRule::Require(e)) => (RuleKind::Require, e),
        }
    }
}

/// The `{rules: [...]}` object of `authorization` and `mcpAuthorization`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesConfig {
    /// CEL rules; a bare string allows when true.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// The outcome of [`RuleSet::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request is refused. `rule` is the index of the deny rule that matched or the require rule that
    /// did not; `None` when allow rules exist and none matched.
    Deny {
        /// Index into the configured list (for merged sets, into the concatenation).
        rule: Option<usize>,
    },
}

#[derive(Clone)]
struct Rule {
    index: usize,
    program: Arc<Program>,
}

/// Compiled rules, split by kind, each remembering its index in the configured list.
#[derive(Clone, Default)]
pub struct RuleSet {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    require: Vec<Rule>,
    len: usize,
    vars: Vars,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("allow", &self.allow.len())
            .field("deny", &self.deny.len())
            .field("require", &self.require.len())
            .field("vars", &self.vars)
            .finish()
    }
}

impl RuleSet {
    /// Compiles every rule; the error names the first failing rule's index (`rules[2]: ...`).
    pub fn compile(rules: &[RuleConfig]) -> Result<RuleSet, String> {
        let mut set = RuleSet::default();
        for (index, r) in rules.iter().enumerate() {
            let (kind, src) = r.parts();
            let program = Program::compile(src).map_err(|e| format!("rules[{index}]: {e}"))?;
            set.vars = set.vars.union(program.vars());
            let rule = Rule { index, program: Arc::new(program) };
            match kind {
                RuleKind::Allow => set.allow.push(rule),
                RuleKind::Deny => set.deny.push(rule),
                RuleKind::Require => set.require.push(rule),
            }
        }
        set.len = rules.len();
        Ok(set)
    }

    /// Both sets applied together, as agentgateway merges policy levels: any deny denies, every require
    /// must hold, and allows are OR'd. Rule indices of `other` follow those of `self`.
    pub fn merge(&self, other: &RuleSet) -> RuleSet {
        let shift = |rs: &[Rule]| -> Vec<Rule> {
            rs.iter().map(|r| Rule { index: r.index + self.len, program: Arc::clone(&r.program) }).collect()
        };
        let mut out = self.clone();
        out.allow.extend(shift(&other.allow));
        out.deny.extend(shift(&other.deny));
        out.require.extend(shift(&other.require));
        out.len += other.len;
        out.vars = self.vars.union(other.vars);
        out
    }

    /// Whether there are no rules (everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every variable some rule reads: build only these parts of [`Ctx`].
    pub fn vars(&self) -> Vars {
        self.vars
    }

    /// The decision for one request. Denies are tried first, then requires, then allows.
    pub fn check(&self, cx: &Ctx<'_>) -> Decision {
        if self.len == 0 {
            return Decision::Allow;
        }
        let mut c = Context::with_env(env());
        c.set_variable_resolver(cx);
        let hit = |r: &Rule| r.program.eval_in(&c).unwrap_or(false);
        if let Some(r) = self.deny.iter().find(|r| hit(r)) {
            return Decision::Deny { rule: Some(r.index) };
        }
        if let Some(r) = self.require.iter().find(|r| !hit(r)) {
            return Decision::Deny { rule: Some(r.index) };
        }
        if self.allow.is_empty() || self.allow.iter().any(hit) {
            Decision::Allow
        } else {
            Decision::Deny { rule: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        match json!({
            "sub": "alice",
            "groups": ["admin", "dev"],
            "scope": "read write",
            "exp": 1_900_000_000,
            "org": {"name": "acme", "tier": {"level": 2}},
            "orgs": [{"id": "a"}, {"id": "b"}],
            "https://example.com/roles": ["ops"]
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    const HEADERS: [(&str, &str); 3] = [("Host", "api.example.com"), ("X-Foo", "bar"), ("x-foo", "second")];

    fn with_all<R>(f: impl FnOnce(&Ctx<'_>) -> R) -> R {
        let c = claims();
        let meta = match json!({"team": "blue", "key": "shadowed"}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let cx = Ctx {
            jwt: Some(&c),
            api_key: Some(ApiKey { key: "ci-bot", metadata: &meta }),
            basic_auth: Some("bob"),
            mcp: Some(Mcp { kind: McpKind::Tool, name: "echo", target: "everything" }),
            request: Some(Request { method: "POST", path: "/mcp", host: "api.example.com", headers: &HEADERS }),
            source: Some("10.1.2.3:4567".parse().unwrap()),
            response: Some(503),
        };
        f(&cx)
    }

    fn eval(src: &str) -> Result<bool, String> {
        let p = Program::compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        with_all(|cx| p.eval(cx))
    }

    fn t(src: &str) {
        assert_eq!(eval(src), Ok(true), "{src}");
    }

    fn rules(v: Value) -> RuleSet {
        let cfg: Vec<RuleConfig> = serde_json::from_value(v).unwrap();
        RuleSet::compile(&cfg).unwrap()
    }

    fn deny(rule: Option<usize>) -> Decision {
        Decision::Deny { rule }
    }

    #[test]
    fn nested_claims() {
        t(r#"jwt.sub == "alice""#);
        t(r#""admin" in jwt.groups"#);
        t(r#"!("root" in jwt.groups)"#);
        t(r#"jwt.scope.contains("write")"#);
        t("has(jwt.sub) && !has(jwt.tenant)");
        t(r#"jwt.org.name == "acme" && jwt.org.tier.level == 2"#);
        t(r#"has(jwt.org.tier) && !has(jwt.org.owner)"#);
        t(r#"jwt.orgs.exists(o, o.id == "b") && !jwt.orgs.all(o, o.id == "a")"#);
        t(r#"jwt["https://example.com/roles"][0] == "ops""#);
        t("jwt.exp > 1700000000 && size(jwt.groups) == 2");
        t(r#"jwt.groups.exists(g, g.startsWith("ad")) && jwt.sub.matches("^al")"#);
        t(r#"type(jwt) == map && "sub" in jwt && size(jwt) == 7"#);
        t(r#"jwt.org == {"name": "acme", "tier": {"level": 2}}"#);
        t(r#"jwt.org != {"name": "acme"}"#);
    }

    #[test]
    fn request_mcp_and_identity_variables() {
        t(r#"request.method == "POST" && request.path.startsWith("/mcp") && request.host == "api.example.com""#);
        t(r#"request.headers["x-foo"] == "bar" && request.headers["X-FOO"] == "bar""#);
        t(r#""x-foo" in request.headers && !("x-bar" in request.headers) && has(request.headers.host)"#);
        t("size(request.headers) == 2");
        t(r#"mcp.tool.name == "echo" && mcp.tool.target == "everything""#);
        t("has(mcp.tool) && !has(mcp.prompt) && !has(mcp.resource)");
        t(r#"source.address == "10.1.2.3" && source.port == 4567"#);
        t("response.code >= 500 && response.code == 503");
        t(r#"basicAuth.username == "bob""#);
        t(r#"apiKey.key == "ci-bot" && apiKey.team == "blue""#);
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        assert!(eval(r#"jwt.tenant == "x""#).unwrap_err().contains("tenant"));
        assert!(eval(r#"request.headers["x-missing"] == "1""#).is_err());
        assert!(eval(r#"mcp.prompt.name == "x""#).is_err());
        assert!(eval("jwt.groups[5] == 1").is_err());
        assert!(eval("jwt.sub + 1 == 2").is_err());
        assert!(eval("jwt.sub.size() / 0 == 1").is_err());
        assert_eq!(eval("jwt.sub").unwrap_err(), "evaluated to a string, not a bool");
        // Comparing unlike types is false in CEL, not an error.
        assert_eq!(eval("jwt.sub == 1"), Ok(false));
    }

    #[test]
    fn absent_parts_read_as_empty() {
        let cx = Ctx::default();
        let p = |s: &str| Program::compile(s).unwrap().eval(&cx);
        assert_eq!(p("has(jwt.sub)"), Ok(false));
        assert_eq!(p("!has(jwt.sub) && !has(mcp.tool) && size(request) == 0"), Ok(true));
        assert!(p(r#"jwt.sub == "alice""#).is_err());
        assert!(p(r#"request.headers["x"] == "1""#).is_err());
        assert!(!Program::compile(r#"jwt.sub == "alice""#).unwrap().matches(&cx));
    }

    #[test]
    fn rule_kinds() {
        with_all(|cx| {
            assert_eq!(rules(json!([r#"jwt.sub == "alice""#])).check(cx), Decision::Allow);
            assert_eq!(rules(json!([r#"jwt.sub == "mallory""#])).check(cx), deny(None));
            assert_eq!(rules(json!([{"allow": r#"jwt.sub == "alice""#}])).check(cx), Decision::Allow);
            assert_eq!(rules(json!([{"deny": r#"jwt.sub == "alice""#}])).check(cx), deny(Some(0)));
            assert_eq!(rules(json!([{"deny": r#"jwt.sub == "bob""#}])).check(cx), Decision::Allow);
            assert_eq!(rules(json!([{"require": r#"jwt.sub == "alice""#}])).check(cx), Decision::Allow);
            assert_eq!(rules(json!([{"require": r#"jwt.sub == "bob""#}])).check(cx), deny(Some(0)));
        });
    }

    #[test]
    fn decision_merges_kinds() {
        with_all(|cx| {
            assert_eq!(rules(json!([])).check(cx), Decision::Allow);
            // Deny wins over a matching allow.
            let set = rules(json!(["true", {"deny": r#"mcp.tool.name == "echo""#}]));
            assert_eq!(set.check(cx), deny(Some(1)));
            // A failing require denies even when an allow matches.
            let set = rules(json!(["true", {"require": "false"}, {"require": "true"}]));
            assert_eq!(set.check(cx), deny(Some(1)));
            // Any one allow is enough.
            let set = rules(json!(["false", r#""admin" in jwt.groups"#, {"require": "has(jwt.sub)"}]));
            assert_eq!(set.check(cx), Decision::Allow);
            // Only denies and requires: allowed unless one fires.
            let set = rules(json!([{"deny": "false"}, {"require": "true"}]));
            assert_eq!(set.check(cx), Decision::Allow);
        });
    }

    #[test]
    fn erroring_rules_count_as_false() {
        with_all(|cx| {
            let missing = r#"jwt.tenant == "t1""#;
            assert_eq!(rules(json!([missing])).check(cx), deny(None));
            assert_eq!(rules(json!([{"deny": missing}])).check(cx), Decision::Allow);
            assert_eq!(rules(json!([{"require": missing}])).check(cx), deny(Some(0)));
            assert_eq!(rules(json!([{"require": "jwt.sub"}])).check(cx), deny(Some(0)));
        });
    }

    #[test]
    fn merged_sets_compose() {
        let route = rules(json!([{"deny": r#"mcp.tool.name == "rm""#}]));
        let backend = rules(json!([r#"jwt.sub == "alice""#, {"deny": r#"mcp.tool.name == "echo""#}]));
        let both = route.merge(&backend);
        assert_eq!(both.vars(), route.vars().union(backend.vars()));
        with_all(|cx| {
            assert_eq!(route.check(cx), Decision::Allow);
            assert_eq!(both.check(cx), deny(Some(2)), "the backend deny keeps its place after the route rule");
            let allow_elsewhere = rules(json!(["false"])).merge(&rules(json!(["true"])));
            assert_eq!(allow_elsewhere.check(cx), Decision::Allow);
        });
    }

    #[test]
    fn syntax_errors_name_rule_and_position() {
        let cfg: Vec<RuleConfig> = serde_json::from_value(json!(["true", r#"jwt.sub == "alice" &&"#])).unwrap();
        let e = RuleSet::compile(&cfg).unwrap_err();
        assert!(e.starts_with("rules[1]: syntax error at 1:22: "), "{e}");
        assert!(Program::compile("'unterminated").unwrap_err().starts_with("syntax error at 1:1"));
    }

    #[test]
    fn unknown_names_are_rejected_at_compile_time() {
        let e = Program::compile(r#"jwt.sub == alice"#).unwrap_err();
        assert!(e.starts_with("unknown variable `alice` at 1:12"), "{e}");
        let e = Program::compile("llm.model == 'x'").unwrap_err();
        assert!(e.contains("`llm`"), "{e}");
        let e = Program::compile("jwt.sub.startWith('a')").unwrap_err();
        assert_eq!(e, "unknown function `startWith`");
        assert!(Program::compile("jwt.groups.exists(g, g == 'a') && [1].all(x, x > 0)").is_ok());
        assert!(Program::compile("int(jwt.exp) > 0 && string(1) == '1' && size('ab') == 2").is_ok());
    }

    #[test]
    fn variable_use_detection() {
        let p = Program::compile(r#"jwt.groups.exists(g, g == request.headers["x-group"])"#).unwrap();
        assert!(p.uses(Var::Jwt) && p.uses(Var::Request));
        assert!(!p.uses(Var::Mcp) && !p.uses(Var::Source) && !p.uses(Var::ApiKey) && !p.uses(Var::BasicAuth));
        assert!(Program::compile("1 == 1").unwrap().vars().is_empty());
        // A comprehension variable that shadows nothing is not a root variable.
        assert_eq!(format!("{:?}", Program::compile("[1].exists(mcp, mcp == 1)").unwrap().vars()), "{}");
        let set = rules(json!(["has(source.address)", {"deny": "apiKey.team == 'red'"}, {"require": "has(mcp.tool)"}]));
        let v = set.vars();
        assert!(v.contains(Var::Source) && v.contains(Var::ApiKey) && v.contains(Var::Mcp));
        assert!(!v.contains(Var::Jwt) && !v.contains(Var::Request));
    }

    #[test]
    fn config_shapes_and_errors() {
        let cfg: RulesConfig = serde_json::from_value(json!({"rules": [
            "true", {"allow": "a"}, {"deny": "b"}, {"require": "c"}
        ]}))
        .unwrap();
        let kinds: Vec<_> = cfg.rules.iter().map(|r| r.parts()).collect();
        assert_eq!(
            kinds,
            vec![(RuleKind::Allow, "true"), (RuleKind::Allow, "a"), (RuleKind::Deny, "b"), (RuleKind::Require, "c")]
        );
        let err = |v: Value| serde_json::from_value::<RuleConfig>(v).unwrap_err().to_string();
        let e = err(json!({"permit": "true"}));
        assert!(e.contains("unknown field `permit`, expected one of `allow`, `deny`, `require`"), "{e}");
        let e = err(json!({"allow": "a", "deny": "b"}));
        assert!(e.contains("exactly one of `allow`, `deny`, `require`; found `allow` and `deny`"), "{e}");
        assert!(err(json!({})).contains("needs one of `allow`, `deny`, `require`"));
        let e = err(json!(5));
        assert!(e.contains("a CEL expression, or an object with one of `allow`, `deny`, `require`"), "{e}");
        assert!(serde_json::from_value::<RuleConfig>(json!({"allow": "a", "deny": "b"})).is_err());
        assert!(serde_json::from_value::<RuleConfig>(json!({"allow": 1})).is_err());
        assert!(serde_json::from_value::<RulesConfig>(json!({"rules": [], "mode": "x"})).is_err());
        // Serialization round-trips the agentgateway shape.
        assert_eq!(serde_json::to_value(&cfg).unwrap()["rules"][2], json!({"deny": "b"}));
        let schema = serde_json::to_string(&schemars::schema_for!(RulesConfig)).unwrap();
        assert!(schema.contains("require"));
    }

    #[test]
    fn shareable_across_shards() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RuleSet>();
        send_sync::<Program>();
    }
}
