//! tftp-load: a TFTP load generator that verifies every byte, and a bulk UDP loopback probe.
//!
//! `tftp-load get --server 127.0.0.1:69 --file f1 --reference /path/f1 -n 512 --blksize 1468
//!  --windowsize 8 [--pid SERVER_PID] [--deadline 90]`
//!   starts N downloads at once (all RRQs in one burst), each on its own socket, from one thread
//!   driven by epoll. Every DATA payload is compared with the reference file at its offset; a
//!   transfer succeeds only when all bytes arrived, in order, and match. Client behaviour follows
//!   RFC 1350/2347/2348/7440: ACK at the end of each window (or of the file), ACK the last
//!   in-order block once when a block is missing, retransmit the last packet after a timeout with
//!   exponential backoff (1, 2, 4, 8, 8, 8 s), ERROR 5 to packets from a foreign transfer id.
//!   With --pid it samples the server's memory (Pss of the process and its descendants) every
//!   200 ms and reads its VmHWM at the end.
//!   Prints one JSON object.
//!
//! `tftp-load probe --secs 2` sends 1472-byte datagrams from one thread to another over
//!   loopback (sendmmsg/recvmmsg) and prints the delivered rate: the machine's UDP limit.
//!   With `--gso 8` the sender hands the kernel 8 datagrams per sendmsg (UDP_SEGMENT), as a
//!   server sending a TFTP window of 8 can: the limit for such a server.
//!
//! `tftp-load lockstep -n 64 [--window 8] --secs 2` is the limit of a TFTP-shaped exchange: n
//!   socket pairs, a "server" thread that answers each 4-byte ACK with a window of 1472-byte
//!   datagrams (one send, UDP_SEGMENT when the window is above 1) and a "client" thread that
//!   reads each datagram with one recv and sends a 4-byte ACK after each window (epoll, no
//!   protocol work, no verification). Prints the rate and each thread's CPU per datagram: the
//!   least such a server and client cost on this machine.
//!
//! No dependency but libc; std sockets for everything else.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("get") => get(&args[1..]),
        Some("probe") => probe(&args[1..]),
        Some("lockstep") => lockstep(&args[1..]),
        _ => Err("usage: tftp-load get|probe|lockstep [options] (see the source's header)".to_string()),
    };
    if let Err(e) = r {
        eprintln!("tftp-load: {e}");
        std::process::exit(2);
    }
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match opt(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
    }
}

fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn set_int_opt(fd: i32, level: i32, name: i32, v: i32) {
    // SAFETY: pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(fd, level, name, (&v as *const i32).cast(), std::mem::size_of::<i32>() as u32);
    }
}

// -------------------------------------------------------------------------------------------------
// get

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    Requested,
    Data,
    Done,
    Failed,
}

struct Xfer {
    sock: UdpSocket,
    tid: Option<SocketAddr>,
    state: State,
    /// Next block expected (1-based, unwrapped).
    next: u64,
    offset: usize,
    blksize: usize,
    window: u64,
    last_acked: u64,
    gap_acked: bool,
    /// The packet to retransmit on timeout (RRQ, then the last ACK).
    last_pkt: Vec<u8>,
    rto: Duration,
    deadline: Instant,
    retries: u32,
    start: Instant,
    end: Option<Instant>,
    fail: Option<String>,
}

const MAX_RETRIES: u32 = 6;
const FIRST_RTO: Duration = Duration::from_secs(1);
const MAX_RTO: Duration = Duration::from_secs(8);

#[derive(Default)]
struct Stats {
    dup_blocks: u64,
    foreign_tid: u64,
    client_retransmits: u64,
    granted_blksize: u64,
    granted_window: u64,
}

fn ack(block: u64) -> Vec<u8> {
    let b = block as u16;
    vec![0, 4, (b >> 8) as u8, b as u8]
}

fn rrq(file: &str, blksize: u16, window: u16, tsize: bool) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(file.as_bytes());
    p.push(0);
    p.extend_from_slice(b"octet\0");
    let mut o = |k: &str, v: String| {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    };
    if blksize != 512 {
        o("blksize", blksize.to_string());
    }
    if tsize {
        o("tsize", "0".into());
    }
    if window > 1 {
        o("windowsize", window.to_string());
    }
    p
}

fn parse_oack(p: &[u8]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut parts = p.get(2..).unwrap_or(&[]).split(|&c| c == 0);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.is_empty() {
            break;
        }
        m.insert(String::from_utf8_lossy(k).to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned());
    }
    m
}

impl Xfer {
    fn send(&mut self, pkt: Vec<u8>, now: Instant) {
        if let Some(tid) = self.tid {
            let _ = self.sock.send_to(&pkt, tid);
        }
        self.last_pkt = pkt;
        self.rto = FIRST_RTO;
        self.retries = 0;
        self.deadline = now + self.rto;
    }

    fn finish(&mut self, ok: Result<(), String>, now: Instant) {
        self.end = Some(now);
        match ok {
            Ok(()) => self.state = State::Done,
            Err(e) => {
                self.state = State::Failed;
                self.fail = Some(e);
            }
        }
    }

    fn on_packet(&mut self, p: &[u8], from: SocketAddr, reference: &[u8], st: &mut Stats, now: Instant) {
        if matches!(self.state, State::Done | State::Failed) {
            return;
        }
        match self.tid {
            None => self.tid = Some(from),
            Some(t) if t != from => {
                st.foreign_tid += 1;
                let _ = self.sock.send_to(b"\0\x05\0\x05unknown transfer id\0", from);
                return;
            }
            _ => {}
        }
        if p.len() < 4 {
            return self.finish(Err("malformed packet".into()), now);
        }
        let op = u16::from_be_bytes([p[0], p[1]]);
        let b = u16::from_be_bytes([p[2], p[3]]);
        match op {
            6 => {
                let o = parse_oack(p);
                if let Some(v) = o.get("blksize") {
                    self.blksize = v.parse().unwrap_or(0);
                    if self.blksize < 8 {
                        return self.finish(Err("bad blksize in OACK".into()), now);
                    }
                }
                self.window = o.get("windowsize").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
                if let Some(t) = o.get("tsize") {
                    if t.parse::<usize>().ok() != Some(reference.len()) {
                        return self.finish(Err(format!("tsize {t} != {}", reference.len())), now);
                    }
                }
                st.granted_blksize = self.blksize as u64;
                st.granted_window = self.window;
                if self.state == State::Requested {
                    self.state = State::Data;
                }
                if self.next == 1 {
                    self.send(ack(0), now);
                }
            }
            3 => {
                if self.state == State::Requested {
                    // No OACK: the server ignored every option (RFC 1350 defaults).
                    self.state = State::Data;
                    self.blksize = 512;
                    self.window = 1;
                    st.granted_blksize = 512;
                    st.granted_window = 1;
                }
                let payload = &p[4..];
                if b == self.next as u16 {
                    let end = self.offset + payload.len();
                    if payload.len() > self.blksize {
                        return self.finish(Err("block larger than blksize".into()), now);
                    }
                    if reference.get(self.offset..end) != Some(payload) {
                        return self.finish(Err("data differs from the file".into()), now);
                    }
                    self.offset = end;
                    let n = self.next;
                    self.next += 1;
                    self.gap_acked = false;
                    if payload.len() < self.blksize {
                        if end != reference.len() {
                            return self.finish(Err("file too short".into()), now);
                        }
                        let a = ack(n);
                        if let Some(tid) = self.tid {
                            let _ = self.sock.send_to(&a, tid);
                        }
                        return self.finish(Ok(()), now);
                    }
                    if n - self.last_acked >= self.window {
                        self.last_acked = n;
                        self.send(ack(n), now);
                    } else {
                        // Progress within a window: restart the timer, nothing to send yet.
                        self.rto = FIRST_RTO;
                        self.retries = 0;
                        self.deadline = now + self.rto;
                    }
                } else {
                    st.dup_blocks += 1;
                    if !self.gap_acked && self.next > 1 {
                        self.gap_acked = true;
                        self.last_acked = self.next - 1;
                        self.send(ack(self.next - 1), now);
                    } else if !self.gap_acked && self.window > 1 {
                        self.gap_acked = true;
                        self.send(ack(0), now);
                    }
                }
            }
            5 => {
                let msg = String::from_utf8_lossy(p[4..].split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
                self.finish(Err(format!("server error {b}: {msg}")), now);
            }
            _ => self.finish(Err(format!("unexpected opcode {op}")), now),
        }
    }

    fn on_timer(&mut self, server: SocketAddr, st: &mut Stats, now: Instant) {
        if matches!(self.state, State::Done | State::Failed) || now < self.deadline {
            return;
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return self.finish(Err("client timeout".into()), now);
        }
        st.client_retransmits += 1;
        let to = self.tid.unwrap_or(server);
        let _ = self.sock.send_to(&self.last_pkt, to);
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.deadline = now + self.rto;
    }
}

struct Epoll(i32);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(fd))
    }
    fn add(&self, fd: i32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: live event struct.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn del(&self, fd: i32) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as above.
        unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }
    fn wait(&self, evs: &mut [libc::epoll_event], ms: i32) -> usize {
        // SAFETY: writable buffer of evs.len() entries.
        let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), evs.len() as i32, ms) };
        n.max(0) as usize
    }
}

/// Memory of a process tree: sampled sum of Pss (kB) of `pid` and its descendants.
struct MemSampler {
    pid: i32,
    peak_tree_pss_kb: u64,
    peak_procs: usize,
    last: Instant,
}

fn read_field_kb(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

impl MemSampler {
    fn descendants(&self) -> Vec<i32> {
        let mut parent: Vec<(i32, i32)> = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
                // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
                let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
                let ppid = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                parent.push((pid, ppid));
            }
        }
        let mut tree = vec![self.pid];
        let mut grew = true;
        while grew {
            grew = false;
            for &(p, pp) in &parent {
                if tree.contains(&pp) && !tree.contains(&p) {
                    tree.push(p);
                    grew = true;
                }
            }
        }
        tree
    }

    fn sample(&mut self) {
        let tree = self.descendants();
        let mut pss = 0;
        for p in &tree {
            pss += read_field_kb(&format!("/proc/{p}/smaps_rollup"), "Pss:")
                .or_else(|| read_field_kb(&format!("/proc/{p}/status"), "VmRSS:"))
                .unwrap_or(0);
        }
        self.peak_tree_pss_kb = self.peak_tree_pss_kb.max(pss);
        self.peak_procs = self.peak_procs.max(tree.len());
        self.last = Instant::now();
    }
}

/// CPU seconds (user + system) used so far by the process `pid`, its live descendants and the
/// children it has reaped (a forking server's finished transfers); 0 without a pid.
fn tree_cpu_s(pid: i32) -> f64 {
    if pid <= 0 {
        return 0.0;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // Fields after the command (which may hold spaces): state is field 3, utime 14 ... cstime 17.
    let ticks = |p: i32, children: bool| -> u64 {
        let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { return 0 };
        let Some(rest) = st.rfind(')').map(|i| &st[i + 2..]) else { return 0 };
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        let own = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        own + if children { f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0) } else { 0 }
    };
    let sampler = MemSampler { pid, peak_tree_pss_kb: 0, peak_procs: 0, last: Instant::now() };
    let live: u64 = sampler.descendants().into_iter().filter(|&d| d != pid).map(|d| ticks(d, false)).sum();
    (ticks(pid, true) + live) as f64 / hz
}

/// CPU seconds (user + system) this process has used.
fn self_cpu_s() -> f64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn get(args: &[String]) -> Result<(), String> {
    let server: SocketAddr = opt(args, "--server").ok_or("--server")?.parse().map_err(|_| "--server: ip:port")?;
    let file = opt(args, "--file").ok_or("--file")?.to_string();
    let reference = std::fs::read(opt(args, "--reference").ok_or("--reference")?).map_err(|e| e.to_string())?;
    let n: usize = num(args, "-n", 1)?;
    let blksize: u16 = num(args, "--blksize", 1468)?;
    let window: u16 = num(args, "--windowsize", 1)?;
    let deadline_s: f64 = num(args, "--deadline", 90.0)?;
    let pid: i32 = num(args, "--pid", 0)?;
    let tsize = !args.iter().any(|a| a == "--no-tsize");
    raise_nofile(n as u64 + 64);

    let local: SocketAddr = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
    let ep = Epoll::new().map_err(|e| e.to_string())?;
    let req = rrq(&file, blksize, window, tsize);
    let mut xs: Vec<Xfer> = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let sock = UdpSocket::bind(local).map_err(|e| format!("socket {i}: {e}"))?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        set_int_opt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20);
        ep.add(sock.as_raw_fd(), i as u64).map_err(|e| e.to_string())?;
        xs.push(Xfer {
            sock,
            tid: None,
            state: State::Requested,
            next: 1,
            offset: 0,
            blksize: 512,
            window: 1,
            last_acked: 0,
            gap_acked: false,
            last_pkt: req.clone(),
            rto: FIRST_RTO,
            deadline: t0 + FIRST_RTO,
            retries: 0,
            start: t0,
            end: None,
            fail: None,
        });
    }
    let mut mem = (pid > 0).then_some(MemSampler { pid, peak_tree_pss_kb: 0, peak_procs: 0, last: t0 });
    if let Some(m) = mem.as_mut() {
        m.sample();
    }
    let (srv_cpu0, cli_cpu0) = (tree_cpu_s(pid), self_cpu_s());
    // The burst: every RRQ at once, as after a power cut.
    let start = Instant::now();
    for x in xs.iter_mut() {
        x.start = Instant::now();
        x.deadline = x.start + FIRST_RTO;
        let _ = x.sock.send_to(&req, server);
    }
    let mut st = Stats::default();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 65536];
    let mut open = n;
    let mut last_timer = Instant::now();
    let hard_deadline = start + Duration::from_secs_f64(deadline_s);
    while open > 0 {
        let k = ep.wait(&mut evs, 20);
        let now = Instant::now();
        for e in &evs[..k] {
            let i = e.u64 as usize;
            for _ in 0..64 {
                let x = &mut xs[i];
                match x.sock.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        let was_open = !matches!(x.state, State::Done | State::Failed);
                        x.on_packet(&buf[..len], from, &reference, &mut st, now);
                        if was_open && matches!(x.state, State::Done | State::Failed) {
                            open -= 1;
                            ep.del(x.sock.as_raw_fd());
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_timer) >= Duration::from_millis(20) {
            last_timer = now;
            for x in xs.iter_mut() {
                let was_open = !matches!(x.state, State::Done | State::Failed);
                if !was_open {
                    continue;
                }
                if now >= hard_deadline {
                    x.finish(Err("bench deadline".into()), now);
                } else {
                    x.on_timer(server, &mut st, now);
                }
                if matches!(x.state, State::Done | State::Failed) {
                    open -= 1;
                    ep.del(x.sock.as_raw_fd());
                }
            }
        }
        if let Some(m) = mem.as_mut() {
            if now.duration_since(m.last) >= Duration::from_millis(200) {
                m.sample();
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = (tree_cpu_s(pid) - srv_cpu0, self_cpu_s() - cli_cpu0);
    if let Some(m) = mem.as_mut() {
        m.sample();
    }
    let hwm = (pid > 0).then(|| read_field_kb(&format!("/proc/{pid}/status"), "VmHWM:")).flatten().unwrap_or(0);
    let mut times: Vec<f64> = Vec::new();
    let mut failures: HashMap<String, u64> = HashMap::new();
    let mut ok = 0u64;
    for x in &xs {
        let d = x.end.map(|e| e.duration_since(x.start).as_secs_f64()).unwrap_or(wall);
        times.push(d);
        match x.state {
            State::Done => ok += 1,
            _ => *failures.entry(x.fail.clone().unwrap_or_else(|| "unfinished".into())).or_default() += 1,
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let bytes = ok * reference.len() as u64;
    // Verified bytes received in order, complete files or not (a cut transfer still moved them).
    let verified: u64 = xs.iter().map(|x| x.offset as u64).sum();
    let fails: Vec<String> =
        failures.iter().map(|(k, v)| format!("\"{}\":{v}", k.replace('\\', "\\\\").replace('"', "'"))).collect();
    println!(
        "{{\"n\":{n},\"ok\":{ok},\"failed\":{},\"failures\":{{{}}},\"bytes\":{bytes},\"wall_s\":{wall:.4},\
         \"mb_s\":{:.2},\"verified_bytes\":{verified},\"verified_mb_s\":{:.2},\"p50_s\":{:.4},\"p99_s\":{:.4},\"max_s\":{:.4},\"granted_blksize\":{},\
         \"granted_window\":{},\"dup_blocks\":{},\"foreign_tid\":{},\"client_retransmits\":{},\
         \"server_peak_pss_kb\":{},\"server_procs\":{},\"server_vmhwm_kb\":{hwm},\"setup_s\":{:.3},\
         \"server_cpu_s\":{server_cpu:.3},\"client_cpu_s\":{client_cpu:.3}}}",
        n as u64 - ok,
        fails.join(","),
        bytes as f64 / wall / 1e6,
        verified as f64 / wall / 1e6,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0),
        st.granted_blksize,
        st.granted_window,
        st.dup_blocks,
        st.foreign_tid,
        st.client_retransmits,
        mem.as_ref().map_or(0, |m| m.peak_tree_pss_kb),
        mem.as_ref().map_or(0, |m| m.peak_procs),
        start.duration_since(t0).as_secs_f64(),
    );
    Ok(())
}

// -------------------------------------------------------------------------------------------------
// probe

fn probe(args: &[String]) -> Result<(), String> {
    let secs: f64 = num(args, "--secs", 2.0)?;
    let size: usize = num(args, "--size", 1472)?;
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    set_int_opt(rx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20);
    rx.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    let to = rx.local_addr().map_err(|e| e.to_string())?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    tx.connect(to).map_err(|e| e.to_string())?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let gso: usize = num(args, "--gso", 0)?;
    check_datagrams(size, gso.max(1))?;
    if gso > 1 {
        return probe_gso(tx, rx, size, gso, secs);
    }
    let sender = std::thread::spawn(move || {
        let buf = vec![0x5au8; size];
        let mut iov: Vec<libc::iovec> =
            (0..64).map(|_| libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: size }).collect();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: zeroed mmsghdr is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: live headers pointing at `buf`.
            let r = unsafe { libc::sendmmsg(tx.as_raw_fd(), hdrs.as_mut_ptr(), 64, 0) };
            if r > 0 {
                sent += r as u64 * size as u64;
            }
        }
        sent
    });
    let (got, wall) = recv_bulk(&rx, secs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap_or(0);
    println!(
        "{{\"datagram\":{size},\"secs\":{wall:.3},\"received_mb_s\":{:.2},\"sent_mb_s\":{:.2}}}",
        got as f64 / wall / 1e6,
        sent as f64 / wall / 1e6
    );
    Ok(())
}

/// The bulk probe with a GSO sender: each sendmsg carries `gso` datagrams of `size` bytes
/// (UDP_SEGMENT); the receiver reads datagrams with recvmmsg, as a TFTP client does.
fn probe_gso(tx: UdpSocket, rx: UdpSocket, size: usize, gso: usize, secs: f64) -> Result<(), String> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sender = std::thread::spawn(move || {
        let buf = vec![0x5au8; size * gso];
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let r = send_segmented(tx.as_raw_fd(), &buf, size);
            if r > 0 {
                sent += r as u64;
            } else if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EIO) {
                return Err("UDP_SEGMENT refused (EIO)".to_string());
            }
        }
        Ok(sent)
    });
    let (got, wall) = recv_bulk(&rx, secs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().map_err(|_| "sender panicked".to_string())??;
    println!(
        "{{\"datagram\":{size},\"gso\":{gso},\"secs\":{wall:.3},\"received_mb_s\":{:.2},\"sent_mb_s\":{:.2}}}",
        got as f64 / wall / 1e6,
        sent as f64 / wall / 1e6
    );
    Ok(())
}

/// `count` datagrams of `size` bytes must fit one UDP send (65507 bytes of payload at most).
fn check_datagrams(size: usize, count: usize) -> Result<(), String> {
    if size == 0 || size.saturating_mul(count) > 65507 {
        return Err(format!("--size {size} x {count} datagrams per send: each send carries 1 to 65507 bytes"));
    }
    Ok(())
}

/// Reads datagrams from `rx` with recvmmsg for `secs`: (bytes, seconds).
fn recv_bulk(rx: &UdpSocket, secs: f64) -> (u64, f64) {
    let mut got = 0u64;
    let mut bufs = vec![0u8; 64 * 2048];
    let mut iov: Vec<libc::iovec> = bufs
        .chunks_mut(2048)
        .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: 2048 })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: zeroed mmsghdr is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        // SAFETY: live headers pointing into `bufs`; the socket's SO_RCVTIMEO bounds the wait.
        let r = unsafe { libc::recvmmsg(rx.as_raw_fd(), hdrs.as_mut_ptr(), 64, 0, std::ptr::null_mut()) };
        if r > 0 {
            for h in &hdrs[..r as usize] {
                got += u64::from(h.msg_len);
            }
        }
    }
    (got, t0.elapsed().as_secs_f64())
}

// -------------------------------------------------------------------------------------------------
// lockstep

/// CPU time of the calling thread (user + system), seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A sendmsg of `buf` on a connected socket, cut by the kernel into datagrams of `seg` bytes
/// (UDP_SEGMENT) when `seg` is below the buffer's length.
fn send_segmented(fd: i32, buf: &[u8], seg: usize) -> isize {
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    let mut control = [0u64; 4];
    // SAFETY: zeroed msghdr is valid; the pointers stay live for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if seg < buf.len() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the 32-byte control buffer holds one cmsg of a u16.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
        }
    }
    // SAFETY: `msg` points at live buffers.
    unsafe { libc::sendmsg(fd, &msg, 0) }
}

/// One side of the lock-step probe, until `stop`. The server side answers each ACK with a
/// window of `window` datagrams of `size` bytes (one sendmsg with UDP_SEGMENT when the window is
/// above 1); the client side sends a 4-byte ACK after every `window` datagrams it reads. Reads
/// are one recv per datagram. Returns (datagrams read, bytes read, CPU seconds).
fn lockstep_side(
    socks: Vec<UdpSocket>,
    server: bool,
    size: usize,
    window: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<(u64, u64, f64)> {
    let ep = Epoll::new()?;
    for (i, s) in socks.iter().enumerate() {
        ep.add(s.as_raw_fd(), i as u64)?;
    }
    let data = vec![0x5au8; size * window];
    let ack = [0u8, 4, 0, 0];
    let mut seen = vec![0usize; socks.len()];
    let mut buf = vec![0u8; 2048];
    if !server {
        for s in &socks {
            s.send(&ack)?;
        }
    }
    let c0 = thread_cpu();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let (mut got, mut bytes) = (0u64, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let n = ep.wait(&mut evs, 100);
        for ev in &evs[..n] {
            let i = ev.u64 as usize;
            let fd = socks[i].as_raw_fd();
            loop {
                // SAFETY: a writable buffer of buf.len() bytes.
                let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
                if r <= 0 {
                    break;
                }
                got += 1;
                bytes += r as u64;
                if server {
                    send_segmented(fd, &data, size);
                } else {
                    seen[i] += 1;
                    if seen[i].is_multiple_of(window) {
                        // SAFETY: a readable 4-byte buffer.
                        unsafe { libc::send(fd, ack.as_ptr().cast(), ack.len(), 0) };
                    }
                }
            }
        }
    }
    Ok((got, bytes, thread_cpu() - c0))
}

fn lockstep(args: &[String]) -> Result<(), String> {
    let secs: f64 = num(args, "--secs", 2.0)?;
    let n: usize = num(args, "-n", 64)?;
    let size: usize = num(args, "--size", 1472)?;
    let window: usize = num::<usize>(args, "--window", 1)?.max(1);
    check_datagrams(size, window)?;
    raise_nofile(2 * n as u64 + 64);
    let mut servers = Vec::with_capacity(n);
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let a = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let b = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        a.connect(b.local_addr().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        b.connect(a.local_addr().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        servers.push(a);
        clients.push(b);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s1, s2) = (stop.clone(), stop.clone());
    let server = std::thread::spawn(move || lockstep_side(servers, true, size, window, s1));
    let client = std::thread::spawn(move || lockstep_side(clients, false, size, window, s2));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let (_, _, srv_cpu) = server.join().map_err(|_| "server side panicked")?.map_err(|e| e.to_string())?;
    let (blocks, data, cli_cpu) =
        client.join().map_err(|_| "client side panicked")?.map_err(|e| e.to_string())?;
    let per = |cpu: f64| if blocks > 0 { cpu / blocks as f64 * 1e6 } else { 0.0 };
    println!(
        "{{\"n\":{n},\"window\":{window},\"datagram\":{size},\"secs\":{wall:.3},\"received_mb_s\":{:.2},\"blocks_s\":{:.0},\"server_us_per_block\":{:.2},\"client_us_per_block\":{:.2}}}",
        data as f64 / wall / 1e6,
        blocks as f64 / wall,
        per(srv_cpu),
        per(cli_cpu)
    );
    Ok(())
}
