//! The proxyDHCP engine: UDP 67 (broadcast DISCOVER/REQUEST -> proxy OFFER) and 4011 (boot server
//! REQUEST -> ACK) on a dedicated thread, driven by `bootgate_wire::dhcp`.
//!
//! CONTRACT (used by bootgate-py; keep these names and fields):
//! - `DhcpSettings`, `DhcpPolicy`, `DhcpEvent` as below.
//! - `DhcpEngine::start(settings, policy) -> io::Result<DhcpEngine>`; `set_policy(&self, policy)`;
//!   `counters(&self) -> Vec<(&'static str, u64)>`; `drain_events(&self, max) -> Vec<DhcpEvent>`;
//!   `event_fd(&self) -> RawFd`; `local_ports(&self) -> (u16, u16)`; `stop(&mut self)` (also on Drop).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

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

/// What to answer. Swapped whole and atomically by Python when policy changes.
#[derive(Clone, Debug)]
pub struct DhcpPolicy {
    /// TFTP server for boot programs (siaddr / option 66).
    pub tftp_server: Ipv4Addr,
    /// Boot program for BIOS clients (arch 0), e.g. "undionly.kpxe".
    pub boot_bios: String,
    /// Boot program for UEFI x64 clients (arch 7 and 9), e.g. "snponly.efi".
    pub boot_efi_x64: String,
    /// Script URL handed to iPXE clients that can fetch it (HTTPS when they report 175.20).
    pub script_url: String,
    /// Script URL for iPXE clients without HTTPS support (None: chain them to the boot program).
    pub script_url_http: Option<String>,
    /// Raw DHCP option 175 sub-options (e.g. 175.90 trust fingerprints) sent in every offer/ack;
    /// empty for none.
    pub ipxe_encap: Vec<u8>,
}

/// One request seen and how it was answered.
#[derive(Clone, Debug)]
pub struct DhcpEvent {
    pub time: f64,
    pub mac: [u8; 6],
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

/// Handle of the running engine thread.
#[derive(Debug)]
pub struct DhcpEngine {
    _private: (),
}

impl DhcpEngine {
    pub fn start(_settings: DhcpSettings, _policy: DhcpPolicy) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "DHCP engine not built yet"))
    }
    pub fn set_policy(&self, _policy: DhcpPolicy) {}
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    pub fn drain_events(&self, _max: usize) -> Vec<DhcpEvent> {
        Vec::new()
    }
    pub fn event_fd(&self) -> RawFd {
        -1
    }
    pub fn local_ports(&self) -> (u16, u16) {
        (0, 0)
    }
    pub fn stop(&mut self) {}
}
