//! IPv6 Neighbor Discovery (RFC 4861) router messages for the optional RA responder: Router
//! Solicitations are checked (section 6.1.1) and answered with a Router Advertisement that carries
//! no prefix and router lifetime 0. Such an RA tells iPXE that there is no IPv6 router and no
//! DHCPv6 (M and O flags clear), which ends its wait for IPv6 autoconfiguration.
//!
//! The messages start at the ICMPv6 header (what a raw ICMPv6 socket reads and writes). The
//! checksum is left 0 on emit: the kernel computes it for raw ICMPv6 sockets (RFC 3542 section
//! 3.1) and verifies it on receive.

/// ICMPv6 type of a Router Solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// IP hop limit of every Neighbor Discovery message (proves it was not forwarded by a router).
pub const ND_HOP_LIMIT: u8 = 255;
/// ND option: source link-layer address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// ND option: prefix information.
pub const OPT_PREFIX_INFO: u8 = 3;
/// Length of an RS without options (type, code, checksum, reserved).
pub const RS_LEN: usize = 8;
/// Length of an RA without options.
pub const RA_LEN: usize = 16;

/// Why a datagram is not a valid Router Solicitation (or Router Advertisement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdError {
    /// Shorter than the fixed part.
    Truncated,
    /// Another ICMPv6 type.
    WrongType(u8),
    /// ICMP code not 0.
    BadCode(u8),
    /// IP hop limit not 255: the message crossed a router.
    BadHopLimit(u8),
    /// An option of length 0, or one that runs past the end.
    BadOption,
    /// A source link-layer address option from the unspecified address.
    LladdrFromUnspecified,
}

impl NdError {
    /// Stable name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::WrongType(_) => "wrong_type",
            Self::BadCode(_) => "bad_code",
            Self::BadHopLimit(_) => "bad_hop_limit",
            Self::BadOption => "bad_option",
            Self::LladdrFromUnspecified => "lladdr_from_unspecified",
        }
    }

    /// Every reason, in a stable order (for counter tables).
    pub const REASONS: [&'static str; 6] =
        ["truncated", "wrong_type", "bad_code", "bad_hop_limit", "bad_option", "lladdr_from_unspecified"];
}

/// ND options of a message: (type, body after the 2-byte type/length header). Checks that each
/// length is non-zero and within the message.
fn options(mut rest: &[u8]) -> Result<Vec<(u8, &[u8])>, NdError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (&kind, len) = match rest {
            [k, l, ..] => (k, usize::from(*l) * 8),
            _ => return Err(NdError::BadOption),
        };
        if len == 0 || len > rest.len() {
            return Err(NdError::BadOption);
        }
        out.push((kind, &rest[2..len]));
        rest = &rest[len..];
    }
    Ok(out)
}

fn check_header(msg: &[u8], kind: u8, min_len: usize, hop_limit: u8) -> Result<(), NdError> {
    if msg.len() < min_len {
        return Err(NdError::Truncated);
    }
    if msg[0] != kind {
        return Err(NdError::WrongType(msg[0]));
    }
    if msg[1] != 0 {
        return Err(NdError::BadCode(msg[1]));
    }
    if hop_limit != ND_HOP_LIMIT {
        return Err(NdError::BadHopLimit(hop_limit));
    }
    Ok(())
}

/// A checked Router Solicitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSolicitation {
    /// The source link-layer address option, if present (6 bytes on Ethernet).
    pub source_lladdr: Option<Vec<u8>>,
}

impl RouterSolicitation {
    /// Validates an RS per RFC 4861 section 6.1.1: hop limit 255 (`hop_limit` is the received
    /// packet's IP hop limit), code 0, ICMP length >= 8, every option with a non-zero length, and
    /// no source link-layer address option when `from_unspecified` (source address ::). The
    /// checksum is the kernel's to verify.
    pub fn parse(msg: &[u8], hop_limit: u8, from_unspecified: bool) -> Result<Self, NdError> {
        check_header(msg, ROUTER_SOLICITATION, RS_LEN, hop_limit)?;
        let mut source_lladdr = None;
        for (kind, body) in options(&msg[RS_LEN..])? {
            if kind == OPT_SOURCE_LLADDR {
                if from_unspecified {
                    return Err(NdError::LladdrFromUnspecified);
                }
                source_lladdr = Some(body.to_vec());
            }
        }
        Ok(Self { source_lladdr })
    }

    /// Writes the RS (checksum 0) into `out`; returns its length, or None if `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let n = RS_LEN + self.source_lladdr.as_ref().map_or(0, |a| lladdr_option_len(a.len()));
        let buf = out.get_mut(..n)?;
        buf.fill(0);
        buf[0] = ROUTER_SOLICITATION;
        if let Some(a) = &self.source_lladdr {
            write_lladdr(&mut buf[RS_LEN..], a);
        }
        Some(n)
    }
}

fn lladdr_option_len(addr_len: usize) -> usize {
    (2 + addr_len).div_ceil(8) * 8
}

/// Source link-layer address option into `buf` (already zeroed, long enough).
fn write_lladdr(buf: &mut [u8], addr: &[u8]) {
    let len = lladdr_option_len(addr.len());
    buf[0] = OPT_SOURCE_LLADDR;
    buf[1] = (len / 8) as u8;
    buf[2..2 + addr.len()].copy_from_slice(addr);
}

/// A Router Advertisement. [`RouterAdvertisement::no_router`] is the one the responder sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterAdvertisement {
    /// Hop limit hosts should use (0 = unspecified).
    pub cur_hop_limit: u8,
    /// M flag: addresses via DHCPv6.
    pub managed: bool,
    /// O flag: other configuration via DHCPv6.
    pub other: bool,
    /// Seconds this router is a default router (0 = not a default router).
    pub router_lifetime: u16,
    pub reachable_time: u32,
    pub retrans_timer: u32,
    /// Source link-layer address option (the sender's MAC).
    pub source_lladdr: Option<Vec<u8>>,
    /// Prefix information options seen (parse only; never emitted).
    pub prefix_options: usize,
    /// Types of every option, in order (parse only).
    pub option_types: Vec<u8>,
}

impl RouterAdvertisement {
    /// "No IPv6 router here": lifetime 0, M and O clear, no prefix; with our MAC if known.
    pub fn no_router(source_lladdr: Option<[u8; 6]>) -> Self {
        Self { source_lladdr: source_lladdr.map(|m| m.to_vec()), ..Self::default() }
    }

    /// Writes the RA (checksum 0) into `out`; returns its length, or None if `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let n = RA_LEN + self.source_lladdr.as_ref().map_or(0, |a| lladdr_option_len(a.len()));
        let buf = out.get_mut(..n)?;
        buf.fill(0);
        buf[0] = ROUTER_ADVERTISEMENT;
        buf[4] = self.cur_hop_limit;
        buf[5] = (u8::from(self.managed) << 7) | (u8::from(self.other) << 6);
        buf[6..8].copy_from_slice(&self.router_lifetime.to_be_bytes());
        buf[8..12].copy_from_slice(&self.reachable_time.to_be_bytes());
        buf[12..16].copy_from_slice(&self.retrans_timer.to_be_bytes());
        if let Some(a) = &self.source_lladdr {
            write_lladdr(&mut buf[RA_LEN..], a);
        }
        Some(n)
    }

    /// Validates an RA (RFC 4861 section 6.1.2, less the link-local source check, which needs the
    /// IP header) and reads its fields.
    pub fn parse(msg: &[u8], hop_limit: u8) -> Result<Self, NdError> {
        check_header(msg, ROUTER_ADVERTISEMENT, RA_LEN, hop_limit)?;
        let u32_at = |i: usize| u32::from_be_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
        let mut ra = Self {
            cur_hop_limit: msg[4],
            managed: msg[5] & 0x80 != 0,
            other: msg[5] & 0x40 != 0,
            router_lifetime: u16::from_be_bytes([msg[6], msg[7]]),
            reachable_time: u32_at(8),
            retrans_timer: u32_at(12),
            ..Self::default()
        };
        for (kind, body) in options(&msg[RA_LEN..])? {
            ra.option_types.push(kind);
            match kind {
                OPT_SOURCE_LLADDR => ra.source_lladdr = Some(body.to_vec()),
                OPT_PREFIX_INFO => ra.prefix_options += 1,
                _ => {}
            }
        }
        Ok(ra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn no_router_ra_round_trips() {
        let mut out = [0u8; 64];
        let n = RouterAdvertisement::no_router(Some(MAC)).emit(&mut out).unwrap();
        assert_eq!(n, 24);
        assert_eq!(&out[..8], &[134, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[16..24], &[1, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let ra = RouterAdvertisement::parse(&out[..n], 255).unwrap();
        assert_eq!(ra.router_lifetime, 0);
        assert!(!ra.managed && !ra.other);
        assert_eq!(ra.prefix_options, 0);
        assert_eq!(ra.source_lladdr.as_deref(), Some(&MAC[..]));
        assert_eq!(ra.option_types, vec![OPT_SOURCE_LLADDR]);
        assert!(RouterAdvertisement::no_router(None).emit(&mut out[..15]).is_none());
    }

    #[test]
    fn solicitation_checks_of_rfc4861() {
        let mut rs = [0u8; 16];
        let n = RouterSolicitation { source_lladdr: Some(MAC.to_vec()) }.emit(&mut rs).unwrap();
        assert_eq!(n, 16);
        let ok = RouterSolicitation::parse(&rs, 255, false).unwrap();
        assert_eq!(ok.source_lladdr.as_deref(), Some(&MAC[..]));
        assert_eq!(RouterSolicitation::parse(&rs, 64, false), Err(NdError::BadHopLimit(64)));
        assert_eq!(RouterSolicitation::parse(&rs, 255, true), Err(NdError::LladdrFromUnspecified));
        assert_eq!(RouterSolicitation::parse(&rs[..7], 255, false), Err(NdError::Truncated));
        assert_eq!(RouterSolicitation::parse(&rs[..8], 255, true), Ok(RouterSolicitation { source_lladdr: None }));
        let mut bad = rs;
        bad[1] = 1;
        assert_eq!(RouterSolicitation::parse(&bad, 255, false), Err(NdError::BadCode(1)));
        bad = rs;
        bad[9] = 0; // option length 0
        assert_eq!(RouterSolicitation::parse(&bad, 255, false), Err(NdError::BadOption));
        bad = rs;
        bad[9] = 2; // runs past the end
        assert_eq!(RouterSolicitation::parse(&bad, 255, false), Err(NdError::BadOption));
        assert_eq!(RouterSolicitation::parse(&rs[..9], 255, false), Err(NdError::BadOption));
        bad = rs;
        bad[0] = 135;
        assert_eq!(RouterSolicitation::parse(&bad, 255, false), Err(NdError::WrongType(135)));
        for e in [NdError::Truncated, NdError::BadOption, NdError::WrongType(1)] {
            assert!(NdError::REASONS.contains(&e.reason()));
        }
    }

    #[test]
    fn any_bytes_parse_without_panic() {
        let mut x: u32 = 12345;
        for len in 0..64 {
            for _ in 0..200 {
                let msg: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let _ = RouterSolicitation::parse(&msg, 255, false);
                let _ = RouterAdvertisement::parse(&msg, 255);
            }
        }
    }
}
