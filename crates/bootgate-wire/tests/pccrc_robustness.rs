//! MS-PCCRC parsers on malformed input: clear errors, never a panic; anything accepted
//! re-encodes to exactly the bytes it came from.

use bootgate_wire::pccrc::{ContentInfo, ContentInfoV1, ContentInfoV2, PccrcError};

mod iis85;
use iis85::{IIS_85_PNG_V1, IIS_85_PNG_V2};

fn v1_with(f: impl FnOnce(&mut Vec<u8>)) -> Result<ContentInfoV1, PccrcError> {
    let mut b = IIS_85_PNG_V1.to_vec();
    f(&mut b);
    ContentInfoV1::parse(&b)
}

fn v2_with(f: impl FnOnce(&mut Vec<u8>)) -> Result<ContentInfoV2, PccrcError> {
    let mut b = IIS_85_PNG_V2.to_vec();
    f(&mut b);
    ContentInfoV2::parse(&b)
}

fn inconsistent<T: std::fmt::Debug>(r: Result<T, PccrcError>) {
    assert!(matches!(r, Err(PccrcError::Inconsistent(_))), "{r:?}");
}

#[test]
fn every_truncation_is_refused() {
    for n in 0..IIS_85_PNG_V1.len() {
        let r = ContentInfoV1::parse(&IIS_85_PNG_V1[..n]);
        assert!(
            matches!(r, Err(PccrcError::Truncated(_))),
            "V1 prefix {n}: {r:?}"
        );
        assert!(ContentInfo::parse(&IIS_85_PNG_V1[..n]).is_err());
    }
    for n in 0..IIS_85_PNG_V2.len() {
        let r = ContentInfoV2::parse(&IIS_85_PNG_V2[..n]);
        if n == 31 {
            // The bare header is a valid description of empty content (no chunks).
            let info = r.expect("header alone is empty content");
            assert!(info.segments().is_empty());
            continue;
        }
        assert!(r.is_err(), "V2 prefix {n} accepted");
        if n < 31 {
            assert!(
                matches!(r, Err(PccrcError::Truncated(_))),
                "V2 prefix {n}: {r:?}"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    assert_eq!(v1_with(|b| b.push(0)), Err(PccrcError::TrailingBytes(1)));
    // After the last V2 chunk, a lone extra byte is the start of a truncated chunk header.
    assert_eq!(
        v2_with(|b| b.push(0)),
        Err(PccrcError::Truncated("dwChunkDataLength"))
    );
}

#[test]
fn v1_field_checks() {
    assert_eq!(
        v1_with(|b| b[1] = 0x02),
        Err(PccrcError::UnsupportedVersion { minor: 0, major: 2 })
    );
    assert_eq!(
        v1_with(|b| b[2] = 0x0b),
        Err(PccrcError::UnknownHashAlgo(0x800b))
    );
    // Another valid algorithm changes every field length: the blob no longer fits.
    assert!(v1_with(|b| b[2] = 0x0d).is_err());
    // cSegments far too large: refused before any allocation.
    assert_eq!(
        v1_with(|b| b[14..18].copy_from_slice(&u32::MAX.to_le_bytes())),
        Err(PccrcError::Truncated("segments"))
    );
    assert!(v1_with(|b| b[14] = 2).is_err());
    assert!(v1_with(|b| b[14] = 0).is_err());
    // cbSegment 0, cbBlockSize 0, a segment not starting where expected is fine alone (one
    // segment), but a block size too small for the listed block hashes is not.
    inconsistent(v1_with(|b| b[26..30].copy_from_slice(&0u32.to_le_bytes())));
    inconsistent(v1_with(|b| b[30..34].copy_from_slice(&0u32.to_le_bytes())));
    inconsistent(v1_with(|b| {
        b[26..30].copy_from_slice(&65536u32.to_le_bytes())
    }));
    // cBlocks 3 for a 2-block segment (with a third hash appended).
    inconsistent(v1_with(|b| {
        b[98] = 3;
        b.extend_from_slice(&[0u8; 32]);
    }));
    // cBlocks 0.
    inconsistent(v1_with(|b| {
        b[98] = 0;
        b.truncate(102);
    }));
    // Range offsets.
    inconsistent(v1_with(|b| {
        b[6..10].copy_from_slice(&99710u32.to_le_bytes())
    }));
    inconsistent(v1_with(|b| {
        b[10..14].copy_from_slice(&99711u32.to_le_bytes())
    }));
    let explicit = v1_with(|b| b[10..14].copy_from_slice(&99710u32.to_le_bytes())).unwrap();
    assert_eq!(
        explicit.content_range(),
        (0, 99710),
        "spec example 3.1 style"
    );
    let ranged = v1_with(|b| {
        b[6..10].copy_from_slice(&70000u32.to_le_bytes());
        b[10..14].copy_from_slice(&1000u32.to_le_bytes());
    })
    .unwrap();
    assert_eq!(ranged.content_range(), (70000, 71000));
    // A segment offset near 2^64 overflows.
    inconsistent(v1_with(|b| {
        b[18..26].copy_from_slice(&(u64::MAX - 10).to_le_bytes())
    }));
}

#[test]
fn v2_field_checks() {
    assert_eq!(
        v2_with(|b| b[0] = 1),
        Err(PccrcError::UnsupportedVersion { minor: 1, major: 2 })
    );
    // Spec example 3.7 shows bHashAlgo 0x01; section 2.4 allows only 0x04.
    assert_eq!(v2_with(|b| b[2] = 1), Err(PccrcError::UnknownHashAlgo(1)));
    assert_eq!(v2_with(|b| b[31] = 1), Err(PccrcError::UnknownChunkType(1)));
    inconsistent(v2_with(|b| b[35] = 0x87));
    inconsistent(v2_with(|b| b[32..36].copy_from_slice(&0u32.to_be_bytes())));
    assert!(v2_with(|b| b[35] = 0x44).is_err());
    assert!(v2_with(|b| b[32..36].copy_from_slice(&(68u32 * 1000).to_be_bytes())).is_err());
    inconsistent(v2_with(|b| b[36..40].copy_from_slice(&0u32.to_be_bytes())));
    inconsistent(v2_with(|b| {
        b[19..23].copy_from_slice(&39390u32.to_be_bytes())
    }));
    inconsistent(v2_with(|b| {
        b[23..31].copy_from_slice(&99711u64.to_be_bytes())
    }));
    inconsistent(v2_with(|b| {
        b[19..23].copy_from_slice(&10u32.to_be_bytes());
        b[23..31].copy_from_slice(&99701u64.to_be_bytes());
    }));
    inconsistent(v2_with(|b| {
        b[3..11].copy_from_slice(&(u64::MAX - 50_000).to_be_bytes())
    }));
    let ranged = v2_with(|b| {
        b[3..11].copy_from_slice(&1_000_000u64.to_be_bytes());
        b[11..19].copy_from_slice(&7u64.to_be_bytes());
        b[19..23].copy_from_slice(&100u32.to_be_bytes());
        b[23..31].copy_from_slice(&50_000u64.to_be_bytes());
    })
    .unwrap();
    assert_eq!(ranged.index_of_first_segment(), 7);
    assert_eq!(ranged.segments()[1].offset(), 1_039_390);
    assert_eq!(ranged.content_range(), (1_000_100, 1_050_100));
    // Empty content: no offsets allowed.
    inconsistent(ContentInfoV2::parse(&{
        let mut h = IIS_85_PNG_V2[..31].to_vec();
        h[22] = 1;
        h
    }));
}

#[test]
fn v2_several_chunks_are_kept() {
    // The same two segments, one per chunk.
    let mut b = IIS_85_PNG_V2[..31].to_vec();
    for seg in IIS_85_PNG_V2[36..].chunks(68) {
        b.push(0);
        b.extend_from_slice(&68u32.to_be_bytes());
        b.extend_from_slice(seg);
    }
    let info = ContentInfoV2::parse(&b).unwrap();
    assert_eq!(info.chunk_sizes(), &[1, 1]);
    assert_eq!(
        info.segments(),
        ContentInfoV2::parse(&IIS_85_PNG_V2).unwrap().segments()
    );
    assert_eq!(info.encode(), b);
}

/// A V1 structure in the shape of the specification's example 3.5: a 125 MB file, range from
/// 100 KB to 124 MB, 4 segments, the last listing 448 of its 464 block hashes.
#[test]
fn v1_spec_range_example_shape_parses() {
    let seg = 0x200_0000u32;
    let lens = [seg, seg, seg, 0x1D0_0000];
    let blocks = [512u32, 512, 512, 448];
    let mut b = Vec::new();
    b.extend_from_slice(&0x0100u16.to_le_bytes());
    b.extend_from_slice(&0x800Cu32.to_le_bytes());
    b.extend_from_slice(&102_400u32.to_le_bytes());
    b.extend_from_slice(&0x1C0_0000u32.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    for (i, len) in lens.iter().enumerate() {
        b.extend_from_slice(&(u64::from(seg) * i as u64).to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&0x10000u32.to_le_bytes());
        b.extend_from_slice(&[i as u8 + 1; 64]);
    }
    for n in blocks {
        b.extend_from_slice(&n.to_le_bytes());
        b.extend(std::iter::repeat_n(0xabu8, n as usize * 32));
    }
    // Example 3.5 puts the last cBlocks at offset 49502, as here; its table then reuses example
    // 3.4's offsets (last hash at 64322, which fits 464 hashes, not the 448 it lists).
    assert_eq!(b.len(), 49_502 + 4 + 448 * 32);
    let info = ContentInfoV1::parse(&b).unwrap();
    assert_eq!(info.content_range(), (102_400, 0x600_0000 + 0x1C0_0000));
    assert!(
        !info.segments()[3].hod_matches_blocks(),
        "incomplete block list"
    );
    assert_eq!(info.encode(), b);
}

/// xorshift64: a small deterministic generator, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses with every parser; whatever is accepted must re-encode to the same bytes.
fn check_any(bytes: &[u8]) -> bool {
    let mut ok = false;
    if let Ok(i) = ContentInfoV1::parse(bytes) {
        assert_eq!(i.encode(), bytes);
        let (start, end) = i.content_range();
        assert!(start <= end);
        ok = true;
    }
    if let Ok(i) = ContentInfoV2::parse(bytes) {
        assert_eq!(i.encode(), bytes);
        let (start, end) = i.content_range();
        assert!(start <= end);
        ok = true;
    }
    if let Ok(i) = ContentInfo::parse(bytes) {
        assert_eq!(i.encode(), bytes);
        assert!(
            ok,
            "generic parser accepted what the versioned ones refused"
        );
    }
    ok
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(400);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the time, a plausible header so the parsers get past the first checks.
        if len >= 3 && rng.below(2) == 0 {
            if rng.below(2) == 0 {
                b[..3].copy_from_slice(&[0x00, 0x01, 0x0c]);
                if len >= 18 {
                    b[3..6].copy_from_slice(&[0x80, 0, 0]);
                    b[14..18].copy_from_slice(&(rng.below(3) as u32).to_le_bytes());
                }
            } else {
                b[..3].copy_from_slice(&[0x00, 0x02, 0x04]);
            }
        }
        check_any(&b);
    }
}

#[test]
fn mutated_golden_blobs_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut accepted = 0;
    for i in 0..40_000 {
        let mut b = if i % 2 == 0 {
            IIS_85_PNG_V1.to_vec()
        } else {
            IIS_85_PNG_V2.to_vec()
        };
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                0 | 1 => {
                    let at = rng.below(b.len().max(1));
                    if let Some(x) = b.get_mut(at) {
                        *x = rng.next() as u8;
                    }
                }
                2 => {
                    let at = rng.below(b.len().max(1));
                    if let Some(x) = b.get_mut(at) {
                        *x ^= 1 << rng.below(8);
                    }
                }
                3 => b.truncate(rng.below(b.len() + 1)),
                _ => {
                    let at = rng.below(b.len() + 1);
                    b.insert(at, rng.next() as u8);
                }
            }
        }
        if check_any(&b) {
            accepted += 1;
        }
    }
    // Hash bytes can change freely, so many mutants stay valid; structural ones do not.
    assert!(accepted > 1_000 && accepted < 40_000, "accepted {accepted}");
}
