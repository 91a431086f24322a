//! The read-transfer state machine, driven by a fake clock and a simulated RFC 7440 client.

use std::collections::VecDeque;
use std::time::Duration;

use bootgate_wire::tftp::packet::{emit_ack, emit_error};
use bootgate_wire::tftp::{Action, Failure, Packet, Rejected, RequestOptions, Settings, Transfer};

fn file(size: usize) -> Vec<u8> {
    // Distinct bytes per position so a misplaced block shows.
    (0..size).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

fn opts(blksize: Option<u16>, windowsize: Option<u16>) -> RequestOptions {
    RequestOptions { blksize, tsize: Some(0), timeout: None, windowsize }
}

const S: Duration = Duration::from_secs(1);

/// A receiver as RFC 7440 describes it: ACKs the last block of each window, the final short
/// block, and, on a gap, the last block received in order.
struct Client {
    blksize: usize,
    windowsize: u16,
    next: u64,
    in_window: u16,
    data: Vec<u8>,
    done: bool,
    /// Every datagram the client received (wire block numbers of DATA, or u32::MAX for OACK).
    seen: Vec<u32>,
}

impl Client {
    fn new() -> Self {
        Client { blksize: 512, windowsize: 1, next: 1, in_window: 0, data: Vec::new(), done: false, seen: Vec::new() }
    }

    fn receive(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut ack = Vec::new();
        match Packet::parse(bytes).expect("server sent a malformed packet") {
            Packet::Oack(list) => {
                self.seen.push(u32::MAX);
                let o = RequestOptions::parse(list).unwrap();
                self.blksize = o.blksize.map_or(512, usize::from);
                self.windowsize = o.windowsize.unwrap_or(1);
                emit_ack(&mut ack, 0);
            }
            Packet::Data { block, data } => {
                self.seen.push(u32::from(block));
                if self.done && block != (self.next - 1) as u16 {
                    return None;
                }
                if block == self.next as u16 && !self.done {
                    assert!(data.len() <= self.blksize);
                    self.data.extend_from_slice(data);
                    self.next += 1;
                    self.in_window += 1;
                    if data.len() < self.blksize {
                        self.done = true;
                    } else if self.in_window < self.windowsize {
                        return None;
                    }
                    self.in_window = 0;
                    emit_ack(&mut ack, block);
                } else if block == (self.next - 1) as u16 {
                    // A retransmission of what we already hold: re-ACK it.
                    self.in_window = 0;
                    emit_ack(&mut ack, block);
                } else {
                    self.in_window = 0;
                    emit_ack(&mut ack, (self.next - 1) as u16);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        Some(ack)
    }
}

#[derive(Default)]
struct Stats {
    sent: u64,
    retransmits: u64,
    timeouts: u64,
    end: Option<Action>,
}

/// Runs one transfer to its end. `drop_data(i)` / `drop_ack(i)` lose the i-th server packet /
/// client ACK (0-based, counting every datagram in that direction).
fn run(
    data: &[u8],
    requested: RequestOptions,
    settings: Settings,
    mut drop_data: impl FnMut(u64) -> bool,
    mut drop_ack: impl FnMut(u64) -> bool,
) -> (Client, Stats, Transfer) {
    let mut now = Duration::ZERO;
    let (mut t, first) = Transfer::new(&requested, data.len() as u64, &settings, now);
    let mut client = Client::new();
    let mut stats = Stats::default();
    let mut wire: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut n_data, mut n_ack) = (0u64, 0u64);

    let apply = |t: &Transfer, a: Action, wire: &mut VecDeque<Vec<u8>>, stats: &mut Stats| match a {
        Action::None => {}
        Action::SendOack { retransmit } => {
            stats.retransmits += u64::from(retransmit);
            let mut p = Vec::new();
            t.write_oack(&mut p);
            wire.push_back(p);
        }
        Action::SendBlocks { first, last, retransmits } => {
            assert!(first <= last && last <= t.blocks());
            stats.retransmits += retransmits;
            for n in first..=last {
                let mut p = Vec::new();
                t.write_data(n, data, &mut p);
                stats.sent += 1;
                wire.push_back(p);
            }
        }
        end @ (Action::Done | Action::Failed(_)) => stats.end = Some(end),
    };
    apply(&t, first, &mut wire, &mut stats);

    for _ in 0..10_000_000 {
        if stats.end.is_some() {
            break;
        }
        if let Some(p) = wire.pop_front() {
            n_data += 1;
            if drop_data(n_data - 1) {
                continue;
            }
            if let Some(ack) = client.receive(&p) {
                n_ack += 1;
                if drop_ack(n_ack - 1) {
                    continue;
                }
                let a = t.on_datagram(&ack, now).unwrap();
                apply(&t, a, &mut wire, &mut stats);
            }
        } else {
            now = t.deadline().expect("an unfinished transfer has a deadline");
            stats.timeouts += 1;
            let a = t.on_timeout(now);
            apply(&t, a, &mut wire, &mut stats);
        }
    }
    assert!(t.is_finished());
    assert_eq!(t.deadline(), None);
    (client, stats, t)
}

fn straight(size: usize, blksize: Option<u16>, windowsize: Option<u16>) {
    let data = file(size);
    let (client, stats, t) = run(&data, opts(blksize, windowsize), Settings::default(), |_| false, |_| false);
    assert_eq!(stats.end, Some(Action::Done), "size {size}");
    assert!(client.done);
    assert!(client.data == data, "size {size} blksize {blksize:?} windowsize {windowsize:?}");
    let bs = u64::from(blksize.unwrap_or(512));
    assert_eq!(t.blocks(), size as u64 / bs + 1);
    assert_eq!(stats.sent, t.blocks(), "no block sent twice without loss");
    assert_eq!((stats.retransmits, stats.timeouts), (0, 0));
}

#[test]
fn straight_transfers_every_size_blksize_and_window() {
    for (bs, ws) in [(512u16, 1u16), (512, 8), (1468, 1), (1468, 8)] {
        let b = usize::from(bs);
        for size in [0, 1, b - 1, b, b + 1, 2 * b, 7 * b, 8 * b, 8 * b + 5, 16 * b, 100 * b + 17] {
            straight(size, Some(bs), Some(ws));
        }
    }
}

#[test]
fn no_options_means_plain_rfc1350_data_first() {
    let data = file(1500);
    let (mut t, first) = Transfer::new(&RequestOptions::default(), 1500, &Settings::default(), Duration::ZERO);
    assert_eq!(first, Action::SendBlocks { first: 1, last: 1, retransmits: 0 });
    assert_eq!((t.blksize(), t.windowsize(), t.blocks()), (512, 1, 3));
    let mut p = Vec::new();
    assert_eq!(t.write_data(1, &data, &mut p), 512);
    assert_eq!(Packet::parse(&p).unwrap(), Packet::Data { block: 1, data: &data[..512] });
    let mut ack = Vec::new();
    emit_ack(&mut ack, 1);
    assert_eq!(t.on_datagram(&ack, S).unwrap(), Action::SendBlocks { first: 2, last: 2, retransmits: 0 });
    // The same run through the simulated client.
    let (client, stats, _) = run(&data, RequestOptions::default(), Settings::default(), |_| false, |_| false);
    assert!(client.data == data);
    assert_eq!(stats.end, Some(Action::Done));
}

#[test]
fn negotiation_clamps_and_answers_tsize_with_the_real_size() {
    let settings = Settings { max_blksize: 1468, max_windowsize: 16, ..Settings::default() };
    let req = RequestOptions { blksize: Some(9000), tsize: Some(0), timeout: Some(3), windowsize: Some(64) };
    let (t, first) = Transfer::new(&req, 123_456, &settings, Duration::ZERO);
    assert_eq!(first, Action::SendOack { retransmit: false });
    let mut p = Vec::new();
    t.write_oack(&mut p);
    assert_eq!(p, b"\0\x06blksize\x001468\0tsize\x00123456\0timeout\x003\0windowsize\x0016\0");
    assert_eq!((t.blksize(), t.windowsize()), (1468, 16));
    // The client's timeout (3 s) is the retransmission timeout.
    assert_eq!(t.deadline(), Some(3 * S));

    // blksize below the server's floor of 8 cannot come from a parsed request, but a max below 8
    // in the settings is raised to 8.
    let tiny = Settings { max_blksize: 1, ..Settings::default() };
    let (t, _) = Transfer::new(&opts(Some(512), None), 10, &tiny, Duration::ZERO);
    assert_eq!(t.blksize(), 8);

    // Only tsize asked: an OACK with tsize alone, 512-byte blocks, window 1.
    let (t, first) =
        Transfer::new(&RequestOptions { tsize: Some(0), ..Default::default() }, 5, &settings, Duration::ZERO);
    assert_eq!(first, Action::SendOack { retransmit: false });
    let mut p = Vec::new();
    t.write_oack(&mut p);
    assert_eq!(p, b"\0\x06tsize\x005\0");
    assert_eq!((t.blksize(), t.windowsize()), (512, 1));
}

#[test]
fn ack_of_oack_is_block_zero_and_other_acks_before_it_are_ignored() {
    let (mut t, _) = Transfer::new(&opts(Some(1024), Some(4)), 10_000, &Settings::default(), Duration::ZERO);
    assert_eq!(t.on_ack(1, S / 10), Action::None);
    assert_eq!(t.on_ack(0, S / 10), Action::SendBlocks { first: 1, last: 4, retransmits: 0 });
    assert_eq!(t.on_ack(0, S / 10), Action::None, "a duplicate ACK 0 resends nothing");
}

#[test]
fn block_numbers_roll_over_past_65535_to_zero() {
    // blksize 8: 70 000 full blocks and a short one cross 65535 cheaply.
    let data = file(8 * 70_000 + 3);
    for ws in [1u16, 8] {
        let (client, stats, t) = run(&data, opts(Some(8), Some(ws)), Settings::default(), |_| false, |_| false);
        assert_eq!(stats.end, Some(Action::Done));
        assert_eq!(t.blocks(), 70_001);
        assert!(client.data == data, "bytes differ after rollover (window {ws})");
        // The wire numbers went ..., 65535, 0, 1, ...
        let at = client.seen.iter().position(|&b| b == 65535).unwrap();
        assert_eq!(client.seen[at + 1], 0);
        assert_eq!(client.seen[at + 2], 1);
    }
}

#[test]
fn lost_data_is_resent_after_the_timeout() {
    let data = file(512 * 10 + 100);
    // Lose the 4th server datagram (OACK is the 1st): block 3.
    let (client, stats, _) = run(&data, opts(Some(512), None), Settings::default(), |i| i == 3, |_| false);
    assert!(client.data == data);
    assert_eq!(stats.end, Some(Action::Done));
    assert_eq!((stats.timeouts, stats.retransmits), (1, 1));

    // In a window of 8, losing block 3 makes the client ACK 2; the server resumes from 3.
    let (client, stats, _) = run(&data, opts(Some(512), Some(8)), Settings::default(), |i| i == 3, |_| false);
    assert!(client.data == data);
    assert_eq!(stats.end, Some(Action::Done));
    assert_eq!(stats.timeouts, 0, "the gap ACK recovers without waiting");
    assert!(stats.retransmits >= 1);
}

#[test]
fn lost_ack_is_recovered_by_retransmission() {
    let data = file(512 * 6);
    for ws in [1u16, 4] {
        let (client, stats, _) = run(&data, opts(Some(512), Some(ws)), Settings::default(), |_| false, |i| i == 2);
        assert!(client.data == data);
        assert_eq!(stats.end, Some(Action::Done));
        assert_eq!(stats.timeouts, 1);
        assert!(stats.retransmits >= 1);
    }
    // Losing the ACK of the OACK resends the OACK.
    let (client, stats, _) = run(&data, opts(Some(512), None), Settings::default(), |_| false, |i| i == 0);
    assert!(client.data == data);
    assert_eq!((stats.end, stats.retransmits), (Some(Action::Done), 1));
}

#[test]
fn lossy_both_ways_still_delivers_every_byte() {
    let data = file(1468 * 40 + 9);
    for ws in [1u16, 3, 8] {
        let (client, stats, _) =
            run(&data, opts(Some(1468), Some(ws)), Settings::default(), |i| i % 7 == 5, |i| i % 5 == 3);
        assert_eq!(stats.end, Some(Action::Done), "window {ws}");
        assert!(client.data == data, "window {ws}");
    }
}

#[test]
fn duplicate_and_reordered_acks_are_ignored() {
    let (mut t, _) = Transfer::new(&opts(Some(512), Some(4)), 512 * 20, &Settings::default(), Duration::ZERO);
    assert_eq!(t.on_ack(0, S / 10), Action::SendBlocks { first: 1, last: 4, retransmits: 0 });
    assert_eq!(t.on_ack(4, S / 10), Action::SendBlocks { first: 5, last: 8, retransmits: 0 });
    // Duplicate of 4 and a late ACK of 2: no Sorcerer's Apprentice resend.
    assert_eq!(t.on_ack(4, S / 10), Action::None);
    assert_eq!(t.on_ack(2, S / 10), Action::None);
    // An ACK for a block never sent.
    assert_eq!(t.on_ack(12, S / 10), Action::None);
    assert_eq!(t.acked(), 4);
    // ACK 6 inside the window: the window moves to 7..=10, of which 7 and 8 were already sent.
    assert_eq!(t.on_ack(6, S / 10), Action::SendBlocks { first: 7, last: 10, retransmits: 2 });
    // Reordered: 10 then 8.
    assert_eq!(t.on_ack(10, S / 10), Action::SendBlocks { first: 11, last: 14, retransmits: 0 });
    assert_eq!(t.on_ack(8, S / 10), Action::None);
    assert_eq!(t.acked(), 10);
}

#[test]
fn timeout_backs_off_exponentially_then_gives_up() {
    let settings = Settings { retries: 4, max_timeout: Duration::from_secs(6), ..Settings::default() };
    let (mut t, _) = Transfer::new(&opts(Some(512), Some(2)), 4096, &settings, Duration::ZERO);
    assert_eq!(t.on_ack(0, Duration::ZERO), Action::SendBlocks { first: 1, last: 2, retransmits: 0 });
    assert_eq!(t.deadline(), Some(S));
    // Early timer: nothing.
    assert_eq!(t.on_timeout(S / 2), Action::None);
    let mut now = S;
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let a = t.on_timeout(now);
        assert_eq!(a, Action::SendBlocks { first: 1, last: 2, retransmits: 2 });
        let next = t.deadline().unwrap();
        gaps.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(gaps, vec![2, 4, 6, 6], "doubling, capped at max_timeout");
    assert_eq!(t.on_timeout(now), Action::Failed(Failure::Timeout));
    assert!(t.is_finished());
    assert_eq!(Failure::Timeout.describe(), "timeout");
    assert_eq!(t.on_timeout(now + S), Action::None);
    assert_eq!(t.on_ack(2, now), Action::None);
}

#[test]
fn progress_resets_the_backoff_and_the_window_restarts_after_the_last_ack() {
    let (mut t, _) = Transfer::new(&opts(Some(512), Some(4)), 512 * 20, &Settings::default(), Duration::ZERO);
    t.on_ack(0, Duration::ZERO);
    assert_eq!(t.on_ack(3, Duration::ZERO), Action::SendBlocks { first: 4, last: 7, retransmits: 1 });
    assert_eq!(t.on_timeout(S), Action::SendBlocks { first: 4, last: 7, retransmits: 4 });
    assert_eq!(t.on_timeout(3 * S), Action::SendBlocks { first: 4, last: 7, retransmits: 4 });
    assert_eq!(t.deadline(), Some(7 * S));
    assert_eq!(t.on_ack(5, 4 * S), Action::SendBlocks { first: 6, last: 9, retransmits: 2 });
    assert_eq!(t.deadline(), Some(5 * S), "back to the base timeout after progress");
}

#[test]
fn client_error_ends_the_transfer() {
    // During the data phase.
    let (mut t, _) = Transfer::new(&opts(Some(512), None), 5000, &Settings::default(), Duration::ZERO);
    assert_eq!(t.on_ack(0, S / 10), Action::SendBlocks { first: 1, last: 1, retransmits: 0 });
    let mut e = Vec::new();
    emit_error(&mut e, 3, b"disk full");
    let a = t.on_datagram(&e, S / 10).unwrap();
    let Action::Failed(f) = a else { panic!("{a:?}") };
    assert_eq!(f, Failure::ClientError { code: 3, message: "disk full".into() });
    assert_eq!(f.describe(), "client error 3: disk full");
    assert!(t.is_finished());
    assert_eq!(t.on_datagram(&e, S / 10).unwrap(), Action::None);
    let mut ack = Vec::new();
    emit_ack(&mut ack, 1);
    assert_eq!(t.on_datagram(&ack, S / 10).unwrap(), Action::None);
    assert_eq!(t.deadline(), None);
}

#[test]
fn error_in_answer_to_the_oack_is_a_decline() {
    let (mut t, _) = Transfer::new(&opts(Some(512), None), 5000, &Settings::default(), Duration::ZERO);
    let mut e = Vec::new();
    emit_error(&mut e, 8, b"blksize not acceptable");
    let a = t.on_datagram(&e, S / 10).unwrap();
    let Action::Failed(f) = a else { panic!("{a:?}") };
    assert_eq!(f, Failure::Declined { code: 8, message: "blksize not acceptable".into() });
    assert_eq!(f.describe(), "declined after OACK: error 8: blksize not acceptable");
    assert!(t.is_finished());
    // A tsize probe: ERROR 0 with no message.
    let (mut t, _) =
        Transfer::new(&RequestOptions { tsize: Some(0), ..Default::default() }, 9, &Settings::default(), S);
    assert_eq!(t.on_error(0, b""), Action::Failed(Failure::Declined { code: 0, message: String::new() }));
    assert_eq!(Failure::Declined { code: 0, message: String::new() }.describe(), "declined after OACK: error 0");
}

#[test]
fn malformed_and_unexpected_datagrams_are_rejected_without_effect() {
    let (mut t, _) = Transfer::new(&opts(Some(512), None), 5000, &Settings::default(), Duration::ZERO);
    assert!(matches!(t.on_datagram(b"\0\x04\x01", S), Err(Rejected::Malformed(_))));
    assert!(matches!(t.on_datagram(b"\0\x09\0\0", S), Err(Rejected::Malformed(_))));
    assert!(matches!(t.on_datagram(b"", S), Err(Rejected::Malformed(_))));
    assert_eq!(t.on_datagram(b"\0\x03\0\x01abc", S), Err(Rejected::Unexpected(3)));
    assert_eq!(t.on_datagram(b"\0\x01f\0octet\0", S), Err(Rejected::Unexpected(1)));
    assert!(!t.is_finished());
    assert_eq!(t.on_ack(0, S / 10), Action::SendBlocks { first: 1, last: 1, retransmits: 0 });
}

#[test]
fn write_data_never_reads_past_the_file() {
    let data = file(1000);
    let (t, _) = Transfer::new(&opts(Some(512), None), 1000, &Settings::default(), Duration::ZERO);
    let mut p = Vec::new();
    assert_eq!(t.write_data(2, &data, &mut p), 488);
    assert_eq!(t.block_range(0), 0..0);
    assert_eq!(t.block_range(3), 0..0);
    p.clear();
    // A caller handing a shorter slice than announced gets empty data, not a panic.
    assert_eq!(t.write_data(2, &data[..100], &mut p), 0);
}
