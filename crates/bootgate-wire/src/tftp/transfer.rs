//! The read-transfer state machine: option negotiation, windowed DATA (RFC 7440), retransmission.
//!
//! Time is an input: every `now` is a [`Duration`] since an epoch the caller chooses (the engine's
//! start, or zero in tests). The file is not held here: the machine says which blocks to send, and
//! [`Transfer::write_data`] slices them from the caller's bytes.
//!
//! Blocks are numbered from 1 without limit inside the machine (`u64`); on the wire the number is
//! taken modulo 65536, so block 65536 goes out as 0 (the rollover tftp-hpa, iPXE and edk2 expect).
//! A file of `size` bytes takes `size / blksize + 1` blocks: the last is short, possibly empty.

use std::time::Duration;

use super::options::{RequestOptions, MAX_BLKSIZE, MIN_BLKSIZE};
use super::packet::{emit_data, emit_oack, Error, Packet};

/// The server's limits and defaults for every transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Largest blksize granted; kept within 8..=65464.
    pub max_blksize: u16,
    /// Largest windowsize granted (at least 1).
    pub max_windowsize: u16,
    /// Retransmission timeout when the client asks for none.
    pub timeout: Duration,
    /// The backoff doubles the timeout after each retransmission up to this cap (or the client's
    /// own timeout, if that is larger).
    pub max_timeout: Duration,
    /// Retransmissions of the same packet before the transfer fails.
    pub retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_blksize: 1468,
            max_windowsize: 16,
            timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(16),
            retries: 5,
        }
    }
}

/// Why a transfer failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No progress after the last retransmission.
    Timeout,
    /// The client sent an ERROR packet during the data phase (its message decoded lossily, at
    /// most 200 bytes).
    ClientError { code: u16, message: String },
    /// The client answered the OACK with an ERROR: it declined the options (RFC 2347), or only
    /// wanted the size (a tsize probe, as PXE ROMs and boot loaders do before the real request).
    Declined { code: u16, message: String },
}

impl Failure {
    /// A short description for logs and events ("timeout", "client error 8: ...").
    pub fn describe(&self) -> String {
        match self {
            Failure::Timeout => "timeout".into(),
            Failure::ClientError { code, message } if message.is_empty() => format!("client error {code}"),
            Failure::ClientError { code, message } => format!("client error {code}: {message}"),
            Failure::Declined { code, message } if message.is_empty() => format!("declined after OACK: error {code}"),
            Failure::Declined { code, message } => format!("declined after OACK: error {code}: {message}"),
        }
    }
}

/// What the caller must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to send (a duplicate or stale ACK, an early timer, a finished transfer).
    None,
    /// Send the OACK ([`Transfer::write_oack`]).
    SendOack {
        retransmit: bool,
    },
    /// Send DATA blocks `first..=last` ([`Transfer::write_data`]); `retransmits` of them were
    /// sent before.
    SendBlocks {
        first: u64,
        last: u64,
        retransmits: u64,
    },
    /// The client acknowledged the last block.
    Done,
    Failed(Failure),
}

/// A datagram the transfer could not use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not a TFTP packet.
    Malformed(Error),
    /// A valid packet other than ACK or ERROR (a client never sends those to a read transfer);
    /// carries the opcode.
    Unexpected(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// OACK sent, waiting for ACK 0.
    Oack,
    Data,
    Finished,
}

/// One read transfer, from request to last ACK.
#[derive(Clone, Debug)]
pub struct Transfer {
    granted: RequestOptions,
    blksize: u16,
    windowsize: u16,
    base_timeout: Duration,
    max_timeout: Duration,
    retries: u32,
    size: u64,
    blocks: u64,
    phase: Phase,
    /// Highest block the client acknowledged (0: none yet).
    acked: u64,
    /// Highest block sent in the current window.
    sent: u64,
    /// Highest block ever sent (to tell retransmissions from new blocks).
    highest_sent: u64,
    rto: Duration,
    retries_used: u32,
    deadline: Duration,
}

impl Transfer {
    /// Negotiates `requested` against `settings` for a file of `size` bytes and returns the
    /// transfer with its first action: the OACK when an option was granted, else DATA block 1.
    pub fn new(requested: &RequestOptions, size: u64, settings: &Settings, now: Duration) -> (Self, Action) {
        let max_blksize = settings.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
        let granted = RequestOptions {
            blksize: requested.blksize.map(|b| b.clamp(MIN_BLKSIZE, max_blksize)),
            tsize: requested.tsize.map(|_| size),
            timeout: requested.timeout.filter(|&t| t >= 1),
            windowsize: requested.windowsize.map(|w| w.clamp(1, settings.max_windowsize.max(1))),
        };
        let blksize = granted.blksize.unwrap_or(512);
        let base_timeout = match granted.timeout {
            Some(t) => Duration::from_secs(u64::from(t)),
            None => settings.timeout.max(Duration::from_millis(1)),
        };
        let mut t = Transfer {
            granted,
            blksize,
            windowsize: granted.windowsize.unwrap_or(1),
            base_timeout,
            max_timeout: settings.max_timeout.max(base_timeout),
            retries: settings.retries,
            size,
            blocks: size / u64::from(blksize) + 1,
            phase: Phase::Data,
            acked: 0,
            sent: 0,
            highest_sent: 0,
            rto: base_timeout,
            retries_used: 0,
            deadline: now.saturating_add(base_timeout),
        };
        let first = if granted.is_empty() {
            t.send_window(now)
        } else {
            t.phase = Phase::Oack;
            Action::SendOack { retransmit: false }
        };
        (t, first)
    }

    /// Granted options (what the OACK carries; empty when no OACK is sent).
    pub fn granted(&self) -> &RequestOptions {
        &self.granted
    }
    pub fn blksize(&self) -> u16 {
        self.blksize
    }
    pub fn windowsize(&self) -> u16 {
        self.windowsize
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The retransmission timeout before any backoff (the client's `timeout` option, else the
    /// server's).
    pub fn timeout(&self) -> Duration {
        self.base_timeout
    }
    /// Number of DATA blocks the file takes (the last one short, possibly empty).
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
    /// Highest block the client acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }
    /// When [`Transfer::on_timeout`] must be called; `None` once finished.
    pub fn deadline(&self) -> Option<Duration> {
        (self.phase != Phase::Finished).then_some(self.deadline)
    }

    /// Feeds one datagram from the client.
    pub fn on_datagram(&mut self, bytes: &[u8], now: Duration) -> Result<Action, Rejected> {
        let packet = Packet::parse(bytes).map_err(Rejected::Malformed)?;
        match packet {
            Packet::Ack { .. } | Packet::Error { .. } => Ok(self.on_packet(&packet, now)),
            Packet::Rrq(_) => Err(Rejected::Unexpected(super::packet::opcode::RRQ)),
            Packet::Wrq(_) => Err(Rejected::Unexpected(super::packet::opcode::WRQ)),
            Packet::Data { .. } => Err(Rejected::Unexpected(super::packet::opcode::DATA)),
            Packet::Oack(_) => Err(Rejected::Unexpected(super::packet::opcode::OACK)),
        }
    }

    /// Feeds one parsed packet; anything but ACK and ERROR is ignored.
    pub fn on_packet(&mut self, packet: &Packet<'_>, now: Duration) -> Action {
        match *packet {
            Packet::Ack { block } => self.on_ack(block, now),
            Packet::Error { code, message } => self.on_error(code, message),
            _ => Action::None,
        }
    }

    /// The client acknowledged wire block `block`.
    pub fn on_ack(&mut self, block: u16, now: Duration) -> Action {
        match self.phase {
            Phase::Finished => Action::None,
            Phase::Oack if block == 0 => {
                self.progress(now);
                self.phase = Phase::Data;
                self.send_window(now)
            }
            Phase::Oack => Action::None,
            Phase::Data => {
                // The one block in acked..=sent with this number modulo 2^16 (the range spans at
                // most 65536 blocks because windowsize <= 65535).
                let offset = u64::from(block.wrapping_sub(self.acked as u16));
                let n = self.acked + offset;
                if offset == 0 || n > self.sent {
                    return Action::None; // duplicate, stale or never sent
                }
                self.acked = n;
                self.progress(now);
                if n >= self.blocks {
                    self.phase = Phase::Finished;
                    return Action::Done;
                }
                self.send_window(now)
            }
        }
    }

    /// The client sent an ERROR: the transfer ends.
    pub fn on_error(&mut self, code: u16, message: &[u8]) -> Action {
        let phase = self.phase;
        self.phase = Phase::Finished;
        let message = String::from_utf8_lossy(&message[..message.len().min(200)]).into_owned();
        match phase {
            Phase::Finished => Action::None,
            Phase::Oack => Action::Failed(Failure::Declined { code, message }),
            Phase::Data => Action::Failed(Failure::ClientError { code, message }),
        }
    }

    /// The timer may have expired: retransmit from the last acknowledged block, with backoff.
    pub fn on_timeout(&mut self, now: Duration) -> Action {
        if self.phase == Phase::Finished || now < self.deadline {
            return Action::None;
        }
        self.retries_used += 1;
        if self.retries_used > self.retries {
            self.phase = Phase::Finished;
            return Action::Failed(Failure::Timeout);
        }
        self.rto = self.rto.saturating_mul(2).min(self.max_timeout);
        self.deadline = now.saturating_add(self.rto);
        match self.phase {
            Phase::Oack => Action::SendOack { retransmit: true },
            _ => self.send_window(now),
        }
    }

    fn progress(&mut self, now: Duration) {
        self.retries_used = 0;
        self.rto = self.base_timeout;
        self.deadline = now.saturating_add(self.rto);
    }

    /// Sends the window that starts after the last acknowledged block.
    fn send_window(&mut self, now: Duration) -> Action {
        let first = self.acked + 1;
        let last = (self.acked + u64::from(self.windowsize)).min(self.blocks);
        self.sent = last;
        let retransmits = if first <= self.highest_sent { self.highest_sent.min(last) - first + 1 } else { 0 };
        self.highest_sent = self.highest_sent.max(last);
        if self.retries_used == 0 {
            self.deadline = now.saturating_add(self.rto);
        }
        Action::SendBlocks { first, last, retransmits }
    }

    /// Bytes `n` (1-based) covers in the file; empty outside the file.
    pub fn block_range(&self, n: u64) -> core::ops::Range<u64> {
        if n == 0 || n > self.blocks {
            return 0..0;
        }
        let start = (n - 1).saturating_mul(u64::from(self.blksize)).min(self.size);
        let end = start.saturating_add(u64::from(self.blksize)).min(self.size);
        start..end
    }

    /// Appends the DATA packet of block `n` (1-based), sliced from `file` (the whole file, whose
    /// length is the `size` given to [`Transfer::new`]). Returns the payload length.
    pub fn write_data(&self, n: u64, file: &[u8], out: &mut Vec<u8>) -> usize {
        let r = self.block_range(n);
        let slice = match (usize::try_from(r.start), usize::try_from(r.end)) {
            (Ok(s), Ok(e)) => file.get(s..e).unwrap_or(&[]),
            _ => &[],
        };
        emit_data(out, n as u16, slice);
        slice.len()
    }

    /// Appends the OACK packet with the granted options.
    pub fn write_oack(&self, out: &mut Vec<u8>) {
        emit_oack(out, self.granted.pairs());
    }
}
