//! Golden test over real client captures: every `tests/captures/dhcp/*.bin` is parsed, decided
//! and answered, and checked against what its file name says (see the README there).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bootgate_wire::dhcp::{
    decide, BootTarget, ClientKind, Decision, DhcpPolicy, Ignore, MessageType, Packet, Port, ProxyReply, PxeRequest,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/dhcp");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
}

#[derive(Debug)]
struct Expect {
    message: MessageType,
    port: Port,
    client: ClientKind,
    /// Allowed option-93 values.
    archs: &'static [u16],
    https: Option<bool>,
    pxe: bool,
}

fn expectations(name: &str) -> Result<Expect, String> {
    let words: Vec<String> = name.to_ascii_lowercase().split(['-', '_', '.']).map(str::to_owned).collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    let messages: Vec<MessageType> =
        [("discover", MessageType::Discover), ("request", MessageType::Request), ("inform", MessageType::Inform)]
            .iter()
            .filter(|(w, _)| has(w))
            .map(|(_, m)| *m)
            .collect();
    let [message] = messages[..] else {
        return Err(format!("{name}: name must hold exactly one of discover/request/inform"));
    };
    let firmware = ["ovmf", "edk2", "seabios", "rom", "firmware"].iter().any(|w| has(w));
    let client = match (has("ipxe"), has("httpboot"), firmware) {
        (true, false, _) => ClientKind::Ipxe,
        (false, true, _) => ClientKind::HttpBoot,
        (false, false, true) => ClientKind::Firmware,
        _ => return Err(format!("{name}: name must say the client: ipxe, httpboot or a firmware word")),
    };
    let efi = ["efi", "uefi", "x64"].iter().any(|w| has(w));
    let archs: &'static [u16] = match (has("bios"), efi || (has("ovmf") && !has("bios"))) {
        (true, false) => &[0],
        (false, true) if client == ClientKind::HttpBoot => &[15, 16],
        (false, true) => &[7, 9],
        _ => return Err(format!("{name}: name must say bios or efi")),
    };
    let https = match (has("https"), has("nohttps")) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
        _ => return Err(format!("{name}: both https and nohttps")),
    };
    let port = if has("4011") { Port::BootServer } else { Port::Dhcp };
    Ok(Expect { message, port, client, archs, https, pxe: !has("nonpxe") })
}

fn policy() -> DhcpPolicy {
    DhcpPolicy {
        tftp_server: SERVER,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: "https://198.18.0.2:8051/boot.ipxe".into(),
        script_url_http: None,
        ipxe_encap: Vec::new(),
        ..DhcpPolicy::default()
    }
}

fn check(path: &Path) -> Result<(), String> {
    let name = path.file_stem().and_then(|s| s.to_str()).ok_or("file name is not UTF-8")?;
    let want = expectations(name)?;
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let req = PxeRequest::parse_bytes(&bytes).map_err(|e| format!("{name}: does not parse: {e}"))?;
    let fail = |what: String| Err(format!("{name}: {what}; parsed {req:#?}"));
    if req.message_type != want.message {
        return fail(format!("message type {:?}, expected {:?}", req.message_type, want.message));
    }
    if req.mac() == [0; 6] || req.mac()[0] & 1 == 1 {
        return fail(format!("implausible MAC {:02x?}", req.mac()));
    }
    if req.htype != 1 || req.hlen != 6 {
        return fail(format!("htype/hlen {}/{}", req.htype, req.hlen));
    }
    if !want.pxe {
        if req.is_pxe() {
            return fail("named nonpxe but is PXE".into());
        }
        return match decide(&req, &policy(), want.port, SERVER) {
            Decision::Ignore(Ignore::NotPxe) => Ok(()),
            other => fail(format!("non-PXE request decided {other:?}")),
        };
    }
    if !req.is_pxe() {
        return fail("not a PXE request (option 60)".into());
    }
    match want.client {
        ClientKind::Ipxe if !req.is_ipxe() => return fail("expected iPXE".into()),
        ClientKind::Firmware | ClientKind::HttpBoot if req.is_ipxe() => return fail("unexpected iPXE".into()),
        ClientKind::HttpBoot if !req.is_http_boot() => return fail("expected HTTPClient".into()),
        _ => {}
    }
    if !req.client_arch.is_some_and(|a| want.archs.contains(&a)) {
        return fail(format!("arch {:?}, expected one of {:?}", req.client_arch, want.archs));
    }
    // Firmware PXE clients must send option 93 itself, an NII (94) and a vendor class naming
    // the same architecture (PXE 2.1, RFC 4578).
    if want.client == ClientKind::Firmware {
        if req.nii.is_none() {
            return fail("firmware PXE client without option 94".into());
        }
        let vc = format!("PXEClient:Arch:{:05}", req.client_arch.unwrap_or(u16::MAX));
        if !req.vendor_class.starts_with(vc.as_bytes()) {
            return fail(format!("vendor class does not start with {vc}"));
        }
    }
    if let Some(https) = want.https {
        if req.ipxe_https() != https {
            return fail(format!("175.20 present = {}, expected {https}", req.ipxe_https()));
        }
    }
    if let Some(raw) = &req.client_id_raw {
        if raw.len() == 17 && raw[0] == 0 && req.client_uuid.is_none() {
            let all_same = raw[1..].iter().all(|&b| b == raw[1]) && (raw[1] == 0 || raw[1] == 0xff);
            if !all_same {
                return fail("option 97 well-formed but no UUID parsed".into());
            }
        }
    }

    // Decide and answer as the engine would, as the lab's proxy server (198.18.0.2).
    let p = policy();
    let other = req.server_id.filter(|&s| s != SERVER);
    if let Some(site) = other {
        // A REQUEST naming another server (the site's DHCP) is not ours to answer.
        if decide(&req, &p, want.port, SERVER) != Decision::Ignore(Ignore::OtherServer) {
            return fail(format!("request for {site} not ignored as another server's"));
        }
    }
    // The same packet on the other port: a DISCOVER is never answered on 4011; a REQUEST
    // without a server id is not ours on 67.
    let wrong_port = match want.port {
        Port::Dhcp => Port::BootServer,
        Port::BootServer => Port::Dhcp,
    };
    let on_wrong = decide(&req, &p, wrong_port, SERVER);
    match (want.message, wrong_port, req.server_id) {
        (MessageType::Discover, Port::BootServer, _)
            if on_wrong != Decision::Ignore(Ignore::OtherMessage(MessageType::Discover)) =>
        {
            return fail(format!("DISCOVER on 4011 decided {on_wrong:?}"));
        }
        (MessageType::Request, Port::Dhcp, None) if on_wrong != Decision::Ignore(Ignore::OtherServer) => {
            return fail(format!("REQUEST without option 54 on 67 decided {on_wrong:?}"));
        }
        _ => {}
    }
    // Now as the server the packet names (if any), which must answer.
    let server = other.unwrap_or(SERVER);
    let a = match decide(&req, &p, want.port, server) {
        Decision::Answer(a) => a,
        Decision::Ignore(why) => return fail(format!("ignored: {why:?}")),
    };
    let want_reply = if want.message == MessageType::Discover { MessageType::Offer } else { MessageType::Ack };
    if a.reply != want_reply || a.client != want.client {
        return fail(format!("answer {a:?}, expected a {want_reply:?} for a {:?} client", want.client));
    }
    let expected_target = match (want.client, req.ipxe_https(), req.client_arch) {
        (ClientKind::Ipxe, true, _) => BootTarget::Script,
        (_, _, Some(0)) => BootTarget::Bios,
        _ => BootTarget::EfiX64,
    };
    if a.target != expected_target {
        return fail(format!("target {:?}, expected {expected_target:?}", a.target));
    }
    let reply = ProxyReply::new(&req, &a, server, &p).to_vec().map_err(|e| format!("{name}: reply: {e}"))?;
    let r = Packet::new_checked(&reply[..]).map_err(|e| format!("{name}: reply does not parse: {e}"))?;
    if r.op() != 2 || r.xid() != req.xid || r.chaddr() != req.chaddr || !r.yiaddr().is_unspecified() {
        return fail("reply header does not match the request".into());
    }
    if r.option(97).as_deref() != req.client_id_raw.as_deref() {
        return fail("option 97 not echoed".into());
    }
    let vendor_43 = r.option(43).map(|v| v.into_owned());
    let want_43 = (want.client == ClientKind::Firmware).then(|| vec![6, 1, 8, 255]);
    if vendor_43 != want_43 {
        return fail(format!("reply option 43 {vendor_43:?}, expected {want_43:?}"));
    }
    let want_type = [u8::from(want_reply)];
    if r.option(53).as_deref() != Some(&want_type[..]) || r.option(54).as_deref() != Some(&server.octets()[..]) {
        return fail("reply message type or server id wrong".into());
    }
    let got_file = if r.file().is_empty() { r.option(67).map(|v| v.into_owned()) } else { Some(r.file().to_vec()) };
    if got_file.as_deref() != Some(a.boot_file.as_bytes()) {
        return fail(format!("reply boot file {got_file:?}, expected {}", a.boot_file));
    }
    Ok(())
}

#[test]
fn every_capture_matches_its_name() {
    let files = captures();
    if files.is_empty() {
        eprintln!("dhcp_golden: tests/captures/dhcp holds no .bin captures yet; nothing to check");
        return;
    }
    let failures: Vec<String> = files.iter().filter_map(|f| check(f).err()).collect();
    assert!(failures.is_empty(), "{} of {} captures failed:\n{}", failures.len(), files.len(), failures.join("\n\n"));
    eprintln!("dhcp_golden: {} captures checked", files.len());
}

#[test]
fn file_names_are_read_strictly() {
    assert!(expectations("ovmf-discover").is_ok());
    let e = expectations("ipxe-bios-https-discover").unwrap();
    assert_eq!((e.client, e.archs, e.https, e.port), (ClientKind::Ipxe, &[0u16][..], Some(true), Port::Dhcp));
    let e = expectations("ovmf-4011-request").unwrap();
    assert_eq!((e.message, e.port, e.archs), (MessageType::Request, Port::BootServer, &[7u16, 9][..]));
    assert!(expectations("mystery").is_err());
    assert!(expectations("ipxe-discover").is_err(), "arch missing");
    assert!(expectations("ovmf-discover-request").is_err(), "two message types");
}

/// What edk2's PXE client (OVMF, and UEFI firmware built from edk2) does to a received offer
/// before it becomes `Mode->ProxyOffer` / `PxeReply`, the packets iPXE's cached-DHCP code reads:
/// when option 67's value does not end in NUL, the byte right after the value is set to 0 in
/// place (observed in the QEMU test: an option 175 that followed 67 vanished from iPXE's
/// `proxydhcp` settings). Returns the options of the altered packet in order, as a TLV walk
/// that treats 0 as pad and stops at END or at a length running past the packet.
fn edk2_view(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut pkt = reply.to_vec();
    let walk = |pkt: &[u8]| -> Vec<(usize, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 240;
        while i < pkt.len() {
            match pkt[i] {
                0 => i += 1,
                255 => break,
                code => {
                    let Some(&len) = pkt.get(i + 1) else { break };
                    let Some(value) = pkt.get(i + 2..i + 2 + usize::from(len)) else { break };
                    out.push((i, code, value.to_vec()));
                    i += 2 + usize::from(len);
                }
            }
        }
        out
    };
    if let Some((at, _, value)) = walk(&pkt).into_iter().find(|(_, code, _)| *code == 67) {
        let after = at + 2 + value.len();
        if value.last() != Some(&0) && after < pkt.len() {
            pkt[after] = 0;
        }
    }
    walk(&pkt).into_iter().map(|(_, code, value)| (code, value)).collect()
}

#[test]
fn trust_option_survives_edk2_terminating_option_67_in_place() {
    // A real 175.90: one SHA-256 fingerprint.
    let mut encap = vec![90, 32];
    encap.extend((0..32u8).map(|i| i.wrapping_mul(37) ^ 0xa5));
    let p = DhcpPolicy { ipxe_encap: encap.clone(), ..policy() };
    let mut checked = 0;
    for path in captures() {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if !name.starts_with("ovmf-") {
            continue;
        }
        let want = expectations(&name).unwrap();
        let req = PxeRequest::parse_bytes(&std::fs::read(&path).unwrap()).unwrap();
        // Answered as the server the packet names, if any (as `check` does).
        let server = req.server_id.unwrap_or(SERVER);
        let Decision::Answer(a) = decide(&req, &p, want.port, server) else { panic!("{name}: not answered") };
        let reply = ProxyReply::new(&req, &a, server, &p).to_vec().unwrap();
        let seen = edk2_view(&reply);
        let codes: Vec<u8> = seen.iter().map(|(c, _)| *c).collect();
        assert!(codes.contains(&67), "{name}: OVMF asks for option 67 and gets it ({codes:?})");
        assert_eq!(codes.last(), Some(&67), "{name}: option 67 is the last option");
        let trust = seen.iter().find(|(c, _)| *c == 175).map(|(_, v)| v.clone());
        assert_eq!(trust.as_deref(), Some(&encap[..]), "{name}: 175 after edk2's NUL ({codes:?})");
        checked += 1;
    }
    if checked == 0 {
        eprintln!("dhcp_golden: no ovmf-* captures; edk2 view not checked");
    }
}

#[test]
fn edk2_view_models_the_overwrite() {
    // Option 67 followed by 175: the 175 tag becomes pad and what is left is read as garbage.
    let mut pkt = vec![0u8; 236];
    pkt.extend([99, 130, 83, 99]);
    pkt.extend([67, 3, b'a', b'.', b'e', 175, 4, 90, 2, 1, 2, 255]);
    let seen = edk2_view(&pkt);
    assert!(!seen.iter().any(|(c, _)| *c == 175), "{seen:?}");
    // Already NUL-terminated: left alone.
    let mut pkt = vec![0u8; 236];
    pkt.extend([99, 130, 83, 99]);
    pkt.extend([67, 4, b'a', b'.', b'e', 0, 175, 4, 90, 2, 1, 2, 255]);
    assert!(edk2_view(&pkt).iter().any(|(c, v)| *c == 175 && v == &[90, 2, 1, 2]));
}
