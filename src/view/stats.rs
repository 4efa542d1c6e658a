//! `--stats [INTERVAL]`: counters fed by the consumer's observer hooks, one line per interval.

use std::time::Duration;

use crate::consumer::observer::{Observer, PerfRecordInfo, RingRecord, Stopped, WokenBy};
use crate::sys::perf::PERF_RECORD_SAMPLE;

/// What the consumer did since the last line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    /// Records handed out (ring buffer: committed, not discarded; perf: samples).
    pub records: u64,
    /// Drain passes (perf: one per CPU ring that had data).
    pub drains: u64,
    /// Waits ended by a kernel wakeup.
    pub kernel_wakeups: u64,
    /// Waits ended by the timeout.
    pub timeouts: u64,
    /// Ring buffer drains that stopped at a BUSY head.
    pub busy_stops: u64,
    /// Highest fill level seen at the start of a drain, in parts of the ring (0..=1).
    pub max_fill: f64,
    /// Records lost (fed by the caller from the tracer's loss reports).
    pub lost: u64,
}

impl Stats {
    /// Adds lost records reported by the tracer.
    pub fn add_lost(&mut self, n: u64) {
        self.lost += n;
    }

    /// One line for an interval of `elapsed`.
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let per_wakeup = if self.kernel_wakeups > 0 {
            format!("{:.1}", self.records as f64 / self.kernel_wakeups as f64)
        } else {
            "-".to_string()
        };
        format!(
            "stats: {:.0} records/s, {} drains, wakeups {} kernel / {} timeout, {} records per \
             wakeup, {} BUSY-head stops, max fill {:.1}%, lost {}",
            self.records as f64 / secs,
            self.drains,
            self.kernel_wakeups,
            self.timeouts,
            per_wakeup,
            self.busy_stops,
            self.max_fill * 100.0,
            self.lost
        )
    }

    fn fill(&mut self, used: u64, size: u64) {
        if size > 0 {
            self.max_fill = self.max_fill.max(used as f64 / size as f64);
        }
    }
}

impl Observer for Stats {
    fn ring_drain_start(&mut self, consumer_pos: u64, producer_pos: u64, size: u64) {
        if producer_pos != consumer_pos {
            self.drains += 1;
        }
        self.fill(producer_pos.saturating_sub(consumer_pos), size);
    }
    fn ring_record(&mut self, r: &RingRecord) {
        if !r.busy && !r.discard {
            self.records += 1;
        }
    }
    fn ring_drain_end(&mut self, _after: u64, stopped: Stopped) {
        if stopped == Stopped::Busy {
            self.busy_stops += 1;
        }
    }
    fn perf_drain_start(&mut self, _cpu: u32, tail: u64, head: u64, size: u64) {
        self.drains += 1;
        self.fill(head.saturating_sub(tail), size);
    }
    fn perf_record(&mut self, r: &PerfRecordInfo) {
        if r.rtype == PERF_RECORD_SAMPLE {
            self.records += 1;
        }
    }
    fn woken(&mut self, by: WokenBy) {
        match by {
            WokenBy::Kernel => self.kernel_wakeups += 1,
            WokenBy::Timeout => self.timeouts += 1,
            WokenBy::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_line() {
        let mut s = Stats::default();
        s.woken(WokenBy::Kernel);
        s.ring_drain_start(0, 200, 1000);
        for pos in [0, 72] {
            s.ring_record(&RingRecord {
                pos,
                header: 64,
                len: 64,
                busy: false,
                discard: false,
                pg_off: 0,
                wraps: false,
            });
        }
        s.ring_record(&RingRecord {
            pos: 144,
            header: 64 | (1 << 31),
            len: 64,
            busy: true,
            discard: false,
            pg_off: 0,
            wraps: false,
        });
        s.ring_drain_end(144, Stopped::Busy);
        s.woken(WokenBy::Timeout);
        s.add_lost(3);
        assert_eq!((s.records, s.drains, s.busy_stops), (2, 1, 1));
        let line = s.line(Duration::from_secs(2));
        assert!(line.contains("1 records/s"), "{line}");
        assert!(line.contains("wakeups 1 kernel / 1 timeout"), "{line}");
        assert!(line.contains("2.0 records per wakeup"), "{line}");
        assert!(line.contains("max fill 20.0%"), "{line}");
        assert!(line.contains("lost 3"), "{line}");
    }
}
