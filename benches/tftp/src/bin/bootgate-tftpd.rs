//! bootgate-tftpd: bootgate's TFTP engine alone, for the benchmark (what `bootgate serve` runs,
//! without the Python process around it). Drains events every 50 ms, as the Python pump does.
//!
//! `bootgate-tftpd --bind 127.0.0.1:6969 --root DIR [--max-transfers 4096] [--max-blksize 1468]
//!  [--max-queued 4096] [--max-per-client 0] [--single-port]`
//! Runs until killed.

use std::time::Duration;

use bootgate_io::tftp::{TftpEngine, TftpLimits, TftpSettings};

fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bind = opt(&args, "--bind").unwrap_or_else(|| "127.0.0.1:6969".into());
    let root = opt(&args, "--root").expect("--root DIR");
    let num = |name: &str, d: u64| opt(&args, name).map(|v| v.parse::<u64>().expect(name)).unwrap_or(d);
    let settings = TftpSettings {
        bind: bind.parse().expect("--bind ip:port"),
        root: root.into(),
        max_blksize: num("--max-blksize", 1468) as u16,
        timeout_ms: num("--timeout-ms", 1000),
        retries: num("--retries", 5) as u32,
        max_transfers: num("--max-transfers", 4096) as usize,
    };
    let limits = TftpLimits {
        max_queued: num("--max-queued", 4096) as usize,
        max_per_client: num("--max-per-client", 0) as usize,
        single_port: args.iter().any(|a| a == "--single-port"),
    };
    let engine = TftpEngine::start_with(settings, limits).unwrap_or_else(|e| {
        eprintln!("bootgate-tftpd: {e}");
        std::process::exit(1)
    });
    eprintln!("bootgate-tftpd: listening on {}", engine.local_addr());
    let mut events = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        events += engine.drain_events(65536).len() as u64;
        if std::env::var_os("BOOTGATE_TFTPD_VERBOSE").is_some() && events > 0 {
            eprintln!("{:?}", engine.counters());
        }
    }
}
