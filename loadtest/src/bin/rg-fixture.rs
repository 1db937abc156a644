//! rg-fixture: fast fixture upstreams (HTTP, MCP, OpenAI stub) on one port, on one monoio thread.

use std::io::{BufRead, Write};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let stdio = args.first().is_some_and(|a| a == "stdio");
    if stdio {
        args.remove(0);
    }
    let (addr, cfg) = match ringgate_loadtest::args::fixture(&args) {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("rg-fixture: {e}");
            }
            eprintln!("{}", ringgate_loadtest::args::FIXTURE_USAGE);
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    if stdio {
        serve_stdio(cfg);
        return;
    }
    ringgate_loadtest::load::block_on(|| async move {
        let listener = match ringgate_loadtest::fixture::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rg-fixture: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let bound = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
        // stdout is line-buffered: the line is out before the first accept
        println!("listening {bound}");
        ringgate_loadtest::fixture::serve(listener, cfg).await;
    });
}

/// One JSON-RPC message per line in, one answer per line out, flushed per answer (a stdio MCP
/// upstream for gateways that spawn one, e.g. ringgate's `stdio` target or supergateway).
// One thread owns stdout for the whole process, so its lock is never contended.
#[allow(clippy::disallowed_methods)]
fn serve_stdio(cfg: ringgate_loadtest::fixture::FixtureConfig) {
    let fixture = ringgate_loadtest::fixture::Fixture::new(cfg);
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    for line in stdin.split(b'\n') {
        let Ok(line) = line else { return };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(mut answer) = fixture.stdio(&line) {
            answer.push(b'\n');
            if out.write_all(&answer).and_then(|()| out.flush()).is_err() {
                return;
            }
        }
    }
}
