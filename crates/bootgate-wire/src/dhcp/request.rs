//! The parsed view of a client request: what a proxyDHCP server needs to decide and answer.

use std::net::Ipv4Addr;

use super::options::{code, Options};
use super::{ipxe, op, Error, Packet, FLAG_BROADCAST};

/// DHCP message type (option 53, RFC 2132 section 9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    Other(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            other => Self::Other(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(v: MessageType) -> u8 {
        match v {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Other(v) => v,
        }
    }
}

/// Client network interface identifier (option 94, RFC 4578 section 2.2): type 1 = UNDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nii {
    pub kind: u8,
    pub major: u8,
    pub minor: u8,
}

/// A parsed client request (DISCOVER, REQUEST, INFORM, ...), owning its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeRequest {
    pub message_type: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub htype: u8,
    pub hlen: u8,
    /// The whole 16-byte `chaddr` field (echoed in replies).
    pub chaddr: [u8; 16],
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// Option 54, when present and 4 bytes long.
    pub server_id: Option<Ipv4Addr>,
    /// Option 97 exactly as sent (echoed in replies, PXE 2.1 requires it).
    pub client_id_raw: Option<Vec<u8>>,
    /// Option 97 when it is type 0 followed by 16 bytes that are not all 0x00 or all 0xFF; the
    /// bytes in wire order.
    pub client_uuid: Option<[u8; 16]>,
    /// Option 93's first architecture type; if option 93 is absent or shorter than two bytes,
    /// the `Arch:NNNNN` field of a `PXEClient`/`HTTPClient` vendor class.
    pub client_arch: Option<u16>,
    /// Option 94, when exactly 3 bytes long.
    pub nii: Option<Nii>,
    /// Option 60 (empty when absent).
    pub vendor_class: Vec<u8>,
    /// Option 77: the user classes, whether sent RFC 3004 style (length-prefixed) or as one raw
    /// string (as iPXE does).
    pub user_classes: Vec<Vec<u8>>,
    /// Option 175: `None` when absent, else the codes of the sub-options present (in order).
    pub ipxe_options: Option<Vec<u8>>,
    /// Option 57, when exactly 2 bytes long.
    pub max_message_size: Option<u16>,
    /// Option 82, raw.
    pub relay_agent_info: Option<Vec<u8>>,
    /// Option 55 (empty when absent).
    pub parameter_request_list: Vec<u8>,
}

impl PxeRequest {
    /// Parses a request from raw bytes (a UDP payload).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(&Packet::new_checked(bytes)?)
    }

    /// Parses a request from a checked packet. Fails on a BOOTREPLY, an `hlen` over 16, a
    /// malformed option area, or a missing/malformed message type. Every other option is
    /// tolerated when malformed (it reads as absent).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check()?;
        if p.op() != op::BOOTREQUEST {
            return Err(Error::NotRequest { op: p.op() });
        }
        let message_type = match p.option(code::MESSAGE_TYPE) {
            None => return Err(Error::MissingMessageType),
            Some(v) if v.len() == 1 => MessageType::from(v[0]),
            Some(v) => return Err(Error::BadOptionLength { code: code::MESSAGE_TYPE, len: v.len() }),
        };
        let server_id = p.option(code::SERVER_ID).and_then(|v| <[u8; 4]>::try_from(&v[..]).ok()).map(Ipv4Addr::from);
        let client_id_raw = p.option(code::CLIENT_UUID).map(|v| v.into_owned());
        let client_uuid = client_id_raw.as_deref().and_then(parse_uuid);
        let vendor_class = p.option(code::VENDOR_CLASS).map(|v| v.into_owned()).unwrap_or_default();
        let client_arch = p
            .option(code::CLIENT_ARCH)
            .and_then(|v| v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])))
            .or_else(|| arch_from_vendor_class(&vendor_class));
        let nii = p.option(code::CLIENT_NII).and_then(|v| match v[..] {
            [kind, major, minor] => Some(Nii { kind, major, minor }),
            _ => None,
        });
        let user_classes = p.option(code::USER_CLASS).map(|v| parse_user_classes(&v)).unwrap_or_default();
        let ipxe_options =
            p.option(code::IPXE_ENCAP).map(|v| Options::new(&v).map_while(Result::ok).map(|o| o.code).collect());
        let max_message_size =
            p.option(code::MAX_MESSAGE_SIZE).and_then(|v| <[u8; 2]>::try_from(&v[..]).ok()).map(u16::from_be_bytes);
        Ok(Self {
            message_type,
            xid: p.xid(),
            secs: p.secs(),
            flags: p.flags(),
            htype: p.htype(),
            hlen: p.hlen(),
            chaddr: p.chaddr(),
            ciaddr: p.ciaddr(),
            giaddr: p.giaddr(),
            server_id,
            client_id_raw,
            client_uuid,
            client_arch,
            nii,
            vendor_class,
            user_classes,
            ipxe_options,
            max_message_size,
            relay_agent_info: p.option(code::RELAY_AGENT_INFO).map(|v| v.into_owned()),
            parameter_request_list: p.option(code::PARAMETER_REQUEST_LIST).map(|v| v.into_owned()).unwrap_or_default(),
        })
    }

    /// The first six bytes of `chaddr` (the MAC address for Ethernet clients).
    pub fn mac(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.chaddr[..6]);
        m
    }

    /// The client asked for broadcast replies.
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// Firmware or iPXE PXE client (option 60 starts with `PXEClient`), or UEFI HTTP boot
    /// client (`HTTPClient`).
    pub fn is_pxe(&self) -> bool {
        self.vendor_class.starts_with(b"PXEClient") || self.is_http_boot()
    }

    /// UEFI HTTP boot client (option 60 starts with `HTTPClient`).
    pub fn is_http_boot(&self) -> bool {
        self.vendor_class.starts_with(b"HTTPClient")
    }

    /// iPXE: user class `iPXE` or option 175 present.
    pub fn is_ipxe(&self) -> bool {
        self.ipxe_options.is_some() || self.user_classes.iter().any(|c| c == b"iPXE")
    }

    /// iPXE reported sub-option `code` of option 175 (e.g. [`ipxe::FEATURE_HTTPS`]).
    pub fn ipxe_has(&self, code: u8) -> bool {
        self.ipxe_options.as_ref().is_some_and(|c| c.contains(&code))
    }

    /// iPXE reported HTTPS support (175.20).
    pub fn ipxe_https(&self) -> bool {
        self.ipxe_has(ipxe::FEATURE_HTTPS)
    }

    /// Relay agent address, when the request came through one.
    pub fn relay(&self) -> Option<Ipv4Addr> {
        (!self.giaddr.is_unspecified()).then_some(self.giaddr)
    }

    /// The RFC 3527 link selection sub-option (82.5) of the relay agent information, when present
    /// and 4 bytes long: the subnet the client is on, as the relay saw it.
    pub fn link_selection(&self) -> Option<Ipv4Addr> {
        let info = self.relay_agent_info.as_deref()?;
        Options::new(info)
            .map_while(Result::ok)
            .find(|o| o.code == LINK_SELECTION)
            .and_then(|o| <[u8; 4]>::try_from(o.data).ok())
            .map(Ipv4Addr::from)
    }

    /// Option 60 as text (lossy UTF-8).
    pub fn vendor_class_str(&self) -> String {
        String::from_utf8_lossy(&self.vendor_class).into_owned()
    }

    /// The user classes as text, comma-separated (lossy UTF-8).
    pub fn user_class_str(&self) -> String {
        let parts: Vec<String> = self.user_classes.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        parts.join(",")
    }
}

/// Relay agent information sub-option 5: link selection (RFC 3527).
const LINK_SELECTION: u8 = 5;

/// Option 97: type 0 then 16 bytes; all-zero and all-FF mean "no UUID".
fn parse_uuid(v: &[u8]) -> Option<[u8; 16]> {
    match v {
        [0, rest @ ..] if rest.len() == 16 => {
            if rest.iter().all(|&b| b == 0) || rest.iter().all(|&b| b == 0xff) {
                return None;
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(rest);
            Some(u)
        }
        _ => None,
    }
}

/// `PXEClient:Arch:00007:UNDI:003016` -> 7.
fn arch_from_vendor_class(vc: &[u8]) -> Option<u16> {
    let rest = vc.strip_prefix(b"PXEClient:Arch:").or_else(|| vc.strip_prefix(b"HTTPClient:Arch:"))?;
    let digits = rest.get(..5)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// RFC 3004 (a sequence of length-prefixed, non-empty classes filling the option exactly), or
/// else one raw class (iPXE sends plain `iPXE`).
fn parse_user_classes(v: &[u8]) -> Vec<Vec<u8>> {
    let mut classes = Vec::new();
    let mut rest = v;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || len > tail.len() {
            return vec![v.to_vec()];
        }
        classes.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if classes.is_empty() {
        return vec![v.to_vec()];
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_classes_raw_and_rfc3004() {
        assert_eq!(parse_user_classes(b"iPXE"), vec![b"iPXE".to_vec()]);
        assert_eq!(parse_user_classes(b"\x04iPXE\x02ab"), vec![b"iPXE".to_vec(), b"ab".to_vec()]);
        assert_eq!(parse_user_classes(b"\x04iPX"), vec![b"\x04iPX".to_vec()]);
        assert_eq!(parse_user_classes(b""), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn uuid_rules() {
        let mut v = vec![0u8; 17];
        assert_eq!(parse_uuid(&v), None);
        v[1..].fill(0xff);
        assert_eq!(parse_uuid(&v), None);
        v[5] = 1;
        assert!(parse_uuid(&v).is_some());
        v[0] = 1;
        assert_eq!(parse_uuid(&v), None);
        assert_eq!(parse_uuid(&v[..16]), None);
    }

    #[test]
    fn link_selection_suboption() {
        let mut b = vec![0u8; 236];
        b[0] = 1;
        b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 82, 10, 1, 2, b'a', b'b', 5, 4, 198, 18, 9, 0, 255]);
        let r = PxeRequest::parse_bytes(&b).unwrap();
        assert_eq!(r.link_selection(), Some(Ipv4Addr::new(198, 18, 9, 0)));
        let n = b.len();
        b[n - 7] = 3; // 82.5 of length 3: not an address, ignored
        let r = PxeRequest::parse_bytes(&b).unwrap();
        assert_eq!(r.link_selection(), None);
    }

    #[test]
    fn arch_from_vendor_class_field() {
        assert_eq!(arch_from_vendor_class(b"PXEClient:Arch:00007:UNDI:003016"), Some(7));
        assert_eq!(arch_from_vendor_class(b"HTTPClient:Arch:00016:UNDI:003001"), Some(16));
        assert_eq!(arch_from_vendor_class(b"PXEClient:Arch:99999"), None);
        assert_eq!(arch_from_vendor_class(b"PXEClient:Arch:0x007"), None);
        assert_eq!(arch_from_vendor_class(b"PXEClient"), None);
    }
}
