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
    let uring_ok = match choice {
        DriverChoice::Legacy => false,
        // honours MONOIO_FORCE_LEGACY_DRIVER, probes the opcodes monoio needs
        DriverChoice::Auto | DriverChoice::Uring => monoio::utils::detect_uring(),
    };
    if choice == DriverChoice::Uring && !uring_ok {
        return Err(ShardSpawnError::UringUnavailable {
            index: 0,
            reason: "the kernel refused the io_uring probe".into(),
        });
    }
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let main = main.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<ShardInfo, ShardSpawnError>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("ringgate-shard-{index}"))
            .spawn(move || {
                let pinned = cpu.filter(|c| core_affinity::set_for_current(core_affinity::CoreId { id: *c }));
                run_shard(index, pinned, choice, uring_ok, ready_tx, main);
            })
            .map_err(|e| ShardSpawnError::Start { index, reason: e.to_string() })?;
        match ready_rx.recv() {
            Ok(Ok(info)) => handles.push(ShardHandle { info, thread }),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ShardSpawnError::Start { index, reason: "shard thread exited during start".into() }),
        }
    }
    Ok(handles)
}

fn run_shard<F, Fut>(
    index: usize,
    cpu: Option<usize>,
    choice: DriverChoice,
    uring_ok: bool,
    ready: std::sync::mpsc::SyncSender<Result<ShardInfo, ShardSpawnError>>,
    main: Arc<F>,
) where
    F: Fn(ShardInfo) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    if uring_ok {
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
        let built = coop.or_else(|_| RuntimeBuilder::<IoUringDriver>::new().with_entries(4096).enable_timer().build());
        match built {
            Ok(mut rt) => {
                let info = ShardInfo { index, cpu, driver: DriverKind::Uring };
                let _ = ready.send(Ok(info));
                rt.block_on(main(info));
                return;
            }
            Err(e) if choice == DriverChoice::Uring => {
                let _ = ready.send(Err(ShardSpawnError::UringUnavailable { index, reason: e.to_string() }));
                return;
            }
            // e.g. RLIMIT_MEMLOCK too low on old kernels: fall through to epoll
            Err(_) => {}
        }
    }
    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => {
            let info = ShardInfo { index, cpu, driver: DriverKind::Legacy };
            let _ = ready.send(Ok(info));
            rt.block_on(main(info));
        }
        Err(e) => {
            let _ = ready.send(Err(ShardSpawnError::Start { index, reason: e.to_string() }));
        }
    }
}
