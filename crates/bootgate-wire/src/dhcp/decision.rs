//! The proxyDHCP decision: a pure function of the request, the policy, the port and our address.

use std::net::Ipv4Addr;

use super::arch_table::{classify, ArchClass, ArchFamily};
use super::policy::{subnet_for, Access, BootTable, Refusal, SubnetBoot};
use super::{MessageType, PxeRequest};

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
    /// Raw DHCP option 175 sub-options (e.g. 175.90 trust fingerprints, 175.1 priority) sent in
    /// every offer/ack; empty for none.
    pub ipxe_encap: Vec<u8>,
    /// Every other architecture (and HTTP Boot URLs, and the defaults for unknown codes). Its
    /// `bios` / `efi_x64` PXE slots are ignored: `boot_bios` / `boot_efi_x64` hold those.
    pub boot: BootTable,
    /// MAC allow/deny and known-machines-only rules.
    pub access: Access,
    /// Per-subnet boot tables (most specific match first; empty entries fall back to the global
    /// ones).
    pub subnets: Vec<SubnetBoot>,
    /// Delay before answering on the DHCP port (67), for a standby server; 0 answers at once.
    /// Answers on 4011 are never delayed (they go to the server the client chose).
    pub response_delay_ms: u32,
    /// Standby mode: answer on the DHCP port only when the primary is evidently silent (see
    /// [`super::StandbyTracker`]; `response_delay_ms` is then the time the primary gets, and
    /// replies are not delayed). Requests naming this server (option 54) are always answered.
    pub standby: bool,
}

impl Default for DhcpPolicy {
    /// Answers nobody (every entry empty); fill in what is needed.
    fn default() -> Self {
        Self {
            tftp_server: Ipv4Addr::UNSPECIFIED,
            boot_bios: String::new(),
            boot_efi_x64: String::new(),
            script_url: String::new(),
            script_url_http: None,
            ipxe_encap: Vec::new(),
            boot: BootTable::default(),
            access: Access::default(),
            subnets: Vec::new(),
            response_delay_ms: 0,
            standby: false,
        }
    }
}

impl DhcpPolicy {
    /// The global entry for a known class ("" when none).
    pub fn global_entry(&self, class: ArchClass) -> &str {
        match (class.family, class.http) {
            (ArchFamily::Bios, false) => &self.boot_bios,
            (ArchFamily::EfiX64, false) => &self.boot_efi_x64,
            _ => self.boot.get(class),
        }
    }
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
    /// An architecture code no family covers (or none at all), and no default configured.
    UnknownArch(Option<u16>),
    /// A known architecture with no boot program / URL configured for it.
    NoBootProgram(u16),
    /// A REQUEST meant for another server (option 54 names someone else, or is absent on 67).
    OtherServer,
    /// A message type proxyDHCP does not answer (RELEASE, DECLINE, DISCOVER on 4011, ...).
    OtherMessage(MessageType),
    /// The MAC matches a deny pattern.
    Denied,
    /// An allow list exists and the MAC is not on it.
    NotAllowed,
    /// Known-machines-only mode and the MAC is not known.
    UnknownMachine,
}

/// What kind of client we answer; decides option 60 and option 43 of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Firmware PXE ROM (BIOS or UEFI): gets PXE vendor options (43) with discovery control.
    Firmware,
    /// iPXE: user class `iPXE` or option 175.
    Ipxe,
    /// UEFI HTTP boot (`HTTPClient`, or an HTTP architecture code): option 60 `HTTPClient`, a
    /// URL as boot file.
    HttpBoot,
}

/// Which policy entry was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTarget {
    /// `boot_bios` (or a subnet's bios entry).
    Bios,
    /// `boot_efi_x64` (or a subnet's efi_x64 entry).
    EfiX64,
    /// The boot program of another family.
    Program(ArchFamily),
    /// The HTTP Boot URL of a family.
    Url(ArchFamily),
    /// The default program (unknown architecture code).
    DefaultProgram,
    /// The default HTTP Boot URL (unknown architecture code).
    DefaultUrl,
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

/// The global boot program for a PXE architecture code, or `None` when we have none for it.
pub fn boot_program(arch_type: u16, policy: &DhcpPolicy) -> Option<(BootTarget, &str)> {
    let class = classify(arch_type).filter(|c| !c.http)?;
    Some((target_of(class), policy.global_entry(class))).filter(|(_, f)| !f.is_empty())
}

fn target_of(class: ArchClass) -> BootTarget {
    match (class.family, class.http) {
        (family, true) => BootTarget::Url(family),
        (ArchFamily::Bios, false) => BootTarget::Bios,
        (ArchFamily::EfiX64, false) => BootTarget::EfiX64,
        (family, false) => BootTarget::Program(family),
    }
}

/// The address that places a request in a subnet: the relay (`giaddr`), else the RFC 3527 link
/// selection sub-option (82.5), else the client's own address (`ciaddr`).
pub fn subnet_address(req: &PxeRequest) -> Option<Ipv4Addr> {
    req.relay().or_else(|| req.link_selection()).or_else(|| (!req.ciaddr.is_unspecified()).then_some(req.ciaddr))
}

/// Decides whether and how to answer `req`, which arrived on `port`; `server_id` is our address
/// (option 54 of our replies).
///
/// Order of the checks: not PXE, then message type / addressee, then access (deny, allow,
/// known-only), then the boot file. On 67 a DISCOVER gets an OFFER and a REQUEST whose option
/// 54 is ours gets an ACK; on 4011 a REQUEST or INFORM gets an ACK unless its option 54 names
/// another server. iPXE clients get the HTTPS script URL when they report 175.20, else the HTTP
/// script URL when the policy has one, else the boot program for their architecture (chaining
/// an old iPXE to the current one over TFTP). An empty `script_url` counts as unset.
///
/// The boot file: the architecture code (option 93, else the vendor class `Arch:` field) is
/// classified ([`classify`]); an HTTP Boot client (an HTTP code, or vendor class `HTTPClient`)
/// gets the family's URL, others its program; the subnet table (by [`subnet_address`]) is
/// asked first, then the global one. A code no family covers gets the default (subnet, then
/// global) or is ignored; a known family without an entry is ignored.
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
    if let Err(refusal) = check_access(&policy.access, req) {
        return Decision::Ignore(refusal);
    }
    let class = req.client_arch.and_then(classify);
    let http = req.is_http_boot() || class.is_some_and(|c| c.http);
    let client = if req.is_ipxe() {
        ClientKind::Ipxe
    } else if http {
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
    let http = client == ClientKind::HttpBoot;
    let subnet = subnet_address(req).and_then(|ip| subnet_for(&policy.subnets, ip));
    match class.map(|c| ArchClass { http, ..c }) {
        Some(class) => {
            let local = subnet.map(|s| s.boot.get(class)).filter(|f| !f.is_empty());
            let file = local.unwrap_or_else(|| policy.global_entry(class));
            match (file.is_empty(), req.client_arch) {
                (false, _) => answer(reply, target_of(class), file, client),
                (true, Some(code)) => Decision::Ignore(Ignore::NoBootProgram(code)),
                (true, None) => Decision::Ignore(Ignore::UnknownArch(None)),
            }
        }
        None => {
            let local = subnet.map(|s| s.boot.default_for(http)).filter(|f| !f.is_empty());
            let file = local.unwrap_or_else(|| policy.boot.default_for(http));
            if file.is_empty() {
                return Decision::Ignore(Ignore::UnknownArch(req.client_arch));
            }
            let target = if http { BootTarget::DefaultUrl } else { BootTarget::DefaultProgram };
            answer(reply, target, file, client)
        }
    }
}

fn check_access(access: &Access, req: &PxeRequest) -> Result<(), Ignore> {
    access.check(&req.mac()).map_err(|r| match r {
        Refusal::Denied => Ignore::Denied,
        Refusal::NotAllowed => Ignore::NotAllowed,
        Refusal::UnknownMachine => Ignore::UnknownMachine,
    })
}

fn answer(reply: MessageType, target: BootTarget, boot_file: &str, client: ClientKind) -> Decision<'_> {
    Decision::Answer(Answer { reply, target, boot_file, client })
}
