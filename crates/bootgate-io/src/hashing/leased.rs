//! A read-only mapping of a whole file, held under a read lease so that it is safe to hash from.
//!
//! Hashing straight from the page cache through a mapping saves the copy `pread` makes into a
//! buffer (about 0.1 s per GiB here, 10-15 % of a SHA-256 build). A plain mapping has one danger
//! a server cannot accept: if another process truncates the file in place, touching a page past
//! the new end raises `SIGBUS` and kills the process. So the mapping is made only under a
//! **read lease** (`fcntl(F_SETLEASE, F_RDLCK)`, Linux): while it is held, the kernel keeps any
//! other open for writing and any `truncate(2)` of the file waiting (up to
//! `/proc/sys/fs/lease-break-time`, 45 s by default) and marks the lease as being broken, which
//! [`LeasedMap::intact`] sees with `F_GETLEASE`. The builder checks the lease before every work
//! unit (about 2 MiB, a millisecond of hashing) and stops with "the file changed" as soon as a
//! writer waits, dropping the mapping and the lease so that writer goes on at once.
//!
//! The lease is refused (and the caller falls back to `pread`) when the file is open for writing
//! anywhere (a copy still in progress), when this process neither owns the file nor has
//! `CAP_LEASE`, on file systems without leases (NFS, FUSE), when the lease-break time is shorter
//! than [`MIN_BREAK_SECS`], or when some other code of this process handles `SIGURG`: the
//! kernel announces a lease break with a signal, and this module asks for `SIGURG` (`F_SETSIG`),
//! whose default action is to ignore it, instead of `SIGIO`, whose default action ends the
//! process. Pages are brought in with `madvise(MADV_POPULATE_READ)` (Linux 5.14), which reports
//! an I/O error as an error instead of a `SIGBUS`; where that fails the caller reads that unit
//! with `pread`. What remains is the case of a page reclaimed between populating and hashing it
//! (a millisecond) whose re-read then fails with a disk I/O error: that alone could still raise
//! `SIGBUS`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// `F_SETSIG` (asm-generic `fcntl.h`; not exported by the `libc` crate for glibc targets).
const F_SETSIG: libc::c_int = 10;
/// The shortest lease-break time (seconds) under which a mapping is used at all.
pub const MIN_BREAK_SECS: u64 = 5;

/// The whole file mapped read-only, under this process's read lease on its descriptor.
#[derive(Debug)]
pub struct LeasedMap<'a> {
    file: &'a File,
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only and lives as long as the value; the lease keeps other
// processes from changing or shrinking the file while it is checked intact (module docs), so
// shared references to its bytes from several threads are sound.
unsafe impl Send for LeasedMap<'_> {}
// SAFETY: as above; no method mutates through `&self`.
unsafe impl Sync for LeasedMap<'_> {}

fn lease_break_secs() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/lease-break-time")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// True when nothing in this process handles `SIGURG` (its action is the default, ignore, or
/// explicitly ignore): a lease-break signal is then discarded.
fn sigurg_unhandled() -> bool {
    // SAFETY: an all-zero `sigaction` is a valid out-parameter; a null new action only reads.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid signal number and pointers for the duration of the call.
    if unsafe { libc::sigaction(libc::SIGURG, std::ptr::null(), &mut old) } != 0 {
        return false;
    }
    old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN
}

impl<'a> LeasedMap<'a> {
    /// Leases and maps the `len` bytes of `file` (opened read-only), or `None` when any step is
    /// refused (the reasons are in the module docs; the caller then reads with `pread`).
    pub fn new(file: &'a File, len: u64) -> Option<Self> {
        if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")) {
            return None; // F_SETSIG's number is checked for these architectures only
        }
        let len = usize::try_from(len).ok().filter(|&n| n > 0)?;
        if lease_break_secs() < MIN_BREAK_SECS || !sigurg_unhandled() {
            return None;
        }
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor that `file` keeps open; integer arguments only.
        if unsafe { libc::fcntl(fd, F_SETSIG, libc::SIGURG) } != 0 {
            return None;
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } != 0 {
            // SAFETY: as above (back to the default notification signal).
            unsafe { libc::fcntl(fd, F_SETSIG, 0) };
            return None;
        }
        // SAFETY: a new read-only shared mapping of `len` bytes of an open descriptor; the kernel
        // picks the address. Failure is checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0)
        };
        let Some(ptr) = NonNull::new(ptr).filter(|p| p.as_ptr() != libc::MAP_FAILED) else {
            release(fd);
            return None;
        };
        let map = LeasedMap { file, ptr, len };
        // The size may have changed between the caller's stat and the lease: re-check under it.
        match file.metadata() {
            Ok(meta) if meta.len() == len as u64 => Some(map),
            _ => None, // dropping `map` unmaps and releases
        }
    }

    /// True while the lease is held and no writer waits for it.
    pub fn intact(&self) -> bool {
        // SAFETY: fcntl on the descriptor `self.file` keeps open.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) == libc::F_RDLCK }
    }

    /// Makes sure touching `[offset, offset + len)` cannot fault on a disk read: when every page
    /// is already in the page cache (`mincore`, the usual case for a file just written or served)
    /// the hash's own page faults map them (with the kernel's fault-around, cheaper than
    /// populating page by page); otherwise the pages are read in with `MADV_POPULATE_READ`,
    /// which reports an I/O error as an error. False when that fails (no `MADV_POPULATE_READ`
    /// before Linux 5.14, an I/O error, a range past the end): the caller then reads those bytes
    /// with `pread`, which reports the error properly.
    pub fn populate(&self, offset: u64, len: usize) -> bool {
        let Ok(start) = usize::try_from(offset) else { return false };
        let Some(end) = start.checked_add(len).filter(|&e| e <= self.len) else { return false };
        if start == end {
            return true;
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
        let aligned = start - start % page;
        let mut resident = vec![0u8; (end - aligned).div_ceil(page)];
        // SAFETY: the range lies inside our mapping (checked above) and starts on a page boundary;
        // `resident` has one byte per page of it, as mincore writes.
        let rc = unsafe {
            libc::mincore(self.ptr.as_ptr().cast::<u8>().add(aligned).cast(), end - aligned, resident.as_mut_ptr())
        };
        if rc == 0 && resident.iter().all(|&b| b & 1 == 1) {
            return true;
        }
        // SAFETY: the range lies inside our mapping (checked above) and starts on a page boundary;
        // MADV_POPULATE_READ only faults pages in, reporting failures as an error return.
        let rc = unsafe {
            libc::madvise(self.ptr.as_ptr().cast::<u8>().add(aligned).cast(), end - aligned, libc::MADV_POPULATE_READ)
        };
        rc == 0
    }

    /// The mapped bytes `[offset, offset + len)`, or `None` outside the file.
    pub fn bytes(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len).filter(|&e| e <= self.len)?;
        // SAFETY: `[start, end)` lies inside the live read-only mapping (checked above); the lease
        // keeps the file from being written or shrunk while the builder finds it intact.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(start), end - start) })
    }
}

fn release(fd: libc::c_int) {
    // SAFETY: fcntl on an open descriptor; integer arguments only.
    unsafe {
        libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK);
        libc::fcntl(fd, F_SETSIG, 0);
    }
}

impl Drop for LeasedMap<'_> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference into it outlives `self`
        // (every slice from `bytes` borrows `self`).
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
        release(self.file.as_raw_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn temp(name: &str, data: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("bootgate-leased-{}-{name}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(data).unwrap();
        path
    }

    #[test]
    fn maps_a_closed_file_and_reads_its_bytes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let path = temp("read", &data);
        let f = File::open(&path).unwrap();
        let map = LeasedMap::new(&f, data.len() as u64).expect("lease on a file nobody writes");
        assert!(map.intact());
        assert!(map.populate(5000, 100_000));
        assert_eq!(map.bytes(5000, 100_000).unwrap(), &data[5000..105_000]);
        assert!(map.bytes(199_999, 2).is_none());
        // Pages dropped from the page cache are read in by the populate path.
        // SAFETY: fadvise on an open descriptor; integer arguments only.
        assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
        assert!(map.populate(0, data.len()));
        assert_eq!(map.bytes(0, data.len()).unwrap(), &data[..]);
        assert!(!map.populate(199_999, 2));
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn refused_while_a_writer_has_the_file_open() {
        let path = temp("writer", b"some bytes");
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let f = File::open(&path).unwrap();
        assert!(LeasedMap::new(&f, 10).is_none(), "a file open for writing must not be mapped");
        drop(writer);
        assert!(LeasedMap::new(&f, 10).is_some());
        assert!(LeasedMap::new(&f, 0).is_none(), "nothing to map");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_truncating_writer_waits_for_the_mapping_and_the_break_is_seen() {
        let data = vec![7u8; 1 << 20];
        let path = temp("truncate", &data);
        let f = File::open(&path).unwrap();
        let map = LeasedMap::new(&f, data.len() as u64).expect("lease");
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (path, done) = (path.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                // Blocks in the kernel until the lease is released (or lease-break-time passes).
                let w = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
                done.store(true, Ordering::SeqCst);
                w.metadata().unwrap().len()
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while map.intact() {
            assert!(Instant::now() < deadline, "the lease break was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The writer is still held back: every mapped byte is intact and readable.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!done.load(Ordering::SeqCst), "the truncating open went ahead under the lease");
        assert!(map.bytes(0, data.len()).unwrap().iter().all(|&b| b == 7));
        drop(map);
        assert_eq!(writer.join().unwrap(), 0, "the writer proceeds once the mapping is dropped");
        std::fs::remove_file(&path).unwrap();
    }
}
