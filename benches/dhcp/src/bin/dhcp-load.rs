//! Load generator for the proxyDHCP benchmark, and the UDP echo probe.
//!
//! `dhcp-load echo-server IFACE PORT`: echoes every datagram back (one thread, the way a good UDP
//! server answers: up to 64 datagrams read with one recvmmsg, sent back with one sendmmsg; the
//! probe of what one core of this machine can answer on this path).
//! `dhcp-load run CASE IFACE CLIENT_IP SERVER_IP RATE SECS [PORT]`: sends RATE requests/s for SECS
//! seconds and prints one JSON line: sent, received (unique replies matched by xid), loss_pct,
//! send_rate, recv_rate, p50_us, p90_us, p99_us, p999_us, max_us. CASE is `discover0` (BIOS PXE ROM
//! DISCOVER, broadcast to 67), `discover7` (UEFI x64), `request4011` (PXE boot server REQUEST,
//! unicast to 4011) or `echo` (300-byte datagrams to PORT). Replies are received on port 68
//! (broadcast OFFERs) of the same socket. Bounded: SECS is capped at 30 and RATE at 2,000,000.
//!
//! Sending: paced in small batches, one sendmmsg per tick; the tick is the time of
//! [`PACE_BATCH`] requests at RATE, within [`MIN_TICK`]..[`MAX_TICK`], slept to absolute
//! deadlines (timer slack 1 ns). Each request's send time is CLOCK_REALTIME read right before its
//! sendmmsg. Receiving: recvmmsg of up to 64 replies per call; each reply's latency is its kernel
//! receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME) minus its send time, so the receiving
//! thread's own wake-up delay is not counted as the server's.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests per sendmmsg at the pacing tick (more when the sender fell behind).
const PACE_BATCH: f64 = 4.0;
const MIN_TICK: Duration = Duration::from_micros(20);
const MAX_TICK: Duration = Duration::from_millis(1);
/// Datagrams per recvmmsg / sendmmsg call.
const MMSG: usize = 64;
const SLOT: usize = 2048;

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

fn set_int(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) {
    // SAFETY: valid fd and a pointer to an int for the duration of the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// CLOCK_REALTIME in nanoseconds (the clock of SO_TIMESTAMPNS).
fn realtime_ns() -> u64 {
    // SAFETY: clock_gettime writes one timespec into a live local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Slots and headers for one recvmmsg or sendmmsg of up to MMSG datagrams, with room for each
/// datagram's address and control messages (the receive timestamp).
struct Mmsg {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    ctrl: Vec<[u64; 8]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new() -> Self {
        // SAFETY: sockaddr_in and mmsghdr are plain old data for which all-zero is valid (the
        // pointers are set before every call).
        let (addr, hdr): (libc::sockaddr_in, libc::mmsghdr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        Self { data: vec![0; MMSG * SLOT], addrs: vec![addr; MMSG], ctrl: vec![[0; 8]; MMSG], iovs: vec![iov; MMSG], hdrs: vec![hdr; MMSG] }
    }

    /// Points header `i` at data slot `i` (`len` bytes), address `i` and control buffer `i`.
    fn prepare(&mut self, i: usize, len: usize, with_addr: bool) {
        self.iovs[i] = libc::iovec { iov_base: self.data[i * SLOT..].as_mut_ptr().cast(), iov_len: len };
        let h = &mut self.hdrs[i].msg_hdr;
        if with_addr {
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        } else {
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
        }
        h.msg_iov = &mut self.iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = self.ctrl[i].as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
        h.msg_flags = 0;
        self.hdrs[i].msg_len = 0;
    }

    /// recvmmsg of up to MMSG datagrams with `flags`; 0 on a timeout or an error.
    fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> usize {
        for i in 0..MMSG {
            self.prepare(i, SLOT, true);
        }
        // SAFETY: every header points at live slots of self of the stated lengths.
        let n = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), MMSG as libc::c_uint, flags, std::ptr::null_mut()) };
        n.max(0) as usize
    }

    /// Sends headers 0..count as they are (data, address), with no control messages.
    fn send(&mut self, fd: RawFd, count: usize) -> usize {
        let mut done = 0;
        for h in &mut self.hdrs[..count] {
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
        }
        while done < count {
            // SAFETY: headers done..count point at live slots of self.
            let n = unsafe {
                libc::sendmmsg(fd, self.hdrs[done..].as_mut_ptr(), (count - done) as libc::c_uint, 0)
            };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        done
    }

    fn payload(&self, i: usize) -> &[u8] {
        let n = (self.hdrs[i].msg_len as usize).min(SLOT);
        &self.data[i * SLOT..i * SLOT + n]
    }

    /// The kernel receive timestamp (SCM_TIMESTAMPNS) of datagram `i`, in ns.
    fn rx_time(&self, i: usize) -> Option<u64> {
        // SAFETY: the control buffer belongs to self and the kernel set msg_controllen within its
        // size.
        unsafe { bootgate_io::dhcp::rx_timestamp_ns(&self.hdrs[i].msg_hdr) }
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
    set_int(&sock, libc::SO_RCVBUF, 1 << 20);
    println!("ready");
    let fd = sock.as_raw_fd();
    let mut m = Mmsg::new();
    loop {
        // Blocks for the first datagram, then takes whatever else is queued (up to MMSG).
        let n = m.recv(fd, libc::MSG_WAITFORONE);
        for i in 0..n {
            let len = m.hdrs[i].msg_len as usize;
            m.iovs[i].iov_len = len.min(SLOT);
        }
        m.send(fd, n);
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
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer; it only affects this thread's sleeps
    // (and the receiver's, which inherits it).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).expect("bind port 68 (root, own namespace)");
    sock.set_broadcast(true).unwrap();
    bind_device(&sock, iface);
    // FORCE (root): past net.core.rmem_max, so the generator's own socket is never what drops.
    set_int(&sock, libc::SO_RCVBUFFORCE, 32 << 20);
    set_int(&sock, libc::SO_SNDBUF, 8 << 20);
    set_int(&sock, libc::SO_TIMESTAMPNS, 1);
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
            let mut m = Mmsg::new();
            let mut last = start;
            let mut untimed = 0u64;
            while !done.load(Ordering::Relaxed) {
                let n = m.recv(sock.as_raw_fd(), libc::MSG_WAITFORONE);
                if n == 0 {
                    continue;
                }
                let fallback = realtime_ns();
                for i in 0..n {
                    let buf = m.payload(i);
                    // Replies are BOOTREPLYs; the echo probe returns our own request (op 1). Our
                    // own broadcasts looping back are requests too: never counted as DHCP replies.
                    if buf.len() < 8 || buf[0] != want_op {
                        continue;
                    }
                    let xid = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                    if xid == 0 || xid > seen.len() || seen[xid - 1] {
                        continue;
                    }
                    seen[xid - 1] = true;
                    let at = m.rx_time(i).unwrap_or_else(|| {
                        untimed += 1;
                        fallback
                    });
                    let t = sent_at[xid - 1].load(Ordering::Relaxed);
                    lat_us.push((at.saturating_sub(t) / 1000) as u32);
                }
                last = Instant::now();
            }
            (lat_us, last, untimed)
        })
    };
    let template = template(case, client, server);
    // SAFETY: sockaddr_in is plain old data.
    let mut dest_sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    dest_sa.sin_family = libc::AF_INET as libc::sa_family_t;
    dest_sa.sin_port = dest.port().to_be();
    dest_sa.sin_addr.s_addr = u32::from(*dest.ip()).to_be();
    let mut m = Mmsg::new();
    for i in 0..MMSG {
        m.data[i * SLOT..i * SLOT + template.len()].copy_from_slice(&template);
        m.addrs[i] = dest_sa;
        m.prepare(i, template.len(), true);
    }
    let tick = Duration::from_secs_f64(PACE_BATCH / rate as f64).clamp(MIN_TICK, MAX_TICK);
    let mut sent = 0usize;
    let mut errors = 0u64;
    let mut next = start;
    let fd = sock.as_raw_fd();
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        while sent < due {
            let k = (due - sent).min(MMSG);
            for i in 0..k {
                let xid = (sent + i + 1) as u32;
                let p = &mut m.data[i * SLOT..];
                p[4..8].copy_from_slice(&xid.to_be_bytes());
                p[31..34].copy_from_slice(&xid.to_be_bytes()[1..]);
                m.prepare(i, template.len(), true);
            }
            let now = realtime_ns();
            for t in &sent_at[sent..sent + k] {
                t.store(now, Ordering::Relaxed);
            }
            let n = m.send(fd, k);
            errors += (k - n) as u64;
            sent += k;
        }
        next += tick;
        let now = Instant::now();
        if next > now {
            sleep_until(next, now);
        } else {
            // Behind: no catch-up burst of ticks (`due` already covers the backlog), and let the
            // receiver run (it shares this CPU when pinned; under SCHED_FIFO only a yield lets it).
            next = now;
            // SAFETY: no arguments.
            unsafe { libc::sched_yield() };
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    // Stragglers: up to 500 ms after the last send.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let (mut lat, last, untimed) = receiver.join().unwrap();
    let (cpu_ms, runq_ms) = schedstat();
    lat.sort_unstable();
    let pct = |p: f64| if lat.is_empty() { 0 } else { lat[((lat.len() - 1) as f64 * p) as usize] };
    let received = lat.len();
    let recv_secs = last.duration_since(start).as_secs_f64().max(1e-9);
    println!(
        "{{\"case\":\"{case}\",\"rate\":{rate},\"sent\":{total},\"send_errors\":{errors},\"received\":{received},\
         \"loss_pct\":{:.3},\"send_rate\":{:.0},\"recv_rate\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\
         \"p999_us\":{},\"max_us\":{},\"untimed\":{untimed},\"tick_us\":{},\"gen_cpu_ms\":{cpu_ms:.1},\
         \"gen_runq_ms\":{runq_ms:.1}}}",
        100.0 * (total - received) as f64 / total as f64,
        total as f64 / send_secs,
        received as f64 / recv_secs,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0),
        tick.as_micros()
    );
}

/// This process's threads: time on a CPU and time runnable but waiting for one (ms), from
/// /proc/self/task/*/schedstat (0 when the kernel does not keep schedstats).
fn schedstat() -> (f64, f64) {
    let mut sum = (0u64, 0u64);
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if v.len() >= 2 {
            sum.0 += v[0];
            sum.1 += v[1];
        }
    }
    (sum.0 as f64 / 1e6, sum.1 as f64 / 1e6)
}

/// Sleeps until `until` (monotonic), as one clock_nanosleep to an absolute deadline.
fn sleep_until(until: Instant, now: Instant) {
    // SAFETY: clock_gettime / clock_nanosleep with live timespec locals.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        let wait = until.saturating_duration_since(now);
        let mut ns = ts.tv_nsec as u64 + wait.subsec_nanos() as u64;
        ts.tv_sec += wait.as_secs() as libc::time_t + (ns / 1_000_000_000) as libc::time_t;
        ns %= 1_000_000_000;
        ts.tv_nsec = ns as _;
        libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut());
    }
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
