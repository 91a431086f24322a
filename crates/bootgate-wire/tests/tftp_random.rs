//! No input makes the TFTP parser or the transfer state machine panic: random bytes, mutated
//! valid packets, and random times.

use std::time::Duration;

use bootgate_wire::tftp::{Action, Packet, RequestOptions, Settings, Transfer};

/// xorshift64*: small, deterministic, good enough to spread bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const SEEDS: [&[u8]; 6] = [
    b"\0\x01undionly.kpxe\0octet\0blksize\x001432\0tsize\x000\0",
    b"\0\x01f\0netascii\0windowsize\x008\0timeout\x002\0",
    b"\0\x04\0\x07",
    b"\0\x05\0\x01not found\0",
    b"\0\x06blksize\x001468\0",
    b"\0\x03\0\x01data",
];

#[test]
fn random_and_mutated_datagrams_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0u32;
    let mut out = Vec::new();
    for i in 0..200_000u32 {
        let bytes = if i % 2 == 0 {
            let len = rng.below(64) as usize;
            let mut b = rng.bytes(len);
            // Valid opcodes often, so the deeper parsers are reached.
            if b.len() >= 2 && rng.below(4) != 0 {
                b[0] = 0;
                b[1] = 1 + rng.below(6) as u8;
            }
            b
        } else {
            let mut b = SEEDS[rng.below(SEEDS.len() as u64) as usize].to_vec();
            for _ in 0..=rng.below(4) {
                match rng.below(3) {
                    0 if !b.is_empty() => {
                        let at = rng.below(b.len() as u64) as usize;
                        b[at] = rng.next() as u8;
                    }
                    1 => b.truncate(rng.below(b.len() as u64 + 1) as usize),
                    _ => {
                        let at = rng.below(b.len() as u64 + 1) as usize;
                        b.insert(at, [0u8, b'9', b'a', 0xff][rng.below(4) as usize]);
                    }
                }
            }
            b
        };
        if let Ok(p) = Packet::parse(&bytes) {
            parsed += 1;
            out.clear();
            p.emit(&mut out);
            // What we emit parses again to the same packet (modulo padding of options).
            let again = Packet::parse(&out).expect("emitted bytes parse");
            if !matches!(p, Packet::Rrq(_) | Packet::Wrq(_)) {
                assert_eq!(again, p);
            }
        }
    }
    assert!(parsed > 10_000, "the random input reached the parsers ({parsed} parsed)");
}

#[test]
fn random_datagrams_and_times_never_panic_a_transfer() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let data: Vec<u8> = rng.bytes(5000);
    for round in 0..300 {
        let requested = RequestOptions {
            blksize: [None, Some(8), Some(512), Some(65464)][rng.below(4) as usize],
            tsize: Some(0),
            timeout: [None, Some(1), Some(255)][rng.below(3) as usize],
            windowsize: [None, Some(1), Some(65535)][rng.below(3) as usize],
        };
        let settings = Settings {
            max_blksize: rng.next() as u16,
            max_windowsize: rng.next() as u16,
            timeout: Duration::from_millis(rng.below(5000)),
            max_timeout: if round % 7 == 0 { Duration::MAX } else { Duration::from_millis(rng.below(100_000)) },
            retries: rng.below(10) as u32,
        };
        let size = rng.below(data.len() as u64 + 1);
        let mut now = Duration::from_millis(rng.below(1 << 40));
        let (mut t, _) = Transfer::new(&requested, size, &settings, now);
        let mut out = Vec::new();
        for _ in 0..2000 {
            let action = match rng.below(4) {
                0 => t.on_timeout(t.deadline().unwrap_or(now)),
                1 => {
                    let mut ack = vec![0, 4];
                    ack.extend_from_slice(&(rng.below(40) as u16).to_be_bytes());
                    t.on_datagram(&ack, now).unwrap_or(Action::None)
                }
                2 => {
                    let len = rng.below(12) as usize;
                    t.on_datagram(&rng.bytes(len), now).unwrap_or(Action::None)
                }
                _ => {
                    now = now.saturating_add(Duration::from_millis(rng.below(u64::MAX)));
                    t.on_timeout(now)
                }
            };
            if let Action::SendBlocks { first, last, .. } = action {
                assert!(first >= 1 && first <= last && last <= t.blocks());
                for n in first..=last.min(first + 16) {
                    out.clear();
                    t.write_data(n, &data[..size as usize], &mut out);
                    assert!(out.len() <= 4 + usize::from(t.blksize()));
                }
            }
            if t.is_finished() {
                break;
            }
        }
    }
}
