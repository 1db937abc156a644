//! Talking to targets on behalf of one client request: start a request on a target of any kind, read what it sends back, and set up upstream sessions.

use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use super::demo;
use super::http_client::{self, HttpError, Post, Reply};
use super::jsonrpc::{self, Answer, Message, RpcError, INTERNAL_ERROR};
use super::merge;
use super::plan::{HttpTargetPlan, McpPlan, TargetKind};
use super::session::{Pooled, Upstream};
use super::sse_client::{self, SseCall};
use super::stdio::StdioCall;
use crate::proxy::shard::ShardCtx;

/// Which upstream session a request to an HTTP target uses.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    /// The client session's own upstream session: ids pass unchanged (so cancellation works).
    Own(&'a Upstream),
    /// A session this shard shares among stateless requests: ids are the gateway's own.
    Pooled,
}

/// Everything needed to reach targets for one client request.
pub struct Relay<'a> {
    /// The shard (tasks that outlive the request, like an upstream stream's reader, hold it).
    pub ctx: &'a Rc<ShardCtx>,
    /// The backend.
    pub plan: &'a McpPlan,
    /// Idle limit while waiting on a target.
    pub idle: Duration,
}

/// A request in flight on one target.
pub enum InFlight {
    /// Answered already (demo target, or a local error).
    Ready(Option<Message>),
    /// Streamable HTTP answer.
    Http(Box<Reply>),
    /// Stdio.
    Stdio(StdioCall),
    /// Legacy HTTP+SSE (answers come on the target's stream).
    Sse(SseCall),
}

impl InFlight {
    /// The next message the target sends about this request; `None` when it is done.
    pub async fn next(&mut self, r: &Relay<'_>) -> Result<Option<Message>, RpcError> {
        match self {
            InFlight::Ready(m) => Ok(m.take()),
            InFlight::Http(reply) => reply.next(r.ctx, r.idle).await.map_err(|e| upstream_error(&e)),
            InFlight::Stdio(call) => match monoio::time::timeout(r.idle, call.rx.recv_async()).await {
                Ok(Ok(m)) => Ok(Some(m)),
                Ok(Err(_)) => Ok(None),
                Err(_) => Err(RpcError::new(INTERNAL_ERROR, "stdio target did not answer in time")),
            },
            InFlight::Sse(call) => match monoio::time::timeout(r.idle, call.rx.recv_async()).await {
                Ok(Ok(m)) => Ok(Some(m)),
                Ok(Err(_)) => Ok(None),
                Err(_) => Err(RpcError::new(INTERNAL_ERROR, "sse target did not answer in time")),
            },
        }
    }

    /// [`InFlight::next`] with a response's result kept raw where the target's answer is read
    /// here (HTTP); other targets answer with trees.
    pub async fn next_answer(&mut self, r: &Relay<'_>) -> Result<Option<Answer>, RpcError> {
        match self {
            InFlight::Http(reply) => reply.next_answer(r.ctx, r.idle).await.map_err(|e| upstream_error(&e)),
            _ => Ok(self.next(r).await?.map(Answer::Other)),
        }
    }

    /// The progress token the target sees in place of the client's, on targets shared by many
    /// clients (stdio, HTTP+SSE); progress carrying it is the client's.
    pub fn progress_id(&self) -> Option<u64> {
        match self {
            InFlight::Stdio(c) => Some(c.upstream_id),
            InFlight::Sse(c) => Some(c.upstream_id),
            _ => None,
        }
    }
}

impl InFlight {
    /// After the response: read the rest of an HTTP answer (the end of its SSE stream), briefly,
    /// so the connection goes back to the pool instead of being dropped.
    pub async fn close(self, r: &Relay<'_>) {
        if let InFlight::Http(reply) = self {
            let _ = monoio::time::timeout(TAIL_WAIT, reply.finish(r.ctx, r.idle)).await;
        }
    }
}

/// How long an upstream may take to end its stream after its response before its connection
/// is dropped rather than pooled.
const TAIL_WAIT: Duration = Duration::from_millis(250);

/// The JSON-RPC error a client sees when a target fails at the transport level.
pub fn upstream_error(e: &HttpError) -> RpcError {
    RpcError::new(INTERNAL_ERROR, format!("target failed: {e}"))
}

impl Relay<'_> {
    /// Send a request to target `ti`. The response keeps the target's id; callers restore the
    /// client's id.
    pub async fn start(
        &self,
        ti: usize,
        via: Via<'_>,
        id: &Value,
        method: &str,
        params: Option<&Value>,
    ) -> Result<InFlight, RpcError> {
        match &self.plan.targets[ti].kind {
            TargetKind::Demo => {
                let m = match demo::handle(method, params) {
                    Ok(result) => Message::Response { id: id.clone(), result },
                    Err(e) => Message::Error { id: id.clone(), error: e.to_value() },
                };
                Ok(InFlight::Ready(Some(m)))
            }
            TargetKind::Stdio(s) => Ok(InFlight::Stdio(s.call(method, params).await?)),
            TargetKind::Sse(h) => {
                let name = &self.plan.targets[ti].name;
                let conn = sse_client::shared(self.ctx, name, h, self.idle).await?;
                match conn.call(self.ctx, method, params, self.idle).await {
                    Ok(call) => Ok(InFlight::Sse(call)),
                    // the target refused the POST, so its session is gone (it restarted before
                    // its stream's end reached us): once more on a new one
                    Err(_) if conn.is_dead() => {
                        let conn = sse_client::shared(self.ctx, name, h, self.idle).await?;
                        Ok(InFlight::Sse(conn.call(self.ctx, method, params, self.idle).await?))
                    }
                    Err(e) => Err(e),
                }
            }
            TargetKind::Http(h) => self.post(h, via, id, |id| jsonrpc::request(id, method, params)).await,
        }
    }

    /// [`Relay::start`] for an HTTP target with params that are JSON text already.
    pub async fn start_raw(
        &self,
        h: &HttpTargetPlan,
        via: Via<'_>,
        id: &Value,
        method: &str,
        params: &[u8],
    ) -> Result<InFlight, RpcError> {
        self.post(h, via, id, |id| jsonrpc::request_raw(id, method, params)).await
    }

    /// POST a request to an HTTP target: `body` writes it with the id given (the client's on
    /// its own upstream session, one of the gateway's on a pooled one).
    async fn post(
        &self,
        h: &HttpTargetPlan,
        via: Via<'_>,
        id: &Value,
        body: impl Fn(&Value) -> Vec<u8>,
    ) -> Result<InFlight, RpcError> {
        let (session, version, rewritten) = match via {
            Via::Own(u) => (u.s.clone(), u.v.clone(), None),
            Via::Pooled => {
                let p = self.pooled_session(h).await?;
                let session = Some(p.session.clone()).filter(|s| !s.is_empty());
                (session, p.version.clone(), Some(json!(self.ctx.mcp.next_id())))
            }
        };
        let body = body(rewritten.as_ref().unwrap_or(id));
        let post = Post { session: session.as_deref(), version: Some(&version), body: &body };
        match http_client::post(self.ctx, h, &post, self.idle).await {
            Ok(reply) => Ok(InFlight::Http(Box::new(reply))),
            Err(HttpError::Status(404, _)) if matches!(via, Via::Pooled) => {
                // the shared upstream session expired: start a new one, once
                self.ctx.mcp.set_pooled(&pool_key(h), None);
                let p = self.pooled_session(h).await?;
                let s = Some(p.session.as_str()).filter(|s| !s.is_empty());
                let post = Post { session: s, version: Some(&p.version), body: &body };
                let reply = http_client::post(self.ctx, h, &post, self.idle).await.map_err(|e| upstream_error(&e))?;
                Ok(InFlight::Http(Box::new(reply)))
            }
            Err(e) => Err(upstream_error(&e)),
        }
    }

    /// Send a request and wait for its result, ignoring notifications on the way.
    pub async fn call(&self, ti: usize, via: Via<'_>, method: &str, params: Option<&Value>) -> Result<Value, RpcError> {
        let id = json!(format!("rg-{}", self.ctx.mcp.next_id()));
        let mut f = self.start(ti, via, &id, method, params).await?;
        while let Some(m) = f.next(self).await? {
            match m {
                Message::Response { result, .. } => {
                    f.close(self).await;
                    return Ok(result);
                }
                Message::Error { error, .. } => {
                    f.close(self).await;
                    return Err(RpcError::from_value(&error));
                }
                _ => {}
            }
        }
        Err(RpcError::new(
            INTERNAL_ERROR,
            format!("target `{}` ended its answer without a response", self.plan.targets[ti].name),
        ))
    }

    /// Send a notification or a client's answer on the client's own upstream session with an
    /// HTTP target (best effort). Shared sessions and stdio processes never get them: their ids
    /// and tokens belong to the gateway.
    pub async fn post_message(&self, ti: usize, u: &Upstream, body: &[u8]) {
        if let TargetKind::Http(h) = &self.plan.targets[ti].kind {
            let post = Post { session: u.s.as_deref(), version: Some(&u.v), body };
            if let Ok(reply) = http_client::post(self.ctx, h, &post, self.idle).await {
                reply.finish(self.ctx, self.idle).await;
            }
        }
    }

    /// Initialize target `ti` for a client: its `initialize` result and its part of the sealed
    /// session. With `own`, HTTP targets get an upstream session of the client's own; otherwise
    /// the shard's shared one answers.
    pub async fn initialize(&self, ti: usize, params: &Value, own: bool) -> Result<(Value, Upstream), RpcError> {
        let t = &self.plan.targets[ti];
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let (result, session) = match &t.kind {
            TargetKind::Demo => (demo::handle("initialize", Some(params))?, None),
            TargetKind::Stdio(s) => (s.initialize().await?, None),
            TargetKind::Sse(h) => (sse_client::shared(self.ctx, &t.name, h, self.idle).await?.init(), None),
            TargetKind::Http(h) if own => self.http_initialize(h, params).await?,
            TargetKind::Http(h) => (self.pooled_session(h).await?.init.clone(), None),
        };
        let v = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(merge::negotiate(asked)).to_string();
        Ok((result, Upstream { n: t.name.to_string(), s: session, v }))
    }

    async fn http_initialize(&self, h: &HttpTargetPlan, params: &Value) -> Result<(Value, Option<String>), RpcError> {
        let body = jsonrpc::request(&json!(0), "initialize", Some(params));
        let post = Post { session: None, version: None, body: &body };
        let mut reply = http_client::post(self.ctx, h, &post, self.idle).await.map_err(|e| upstream_error(&e))?;
        let session = reply.session.take();
        loop {
            match reply.next(self.ctx, self.idle).await.map_err(|e| upstream_error(&e))? {
                Some(Message::Response { result, .. }) => {
                    InFlight::Http(Box::new(reply)).close(self).await;
                    return Ok((result, session));
                }
                Some(Message::Error { error, .. }) => return Err(RpcError::from_value(&error)),
                Some(_) => {}
                None => return Err(RpcError::new(INTERNAL_ERROR, "target ended initialize without a response")),
            }
        }
    }

    /// This shard's shared upstream session with `h`, set up on first use.
    async fn pooled_session(&self, h: &HttpTargetPlan) -> Result<Rc<Pooled>, RpcError> {
        let key = pool_key(h);
        if let Some(p) = self.ctx.mcp.pooled(&key) {
            return Ok(p);
        }
        let params = json!({
            "protocolVersion": merge::negotiate(None),
            "capabilities": {},
            "clientInfo": {"name": "ringgate", "version": env!("CARGO_PKG_VERSION")},
        });
        let (init, session) = self.http_initialize(h, &params).await?;
        let version = init.get("protocolVersion").and_then(Value::as_str).unwrap_or("2025-03-26").to_string();
        let session = session.unwrap_or_default();
        let note = jsonrpc::notification("notifications/initialized", None);
        let post = Post {
            session: Some(&session).filter(|s| !s.is_empty()).map(String::as_str),
            version: Some(&version),
            body: &note,
        };
        if let Ok(r) = http_client::post(self.ctx, h, &post, self.idle).await {
            r.finish(self.ctx, self.idle).await;
        }
        let p = Rc::new(Pooled { session, version, init });
        self.ctx.mcp.set_pooled(&key, Some(p.clone()));
        Ok(p)
    }
}

fn pool_key(h: &HttpTargetPlan) -> String {
    h.session_key()
}
