//! Loss accounting: every record the kernel could not deliver is reported once, with its
//! cause, and never twice.
//!
//! Three sources describe losses:
//! - the BPF program's own counters (`lost_full`, `lost_other` in .bss, bpf/tracer.h), exact
//!   and immediate;
//! - for the perf buffer, the kernel's `PERF_RECORD_LOST` records: per CPU, but written only
//!   in front of the next record that fits in that CPU's ring, so possibly much later (or,
//!   when nothing else is sent on that CPU, never). They count the same ring-full losses as
//!   `lost_full`;
//! - `bpf_prog_info.recursion_misses` (Linux >= 5.12): runs the kernel skipped because a BPF
//!   program was already running on that CPU. The program never ran, so it counted nothing.
//!
//! For the perf buffer, `reported_full` is what we said so far about ring-full losses, from
//! either source: a LOST record reports only the part not already covered, and after each
//! drain the program's count tops it up ("not yet reported by the kernel"). Both sources
//! count the same events, so the total reported is max(program, kernel) = the real losses;
//! only the split per CPU can be off when a LOST record arrives after the top-up.

/// Data the tracer could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The kernel's perf ring on `cpu` was full: `count` samples dropped (PERF_RECORD_LOST),
    /// less any already reported as [`Lost::PerfPending`].
    PerfRing { cpu: u32, count: u64 },
    /// The ring buffer was full: the BPF program could not reserve/output `count` records.
    Bpf { count: u64 },
    /// A perf ring was full for `count` records the kernel has not reported yet (its LOST
    /// record comes with the next record that fits on that CPU).
    PerfPending { count: u64 },
    /// The kernel refused `count` records for another reason (e.g. no perf ring open on the
    /// CPU that ran the program: a CPU that came online after start).
    Refused { count: u64 },
    /// The kernel skipped our programs `count` times (`recursion_misses`): another BPF
    /// program was running on that CPU, e.g. a task preempted in a map syscall.
    Recursion { count: u64 },
}

impl Lost {
    /// How many records this notice stands for.
    pub fn count(&self) -> u64 {
        match *self {
            Lost::PerfRing { count, .. }
            | Lost::Bpf { count }
            | Lost::PerfPending { count }
            | Lost::Refused { count }
            | Lost::Recursion { count } => count,
        }
    }
}

/// What has been reported so far.
#[derive(Debug, Default)]
pub(crate) struct Losses {
    perf: bool,
    kernel_lost: u64,
    reported_full: u64,
    reported_other: u64,
    reported_recursion: u64,
}

impl Losses {
    pub(crate) fn new(perf: bool) -> Losses {
        Losses {
            perf,
            ..Losses::default()
        }
    }

    /// A PERF_RECORD_LOST of `count` on `cpu`: the part not already reported, if any.
    pub(crate) fn on_perf_lost(&mut self, cpu: u32, count: u64) -> Option<Lost> {
        let covered = self.reported_full.saturating_sub(self.kernel_lost);
        self.kernel_lost += count;
        let new = count.saturating_sub(covered);
        self.reported_full += new;
        (new > 0).then_some(Lost::PerfRing { cpu, count: new })
    }

    /// The program's counters and the kernel's recursion misses (totals since start):
    /// what they add to what was reported.
    pub(crate) fn on_counters(&mut self, full: u64, other: u64, recursion: u64) -> Vec<Lost> {
        let mut out = Vec::new();
        if full > self.reported_full {
            let count = full - self.reported_full;
            self.reported_full = full;
            out.push(if self.perf {
                Lost::PerfPending { count }
            } else {
                Lost::Bpf { count }
            });
        }
        if other > self.reported_other {
            out.push(Lost::Refused {
                count: other - self.reported_other,
            });
            self.reported_other = other;
        }
        if recursion > self.reported_recursion {
            out.push(Lost::Recursion {
                count: recursion - self.reported_recursion,
            });
            self.reported_recursion = recursion;
        }
        out
    }

    /// Everything reported so far.
    pub(crate) fn total(&self) -> u64 {
        self.reported_full + self.reported_other + self.reported_recursion
    }
}

/// One u64 counter of the mmap'd .bss.
pub(super) fn read_counter(map: &crate::sys::mmap::Mmap, off: usize) -> u64 {
    use std::sync::atomic::{fence, AtomicU64, Ordering};
    if !off.is_multiple_of(8) || off + 8 > map.len() {
        return 0;
    }
    // SAFETY: `off` is 8-aligned and inside the mapping (checked above; the mapping is
    // page-aligned), which lives as long as `map`. The kernel's BPF program updates the
    // value concurrently only with atomic adds, so an atomic load is the right access.
    let cell = unsafe { &*(map.as_ptr().add(off) as *const AtomicU64) };
    // Pairs with the BPF program's __sync_fetch_and_add in record_drop (bpf/tracer.h),
    // a BPF_ATOMIC add. A count only, no data published under it: Relaxed suffices; a
    // PROT_READ mapping allows only plain loads, then fence(Acquire) per the project rule.
    let v = cell.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_losses_are_counted_once_whatever_comes_first() {
        // The audit's case: the program counts 137 at once, the kernel's LOST records
        // (70 on CPU 0, 67 on CPU 1) come later. Reported: 137, not 274.
        let mut l = Losses::new(true);
        assert_eq!(
            l.on_counters(137, 0, 0),
            vec![Lost::PerfPending { count: 137 }]
        );
        assert_eq!(l.on_perf_lost(0, 70), None);
        assert_eq!(l.on_perf_lost(1, 67), None);
        assert_eq!(l.on_counters(137, 0, 0), vec![]);
        assert_eq!(l.total(), 137);
        // Records first, then the counter: the counter adds nothing.
        let mut l = Losses::new(true);
        assert_eq!(
            l.on_perf_lost(0, 70),
            Some(Lost::PerfRing { cpu: 0, count: 70 })
        );
        assert_eq!(
            l.on_counters(137, 0, 0),
            vec![Lost::PerfPending { count: 67 }]
        );
        assert_eq!(l.on_perf_lost(1, 67), None);
        // New losses after that are reported by whichever comes first.
        assert_eq!(
            l.on_perf_lost(1, 5),
            Some(Lost::PerfRing { cpu: 1, count: 5 })
        );
        assert_eq!(l.on_counters(142, 0, 0), vec![]);
        assert_eq!(l.total(), 142);
    }

    #[test]
    fn ring_and_other_causes() {
        let mut l = Losses::new(false);
        assert_eq!(
            l.on_counters(3, 2, 1),
            vec![
                Lost::Bpf { count: 3 },
                Lost::Refused { count: 2 },
                Lost::Recursion { count: 1 }
            ]
        );
        assert_eq!(l.on_counters(3, 2, 1), vec![]);
        assert_eq!(l.on_counters(4, 2, 1), vec![Lost::Bpf { count: 1 }]);
        assert_eq!(l.total(), 7);
    }
}
