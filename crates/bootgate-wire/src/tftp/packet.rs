//! TFTP packets (RFC 1350) with the option extension (RFC 2347): checked parse, emit.
//!
//! Every packet starts with a 2-byte big-endian opcode. Strings are NUL-terminated octet strings.
//! Parsing borrows from the datagram and never panics; emitting appends to a `Vec<u8>`.

use core::fmt;

use super::options::{OptionList, RequestOptions};

/// Opcodes of RFC 1350 and RFC 2347.
pub mod opcode {
    pub const RRQ: u16 = 1;
    pub const WRQ: u16 = 2;
    pub const DATA: u16 = 3;
    pub const ACK: u16 = 4;
    pub const ERROR: u16 = 5;
    pub const OACK: u16 = 6;
}

/// Error codes carried by an ERROR packet (RFC 1350, RFC 2347).
pub mod error_code {
    /// Not defined; see the message.
    pub const UNDEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const DISK_FULL: u16 = 3;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const FILE_EXISTS: u16 = 6;
    pub const NO_SUCH_USER: u16 = 7;
    /// Option negotiation refused (RFC 2347).
    pub const BAD_OPTIONS: u16 = 8;
}

/// Why bytes are not a TFTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its fixed fields.
    Truncated,
    /// An opcode outside 1..=6.
    BadOpcode(u16),
    /// A string field has no terminating NUL.
    MissingNul,
    /// The filename of a request is empty.
    EmptyFilename,
    /// The transfer mode is not netascii, octet or mail.
    BadMode,
    /// An option name without a value, or an empty option name.
    MalformedOption,
    /// A known option with a value that is not a number in its valid range.
    BadOptionValue(KnownOption),
}

/// The options this crate understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownOption {
    Blksize,
    Tsize,
    Timeout,
    Windowsize,
}

impl KnownOption {
    /// The option's canonical (lower-case) name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            KnownOption::Blksize => "blksize",
            KnownOption::Tsize => "tsize",
            KnownOption::Timeout => "timeout",
            KnownOption::Windowsize => "windowsize",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("packet truncated"),
            Error::BadOpcode(op) => write!(f, "unknown opcode {op}"),
            Error::MissingNul => f.write_str("string field without terminating NUL"),
            Error::EmptyFilename => f.write_str("empty filename"),
            Error::BadMode => f.write_str("unknown transfer mode"),
            Error::MalformedOption => f.write_str("malformed option list"),
            Error::BadOptionValue(o) => write!(f, "invalid value for option {}", o.name()),
        }
    }
}

impl std::error::Error for Error {}

/// Transfer mode of a request. Compared case-insensitively on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Netascii,
    Octet,
    /// Obsolete (RFC 1350 "mail"); parsed so a server can refuse it precisely.
    Mail,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn parse(s: &[u8]) -> Result<Mode, Error> {
        if s.eq_ignore_ascii_case(b"octet") {
            Ok(Mode::Octet)
        } else if s.eq_ignore_ascii_case(b"netascii") {
            Ok(Mode::Netascii)
        } else if s.eq_ignore_ascii_case(b"mail") {
            Ok(Mode::Mail)
        } else {
            Err(Error::BadMode)
        }
    }
}

/// A read or write request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The filename exactly as sent (no NUL, never empty). Interpreting it is the server's job.
    pub filename: &'a [u8],
    pub mode: Mode,
    /// The options this crate knows, parsed and range-checked; unknown ones are ignored.
    pub options: RequestOptions,
}

/// One TFTP packet, borrowing from the datagram it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request<'a>),
    Wrq(Request<'a>),
    Data {
        block: u16,
        data: &'a [u8],
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: &'a [u8],
    },
    /// Option acknowledgement; the raw, validated name/value list.
    Oack(OptionList<'a>),
}

fn be16(b: &[u8], at: usize) -> Result<u16, Error> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(Error::Truncated),
    }
}

/// Splits off one NUL-terminated string: returns (string, rest after the NUL).
pub(crate) fn take_cstr(b: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    match b.iter().position(|&c| c == 0) {
        Some(i) => Ok((&b[..i], &b[i + 1..])),
        None => Err(Error::MissingNul),
    }
}

impl<'a> Packet<'a> {
    /// Parses one datagram. Trailing bytes after an ACK are ignored; everything else is checked.
    pub fn parse(b: &'a [u8]) -> Result<Packet<'a>, Error> {
        let op = be16(b, 0)?;
        let body = &b[2..];
        match op {
            opcode::RRQ => Ok(Packet::Rrq(Self::parse_request(body)?)),
            opcode::WRQ => Ok(Packet::Wrq(Self::parse_request(body)?)),
            opcode::DATA => Ok(Packet::Data { block: be16(body, 0)?, data: &body[2..] }),
            opcode::ACK => Ok(Packet::Ack { block: be16(body, 0)? }),
            opcode::ERROR => {
                let code = be16(body, 0)?;
                let (message, _) = take_cstr(&body[2..])?;
                Ok(Packet::Error { code, message })
            }
            opcode::OACK => Ok(Packet::Oack(OptionList::parse(body)?)),
            other => Err(Error::BadOpcode(other)),
        }
    }

    fn parse_request(body: &'a [u8]) -> Result<Request<'a>, Error> {
        let (filename, rest) = take_cstr(body)?;
        let (mode, rest) = take_cstr(rest)?;
        if filename.is_empty() {
            return Err(Error::EmptyFilename);
        }
        let mode = Mode::parse(mode)?;
        let options = RequestOptions::parse(OptionList::parse(rest)?)?;
        Ok(Request { filename, mode, options })
    }

    /// Appends the packet's bytes to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Rrq(r) => emit_request(out, opcode::RRQ, r),
            Packet::Wrq(r) => emit_request(out, opcode::WRQ, r),
            Packet::Data { block, data } => emit_data(out, *block, data),
            Packet::Ack { block } => emit_ack(out, *block),
            Packet::Error { code, message } => emit_error(out, *code, message),
            Packet::Oack(list) => {
                out.extend_from_slice(&opcode::OACK.to_be_bytes());
                out.extend_from_slice(list.as_bytes());
            }
        }
    }
}

fn emit_request(out: &mut Vec<u8>, op: u16, r: &Request<'_>) {
    out.extend_from_slice(&op.to_be_bytes());
    push_cstr(out, r.filename);
    push_cstr(out, r.mode.name().as_bytes());
    r.options.emit(out);
}

/// Appends a NUL-terminated copy of `s`, cut at its first NUL if it holds one.
pub(crate) fn push_cstr(out: &mut Vec<u8>, s: &[u8]) {
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    out.extend_from_slice(&s[..end]);
    out.push(0);
}

/// Appends a DATA packet.
pub fn emit_data(out: &mut Vec<u8>, block: u16, data: &[u8]) {
    out.extend_from_slice(&opcode::DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends an ACK packet.
pub fn emit_ack(out: &mut Vec<u8>, block: u16) {
    out.extend_from_slice(&opcode::ACK.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Appends an ERROR packet. A NUL inside `message` ends the message there.
pub fn emit_error(out: &mut Vec<u8>, code: u16, message: &[u8]) {
    out.extend_from_slice(&opcode::ERROR.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    push_cstr(out, message);
}

/// Appends an OACK packet carrying the given name/value pairs.
pub fn emit_oack<'n>(out: &mut Vec<u8>, options: impl IntoIterator<Item = (&'n str, u64)>) {
    out.extend_from_slice(&opcode::OACK.to_be_bytes());
    for (name, value) in options {
        push_cstr(out, name.as_bytes());
        push_cstr(out, value.to_string().as_bytes());
    }
}
