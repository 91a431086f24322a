//! The TFTP engine: read-only RRQ on a dedicated thread, driven by `bootgate_wire::tftp`.
//!
//! CONTRACT (used by bootgate-py; keep these names and fields):
//! - `TftpSettings`, `TftpEvent` as below.
//! - `TftpEngine::start(settings) -> io::Result<TftpEngine>`; `counters(&self)`;
//!   `drain_events(&self, max) -> Vec<TftpEvent>`; `event_fd(&self) -> RawFd`;
//!   `local_addr(&self) -> SocketAddr`; `stop(&mut self)` (also on Drop).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;

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

#[derive(Debug)]
pub struct TftpEngine {
    _private: (),
}

impl TftpEngine {
    pub fn start(_settings: TftpSettings) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "TFTP engine not built yet"))
    }
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    pub fn drain_events(&self, _max: usize) -> Vec<TftpEvent> {
        Vec::new()
    }
    pub fn event_fd(&self) -> RawFd {
        -1
    }
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }
    pub fn stop(&mut self) {}
}
