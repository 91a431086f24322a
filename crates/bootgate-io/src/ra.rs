//! The optional IPv6 router-advertisement responder (`[dhcp] ipv6_ra`, off by default).
//!
//! On networks without an IPv6 router, iPXE waits several seconds a boot for IPv6
//! autoconfiguration. This responder, bound to the operator-named DHCP interface only, answers
//! each valid Router Solicitation with a Router Advertisement that says "no router here" (router
//! lifetime 0, no prefix, M and O clear; see [`bootgate_wire::dhcp::ra`]), which ends that wait
//! without configuring anything. It can also send one unsolicited RA at start.
//!
//! Answers follow RFC 4861 section 6.2.6: to the all-nodes group ff02::1, at most one multicast
//! RA per `min_multicast_interval`; a solicitation inside that interval from a host with an
//! address is answered by unicast (which the RFC allows), capped at [`UNICAST_PER_SECOND`];
//! one from the unspecified address gets the next multicast RA when the interval is over.
//!
//! CONTRACT (bootgate-py): `RaSettings`, `RaResponder::start(settings)`, `counters()`,
//! `stop()` (also on Drop); counter names in [`COUNTER_NAMES`].

use std::io::{self, Write};
use std::mem::{size_of, zeroed};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bootgate_wire::dhcp::ra::{NdError, RouterAdvertisement, RouterSolicitation, ND_HOP_LIMIT, ROUTER_SOLICITATION};
use socket2::{Domain, Protocol, Socket, Type};

use crate::counters::Counters;
use crate::poll::{poll_due, pollin};

/// Where and how the responder runs.
#[derive(Clone, Debug)]
pub struct RaSettings {
    /// The interface (the `[dhcp] interface`); the socket is bound to it and nothing else.
    pub interface: String,
    /// Send one RA to ff02::1 right after start.
    pub unsolicited: bool,
    /// Least time between two multicast RAs (RFC 4861 MIN_DELAY_BETWEEN_RAS: 3 s).
    pub min_multicast_interval: Duration,
}

/// Counter names (API: Python exports them as `bootgate_ra_<name>_total`).
///
/// - `received`: ICMPv6 messages read (the socket filter passes only type 133);
/// - `solicitations`: valid Router Solicitations;
/// - `sent_multicast` / `sent_unicast`: RAs sent to ff02::1 / to the soliciting host
///   (`sent_multicast` includes the unsolicited one); `unicast_limited`: solicitations inside the
///   multicast interval not answered because the unicast cap was reached;
/// - `send_errors`: RAs the kernel refused;
/// - `invalid{reason=..}`: solicitations dropped, by [`NdError::reason`].
pub const COUNTER_NAMES: &[&str] = &[
    "received",
    "solicitations",
    "sent_multicast",
    "sent_unicast",
    "unicast_limited",
    "send_errors",
    "invalid{reason=truncated}",
    "invalid{reason=wrong_type}",
    "invalid{reason=bad_code}",
    "invalid{reason=bad_hop_limit}",
    "invalid{reason=bad_option}",
    "invalid{reason=lladdr_from_unspecified}",
];
const RECEIVED: usize = 0;
const SOLICITATIONS: usize = 1;
const SENT_MULTICAST: usize = 2;
const SENT_UNICAST: usize = 3;
const UNICAST_LIMITED: usize = 4;
const SEND_ERRORS: usize = 5;
const INVALID_BASE: usize = 6;

/// Unicast answers allowed per second (a flood of solicitations is not amplified without bound).
pub const UNICAST_PER_SECOND: u32 = 200;

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// Handle of the running responder thread.
#[derive(Debug)]
pub struct RaResponder {
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    stop_tx: UnixStream,
}

impl RaResponder {
    /// Opens the raw ICMPv6 socket on the interface (needs CAP_NET_RAW), joins ff02::2 there and
    /// starts the thread.
    pub fn start(settings: RaSettings) -> io::Result<Self> {
        if settings.interface.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "ipv6_ra needs [dhcp] interface"));
        }
        let name = &settings.interface;
        let ctx = |what: &str| {
            let name = name.clone();
            let what = what.to_owned();
            move |e: io::Error| io::Error::new(e.kind(), format!("ipv6_ra on {name:?}: {what}: {e}"))
        };
        let ifindex = ifindex(name).map_err(ctx("no such interface"))?;
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).map_err(ctx("raw ICMPv6 socket"))?;
        sock.bind_device(Some(name.as_bytes())).map_err(ctx("SO_BINDTODEVICE"))?;
        sock.set_multicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
        sock.set_unicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
        sock.set_multicast_if_v6(ifindex)?;
        sock.set_multicast_loop_v6(false)?;
        sock.join_multicast_v6(&ALL_ROUTERS, ifindex).map_err(ctx("join ff02::2"))?;
        set_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        pass_only_rs(&sock)?;
        sock.set_nonblocking(true)?;
        let (stop_tx, stop_rx) = UnixStream::pair()?;
        stop_rx.set_nonblocking(true)?;
        let counters = Arc::new(Counters::new(COUNTER_NAMES));
        let mut worker = Worker {
            counters: Arc::clone(&counters),
            ra: Vec::new(),
            sock,
            ifindex,
            interval: settings.min_multicast_interval,
            last_multicast: None,
            pending_multicast: None,
            unicast_window: (Instant::now(), 0),
        };
        let mut buf = [0u8; 64];
        let n = RouterAdvertisement::no_router(mac_of(name)).emit(&mut buf).unwrap_or(0);
        worker.ra = buf[..n].to_vec();
        if settings.unsolicited {
            worker.multicast(Instant::now());
        }
        let thread = std::thread::Builder::new().name("bootgate-ra".into()).spawn(move || worker.run(stop_rx))?;
        Ok(Self { counters, thread: Some(thread), stop_tx })
    }

    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        self.counters.snapshot()
    }

    /// Stops the thread and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = (&self.stop_tx).write(&[1]);
            let _ = thread.join();
        }
    }
}

impl Drop for RaResponder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// The interface's MAC (for the RA's source link-layer address option), if it has one.
fn mac_of(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let bytes: Vec<u8> = text.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    let mac: [u8; 6] = bytes.try_into().ok()?;
    (mac != [0; 6]).then_some(mac)
}

fn set_int(sock: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// ICMP6_FILTER (RFC 3542 section 3.2; Linux: a set bit blocks that type): only RS get through.
fn pass_only_rs(sock: &Socket) -> io::Result<()> {
    const ICMP6_FILTER: libc::c_int = 1;
    let mut filter = [u32::MAX; 8];
    let t = usize::from(ROUTER_SOLICITATION);
    filter[t >> 5] &= !(1u32 << (t & 31));
    // SAFETY: `filter` is the 32-byte struct icmp6_filter the kernel expects, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            size_of::<[u32; 8]>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram read with recvmsg: its length, source and IP hop limit.
struct Received {
    len: usize,
    from: SocketAddrV6,
    hop_limit: Option<u8>,
}

fn recv_with_hop_limit(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: zeroed sockaddr_in6 / msghdr are valid initial values; every pointer stored in `msg`
    // points at a live local buffer of the stated length for the duration of recvmsg, and the
    // control messages are walked with the CMSG_* macros within `msg.msg_controllen`.
    unsafe {
        let mut addr: libc::sockaddr_in6 = zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>() as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut hop_limit = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                hop_limit = u8::try_from(v).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let from = SocketAddrV6::new(Ipv6Addr::from(addr.sin6_addr.s6_addr), 0, addr.sin6_flowinfo, addr.sin6_scope_id);
        Ok(Received { len: n as usize, from, hop_limit })
    }
}

struct Worker {
    counters: Arc<Counters>,
    /// The RA we send, encoded once.
    ra: Vec<u8>,
    sock: Socket,
    ifindex: u32,
    interval: Duration,
    last_multicast: Option<Instant>,
    /// A solicitation from :: arrived inside the interval: multicast when it is over.
    pending_multicast: Option<Instant>,
    /// Start of the current one-second unicast window and the answers sent in it.
    unicast_window: (Instant, u32),
}

impl Worker {
    fn run(mut self, stop_rx: UnixStream) {
        let mut buf = [0u8; 1500];
        let mut fds = [pollin(self.sock.as_raw_fd()), pollin(stop_rx.as_raw_fd())];
        loop {
            poll_due(&mut fds, self.pending_multicast);
            if fds[1].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                for _ in 0..64 {
                    match recv_with_hop_limit(self.sock.as_raw_fd(), &mut buf) {
                        Ok(r) => self.handle(&buf[..r.len], &r),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            if self.pending_multicast.is_some_and(|due| due <= now) {
                self.pending_multicast = None;
                self.multicast(now);
            }
        }
    }

    fn handle(&mut self, msg: &[u8], r: &Received) {
        let c = Arc::clone(&self.counters);
        c.inc(RECEIVED);
        let unspecified = r.from.ip().is_unspecified();
        // No hop limit ancillary data is treated as not 255 (cannot be checked: drop).
        if let Err(e) = RouterSolicitation::parse(msg, r.hop_limit.unwrap_or(0), unspecified) {
            return self.invalid(&e);
        }
        c.inc(SOLICITATIONS);
        let now = Instant::now();
        let next_allowed = self.last_multicast.map(|t| t + self.interval);
        match next_allowed {
            Some(at) if at > now => {
                if unspecified {
                    self.pending_multicast.get_or_insert(at);
                } else if self.unicast_allowed(now) {
                    let dest = SocketAddrV6::new(*r.from.ip(), 0, 0, self.ifindex);
                    self.send(dest, SENT_UNICAST);
                } else {
                    c.inc(UNICAST_LIMITED);
                }
            }
            _ => self.multicast(now),
        }
    }

    fn invalid(&self, e: &NdError) {
        if let Some(i) = NdError::REASONS.iter().position(|r| *r == e.reason()) {
            self.counters.inc(INVALID_BASE + i);
        }
    }

    fn unicast_allowed(&mut self, now: Instant) -> bool {
        let (start, count) = &mut self.unicast_window;
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= UNICAST_PER_SECOND
    }

    fn multicast(&mut self, now: Instant) {
        self.last_multicast = Some(now);
        self.send(SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex), SENT_MULTICAST);
    }

    fn send(&self, dest: SocketAddrV6, counter: usize) {
        match self.sock.send_to(&self.ra, &dest.into()) {
            Ok(_) => self.counters.inc(counter),
            Err(_) => self.counters.inc(SEND_ERRORS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_follow_the_reasons() {
        for (i, r) in NdError::REASONS.iter().enumerate() {
            assert_eq!(COUNTER_NAMES[INVALID_BASE + i], format!("invalid{{reason={r}}}"));
        }
        assert_eq!(COUNTER_NAMES.len(), INVALID_BASE + NdError::REASONS.len());
        assert_eq!(COUNTER_NAMES[SEND_ERRORS], "send_errors");
    }

    #[test]
    fn refuses_without_an_interface() {
        let s = RaSettings { interface: String::new(), unsolicited: false, min_multicast_interval: Duration::ZERO };
        assert_eq!(RaResponder::start(s).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let s = RaSettings {
            interface: "bg-no-such-if0".into(),
            unsolicited: false,
            min_multicast_interval: Duration::ZERO,
        };
        assert!(RaResponder::start(s).is_err());
    }
}
