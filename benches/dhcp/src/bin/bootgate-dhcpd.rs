//! bootgate's proxyDHCP engine as a standalone process for the benchmark:
//! `bootgate-dhcpd IFACE SERVER_IP` answers on 67 and 4011 of IFACE until stdin closes, draining
//! events the way the Python service does (every 10 ms), then prints its counters as
//! `name value` lines on stdout. A `stats` line on stdin prints the engine's latency histograms
//! (see `DhcpEngine::latency`) and its counters at once, ending with an `end` line:
//! `latency_bounds_us B1 B2 ...`, `latency_wait N1 ...`, `latency_reply ...`, `latency_work ...` (counts per
//! bucket since start; the last bucket is above the last bound), then `name value` lines.

use std::io::BufRead;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bootgate_io::dhcp::{DhcpEngine, DhcpPolicy, DhcpSettings};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bootgate-dhcpd IFACE SERVER_IP");
        std::process::exit(2);
    }
    let server_ip: Ipv4Addr = args[2].parse().expect("SERVER_IP is an IPv4 address");
    let settings = DhcpSettings {
        interface: Some(args[1].clone()),
        bind_ip: Ipv4Addr::UNSPECIFIED,
        server_ip,
        port: 67,
        pxe_port: 4011,
        client_port: 68,
        broadcast_ip: Ipv4Addr::BROADCAST,
    };
    let policy = DhcpPolicy {
        tftp_server: server_ip,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: format!("https://{server_ip}:8051/boot.ipxe"),
        ..DhcpPolicy::default()
    };
    let engine = Arc::new(DhcpEngine::start(settings, policy).expect("engine starts"));
    engine.set_latency_timing(true);
    let done = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) {
                n += engine.drain_events(4096).len();
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let h = engine.latency();
            let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
            println!("latency_bounds_us {}", join(h.bounds_us));
            println!("latency_wait {}", join(&h.wait));
            println!("latency_reply {}", join(&h.reply));
            println!("latency_work {}", join(&h.work));
            for (name, value) in engine.counters() {
                println!("{name} {value}");
            }
            println!("end");
        }
    }
    done.store(true, Ordering::Relaxed);
    let drained = drainer.join().unwrap_or(0);
    for (name, value) in engine.counters() {
        println!("{name} {value}");
    }
    println!("events_drained {drained}");
}
