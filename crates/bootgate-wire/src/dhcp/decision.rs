//! The proxyDHCP decision: a pure function of the request, the policy, the port and our address.

use std::net::Ipv4Addr;

use super::{arch, MessageType, PxeRequest};

/// What to answer. Swapped whole and atomically by Python when policy changes.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// The port a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: broadcast DHCP, shared with the site's DHCP server.
    Dhcp,
    /// 4011: PXE boot server requests addressed to us.
    BootServer,
}

/// Why a request is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignore {
    /// Option 60 is not `PXEClient...` / `HTTPClient...`.
    NotPxe,
    /// No boot program for the client's architecture (or no architecture at all).
    UnknownArch(Option<u16>),
    /// A REQUEST meant for another server (option 54 names someone else, or is absent on 67).
    OtherServer,
    /// A message type proxyDHCP does not answer (RELEASE, DECLINE, DISCOVER on 4011, ...).
    OtherMessage(MessageType),
}

/// What kind of client we answer; decides option 60 and option 43 of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Firmware PXE ROM (BIOS or UEFI): gets PXE vendor options (43) with discovery control.
    Firmware,
    /// iPXE: user class `iPXE` or option 175.
    Ipxe,
    /// UEFI HTTP boot (`HTTPClient`): option 60 `HTTPClient` echoed.
    HttpBoot,
}

/// Which policy entry was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTarget {
    Bios,
    EfiX64,
    /// `script_url` (iPXE with HTTPS).
    Script,
    /// `script_url_http` (iPXE without HTTPS, when allowed).
    ScriptHttp,
}

/// An answer: reply type and boot file (name or URL), borrowed from the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'p> {
    /// [`MessageType::Offer`] or [`MessageType::Ack`].
    pub reply: MessageType,
    pub target: BootTarget,
    pub boot_file: &'p str,
    pub client: ClientKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'p> {
    Ignore(Ignore),
    Answer(Answer<'p>),
}

/// The boot program for an architecture, or `None` when we have none for it.
/// (A full architecture table is a later step; today: 0 BIOS, 7 and 9 UEFI x64.)
pub fn boot_program(arch_type: u16, policy: &DhcpPolicy) -> Option<(BootTarget, &str)> {
    match arch_type {
        arch::BIOS => Some((BootTarget::Bios, policy.boot_bios.as_str())),
        arch::EFI_X64 | arch::EFI_BC => Some((BootTarget::EfiX64, policy.boot_efi_x64.as_str())),
        _ => None,
    }
}

/// Decides whether and how to answer `req`, which arrived on `port`; `server_id` is our address
/// (option 54 of our replies).
///
/// Order of the checks: not PXE, then message type / addressee, then architecture. On 67 a
/// DISCOVER gets an OFFER and a REQUEST whose option 54 is ours gets an ACK; on 4011 a REQUEST or
/// INFORM gets an ACK unless its option 54 names another server. iPXE clients get the HTTPS
/// script URL when they report 175.20, else the HTTP script URL when the policy has one, else
/// the boot program for their architecture (chaining an old iPXE to the current one over TFTP).
/// An empty `script_url` counts as unset.
pub fn decide<'p>(req: &PxeRequest, policy: &'p DhcpPolicy, port: Port, server_id: Ipv4Addr) -> Decision<'p> {
    if !req.is_pxe() {
        return Decision::Ignore(Ignore::NotPxe);
    }
    let ours = |req: &PxeRequest| req.server_id == Some(server_id);
    let reply = match (port, req.message_type) {
        (Port::Dhcp, MessageType::Discover) => MessageType::Offer,
        (Port::Dhcp, MessageType::Request) if ours(req) => MessageType::Ack,
        (Port::Dhcp, MessageType::Request) => return Decision::Ignore(Ignore::OtherServer),
        (Port::BootServer, MessageType::Request | MessageType::Inform) => {
            if req.server_id.is_some() && !ours(req) {
                return Decision::Ignore(Ignore::OtherServer);
            }
            MessageType::Ack
        }
        (_, other) => return Decision::Ignore(Ignore::OtherMessage(other)),
    };
    let client = if req.is_ipxe() {
        ClientKind::Ipxe
    } else if req.is_http_boot() {
        ClientKind::HttpBoot
    } else {
        ClientKind::Firmware
    };
    if client == ClientKind::Ipxe {
        if req.ipxe_https() && !policy.script_url.is_empty() {
            return answer(reply, BootTarget::Script, &policy.script_url, client);
        }
        if let Some(url) = policy.script_url_http.as_deref().filter(|u| !u.is_empty()) {
            return answer(reply, BootTarget::ScriptHttp, url, client);
        }
    }
    match req.client_arch.and_then(|a| boot_program(a, policy)) {
        Some((target, file)) => answer(reply, target, file, client),
        None => Decision::Ignore(Ignore::UnknownArch(req.client_arch)),
    }
}

fn answer(reply: MessageType, target: BootTarget, boot_file: &str, client: ClientKind) -> Decision<'_> {
    Decision::Answer(Answer { reply, target, boot_file, client })
}
