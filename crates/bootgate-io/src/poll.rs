//! The head of every engine's packet loop: poll(2) on a few descriptors until one is readable or
//! the next timed job is due.

use std::io;
use std::time::{Duration, Instant};

/// A `pollfd` waiting for input on `fd`.
pub fn pollin(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// poll(2)'s timeout for a wait until `due` seen at `now`: -1 (forever) without a deadline, else
/// the milliseconds left rounded up, so the wake-up is never before the due time (0 once it has
/// passed), capped at `i32::MAX`.
pub fn timeout_ms(due: Option<Instant>, now: Instant) -> libc::c_int {
    match due {
        None => -1,
        Some(due) => {
            let wait = due.saturating_duration_since(now);
            libc::c_int::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// Clears every `revents`, then waits until a descriptor of `fds` is ready or `due` has come.
/// Returns the number of ready descriptors: 0 on a timeout, on a signal (EINTR), and after any
/// other poll error (then it first backs off 10 ms, so a persistent error never spins). The
/// caller looks at `revents` and then runs whatever is due.
pub fn poll_due(fds: &mut [libc::pollfd], due: Option<Instant>) -> usize {
    for f in fds.iter_mut() {
        f.revents = 0;
    }
    let timeout = timeout_ms(due, Instant::now());
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs for the
    // duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if n < 0 {
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            std::thread::sleep(Duration::from_millis(10));
        }
        return 0;
    }
    n as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn timeout_rounds_up_and_caps() {
        let now = Instant::now();
        assert_eq!(timeout_ms(None, now), -1);
        assert_eq!(timeout_ms(Some(now), now), 0);
        assert_eq!(timeout_ms(Some(now), now + Duration::from_secs(1)), 0, "past due: no wait");
        assert_eq!(timeout_ms(Some(now + Duration::from_micros(1)), now), 1);
        assert_eq!(timeout_ms(Some(now + Duration::from_micros(1000)), now), 1);
        assert_eq!(timeout_ms(Some(now + Duration::from_micros(1001)), now), 2);
        assert_eq!(timeout_ms(Some(now + Duration::from_secs(10_000_000)), now), libc::c_int::MAX);
    }

    #[test]
    fn reports_ready_descriptors_and_clears_stale_revents() {
        let (a_tx, a_rx) = UnixStream::pair().unwrap();
        let (_b_tx, b_rx) = UnixStream::pair().unwrap();
        let mut fds = [pollin(a_rx.as_raw_fd()), pollin(b_rx.as_raw_fd())];
        // Nothing readable and already due: returns at once with every revents cleared.
        fds[1].revents = libc::POLLIN;
        assert_eq!(poll_due(&mut fds, Some(Instant::now())), 0);
        assert!(fds.iter().all(|f| f.revents == 0));
        // One readable: found even with no deadline (would block forever otherwise).
        (&a_tx).write_all(&[1]).unwrap();
        assert_eq!(poll_due(&mut fds, None), 1);
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
        assert_eq!(fds[1].revents, 0);
        // A deadline in the future does not hide a ready descriptor.
        assert_eq!(poll_due(&mut fds, Some(Instant::now() + Duration::from_secs(60))), 1);
    }

    #[test]
    fn never_wakes_before_the_deadline() {
        // Rounded up, the timeout is never shorter than the wait left (poll itself may only
        // return later, or early on a signal, which the test harness does not send).
        let (_tx, rx) = UnixStream::pair().unwrap();
        let mut fds = [pollin(rx.as_raw_fd())];
        let due = Instant::now() + Duration::from_micros(2500);
        assert_eq!(poll_due(&mut fds, Some(due)), 0);
        assert!(Instant::now() >= due);
    }
}
