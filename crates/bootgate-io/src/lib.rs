//! The socket loops that drive `bootgate-wire`: the DHCP engine and the TFTP engine, and the
//! multi-core Content Information (MS-PCCRC) builder of files.
//!
//! Each engine runs on its own thread, owns its sockets, counts what it does in atomic counters,
//! and reports to Python through a bounded [`events::EventQueue`] whose readiness is signalled on a
//! file descriptor the asyncio loop can watch. No pyo3 here: `bootgate-py` is the only binding.

pub mod counters;
pub mod dhcp;
pub mod events;
pub mod hashing;
pub mod poll;
pub mod ra;
pub mod sqlite;
pub mod tftp;

/// Seconds since the Unix epoch, as a float (the timestamp every event carries).
pub fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
