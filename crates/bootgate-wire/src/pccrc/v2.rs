//! Content Information version 2.0 (MS-PCCRC section 2.4): big-endian; truncated SHA-512;
//! segments of varying size, not cut into blocks.
//!
//! Layout: `bMinorVersion` (0), `bMajorVersion` (2), `bHashAlgo` (4), `ullStartInContent` (u64),
//! `ullIndexOfFirstSegment` (u64), `dwOffsetInFirstSegment` (u32), `ullLengthOfRange` (u64; 0 =
//! the whole resource), then chunks: `bChunkType` (0), `dwChunkDataLength` (u32), and that many
//! bytes of SegmentDescriptions (`cbSegment` u32, `SegmentHashOfData` 32 bytes, `SegmentSecret`
//! 32 bytes).

use super::{
    Alg, HashValue, Hasher, PccrcError, Reader, V2_DEFAULT_SEGMENT_SIZE,
    V2_HASH_ALGO_TRUNCATED_SHA512, V2_HASH_LEN, V2_MAX_SEGMENT_SIZE,
};

/// Size of the fixed header.
const HEADER_LEN: usize = 31;
/// Size of one SegmentDescription.
const SEGMENT_DESC_LEN: usize = 4 + 2 * V2_HASH_LEN;
/// Size of one chunk header.
const CHUNK_HEADER_LEN: usize = 5;
/// Most segment descriptions one chunk can hold (`dwChunkDataLength` is a u32).
const MAX_SEGMENTS_PER_CHUNK: usize = (u32::MAX as usize) / SEGMENT_DESC_LEN;

/// How the version 2.0 builder cuts content into segments. Either way the cut depends only on
/// the content length and these settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum V2Segmentation {
    /// Segments of this many bytes, the last one shorter (1..=[`V2_MAX_SEGMENT_SIZE`]).
    Fixed(u32),
    /// Exactly these segment lengths, in order; their sum must equal the content length (each
    /// 1..=[`V2_MAX_SEGMENT_SIZE`]). IIS cut its test file 39390 + 60320.
    Explicit(Vec<u32>),
}

impl Default for V2Segmentation {
    fn default() -> Self {
        V2Segmentation::Fixed(V2_DEFAULT_SEGMENT_SIZE)
    }
}

impl V2Segmentation {
    /// Checks the segment lengths.
    pub fn validate(&self) -> Result<(), PccrcError> {
        let ok = |n: u32| (1..=V2_MAX_SEGMENT_SIZE).contains(&n);
        let good = match self {
            V2Segmentation::Fixed(n) => ok(*n),
            V2Segmentation::Explicit(v) => v.iter().all(|n| ok(*n)),
        };
        if good {
            Ok(())
        } else {
            Err(PccrcError::BadParams(
                "version 2.0 segment lengths must be 1..=131072 bytes",
            ))
        }
    }

    /// Where the segments of `content_len` bytes lie: `(offset, length)` for each.
    pub fn layout(&self, content_len: u64) -> Result<Vec<(u64, u32)>, PccrcError> {
        self.validate()?;
        match self {
            V2Segmentation::Fixed(size) => {
                let size64 = u64::from(*size);
                let count = usize::try_from(content_len.div_ceil(size64))
                    .map_err(|_| PccrcError::TooLarge("too many segments"))?;
                let mut out = Vec::with_capacity(count);
                let mut offset = 0u64;
                while offset < content_len {
                    let len = (content_len - offset).min(size64);
                    out.push((offset, u32::try_from(len).unwrap_or(*size)));
                    offset += len;
                }
                Ok(out)
            }
            V2Segmentation::Explicit(lengths) => {
                let expected = explicit_total(lengths);
                if expected != content_len {
                    return Err(PccrcError::SplitMismatch {
                        expected,
                        got: content_len,
                    });
                }
                let mut out = Vec::with_capacity(lengths.len());
                let mut offset = 0u64;
                for len in lengths {
                    out.push((offset, *len));
                    offset += u64::from(*len);
                }
                Ok(out)
            }
        }
    }
}

fn explicit_total(lengths: &[u32]) -> u64 {
    lengths
        .iter()
        .fold(0u64, |acc, n| acc.saturating_add(u64::from(*n)))
}

/// One version 2.0 segment description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentV2 {
    offset: u64,
    length: u32,
    hod: HashValue,
    secret: HashValue,
}

impl SegmentV2 {
    /// A segment record from its HoD (truncated SHA-512 of the segment's bytes) computed
    /// elsewhere (e.g. by a faster hash backend): checks the length (1..=[`V2_MAX_SEGMENT_SIZE`])
    /// and the HoD's size, then derives the segment secret from `server_secret` (`Ks`).
    pub fn from_hod(
        offset: u64,
        length: u32,
        hod: HashValue,
        server_secret: &HashValue,
    ) -> Result<Self, PccrcError> {
        if !(1..=V2_MAX_SEGMENT_SIZE).contains(&length) {
            return Err(PccrcError::BadParams(
                "version 2.0 segment lengths must be 1..=131072 bytes",
            ));
        }
        if hod.len() != V2_HASH_LEN {
            return Err(PccrcError::Inconsistent(
                "version 2.0 HoD must be 32 bytes",
            ));
        }
        let secret = Alg::TruncSha512.segment_secret(server_secret.as_bytes(), &hod);
        Ok(SegmentV2 {
            offset,
            length,
            hod,
            secret,
        })
    }

    /// Where the segment starts in the content (from `ullStartInContent` and the lengths of the
    /// segments before it).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `cbSegment`.
    pub fn length(&self) -> u32 {
        self.length
    }

    /// `SegmentHashOfData` (HoD): truncated SHA-512 of the segment's bytes.
    pub fn hash_of_data(&self) -> &HashValue {
        &self.hod
    }

    /// `SegmentSecret` (Kp = HMAC(Ks, HoD), truncated HMAC-SHA-512).
    pub fn secret(&self) -> &HashValue {
        &self.secret
    }

    /// Segment identifier HoHoDk = HMAC(Kp, HoD + "MS_P2P_CACHING\0" in UTF-16LE).
    pub fn id(&self) -> HashValue {
        Alg::TruncSha512.segment_id(&self.secret, &self.hod)
    }

    /// Whether `data` hashes to this segment's HoD.
    pub fn hod_matches(&self, data: &[u8]) -> bool {
        Alg::TruncSha512.hash(&[data]) == self.hod
    }

    /// Whether the segment secret is HMAC(`server_secret`, HoD).
    pub fn secret_matches(&self, server_secret: &HashValue) -> bool {
        Alg::TruncSha512.segment_secret(server_secret.as_bytes(), &self.hod) == self.secret
    }
}

/// Hashes one segment incrementally: feed it the segment's bytes in chunks of any size.
#[derive(Clone, Debug)]
pub struct SegmentHasherV2 {
    offset: u64,
    len: u32,
    hasher: Hasher,
}

impl SegmentHasherV2 {
    /// A hasher for the segment that starts at content offset `offset`.
    pub fn new(offset: u64) -> Self {
        SegmentHasherV2 {
            offset,
            len: 0,
            hasher: Alg::TruncSha512.hasher(),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds the next bytes of the segment. Fails (feeding nothing) past
    /// [`V2_MAX_SEGMENT_SIZE`] bytes.
    pub fn update(&mut self, data: &[u8]) -> Result<(), PccrcError> {
        let total = u32::try_from(data.len())
            .ok()
            .and_then(|n| self.len.checked_add(n))
            .filter(|t| *t <= V2_MAX_SEGMENT_SIZE)
            .ok_or(PccrcError::TooLarge(
                "version 2.0 segment longer than 128 KiB",
            ))?;
        self.hasher.update(data);
        self.len = total;
        Ok(())
    }

    /// Completes the segment record with the server secret `Ks`. Fails on an empty segment.
    pub fn finish(self, server_secret: &HashValue) -> Result<SegmentV2, PccrcError> {
        if self.len == 0 {
            return Err(PccrcError::BadParams("a segment cannot be empty"));
        }
        let hod = self.hasher.finish();
        let secret = Alg::TruncSha512.segment_secret(server_secret.as_bytes(), &hod);
        Ok(SegmentV2 {
            offset: self.offset,
            length: self.len,
            hod,
            secret,
        })
    }
}

/// Hashes one whole segment (`data`, starting at content offset `offset`) into its record;
/// independent of every other segment, so segments can be hashed in parallel and joined with
/// [`ContentInfoV2::from_segments`]. `data` must hold 1..=[`V2_MAX_SEGMENT_SIZE`] bytes.
pub fn hash_segment_v2(
    server_secret: &HashValue,
    offset: u64,
    data: &[u8],
) -> Result<SegmentV2, PccrcError> {
    let mut h = SegmentHasherV2::new(offset);
    h.update(data)?;
    h.finish(server_secret)
}

/// Builds version 2.0 Content Information from a stream of content bytes fed in chunks of any
/// size; keeps no content bytes. After an error, drop the builder.
#[derive(Clone, Debug)]
pub struct ContentInfoV2Builder {
    server_secret: HashValue,
    segmentation: V2Segmentation,
    next_explicit: usize,
    fed: u64,
    current: Option<(SegmentHasherV2, u32)>,
    segments: Vec<SegmentV2>,
}

impl ContentInfoV2Builder {
    /// A builder with the given segmentation and server secret `Ks` (see
    /// [`super::server_secret_v2`]).
    pub fn new(segmentation: V2Segmentation, server_secret: HashValue) -> Result<Self, PccrcError> {
        segmentation.validate()?;
        Ok(ContentInfoV2Builder {
            server_secret,
            segmentation,
            next_explicit: 0,
            fed: 0,
            current: None,
            segments: Vec::new(),
        })
    }

    /// Content bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Feeds the next content bytes. With an explicit split, fails as soon as the content is
    /// longer than the split.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), PccrcError> {
        while !data.is_empty() {
            let (mut cur, target) = match self.current.take() {
                Some(c) => c,
                None => {
                    let target = match &self.segmentation {
                        V2Segmentation::Fixed(n) => *n,
                        V2Segmentation::Explicit(v) => match v.get(self.next_explicit) {
                            Some(n) => {
                                self.next_explicit += 1;
                                *n
                            }
                            None => {
                                return Err(PccrcError::SplitMismatch {
                                    expected: explicit_total(v),
                                    got: self
                                        .fed
                                        .saturating_add(u64::try_from(data.len()).unwrap_or(0)),
                                })
                            }
                        },
                    };
                    (SegmentHasherV2::new(self.fed), target)
                }
            };
            let room = target.saturating_sub(cur.len());
            let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let (head, tail) = data.split_at(take);
            cur.update(head)?;
            self.fed = self
                .fed
                .checked_add(u64::try_from(take).unwrap_or(u64::MAX))
                .ok_or(PccrcError::TooLarge("content longer than 2^64-1 bytes"))?;
            data = tail;
            if cur.len() >= target {
                self.segments.push(cur.finish(&self.server_secret)?);
            } else {
                self.current = Some((cur, target));
            }
        }
        Ok(())
    }

    /// Completes the structure (whole content: start, index, offset and range length all 0, as
    /// IIS writes them; all segments in one chunk). With an explicit split, fails unless the
    /// content filled it exactly.
    pub fn finish(mut self) -> Result<ContentInfoV2, PccrcError> {
        if let V2Segmentation::Explicit(v) = &self.segmentation {
            if self.current.is_some() || self.next_explicit != v.len() {
                return Err(PccrcError::SplitMismatch {
                    expected: explicit_total(v),
                    got: self.fed,
                });
            }
        }
        if let Some((cur, _)) = self.current.take() {
            self.segments.push(cur.finish(&self.server_secret)?);
        }
        ContentInfoV2::from_segments(self.segments)
    }
}

/// Builds version 2.0 Content Information of `data` in one call.
pub fn content_info_v2(
    data: &[u8],
    segmentation: &V2Segmentation,
    server_secret: &HashValue,
) -> Result<ContentInfoV2, PccrcError> {
    let mut b = ContentInfoV2Builder::new(segmentation.clone(), *server_secret)?;
    b.update(data)?;
    b.finish()
}

/// Version 2.0 Content Information.
///
/// Invariants (checked by [`ContentInfoV2::parse`] and [`ContentInfoV2::from_segments`]):
/// segments are non-empty and contiguous from `ullStartInContent`; the range offsets lie within
/// them; the chunk grouping covers every segment, no chunk empty or over the u32 length limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentInfoV2 {
    start_in_content: u64,
    index_of_first_segment: u64,
    offset_in_first_segment: u32,
    length_of_range: u64,
    segments: Vec<SegmentV2>,
    /// Number of segment descriptions in each chunk, in order.
    chunks: Vec<usize>,
}

impl ContentInfoV2 {
    /// Joins segment records of a whole content (the first at offset 0), as produced by
    /// [`hash_segment_v2`], into a structure with every segment in one chunk (more only past the
    /// chunk length limit of about 63 million segments).
    pub fn from_segments(segments: Vec<SegmentV2>) -> Result<Self, PccrcError> {
        if segments.first().is_some_and(|s| s.offset != 0) {
            return Err(PccrcError::Inconsistent(
                "the first segment must start at offset 0",
            ));
        }
        let mut chunks = Vec::new();
        let mut left = segments.len();
        while left > 0 {
            let n = left.min(MAX_SEGMENTS_PER_CHUNK);
            chunks.push(n);
            left -= n;
        }
        let info = ContentInfoV2 {
            start_in_content: 0,
            index_of_first_segment: 0,
            offset_in_first_segment: 0,
            length_of_range: 0,
            segments,
            chunks,
        };
        info.validate()?;
        Ok(info)
    }

    /// `ullStartInContent`.
    pub fn start_in_content(&self) -> u64 {
        self.start_in_content
    }

    /// `ullIndexOfFirstSegment`.
    pub fn index_of_first_segment(&self) -> u64 {
        self.index_of_first_segment
    }

    /// `dwOffsetInFirstSegment`.
    pub fn offset_in_first_segment(&self) -> u32 {
        self.offset_in_first_segment
    }

    /// `ullLengthOfRange` (0: the whole resource).
    pub fn length_of_range(&self) -> u64 {
        self.length_of_range
    }

    /// The segments, in content order.
    pub fn segments(&self) -> &[SegmentV2] {
        &self.segments
    }

    /// Number of segment descriptions in each chunk, in order.
    pub fn chunk_sizes(&self) -> &[usize] {
        &self.chunks
    }

    /// The content range `(start, end)` (end exclusive) this structure describes.
    pub fn content_range(&self) -> (u64, u64) {
        let start = self.start_in_content + u64::from(self.offset_in_first_segment);
        let end = if self.length_of_range == 0 {
            self.segments
                .last()
                .map_or(self.start_in_content, |s| s.offset + u64::from(s.length))
        } else {
            start + self.length_of_range
        };
        (start, end)
    }

    /// Length of [`ContentInfoV2::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.chunks.len() * CHUNK_HEADER_LEN + self.segments.len() * SEGMENT_DESC_LEN
    }

    /// Encodes the structure.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&[0x00, 0x02, V2_HASH_ALGO_TRUNCATED_SHA512]);
        out.extend_from_slice(&self.start_in_content.to_be_bytes());
        out.extend_from_slice(&self.index_of_first_segment.to_be_bytes());
        out.extend_from_slice(&self.offset_in_first_segment.to_be_bytes());
        out.extend_from_slice(&self.length_of_range.to_be_bytes());
        let mut rest: &[SegmentV2] = &self.segments;
        for &n in &self.chunks {
            let (chunk, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            // The invariants keep every chunk under the u32 limit.
            let data_len = u32::try_from(chunk.len() * SEGMENT_DESC_LEN).unwrap_or(u32::MAX);
            out.push(0x00);
            out.extend_from_slice(&data_len.to_be_bytes());
            for s in chunk {
                out.extend_from_slice(&s.length.to_be_bytes());
                out.extend_from_slice(s.hod.as_bytes());
                out.extend_from_slice(s.secret.as_bytes());
            }
        }
        out
    }

    /// Parses a version 2.0 blob (exactly: no bytes may follow). Never panics; allocations are
    /// bounded by the blob's length. Segment lengths above 128 KiB are accepted (only the
    /// builder enforces that limit).
    pub fn parse(bytes: &[u8]) -> Result<Self, PccrcError> {
        let mut r = Reader::new(bytes);
        let minor = r.u8("bMinorVersion")?;
        let major = r.u8("bMajorVersion")?;
        if (minor, major) != (0, 2) {
            return Err(PccrcError::UnsupportedVersion { minor, major });
        }
        let algo = r.u8("bHashAlgo")?;
        if algo != V2_HASH_ALGO_TRUNCATED_SHA512 {
            return Err(PccrcError::UnknownHashAlgo(u32::from(algo)));
        }
        let start_in_content = r.u64_be("ullStartInContent")?;
        let index_of_first_segment = r.u64_be("ullIndexOfFirstSegment")?;
        let offset_in_first_segment = r.u32_be("dwOffsetInFirstSegment")?;
        let length_of_range = r.u64_be("ullLengthOfRange")?;
        let mut segments = Vec::with_capacity(r.remaining() / SEGMENT_DESC_LEN);
        let mut chunks = Vec::new();
        let mut offset = start_in_content;
        while r.remaining() > 0 {
            let chunk_type = r.u8("bChunkType")?;
            if chunk_type != 0 {
                return Err(PccrcError::UnknownChunkType(chunk_type));
            }
            let data_len = r.u32_be("dwChunkDataLength")?;
            let data_len = usize::try_from(data_len).unwrap_or(usize::MAX);
            if data_len == 0 || data_len % SEGMENT_DESC_LEN != 0 {
                return Err(PccrcError::Inconsistent(
                    "chunk data length is not a positive multiple of 68",
                ));
            }
            let mut cr = Reader::new(r.take(data_len, "chunkData")?);
            while cr.remaining() > 0 {
                let length = cr.u32_be("cbSegment")?;
                let hod = cr.hash(V2_HASH_LEN, "SegmentHashOfData")?;
                let secret = cr.hash(V2_HASH_LEN, "SegmentSecret")?;
                if length == 0 {
                    return Err(PccrcError::Inconsistent("empty segment"));
                }
                segments.push(SegmentV2 {
                    offset,
                    length,
                    hod,
                    secret,
                });
                offset = offset
                    .checked_add(u64::from(length))
                    .ok_or(PccrcError::Inconsistent("segment ends past 2^64"))?;
            }
            chunks.push(data_len / SEGMENT_DESC_LEN);
        }
        let info = ContentInfoV2 {
            start_in_content,
            index_of_first_segment,
            offset_in_first_segment,
            length_of_range,
            segments,
            chunks,
        };
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), PccrcError> {
        if self.chunks.iter().sum::<usize>() != self.segments.len()
            || self
                .chunks
                .iter()
                .any(|n| *n == 0 || *n > MAX_SEGMENTS_PER_CHUNK)
        {
            return Err(PccrcError::Inconsistent(
                "chunk grouping does not fit the segments",
            ));
        }
        let Some(first) = self.segments.first() else {
            if self.offset_in_first_segment != 0 || self.length_of_range != 0 {
                return Err(PccrcError::Inconsistent("range without segments"));
            }
            return Ok(());
        };
        let mut expected = self.start_in_content;
        for s in &self.segments {
            if s.length == 0 {
                return Err(PccrcError::Inconsistent("empty segment"));
            }
            if s.hod.len() != V2_HASH_LEN || s.secret.len() != V2_HASH_LEN {
                return Err(PccrcError::Inconsistent("hash length is not 32"));
            }
            if s.offset != expected {
                return Err(PccrcError::Inconsistent("segments not contiguous"));
            }
            expected = s
                .offset
                .checked_add(u64::from(s.length))
                .ok_or(PccrcError::Inconsistent("segment ends past 2^64"))?;
        }
        if self.offset_in_first_segment >= first.length {
            return Err(PccrcError::Inconsistent(
                "dwOffsetInFirstSegment outside the first segment",
            ));
        }
        let start = self.start_in_content + u64::from(self.offset_in_first_segment);
        if self.length_of_range != 0
            && start
                .checked_add(self.length_of_range)
                .is_none_or(|end| end > expected)
        {
            return Err(PccrcError::Inconsistent(
                "ullLengthOfRange reaches past the last segment",
            ));
        }
        Ok(())
    }
}
