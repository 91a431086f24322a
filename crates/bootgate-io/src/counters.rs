//! Named atomic counters, read by Python at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed set of named counters. Engines index them by position (an enum cast to usize).
#[derive(Debug)]
pub struct Counters {
    names: &'static [&'static str],
    values: Box<[AtomicU64]>,
}

impl Counters {
    pub fn new(names: &'static [&'static str]) -> Self {
        Self { names, values: names.iter().map(|_| AtomicU64::new(0)).collect() }
    }

    pub fn add(&self, index: usize, n: u64) {
        if let Some(v) = self.values.get(index) {
            v.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn inc(&self, index: usize) {
        self.add(index, 1);
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        let i = self.names.iter().position(|n| *n == name)?;
        Some(self.values[i].load(Ordering::Relaxed))
    }

    /// Every counter with its current value, in declaration order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.names.iter().zip(self.values.iter()).map(|(n, v)| (*n, v.load(Ordering::Relaxed))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_name() {
        let c = Counters::new(&["a", "b"]);
        c.inc(1);
        c.add(1, 4);
        c.inc(9); // out of range: ignored, never panics
        assert_eq!(c.get("b"), Some(5));
        assert_eq!(c.get("a"), Some(0));
        assert_eq!(c.snapshot(), vec![("a", 0), ("b", 5)]);
    }
}
