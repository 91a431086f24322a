//! DHCPv4 / PXE (RFC 2131, 2132, 3004, 3396, 4578, PXE 2.1) packet views, request repr and proxy replies.
//!
//! The layers, from bytes up:
//! - [`Packet`]: a checked view over a BOOTP/DHCP datagram (`Packet::new_checked` validates the fixed
//!   header, the magic cookie and the option TLV layout; the accessors then never fail).
//! - [`Options`]: the option TLV iterator (pad and end handled; RFC 3396 concatenation in
//!   [`Packet::option`]). Option overload (52) is not followed: PXE clients never use it, and the
//!   `sname`/`file` fields are simply never read as options.
//! - [`PxeRequest`]: the fields a proxyDHCP server needs, parsed from a client request.
//! - [`decide`]: the pure decision — ignore (and why) or answer with which boot file.
//! - [`ProxyReply`]: a proxy OFFER/ACK, emitted into a caller's buffer.
//! - [`StandbyTracker`]: when a standby server answers (the primary evidently silent).
//! - [`ra`]: IPv6 Router Solicitation / Advertisement for the optional RA responder.
//!
//! Nothing here panics on any input: every index is checked, every error is a typed [`Error`].

mod arch_table;
mod decision;
mod error;
mod options;
mod packet;
mod policy;
pub mod ra;
mod reply;
mod request;
mod standby;

pub use arch_table::{classify, ArchClass, ArchFamily};
pub use decision::{
    boot_program, decide, subnet_address, Answer, BootTarget, ClientKind, Decision, DhcpPolicy, Ignore, Port,
};
pub use error::Error;
pub use options::{code, DhcpOption, Options, OptionsWriter};
pub use packet::{field, Packet, BOOTP_MIN_LEN, HEADER_LEN, MAGIC_COOKIE};
pub use policy::{subnet_for, Access, BootTable, Ipv4Net, MacPattern, Refusal, SubnetBoot};
pub use reply::ProxyReply;
pub use request::{MessageType, Nii, PxeRequest};
pub use standby::{StandbyAnswer, StandbyTracker};

/// UDP port of DHCP servers (and relay agents).
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;
/// UDP port of the PXE boot server (proxyDHCP service on a separate port, PXE 2.1).
pub const PXE_PORT: u16 = 4011;

/// BOOTP `op` field values.
pub mod op {
    pub const BOOTREQUEST: u8 = 1;
    pub const BOOTREPLY: u8 = 2;
}

/// The broadcast bit of the `flags` field (RFC 2131 section 2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Client system architecture types (option 93, RFC 4578 and the IANA registry) used here.
pub mod arch {
    /// x86 BIOS.
    pub const BIOS: u16 = 0;
    /// x64 UEFI.
    pub const EFI_X64: u16 = 7;
    /// EFI BC (in practice sent by x64 UEFI firmware too).
    pub const EFI_BC: u16 = 9;
    /// x86 (IA32) UEFI.
    pub const EFI_IA32: u16 = 6;
    /// ARM 32-bit UEFI.
    pub const ARM32: u16 = 10;
    /// ARM 64-bit UEFI.
    pub const ARM64: u16 = 11;
    /// x64 UEFI boot from HTTP.
    pub const HTTP_X64: u16 = 16;
    /// ARM 64-bit UEFI boot from HTTP.
    pub const HTTP_ARM64: u16 = 19;
    /// RISC-V 64-bit UEFI.
    pub const RISCV64: u16 = 27;
    /// LoongArch 64-bit UEFI.
    pub const LOONGARCH64: u16 = 39;
}

/// iPXE encapsulated option 175 sub-options (feature indicators) used here.
pub mod ipxe {
    /// 175.19: HTTP support.
    pub const FEATURE_HTTP: u8 = 19;
    /// 175.20: HTTPS support.
    pub const FEATURE_HTTPS: u8 = 20;
    /// 175.1: priority of this server's offer (signed byte; iPXE prefers higher).
    pub const PRIORITY: u8 = 1;
    /// 175.176: "no ProxyDHCP" — read by iPXE only from the offer that carries an address (the
    /// site DHCP server's), so a proxyDHCP server cannot use it to shorten iPXE's wait.
    pub const NO_PXEDHCP: u8 = 176;
    /// 175.24: PXE API support.
    pub const FEATURE_PXE: u8 = 24;
    /// 175.90: trusted certificate fingerprints (sent by servers).
    pub const TRUST: u8 = 90;
}

/// PXE vendor options (encapsulated in option 43), PXE 2.1 section 2.4.
pub mod pxe {
    /// 43.6 PXE_DISCOVERY_CONTROL.
    pub const DISCOVERY_CONTROL: u8 = 6;
    /// Discovery control bit 3: download the boot file named in the (proxy) offer, no discovery.
    pub const DISCOVERY_USE_BOOT_FILE: u8 = 8;
}
