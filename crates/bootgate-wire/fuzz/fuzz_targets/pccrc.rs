//! Any bytes through the MS-PCCRC Content Information parser (both versions): nothing may panic,
//! and whatever parses re-encodes to exactly the input bytes (the parser keeps every field,
//! including the range fields and the version 2.0 chunk grouping), and parses again to the same
//! structure. Every segment's id and block ranges are computed too (no arithmetic may overflow).
#![no_main]

use bootgate_wire::pccrc::ContentInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = ContentInfo::parse(data) else {
        return;
    };
    let encoded = info.encode();
    assert_eq!(encoded.as_slice(), data, "parse -> encode must give back the input");
    let again = ContentInfo::parse(&encoded).expect("an encoded structure parses");
    assert_eq!(again, info);
    let (start, end) = info.content_range();
    assert!(start <= end);
    match &info {
        ContentInfo::V1(i) => {
            for s in i.segments() {
                let _ = s.id();
                let _ = s.hod_matches_blocks();
                for b in 0..s.total_blocks().min(4) {
                    let _ = s.block_range(b);
                }
            }
        }
        ContentInfo::V2(i) => {
            for s in i.segments() {
                let _ = s.id();
            }
        }
    }
});
