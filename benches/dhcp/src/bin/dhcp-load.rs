//! Load generator for the proxyDHCP benchmark, and the UDP echo probe.
//!
//! `dhcp-load echo-server IFACE PORT`: echoes every datagram back (one thread; the probe of what
//! one core of this machine can answer).
//! `dhcp-load run CASE IFACE CLIENT_IP SERVER_IP RATE SECS [PORT]`: sends RATE requests/s for SECS
//! seconds and prints one JSON line: sent, received (unique replies matched by xid), loss_pct,
//! send_rate, recv_rate, p50_us, p99_us, max_us. CASE is `discover0` (BIOS PXE ROM DISCOVER,
//! broadcast to 67), `discover7` (UEFI x64), `request4011` (PXE boot server REQUEST, unicast to
//! 4011) or `echo` (300-byte datagrams to PORT). Replies are received on port 68 (broadcast
//! OFFERs) of the same socket. Bounded: SECS is capped at 30 and RATE at 2,000,000.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bind_device(sock: &UdpSocket, iface: &str) {
    let name = iface.as_bytes();
    // SAFETY: valid fd, pointer and length of the interface name for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_BINDTODEVICE {iface}: {}", std::io::Error::last_os_error());
}

fn set_buf(sock: &UdpSocket, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: valid fd and a pointer to an int for the duration of the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn opt(b: &mut Vec<u8>, code: u8, v: &[u8]) {
    b.push(code);
    b.push(v.len() as u8);
    b.extend_from_slice(v);
}

/// A request of `case` with xid 0 (patched per send at bytes 4..8, chaddr at 28..34).
fn template(case: &str, client: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[28..31].copy_from_slice(&[0x52, 0x54, 0x00]);
    let prl: &[u8] = &[1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 43, 54, 60, 66, 67, 97, 128, 129, 130, 131];
    let uuid: Vec<u8> = std::iter::once(0u8).chain(1..=16).collect();
    match case {
        "discover0" | "discover7" => {
            let arch: u8 = if case == "discover0" { 0 } else { 7 };
            b[10] = 0x80; // broadcast flag, as PXE ROMs set it
            b.extend_from_slice(&[99, 130, 83, 99]);
            opt(&mut b, 53, &[1]);
            opt(&mut b, 57, &[0x04, 0xec]);
            opt(&mut b, 55, prl);
            opt(&mut b, 97, &uuid);
            opt(&mut b, 94, &[1, 2, 1]);
            opt(&mut b, 93, &[0, arch]);
            opt(&mut b, 60, format!("PXEClient:Arch:0000{arch}:UNDI:002001").as_bytes());
        }
        "request4011" => {
            b[12..16].copy_from_slice(&client.octets());
            b.extend_from_slice(&[99, 130, 83, 99]);
            opt(&mut b, 53, &[3]);
            opt(&mut b, 54, &server.octets());
            opt(&mut b, 57, &[0x04, 0xec]);
            opt(&mut b, 55, prl);
            opt(&mut b, 97, &uuid);
            opt(&mut b, 94, &[1, 3, 0]);
            opt(&mut b, 93, &[0, 7]);
            opt(&mut b, 60, b"PXEClient:Arch:00007:UNDI:003000");
            // PXE_BOOT_ITEM (43.71): the boot server type the client picked from the menu and layer 0.
            // dnsmasq numbers its pxe-service entries 0x8000, 0x8001, ... and answers on 4011 only
            // for a listed type: 0x8001 is the UEFI entry of run.py's config. bootgate ignores it.
            opt(&mut b, 43, &[71, 4, 0x80, 0x01, 0, 0, 255]);
        }
        _ => {
            b.extend_from_slice(&[99, 130, 83, 99]);
        }
    }
    b.push(255);
    b.resize(b.len().max(300), 0);
    b
}

fn echo_server(iface: &str, port: u16) {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind echo port");
    bind_device(&sock, iface);
    set_buf(&sock, libc::SO_RCVBUF, 1 << 20);
    println!("ready");
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    }
}

fn run(args: &[String]) {
    let [case, iface, client, server, rate, secs, rest @ ..] = args else {
        eprintln!("usage: dhcp-load run CASE IFACE CLIENT_IP SERVER_IP RATE SECS [PORT]");
        std::process::exit(2);
    };
    let client: Ipv4Addr = client.parse().expect("CLIENT_IP");
    let server: Ipv4Addr = server.parse().expect("SERVER_IP");
    let rate: u64 = rate.parse::<u64>().expect("RATE").clamp(1, 2_000_000);
    let secs: f64 = secs.parse::<f64>().expect("SECS").clamp(0.1, 30.0);
    let total = ((rate as f64) * secs) as usize;
    let dest = match case.as_str() {
        "discover0" | "discover7" => SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        "request4011" => SocketAddrV4::new(server, 4011),
        "echo" => SocketAddrV4::new(server, rest.first().and_then(|p| p.parse().ok()).unwrap_or(9007)),
        other => panic!("unknown case {other}"),
    };
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).expect("bind port 68 (root, own namespace)");
    sock.set_broadcast(true).unwrap();
    bind_device(&sock, iface);
    set_buf(&sock, libc::SO_RCVBUF, 8 << 20);
    set_buf(&sock, libc::SO_SNDBUF, 8 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let sock = Arc::new(sock);
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let want_op: u8 = if case == "echo" { 1 } else { 2 };
    let receiver = {
        let (sock, sent_at, done) = (Arc::clone(&sock), Arc::clone(&sent_at), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut seen = vec![false; sent_at.len()];
            let mut lat_us: Vec<u32> = Vec::with_capacity(sent_at.len());
            let mut buf = [0u8; 2048];
            let mut last = start;
            while !done.load(Ordering::Relaxed) {
                let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
                // Replies are BOOTREPLYs; the echo probe returns our own request (op 1). Our own
                // broadcasts looping back are requests too, so they never count as DHCP replies.
                if n < 8 || buf[0] != want_op {
                    continue;
                }
                let xid = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                if xid == 0 || xid > seen.len() || seen[xid - 1] {
                    continue;
                }
                seen[xid - 1] = true;
                let now = start.elapsed().as_nanos() as u64;
                let t = sent_at[xid - 1].load(Ordering::Relaxed);
                lat_us.push(((now.saturating_sub(t)) / 1000) as u32);
                last = Instant::now();
            }
            (lat_us, last)
        })
    };
    let mut pkt = template(case, client, server);
    let mut sent = 0usize;
    let mut errors = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        let burst_end = due.min(sent + 512);
        while sent < burst_end {
            let xid = (sent + 1) as u32;
            pkt[4..8].copy_from_slice(&xid.to_be_bytes());
            pkt[31..34].copy_from_slice(&xid.to_be_bytes()[1..]);
            sent_at[sent].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if sock.send_to(&pkt, dest).is_err() {
                errors += 1;
            }
            sent += 1;
        }
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    // Stragglers: up to 500 ms after the last send.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let (mut lat, last) = receiver.join().unwrap();
    lat.sort_unstable();
    let pct = |p: f64| if lat.is_empty() { 0 } else { lat[((lat.len() - 1) as f64 * p) as usize] };
    let received = lat.len();
    let recv_secs = last.duration_since(start).as_secs_f64().max(1e-9);
    println!(
        "{{\"case\":\"{case}\",\"rate\":{rate},\"sent\":{total},\"send_errors\":{errors},\"received\":{received},\
         \"loss_pct\":{:.3},\"send_rate\":{:.0},\"recv_rate\":{:.0},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        100.0 * (total - received) as f64 / total as f64,
        total as f64 / send_secs,
        received as f64 / recv_secs,
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo-server") if args.len() == 4 => echo_server(&args[2], args[3].parse().expect("PORT")),
        Some("run") => run(&args[2..]),
        _ => {
            eprintln!("usage: dhcp-load echo-server IFACE PORT | dhcp-load run CASE IFACE CLIENT_IP SERVER_IP RATE SECS [PORT]");
            std::process::exit(2);
        }
    }
}
