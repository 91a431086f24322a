//! The TFTP engine: read-only RRQ on a dedicated thread, driven by `bootgate_wire::tftp`.
//!
//! CONTRACT (used by bootgate-py; keep these names and fields):
//! - `TftpSettings`, `TftpEvent` as below.
//! - `TftpEngine::start(settings) -> io::Result<TftpEngine>`; `counters(&self)`;
//!   `drain_events(&self, max) -> Vec<TftpEvent>`; `event_fd(&self) -> RawFd`;
//!   `local_addr(&self) -> SocketAddr`; `stop(&mut self)` (also on Drop).
//!
//! How it works: one thread owns the listening socket and, for every accepted RRQ, a socket of
//! its own on an ephemeral port (the RFC 1350 transfer id), connected to the client. The thread
//! waits on all of them with epoll(7) and wakes for the earliest transfer deadline. Each transfer
//! is a [`bootgate_wire::tftp::Transfer`]; the engine only moves bytes and time in and out.
//!
//! Files are resolved inside `root` only (see [`resolve`]), read into memory once, by a loader
//! thread so that reading a large file never stalls the transfers in progress, and shared
//! (`Arc<[u8]>`) by every transfer of the same file; a changed inode, size or mtime reloads it.
//! Write requests are refused with ERROR 2. Beyond `max_transfers` a request waits in a queue
//! (first come, first served; at most `max_queued`, each at most [`QUEUE_WAIT`]) and past that
//! gets ERROR 0 "server busy"; beyond `max_per_client` transfers from one IP address it gets
//! ERROR 0 "too many transfers". Every request that ends (served, failed or refused) yields one
//! [`TftpEvent`].
//!
//! System calls: the listener has a large receive buffer (the RRQ burst of thousands of machines
//! powering on at once) and is read with recvmmsg(2); each window goes out in one sendmsg(2) with
//! UDP_SEGMENT (GSO) where the kernel has it, else in one sendmmsg(2), and a window of one
//! datagram (windowsize 1) in one plain send(2) on the connected socket, without control message
//! or allocation; timers are scanned only when the earliest deadline is due.
//!
//! Scheduling: the oldest [`FULL_SPEED`] transfers in progress are served as fast as their clients
//! acknowledge; a later lock-step one (windowsize 1) gets its first block at once, then one block
//! per [`PACE`] at most until an older transfer ends (windowed transfers always share evenly: their
//! throughput grows with the transfers in flight). After a power cut, thousands of machines then get their boot
//! program one after another (half of them in about half the time) instead of all at the very end,
//! and a client that gives up after a while of its own is not starved by a fair share of nothing.
//!
//! Each transfer holds a socket, so `start` lifts the process's soft RLIMIT_NOFILE towards its hard
//! limit when it is below `max_transfers` + 256.
//!
//! Counters (stable names, see [`COUNTER_NAMES`]), all monotonic except `active_transfers`:
//! - `requests`: RRQ and WRQ received (well-formed or not); `duplicate_requests`: an RRQ repeated
//!   by a client whose transfer has not started yet (ignored: the transfer retransmits itself).
//! - `transfers_started`, `transfers_ok`, `transfers_failed` (timeout, client error, unreachable),
//!   `transfers_declined` (the client answered the OACK with an ERROR: it refused the options or
//!   only probed the size, as PXE ROMs do before the real request).
//! - `bytes_sent`: DATA payload bytes sent, retransmissions included; `packets_sent`: DATA + OACK.
//! - `retransmits`: DATA blocks and OACKs sent again; `timeouts`: expired retransmission timers.
//! - `errors_not_found`, `errors_access` (escape attempts, WRQ, unreadable, not a file),
//!   `errors_busy`, `errors_option` (invalid option values), `errors_illegal` (mail mode),
//!   `errors_internal` (no socket for the transfer, e.g. out of file descriptors),
//!   `errors_client_limit` (over `max_per_client`): refusals sent as ERROR packets.
//! - `queued`: requests that waited in the queue for a free transfer.
//! - `gso_sends`: windows sent as one UDP_SEGMENT buffer.
//! - `dropped_malformed`: datagrams that do not parse; `dropped_unexpected`: valid packets that
//!   make no sense where they arrived (DATA to port 69, RRQ to a transfer port).
//! - `events_dropped`: events lost because Python did not drain the queue in time.
//! - `active_transfers`: a gauge, the transfers in progress now.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bootgate_wire::tftp::{
    self as wire, error_code, Action, Failure, Mode, Packet, Rejected, RequestOptions, Transfer,
};

use crate::counters::Counters;
use crate::events::EventQueue;

#[derive(Clone, Debug)]
pub struct TftpSettings {
    /// Address of the listening socket (port 69 by default; 0 picks a free one).
    pub bind: SocketAddr,
    /// Directory files are served from; nothing outside it is ever read.
    pub root: PathBuf,
    /// Largest blksize granted (RFC 2348); requests above it are clamped.
    pub max_blksize: u16,
    /// Retransmission timeout when the client asks for none, in milliseconds.
    pub timeout_ms: u64,
    /// Retransmissions before a transfer is abandoned.
    pub retries: u32,
    /// Transfers served at once.
    pub max_transfers: usize,
}

/// Admission limits beyond `max_transfers` ([`TftpEngine::start_with`]; [`TftpEngine::start`]
/// uses the defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpLimits {
    /// Requests kept waiting (first come, first served) while `max_transfers` are in progress;
    /// beyond it, or after [`QUEUE_WAIT`] in the queue, a request gets ERROR 0 "server busy".
    pub max_queued: usize,
    /// Transfers (in progress, queued or waiting for their file) one client IP address may have
    /// at once; 0: no limit. Beyond it a request gets ERROR 0 "too many transfers".
    pub max_per_client: usize,
    /// Serve every transfer from the listening socket (port 69), told apart by the client's
    /// address and port, instead of from a new port per transfer (RFC 1350's transfer ids): for
    /// firewalls that only let port 69 through.
    pub single_port: bool,
}

impl Default for TftpLimits {
    fn default() -> Self {
        Self { max_queued: 4096, max_per_client: 0, single_port: false }
    }
}

/// A transfer that ended, well or badly.
#[derive(Clone, Debug)]
pub struct TftpEvent {
    pub time: f64,
    pub client: SocketAddr,
    pub file: String,
    pub ok: bool,
    pub bytes: u64,
    pub duration: f64,
    /// Empty on success; otherwise why it failed ("not found", "timeout", ...).
    pub error: String,
}

/// Largest windowsize granted (RFC 7440).
pub const MAX_WINDOWSIZE: u16 = 16;
const _: () = assert!(MAX_WINDOWSIZE as usize <= sys::SEND_MAX, "a window must fit one send_batch");
/// Largest window sent as one UDP_SEGMENT buffer (a UDP datagram's payload limit, 65507, less
/// some room); larger windows go out with sendmmsg.
const GSO_MAX_BYTES: usize = 65000;
/// Events kept for Python before new ones are dropped (and counted).
const EVENT_CAPACITY: usize = 65536;
/// Files kept in memory while no transfer uses them.
const CACHE_IDLE_FILES: usize = 64;
/// Transfers served at full speed at once, oldest first: beyond them a lock-step transfer is paced (one
/// window per [`PACE`] at most) until an older one ends. Thousands of transfers sharing the link
/// evenly would all finish at the very end; served oldest first they finish one after another
/// (half of them in half the time), and a client with a deadline of its own sees its file sooner.
/// 512 keeps the measured peak (windowsize 8 is fastest near N = 512 here).
pub const FULL_SPEED: usize = 512;
/// Longest a paced transfer's next window waits: well under any client's retransmission timeout
/// (1 s is RFC 2349's least; iPXE's shortest is 250 ms), so a paced client never retransmits.
pub const PACE: Duration = Duration::from_millis(200);
/// Ready descriptors taken from one epoll_wait(2) (1024 measured no better at N = 2000).
const EPOLL_BATCH: usize = 256;
/// Datagrams read from one socket per wake-up, so one busy peer cannot starve the rest.
const READ_BURST: usize = 64;
/// Receive buffer asked for the listening socket: room for the RRQ burst of a few thousand
/// machines powering on at once (about 1 KiB of kernel memory per queued request).
const LISTENER_RCVBUF: usize = 8 << 20;
/// How long a request may wait in the queue before it is refused; its client has retransmitted
/// the RRQ several times by then (and those duplicates were ignored).
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Counter names, in index order of [`C`].
pub const COUNTER_NAMES: &[&str] = &[
    "requests",
    "duplicate_requests",
    "transfers_started",
    "transfers_ok",
    "transfers_failed",
    "transfers_declined",
    "bytes_sent",
    "packets_sent",
    "retransmits",
    "timeouts",
    "errors_not_found",
    "errors_access",
    "errors_busy",
    "errors_option",
    "errors_illegal",
    "errors_internal",
    "dropped_malformed",
    "dropped_unexpected",
    "queued",
    "errors_client_limit",
    "gso_sends",
];

#[derive(Clone, Copy)]
enum C {
    Requests,
    DuplicateRequests,
    TransfersStarted,
    TransfersOk,
    TransfersFailed,
    TransfersDeclined,
    BytesSent,
    PacketsSent,
    Retransmits,
    Timeouts,
    ErrorsNotFound,
    ErrorsAccess,
    ErrorsBusy,
    ErrorsOption,
    ErrorsIllegal,
    ErrorsInternal,
    DroppedMalformed,
    DroppedUnexpected,
    Queued,
    ErrorsClientLimit,
    GsoSends,
}

/// What the engine thread and its handle share.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    events: EventQueue<TftpEvent>,
    active: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn inc(&self, c: C) {
        self.counters.inc(c as usize);
    }
    fn add(&self, c: C, n: u64) {
        self.counters.add(c as usize, n);
    }
}

/// Handle of the running engine thread.
#[derive(Debug)]
pub struct TftpEngine {
    shared: Arc<Shared>,
    local: SocketAddr,
    waker: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl TftpEngine {
    /// Binds the listening socket and starts the engine thread. Fails when the root is not a
    /// directory or the address cannot be bound.
    pub fn start(settings: TftpSettings) -> io::Result<Self> {
        Self::start_with(settings, TftpLimits::default())
    }

    /// [`TftpEngine::start`] with admission limits of one's own.
    pub fn start_with(settings: TftpSettings, limits: TftpLimits) -> io::Result<Self> {
        Self::start_paced(settings, limits, FULL_SPEED)
    }

    /// [`TftpEngine::start_with`] with `full_speed` transfers served at full speed at once.
    fn start_paced(settings: TftpSettings, limits: TftpLimits, limits_full_speed: usize) -> io::Result<Self> {
        let root = std::fs::canonicalize(&settings.root)
            .map_err(|e| io::Error::new(e.kind(), format!("TFTP root {}: {e}", settings.root.display())))?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TFTP root {} is not a directory", root.display()),
            ));
        }
        raise_fd_limit(settings.max_transfers);
        let listener = UdpSocket::bind(settings.bind)?;
        listener.set_nonblocking(true)?;
        sys::set_rcvbuf(listener.as_raw_fd(), LISTENER_RCVBUF);
        let local = listener.local_addr()?;
        // Bound to a wildcard address, the engine learns where each request was sent, so that
        // the transfer answers from that address on a host with several.
        let pktinfo = local.ip().is_unspecified();
        if pktinfo {
            sys::enable_pktinfo(listener.as_raw_fd(), local.is_ipv6())?;
        }
        let (waker, wake_rx) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            counters: Counters::new(COUNTER_NAMES),
            events: EventQueue::new(EVENT_CAPACITY)?,
            active: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let epoll = Epoll::new()?;
        epoll.add(listener.as_raw_fd(), TOKEN_LISTENER)?;
        epoll.add(wake_rx.as_raw_fd(), TOKEN_WAKER)?;
        let server = Server {
            epoll,
            listener,
            pktinfo,
            wake_rx,
            root,
            wire: wire::Settings {
                max_blksize: settings.max_blksize,
                max_windowsize: MAX_WINDOWSIZE,
                timeout: Duration::from_millis(settings.timeout_ms.max(1)),
                max_timeout: Duration::from_secs(16),
                retries: settings.retries,
            },
            max_transfers: settings.max_transfers,
            max_queued: limits.max_queued,
            max_per_client: limits.max_per_client,
            single_port: limits.single_port,
            listener_v6: local.is_ipv6(),
            by_client: HashMap::new(),
            queued: VecDeque::new(),
            recv: Some(Box::new(sys::RecvBatch::new())),
            gso: true,
            earliest: Duration::MAX,
            slots: Vec::new(),
            free: Vec::new(),
            files: FileCache::default(),
            loader: Loader::start(waker.try_clone()?)?,
            waiting: HashMap::new(),
            shared: Arc::clone(&shared),
            epoch: Instant::now(),
            out: Vec::with_capacity(65536),
            ends: Vec::with_capacity(usize::from(MAX_WINDOWSIZE)),
            by_serial: BTreeMap::new(),
            next_serial: 0,
            full_speed_until: u64::MAX,
            full_speed: limits_full_speed,
            paced: VecDeque::new(),
        };
        let thread = std::thread::Builder::new().name("bootgate-tftp".into()).spawn(move || server.run())?;
        Ok(Self { shared, local, waker, thread: Some(thread) })
    }

    /// Every counter with its value (see the module documentation for their meaning).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut c = self.shared.counters.snapshot();
        c.push(("events_dropped", self.shared.events.dropped()));
        c.push(("active_transfers", self.shared.active.load(Ordering::Relaxed)));
        c
    }

    pub fn drain_events(&self, max: usize) -> Vec<TftpEvent> {
        self.shared.events.drain(max)
    }

    /// Readable whenever events wait to be drained.
    pub fn event_fd(&self) -> RawFd {
        self.shared.events.notify_fd()
    }

    /// The address the listening socket is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the thread and waits for it; transfers in progress are abandoned. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = (&self.waker).write(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TftpEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Each transfer holds a socket: lift the soft RLIMIT_NOFILE towards the hard limit when it is
/// too low for `max_transfers` (1024 is a common default; Go's runtime lifts it the same way).
/// Never lowers it; on failure the engine still runs and refuses what it cannot open
/// (`errors_internal`).
fn raise_fd_limit(max_transfers: usize) {
    let want = (max_transfers as u64).saturating_add(256);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid rlimit struct for the kernel to fill / read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= want {
            return;
        }
        lim.rlim_cur = want.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

// ---------------------------------------------------------------------------------------------
// epoll

const TOKEN_LISTENER: u64 = 0;
const TOKEN_WAKER: u64 = 1;
const TOKEN_FIRST_SLOT: u64 = 2;

/// A minimal epoll(7) wrapper: level-triggered readability, a u64 token per descriptor.
#[derive(Debug)]
struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned descriptor is checked and then owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: valid epoll descriptor, a live event struct for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token)
    }

    fn delete(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
    }

    /// Waits up to `timeout_ms` (-1: forever); returns the tokens of ready descriptors.
    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32, tokens: &mut Vec<u64>) -> io::Result<()> {
        tokens.clear();
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is a valid writable buffer of `max` entries.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        tokens.extend(events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// raw socket calls the standard library lacks: recvmsg with the destination address, sendmmsg

mod sys {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;

    fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: a valid pointer to a c_int and its size.
        let r = unsafe {
            libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), size_of::<libc::c_int>() as u32)
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks the kernel to report each datagram's destination address (IP_PKTINFO and, on an
    /// IPv6 socket, IPV6_RECVPKTINFO too; a dual-stack socket reports IPv4 requests by the former).
    pub fn enable_pktinfo(fd: RawFd, v6: bool) -> io::Result<()> {
        if v6 {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            let _ = setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
            Ok(())
        } else {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
        }
    }

    fn to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match libc::c_int::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in; storage is aligned for it.
                let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
            }
            _ => None,
        }
    }

    /// A large receive buffer for the listening socket, so that the burst of requests after a
    /// power cut waits in the kernel instead of being dropped: SO_RCVBUFFORCE (privileged, above
    /// net.core.rmem_max), else SO_RCVBUF (capped by rmem_max). Best effort.
    pub fn set_rcvbuf(fd: RawFd, bytes: usize) {
        let v = bytes.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v).is_err() {
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v);
        }
    }

    /// Buffers for one recvmmsg(2) call: `BATCH` datagrams of up to `SLOT` bytes, each with its
    /// source address and room for its destination (IP_PKTINFO / IPV6_PKTINFO).
    pub struct RecvBatch {
        bufs: Vec<u8>,
        names: Vec<libc::sockaddr_storage>,
        controls: Vec<[u64; 16]>,
        /// Per datagram of the last call: length (None if truncated), source, destination.
        meta: Vec<(Option<usize>, Option<SocketAddr>, Option<IpAddr>)>,
    }

    pub const BATCH: usize = 64;
    /// UDP_SEGMENT from linux/udp.h (not in the libc crate for glibc targets).
    const UDP_SEGMENT: libc::c_int = 103;
    pub const SLOT: usize = 2048;

    impl std::fmt::Debug for RecvBatch {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("RecvBatch")
        }
    }

    impl RecvBatch {
        pub fn new() -> Self {
            Self {
                bufs: vec![0; BATCH * SLOT],
                // SAFETY: all-zero bytes are a valid sockaddr_storage and mmsghdr.
                names: vec![unsafe { zeroed() }; BATCH],
                controls: vec![[0; 16]; BATCH],
                meta: Vec::with_capacity(BATCH),
            }
        }

        /// Receives up to `BATCH` datagrams in one recvmmsg(2); returns how many (0 when none
        /// waits). Read each with [`RecvBatch::get`].
        pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            self.meta.clear();
            let mut iovs: Vec<libc::iovec> = self
                .bufs
                .chunks_mut(SLOT)
                .map(|chunk| libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: SLOT })
                .collect();
            let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(BATCH);
            for (i, iov) in iovs.iter_mut().enumerate() {
                // SAFETY: all-zero bytes are a valid mmsghdr.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = size_of::<[u64; 16]>() as _;
                hdrs.push(h);
            }
            // SAFETY: every header points at live buffers of the stated sizes (owned by `self`
            // and the local vectors), which outlive the call; MSG_DONTWAIT never blocks.
            let n = unsafe {
                libc::recvmmsg(fd, hdrs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
            }
            for h in &hdrs[..n as usize] {
                let i = self.meta.len();
                let len = (h.msg_hdr.msg_flags & libc::MSG_TRUNC == 0).then_some((h.msg_len as usize).min(SLOT));
                // SAFETY: the header was filled by recvmmsg and its control buffer is live.
                let dst = unsafe { pktinfo_dst(&h.msg_hdr) };
                self.meta.push((len, to_std(&self.names[i]), dst));
            }
            Ok(n as usize)
        }

        /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes, source and destination
        /// address; `None` when truncated (larger than a slot) or from an unknown family.
        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, Option<IpAddr>)> {
            let &(len, src, dst) = self.meta.get(i)?;
            let len = len?;
            Some((&self.bufs[i * SLOT..i * SLOT + len], src?, dst))
        }
    }

    /// The destination address carried by an IP_PKTINFO / IPV6_PKTINFO control message.
    ///
    /// # Safety
    /// `msg` must be a header filled by recvmsg/recvmmsg whose control buffer is still live.
    unsafe fn pktinfo_dst(msg: &libc::msghdr) -> Option<IpAddr> {
        let mut dst = None;
        // SAFETY: per the contract, the CMSG_* walk reads inside the filled control buffer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(msg);
            while !c.is_null() {
                let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
                if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                    let info = libc::CMSG_DATA(c).cast::<libc::in_pktinfo>().read_unaligned();
                    dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr))));
                } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                    let info = libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>().read_unaligned();
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    dst = Some(match ip.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(ip),
                    });
                }
                c = libc::CMSG_NXTHDR(msg, c);
            }
        }
        dst
    }

    /// Writes an IP_PKTINFO / IPV6_PKTINFO control message choosing `src` as the source address
    /// at `c`; returns its CMSG_SPACE.
    ///
    /// # Safety
    /// `c` must point at a control buffer with at least 40 writable bytes (CMSG_SPACE of
    /// in6_pktinfo), aligned for cmsghdr.
    unsafe fn write_pktinfo(c: *mut libc::cmsghdr, src: IpAddr) -> usize {
        // SAFETY: per the contract; CMSG_* are arithmetic on `c`.
        unsafe {
            match src {
                IpAddr::V4(ip) => {
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr { s_addr: u32::from(ip).to_be() },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    libc::CMSG_DATA(c).cast::<libc::in_pktinfo>().write_unaligned(info);
                    libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
                }
                IpAddr::V6(ip) => {
                    (*c).cmsg_level = libc::IPPROTO_IPV6;
                    (*c).cmsg_type = libc::IPV6_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
                    let info =
                        libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: ip.octets() }, ipi6_ifindex: 0 };
                    libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>().write_unaligned(info);
                    libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
                }
            }
        }
    }

    /// Sends `buf` as datagrams of `segment` bytes (the last may be shorter) in one sendmsg(2)
    /// with UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18+): the stack handles the
    /// window as one buffer and cuts it late. On a connected socket `to` is `None`; in
    /// single-port mode it is the client and, on a wildcard listener, the source address.
    /// Returns the bytes sent.
    pub fn send_gso(fd: RawFd, buf: &[u8], segment: u16, to: Option<(SocketAddr, Option<IpAddr>)>) -> io::Result<usize> {
        let mut control = [0u64; 16]; // 24 bytes for UDP_SEGMENT, 40 at most for pktinfo
        let name = to.map(|(dst, _)| socket2::SockAddr::from(dst));
        let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: all-zero bytes are a valid msghdr.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(name) = &name {
            msg.msg_name = name.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = name.len();
        }
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>() as _;
        // SAFETY: the headers written lie inside `control` (24 + 40 <= 128 bytes), which lives
        // until sendmsg returns; CMSG_* are arithmetic on `msg` and its control buffer.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            libc::CMSG_DATA(c).cast::<u16>().write_unaligned(segment);
            let mut used = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
            if let Some((_, Some(src))) = to {
                let next = control.as_mut_ptr().cast::<u8>().add(used).cast::<libc::cmsghdr>();
                used += write_pktinfo(next, src);
            }
            msg.msg_controllen = used as _;
        }
        // SAFETY: `msg` points at live buffers; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(fd, &msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Most datagrams one [`send_batch`] call sends: a whole window (at most MAX_WINDOWSIZE).
    pub const SEND_MAX: usize = 16;

    /// Sends consecutive datagrams `buf[ends[i-1]..ends[i]]` (at most [`SEND_MAX`]) with as few
    /// sendmmsg(2) calls as the kernel allows, from stack buffers (no allocation per window). On a
    /// connected socket `to` is `None`; from an unconnected one (single-port mode) it is the
    /// client and, for a socket bound to a wildcard address, the source address (an IP_PKTINFO /
    /// IPV6_PKTINFO control message). Returns how many went out; an error only when none did.
    pub fn send_batch(
        fd: RawFd,
        buf: &[u8],
        ends: &[usize],
        to: Option<(SocketAddr, Option<IpAddr>)>,
    ) -> io::Result<usize> {
        let ends = &ends[..ends.len().min(SEND_MAX)];
        let name = to.map(|(dst, _)| socket2::SockAddr::from(dst));
        let mut control = [0u64; 8];
        let mut controllen = 0usize;
        if let Some((_, Some(src))) = to {
            // SAFETY: `control` is 64 bytes, aligned for cmsghdr.
            controllen = unsafe { write_pktinfo(control.as_mut_ptr().cast(), src) };
        }
        // SAFETY: all-zero bytes are valid iovec and mmsghdr values.
        let mut iovs: [libc::iovec; SEND_MAX] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; SEND_MAX] = unsafe { zeroed() };
        let mut start = 0;
        for (k, &end) in ends.iter().enumerate() {
            let part = buf.get(start..end).unwrap_or(&[]);
            iovs[k] = libc::iovec { iov_base: part.as_ptr() as *mut libc::c_void, iov_len: part.len() };
            start = end;
            let h = &mut hdrs[k].msg_hdr;
            h.msg_iov = &mut iovs[k];
            h.msg_iovlen = 1;
            if let Some(name) = &name {
                h.msg_name = name.as_ptr() as *mut libc::c_void;
                h.msg_namelen = name.len();
            }
            if controllen > 0 {
                h.msg_control = control.as_mut_ptr().cast();
                h.msg_controllen = controllen as _;
            }
        }
        let mut sent = 0;
        while sent < ends.len() {
            let rest = &mut hdrs[sent..ends.len()];
            // SAFETY: live headers whose name, iovecs and control point at live buffers that
            // sendmmsg only reads.
            let r = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return if sent > 0 { Ok(sent) } else { Err(e) };
            }
            if r == 0 {
                break;
            }
            sent += r as usize;
        }
        Ok(sent)
    }
}

// ---------------------------------------------------------------------------------------------
// files

/// Why a request is refused before any transfer starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    /// Access violation, with the reason for the event ("outside root", "not a regular file").
    Access(&'static str),
}

/// Maps a requested name to a file inside `root` (which must be canonical).
///
/// Backslashes count as separators (Windows clients send `boot\x64\wdsnbp.com`); leading
/// slashes are dropped, so `/pxelinux.0` is `root/pxelinux.0`; any `..` component is refused; the
/// result is canonicalized (symlinks followed) and must still lie inside `root`.
pub fn resolve(root: &Path, name: &[u8]) -> Result<PathBuf, Refusal> {
    let name: Vec<u8> = name.iter().map(|&c| if c == b'\\' { b'/' } else { c }).collect();
    let mut path = root.to_path_buf();
    let mut parts = 0;
    for part in Path::new(OsStr::from_bytes(&name)).components() {
        match part {
            Component::Normal(p) => {
                path.push(p);
                parts += 1;
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(Refusal::Access("path escapes root")),
        }
    }
    if parts == 0 {
        return Err(Refusal::Access("not a regular file"));
    }
    let real = std::fs::canonicalize(&path).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => Refusal::Access("permission denied"),
        _ => Refusal::NotFound,
    })?;
    if !real.starts_with(root) {
        return Err(Refusal::Access("path escapes root"));
    }
    Ok(real)
}

#[derive(Debug)]
struct CachedFile {
    version: Version,
    octet: Arc<[u8]>,
    netascii: Option<Arc<[u8]>>,
}

/// What tells one content of a path from another: a file replaced by rename has a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

fn version_of(path: &Path) -> Result<Version, Refusal> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => Refusal::Access("permission denied"),
        _ => Refusal::NotFound,
    })?;
    if !meta.is_file() {
        return Err(Refusal::Access("not a regular file"));
    }
    Ok(Version { ino: meta.ino(), len: meta.len(), mtime: meta.modified().ok() })
}

/// Reads a whole file (on the loader thread: a large file never stalls the transfers).
fn load(path: &Path) -> Result<CachedFile, Refusal> {
    let version = version_of(path)?;
    let refusal = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => Refusal::NotFound,
        _ => Refusal::Access("unreadable"),
    };
    let mut file = std::fs::File::open(path).map_err(refusal)?;
    // Read straight into the shared buffer: one copy of the file in memory, even while loading
    // (the zeroed vector comes from untouched pages, so turning it into an Arc costs no RSS).
    let len = usize::try_from(version.len).map_err(|_| Refusal::Access("too large"))?;
    let mut octet: Arc<[u8]> = Arc::from(vec![0u8; len]);
    let buf = Arc::get_mut(&mut octet).expect("a fresh Arc is unique");
    let mut n = 0;
    while n < len {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(refusal(e)),
        }
    }
    if n < len {
        octet = Arc::from(&octet[..n]); // shrank meanwhile
    }
    // Sized by what was read: a file growing meanwhile is reloaded by its next request.
    let version = Version { len: n as u64, ..version };
    Ok(CachedFile { version, octet, netascii: None })
}

/// What the cache holds for a path.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Ready(Arc<[u8]>),
    /// Absent or stale: load it (off the engine thread), then [`FileCache::insert`].
    Load,
}

/// Files in memory, keyed by canonical path, reloaded when their inode, size or mtime changes.
#[derive(Debug, Default)]
struct FileCache {
    files: HashMap<PathBuf, CachedFile>,
}

impl FileCache {
    /// The bytes to send for `path` in `mode`, if the cached copy is current (one stat(2)).
    fn lookup(&mut self, path: &Path, mode: Mode) -> Result<Lookup, Refusal> {
        let version = version_of(path)?;
        match self.files.get_mut(path) {
            Some(f) if f.version == version => Ok(Lookup::Ready(Self::bytes(f, mode))),
            _ => Ok(Lookup::Load),
        }
    }

    /// Keeps a freshly loaded file; returns its bytes in `mode`.
    fn insert(&mut self, path: PathBuf, file: CachedFile, mode: Mode) -> Arc<[u8]> {
        self.evict_idle();
        let mut file = file;
        let bytes = Self::bytes(&mut file, mode);
        self.files.insert(path, file);
        bytes
    }

    /// The cached bytes for `path` in `mode`, whatever their age (for requests that waited for
    /// the load of this very copy).
    fn get(&mut self, path: &Path, mode: Mode) -> Option<Arc<[u8]>> {
        self.files.get_mut(path).map(|f| Self::bytes(f, mode))
    }

    fn bytes(f: &mut CachedFile, mode: Mode) -> Arc<[u8]> {
        match mode {
            Mode::Netascii => Arc::clone(f.netascii.get_or_insert_with(|| wire::netascii::encode(&f.octet).into())),
            _ => Arc::clone(&f.octet),
        }
    }

    /// Drops files no transfer holds once more than [`CACHE_IDLE_FILES`] are cached.
    fn evict_idle(&mut self) {
        if self.files.len() >= CACHE_IDLE_FILES {
            self.files.retain(|_, f| {
                Arc::strong_count(&f.octet) > 1 || f.netascii.as_ref().is_some_and(|n| Arc::strong_count(n) > 1)
            });
        }
    }
}

/// A thread that reads files for the engine and wakes it when one is in memory.
#[derive(Debug)]
struct Loader {
    jobs: mpsc::Sender<PathBuf>,
    done: mpsc::Receiver<(PathBuf, Result<CachedFile, Refusal>)>,
}

impl Loader {
    /// Starts the thread; `wake` is written to after each load. The thread ends when the
    /// [`Loader`] is dropped (after the read in progress, if any).
    fn start(wake: UnixStream) -> io::Result<Self> {
        let (jobs, jobs_rx) = mpsc::channel::<PathBuf>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new().name("bootgate-tftp-load".into()).spawn(move || {
            for path in jobs_rx {
                let result = load(&path);
                if done_tx.send((path, result)).is_err() {
                    return;
                }
                let _ = (&wake).write(&[2]);
            }
        })?;
        Ok(Self { jobs, done })
    }
}

/// A request waiting for a free transfer.
#[derive(Debug)]
struct Queued {
    peer: Peer,
    filename: Vec<u8>,
    mode: Mode,
    options: RequestOptions,
    since: Instant,
}

/// A request waiting for its file to be read.
#[derive(Debug)]
struct Waiting {
    peer: Peer,
    name: String,
    mode: Mode,
    options: RequestOptions,
}

// ---------------------------------------------------------------------------------------------
// the engine thread

#[derive(Debug)]
struct Slot {
    /// The transfer's own socket; `None` in single-port mode (the listener serves it).
    socket: Option<UdpSocket>,
    /// The local address the request came to (wildcard listener), the source of every reply.
    local: Option<IpAddr>,
    client: SocketAddr,
    /// The name as requested (lossy UTF-8), for events and duplicate detection.
    file: String,
    data: Arc<[u8]>,
    transfer: Transfer,
    started: Instant,
    /// Admission order (unique: also tells a reused slot from the transfer that held it).
    serial: u64,
    /// The next window of a paced transfer, sent when its turn comes ([`Server::pace`]).
    held: Option<Action>,
}

#[derive(Debug)]
struct Server {
    epoll: Epoll,
    listener: UdpSocket,
    /// The listener reports each request's destination address (it is bound to a wildcard).
    pktinfo: bool,
    wake_rx: UnixStream,
    root: PathBuf,
    wire: wire::Settings,
    max_transfers: usize,
    max_queued: usize,
    max_per_client: usize,
    /// Every transfer is served from the listener ([`TftpLimits::single_port`]).
    single_port: bool,
    listener_v6: bool,
    /// In single-port mode: the transfer of each client address.
    by_client: HashMap<SocketAddr, usize>,
    /// Requests waiting for a free transfer (oldest first).
    queued: VecDeque<Queued>,
    /// recvmmsg buffers of the listener (taken while a batch is handled).
    recv: Option<Box<sys::RecvBatch>>,
    /// UDP_SEGMENT works here (cleared at the first refusal by the kernel).
    gso: bool,
    /// No transfer deadline is earlier than this (so timers are scanned only when one is due).
    earliest: Duration,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    files: FileCache,
    loader: Loader,
    /// Requests waiting for their file, by canonical path.
    waiting: HashMap<PathBuf, Vec<Waiting>>,
    shared: Arc<Shared>,
    epoch: Instant,
    /// Packets being built, and where each ends (for a window sent at once).
    out: Vec<u8>,
    ends: Vec<usize>,
    /// Transfers in progress by admission order (serial -> slot).
    by_serial: BTreeMap<u64, usize>,
    next_serial: u64,
    /// Transfers with a serial up to this one run at full speed; later ones are paced.
    full_speed_until: u64,
    /// How many transfers run at full speed ([`FULL_SPEED`]; smaller in tests).
    full_speed: usize,
    /// Held windows in release order: (when, slot, serial).
    paced: VecDeque<(Duration, usize, u64)>,
}

/// Who sent a request, and to which local address (when the listener is bound to a wildcard).
#[derive(Clone, Copy, Debug)]
struct Peer {
    client: SocketAddr,
    local: Option<IpAddr>,
}

/// An IPv4 request seen by a dual-stack IPv6 listener arrives from a v4-mapped address; answer
/// it over IPv4 when its destination is known to be IPv4.
fn normalize(client: SocketAddr, local: Option<IpAddr>) -> (SocketAddr, Option<IpAddr>) {
    match (client, local) {
        (SocketAddr::V6(c), Some(IpAddr::V4(_))) => match c.ip().to_ipv4_mapped() {
            Some(v4) => (SocketAddr::new(IpAddr::V4(v4), c.port()), local),
            None => (client, None),
        },
        _ => (client, local),
    }
}

enum Outcome {
    Continue,
    Finished(End),
}

/// How a transfer ended: counted under `transfers_ok`, `transfers_failed`, `transfers_declined`.
#[derive(Debug)]
enum End {
    Ok,
    Failed(String),
    Declined(String),
}

impl Server {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_BATCH];
        let mut tokens = Vec::with_capacity(EPOLL_BATCH);
        let mut buf = vec![0u8; 65536];
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = self.wait_ms();
            if self.epoll.wait(&mut events, timeout, &mut tokens).is_err() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            for &token in &tokens {
                match token {
                    TOKEN_LISTENER => self.on_listener(&mut buf),
                    TOKEN_WAKER => {
                        let mut b = [0u8; 64];
                        while matches!((&self.wake_rx).read(&mut b), Ok(n) if n > 0) {}
                        self.on_loaded();
                    }
                    t => self.on_transfer_socket((t - TOKEN_FIRST_SLOT) as usize, &mut buf),
                }
            }
            self.on_timers();
            self.admit_queued();
        }
        // Abandoned transfers and waiting requests still end with an event.
        for q in std::mem::take(&mut self.queued) {
            let name = String::from_utf8_lossy(&q.filename).into_owned();
            self.refuse(q.peer, error_code::UNDEFINED, "server stopping", name, "server stopped");
        }
        for (_, list) in std::mem::take(&mut self.waiting) {
            for w in list {
                self.refuse(w.peer, error_code::UNDEFINED, "server stopping", w.name, "server stopped");
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                self.finish(i, End::Failed("server stopped".into()));
            }
        }
    }

    /// Milliseconds until the earliest deadline (rounded up), at most one second.
    /// Every deadline is at or after `earliest` (kept by [`Server::apply`] and the scan in
    /// [`Server::on_timers`]), so the wait needs no pass over thousands of transfers.
    fn wait_ms(&self) -> i32 {
        let now = self.now();
        let queue_ms = if self.queued.is_empty() { 1000 } else { 100 };
        let next_paced = self.paced.front().map_or(Duration::MAX, |p| p.0);
        match self.earliest.min(next_paced) {
            d if d <= now => 0,
            Duration::MAX => queue_ms,
            d => (d - now).as_micros().div_ceil(1000).min(queue_ms as u128) as i32,
        }
    }

    /// Fires the expired timers: scans the transfers only once the earliest deadline is due,
    /// and computes the next earliest on the way.
    fn on_timers(&mut self) {
        let now = self.now();
        self.pace(now);
        if now < self.earliest {
            return;
        }
        self.earliest = Duration::MAX;
        for i in 0..self.slots.len() {
            let due = match &self.slots[i] {
                Some(s) => match s.transfer.deadline() {
                    Some(d) if d <= now => true,
                    Some(d) => {
                        self.earliest = self.earliest.min(d);
                        false
                    }
                    None => false,
                },
                None => false,
            };
            if due {
                self.shared.inc(C::Timeouts);
                let action = match &mut self.slots[i] {
                    Some(s) => s.transfer.on_timeout(now),
                    None => continue,
                };
                self.apply(i, action);
            }
        }
    }

    /// Sends the held windows whose time has come (in release order: every hold lasts the same).
    fn pace(&mut self, now: Duration) {
        while let Some(&(when, i, serial)) = self.paced.front() {
            if when > now {
                break;
            }
            self.paced.pop_front();
            self.release(i, serial);
        }
    }

    /// Sends the held window of the transfer `serial` in slot `i`, if it still waits.
    fn release(&mut self, i: usize, serial: u64) {
        let held = match self.slots.get_mut(i).and_then(Option::as_mut) {
            Some(slot) if slot.serial == serial => slot.held.take(),
            _ => None,
        };
        if let Some(action) = held {
            match self.send(i, action) {
                Outcome::Continue => {}
                Outcome::Finished(end) => self.finish(i, end),
            }
        }
    }

    /// The oldest [`Server::full_speed`] transfers run at full speed; a transfer that joins them
    /// sends its held window at once.
    fn update_full_speed(&mut self) {
        let before = self.full_speed_until;
        self.full_speed_until = match self.full_speed.checked_sub(1) {
            Some(k) => self.by_serial.keys().nth(k).copied().unwrap_or(u64::MAX),
            None => 0,
        };
        if self.full_speed_until > before && before != u64::MAX {
            let promoted: Vec<(u64, usize)> =
                self.by_serial.range(before + 1..=self.full_speed_until).map(|(&s, &i)| (s, i)).collect();
            for (serial, i) in promoted {
                self.release(i, serial);
            }
        }
    }

    /// Transfers in progress plus requests waiting for their file.
    fn busy(&self) -> usize {
        let waiting: usize = self.waiting.values().map(Vec::len).sum();
        self.slots.len() - self.free.len() + waiting
    }

    /// Starts queued requests while there is room; refuses those that waited too long.
    fn admit_queued(&mut self) {
        while let Some(q) = self.queued.front() {
            if q.since.elapsed() > QUEUE_WAIT {
                let q = self.queued.pop_front().expect("front exists");
                self.shared.inc(C::ErrorsBusy);
                let name = String::from_utf8_lossy(&q.filename).into_owned();
                self.refuse(q.peer, error_code::UNDEFINED, "server busy", name, "server busy (queue wait)");
                continue;
            }
            if self.busy() >= self.max_transfers {
                return;
            }
            let q = self.queued.pop_front().expect("front exists");
            self.admit(q.peer, &q.filename, q.mode, q.options);
        }
    }

    /// Reads the listener with recvmmsg(2), up to [`sys::BATCH`] requests per call and
    /// [`READ_BURST`] calls per wake-up.
    fn on_listener(&mut self, _buf: &mut [u8]) {
        let Some(batch) = self.recv.take() else { return };
        let mut batch = batch;
        for _ in 0..READ_BURST {
            let n = match batch.recv(self.listener.as_raw_fd()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => continue, // e.g. ICMP errors reported on the socket
            };
            for i in 0..n {
                match batch.get(i) {
                    Some((bytes, client, local)) => {
                        let local = if self.pktinfo { local } else { None };
                        let (client, local) = normalize(client, local);
                        self.on_request(bytes, Peer { client, local });
                    }
                    None => self.shared.inc(C::DroppedMalformed),
                }
            }
            if n < sys::BATCH {
                break;
            }
        }
        self.recv = Some(batch);
    }

    fn on_request(&mut self, bytes: &[u8], peer: Peer) {
        if self.single_port {
            if let Some(&i) = self.by_client.get(&peer.client) {
                if !matches!(bytes.get(..2), Some([0, 1]) | Some([0, 2])) {
                    let now = self.now();
                    let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else { return };
                    match slot.transfer.on_datagram(bytes, now) {
                        Ok(action) => self.apply(i, action),
                        Err(Rejected::Malformed(_)) => self.shared.inc(C::DroppedMalformed),
                        Err(Rejected::Unexpected(_)) => self.shared.inc(C::DroppedUnexpected),
                    }
                    return;
                }
                // A new request from the address of a transfer in progress: unless it repeats
                // the request that started it (ignored below), the client moved on.
                let repeat = self.slots.get(i).and_then(Option::as_ref).is_some_and(|s| {
                    s.transfer.acked() == 0 && request_name(bytes).as_bytes() == s.file.as_bytes()
                });
                if !repeat {
                    self.finish(i, End::Failed("superseded by a new request".into()));
                }
            }
        }
        let is_request = matches!(bytes.get(..2), Some([0, 1]) | Some([0, 2]));
        if is_request {
            self.shared.inc(C::Requests);
        }
        let packet = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(wire::Error::BadOptionValue(o)) => {
                self.shared.inc(C::ErrorsOption);
                let msg = format!("invalid value for option {}", o.name());
                self.refuse(peer, error_code::BAD_OPTIONS, &msg, request_name(bytes), &msg);
                return;
            }
            Err(_) => {
                self.shared.inc(C::DroppedMalformed);
                return;
            }
        };
        match packet {
            Packet::Rrq(req) => self.on_rrq(req, peer),
            Packet::Wrq(req) => {
                self.shared.inc(C::ErrorsAccess);
                let name = String::from_utf8_lossy(req.filename).into_owned();
                self.refuse(peer, error_code::ACCESS_VIOLATION, "read-only server", name, "write refused");
            }
            _ => self.shared.inc(C::DroppedUnexpected),
        }
    }

    fn on_rrq(&mut self, req: wire::Request<'_>, peer: Peer) {
        let client = peer.client;
        let name = String::from_utf8_lossy(req.filename).into_owned();
        let duplicate =
            self.slots.iter().flatten().any(|s| s.client == client && s.file == name && s.transfer.acked() == 0)
                || self.waiting.values().flatten().any(|w| w.peer.client == client && w.name == name)
                || self.queued.iter().any(|q| q.peer.client == client && q.filename == req.filename);
        if duplicate {
            self.shared.inc(C::DuplicateRequests);
            return;
        }
        if req.mode == Mode::Mail {
            self.shared.inc(C::ErrorsIllegal);
            self.refuse(peer, error_code::ILLEGAL_OPERATION, "mail mode not supported", name, "mail mode");
            return;
        }
        if self.max_per_client > 0 {
            let ip = client.ip();
            let mine = self.slots.iter().flatten().filter(|s| s.client.ip() == ip).count()
                + self.waiting.values().flatten().filter(|w| w.peer.client.ip() == ip).count()
                + self.queued.iter().filter(|q| q.peer.client.ip() == ip).count();
            if mine >= self.max_per_client {
                self.shared.inc(C::ErrorsClientLimit);
                self.refuse(peer, error_code::UNDEFINED, "too many transfers", name, "client limit");
                return;
            }
        }
        if self.busy() >= self.max_transfers || !self.queued.is_empty() {
            if self.queued.len() >= self.max_queued {
                self.shared.inc(C::ErrorsBusy);
                self.refuse(peer, error_code::UNDEFINED, "server busy", name, "server busy");
                return;
            }
            // First come, first served: wait for a free transfer (the client's retransmitted
            // RRQs meanwhile are duplicates, ignored above).
            self.shared.inc(C::Queued);
            let q = Queued {
                peer,
                filename: req.filename.to_vec(),
                mode: req.mode,
                options: req.options,
                since: Instant::now(),
            };
            self.queued.push_back(q);
            return;
        }
        self.admit(peer, req.filename, req.mode, req.options);
    }

    /// Starts a request there is room for, or sends it to the loader first.
    fn admit(&mut self, peer: Peer, filename: &[u8], mode: Mode, options: RequestOptions) {
        let name = String::from_utf8_lossy(filename).into_owned();
        let found = resolve(&self.root, filename).and_then(|p| Ok((self.files.lookup(&p, mode)?, p)));
        match found {
            Ok((Lookup::Ready(data), _)) => self.start_transfer(peer, name, data, &options),
            Ok((Lookup::Load, path)) => {
                let w = Waiting { peer, name, mode, options };
                match self.waiting.get_mut(&path) {
                    Some(list) => list.push(w),
                    None => {
                        if self.loader.jobs.send(path.clone()).is_err() {
                            self.shared.inc(C::ErrorsInternal);
                            self.refuse(peer, error_code::UNDEFINED, "server error", w.name, "loader stopped");
                            return;
                        }
                        self.waiting.insert(path, vec![w]);
                    }
                }
            }
            Err(refusal) => self.refuse_file(peer, name, refusal),
        }
    }

    fn refuse_file(&mut self, peer: Peer, name: String, refusal: Refusal) {
        match refusal {
            Refusal::NotFound => {
                self.shared.inc(C::ErrorsNotFound);
                self.refuse(peer, error_code::FILE_NOT_FOUND, "file not found", name, "not found");
            }
            Refusal::Access(why) => {
                self.shared.inc(C::ErrorsAccess);
                self.refuse(peer, error_code::ACCESS_VIOLATION, "access violation", name, why);
            }
        }
    }

    /// Files the loader finished: cache them and start (or refuse) the requests that waited.
    fn on_loaded(&mut self) {
        while let Ok((path, result)) = self.loader.done.try_recv() {
            let waiting = self.waiting.remove(&path).unwrap_or_default();
            match result {
                Ok(file) => {
                    let _ = self.files.insert(path.clone(), file, Mode::Octet);
                    for w in waiting {
                        match self.files.get(&path, w.mode) {
                            Some(data) => self.start_transfer(w.peer, w.name, data, &w.options),
                            None => self.refuse_file(w.peer, w.name, Refusal::NotFound),
                        }
                    }
                }
                Err(refusal) => {
                    for w in waiting {
                        self.refuse_file(w.peer, w.name, refusal.clone());
                    }
                }
            }
        }
    }

    fn start_transfer(&mut self, peer: Peer, name: String, data: Arc<[u8]>, options: &RequestOptions) {
        let socket = if self.single_port {
            None
        } else {
            match self.transfer_socket(peer) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.shared.inc(C::ErrorsInternal);
                    self.refuse(peer, error_code::UNDEFINED, "server error", name, "no transfer socket");
                    return;
                }
            }
        };
        let (transfer, first) = Transfer::new(options, data.len() as u64, &self.wire, self.now());
        let slot =
            Slot {
                socket,
                local: peer.local,
                client: peer.client,
                file: name,
                data,
                transfer,
                started: Instant::now(),
                serial: self.next_serial,
                held: None,
            };
        self.next_serial += 1;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        match &slot.socket {
            Some(socket) => {
                if self.epoll.add(socket.as_raw_fd(), TOKEN_FIRST_SLOT + i as u64).is_err() {
                    self.free.push(i);
                    self.shared.inc(C::ErrorsInternal);
                    self.refuse(peer, error_code::UNDEFINED, "server error", slot.file, "epoll");
                    return;
                }
            }
            None => {
                self.by_client.insert(peer.client, i);
            }
        }
        self.by_serial.insert(slot.serial, i);
        self.slots[i] = Some(slot);
        self.update_full_speed();
        self.shared.inc(C::TransfersStarted);
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        self.apply(i, first);
    }

    /// A socket on an ephemeral port of the address the request came to, connected to the client.
    fn transfer_socket(&self, peer: Peer) -> io::Result<UdpSocket> {
        let ip = match peer.local {
            Some(ip) => ip,
            None => self.listener.local_addr()?.ip(),
        };
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        s.connect(peer.client)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// Answers a request with an ERROR and records the refusal. The ERROR leaves from the
    /// listening socket, or, when the listener is bound to a wildcard address, from a socket on
    /// the address the request came to.
    fn refuse(&mut self, peer: Peer, code: u16, message: &str, file: String, why: &str) {
        self.out.clear();
        wire::packet::emit_error(&mut self.out, code, message.as_bytes());
        match peer.local {
            Some(ip) => {
                if let Ok(s) = UdpSocket::bind(SocketAddr::new(ip, 0)) {
                    let _ = s.send_to(&self.out, peer.client);
                }
            }
            None => {
                let _ = self.listener.send_to(&self.out, peer.client);
            }
        }
        self.push_event(TftpEvent {
            time: crate::unix_time(),
            client: peer.client,
            file,
            ok: false,
            bytes: 0,
            duration: 0.0,
            error: why.to_string(),
        });
    }

    /// One datagram per wake-up: a client sends one ACK per window, so a second recv(2) would
    /// nearly always find nothing (epoll is level-triggered: more wakes it again).
    fn on_transfer_socket(&mut self, i: usize, buf: &mut [u8]) {
        for _ in 0..1 {
            let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else { return };
            let Some(socket) = &slot.socket else { return };
            let n = match socket.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: the client is gone.
                    self.finish(i, End::Failed("client unreachable".into()));
                    return;
                }
                Err(_) => return,
            };
            let now = self.epoch.elapsed();
            match slot.transfer.on_datagram(&buf[..n], now) {
                Ok(action) => self.apply(i, action),
                Err(Rejected::Malformed(_)) => self.shared.inc(C::DroppedMalformed),
                Err(Rejected::Unexpected(_)) => self.shared.inc(C::DroppedUnexpected),
            }
        }
    }

    /// Carries out what the transfer asked for.
    fn apply(&mut self, i: usize, action: Action) {
        // A paced transfer's next new window waits its turn (never its first window, never a
        // retransmission). Lock-step transfers only (windowsize 1): their total throughput is
        // the same with 64 or 512 at full speed, so serving the oldest first costs nothing; with
        // larger windows it grows with the transfers in flight, and pacing them measured a 6-15%
        // longer p99 at N = 2000 (the last ones finish with few others left).
        if let Action::SendBlocks { first, retransmits: 0, .. } = action {
            if first > 1 {
                if let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) {
                    if slot.serial > self.full_speed_until && slot.transfer.windowsize() == 1 {
                        let when = self.epoch.elapsed() + PACE.min(slot.transfer.timeout() / 4);
                        slot.held = Some(action);
                        self.paced.push_back((when, i, slot.serial));
                        return;
                    }
                }
            }
        }
        match self.send(i, action) {
            Outcome::Continue => {
                if let Some(d) = self.slots.get(i).and_then(Option::as_ref).and_then(|s| s.transfer.deadline()) {
                    self.earliest = self.earliest.min(d);
                }
            }
            Outcome::Finished(end) => self.finish(i, end),
        }
    }

    fn send(&mut self, i: usize, action: Action) -> Outcome {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else { return Outcome::Continue };
        let shared = &self.shared;
        let out = &mut self.out;
        // Single-port mode: replies leave from the listener, addressed to the client (and from
        // the address its request came to, on a wildcard listener).
        let dst = if self.listener_v6 { to_v6(slot.client) } else { slot.client };
        let src = if self.pktinfo { slot.local } else { None };
        match action {
            Action::None => {}
            Action::SendOack { retransmit } => {
                out.clear();
                slot.transfer.write_oack(out);
                let sent = match &slot.socket {
                    Some(socket) => socket.send(out).map(|_| ()),
                    None => sys::send_batch(self.listener.as_raw_fd(), out, &[out.len()], Some((dst, src))).map(|_| ()),
                };
                if let Err(e) = sent {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        return Outcome::Finished(End::Failed("client unreachable".into()));
                    }
                }
                shared.inc(C::PacketsSent);
                if retransmit {
                    shared.inc(C::Retransmits);
                }
            }
            Action::SendBlocks { first, last, retransmits } => {
                shared.add(C::Retransmits, retransmits);
                // The whole window, packet after packet in one buffer: one sendmsg(2) with
                // UDP_SEGMENT where the kernel has it (every DATA packet but the file's last is
                // 4 + blksize bytes, and GSO allows a shorter last segment), else one sendmmsg(2);
                // a window of one datagram in one send(2).
                out.clear();
                let ends = &mut self.ends;
                ends.clear();
                for n in first..=last {
                    slot.transfer.write_data(n, &slot.data, out);
                    ends.push(out.len());
                }
                let segment = 4 + usize::from(slot.transfer.blksize());
                let (fd, to) = match &slot.socket {
                    Some(socket) => (socket.as_raw_fd(), None),
                    None => (self.listener.as_raw_fd(), Some((dst, src))),
                };
                if self.gso && ends.len() > 1 && out.len() <= GSO_MAX_BYTES {
                    match sys::send_gso(fd, out, segment as u16, to) {
                        Ok(_) => {
                            shared.inc(C::GsoSends);
                            shared.add(C::PacketsSent, ends.len() as u64);
                            shared.add(C::BytesSent, (out.len() - 4 * ends.len()) as u64);
                            return Outcome::Continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            return Outcome::Finished(End::Failed("client unreachable".into()));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Continue,
                        // No UDP GSO in this kernel (or on this socket type): sendmmsg from now on.
                        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EIO)) => {
                            self.gso = false
                        }
                        // EINVAL, EMSGSIZE: e.g. a segment above this route's MTU (the datagrams
                        // must be fragmented): sendmmsg for this window.
                        Err(_) => {}
                    }
                }
                // One datagram (every window of windowsize 1, the last of a file) on a connected
                // socket: plain send(2), no control message (sendmmsg would also yield the CPU
                // after each message). Otherwise sendmmsg: from the listener to the client in
                // single-port mode, on the transfer's connected socket else.
                let sent = match &slot.socket {
                    Some(socket) if ends.len() == 1 => socket.send(out).map(|_| 1),
                    _ => sys::send_batch(fd, out, ends, to),
                };
                match sent {
                    Ok(sent) => {
                        let bytes = ends.get(sent.wrapping_sub(1)).copied().unwrap_or(0);
                        shared.add(C::PacketsSent, sent as u64);
                        shared.add(C::BytesSent, (bytes - 4 * sent) as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        return Outcome::Finished(End::Failed("client unreachable".into()));
                    }
                    // A full socket buffer loses (the rest of) the window; the timer resends it.
                    Err(_) => {}
                }
            }
            Action::Done => return Outcome::Finished(End::Ok),
            Action::Failed(f @ Failure::Declined { .. }) => return Outcome::Finished(End::Declined(f.describe())),
            Action::Failed(f) => return Outcome::Finished(End::Failed(f.describe())),
        }
        Outcome::Continue
    }

    /// Ends transfer `i`: frees its socket and slot, counts it, reports it.
    fn finish(&mut self, i: usize, end: End) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::take) else { return };
        self.by_serial.remove(&slot.serial);
        self.update_full_speed();
        match &slot.socket {
            Some(socket) => self.epoll.delete(socket.as_raw_fd()),
            None => {
                self.by_client.remove(&slot.client);
            }
        }
        self.free.push(i);
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
        let (counter, ok, error) = match end {
            End::Ok => (C::TransfersOk, true, String::new()),
            End::Failed(e) => (C::TransfersFailed, false, e),
            End::Declined(e) => (C::TransfersDeclined, false, e),
        };
        self.shared.inc(counter);
        let t = &slot.transfer;
        let bytes = if ok { t.size() } else { t.acked().saturating_mul(u64::from(t.blksize())).min(t.size()) };
        self.push_event(TftpEvent {
            time: crate::unix_time(),
            client: slot.client,
            file: slot.file,
            ok,
            bytes,
            duration: slot.started.elapsed().as_secs_f64(),
            error,
        });
    }

    fn push_event(&self, event: TftpEvent) {
        // A full queue counts the drop itself (reported as `events_dropped`).
        let _ = self.shared.events.push(event);
    }
}

/// A client address as an IPv6 socket sends to it (IPv4 as v4-mapped).
fn to_v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

/// The filename of a request that failed to parse, if it got that far (for the event).
fn request_name(bytes: &[u8]) -> String {
    let name = bytes.get(2..).unwrap_or(&[]);
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_confines_names_to_the_root() {
        let base = std::env::temp_dir().join(format!("bootgate-tftp-resolve-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.bin"), b"a").unwrap();
        std::fs::write(base.join("secret"), b"s").unwrap();
        let _ = std::os::unix::fs::symlink(base.join("secret"), root.join("escape"));
        let _ = std::os::unix::fs::symlink(root.join("sub/a.bin"), root.join("inside"));
        let root = std::fs::canonicalize(&root).unwrap();
        let a = root.join("sub/a.bin");
        assert_eq!(resolve(&root, b"sub/a.bin"), Ok(a.clone()));
        assert_eq!(resolve(&root, b"/sub/a.bin"), Ok(a.clone()));
        assert_eq!(resolve(&root, b"//sub/./a.bin"), Ok(a.clone()));
        assert_eq!(resolve(&root, b"sub\\a.bin"), Ok(a.clone()));
        assert_eq!(resolve(&root, b"inside"), Ok(a.clone()));
        assert_eq!(resolve(&root, b"../secret"), Err(Refusal::Access("path escapes root")));
        assert_eq!(resolve(&root, b"sub/../../secret"), Err(Refusal::Access("path escapes root")));
        assert_eq!(resolve(&root, b"..\\secret"), Err(Refusal::Access("path escapes root")));
        assert_eq!(resolve(&root, b"escape"), Err(Refusal::Access("path escapes root")));
        assert_eq!(resolve(&root, b"missing"), Err(Refusal::NotFound));
        assert_eq!(resolve(&root, b"/"), Err(Refusal::Access("not a regular file")));
        let mut cache = FileCache::default();
        // What the engine does: look up; on Load, load (elsewhere) and insert.
        let get = |cache: &mut FileCache, mode| match cache.lookup(&a, mode).unwrap() {
            Lookup::Ready(d) => d,
            Lookup::Load => cache.insert(a.clone(), load(&a).unwrap(), mode),
        };
        assert_eq!(cache.lookup(&root.join("sub"), Mode::Octet), Err(Refusal::Access("not a regular file")));
        assert_eq!(cache.lookup(&root.join("nope"), Mode::Octet), Err(Refusal::NotFound));
        assert_eq!(cache.lookup(&a, Mode::Octet), Ok(Lookup::Load));
        let first = get(&mut cache, Mode::Octet);
        assert!(Arc::ptr_eq(&first, &get(&mut cache, Mode::Octet)), "loaded once, shared");
        std::fs::write(&a, b"changed").unwrap();
        assert_eq!(cache.lookup(&a, Mode::Octet), Ok(Lookup::Load), "stale after a size change");
        assert_eq!(&get(&mut cache, Mode::Octet)[..], b"changed");
        // Replaced by rename with the same size: a new inode, so reloaded too.
        let tmp = root.join("sub/new");
        std::fs::write(&tmp, b"CHANGED").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert_eq!(&get(&mut cache, Mode::Octet)[..], b"CHANGED", "reloaded on a new inode");
        std::fs::write(&a, b"x\ny").unwrap();
        assert_eq!(&get(&mut cache, Mode::Netascii)[..], b"x\r\ny");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn send_batch_keeps_datagram_boundaries_connected_and_addressed() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let buf = b"abcdefghijkl";
        let recv_all = |n: usize| -> Vec<(Vec<u8>, SocketAddr)> {
            let mut b = [0u8; 64];
            (0..n)
                .map(|_| {
                    let (k, from) = rx.recv_from(&mut b).unwrap();
                    (b[..k].to_vec(), from)
                })
                .collect()
        };
        // A connected socket: no address per message.
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        assert_eq!(sys::send_batch(tx.as_raw_fd(), buf, &[3, 7, 12], None).unwrap(), 3);
        let got = recv_all(3);
        let parts: Vec<&[u8]> = got.iter().map(|(d, _)| d.as_slice()).collect();
        assert_eq!(parts, [&b"abc"[..], b"defg", b"hijkl"]);
        assert!(got.iter().all(|(_, from)| *from == tx.local_addr().unwrap()));
        // An unconnected wildcard socket: the address and the source go with every message.
        let wild = UdpSocket::bind("0.0.0.0:0").unwrap();
        let src = IpAddr::from([127, 0, 0, 1]);
        let to = Some((rx.local_addr().unwrap(), Some(src)));
        assert_eq!(sys::send_batch(wild.as_raw_fd(), buf, &[5, 12], to).unwrap(), 2);
        let got = recv_all(2);
        assert_eq!(got[0].0, b"abcde");
        assert_eq!(got[1].0, b"fghijkl");
        assert!(got.iter().all(|(_, from)| from.ip() == src && from.port() == wild.local_addr().unwrap().port()));
        // More ends than one batch holds: only the first SEND_MAX go.
        let ends: Vec<usize> = (1..=sys::SEND_MAX + 3).collect();
        let long = vec![b'x'; ends.len()];
        assert_eq!(sys::send_batch(tx.as_raw_fd(), &long, &ends, None).unwrap(), sys::SEND_MAX);
        assert_eq!(recv_all(sys::SEND_MAX).len(), sys::SEND_MAX);
    }

    /// A windowsize-1 download (one datagram per window, sent with send(2)) while a foreign
    /// transfer id sends ACKs to the transfer's port: every byte arrives in order, the foreign
    /// ACKs move nothing (the transfer socket is connected to the client), the counters add up.
    #[test]
    fn lock_step_transfer_ignores_a_foreign_transfer_id() {
        let base = std::env::temp_dir().join(format!("bootgate-tftp-lockstep-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(base.join("f.bin"), &data).unwrap();
        let settings = TftpSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            root: base.clone(),
            max_blksize: 1468,
            timeout_ms: 2000,
            retries: 3,
            max_transfers: 16,
        };
        let mut engine = TftpEngine::start(settings).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let foreign = UdpSocket::bind("127.0.0.1:0").unwrap();
        foreign.set_nonblocking(true).unwrap();
        client.send_to(b"\x00\x01f.bin\x00octet\x00", engine.local_addr()).unwrap();
        let ack = |block: u16| {
            let mut a = Vec::new();
            wire::packet::emit_ack(&mut a, block);
            a
        };
        let mut got = Vec::new();
        let mut b = [0u8; 2048];
        let mut block = 1u16;
        loop {
            let (n, from) = client.recv_from(&mut b).unwrap();
            assert_ne!(from, engine.local_addr(), "DATA comes from the transfer's own port");
            let Ok(Packet::Data { block: got_block, data: payload }) = Packet::parse(&b[..n]) else {
                panic!("not DATA: {:?}", &b[..n])
            };
            assert_eq!(got_block, block, "blocks arrive in order, once each");
            got.extend_from_slice(payload);
            if block == 3 {
                // Another host acks blocks ahead: were it taken for the client, block 4 would be
                // skipped.
                for fake in [5u16, 6, 40] {
                    let _ = foreign.send_to(&ack(fake), from);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            client.send_to(&ack(block), from).unwrap();
            if payload.len() < 512 {
                break;
            }
            block += 1;
        }
        assert!(got == data, "{} bytes received, {} expected", got.len(), data.len());
        let mut fb = [0u8; 64];
        assert!(foreign.recv_from(&mut fb).is_err(), "nothing is sent to the foreign transfer id");
        let blocks = data.len() as u64 / 512 + 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        while engine.counters().iter().any(|&(k, v)| k == "transfers_ok" && v == 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let c: HashMap<_, _> = engine.counters().into_iter().collect();
        assert_eq!(c["transfers_ok"], 1);
        assert_eq!(c["packets_sent"], blocks, "one DATA per block, no retransmission");
        assert_eq!(c["bytes_sent"], data.len() as u64);
        assert_eq!(c["retransmits"], 0);
        assert_eq!(c["gso_sends"], 0, "windows of one datagram are sent without GSO");
        engine.stop();
        let _ = std::fs::remove_dir_all(&base);
    }

    /// Four downloads of a 40-block file from an engine with two transfers at full speed, driven
    /// in turn by one thread (`windowsize` > 1 asks for it with an OACK). Returns, for each
    /// download, the blocks every download had when it ended, after checking every byte arrived
    /// and nothing was retransmitted.
    fn four_downloads_two_at_full_speed(tag: &str, windowsize: u16) -> Vec<[u16; 4]> {
        let base = std::env::temp_dir().join(format!("bootgate-tftp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let data: Vec<u8> = (0..40 * 512 + 100u32).map(|i| (i * 13 + i / 509) as u8).collect();
        std::fs::write(base.join("f.bin"), &data).unwrap();
        let settings = TftpSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            root: base.clone(),
            max_blksize: 1468,
            timeout_ms: 2000,
            retries: 3,
            max_transfers: 16,
        };
        let mut engine = TftpEngine::start_paced(settings, TftpLimits::default(), 2).unwrap();
        let mut rrq = b"\x00\x01f.bin\x00octet\x00".to_vec();
        if windowsize > 1 {
            rrq.extend_from_slice(format!("windowsize\x00{windowsize}\x00").as_bytes());
        }
        let clients: Vec<UdpSocket> = (0..4).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for c in &clients {
            c.set_nonblocking(true).unwrap();
            c.send_to(&rrq, engine.local_addr()).unwrap();
            std::thread::sleep(Duration::from_millis(20)); // admitted in this order
        }
        let ack = |c: &UdpSocket, block: u16, to: SocketAddr| {
            let mut a = Vec::new();
            wire::packet::emit_ack(&mut a, block);
            c.send_to(&a, to).unwrap();
        };
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); 4];
        let mut blocks = [0u16; 4];
        let mut done = [false; 4];
        let mut at_done: Vec<Option<[u16; 4]>> = vec![None; 4];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut b = [0u8; 2048];
        while done.iter().any(|d| !d) && Instant::now() < deadline {
            let mut idle = true;
            for (k, c) in clients.iter().enumerate() {
                let Ok((n, from)) = c.recv_from(&mut b) else { continue };
                idle = false;
                match Packet::parse(&b[..n]) {
                    Ok(Packet::Oack(_)) => ack(c, 0, from),
                    Ok(Packet::Data { block, data: payload }) => {
                        if block != blocks[k].wrapping_add(1) {
                            continue; // a retransmission
                        }
                        blocks[k] = block;
                        got[k].extend_from_slice(payload);
                        let last = payload.len() < 512;
                        if last || block % windowsize == 0 {
                            ack(c, block, from);
                        }
                        if last {
                            done[k] = true;
                            at_done[k] = Some(blocks);
                        }
                    }
                    other => panic!("client {k}: {other:?}"),
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(done.iter().all(|&d| d), "every transfer ends: blocks {blocks:?}");
        for (k, g) in got.iter().enumerate() {
            assert!(*g == data, "client {k}: {} bytes, {} expected", g.len(), data.len());
        }
        let c: HashMap<_, _> = engine.counters().into_iter().collect();
        assert_eq!(c["retransmits"], 0, "a paced window is not a retransmission, nor late enough to cause one");
        engine.stop();
        let _ = std::fs::remove_dir_all(&base);
        at_done.into_iter().map(Option::unwrap).collect()
    }

    /// With two transfers at full speed, two later lock-step ones are paced: each gets its first
    /// block at once and its next blocks only every 200 ms until an older transfer ends, then
    /// runs at full speed; every byte still arrives. (Ordering, not timing: while the first two
    /// move 40 blocks, a paced one could only gain a block per 200 ms.)
    #[test]
    fn lock_step_transfers_beyond_the_full_speed_set_are_paced_until_older_ones_end() {
        let at_done = four_downloads_two_at_full_speed("paced", 1);
        let (first, second) = (at_done[0], at_done[1]);
        assert!(first[2] <= 20 && first[3] <= 20, "paced transfers lag while the first runs: {first:?}");
        assert!(second[2] <= 20 && second[3] <= 20, "and while the second runs: {second:?}");
    }

    /// Windowed transfers are never paced: driven in turn, the later ones keep up with the first.
    #[test]
    fn windowed_transfers_share_evenly() {
        let at_done = four_downloads_two_at_full_speed("windowed", 4);
        let first = at_done[0];
        assert!(first[2] > 20 && first[3] > 20, "later windowed transfers keep up: {first:?}");
    }
}
