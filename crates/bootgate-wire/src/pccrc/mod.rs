//! MS-PCCRC (Peer Content Caching and Retrieval: Content Identification): build and parse the
//! Content Information data structures, version 1.0 and version 2.0.
//!
//! Content Information is what a BranchCache-capable HTTP server answers (as
//! `Content-Encoding: peerdist`) instead of the content itself; iPXE uses it to fetch blocks from
//! peers and to verify them.
//!
//! # What is computed
//!
//! Notation: `+` is concatenation, `Hash` the structure's hash algorithm, `HMAC` the RFC 2104 HMAC
//! built on that hash, `Ks` the server secret.
//!
//! * `Ks = Hash(server passphrase)`; the passphrase is the raw binary server secret key (for
//!   version 2.0, `Hash` is truncated SHA-512, so `Ks` is 32 bytes).
//! * Version 1.0: content is cut into segments of 32 MiB, each cut into blocks of 64 KiB;
//!   `BlockHash = Hash(block)`, `HoD = Hash(BlockHash1 + ... + BlockHashN)`.
//! * Version 2.0: segments are not cut into blocks; `HoD = Hash(segment)`.
//! * `Kp = HMAC(Ks, HoD)` (the segment secret, stored in the structure).
//! * `HoHoDk = HMAC(Kp, HoD + "MS_P2P_CACHING\0" in UTF-16LE)` (the segment identifier used for
//!   discovery; not stored).
//!
//! "Truncated SHA-512" is the first 32 bytes of SHA-512; its HMAC is the full HMAC-SHA-512
//! truncated to 32 bytes (the inner hash is the full 64-byte SHA-512).
//!
//! # Where IIS and the specification disagree (IIS is followed; golden tests prove it)
//!
//! * Section 2.2 says `HoHoDk = HMAC(Kp, HoD + C2)` with C2 the NUL-terminated **ASCII** string
//!   `"MS_P2P_CACHING"`. The identifiers that IIS and Windows peers use are computed over the
//!   **UTF-16LE** string with its NUL (30 bytes).
//! * Sections 2.3.1.1 and 2.4.1.2 say the segment secret is `Hash(HoD + ServerSecret)`; it is
//!   `HMAC(Ks, HoD)` (as section 2.2 says).
//! * Section 2.3.1.1 says a single-segment range has length `dwReadBytesInLastSegment`, and example
//!   3.1 writes 128000 for a whole 128000-byte file; IIS writes 0 for a whole file, which section 2.3
//!   defines as "the whole last segment". The builders write 0; the parser accepts both.
//! * Section 2.4 (version 2.0) says `ullLengthOfRange` is zero for a whole resource: IIS agrees.
//!
//! # Shape of the API
//!
//! * [`server_secret_v1`] / [`server_secret_v2`] derive `Ks` from a passphrase.
//! * [`v1::ContentInfoV1Builder`] and [`v2::ContentInfoV2Builder`] are fed the content in chunks
//!   of any size; they never keep content bytes, only running hash states and the per-segment
//!   records that the structure itself holds.
//! * [`v1::hash_segment_v1`] and [`v2::hash_segment_v2`] hash one segment's bytes into one segment
//!   record, independently of the others (for hashing segments in parallel), and
//!   [`v1::ContentInfoV1::from_segments`] / [`v2::ContentInfoV2::from_segments`] assemble them;
//!   [`v1::segment_layout_v1`] / [`v2::V2Segmentation::layout`] say where the segments are.
//! * [`ContentInfo::parse`] parses either version; parsing is checked and never panics.
//! * [`content_information`] is the one-call form: bytes + version + passphrase -> encoded blob.

pub mod v1;
pub mod v2;

use core::fmt;

use sha2::Digest as _;

pub use v1::{
    content_info_v1, hash_segment_v1, segment_layout_v1, ContentInfoV1, ContentInfoV1Builder,
    SegmentHasherV1, SegmentV1, V1Params,
};
pub use v2::{
    content_info_v2, hash_segment_v2, ContentInfoV2, ContentInfoV2Builder, SegmentHasherV2,
    SegmentV2, V2Segmentation,
};

/// Segment size of version 1.0 Content Information (32 MiB).
pub const V1_SEGMENT_SIZE: u32 = 32 * 1024 * 1024;
/// Block size of version 1.0 Content Information (64 KiB).
pub const V1_BLOCK_SIZE: u32 = 64 * 1024;
/// Largest segment version 2.0 allows (`cbSegment` "MAY not exceed 128 kilobytes").
pub const V2_MAX_SEGMENT_SIZE: u32 = 128 * 1024;
/// Segment size bootgate's version 2.0 builder uses unless told otherwise.
pub const V2_DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
/// `bHashAlgo` of version 2.0: truncated SHA-512.
pub const V2_HASH_ALGO_TRUNCATED_SHA512: u8 = 0x04;
/// Length of every version 2.0 hash (truncated SHA-512).
pub const V2_HASH_LEN: usize = 32;

/// `"MS_P2P_CACHING"` in UTF-16LE with its NUL terminator: the constant of the segment ID.
const SEGMENT_ID_MAGIC: &[u8; 30] = &utf16le_magic();

/// Widens the ASCII `"MS_P2P_CACHING"` to UTF-16LE and appends the NUL (evaluated at compile time).
const fn utf16le_magic() -> [u8; 30] {
    let ascii = b"MS_P2P_CACHING";
    let mut out = [0u8; 30];
    let mut i = 0;
    while i < ascii.len() {
        out[2 * i] = ascii[i];
        i += 1;
    }
    out
}

/// Which Content Information version to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Version 1.0 (SHA-256 unless told otherwise; 32 MiB segments of 64 KiB blocks).
    V1,
    /// Version 2.0 (truncated SHA-512; segments of [`V2_DEFAULT_SEGMENT_SIZE`]).
    V2,
}

/// Hash algorithm of version 1.0 Content Information (`dwHashAlgo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HashAlgo {
    /// `0x800C`, 32-byte hashes.
    #[default]
    Sha256,
    /// `0x800D`, 48-byte hashes.
    Sha384,
    /// `0x800E`, 64-byte hashes.
    Sha512,
}

impl HashAlgo {
    /// The `dwHashAlgo` value.
    pub const fn code(self) -> u32 {
        match self {
            HashAlgo::Sha256 => 0x800C,
            HashAlgo::Sha384 => 0x800D,
            HashAlgo::Sha512 => 0x800E,
        }
    }

    /// The algorithm of a `dwHashAlgo` value, if known.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            0x800C => Some(HashAlgo::Sha256),
            0x800D => Some(HashAlgo::Sha384),
            0x800E => Some(HashAlgo::Sha512),
            _ => None,
        }
    }

    /// Length of this algorithm's hashes in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
            HashAlgo::Sha512 => 64,
        }
    }

    pub(crate) const fn alg(self) -> Alg {
        match self {
            HashAlgo::Sha256 => Alg::Sha256,
            HashAlgo::Sha384 => Alg::Sha384,
            HashAlgo::Sha512 => Alg::Sha512,
        }
    }
}

/// A hash value of up to 64 bytes (SHA-256, SHA-384, SHA-512 or truncated SHA-512).
#[derive(Clone, Copy)]
pub struct HashValue {
    buf: [u8; 64],
    len: u8,
}

impl HashValue {
    /// A hash value holding `bytes`; `None` if longer than 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut buf = [0u8; 64];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(HashValue {
            buf,
            len: u8::try_from(bytes.len()).ok()?,
        })
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether this holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lower-case hexadecimal form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(self.len() * 2);
        for b in self.as_bytes() {
            s.push(hex_digit(b >> 4));
            s.push(hex_digit(b & 0x0f));
        }
        s
    }

    fn truncated(&self, len: usize) -> HashValue {
        let take = len.min(self.len());
        HashValue::from_slice(self.as_bytes().get(..take).unwrap_or(&[])).unwrap_or(HashValue {
            buf: [0u8; 64],
            len: 0,
        })
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0x0f)])
}

impl PartialEq for HashValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HashValue {}

impl core::hash::Hash for HashValue {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl AsRef<[u8]> for HashValue {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashValue({})", self.to_hex())
    }
}

impl fmt::Display for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why building or parsing Content Information failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PccrcError {
    /// The blob ends inside the named field.
    Truncated(&'static str),
    /// Version bytes other than 1.0 / 2.0 (the two bytes as they appear: minor, major).
    UnsupportedVersion { minor: u8, major: u8 },
    /// A `dwHashAlgo` / `bHashAlgo` value the specification does not define.
    UnknownHashAlgo(u32),
    /// A `bChunkType` other than 0.
    UnknownChunkType(u8),
    /// Bytes left after the last structure.
    TrailingBytes(usize),
    /// Fields that contradict each other (the text says which rule).
    Inconsistent(&'static str),
    /// Builder settings that cannot be used (the text says which).
    BadParams(&'static str),
    /// The content length differs from the sum of an explicit segment split.
    SplitMismatch {
        /// Sum of the requested segment lengths.
        expected: u64,
        /// Bytes actually fed (`> expected` as soon as the builder sees more).
        got: u64,
    },
    /// The content is too large to be described (more segments or blocks than the fields count).
    TooLarge(&'static str),
}

impl fmt::Display for PccrcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PccrcError::Truncated(field) => {
                write!(f, "content information truncated inside {field}")
            }
            PccrcError::UnsupportedVersion { minor, major } => {
                write!(f, "unsupported content information version {major}.{minor}")
            }
            PccrcError::UnknownHashAlgo(v) => write!(f, "unknown hash algorithm {v:#x}"),
            PccrcError::UnknownChunkType(t) => write!(f, "unknown chunk type {t:#x}"),
            PccrcError::TrailingBytes(n) => {
                write!(f, "{n} unexpected bytes after the content information")
            }
            PccrcError::Inconsistent(why) => write!(f, "inconsistent content information: {why}"),
            PccrcError::BadParams(why) => write!(f, "bad content information settings: {why}"),
            PccrcError::SplitMismatch { expected, got } => write!(
                f,
                "segment split covers {expected} bytes but the content has {got} bytes"
            ),
            PccrcError::TooLarge(why) => write!(f, "content too large: {why}"),
        }
    }
}

impl std::error::Error for PccrcError {}

/// Parsed Content Information of either version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentInfo {
    /// Version 1.0.
    V1(ContentInfoV1),
    /// Version 2.0.
    V2(ContentInfoV2),
}

impl ContentInfo {
    /// Parses a Content Information blob of either version (chosen by its first two bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, PccrcError> {
        match bytes {
            [0x00, 0x01, ..] => ContentInfoV1::parse(bytes).map(ContentInfo::V1),
            [0x00, 0x02, ..] => ContentInfoV2::parse(bytes).map(ContentInfo::V2),
            [minor, major, ..] => Err(PccrcError::UnsupportedVersion {
                minor: *minor,
                major: *major,
            }),
            _ => Err(PccrcError::Truncated("version")),
        }
    }

    /// Encodes the structure.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ContentInfo::V1(i) => i.encode(),
            ContentInfo::V2(i) => i.encode(),
        }
    }

    /// The content range described, as `(start, end)` byte offsets (end exclusive).
    pub fn content_range(&self) -> (u64, u64) {
        match self {
            ContentInfo::V1(i) => i.content_range(),
            ContentInfo::V2(i) => i.content_range(),
        }
    }
}

/// Server secret `Ks` of version 1.0 Content Information: `Hash(passphrase)` with the structure's
/// hash algorithm. The passphrase is the server's binary secret key, taken as raw bytes.
pub fn server_secret_v1(algo: HashAlgo, passphrase: &[u8]) -> HashValue {
    algo.alg().hash(&[passphrase])
}

/// Server secret `Ks` of version 2.0 Content Information: the truncated SHA-512 (32 bytes) of the
/// passphrase (raw bytes).
pub fn server_secret_v2(passphrase: &[u8]) -> HashValue {
    Alg::TruncSha512.hash(&[passphrase])
}

/// Builds the encoded Content Information of `data` in one call, with the default settings of
/// `version` (version 1.0: SHA-256; version 2.0: segments of [`V2_DEFAULT_SEGMENT_SIZE`]).
pub fn content_information(
    data: &[u8],
    version: Version,
    passphrase: &[u8],
) -> Result<Vec<u8>, PccrcError> {
    match version {
        Version::V1 => {
            let params = V1Params::default();
            let secret = server_secret_v1(params.algo, passphrase);
            content_info_v1(data, &params, &secret).map(|i| i.encode())
        }
        Version::V2 => {
            let secret = server_secret_v2(passphrase);
            content_info_v2(data, &V2Segmentation::default(), &secret).map(|i| i.encode())
        }
    }
}

/// Internal hash function selector (V1's three plus V2's truncated SHA-512).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alg {
    Sha256,
    Sha384,
    Sha512,
    TruncSha512,
}

impl Alg {
    /// Input block length of the underlying compression function (for HMAC).
    const fn block_len(self) -> usize {
        match self {
            Alg::Sha256 => 64,
            Alg::Sha384 | Alg::Sha512 | Alg::TruncSha512 => 128,
        }
    }

    pub(crate) const fn out_len(self) -> usize {
        match self {
            Alg::Sha256 => 32,
            Alg::Sha384 => 48,
            Alg::Sha512 => 64,
            Alg::TruncSha512 => V2_HASH_LEN,
        }
    }

    pub(crate) fn hasher(self) -> Hasher {
        match self {
            Alg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Alg::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Alg::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Alg::TruncSha512 => Hasher::TruncSha512(sha2::Sha512::new()),
        }
    }

    /// Hash of the concatenation of `parts`.
    pub(crate) fn hash(self, parts: &[&[u8]]) -> HashValue {
        let mut h = self.hasher();
        for p in parts {
            h.update(p);
        }
        h.finish()
    }

    /// Full-length (untruncated) hash of the concatenation of `parts`.
    fn hash_full(self, parts: &[&[u8]]) -> HashValue {
        match self {
            Alg::TruncSha512 => Alg::Sha512.hash(parts),
            other => other.hash(parts),
        }
    }

    /// RFC 2104 HMAC over the concatenation of `parts`; for truncated SHA-512, HMAC-SHA-512
    /// truncated to 32 bytes.
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> HashValue {
        let block_len = self.block_len();
        let mut k0 = [0u8; 128];
        if key.len() > block_len {
            let kh = self.hash_full(&[key]);
            for (d, s) in k0.iter_mut().zip(kh.as_bytes()) {
                *d = *s;
            }
        } else {
            for (d, s) in k0.iter_mut().zip(key) {
                *d = *s;
            }
        }
        let k0 = k0.get(..block_len).unwrap_or(&[]);
        let mut ipad = [0u8; 128];
        let mut opad = [0u8; 128];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(k0) {
            *i = k ^ 0x36;
            *o = k ^ 0x5c;
        }
        let ipad = ipad.get(..block_len).unwrap_or(&[]);
        let opad = opad.get(..block_len).unwrap_or(&[]);
        let mut inner_parts: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        inner_parts.push(ipad);
        inner_parts.extend_from_slice(parts);
        let inner = self.hash_full(&inner_parts);
        let outer = self.hash_full(&[opad, inner.as_bytes()]);
        outer.truncated(self.out_len())
    }

    /// Segment secret `Kp = HMAC(Ks, HoD)`.
    pub(crate) fn segment_secret(self, server_secret: &[u8], hod: &HashValue) -> HashValue {
        self.hmac(server_secret, &[hod.as_bytes()])
    }

    /// Segment identifier `HoHoDk = HMAC(Kp, HoD + "MS_P2P_CACHING\0" (UTF-16LE))`.
    pub(crate) fn segment_id(self, kp: &HashValue, hod: &HashValue) -> HashValue {
        self.hmac(kp.as_bytes(), &[hod.as_bytes(), SEGMENT_ID_MAGIC])
    }
}

/// A running hash of one of the [`Alg`] functions.
#[derive(Clone, Debug)]
pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    TruncSha512(sha2::Sha512),
}

impl Hasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) | Hasher::TruncSha512(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> HashValue {
        let empty = HashValue {
            buf: [0u8; 64],
            len: 0,
        };
        match self {
            Hasher::Sha256(h) => HashValue::from_slice(&h.finalize()),
            Hasher::Sha384(h) => HashValue::from_slice(&h.finalize()),
            Hasher::Sha512(h) => HashValue::from_slice(&h.finalize()),
            Hasher::TruncSha512(h) => {
                HashValue::from_slice(h.finalize().get(..V2_HASH_LEN).unwrap_or(&[]))
            }
        }
        .unwrap_or(empty)
    }
}

/// A running hash of the function a Content Information version uses for its content hashes
/// (version 1.0 block hashes with the structure's algorithm, version 2.0 HoD as truncated
/// SHA-512), on this crate's built-in backend; for hashing content elsewhere and joining the
/// results with [`SegmentV1::from_block_hashes`] / [`SegmentV2::from_hod`].
#[derive(Clone, Debug)]
pub struct RunningHash(Hasher);

impl RunningHash {
    /// A version 1.0 block hash with `algo`.
    pub fn v1(algo: HashAlgo) -> Self {
        RunningHash(algo.alg().hasher())
    }

    /// A version 2.0 segment hash (truncated SHA-512, 32 bytes).
    pub fn v2() -> Self {
        RunningHash(Alg::TruncSha512.hasher())
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The hash of everything fed.
    pub fn finish(self) -> HashValue {
        self.0.finish()
    }
}

/// A checked little/big-endian reader over a byte slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PccrcError> {
        if n > self.rest.len() {
            return Err(PccrcError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PccrcError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PccrcError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16_le(&mut self, field: &'static str) -> Result<u16, PccrcError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(crate) fn u32_le(&mut self, field: &'static str) -> Result<u32, PccrcError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64_le(&mut self, field: &'static str) -> Result<u64, PccrcError> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub(crate) fn u32_be(&mut self, field: &'static str) -> Result<u32, PccrcError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn u64_be(&mut self, field: &'static str) -> Result<u64, PccrcError> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(crate) fn hash(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<HashValue, PccrcError> {
        let b = self.take(len, field)?;
        HashValue::from_slice(b).ok_or(PccrcError::Inconsistent("hash longer than 64 bytes"))
    }

    pub(crate) fn finish(self) -> Result<(), PccrcError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(PccrcError::TrailingBytes(self.rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &HashValue) -> String {
        h.to_hex()
    }

    // RFC 4231 test case 2 (short key) and test case 6 (key longer than the block size).
    #[test]
    fn hmac_matches_rfc4231() {
        let msg = b"what do ya want for nothing?";
        assert_eq!(
            hex(&Alg::Sha256.hmac(b"Jefe", &[msg])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&Alg::Sha384.hmac(b"Jefe", &[&msg[..10], &msg[10..]])),
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649"
        );
        assert_eq!(
            hex(&Alg::Sha512.hmac(b"Jefe", &[msg])),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        // Truncated SHA-512: the full HMAC-SHA-512, first 32 bytes.
        assert_eq!(
            hex(&Alg::TruncSha512.hmac(b"Jefe", &[msg])),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        );
        let key = [0xaau8; 131];
        let msg = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(
            hex(&Alg::Sha256.hmac(&key, &[msg])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            hex(&Alg::Sha384.hmac(&key, &[msg])),
            "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
             0c2ef6ab4030fe8296248df163f44952"
        );
        assert_eq!(
            hex(&Alg::Sha512.hmac(&key, &[msg])),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
             6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
        );
    }

    #[test]
    fn segment_id_magic_is_utf16le_with_nul() {
        let expected: Vec<u8> = "MS_P2P_CACHING\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(SEGMENT_ID_MAGIC.as_slice(), expected.as_slice());
    }

    #[test]
    fn hash_value_bounds() {
        assert!(HashValue::from_slice(&[0u8; 65]).is_none());
        let h = HashValue::from_slice(&[1, 2, 0xab]).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.to_hex(), "0102ab");
        assert_eq!(h.truncated(2).as_bytes(), &[1, 2]);
        assert_ne!(h, HashValue::from_slice(&[1, 2]).unwrap());
    }
}
