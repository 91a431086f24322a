//! The DHCP engine on a real interface, the way it runs in production: bound to 0.0.0.0 with
//! SO_BINDTODEVICE, receiving a broadcast DISCOVER and broadcasting its OFFER to port 68, and
//! answering a unicast REQUEST on 4011. Everything happens inside two private network
//! namespaces joined by veth pairs (addresses from 198.18.0.0/15), removed afterwards.
//! Needs root and iproute2; without them the test says so and checks nothing.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use bootgate_io::dhcp::{DhcpEngine, DhcpPolicy, DhcpSettings};
use socket2::{Domain, Protocol, Socket, Type};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 201, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 201, 2);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x20, 0x01];

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Two named namespaces, deleted on drop (which also deletes the veth pairs inside them).
struct Lab {
    a: String,
    b: String,
}

impl Lab {
    fn new() -> Result<Self, String> {
        let pid = std::process::id();
        let lab = Lab { a: format!("bgdhcp-a-{pid}"), b: format!("bgdhcp-b-{pid}") };
        ip(&["netns", "add", &lab.a])?;
        ip(&["netns", "add", &lab.b])?;
        let (a, b) = (lab.a.as_str(), lab.b.as_str());
        for (x, y, net) in [("bgd0", "bgd1", "201"), ("bgd2", "bgd3", "202")] {
            ip(&["-n", a, "link", "add", x, "type", "veth", "peer", "name", y, "netns", b])?;
            ip(&["-n", a, "addr", "add", &format!("198.18.{net}.1/24"), "dev", x])?;
            ip(&["-n", b, "addr", "add", &format!("198.18.{net}.2/24"), "dev", y])?;
            ip(&["-n", a, "link", "set", x, "up"])?;
            ip(&["-n", b, "link", "set", y, "up"])?;
        }
        ip(&["-n", a, "link", "set", "lo", "up"])?;
        ip(&["-n", b, "link", "set", "lo", "up"])?;
        Ok(lab)
    }

    /// Runs `f` on a thread that has entered namespace `name`; sockets it creates stay there.
    fn within<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{name}");
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("namespace file");
            // SAFETY: setns on this thread only, with a valid namespace descriptor.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

fn client_socket(device: &str, port: u16) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_broadcast(true).unwrap();
    s.bind_device(Some(device.as_bytes())).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into()).unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn discover(xid: u32) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10] = 0x80; // broadcast flag
    b[28..34].copy_from_slice(&MAC);
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 93, 2, 0, 0, 94, 3, 1, 2, 1, 60, 32]);
    b.extend_from_slice(b"PXEClient:Arch:00000:UNDI:002001");
    b.push(255);
    b.resize(300, 0);
    b
}

fn boot_request(xid: u32) -> Vec<u8> {
    let mut b = discover(xid);
    b[10] = 0;
    b[12..16].copy_from_slice(&CLIENT.octets());
    b[242] = 3; // option 53 value: REQUEST
    b
}

fn xid(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[4..8].try_into().unwrap())
}

fn file(b: &[u8]) -> &[u8] {
    let f = &b[108..236];
    &f[..f.iter().position(|&c| c == 0).unwrap()]
}

fn counter(e: &DhcpEngine, name: &str) -> u64 {
    e.counters().into_iter().find(|(n, _)| *n == name).unwrap().1
}

/// Waits (bounded) for a counter: the engine counts a reply just after sending it.
fn wait_counter(e: &DhcpEngine, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(e, name) < value {
        assert!(Instant::now() < deadline, "{name} stuck at {}", counter(e, name));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn broadcast_offer_on_a_bound_interface() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("ip").arg("-V").output().is_err() {
        eprintln!("dhcp_netns: needs root and iproute2 to create network namespaces; nothing checked");
        return;
    }
    // The first namespace tells whether this machine allows them at all.
    let probe = format!("bgdhcp-probe-{}", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        eprintln!("dhcp_netns: cannot create network namespaces here ({e}); nothing checked");
        return;
    }
    ip(&["netns", "del", &probe]).expect("delete the probe namespace");
    let lab = Lab::new().expect("lab namespaces");

    let mut engine = Lab::within(&lab.a, || {
        let settings = DhcpSettings {
            interface: Some("bgd0".into()),
            bind_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: SERVER,
            port: 67,
            pxe_port: 4011,
            client_port: 68,
            broadcast_ip: Ipv4Addr::BROADCAST,
        };
        let policy = DhcpPolicy {
            tftp_server: SERVER,
            boot_bios: "undionly.kpxe".into(),
            boot_efi_x64: "snponly.efi".into(),
            script_url: "https://198.18.201.1/boot.ipxe".into(),
            script_url_http: None,
            ipxe_encap: Vec::new(),
            ..DhcpPolicy::default()
        };
        DhcpEngine::start(settings, policy).expect("engine on bgd0")
    });
    assert_eq!(engine.local_ports(), (67, 4011));
    let (client, stray) = Lab::within(&lab.b, || (client_socket("bgd1", 68), client_socket("bgd3", 68)));

    // A broadcast on the other link (bgd2/bgd3) reaches namespace A but not the engine.
    stray.send_to(&discover(0xbad), (Ipv4Addr::BROADCAST, 67)).unwrap();
    client.send_to(&discover(0x600d), (Ipv4Addr::BROADCAST, 67)).unwrap();
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        assert!(Instant::now() < deadline, "no offer");
        let (n, from) = client.recv_from(&mut buf).expect("offer within the wait");
        if n >= 240 && xid(&buf[..n]) == 0x600d {
            assert_eq!(from, SocketAddr::from((SERVER, 67)));
            break buf[..n].to_vec();
        }
    };
    assert_eq!(reply[0], 2);
    assert_eq!(file(&reply), b"undionly.kpxe");
    assert_eq!(&reply[20..24], &SERVER.octets());
    wait_counter(&engine, "answered_offer", 1);
    assert_eq!(counter(&engine, "received"), 1, "the broadcast on the other interface was not received");

    // Unicast REQUEST to 4011 over the link; the ACK comes back to the sender.
    let asker = Lab::within(&lab.b, || {
        let s = UdpSocket::bind((CLIENT, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    });
    asker.send_to(&boot_request(0xac4), (SERVER, 4011)).unwrap();
    let (n, from) = asker.recv_from(&mut buf).expect("ack within the wait");
    assert_eq!(from, SocketAddr::from((SERVER, 4011)));
    assert_eq!(xid(&buf[..n]), 0xac4);
    assert_eq!(file(&buf[..n]), b"undionly.kpxe");
    wait_counter(&engine, "answered_ack", 1);
    assert_eq!(counter(&engine, "received"), 2);
    // Nothing was sent back on the other link either (a short wait: its absence is expected).
    stray.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(stray.recv_from(&mut buf).is_err(), "a datagram arrived on the other link");
    engine.stop();
    drop(lab);
}
