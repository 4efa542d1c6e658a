//! The machine's ceiling for a drain: a plain read of the same bytes at the same stride,
//! with no protocol. Each slot's first 8 bytes (the ring buffer's header word, the perf
//! record's header) and the payload's first 8 bytes (what the bench callback reads) are
//! loaded; addresses come from the slot index, so no load waits for another, which is
//! exactly what a ring walk cannot do (each header says where the next record starts).

use std::time::Duration;

fn cpu_now() -> Duration {
    crate::sys::cpus::thread_cpu_time().unwrap_or_default()
}

/// One slot layout: `stride` bytes apart, payload at `data_off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    pub stride: usize,
    pub data_off: usize,
    pub count: usize,
}

/// Sums the header word and the first payload word of every slot (the sum keeps the loads).
#[inline(never)]
pub fn plain_read(buf: &[u8], s: Slots) -> u64 {
    let word = |o: usize| {
        buf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    let mut sum = 0u64;
    for i in 0..s.count {
        let off = i * s.stride;
        sum = sum
            .wrapping_add(word(off))
            .wrapping_add(word(off + s.data_off));
    }
    sum
}

/// A buffer the size of the filled ring, rewritten before every timed read (as the producer
/// rewrites the ring before every drain, so the cache starts in the same state).
///
/// Each round is paired with the drain round just before it on the same CPU; the results
/// are medians over rounds, so a round disturbed by another process moves them little.
pub struct Ceiling {
    buf: Vec<u8>,
    slots: Slots,
    round: u8,
    /// Per round: the ceiling's M slots/s and the drain's fraction of it.
    rates: Vec<f64>,
    fractions: Vec<f64>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Ceiling {
    pub fn new(slots: Slots) -> Ceiling {
        Ceiling {
            buf: vec![0u8; slots.count * slots.stride + slots.data_off + 8],
            slots,
            round: 0,
            rates: Vec::new(),
            fractions: Vec::new(),
        }
    }

    /// One round after a drain round that took `drain_time` of thread CPU time for
    /// `drain_records`: write every byte (the producer's part), then time the plain read on
    /// the thread's CPU clock too (so time spent preempted by other processes counts for
    /// neither).
    pub fn round(&mut self, drain_records: u64, drain_time: Duration) {
        self.round = self.round.wrapping_add(1);
        self.buf.fill(self.round);
        let t = cpu_now();
        std::hint::black_box(plain_read(std::hint::black_box(&self.buf), self.slots));
        let took = cpu_now().saturating_sub(t).as_secs_f64();
        if took <= 0.0 || self.slots.count == 0 {
            return;
        }
        let rate = self.slots.count as f64 / took / 1e6;
        self.rates.push(rate);
        let d = drain_time.as_secs_f64();
        if d > 0.0 && drain_records > 0 {
            self.fractions.push(drain_records as f64 / d / 1e6 / rate);
        }
    }

    /// Median over rounds of the ceiling in M slots/s.
    pub fn mps(&self) -> Option<f64> {
        median(&mut self.rates.clone())
    }

    /// Median over rounds of the drain's rate divided by the ceiling's.
    pub fn fraction(&self) -> Option<f64> {
        median(&mut self.fractions.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_read_loads_header_and_payload_of_each_slot() {
        // Three 16-byte slots: header word, then payload word.
        let mut buf = vec![0u8; 48];
        for i in 0..3u64 {
            let o = i as usize * 16;
            buf[o..o + 8].copy_from_slice(&(i + 1).to_ne_bytes());
            buf[o + 8..o + 16].copy_from_slice(&(100 * (i + 1)).to_ne_bytes());
        }
        let s = Slots {
            stride: 16,
            data_off: 8,
            count: 3,
        };
        assert_eq!(plain_read(&buf, s), 1 + 2 + 3 + 100 + 200 + 300);
        // Slots past the buffer read as zero rather than panicking.
        assert_eq!(plain_read(&buf, Slots { count: 5, ..s }), 606);
    }

    #[test]
    fn rounds_count_slots_and_time() {
        let mut c = Ceiling::new(Slots {
            stride: 72,
            data_off: 8,
            count: 1000,
        });
        assert_eq!(c.mps(), None);
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        c.round(500, Duration::from_micros(10));
        c.round(500, Duration::from_micros(10));
        assert!(c.mps().is_some_and(|m| m > 0.0));
        assert!(c.fraction().is_some_and(|f| f > 0.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
