//! Proxy OFFER / ACK (PXE 2.1 section 2.2; RFC 2131 table 3 for the header fields).

use std::net::Ipv4Addr;

use super::options::{code, OptionsWriter};
use super::{op, pxe, Answer, ClientKind, DhcpPolicy, Error, MessageType, Packet, PxeRequest};
use super::{BOOTP_MIN_LEN, HEADER_LEN};

/// IPv4 + UDP headers, subtracted from option 57 (which counts the whole IP datagram).
const IP_UDP_HEADERS: usize = 28;
/// The datagram size every client accepts (RFC 2131 section 2: 576-byte IP datagrams).
const DEFAULT_MAX_DATAGRAM: usize = 576;

/// A proxyDHCP reply: `yiaddr` is always 0 (we never hand out addresses).
///
/// Boot file placement: the `file` field holds the name when it fits (127 bytes plus NUL);
/// option 67 carries it too when the client listed 67 in its parameter request list (RFC 2132
/// section 9.8: servers return what is asked for; PXE ROMs and iPXE ask for it) or when it does
/// not fit in `file` (RFC 2132 section 9.5), and always for UEFI HTTP Boot clients (EDK2's
/// HttpBootDxe reads the boot URI from option 67). Values over 255 bytes are split (RFC 3396).
/// Option 67 is always the last option before END (see [`ProxyReply::emit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReply<'a> {
    /// [`MessageType::Offer`] or [`MessageType::Ack`].
    pub message_type: MessageType,
    pub xid: u32,
    pub flags: u16,
    pub htype: u8,
    pub hlen: u8,
    pub chaddr: [u8; 16],
    /// The request's `ciaddr` in an ACK, 0 in an OFFER (RFC 2131 table 3).
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// Option 54.
    pub server_id: Ipv4Addr,
    /// `siaddr` and option 66 (as dotted text).
    pub tftp_server: Ipv4Addr,
    /// `file` and/or option 67.
    pub boot_file: &'a str,
    /// Option 60: `PXEClient` or `HTTPClient`.
    pub vendor_class: &'static str,
    /// Option 97 echoed as the client sent it.
    pub client_id: Option<&'a [u8]>,
    /// Option 43 with sub-option 6 (PXE_DISCOVERY_CONTROL) set to this, for firmware PXE clients.
    pub pxe_discovery_control: Option<u8>,
    /// Also send option 67.
    pub bootfile_option: bool,
    /// Option 175 (raw sub-options) when not empty.
    pub ipxe_encap: &'a [u8],
    /// Largest reply (UDP payload) the client accepts.
    pub max_len: usize,
}

impl<'a> ProxyReply<'a> {
    /// The reply to `req` for `answer` (from [`super::decide`]).
    pub fn new(req: &'a PxeRequest, answer: &Answer<'a>, server_id: Ipv4Addr, policy: &'a DhcpPolicy) -> Self {
        let max_datagram =
            req.max_message_size.map_or(DEFAULT_MAX_DATAGRAM, |m| usize::from(m).max(DEFAULT_MAX_DATAGRAM));
        let fits_file = answer.boot_file.len() < 128;
        Self {
            message_type: answer.reply,
            xid: req.xid,
            flags: req.flags,
            htype: req.htype,
            hlen: req.hlen,
            chaddr: req.chaddr,
            ciaddr: if answer.reply == MessageType::Ack { req.ciaddr } else { Ipv4Addr::UNSPECIFIED },
            giaddr: req.giaddr,
            server_id,
            tftp_server: policy.tftp_server,
            boot_file: answer.boot_file,
            vendor_class: if answer.client == ClientKind::HttpBoot { "HTTPClient" } else { "PXEClient" },
            client_id: req.client_id_raw.as_deref(),
            pxe_discovery_control: (answer.client == ClientKind::Firmware).then_some(pxe::DISCOVERY_USE_BOOT_FILE),
            bootfile_option: !fits_file
                || answer.client == ClientKind::HttpBoot
                || req.parameter_request_list.contains(&code::BOOTFILE_NAME),
            ipxe_encap: &policy.ipxe_encap,
            max_len: max_datagram - IP_UDP_HEADERS,
        }
    }

    fn tftp_name(&self) -> String {
        self.tftp_server.to_string()
    }

    fn options_len(&self) -> usize {
        let opt = OptionsWriter::encoded_len;
        let mut n = opt(1) + opt(4) + opt(self.vendor_class.len()) + opt(self.tftp_name().len()) + 1;
        if let Some(id) = self.client_id {
            n += opt(id.len());
        }
        if self.pxe_discovery_control.is_some() {
            n += opt(4);
        }
        if self.bootfile_option {
            n += opt(self.boot_file.len());
        }
        if !self.ipxe_encap.is_empty() {
            n += opt(self.ipxe_encap.len());
        }
        n
    }

    /// Size of the emitted reply: header, options, padding to 300 bytes.
    pub fn buffer_len(&self) -> usize {
        (HEADER_LEN + self.options_len()).max(BOOTP_MIN_LEN)
    }

    /// Writes the reply into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        if len > self.max_len {
            return Err(Error::ReplyTooLarge { len, max: self.max_len });
        }
        let Some(out) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall { need: len, have: buf.len() });
        };
        out.fill(0);
        let mut p = Packet::new_unchecked(out);
        p.set_op(op::BOOTREPLY);
        p.set_htype(self.htype);
        p.set_hlen(self.hlen);
        p.set_xid(self.xid);
        p.set_flags(self.flags);
        p.set_ciaddr(self.ciaddr);
        p.set_yiaddr(Ipv4Addr::UNSPECIFIED);
        p.set_siaddr(self.tftp_server);
        p.set_giaddr(self.giaddr);
        p.set_chaddr(&self.chaddr);
        // A name too long for `file` leaves it empty; option 67 then carries it.
        p.set_file(self.boot_file.as_bytes());
        p.set_magic();

        let mut w = OptionsWriter::new(p.options_mut());
        w.option(code::MESSAGE_TYPE, &[u8::from(self.message_type)])?;
        w.option(code::SERVER_ID, &self.server_id.octets())?;
        w.option(code::VENDOR_CLASS, self.vendor_class.as_bytes())?;
        if let Some(id) = self.client_id {
            w.option(code::CLIENT_UUID, id)?;
        }
        if let Some(control) = self.pxe_discovery_control {
            w.option(code::VENDOR_SPECIFIC, &[pxe::DISCOVERY_CONTROL, 1, control, code::END])?;
        }
        w.option(code::TFTP_SERVER_NAME, self.tftp_name().as_bytes())?;
        if !self.ipxe_encap.is_empty() {
            w.option(code::IPXE_ENCAP, self.ipxe_encap)?;
        }
        // Option 67 goes last: edk2's PXE client (OVMF and the UEFI firmware built from it)
        // NUL-terminates an unterminated option 67 in place, overwriting the byte that follows
        // it, and hands that altered packet on as `Mode->ProxyOffer` / `PxeReply`. Whatever
        // follows 67 is lost to the next stage (iPXE's cached 175.90 trust, observed in the
        // QEMU test); followed only by END, nothing is.
        if self.bootfile_option {
            w.option(code::BOOTFILE_NAME, self.boot_file.as_bytes())?;
        }
        w.end()?;
        Ok(len)
    }

    /// The reply as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; self.buffer_len()];
        let n = self.emit(&mut v)?;
        v.truncate(n);
        Ok(v)
    }
}
