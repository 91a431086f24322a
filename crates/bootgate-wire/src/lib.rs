//! Sans-I/O protocol core of bootgate.
//!
//! No sockets, clocks, threads, logging or pyo3 live here. Parsers take bytes and return checked
//! views or typed errors; state machines take `now` as an input and return bytes, events and
//! deadlines. Nothing in this crate panics on any input.
#![forbid(unsafe_code)]

pub mod dhcp;
pub mod pccrc;
pub mod tftp;
