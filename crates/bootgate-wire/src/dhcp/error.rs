use core::fmt;

/// Why a datagram could not be parsed or a reply could not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the fixed BOOTP header plus the magic cookie (240 bytes).
    Truncated { len: usize },
    /// The four bytes after the BOOTP header are not 99.130.83.99.
    BadMagicCookie,
    /// An option's length byte, or its value, runs past the end of the datagram.
    OptionTruncated { code: u8 },
    /// `hlen` larger than the 16-byte `chaddr` field.
    BadHardwareLength { hlen: u8 },
    /// A BOOTREPLY (or unknown op) where a client request was expected.
    NotRequest { op: u8 },
    /// No DHCP message type (option 53): a plain BOOTP request.
    MissingMessageType,
    /// An option whose length is wrong for its kind (e.g. option 53 not one byte).
    BadOptionLength { code: u8, len: usize },
    /// The output buffer is too small for the reply.
    BufferTooSmall { need: usize, have: usize },
    /// The reply is larger than the client accepts (option 57, or 576 bytes by default).
    ReplyTooLarge { len: usize, max: usize },
}

impl Error {
    /// A short, stable reason name (for per-reason counters and logs).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadMagicCookie => "bad_magic_cookie",
            Error::OptionTruncated { .. } => "option_truncated",
            Error::BadHardwareLength { .. } => "bad_hardware_length",
            Error::NotRequest { .. } => "not_request",
            Error::MissingMessageType => "missing_message_type",
            Error::BadOptionLength { .. } => "bad_option_length",
            Error::BufferTooSmall { .. } => "buffer_too_small",
            Error::ReplyTooLarge { .. } => "reply_too_large",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(f, "DHCP datagram truncated: {len} bytes, at least 240 needed"),
            Error::BadMagicCookie => write!(f, "DHCP magic cookie missing (not 99.130.83.99)"),
            Error::OptionTruncated { code } => write!(f, "DHCP option {code} runs past the end of the datagram"),
            Error::BadHardwareLength { hlen } => write!(f, "DHCP hlen {hlen} exceeds the 16-byte chaddr field"),
            Error::NotRequest { op } => write!(f, "BOOTP op {op} is not a client request"),
            Error::MissingMessageType => write!(f, "no DHCP message type (option 53)"),
            Error::BadOptionLength { code, len } => write!(f, "DHCP option {code} has bad length {len}"),
            Error::BufferTooSmall { need, have } => {
                write!(f, "output buffer too small: {need} bytes needed, {have} given")
            }
            Error::ReplyTooLarge { len, max } => {
                write!(f, "DHCP reply of {len} bytes exceeds the client's maximum of {max}")
            }
        }
    }
}

impl std::error::Error for Error {}
