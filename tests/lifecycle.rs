//! Integration tests of the process lifecycle: hot reload (file and SIGHUP), invalid reloads, drain on SIGTERM, port ownership, drivers.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

fn config(upstream: std::net::SocketAddr, path: &str, port: u16) -> String {
    format!(
        "config:\n  workers: 2\n  adminAddr: 127.0.0.1:0\n  drainTimeout: 5s\nbinds:\n- port: {port}\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - matches: [{{path: {{pathPrefix: {path}}}}}]\n      backends: [{{host: \"{upstream}\"}}]\n"
    )
}

#[test]
fn reload_changes_routes_under_load_without_failures() {
    let (a, b) = (upstream("a"), upstream("b"));
    let gw = Gateway::start(&config(a.addr, "/", 0));
    let port = gw.addr().port();
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    match c.send(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n") {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            c = Client::connect(addr);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    // keep the port (the bind is unchanged) but send everything to b
    gw.rewrite_config(&config(b.addr, "/", port));
    gw.wait_line("reload applied trigger=file change");
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/x").header("x-upstream"), Some("b"));
    // an invalid file is rejected and b keeps serving
    gw.rewrite_config("binds:\n- port: 0\n  listenrs: []\n");
    gw.wait_line("reload rejected");
    assert!(gw.lines.lock().unwrap().iter().any(|l| l.contains("listenrs")), "error must name the field");
    assert_eq!(c.get("/x").header("x-upstream"), Some("b"));
    gw.wait_metric("ringgate_config_reloads_total{result=\"invalid\"} 1");
    // enough traffic crossed the reloads, however slow the machine is today
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ok.load(Ordering::Relaxed) <= 50 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 50);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reload");
}

#[test]
fn sighup_reloads_and_new_binds_start_listening() {
    let a = upstream("a");
    let gw = Gateway::start(&config(a.addr, "/", 0));
    let port = gw.addr().port();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second_port = second.local_addr().unwrap().port();
    drop(second);
    let yaml = format!(
        "{}- port: {second_port}\n  address: 127.0.0.1\n  listeners:\n  - routes:\n    - policies: {{directResponse: {{body: second}}}}\n",
        config(a.addr, "/", port)
    );
    // write without the watcher noticing a change in size/mtime first is not guaranteed; SIGHUP is explicit
    std::fs::write(&gw.config, yaml).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_line("reload applied");
    gw.wait_line(&format!("listening bind=127.0.0.1:{second_port} address=127.0.0.1:{second_port}"));
    let r = get(format!("127.0.0.1:{second_port}").parse().unwrap(), "/");
    assert_eq!(r.body_str(), "second");
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let a = upstream("a");
    let mut gw = Gateway::start(&config(a.addr, "/", 0));
    let addr = gw.addr();
    let inflight: Vec<_> = (0..4).map(|_| std::thread::spawn(move || get(addr, "/slow/700"))).collect();
    // the gateway has the requests once the upstream counted them
    while a.hits.load(Ordering::SeqCst) < 4 {
        std::thread::yield_now();
    }
    gw.signal(libc::SIGTERM);
    for t in inflight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "in-flight request must complete during drain");
        assert_eq!(r.header("connection"), Some("close"));
    }
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    gw.wait_line("drained connections_cut=0");
}

#[test]
fn a_second_instance_on_a_served_port_fails_clearly() {
    let a = upstream("a");
    let gw = Gateway::start(&config(a.addr, "/", 0));
    let yaml = config(a.addr, "/", gw.addr().port());
    let dir = tempdir();
    let f = dir.join("c.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringgate")).arg("-c").arg(&f).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
    assert_eq!(get(gw.addr(), "/").status, 200, "the first instance keeps serving");
}

#[test]
fn legacy_driver_is_used_and_reported() {
    let a = upstream("a");
    let gw = Gateway::start_args(&config(a.addr, "/", 0), &["--driver", "legacy"]);
    assert_eq!(get(gw.addr(), "/").status, 200);
    let m = gw.metrics();
    assert!(m.contains("ringgate_runtime_driver_info{shard=\"0\",driver=\"epoll\"} 1"), "{m}");
}

#[test]
fn auto_driver_falls_back_to_epoll_when_seccomp_denies_io_uring() {
    if !seccomp::io_uring_filter_supported() {
        eprintln!("skipped: no io_uring seccomp filter for this architecture");
        return;
    }
    let a = upstream("a");
    // io_uring_setup/enter/register fail with EPERM, as under Docker's default seccomp profile
    let gw = Gateway::start_without_io_uring(&config(a.addr, "/", 0), &["--driver", "auto"]);
    assert_eq!(get(gw.admin, "/ready").status, 200);
    let r = get(gw.addr(), "/through");
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("a")), "{}", r.body_str());
    let m = gw.metrics();
    for shard in 0..2 {
        assert!(m.contains(&format!("ringgate_runtime_driver_info{{shard=\"{shard}\",driver=\"epoll\"}} 1")), "{m}");
    }
    assert!(!m.contains("driver=\"io_uring\""), "{m}");
    let why = gw.wait_line("io_uring unavailable");
    assert!(why.contains("shards=0,1") && why.contains("io_uring_setup: Operation not permitted"), "{why}");
}

#[test]
fn uring_driver_fails_start_up_clearly_when_seccomp_denies_io_uring() {
    if !seccomp::io_uring_filter_supported() {
        eprintln!("skipped: no io_uring seccomp filter for this architecture");
        return;
    }
    let dir = tempdir();
    let f = dir.join("c.yaml");
    std::fs::write(&f, config(upstream("a").addr, "/", 0)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ringgate"));
    cmd.arg("-c").arg(&f).args(["--driver", "uring"]).env_remove("MONOIO_FORCE_LEGACY_DRIVER");
    let out = seccomp::deny_io_uring(&mut cmd).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // an error exit, not a panic or an abort
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("io_uring is not available") && err.contains("Operation not permitted"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn admin_endpoints() {
    let a = upstream("a");
    let gw = Gateway::start(&config(a.addr, "/", 0));
    assert_eq!(get(gw.admin, "/healthz").status, 200);
    assert_eq!(get(gw.admin, "/ready").status, 200);
    let l = get(gw.admin, "/listeners").body_str();
    assert!(l.contains(&gw.addr().to_string()), "{l}");
    let d = get(gw.admin, "/config_dump").body_str();
    assert!(d.contains("\"binds\"") && d.contains(&a.addr.to_string()), "{d}");
}

#[test]
fn validate_and_schema_commands() {
    let bin = env!("CARGO_BIN_EXE_ringgate");
    let dir = tempdir();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "binds:\n- port: 1\n  listeners:\n  - protocl: HTTP\n").unwrap();
    let out = std::process::Command::new(bin).args(["validate", "-c"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":4") && err.contains("protocl") && err.contains("binds[0].listeners[0]"), "{err}");
    let out = std::process::Command::new(bin).arg("schema").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"binds\""));
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let out = std::process::Command::new(bin).args(["validate", "-c"]).arg(&p).output().unwrap();
            assert!(out.status.success(), "{}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn an_idle_keepalive_connection_sees_a_reloaded_route_on_its_next_request() {
    let (a, b) = (upstream("a"), upstream("b"));
    let gw = Gateway::start(&config(a.addr, "/a", 0));
    let port = gw.addr().port();
    let mut c = Client::connect(gw.addr());
    assert_eq!(c.get("/a").header("x-upstream"), Some("a"));
    assert_eq!(c.get("/b").status, 404);
    // the connection now waits for its next request while the reload adds a route
    let yaml = format!(
        "{}    - matches: [{{path: {{pathPrefix: /b}}}}]\n      backends: [{{host: \"{}\"}}]\n",
        config(a.addr, "/a", port),
        b.addr
    );
    std::fs::write(&gw.config, yaml).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_line("reload applied");
    let r = c.get("/b");
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("b")), "{}", r.body_str());
}

/// Two configs of the same length, routing everything to `a` and to `b`: a file replaced by the
/// other keeps its size (both keep `port: 0`, which a reload takes as the bind already served).
fn same_size_configs(a: std::net::SocketAddr, b: std::net::SocketAddr) -> (String, String) {
    let (mut x, mut y) = (config(a, "/", 0), config(b, "/", 0));
    let n = x.len().max(y.len());
    x += &format!("#{}\n", "-".repeat(n - x.len()));
    y += &format!("#{}\n", "-".repeat(n - y.len()));
    assert_eq!(x.len(), y.len());
    (x, y)
}

/// Write `yaml` at `path` with modification time `mtime`, as `cp -p` or `rsync -t` would.
fn write_with_mtime(path: &std::path::Path, yaml: &str, mtime: std::time::SystemTime) {
    std::fs::write(path, yaml).unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}

fn serves(gw: &Gateway, name: &str) -> bool {
    get(gw.addr(), "/x").header("x-upstream") == Some(name)
}

/// Rename `yaml` over the gateway's config file the way editors save, with the old file's mtime.
fn replace_keeping_mtime(gw: &Gateway, yaml: &str) {
    let mtime = std::fs::metadata(&gw.config).unwrap().modified().unwrap();
    let tmp = gw.dir.join(".config.yaml.swp");
    write_with_mtime(&tmp, yaml, mtime);
    std::fs::rename(&tmp, &gw.config).unwrap();
}

#[test]
fn a_config_renamed_over_the_file_is_served_even_with_the_same_size_and_mtime() {
    let (a, b) = (upstream("a"), upstream("b"));
    let (ya, yb) = same_size_configs(a.addr, b.addr);
    let gw = Gateway::start(&ya);
    assert!(serves(&gw, "a"));
    replace_keeping_mtime(&gw, &yb);
    wait_until("the replaced config is served", || serves(&gw, "b"));
    gw.wait_line("reload applied trigger=file change");
}

/// `RINGGATE_CONFIG_WATCH=poll` skips inotify: the polling fallback alone serves a changed file
/// (here one renamed over it with the same size and mtime, which only the contents tell apart).
#[test]
fn with_the_poll_watch_mode_a_changed_file_is_served() {
    let (a, b) = (upstream("a"), upstream("b"));
    let (ya, yb) = same_size_configs(a.addr, b.addr);
    let poll = [("RINGGATE_CONFIG_WATCH", "poll"), ("RINGGATE_CONFIG_POLL_INTERVAL", "20ms")];
    let gw = Gateway::start_env(&ya, &poll);
    assert!(gw.wait_line("config watch: polling file=").contains("every 20ms"));
    assert_eq!(gw.count_lines("config watch: inotify"), 0, "{:?}", gw.lines.lock().unwrap());
    assert!(serves(&gw, "a"));
    replace_keeping_mtime(&gw, &yb);
    wait_until("the replaced config is served", || serves(&gw, "b"));
    gw.wait_line("reload applied trigger=file change");
}

#[test]
fn a_configmap_style_symlink_swap_is_served() {
    use std::os::unix::fs::symlink;
    let (a, b) = (upstream("a"), upstream("b"));
    let (ya, yb) = same_size_configs(a.addr, b.addr);
    // the layout of a Kubernetes ConfigMap volume: config.yaml -> ..data/config.yaml,
    // ..data -> ..<timestamp>/, and an update swaps ..data to a new directory in one rename
    let dir = tempdir();
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/config.yaml"), &ya).unwrap();
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
    let gw = Gateway::start_file(dir.clone(), dir.join("config.yaml"), &[]);
    assert!(serves(&gw, "a"));
    let mtime = std::fs::metadata(dir.join("..v1/config.yaml")).unwrap().modified().unwrap();
    std::fs::create_dir(dir.join("..v2")).unwrap();
    write_with_mtime(&dir.join("..v2/config.yaml"), &yb, mtime);
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
    wait_until("the swapped config is served", || serves(&gw, "b"));
    gw.wait_line("reload applied trigger=file change");
}
