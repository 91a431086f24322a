//! Malformed input: clear errors, never a panic. Plus a property-style sweep over random and
//! mutated datagrams with a small xorshift generator (no extra crates).

use std::net::Ipv4Addr;

use bootgate_wire::dhcp::{decide, Decision, DhcpPolicy, Error, Packet, Port, ProxyReply, PxeRequest};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn header() -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&[1, 2, 3, 4]);
    b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    b
}

fn with_options(opts: &[u8]) -> Vec<u8> {
    let mut b = header();
    b.extend_from_slice(opts);
    b
}

fn valid_pxe() -> Vec<u8> {
    let mut o = vec![53, 1, 1, 93, 2, 0, 0, 94, 3, 1, 2, 1, 57, 2, 5, 192, 77, 4];
    o.extend_from_slice(b"iPXE");
    o.extend_from_slice(&[175, 6, 19, 1, 1, 20, 1, 1, 97, 17, 0]);
    o.extend_from_slice(&[7; 16]);
    o.extend_from_slice(&[60, 32]);
    o.extend_from_slice(b"PXEClient:Arch:00000:UNDI:002001");
    o.extend_from_slice(&[55, 4, 1, 3, 43, 67, 82, 3, 1, 1, 9, 255]);
    with_options(&o)
}

fn policy() -> DhcpPolicy {
    DhcpPolicy {
        tftp_server: SERVER,
        boot_bios: "undionly.kpxe".into(),
        boot_efi_x64: "snponly.efi".into(),
        script_url: "https://198.18.0.2/boot.ipxe".into(),
        script_url_http: Some("http://198.18.0.2/boot.ipxe".into()),
        ipxe_encap: vec![90, 32, 1, 2, 3],
        ..DhcpPolicy::default()
    }
}

#[test]
fn every_truncated_header_is_an_error() {
    let full = valid_pxe();
    for n in 0..240 {
        assert_eq!(Packet::new_checked(&full[..n]).unwrap_err(), Error::Truncated { len: n });
        assert_eq!(PxeRequest::parse_bytes(&full[..n]).unwrap_err(), Error::Truncated { len: n });
    }
}

#[test]
fn truncation_inside_the_options_is_an_error_or_a_shorter_request() {
    let full = valid_pxe();
    for n in 240..full.len() {
        match PxeRequest::parse_bytes(&full[..n]) {
            Ok(req) => assert!(n >= 243, "message type must be complete at {n}: {req:?}"),
            Err(e) => assert!(
                matches!(e, Error::OptionTruncated { .. } | Error::MissingMessageType),
                "unexpected error at {n}: {e:?}"
            ),
        }
    }
    assert!(PxeRequest::parse_bytes(&full).is_ok());
}

#[test]
fn bad_magic_cookie() {
    let mut b = valid_pxe();
    b[239] = 0x62;
    assert_eq!(PxeRequest::parse_bytes(&b).unwrap_err(), Error::BadMagicCookie);
    assert_eq!(PxeRequest::parse_bytes(&[0xff; 300]).unwrap_err(), Error::BadMagicCookie);
    assert_eq!(PxeRequest::parse_bytes(&[0; 576]).unwrap_err(), Error::BadMagicCookie);
}

#[test]
fn option_length_past_the_end() {
    for opts in [&[53, 1, 1, 60, 200, b'P'][..], &[53, 1, 1, 60][..], &[53, 5, 1][..], &[53, 1, 1, 0, 0, 77, 255][..]] {
        let e = PxeRequest::parse_bytes(&with_options(opts)).unwrap_err();
        assert!(matches!(e, Error::OptionTruncated { .. }), "{opts:?}: {e:?}");
    }
}

#[test]
fn zero_length_options() {
    // A zero-length message type is a bad length; zero-length other options read as absent.
    assert_eq!(
        PxeRequest::parse_bytes(&with_options(&[53, 0, 255])).unwrap_err(),
        Error::BadOptionLength { code: 53, len: 0 }
    );
    assert_eq!(
        PxeRequest::parse_bytes(&with_options(&[53, 2, 1, 1, 255])).unwrap_err(),
        Error::BadOptionLength { code: 53, len: 2 }
    );
    let req = PxeRequest::parse_bytes(&with_options(&[
        53, 1, 1, 93, 0, 94, 0, 97, 0, 54, 0, 57, 0, 60, 0, 77, 0, 175, 0, 255,
    ]))
    .unwrap();
    assert_eq!(req.client_arch, None);
    assert_eq!(req.nii, None);
    assert_eq!(req.client_uuid, None);
    assert_eq!(req.client_id_raw, Some(vec![]));
    assert_eq!(req.server_id, None);
    assert_eq!(req.max_message_size, None);
    assert!(req.vendor_class.is_empty());
    assert!(!req.is_pxe());
    assert_eq!(req.ipxe_options, Some(vec![]), "175 present, with no sub-options");
    assert!(req.is_ipxe());
}

#[test]
fn junk_after_end_and_all_ff_options() {
    let mut o = vec![53, 1, 1, 255];
    o.extend_from_slice(&[0xff; 100]);
    o.extend_from_slice(&[60, 250]); // would run past the end, but it is after the end option
    let req = PxeRequest::parse_bytes(&with_options(&o)).unwrap();
    assert!(req.vendor_class.is_empty());
    assert_eq!(PxeRequest::parse_bytes(&with_options(&[0xff; 300])).unwrap_err(), Error::MissingMessageType);
    // Missing end option: tolerated when every option is complete.
    assert!(PxeRequest::parse_bytes(&with_options(&[53, 1, 1])).is_ok());
}

#[test]
fn huge_counts() {
    // 60 KiB of pad before the message type.
    let mut o = vec![0u8; 60 * 1024];
    o.extend_from_slice(&[53, 1, 1, 255]);
    assert!(PxeRequest::parse_bytes(&with_options(&o)).is_ok());
    // 250 instances of a 255-byte option 60: concatenated per RFC 3396.
    let mut o = vec![53, 1, 1];
    for _ in 0..250 {
        o.extend_from_slice(&[60, 255]);
        o.extend_from_slice(&[b'P'; 255]);
    }
    let req = PxeRequest::parse_bytes(&with_options(&o)).unwrap();
    assert_eq!(req.vendor_class.len(), 250 * 255);
    // Thousands of zero-length options.
    let mut o = vec![53, 1, 1];
    for i in 0..10_000u32 {
        o.extend_from_slice(&[(i % 200 + 1) as u8, 0]);
    }
    assert!(PxeRequest::parse_bytes(&with_options(&o)).is_ok());
}

#[test]
fn header_field_errors() {
    let mut b = valid_pxe();
    b[0] = 2;
    assert_eq!(PxeRequest::parse_bytes(&b).unwrap_err(), Error::NotRequest { op: 2 });
    let mut b = valid_pxe();
    b[2] = 255;
    assert_eq!(PxeRequest::parse_bytes(&b).unwrap_err(), Error::BadHardwareLength { hlen: 255 });
    assert_eq!(PxeRequest::parse_bytes(&with_options(&[255])).unwrap_err(), Error::MissingMessageType);
}

#[test]
fn errors_display_and_reason() {
    let e = Error::OptionTruncated { code: 60 };
    assert!(e.to_string().contains("option 60"));
    assert_eq!(e.reason(), "option_truncated");
    assert_eq!(Error::BadMagicCookie.reason(), "bad_magic_cookie");
}

/// xorshift64*: deterministic, seedable, no dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Runs everything a datagram goes through in the engine; every emitted reply must be a
/// well-formed BOOTREPLY that our own parser accepts.
fn exercise(bytes: &[u8], p: &DhcpPolicy) -> bool {
    if let Ok(pkt) = Packet::new_checked(bytes) {
        for o in pkt.options() {
            assert!(o.is_ok(), "checked packet yielded a bad option");
        }
        let _ = (pkt.sname(), pkt.file(), pkt.option(60), pkt.option(175));
    }
    let Ok(req) = PxeRequest::parse_bytes(bytes) else { return false };
    let _ = (req.mac(), req.vendor_class_str(), req.user_class_str(), req.relay(), req.is_ipxe());
    for port in [Port::Dhcp, Port::BootServer] {
        if let Decision::Answer(a) = decide(&req, p, port, SERVER) {
            if let Ok(reply) = ProxyReply::new(&req, &a, SERVER, p).to_vec() {
                let r = Packet::new_checked(&reply[..]).expect("our reply parses");
                assert_eq!(r.op(), 2);
                assert_eq!(r.xid(), req.xid);
                assert!(reply.len() >= 300);
            }
        }
    }
    true
}

#[test]
fn random_bytes_never_panic() {
    let p = policy();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(700);
        let mut b: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        if len >= 240 && rng.below(2) == 0 {
            b[236..240].copy_from_slice(&[99, 130, 83, 99]); // get past the cookie check
            b[2] = 6;
        }
        exercise(&b, &p);
    }
}

#[test]
fn mutated_valid_requests_never_panic() {
    let p = policy();
    let seed = valid_pxe();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut parsed = 0;
    for _ in 0..30_000 {
        let mut b = seed.clone();
        for _ in 0..=rng.below(6) {
            match rng.below(5) {
                // Flip a byte anywhere (header or options).
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] = rng.byte();
                }
                // Flip a byte in the option area.
                1 if b.len() > 240 => {
                    let i = 240 + rng.below(b.len() - 240);
                    b[i] = rng.byte();
                }
                0 | 1 => b.push(rng.byte()),
                2 => b.truncate(rng.below(b.len() + 1)),
                3 => {
                    let at = 240.min(b.len()) + rng.below(b.len().saturating_sub(240) + 1);
                    let junk: Vec<u8> = (0..rng.below(20)).map(|_| rng.byte()).collect();
                    let at = at.min(b.len());
                    b.splice(at..at, junk);
                }
                _ => {
                    let i = 240 + rng.below(b.len().saturating_sub(240).max(1));
                    if i < b.len() {
                        b[i] = 255;
                    }
                }
            }
        }
        if exercise(&b, &p) {
            parsed += 1;
        }
    }
    // The sweep must exercise the decision and reply paths, not only the error paths.
    assert!(parsed > 1000, "only {parsed} mutated requests parsed");
}
