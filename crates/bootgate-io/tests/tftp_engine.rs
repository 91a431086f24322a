//! The TFTP engine over loopback, against a small client written here with bootgate-wire's
//! packets: concurrent downloads with blksize and windowsize, refusals, timeouts, counters and
//! events.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bootgate_io::tftp::{TftpEngine, TftpEvent, TftpLimits, TftpSettings};
use bootgate_wire::tftp::packet::{emit_ack, emit_error};
use bootgate_wire::tftp::{Mode, Packet, Request, RequestOptions};

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("bootgate-tftp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(root: &Path) -> TftpSettings {
    TftpSettings {
        bind: "127.0.0.1:0".parse().unwrap(),
        root: root.to_path_buf(),
        max_blksize: 1468,
        timeout_ms: 200,
        retries: 5,
        max_transfers: 64,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Fetch {
    Ok { data: Vec<u8>, oack: Option<RequestOptions> },
    Error { code: u16, message: String },
    NoAnswer,
}

/// Downloads `name` as an RFC 7440 client: ACK 0 after an OACK, ACK each window's last block,
/// ACK the last in-order block on a gap, re-ACK on its own timeout.
fn fetch(server: SocketAddr, name: &[u8], mode: Mode, options: RequestOptions) -> Fetch {
    fetch_from("127.0.0.1:0", server, name, mode, options)
}

/// [`fetch`] from a socket bound to `source` (another loopback address is another client).
fn fetch_from(source: &str, server: SocketAddr, name: &[u8], mode: Mode, options: RequestOptions) -> Fetch {
    let sock = UdpSocket::bind(source).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut rrq = Vec::new();
    Packet::Rrq(Request { filename: name, mode, options }).emit(&mut rrq);
    sock.send_to(&rrq, server).unwrap();

    let mut peer: Option<SocketAddr> = None;
    let (mut blksize, mut windowsize) = (512usize, 1u16);
    let mut oack = None;
    let mut data = Vec::new();
    let mut next: u64 = 1;
    let mut in_window = 0u16;
    let mut last_ack: Option<Vec<u8>> = None;
    let mut silent = 0;
    let mut buf = vec![0u8; 70000];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => {
                silent += 1;
                if silent > 6 {
                    return Fetch::NoAnswer;
                }
                match (&last_ack, peer) {
                    (Some(a), Some(p)) => sock.send_to(a, p).unwrap(),
                    _ => sock.send_to(&rrq, server).unwrap(),
                };
                continue;
            }
        };
        silent = 0;
        if *peer.get_or_insert(from) != from {
            let mut e = Vec::new();
            emit_error(&mut e, 5, b"unknown transfer id");
            sock.send_to(&e, from).unwrap();
            continue;
        }
        let mut ack = Vec::new();
        match Packet::parse(&buf[..n]).expect("the server sent a malformed packet") {
            Packet::Error { code, message } => {
                return Fetch::Error { code, message: String::from_utf8_lossy(message).into_owned() }
            }
            Packet::Oack(list) => {
                let o = RequestOptions::parse(list).unwrap();
                blksize = o.blksize.map_or(512, usize::from);
                windowsize = o.windowsize.unwrap_or(1);
                oack = Some(o);
                emit_ack(&mut ack, 0);
            }
            Packet::Data { block, data: chunk } => {
                if block == next as u16 {
                    assert!(chunk.len() <= blksize, "DATA larger than the blksize");
                    data.extend_from_slice(chunk);
                    next += 1;
                    in_window += 1;
                    let last = chunk.len() < blksize;
                    if !last && in_window < windowsize {
                        continue;
                    }
                    in_window = 0;
                    emit_ack(&mut ack, block);
                    sock.send_to(&ack, from).unwrap();
                    if last {
                        return Fetch::Ok { data, oack };
                    }
                    last_ack = Some(ack);
                    continue;
                }
                in_window = 0;
                emit_ack(&mut ack, (next - 1) as u16);
            }
            other => panic!("unexpected packet from the server: {other:?}"),
        }
        sock.send_to(&ack, from).unwrap();
        last_ack = Some(ack);
    }
}

fn opts(blksize: Option<u16>, windowsize: Option<u16>) -> RequestOptions {
    RequestOptions { blksize, tsize: Some(0), timeout: None, windowsize }
}

fn counter(e: &TftpEngine, name: &str) -> u64 {
    e.counters().into_iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no counter {name}")).1
}

/// Drains events until `n` arrived (or ten seconds passed).
fn events(e: &TftpEngine, n: usize) -> Vec<TftpEvent> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n && start.elapsed() < Duration::from_secs(10) {
        out.extend(e.drain_events(1024));
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

#[test]
fn concurrent_downloads_deliver_every_byte() {
    let dir = TempDir::new("many");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one.bin", vec![0x5a]),
        ("exact512.bin", random_bytes(512 * 4, 1)),
        ("exact1468.bin", random_bytes(1468 * 10, 2)),
        ("big.bin", random_bytes(3 * 1024 * 1024 + 7, 3)),
        ("boot/ipxe.efi", random_bytes(200_000, 4)),
        ("rollover.bin", random_bytes(8 * 66_000 + 5, 5)),
    ];
    for (name, data) in &files {
        let p = dir.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let mut engine = TftpEngine::start(settings(&dir.0)).unwrap();
    let server = engine.local_addr();
    assert_ne!(server.port(), 0);

    let cases: Vec<(&str, RequestOptions)> = vec![
        ("empty.bin", RequestOptions::default()),
        ("one.bin", opts(Some(512), None)),
        ("exact512.bin", RequestOptions::default()),
        ("exact512.bin", opts(Some(512), Some(8))),
        ("exact1468.bin", opts(Some(1468), Some(1))),
        ("exact1468.bin", opts(Some(1468), Some(8))),
        ("big.bin", opts(Some(1468), Some(16))),
        ("big.bin", opts(Some(1432), None)),
        ("big.bin", opts(Some(9000), Some(64))), // clamped to 1468 and 16
        ("/boot/ipxe.efi", opts(Some(1024), Some(4))),
        ("boot\\ipxe.efi", RequestOptions::default()),
        ("rollover.bin", opts(Some(8), Some(16))),
    ];
    let expected: HashMap<&str, &Vec<u8>> = files.iter().map(|(n, d)| (*n, d)).collect();
    let results: Vec<(String, Fetch)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, o)| s.spawn(move || (name.to_string(), fetch(server, name.as_bytes(), Mode::Octet, *o))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = 0u64;
    for (name, result) in &results {
        let key = name.trim_start_matches('/').replace('\\', "/");
        let want = expected[key.as_str()];
        let Fetch::Ok { data, oack } = result else { panic!("{name}: {result:?}") };
        assert!(data == want, "{name}: {} bytes received, {} expected", data.len(), want.len());
        if let Some(o) = oack {
            assert_eq!(o.tsize, Some(want.len() as u64), "{name}: tsize is the real size");
            assert!(o.blksize.unwrap_or(512) <= 1468 && o.windowsize.unwrap_or(1) <= 16);
        }
        total += want.len() as u64;
    }
    let ev = events(&engine, cases.len());
    assert_eq!(ev.len(), cases.len());
    assert!(ev.iter().all(|e| e.ok && e.error.is_empty()), "{ev:?}");
    assert_eq!(ev.iter().map(|e| e.bytes).sum::<u64>(), total);
    assert_eq!(counter(&engine, "transfers_ok"), cases.len() as u64);
    assert_eq!(counter(&engine, "requests"), cases.len() as u64);
    assert!(counter(&engine, "bytes_sent") >= total);
    assert_eq!(counter(&engine, "active_transfers"), 0);
    // Windows of several blocks leave in one UDP_SEGMENT send on kernels that have it (4.18+;
    // the engine falls back to sendmmsg elsewhere, and every byte above arrived either way).
    if kernel_has_gso() {
        assert!(counter(&engine, "gso_sends") > 0, "no window was sent with GSO");
    }
    engine.stop();
    engine.stop(); // idempotent
}

#[test]
fn escapes_missing_files_writes_and_bad_options_are_refused() {
    let base = TempDir::new("refuse");
    let root = base.0.join("root");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(base.0.join("secret"), b"do not serve").unwrap();
    std::fs::write(root.join("ok.bin"), b"fine").unwrap();
    std::os::unix::fs::symlink(base.0.join("secret"), root.join("link")).unwrap();
    let engine = TftpEngine::start(settings(&root)).unwrap();
    let server = engine.local_addr();

    let refused = |name: &[u8]| match fetch(server, name, Mode::Octet, RequestOptions::default()) {
        Fetch::Error { code, .. } => code,
        other => panic!("{:?} was not refused: {other:?}", String::from_utf8_lossy(name)),
    };
    assert_eq!(refused(b"../secret"), 2);
    assert_eq!(refused(b"dir/../../secret"), 2);
    assert_eq!(refused(b"..\\secret"), 2);
    assert_eq!(refused(b"link"), 2, "a symlink leaving the root");
    assert_eq!(refused(b"dir"), 2, "a directory");
    assert_eq!(refused(b"missing.bin"), 1);
    assert_eq!(refused(b"/etc/passwd"), 1, "absolute names are relative to the root");

    // A write request.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut wrq = Vec::new();
    Packet::Wrq(Request { filename: b"upload.bin", mode: Mode::Octet, options: RequestOptions::default() })
        .emit(&mut wrq);
    sock.send_to(&wrq, server).unwrap();
    let mut buf = [0u8; 600];
    let n = sock.recv(&mut buf).unwrap();
    assert!(matches!(Packet::parse(&buf[..n]), Ok(Packet::Error { code: 2, .. })));
    assert!(!root.join("upload.bin").exists());

    // An absurd option value: ERROR 8.
    sock.send_to(b"\0\x01ok.bin\0octet\0blksize\x00abc\0", server).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    assert!(matches!(Packet::parse(&buf[..n]), Ok(Packet::Error { code: 8, .. })));

    // Garbage and a stray ACK are dropped without an answer; the server keeps serving.
    sock.send_to(b"\0\x01no-nul", server).unwrap();
    sock.send_to(b"\x13\x37", server).unwrap();
    sock.send_to(b"\0\x04\0\x01", server).unwrap();
    assert_eq!(
        fetch(server, b"ok.bin", Mode::Octet, RequestOptions::default()),
        Fetch::Ok { data: b"fine".to_vec(), oack: None }
    );

    let ev = events(&engine, 10);
    let errors: Vec<&str> = ev.iter().map(|e| e.error.as_str()).collect();
    assert_eq!(errors.iter().filter(|e| **e == "path escapes root").count(), 4, "{errors:?}");
    assert_eq!(errors.iter().filter(|e| **e == "not found").count(), 2, "{errors:?}");
    assert!(errors.contains(&"write refused") && errors.contains(&"not a regular file"), "{errors:?}");
    assert!(ev.iter().any(|e| e.ok && e.file == "ok.bin"));
    assert_eq!(counter(&engine, "errors_access"), 6);
    assert_eq!(counter(&engine, "errors_not_found"), 2);
    assert_eq!(counter(&engine, "errors_option"), 1);
    assert_eq!(counter(&engine, "dropped_malformed"), 2);
    assert_eq!(counter(&engine, "dropped_unexpected"), 1);
    assert_eq!(counter(&engine, "transfers_started"), 1);
}

#[test]
fn silent_client_times_out_busy_server_refuses_and_duplicates_are_ignored() {
    let dir = TempDir::new("timeout");
    std::fs::write(dir.0.join("f.bin"), random_bytes(5000, 9)).unwrap();
    let mut s = settings(&dir.0);
    s.timeout_ms = 20;
    s.retries = 2;
    s.max_transfers = 1;
    // Refuse rather than queue (the queue has its own test).
    let engine = TftpEngine::start_with(s, TftpLimits { max_queued: 0, ..TftpLimits::default() }).unwrap();
    let server = engine.local_addr();

    // An RRQ sent twice, then silence: one transfer, OACK sent three times, then a timeout.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = Vec::new();
    Packet::Rrq(Request { filename: b"f.bin", mode: Mode::Octet, options: opts(Some(1024), None) }).emit(&mut rrq);
    sock.send_to(&rrq, server).unwrap();
    sock.send_to(&rrq, server).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    assert!(matches!(Packet::parse(&buf[..n]), Ok(Packet::Oack(_))));

    // Meanwhile another client finds the server busy (max_transfers = 1). The first transfer may
    // already have timed out on a slow machine; then this one is served instead.
    match fetch(server, b"f.bin", Mode::Octet, RequestOptions::default()) {
        Fetch::Error { code: 0, message } => assert_eq!(message, "server busy"),
        Fetch::Ok { .. } => assert_eq!(counter(&engine, "transfers_ok"), 1),
        other => panic!("{other:?}"),
    }

    let ev = events(&engine, 2);
    let timed_out = ev.iter().find(|e| e.client == sock.local_addr().unwrap()).expect("an event for the silent client");
    assert!(!timed_out.ok);
    assert_eq!(timed_out.error, "timeout");
    assert_eq!(counter(&engine, "duplicate_requests"), 1);
    assert!(counter(&engine, "retransmits") >= 2);
    assert!(counter(&engine, "timeouts") >= 3);
    assert_eq!(counter(&engine, "transfers_failed"), 1);
    // The OACK and its two retransmissions arrived, nothing more.
    let mut oacks = 1;
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        assert!(matches!(Packet::parse(&buf[..n]), Ok(Packet::Oack(_))));
        oacks += 1;
    }
    assert_eq!(oacks, 3);
}

#[test]
fn client_error_ends_the_transfer_and_netascii_converts_line_ends() {
    let dir = TempDir::new("errnet");
    std::fs::write(dir.0.join("text.txt"), b"line one\nline two\r\n").unwrap();
    std::fs::write(dir.0.join("f.bin"), random_bytes(4000, 3)).unwrap();
    let engine = TftpEngine::start(settings(&dir.0)).unwrap();
    let server = engine.local_addr();

    match fetch(server, b"text.txt", Mode::Netascii, RequestOptions::default()) {
        Fetch::Ok { data, .. } => assert_eq!(data, b"line one\r\nline two\r\0\r\n"),
        other => panic!("{other:?}"),
    }

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = Vec::new();
    Packet::Rrq(Request { filename: b"f.bin", mode: Mode::Octet, options: opts(Some(2000), None) }).emit(&mut rrq);
    sock.send_to(&rrq, server).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert!(matches!(Packet::parse(&buf[..n]), Ok(Packet::Oack(_))));
    let mut e = Vec::new();
    emit_error(&mut e, 8, b"blksize refused");
    sock.send_to(&e, from).unwrap();

    let ev = events(&engine, 2);
    let failed = ev.iter().find(|e| !e.ok).expect("a failure event");
    assert_eq!(failed.error, "declined after OACK: error 8: blksize refused");
    assert_eq!(failed.file, "f.bin");
    assert_eq!(counter(&engine, "transfers_declined"), 1);
    assert_eq!(counter(&engine, "transfers_failed"), 0);
    assert_eq!(counter(&engine, "active_transfers"), 0);
}

#[test]
fn start_fails_on_a_missing_root_and_drop_stops_the_thread() {
    let mut s = settings(Path::new("/nonexistent/bootgate-tftp-root"));
    assert!(TftpEngine::start(s.clone()).is_err());
    let dir = TempDir::new("drop");
    s.root = dir.0.clone();
    s.max_transfers = 3000;
    let engine = TftpEngine::start(s).unwrap();
    assert!(engine.event_fd() >= 0);
    // Room for a socket per transfer: the soft descriptor limit was lifted (up to the hard one).
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid rlimit for the kernel to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(lim.rlim_cur >= lim.rlim_max.min(3256), "{} < min({}, 3256)", lim.rlim_cur, lim.rlim_max);
    drop(engine); // joins the thread; the test would hang otherwise
}

#[test]
fn wildcard_listener_answers_from_the_address_the_request_came_to() {
    // Bound to 0.0.0.0 (a free port; only loopback traffic is sent). A request to 127.0.0.2 from
    // 127.0.0.1 must be answered from 127.0.0.2, though routing alone would pick 127.0.0.1.
    let dir = TempDir::new("pktinfo");
    let data = random_bytes(100_000, 11);
    std::fs::write(dir.0.join("f.bin"), &data).unwrap();
    let mut s = settings(&dir.0);
    s.bind = "0.0.0.0:0".parse().unwrap();
    let engine = TftpEngine::start(s).unwrap();
    let to: SocketAddr = SocketAddr::new([127, 0, 0, 2].into(), engine.local_addr().port());

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    for (name, want) in [(&b"f.bin"[..], "OACK"), (&b"missing"[..], "ERROR")] {
        let mut rrq = Vec::new();
        Packet::Rrq(Request { filename: name, mode: Mode::Octet, options: opts(Some(1024), None) }).emit(&mut rrq);
        sock.send_to(&rrq, to).unwrap();
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(from.ip(), to.ip(), "the {want} came from the wrong address");
        let got = match Packet::parse(&buf[..n]).unwrap() {
            Packet::Oack(_) => "OACK",
            Packet::Error { .. } => "ERROR",
            _ => "other",
        };
        assert_eq!(got, want);
        if want == "OACK" {
            let mut e = Vec::new();
            emit_error(&mut e, 0, b"probe done");
            sock.send_to(&e, from).unwrap();
        }
    }
    // And a whole download through the client above, addressed to 127.0.0.2.
    match fetch(to, b"f.bin", Mode::Octet, opts(Some(1468), Some(8))) {
        Fetch::Ok { data: got, .. } => assert!(got == data),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hundred_clients_in_three_waves_reuse_slots_and_sockets() {
    let dir = TempDir::new("hundred");
    let files: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(50_000 + i * 7_777, 100 + i as u64)).collect();
    for (i, f) in files.iter().enumerate() {
        std::fs::write(dir.0.join(format!("f{i}.bin")), f).unwrap();
    }
    let engine = TftpEngine::start(settings(&dir.0)).unwrap();
    let server = engine.local_addr();
    for wave in 0..3u16 {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..34u16)
                .map(|c| {
                    let i = usize::from((c + wave) % 4);
                    let o = opts(Some([512, 1024, 1468][usize::from(c % 3)]), Some(1 + c % 9));
                    s.spawn(move || (i, fetch(server, format!("f{i}.bin").as_bytes(), Mode::Octet, o)))
                })
                .collect();
            for h in handles {
                let (i, got) = h.join().unwrap();
                match got {
                    Fetch::Ok { data, .. } => assert!(data == files[i], "f{i}.bin differs"),
                    other => panic!("f{i}.bin: {other:?}"),
                }
            }
        });
    }
    let ev = events(&engine, 102);
    assert_eq!(ev.iter().filter(|e| e.ok).count(), 102);
    assert_eq!(counter(&engine, "transfers_ok"), 102);
    assert_eq!(counter(&engine, "active_transfers"), 0);
}

/// UDP_SEGMENT exists from Linux 4.18; on anything older the engine falls back to sendmmsg.
fn kernel_has_gso() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 5)
}

/// Sends one RRQ and never answers: the transfer holds its slot until its retries run out.
fn silent_request(server: SocketAddr, source: &str, name: &[u8]) -> UdpSocket {
    let sock = UdpSocket::bind(source).unwrap();
    let mut rrq = Vec::new();
    Packet::Rrq(Request { filename: name, mode: Mode::Octet, options: RequestOptions::default() }).emit(&mut rrq);
    sock.send_to(&rrq, server).unwrap();
    sock
}

/// Waits until `name` reaches `value` (or five seconds passed); returns the last value.
fn wait_counter(e: &TftpEngine, name: &str, value: u64) -> u64 {
    let start = Instant::now();
    while counter(e, name) < value && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    counter(e, name)
}

#[test]
fn a_busy_server_queues_requests_and_refuses_past_the_queue() {
    let dir = TempDir::new("queue");
    let data = random_bytes(100_000, 11);
    std::fs::write(dir.0.join("f.bin"), &data).unwrap();
    let mut s = settings(&dir.0);
    s.timeout_ms = 200;
    s.retries = 2; // the silent client holds the only slot for 200 + 400 + 800 ms
    s.max_transfers = 1;
    let engine = TftpEngine::start_with(s, TftpLimits { max_queued: 2, ..TftpLimits::default() }).unwrap();
    let server = engine.local_addr();
    let silent = silent_request(server, "127.0.0.1:0", b"f.bin");
    assert_eq!(wait_counter(&engine, "transfers_started", 1), 1);

    // Three clients while the slot is taken: two wait in the queue and are served once the
    // silent transfer times out; the third finds the queue full.
    let results: Vec<Fetch> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| sc.spawn(|| fetch(server, b"f.bin", Mode::Octet, opts(Some(1468), Some(4)))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| matches!(r, Fetch::Ok { data: d, .. } if *d == data)).count();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Fetch::Error { code: 0, message } if message == "server busy"))
        .count();
    assert_eq!((ok, busy), (2, 1), "{results:?}");
    assert_eq!(counter(&engine, "queued"), 2);
    assert_eq!(counter(&engine, "errors_busy"), 1);
    // (the last ACK may still be on its way to the engine)
    assert_eq!(wait_counter(&engine, "transfers_ok", 2), 2);
    assert_eq!(counter(&engine, "transfers_failed"), 1, "the silent client timed out");
    let ev = events(&engine, 4);
    let mine = ev.iter().find(|e| e.client == silent.local_addr().unwrap()).expect("the silent client's event");
    assert_eq!(mine.error, "timeout");
    assert_eq!(ev.iter().filter(|e| e.ok).count(), 2);
    assert_eq!(counter(&engine, "active_transfers"), 0);
}

#[test]
fn one_client_address_is_limited_and_others_are_not() {
    let dir = TempDir::new("perclient");
    let data = random_bytes(30_000, 12);
    std::fs::write(dir.0.join("f.bin"), &data).unwrap();
    let mut s = settings(&dir.0);
    s.timeout_ms = 300;
    s.retries = 3;
    let engine = TftpEngine::start_with(s, TftpLimits { max_per_client: 1, ..TftpLimits::default() }).unwrap();
    let server = engine.local_addr();
    let _silent = silent_request(server, "127.0.0.1:0", b"f.bin");
    assert_eq!(wait_counter(&engine, "transfers_started", 1), 1);

    // A second transfer from 127.0.0.1 (another port) is over the limit of one per address.
    match fetch_from("127.0.0.1:0", server, b"f.bin", Mode::Octet, RequestOptions::default()) {
        Fetch::Error { code: 0, message } => assert_eq!(message, "too many transfers"),
        other => panic!("{other:?}"),
    }
    assert_eq!(counter(&engine, "errors_client_limit"), 1);
    // Another address is another client.
    match fetch_from("127.0.0.2:0", server, b"f.bin", Mode::Octet, opts(Some(1468), Some(8))) {
        Fetch::Ok { data: d, .. } => assert!(d == data),
        other => panic!("{other:?}"),
    }
    let ev = events(&engine, 2);
    assert!(ev.iter().any(|e| !e.ok && e.error == "client limit"), "{ev:?}");
    assert!(ev.iter().any(|e| e.ok && e.client.ip().to_string() == "127.0.0.2"), "{ev:?}");
    assert_eq!(counter(&engine, "errors_busy"), 0);
}

#[test]
fn single_port_mode_serves_every_transfer_from_the_listening_port() {
    let dir = TempDir::new("singleport");
    let big = random_bytes(400_000, 13);
    let small = random_bytes(3000, 14);
    std::fs::write(dir.0.join("big.bin"), &big).unwrap();
    std::fs::write(dir.0.join("small.bin"), &small).unwrap();
    for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
        let mut s = settings(&dir.0);
        s.bind = bind.parse().unwrap();
        let engine = TftpEngine::start_with(s, TftpLimits { single_port: true, ..TftpLimits::default() }).unwrap();
        let port = engine.local_addr().port();
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

        // The OACK comes from the listening port itself, not from a new transfer id.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rrq = Vec::new();
        Packet::Rrq(Request { filename: b"small.bin", mode: Mode::Octet, options: opts(Some(1468), None) })
            .emit(&mut rrq);
        sock.send_to(&rrq, server).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert!(matches!(Packet::parse(&buf[..n]), Ok(Packet::Oack(_))));
        assert_eq!(from, server, "{bind}: the reply comes from port {port}");
        let mut e = Vec::new();
        emit_error(&mut e, 0, b"only the size");
        sock.send_to(&e, server).unwrap();

        // Concurrent transfers from one address, told apart by their ports, each byte right.
        let cases = [
            ("big.bin", opts(Some(1468), Some(8)), &big),
            ("big.bin", opts(Some(512), None), &big),
            ("small.bin", RequestOptions::default(), &small),
            ("big.bin", opts(Some(1024), Some(16)), &big),
        ];
        let results: Vec<Fetch> = std::thread::scope(|sc| {
            let hs: Vec<_> =
                cases.iter().map(|(n, o, _)| sc.spawn(move || fetch(server, n.as_bytes(), Mode::Octet, *o))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for ((name, _, want), got) in cases.iter().zip(&results) {
            assert!(matches!(got, Fetch::Ok { data, .. } if data == *want), "{bind} {name}: {got:?}");
        }
        // An ACK from an address with no transfer is dropped and counted.
        let stray = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ack = Vec::new();
        emit_ack(&mut ack, 3);
        stray.send_to(&ack, server).unwrap();
        assert_eq!(wait_counter(&engine, "transfers_ok", 4), 4, "{bind}");
        assert_eq!(wait_counter(&engine, "dropped_unexpected", 1), 1, "{bind}");
        assert_eq!(counter(&engine, "transfers_declined"), 1, "{bind}");
        if kernel_has_gso() {
            // Windows leave the listening socket as UDP_SEGMENT buffers too (with the source
            // address as a control message on the wildcard listener).
            assert!(counter(&engine, "gso_sends") > 0, "{bind}: no window was sent with GSO");
        }
        assert_eq!(counter(&engine, "active_transfers"), 0);
    }
}
