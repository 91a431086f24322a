//! Content Information (MS-PCCRC) of a file: streamed from disk, hashed across cores.
//!
//! The file is cut into work units of about [`UNIT_BYTES`]: runs of version 1.0 blocks (so the
//! blocks of one 32 MiB segment spread over every core, and a file smaller than a segment still
//! uses them all) or of version 2.0 segments. A worker reads as many whole blocks/segments as fit
//! in its [`READ_CHUNK`] buffer with one positioned read (`pread`) and hashes each straight from
//! the buffer in one call (no copy, no allocation per block); the hash backend is libcrypto's
//! SHA-2 (feature `openssl`, the default; see [`backend`]), else `bootgate-wire`'s. The block
//! hashes / HoDs are joined in file order into segment records by `bootgate-wire`
//! ([`SegmentV1::from_block_hashes`], [`SegmentV2::from_hod`]), which derives HoD, secrets and
//! encodes the structure. Memory is `threads x READ_CHUNK` plus the hashes the structure itself
//! holds, whatever the file size. Units run on a rayon pool of `threads` workers (or in the
//! calling thread when `threads == 1`).
//!
//! A file of at least [`READ_CHUNK`] bytes that nobody has open for writing is hashed straight
//! from a read-only mapping of its page cache instead (no copy into a buffer), under a read lease
//! that keeps writers and truncation away while it lasts: [`leased`] explains why that is safe
//! and when it falls back to `pread`. [`Built::read`] says which path a build took.
//!
//! The file is checked before and after hashing (device, inode, size, mtime): a file that changes
//! underneath fails with [`HashError::Changed`] rather than yielding a structure of mixed content.
//! A writer that opens the file while it is mapped breaks the lease: the build stops at its next
//! work unit with [`HashError::Changed`] and releases the lease, so the writer waits about a
//! millisecond.
//!
//! Progress (`bytes hashed so far`) is published in an [`AtomicU64`]; an [`AtomicBool`] set by
//! another thread cancels the build between reads ([`HashError::Cancelled`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bootgate_wire::pccrc::{
    segment_layout_v1, server_secret_v1, server_secret_v2, ContentInfoV1, ContentInfoV2, HashAlgo, HashValue,
    PccrcError, SegmentV1, SegmentV2, V1Params, V2Segmentation,
};
use rayon::prelude::*;

pub mod leased;
use leased::Lease;

/// Bytes read per `pread` (the per-worker buffer): small enough to stay in a core's L2 cache
/// between the kernel's copy and the hash reading it (larger reads measured slower).
pub const READ_CHUNK: usize = 128 * 1024;
/// Target size of one work unit (a run of version 1.0 blocks or version 2.0 segments).
pub const UNIT_BYTES: u64 = 2 * 1024 * 1024;

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// Version 1.0 with these parameters (the specification's sizes unless testing).
    V1(V1Params),
    /// Version 2.0 with this segmentation.
    V2(V2Segmentation),
}

/// Identity of the file that was hashed, as it was when hashing started (and ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The result of hashing one file.
#[derive(Clone, Debug)]
pub struct Built {
    /// The encoded Content Information.
    pub blob: Vec<u8>,
    /// The file as it was hashed.
    pub identity: FileIdentity,
    /// Number of segments.
    pub segments: usize,
    /// How the content was read: `"mmap"` (leased mapping) or `"pread"`.
    pub read: &'static str,
}

/// Why a build failed.
#[derive(Debug)]
pub enum HashError {
    /// Opening or reading the file failed.
    Io(io::Error),
    /// The settings or the content cannot be described (from `bootgate-wire`).
    Pccrc(PccrcError),
    /// The file changed (size, mtime, inode) while it was hashed, or ended early.
    Changed,
    /// The cancel flag was set.
    Cancelled,
    /// The worker pool could not be created.
    Pool(String),
}

impl std::fmt::Display for HashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashError::Io(e) => write!(f, "{e}"),
            HashError::Pccrc(e) => write!(f, "{e}"),
            HashError::Changed => write!(f, "the file changed while it was being hashed"),
            HashError::Cancelled => write!(f, "hashing was cancelled"),
            HashError::Pool(e) => write!(f, "cannot start hashing threads: {e}"),
        }
    }
}

impl std::error::Error for HashError {}

impl From<io::Error> for HashError {
    fn from(e: io::Error) -> Self {
        HashError::Io(e)
    }
}

impl From<PccrcError> for HashError {
    fn from(e: PccrcError) -> Self {
        HashError::Pccrc(e)
    }
}

/// Progress and cancellation shared with the caller (all optional).
#[derive(Debug, Default, Clone, Copy)]
pub struct Control<'a> {
    /// Receives the number of content bytes hashed so far (added to as units progress).
    pub progress: Option<&'a AtomicU64>,
    /// When it becomes true, the build stops at the next read with [`HashError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl Control<'_> {
    fn check(&self) -> Result<(), HashError> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            Err(HashError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn advance(&self, n: usize) {
        if let Some(p) = self.progress {
            p.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

/// Number of workers to use for `threads` (0 = every available core).
pub fn effective_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }
}

/// Builds the Content Information of the file at `path` with server `passphrase` (raw bytes;
/// `Ks` derives from it as `bootgate_wire::pccrc` documents), on `threads` workers (0 = all cores).
pub fn content_information_file(
    path: &Path,
    spec: &Spec,
    passphrase: &[u8],
    threads: usize,
    control: Control<'_>,
) -> Result<Built, HashError> {
    let file = File::open(path)?;
    let before = FileIdentity::of(&file.metadata()?);
    let lease = if before.size >= READ_CHUNK as u64 { Lease::new(&file, before.size) } else { None };
    let read = if lease.is_some() { "mmap" } else { "pread" };
    let src = Source { file: &file, lease: lease.as_ref() };
    let (blob, segments) = build(src, before.size, spec, passphrase, threads, control)?;
    drop(lease); // release the lease before the final check
    let after = FileIdentity::of(&file.metadata()?);
    if after != before {
        return Err(HashError::Changed);
    }
    // A rename over the path during hashing leaves our descriptor on the old file: still a
    // consistent structure of the bytes we read, and the identity says which file that was.
    Ok(Built { blob, identity: before, segments, read })
}

/// The content hash a build computes over file bytes: version 1.0 block hashes, or version 2.0
/// segment hashes (truncated SHA-512).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    V1(HashAlgo),
    V2,
}

/// Name of the hash backend this build uses for content bytes (HoD, HMACs and segment IDs
/// always come from `bootgate-wire`).
pub fn backend() -> String {
    #[cfg(feature = "openssl")]
    {
        format!("libcrypto ({})", openssl::version::version())
    }
    #[cfg(not(feature = "openssl"))]
    {
        String::from("sha2 (bootgate-wire)")
    }
}

/// A running content hash on the build's backend (stack state, no allocation).
enum Running {
    #[cfg(feature = "openssl")]
    Sha256(openssl::sha::Sha256),
    #[cfg(feature = "openssl")]
    Sha384(openssl::sha::Sha384),
    #[cfg(feature = "openssl")]
    Sha512(openssl::sha::Sha512, bool),
    #[cfg(not(feature = "openssl"))]
    Wire(bootgate_wire::pccrc::RunningHash),
}

impl Running {
    #[cfg(feature = "openssl")]
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::V1(HashAlgo::Sha256) => Running::Sha256(openssl::sha::Sha256::new()),
            Kind::V1(HashAlgo::Sha384) => Running::Sha384(openssl::sha::Sha384::new()),
            Kind::V1(HashAlgo::Sha512) => Running::Sha512(openssl::sha::Sha512::new(), false),
            Kind::V2 => Running::Sha512(openssl::sha::Sha512::new(), true),
        }
    }

    #[cfg(not(feature = "openssl"))]
    fn new(kind: Kind) -> Self {
        use bootgate_wire::pccrc::RunningHash;
        Running::Wire(match kind {
            Kind::V1(algo) => RunningHash::v1(algo),
            Kind::V2 => RunningHash::v2(),
        })
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            #[cfg(feature = "openssl")]
            Running::Sha256(h) => h.update(data),
            #[cfg(feature = "openssl")]
            Running::Sha384(h) => h.update(data),
            #[cfg(feature = "openssl")]
            Running::Sha512(h, _) => h.update(data),
            #[cfg(not(feature = "openssl"))]
            Running::Wire(h) => h.update(data),
        }
    }

    fn finish(self) -> Result<HashValue, HashError> {
        let v = match self {
            #[cfg(feature = "openssl")]
            Running::Sha256(h) => HashValue::from_slice(&h.finish()),
            #[cfg(feature = "openssl")]
            Running::Sha384(h) => HashValue::from_slice(&h.finish()),
            #[cfg(feature = "openssl")]
            Running::Sha512(h, truncate) => {
                let d = h.finish();
                HashValue::from_slice(if truncate { d.get(..32).unwrap_or(&[]) } else { &d })
            }
            #[cfg(not(feature = "openssl"))]
            Running::Wire(h) => Some(h.finish()),
        };
        v.ok_or(HashError::Pccrc(PccrcError::Inconsistent("digest longer than 64 bytes")))
    }
}

/// Hash of `data` in one call.
fn digest(kind: Kind, data: &[u8]) -> Result<HashValue, HashError> {
    let mut h = Running::new(kind);
    h.update(data);
    h.finish()
}

/// Work of one worker: the contiguous spans (blocks or segments) starting at `start`.
struct Unit {
    start: u64,
    lens: Vec<u32>,
}

/// Cuts consecutive spans `(offset, length)` into units of about [`UNIT_BYTES`] each.
fn units(spans: impl Iterator<Item = (u64, u32)>) -> Vec<Unit> {
    let mut out = Vec::new();
    let mut cur: Option<Unit> = None;
    let mut bytes = 0u64;
    for (offset, len) in spans {
        let unit = cur.get_or_insert_with(|| Unit { start: offset, lens: Vec::new() });
        unit.lens.push(len);
        bytes += u64::from(len);
        if bytes >= UNIT_BYTES {
            out.extend(cur.take());
            bytes = 0;
        }
    }
    out.extend(cur);
    out
}

/// The blocks of every segment of `layout`, in order: `(offset, length)`.
fn blocks_of(layout: &[(u64, u32)], block_size: u32) -> impl Iterator<Item = (u64, u32)> + '_ {
    layout.iter().flat_map(move |&(seg_off, seg_len)| {
        (0..seg_len.div_ceil(block_size)).map(move |i| {
            let within = i * block_size;
            (seg_off + u64::from(within), block_size.min(seg_len - within))
        })
    })
}

/// Where workers get the bytes: the open file, and its read lease when there is one (units are
/// then mapped rather than read).
#[derive(Clone, Copy)]
struct Source<'a> {
    file: &'a File,
    lease: Option<&'a Lease<'a>>,
}

fn build(
    src: Source<'_>,
    size: u64,
    spec: &Spec,
    passphrase: &[u8],
    threads: usize,
    control: Control<'_>,
) -> Result<(Vec<u8>, usize), HashError> {
    let threads = effective_threads(threads);
    match spec {
        Spec::V1(params) => {
            let secret = server_secret_v1(params.algo, passphrase);
            let layout = segment_layout_v1(size, params)?;
            // Units are runs of blocks, so the blocks of one segment spread over every core.
            let work = units(blocks_of(&layout, params.block_size));
            let mut hashes = run(&work, threads, Kind::V1(params.algo), src, control)?.into_iter();
            let mut segs = Vec::with_capacity(layout.len());
            for &(offset, len) in &layout {
                let n = usize::try_from(len.div_ceil(params.block_size)).unwrap_or(usize::MAX);
                let blocks: Vec<HashValue> = hashes.by_ref().take(n).collect();
                segs.push(SegmentV1::from_block_hashes(params.algo, params.block_size, offset, len, blocks, &secret)?);
            }
            let n = segs.len();
            Ok((ContentInfoV1::from_segments(params.algo, segs)?.encode(), n))
        }
        Spec::V2(segmentation) => {
            let secret = server_secret_v2(passphrase);
            let layout = segmentation.layout(size)?;
            let work = units(layout.iter().copied());
            let hods = run(&work, threads, Kind::V2, src, control)?;
            let segs = layout
                .iter()
                .zip(hods)
                .map(|(&(offset, len), hod)| SegmentV2::from_hod(offset, len, hod, &secret))
                .collect::<Result<Vec<_>, _>>()?;
            let n = segs.len();
            Ok((ContentInfoV2::from_segments(segs)?.encode(), n))
        }
    }
}

/// Hashes every unit (on a pool when `threads > 1`), one hash per span, joined in file order.
fn run(units: &[Unit], threads: usize, kind: Kind, src: Source<'_>, control: Control<'_>) -> Result<Vec<HashValue>, HashError> {
    let hash = |buf: &mut Vec<u8>, unit: &Unit| match src.lease {
        Some(lease) => hash_mapped(lease, src.file, unit, kind, buf, control),
        None => hash_spans(src.file, unit, kind, buf, control),
    };
    // With a mapping the buffer is only needed for a unit the kernel cannot populate.
    let cap = if src.lease.is_some() { 0 } else { READ_CHUNK };
    let new_buf = || vec![0u8; cap];
    let parts: Vec<Vec<HashValue>> = if threads <= 1 || units.len() <= 1 {
        let mut buf = new_buf();
        units.iter().map(|u| hash(&mut buf, u)).collect::<Result<_, _>>()?
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.min(units.len()))
            .thread_name(|i| format!("bootgate-hash-{i}"))
            .build()
            .map_err(|e| HashError::Pool(e.to_string()))?;
        pool.install(|| units.par_iter().map_init(new_buf, hash).collect::<Result<_, _>>())?
    };
    Ok(parts.into_iter().flatten().collect())
}

/// Hashes the spans of `unit` straight from a mapping of the unit, after checking that no writer
/// waits for the file; a unit the kernel cannot map or bring in is read with `pread` instead
/// (into `buf`, sized on first use). The mapping ends with the unit.
fn hash_mapped(
    lease: &Lease<'_>,
    file: &File,
    unit: &Unit,
    kind: Kind,
    buf: &mut Vec<u8>,
    control: Control<'_>,
) -> Result<Vec<HashValue>, HashError> {
    if !lease.intact() {
        return Err(HashError::Changed);
    }
    let as_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    let total = unit.lens.iter().map(|&n| as_usize(n)).fold(0usize, usize::saturating_add);
    let Some(view) = lease.view(unit.start, total) else {
        if buf.len() < READ_CHUNK {
            buf.resize(READ_CHUNK, 0);
        }
        return hash_spans(file, unit, kind, buf, control);
    };
    let mut out = Vec::with_capacity(unit.lens.len());
    let mut data = view.bytes();
    for &len in &unit.lens {
        control.check()?;
        let (span, tail) = data.split_at(as_usize(len).min(data.len()));
        out.push(digest(kind, span)?);
        control.advance(span.len());
        data = tail;
    }
    Ok(out)
}

/// Hashes the spans of `unit` straight from `buf`: as many whole spans as fit are read with one
/// `pread` and hashed in place; a span longer than `buf` is hashed piece by piece.
fn hash_spans(file: &File, unit: &Unit, kind: Kind, buf: &mut [u8], control: Control<'_>) -> Result<Vec<HashValue>, HashError> {
    let mut out = Vec::with_capacity(unit.lens.len());
    let mut pos = unit.start;
    let mut rest: &[u32] = &unit.lens;
    let cap = buf.len();
    let as_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    while let Some(&first) = rest.first() {
        control.check()?;
        if as_usize(first) > cap {
            let mut h = Running::new(kind);
            let mut left = as_usize(first);
            while left > 0 {
                control.check()?;
                let piece = buf.get_mut(..left.min(cap)).ok_or(HashError::Changed)?;
                read_exact_at(file, piece, pos)?;
                h.update(piece);
                control.advance(piece.len());
                pos += piece.len() as u64;
                left -= piece.len();
            }
            out.push(h.finish()?);
            rest = rest.get(1..).unwrap_or(&[]);
            continue;
        }
        let mut count = 0;
        let mut total = 0usize;
        for &len in rest {
            if total + as_usize(len) > cap {
                break;
            }
            total += as_usize(len);
            count += 1;
        }
        let filled = buf.get_mut(..total).ok_or(HashError::Changed)?;
        read_exact_at(file, filled, pos)?;
        let mut data: &[u8] = filled;
        for &len in rest.get(..count).unwrap_or(&[]) {
            let (span, tail) = data.split_at(as_usize(len).min(data.len()));
            out.push(digest(kind, span)?);
            data = tail;
        }
        control.advance(total);
        pos += total as u64;
        rest = rest.get(count..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Fills `buf` from `offset`; a file that ends first has changed.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), HashError> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(HashError::Changed),
        Err(e) => Err(e.into()),
    }
}

/// Server secrets of a passphrase: `(Ks of version 1.0 with algo, Ks of version 2.0)`.
pub fn server_secrets(algo: HashAlgo, passphrase: &[u8]) -> (HashValue, HashValue) {
    (server_secret_v1(algo, passphrase), server_secret_v2(passphrase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootgate_wire::pccrc::{content_info_v1, content_info_v2};
    use std::io::Write;

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

    fn temp_file(data: &[u8]) -> (std::path::PathBuf, File) {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "bootgate-hashing-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = File::create(&path).unwrap();
        f.write_all(data).unwrap();
        (path, f)
    }

    const PASS: &[u8] = b"bootgate test passphrase";

    #[test]
    fn file_build_equals_in_memory_build_any_thread_count() {
        let small = V1Params { algo: HashAlgo::Sha256, segment_size: 4096, block_size: 1024 };
        for len in [0usize, 1, 1023, 1024, 4096, 4097, 3 * 4096 + 17, 40_000] {
            let data = content(len, len as u64 + 7);
            let (path, _f) = temp_file(&data);
            for algo in [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512] {
                let params = V1Params { algo, ..small };
                let want = content_info_v1(&data, &params, &server_secret_v1(algo, PASS)).unwrap().encode();
                for threads in [1, 2, 3] {
                    let got =
                        content_information_file(&path, &Spec::V1(params), PASS, threads, Control::default()).unwrap();
                    assert_eq!(got.blob, want, "v1 len {len} {algo:?} threads {threads}");
                    assert_eq!(got.identity.size, len as u64);
                }
            }
            for seg in [V2Segmentation::Fixed(100), V2Segmentation::Fixed(65536)] {
                let want = content_info_v2(&data, &seg, &server_secret_v2(PASS)).unwrap().encode();
                for threads in [1, 2] {
                    let got =
                        content_information_file(&path, &Spec::V2(seg.clone()), PASS, threads, Control::default())
                            .unwrap();
                    assert_eq!(got.blob, want, "v2 len {len} {seg:?} threads {threads}");
                }
            }
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn v1_segments_split_over_units_and_blocks_larger_than_the_buffer() {
        // 5 MiB + 3 in 4 MiB segments: the first segment's blocks span two work units (hashed by
        // different workers) and the file is not a whole number of blocks.
        let data = content(5 * 1024 * 1024 + 3, 5);
        let (path, _f) = temp_file(&data);
        let cases = [
            V1Params { algo: HashAlgo::Sha256, segment_size: 4 << 20, block_size: 64 << 10 },
            V1Params { algo: HashAlgo::Sha512, segment_size: 4 << 20, block_size: 64 << 10 },
            // blocks of 512 KiB: longer than READ_CHUNK, hashed piece by piece
            V1Params { algo: HashAlgo::Sha384, segment_size: 2 << 20, block_size: 512 << 10 },
            V1Params::default(),
        ];
        for params in cases {
            let want = content_info_v1(&data, &params, &server_secret_v1(params.algo, PASS)).unwrap().encode();
            for threads in [1, 2, 4] {
                let progress = AtomicU64::new(0);
                let control = Control { progress: Some(&progress), cancel: None };
                let got = content_information_file(&path, &Spec::V1(params), PASS, threads, control).unwrap();
                assert_eq!(got.blob, want, "{params:?} threads {threads}");
                assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn mapped_build_equals_in_memory_build_and_a_writer_forces_pread() {
        // 5 MiB + 3 (several work units, a short last block): a file nobody writes is hashed from
        // its leased mapping; the same file held open for writing is read with pread; both give
        // the in-memory build's bytes.
        let data = content(5 * 1024 * 1024 + 3, 11);
        let (path, writer) = temp_file(&data);
        let v1 = V1Params { algo: HashAlgo::Sha256, segment_size: 4 << 20, block_size: 64 << 10 };
        let want_v1 = content_info_v1(&data, &v1, &server_secret_v1(v1.algo, PASS)).unwrap().encode();
        let seg = V2Segmentation::default();
        let want_v2 = content_info_v2(&data, &seg, &server_secret_v2(PASS)).unwrap().encode();
        let check = |read: &str| {
            for threads in [1, 2] {
                let progress = AtomicU64::new(0);
                let control = Control { progress: Some(&progress), cancel: None };
                let got = content_information_file(&path, &Spec::V1(v1), PASS, threads, control).unwrap();
                assert_eq!((got.blob.as_slice(), got.read), (want_v1.as_slice(), read), "v1 threads {threads}");
                assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
                let got = content_information_file(&path, &Spec::V2(seg.clone()), PASS, threads, Control::default())
                    .unwrap();
                assert_eq!((got.blob.as_slice(), got.read), (want_v2.as_slice(), read), "v2 threads {threads}");
            }
        };
        check("pread");
        drop(writer);
        check("mmap");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_writer_arriving_during_a_mapped_build_stops_it_as_changed() {
        // 256 MiB: the writer (a truncating open) arrives as soon as the first unit is hashed;
        // the build must end with Changed at its next unit, never with a structure or a SIGBUS,
        // and the writer must then get through. Repeated because the build may, rarely, finish
        // first on a fast machine: at least one run must see the break.
        let data = content(256 << 20, 21);
        let mut broke = 0;
        for attempt in 0..3 {
            let (path, writer) = temp_file(&data);
            drop(writer);
            let progress = AtomicU64::new(0);
            let result = std::thread::scope(|s| {
                let w = s.spawn(|| {
                    while progress.load(Ordering::Relaxed) == 0 {
                        std::thread::yield_now();
                    }
                    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).map(|f| f.metadata().map(|m| m.len()))
                });
                let control = Control { progress: Some(&progress), cancel: None };
                let r = content_information_file(&path, &Spec::V1(V1Params::default()), PASS, 2, control);
                (r, w.join().unwrap())
            });
            let (r, truncated) = result;
            assert_eq!(truncated.unwrap().unwrap(), 0, "attempt {attempt}: the writer got through");
            match r {
                Err(HashError::Changed) => broke += 1,
                Ok(built) => assert_eq!(built.read, "mmap", "attempt {attempt}"),
                Err(e) => panic!("attempt {attempt}: {e}"),
            }
            std::fs::remove_file(&path).unwrap();
            if broke > 0 {
                break;
            }
        }
        assert!(broke > 0, "no build noticed the writer");
    }

    #[test]
    fn backend_is_named() {
        let name = backend();
        assert!(name.contains("libcrypto") || name.contains("sha2"), "{name}");
    }

    #[test]
    fn v2_units_span_many_segments_and_progress_counts_every_byte() {
        // 20 MiB + 5: several 8 MiB units of 64 KiB segments, the last one short.
        let data = content(20 * 1024 * 1024 + 5, 99);
        let (path, _f) = temp_file(&data);
        let seg = V2Segmentation::default();
        let want = content_info_v2(&data, &seg, &server_secret_v2(PASS)).unwrap().encode();
        let progress = AtomicU64::new(0);
        let got = content_information_file(
            &path,
            &Spec::V2(seg),
            PASS,
            2,
            Control { progress: Some(&progress), cancel: None },
        )
        .unwrap();
        assert_eq!(got.blob, want);
        assert_eq!(got.segments, data.len().div_ceil(65536));
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn cancel_and_missing_file_are_errors() {
        let data = content(100_000, 3);
        let (path, _f) = temp_file(&data);
        let cancel = AtomicBool::new(true);
        let r = content_information_file(
            &path,
            &Spec::V2(V2Segmentation::default()),
            PASS,
            1,
            Control { progress: None, cancel: Some(&cancel) },
        );
        assert!(matches!(r, Err(HashError::Cancelled)), "{r:?}");
        std::fs::remove_file(&path).unwrap();
        let r = content_information_file(&path, &Spec::V1(V1Params::default()), PASS, 1, Control::default());
        assert!(matches!(r, Err(HashError::Io(_))), "{r:?}");
        let r = content_information_file(
            std::path::Path::new("/"),
            &Spec::V1(V1Params::default()),
            PASS,
            1,
            Control::default(),
        );
        assert!(r.is_err());
    }

    #[test]
    fn bad_settings_are_errors_not_panics() {
        let (path, _f) = temp_file(b"abc");
        let bad = V1Params { algo: HashAlgo::Sha256, segment_size: 1000, block_size: 3 };
        let r = content_information_file(&path, &Spec::V1(bad), PASS, 1, Control::default());
        assert!(matches!(r, Err(HashError::Pccrc(_))), "{r:?}");
        let r = content_information_file(&path, &Spec::V2(V2Segmentation::Fixed(0)), PASS, 1, Control::default());
        assert!(matches!(r, Err(HashError::Pccrc(_))), "{r:?}");
        let r = content_information_file(
            &path,
            &Spec::V2(V2Segmentation::Explicit(vec![1, 1])),
            PASS,
            1,
            Control::default(),
        );
        assert!(matches!(r, Err(HashError::Pccrc(PccrcError::SplitMismatch { .. }))), "{r:?}");
        std::fs::remove_file(&path).unwrap();
    }
}
