//! Python glue of MS-PCCRC: `content_information(path, ...)` (file hashing on all cores, GIL
//! released, in `bootgate_io::hashing`), `content_information_bytes`, `parse_content_information`,
//! and `HashProgress` (progress / cancel shared with a running build).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bootgate_io::hashing::{self, Control, HashError, Spec};
use bootgate_wire::pccrc::{
    self, ContentInfo, HashAlgo, HashValue, V1Params, V2Segmentation, V1_BLOCK_SIZE, V1_SEGMENT_SIZE,
    V2_DEFAULT_SEGMENT_SIZE,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::error::{BootgateError, Error};

type Result<T> = PyResult<T>;

fn value(msg: String) -> PyErr {
    Error::Value(msg).into()
}

/// Progress of a running build (bytes hashed so far) and its cancel switch. Pass one to
/// `content_information(..., progress=p)` and read `p.bytes_done` from another thread.
#[derive(Debug, Default)]
#[pyclass(module = "bootgate._native", name = "HashProgress", frozen)]
pub struct PyHashProgress {
    done: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
}

#[pymethods]
impl PyHashProgress {
    #[new]
    fn new() -> Self {
        PyHashProgress::default()
    }

    #[getter]
    fn bytes_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Asks the build to stop at its next read (it then raises `BootgateError`).
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

fn algo_of(name: &str) -> Result<HashAlgo> {
    match name.to_ascii_lowercase().replace('-', "").as_str() {
        "sha256" => Ok(HashAlgo::Sha256),
        "sha384" => Ok(HashAlgo::Sha384),
        "sha512" => Ok(HashAlgo::Sha512),
        _ => Err(value(format!("hash_algo: {name:?} is not one of sha256, sha384, sha512"))),
    }
}

fn algo_name(a: HashAlgo) -> &'static str {
    match a {
        HashAlgo::Sha256 => "sha256",
        HashAlgo::Sha384 => "sha384",
        HashAlgo::Sha512 => "sha512",
    }
}

fn spec_of(
    version: u8,
    hash_algo: &str,
    segment_size: Option<u32>,
    block_size: Option<u32>,
    v2_segments: Option<Vec<u32>>,
) -> Result<Spec> {
    match version {
        1 => {
            if v2_segments.is_some() {
                return Err(value("v2_segments applies to version 2 only".into()));
            }
            let params = V1Params {
                algo: algo_of(hash_algo)?,
                segment_size: segment_size.unwrap_or(V1_SEGMENT_SIZE),
                block_size: block_size.unwrap_or(V1_BLOCK_SIZE),
            };
            params.validate().map_err(|e| value(e.to_string()))?;
            Ok(Spec::V1(params))
        }
        2 => {
            if block_size.is_some() {
                return Err(value("block_size applies to version 1 only".into()));
            }
            let seg = match v2_segments {
                Some(v) => {
                    if segment_size.is_some() {
                        return Err(value("give segment_size or v2_segments, not both".into()));
                    }
                    V2Segmentation::Explicit(v)
                }
                None => V2Segmentation::Fixed(segment_size.unwrap_or(V2_DEFAULT_SEGMENT_SIZE)),
            };
            seg.validate().map_err(|e| value(e.to_string()))?;
            Ok(Spec::V2(seg))
        }
        other => Err(value(format!("version: {other} is not 1 or 2"))),
    }
}

fn hash_error(e: HashError) -> PyErr {
    match e {
        HashError::Io(e) => Error::Io(e).into(),
        HashError::Pccrc(e) => value(e.to_string()),
        other => BootgateError::new_err(other.to_string()),
    }
}

/// Content Information of the file at `path` (bytes), hashed with the GIL released on `threads`
/// cores (0 = all). Returns `(blob, info)` with `info` = {size, dev, ino, mtime_ns, segments}:
/// the identity of the file as hashed.
#[pyfunction]
#[pyo3(signature = (path, version, passphrase, *, hash_algo="sha256", segment_size=None, block_size=None,
                    v2_segments=None, threads=0, progress=None))]
#[allow(clippy::too_many_arguments)]
fn content_information<'py>(
    py: Python<'py>,
    path: PathBuf,
    version: u8,
    passphrase: &[u8],
    hash_algo: &str,
    segment_size: Option<u32>,
    block_size: Option<u32>,
    v2_segments: Option<Vec<u32>>,
    threads: usize,
    progress: Option<&PyHashProgress>,
) -> Result<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
    let spec = spec_of(version, hash_algo, segment_size, block_size, v2_segments)?;
    let pass = passphrase.to_vec();
    let done = progress.map(|p| p.done.clone());
    let cancel = progress.map(|p| p.cancel.clone());
    let built = py
        .allow_threads(|| {
            let control = Control { progress: done.as_deref(), cancel: cancel.as_deref() };
            hashing::content_information_file(&path, &spec, &pass, threads, control)
        })
        .map_err(hash_error)?;
    let info = PyDict::new(py);
    info.set_item("size", built.identity.size)?;
    info.set_item("dev", built.identity.dev)?;
    info.set_item("ino", built.identity.ino)?;
    info.set_item("mtime_ns", built.identity.mtime_ns)?;
    info.set_item("segments", built.segments)?;
    info.set_item("mapped", u8::from(built.read == "mmap"))?;
    Ok((PyBytes::new(py, &built.blob), info))
}

/// Content Information of in-memory `data` (single-threaded; for small contents and tests).
#[pyfunction]
#[pyo3(signature = (data, version, passphrase, *, hash_algo="sha256", segment_size=None, block_size=None,
                    v2_segments=None))]
#[allow(clippy::too_many_arguments)]
fn content_information_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    version: u8,
    passphrase: &[u8],
    hash_algo: &str,
    segment_size: Option<u32>,
    block_size: Option<u32>,
    v2_segments: Option<Vec<u32>>,
) -> Result<Bound<'py, PyBytes>> {
    let spec = spec_of(version, hash_algo, segment_size, block_size, v2_segments)?;
    let blob = py
        .allow_threads(|| match &spec {
            Spec::V1(p) => {
                pccrc::content_info_v1(data, p, &pccrc::server_secret_v1(p.algo, passphrase)).map(|i| i.encode())
            }
            Spec::V2(s) => pccrc::content_info_v2(data, s, &pccrc::server_secret_v2(passphrase)).map(|i| i.encode()),
        })
        .map_err(|e| value(e.to_string()))?;
    Ok(PyBytes::new(py, &blob))
}

/// The server secrets `Ks` of a passphrase: {"v1": SHA-256(p), "v1_sha384", "v1_sha512", "v2": trunc SHA-512(p)}.
#[pyfunction]
fn server_secrets<'py>(py: Python<'py>, passphrase: &[u8]) -> Result<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let put = |k: &str, v: HashValue| d.set_item(k, PyBytes::new(py, v.as_bytes()));
    put("v1", pccrc::server_secret_v1(HashAlgo::Sha256, passphrase))?;
    put("v1_sha384", pccrc::server_secret_v1(HashAlgo::Sha384, passphrase))?;
    put("v1_sha512", pccrc::server_secret_v1(HashAlgo::Sha512, passphrase))?;
    put("v2", pccrc::server_secret_v2(passphrase))?;
    Ok(d)
}

fn bytes<'py>(py: Python<'py>, h: &HashValue) -> Bound<'py, PyBytes> {
    PyBytes::new(py, h.as_bytes())
}

/// One segment of [`parse_content_information`]: `(offset, length, block_size)`, `[hod, secret, id]`
/// and the block hashes.
fn segment_dict<'py>(
    py: Python<'py>,
    (offset, length, block_size): (u64, u32, u32),
    [hod, secret, id]: [&HashValue; 3],
    block_hashes: &[HashValue],
) -> Result<Bound<'py, PyDict>> {
    let o = PyDict::new(py);
    o.set_item("offset", offset)?;
    o.set_item("length", length)?;
    o.set_item("block_size", block_size)?;
    o.set_item("hod", bytes(py, hod))?;
    o.set_item("secret", bytes(py, secret))?;
    o.set_item("id", bytes(py, id))?;
    o.set_item("block_hashes", PyList::new(py, block_hashes.iter().map(|b| bytes(py, b)))?)?;
    Ok(o)
}

/// Parses Content Information of either version into a dict (raises `WireError`):
/// {version: 1|2, hash_algo, content_range: (start, end), segments: [{offset, length,
/// block_size, hod, secret, id, block_hashes: [bytes]}]}. A version 2.0 segment is one block
/// whose hash is the segment's HoD (as iPXE and MS-PCCRR treat it).
#[pyfunction]
fn parse_content_information<'py>(py: Python<'py>, blob: &[u8]) -> Result<Bound<'py, PyDict>> {
    let info = ContentInfo::parse(blob).map_err(|e| PyErr::from(Error::Wire(e.to_string())))?;
    let d = PyDict::new(py);
    let segs = PyList::empty(py);
    let set = |o: &Bound<'py, PyDict>, k: &str, v: Bound<'py, PyAny>| o.set_item(k, v);
    match &info {
        ContentInfo::V1(i) => {
            set(&d, "version", 1u8.into_pyobject(py)?.into_any())?;
            d.set_item("hash_algo", algo_name(i.algo()))?;
            for s in i.segments() {
                let seg = (s.offset(), s.length(), s.block_size());
                let o = segment_dict(py, seg, [s.hash_of_data(), s.secret(), &s.id()], s.block_hashes())?;
                segs.append(o)?;
            }
        }
        ContentInfo::V2(i) => {
            set(&d, "version", 2u8.into_pyobject(py)?.into_any())?;
            d.set_item("hash_algo", "sha512/256-truncated")?;
            for s in i.segments() {
                let seg = (s.offset(), s.length(), s.length());
                let hod = s.hash_of_data();
                let o = segment_dict(py, seg, [hod, s.secret(), &s.id()], std::slice::from_ref(hod))?;
                segs.append(o)?;
            }
        }
    }
    d.set_item("content_range", info.content_range())?;
    d.set_item("segments", segs)?;
    Ok(d)
}

/// Number of hashing workers `threads=0` means on this machine.
#[pyfunction]
fn hash_threads() -> usize {
    hashing::effective_threads(0)
}

/// Which hash implementation content bytes go through (e.g. "libcrypto (OpenSSL 3.0.x ...)").
#[pyfunction]
fn hash_backend() -> String {
    hashing::backend()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHashProgress>()?;
    m.add_function(wrap_pyfunction!(content_information, m)?)?;
    m.add_function(wrap_pyfunction!(content_information_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(parse_content_information, m)?)?;
    m.add_function(wrap_pyfunction!(server_secrets, m)?)?;
    m.add_function(wrap_pyfunction!(hash_threads, m)?)?;
    m.add_function(wrap_pyfunction!(hash_backend, m)?)?;
    Ok(())
}
