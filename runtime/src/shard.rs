//! Shard threads: one pinned OS thread per core, each running its own monoio runtime on io_uring or epoll.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Which driver the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel lets us, epoll otherwise.
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll.
    Legacy,
}

/// The driver a shard actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring.
    Uring,
    /// epoll ("legacy" in monoio).
    Legacy,
}

impl DriverKind {
    /// Lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Uring => "io_uring",
            DriverKind::Legacy => "epoll",
        }
    }
}

/// What a shard is told about itself.
#[derive(Clone, Copy, Debug)]
pub struct ShardInfo {
    /// 0-based shard index.
    pub index: usize,
    /// The CPU it is pinned to, if pinning worked.
    pub cpu: Option<usize>,
    /// Its driver.
    pub driver: DriverKind,
}

/// A running shard.
pub struct ShardHandle {
    /// What the shard knows about itself.
    pub info: ShardInfo,
    /// The shard's thread; it ends when the shard's main future returns.
    pub thread: JoinHandle<()>,
    /// Why the shard runs epoll although `auto` preferred io_uring (None: it got what was chosen).
    pub fallback: Option<String>,
}

/// A shard failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ShardSpawnError {
    /// io_uring was required but could not start.
    #[error("shard {index}: io_uring is not available ({reason}); use `--driver legacy` or `auto`")]
    UringUnavailable {
        /// Shard index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The runtime or thread could not be created.
    #[error("shard {index}: {reason}")]
    Start {
        /// Shard index.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// Start `count` shards, pinned round-robin over `cpus`, each running `main(info)` to completion.
///
/// Returns once every shard has built its runtime, so the driver of each is known (and a
/// required-but-missing io_uring is an error here, not a crash later).
pub fn spawn_shards<F, Fut>(
    count: usize,
    cpus: &[usize],
    choice: DriverChoice,
    main: F,
) -> Result<Vec<ShardHandle>, ShardSpawnError>
where
    F: Fn(ShardInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let main = Arc::new(main);
    let plan = match choice {
        DriverChoice::Legacy => Plan::Epoll { fallback: None },
        DriverChoice::Auto | DriverChoice::Uring => match probe_uring() {
            Ok(()) => Plan::Uring,
            Err(reason) if choice == DriverChoice::Uring => {
                return Err(ShardSpawnError::UringUnavailable { index: 0, reason })
            }
            Err(reason) => Plan::Epoll { fallback: Some(reason) },
        },
    };
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let main = main.clone();
        let plan = plan.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<Started, ShardSpawnError>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("ringgate-shard-{index}"))
            .spawn(move || {
                let pinned = cpu.filter(|c| core_affinity::set_for_current(core_affinity::CoreId { id: *c }));
                run_shard(index, pinned, choice, plan, ready_tx, main);
            })
            .map_err(|e| ShardSpawnError::Start { index, reason: e.to_string() })?;
        match ready_rx.recv() {
            Ok(Ok(Started { info, fallback })) => handles.push(ShardHandle { info, thread, fallback }),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ShardSpawnError::Start { index, reason: "shard thread exited during start".into() }),
        }
    }
    Ok(handles)
}

/// Which driver a shard tries.
#[derive(Clone)]
enum Plan {
    /// io_uring (epoll under `auto` if this shard's ring cannot be built after all).
    Uring,
    /// epoll; `fallback` says why when io_uring was preferred.
    Epoll { fallback: Option<String> },
}

/// Whether io_uring can run monoio here, and if not, why (for the log that explains a fallback).
fn probe_uring() -> Result<(), String> {
    // honours MONOIO_FORCE_LEGACY_DRIVER, probes the opcodes monoio needs
    if monoio::utils::detect_uring() {
        return Ok(());
    }
    let forced = std::env::var("MONOIO_FORCE_LEGACY_DRIVER")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    if forced {
        return Err("MONOIO_FORCE_LEGACY_DRIVER is set".into());
    }
    // detect_uring only says no: repeat its first steps to learn the kernel's answer (EPERM under
    // a seccomp filter such as Docker's default, ENOSYS without io_uring, EPERM when disabled by
    // the kernel.io_uring_disabled sysctl)
    let ring = io_uring::IoUring::new(2).map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| format!("io_uring_register: {e}"))?;
    Err("the kernel lacks io_uring operations monoio needs".into())
}

/// A shard's runtime is built: what it runs, and why it fell back if it did.
struct Started {
    info: ShardInfo,
    fallback: Option<String>,
}

fn run_shard<F, Fut>(
    index: usize,
    cpu: Option<usize>,
    choice: DriverChoice,
    plan: Plan,
    ready: std::sync::mpsc::SyncSender<Result<Started, ShardSpawnError>>,
    main: Arc<F>,
) where
    F: Fn(ShardInfo) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let fallback = match plan {
        Plan::Uring => {
            // COOP_TASKRUN (5.19+): a completion does not interrupt the shard with an IPI while it
            // runs; it is picked up at its next io_uring_enter, which every turn of monoio's loop
            // makes. Only this thread uses its ring, which is what the flag asks. Older kernels
            // refuse the flag: then the ring is set up without it.
            let coop = RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(4096)
                .uring_builder({
                    let mut b = io_uring::IoUring::builder();
                    b.setup_coop_taskrun();
                    b
                })
                .enable_timer()
                .build();
            let built =
                coop.or_else(|_| RuntimeBuilder::<IoUringDriver>::new().with_entries(4096).enable_timer().build());
            match built {
                Ok(mut rt) => {
                    let info = ShardInfo { index, cpu, driver: DriverKind::Uring };
                    let _ = ready.send(Ok(Started { info, fallback: None }));
                    rt.block_on(main(info));
                    return;
                }
                Err(e) if choice == DriverChoice::Uring => {
                    let _ = ready.send(Err(ShardSpawnError::UringUnavailable { index, reason: e.to_string() }));
                    return;
                }
                // e.g. RLIMIT_MEMLOCK too low for a 4096-entry ring on old kernels
                Err(e) => Some(format!("building the ring: {e}")),
            }
        }
        Plan::Epoll { fallback } => fallback,
    };
    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => {
            let info = ShardInfo { index, cpu, driver: DriverKind::Legacy };
            let _ = ready.send(Ok(Started { info, fallback }));
            rt.block_on(main(info));
        }
        Err(e) => {
            let _ = ready.send(Err(ShardSpawnError::Start { index, reason: e.to_string() }));
        }
    }
}
