//! Read-only mappings of a file's pages, made under a read lease so that they are safe to hash from.
//!
//! Hashing straight from the page cache through a mapping saves the copy `pread` makes into a
//! buffer (about 0.1 s per GiB here, 10-15 % of a SHA-256 build). A plain mapping has one danger
//! a server cannot accept: if another process truncates the file in place, touching a page past
//! the new end raises `SIGBUS` and kills the process. So the mapping is made only under a
//! **read lease** (`fcntl(F_SETLEASE, F_RDLCK)`, Linux): while it is held, the kernel keeps any
//! other open for writing and any `truncate(2)` of the file waiting (up to
//! `/proc/sys/fs/lease-break-time`, 45 s by default) and marks the lease as being broken, which
//! [`Lease::intact`] sees with `F_GETLEASE`. The builder checks the lease before every work
//! unit (about 2 MiB, a millisecond of hashing) and stops with "the file changed" as soon as a
//! writer waits, dropping the lease so that writer goes on at once. Each unit is mapped on its
//! own ([`Lease::view`]) and unmapped when hashed, so the process's resident memory stays a few
//! units whatever the file size (a whole-file mapping would count every hashed page of the page
//! cache in the process's RSS until the end).
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

/// This process's read lease on `file` (a descriptor opened read-only) of `len` bytes.
#[derive(Debug)]
pub struct Lease<'a> {
    file: &'a File,
    len: u64,
}

/// One read-only mapping of `[offset, offset + len)` of a leased file; unmapped on drop.
#[derive(Debug)]
pub struct View<'l> {
    ptr: NonNull<libc::c_void>,
    map_len: usize,
    skip: usize,
    _lease: std::marker::PhantomData<&'l ()>,
}

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

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1)
}

impl<'a> Lease<'a> {
    /// Takes a read lease on `file` (opened read-only) of `len` bytes, or `None` when any step is
    /// refused (the reasons are in the module docs; the caller then reads with `pread`).
    pub fn new(file: &'a File, len: u64) -> Option<Self> {
        if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")) {
            return None; // F_SETSIG's number is checked for these architectures only
        }
        if len == 0 || usize::try_from(len).is_err() {
            return None;
        }
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
        let lease = Lease { file, len };
        // The size may have changed between the caller's stat and the lease: re-check under it.
        match file.metadata() {
            Ok(meta) if meta.len() == len => Some(lease),
            _ => None, // dropping `lease` releases it
        }
    }

    /// True while the lease is held and no writer waits for it.
    pub fn intact(&self) -> bool {
        // SAFETY: fcntl on the descriptor `self.file` keeps open.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) == libc::F_RDLCK }
    }

    /// Maps `[offset, offset + len)` read-only, made safe to touch: when every page is already in
    /// the page cache (`mincore`, the usual case for a file just written or served) the hash's
    /// own page faults map them (with the kernel's fault-around, cheaper than populating page by
    /// page); otherwise the pages are read in with `MADV_POPULATE_READ`, which reports an I/O
    /// error as an error. `None` when any of that fails (a range past the end, no
    /// `MADV_POPULATE_READ` before Linux 5.14, an I/O error): the caller then reads those bytes
    /// with `pread`, which reports the error properly.
    pub fn view(&self, offset: u64, len: usize) -> Option<View<'_>> {
        let end = offset.checked_add(u64::try_from(len).ok()?).filter(|&e| e <= self.len)?;
        if len == 0 {
            return None;
        }
        let page = page_size() as u64;
        let aligned = offset - offset % page;
        let map_len = usize::try_from(end - aligned).ok()?;
        let skip = usize::try_from(offset - aligned).ok()?;
        let at = libc::off_t::try_from(aligned).ok()?;
        // SAFETY: a new read-only shared mapping of `map_len` bytes of an open descriptor at a
        // page-aligned offset; the kernel picks the address. Failure is checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), map_len, libc::PROT_READ, libc::MAP_SHARED, self.file.as_raw_fd(), at)
        };
        let ptr = NonNull::new(ptr).filter(|p| p.as_ptr() != libc::MAP_FAILED)?;
        let view = View { ptr, map_len, skip, _lease: std::marker::PhantomData };
        let mut resident = vec![0u8; map_len.div_ceil(page_size())];
        // SAFETY: the whole new mapping; `resident` has one byte per page of it, as mincore writes.
        let rc = unsafe { libc::mincore(ptr.as_ptr(), map_len, resident.as_mut_ptr()) };
        if rc == 0 && resident.iter().all(|&b| b & 1 == 1) {
            return Some(view);
        }
        // SAFETY: the whole new mapping; MADV_POPULATE_READ only faults pages in, reporting
        // failures as an error return.
        let rc = unsafe { libc::madvise(ptr.as_ptr(), map_len, libc::MADV_POPULATE_READ) };
        (rc == 0).then_some(view) // on failure, dropping `view` unmaps it
    }
}

impl View<'_> {
    /// The mapped bytes (the `len` bytes asked of [`Lease::view`]).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `[skip, map_len)` lies inside this live read-only mapping; the lease keeps the
        // file from being written or shrunk while the builder finds it intact.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(self.skip), self.map_len - self.skip)
        }
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `view` made; every slice from `bytes` borrows `self`.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.map_len) };
    }
}

// SAFETY: a read-only mapping owned by the value; the lease keeps other processes from changing or
// shrinking the file while the builder finds it intact, so shared references from several threads
// (and moving the view to another thread) are sound.
unsafe impl Send for View<'_> {}
// SAFETY: as above; no method mutates through `&self`.
unsafe impl Sync for View<'_> {}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl on an open descriptor; integer arguments only.
        unsafe {
            libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK);
            libc::fcntl(fd, F_SETSIG, 0);
        }
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
        let lease = Lease::new(&f, data.len() as u64).expect("lease on a file nobody writes");
        assert!(lease.intact());
        assert_eq!(lease.view(5000, 100_000).unwrap().bytes(), &data[5000..105_000]);
        assert!(lease.view(199_999, 2).is_none(), "past the end");
        assert!(lease.view(0, 0).is_none());
        // Pages dropped from the page cache are read in by the populate path.
        // SAFETY: fadvise on an open descriptor; integer arguments only.
        assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
        assert_eq!(lease.view(0, data.len()).unwrap().bytes(), &data[..]);
        drop(lease);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn refused_while_a_writer_has_the_file_open() {
        let path = temp("writer", b"some bytes");
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let f = File::open(&path).unwrap();
        assert!(Lease::new(&f, 10).is_none(), "a file open for writing must not be leased");
        drop(writer);
        assert!(Lease::new(&f, 11).is_none(), "the size changed");
        assert!(Lease::new(&f, 10).is_some());
        assert!(Lease::new(&f, 0).is_none(), "nothing to map");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_truncating_writer_waits_for_the_mapping_and_the_break_is_seen() {
        let data = vec![7u8; 1 << 20];
        let path = temp("truncate", &data);
        let f = File::open(&path).unwrap();
        let lease = Lease::new(&f, data.len() as u64).expect("lease");
        let view = lease.view(0, data.len()).expect("view");
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
        while lease.intact() {
            assert!(Instant::now() < deadline, "the lease break was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The writer is still held back: every mapped byte is intact and readable.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!done.load(Ordering::SeqCst), "the truncating open went ahead under the lease");
        assert!(view.bytes().iter().all(|&b| b == 7));
        drop(view);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!done.load(Ordering::SeqCst), "unmapping is not releasing: the lease still holds");
        drop(lease);
        assert_eq!(writer.join().unwrap(), 0, "the writer proceeds once the lease is dropped");
        std::fs::remove_file(&path).unwrap();
    }
}
