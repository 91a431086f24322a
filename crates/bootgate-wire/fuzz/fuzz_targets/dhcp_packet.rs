//! Any bytes through everything a DHCP datagram meets in the engine: the checked view, the
//! option iterator, the request repr, the decision on both ports, and the reply emitter.
//! Nothing may panic, and every emitted reply must parse back as a BOOTREPLY.
#![no_main]

use std::net::Ipv4Addr;

use bootgate_wire::dhcp::{decide, Decision, DhcpPolicy, Packet, Port, ProxyReply, PxeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        for opt in p.options() {
            assert!(opt.is_ok());
        }
        let _ = (p.file(), p.sname(), p.option(60), p.option(175));
    }
    let Ok(req) = PxeRequest::parse_bytes(data) else { return };
    let server = Ipv4Addr::new(198, 18, 0, 2);
    let policy = DhcpPolicy {
        tftp_server: server,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: "https://198.18.0.2/boot.ipxe".into(),
        script_url_http: Some("http://198.18.0.2/boot.ipxe".into()),
        ipxe_encap: vec![90, 4, 1, 2, 3, 4],
        ..DhcpPolicy::default()
    };
    for port in [Port::Dhcp, Port::BootServer] {
        if let Decision::Answer(a) = decide(&req, &policy, port, server) {
            if let Ok(bytes) = ProxyReply::new(&req, &a, server, &policy).to_vec() {
                let reply = Packet::new_checked(&bytes[..]).expect("our reply parses");
                assert_eq!(reply.op(), 2);
                assert_eq!(reply.xid(), req.xid);
            }
        }
    }
});
