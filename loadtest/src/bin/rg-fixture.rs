//! rg-fixture: fast fixture upstreams (HTTP, MCP, OpenAI stub) on one port, on one monoio thread.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
