//! The DHCP engine over loopback: real sockets, ports picked by the kernel, "broadcast" replies
//! sent to a test socket. Waits are bounded (a stuck engine fails the test); nothing asserts on
//! timing.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bootgate_io::dhcp::{DhcpEngine, DhcpEvent, DhcpPolicy, DhcpSettings, COUNTER_NAMES};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const UUID: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const WAIT: Duration = Duration::from_secs(10);

fn policy(bios: &str) -> DhcpPolicy {
    DhcpPolicy {
        tftp_server: Ipv4Addr::new(127, 0, 0, 1),
        boot_bios: bios.into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: "https://127.0.0.1:8051/boot.ipxe".into(),
        script_url_http: None,
        ipxe_encap: vec![90, 3, 0xaa, 0xbb, 0xcc],
        ..DhcpPolicy::default()
    }
}

struct Lab {
    engine: DhcpEngine,
    client: UdpSocket,
    dhcp: SocketAddr,
    pxe: SocketAddr,
}

fn lab() -> Lab {
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
    let engine = DhcpEngine::start(settings, policy("undionly.kpxe")).unwrap();
    let (p67, p4011) = engine.local_ports();
    assert!(p67 != 0 && p4011 != 0 && p67 != p4011);
    Lab { engine, client, dhcp: SocketAddr::from((LO, p67)), pxe: SocketAddr::from((LO, p4011)) }
}

/// A BOOTREQUEST with the header written at RFC 2131 offsets and the given raw options.
fn request(xid: u32, flags: u16, ciaddr: [u8; 4], giaddr: [u8; 4], options: &[&[u8]]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr);
    b[24..28].copy_from_slice(&giaddr);
    b[28..34].copy_from_slice(&MAC);
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

fn uuid_opt() -> Vec<u8> {
    opt(97, &[&[0u8][..], &UUID[..]].concat())
}

fn bios_discover(xid: u32) -> Vec<u8> {
    request(
        xid,
        0x8000,
        [0; 4],
        [0; 4],
        &[
            &[53, 1, 1],
            &opt(55, &[1, 3, 43, 54, 60, 66, 67, 97]),
            &uuid_opt(),
            &[94, 3, 1, 2, 1],
            &[93, 2, 0, 0],
            &opt(60, b"PXEClient:Arch:00000:UNDI:002001"),
        ],
    )
}

fn ovmf_discover(xid: u32) -> Vec<u8> {
    request(
        xid,
        0,
        [0; 4],
        [0; 4],
        &[&[53, 1, 1], &[93, 2, 0, 7], &[94, 3, 1, 3, 0], &opt(60, b"PXEClient:Arch:00007:UNDI:003000"), &uuid_opt()],
    )
}

fn ipxe_discover(xid: u32, https: bool) -> Vec<u8> {
    let mut encap = vec![0x13, 1, 1, 0x18, 1, 1];
    if https {
        encap.extend_from_slice(&[0x14, 1, 1]);
    }
    request(
        xid,
        0,
        [0; 4],
        [0; 4],
        &[
            &[53, 1, 1],
            &[93, 2, 0, 7],
            &opt(60, b"PXEClient:Arch:00007:UNDI:003010"),
            &opt(77, b"iPXE"),
            &opt(175, &encap),
            &opt(55, &[1, 3, 6, 43, 60, 66, 67, 175]),
        ],
    )
}

fn pxe_request(xid: u32, server_id: Option<Ipv4Addr>) -> Vec<u8> {
    let sid = server_id.map(|s| opt(54, &s.octets())).unwrap_or_default();
    request(
        xid,
        0,
        [127, 0, 0, 1],
        [0; 4],
        &[&[53, 1, 3], &sid, &[93, 2, 0, 0], &opt(60, b"PXEClient:Arch:00000:UNDI:002001"), &uuid_opt()],
    )
}

fn non_pxe_discover(xid: u32) -> Vec<u8> {
    request(xid, 0x8000, [0; 4], [0; 4], &[&[53, 1, 1], &opt(60, b"MSFT 5.0"), &opt(55, &[1, 3, 6, 15])])
}

fn counter(engine: &DhcpEngine, name: &str) -> u64 {
    engine.counters().iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no counter {name}")).1
}

/// Waits (bounded) until counter `name` reaches `value`.
fn wait_counter(engine: &DhcpEngine, name: &str, value: u64) {
    let deadline = Instant::now() + WAIT;
    while counter(engine, name) < value {
        assert!(Instant::now() < deadline, "{name} stuck at {} (want {value})", counter(engine, name));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(counter(engine, name), value, "{name} overshot");
}

fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).expect("a reply within the wait");
    (buf[..n].to_vec(), from)
}

/// (code, value) per option instance of a reply, up to the end option.
fn options(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&reply[236..240], &[99, 130, 83, 99]);
    let mut out = Vec::new();
    let mut i = 240;
    while reply[i] != 255 {
        if reply[i] == 0 {
            i += 1;
            continue;
        }
        let len = reply[i + 1] as usize;
        out.push((reply[i], reply[i + 2..i + 2 + len].to_vec()));
        i += 2 + len;
    }
    out
}

fn find(reply: &[u8], code: u8) -> Option<Vec<u8>> {
    options(reply).into_iter().find(|(c, _)| *c == code).map(|(_, v)| v)
}

fn file(reply: &[u8]) -> String {
    let f = &reply[108..236];
    String::from_utf8(f[..f.iter().position(|&c| c == 0).unwrap()].to_vec()).unwrap()
}

fn xid(reply: &[u8]) -> u32 {
    u32::from_be_bytes(reply[4..8].try_into().unwrap())
}

fn drain_all(engine: &DhcpEngine) -> Vec<DhcpEvent> {
    engine.drain_events(1024)
}

fn fd_readable(fd: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

#[test]
fn counter_names_are_stable() {
    let l = lab();
    let names: Vec<&str> = l.engine.counters().iter().map(|(n, _)| *n).collect();
    let (flat, labelled) = names.split_at(COUNTER_NAMES.len());
    assert_eq!(flat, COUNTER_NAMES);
    assert_eq!(labelled, bootgate_io::dhcp::labelled_counter_names());
    assert!(labelled.contains(&"requests{type=discover,arch=efi_x64}"));
    for required in [
        "received",
        "answered_offer",
        "answered_ack",
        "ignored_not_pxe",
        "ignored_unknown_arch",
        "ignored_other_server",
        "dropped_malformed",
        "send_errors",
        "events_dropped",
    ] {
        assert_eq!(counter(&l.engine, required), 0);
    }
}

#[test]
fn bios_discover_gets_a_broadcast_offer_and_an_event() {
    let l = lab();
    assert!(!fd_readable(l.engine.event_fd()));
    l.client.send_to(&bios_discover(0x1001), l.dhcp).unwrap();
    let (r, from) = recv(&l.client);
    assert_eq!(from, l.dhcp, "sent from the port-67 socket");
    assert_eq!(r[0], 2);
    assert_eq!(xid(&r), 0x1001);
    assert_eq!(&r[10..12], &[0x80, 0], "flags echoed");
    assert_eq!(&r[16..20], &[0; 4], "yiaddr");
    assert_eq!(&r[20..24], &[127, 0, 0, 1], "siaddr");
    assert_eq!(&r[28..34], &MAC);
    assert_eq!(file(&r), "undionly.kpxe");
    assert!(r.len() >= 300);
    assert_eq!(find(&r, 53), Some(vec![2]));
    assert_eq!(find(&r, 54), Some(vec![127, 0, 0, 1]));
    assert_eq!(find(&r, 60), Some(b"PXEClient".to_vec()));
    assert_eq!(find(&r, 43), Some(vec![6, 1, 8, 255]));
    assert_eq!(find(&r, 97), Some([&[0u8][..], &UUID[..]].concat()));
    assert_eq!(find(&r, 66), Some(b"127.0.0.1".to_vec()));
    assert_eq!(find(&r, 67), Some(b"undionly.kpxe".to_vec()));
    assert_eq!(find(&r, 175), Some(vec![90, 3, 0xaa, 0xbb, 0xcc]));

    wait_counter(&l.engine, "answered_offer", 1);
    assert_eq!(counter(&l.engine, "received"), 1);
    assert!(fd_readable(l.engine.event_fd()));
    let events = drain_all(&l.engine);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.mac, MAC);
    assert_eq!(e.uuid, Some(UUID));
    assert_eq!(e.arch, Some(0));
    assert_eq!(e.message_type, 1);
    assert_eq!(e.vendor_class, "PXEClient:Arch:00000:UNDI:002001");
    assert_eq!(e.user_class, "");
    assert!(!e.is_ipxe);
    assert_eq!(e.port, l.engine.local_ports().0);
    assert_eq!(e.relay, None);
    assert_eq!(e.answer, "undionly.kpxe");
    assert!(e.time > 1.6e9);
    assert!(!fd_readable(l.engine.event_fd()));
}

#[test]
fn ovmf_and_ipxe_discovers() {
    let l = lab();
    l.client.send_to(&ovmf_discover(0x2001), l.dhcp).unwrap();
    let (r, _) = recv(&l.client);
    assert_eq!(xid(&r), 0x2001);
    assert_eq!(file(&r), "snponly.efi");
    assert_eq!(find(&r, 43), Some(vec![6, 1, 8, 255]));
    assert_eq!(find(&r, 67), None, "not requested, fits in file");

    l.client.send_to(&ipxe_discover(0x2002, true), l.dhcp).unwrap();
    let (r, _) = recv(&l.client);
    assert_eq!(xid(&r), 0x2002);
    assert_eq!(file(&r), "https://127.0.0.1:8051/boot.ipxe");
    assert_eq!(find(&r, 67), Some(b"https://127.0.0.1:8051/boot.ipxe".to_vec()));
    assert_eq!(find(&r, 43), None);

    l.client.send_to(&ipxe_discover(0x2003, false), l.dhcp).unwrap();
    let (r, _) = recv(&l.client);
    assert_eq!(xid(&r), 0x2003);
    assert_eq!(file(&r), "snponly.efi", "iPXE without HTTPS is chained to the boot program");

    wait_counter(&l.engine, "answered_offer", 3);
    let events = drain_all(&l.engine);
    assert_eq!(events.len(), 3);
    assert_eq!((events[0].arch, events[0].is_ipxe), (Some(7), false));
    assert_eq!((events[1].is_ipxe, events[1].user_class.as_str()), (true, "iPXE"));
    assert_eq!(events[1].answer, "https://127.0.0.1:8051/boot.ipxe");
    assert_eq!(events[2].answer, "snponly.efi");
}

#[test]
fn request_on_4011_is_acked_to_the_sender() {
    let l = lab();
    // A separate client socket: 4011 replies go back to whoever asked, not to the client port.
    let asker = UdpSocket::bind((LO, 0)).unwrap();
    asker.set_read_timeout(Some(WAIT)).unwrap();
    asker.send_to(&pxe_request(0x3001, Some(LO)), l.pxe).unwrap();
    let (r, from) = recv(&asker);
    assert_eq!(from, l.pxe, "sent from the 4011 socket");
    assert_eq!(xid(&r), 0x3001);
    assert_eq!(find(&r, 53), Some(vec![5]));
    assert_eq!(&r[12..16], &[127, 0, 0, 1], "ciaddr echoed in an ACK");
    assert_eq!(file(&r), "undionly.kpxe");
    wait_counter(&l.engine, "answered_ack", 1);

    // Addressed to another server: ignored, counted, reported with an empty answer.
    asker.send_to(&pxe_request(0x3002, Some(Ipv4Addr::new(127, 9, 9, 9))), l.pxe).unwrap();
    wait_counter(&l.engine, "ignored_other_server", 1);
    let events = drain_all(&l.engine);
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].message_type, events[0].port), (3, l.engine.local_ports().1));
    assert_eq!(events[0].answer, "undionly.kpxe");
    assert_eq!((events[1].message_type, events[1].answer.as_str()), (3, ""));
}

#[test]
fn ignored_and_malformed_are_counted_not_answered() {
    let l = lab();
    l.client.send_to(&non_pxe_discover(0x4001), l.dhcp).unwrap();
    l.client.send_to(b"\x00garbage", l.dhcp).unwrap();
    l.client.send_to(&[0xffu8; 400], l.dhcp).unwrap();
    l.client.send_to(&[], l.pxe).unwrap();
    let mut bad_option = bios_discover(0x4002);
    bad_option.truncate(260);
    bad_option.extend_from_slice(&[60, 200, b'P']); // length past the end
    l.client.send_to(&bad_option, l.dhcp).unwrap();
    // A well-formed DISCOVER padded past a receive slot (4096 bytes): dropped as oversize.
    let mut big = bios_discover(0x4006);
    big.resize(5000, 0);
    l.client.send_to(&big, l.dhcp).unwrap();
    // ARM64 UEFI (11) with no arm64 program configured: ignored but reported.
    let arm = request(0x4003, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 11], &opt(60, b"PXEClient:Arch:00011")]);
    l.client.send_to(&arm, l.dhcp).unwrap();
    // REQUEST on 67 for the site's DHCP server.
    let other = request(
        0x4004,
        0x8000,
        [0; 4],
        [0; 4],
        &[&[53, 1, 3], &opt(54, &[127, 0, 0, 53]), &[93, 2, 0, 0], &opt(60, b"PXEClient")],
    );
    l.client.send_to(&other, l.dhcp).unwrap();
    // RELEASE from a PXE client.
    let release = request(0x4005, 0, [0; 4], [0; 4], &[&[53, 1, 7], &[93, 2, 0, 0], &opt(60, b"PXEClient")]);
    l.client.send_to(&release, l.dhcp).unwrap();
    // A marker answered last: the first datagram on the client socket must be its reply, so
    // nothing before it was answered (the engine handles one socket's datagrams in order).
    l.client.send_to(&bios_discover(0x4999), l.dhcp).unwrap();
    let (r, _) = recv(&l.client);
    assert_eq!(xid(&r), 0x4999);

    // Nine datagrams to 67 and one (empty) to 4011, which is polled separately.
    wait_counter(&l.engine, "received", 10);
    assert_eq!(counter(&l.engine, "answered_offer"), 1);
    assert_eq!(counter(&l.engine, "dropped_malformed"), 5);
    assert_eq!(counter(&l.engine, "malformed_oversize"), 1);
    assert_eq!(counter(&l.engine, "ignored_not_pxe"), 1);
    assert_eq!(counter(&l.engine, "ignored_no_boot_program"), 1);
    assert_eq!(counter(&l.engine, "ignored_unknown_arch"), 0);
    assert_eq!(counter(&l.engine, "ignored_other_server"), 1);
    assert_eq!(counter(&l.engine, "ignored_other_message"), 1);
    assert_eq!(counter(&l.engine, "answered_ack"), 0);
    assert_eq!(counter(&l.engine, "send_errors"), 0);
    // Drops by reason: two too short (garbage, empty), one without the cookie, one bad TLV.
    assert_eq!(counter(&l.engine, "malformed_truncated"), 2);
    assert_eq!(counter(&l.engine, "malformed_bad_magic_cookie"), 1);
    assert_eq!(counter(&l.engine, "malformed_option_truncated"), 1);
    // PXE requests by type and architecture (the non-PXE one is not among them).
    assert_eq!(counter(&l.engine, "requests_discover"), 2);
    assert_eq!(counter(&l.engine, "requests_request"), 1);
    assert_eq!(counter(&l.engine, "requests_other"), 1);
    assert_eq!(counter(&l.engine, "requests_arch_bios"), 3);
    assert_eq!(counter(&l.engine, "requests_arch_arm64"), 1);
    assert_eq!(counter(&l.engine, "relay_requests"), 0);

    let events = drain_all(&l.engine);
    let summary: Vec<(u8, Option<u16>, &str)> =
        events.iter().map(|e| (e.message_type, e.arch, e.answer.as_str())).collect();
    assert_eq!(
        summary,
        vec![(1, Some(11), ""), (3, Some(0), ""), (7, Some(0), ""), (1, Some(0), "undionly.kpxe")],
        "PXE requests are reported, answered or not; non-PXE and malformed ones are not"
    );
}

#[test]
fn set_policy_takes_effect_on_the_next_packet() {
    let l = lab();
    l.client.send_to(&bios_discover(0x5001), l.dhcp).unwrap();
    assert_eq!(file(&recv(&l.client).0), "undionly.kpxe");
    let mut p = policy("ipxe.pxe");
    p.script_url_http = Some("http://127.0.0.1:8050/boot.ipxe".into());
    p.ipxe_encap.clear();
    l.engine.set_policy(p);
    l.client.send_to(&bios_discover(0x5002), l.dhcp).unwrap();
    let (r, _) = recv(&l.client);
    assert_eq!((xid(&r), file(&r).as_str()), (0x5002, "ipxe.pxe"));
    assert_eq!(find(&r, 175), None, "the new policy has no iPXE options");
    l.client.send_to(&ipxe_discover(0x5003, false), l.dhcp).unwrap();
    let (r, _) = recv(&l.client);
    assert_eq!(file(&r), "http://127.0.0.1:8050/boot.ipxe");
}

#[test]
fn relayed_and_unicast_replies() {
    let l = lab();
    let (p67, _) = l.engine.local_ports();
    // A relay agent at 127.0.0.2 listening on the server port: relayed replies go there.
    let relay = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), p67)).unwrap();
    relay.set_read_timeout(Some(WAIT)).unwrap();
    let relayed = request(
        0x6001,
        0x8000,
        [0; 4],
        [127, 0, 0, 2],
        &[&[53, 1, 1], &[93, 2, 0, 0], &opt(60, b"PXEClient:Arch:00000"), &[82, 3, 1, 1, 7]],
    );
    l.client.send_to(&relayed, l.dhcp).unwrap();
    let (r, _) = recv(&relay);
    assert_eq!((xid(&r), &r[24..28]), (0x6001, &[127, 0, 0, 2][..]));

    // A client with an address and no broadcast flag: unicast to ciaddr at the client port.
    let client_port = l.client.local_addr().unwrap().port();
    let host = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 3), client_port)).unwrap();
    host.set_read_timeout(Some(WAIT)).unwrap();
    let unicast = request(
        0x6002,
        0,
        [127, 0, 0, 3],
        [0; 4],
        &[&[53, 1, 3], &opt(54, &LO.octets()), &[93, 2, 0, 7], &opt(60, b"PXEClient:Arch:00007")],
    );
    l.client.send_to(&unicast, l.dhcp).unwrap();
    let (r, _) = recv(&host);
    assert_eq!((xid(&r), file(&r).as_str()), (0x6002, "snponly.efi"));
    assert_eq!(find(&r, 53), Some(vec![5]), "REQUEST addressed to us on 67: ACK");

    wait_counter(&l.engine, "answered_ack", 1);
    let events = drain_all(&l.engine);
    assert_eq!(events[0].relay, Some(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(events[1].relay, None);
}

#[test]
fn stop_joins_and_releases_the_ports() {
    let mut l = lab();
    let (p67, p4011) = l.engine.local_ports();
    l.client.send_to(&bios_discover(0x7001), l.dhcp).unwrap();
    recv(&l.client);
    l.engine.stop();
    l.engine.stop(); // idempotent
                     // Without SO_REUSEADDR these binds succeed only if the engine's sockets are closed.
    UdpSocket::bind((LO, p67)).expect("port 67 socket closed");
    UdpSocket::bind((LO, p4011)).expect("port 4011 socket closed");
    assert_eq!(counter(&l.engine, "answered_offer"), 1, "counters survive stop");
    drop(l);
}

#[test]
fn event_queue_overflow_is_counted() {
    let l = lab();
    // More PXE requests than the queue holds (4096), never drained; ARM64 without a program so no replies.
    let arm = request(0x8001, 0, [0; 4], [0; 4], &[&[53, 1, 1], &[93, 2, 0, 11], &opt(60, b"PXEClient")]);
    let total = 4200u64;
    let mut sent = 0u64;
    while sent < total {
        // Batches of 32, each awaited, so the kernel's socket buffer never drops datagrams.
        for _ in 0..32.min(total - sent) {
            l.client.send_to(&arm, l.dhcp).unwrap();
            sent += 1;
        }
        wait_counter(&l.engine, "received", sent);
    }
    wait_counter(&l.engine, "received", total);
    assert_eq!(counter(&l.engine, "ignored_no_boot_program"), total);
    assert_eq!(counter(&l.engine, "events_dropped"), total - 4096);
    assert_eq!(l.engine.drain_events(10_000).len(), 4096);
}
