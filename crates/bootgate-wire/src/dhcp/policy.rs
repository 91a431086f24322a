//! Policy parts compiled by Python and swapped whole: the boot table, MAC access rules, per-subnet
//! boot tables.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::arch_table::{ArchClass, ArchFamily};

/// Boot programs (PXE, TFTP names) and HTTP Boot URLs by architecture family. An empty string
/// means "none": the lookup falls through (subnet table -> global table -> default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootTable {
    /// Boot program per [`ArchFamily`] slot.
    pub pxe: [String; ArchFamily::COUNT],
    /// UEFI HTTP Boot URL per [`ArchFamily`] slot.
    pub http: [String; ArchFamily::COUNT],
    /// Boot program for PXE clients whose architecture code no family covers.
    pub default_pxe: String,
    /// URL for HTTP Boot clients whose architecture code no family covers.
    pub default_http: String,
}

impl BootTable {
    /// The entry for a known class ("" when unset).
    pub fn get(&self, class: ArchClass) -> &str {
        let slots = if class.http { &self.http } else { &self.pxe };
        &slots[class.family.index()]
    }

    /// The fallback for an unknown code ("" when unset).
    pub fn default_for(&self, http: bool) -> &str {
        if http {
            &self.default_http
        } else {
            &self.default_pxe
        }
    }

    /// Sets one entry by config name: a family name (`arm64`), `http_<family>`, `default` or
    /// `http_default`. Returns false for an unknown name.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let (http, family) = match name.strip_prefix("http_") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        if family == "default" {
            if http {
                self.default_http = value;
            } else {
                self.default_pxe = value;
            }
            return true;
        }
        let Some(f) = ArchFamily::from_name(family) else { return false };
        let slots = if http { &mut self.http } else { &mut self.pxe };
        slots[f.index()] = value;
        true
    }
}

/// A MAC address or a prefix of one (1 to 6 bytes; e.g. an OUI `52:54:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacPattern {
    bytes: [u8; 6],
    len: u8,
}

impl MacPattern {
    /// A pattern of the first `prefix.len()` bytes; `None` when empty or longer than 6.
    pub fn new(prefix: &[u8]) -> Option<Self> {
        if prefix.is_empty() || prefix.len() > 6 {
            return None;
        }
        let mut bytes = [0u8; 6];
        bytes[..prefix.len()].copy_from_slice(prefix);
        Some(Self { bytes, len: prefix.len() as u8 })
    }

    /// Parses `aa:bb:cc`, `aa-bb-cc` or `aabbcc` (1 to 6 bytes, hex, case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let parts: Vec<&str> = if s.contains(':') || s.contains('-') {
            s.split([':', '-']).collect()
        } else {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            (0..s.len() / 2).map(|i| s.get(2 * i..2 * i + 2)).collect::<Option<Vec<_>>>()?
        };
        let mut bytes = Vec::with_capacity(6);
        for p in parts {
            if p.len() != 2 {
                return None;
            }
            bytes.push(u8::from_str_radix(p, 16).ok()?);
        }
        Self::new(&bytes)
    }

    /// The pattern's bytes.
    pub fn prefix(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn matches(&self, mac: &[u8; 6]) -> bool {
        mac.starts_with(self.prefix())
    }
}

/// Who is answered. A MAC on a deny pattern is never answered. Otherwise, when the allow list is
/// empty and `known_only` is off, everyone is; else a client must match an allow pattern or
/// (with `known_only`) be in `known`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub deny: Vec<MacPattern>,
    pub allow: Vec<MacPattern>,
    /// Answer only machines in `known` (and allow-listed ones).
    pub known_only: bool,
    /// Known machines (from the inventory).
    pub known: HashSet<[u8; 6]>,
}

/// Why [`Access::check`] refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Matches a deny pattern.
    Denied,
    /// An allow list exists and the MAC is not on it (known-only off).
    NotAllowed,
    /// Known-only mode and the MAC is neither known nor allow-listed.
    UnknownMachine,
}

impl Access {
    pub fn check(&self, mac: &[u8; 6]) -> Result<(), Refusal> {
        if self.deny.iter().any(|p| p.matches(mac)) {
            return Err(Refusal::Denied);
        }
        if self.allow.is_empty() && !self.known_only {
            return Ok(());
        }
        if self.allow.iter().any(|p| p.matches(mac)) || (self.known_only && self.known.contains(mac)) {
            return Ok(());
        }
        Err(if self.known_only { Refusal::UnknownMachine } else { Refusal::NotAllowed })
    }
}

/// An IPv4 network (address and prefix length), matched against a request's relay/link address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    /// `None` when `prefix` > 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    /// Parses `a.b.c.d/n` (a bare address is a /32).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, p) = s.trim().split_once('/').unwrap_or((s.trim(), "32"));
        Self::new(a.parse().ok()?, p.parse().ok()?)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

/// Boot table entries that apply to clients of one subnet (by relay address `giaddr`, the link
/// selection sub-option 82.5 of RFC 3527, or `ciaddr`); empty entries fall back to the global
/// table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetBoot {
    pub net: Ipv4Net,
    pub boot: BootTable,
}

/// The most specific subnet entry containing `ip`.
pub fn subnet_for(subnets: &[SubnetBoot], ip: Ipv4Addr) -> Option<&SubnetBoot> {
    subnets.iter().filter(|s| s.net.contains(ip)).max_by_key(|s| s.net.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_patterns() {
        let oui = MacPattern::parse("52:54:00").unwrap();
        assert_eq!(oui.prefix(), &[0x52, 0x54, 0]);
        assert!(oui.matches(&[0x52, 0x54, 0, 1, 2, 3]));
        assert!(!oui.matches(&[0x52, 0x54, 1, 1, 2, 3]));
        assert_eq!(MacPattern::parse("AA-bb-cc-dd-ee-ff").unwrap().prefix(), &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        assert_eq!(MacPattern::parse("aabbcc").unwrap().prefix(), &[0xaa, 0xbb, 0xcc]);
        for bad in ["", "a", "aa:b", "aa:bb:cc:dd:ee:ff:00", "zz", "aa::bb", "abc"] {
            assert_eq!(MacPattern::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn access_rules() {
        let a = [0x52, 0x54, 0, 0, 0, 1];
        let b = [0x52, 0x54, 0, 0, 0, 2];
        let c = [0x02, 0, 0, 0, 0, 3];
        let mut acc = Access::default();
        assert_eq!(acc.check(&a), Ok(()));
        acc.deny.push(MacPattern::new(&b).unwrap());
        assert_eq!(acc.check(&b), Err(Refusal::Denied));
        assert_eq!(acc.check(&c), Ok(()));
        acc.allow.push(MacPattern::parse("52:54:00").unwrap());
        assert_eq!(acc.check(&a), Ok(()));
        assert_eq!(acc.check(&b), Err(Refusal::Denied), "deny wins over allow");
        assert_eq!(acc.check(&c), Err(Refusal::NotAllowed));
        acc.known_only = true;
        assert_eq!(acc.check(&c), Err(Refusal::UnknownMachine));
        acc.known.insert(c);
        assert_eq!(acc.check(&c), Ok(()));
        acc.allow.clear();
        assert_eq!(acc.check(&a), Err(Refusal::UnknownMachine));
    }

    #[test]
    fn subnets_most_specific_wins() {
        let mk = |s: &str, f: &str| {
            let mut boot = BootTable::default();
            assert!(boot.set("bios", f.into()));
            SubnetBoot { net: Ipv4Net::parse(s).unwrap(), boot }
        };
        let subnets = vec![mk("198.18.0.0/15", "wide"), mk("198.18.4.0/24", "narrow")];
        let pick = |ip: [u8; 4]| subnet_for(&subnets, ip.into()).map(|s| s.boot.pxe[0].as_str());
        assert_eq!(pick([198, 18, 4, 1]), Some("narrow"));
        assert_eq!(pick([198, 19, 4, 1]), Some("wide"));
        assert_eq!(pick([10, 0, 0, 1]), None);
        assert_eq!(Ipv4Net::parse("0.0.0.0/0").map(|n| n.contains([1, 2, 3, 4].into())), Some(true));
        assert_eq!(Ipv4Net::parse("1.2.3.4/33"), None);
        assert_eq!(Ipv4Net::parse("1.2.3.4").map(|n| n.prefix), Some(32));
    }

    #[test]
    fn boot_table_names() {
        let mut t = BootTable::default();
        assert!(t.set("http_arm64", "http://x/a.efi".into()));
        assert!(t.set("default", "d".into()));
        assert!(t.set("http_default", "u".into()));
        assert!(!t.set("http_sparc", String::new()));
        assert_eq!(t.get(ArchClass { family: ArchFamily::Arm64, http: true }), "http://x/a.efi");
        assert_eq!(t.get(ArchClass { family: ArchFamily::Arm64, http: false }), "");
        assert_eq!((t.default_for(false), t.default_for(true)), ("d", "u"));
    }
}
