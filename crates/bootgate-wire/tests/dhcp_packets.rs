//! Requests built byte by byte per RFC 2131/2132/4578 and PXE 2.1, parsed, decided and answered;
//! replies checked field by field at their RFC 2131 offsets with an independent TLV walker.

use std::net::Ipv4Addr;

use bootgate_wire::dhcp::{
    decide, Answer, ArchFamily, BootTarget, ClientKind, Decision, DhcpPolicy, Error, Ignore, MessageType, Nii, Port,
    ProxyReply, PxeRequest,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SITE_DHCP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const UUID: [u8; 16] = [0x8d, 0x5c, 0x1a, 0x7e, 0x3b, 0x2f, 0x4c, 0x11, 0x9a, 0x60, 0x0b, 0x6e, 0x55, 0x21, 0x7c, 0x01];
/// The parameter request list of an Intel PXE 2.1 ROM (it asks for 43, 60, 66, 67, 97, 128-135).
const PXE_PRL: &[u8] = &[
    1, 2, 3, 4, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97, 128,
    129, 130, 131, 132, 133, 134, 135,
];

/// A BOOTREQUEST: header fields written at their RFC 2131 offsets, then the cookie, then the
/// given raw options, an end option, and zero padding to 300 bytes (as ROMs send).
fn request(xid: u32, flags: u16, ciaddr: [u8; 4], giaddr: [u8; 4], options: &[&[u8]]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // op BOOTREQUEST
    b[1] = 1; // htype Ethernet
    b[2] = 6; // hlen
    b[3] = 0; // hops
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[8..10].copy_from_slice(&4u16.to_be_bytes()); // secs
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr);
    b[24..28].copy_from_slice(&giaddr);
    b[28..34].copy_from_slice(&MAC);
    b.extend_from_slice(&[99, 130, 83, 99]);
    for o in options {
        b.extend_from_slice(o);
    }
    b.push(255);
    if b.len() < 300 {
        b.resize(300, 0);
    }
    b
}

fn opt(code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![code, value.len() as u8];
    v.extend_from_slice(value);
    v
}

fn uuid_opt() -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&UUID);
    opt(97, &v)
}

fn bios_rom_discover() -> Vec<u8> {
    request(
        0x1234_5678,
        0x8000,
        [0; 4],
        [0; 4],
        &[
            &[53, 1, 1],
            &[57, 2, 0x04, 0xec],
            &opt(55, PXE_PRL),
            &uuid_opt(),
            &[94, 3, 1, 2, 1],
            &[93, 2, 0, 0],
            &opt(60, b"PXEClient:Arch:00000:UNDI:002001"),
        ],
    )
}

fn ovmf_discover() -> Vec<u8> {
    request(
        0x0a0b_0c0d,
        0x0000,
        [0; 4],
        [0; 4],
        &[
            &[53, 1, 1],
            &[57, 2, 0x05, 0xc0],
            &opt(55, &[1, 3, 6, 13, 15, 43, 60, 66, 67, 97, 128]),
            &[93, 2, 0, 7],
            &[94, 3, 1, 3, 0],
            &opt(60, b"PXEClient:Arch:00007:UNDI:003000"),
            &uuid_opt(),
        ],
    )
}

/// iPXE's 175 block: bus id, version, feature flags (19 HTTP, 20 HTTPS, 24 PXE ...).
fn ipxe_encap(https: bool) -> Vec<u8> {
    let mut v = vec![0xb1, 5, 1, 0x1a, 0xf4, 0x10, 0x00, 0xeb, 3, 1, 21, 1, 0x13, 1, 1];
    if https {
        v.extend_from_slice(&[0x14, 1, 1]);
    }
    v.extend_from_slice(&[0x18, 1, 1, 0x11, 1, 1]);
    v
}

fn ipxe_discover(arch: u16, https: bool, user_class: &[u8]) -> Vec<u8> {
    let a = arch.to_be_bytes();
    request(
        0x5eed_0001,
        0x0000,
        [0; 4],
        [0; 4],
        &[
            &[53, 1, 1],
            &[57, 2, 0x05, 0xc0],
            &[93, 2, a[0], a[1]],
            &[94, 3, 1, 2, 1],
            &opt(60, format!("PXEClient:Arch:{arch:05}:UNDI:002001").as_bytes()),
            &opt(77, user_class),
            &opt(175, &ipxe_encap(https)),
            &[61, 7, 1, MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5]],
            &uuid_opt(),
            &opt(
                55,
                &[1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203],
            ),
        ],
    )
}

fn pxe_request_4011(server_id: Option<Ipv4Addr>) -> Vec<u8> {
    let sid = server_id.map(|s| opt(54, &s.octets())).unwrap_or_default();
    request(
        0x7777_0001,
        0x0000,
        [198, 18, 0, 50],
        [0; 4],
        &[
            &[53, 1, 3],
            &sid,
            &[57, 2, 0x05, 0xc0],
            &opt(55, PXE_PRL),
            &[93, 2, 0, 0],
            &[94, 3, 1, 2, 1],
            &opt(60, b"PXEClient:Arch:00000:UNDI:002001"),
            &uuid_opt(),
            &[43, 7, 71, 4, 0x80, 0x00, 0x00, 0x00, 255],
        ],
    )
}

fn policy() -> DhcpPolicy {
    DhcpPolicy {
        tftp_server: SERVER,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: "https://198.18.0.2:8051/boot.ipxe".into(),
        script_url_http: None,
        ipxe_encap: vec![90, 32, 0xab, 0xcd], // not a real fingerprint length; raw bytes are passed as is
        ..DhcpPolicy::default()
    }
}

/// Independent option walker for replies: (code, value) per instance, stops at end.
fn reply_options(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&reply[236..240], &[99, 130, 83, 99], "magic cookie");
    let mut out = Vec::new();
    let mut i = 240;
    loop {
        let code = reply[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = reply[i + 1] as usize;
        out.push((code, reply[i + 2..i + 2 + len].to_vec()));
        i += 2 + len;
    }
    out
}

fn find(opts: &[(u8, Vec<u8>)], code: u8) -> Option<Vec<u8>> {
    let parts: Vec<&(u8, Vec<u8>)> = opts.iter().filter(|(c, _)| *c == code).collect();
    if parts.is_empty() {
        return None;
    }
    Some(parts.iter().flat_map(|(_, v)| v.clone()).collect())
}

fn c_field(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

fn answer_of<'p>(d: Decision<'p>) -> Answer<'p> {
    match d {
        Decision::Answer(a) => a,
        Decision::Ignore(why) => panic!("expected an answer, got ignore {why:?}"),
    }
}

fn reply_for(bytes: &[u8], port: Port, p: &DhcpPolicy) -> (PxeRequest, Vec<u8>) {
    let req = PxeRequest::parse_bytes(bytes).expect("request parses");
    let a = answer_of(decide(&req, p, port, SERVER));
    let reply = ProxyReply::new(&req, &a, SERVER, p).to_vec().expect("reply emits");
    (req, reply)
}

#[test]
fn bios_pxe_rom_discover_parses() {
    let req = PxeRequest::parse_bytes(&bios_rom_discover()).unwrap();
    assert_eq!(req.message_type, MessageType::Discover);
    assert_eq!(req.xid, 0x1234_5678);
    assert_eq!(req.flags, 0x8000);
    assert!(req.broadcast());
    assert_eq!(req.mac(), MAC);
    assert_eq!(req.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(req.relay(), None);
    assert_eq!(req.client_uuid, Some(UUID));
    assert_eq!(req.client_id_raw.as_deref().map(<[u8]>::len), Some(17));
    assert_eq!(req.client_arch, Some(0));
    assert_eq!(req.nii, Some(Nii { kind: 1, major: 2, minor: 1 }));
    assert_eq!(req.vendor_class, b"PXEClient:Arch:00000:UNDI:002001");
    assert_eq!(req.max_message_size, Some(1260));
    assert_eq!(req.parameter_request_list, PXE_PRL);
    assert!(req.is_pxe());
    assert!(!req.is_ipxe());
    assert!(!req.is_http_boot());
    assert_eq!(req.ipxe_options, None);
    assert!(req.user_classes.is_empty());
    assert_eq!(req.server_id, None);
}

#[test]
fn bios_pxe_rom_discover_gets_a_full_proxy_offer() {
    let p = policy();
    let (_, r) = reply_for(&bios_rom_discover(), Port::Dhcp, &p);
    assert!(r.len() >= 300, "padded to the BOOTP minimum");
    assert_eq!(r[0], 2, "op BOOTREPLY");
    assert_eq!((r[1], r[2], r[3]), (1, 6, 0), "htype, hlen, hops");
    assert_eq!(&r[4..8], &0x1234_5678u32.to_be_bytes(), "xid");
    assert_eq!(&r[8..10], &[0, 0], "secs");
    assert_eq!(&r[10..12], &[0x80, 0x00], "flags echoed");
    assert_eq!(&r[12..16], &[0; 4], "ciaddr");
    assert_eq!(&r[16..20], &[0; 4], "yiaddr is never set");
    assert_eq!(&r[20..24], &SERVER.octets(), "siaddr = TFTP server");
    assert_eq!(&r[24..28], &[0; 4], "giaddr");
    assert_eq!(&r[28..34], &MAC, "chaddr");
    assert_eq!(&r[34..44], &[0; 10]);
    assert_eq!(c_field(&r[44..108]), b"", "sname empty");
    assert_eq!(c_field(&r[108..236]), b"undionly.kpxe", "file");
    let o = reply_options(&r);
    assert_eq!(o[0], (53, vec![2]), "message type OFFER comes first");
    assert_eq!(find(&o, 54), Some(SERVER.octets().to_vec()));
    assert_eq!(find(&o, 60), Some(b"PXEClient".to_vec()));
    let mut uuid = vec![0];
    uuid.extend_from_slice(&UUID);
    assert_eq!(find(&o, 97), Some(uuid), "option 97 echoed");
    assert_eq!(find(&o, 43), Some(vec![6, 1, 8, 255]), "PXE_DISCOVERY_CONTROL = 8");
    assert_eq!(find(&o, 66), Some(b"198.18.0.2".to_vec()));
    assert_eq!(find(&o, 67), Some(b"undionly.kpxe".to_vec()), "asked for in option 55");
    assert_eq!(find(&o, 175), Some(vec![90, 32, 0xab, 0xcd]), "policy's iPXE options");
    assert_eq!(find(&o, 50), None);
    assert_eq!(find(&o, 51), None, "no lease: we hand out no address");
}

#[test]
fn ovmf_discover_gets_the_efi_program() {
    let p = policy();
    let (req, r) = reply_for(&ovmf_discover(), Port::Dhcp, &p);
    assert_eq!(req.client_arch, Some(7));
    assert_eq!(req.nii, Some(Nii { kind: 1, major: 3, minor: 0 }));
    assert!(!req.broadcast());
    assert_eq!(&r[10..12], &[0, 0], "flags echoed (unicast bit)");
    assert_eq!(c_field(&r[108..236]), b"snponly.efi");
    let o = reply_options(&r);
    assert_eq!(find(&o, 53), Some(vec![2]));
    assert_eq!(find(&o, 43), Some(vec![6, 1, 8, 255]));
    assert_eq!(find(&o, 67), Some(b"snponly.efi".to_vec()));
}

#[test]
fn arch_9_is_uefi_x64_and_unknown_arch_is_ignored() {
    let p = policy();
    for (arch, expect) in [(0u16, Some(BootTarget::Bios)), (7, Some(BootTarget::EfiX64)), (9, Some(BootTarget::EfiX64))]
    {
        let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, arch as u8], &opt(60, b"PXEClient")]);
        let req = PxeRequest::parse_bytes(&b).unwrap();
        assert_eq!(answer_of(decide(&req, &p, Port::Dhcp, SERVER)).target, expect.unwrap());
    }
    // Known families with nothing configured for them, and codes no family covers.
    for (arch, why) in [
        (6u16, Ignore::NoBootProgram(6)),
        (10, Ignore::NoBootProgram(10)),
        (11, Ignore::NoBootProgram(11)),
        (16, Ignore::NoBootProgram(16)),
        (2, Ignore::UnknownArch(Some(2))),
        (0xffff, Ignore::UnknownArch(Some(0xffff))),
    ] {
        let a = arch.to_be_bytes();
        let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, a[0], a[1]], &opt(60, b"PXEClient")]);
        let req = PxeRequest::parse_bytes(&b).unwrap();
        assert_eq!(decide(&req, &p, Port::Dhcp, SERVER), Decision::Ignore(why));
    }
    // No option 93 and a bare vendor class: no architecture at all.
    let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &opt(60, b"PXEClient")]);
    let req = PxeRequest::parse_bytes(&b).unwrap();
    assert_eq!(decide(&req, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::UnknownArch(None)));
}

#[test]
fn arch_falls_back_to_the_vendor_class_and_93_lists_use_the_first() {
    let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &opt(60, b"PXEClient:Arch:00007:UNDI:003016")]);
    assert_eq!(PxeRequest::parse_bytes(&b).unwrap().client_arch, Some(7));
    let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 4, 0, 9, 0, 7], &opt(60, b"PXEClient:Arch:00000")]);
    assert_eq!(PxeRequest::parse_bytes(&b).unwrap().client_arch, Some(9));
    // A one-byte option 93 is tolerated (read as absent).
    let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 1, 7], &opt(60, b"PXEClient")]);
    assert_eq!(PxeRequest::parse_bytes(&b).unwrap().client_arch, None);
}

#[test]
fn ipxe_with_https_gets_the_script_url() {
    let p = policy();
    for arch in [0u16, 7] {
        let (req, r) = reply_for(&ipxe_discover(arch, true, b"iPXE"), Port::Dhcp, &p);
        assert!(req.is_ipxe());
        assert!(req.ipxe_https());
        assert_eq!(req.ipxe_options, Some(vec![0xb1, 0xeb, 19, 20, 24, 17]));
        assert_eq!(req.user_classes, vec![b"iPXE".to_vec()]);
        assert_eq!(req.user_class_str(), "iPXE");
        assert_eq!(c_field(&r[108..236]), p.script_url.as_bytes());
        let o = reply_options(&r);
        assert_eq!(find(&o, 60), Some(b"PXEClient".to_vec()));
        assert_eq!(find(&o, 43), None, "no PXE menu options for iPXE");
        assert_eq!(find(&o, 67), Some(p.script_url.as_bytes().to_vec()));
        assert_eq!(find(&o, 175), Some(p.ipxe_encap.clone()));
    }
}

#[test]
fn ipxe_without_https_is_chained_or_given_the_http_script() {
    let mut p = policy();
    let req = PxeRequest::parse_bytes(&ipxe_discover(0, false, b"iPXE")).unwrap();
    assert!(req.is_ipxe() && !req.ipxe_https());
    let a = answer_of(decide(&req, &p, Port::Dhcp, SERVER));
    assert_eq!((a.target, a.boot_file, a.client), (BootTarget::Bios, "undionly.kpxe", ClientKind::Ipxe));
    let req7 = PxeRequest::parse_bytes(&ipxe_discover(7, false, b"iPXE")).unwrap();
    assert_eq!(answer_of(decide(&req7, &p, Port::Dhcp, SERVER)).boot_file, "snponly.efi");

    p.script_url_http = Some("http://198.18.0.2:8050/boot.ipxe".into());
    let a = answer_of(decide(&req, &p, Port::Dhcp, SERVER));
    assert_eq!((a.target, a.boot_file), (BootTarget::ScriptHttp, "http://198.18.0.2:8050/boot.ipxe"));
    // HTTPS still wins when reported.
    let https = PxeRequest::parse_bytes(&ipxe_discover(0, true, b"iPXE")).unwrap();
    assert_eq!(answer_of(decide(&https, &p, Port::Dhcp, SERVER)).target, BootTarget::Script);
}

#[test]
fn ipxe_detected_by_user_class_alone_in_either_form() {
    let p = policy();
    for uc in [&b"iPXE"[..], &b"\x04iPXE"[..], &b"\x03foo\x04iPXE"[..]] {
        let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient"), &opt(77, uc)]);
        let req = PxeRequest::parse_bytes(&b).unwrap();
        assert!(req.is_ipxe(), "user class {uc:?}");
        assert_eq!(req.ipxe_options, None);
        assert_eq!(answer_of(decide(&req, &p, Port::Dhcp, SERVER)).client, ClientKind::Ipxe);
    }
    let b = request(1, 0, [0; 4], [0; 4], &[&[53, 1, 1], &opt(60, b"PXEClient"), &opt(77, b"\x03foo")]);
    let req = PxeRequest::parse_bytes(&b).unwrap();
    assert_eq!(req.user_classes, vec![b"foo".to_vec()]);
    assert!(!req.is_ipxe());
}

#[test]
fn request_on_4011_gets_an_ack_to_the_sender() {
    let p = policy();
    for sid in [None, Some(SERVER)] {
        let (req, r) = reply_for(&pxe_request_4011(sid), Port::BootServer, &p);
        assert_eq!(req.message_type, MessageType::Request);
        assert_eq!(req.ciaddr, Ipv4Addr::new(198, 18, 0, 50));
        assert_eq!(&r[4..8], &0x7777_0001u32.to_be_bytes());
        assert_eq!(&r[12..16], &[198, 18, 0, 50], "ciaddr echoed in the ACK");
        assert_eq!(&r[16..20], &[0; 4]);
        assert_eq!(c_field(&r[108..236]), b"undionly.kpxe");
        let o = reply_options(&r);
        assert_eq!(find(&o, 53), Some(vec![5]), "ACK");
        assert_eq!(find(&o, 54), Some(SERVER.octets().to_vec()));
        assert_eq!(find(&o, 43), Some(vec![6, 1, 8, 255]));
    }
    let req = PxeRequest::parse_bytes(&pxe_request_4011(Some(SITE_DHCP))).unwrap();
    assert_eq!(decide(&req, &p, Port::BootServer, SERVER), Decision::Ignore(Ignore::OtherServer));
}

#[test]
fn request_on_67_answered_only_when_addressed_to_us() {
    let p = policy();
    let make = |sid: &[u8]| {
        request(9, 0x8000, [0; 4], [0; 4], &[&[53, 1, 3], sid, &[93, 2, 0, 0], &opt(60, b"PXEClient:Arch:00000")])
    };
    let other = PxeRequest::parse_bytes(&make(&opt(54, &SITE_DHCP.octets()))).unwrap();
    assert_eq!(decide(&other, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::OtherServer));
    let none = PxeRequest::parse_bytes(&make(&[])).unwrap();
    assert_eq!(decide(&none, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::OtherServer));
    let ours = PxeRequest::parse_bytes(&make(&opt(54, &SERVER.octets()))).unwrap();
    let a = answer_of(decide(&ours, &p, Port::Dhcp, SERVER));
    assert_eq!(a.reply, MessageType::Ack);
    let r = ProxyReply::new(&ours, &a, SERVER, &p).to_vec().unwrap();
    assert_eq!(find(&reply_options(&r), 53), Some(vec![5]));
}

#[test]
fn other_messages_and_non_pxe_are_ignored() {
    let p = policy();
    let plain = request(3, 0, [0; 4], [0; 4], &[&[53, 1, 1], &opt(60, b"MSFT 5.0"), &opt(55, &[1, 3, 6])]);
    let req = PxeRequest::parse_bytes(&plain).unwrap();
    assert_eq!(decide(&req, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::NotPxe));
    let novc = request(3, 0, [0; 4], [0; 4], &[&[53, 1, 1]]);
    let req = PxeRequest::parse_bytes(&novc).unwrap();
    assert_eq!(decide(&req, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::NotPxe));
    let release = request(3, 0, [0; 4], [0; 4], &[&[53, 1, 7], &[93, 2, 0, 0], &opt(60, b"PXEClient")]);
    let req = PxeRequest::parse_bytes(&release).unwrap();
    assert_eq!(decide(&req, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::OtherMessage(MessageType::Release)));
    let req = PxeRequest::parse_bytes(&bios_rom_discover()).unwrap();
    assert_eq!(
        decide(&req, &p, Port::BootServer, SERVER),
        Decision::Ignore(Ignore::OtherMessage(MessageType::Discover))
    );
}

#[test]
fn http_boot_client_echoes_httpclient() {
    let mut p = policy();
    // An HTTPClient reporting arch 7 is an HTTP Boot client: without an http_efi_x64 URL it is
    // not answered (a TFTP program name is no use to it).
    let b =
        request(5, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 7], &opt(60, b"HTTPClient:Arch:00007:UNDI:003000")]);
    let req = PxeRequest::parse_bytes(&b).unwrap();
    assert_eq!(decide(&req, &p, Port::Dhcp, SERVER), Decision::Ignore(Ignore::NoBootProgram(7)));
    assert!(p.boot.set("http_efi_x64", "http://198.18.0.2:8050/content/ipxe.efi".into()));
    let (req, r) = reply_for(&b, Port::Dhcp, &p);
    assert!(req.is_http_boot() && req.is_pxe());
    assert_eq!(c_field(&r[108..236]), b"http://198.18.0.2:8050/content/ipxe.efi");
    let o = reply_options(&r);
    assert_eq!(find(&o, 60), Some(b"HTTPClient".to_vec()));
    assert_eq!(find(&o, 43), None);
    assert_eq!(
        find(&o, 67),
        Some(b"http://198.18.0.2:8050/content/ipxe.efi".to_vec()),
        "HTTP Boot clients always get the URL in option 67 (EDK2 reads it there), asked for or not"
    );
    // Real UEFI HTTP boot reports arch 16: the same x64 URL.
    let b = request(5, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 16], &opt(60, b"HTTPClient:Arch:00016")]);
    let req = PxeRequest::parse_bytes(&b).unwrap();
    let a = answer_of(decide(&req, &p, Port::Dhcp, SERVER));
    assert_eq!((a.target, a.client), (BootTarget::Url(ArchFamily::EfiX64), ClientKind::HttpBoot));
}

#[test]
fn relayed_request_keeps_giaddr_and_relay_info() {
    let p = policy();
    let b = request(
        6,
        0,
        [0; 4],
        [198, 19, 7, 1],
        &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient"), &[82, 6, 1, 4, b'p', b'o', b'r', b't']],
    );
    let (req, r) = reply_for(&b, Port::Dhcp, &p);
    assert_eq!(req.relay(), Some(Ipv4Addr::new(198, 19, 7, 1)));
    assert_eq!(req.relay_agent_info.as_deref(), Some(&[1, 4, b'p', b'o', b'r', b't'][..]));
    assert_eq!(&r[24..28], &[198, 19, 7, 1], "giaddr echoed");
    assert_eq!(find(&reply_options(&r), 97), None, "no 97 when the client sent none");
}

#[test]
fn uuid_tolerance() {
    let p = policy();
    let cases: [(Vec<u8>, Option<[u8; 16]>); 5] = [
        (vec![0; 17], None),
        ([vec![0], vec![0xff; 16]].concat(), None),
        (vec![0, 1, 2, 3], None),
        ([vec![1], UUID.to_vec()].concat(), None),
        ([vec![0], UUID.to_vec()].concat(), Some(UUID)),
    ];
    for (raw, expect) in cases {
        let b = request(7, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient"), &opt(97, &raw)]);
        let (req, r) = reply_for(&b, Port::Dhcp, &p);
        assert_eq!(req.client_uuid, expect, "{raw:?}");
        assert_eq!(find(&reply_options(&r), 97), Some(raw.clone()), "echoed exactly as sent");
    }
}

#[test]
fn long_boot_urls_move_to_option_67() {
    let mut p = policy();
    let req = PxeRequest::parse_bytes(&ipxe_discover(0, true, b"iPXE")).unwrap();
    for len in [127usize, 128, 200, 255, 256, 300] {
        p.script_url = format!("https://x/{}", "a".repeat(len - 10));
        assert_eq!(p.script_url.len(), len);
        let a = answer_of(decide(&req, &p, Port::Dhcp, SERVER));
        let r = ProxyReply::new(&req, &a, SERVER, &p).to_vec().unwrap();
        let o = reply_options(&r);
        let file = c_field(&r[108..236]);
        if len < 128 {
            assert_eq!(file, p.script_url.as_bytes());
        } else {
            assert!(file.is_empty(), "{len}: does not fit in file");
        }
        assert_eq!(find(&o, 67), Some(p.script_url.as_bytes().to_vec()), "{len}");
        let instances = o.iter().filter(|(c, _)| *c == 67).count();
        assert_eq!(instances, len.div_ceil(255), "RFC 3396 split at {len}");
    }
    // Not requested and fits: only the file field.
    let b = request(8, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient")]);
    let (_, r) = reply_for(&b, Port::Dhcp, &policy());
    assert_eq!(find(&reply_options(&r), 67), None);
    assert_eq!(c_field(&r[108..236]), b"undionly.kpxe");
}

#[test]
fn reply_size_limits_are_errors_not_panics() {
    let mut p = policy();
    p.boot_bios = "b".repeat(600);
    let b = request(8, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient")]);
    let req = PxeRequest::parse_bytes(&b).unwrap();
    let a = answer_of(decide(&req, &p, Port::Dhcp, SERVER));
    let reply = ProxyReply::new(&req, &a, SERVER, &p);
    assert!(matches!(reply.to_vec(), Err(Error::ReplyTooLarge { max: 548, .. })));

    let p = policy();
    let a = answer_of(decide(&req, &p, Port::Dhcp, SERVER));
    let reply = ProxyReply::new(&req, &a, SERVER, &p);
    let mut small = [0u8; 100];
    assert_eq!(reply.emit(&mut small), Err(Error::BufferTooSmall { need: 300, have: 100 }));
    let mut big = [0xeeu8; 1500];
    let n = reply.emit(&mut big).unwrap();
    assert_eq!(n, 300);
    assert_eq!(&big[..n], &reply.to_vec().unwrap()[..]);
    assert_eq!(big[n], 0xee, "nothing written past the reply");
}

#[test]
fn max_message_size_raises_the_limit() {
    let mut p = policy();
    p.boot_bios = "b".repeat(600);
    let b = request(8, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[57, 2, 0x05, 0xc0], &[93, 2, 0, 0], &opt(60, b"PXEClient")]);
    let (req, r) = reply_for(&b, Port::Dhcp, &p);
    assert_eq!(req.max_message_size, Some(1472));
    assert!(r.len() > 548 && r.len() <= 1472 - 28);
    assert_eq!(find(&reply_options(&r), 67), Some(p.boot_bios.as_bytes().to_vec()));
}
