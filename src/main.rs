//! The `ringgate` command: run the gateway, validate a config, or print the config JSON Schema.

use std::path::PathBuf;
use std::process::ExitCode;

use ringgate::config::model::Driver;
use ringgate::gateway::{self, Options};

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage:
  ringgate [-c FILE] [--driver auto|uring|legacy] [--workers N]   run the gateway (embedded default config without -c)
  ringgate validate -c FILE                                       check a config file and exit
  ringgate schema                                                 print the config JSON Schema
  ringgate --version
environment:
  RINGGATE_CONFIG_WATCH=auto|poll       watch the config file with inotify (polling if it cannot start), or poll only
  RINGGATE_CONFIG_POLL_INTERVAL=250ms   between polls of the config file";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    let mut args = std::env::args().skip(1).peekable();
    let mut opts = Options::default();
    let var = |k: &str| std::env::var(k).ok();
    opts.watch = ringgate::config::watch::Mode::from_env(
        var("RINGGATE_CONFIG_WATCH").as_deref(),
        var("RINGGATE_CONFIG_POLL_INTERVAL").as_deref(),
    )?;
    let mut command = "run";
    while let Some(a) = args.next() {
        match a.as_str() {
            "validate" | "schema" if command == "run" => command = if a == "validate" { "validate" } else { "schema" },
            "-c" | "--config" | "--file" | "-f" => {
                opts.config = Some(PathBuf::from(args.next().ok_or("-c needs a file")?));
            }
            "--driver" => {
                opts.driver = Some(match args.next().as_deref() {
                    Some("auto") => Driver::Auto,
                    Some("uring") => Driver::Uring,
                    Some("legacy" | "epoll") => Driver::Legacy,
                    other => return Err(format!("--driver must be auto, uring or legacy, not {other:?}")),
                });
            }
            "--workers" => {
                let n = args.next().ok_or("--workers needs a number")?;
                opts.workers = Some(n.parse().map_err(|_| format!("--workers: `{n}` is not a number"))?);
            }
            "-V" | "--version" => {
                println!("ringgate {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unexpected argument `{other}`\n{USAGE}")),
        }
    }
    match command {
        "schema" => {
            let s = serde_json::to_string_pretty(&ringgate::config::load::json_schema()).map_err(|e| e.to_string())?;
            println!("{s}");
            Ok(())
        }
        "validate" => {
            let path = opts.config.ok_or("validate needs -c FILE")?;
            let cfg = ringgate::config::load_file(&path).map_err(|e| e.to_string())?;
            let registry = ringgate::observe::metrics::Registry::new(1);
            ringgate::config::compile::compile(cfg, &path.display().to_string(), &registry)
                .map_err(|e| e.to_string())?;
            println!("{}: valid", path.display());
            Ok(())
        }
        _ => gateway::run(opts),
    }
}
