//! A bounded, multi-producer event queue whose readiness is signalled on a file descriptor.
//!
//! Engine threads `push`; Python registers [`EventQueue::notify_fd`] with its event loop and, when
//! the descriptor becomes readable, calls [`EventQueue::drain`]. When the queue is full the newest
//! event is dropped and counted: a slow consumer never blocks a packet loop.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug)]
pub struct EventQueue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    dropped: AtomicU64,
    /// True while a wake-up byte is sitting unread in the socket pair.
    signalled: AtomicBool,
    tx: UnixStream,
    rx: UnixStream,
}

impl<T> EventQueue<T> {
    pub fn new(capacity: usize) -> io::Result<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Self {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            signalled: AtomicBool::new(false),
            tx,
            rx,
        })
    }

    /// Adds an event; returns false (and counts a drop) when the queue is full.
    pub fn push(&self, item: T) -> bool {
        {
            let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
            if items.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            items.push_back(item);
        }
        if !self.signalled.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending; nothing else to do.
            let _ = (&self.tx).write(&[1u8]);
        }
        true
    }

    /// Takes up to `max` events, oldest first, and clears the wake-up signal.
    pub fn drain(&self, max: usize) -> Vec<T> {
        self.signalled.store(false, Ordering::Release);
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let n = items.len().min(max);
        let out: Vec<T> = items.drain(..n).collect();
        if !items.is_empty() && !self.signalled.swap(true, Ordering::AcqRel) {
            let _ = (&self.tx).write(&[1u8]);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Readable whenever events are waiting.
    pub fn notify_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_drain_keeps_order_and_counts_overflow() {
        let q = EventQueue::new(3).unwrap();
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.drain(2), vec![0, 1]);
        assert_eq!(q.drain(10), vec![2]);
        assert!(q.is_empty());
    }

    #[test]
    fn fd_is_readable_only_while_events_wait() {
        let q = EventQueue::new(8).unwrap();
        let readable = |q: &EventQueue<u32>| {
            let mut pfd = libc::pollfd { fd: q.notify_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, zero timeout.
            unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
        };
        assert!(!readable(&q));
        q.push(7);
        assert!(readable(&q));
        assert_eq!(q.drain(1), vec![7]);
        assert!(!readable(&q));
    }
}
