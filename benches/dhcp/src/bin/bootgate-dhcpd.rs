//! bootgate's proxyDHCP engine as a standalone process for the benchmark:
//! `bootgate-dhcpd IFACE SERVER_IP` answers on 67 and 4011 of IFACE until stdin closes, draining
//! events the way the Python service does (every 10 ms), then prints its counters as
//! `name value` lines on stdout.

use std::io::Read;
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
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    done.store(true, Ordering::Relaxed);
    let drained = drainer.join().unwrap_or(0);
    for (name, value) in engine.counters() {
        println!("{name} {value}");
    }
    println!("events_drained {drained}");
}
