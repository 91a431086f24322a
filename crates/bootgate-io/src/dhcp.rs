//! The proxyDHCP engine: UDP 67 (broadcast DISCOVER/REQUEST -> proxy OFFER) and 4011 (boot server
//! REQUEST -> ACK) on a dedicated thread, driven by `bootgate_wire::dhcp`.
//!
//! CONTRACT (used by bootgate-py; keep these names and fields):
//! - `DhcpSettings`, `DhcpPolicy`, `DhcpEvent` as below.
//! - `DhcpEngine::start(settings, policy) -> io::Result<DhcpEngine>`; `set_policy(&self, policy)`;
//!   `counters(&self) -> Vec<(&'static str, u64)>`; `drain_events(&self, max) -> Vec<DhcpEvent>`;
//!   `event_fd(&self) -> RawFd`; `local_ports(&self) -> (u16, u16)`; `stop(&mut self)` (also on Drop).
//! - Diagnostics (not used by bootgate-py; the benchmark reads them): `set_latency_timing(&self, on)`,
//!   `latency(&self) -> LatencyHistograms`.
//!
//! The packet loop: one thread polls both sockets and a stop pipe with poll(2); each datagram is
//! parsed ([`PxeRequest`]), decided ([`decide`]) against the current policy snapshot, answered
//! ([`ProxyReply`]), counted, and reported as a [`DhcpEvent`] when it came from a PXE client.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bootgate_wire::dhcp::{
    classify, decide, ArchFamily, BootTarget, ClientKind, Decision, Error as WireError, Ignore, MessageType, Port,
    ProxyReply, PxeRequest, StandbyTracker,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::counters::Counters;
use crate::events::EventQueue;
use crate::poll::{poll_due, pollin};

/// What to answer (defined in `bootgate_wire::dhcp`, where the decision lives).
pub use bootgate_wire::dhcp::DhcpPolicy;

/// Where and how the engine listens. Built once from config.
#[derive(Clone, Debug)]
pub struct DhcpSettings {
    /// Interface to bind to (SO_BINDTODEVICE). `None` only for loopback tests with `bind_ip` set.
    pub interface: Option<String>,
    /// Address the sockets bind to: 0.0.0.0 with an interface (to receive broadcasts), or a
    /// loopback address in tests.
    pub bind_ip: Ipv4Addr,
    /// This server's address on the segment: option 54 (server identifier) and siaddr.
    pub server_ip: Ipv4Addr,
    /// Port for broadcast DHCP (67); 0 picks a free one (tests).
    pub port: u16,
    /// Port for PXE boot server requests (4011); 0 picks a free one (tests).
    pub pxe_port: u16,
    /// Client port that broadcast replies go to (68; tests use another).
    pub client_port: u16,
    /// Destination of broadcast replies (255.255.255.255; tests use a loopback address).
    pub broadcast_ip: Ipv4Addr,
}

/// One request seen and how it was answered.
#[derive(Clone, Debug)]
pub struct DhcpEvent {
    pub time: f64,
    pub mac: [u8; 6],
    /// Option 97's UUID in wire byte order, when well-formed and not all-0/all-FF.
    pub uuid: Option<[u8; 16]>,
    /// Client system architecture (option 93), if sent.
    pub arch: Option<u16>,
    pub message_type: u8,
    pub vendor_class: String,
    pub user_class: String,
    pub is_ipxe: bool,
    /// Port the request arrived on (67 or 4011).
    pub port: u16,
    pub relay: Option<Ipv4Addr>,
    /// Relay agent information (option 82) as sent, for policy and inventory.
    pub relay_agent_info: Option<Vec<u8>>,
    /// What was sent: the boot file or URL, or "" when the request was ignored.
    pub answer: String,
    /// Why it was not answered ("" when answered): `unknown_arch`, `no_boot_program`,
    /// `other_server`, `other_message`, `denied`, `not_allowed`, `unknown_machine`, `send_error`,
    /// `standby_wait` (standby mode: left to the primary).
    pub reason: &'static str,
    /// The reply waits `response_delay_ms` before it is sent (standby server).
    pub delayed: bool,
}

/// Counter names, in index order. The names are API (Python exports them as metrics).
///
/// - `received`: datagrams read from either socket.
/// - `answered_offer` / `answered_ack`: proxy OFFERs / ACKs sent.
/// - `ignored_not_pxe`: requests whose option 60 is not `PXEClient...`/`HTTPClient...`.
/// - `ignored_unknown_arch`: PXE requests whose architecture code no family covers (or that
///   have none), with no default configured.
/// - `ignored_other_server`: REQUESTs addressed to another server (option 54).
/// - `dropped_malformed`: datagrams that are not a well-formed DHCP request (including
///   BOOTREPLYs and plain BOOTP without option 53); split by reason in `malformed_*`.
/// - `send_errors`: replies that could not be built (too large for the client) or sent.
/// - `events_dropped`: events lost because Python did not drain the queue in time.
/// - `ignored_other_message`: PXE messages proxyDHCP does not answer (RELEASE, DECLINE, INFORM
///   on 67, DISCOVER on 4011, ...).
/// - `ignored_no_boot_program`: a known architecture with no program / URL configured.
/// - `ignored_denied` / `ignored_not_allowed` / `ignored_unknown_machine`: refused by the MAC
///   rules (deny pattern; not on the allow list; known-only mode and not known).
/// - `answered_default_arch`: answers (sent) that used the default for an unknown code.
/// - `answered_http_boot`: answers (sent) to UEFI HTTP Boot clients.
/// - `requests_<type>`: PXE requests (option 60 PXEClient/HTTPClient) by DHCP message type
///   (`discover`, `request`, `inform`, `other`).
/// - `requests_arch_<family>`: PXE requests by architecture family (`bios`, `efi_ia32`,
///   `efi_x64`, `arm32`, `arm64`, `riscv32`, `riscv64`, `riscv128`, `loongarch32`,
///   `loongarch64`), `requests_arch_unknown` (a code no family covers), `requests_arch_none`
///   (no code at all); `requests_http_boot`: PXE requests from HTTP Boot clients.
/// - `malformed_<reason>`: `dropped_malformed` by reason (see `bootgate_wire::dhcp::Error::reason`).
/// - `relay_requests`: PXE requests that came through a relay (giaddr set);
///   `relay_option82`: PXE requests carrying option 82; `relay_replies`: replies sent to a relay.
/// - `replies_delayed`: replies queued for `response_delay_ms` (counted again as answered when
///   sent); `delayed_dropped`: delayed replies dropped because the queue was full.
/// - `ignored_standby_wait`: standby mode, requests left to the primary; `answered_standby`:
///   answers (sent) a standby gave because the primary was evidently silent.
pub const COUNTER_NAMES: &[&str] = &[
    "received",
    "answered_offer",
    "answered_ack",
    "ignored_not_pxe",
    "ignored_unknown_arch",
    "ignored_other_server",
    "dropped_malformed",
    "send_errors",
    "events_dropped",
    "ignored_other_message",
    "ignored_no_boot_program",
    "ignored_denied",
    "ignored_not_allowed",
    "ignored_unknown_machine",
    "answered_default_arch",
    "answered_http_boot",
    "requests_discover",
    "requests_request",
    "requests_inform",
    "requests_other",
    "requests_http_boot",
    "requests_arch_unknown",
    "requests_arch_none",
    "relay_requests",
    "relay_option82",
    "relay_replies",
    "replies_delayed",
    "delayed_dropped",
    "ignored_standby_wait",
    "answered_standby",
    // ARCH_BASE: one per ArchFamily, in ArchFamily::ALL order.
    "requests_arch_bios",
    "requests_arch_efi_ia32",
    "requests_arch_efi_x64",
    "requests_arch_arm32",
    "requests_arch_arm64",
    "requests_arch_riscv32",
    "requests_arch_riscv64",
    "requests_arch_riscv128",
    "requests_arch_loongarch32",
    "requests_arch_loongarch64",
    // MALFORMED_BASE: one per MALFORMED_REASONS entry.
    "malformed_truncated",
    "malformed_bad_magic_cookie",
    "malformed_option_truncated",
    "malformed_bad_hardware_length",
    "malformed_not_request",
    "malformed_missing_message_type",
    "malformed_bad_option_length",
    "malformed_oversize",
];

/// Message types of the labelled `requests{type=..,arch=..}` counters, in index order (as the flat
/// `requests_<type>` counters).
const REQUEST_TYPES: [&str; 4] = ["discover", "request", "inform", "other"];
/// Reply types of the labelled `replies{type=..,arch=..}` counters.
const REPLY_TYPES: [&str; 2] = ["offer", "ack"];
/// Architecture label values: the families in [`ArchFamily::ALL`] order, then `unknown` (a code no
/// family covers) and `none` (no option 93).
const ARCH_LABELS: usize = ArchFamily::COUNT + 2;
/// Reasons of the labelled `drops{reason=..}` counters: requests read and not answered. The first
/// ones mirror the `ignored_*` counters; `malformed_<reason>` the parse errors; `send_error` replies
/// that could not be built or sent; `delay_queue_full` delayed replies dropped; `standby_wait`
/// requests a standby left to the primary.
const DROP_REASONS: [&str; 11] = [
    "not_pxe",
    "unknown_arch",
    "no_boot_program",
    "other_server",
    "other_message",
    "denied",
    "not_allowed",
    "unknown_machine",
    "send_error",
    "delay_queue_full",
    "standby_wait",
];
/// Indices into [`DROP_REASONS`] used by name.
const D_NOT_PXE: usize = 0;
const D_SEND_ERROR: usize = 8;
const D_DELAY_QUEUE_FULL: usize = 9;
const D_STANDBY_WAIT: usize = 10;
/// Directions of the labelled `relay_messages{direction=..}` counters.
const RELAY_DIRECTIONS: [&str; 2] = ["received", "sent"];

/// Labelled counters, exported by Python as labelled Prometheus families (a counter named
/// `family{k=v,k2=v2}` becomes `bootgate_dhcp_<family>_total{k="v",k2="v2"}`):
///
/// - `requests{type=<discover|request|inform|other>,arch=<family|unknown|none>}`: PXE requests;
/// - `replies{type=<offer|ack>,arch=..}`: proxy replies sent;
/// - `drops{reason=..}`: datagrams read and not answered, by reason (see [`DROP_REASONS`];
///   parse errors as `malformed_<reason>`);
/// - `relay_messages{direction=<received|sent>}`: PXE requests from relays and replies to relays.
///
/// The flat counters of [`COUNTER_NAMES`] stay as they were; these come after them in
/// `counters()`.
pub fn labelled_counter_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let arch = |i: usize| match i {
            i if i < ArchFamily::COUNT => ArchFamily::ALL[i].name(),
            i if i == ArchFamily::COUNT => "unknown",
            _ => "none",
        };
        let mut names: Vec<String> = Vec::new();
        for t in REQUEST_TYPES {
            names.extend((0..ARCH_LABELS).map(|a| format!("requests{{type={t},arch={}}}", arch(a))));
        }
        for t in REPLY_TYPES {
            names.extend((0..ARCH_LABELS).map(|a| format!("replies{{type={t},arch={}}}", arch(a))));
        }
        names.extend(DROP_REASONS.iter().map(|r| format!("drops{{reason={r}}}")));
        names.extend(MALFORMED_REASONS.iter().map(|r| format!("drops{{reason=malformed_{r}}}")));
        names.extend(RELAY_DIRECTIONS.iter().map(|d| format!("relay_messages{{direction={d}}}")));
        // Built once per process: leaking them gives the &'static names `Counters` keeps.
        names.into_iter().map(|n| &*Box::leak(n.into_boxed_str())).collect()
    })
}

/// Index of `requests{type=<REQUEST_TYPES[t]>,arch=<a>}` in [`labelled_counter_names`].
fn l_request(t: usize, arch: usize) -> usize {
    t * ARCH_LABELS + arch
}
/// Index of `replies{type=<REPLY_TYPES[t]>,arch=<a>}`.
fn l_reply(t: usize, arch: usize) -> usize {
    (REQUEST_TYPES.len() + t) * ARCH_LABELS + arch
}
/// Index of `drops{reason=<DROP_REASONS[r]>}`.
fn l_drop(r: usize) -> usize {
    (REQUEST_TYPES.len() + REPLY_TYPES.len()) * ARCH_LABELS + r
}
/// Index of `drops{reason=malformed_<MALFORMED_REASONS[r]>}`.
fn l_malformed(r: usize) -> usize {
    l_drop(DROP_REASONS.len()) + r
}
/// Index of `relay_messages{direction=<RELAY_DIRECTIONS[d]>}`.
fn l_relay(d: usize) -> usize {
    l_malformed(MALFORMED_REASONS.len()) + d
}

/// The `ARCH_LABELS` index of a request's architecture.
fn arch_label(arch: Option<u16>) -> usize {
    match arch.map(classify) {
        None => ArchFamily::COUNT + 1,
        Some(None) => ArchFamily::COUNT,
        Some(Some(c)) => c.family.index(),
    }
}

/// Index of `requests_arch_bios`; the families follow in [`ArchFamily::ALL`] order.
const ARCH_BASE: usize = C::AnsweredStandby as usize + 1;
/// Index of the first `malformed_*` counter.
const MALFORMED_BASE: usize = ARCH_BASE + ArchFamily::COUNT;
/// Parse error reasons with a counter, in counter order.
const MALFORMED_REASONS: [&str; 8] = [
    "truncated",
    "bad_magic_cookie",
    "option_truncated",
    "bad_hardware_length",
    "not_request",
    "missing_message_type",
    "bad_option_length",
    // Not a parse error: a datagram larger than a receive slot (SLOT bytes).
    "oversize",
];

#[derive(Clone, Copy)]
enum C {
    Received,
    AnsweredOffer,
    AnsweredAck,
    IgnoredNotPxe,
    IgnoredUnknownArch,
    IgnoredOtherServer,
    DroppedMalformed,
    SendErrors,
    EventsDropped,
    IgnoredOtherMessage,
    IgnoredNoBootProgram,
    IgnoredDenied,
    IgnoredNotAllowed,
    IgnoredUnknownMachine,
    AnsweredDefaultArch,
    AnsweredHttpBoot,
    RequestsDiscover,
    RequestsRequest,
    RequestsInform,
    RequestsOther,
    RequestsHttpBoot,
    RequestsArchUnknown,
    RequestsArchNone,
    RelayRequests,
    RelayOption82,
    RelayReplies,
    RepliesDelayed,
    DelayedDropped,
    IgnoredStandbyWait,
    AnsweredStandby,
}

/// Events kept for Python between drains; more are dropped and counted.
const EVENT_CAPACITY: usize = 4096;
/// Datagrams read from one socket per wake-up (one recvmmsg) before the other gets its turn.
const BATCH: usize = 64;
/// Bytes of one receive or send slot. DHCP requests and our replies are far smaller; a larger
/// datagram is dropped and counted as `malformed_oversize`.
const SLOT: usize = 4096;
/// Requested socket receive buffer (the kernel clamps it to net.core.rmem_max): room for the
/// requests that arrive while the engine thread is off its CPU. At 80 k requests/s a 1 MiB buffer
/// overflowed during the stalls of a shared 2-vCPU machine (benches/README-dhcp.md).
const RCVBUF: usize = 4 << 20;
/// Delayed replies held at most (a standby under a flood drops the excess, counted).
const DELAY_CAPACITY: usize = 16_384;
/// Clients a standby remembers (see [`StandbyTracker`]).
const STANDBY_CAPACITY: usize = 65_536;

/// Upper bounds (microseconds, inclusive) of the latency histogram buckets; a last bucket counts
/// the rest.
pub const LATENCY_BOUNDS_US: [u64; 16] =
    [10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 1_000_000];
/// Names of the latency buckets (for [`Counters`]; not exported as counters).
const LATENCY_BUCKETS: &[&str] = &[
    "le_10", "le_20", "le_50", "le_100", "le_200", "le_300", "le_500", "le_1000", "le_2000", "le_5000", "le_10000",
    "le_20000", "le_50000", "le_100000", "le_200000", "le_1000000", "inf",
];

/// Where the time between a request's arrival and its reply goes, measured from the kernel's
/// receive timestamp of each datagram (SO_TIMESTAMPNS; CLOCK_REALTIME):
///
/// - `wait`: arrival to the engine's recvmmsg that read it (the socket queue, which includes the
///   engine thread's own wake-up and any time it was not scheduled), one per datagram read;
/// - `reply`: arrival to the return of the sendmmsg that sent its reply (wait + decision + the
///   rest of the batch + the send), one per reply sent at once (delayed replies are not counted);
/// - `work`: the engine's own part of `reply`: from the recvmmsg that read the request to the
///   return of the sendmmsg that sent its reply (the decisions of the whole batch and the send
///   system call, which on a veth also carries the reply into the receiver's socket); counted even
///   without a receive timestamp.
///
/// Counts per bucket (not cumulative); `bounds_us[i]` is the inclusive upper bound of bucket `i`,
/// the last bucket (`bounds_us.len()`) counts the rest. Datagrams without a timestamp are not
/// counted. Off by default (it costs a control message per datagram and three clock reads per
/// batch): [`DhcpEngine::set_latency_timing`] turns it on.
#[derive(Clone, Debug)]
pub struct LatencyHistograms {
    pub bounds_us: &'static [u64],
    pub wait: Vec<u64>,
    pub reply: Vec<u64>,
    pub work: Vec<u64>,
}

fn latency_bucket(ns: u64) -> usize {
    let us = ns.div_ceil(1000);
    LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len())
}

/// CLOCK_REALTIME in nanoseconds (the clock of SO_TIMESTAMPNS).
fn realtime_ns() -> u64 {
    // SAFETY: clock_gettime writes one timespec into a live local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(&ts)
}

/// The SCM_TIMESTAMPNS receive timestamp (CLOCK_REALTIME, ns) among the control messages of a
/// datagram read with recvmsg / recvmmsg, if there is one (also used by the benchmark's load
/// generator).
///
/// # Safety
///
/// `h.msg_control` must be null or point at `h.msg_controllen` readable bytes, as recvmsg leaves it.
pub unsafe fn rx_timestamp_ns(h: &libc::msghdr) -> Option<u64> {
    if h.msg_control.is_null() {
        return None;
    }
    // SAFETY: the caller's promise; the CMSG_* macros never step outside msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                return Some(timespec_ns(&std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>())));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn timespec_ns(ts: &libc::timespec) -> u64 {
    u64::try_from(ts.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000) + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// State shared by the handle and the packet thread.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    labelled: Counters,
    events: EventQueue<DhcpEvent>,
    policy: RwLock<Arc<DhcpPolicy>>,
    /// Time from the kernel's receive timestamp to the engine's read, and to the reply's send.
    wait: Counters,
    reply: Counters,
    /// Time from the engine's read of a datagram to the send of its reply.
    work: Counters,
    /// Whether the engine keeps the latency histograms (receive timestamps on).
    timing: AtomicBool,
}

impl Shared {
    fn inc(&self, c: C) {
        self.counters.inc(c as usize);
    }

    fn inc_at(&self, index: usize) {
        self.counters.inc(index);
    }

    fn inc_labelled(&self, index: usize) {
        self.labelled.inc(index);
    }

    /// A request dropped: the flat counter and `drops{reason=DROP_REASONS[r]}`.
    fn drop_(&self, c: C, r: usize) {
        self.inc(c);
        self.inc_labelled(l_drop(r));
    }

    fn policy(&self) -> Arc<DhcpPolicy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Handle of the running engine thread.
#[derive(Debug)]
pub struct DhcpEngine {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    stop_tx: UnixStream,
    ports: (u16, u16),
}

impl DhcpEngine {
    /// Binds both sockets and starts the packet thread.
    ///
    /// Refuses (InvalidInput) an empty interface name, and no interface with bind address
    /// 0.0.0.0: the engine never listens on every interface at once.
    pub fn start(settings: DhcpSettings, policy: DhcpPolicy) -> io::Result<Self> {
        match &settings.interface {
            Some(name) if name.is_empty() => {
                return Err(invalid("dhcp interface name is empty; name the interface or turn DHCP off"))
            }
            None if settings.bind_ip.is_unspecified() => {
                return Err(invalid("dhcp without an interface needs a specific bind address, not 0.0.0.0"))
            }
            _ => {}
        }
        let dhcp = bind_udp(&settings, settings.port)?;
        let pxe = bind_udp(&settings, settings.pxe_port)?;
        let ports = (local_port(&dhcp)?, local_port(&pxe)?);
        let (stop_tx, stop_rx) = UnixStream::pair()?;
        stop_rx.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            counters: Counters::new(COUNTER_NAMES),
            labelled: Counters::new(labelled_counter_names()),
            events: EventQueue::new(EVENT_CAPACITY)?,
            policy: RwLock::new(Arc::new(policy)),
            wait: Counters::new(LATENCY_BUCKETS),
            reply: Counters::new(LATENCY_BUCKETS),
            work: Counters::new(LATENCY_BUCKETS),
            timing: AtomicBool::new(false),
        });
        let worker = Worker {
            shared: Arc::clone(&shared),
            settings,
            dhcp,
            pxe,
            ports,
            standby: RefCell::new(StandbyTracker::new(STANDBY_CAPACITY)),
            epoch: Instant::now(),
        };
        let thread = std::thread::Builder::new().name("bootgate-dhcp".into()).spawn(move || worker.run(stop_rx))?;
        Ok(Self { shared, thread: Some(thread), stop_tx, ports })
    }

    /// Replaces the policy whole; the next packet is answered by it.
    pub fn set_policy(&self, policy: DhcpPolicy) {
        *self.shared.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The flat counters ([`COUNTER_NAMES`]), then the labelled ones ([`labelled_counter_names`]).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut all = self.shared.counters.snapshot();
        all.extend(self.shared.labelled.snapshot());
        all
    }

    pub fn drain_events(&self, max: usize) -> Vec<DhcpEvent> {
        self.shared.events.drain(max)
    }

    /// Readable whenever events are waiting.
    pub fn event_fd(&self) -> RawFd {
        self.shared.events.notify_fd()
    }

    /// Turns the latency histograms on or off (off at start); the engine thread switches its
    /// sockets' receive timestamps at its next wake-up.
    pub fn set_latency_timing(&self, on: bool) {
        self.shared.timing.store(on, Ordering::Relaxed);
    }

    /// The engine's own share of the reply latency (see [`LatencyHistograms`]); all zero unless
    /// [`DhcpEngine::set_latency_timing`] turned it on.
    pub fn latency(&self) -> LatencyHistograms {
        let values = |c: &Counters| c.snapshot().into_iter().map(|(_, v)| v).collect();
        LatencyHistograms {
            bounds_us: &LATENCY_BOUNDS_US,
            wait: values(&self.shared.wait),
            reply: values(&self.shared.reply),
            work: values(&self.shared.work),
        }
    }

    /// The bound (DHCP, PXE boot server) ports.
    pub fn local_ports(&self) -> (u16, u16) {
        self.ports
    }

    /// Stops the packet thread and waits for it; the sockets close with it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = (&self.stop_tx).write(&[1]);
            let _ = thread.join();
        }
    }
}

impl Drop for DhcpEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

fn bind_udp(settings: &DhcpSettings, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    // Best effort: room for a burst of boot requests (the kernel clamps it to rmem_max).
    let _ = socket.set_recv_buffer_size(RCVBUF);
    if let Some(name) = &settings.interface {
        socket
            .bind_device(Some(name.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("dhcp: cannot bind to interface {name:?}: {e}")))?;
    }
    let addr = SocketAddrV4::new(settings.bind_ip, port);
    socket.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("dhcp: cannot bind {addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Kernel receive timestamps (SO_TIMESTAMPNS) on or off; best effort (without them the latency
/// histograms count only `work`).
fn set_rx_timestamps(fd: RawFd, on: bool) {
    let value = libc::c_int::from(on);
    // SAFETY: valid fd and a pointer to a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn local_port(s: &UdpSocket) -> io::Result<u16> {
    Ok(s.local_addr()?.port())
}

/// Where the reply to a request goes (RFC 2131 section 4.1, PXE 2.1 for 4011).
/// On 67: to the relay (giaddr, server port) if relayed; else unicast to ciaddr when the client
/// has an address and did not ask for broadcast; else broadcast. On 4011: back to the sender.
fn reply_destination(
    req: &PxeRequest,
    port: Port,
    from: SocketAddr,
    settings: &DhcpSettings,
    relay_port: u16,
) -> SocketAddr {
    match port {
        Port::BootServer => from,
        Port::Dhcp => {
            if !req.giaddr.is_unspecified() {
                SocketAddr::from((req.giaddr, relay_port))
            } else if !req.ciaddr.is_unspecified() && !req.broadcast() {
                SocketAddr::from((req.ciaddr, settings.client_port))
            } else {
                SocketAddr::from((settings.broadcast_ip, settings.client_port))
            }
        }
    }
}

/// A reply waiting for its send time (standby server, `response_delay_ms`).
struct Pending {
    due: Instant,
    dest: SocketAddr,
    reply: MessageType,
    http_boot: bool,
    default_arch: bool,
    to_relay: bool,
    /// `ARCH_LABELS` index of the request's architecture.
    arch: usize,
    bytes: Vec<u8>,
}

/// The packet thread's state.
struct Worker {
    shared: Arc<Shared>,
    settings: DhcpSettings,
    dhcp: UdpSocket,
    pxe: UdpSocket,
    ports: (u16, u16),
    /// Standby mode's first sightings (only this thread touches it).
    standby: RefCell<StandbyTracker>,
    /// Start of the standby tracker's millisecond clock.
    epoch: Instant,
}

impl Worker {
    /// Standby mode: whether to answer this port-67 request now (the primary evidently silent).
    /// A request naming this server (option 54: the client chose our offer) is always answered.
    fn standby_answers(&self, req: &PxeRequest, policy: &DhcpPolicy) -> bool {
        if req.server_id == Some(self.settings.server_ip) {
            return true;
        }
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut tracker = self.standby.borrow_mut();
        let verdict = tracker.check(req.mac(), req.xid, req.secs, now_ms, u64::from(policy.response_delay_ms));
        verdict.is_some()
    }

    fn run(self, stop_rx: UnixStream) {
        let mut batch = Batch::new();
        // Delays are the same for every reply of one policy, so the queue stays in due order
        // (a policy swap to a shorter delay may send a few replies early: harmless).
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut fds = [pollin(self.dhcp.as_raw_fd()), pollin(self.pxe.as_raw_fd()), pollin(stop_rx.as_raw_fd())];
        let mut timing = false;
        loop {
            poll_due(&mut fds, pending.front().map(|p| p.due));
            if self.shared.timing.load(Ordering::Relaxed) != timing {
                timing = !timing;
                set_rx_timestamps(self.dhcp.as_raw_fd(), timing);
                set_rx_timestamps(self.pxe.as_raw_fd(), timing);
            }
            batch.timing = timing;
            if fds[2].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                self.drain_socket(&self.dhcp, Port::Dhcp, &mut batch, &mut pending);
            }
            if fds[1].revents != 0 {
                self.drain_socket(&self.pxe, Port::BootServer, &mut batch, &mut pending);
            }
            self.send_due(&mut pending);
        }
    }

    fn send_due(&self, pending: &mut VecDeque<Pending>) {
        let now = Instant::now();
        while pending.front().is_some_and(|p| p.due <= now) {
            let Some(p) = pending.pop_front() else { break };
            let sent = self.dhcp.send_to(&p.bytes, p.dest).is_ok();
            self.count_sent(sent, p.reply, p.http_boot, p.default_arch, p.to_relay, p.arch);
        }
    }

    fn count_sent(
        &self,
        sent: bool,
        reply: MessageType,
        http_boot: bool,
        default_arch: bool,
        to_relay: bool,
        arch: usize,
    ) {
        let shared = &self.shared;
        if !sent {
            return shared.drop_(C::SendErrors, D_SEND_ERROR);
        }
        let offer = reply == MessageType::Offer;
        shared.inc(if offer { C::AnsweredOffer } else { C::AnsweredAck });
        shared.inc_labelled(l_reply(usize::from(!offer), arch));
        if http_boot {
            shared.inc(C::AnsweredHttpBoot);
        }
        if default_arch {
            shared.inc(C::AnsweredDefaultArch);
        }
        if to_relay {
            shared.inc(C::RelayReplies);
            shared.inc_labelled(l_relay(1));
        }
    }

    /// Reads up to BATCH datagrams with one recvmmsg, decides each, sends the replies with one
    /// sendmmsg, then counts them and queues the events (in arrival order).
    fn drain_socket(&self, sock: &UdpSocket, port: Port, batch: &mut Batch, pending: &mut VecDeque<Pending>) {
        let n = batch.recv(sock.as_raw_fd());
        let mut ready: Vec<Prepared> = Vec::with_capacity(n);
        let mut sends = 0;
        let timing = batch.timing && n > 0;
        let read_at = if timing { realtime_ns() } else { 0 };
        // Requests decided with one policy snapshot per batch.
        let policy = self.shared.policy();
        for i in 0..n {
            let rx = if timing { batch.rx_time(i).unwrap_or(0) } else { 0 };
            if rx != 0 {
                self.shared.wait.inc(latency_bucket(read_at.saturating_sub(rx)));
            }
            let (len, truncated, from) = batch.received(i);
            if truncated {
                self.shared.inc(C::Received);
                self.count_malformed_reason(MALFORMED_REASONS.len() - 1);
                continue;
            }
            let (data, out) = batch.slots(i, sends);
            if let Some(p) = self.handle(port, &data[..len], from, out, pending, &policy) {
                if let Some(s) = &p.send {
                    batch.set_dest(sends, s.dest, s.len);
                    batch.send_rx[sends] = rx;
                    sends += 1;
                }
                ready.push(p);
            }
        }
        let sent = batch.send(sock.as_raw_fd(), sends);
        if timing && sends > 0 {
            let sent_at = realtime_ns();
            for (k, rx) in batch.send_rx[..sends].iter().enumerate() {
                if sent.get(k).copied().unwrap_or(false) {
                    self.shared.work.inc(latency_bucket(sent_at.saturating_sub(read_at)));
                    if *rx != 0 {
                        self.shared.reply.inc(latency_bucket(sent_at.saturating_sub(*rx)));
                    }
                }
            }
        }
        let mut k = 0;
        for mut p in ready {
            let sent = p.send.take().map(|s| {
                let ok = sent.get(k).copied().unwrap_or(false);
                k += 1;
                if !ok {
                    p.event.answer.clear();
                    p.event.reason = "send_error";
                }
                (ok, s)
            });
            if !self.shared.events.push(p.event) {
                self.shared.inc(C::EventsDropped);
            }
            if let Some((c, r)) = p.drop {
                self.shared.drop_(c, r);
            }
            if let Some((ok, s)) = sent {
                self.count_sent(ok, s.reply, s.http_boot, s.default_arch, s.to_relay, s.arch);
                if ok && s.standby {
                    self.shared.inc(C::AnsweredStandby);
                }
            }
        }
    }

    fn count_malformed_reason(&self, i: usize) {
        self.shared.inc(C::DroppedMalformed);
        self.shared.inc_at(MALFORMED_BASE + i);
        self.shared.inc_labelled(l_malformed(i));
    }

    fn count_malformed(&self, e: &WireError) {
        match MALFORMED_REASONS.iter().position(|r| *r == e.reason()) {
            Some(i) => self.count_malformed_reason(i),
            None => self.shared.inc(C::DroppedMalformed),
        }
    }

    fn count_request(&self, req: &PxeRequest) {
        let shared = &self.shared;
        let (c, t) = match req.message_type {
            MessageType::Discover => (C::RequestsDiscover, 0),
            MessageType::Request => (C::RequestsRequest, 1),
            MessageType::Inform => (C::RequestsInform, 2),
            _ => (C::RequestsOther, 3),
        };
        shared.inc(c);
        shared.inc_labelled(l_request(t, arch_label(req.client_arch)));
        let class = req.client_arch.map(classify);
        match class {
            None => shared.inc(C::RequestsArchNone),
            Some(None) => shared.inc(C::RequestsArchUnknown),
            Some(Some(c)) => shared.inc_at(ARCH_BASE + c.family.index()),
        }
        if req.is_http_boot() || class.flatten().is_some_and(|c| c.http) {
            shared.inc(C::RequestsHttpBoot);
        }
        if req.relay().is_some() {
            shared.inc(C::RelayRequests);
            shared.inc_labelled(l_relay(0));
        }
        if req.relay_agent_info.is_some() {
            shared.inc(C::RelayOption82);
        }
    }

    /// Decides one datagram. The reply, if one is to go out now, is emitted into `out` and
    /// described in the result's `send`; the event is queued by the caller once it is sent.
    /// None: nothing to report (malformed, or not a PXE client).
    fn handle(
        &self,
        port: Port,
        data: &[u8],
        from: SocketAddr,
        out: &mut [u8],
        pending: &mut VecDeque<Pending>,
        policy: &DhcpPolicy,
    ) -> Option<Prepared> {
        let shared = &self.shared;
        shared.inc(C::Received);
        let req = match PxeRequest::parse_bytes(data) {
            Ok(req) => req,
            Err(e) => {
                self.count_malformed(&e);
                return None;
            }
        };
        if !req.is_pxe() {
            // Not a PXE client: no event (most DHCP traffic on 67 is this).
            shared.drop_(C::IgnoredNotPxe, D_NOT_PXE);
            return None;
        }
        let mut send = None;
        let mut drop = None;
        self.count_request(&req);
        let mut delayed = false;
        let (answer, reason) = match decide(&req, policy, port, self.settings.server_ip) {
            Decision::Ignore(why) => {
                let (c, r) = match why {
                    Ignore::NotPxe => (C::IgnoredNotPxe, D_NOT_PXE),
                    Ignore::UnknownArch(_) => (C::IgnoredUnknownArch, 1),
                    Ignore::NoBootProgram(_) => (C::IgnoredNoBootProgram, 2),
                    Ignore::OtherServer => (C::IgnoredOtherServer, 3),
                    Ignore::OtherMessage(_) => (C::IgnoredOtherMessage, 4),
                    Ignore::Denied => (C::IgnoredDenied, 5),
                    Ignore::NotAllowed => (C::IgnoredNotAllowed, 6),
                    Ignore::UnknownMachine => (C::IgnoredUnknownMachine, 7),
                };
                drop = Some((c, r));
                (String::new(), DROP_REASONS[r])
            }
            Decision::Answer(_) if policy.standby && port == Port::Dhcp && !self.standby_answers(&req, policy) => {
                drop = Some((C::IgnoredStandbyWait, D_STANDBY_WAIT));
                (String::new(), DROP_REASONS[D_STANDBY_WAIT])
            }
            Decision::Answer(a) => {
                let standby = policy.standby && port == Port::Dhcp;
                let reply = ProxyReply::new(&req, &a, self.settings.server_ip, policy);
                let dest = reply_destination(&req, port, from, &self.settings, self.ports.0);
                let http_boot = a.client == ClientKind::HttpBoot;
                let default_arch = matches!(a.target, BootTarget::DefaultProgram | BootTarget::DefaultUrl);
                let to_relay = port == Port::Dhcp && req.relay().is_some();
                let arch = arch_label(req.client_arch);
                let delay = policy.response_delay_ms;
                match reply.emit(out) {
                    Err(_) => {
                        drop = Some((C::SendErrors, D_SEND_ERROR));
                        (String::new(), "send_error")
                    }
                    Ok(n) if delay > 0 && port == Port::Dhcp && !policy.standby => {
                        delayed = true;
                        shared.inc(C::RepliesDelayed);
                        if pending.len() >= DELAY_CAPACITY {
                            drop = Some((C::DelayedDropped, D_DELAY_QUEUE_FULL));
                        } else {
                            pending.push_back(Pending {
                                due: Instant::now() + Duration::from_millis(u64::from(delay)),
                                dest,
                                reply: a.reply,
                                http_boot,
                                default_arch,
                                to_relay,
                                arch,
                                bytes: out[..n].to_vec(),
                            });
                        }
                        (a.boot_file.to_owned(), "")
                    }
                    Ok(n) => {
                        send = Some(ToSend {
                            len: n,
                            dest,
                            reply: a.reply,
                            http_boot,
                            default_arch,
                            to_relay,
                            arch,
                            standby,
                        });
                        (a.boot_file.to_owned(), "")
                    }
                }
            }
        };
        let event = DhcpEvent {
            time: crate::unix_time(),
            mac: req.mac(),
            uuid: req.client_uuid,
            arch: req.client_arch,
            message_type: req.message_type.into(),
            vendor_class: req.vendor_class_str(),
            user_class: req.user_class_str(),
            is_ipxe: req.is_ipxe(),
            port: match port {
                Port::Dhcp => self.ports.0,
                Port::BootServer => self.ports.1,
            },
            relay: req.relay(),
            relay_agent_info: req.relay_agent_info.clone(),
            answer,
            reason,
            delayed,
        };
        Some(Prepared { event, send, drop })
    }
}

/// A decided request: its event, the reply waiting in the batch's send slot (if any), and the
/// drop counter to count (if it was not answered). Counted after the event is queued, so a
/// counter seen by Python always has its event drainable.
struct Prepared {
    event: DhcpEvent,
    send: Option<ToSend>,
    drop: Option<(C, usize)>,
}

/// A reply emitted into a send slot, and what to count once it is sent.
struct ToSend {
    len: usize,
    dest: SocketAddr,
    reply: MessageType,
    http_boot: bool,
    default_arch: bool,
    to_relay: bool,
    arch: usize,
    standby: bool,
}

/// Buffers of one recvmmsg / sendmmsg round: BATCH receive slots and BATCH send slots of SLOT
/// bytes, their addresses and the kernel's message headers. Allocated once per engine thread.
struct Batch {
    recv_data: Vec<u8>,
    send_data: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    dests: Vec<libc::sockaddr_in>,
    send_lens: Vec<usize>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control message room of each receive slot (the SCM_TIMESTAMPNS timestamp).
    ctrl: Vec<[u64; 8]>,
    /// Receive timestamp (ns) of the request whose reply is in send slot `k` (0: none).
    send_rx: Vec<u64>,
    /// Whether the latency histograms are kept (receive timestamps are on).
    timing: bool,
}

fn sockaddr_to_v4(a: &libc::sockaddr_in) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port)))
}

fn v4_to_sockaddr(a: SocketAddr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    if let SocketAddr::V4(v4) = a {
        s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    }
    s
}

impl Batch {
    fn new() -> Self {
        fn zeroed<T>() -> T {
            // SAFETY: only used for libc's sockaddr_in and mmsghdr, plain old data for which
            // all-zero is a valid value (null pointers are replaced before every system call).
            unsafe { std::mem::zeroed() }
        }
        Self {
            recv_data: vec![0; BATCH * SLOT],
            send_data: vec![0; BATCH * SLOT],
            addrs: (0..BATCH).map(|_| zeroed()).collect(),
            dests: (0..BATCH).map(|_| zeroed()).collect(),
            send_lens: vec![0; BATCH],
            iovs: (0..BATCH).map(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }).collect(),
            hdrs: (0..BATCH).map(|_| zeroed()).collect(),
            ctrl: vec![[0; 8]; BATCH],
            send_rx: vec![0; BATCH],
            timing: false,
        }
    }

    /// Points header `i` at `iov` slot `i` and the given address; `len` bytes of `data` slot `i`.
    fn prepare(&mut self, i: usize, recv: bool, len: usize) {
        let (data, addr) =
            if recv { (&mut self.recv_data, &mut self.addrs[i]) } else { (&mut self.send_data, &mut self.dests[i]) };
        self.iovs[i] = libc::iovec { iov_base: data[i * SLOT..].as_mut_ptr().cast(), iov_len: len };
        let h = &mut self.hdrs[i];
        h.msg_len = 0;
        h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
        h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut self.iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        if recv && self.timing {
            h.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
        } else {
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
        }
        h.msg_hdr.msg_flags = 0;
    }

    /// One recvmmsg (non-blocking): the number of datagrams read (0 when none or on an error,
    /// e.g. a queued ICMP error: tried again at the next wake-up).
    fn recv(&mut self, fd: RawFd) -> usize {
        for i in 0..BATCH {
            self.prepare(i, true, SLOT);
        }
        loop {
            // SAFETY: every header points at live slots of this Batch (set just above) of the
            // stated lengths; the Batch is not moved or resized during the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                return n as usize;
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return 0;
            }
        }
    }

    /// Datagram `i` of the last recv: length, whether it was cut (larger than SLOT), sender.
    fn received(&self, i: usize) -> (usize, bool, SocketAddr) {
        let h = &self.hdrs[i];
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || h.msg_len as usize > SLOT;
        ((h.msg_len as usize).min(SLOT), truncated, sockaddr_to_v4(&self.addrs[i]))
    }

    /// The kernel receive timestamp (ns) of datagram `i` of the last recv, if it has one.
    fn rx_time(&self, i: usize) -> Option<u64> {
        // SAFETY: the control buffer is this Batch's slot `i`, and the kernel set msg_controllen
        // within its size (or the header has no control buffer at all).
        unsafe { rx_timestamp_ns(&self.hdrs[i].msg_hdr) }
    }

    /// Receive slot `i` and send slot `k`.
    fn slots(&mut self, i: usize, k: usize) -> (&[u8], &mut [u8]) {
        (&self.recv_data[i * SLOT..(i + 1) * SLOT], &mut self.send_data[k * SLOT..(k + 1) * SLOT])
    }

    fn set_dest(&mut self, k: usize, dest: SocketAddr, len: usize) {
        self.dests[k] = v4_to_sockaddr(dest);
        self.send_lens[k] = len;
    }

    /// Sends send slots 0..count with sendmmsg; whether each went out. A message the kernel
    /// refuses is skipped (counted by the caller) and the rest are sent.
    fn send(&mut self, fd: RawFd, count: usize) -> Vec<bool> {
        let mut sent = vec![false; count];
        for k in 0..count {
            self.prepare(k, false, self.send_lens[k]);
        }
        let mut start = 0;
        while start < count {
            // SAFETY: headers start..count point at live send slots and destinations of this Batch
            // (set just above); the Batch is not moved or resized during the call.
            let n = unsafe {
                libc::sendmmsg(fd, self.hdrs[start..].as_mut_ptr(), (count - start) as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if n > 0 {
                let n = n as usize;
                sent[start..start + n].fill(true);
                start += n;
            } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            } else {
                start += 1; // this one failed; go on with the rest
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DhcpSettings {
        DhcpSettings {
            interface: None,
            bind_ip: Ipv4Addr::LOCALHOST,
            server_ip: Ipv4Addr::LOCALHOST,
            port: 0,
            pxe_port: 0,
            client_port: 68,
            broadcast_ip: Ipv4Addr::BROADCAST,
        }
    }

    fn req(flags: u16, ciaddr: [u8; 4], giaddr: [u8; 4]) -> PxeRequest {
        let mut b = vec![0u8; 236];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[10..12].copy_from_slice(&flags.to_be_bytes());
        b[12..16].copy_from_slice(&ciaddr);
        b[24..28].copy_from_slice(&giaddr);
        b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
        PxeRequest::parse_bytes(&b).unwrap()
    }

    #[test]
    fn destinations_follow_rfc2131() {
        let s = settings();
        let from = SocketAddr::from(([198, 18, 0, 9], 1234));
        let bcast = SocketAddr::from((Ipv4Addr::BROADCAST, 68));
        assert_eq!(reply_destination(&req(0, [0; 4], [0; 4]), Port::Dhcp, from, &s, 67), bcast);
        assert_eq!(reply_destination(&req(0x8000, [0; 4], [0; 4]), Port::Dhcp, from, &s, 67), bcast);
        assert_eq!(
            reply_destination(&req(0, [198, 18, 0, 7], [0; 4]), Port::Dhcp, from, &s, 67),
            SocketAddr::from(([198, 18, 0, 7], 68))
        );
        assert_eq!(reply_destination(&req(0x8000, [198, 18, 0, 7], [0; 4]), Port::Dhcp, from, &s, 67), bcast);
        assert_eq!(
            reply_destination(&req(0x8000, [198, 18, 0, 7], [198, 19, 0, 1]), Port::Dhcp, from, &s, 67),
            SocketAddr::from(([198, 19, 0, 1], 67))
        );
        assert_eq!(reply_destination(&req(0, [0; 4], [198, 19, 0, 1]), Port::BootServer, from, &s, 67), from);
    }

    #[test]
    fn counter_layout_matches_the_names() {
        assert_eq!(COUNTER_NAMES[C::DelayedDropped as usize], "delayed_dropped");
        assert_eq!(COUNTER_NAMES[C::AnsweredStandby as usize], "answered_standby");
        assert_eq!(labelled_counter_names()[l_drop(D_STANDBY_WAIT)], "drops{reason=standby_wait}");
        assert_eq!(COUNTER_NAMES[C::IgnoredOtherMessage as usize], "ignored_other_message");
        for (i, f) in ArchFamily::ALL.into_iter().enumerate() {
            assert_eq!(COUNTER_NAMES[ARCH_BASE + i], format!("requests_arch_{}", f.name()));
        }
        for (i, r) in MALFORMED_REASONS.iter().enumerate() {
            assert_eq!(COUNTER_NAMES[MALFORMED_BASE + i], format!("malformed_{r}"));
        }
        assert_eq!(MALFORMED_BASE + MALFORMED_REASONS.len(), COUNTER_NAMES.len());
        let labelled = labelled_counter_names();
        assert_eq!(labelled[l_request(0, ArchFamily::EfiX64.index())], "requests{type=discover,arch=efi_x64}");
        assert_eq!(labelled[l_request(3, ARCH_LABELS - 1)], "requests{type=other,arch=none}");
        assert_eq!(labelled[l_reply(1, ArchFamily::COUNT)], "replies{type=ack,arch=unknown}");
        assert_eq!(labelled[l_drop(D_NOT_PXE)], "drops{reason=not_pxe}");
        assert_eq!(labelled[l_drop(D_SEND_ERROR)], "drops{reason=send_error}");
        assert_eq!(labelled[l_drop(D_DELAY_QUEUE_FULL)], "drops{reason=delay_queue_full}");
        assert_eq!(labelled[l_malformed(0)], "drops{reason=malformed_truncated}");
        assert_eq!(labelled[l_relay(1)], "relay_messages{direction=sent}");
        assert_eq!(l_relay(RELAY_DIRECTIONS.len()), labelled.len());
        let mut sorted = COUNTER_NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), COUNTER_NAMES.len(), "names are unique");
    }

    #[test]
    fn latency_buckets_follow_the_bounds() {
        assert_eq!(LATENCY_BUCKETS.len(), LATENCY_BOUNDS_US.len() + 1);
        for (i, b) in LATENCY_BOUNDS_US.iter().enumerate() {
            assert_eq!(LATENCY_BUCKETS[i], format!("le_{b}"));
            assert_eq!(latency_bucket(b * 1000), i, "the bound itself is inside its bucket");
            assert_eq!(latency_bucket(b * 1000 + 1), i + 1);
        }
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BOUNDS_US.len());
    }

    #[test]
    fn answered_request_is_timed() {
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let policy = DhcpPolicy {
            tftp_server: Ipv4Addr::LOCALHOST,
            boot_bios: "undionly.kpxe".into(),
            boot_efi_x64: "snponly.efi".into(),
            script_url: "https://127.0.0.1/boot.ipxe".into(),
            ..DhcpPolicy::default()
        };
        let engine = DhcpEngine::start(settings(), policy).unwrap();
        assert!(engine.latency().work.iter().all(|c| *c == 0));
        engine.set_latency_timing(true);
        let mut b = vec![0u8; 236];
        b[..3].copy_from_slice(&[1, 1, 6]);
        b[4..8].copy_from_slice(&7u32.to_be_bytes());
        b[12..16].copy_from_slice(&[127, 0, 0, 1]);
        b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 3, 93, 2, 0, 7]);
        b.extend_from_slice(&[60, 32]);
        b.extend_from_slice(b"PXEClient:Arch:00007:UNDI:003000");
        b.push(255);
        client.send_to(&b, (Ipv4Addr::LOCALHOST, engine.local_ports().1)).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert!(n > 240 && buf[0] == 2, "a BOOTREPLY");
        // Counted right after the send returned; the reply can overtake that by a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let sum = |v: &[u64]| v.iter().sum::<u64>();
        let mut h = engine.latency();
        while sum(&h.reply) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            h = engine.latency();
        }
        assert_eq!(h.bounds_us.len() + 1, h.reply.len());
        assert_eq!((sum(&h.wait), sum(&h.reply), sum(&h.work)), (1, 1, 1));
    }

    #[test]
    fn refuses_to_listen_everywhere() {
        let policy = DhcpPolicy {
            tftp_server: Ipv4Addr::LOCALHOST,
            boot_bios: "a".into(),
            boot_efi_x64: "b".into(),
            script_url: "c".into(),
            script_url_http: None,
            ipxe_encap: Vec::new(),
            ..DhcpPolicy::default()
        };
        let mut s = settings();
        s.bind_ip = Ipv4Addr::UNSPECIFIED;
        let e = DhcpEngine::start(s.clone(), policy.clone()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        s.interface = Some(String::new());
        assert_eq!(DhcpEngine::start(s, policy).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
