//! Content Information (MS-PCCRC) of a file: streamed from disk, segments hashed across cores.
//!
//! The file is cut into work units on segment boundaries (version 1.0: one segment, 32 MiB;
//! version 2.0: a run of segments of about [`V2_UNIT_BYTES`]). Each unit is read with positioned
//! reads (`pread`) into a buffer of [`READ_CHUNK`] bytes and fed to the segment hashers of
//! `bootgate-wire`, so memory is `threads x READ_CHUNK` plus the segment records the structure
//! itself holds, whatever the file size. Units are hashed on a rayon pool of `threads` workers (or
//! in the calling thread when `threads == 1`) and joined in order.
//!
//! The file is checked before and after hashing (device, inode, size, mtime): a file that changes
//! underneath fails with [`HashError::Changed`] rather than yielding a structure of mixed content.
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
    PccrcError, SegmentHasherV1, SegmentHasherV2, SegmentV1, SegmentV2, V1Params, V2Segmentation,
};
use rayon::prelude::*;

/// Bytes read per `pread` (per worker buffer).
pub const READ_CHUNK: usize = 1024 * 1024;
/// Target size of one version 2.0 work unit (a run of whole segments).
pub const V2_UNIT_BYTES: u64 = 8 * 1024 * 1024;

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
    let (blob, segments) = build(&file, before.size, spec, passphrase, threads, control)?;
    let after = FileIdentity::of(&file.metadata()?);
    if after != before {
        return Err(HashError::Changed);
    }
    // A rename over the path during hashing leaves our descriptor on the old file: still a
    // consistent structure of the bytes we read, and the identity says which file that was.
    Ok(Built { blob, identity: before, segments })
}

/// A run of segments `(offset, length)` hashed by one worker.
type Unit = Vec<(u64, u32)>;

fn units_v2(layout: Vec<(u64, u32)>) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut cur: Unit = Vec::new();
    let mut bytes = 0u64;
    for seg in layout {
        bytes += u64::from(seg.1);
        cur.push(seg);
        if bytes >= V2_UNIT_BYTES {
            units.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        units.push(cur);
    }
    units
}

fn build(
    file: &File,
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
            let units: Vec<Unit> = layout.into_iter().map(|s| vec![s]).collect();
            let hash = |unit: &Unit| -> Result<Vec<SegmentV1>, HashError> {
                let mut out = Vec::with_capacity(unit.len());
                let mut buf = vec![0u8; READ_CHUNK];
                for &(offset, len) in unit {
                    let mut h = SegmentHasherV1::new(params.algo, params.block_size, offset)?;
                    feed(file, offset, len, &mut buf, control, |d| h.update(d))?;
                    out.push(h.finish(&secret)?);
                }
                Ok(out)
            };
            let segs = run(&units, threads, hash)?;
            let n = segs.len();
            Ok((ContentInfoV1::from_segments(params.algo, segs)?.encode(), n))
        }
        Spec::V2(segmentation) => {
            let secret = server_secret_v2(passphrase);
            let units = units_v2(segmentation.layout(size)?);
            let hash = |unit: &Unit| -> Result<Vec<SegmentV2>, HashError> {
                let mut out = Vec::with_capacity(unit.len());
                let Some(&(start, _)) = unit.first() else {
                    return Ok(out);
                };
                let total: u64 = unit.iter().map(|s| u64::from(s.1)).sum();
                let mut buf = vec![0u8; READ_CHUNK];
                let mut segs = unit.iter();
                let mut cur: Option<(SegmentHasherV2, u32)> = None;
                // Reads span segment boundaries (segments are at most 128 KiB).
                let mut step = |mut d: &[u8]| -> Result<(), PccrcError> {
                    while !d.is_empty() {
                        if cur.is_none() {
                            let &(off, len) =
                                segs.next().ok_or(PccrcError::Inconsistent("more bytes than segments"))?;
                            cur = Some((SegmentHasherV2::new(off), len));
                        }
                        if let Some((h, len)) = cur.as_mut() {
                            let room = usize::try_from(*len - h.len()).unwrap_or(usize::MAX);
                            let (head, tail) = d.split_at(room.min(d.len()));
                            h.update(head)?;
                            d = tail;
                            if h.len() == *len {
                                if let Some((h, _)) = cur.take() {
                                    out.push(h.finish(&secret)?);
                                }
                            }
                        }
                    }
                    Ok(())
                };
                feed_range(file, start, total, &mut buf, control, &mut step)?;
                Ok(out)
            };
            let segs = run(&units, threads, hash)?;
            let n = segs.len();
            Ok((ContentInfoV2::from_segments(segs)?.encode(), n))
        }
    }
}

/// Hashes every unit (on a pool when `threads > 1`) and joins their segments in order.
fn run<S: Send>(
    units: &[Unit],
    threads: usize,
    hash: impl Fn(&Unit) -> Result<Vec<S>, HashError> + Sync,
) -> Result<Vec<S>, HashError> {
    let parts: Vec<Vec<S>> = if threads <= 1 || units.len() <= 1 {
        units.iter().map(&hash).collect::<Result<_, _>>()?
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.min(units.len()))
            .thread_name(|i| format!("bootgate-hash-{i}"))
            .build()
            .map_err(|e| HashError::Pool(e.to_string()))?;
        pool.install(|| units.par_iter().map(&hash).collect::<Result<_, _>>())?
    };
    Ok(parts.into_iter().flatten().collect())
}

fn feed(
    file: &File,
    offset: u64,
    len: u32,
    buf: &mut [u8],
    control: Control<'_>,
    mut sink: impl FnMut(&[u8]) -> Result<(), PccrcError>,
) -> Result<(), HashError> {
    feed_range(file, offset, u64::from(len), buf, control, &mut sink)
}

/// Reads `len` bytes at `offset` in `buf`-sized pieces and hands each to `sink`.
fn feed_range(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    control: Control<'_>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), PccrcError>,
) -> Result<(), HashError> {
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        control.check()?;
        let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(buf.len());
        let piece = buf.get_mut(..want).ok_or(HashError::Changed)?;
        let n = match file.read_at(piece, pos) {
            Ok(0) => return Err(HashError::Changed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let got = piece.get(..n).ok_or(HashError::Changed)?;
        sink(got)?;
        control.advance(n);
        pos += u64::try_from(n).unwrap_or(u64::MAX);
    }
    Ok(())
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
