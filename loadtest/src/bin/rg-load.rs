//! rg-load: an MCP-aware, open- or closed-loop load generator; prints a JSON report.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, out) = match ringgate_loadtest::args::load(&args) {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("rg-load: {e}");
            }
            eprintln!("{}", ringgate_loadtest::args::LOAD_USAGE);
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let report = ringgate_loadtest::load::block_on(|| ringgate_loadtest::load::run(cfg));
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text + "\n") {
                eprintln!("rg-load: cannot write {path}: {e}");
                std::process::exit(1);
            }
        }
        None => println!("{text}"),
    }
}
