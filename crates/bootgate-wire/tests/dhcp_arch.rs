//! Crafted variants of real captures (tests/captures/dhcp): the OVMF x64 DISCOVER and 4011
//! REQUEST with their architecture, vendor class, option 97 or relay fields rewritten, to cover
//! ARM64, UEFI HTTP Boot, RISC-V, LoongArch, broken ROMs and the policy rules.

use std::net::Ipv4Addr;
use std::path::Path;

use bootgate_wire::dhcp::{
    decide, ArchFamily, BootTarget, ClientKind, Decision, DhcpPolicy, Ignore, Ipv4Net, MacPattern, MessageType, Port,
    ProxyReply, PxeRequest, SubnetBoot,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SCRIPT: &str = "https://198.18.0.2:8051/boot.ipxe";

fn capture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/dhcp").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (code, value) of every option of a request, walked independently of the crate.
fn options_of(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(b[i + 1]);
                out.push((code, b[i + 2..i + 2 + len].to_vec()));
                i += 2 + len;
            }
        }
    }
    out
}

/// The capture with option `code` replaced (`Some`) or removed (`None`); other options kept in
/// order; a replaced option that was absent is appended.
fn with_option(b: &[u8], code: u8, value: Option<&[u8]>) -> Vec<u8> {
    let mut opts = options_of(b);
    match (opts.iter().position(|(c, _)| *c == code), value) {
        (Some(i), Some(v)) => opts[i].1 = v.to_vec(),
        (Some(i), None) => {
            opts.remove(i);
        }
        (None, Some(v)) => opts.push((code, v.to_vec())),
        (None, None) => {}
    }
    let mut out = b[..240].to_vec();
    for (c, v) in opts {
        out.push(c);
        out.push(v.len() as u8);
        out.extend_from_slice(&v);
    }
    out.push(255);
    out.resize(out.len().max(300), 0);
    out
}

/// The OVMF capture turned into a client of architecture `arch` with vendor class `vendor`.
fn variant(name: &str, arch: u16, vendor: &str) -> Vec<u8> {
    let b = with_option(&capture(name), 93, Some(&arch.to_be_bytes()));
    with_option(&b, 60, Some(format!("{vendor}:Arch:{arch:05}:UNDI:003000").as_bytes()))
}

fn policy() -> DhcpPolicy {
    let mut p = DhcpPolicy {
        tftp_server: SERVER,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: SCRIPT.into(),
        ..DhcpPolicy::default()
    };
    for (k, v) in [
        ("arm64", "arm64/snponly.efi"),
        ("efi_ia32", "i386/ipxe.efi"),
        ("riscv64", "riscv64/ipxe.efi"),
        ("loongarch64", "loong64/ipxe.efi"),
        ("http_efi_x64", "http://198.18.0.2:8050/content/ipxe.efi"),
        ("http_arm64", "http://198.18.0.2:8050/content/arm64/ipxe.efi"),
    ] {
        assert!(p.boot.set(k, v.into()), "{k}");
    }
    p
}

fn decide_on(b: &[u8], p: &DhcpPolicy, port: Port) -> (PxeRequest, Decision<'static>) {
    let req = PxeRequest::parse_bytes(b).expect("variant parses");
    // Leak the policy clone so the decision can outlive this helper (tests only).
    let p: &'static DhcpPolicy = Box::leak(Box::new(p.clone()));
    let d = decide(&req, p, port, SERVER);
    (req, d)
}

fn reply(b: &[u8], p: &DhcpPolicy, port: Port) -> (PxeRequest, Vec<u8>, BootTarget, ClientKind) {
    let req = PxeRequest::parse_bytes(b).expect("variant parses");
    let Decision::Answer(a) = decide(&req, p, port, SERVER) else { panic!("not answered: {req:?}") };
    let r = ProxyReply::new(&req, &a, SERVER, p).to_vec().expect("reply emits");
    (req.clone(), r, a.target, a.client)
}

fn file_field(r: &[u8]) -> &[u8] {
    let f = &r[108..236];
    &f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())]
}

fn opt(r: &[u8], code: u8) -> Option<Vec<u8>> {
    let parts: Vec<Vec<u8>> = options_of(r).into_iter().filter(|(c, _)| *c == code).map(|(_, v)| v).collect();
    (!parts.is_empty()).then(|| parts.concat())
}

#[test]
fn the_real_capture_is_still_x64_firmware() {
    let (req, r, target, client) = reply(&capture("ovmf-efi-discover.bin"), &policy(), Port::Dhcp);
    assert_eq!(req.client_arch, Some(7));
    assert_eq!((target, client), (BootTarget::EfiX64, ClientKind::Firmware));
    assert_eq!(file_field(&r), b"snponly.efi");
}

#[test]
fn arm64_firmware_gets_its_program_on_67_and_4011() {
    let p = policy();
    for (name, port, reply_type) in
        [("ovmf-efi-discover.bin", Port::Dhcp, 2u8), ("ovmf-efi-4011-request.bin", Port::BootServer, 5)]
    {
        let b = variant(name, 11, "PXEClient");
        let (req, r, target, client) = reply(&b, &p, port);
        assert_eq!(req.client_arch, Some(11));
        assert_eq!((target, client), (BootTarget::Program(ArchFamily::Arm64), ClientKind::Firmware), "{name}");
        assert_eq!(file_field(&r), b"arm64/snponly.efi");
        assert_eq!(opt(&r, 53), Some(vec![reply_type]));
        assert_eq!(opt(&r, 60), Some(b"PXEClient".to_vec()));
        assert_eq!(opt(&r, 43), Some(vec![6, 1, 8, 255]), "firmware gets discovery control");
    }
    // Without an arm64 entry it is not answered (never sent an x64 program).
    let mut q = p.clone();
    q.boot.set("arm64", String::new());
    let (_, d) = decide_on(&variant("ovmf-efi-discover.bin", 11, "PXEClient"), &q, Port::Dhcp);
    assert_eq!(d, Decision::Ignore(Ignore::NoBootProgram(11)));
}

#[test]
fn other_families_by_iana_code() {
    let p = policy();
    for (arch, family, file) in [
        (6u16, ArchFamily::EfiIa32, "i386/ipxe.efi"),
        (27, ArchFamily::RiscV64, "riscv64/ipxe.efi"),
        (39, ArchFamily::LoongArch64, "loong64/ipxe.efi"),
    ] {
        let (_, r, target, _) = reply(&variant("ovmf-efi-discover.bin", arch, "PXEClient"), &p, Port::Dhcp);
        assert_eq!(target, BootTarget::Program(family), "arch {arch}");
        assert_eq!(file_field(&r), file.as_bytes());
    }
    for arch in [10u16, 25, 29, 37] {
        let (_, d) = decide_on(&variant("ovmf-efi-discover.bin", arch, "PXEClient"), &p, Port::Dhcp);
        assert_eq!(d, Decision::Ignore(Ignore::NoBootProgram(arch)), "arch {arch} has no entry");
    }
}

#[test]
fn uefi_http_boot_gets_a_url_and_httpclient() {
    let p = policy();
    for (arch, family, url) in [
        (16u16, ArchFamily::EfiX64, "http://198.18.0.2:8050/content/ipxe.efi"),
        (19, ArchFamily::Arm64, "http://198.18.0.2:8050/content/arm64/ipxe.efi"),
    ] {
        let (req, r, target, client) = reply(&variant("ovmf-efi-discover.bin", arch, "HTTPClient"), &p, Port::Dhcp);
        assert!(req.is_http_boot());
        assert_eq!((target, client), (BootTarget::Url(family), ClientKind::HttpBoot));
        assert_eq!(file_field(&r), url.as_bytes());
        assert_eq!(opt(&r, 60), Some(b"HTTPClient".to_vec()));
        assert_eq!(opt(&r, 43), None, "no PXE vendor options for HTTP Boot");
        assert_eq!(opt(&r, 67), Some(url.as_bytes().to_vec()), "OVMF lists 67 in option 55");
    }
    // A URL too long for the file field travels in option 67 alone.
    let mut q = p.clone();
    let long = format!("http://198.18.0.2:8050/content/{}/ipxe.efi", "d".repeat(150));
    q.boot.set("http_efi_x64", long.clone());
    let (_, r, _, _) = reply(&variant("ovmf-efi-discover.bin", 16, "HTTPClient"), &q, Port::Dhcp);
    assert_eq!(file_field(&r), b"");
    assert_eq!(opt(&r, 67), Some(long.into_bytes()));
    // HTTP arch code with no URL configured (RISC-V 64 over HTTP): not answered.
    let (_, d) = decide_on(&variant("ovmf-efi-discover.bin", 28, "HTTPClient"), &p, Port::Dhcp);
    assert_eq!(d, Decision::Ignore(Ignore::NoBootProgram(28)));
}

#[test]
fn unknown_codes_use_the_default_or_are_ignored() {
    let mut p = policy();
    let b = variant("ovmf-efi-discover.bin", 2, "PXEClient"); // Itanium
    let (_, d) = decide_on(&b, &p, Port::Dhcp);
    assert_eq!(d, Decision::Ignore(Ignore::UnknownArch(Some(2))));
    p.boot.set("default", "fallback.efi".into());
    let (_, r, target, _) = reply(&b, &p, Port::Dhcp);
    assert_eq!((target, file_field(&r)), (BootTarget::DefaultProgram, &b"fallback.efi"[..]));
    // An HTTP client with an unknown code wants http_default, not the TFTP default.
    let h = variant("ovmf-efi-discover.bin", 0x7fff, "HTTPClient");
    let (_, d) = decide_on(&h, &p, Port::Dhcp);
    assert_eq!(d, Decision::Ignore(Ignore::UnknownArch(Some(0x7fff))));
    p.boot.set("http_default", "http://198.18.0.2:8050/content/any.efi".into());
    let (_, r, target, client) = reply(&h, &p, Port::Dhcp);
    assert_eq!((target, client), (BootTarget::DefaultUrl, ClientKind::HttpBoot));
    assert_eq!(file_field(&r), b"http://198.18.0.2:8050/content/any.efi");
}

#[test]
fn broken_roms_option_97_missing_wrong_length_or_blank() {
    let p = policy();
    let base = capture("ovmf-efi-discover.bin");
    assert!(opt(&base, 97).is_some(), "the capture has a UUID");
    // Missing: answered, no 97 in the reply.
    let (req, r, _, _) = reply(&with_option(&base, 97, None), &p, Port::Dhcp);
    assert_eq!((req.client_uuid, req.client_id_raw), (None, None));
    assert_eq!(opt(&r, 97), None);
    // Wrong length (type 0 + 8 bytes), and a bad type byte: no UUID, but echoed as sent.
    for bad in [&[0u8, 1, 2, 3, 4, 5, 6, 7, 8][..], &[1u8; 17][..], &[][..]] {
        let (req, r, _, _) = reply(&with_option(&base, 97, Some(bad)), &p, Port::Dhcp);
        assert_eq!(req.client_uuid, None, "{bad:?}");
        assert_eq!(opt(&r, 97).as_deref(), Some(bad), "echoed as the client sent it");
    }
    // All-zero and all-FF UUIDs are "no UUID".
    for fill in [0u8, 0xff] {
        let mut v = vec![fill; 17];
        v[0] = 0;
        let (req, _, _, _) = reply(&with_option(&base, 97, Some(&v)), &p, Port::Dhcp);
        assert_eq!(req.client_uuid, None);
    }
    // Option 93 absent: the vendor class Arch field still says 7.
    let (req, r, _, _) = reply(&with_option(&base, 93, None), &p, Port::Dhcp);
    assert_eq!(req.client_arch, Some(7));
    assert_eq!(file_field(&r), b"snponly.efi");
    // Option 93 of one byte and no Arch field in the vendor class: no architecture.
    let b = with_option(&with_option(&base, 93, Some(&[7])), 60, Some(b"PXEClient"));
    let (_, d) = decide_on(&b, &p, Port::Dhcp);
    assert_eq!(d, Decision::Ignore(Ignore::UnknownArch(None)));
}

fn mac_of(b: &[u8]) -> [u8; 6] {
    b[28..34].try_into().unwrap()
}

#[test]
fn access_deny_allow_known_only() {
    let b = capture("ovmf-efi-discover.bin");
    let mac = mac_of(&b);
    let oui = MacPattern::new(&mac[..3]).unwrap();
    let mut p = policy();
    p.access.deny.push(oui);
    assert_eq!(decide_on(&b, &p, Port::Dhcp).1, Decision::Ignore(Ignore::Denied));
    // Deny applies on 4011 too.
    assert_eq!(
        decide_on(&capture("ovmf-efi-4011-request.bin"), &p, Port::BootServer).1,
        Decision::Ignore(Ignore::Denied)
    );
    p.access.deny.clear();
    p.access.allow.push(MacPattern::parse("02:00:00").unwrap());
    if mac[..3] != [2, 0, 0] {
        assert_eq!(decide_on(&b, &p, Port::Dhcp).1, Decision::Ignore(Ignore::NotAllowed));
    }
    p.access.allow.push(MacPattern::new(&mac).unwrap());
    assert!(matches!(decide_on(&b, &p, Port::Dhcp).1, Decision::Answer(_)));
    p.access.allow.clear();
    p.access.known_only = true;
    assert_eq!(decide_on(&b, &p, Port::Dhcp).1, Decision::Ignore(Ignore::UnknownMachine));
    p.access.known.insert(mac);
    assert!(matches!(decide_on(&b, &p, Port::Dhcp).1, Decision::Answer(_)));
    // Not-PXE and other-server checks come first: their reasons are kept.
    let not_pxe = with_option(&b, 60, Some(b"MSFT 5.0"));
    p.access.known.clear();
    assert_eq!(decide_on(&not_pxe, &p, Port::Dhcp).1, Decision::Ignore(Ignore::NotPxe));
}

#[test]
fn per_subnet_programs_by_relay_link_selection_or_ciaddr() {
    let mut p = policy();
    let mut lab = bootgate_wire::dhcp::BootTable::default();
    lab.set("efi_x64", "lab/ipxe.efi".into());
    lab.set("http_efi_x64", "http://198.19.7.2/ipxe.efi".into());
    p.subnets.push(SubnetBoot { net: Ipv4Net::parse("198.19.7.0/24").unwrap(), boot: lab });
    let base = capture("ovmf-efi-discover.bin");
    // Relayed: giaddr in the subnet.
    let mut relayed = base.clone();
    relayed[24..28].copy_from_slice(&[198, 19, 7, 1]);
    let (req, r, target, _) = reply(&relayed, &p, Port::Dhcp);
    assert_eq!(req.relay(), Some(Ipv4Addr::new(198, 19, 7, 1)));
    assert_eq!((target, file_field(&r)), (BootTarget::EfiX64, &b"lab/ipxe.efi"[..]));
    assert_eq!(&r[24..28], &[198, 19, 7, 1], "giaddr echoed for the relay");
    // The subnet has no bios entry: the global one applies.
    let bios = with_option(&with_option(&relayed, 93, Some(&[0, 0])), 60, Some(b"PXEClient:Arch:00000"));
    let (_, r, _, _) = reply(&bios, &p, Port::Dhcp);
    assert_eq!(file_field(&r), b"undionly.kpxe");
    // A relay that puts the client's link in 82.5 (giaddr in another net).
    let mut linksel = with_option(&base, 82, Some(&[1, 2, b'p', b'1', 5, 4, 198, 19, 7, 0]));
    linksel[24..28].copy_from_slice(&[0, 0, 0, 0]);
    let (req, r, _, _) = reply(&linksel, &p, Port::Dhcp);
    assert_eq!(req.relay_agent_info.as_deref(), Some(&[1, 2, b'p', b'1', 5, 4, 198, 19, 7, 0][..]));
    assert_eq!(file_field(&r), b"lab/ipxe.efi");
    // A client outside every subnet: global table.
    let (_, r, _, _) = reply(&base, &p, Port::Dhcp);
    assert_eq!(file_field(&r), b"snponly.efi");
    // 4011 REQUEST from a client whose ciaddr is in the subnet.
    let mut req4011 = capture("ovmf-efi-4011-request.bin");
    req4011[12..16].copy_from_slice(&[198, 19, 7, 50]);
    let (_, r, _, _) = reply(&req4011, &p, Port::BootServer);
    assert_eq!(file_field(&r), b"lab/ipxe.efi");
    assert_eq!(opt(&r, 53), Some(vec![u8::from(MessageType::Ack)]));
}
