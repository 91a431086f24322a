//! Any bytes through the TFTP packet parser and the read-transfer state machine: nothing may
//! panic, every parsed packet re-emits to bytes that parse again, and every action stays inside
//! the file.
//!
//! Input layout: datagrams separated by 0xFE. The first is parsed as a packet (an RRQ's options
//! negotiate the transfer); each later one is either fed to the transfer (first byte even) or
//! advances the clock by `first byte * 10 ms` and fires the timer (first byte odd).
#![no_main]

use std::time::Duration;

use bootgate_wire::tftp::{Action, Packet, RequestOptions, Settings, Transfer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut datagrams = data.split(|&b| b == 0xFE);
    let first = datagrams.next().unwrap_or(&[]);
    let mut requested = RequestOptions::default();
    if let Ok(p) = Packet::parse(first) {
        let mut out = Vec::new();
        p.emit(&mut out);
        let again = Packet::parse(&out).expect("an emitted packet parses");
        if let Packet::Rrq(r) = p {
            requested = r.options;
        } else if !matches!(p, Packet::Wrq(_)) {
            assert_eq!(again, p);
        }
    }
    let file: Vec<u8> = (0..(data.len() * 37) % 20_000).map(|i| i as u8).collect();
    let settings = Settings { max_blksize: 1468, max_windowsize: 16, ..Settings::default() };
    let mut now = Duration::ZERO;
    let (mut t, _) = Transfer::new(&requested, file.len() as u64, &settings, now);
    let mut out = Vec::new();
    for d in datagrams {
        let action = match d.first() {
            Some(&b) if b % 2 == 1 => {
                now += Duration::from_millis(u64::from(b) * 10);
                t.on_timeout(now)
            }
            _ => t.on_datagram(d.get(1..).unwrap_or(&[]), now).unwrap_or(Action::None),
        };
        if let Action::SendBlocks { first, last, .. } = action {
            assert!(1 <= first && first <= last && last <= t.blocks());
            for n in first..=last {
                out.clear();
                let len = t.write_data(n, &file, &mut out);
                assert!(len <= usize::from(t.blksize()));
            }
        }
    }
});
