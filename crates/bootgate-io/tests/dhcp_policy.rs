//! The engine with the full policy: architecture table, MAC rules, subnets by relay, response
//! delay, and counters. Loopback only; waits bounded; no timing assertions (the delay test
//! checks order: a delayed OFFER comes after an undelayed 4011 ACK sent later).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bootgate_io::dhcp::{DhcpEngine, DhcpPolicy, DhcpSettings};
use bootgate_wire::dhcp::{BootTable, Ipv4Net, MacPattern, SubnetBoot};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const WAIT: Duration = Duration::from_secs(10);

fn policy() -> DhcpPolicy {
    let mut p = DhcpPolicy {
        tftp_server: LO,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: "https://127.0.0.1:8051/boot.ipxe".into(),
        ..DhcpPolicy::default()
    };
    assert!(p.boot.set("arm64", "arm64/snponly.efi".into()));
    assert!(p.boot.set("http_efi_x64", "http://127.0.0.1:8050/content/ipxe.efi".into()));
    p
}

struct Lab {
    engine: DhcpEngine,
    client: UdpSocket,
    dhcp: SocketAddr,
    pxe: SocketAddr,
}

fn lab(p: DhcpPolicy) -> Lab {
    let client = UdpSocket::bind((LO, 0)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let settings = DhcpSettings {
        interface: None,
        bind_ip: LO,
        server_ip: LO,
        port: 0,
        pxe_port: 0,
        client_port: client.local_addr().unwrap().port(),
        broadcast_ip: LO,
    };
    let engine = DhcpEngine::start(settings, p).unwrap();
    let (p67, p4011) = engine.local_ports();
    Lab { engine, client, dhcp: SocketAddr::from((LO, p67)), pxe: SocketAddr::from((LO, p4011)) }
}

fn request(xid: u32, mac: [u8; 6], ciaddr: [u8; 4], giaddr: [u8; 4], options: &[&[u8]]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr);
    b[24..28].copy_from_slice(&giaddr);
    b[28..34].copy_from_slice(&mac);
    b.extend_from_slice(&[99, 130, 83, 99]);
    for o in options {
        b.extend_from_slice(o);
    }
    b.push(255);
    b.resize(b.len().max(300), 0);
    b
}

fn opt(code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![code, value.len() as u8];
    v.extend_from_slice(value);
    v
}

fn discover(xid: u32, mac: [u8; 6], arch: u16, vendor: &str) -> Vec<u8> {
    let a = arch.to_be_bytes();
    let vc = format!("{vendor}:Arch:{arch:05}:UNDI:003000");
    request(xid, mac, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, a[0], a[1]], &opt(60, vc.as_bytes())])
}

fn counter(engine: &DhcpEngine, name: &str) -> u64 {
    engine.counters().iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no counter {name}")).1
}

fn wait_counter(engine: &DhcpEngine, name: &str, value: u64) {
    let deadline = Instant::now() + WAIT;
    while counter(engine, name) < value {
        assert!(Instant::now() < deadline, "{name} stuck at {} (want {value})", counter(engine, name));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(counter(engine, name), value, "{name} overshot");
}

fn recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply within the wait");
    buf[..n].to_vec()
}

fn xid(r: &[u8]) -> u32 {
    u32::from_be_bytes(r[4..8].try_into().unwrap())
}

fn file(r: &[u8]) -> String {
    let f = &r[108..236];
    String::from_utf8_lossy(&f[..f.iter().position(|&c| c == 0).unwrap_or(128)]).into_owned()
}

/// A marker DISCOVER from a BIOS client: its OFFER being the next datagram proves nothing sent
/// before it was answered.
fn marker(l: &Lab, x: u32) {
    l.client.send_to(&discover(x, [2, 0, 0, 0, 0, 9], 0, "PXEClient"), l.dhcp).unwrap();
    let r = recv(&l.client);
    assert_eq!(xid(&r), x, "only the marker was answered");
}

#[test]
fn architecture_table_through_the_engine() {
    let l = lab(policy());
    l.client.send_to(&discover(1, MAC, 11, "PXEClient"), l.dhcp).unwrap();
    assert_eq!(file(&recv(&l.client)), "arm64/snponly.efi");
    l.client.send_to(&discover(2, MAC, 16, "HTTPClient"), l.dhcp).unwrap();
    let r = recv(&l.client);
    assert_eq!(file(&r), "http://127.0.0.1:8050/content/ipxe.efi");
    // RISC-V 64 (27): nothing configured; Itanium (2): unknown code, no default.
    l.client.send_to(&discover(3, MAC, 27, "PXEClient"), l.dhcp).unwrap();
    l.client.send_to(&discover(4, MAC, 2, "PXEClient"), l.dhcp).unwrap();
    marker(&l, 5);
    wait_counter(&l.engine, "answered_offer", 3);
    assert_eq!(counter(&l.engine, "answered_http_boot"), 1);
    assert_eq!(counter(&l.engine, "requests_http_boot"), 1);
    assert_eq!(counter(&l.engine, "requests_arch_arm64"), 1);
    assert_eq!(counter(&l.engine, "requests_arch_efi_x64"), 1);
    assert_eq!(counter(&l.engine, "requests_arch_riscv64"), 1);
    assert_eq!(counter(&l.engine, "requests_arch_unknown"), 1);
    assert_eq!(counter(&l.engine, "ignored_no_boot_program"), 1);
    assert_eq!(counter(&l.engine, "ignored_unknown_arch"), 1);
    // With a default, the unknown code is answered and counted as a fallback.
    let mut p = policy();
    p.boot.set("default", "fallback.kpxe".into());
    l.engine.set_policy(p);
    l.client.send_to(&discover(6, MAC, 2, "PXEClient"), l.dhcp).unwrap();
    let r = recv(&l.client);
    assert_eq!((xid(&r), file(&r).as_str()), (6, "fallback.kpxe"));
    wait_counter(&l.engine, "answered_default_arch", 1);
    let reasons: Vec<(u32, &str)> =
        l.engine.drain_events(100).iter().map(|e| (e.arch.unwrap_or(0).into(), e.reason)).collect();
    assert_eq!(reasons, vec![(11, ""), (16, ""), (27, "no_boot_program"), (2, "unknown_arch"), (0, ""), (2, "")]);
}

#[test]
fn mac_rules_swap_atomically() {
    let l = lab(policy());
    let other = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    // Deny the QEMU OUI: MAC is not answered, another machine is.
    let mut p = policy();
    p.access.deny.push(MacPattern::parse("52:54:00").unwrap());
    l.engine.set_policy(p);
    l.client.send_to(&discover(10, MAC, 0, "PXEClient"), l.dhcp).unwrap();
    l.client.send_to(&discover(11, other, 0, "PXEClient"), l.dhcp).unwrap();
    assert_eq!(xid(&recv(&l.client)), 11);
    wait_counter(&l.engine, "ignored_denied", 1);
    // Known machines only: MAC known, `other` not.
    let mut p = policy();
    p.access.known_only = true;
    p.access.known.insert(MAC);
    l.engine.set_policy(p);
    l.client.send_to(&discover(12, other, 0, "PXEClient"), l.dhcp).unwrap();
    l.client.send_to(&discover(13, MAC, 0, "PXEClient"), l.dhcp).unwrap();
    assert_eq!(xid(&recv(&l.client)), 13);
    wait_counter(&l.engine, "ignored_unknown_machine", 1);
    // An allow list by prefix.
    let mut p = policy();
    p.access.allow.push(MacPattern::parse("02:11:22").unwrap());
    l.engine.set_policy(p);
    l.client.send_to(&discover(14, MAC, 0, "PXEClient"), l.dhcp).unwrap();
    l.client.send_to(&discover(15, other, 0, "PXEClient"), l.dhcp).unwrap();
    assert_eq!(xid(&recv(&l.client)), 15);
    wait_counter(&l.engine, "ignored_not_allowed", 1);
    let refused: Vec<&str> = l.engine.drain_events(100).iter().map(|e| e.reason).filter(|r| !r.is_empty()).collect();
    assert_eq!(refused, vec!["denied", "unknown_machine", "not_allowed"]);
}

#[test]
fn relayed_subnet_gets_its_program_and_option_82_is_reported() {
    let mut p = policy();
    let mut lab_boot = BootTable::default();
    lab_boot.set("bios", "lab/undionly.kpxe".into());
    p.subnets.push(SubnetBoot { net: Ipv4Net::parse("127.0.0.0/29").unwrap(), boot: lab_boot });
    let l = lab(p);
    let (p67, _) = l.engine.local_ports();
    let relay = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 4), p67)).unwrap();
    relay.set_read_timeout(Some(WAIT)).unwrap();
    let info = [1u8, 3, b'p', b'o', b'1', 2, 2, b'r', b'1'];
    let b = request(
        20,
        MAC,
        [0; 4],
        [127, 0, 0, 4],
        &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient:Arch:00000"), &opt(82, &info)],
    );
    l.client.send_to(&b, l.dhcp).unwrap();
    let r = recv(&relay);
    assert_eq!((xid(&r), file(&r).as_str(), &r[24..28]), (20, "lab/undionly.kpxe", &[127, 0, 0, 4][..]));
    wait_counter(&l.engine, "relay_replies", 1);
    assert_eq!(counter(&l.engine, "relay_requests"), 1);
    assert_eq!(counter(&l.engine, "relay_option82"), 1);
    let e = l.engine.drain_events(10);
    assert_eq!(e[0].relay, Some(Ipv4Addr::new(127, 0, 0, 4)));
    assert_eq!(e[0].relay_agent_info.as_deref(), Some(&info[..]));
}

#[test]
fn standby_delays_offers_not_boot_server_acks() {
    let mut p = policy();
    p.response_delay_ms = 1500;
    let l = lab(p);
    l.client.send_to(&discover(30, MAC, 0, "PXEClient"), l.dhcp).unwrap();
    wait_counter(&l.engine, "replies_delayed", 1);
    // A 4011 REQUEST sent after the DISCOVER is answered at once, so its ACK arrives first.
    let req = request(31, MAC, [127, 0, 0, 1], [0; 4], &[&[53, 1, 3], &[93, 2, 0, 0], &opt(60, b"PXEClient")]);
    l.client.send_to(&req, l.pxe).unwrap();
    let first = recv(&l.client);
    let second = recv(&l.client);
    assert_eq!((xid(&first), xid(&second)), (31, 30));
    wait_counter(&l.engine, "answered_offer", 1);
    wait_counter(&l.engine, "answered_ack", 1);
    let e = l.engine.drain_events(10);
    assert_eq!(e.iter().map(|e| e.delayed).collect::<Vec<_>>(), vec![true, false]);
}

#[test]
fn garbage_flood_is_counted_and_the_engine_keeps_answering() {
    let l = lab(policy());
    let mut seed = 0x9e37_79b9u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let good = discover(40, MAC, 7, "PXEClient");
    let total = 500u64;
    for i in 0..total {
        // Mutate a valid request: random bytes at random places, random truncation.
        let mut b = good.clone();
        for _ in 0..(next() % 8) {
            let at = next() as usize % b.len();
            b[at] = next() as u8;
        }
        b.truncate(next() as usize % (b.len() + 1));
        let dest = if i % 2 == 0 { l.dhcp } else { l.pxe };
        l.client.send_to(&b, dest).unwrap();
        if i % 50 == 49 {
            wait_counter(&l.engine, "received", i + 1);
        }
    }
    wait_counter(&l.engine, "received", total);
    let c = |n| counter(&l.engine, n);
    let malformed: u64 = l.engine.counters().iter().filter(|(n, _)| n.starts_with("malformed_")).map(|(_, v)| v).sum();
    assert_eq!(malformed, c("dropped_malformed"), "every malformed drop has a reason");
    assert!(c("dropped_malformed") > 0);
    let accounted = c("dropped_malformed")
        + c("ignored_not_pxe")
        + c("requests_discover")
        + c("requests_request")
        + c("requests_inform")
        + c("requests_other");
    assert_eq!(accounted, total, "each datagram is a drop, a non-PXE request or a PXE request");
    // Drain whatever was answered, then the engine still answers a valid request.
    l.client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 2048];
    while l.client.recv_from(&mut buf).is_ok() {}
    l.client.set_read_timeout(Some(WAIT)).unwrap();
    l.client.send_to(&discover(41, MAC, 0, "PXEClient"), l.dhcp).unwrap();
    let r = recv(&l.client);
    assert_eq!((xid(&r), file(&r).as_str()), (41, "undionly.kpxe"));
}
