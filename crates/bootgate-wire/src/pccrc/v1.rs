//! Content Information version 1.0 (MS-PCCRC section 2.3): little-endian; segments of 32 MiB cut
//! into blocks of 64 KiB; SHA-256, SHA-384 or SHA-512.
//!
//! Layout: `Version` (u16 = 0x0100), `dwHashAlgo` (u32), `dwOffsetInFirstSegment` (u32),
//! `dwReadBytesInLastSegment` (u32), `cSegments` (u32), then `cSegments` SegmentDescriptions
//! (`ullOffsetInContent` u64, `cbSegment` u32, `cbBlockSize` u32, `SegmentHashOfData`,
//! `SegmentSecret`), then `cSegments` SegmentContentBlocks (`cBlocks` u32, `cBlocks` block hashes).

use super::{HashAlgo, HashValue, Hasher, PccrcError, Reader, V1_BLOCK_SIZE, V1_SEGMENT_SIZE};

/// Size of the fixed header.
const HEADER_LEN: usize = 18;

/// Settings of the version 1.0 builder.
///
/// The specification fixes the segment size at 32 MiB and the block size at 64 KiB (the
/// [`Default`]); other sizes (a whole number of blocks per segment) exist for fast tests and are
/// not interoperable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V1Params {
    /// Hash algorithm (`dwHashAlgo`).
    pub algo: HashAlgo,
    /// Bytes per segment (every segment but the last).
    pub segment_size: u32,
    /// Bytes per block (every block but the last of a segment).
    pub block_size: u32,
}

impl Default for V1Params {
    fn default() -> Self {
        V1Params::new(HashAlgo::Sha256)
    }
}

impl V1Params {
    /// The specification's sizes with the given hash algorithm.
    pub const fn new(algo: HashAlgo) -> Self {
        V1Params {
            algo,
            segment_size: V1_SEGMENT_SIZE,
            block_size: V1_BLOCK_SIZE,
        }
    }

    /// Checks that the sizes are usable: both positive, a whole number of blocks per segment.
    pub fn validate(&self) -> Result<(), PccrcError> {
        if self.block_size == 0 || self.segment_size == 0 {
            return Err(PccrcError::BadParams(
                "segment and block sizes must be positive",
            ));
        }
        if !self.segment_size.is_multiple_of(self.block_size) {
            return Err(PccrcError::BadParams(
                "segment size must be a whole number of blocks",
            ));
        }
        Ok(())
    }

    /// Whether these are the specification's sizes.
    pub fn is_standard(&self) -> bool {
        self.segment_size == V1_SEGMENT_SIZE && self.block_size == V1_BLOCK_SIZE
    }
}

/// One version 1.0 segment: its description and its block hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentV1 {
    algo: HashAlgo,
    offset: u64,
    length: u32,
    block_size: u32,
    hod: HashValue,
    secret: HashValue,
    block_hashes: Vec<HashValue>,
}

impl SegmentV1 {
    /// A segment record from block hashes computed elsewhere (e.g. by a faster hash backend):
    /// checks that there is one hash of `algo`'s length per block of `length` bytes cut into
    /// `block_size` blocks, then derives HoD and the segment secret from `server_secret` (`Ks`).
    pub fn from_block_hashes(
        algo: HashAlgo,
        block_size: u32,
        offset: u64,
        length: u32,
        block_hashes: Vec<HashValue>,
        server_secret: &HashValue,
    ) -> Result<Self, PccrcError> {
        if block_size == 0 || length == 0 {
            return Err(PccrcError::BadParams(
                "a segment and its blocks cannot be empty",
            ));
        }
        if u64::try_from(block_hashes.len()).ok() != Some(blocks_in(length, block_size)) {
            return Err(PccrcError::Inconsistent(
                "block hash count differs from the segment's block count",
            ));
        }
        if block_hashes.iter().any(|h| h.len() != algo.digest_len()) {
            return Err(PccrcError::Inconsistent(
                "block hash length differs from the hash algorithm's",
            ));
        }
        let hod = hod_of(algo, &block_hashes);
        let secret = algo
            .alg()
            .segment_secret(server_secret.as_bytes(), &hod);
        Ok(SegmentV1 {
            algo,
            offset,
            length,
            block_size,
            hod,
            secret,
            block_hashes,
        })
    }

    /// Hash algorithm of every hash in this segment.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// `ullOffsetInContent`: where the segment starts in the content.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `cbSegment`: the segment's length in bytes.
    pub fn length(&self) -> u32 {
        self.length
    }

    /// `cbBlockSize`.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// `SegmentHashOfData` (HoD): hash of the concatenated block hashes.
    pub fn hash_of_data(&self) -> &HashValue {
        &self.hod
    }

    /// `SegmentSecret` (Kp = HMAC(Ks, HoD)).
    pub fn secret(&self) -> &HashValue {
        &self.secret
    }

    /// Block hashes listed for this segment, in order from block 0.
    pub fn block_hashes(&self) -> &[HashValue] {
        &self.block_hashes
    }

    /// Number of blocks the whole segment has (`ceil(cbSegment / cbBlockSize)`).
    pub fn total_blocks(&self) -> u64 {
        blocks_in(self.length, self.block_size)
    }

    /// Byte range `(start, end)` (end exclusive) of block `index` in the content, if it exists.
    pub fn block_range(&self, index: u64) -> Option<(u64, u64)> {
        if index >= self.total_blocks() {
            return None;
        }
        let within = index.checked_mul(u64::from(self.block_size))?;
        let end = (within + u64::from(self.block_size)).min(u64::from(self.length));
        Some((
            self.offset.checked_add(within)?,
            self.offset.checked_add(end)?,
        ))
    }

    /// Segment identifier HoHoDk = HMAC(Kp, HoD + "MS_P2P_CACHING\0" in UTF-16LE).
    pub fn id(&self) -> HashValue {
        self.algo.alg().segment_id(&self.secret, &self.hod)
    }

    /// Whether every block hash is listed and their hash is the HoD.
    pub fn hod_matches_blocks(&self) -> bool {
        if u64::try_from(self.block_hashes.len()).ok() != Some(self.total_blocks()) {
            return false;
        }
        hod_of(self.algo, &self.block_hashes) == self.hod
    }

    /// Whether the segment secret is HMAC(`server_secret`, HoD).
    pub fn secret_matches(&self, server_secret: &HashValue) -> bool {
        self.algo
            .alg()
            .segment_secret(server_secret.as_bytes(), &self.hod)
            == self.secret
    }
}

fn blocks_in(length: u32, block_size: u32) -> u64 {
    if block_size == 0 {
        return 0;
    }
    u64::from(length).div_ceil(u64::from(block_size))
}

fn hod_of(algo: HashAlgo, block_hashes: &[HashValue]) -> HashValue {
    let mut h = algo.alg().hasher();
    for b in block_hashes {
        h.update(b.as_bytes());
    }
    h.finish()
}

/// Hashes one segment incrementally: feed it the segment's bytes in chunks of any size.
#[derive(Clone, Debug)]
pub struct SegmentHasherV1 {
    algo: HashAlgo,
    offset: u64,
    block_size: u32,
    len: u32,
    block_fill: u32,
    block: Hasher,
    hashes: Vec<HashValue>,
}

impl SegmentHasherV1 {
    /// A hasher for the segment that starts at content offset `offset`.
    pub fn new(algo: HashAlgo, block_size: u32, offset: u64) -> Result<Self, PccrcError> {
        if block_size == 0 {
            return Err(PccrcError::BadParams("block size must be positive"));
        }
        Ok(SegmentHasherV1 {
            algo,
            offset,
            block_size,
            len: 0,
            block_fill: 0,
            block: algo.alg().hasher(),
            hashes: Vec::new(),
        })
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds the next bytes of the segment. Fails (feeding nothing) past `u32::MAX` bytes.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), PccrcError> {
        let total = u32::try_from(data.len())
            .ok()
            .and_then(|n| self.len.checked_add(n))
            .ok_or(PccrcError::TooLarge("segment longer than 4 GiB"))?;
        while !data.is_empty() {
            let room = self.block_size.saturating_sub(self.block_fill);
            let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let (head, tail) = data.split_at(take);
            self.block.update(head);
            // `take <= room <= u32::MAX`.
            self.block_fill = self
                .block_fill
                .saturating_add(u32::try_from(take).unwrap_or(u32::MAX));
            data = tail;
            if self.block_fill >= self.block_size {
                self.close_block();
            }
        }
        self.len = total;
        Ok(())
    }

    fn close_block(&mut self) {
        let done = core::mem::replace(&mut self.block, self.algo.alg().hasher());
        self.hashes.push(done.finish());
        self.block_fill = 0;
    }

    /// Completes the segment record with the server secret `Ks`. Fails on an empty segment.
    pub fn finish(mut self, server_secret: &HashValue) -> Result<SegmentV1, PccrcError> {
        if self.len == 0 {
            return Err(PccrcError::BadParams("a segment cannot be empty"));
        }
        if self.block_fill > 0 {
            self.close_block();
        }
        let hod = hod_of(self.algo, &self.hashes);
        let secret = self
            .algo
            .alg()
            .segment_secret(server_secret.as_bytes(), &hod);
        Ok(SegmentV1 {
            algo: self.algo,
            offset: self.offset,
            length: self.len,
            block_size: self.block_size,
            hod,
            secret,
            block_hashes: self.hashes,
        })
    }
}

/// Hashes one whole segment (`data`, starting at content offset `offset`) into its record;
/// independent of every other segment, so segments can be hashed in parallel and joined with
/// [`ContentInfoV1::from_segments`]. `data` must be non-empty and at most `params.segment_size`.
pub fn hash_segment_v1(
    params: &V1Params,
    server_secret: &HashValue,
    offset: u64,
    data: &[u8],
) -> Result<SegmentV1, PccrcError> {
    params.validate()?;
    if u64::try_from(data.len()).unwrap_or(u64::MAX) > u64::from(params.segment_size) {
        return Err(PccrcError::BadParams(
            "segment data longer than the segment size",
        ));
    }
    let mut h = SegmentHasherV1::new(params.algo, params.block_size, offset)?;
    h.update(data)?;
    h.finish(server_secret)
}

/// Where the version 1.0 segments of `content_len` bytes lie: `(offset, length)` for each.
pub fn segment_layout_v1(
    content_len: u64,
    params: &V1Params,
) -> Result<Vec<(u64, u32)>, PccrcError> {
    params.validate()?;
    let size = u64::from(params.segment_size);
    let count = content_len.div_ceil(size);
    if count > u64::from(u32::MAX) {
        return Err(PccrcError::TooLarge("more than 2^32-1 segments"));
    }
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut offset = 0u64;
    while offset < content_len {
        let len = (content_len - offset).min(size);
        out.push((offset, u32::try_from(len).unwrap_or(params.segment_size)));
        offset += len;
    }
    Ok(out)
}

/// Builds version 1.0 Content Information from a stream of content bytes fed in chunks of any
/// size; keeps no content bytes, only hash states and the records the structure holds. After an
/// error, drop the builder.
#[derive(Clone, Debug)]
pub struct ContentInfoV1Builder {
    params: V1Params,
    server_secret: HashValue,
    fed: u64,
    current: Option<SegmentHasherV1>,
    segments: Vec<SegmentV1>,
}

impl ContentInfoV1Builder {
    /// A builder with the given settings and server secret `Ks` (see
    /// [`super::server_secret_v1`]).
    pub fn new(params: V1Params, server_secret: HashValue) -> Result<Self, PccrcError> {
        params.validate()?;
        Ok(ContentInfoV1Builder {
            params,
            server_secret,
            fed: 0,
            current: None,
            segments: Vec::new(),
        })
    }

    /// Content bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Feeds the next content bytes.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), PccrcError> {
        while !data.is_empty() {
            let mut cur = match self.current.take() {
                Some(c) => c,
                None => {
                    if u32::try_from(self.segments.len()).is_err() {
                        return Err(PccrcError::TooLarge("more than 2^32-1 segments"));
                    }
                    SegmentHasherV1::new(self.params.algo, self.params.block_size, self.fed)?
                }
            };
            let room = self.params.segment_size.saturating_sub(cur.len());
            let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let (head, tail) = data.split_at(take);
            cur.update(head)?;
            self.fed = self
                .fed
                .checked_add(u64::try_from(take).unwrap_or(u64::MAX))
                .ok_or(PccrcError::TooLarge("content longer than 2^64-1 bytes"))?;
            data = tail;
            if cur.len() >= self.params.segment_size {
                self.segments.push(cur.finish(&self.server_secret)?);
            } else {
                self.current = Some(cur);
            }
        }
        Ok(())
    }

    /// Completes the structure (whole content: `dwOffsetInFirstSegment` and
    /// `dwReadBytesInLastSegment` are 0, as IIS writes them).
    pub fn finish(mut self) -> Result<ContentInfoV1, PccrcError> {
        if let Some(cur) = self.current.take() {
            self.segments.push(cur.finish(&self.server_secret)?);
        }
        ContentInfoV1::from_segments(self.params.algo, self.segments)
    }
}

/// Builds version 1.0 Content Information of `data` in one call.
pub fn content_info_v1(
    data: &[u8],
    params: &V1Params,
    server_secret: &HashValue,
) -> Result<ContentInfoV1, PccrcError> {
    let mut b = ContentInfoV1Builder::new(*params, *server_secret)?;
    b.update(data)?;
    b.finish()
}

/// Version 1.0 Content Information.
///
/// Invariants (checked by [`ContentInfoV1::parse`] and [`ContentInfoV1::from_segments`]): every
/// hash has the algorithm's length; segments are non-empty and contiguous, share one block size,
/// and all but the last have one common length that is a whole number of blocks; each lists
/// between 1 and all of its block hashes; the range offsets lie within the first/last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentInfoV1 {
    algo: HashAlgo,
    offset_in_first_segment: u32,
    read_bytes_in_last_segment: u32,
    segments: Vec<SegmentV1>,
}

impl ContentInfoV1 {
    /// Joins segment records of a whole content (the first at offset 0), as produced by
    /// [`hash_segment_v1`], into a structure (offset and last-read fields 0).
    pub fn from_segments(algo: HashAlgo, segments: Vec<SegmentV1>) -> Result<Self, PccrcError> {
        if segments.iter().any(|s| s.algo != algo) {
            return Err(PccrcError::Inconsistent(
                "segments of another hash algorithm",
            ));
        }
        if segments.first().is_some_and(|s| s.offset != 0) {
            return Err(PccrcError::Inconsistent(
                "the first segment must start at offset 0",
            ));
        }
        let info = ContentInfoV1 {
            algo,
            offset_in_first_segment: 0,
            read_bytes_in_last_segment: 0,
            segments,
        };
        info.validate()?;
        Ok(info)
    }

    /// Hash algorithm (`dwHashAlgo`).
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// `dwOffsetInFirstSegment`.
    pub fn offset_in_first_segment(&self) -> u32 {
        self.offset_in_first_segment
    }

    /// `dwReadBytesInLastSegment` (0: the whole last segment).
    pub fn read_bytes_in_last_segment(&self) -> u32 {
        self.read_bytes_in_last_segment
    }

    /// The segments, in content order.
    pub fn segments(&self) -> &[SegmentV1] {
        &self.segments
    }

    /// The content range `(start, end)` (end exclusive) this structure describes. With
    /// `dwReadBytesInLastSegment` non-zero, the range ends that many bytes into the last segment,
    /// counted from the range start when there is one segment (as iPXE reads it).
    pub fn content_range(&self) -> (u64, u64) {
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            return (0, 0);
        };
        let start = first.offset + u64::from(self.offset_in_first_segment);
        let end = if self.read_bytes_in_last_segment == 0 {
            last.offset + u64::from(last.length)
        } else {
            let skip = if self.segments.len() == 1 {
                u64::from(self.offset_in_first_segment)
            } else {
                0
            };
            last.offset + skip + u64::from(self.read_bytes_in_last_segment)
        };
        (start, end)
    }

    /// Length of [`ContentInfoV1::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        let h = self.algo.digest_len();
        self.segments.iter().fold(HEADER_LEN, |acc, s| {
            acc + 16 + 2 * h + 4 + s.block_hashes.len() * h
        })
    }

    /// Encodes the structure.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&0x0100u16.to_le_bytes());
        out.extend_from_slice(&self.algo.code().to_le_bytes());
        out.extend_from_slice(&self.offset_in_first_segment.to_le_bytes());
        out.extend_from_slice(&self.read_bytes_in_last_segment.to_le_bytes());
        // The invariants bound both counts by u32::MAX.
        let count = u32::try_from(self.segments.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.offset.to_le_bytes());
            out.extend_from_slice(&s.length.to_le_bytes());
            out.extend_from_slice(&s.block_size.to_le_bytes());
            out.extend_from_slice(s.hod.as_bytes());
            out.extend_from_slice(s.secret.as_bytes());
        }
        for s in &self.segments {
            let n = u32::try_from(s.block_hashes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            for b in &s.block_hashes {
                out.extend_from_slice(b.as_bytes());
            }
        }
        out
    }

    /// Parses a version 1.0 blob (exactly: no bytes may follow). Never panics; allocations are
    /// bounded by the blob's length.
    pub fn parse(bytes: &[u8]) -> Result<Self, PccrcError> {
        let mut r = Reader::new(bytes);
        let version = r.u16_le("Version")?;
        if version != 0x0100 {
            let [minor, major] = version.to_le_bytes();
            return Err(PccrcError::UnsupportedVersion { minor, major });
        }
        let code = r.u32_le("dwHashAlgo")?;
        let algo = HashAlgo::from_code(code).ok_or(PccrcError::UnknownHashAlgo(code))?;
        let offset_in_first_segment = r.u32_le("dwOffsetInFirstSegment")?;
        let read_bytes_in_last_segment = r.u32_le("dwReadBytesInLastSegment")?;
        let count = r.u32_le("cSegments")?;
        let h = algo.digest_len();
        // Each segment needs at least its description and its block count.
        let min_per_segment = (16 + 2 * h + 4) as u64;
        if u64::from(count).saturating_mul(min_per_segment) > r.remaining() as u64 {
            return Err(PccrcError::Truncated("segments"));
        }
        let mut segments = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let offset = r.u64_le("ullOffsetInContent")?;
            let length = r.u32_le("cbSegment")?;
            let block_size = r.u32_le("cbBlockSize")?;
            let hod = r.hash(h, "SegmentHashOfData")?;
            let secret = r.hash(h, "SegmentSecret")?;
            segments.push(SegmentV1 {
                algo,
                offset,
                length,
                block_size,
                hod,
                secret,
                block_hashes: Vec::new(),
            });
        }
        for s in &mut segments {
            let n = r.u32_le("cBlocks")?;
            if u64::from(n).saturating_mul(h as u64) > r.remaining() as u64 {
                return Err(PccrcError::Truncated("BlockHashes"));
            }
            if u64::from(n) > blocks_in(s.length, s.block_size) {
                return Err(PccrcError::Inconsistent("more block hashes than blocks"));
            }
            let mut hashes = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            for _ in 0..n {
                hashes.push(r.hash(h, "BlockHashes")?);
            }
            s.block_hashes = hashes;
        }
        r.finish()?;
        let info = ContentInfoV1 {
            algo,
            offset_in_first_segment,
            read_bytes_in_last_segment,
            segments,
        };
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), PccrcError> {
        let h = self.algo.digest_len();
        if u32::try_from(self.segments.len()).is_err() {
            return Err(PccrcError::TooLarge("more than 2^32-1 segments"));
        }
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            if self.offset_in_first_segment != 0 || self.read_bytes_in_last_segment != 0 {
                return Err(PccrcError::Inconsistent("range offsets without segments"));
            }
            return Ok(());
        };
        let mut expected_offset = first.offset;
        let last_index = self.segments.len() - 1;
        for (i, s) in self.segments.iter().enumerate() {
            if s.length == 0 {
                return Err(PccrcError::Inconsistent("empty segment"));
            }
            if s.block_size == 0 {
                return Err(PccrcError::Inconsistent("zero block size"));
            }
            if s.block_size != first.block_size {
                return Err(PccrcError::Inconsistent(
                    "segments with different block sizes",
                ));
            }
            if s.hod.len() != h
                || s.secret.len() != h
                || s.block_hashes.iter().any(|b| b.len() != h)
            {
                return Err(PccrcError::Inconsistent(
                    "hash length differs from the algorithm's",
                ));
            }
            let n = s.block_hashes.len() as u64;
            if n == 0 || n > s.total_blocks() {
                return Err(PccrcError::Inconsistent(
                    "block hash count outside 1..=blocks in segment",
                ));
            }
            if s.offset != expected_offset {
                return Err(PccrcError::Inconsistent("segments not contiguous"));
            }
            expected_offset = s
                .offset
                .checked_add(u64::from(s.length))
                .ok_or(PccrcError::Inconsistent("segment ends past 2^64"))?;
            if i != last_index && (s.length != first.length || s.length % s.block_size != 0) {
                return Err(PccrcError::Inconsistent(
                    "non-final segments must share one length, a whole number of blocks",
                ));
            }
        }
        if self.offset_in_first_segment >= first.length {
            return Err(PccrcError::Inconsistent(
                "dwOffsetInFirstSegment outside the first segment",
            ));
        }
        let skip = if self.segments.len() == 1 {
            u64::from(self.offset_in_first_segment)
        } else {
            0
        };
        if skip + u64::from(self.read_bytes_in_last_segment) > u64::from(last.length) {
            return Err(PccrcError::Inconsistent(
                "dwReadBytesInLastSegment beyond the last segment",
            ));
        }
        Ok(())
    }
}
