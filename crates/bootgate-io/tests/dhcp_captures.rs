//! Real client packets (bootgate-wire/tests/captures/dhcp/*.bin, recorded from iPXE and OVMF in
//! the VM lab) replayed through the running engine over loopback. The engine plays the lab's
//! proxy server, 198.18.0.2 (option 54 only: the sockets are on 127.0.0.1).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bootgate_io::dhcp::{DhcpEngine, DhcpPolicy, DhcpSettings};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const LAB_PROXY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SCRIPT: &str = "https://198.18.0.2:8051/boot.ipxe";
const WAIT: Duration = Duration::from_secs(10);

fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootgate-wire/tests/captures/dhcp");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "bin")).collect();
    v.sort();
    v
}

fn counter(e: &DhcpEngine, name: &str) -> u64 {
    e.counters().into_iter().find(|(n, _)| *n == name).unwrap().1
}

fn wait_counter(e: &DhcpEngine, name: &str, value: u64) {
    let deadline = Instant::now() + WAIT;
    while counter(e, name) < value {
        assert!(Instant::now() < deadline, "{name} stuck at {} (want {value})", counter(e, name));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The UUID the event should carry: option 97 as type 0 + 16 bytes, not all-0 or all-FF.
fn expected_uuid(b: &[u8]) -> Option<[u8; 16]> {
    let mut i = 240;
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (b[i], b[i + 1] as usize);
        let v = &b[i + 2..i + 2 + len];
        if code == 97 && len == 17 && v[0] == 0 && v[1..].iter().any(|&x| x != 0) && v[1..].iter().any(|&x| x != 0xff) {
            return v[1..].try_into().ok();
        }
        i += 2 + len;
    }
    None
}

fn file(b: &[u8]) -> String {
    let f = &b[108..236];
    String::from_utf8_lossy(&f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())]).into_owned()
}

#[test]
fn captured_clients_are_answered_by_the_engine() {
    let files = captures();
    if files.is_empty() {
        eprintln!("dhcp_captures: no captures in bootgate-wire/tests/captures/dhcp; nothing checked");
        return;
    }
    let client = UdpSocket::bind((LO, 0)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let settings = DhcpSettings {
        interface: None,
        bind_ip: LO,
        server_ip: LAB_PROXY,
        port: 0,
        pxe_port: 0,
        client_port: client.local_addr().unwrap().port(),
        broadcast_ip: LO,
    };
    let policy = DhcpPolicy {
        tftp_server: LAB_PROXY,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: SCRIPT.into(),
        script_url_http: None,
        ipxe_encap: Vec::new(),
        ..DhcpPolicy::default()
    };
    let engine = DhcpEngine::start(settings, policy).unwrap();
    let (p67, p4011) = engine.local_ports();

    let (mut offers, mut acks, mut others) = (0u64, 0u64, 0u64);
    let mut uuids = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        uuids.push(expected_uuid(&bytes));
        let to_4011 = name.split('-').any(|w| w == "4011");
        let dest = SocketAddr::from((LO, if to_4011 { p4011 } else { p67 }));
        client.send_to(&bytes, dest).unwrap();
        wait_counter(&engine, "received", i as u64 + 1);
        let is_discover = name.contains("discover");
        let expect_reply = is_discover || to_4011;
        if !expect_reply {
            // A REQUEST on 67 for the site's DHCP server (198.18.0.1): ignored.
            others += 1;
            assert_eq!(counter(&engine, "ignored_other_server"), others, "{name}");
            continue;
        }
        let mut buf = [0u8; 1500];
        let (n, from) = client.recv_from(&mut buf).unwrap_or_else(|e| panic!("{name}: no reply: {e}"));
        let r = &buf[..n];
        assert_eq!(from, dest, "{name}: answered from the port it was asked on");
        assert_eq!(&r[4..8], &bytes[4..8], "{name}: xid");
        assert_eq!(&r[28..44], &bytes[28..44], "{name}: chaddr");
        let https_ipxe = name.contains("ipxe") && name.split('-').any(|w| w == "https");
        let want = if https_ipxe {
            SCRIPT
        } else if name.contains("bios") {
            "undionly.kpxe"
        } else {
            "snponly.efi"
        };
        assert_eq!(file(r), want, "{name}");
        if is_discover {
            offers += 1;
        } else {
            acks += 1;
        }
        wait_counter(&engine, "answered_offer", offers);
        wait_counter(&engine, "answered_ack", acks);
    }
    assert_eq!(counter(&engine, "dropped_malformed"), 0);
    assert_eq!(counter(&engine, "ignored_unknown_arch"), 0);
    let events = engine.drain_events(1024);
    assert_eq!(events.len(), files.len(), "every capture is a PXE request and is reported");
    let got: Vec<Option<[u8; 16]>> = events.iter().map(|e| e.uuid).collect();
    assert_eq!(got, uuids, "event UUIDs (QEMU without -uuid sends all zeros: no UUID)");
    eprintln!("dhcp_captures: {} captures replayed ({offers} offers, {acks} acks, {others} ignored)", files.len());
}
