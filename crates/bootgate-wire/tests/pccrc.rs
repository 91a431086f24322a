//! MS-PCCRC Content Information: golden vectors from IIS 8.5, and build -> parse round trips.

use bootgate_wire::pccrc::{
    content_info_v1, content_info_v2, content_information, hash_segment_v1, hash_segment_v2,
    segment_layout_v1, server_secret_v1, server_secret_v2, ContentInfo, ContentInfoV1,
    ContentInfoV1Builder, ContentInfoV2, ContentInfoV2Builder, HashAlgo, HashValue, PccrcError,
    RunningHash, SegmentV1, SegmentV2,
    V1Params, V2Segmentation, Version, V1_BLOCK_SIZE, V1_SEGMENT_SIZE, V2_DEFAULT_SEGMENT_SIZE,
    V2_MAX_SEGMENT_SIZE,
};
use sha2::Digest;
use std::path::PathBuf;

mod iis85;
use iis85::{IIS_85_PNG_V1, IIS_85_PNG_V2};

// ---------------------------------------------------------------------------------------------
// Test vectors. Source: iPXE, src/tests/pccrc_test.c (ipxe/ipxe repository): the Content
// Information that IIS 8.5 served for its welcome image iis-85.png (99 710 bytes), fetched with
// "X-P2P-PeerDist: Version=1.0" (V1) and "MinContentInformation=2.0" (V2), the server passphrase
// exported from that server, and the segment identifiers (HoHoDk) iPXE expects.
// ---------------------------------------------------------------------------------------------

const PASSPHRASE: [u8; 32] = [
    0x2a, 0x3d, 0x73, 0xeb, 0x43, 0x5e, 0x9f, 0x2b, 0x8a, 0x34, 0x42, 0x67, 0xe7, 0x46, 0x7a, 0x3c,
    0x73, 0x85, 0xc6, 0xe0, 0x55, 0xe2, 0xb4, 0xd3, 0x0d, 0xfe, 0xc7, 0xc3, 0x8b, 0x0e, 0xd7, 0x2c,
];

/// HoHoDk of the V1 segment (iPXE's `iis_85_png_v1_s0` expected id).
const V1_S0_ID: [u8; 32] = [
    0x49, 0x1b, 0x21, 0x7d, 0xbe, 0xe2, 0xb5, 0xf1, 0x2c, 0xa7, 0x9b, 0x01, 0x5e, 0x06, 0xf4, 0xbb,
    0xe6, 0x4f, 0x97, 0x45, 0xba, 0xd7, 0x86, 0x7a, 0xef, 0x17, 0xde, 0x59, 0x92, 0x7e, 0xdc, 0xe9,
];

/// HoHoDk of the two V2 segments (iPXE's `iis_85_png_v2_s0` / `_s1` expected ids).
const V2_S0_ID: [u8; 32] = [
    0x33, 0x71, 0xbb, 0xea, 0xdd, 0xb6, 0x23, 0x53, 0xad, 0xce, 0xf9, 0x70, 0xa0, 0x6f, 0xdf, 0x65,
    0x00, 0x1e, 0x04, 0x21, 0xf4, 0xc7, 0x10, 0x82, 0x76, 0xb0, 0xc3, 0x7a, 0x9f, 0x9e, 0xc1, 0x0f,
];
const V2_S1_ID: [u8; 32] = [
    0xd7, 0xe9, 0x24, 0x42, 0x5e, 0x8f, 0x4f, 0x88, 0xf0, 0x1d, 0xc6, 0xa9, 0xbb, 0x1b, 0xc3, 0x7b,
    0xe1, 0x13, 0xec, 0x79, 0x17, 0xc7, 0x45, 0xd4, 0x96, 0x5c, 0x2b, 0x55, 0xfa, 0x16, 0x3a, 0x6e,
];

/// IIS's version 2.0 segment split of iis-85.png.
const IIS_V2_SPLIT: [u32; 2] = [39390, 60320];

/// SHA-256 of iis-85.png (from the fixture's README).
const PNG_SHA256: &str = "5cd971d318349c4644488d55edb1e7357dad8aa3743bef74b84c302580e37d82";

/// The fixture lives in the steering repository's shared/ folder, beside the checkout (CI: a
/// fresh clone with shared/ beside it). BOOTGATE_SHARED_DIR overrides.
fn png() -> Vec<u8> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("BOOTGATE_SHARED_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for up in manifest.ancestors().skip(1).take(4) {
        candidates.push(up.join("shared"));
    }
    candidates.push(PathBuf::from("/work/shared"));
    for dir in &candidates {
        let path = dir.join("fixtures/pccrc/iis-85.png");
        if let Ok(bytes) = std::fs::read(&path) {
            assert_eq!(
                hex(&sha2::Sha256::digest(&bytes)),
                PNG_SHA256,
                "{} is not the IIS 8.5 image",
                path.display()
            );
            return bytes;
        }
    }
    panic!("fixture shared/fixtures/pccrc/iis-85.png not found in {candidates:?}; set BOOTGATE_SHARED_DIR");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hv(b: &[u8]) -> HashValue {
    HashValue::from_slice(b).unwrap()
}

/// Deterministic pseudo-random content (xorshift64*).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ------------------------------------------------------------------------------ golden: parse

#[test]
fn golden_v1_parses_and_verifies() {
    let png = png();
    let info = ContentInfoV1::parse(&IIS_85_PNG_V1).expect("IIS V1 parses");
    assert_eq!(info.algo(), HashAlgo::Sha256);
    assert_eq!(info.offset_in_first_segment(), 0);
    assert_eq!(
        info.read_bytes_in_last_segment(),
        0,
        "IIS writes 0 for the whole file"
    );
    assert_eq!(info.content_range(), (0, 99710));
    assert_eq!(info.segments().len(), 1);
    let s = &info.segments()[0];
    assert_eq!((s.offset(), s.length(), s.block_size()), (0, 99710, 65536));
    assert_eq!(s.total_blocks(), 2);
    assert_eq!(s.block_range(0), Some((0, 65536)));
    assert_eq!(s.block_range(1), Some((65536, 99710)));
    assert_eq!(s.block_range(2), None);
    assert_eq!(s.block_hashes().len(), 2);
    assert_eq!(
        s.block_hashes()[0].as_bytes(),
        sha2::Sha256::digest(&png[..65536]).as_slice()
    );
    assert_eq!(
        s.block_hashes()[1].as_bytes(),
        sha2::Sha256::digest(&png[65536..]).as_slice()
    );
    assert!(s.hod_matches_blocks());
    // Ks = SHA-256 of the raw passphrase bytes (not of a UTF-16 form).
    let ks = server_secret_v1(HashAlgo::Sha256, &PASSPHRASE);
    assert_eq!(ks.as_bytes(), sha2::Sha256::digest(PASSPHRASE).as_slice());
    assert!(s.secret_matches(&ks));
    assert!(!s.secret_matches(&server_secret_v1(HashAlgo::Sha256, b"another passphrase")));
    assert_eq!(s.id().as_bytes(), V1_S0_ID);
    // Encoding what was parsed gives the same bytes back.
    assert_eq!(info.encode(), IIS_85_PNG_V1);
    assert_eq!(info.encoded_len(), IIS_85_PNG_V1.len());
}

#[test]
fn golden_v2_parses_and_verifies() {
    let png = png();
    let info = ContentInfoV2::parse(&IIS_85_PNG_V2).expect("IIS V2 parses");
    assert_eq!(info.start_in_content(), 0);
    assert_eq!(info.index_of_first_segment(), 0);
    assert_eq!(info.offset_in_first_segment(), 0);
    assert_eq!(info.length_of_range(), 0, "0: the whole resource");
    assert_eq!(info.content_range(), (0, 99710));
    assert_eq!(info.chunk_sizes(), &[2]);
    let segs = info.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].offset(), segs[0].length()), (0, 39390));
    assert_eq!((segs[1].offset(), segs[1].length()), (39390, 60320));
    assert!(segs[0].hod_matches(&png[..39390]));
    assert!(segs[1].hod_matches(&png[39390..]));
    assert!(!segs[1].hod_matches(&png[39391..]));
    assert_eq!(
        segs[0].hash_of_data().as_bytes(),
        &sha2::Sha512::digest(&png[..39390])[..32]
    );
    let ks = server_secret_v2(&PASSPHRASE);
    assert_eq!(ks.as_bytes(), &sha2::Sha512::digest(PASSPHRASE)[..32]);
    assert!(segs[0].secret_matches(&ks) && segs[1].secret_matches(&ks));
    assert!(!segs[0].secret_matches(&server_secret_v1(HashAlgo::Sha256, &PASSPHRASE)));
    assert_eq!(segs[0].id().as_bytes(), V2_S0_ID);
    assert_eq!(segs[1].id().as_bytes(), V2_S1_ID);
    assert_eq!(info.encode(), IIS_85_PNG_V2);
    assert_eq!(info.encoded_len(), IIS_85_PNG_V2.len());
}

#[test]
fn golden_generic_parse_dispatches() {
    match ContentInfo::parse(&IIS_85_PNG_V1).unwrap() {
        ContentInfo::V1(i) => assert_eq!(i.segments().len(), 1),
        other => panic!("expected V1, got {other:?}"),
    }
    let v2 = ContentInfo::parse(&IIS_85_PNG_V2).unwrap();
    assert!(matches!(v2, ContentInfo::V2(_)));
    assert_eq!(v2.content_range(), (0, 99710));
    assert_eq!(v2.encode(), IIS_85_PNG_V2);
    assert_eq!(
        ContentInfo::parse(&[0x00, 0x03, 0x04]),
        Err(PccrcError::UnsupportedVersion { minor: 0, major: 3 })
    );
    assert_eq!(
        ContentInfo::parse(&[0x00]),
        Err(PccrcError::Truncated("version"))
    );
}

// ---------------------------------------------------------------------------- golden: rebuild

#[test]
fn golden_v1_rebuilt_byte_for_byte() {
    let png = png();
    let ks = server_secret_v1(HashAlgo::Sha256, &PASSPHRASE);
    let built = content_info_v1(&png, &V1Params::default(), &ks).unwrap();
    assert_eq!(hex(&built.encode()), hex(&IIS_85_PNG_V1));
    // The one-call form with a passphrase.
    assert_eq!(
        content_information(&png, Version::V1, &PASSPHRASE).unwrap(),
        IIS_85_PNG_V1
    );
    // Streaming in awkward chunk sizes gives the same bytes.
    for chunk in [1usize, 7, 4096, 65535, 65536, 65537, 99709] {
        let mut b = ContentInfoV1Builder::new(V1Params::default(), ks).unwrap();
        for part in png.chunks(chunk) {
            b.update(part).unwrap();
        }
        assert_eq!(b.bytes_fed(), 99710);
        assert_eq!(
            b.finish().unwrap().encode(),
            IIS_85_PNG_V1,
            "chunk size {chunk}"
        );
    }
    // Segment by segment (the parallel path) gives the same bytes.
    let layout = segment_layout_v1(png.len() as u64, &V1Params::default()).unwrap();
    assert_eq!(layout, vec![(0, 99710)]);
    let segs = layout
        .iter()
        .map(|&(off, len)| {
            let data = &png[off as usize..off as usize + len as usize];
            hash_segment_v1(&V1Params::default(), &ks, off, data).unwrap()
        })
        .collect();
    let joined = ContentInfoV1::from_segments(HashAlgo::Sha256, segs).unwrap();
    assert_eq!(joined.encode(), IIS_85_PNG_V1);
}

#[test]
fn golden_v2_rebuilt_byte_for_byte() {
    let png = png();
    let ks = server_secret_v2(&PASSPHRASE);
    let split = V2Segmentation::Explicit(IIS_V2_SPLIT.to_vec());
    let built = content_info_v2(&png, &split, &ks).unwrap();
    assert_eq!(hex(&built.encode()), hex(&IIS_85_PNG_V2));
    for chunk in [1usize, 13, 39390, 39391, 65536, 99710] {
        let mut b = ContentInfoV2Builder::new(split.clone(), ks).unwrap();
        for part in png.chunks(chunk) {
            b.update(part).unwrap();
        }
        assert_eq!(
            b.finish().unwrap().encode(),
            IIS_85_PNG_V2,
            "chunk size {chunk}"
        );
    }
    let layout = split.layout(png.len() as u64).unwrap();
    assert_eq!(layout, vec![(0, 39390), (39390, 60320)]);
    let segs = layout
        .iter()
        .map(|&(off, len)| {
            hash_segment_v2(&ks, off, &png[off as usize..off as usize + len as usize]).unwrap()
        })
        .collect();
    assert_eq!(
        ContentInfoV2::from_segments(segs).unwrap().encode(),
        IIS_85_PNG_V2
    );
}

#[test]
fn golden_v2_default_segmentation_differs_but_verifies() {
    let png = png();
    let blob = content_information(&png, Version::V2, &PASSPHRASE).unwrap();
    assert_ne!(blob, IIS_85_PNG_V2);
    let info = ContentInfoV2::parse(&blob).unwrap();
    let lens: Vec<u32> = info.segments().iter().map(|s| s.length()).collect();
    assert_eq!(lens, vec![65536, 99710 - 65536]);
    let ks = server_secret_v2(&PASSPHRASE);
    for s in info.segments() {
        let (a, b) = (
            s.offset() as usize,
            s.offset() as usize + s.length() as usize,
        );
        assert!(s.hod_matches(&png[a..b]));
        assert!(s.secret_matches(&ks));
    }
    // Deterministic: the same input gives the same bytes.
    assert_eq!(
        content_information(&png, Version::V2, &PASSPHRASE).unwrap(),
        blob
    );
}

// ------------------------------------------------------------------------- round trips: V1

/// Builds V1 for `data`, checks the structure against direct hashing, and round-trips it.
fn check_v1(data: &[u8], params: V1Params, chunk: usize) -> ContentInfoV1 {
    let ks = server_secret_v1(params.algo, b"round trip secret");
    let mut b = ContentInfoV1Builder::new(params, ks).unwrap();
    for part in data.chunks(chunk.max(1)) {
        b.update(part).unwrap();
    }
    let info = b.finish().unwrap();
    let seg = params.segment_size as usize;
    let blk = params.block_size as usize;
    assert_eq!(info.segments().len(), data.len().div_ceil(seg));
    assert_eq!(info.content_range(), (0, data.len() as u64));
    for (i, s) in info.segments().iter().enumerate() {
        let start = i * seg;
        let bytes = &data[start..(start + seg).min(data.len())];
        assert_eq!(s.offset(), start as u64);
        assert_eq!(s.length() as usize, bytes.len());
        assert_eq!(s.block_size(), params.block_size);
        assert_eq!(s.block_hashes().len(), bytes.len().div_ceil(blk));
        for (j, h) in s.block_hashes().iter().enumerate() {
            let block = &bytes[j * blk..((j + 1) * blk).min(bytes.len())];
            let want = match params.algo {
                HashAlgo::Sha256 => sha2::Sha256::digest(block).to_vec(),
                HashAlgo::Sha384 => sha2::Sha384::digest(block).to_vec(),
                HashAlgo::Sha512 => sha2::Sha512::digest(block).to_vec(),
            };
            assert_eq!(h.as_bytes(), want.as_slice(), "segment {i} block {j}");
        }
        assert!(s.hod_matches_blocks());
        assert!(s.secret_matches(&ks));
        assert_eq!(s.id().len(), params.algo.digest_len());
    }
    let blob = info.encode();
    assert_eq!(blob.len(), info.encoded_len());
    let parsed = ContentInfoV1::parse(&blob).expect("built blob parses");
    assert_eq!(parsed, info);
    assert_eq!(parsed.encode(), blob);
    info
}

fn small(algo: HashAlgo) -> V1Params {
    V1Params {
        algo,
        segment_size: 64,
        block_size: 16,
    }
}

#[test]
fn v1_round_trip_small_sizes_all_algorithms() {
    for algo in [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512] {
        for len in [
            0usize, 1, 15, 16, 17, 32, 63, 64, 65, 80, 128, 129, 200, 640, 1000,
        ] {
            for chunk in [1usize, 5, 16, 64, 1000] {
                check_v1(&content(len, len as u64 + 3), small(algo), chunk);
            }
        }
    }
}

#[test]
fn v1_round_trip_spec_sizes() {
    // 0 bytes: no segments, header only.
    let empty = check_v1(&[], V1Params::default(), 1);
    assert_eq!(empty.encode().len(), 18);
    assert_eq!(empty.content_range(), (0, 0));
    let one = check_v1(&[0x42], V1Params::default(), 1);
    assert_eq!(one.segments()[0].block_hashes().len(), 1);
    assert_eq!(one.encode().len(), 18 + 80 + 4 + 32);
    let b = V1_BLOCK_SIZE as usize;
    check_v1(&content(b, 1), V1Params::default(), 4096);
    check_v1(&content(b + 1, 2), V1Params::default(), 4096);
    let three = check_v1(&content(3 * b, 3), V1Params::default(), 65536);
    assert_eq!(three.segments()[0].block_hashes().len(), 3);
    check_v1(&content(2 * b, 4), V1Params::new(HashAlgo::Sha384), 30000);
    check_v1(&content(b - 1, 5), V1Params::new(HashAlgo::Sha512), 100);
}

#[test]
fn v1_real_32mib_plus_one() {
    let len = V1_SEGMENT_SIZE as usize + 1;
    let data = content(len, 0x5eed);
    let info = check_v1(&data, V1Params::default(), 1 << 20);
    let segs = info.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!(
        (segs[0].length(), segs[0].block_hashes().len()),
        (V1_SEGMENT_SIZE, 512)
    );
    assert_eq!(
        (segs[1].offset(), segs[1].length()),
        (V1_SEGMENT_SIZE as u64, 1)
    );
    assert_eq!(segs[1].block_hashes().len(), 1);
    assert_eq!(info.encode().len(), 18 + 2 * 80 + 4 + 512 * 32 + 4 + 32);
    // The parallel path agrees with the streaming one.
    let ks = server_secret_v1(HashAlgo::Sha256, b"round trip secret");
    let layout = segment_layout_v1(len as u64, &V1Params::default()).unwrap();
    assert_eq!(
        layout,
        vec![(0, V1_SEGMENT_SIZE), (V1_SEGMENT_SIZE as u64, 1)]
    );
    let parts = layout
        .iter()
        .map(|&(o, l)| {
            hash_segment_v1(
                &V1Params::default(),
                &ks,
                o,
                &data[o as usize..(o + l as u64) as usize],
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        ContentInfoV1::from_segments(HashAlgo::Sha256, parts).unwrap(),
        info
    );
}

#[test]
fn v1_multi_segment_small_and_parallel_join() {
    let params = small(HashAlgo::Sha256);
    let data = content(64 * 5 + 33, 9);
    let info = check_v1(&data, params, 7);
    assert_eq!(info.segments().len(), 6);
    let ks = server_secret_v1(HashAlgo::Sha256, b"round trip secret");
    let layout = segment_layout_v1(data.len() as u64, &params).unwrap();
    let parts: Vec<_> = layout
        .iter()
        .map(|&(o, l)| {
            hash_segment_v1(&params, &ks, o, &data[o as usize..(o + l as u64) as usize]).unwrap()
        })
        .collect();
    assert_eq!(
        ContentInfoV1::from_segments(HashAlgo::Sha256, parts.clone()).unwrap(),
        info
    );
    // Joining refuses gaps, reordering, a wrong algorithm, or a first segment not at 0.
    let mut gap = parts.clone();
    gap.remove(2);
    assert!(matches!(
        ContentInfoV1::from_segments(HashAlgo::Sha256, gap),
        Err(PccrcError::Inconsistent(_))
    ));
    let mut swapped = parts.clone();
    swapped.swap(0, 1);
    assert!(ContentInfoV1::from_segments(HashAlgo::Sha256, swapped).is_err());
    assert!(ContentInfoV1::from_segments(HashAlgo::Sha384, parts.clone()).is_err());
    assert!(ContentInfoV1::from_segments(HashAlgo::Sha256, parts[1..].to_vec()).is_err());
    // A short segment in the middle is refused too.
    let mut short = parts.clone();
    short[1] = hash_segment_v1(&params, &ks, 64, &data[64..100]).unwrap();
    assert!(ContentInfoV1::from_segments(HashAlgo::Sha256, short).is_err());
}

#[test]
fn v1_settings_are_checked() {
    let ks = server_secret_v1(HashAlgo::Sha256, b"x");
    for (segment_size, block_size) in [(0, 16), (64, 0), (65, 16)] {
        let p = V1Params {
            algo: HashAlgo::Sha256,
            segment_size,
            block_size,
        };
        assert!(matches!(p.validate(), Err(PccrcError::BadParams(_))));
        assert!(ContentInfoV1Builder::new(p, ks).is_err());
        assert!(segment_layout_v1(10, &p).is_err());
    }
    assert!(V1Params::default().is_standard());
    assert!(!small(HashAlgo::Sha256).is_standard());
    // A segment's data may not exceed the segment size, nor be empty.
    assert!(hash_segment_v1(&small(HashAlgo::Sha256), &ks, 0, &[0u8; 65]).is_err());
    assert!(hash_segment_v1(&small(HashAlgo::Sha256), &ks, 0, &[]).is_err());
}

// ------------------------------------------------------------------------- round trips: V2

fn check_v2(data: &[u8], seg: &V2Segmentation, chunk: usize) -> ContentInfoV2 {
    let ks = server_secret_v2(b"round trip secret");
    let mut b = ContentInfoV2Builder::new(seg.clone(), ks).unwrap();
    for part in data.chunks(chunk.max(1)) {
        b.update(part).unwrap();
    }
    let info = b.finish().unwrap();
    let layout = seg.layout(data.len() as u64).unwrap();
    assert_eq!(info.segments().len(), layout.len());
    assert_eq!(info.content_range(), (0, data.len() as u64));
    for (s, &(off, len)) in info.segments().iter().zip(&layout) {
        assert_eq!((s.offset(), s.length()), (off, len));
        let bytes = &data[off as usize..off as usize + len as usize];
        assert_eq!(
            s.hash_of_data().as_bytes(),
            &sha2::Sha512::digest(bytes)[..32]
        );
        assert!(s.secret_matches(&ks));
        assert_eq!(s.id().len(), 32);
    }
    let blob = info.encode();
    assert_eq!(blob.len(), info.encoded_len());
    let parsed = ContentInfoV2::parse(&blob).expect("built blob parses");
    assert_eq!(parsed, info);
    assert_eq!(parsed.encode(), blob);
    info
}

#[test]
fn v2_round_trips() {
    let d = V2_DEFAULT_SEGMENT_SIZE as usize;
    let empty = check_v2(&[], &V2Segmentation::default(), 1);
    assert_eq!(
        empty.encode().len(),
        31,
        "no segments: header only, no chunk"
    );
    assert!(empty.chunk_sizes().is_empty());
    let one = check_v2(&[7], &V2Segmentation::default(), 1);
    assert_eq!(one.encode().len(), 31 + 5 + 68);
    for len in [d - 1, d, d + 1, 2 * d, 5 * d + 17] {
        for chunk in [1000usize, d, 3 * d] {
            check_v2(&content(len, len as u64), &V2Segmentation::default(), chunk);
        }
    }
    let max = check_v2(
        &content(3 * V2_MAX_SEGMENT_SIZE as usize, 11),
        &V2Segmentation::Fixed(V2_MAX_SEGMENT_SIZE),
        50_000,
    );
    assert_eq!(max.segments().len(), 3);
    let tiny = check_v2(&content(100, 12), &V2Segmentation::Fixed(1), 3);
    assert_eq!(tiny.segments().len(), 100);
    check_v2(
        &content(10, 13),
        &V2Segmentation::Explicit(vec![1, 2, 3, 4]),
        1,
    );
    check_v2(&[], &V2Segmentation::Explicit(vec![]), 1);
}

#[test]
fn v2_explicit_split_must_match_content() {
    let ks = server_secret_v2(b"s");
    let split = V2Segmentation::Explicit(vec![10, 20]);
    // Short content.
    let mut b = ContentInfoV2Builder::new(split.clone(), ks).unwrap();
    b.update(&[0u8; 29]).unwrap();
    assert_eq!(
        b.finish(),
        Err(PccrcError::SplitMismatch {
            expected: 30,
            got: 29
        })
    );
    // Content ending exactly at a segment boundary but before the split ends.
    let mut b = ContentInfoV2Builder::new(split.clone(), ks).unwrap();
    b.update(&[0u8; 10]).unwrap();
    assert_eq!(
        b.finish(),
        Err(PccrcError::SplitMismatch {
            expected: 30,
            got: 10
        })
    );
    // Long content fails as soon as it overflows.
    let mut b = ContentInfoV2Builder::new(split.clone(), ks).unwrap();
    b.update(&[0u8; 30]).unwrap();
    assert_eq!(
        b.update(&[0u8; 1]),
        Err(PccrcError::SplitMismatch {
            expected: 30,
            got: 31
        })
    );
    assert!(content_info_v2(&[0u8; 31], &split, &ks).is_err());
    assert!(split.layout(31).is_err());
    // Settings outside 1..=128 KiB are refused.
    for bad in [
        V2Segmentation::Fixed(0),
        V2Segmentation::Fixed(V2_MAX_SEGMENT_SIZE + 1),
        V2Segmentation::Explicit(vec![5, 0]),
        V2Segmentation::Explicit(vec![V2_MAX_SEGMENT_SIZE + 1]),
    ] {
        assert!(matches!(bad.validate(), Err(PccrcError::BadParams(_))));
        assert!(ContentInfoV2Builder::new(bad, ks).is_err());
    }
    assert!(hash_segment_v2(&ks, 0, &[]).is_err());
    assert!(hash_segment_v2(&ks, 0, &vec![0u8; V2_MAX_SEGMENT_SIZE as usize + 1]).is_err());
    assert!(ContentInfoV2::from_segments(vec![hash_segment_v2(&ks, 5, &[1]).unwrap()]).is_err());
}

#[test]
fn hash_value_basics() {
    let h = hv(&[0xde, 0xad]);
    assert_eq!(h.to_string(), "dead");
    assert_eq!(format!("{h:?}"), "HashValue(dead)");
    assert_eq!(h.as_ref(), &[0xde, 0xad]);
    assert!(!h.is_empty());
    assert_eq!(HashAlgo::from_code(0x800D), Some(HashAlgo::Sha384));
    assert_eq!(HashAlgo::from_code(0x800B), None);
    assert_eq!(HashAlgo::Sha512.code(), 0x800E);
}

#[test]
fn segments_from_external_hashes_equal_hashed_segments() {
    let data = content(3 * 4096 + 100, 11);
    for algo in [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512] {
        let params = V1Params { algo, segment_size: 4 * 4096, block_size: 4096 };
        let ks = server_secret_v1(algo, b"pass");
        let want = hash_segment_v1(&params, &ks, 0, &data).unwrap();
        let blocks: Vec<HashValue> = data
            .chunks(4096)
            .map(|b| {
                let mut h = RunningHash::v1(algo);
                h.update(b);
                h.finish()
            })
            .collect();
        let len = u32::try_from(data.len()).unwrap();
        let got = SegmentV1::from_block_hashes(algo, 4096, 0, len, blocks.clone(), &ks).unwrap();
        assert_eq!(got, want);
        // one hash missing, one of the wrong algorithm, empty segment: errors, no panic
        let short = blocks.get(..3).unwrap().to_vec();
        assert!(SegmentV1::from_block_hashes(algo, 4096, 0, len, short, &ks).is_err());
        let mut wrong = blocks.clone();
        wrong[0] = hv(&[0u8; 20]);
        assert!(SegmentV1::from_block_hashes(algo, 4096, 0, len, wrong, &ks).is_err());
        assert!(SegmentV1::from_block_hashes(algo, 4096, 0, 0, vec![], &ks).is_err());
        assert!(SegmentV1::from_block_hashes(algo, 0, 0, len, blocks, &ks).is_err());
    }
    let ks = server_secret_v2(b"pass");
    for len in [1usize, 100, 65536, 131072] {
        let d = content(len, len as u64);
        let want = hash_segment_v2(&ks, 4096, &d).unwrap();
        let mut h = RunningHash::v2();
        h.update(&d);
        let hod = h.finish();
        assert_eq!(hod.len(), 32);
        let got = SegmentV2::from_hod(4096, u32::try_from(len).unwrap(), hod, &ks).unwrap();
        assert_eq!(got, want);
    }
    let hod = hv(&[1u8; 32]);
    assert!(SegmentV2::from_hod(0, 0, hod, &ks).is_err());
    assert!(SegmentV2::from_hod(0, 131073, hod, &ks).is_err());
    assert!(SegmentV2::from_hod(0, 10, hv(&[1u8; 64]), &ks).is_err());
}
