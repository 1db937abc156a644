//! The control thread: start shards and admin, then serve reloads (file change, SIGHUP) and drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

use ringgate_runtime::{bind_shared, spawn_shards, DriverChoice, ShardHandle};

use crate::admin::AdminState;
use crate::config::compile::{compile, compile_bound};
use crate::config::model::{Config, Driver, Workers};
use crate::config::{parse_str, Snapshot};
use crate::observe::metrics::{Registry, ReloadResult};
use crate::proxy::shard::{self, ShardMsg};

/// Served when no config file is given: something useful on 127.0.0.1.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.yaml");

/// Command-line choices that override the file.
#[derive(Default, Clone)]
pub struct Options {
    /// Config file; None = the embedded default.
    pub config: Option<PathBuf>,
    /// `--driver`.
    pub driver: Option<Driver>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// How the config file is watched (from the environment).
    pub watch: crate::config::watch::Mode,
}

enum Event {
    Reload(&'static str),
    Stop(&'static str),
}

fn log(msg: &str) {
    crate::observe::access_log::write_stdout(
        format!("{} info {msg}\n", crate::observe::access_log::rfc3339(SystemTime::now())).as_bytes(),
    );
}

fn load(opts: &Options) -> Result<(Config, String), String> {
    match &opts.config {
        Some(p) => crate::config::load_file(p).map(|c| (c, p.display().to_string())).map_err(|e| e.to_string()),
        None => parse_str(DEFAULT_CONFIG, "embedded default")
            .map(|c| (c, "embedded default".into()))
            .map_err(|e| e.to_string()),
    }
}

/// Run the gateway until SIGTERM/SIGINT, then drain. Errors are start-up failures.
pub fn run(opts: Options) -> Result<(), String> {
    // first, so a signal sent as soon as we announce ourselves is queued, not fatal
    let (tx, rx) = mpsc::channel();
    watch_signals(tx.clone())?;
    // the file's stamp before we read it: any later change is a reload, even during start-up
    let baseline = opts.config.as_deref().map(crate::config::watch::stamp);
    let (config, source) = load(&opts)?;
    let cpus = ringgate_runtime::cpus::usable_cpus();
    let workers = opts.workers.unwrap_or(match config.config.workers {
        Workers::Auto => cpus.len(),
        Workers::Count(n) => usize::from(n.max(1)),
    });
    let driver = match opts.driver.unwrap_or(config.config.driver) {
        Driver::Auto => DriverChoice::Auto,
        Driver::Uring => DriverChoice::Uring,
        Driver::Legacy => DriverChoice::Legacy,
    };
    let registry = Registry::new(workers);
    let mut snap = compile(config, &source, &registry).map_err(|e| e.to_string())?;

    // sockets are bound here so port 0 resolves once and a busy port fails before any shard starts
    let mut bound: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut per_shard: Vec<Vec<(SocketAddr, std::net::TcpListener)>> = (0..workers).map(|_| Vec::new()).collect();
    for b in &mut snap.binds {
        let socks = bind_shared(b.addr, workers, 4096).map_err(|e| e.to_string())?;
        b.listen = socks[0].local_addr().map_err(|e| e.to_string())?;
        bound.push((b.addr, b.listen));
        for (i, s) in socks.into_iter().enumerate() {
            per_shard[i].push((b.listen, s));
        }
    }
    let snap = Arc::new(snap);

    let mut mailboxes = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = flume::bounded::<ShardMsg>(16);
        mailboxes.push(tx);
        receivers.push(rx);
    }
    let starts: Vec<_> =
        per_shard.into_iter().zip(receivers).map(|(l, r)| std::sync::Mutex::new(Some((l, r)))).collect();
    let starts = Arc::new(starts);
    let shard_registry = registry.clone();
    let first = snap.clone();
    let siblings = mailboxes.clone();
    let shards: Vec<ShardHandle> = spawn_shards(workers, &cpus, driver, move |info| {
        let (listeners, mailbox) = starts[info.index]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| (Vec::new(), flume::bounded(1).1));
        shard::run(info, first.clone(), listeners, mailbox, siblings.clone(), shard_registry.clone())
    })
    .map_err(|e| e.to_string())?;
    for s in &shards {
        *registry.shards[s.info.index].driver.lock().unwrap_or_else(|p| p.into_inner()) = s.info.driver.as_str();
    }
    // one line per distinct reason (every shard usually shares one): why io_uring was not used
    let mut fallbacks: Vec<(&str, Vec<String>)> = Vec::new();
    for s in &shards {
        if let Some(why) = s.fallback.as_deref() {
            match fallbacks.iter_mut().find(|(w, _)| *w == why) {
                Some((_, on)) => on.push(s.info.index.to_string()),
                None => fallbacks.push((why, vec![s.info.index.to_string()])),
            }
        }
    }
    for (why, on) in &fallbacks {
        log(&format!("io_uring unavailable, using epoll shards={} reason={why:?}", on.join(",")));
    }
    let drivers: Vec<&str> = shards.iter().map(|s| s.info.driver.as_str()).collect();
    log(&format!("shards started workers={workers} driver={} config={source:?}", drivers.join(",")));
    for (cfg, actual) in &bound {
        log(&format!("listening bind={cfg} address={actual}"));
    }

    let admin = Arc::new(AdminState {
        ready: false.into(),
        registry: registry.clone(),
        current: snap.clone().into(),
        listeners: bound.into(),
        source: source.clone(),
    });
    // every shard has bound its listeners by now
    admin.ready.store(true, Ordering::Release);
    if snap.config.config.admin_addr != "off" {
        let addr = start_admin(&snap.config.config.admin_addr, admin.clone())?;
        log(&format!("admin listening address={addr}"));
    }

    watch_dns(admin.clone(), tx.clone());
    if let Some(p) = &opts.config {
        crate::config::watch::spawn(p.clone(), baseline.flatten(), opts.watch, log, move || {
            tx.send(Event::Reload("file change")).is_ok()
        });
    }
    let mut control = Control { opts, mailboxes, registry, admin, current: snap, workers };
    while let Ok(ev) = rx.recv() {
        match ev {
            Event::Reload(why) => control.reload(why),
            Event::Stop(sig) => {
                log(&format!("draining signal={sig}"));
                control.admin.ready.store(false, Ordering::Release);
                break;
            }
        }
    }
    control.drain(shards);
    Ok(())
}

fn start_admin(addr: &str, admin: Arc<AdminState>) -> Result<SocketAddr, String> {
    crate::admin::start(addr, admin).map_err(|e| format!("admin address {addr}: {e}"))
}

struct Control {
    opts: Options,
    mailboxes: Vec<flume::Sender<ShardMsg>>,
    registry: Arc<Registry>,
    /// Also the owner of the bound-listener list (configured address → bound address), which
    /// `/listeners` shows and reloads update.
    admin: Arc<AdminState>,
    current: Arc<Snapshot>,
    workers: usize,
}

impl Control {
    /// The bound listeners (the control thread's and the admin server's one copy).
    fn bound(&self) -> std::sync::MutexGuard<'_, Vec<(SocketAddr, SocketAddr)>> {
        self.admin.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reload(&mut self, why: &str) {
        let mut snap = match load(&self.opts).and_then(|(c, source)| {
            let bound = self.bound().clone();
            compile_bound(c, &source, &self.registry, &bound).map_err(|e| e.to_string())
        }) {
            Ok(s) => s,
            Err(e) => {
                self.registry.count_reload(ReloadResult::Invalid);
                log(&format!("reload rejected trigger={why} error={e:?}; the previous configuration keeps serving"));
                return;
            }
        };
        let old = &self.current.config.config;
        let new = &snap.config.config;
        if old.admin_addr != new.admin_addr || old.workers != new.workers || old.driver != new.driver {
            log("reload: adminAddr, workers and driver changes take effect after a restart");
        }
        // new binds get sockets now; a failure here rejects the reload before any shard sees it
        let mut fresh: Vec<Vec<(SocketAddr, std::net::TcpListener)>> = (0..self.workers).map(|_| Vec::new()).collect();
        let mut fresh_bound = Vec::new();
        let configured: Vec<SocketAddr> = snap.binds.iter().map(|b| b.addr).collect();
        let kept = claim(&configured, &self.bound());
        for (b, kept) in snap.binds.iter_mut().zip(kept) {
            if let Some(listen) = kept {
                b.listen = listen;
                continue;
            }
            match bind_shared(b.addr, self.workers, 4096).and_then(|socks| {
                let a =
                    socks[0].local_addr().map_err(|source| ringgate_runtime::BindError::Io { addr: b.addr, source })?;
                Ok((a, socks))
            }) {
                Ok((a, socks)) => {
                    b.listen = a;
                    fresh_bound.push((b.addr, a));
                    for (i, s) in socks.into_iter().enumerate() {
                        fresh[i].push((a, s));
                    }
                }
                Err(e) => {
                    self.registry.count_reload(ReloadResult::Invalid);
                    log(&format!("reload rejected trigger={why} error={:?}", e.to_string()));
                    return;
                }
            }
        }
        let snap = Arc::new(snap);
        let mut fresh = fresh.into_iter();
        let mailboxes = &self.mailboxes;
        let result = ringgate_runtime::swap::two_phase(
            self.workers,
            Duration::from_secs(5),
            |i, ack| {
                let listeners = fresh.next().unwrap_or_default();
                mailboxes[i].send(ShardMsg::Precommit { snapshot: snap.clone(), listeners, ack }).is_ok()
            },
            |i, done| {
                let msg = match done {
                    Some(done) => ShardMsg::Commit { done },
                    None => ShardMsg::Abort,
                };
                mailboxes[i].send(msg).is_ok()
            },
        );
        match result {
            Ok(confirmed) => {
                if !confirmed {
                    log("reload: a shard did not confirm the commit in time");
                }
                self.registry.count_reload(ReloadResult::Success);
                let keep: Vec<SocketAddr> = snap.binds.iter().map(|b| b.listen).collect();
                for (cfg, actual) in &fresh_bound {
                    log(&format!("listening bind={cfg} address={actual}"));
                }
                let mut bound = self.bound();
                bound.retain(|(_, actual)| keep.contains(actual));
                bound.extend(fresh_bound);
                drop(bound);
                *self.admin.current.lock().unwrap_or_else(|p| p.into_inner()) = snap.clone();
                self.current = snap;
                log(&format!("reload applied trigger={why}"));
            }
            Err(e) => {
                self.registry.count_reload(ReloadResult::Aborted);
                log(&format!("reload aborted trigger={why} error={e:?}"));
            }
        }
    }

    fn drain(self, shards: Vec<ShardHandle>) {
        let deadline = self.current.config.config.drain_timeout.get();
        let (tx, rx) = flume::unbounded();
        for m in &self.mailboxes {
            let _ = m.send(ShardMsg::Drain { deadline, done: tx.clone() });
        }
        drop(tx);
        let mut cut = 0;
        for _ in 0..shards.len() {
            match rx.recv_timeout(deadline + Duration::from_secs(2)) {
                Ok(n) => cut += n,
                Err(_) => break,
            }
        }
        // in-flight requests are done: the sessions' own stdio processes end (the shared ones
        // die with the shard threads that started them)
        let ended = crate::mcp::stdio::end_all();
        for s in shards {
            let _ = s.thread.join();
        }
        log(&format!("drained connections_cut={cut} stdio_sessions_ended={ended}"));
    }
}

/// Which served socket (by its bound address) each bind, given by configured address, keeps;
/// None for a bind that needs a socket of its own. A bind naming the address a socket got (the
/// port `port: 0` got, say) is that socket's; the others take the sockets of their configured
/// address in order, so several `port: 0` on one address each keep their own.
fn claim(binds: &[SocketAddr], bound: &[(SocketAddr, SocketAddr)]) -> Vec<Option<SocketAddr>> {
    let mut taken = vec![false; bound.len()];
    let mut out = vec![None; binds.len()];
    for (slot, b) in out.iter_mut().zip(binds) {
        if let Some(j) = bound.iter().position(|(_, actual)| actual == b).filter(|&j| !taken[j]) {
            taken[j] = true;
            *slot = Some(bound[j].1);
        }
    }
    for (slot, b) in out.iter_mut().zip(binds) {
        if slot.is_none() {
            if let Some(j) = (0..bound.len()).find(|&j| !taken[j] && bound[j].0 == *b) {
                taken[j] = true;
                *slot = Some(bound[j].1);
            }
        }
    }
    out
}

fn watch_signals(tx: mpsc::Sender<Event>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("ringgate-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let ev = match s {
                    SIGHUP => Event::Reload("SIGHUP"),
                    SIGINT => Event::Stop("SIGINT"),
                    _ => Event::Stop("SIGTERM"),
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Resolve the served snapshot's host names again every `dnsRefreshInterval` (read from the
/// snapshot each round, so a reload changes it) and ask for a reload when one answers differently:
/// the reload compiles the config again, resolving every name, and swaps it in as any reload does.
fn watch_dns(admin: Arc<AdminState>, tx: mpsc::Sender<Event>) {
    let _ = std::thread::Builder::new().name("ringgate-dns".into()).spawn(move || loop {
        let every = admin.current.lock().unwrap_or_else(|p| p.into_inner()).config.config.dns_refresh_interval.get();
        std::thread::sleep(if every.is_zero() { Duration::from_secs(5) } else { every });
        if every.is_zero() {
            continue;
        }
        let snap = admin.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let names = crate::config::dns::names(&snap);
        if let Some(n) = crate::config::dns::changed(&names, crate::config::dns::system_resolve) {
            log(&format!("dns change host={} port={}", n.host, n.port));
            if tx.send(Event::Reload("dns change")).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::claim;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn port_0_binds_on_one_address_keep_their_own_sockets() {
        let bound = [(a("127.0.0.1:0"), a("127.0.0.1:41001")), (a("127.0.0.1:0"), a("127.0.0.1:41002"))];
        let zero = a("127.0.0.1:0");
        assert_eq!(claim(&[zero, zero], &bound), [Some(bound[0].1), Some(bound[1].1)]);
        assert_eq!(claim(&[zero, zero, zero], &bound), [Some(bound[0].1), Some(bound[1].1), None]);
        // naming the second's port keeps it; the remaining `port: 0` takes the first
        assert_eq!(claim(&[zero, a("127.0.0.1:41002")], &bound), [Some(bound[0].1), Some(bound[1].1)]);
        assert_eq!(claim(&[a("127.0.0.1:41003")], &bound), [None]);
        assert_eq!(claim(&[a("0.0.0.0:8080")], &[(a("0.0.0.0:8080"), a("0.0.0.0:8080"))]), [Some(a("0.0.0.0:8080"))]);
    }
}
