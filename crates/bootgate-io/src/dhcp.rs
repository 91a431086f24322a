//! The proxyDHCP engine: UDP 67 (broadcast DISCOVER/REQUEST -> proxy OFFER) and 4011 (boot server
//! REQUEST -> ACK) on a dedicated thread, driven by `bootgate_wire::dhcp`.
//!
//! CONTRACT (used by bootgate-py; keep these names and fields):
//! - `DhcpSettings`, `DhcpPolicy`, `DhcpEvent` as below.
//! - `DhcpEngine::start(settings, policy) -> io::Result<DhcpEngine>`; `set_policy(&self, policy)`;
//!   `counters(&self) -> Vec<(&'static str, u64)>`; `drain_events(&self, max) -> Vec<DhcpEvent>`;
//!   `event_fd(&self) -> RawFd`; `local_ports(&self) -> (u16, u16)`; `stop(&mut self)` (also on Drop).
//!
//! The packet loop: one thread polls both sockets and a stop pipe with poll(2); each datagram is
//! parsed ([`PxeRequest`]), decided ([`decide`]) against the current policy snapshot, answered
//! ([`ProxyReply`]), counted, and reported as a [`DhcpEvent`] when it came from a PXE client.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bootgate_wire::dhcp::{decide, Decision, Ignore, MessageType, Port, ProxyReply, PxeRequest};
use socket2::{Domain, Protocol, Socket, Type};

use crate::counters::Counters;
use crate::events::EventQueue;

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
    /// What was sent: the boot file or URL, or "" when the request was ignored.
    pub answer: String,
}

/// Counter names, in index order. The names are API (Python exports them as metrics).
///
/// - `received`: datagrams read from either socket.
/// - `answered_offer` / `answered_ack`: proxy OFFERs / ACKs sent.
/// - `ignored_not_pxe`: requests whose option 60 is not `PXEClient...`/`HTTPClient...`.
/// - `ignored_unknown_arch`: PXE requests with no boot program for their architecture.
/// - `ignored_other_server`: REQUESTs addressed to another server (option 54).
/// - `dropped_malformed`: datagrams that are not a well-formed DHCP request (including
///   BOOTREPLYs and plain BOOTP without option 53).
/// - `send_errors`: replies that could not be built (too large for the client) or sent.
/// - `events_dropped`: events lost because Python did not drain the queue in time.
/// - `ignored_other_message`: PXE messages proxyDHCP does not answer (RELEASE, DECLINE, INFORM
///   on 67, DISCOVER on 4011, ...).
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
}

/// Events kept for Python between drains; more are dropped and counted.
const EVENT_CAPACITY: usize = 4096;
/// Datagrams read from one socket per wake-up before the other gets its turn.
const BATCH: usize = 64;
/// Requested socket receive buffer.
const RCVBUF: usize = 1 << 20;
/// Largest UDP payload.
const RECV_BUF: usize = 65_535;

/// State shared by the handle and the packet thread.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    events: EventQueue<DhcpEvent>,
    policy: RwLock<Arc<DhcpPolicy>>,
}

impl Shared {
    fn inc(&self, c: C) {
        self.counters.inc(c as usize);
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
            events: EventQueue::new(EVENT_CAPACITY)?,
            policy: RwLock::new(Arc::new(policy)),
        });
        let worker = Worker { shared: Arc::clone(&shared), settings, dhcp, pxe, ports };
        let thread = std::thread::Builder::new().name("bootgate-dhcp".into()).spawn(move || worker.run(stop_rx))?;
        Ok(Self { shared, thread: Some(thread), stop_tx, ports })
    }

    /// Replaces the policy whole; the next packet is answered by it.
    pub fn set_policy(&self, policy: DhcpPolicy) {
        *self.shared.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        self.shared.counters.snapshot()
    }

    pub fn drain_events(&self, max: usize) -> Vec<DhcpEvent> {
        self.shared.events.drain(max)
    }

    /// Readable whenever events are waiting.
    pub fn event_fd(&self) -> RawFd {
        self.shared.events.notify_fd()
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

/// The packet thread's state.
struct Worker {
    shared: Arc<Shared>,
    settings: DhcpSettings,
    dhcp: UdpSocket,
    pxe: UdpSocket,
    ports: (u16, u16),
}

impl Worker {
    fn run(self, stop_rx: UnixStream) {
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = vec![0u8; RECV_BUF];
        let pollfd = |fd: RawFd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        let mut fds = [pollfd(self.dhcp.as_raw_fd()), pollfd(self.pxe.as_raw_fd()), pollfd(stop_rx.as_raw_fd())];
        loop {
            for f in fds.iter_mut() {
                f.revents = 0;
            }
            // SAFETY: `fds` is a valid array of three pollfd structs for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            if fds[2].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                self.drain_socket(&self.dhcp, Port::Dhcp, &mut buf, &mut out);
            }
            if fds[1].revents != 0 {
                self.drain_socket(&self.pxe, Port::BootServer, &mut buf, &mut out);
            }
        }
    }

    fn drain_socket(&self, sock: &UdpSocket, port: Port, buf: &mut [u8], out: &mut [u8]) {
        for _ in 0..BATCH {
            match sock.recv_from(buf) {
                Ok((n, from)) => self.handle(sock, port, &buf[..n], from, out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Anything else (e.g. a queued ICMP error): try next wake-up.
                Err(_) => return,
            }
        }
    }

    fn handle(&self, sock: &UdpSocket, port: Port, data: &[u8], from: SocketAddr, out: &mut [u8]) {
        let shared = &self.shared;
        shared.inc(C::Received);
        let req = match PxeRequest::parse_bytes(data) {
            Ok(req) => req,
            Err(_) => return shared.inc(C::DroppedMalformed),
        };
        let policy = shared.policy();
        let answer = match decide(&req, &policy, port, self.settings.server_ip) {
            Decision::Ignore(why) => {
                shared.inc(match why {
                    Ignore::NotPxe => C::IgnoredNotPxe,
                    Ignore::UnknownArch(_) => C::IgnoredUnknownArch,
                    Ignore::OtherServer => C::IgnoredOtherServer,
                    Ignore::OtherMessage(_) => C::IgnoredOtherMessage,
                });
                if why == Ignore::NotPxe {
                    return; // not a PXE client: no event (most DHCP traffic on 67 is this)
                }
                String::new()
            }
            Decision::Answer(a) => {
                let reply = ProxyReply::new(&req, &a, self.settings.server_ip, &policy);
                let dest = reply_destination(&req, port, from, &self.settings, self.ports.0);
                let sent = reply.emit(out).ok().and_then(|n| sock.send_to(&out[..n], dest).ok());
                match (sent, a.reply) {
                    (None, _) => {
                        shared.inc(C::SendErrors);
                        String::new()
                    }
                    (Some(_), MessageType::Offer) => {
                        shared.inc(C::AnsweredOffer);
                        a.boot_file.to_owned()
                    }
                    (Some(_), _) => {
                        shared.inc(C::AnsweredAck);
                        a.boot_file.to_owned()
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
            answer,
        };
        if !shared.events.push(event) {
            shared.inc(C::EventsDropped);
        }
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
    fn refuses_to_listen_everywhere() {
        let policy = DhcpPolicy {
            tftp_server: Ipv4Addr::LOCALHOST,
            boot_bios: "a".into(),
            boot_efi_x64: "b".into(),
            script_url: "c".into(),
            script_url_http: None,
            ipxe_encap: Vec::new(),
        };
        let mut s = settings();
        s.bind_ip = Ipv4Addr::UNSPECIFIED;
        let e = DhcpEngine::start(s.clone(), policy.clone()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        s.interface = Some(String::new());
        assert_eq!(DhcpEngine::start(s, policy).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
