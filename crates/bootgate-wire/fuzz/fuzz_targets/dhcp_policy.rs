//! A policy built from the first bytes of the input (MAC rules, subnets, arch table entries,
//! defaults), the rest a datagram: parse, decide on both ports, emit. Nothing may panic; an
//! answer's boot file comes from the policy and is never empty; every reply parses back.
#![no_main]

use std::net::Ipv4Addr;

use bootgate_wire::dhcp::{
    decide, ArchFamily, BootTable, Decision, DhcpPolicy, Ignore, Ipv4Net, MacPattern, Packet, Port, ProxyReply,
    PxeRequest, SubnetBoot,
};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["", "x.efi", "http://198.18.0.2/a.efi", "undionly.kpxe"];

fn table(bits: u32) -> BootTable {
    let mut t = BootTable::default();
    for (i, f) in ArchFamily::ALL.into_iter().enumerate() {
        t.pxe[i] = NAMES[((bits >> (2 * i)) & 3) as usize].into();
        t.http[i] = NAMES[((bits >> (2 * i + 1)) & 3) as usize].into();
        let _ = f;
    }
    t.default_pxe = NAMES[(bits >> 28 & 3) as usize].into();
    t.default_http = NAMES[(bits >> 30 & 3) as usize].into();
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((head, packet)) = data.split_at_checked(16) else { return };
    let server = Ipv4Addr::new(198, 18, 0, 2);
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let mut policy = DhcpPolicy {
        tftp_server: server,
        boot_bios: NAMES[usize::from(head[0] & 3)].into(),
        boot_efi_x64: NAMES[usize::from(head[0] >> 2 & 3)].into(),
        script_url: NAMES[usize::from(head[0] >> 4 & 3)].into(),
        boot: table(word(4)),
        response_delay_ms: u32::from(head[1]),
        ..DhcpPolicy::default()
    };
    let prefix = &head[8..8 + usize::from(head[2] % 7).min(6)];
    if let Some(p) = MacPattern::new(prefix) {
        match head[3] % 4 {
            0 => policy.access.deny.push(p),
            1 => policy.access.allow.push(p),
            2 => {
                policy.access.known_only = true;
                policy.access.known.insert([head[8], head[9], head[10], head[11], head[12], head[13]]);
            }
            _ => {}
        }
    }
    if let Some(net) = Ipv4Net::new(Ipv4Addr::new(head[8], head[9], head[10], head[11]), head[14] % 40) {
        policy.subnets.push(SubnetBoot { net, boot: table(word(4).rotate_left(u32::from(head[15] % 32))) });
    }
    let Ok(req) = PxeRequest::parse_bytes(packet) else { return };
    for port in [Port::Dhcp, Port::BootServer] {
        match decide(&req, &policy, port, server) {
            Decision::Answer(a) => {
                assert!(!a.boot_file.is_empty());
                if let Ok(bytes) = ProxyReply::new(&req, &a, server, &policy).to_vec() {
                    let reply = Packet::new_checked(&bytes[..]).expect("our reply parses");
                    assert_eq!((reply.op(), reply.xid()), (2, req.xid));
                }
            }
            Decision::Ignore(Ignore::Denied | Ignore::NotAllowed | Ignore::UnknownMachine) => {
                assert!(policy.access.check(&req.mac()).is_err());
            }
            Decision::Ignore(_) => {}
        }
    }
});
